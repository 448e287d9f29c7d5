-- Every SQLSTATE of API.md's error table, and hostile input that must be
-- refused cleanly or handled, never crash the server.
\set VERBOSITY sqlstate
SELECT sessioncache.define_cache('t_err.d', true);
SELECT sessioncache.define_cache('t_err.m', false);
SELECT sessioncache.put('t_err.d', 'k', '{"a": 1}', 'u') > 0 AS put;
SELECT sessioncache.put('t_err.m', 'k', '{"a": 1}', 'u') > 0 AS put;

------------------------------------------------------------------------
-- unknown cache: 42704
------------------------------------------------------------------------
SELECT sessioncache.put('t_err.none', 'k', '{}');
SELECT sessioncache.get('t_err.none', 'k');
SELECT sessioncache.get('t_err.none', 'k', true);
SELECT sessioncache.touch('t_err.none', 'k');
SELECT sessioncache.patch('t_err.none', 'k', '{}');
SELECT sessioncache.incr('t_err.none', 'k', 'n');
SELECT sessioncache.delete('t_err.none', 'k');
SELECT sessioncache.delete_user('t_err.none', 'u');
SELECT * FROM sessioncache.user_entries('t_err.none', 'u');
SELECT * FROM sessioncache.entry_info('t_err.none', 'k');
SELECT sessioncache.drop_cache('t_err.none');
-- the name is taken exactly
SELECT sessioncache.get('t_err.d ', 'k');
SELECT sessioncache.get('t_err', 'k');

------------------------------------------------------------------------
-- bad cache name: 22023; NULL cache: 22004
------------------------------------------------------------------------
SELECT sessioncache.put('T_err.d', 'k', '{}');
SELECT sessioncache.get('', 'k');
SELECT sessioncache.get(repeat('a', 64), 'k');
SELECT sessioncache.touch('t_err.d;', 'k');
SELECT sessioncache.delete('t_err''d', 'k');
SELECT sessioncache.put(NULL, 'k', '{}');
SELECT sessioncache.get(NULL, 'k');
SELECT sessioncache.touch(NULL, 'k');
SELECT sessioncache.patch(NULL, 'k', '{}');
SELECT sessioncache.incr(NULL, 'k', 'n');
SELECT sessioncache.delete(NULL, 'k');
SELECT sessioncache.delete_user(NULL, 'u');
SELECT * FROM sessioncache.user_entries(NULL, 'u');
SELECT * FROM sessioncache.entry_info(NULL, 'k');

------------------------------------------------------------------------
-- empty key: 22023; NULL key: 22004
------------------------------------------------------------------------
SELECT sessioncache.put('t_err.d', '', '{}');
SELECT sessioncache.put('t_err.m', '', '{}');
SELECT sessioncache.get('t_err.d', '');
SELECT sessioncache.get('t_err.m', '', true);
SELECT sessioncache.touch('t_err.d', '');
SELECT sessioncache.patch('t_err.m', '', '{}');
SELECT sessioncache.incr('t_err.d', '', 'n');
SELECT sessioncache.delete('t_err.m', '');
SELECT * FROM sessioncache.entry_info('t_err.d', '');
SELECT sessioncache.put('t_err.d', NULL, '{}');
SELECT sessioncache.put('t_err.m', NULL, '{}');
SELECT sessioncache.get('t_err.d', NULL);
SELECT sessioncache.get('t_err.m', NULL, true);
SELECT sessioncache.touch('t_err.d', NULL);
SELECT sessioncache.patch('t_err.m', NULL, '{}');
SELECT sessioncache.incr('t_err.d', NULL, 'n');
SELECT sessioncache.delete('t_err.m', NULL);
SELECT * FROM sessioncache.entry_info('t_err.d', NULL);
-- other NULL arguments
SELECT sessioncache.put('t_err.d', 'k', NULL);
SELECT sessioncache.patch('t_err.d', 'k', NULL);
SELECT sessioncache.incr('t_err.d', 'k', NULL);
SELECT sessioncache.incr('t_err.d', 'k', 'n', NULL);
SELECT sessioncache.delete_user('t_err.d', NULL);
SELECT * FROM sessioncache.user_entries('t_err.m', NULL);
-- a NULL touch flag is no touch; a NULL user is no user
SELECT sessioncache.get('t_err.d', 'k', NULL);
SELECT sessioncache.put('t_err.m', 'k', '{"a": 1}', NULL, NULL, NULL) > 0 AS put;
-- nothing was stored under an empty key
SELECT count(*) FROM sessioncache.entries WHERE cache LIKE 't\_err.%' AND key = '';

------------------------------------------------------------------------
-- key or user_id over 255 bytes: 54000 (bytes, not characters)
------------------------------------------------------------------------
SELECT sessioncache.put('t_err.d', repeat('k', 255), '{}', repeat('u', 255)) > 0 AS at_limit;
SELECT sessioncache.put('t_err.m', repeat('k', 255), '{}', repeat('u', 255)) > 0 AS at_limit;
SELECT sessioncache.put('t_err.m', repeat('☺', 85), '{}', repeat('é', 127)) > 0 AS multibyte_at_limit;
SELECT c, (SELECT octet_length(user_id) FROM sessioncache.entry_info(c, repeat('k', 255))) AS user_bytes,
       sessioncache.get(c, repeat('k', 255))
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c) ORDER BY c;
SELECT count(*) FROM sessioncache.user_entries('t_err.m', repeat('é', 127));
SELECT sessioncache.put('t_err.d', repeat('k', 256), '{}');
SELECT sessioncache.put('t_err.m', repeat('é', 128), '{}');
SELECT sessioncache.get('t_err.d', repeat('k', 256));
SELECT sessioncache.get('t_err.m', repeat('k', 100000));
SELECT sessioncache.touch('t_err.d', repeat('k', 256));
SELECT sessioncache.patch('t_err.m', repeat('k', 256), '{}');
SELECT sessioncache.incr('t_err.d', repeat('k', 256), 'n');
SELECT sessioncache.delete('t_err.m', repeat('k', 256));
SELECT * FROM sessioncache.entry_info('t_err.d', repeat('k', 256));
SELECT sessioncache.put('t_err.d', 'k', '{}', repeat('u', 256));
SELECT sessioncache.put('t_err.m', 'k', '{}', repeat('é', 128));
SELECT sessioncache.incr('t_err.d', 'k-new', 'n', 1, repeat('u', 256));
SELECT sessioncache.delete_user('t_err.m', repeat('u', 256));
SELECT * FROM sessioncache.user_entries('t_err.d', repeat('u', 100000));
-- the refused calls left k as it was
SELECT c, sessioncache.get(c, 'k'), i.user_id
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c), sessioncache.entry_info(c, 'k') i ORDER BY c;

------------------------------------------------------------------------
-- value over sessioncache.max_value_size: 54000
------------------------------------------------------------------------
SHOW sessioncache.max_value_size;
SELECT sessioncache.put('t_err.d', 'big', jsonb_build_object('s', repeat('x', 16000))) > 0 AS under;
SELECT sessioncache.put('t_err.m', 'big', jsonb_build_object('s', repeat('x', 16000))) > 0 AS under;
SELECT sessioncache.put('t_err.d', 'big', jsonb_build_object('s', repeat('x', 16384)));
SELECT sessioncache.put('t_err.m', 'big', jsonb_build_object('s', repeat('x', 16384)));
SELECT sessioncache.put('t_err.m', 'big', to_jsonb(repeat('x', 1000000)));
-- a patch or an incr that would grow the value past the limit
SELECT sessioncache.patch('t_err.d', 'big', jsonb_build_object('t', repeat('y', 1000)));
SELECT sessioncache.patch('t_err.m', 'big', jsonb_build_object('t', repeat('y', 1000)));
SELECT sessioncache.incr('t_err.d', 'big', repeat('f', 1000));
SELECT c, length(sessioncache.get(c, 'big')->>'s') AS s, sessioncache.get(c, 'big') ? 't' AS has_t
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c) ORDER BY c;
-- the limit can be lowered by a superuser, for this session
SET sessioncache.max_value_size = '1kB';
SHOW sessioncache.max_value_size;
SELECT sessioncache.put('t_err.d', 'small', jsonb_build_object('s', repeat('x', 900))) > 0 AS under;
SELECT sessioncache.put('t_err.m', 'small', jsonb_build_object('s', repeat('x', 900))) > 0 AS under;
SELECT sessioncache.put('t_err.d', 'small', jsonb_build_object('s', repeat('x', 1100)));
SELECT sessioncache.put('t_err.m', 'small', jsonb_build_object('s', repeat('x', 1100)));
SELECT sessioncache.patch('t_err.m', 'small', jsonb_build_object('t', repeat('y', 200)));
-- reading a value stored under the higher limit is fine
SELECT length(sessioncache.get('t_err.d', 'big')->>'s') AS s;
RESET sessioncache.max_value_size;
SHOW sessioncache.max_value_size;
SELECT sessioncache.put('t_err.m', 'small', jsonb_build_object('s', repeat('x', 1100))) > 0 AS put;

------------------------------------------------------------------------
-- timeouts not positive: 22023
------------------------------------------------------------------------
SELECT sessioncache.put('t_err.d', 't', '{}', NULL, '0');
SELECT sessioncache.put('t_err.m', 't', '{}', NULL, '-1 second');
SELECT sessioncache.put('t_err.d', 't', '{}', NULL, NULL, '0 days');
SELECT sessioncache.put('t_err.m', 't', '{}', NULL, NULL, '-5 min');
SELECT sessioncache.put('t_err.d', 't', '{}', NULL, '1 month -31 days');
SELECT sessioncache.put('t_err.m', 't', '{}', NULL, '-1 microsecond');
SELECT sessioncache.define_cache('t_err.x', idle_timeout => '0');
SELECT sessioncache.define_cache('t_err.x', max_lifespan => '-1 hour');
SELECT c, (SELECT count(*) FROM sessioncache.entry_info(c, 't')) AS stored
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c) ORDER BY c;
-- a month counts as 30 days: this is one day
SELECT sessioncache.put('t_err.m', 't', '{}', NULL, '1 month -29 days', '1 month -29 days') > 0 AS put;
SELECT expires_at - last_access AS idle FROM sessioncache.entry_info('t_err.m', 't');

------------------------------------------------------------------------
-- per-user limit with policy deny: SC002
------------------------------------------------------------------------
SELECT sessioncache.define_cache('t_err.lim', false, max_per_user => 2);
SELECT sessioncache.put('t_err.lim', 'a', '{}', 'u') > 0 AS put,
       sessioncache.put('t_err.lim', 'b', '{}', 'u') > 0 AS put2;
SELECT sessioncache.put('t_err.lim', 'c', '{}', 'u');
SELECT sessioncache.incr('t_err.lim', 'c', 'n', 1, 'u');
SELECT count(*) FROM sessioncache.user_entries('t_err.lim', 'u');

------------------------------------------------------------------------
-- a function called from another database: 55000
------------------------------------------------------------------------
SELECT current_database() AS testdb \gset
CREATE DATABASE t_errors_other;
\c t_errors_other
\set VERBOSITY sqlstate
-- CREATE EXTENSION must fail and name the right database
\set VERBOSITY default
DO $$
BEGIN
    CREATE EXTENSION sessioncache;
    RAISE NOTICE 'created';
EXCEPTION WHEN others THEN
    RAISE NOTICE 'SQLSTATE %: %', SQLSTATE, SQLERRM;
END
$$;
\set VERBOSITY sqlstate
SELECT count(*) FROM pg_extension WHERE extname = 'sessioncache';
SELECT count(*) FROM pg_namespace WHERE nspname = 'sessioncache';
-- and so does any function of the library
CREATE FUNCTION t_get(text, text, boolean) RETURNS jsonb
    AS 'sessioncache', 'sc_get' LANGUAGE C;
CREATE FUNCTION t_put(text, text, jsonb, text, interval, interval) RETURNS bigint
    AS 'sessioncache', 'sc_put' LANGUAGE C;
CREATE FUNCTION t_define_cache(text, boolean, interval, interval, integer, text, boolean)
    RETURNS void AS 'sessioncache', 'sc_define_cache' LANGUAGE C;
SELECT t_get('sessions', 'k', false);
SELECT t_put('sessions', 'k', '{}', NULL, NULL, NULL);
SELECT t_define_cache('t_err.y', true, NULL, NULL, NULL, 'deny', true);
\c :testdb
\set VERBOSITY sqlstate
DROP DATABASE t_errors_other;

------------------------------------------------------------------------
-- hostile input
------------------------------------------------------------------------
-- huge and odd intervals
SELECT sessioncache.put('t_err.m', 'h', '{}', NULL, '178000000 years');
SELECT sessioncache.put('t_err.m', 'h', '{}', NULL, NULL, '2147483647 months 2147483647 days');
SELECT sessioncache.put('t_err.m', 'h', '{}', NULL, '-178000000 years');
SELECT sessioncache.put('t_err.d', 'h', '{}', NULL, '2147483647 days');
SELECT sessioncache.put('t_err.d', 'h', '{}', NULL, interval '9223372036854775807 microseconds');
SELECT sessioncache.put('t_err.d', 'h', '{}', NULL, '-2147483648 months 2147483647 days');
SELECT sessioncache.define_cache('t_err.x', idle_timeout => '178000000 years');
SELECT sessioncache.define_cache('t_err.x', max_lifespan => '2147483647 months');
SELECT count(*) FROM sessioncache.caches WHERE name = 't_err.x';
-- the longest timeouts accepted still give a sensible expiry
SELECT sessioncache.put('t_err.d', 'long', '{}', NULL, '99 years', '99 years') > 0 AS put;
-- (timeouts are durations: a year is 365.25 days, as extract(epoch) counts)
SELECT extract(epoch FROM expires_at - created_at) = extract(epoch FROM interval '99 years') AS far
FROM sessioncache.entry_info('t_err.d', 'long');
SELECT sessioncache.get('t_err.d', 'long');
-- quotes, semicolons, backslashes and control characters are just data
SELECT sessioncache.put(c, k, jsonb_build_object('k', k), k) > 0 AS put
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c),
     (VALUES ($k$'); DROP TABLE sessioncache.durable_entries; --$k$),
             ($k$"quoted" \ back\slash$k$), (E'tab\there\nnewline'), ('%_*?[]'),
             ('   '), ('☺ ünïcödé')) keys(k)
ORDER BY c, k;
SELECT c, k, sessioncache.get(c, k) = jsonb_build_object('k', k) AS same,
       (SELECT user_id = k FROM sessioncache.entry_info(c, k)) AS same_user
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c),
     (VALUES ($k$'); DROP TABLE sessioncache.durable_entries; --$k$),
             ($k$"quoted" \ back\slash$k$), (E'tab\there\nnewline'), ('%_*?[]'),
             ('   '), ('☺ ünïcödé')) keys(k)
ORDER BY c, k;
SELECT count(*) FROM sessioncache.user_entries('t_err.m', '%_*?[]');
SELECT sessioncache.delete_user('t_err.d', $k$'); DROP TABLE sessioncache.durable_entries; --$k$);
SELECT to_regclass('sessioncache.durable_entries') IS NOT NULL AS table_still_there;
-- field names of every kind
SELECT sessioncache.incr('t_err.m', 'fields', $f$we"ird\field$f$),
       sessioncache.incr('t_err.m', 'fields', E'new\nline'),
       sessioncache.incr('t_err.m', 'fields', '☺');
SELECT sessioncache.get('t_err.m', 'fields');
SELECT sessioncache.incr('t_err.m', 'fields', repeat('f', 20000));
-- counters at the edge of bigint
SELECT sessioncache.incr('t_err.m', 'edge', 'n', 9223372036854775807);
SELECT sessioncache.incr('t_err.m', 'edge', 'n', 1);
SELECT sessioncache.incr('t_err.m', 'edge', 'n', -9223372036854775807 - 1);
SELECT sessioncache.incr('t_err.m', 'edge', 'n', -9223372036854775807 - 1);
SELECT sessioncache.get('t_err.m', 'edge');
SELECT sessioncache.put('t_err.m', 'edge', '{"n": 1e30, "m": 1e-30, "o": -0}') > 0 AS put;
SELECT sessioncache.incr('t_err.m', 'edge', 'n');
SELECT sessioncache.incr('t_err.m', 'edge', 'm');
SELECT sessioncache.incr('t_err.m', 'edge', 'o');
-- deeply nested and wide values
SELECT sessioncache.put(c, 'deep', (repeat('[', 1000) || repeat(']', 1000))::jsonb) > 0 AS put,
       sessioncache.get(c, 'deep') = (repeat('[', 1000) || repeat(']', 1000))::jsonb AS same
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c) ORDER BY c;
SELECT sessioncache.put(c, 'deep2', (repeat('{"a": ', 1000) || '1' || repeat('}', 1000))::jsonb) > 0 AS put,
       jsonb_typeof(sessioncache.patch(c, 'deep2', '{"b": [[[[[[]]]]]]}')) AS patched
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c) ORDER BY c;
SELECT sessioncache.put(c, 'wide', (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 300) i)) > 0 AS put,
       (SELECT count(*) FROM jsonb_object_keys(sessioncache.get(c, 'wide'))) AS keys
FROM (VALUES ('t_err.d'), ('t_err.m')) v(c) ORDER BY c;
-- patches that are not objects
SELECT sessioncache.patch('t_err.m', 'k', '[1, 2]');
SELECT sessioncache.patch('t_err.m', 'k', '"scalar"');
SELECT sessioncache.patch('t_err.m', 'k', 'null');
SELECT sessioncache.get('t_err.m', 'k');
------------------------------------------------------------------------
-- messages follow PostgreSQL's style: lower-case primary message without
-- a final period; detail and hint as full sentences
------------------------------------------------------------------------
CREATE FUNCTION pg_temp.error_of(q text, OUT code text, OUT message text,
                                 OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END
$$;
CREATE TEMP TABLE bad_calls(q text);
INSERT INTO bad_calls VALUES
    ($$SELECT sessioncache.get('t_err.none', 'k')$$),
    ($$SELECT sessioncache.get('Bad', 'k')$$),
    ($$SELECT sessioncache.get(repeat('a', 64), 'k')$$),
    ($$SELECT sessioncache.get(NULL, 'k')$$),
    ($$SELECT sessioncache.get('t_err.m', '')$$),
    ($$SELECT sessioncache.get('t_err.m', NULL)$$),
    ($$SELECT sessioncache.put('t_err.m', repeat('k', 256), '{}')$$),
    ($$SELECT sessioncache.put('t_err.m', 'k', '{}', repeat('u', 256))$$),
    ($$SELECT sessioncache.put('t_err.m', 'k', jsonb_build_object('s', repeat('x', 20000)))$$),
    ($$SELECT sessioncache.put('t_err.d', 'k', jsonb_build_object('s', repeat('x', 20000)))$$),
    ($$SELECT sessioncache.put('t_err.m', 'k', NULL)$$),
    ($$SELECT sessioncache.put('t_err.m', 'k', '{}', NULL, '0')$$),
    ($$SELECT sessioncache.put('t_err.m', 'k', '{}', NULL, '1000 years')$$),
    ($$SELECT sessioncache.put('t_err.lim', 'c', '{}', 'u')$$),
    ($$SELECT sessioncache.incr('t_err.m', 'edge', 'm')$$),
    ($$SELECT sessioncache.incr('t_err.m', 'k', 'x')$$),
    ($$SELECT sessioncache.incr('t_err.m', 'edge', 'o', 9223372036854775807)$$),
    ($$SELECT sessioncache.incr('t_err.m', 'k', '')$$),
    ($$SELECT sessioncache.define_cache('t_err.d', false)$$),
    ($$SELECT sessioncache.define_cache('t_err.x', per_user_policy => 'lru')$$),
    ($$SELECT sessioncache.define_cache('t_err.x', max_per_user => 0)$$),
    ($$SELECT sessioncache.drop_cache('t_err.none')$$),
    ($$UPDATE sessioncache.durable_entries SET value = value WHERE false$$);
-- every call fails with a message
SELECT count(*) AS calls, count(e.code) AS failed
FROM bad_calls b, pg_temp.error_of(b.q) e;
-- offenders, if any
SELECT e.code, e.message, e.detail, e.hint
FROM bad_calls b, pg_temp.error_of(b.q) e
WHERE e.message !~ '^[a-z"]' OR e.message ~ '\.$' OR e.message ~ '\n'
   OR nullif(e.detail, '') !~ '^[A-Z"].*\.$' OR nullif(e.hint, '') !~ '^[A-Z"].*\.$';

-- the server is still up and shared memory is consistent
SELECT sessioncache.check_memory();

-- clean up
SELECT sessioncache.drop_cache(name) FROM sessioncache.caches
WHERE name LIKE 't\_err.%' ORDER BY name;

-- a read-only transaction writes nothing, to memory-only caches either: 25006
BEGIN READ ONLY;
SELECT sessioncache.put('auth_sessions', 'ro', '{}');
ROLLBACK;
BEGIN READ ONLY;
SELECT sessioncache.get('auth_sessions', 'ro') IS NULL AS absent;
COMMIT;
