-- Limits (API.md, "Caches" and "Settings"): per-user limits with the deny
-- and evict_oldest policies; a full shared memory refuses a memory-only put
-- with 53200 and evicts entries of durable caches, which stay readable.
\set VERBOSITY sqlstate
CREATE TEMP TABLE caches(c text PRIMARY KEY);
INSERT INTO caches VALUES ('t_lim.deny_d'), ('t_lim.deny_m');
SELECT sessioncache.define_cache('t_lim.deny_d', true, max_per_user => 3);
SELECT sessioncache.define_cache('t_lim.deny_m', false, max_per_user => 3, per_user_policy => 'deny');

------------------------------------------------------------------------
-- per_user_policy deny: SC002
------------------------------------------------------------------------
SELECT c, sessioncache.put(c, 'a', '{}', 'u') > 0 AS put_a, sessioncache.put(c, 'b', '{}', 'u') > 0 AS put_b,
       sessioncache.put(c, 'c', '{}', 'u') > 0 AS put_c
FROM caches ORDER BY c;
SELECT sessioncache.put('t_lim.deny_d', 'd', '{}', 'u');
SELECT sessioncache.put('t_lim.deny_m', 'd', '{}', 'u');
SELECT sessioncache.incr('t_lim.deny_d', 'd', 'n', 1, 'u');
SELECT sessioncache.incr('t_lim.deny_m', 'd', 'n', 1, 'u');
SELECT c, count(*) FROM caches, sessioncache.user_entries(c, 'u') GROUP BY c ORDER BY c;
SELECT c, sessioncache.get(c, 'd') IS NULL AS not_stored FROM caches ORDER BY c;
-- replacing one of the user's keys is not a new entry
SELECT c, sessioncache.put(c, 'a', '{"again": true}', 'u') > 0 AS replaced,
       sessioncache.patch(c, 'b', '{"p": 1}') IS NOT NULL AS patched,
       sessioncache.incr(c, 'c', 'n') AS incr
FROM caches ORDER BY c;
-- other users, and entries without a user, are not limited by u's count
SELECT c, sessioncache.put(c, 'v1', '{}', 'v') > 0 AS other_user,
       sessioncache.put(c, 'anon1', '{}') > 0 AS anon1, sessioncache.put(c, 'anon2', '{}') > 0 AS anon2,
       sessioncache.put(c, 'anon3', '{}') > 0 AS anon3, sessioncache.put(c, 'anon4', '{}') > 0 AS anon4
FROM caches ORDER BY c;
-- a key of another user (or of none) given to u is a new entry for u
SELECT sessioncache.put('t_lim.deny_d', 'v1', '{}', 'u');
SELECT sessioncache.put('t_lim.deny_m', 'anon1', '{}', 'u');
SELECT c, (SELECT user_id FROM sessioncache.entry_info(c, 'v1')) AS v1_user,
       (SELECT user_id FROM sessioncache.entry_info(c, 'anon1')) AS anon1_user
FROM caches ORDER BY c;
-- after a delete there is room again
SELECT c, sessioncache.delete(c, 'a') AS deleted, sessioncache.put(c, 'd', '{}', 'u') > 0 AS put
FROM caches ORDER BY c;
SELECT sessioncache.put('t_lim.deny_m', 'e', '{}', 'u');
-- expired entries do not count
SELECT c, sessioncache.delete(c, 'd') AS deleted,
       sessioncache.put(c, 'short', '{}', 'u', idle_timeout => '1 millisecond') > 0 AS put
FROM caches ORDER BY c;
SELECT pg_sleep(0.01);
SELECT c, sessioncache.put(c, 'e', '{}', 'u') > 0 AS put FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'u') u ORDER BY c, u.key;
-- the limit counts the transaction's own writes
SELECT c, sessioncache.delete_user(c, 'w') FROM caches ORDER BY c;
BEGIN;
SELECT c, sessioncache.put(c, 'w1', '{}', 'w') > 0 AS w1, sessioncache.put(c, 'w2', '{}', 'w') > 0 AS w2,
       sessioncache.put(c, 'w3', '{}', 'w') > 0 AS w3
FROM caches ORDER BY c;
SELECT sessioncache.put('t_lim.deny_m', 'w4', '{}', 'w');
ROLLBACK;
BEGIN;
SELECT c, sessioncache.put(c, 'w1', '{}', 'w') > 0 AS w1, sessioncache.put(c, 'w2', '{}', 'w') > 0 AS w2,
       sessioncache.put(c, 'w3', '{}', 'w') > 0 AS w3
FROM caches ORDER BY c;
SELECT sessioncache.put('t_lim.deny_d', 'w4', '{}', 'w');
ROLLBACK;
SELECT c, count(*) FROM caches, sessioncache.user_entries(c, 'w') GROUP BY c ORDER BY c;
SELECT sessioncache.drop_cache('t_lim.deny_d');
SELECT sessioncache.drop_cache('t_lim.deny_m');

------------------------------------------------------------------------
-- per_user_policy evict_oldest: the least recently used entries go, in
-- the same transaction
------------------------------------------------------------------------
DELETE FROM caches;
INSERT INTO caches VALUES ('t_lim.ev_d'), ('t_lim.ev_m');
SELECT sessioncache.define_cache('t_lim.ev_d', true, max_per_user => 2, per_user_policy => 'evict_oldest');
SELECT sessioncache.define_cache('t_lim.ev_m', false, max_per_user => 2, per_user_policy => 'evict_oldest');
SELECT c, sessioncache.put(c, 'a', '{"k": "a"}', 'u') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.put(c, 'b', '{"k": "b"}', 'u') > 0 AS put FROM caches ORDER BY c;
-- a is used again: b is now the least recently used
SELECT c, sessioncache.touch(c, 'a') FROM caches ORDER BY c;
SELECT c, i.last_access > j.last_access AS a_used_later
FROM caches, sessioncache.entry_info(c, 'a') i, sessioncache.entry_info(c, 'b') j ORDER BY c;
CREATE TEMP TABLE evicted_before AS
    SELECT cache, evicted_user_limit AS evicted, deletes FROM sessioncache.cache_stats WHERE cache LIKE 't\_lim.ev\_%';
BEGIN;
SELECT c, sessioncache.put(c, 'c', '{"k": "c"}', 'u') > 0 AS put FROM caches ORDER BY c;
-- b is gone at once for this transaction, row included
SELECT c, sessioncache.get(c, 'a') AS get_a, sessioncache.get(c, 'b') AS get_b, sessioncache.get(c, 'c') AS get_c
FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'u') u ORDER BY c, u.key;
SELECT count(*) AS b_rows FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs cd ON cd.id = d.cache_id WHERE cd.name = 't_lim.ev_d' AND d.key = 'b';
-- and comes back if the transaction rolls back
ROLLBACK;
SELECT c, sessioncache.get(c, 'a') AS get_a, sessioncache.get(c, 'b') AS get_b, sessioncache.get(c, 'c') AS get_c
FROM caches ORDER BY c;
-- committed this time
SELECT c, sessioncache.put(c, 'c', '{"k": "c"}', 'u') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'a') AS get_a, sessioncache.get(c, 'b') AS get_b, sessioncache.get(c, 'c') AS get_c
FROM caches ORDER BY c;
SELECT count(*) AS b_rows FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs cd ON cd.id = d.cache_id WHERE cd.name = 't_lim.ev_d' AND d.key = 'b';
-- counted as evicted (by the user limit: evicted_user_limit), not as deleted
SELECT s.cache, s.evicted_user_limit - b.evicted AS evicted, s.deletes - b.deletes AS deletes
FROM sessioncache.cache_stats s JOIN evicted_before b USING (cache) ORDER BY s.cache;
-- incr creating an entry evicts too: now a is the least recently used
SELECT c, sessioncache.get(c, 'c', true) IS NOT NULL AS used FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 'd', 'n', 1, 'u') FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'u') u ORDER BY c, u.key;
-- a lower limit evicts as many as needed at the next new entry
SELECT c, sessioncache.put(c, 'v' || i, '{}', 'v') > 0 AS put
FROM caches, generate_series(1, 2) i ORDER BY c, i;
SELECT sessioncache.define_cache('t_lim.ev_d', true, max_per_user => 1, per_user_policy => 'evict_oldest');
SELECT sessioncache.define_cache('t_lim.ev_m', false, max_per_user => 1, per_user_policy => 'evict_oldest');
SELECT c, sessioncache.put(c, 'v3', '{}', 'v') > 0 AS put FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'v') u ORDER BY c, u.key;
-- other users are untouched
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'u') u ORDER BY c, u.key;
SELECT sessioncache.drop_cache('t_lim.ev_d');
SELECT sessioncache.drop_cache('t_lim.ev_m');

------------------------------------------------------------------------
-- shared memory full, memory-only cache: 53200, with a hint
------------------------------------------------------------------------
-- values as large as allowed, to fill sessioncache.memory quickly
SHOW sessioncache.memory;
SET sessioncache.max_value_size = '1MB';
SELECT sessioncache.define_cache('t_lim.full_m', false);
SELECT sessioncache.define_cache('t_lim.full_d', true);
-- while memory is nearly empty, a value of a quarter of a partition (here
-- 32MB / 32 / 4 = 256kB) fits, in a memory-only cache too
SELECT used_bytes < total_bytes / 4 AS mostly_free FROM sessioncache.memory;
SELECT sessioncache.put('t_lim.full_m', 'largest', jsonb_build_object('s', repeat('x', 200000))) > 0 AS put;
SELECT length(sessioncache.get('t_lim.full_m', 'largest')->>'s') AS length;
SELECT sessioncache.delete('t_lim.full_m', 'largest');
-- a bigger one is refused whatever the free memory: 54000, naming the setting
SELECT sessioncache.put('t_lim.full_m', 'huge', jsonb_build_object('s', repeat('x', 1000000)));
\set VERBOSITY default
SELECT sessioncache.put('t_lim.full_m', 'huge', jsonb_build_object('s', repeat('x', 1000000)));
\set VERBOSITY sqlstate
SELECT sessioncache.put('t_lim.full_m', 'marker', '{"small": true}') > 0 AS put;
CREATE TEMP TABLE fill_result(puts int, sqlstate text, hint text, message text);
DO $$
DECLARE
    n int := 0;
    st text;
    h text;
    m text;
BEGIN
    FOR i IN 1..1000 LOOP
        BEGIN
            PERFORM sessioncache.put('t_lim.full_m', 'big' || i,
                                     jsonb_build_object('i', i, 's', repeat('x', 250000)));
        EXCEPTION WHEN others THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, h = PG_EXCEPTION_HINT, m = MESSAGE_TEXT;
            EXIT;
        END;
        COMMIT;
        n := i;
    END LOOP;
    INSERT INTO fill_result VALUES (n, st, h, m);
END
$$;
SELECT puts > 0 AS some_fit, puts * 250000 < pg_size_bytes(current_setting('sessioncache.memory')) AS within_memory,
       sqlstate, hint LIKE '%sessioncache.memory%' AS hint_names_setting
FROM fill_result;
-- what was stored is all there: a memory-only cache is never evicted
SELECT count(*) FILTER (WHERE (sessioncache.get('t_lim.full_m', 'big' || i)->>'i')::int = i) = f.puts AS all_readable
FROM fill_result f, generate_series(1, f.puts) i GROUP BY f.puts;
SELECT sessioncache.get('t_lim.full_m', 'marker');
SELECT cache, evicted FROM sessioncache.cache_stats WHERE cache = 't_lim.full_m';
-- the failed put left nothing behind
SELECT sessioncache.get('t_lim.full_m', 'big' || (puts + 1)) IS NULL AS absent FROM fill_result;
-- a durable cache still accepts writes: its entries need no memory
SELECT sessioncache.put('t_lim.full_d', 'while-full', '{"ok": true}') > 0 AS put;
SELECT sessioncache.get('t_lim.full_d', 'while-full');
SELECT sessioncache.check_memory();
-- dropping the cache gives the memory back
SELECT sessioncache.drop_cache('t_lim.full_m');
SELECT sessioncache.define_cache('t_lim.full_m', false);
SELECT sessioncache.put('t_lim.full_m', 'big1', jsonb_build_object('s', repeat('x', 250000))) > 0 AS put;
SELECT sessioncache.drop_cache('t_lim.full_m');

------------------------------------------------------------------------
-- shared memory full, durable cache: entries are evicted and stay readable
------------------------------------------------------------------------
SELECT sessioncache.define_cache('t_lim.keep_m', false);
SELECT sessioncache.put('t_lim.keep_m', 'marker', '{"kept": true}') > 0 AS put;
-- about 50MB of values for 32MB of memory
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        PERFORM sessioncache.put('t_lim.full_d', 'big' || i,
                                 jsonb_build_object('i', i, 's', repeat('x', 250000)));
        COMMIT;
    END LOOP;
END
$$;
SELECT cache, evicted > 0 AS evicted, entries < 200 AS not_all_in_memory
FROM sessioncache.cache_stats WHERE cache = 't_lim.full_d';
SELECT count(*) AS rows FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs cd ON cd.id = d.cache_id
WHERE cd.name = 't_lim.full_d' AND d.key LIKE 'big%';
-- entry_info finds every one
SELECT count(*) FILTER (WHERE i.version > 0) AS with_info
FROM generate_series(1, 200) n, sessioncache.entry_info('t_lim.full_d', 'big' || n) i;
CREATE TEMP TABLE reads_before AS
    SELECT hits, misses, fills FROM sessioncache.cache_stats WHERE cache = 't_lim.full_d';
-- every entry reads back whole, evicted or not
SELECT count(*) FILTER (WHERE v->>'i' = i::text AND length(v->>'s') = 250000) AS readable
FROM generate_series(1, 200) i, LATERAL (SELECT sessioncache.get('t_lim.full_d', 'big' || i) AS v) g;
-- twice, in another order
SELECT count(*) FILTER (WHERE v->>'i' = i::text) AS readable_again
FROM generate_series(200, 1, -1) i, LATERAL (SELECT sessioncache.get('t_lim.full_d', 'big' || i) AS v) g;
-- each of the 400 gets is a hit or a miss; evicted entries were filled
-- back from the table, and a get read from the table is a miss, not a hit
SELECT (s.hits + s.misses) - (b.hits + b.misses) AS gets, s.fills > b.fills AS some_filled,
       s.misses - b.misses >= s.fills - b.fills AS fills_counted_as_misses
FROM sessioncache.cache_stats s, reads_before b WHERE s.cache = 't_lim.full_d';
SELECT sessioncache.get('t_lim.full_d', 'while-full');
-- memory-only entries are never the ones evicted
SELECT sessioncache.get('t_lim.keep_m', 'marker');
SELECT used_bytes <= total_bytes AS used_le_total FROM sessioncache.memory;
SELECT sessioncache.check_memory();

-- clean up
RESET sessioncache.max_value_size;
SELECT sessioncache.drop_cache('t_lim.full_d');
SELECT sessioncache.drop_cache('t_lim.keep_m');
SELECT count(*) FROM sessioncache.caches WHERE name LIKE 't\_lim.%';
SELECT sessioncache.check_memory();
