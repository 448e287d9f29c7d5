-- The monitoring views (API.md, "Monitoring views"): cache_stats counters,
-- reset_stats, memory, entries, workers, and check_memory().
\set VERBOSITY sqlstate
-- private caches, so that the counters start at zero; notify off, so that
-- no counter moves behind the test's back
SELECT sessioncache.define_cache('t_views.d', true, notify => false);
SELECT sessioncache.define_cache('t_views.m', false, notify => false);
CREATE TEMP TABLE caches(c text PRIMARY KEY);
INSERT INTO caches VALUES ('t_views.d'), ('t_views.m');
CREATE VIEW pg_temp.counters AS
    SELECT cache, entries, hits, misses, puts, deletes, touches, expired, evicted,
           notifications
    FROM sessioncache.cache_stats WHERE cache LIKE 't\_views.%';

------------------------------------------------------------------------
-- cache_stats
------------------------------------------------------------------------
-- one row per cache, with the documented columns
SELECT name FROM sessioncache.caches EXCEPT SELECT cache FROM sessioncache.cache_stats;
SELECT cache FROM sessioncache.cache_stats EXCEPT SELECT name FROM sessioncache.caches;
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.cache_stats'::regclass AND attnum > 0
  AND attname IN ('cache', 'entries', 'bytes', 'hits', 'misses', 'fills', 'puts',
                  'deletes', 'touches', 'expired', 'evicted', 'notifications',
                  'stats_reset')
ORDER BY attnum;
-- a new cache starts at zero
SELECT * FROM pg_temp.counters ORDER BY cache;
SELECT cache, bytes, fills FROM sessioncache.cache_stats WHERE cache LIKE 't\_views.%' ORDER BY cache;

-- puts
SELECT c, sessioncache.put(c, 'k' || i, jsonb_build_object('i', i), 'u') > 0 AS put
FROM caches, generate_series(1, 3) i ORDER BY c, i;
SELECT * FROM pg_temp.counters ORDER BY cache;
SELECT cache, bytes > 0 AS has_bytes FROM sessioncache.cache_stats
WHERE cache LIKE 't\_views.%' ORDER BY cache;
-- a replace is a put, not a new entry
SELECT c, sessioncache.put(c, 'k1', '{"i": 10}') > 0 AS put FROM caches ORDER BY c;
-- patch and incr write too
SELECT c, sessioncache.patch(c, 'k2', '{"p": 1}') IS NOT NULL AS patched,
       sessioncache.incr(c, 'k4', 'n') AS incr FROM caches ORDER BY c;
SELECT * FROM pg_temp.counters ORDER BY cache;
-- hits and misses
SELECT c, sessioncache.get(c, 'k1') IS NOT NULL AS hit1, sessioncache.get(c, 'k2') IS NOT NULL AS hit2,
       sessioncache.get(c, 'nope') IS NULL AS miss
FROM caches ORDER BY c;
SELECT * FROM pg_temp.counters ORDER BY cache;
-- touches: touch() and get(touch => true); a touch of nothing counts nothing
SELECT c, sessioncache.touch(c, 'k1') AS touch, sessioncache.get(c, 'k2', true) IS NOT NULL AS hit,
       sessioncache.touch(c, 'nope') AS touch_nothing
FROM caches ORDER BY c;
SELECT * FROM pg_temp.counters ORDER BY cache;
-- deletes; a delete of nothing counts nothing
SELECT c, sessioncache.delete(c, 'k3') AS deleted, sessioncache.delete(c, 'nope') AS deleted_nothing
FROM caches ORDER BY c;
SELECT c, sessioncache.delete_user(c, 'u') FROM caches ORDER BY c;
SELECT * FROM pg_temp.counters ORDER BY cache;
-- rolled-back work counts nothing
BEGIN;
SELECT c, sessioncache.put(c, 'rb', '{}') > 0 AS put, sessioncache.delete(c, 'k4') AS deleted,
       sessioncache.touch(c, 'k4') AS touched
FROM caches ORDER BY c;
ROLLBACK;
SELECT * FROM pg_temp.counters ORDER BY cache;
-- bytes follow the entries
CREATE TEMP TABLE bytes_before AS
    SELECT cache, bytes FROM sessioncache.cache_stats WHERE cache LIKE 't\_views.%';
SELECT c, sessioncache.put(c, 'big', jsonb_build_object('s', repeat('x', 10000))) > 0 AS put
FROM caches ORDER BY c;
SELECT s.cache, s.bytes - b.bytes > 10000 AS grew
FROM sessioncache.cache_stats s JOIN bytes_before b USING (cache) ORDER BY s.cache;
SELECT c, sessioncache.delete(c, 'big') FROM caches ORDER BY c;
SELECT s.cache, s.bytes = b.bytes AS back
FROM sessioncache.cache_stats s JOIN bytes_before b USING (cache) ORDER BY s.cache;

------------------------------------------------------------------------
-- reset_stats zeroes the counters, not the gauges
------------------------------------------------------------------------
CREATE TEMP TABLE reset_before AS
    SELECT cache, entries, bytes, stats_reset FROM sessioncache.cache_stats;
SELECT pg_sleep(0.01);
SELECT sessioncache.reset_stats();
SELECT * FROM pg_temp.counters ORDER BY cache;
SELECT cache, fills FROM sessioncache.cache_stats WHERE cache LIKE 't\_views.%' ORDER BY cache;
SELECT bool_and(s.entries = b.entries AND s.bytes = b.bytes) AS gauges_kept,
       bool_and(s.stats_reset > b.stats_reset) AS reset_moved,
       count(DISTINCT s.stats_reset) AS one_reset_time
FROM sessioncache.cache_stats s JOIN reset_before b USING (cache)
WHERE s.cache LIKE 't\_views.%';
SELECT bool_and(stats_reset <= now()) AS not_in_future FROM sessioncache.cache_stats;
-- counting starts again
SELECT c, sessioncache.get(c, 'k1') IS NOT NULL AS hit FROM caches ORDER BY c;
SELECT * FROM pg_temp.counters ORDER BY cache;

------------------------------------------------------------------------
-- memory
------------------------------------------------------------------------
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.memory'::regclass AND attnum > 0
  AND attname IN ('total_bytes', 'used_bytes', 'entries', 'capacity_entries')
ORDER BY attnum;
SELECT count(*) FROM sessioncache.memory;
SELECT total_bytes > 0 AS has_total,
       total_bytes <= pg_size_bytes(current_setting('sessioncache.memory')) AS within_setting,
       used_bytes > 0 AS has_used, used_bytes <= total_bytes AS used_le_total,
       entries >= 0 AS entries_ok, capacity_entries > 0 AS has_capacity
FROM sessioncache.memory;
-- the entries are those of the caches, and those the entries view lists
SELECT (SELECT entries FROM sessioncache.memory) =
       (SELECT sum(entries) FROM sessioncache.cache_stats) AS entries_match_stats;
SELECT (SELECT sum(entries) FROM sessioncache.cache_stats) =
       (SELECT count(*) FROM sessioncache.entries) AS stats_match_entries_view;
-- entries take memory, and give it back
CREATE TEMP TABLE mem_before AS SELECT * FROM sessioncache.memory;
SELECT count(*) FILTER (WHERE sessioncache.put('t_views.m', 'mem' || i,
                               jsonb_build_object('s', repeat('x', 10000))) > 0) AS puts
FROM generate_series(1, 100) i;
SELECT m.used_bytes - b.used_bytes > 100 * 10000 AS used_grew,
       m.entries - b.entries AS new_entries, m.used_bytes <= m.total_bytes AS used_le_total
FROM sessioncache.memory m, mem_before b;
SELECT (SELECT entries FROM sessioncache.memory) =
       (SELECT sum(entries) FROM sessioncache.cache_stats) AS entries_match_stats;
SELECT count(*) FILTER (WHERE sessioncache.delete('t_views.m', 'mem' || i)) AS deletes
FROM generate_series(1, 100) i;
SELECT m.used_bytes - b.used_bytes < 10000 AS used_back, m.entries - b.entries AS new_entries
FROM sessioncache.memory m, mem_before b;

------------------------------------------------------------------------
-- entries: every live entry, without its value
------------------------------------------------------------------------
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.entries'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;
SELECT c, sessioncache.put(c, 'e1', '{"secret": "not shown"}', 'eve', '1 hour', '2 hours') > 0 AS put
FROM caches ORDER BY c;
SELECT cache, key, user_id, durable, version > 0 AS has_version
FROM sessioncache.entries WHERE cache LIKE 't\_views.%' ORDER BY cache, key;
SELECT cache, key, created_at = last_access AS fresh,
       expires_at = last_access + interval '1 hour' AS expiry_ok
FROM sessioncache.entries WHERE cache LIKE 't\_views.%' AND key = 'e1' ORDER BY cache;
-- it agrees with entry_info
SELECT e.cache, e.key,
       (e.user_id, e.created_at, e.last_access, e.expires_at, e.version, e.durable) IS NOT DISTINCT FROM
       (i.user_id, i.created_at, i.last_access, i.expires_at, i.version, i.durable) AS same
FROM sessioncache.entries e, sessioncache.entry_info(e.cache, e.key) i
WHERE e.cache LIKE 't\_views.%' ORDER BY e.cache, e.key;
-- an expired entry is not listed
SELECT c, sessioncache.put(c, 'gone', '{}', NULL, '1 millisecond') > 0 AS put FROM caches ORDER BY c;
SELECT pg_sleep(0.01);
SELECT count(*) FROM sessioncache.entries WHERE cache LIKE 't\_views.%' AND key = 'gone';

------------------------------------------------------------------------
-- workers
------------------------------------------------------------------------
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.workers'::regclass AND attnum > 0
  AND attname IN ('name', 'pid', 'last_run', 'runs', 'items', 'errors')
ORDER BY attnum;
SELECT name FROM sessioncache.workers ORDER BY name;
-- the periodic workers run and have a pid; the pre-warm worker runs once
-- after the start and exits (its pid is not checked).  The workers may
-- still be starting when the instance is new: wait for them (bounded).
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) = 4 FROM sessioncache.workers
                   WHERE runs > 0 AND (pid IS NOT NULL OR name = 'prewarm'));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT w.name, w.pid IS NOT NULL AS has_pid, w.runs > 0 AS has_run,
       w.last_run IS NOT NULL AS has_last_run, w.errors
FROM sessioncache.workers w WHERE w.name <> 'prewarm' ORDER BY w.name;
SELECT w.name, a.backend_type
FROM sessioncache.workers w JOIN pg_stat_activity a ON a.pid = w.pid
WHERE w.name <> 'prewarm' ORDER BY w.name;
SELECT runs >= 1 AS has_run, errors FROM sessioncache.workers WHERE name = 'prewarm';
-- the worker's counters move
CREATE TEMP TABLE runs_before AS SELECT name, runs FROM sessioncache.workers;
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT w.runs > b.runs FROM sessioncache.workers w
                   JOIN runs_before b USING (name) WHERE name = 'expiry');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT w.runs > b.runs AS expiry_ran
FROM sessioncache.workers w JOIN runs_before b USING (name) WHERE name = 'expiry';

------------------------------------------------------------------------
-- check_memory
------------------------------------------------------------------------
SELECT sessioncache.check_memory();

-- clean up
SELECT sessioncache.drop_cache('t_views.d');
SELECT sessioncache.drop_cache('t_views.m');
SELECT sessioncache.check_memory();
