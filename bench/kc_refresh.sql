-- Keycloak 26 token refresh, as its JPA layer writes it (see README.md,
-- section keycloak): both entities are @DynamicUpdate with a @Version, so
-- Hibernate updates the changed column and bumps the version, one UPDATE
-- per table, in one transaction.  (Hibernate also checks "AND version = ?"
-- from the row it read first; that read is left out here, which only
-- flatters Keycloak.)  Sessions 1..nkeys, spread evenly.
\set k random(1, :nkeys)
BEGIN;
UPDATE offline_user_session
    SET last_session_refresh = extract(epoch FROM now())::int, version = version + 1
    WHERE user_session_id = md5(:k::text)::uuid::text AND offline_flag = '0';
UPDATE offline_client_session
    SET "timestamp" = extract(epoch FROM now())::int, version = version + 1
    WHERE user_session_id = md5(:k::text)::uuid::text
      AND client_id = '4b7e2d19-8c3a-4f6e-9a05-e1d2c3b4a596'
      AND client_storage_provider = 'local' AND external_client_id = 'local'
      AND offline_flag = '0';
COMMIT;
