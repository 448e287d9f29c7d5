-- The privilege contract (API.md, "Privileges"), with pgTAP: nothing for
-- PUBLIC; sessioncache_app calls the entry and membership functions;
-- sessioncache_monitor and pg_monitor read the views; define_cache,
-- drop_cache and reset_stats are the owner's; the durable table is written
-- by sessioncache alone; SECURITY DEFINER functions pin their search_path.
\set VERBOSITY sqlstate
SET client_min_messages = warning;
CREATE EXTENSION pgtap;
RESET client_min_messages;
CREATE ROLE regress_sc_plain;
CREATE ROLE regress_sc_app IN ROLE sessioncache_app;
CREATE ROLE regress_sc_mon IN ROLE sessioncache_monitor;
CREATE ROLE regress_sc_pgmon IN ROLE pg_monitor;
-- run a statement as another role; an error undoes the role change with the
-- subtransaction of the pgTAP function that catches it
CREATE FUNCTION pg_temp.as_role(r name, q text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', r, true);
    EXECUTE q;
    PERFORM set_config('role', 'none', true);
END
$$;
SELECT sessioncache.put('sessions', 't_priv:k', '{"v": 1}', 't_priv_user') > 0 AS put;
\pset format unaligned
\pset tuples_only on
SELECT * FROM no_plan();

------------------------------------------------------------------------
-- nothing is granted to PUBLIC
------------------------------------------------------------------------
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'sessioncache'::regnamespace
      AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
$$, 'no function of schema sessioncache is executable by PUBLIC');
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'sessioncache'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'm', 'p')
      AND (c.relacl IS NULL OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0))
$$, 'no table, view or sequence of schema sessioncache is granted to PUBLIC');
SELECT is_empty($$
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspname = 'sessioncache'
      AND (n.nspacl IS NULL OR EXISTS (SELECT FROM aclexplode(n.nspacl) a WHERE a.grantee = 0))
$$, 'schema sessioncache is not usable by PUBLIC');

------------------------------------------------------------------------
-- a plain role can do nothing
------------------------------------------------------------------------
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT sessioncache.get(''sessions'', ''t_priv:k'')')$$,
                 '42501', NULL, 'plain role: get refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT sessioncache.put(''sessions'', ''t_priv:p'', ''{}'')')$$,
                 '42501', NULL, 'plain role: put refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT sessioncache.delete(''sessions'', ''t_priv:k'')')$$,
                 '42501', NULL, 'plain role: delete refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT * FROM sessioncache.join(''regress_sc'', ''n'')')$$,
                 '42501', NULL, 'plain role: join refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT * FROM sessioncache.cache_stats')$$,
                 '42501', NULL, 'plain role: cache_stats refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT * FROM sessioncache.entries')$$,
                 '42501', NULL, 'plain role: entries refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT * FROM sessioncache.caches')$$,
                 '42501', NULL, 'plain role: caches refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT * FROM sessioncache.durable_entries')$$,
                 '42501', NULL, 'plain role: durable_entries refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT sessioncache.define_cache(''t_priv.x'')')$$,
                 '42501', NULL, 'plain role: define_cache refused');
-- the function privileges, as the catalog says
SELECT ok(NOT has_function_privilege('regress_sc_plain', p.oid, 'EXECUTE'),
          'plain role cannot execute ' || p.oid::regprocedure::text)
FROM pg_proc p WHERE p.pronamespace = 'sessioncache'::regnamespace
ORDER BY p.oid::regprocedure::text;

------------------------------------------------------------------------
-- sessioncache_app: the entry and membership functions
------------------------------------------------------------------------
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.put(''sessions'', ''t_priv:a'', ''{"a": 1}'', ''t_priv_user'')')$$,
                'app: put');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.put(''auth_sessions'', ''t_priv:a'', ''{"a": 1}'', ''t_priv_user'', ''1 hour'', ''2 hours'')')$$,
                'app: put with timeouts, memory-only cache');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.get(''sessions'', ''t_priv:a'')')$$,
                'app: get');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.get(''sessions'', ''t_priv:a'', true)')$$,
                'app: get with touch');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.touch(''sessions'', ''t_priv:a'')')$$,
                'app: touch');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.patch(''sessions'', ''t_priv:a'', ''{"b": 2}'')')$$,
                'app: patch');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.incr(''sessions'', ''t_priv:a'', ''n'', 2)')$$,
                'app: incr');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT * FROM sessioncache.entry_info(''sessions'', ''t_priv:a'')')$$,
                'app: entry_info');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT * FROM sessioncache.user_entries(''sessions'', ''t_priv_user'')')$$,
                'app: user_entries');
-- what the app wrote is there, in memory and in the durable table
SELECT is(sessioncache.get('sessions', 't_priv:a'), '{"a": 1, "b": 2, "n": 2}'::jsonb,
          'the app''s writes took effect');
SELECT is((SELECT value FROM sessioncache.durable_entries WHERE key = 't_priv:a'),
          '{"a": 1, "b": 2, "n": 2}'::jsonb, 'the app''s writes reached the durable table');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.delete(''sessions'', ''t_priv:a'')')$$,
                'app: delete');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.delete_user(''auth_sessions'', ''t_priv_user'')')$$,
                'app: delete_user');
SELECT is((SELECT count(*) FROM sessioncache.durable_entries WHERE key = 't_priv:a'), 0::bigint,
          'the app''s delete reached the durable table');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT * FROM sessioncache.join(''regress_sc'', ''node1'', ''10.0.0.1:7800'')')$$,
                'app: join');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT * FROM sessioncache.view(''regress_sc'')')$$,
                'app: view');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app',
                  'SELECT sessioncache.heartbeat(v.member_id) FROM sessioncache.view(''regress_sc'') v')$$,
                'app: heartbeat');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app',
                  'SELECT sessioncache.leave(v.member_id) FROM sessioncache.view(''regress_sc'') v')$$,
                'app: leave');
SELECT is((SELECT count(*) FROM sessioncache.view('regress_sc')), 0::bigint, 'the app''s leave took effect');
-- but not the owner's functions
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.define_cache(''t_priv.x'')')$$,
                 '42501', NULL, 'app: define_cache refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.drop_cache(''sessions'')')$$,
                 '42501', NULL, 'app: drop_cache refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.reset_stats()')$$,
                 '42501', NULL, 'app: reset_stats refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache._install()')$$,
                 '42501', NULL, 'app: _install refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache._notify_view(''regress_sc'', 1)')$$,
                 '42501', NULL, 'app: _notify_view refused');
-- nor the tables behind them
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app',
                   'INSERT INTO sessioncache.durable_entries VALUES (1, ''t_priv:x'', NULL, ''{}'', now(), now(), NULL, NULL, 1, now())')$$,
                 '42501', NULL, 'app: INSERT into durable_entries refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'UPDATE sessioncache.durable_entries SET value = ''{}''')$$,
                 '42501', NULL, 'app: UPDATE of durable_entries refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'DELETE FROM sessioncache.durable_entries')$$,
                 '42501', NULL, 'app: DELETE from durable_entries refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'TRUNCATE sessioncache.durable_entries')$$,
                 '42501', NULL, 'app: TRUNCATE of durable_entries refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'UPDATE sessioncache.cache_defs SET max_per_user = NULL')$$,
                 '42501', NULL, 'app: UPDATE of cache_defs refused');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'UPDATE sessioncache.cluster_members SET lease = ''1 day''')$$,
                 '42501', NULL, 'app: UPDATE of cluster_members refused');
SELECT ok(NOT has_table_privilege('sessioncache_app', 'sessioncache.durable_entries',
                                  'INSERT, UPDATE, DELETE, TRUNCATE'),
          'sessioncache_app holds no write privilege on durable_entries');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'sessioncache'::regnamespace
      AND p.proname IN ('define_cache', 'drop_cache', 'reset_stats')
      AND (has_function_privilege('sessioncache_app', p.oid, 'EXECUTE') OR
           has_function_privilege('sessioncache_monitor', p.oid, 'EXECUTE') OR
           has_function_privilege('pg_monitor', p.oid, 'EXECUTE'))
$$, 'define_cache, drop_cache and reset_stats are the owner''s');
SELECT is_empty($$
    SELECT p FROM unnest(ARRAY['put', 'get', 'touch', 'patch', 'incr', 'delete', 'delete_user',
                               'user_entries', 'entry_info', 'join', 'heartbeat', 'leave', 'view']) p
    WHERE NOT EXISTS (SELECT FROM pg_proc f WHERE f.pronamespace = 'sessioncache'::regnamespace
                      AND f.proname = p AND has_function_privilege('sessioncache_app', f.oid, 'EXECUTE'))
$$, 'sessioncache_app may execute every entry and membership function');

------------------------------------------------------------------------
-- sessioncache_monitor and pg_monitor: the views only
------------------------------------------------------------------------
SELECT lives_ok(format($$SELECT pg_temp.as_role(%L, 'SELECT count(*) FROM sessioncache.%I')$$, r, v),
                r || ': ' || v)
FROM unnest(ARRAY['regress_sc_mon', 'regress_sc_pgmon']) r,
     unnest(ARRAY['caches', 'cache_stats', 'memory', 'memory_partitions', 'entries', 'workers', 'members']) v
ORDER BY r, v;
SELECT throws_ok(format($$SELECT pg_temp.as_role(%L, %L)$$, r, q), '42501', NULL, r || ': ' || q || ' refused')
FROM unnest(ARRAY['regress_sc_mon', 'regress_sc_pgmon']) r,
     unnest(ARRAY['SELECT sessioncache.get(''sessions'', ''t_priv:k'')',
                  'SELECT sessioncache.put(''sessions'', ''t_priv:m'', ''{}'')',
                  'SELECT * FROM sessioncache.entry_info(''sessions'', ''t_priv:k'')',
                  'SELECT sessioncache.reset_stats()',
                  'SELECT sessioncache.define_cache(''t_priv.x'')',
                  'SELECT * FROM sessioncache.join(''regress_sc'', ''n'')',
                  'SELECT count(*) FROM sessioncache.durable_entries',
                  'SELECT count(*) FROM sessioncache.cluster_members']) q
ORDER BY r, q;
-- the entries view shows no values, so reading it reveals no session data
SELECT hasnt_column('sessioncache', 'entries', 'value', 'the entries view has no value column');

------------------------------------------------------------------------
-- SECURITY DEFINER functions pin their search_path
------------------------------------------------------------------------
SELECT isnt_empty($$
    SELECT 1 FROM pg_proc WHERE pronamespace = 'sessioncache'::regnamespace AND prosecdef
$$, 'there are SECURITY DEFINER functions to check');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'sessioncache'::regnamespace AND p.prosecdef
      AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
$$, 'every SECURITY DEFINER function sets search_path');
SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p, unnest(p.proconfig) c
    WHERE p.pronamespace = 'sessioncache'::regnamespace AND p.prosecdef
      AND c LIKE 'search\_path=%'
      AND (c NOT LIKE '%pg\_temp%' OR
           EXISTS (SELECT FROM unnest(string_to_array(substr(c, 13), ',')) s
                   WHERE trim(s) NOT IN ('pg_catalog', 'pg_temp', 'sessioncache')))
$$, 'their search_path holds only trusted schemas and puts pg_temp in it explicitly');
SELECT is((SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
            WHERE p.pronamespace = 'sessioncache'::regnamespace AND p.prosecdef),
          ARRAY['_jgroups_ping_delete', '_jgroups_ping_insert', 'channel_secret', 'heartbeat', 'join', 'leave', 'view'],
          'the SECURITY DEFINER functions');

-- the channel secret (issue 12): the app role through channel_secret() only
SELECT is((SELECT octet_length(s) FROM sessioncache.channel_secret() s), 32, 'the channel secret has 32 bytes');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT sessioncache.channel_secret()')$$,
                'app: channel_secret()');
SELECT throws_ok(format($$SELECT pg_temp.as_role(%L, %L)$$, r, q), '42501', NULL, r || ': ' || q || ' refused')
FROM unnest(ARRAY['regress_sc_plain', 'regress_sc_mon', 'regress_sc_pgmon', 'regress_sc_app']) r,
     unnest(ARRAY['SELECT sessioncache.channel_secret()',
                  'SELECT secret FROM sessioncache.channel_key']) q
WHERE NOT (r = 'regress_sc_app' AND q LIKE '%channel_secret()%')
ORDER BY r, q;
SELECT is((SELECT array_agg(a.grantee::regrole::text ORDER BY 1)
             FROM pg_proc p, aclexplode(p.proacl) a
            WHERE p.oid = 'sessioncache.channel_secret()'::regprocedure
              AND a.grantee <> p.proowner),
          ARRAY['sessioncache_app'], 'channel_secret() is granted to sessioncache_app alone');

-- JGroups JDBC_PING (issue 14): the app role through the view only
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'INSERT INTO sessioncache.jgroups_ping (own_addr, cluster_name, ping_data) VALUES (''t_priv_addr'', ''t_priv_jg'', ''\x01'')')$$,
                'app: JDBC_PING insert through sessioncache.jgroups_ping');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'SELECT ping_data FROM sessioncache.jgroups_ping WHERE cluster_name = ''t_priv_jg''')$$,
                'app: JDBC_PING select');
SELECT lives_ok($$SELECT pg_temp.as_role('regress_sc_app', 'DELETE FROM sessioncache.jgroups_ping WHERE own_addr = ''t_priv_addr'' AND cluster_name = ''t_priv_jg''')$$,
                'app: JDBC_PING delete');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_app', 'UPDATE sessioncache.jgroups_pingdata SET ping_data = NULL')$$,
                 '42501', NULL, 'app: no direct write of jgroups_pingdata');
SELECT throws_ok($$SELECT pg_temp.as_role('regress_sc_plain', 'SELECT * FROM sessioncache.jgroups_ping')$$,
                 '42501', NULL, 'plain role: jgroups_ping refused');
SELECT is((SELECT count(*) FROM sessioncache.members WHERE cluster = 't_priv_jg' AND node = 't_priv_addr'),
          1::bigint, 'the JDBC_PING node is a sessioncache member');
SELECT sessioncache.leave(member_id) FROM sessioncache.members WHERE cluster = 't_priv_jg';

------------------------------------------------------------------------
-- the durable table refuses direct changes, even from a superuser
------------------------------------------------------------------------
SELECT throws_ok($$UPDATE sessioncache.durable_entries SET value = '{"forged": true}' WHERE key = 't_priv:k'$$,
                 '42501', NULL, 'superuser: UPDATE of durable_entries refused by the guard');
SELECT throws_ok($$INSERT INTO sessioncache.durable_entries
                   SELECT cache_id, 't_priv:forged', NULL, '{}', now(), now(), NULL, NULL, 1, now() + interval '1 hour'
                   FROM sessioncache.durable_entries WHERE key = 't_priv:k'$$,
                 '42501', NULL, 'superuser: INSERT into durable_entries refused by the guard');
SELECT throws_ok($$DELETE FROM sessioncache.durable_entries WHERE key = 't_priv:k'$$,
                 '42501', NULL, 'superuser: DELETE from durable_entries refused by the guard');
SELECT throws_ok($$TRUNCATE sessioncache.durable_entries$$,
                 '42501', NULL, 'superuser: TRUNCATE of durable_entries refused by the guard');
SELECT throws_ok($$UPDATE sessioncache.durable_entries SET value = value WHERE false$$,
                 '42501', NULL, 'superuser: even an UPDATE of no row is refused');
SELECT is(sessioncache.get('sessions', 't_priv:k'), '{"v": 1}'::jsonb, 'the entry is unchanged');
SELECT is((SELECT value FROM sessioncache.durable_entries WHERE key = 't_priv:k'), '{"v": 1}'::jsonb,
          'the row is unchanged');
SELECT is((SELECT count(*) FROM sessioncache.durable_entries WHERE key = 't_priv:forged'), 0::bigint,
          'no forged row');
-- sessioncache itself still writes it
SELECT ok(sessioncache.put('sessions', 't_priv:k', '{"v": 2}') > 0, 'put after the refusals');
SELECT is((SELECT value FROM sessioncache.durable_entries WHERE key = 't_priv:k'), '{"v": 2}'::jsonb,
          'the row follows the put');

SELECT * FROM finish();
\pset format aligned
\pset tuples_only off

-- clean up
SELECT sessioncache.delete('sessions', 't_priv:k');
SELECT count(*) FROM sessioncache.durable_entries WHERE key LIKE 't\_priv:%';
DROP ROLE regress_sc_plain;
DROP ROLE regress_sc_app;
DROP ROLE regress_sc_mon;
DROP ROLE regress_sc_pgmon;
DROP EXTENSION pgtap;
