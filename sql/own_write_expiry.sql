-- Issue 11, defect 10: inside the writing transaction, an entry whose own
-- timeout has passed is never returned either ("an expired entry is never
-- returned, even before a worker has removed it", API.md).  A put with a
-- 1-microsecond idle timeout or lifespan, a short sleep, then the same
-- transaction's get, touch, patch and entry_info must find nothing, for a
-- durable and a memory-only cache, and incr starts the counter again.
\set VERBOSITY sqlstate
SELECT sessioncache.define_cache('t_own.m', false, '1 hour', '10 hours');
SELECT sessioncache.define_cache('t_own.d', true, '1 hour', '10 hours');

-- own put, idle timeout passed
BEGIN;
SELECT sessioncache.put('t_own.m', 'k1', '{"v": 1}', NULL, '1 microsecond') > 0 AS put_m;
SELECT sessioncache.put('t_own.d', 'k1', '{"v": 1}', NULL, '1 microsecond') > 0 AS put_d;
SELECT pg_sleep(0.05);
SELECT sessioncache.get('t_own.m', 'k1') AS get_m, sessioncache.get('t_own.d', 'k1') AS get_d;
SELECT sessioncache.touch('t_own.m', 'k1') AS touch_m, sessioncache.touch('t_own.d', 'k1') AS touch_d;
SELECT sessioncache.patch('t_own.m', 'k1', '{"p": 1}') AS patch_m,
       sessioncache.patch('t_own.d', 'k1', '{"p": 1}') AS patch_d;
SELECT count(*) AS info_rows FROM sessioncache.entry_info('t_own.m', 'k1')
UNION ALL
SELECT count(*) FROM sessioncache.entry_info('t_own.d', 'k1');
COMMIT;

-- own put, max lifespan passed; incr of an expired counter starts from zero
BEGIN;
SELECT sessioncache.put('t_own.m', 'k2', '{"n": 41}', NULL, NULL, '1 microsecond') > 0 AS put_m;
SELECT sessioncache.put('t_own.d', 'k2', '{"n": 41}', NULL, NULL, '1 microsecond') > 0 AS put_d;
SELECT pg_sleep(0.05);
SELECT sessioncache.get('t_own.m', 'k2') AS get_m, sessioncache.get('t_own.d', 'k2') AS get_d;
SELECT sessioncache.incr('t_own.m', 'k2', 'n') AS incr_m, sessioncache.incr('t_own.d', 'k2', 'n') AS incr_d;
ROLLBACK;

-- and after the commit, for everyone
BEGIN;
SELECT sessioncache.put('t_own.m', 'k3', '{"v": 3}', NULL, '1 microsecond') > 0 AS put_m;
SELECT pg_sleep(0.05);
SELECT sessioncache.get('t_own.m', 'k3') AS in_xact;
COMMIT;
SELECT sessioncache.get('t_own.m', 'k3') AS after_commit;

SELECT sessioncache.drop_cache('t_own.m');
SELECT sessioncache.drop_cache('t_own.d');
