-- Cache definitions: define_cache, drop_cache, the caches view and the
-- predefined caches (API.md, "Caches").
\set VERBOSITY sqlstate

-- the four predefined caches, Keycloak-shaped
SELECT name, durable, idle_timeout, max_lifespan, max_per_user,
       per_user_policy, notify
FROM sessioncache.caches
WHERE name IN ('sessions', 'offline_sessions', 'auth_sessions', 'login_failures')
ORDER BY name;
SELECT name,
       idle_timeout = CASE name WHEN 'sessions' THEN interval '30 min'
                                WHEN 'offline_sessions' THEN interval '30 days'
                                WHEN 'auth_sessions' THEN interval '30 min'
                                WHEN 'login_failures' THEN interval '12 hours' END AS idle_ok,
       max_lifespan IS NOT DISTINCT FROM
           CASE name WHEN 'sessions' THEN interval '10 hours'
                     WHEN 'offline_sessions' THEN interval '60 days'
                     WHEN 'auth_sessions' THEN interval '30 min'
                     WHEN 'login_failures' THEN NULL END AS max_ok
FROM sessioncache.caches
WHERE name IN ('sessions', 'offline_sessions', 'auth_sessions', 'login_failures')
ORDER BY name;

------------------------------------------------------------------------
-- define_cache: create with the defaults
------------------------------------------------------------------------
SELECT sessioncache.define_cache('t_caches.a');
SELECT name, durable, idle_timeout = interval '30 min' AS idle_30min,
       max_lifespan = interval '10 hours' AS max_10h, max_per_user,
       per_user_policy, notify
FROM sessioncache.caches WHERE name = 't_caches.a';
-- usable at once
SELECT sessioncache.put('t_caches.a', 'k1', '{"v": 1}') > 0 AS put;
SELECT sessioncache.get('t_caches.a', 'k1');

-- alter every parameter but durability (named arguments)
SELECT sessioncache.define_cache('t_caches.a', durable => true,
    idle_timeout => '5 min', max_lifespan => '1 hour', max_per_user => 3,
    per_user_policy => 'evict_oldest', notify => false);
SELECT name, durable, idle_timeout = interval '5 min' AS idle_5min,
       max_lifespan = interval '1 hour' AS max_1h, max_per_user,
       per_user_policy, notify
FROM sessioncache.caches WHERE name = 't_caches.a';
-- still one definition, and the entry survived the alter
SELECT count(*) FROM sessioncache.caches WHERE name = 't_caches.a';
SELECT sessioncache.get('t_caches.a', 'k1');
-- the new timeouts apply to the existing entry
SELECT expires_at - last_access = interval '5 min' AS idle_applies
FROM sessioncache.entry_info('t_caches.a', 'k1');
SELECT sessioncache.define_cache('t_caches.a', idle_timeout => '1 hour',
                                 max_lifespan => '2 hours');
SELECT expires_at - last_access = interval '1 hour' AS idle_applies
FROM sessioncache.entry_info('t_caches.a', 'k1');

-- NULL timeouts mean none; back to 'deny' and no per-user limit
SELECT sessioncache.define_cache('t_caches.a', true, NULL, NULL, NULL, 'deny', true);
SELECT name, durable, idle_timeout, max_lifespan, max_per_user, per_user_policy, notify
FROM sessioncache.caches WHERE name = 't_caches.a';
SELECT expires_at = 'infinity' AS never_expires
FROM sessioncache.entry_info('t_caches.a', 'k1');

-- long timeouts: a max_lifespan of '1 year' is a year (365 or 366 days),
-- whether the cache's or the entry's own
SELECT sessioncache.define_cache('t_caches.y', false, NULL, '1 year');
SELECT max_lifespan = interval '1 year' AS one_year FROM sessioncache.caches WHERE name = 't_caches.y';
SELECT sessioncache.put('t_caches.y', 'cache-year', '{}') > 0 AS put,
       sessioncache.put('t_caches.y', 'entry-year', '{}', NULL, NULL, '1 year') > 0 AS put2,
       sessioncache.put('t_caches.a', 'entry-year', '{}', NULL, NULL, '1 year') > 0 AS put3;
SELECT c, k, i.expires_at - i.created_at > interval '364 days' AS a_year_or_more
FROM (VALUES ('t_caches.y', 'cache-year'), ('t_caches.y', 'entry-year'),
             ('t_caches.a', 'entry-year')) v(c, k),
     sessioncache.entry_info(c, k) i ORDER BY c, k;
SELECT sessioncache.drop_cache('t_caches.y');
SELECT sessioncache.delete('t_caches.a', 'entry-year');

-- positional arguments, a non-durable cache
SELECT sessioncache.define_cache('t_caches.m', false, '1 min', '2 min', 2, 'deny', false);
SELECT name, durable, idle_timeout = interval '1 min' AS idle_1min,
       max_lifespan = interval '2 min' AS max_2min, max_per_user,
       per_user_policy, notify
FROM sessioncache.caches WHERE name = 't_caches.m';
SELECT sessioncache.put('t_caches.m', 'k1', '{"v": 2}') > 0 AS put;
SELECT durable FROM sessioncache.entry_info('t_caches.m', 'k1');
SELECT durable FROM sessioncache.entry_info('t_caches.a', 'k1');

-- durability cannot change
SELECT sessioncache.define_cache('t_caches.a', durable => false);
SELECT sessioncache.define_cache('t_caches.m', durable => true);
SELECT name, durable FROM sessioncache.caches
WHERE name IN ('t_caches.a', 't_caches.m') ORDER BY name;
SELECT sessioncache.get('t_caches.a', 'k1'), sessioncache.get('t_caches.m', 'k1');

------------------------------------------------------------------------
-- names: 1 to 63 bytes of [a-z0-9_.:-]
------------------------------------------------------------------------
SELECT sessioncache.define_cache('t_caches.az09_.:-');
SELECT sessioncache.define_cache('t_caches.' || repeat('x', 54));   -- 63 bytes
SELECT name, octet_length(name) FROM sessioncache.caches
WHERE name LIKE 't\_caches.%' ORDER BY name;
SELECT sessioncache.define_cache('t_caches.' || repeat('x', 55));   -- 64 bytes
SELECT sessioncache.define_cache('');
SELECT sessioncache.define_cache('T_caches');
SELECT sessioncache.define_cache('t caches');
SELECT sessioncache.define_cache('t_caches;drop');
SELECT sessioncache.define_cache('t_caches''q');
SELECT sessioncache.define_cache('t_caches"q');
SELECT sessioncache.define_cache('t_caches/q');
SELECT sessioncache.define_cache('t_cachés');
SELECT sessioncache.define_cache(E't_caches\n');
-- nothing was created by the refused calls
SELECT count(*) FROM sessioncache.caches WHERE name LIKE 't\_caches%';

------------------------------------------------------------------------
-- bad arguments
------------------------------------------------------------------------
SELECT sessioncache.define_cache(NULL);
SELECT sessioncache.define_cache('t_caches.n', NULL);
SELECT sessioncache.define_cache('t_caches.n', per_user_policy => NULL);
SELECT sessioncache.define_cache('t_caches.n', notify => NULL);
SELECT sessioncache.define_cache('t_caches.n', per_user_policy => 'lru');
SELECT sessioncache.define_cache('t_caches.n', per_user_policy => 'DENY');
SELECT sessioncache.define_cache('t_caches.n', per_user_policy => '');
SELECT sessioncache.define_cache('t_caches.n', max_per_user => 0);
SELECT sessioncache.define_cache('t_caches.n', max_per_user => -1);
SELECT sessioncache.define_cache('t_caches.n', idle_timeout => '0');
SELECT sessioncache.define_cache('t_caches.n', idle_timeout => '-1 second');
SELECT sessioncache.define_cache('t_caches.n', max_lifespan => '0');
SELECT sessioncache.define_cache('t_caches.n', max_lifespan => '-1 day');
SELECT sessioncache.define_cache('t_caches.n', max_lifespan => '1 month -31 days');
-- none of them created the cache
SELECT count(*) FROM sessioncache.caches WHERE name = 't_caches.n';
-- a refused alter leaves the definition as it was
SELECT sessioncache.define_cache('t_caches.m', false, '0', '2 min');
SELECT sessioncache.define_cache('t_caches.m', false, '1 min', '2 min', 0);
SELECT name, idle_timeout = interval '1 min' AS idle_1min, max_per_user, notify
FROM sessioncache.caches WHERE name = 't_caches.m';

------------------------------------------------------------------------
-- definitions are transactional
------------------------------------------------------------------------
BEGIN;
SELECT sessioncache.define_cache('t_caches.tx', false);
-- the transaction sees its own new cache
SELECT sessioncache.put('t_caches.tx', 'k', '{"in": "tx"}') > 0 AS put;
SELECT sessioncache.get('t_caches.tx', 'k');
ROLLBACK;
SELECT count(*) FROM sessioncache.caches WHERE name = 't_caches.tx';
SELECT sessioncache.get('t_caches.tx', 'k');

-- an alter rolled back
BEGIN;
SELECT sessioncache.define_cache('t_caches.m', false, '7 min', '8 min', 5, 'evict_oldest', true);
ROLLBACK;
SELECT name, idle_timeout = interval '1 min' AS idle_1min, max_per_user,
       per_user_policy, notify
FROM sessioncache.caches WHERE name = 't_caches.m';

-- a drop rolled back keeps the cache and its entries
BEGIN;
SELECT sessioncache.drop_cache('t_caches.a');
SELECT sessioncache.get('t_caches.a', 'k1');
ROLLBACK;
SELECT sessioncache.get('t_caches.a', 'k1');

-- a define rolled back to a savepoint
BEGIN;
SAVEPOINT s;
SELECT sessioncache.define_cache('t_caches.sp', false);
ROLLBACK TO SAVEPOINT s;
SELECT sessioncache.put('t_caches.sp', 'k', '{}');
ROLLBACK;
SELECT count(*) FROM sessioncache.caches WHERE name = 't_caches.sp';

------------------------------------------------------------------------
-- drop_cache
------------------------------------------------------------------------
SELECT sessioncache.put('t_caches.a', 'k2', '{"v": 3}', 'u1') > 0 AS put;
SELECT sessioncache.put('t_caches.m', 'k2', '{"v": 4}', 'u1') > 0 AS put;
SELECT cache, key FROM sessioncache.entries
WHERE cache LIKE 't\_caches.%' ORDER BY cache, key;
SELECT count(*) AS durable_rows FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs c ON c.id = d.cache_id WHERE c.name = 't_caches.a';
SELECT sessioncache.drop_cache('t_caches.a');
SELECT sessioncache.drop_cache('t_caches.m');
-- the caches and all their entries are gone
SELECT count(*) FROM sessioncache.caches WHERE name IN ('t_caches.a', 't_caches.m');
SELECT count(*) FROM sessioncache.entries WHERE cache IN ('t_caches.a', 't_caches.m');
SELECT count(*) FROM sessioncache.cache_stats WHERE cache IN ('t_caches.a', 't_caches.m');
SELECT count(*) AS durable_rows FROM sessioncache.durable_entries d
WHERE NOT EXISTS (SELECT FROM sessioncache.cache_defs c WHERE c.id = d.cache_id);
-- and using them is 42704
SELECT sessioncache.get('t_caches.a', 'k1');
SELECT sessioncache.put('t_caches.m', 'k1', '{}');
SELECT sessioncache.drop_cache('t_caches.a');
SELECT sessioncache.drop_cache('t_caches.never');
SELECT sessioncache.drop_cache(NULL);
SELECT sessioncache.drop_cache('Bad Name');
-- a cache defined again under the same name starts empty
SELECT sessioncache.define_cache('t_caches.a');
SELECT sessioncache.define_cache('t_caches.m', false);
SELECT sessioncache.get('t_caches.a', 'k1'), sessioncache.get('t_caches.a', 'k2'),
       sessioncache.get('t_caches.m', 'k1'), sessioncache.get('t_caches.m', 'k2');
SELECT count(*) FROM sessioncache.user_entries('t_caches.a', 'u1');
SELECT count(*) FROM sessioncache.user_entries('t_caches.m', 'u1');
SELECT count(*) FROM sessioncache.entries WHERE cache IN ('t_caches.a', 't_caches.m');

-- clean up
SELECT sessioncache.drop_cache(name) FROM sessioncache.caches
WHERE name LIKE 't\_caches.%' ORDER BY name;
SELECT count(*) FROM sessioncache.caches WHERE name LIKE 't\_caches%';
