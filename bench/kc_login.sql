-- Keycloak 26 login, as its JPA layer writes it (see README.md, section
-- keycloak): the user session row and one client session row, two INSERTs
-- in one transaction.  Ids are uuids (md5 of a random number out of 10^12,
-- above the 100,000 filled ones); -D val is the user session's data.
\set k random(1000001, 1000000000000)
BEGIN;
INSERT INTO offline_user_session (user_session_id, user_id, realm_id, created_on,
    offline_flag, data, last_session_refresh, broker_session_id, version)
VALUES (md5(:k::text)::uuid::text, 'user-' || (:k::bigint % 100000),
    '9d2e1c4a-6f3b-4e8a-b1d7-3c5f0a2e8b61', extract(epoch FROM now())::int, '0',
    :val, extract(epoch FROM now())::int, NULL, 0);
INSERT INTO offline_client_session (user_session_id, client_id, offline_flag,
    "timestamp", data, client_storage_provider, external_client_id, version)
VALUES (md5(:k::text)::uuid::text, '4b7e2d19-8c3a-4f6e-9a05-e1d2c3b4a596', '0',
    extract(epoch FROM now())::int,
    '{"authMethod":"openid-connect","redirectUri":"https://app.example.com/callback","action":"AUTHENTICATE","notes":{"iss":"https://sso.example.com/realms/master","scope":"openid profile email","response_type":"code","code_challenge_method":"S256","nonce":"b0f7c2a1e4d94f3a8c6e5d2b1a0f9e8d"}}',
    'local', 'local', 0);
COMMIT;
