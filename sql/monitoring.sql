-- Issue 12, monitoring that tells the truth: memory_partitions and the
-- headroom columns of memory predict 53200 (a memory-only put fails when
-- its key's partition has no free block big enough, while the total still
-- has room); cache_stats counts memory-pressure and per-user-limit
-- evictions apart (the 1.0 symbol keeps their sum); entries shows no key or
-- user id in clear to a monitor that is not an app role.
\set VERBOSITY sqlstate
SET sessioncache.max_value_size = '1MB';

------------------------------------------------------------------------
-- memory_partitions and memory's headroom columns
------------------------------------------------------------------------
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.memory_partitions'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.memory'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;
SELECT count(*) AS partitions, min(partition) AS first, max(partition) AS last,
       bool_and(used_bytes <= total_bytes AND largest_free_bytes <= total_bytes - used_bytes)
           AS sizes_ok
FROM sessioncache.memory_partitions;
-- summed, the partitions are memory
SELECT m.total_bytes = p.total AS total_match, m.used_bytes = p.used AS used_match,
       m.entries = p.entries AS entries_match
FROM sessioncache.memory m,
     (SELECT sum(total_bytes) AS total, sum(used_bytes) AS used, sum(entries) AS entries
      FROM sessioncache.memory_partitions) p;
-- headroom is the smallest largest free block; fullest_* the fullest partition
SELECT m.headroom_bytes = p.min_free AS headroom_is_min,
       m.fullest_used_fraction = p.max_frac AS fraction_is_max,
       m.fullest_largest_free_bytes = f.largest_free_bytes AS fullest_free_ok,
       m.fullest_used_fraction BETWEEN 0 AND 1 AS fraction_in_range
FROM sessioncache.memory m,
     (SELECT min(largest_free_bytes) AS min_free,
             max(used_bytes::float8 / total_bytes) AS max_frac
      FROM sessioncache.memory_partitions) p,
     sessioncache.memory_partitions f
WHERE f.partition = m.fullest_partition;

-- fill a memory-only cache with 100kB values until 53200: every put tried
-- while headroom_bytes had room for it succeeded, and the failure came when
-- headroom_bytes no longer had, while memory as a whole was not full
SELECT sessioncache.define_cache('t_mon.full_m', false, notify => false);
CREATE TEMP TABLE fill(i int, headroom bigint, fraction float8, used_frac float8, ok bool, st text);
DO $$
DECLARE
    h bigint;
    f float8;
    u float8;
BEGIN
    FOR i IN 1..1000 LOOP
        SELECT headroom_bytes, fullest_used_fraction, used_bytes::float8 / total_bytes
          INTO h, f, u FROM sessioncache.memory;
        BEGIN
            PERFORM sessioncache.put('t_mon.full_m', 'big' || i,
                                     jsonb_build_object('s', repeat('x', 100000)));
            INSERT INTO fill VALUES (i, h, f, u, true, NULL);
        EXCEPTION WHEN others THEN
            INSERT INTO fill VALUES (i, h, f, u, false, SQLSTATE);
            EXIT;
        END;
        COMMIT;
    END LOOP;
END
$$;
SELECT count(*) FILTER (WHERE ok) > 10 AS some_fit, max(st) AS failed_with
FROM fill;
-- an entry of 100kB takes a block of a little more (header, key, jsonb)
SELECT bool_and(ok) AS fits_when_headroom_has_room
FROM fill WHERE headroom >= 100000 + 1024;
SELECT headroom < 100000 + 1024 AS headroom_predicted_it,
       fraction > used_frac AS fullest_is_fuller_than_average,
       used_frac < 0.99 AS total_not_full
FROM fill WHERE NOT ok;
SELECT headroom_bytes < 100000 + 1024 AS headroom_still_short
FROM sessioncache.memory;
SELECT sessioncache.drop_cache('t_mon.full_m');
SELECT headroom_bytes > 100000 + 1024 AS room_again FROM sessioncache.memory;

-- the 1.0 symbol keeps 1.0's shape
CREATE FUNCTION pg_temp.memory_1_0(
    OUT total_bytes bigint, OUT used_bytes bigint, OUT entries bigint,
    OUT capacity_entries bigint)
    RETURNS SETOF record AS '$libdir/sessioncache', 'sc_memory' LANGUAGE C;
SELECT m.total_bytes = o.total_bytes AS same_total
FROM sessioncache.memory m, pg_temp.memory_1_0() o;

------------------------------------------------------------------------
-- evicted (memory pressure) and evicted_user_limit apart
------------------------------------------------------------------------
SELECT attname FROM pg_attribute
WHERE attrelid = 'sessioncache.cache_stats'::regclass AND attnum > 0
  AND attname IN ('evicted', 'evicted_user_limit')
ORDER BY attnum;
SELECT sessioncache.define_cache('t_mon.ev', true, notify => false,
    max_per_user => 2, per_user_policy => 'evict_oldest');
SELECT sessioncache.put('t_mon.ev', 'u' || i, '{}', 'user1') > 0 AS put
FROM generate_series(1, 5) i;
SELECT evicted, evicted_user_limit FROM sessioncache.cache_stats WHERE cache = 't_mon.ev';
-- about 50MB of durable values for 32MB of memory: memory pressure
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        PERFORM sessioncache.put('t_mon.ev', 'big' || i,
                                 jsonb_build_object('s', repeat('x', 250000)));
        COMMIT;
    END LOOP;
END
$$;
SELECT evicted > 0 AS memory_evictions, evicted_user_limit
FROM sessioncache.cache_stats WHERE cache = 't_mon.ev';
-- the 1.0 symbol's evicted is their sum
CREATE FUNCTION pg_temp.cache_stats_1_0(
    OUT cache text, OUT entries bigint, OUT bytes bigint, OUT hits bigint,
    OUT misses bigint, OUT fills bigint, OUT puts bigint, OUT deletes bigint,
    OUT touches bigint, OUT expired bigint, OUT evicted bigint,
    OUT notifications bigint, OUT stats_reset timestamptz)
    RETURNS SETOF record AS '$libdir/sessioncache', 'sc_cache_stats' LANGUAGE C;
SELECT o.evicted = s.evicted + s.evicted_user_limit AS sum_in_1_0
FROM sessioncache.cache_stats s JOIN pg_temp.cache_stats_1_0() o USING (cache)
WHERE cache = 't_mon.ev';
SELECT sessioncache.drop_cache('t_mon.ev');
RESET sessioncache.max_value_size;

------------------------------------------------------------------------
-- entries: no key or user id in clear for a monitor without the app role
------------------------------------------------------------------------
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
RESET client_min_messages;
CREATE ROLE regress_mon_mon IN ROLE sessioncache_monitor;
CREATE ROLE regress_mon_pgmon IN ROLE pg_monitor;
CREATE ROLE regress_mon_both IN ROLE sessioncache_monitor, sessioncache_app;
SELECT sessioncache.define_cache('t_mon.e', true, notify => false);
SELECT sessioncache.put('t_mon.e', 'SECRET-SESSION-ID', '{}', 'alice') > 0 AS put;
-- the owner (here a superuser) sees all, and key_hash is the channel's:
-- the first 16 bytes of HMAC-SHA256(secret, cache NUL key), in hex
SELECT key, user_id,
       key_hash = encode(substr(hmac(convert_to('t_mon.e', 'UTF8') || '\x00'::bytea ||
                                     convert_to('SECRET-SESSION-ID', 'UTF8'),
                                     sessioncache.channel_secret(), 'sha256'), 1, 16), 'hex')
           AS key_hash_ok
FROM sessioncache.entries WHERE cache = 't_mon.e';
CREATE TEMP TABLE seen(r text, key text, user_id text, key_hash text, aged bool);
GRANT INSERT ON seen TO PUBLIC;
SET ROLE regress_mon_mon;
INSERT INTO seen SELECT 'monitor', key, user_id, key_hash, created_at <= now()
FROM sessioncache.entries WHERE cache = 't_mon.e';
SET ROLE regress_mon_pgmon;
INSERT INTO seen SELECT 'pg_monitor', key, user_id, key_hash, created_at <= now()
FROM sessioncache.entries WHERE cache = 't_mon.e';
SET ROLE regress_mon_both;
INSERT INTO seen SELECT 'monitor and app', key, user_id, key_hash, created_at <= now()
FROM sessioncache.entries WHERE cache = 't_mon.e';
RESET ROLE;
SELECT r, key, user_id, length(key_hash) AS key_hash_length, aged FROM seen ORDER BY r;
-- the 1.0 symbol hides them too
CREATE FUNCTION pg_temp.entries_1_0(
    OUT cache text, OUT key text, OUT user_id text, OUT created_at timestamptz,
    OUT last_access timestamptz, OUT expires_at timestamptz,
    OUT durable boolean, OUT version bigint)
    RETURNS SETOF record AS '$libdir/sessioncache', 'sc_entries' LANGUAGE C;
GRANT EXECUTE ON FUNCTION pg_temp.entries_1_0() TO regress_mon_mon;
SET ROLE regress_mon_mon;
SELECT key, user_id FROM pg_temp.entries_1_0() WHERE cache = 't_mon.e';
RESET ROLE;
SELECT key, user_id FROM pg_temp.entries_1_0() WHERE cache = 't_mon.e';
SELECT sessioncache.drop_cache('t_mon.e');
DROP TABLE seen;
DROP FUNCTION pg_temp.entries_1_0();
DROP ROLE regress_mon_mon;
DROP ROLE regress_mon_pgmon;
DROP ROLE regress_mon_both;
DROP EXTENSION pgcrypto;
