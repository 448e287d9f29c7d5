-- Writes are transactional (API.md, "Transactions"): a transaction reads
-- its own writes, others see them only after commit, a rollback or a
-- rolled-back savepoint leaves no trace in the cache or the durable table,
-- and PREPARE TRANSACTION after a cache write is refused.  A second session
-- (dblink) plays "another session".
\set VERBOSITY sqlstate
CREATE EXTENSION dblink;
SELECT dblink_connect('other', 'dbname=' || current_database());
-- what the other session sees of a key: its value, and whether the row exists
CREATE FUNCTION pg_temp.other_get(c text, k text) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT v::jsonb FROM dblink('other',
        format('SELECT sessioncache.get(%L, %L)::text', c, k)) AS t(v text)
$$;
CREATE FUNCTION pg_temp.other_rows(c text, k text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT n FROM dblink('other',
        format('SELECT count(*) FROM sessioncache.durable_entries d
                JOIN sessioncache.cache_defs c ON c.id = d.cache_id
                WHERE c.name = %L AND d.key = %L', c, k)) AS t(n bigint)
$$;
-- the row as this session sees it
CREATE FUNCTION pg_temp.my_rows(c text, k text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM sessioncache.durable_entries d
    JOIN sessioncache.cache_defs cd ON cd.id = d.cache_id
    WHERE cd.name = c AND d.key = k
$$;

SELECT sessioncache.define_cache('t_tx.d', true);
SELECT sessioncache.define_cache('t_tx.m', false);
CREATE TEMP TABLE caches(c text PRIMARY KEY);
INSERT INTO caches VALUES ('t_tx.d'), ('t_tx.m');
CREATE TEMP TABLE seen(c text, k text, version bigint);

------------------------------------------------------------------------
-- read your own writes; others see them after commit
------------------------------------------------------------------------
BEGIN;
INSERT INTO seen SELECT c, 'k1', sessioncache.put(c, 'k1', '{"a": 1}', 'u1') FROM caches;
SELECT c, sessioncache.get(c, 'k1') AS mine, pg_temp.other_get(c, 'k1') AS others
FROM caches ORDER BY c;
SELECT s.c, i.version = s.version AS own_version, i.user_id
FROM seen s, sessioncache.entry_info(s.c, 'k1') i ORDER BY s.c;
SELECT c, u.key, u.value FROM caches, sessioncache.user_entries(c, 'u1') u ORDER BY c;
SELECT c, sessioncache.patch(c, 'k1', '{"b": 2}') FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 'k1', 'n', 5) FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'k1') AS mine, pg_temp.other_get(c, 'k1') AS others
FROM caches ORDER BY c;
SELECT c, sessioncache.touch(c, 'k1') FROM caches ORDER BY c;
-- the durable row is there for this transaction only
SELECT c, pg_temp.my_rows(c, 'k1') AS mine, pg_temp.other_rows(c, 'k1') AS others
FROM caches ORDER BY c;
-- shared memory does not have it yet
SELECT count(*) FROM sessioncache.entries WHERE cache LIKE 't\_tx.%';
COMMIT;
SELECT c, sessioncache.get(c, 'k1') AS mine, pg_temp.other_get(c, 'k1') AS others
FROM caches ORDER BY c;
SELECT c, pg_temp.my_rows(c, 'k1') AS mine, pg_temp.other_rows(c, 'k1') AS others
FROM caches ORDER BY c;
SELECT s.c, i.version > s.version AS later_version, i.user_id
FROM seen s, sessioncache.entry_info(s.c, 'k1') i ORDER BY s.c;
SELECT cache, key FROM sessioncache.entries WHERE cache LIKE 't\_tx.%' ORDER BY cache, key;

-- a delete too: gone for us at once, for the others at commit
BEGIN;
SELECT c, sessioncache.delete(c, 'k1') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'k1') AS mine, pg_temp.other_get(c, 'k1') AS others
FROM caches ORDER BY c;
SELECT c, (SELECT count(*) FROM sessioncache.entry_info(c, 'k1')) AS info,
       (SELECT count(*) FROM sessioncache.user_entries(c, 'u1')) AS user_entries,
       sessioncache.touch(c, 'k1') AS touch, sessioncache.delete(c, 'k1') AS delete_again
FROM caches ORDER BY c;
SELECT c, pg_temp.my_rows(c, 'k1') AS mine, pg_temp.other_rows(c, 'k1') AS others
FROM caches ORDER BY c;
COMMIT;
SELECT c, sessioncache.get(c, 'k1') AS mine, pg_temp.other_get(c, 'k1') AS others
FROM caches ORDER BY c;
SELECT c, pg_temp.my_rows(c, 'k1') AS mine, pg_temp.other_rows(c, 'k1') AS others
FROM caches ORDER BY c;

-- several writes of one key in a transaction: the last one counts
BEGIN;
SELECT c, sessioncache.put(c, 'k2', '{"v": 1}') > 0 AS put1,
       sessioncache.put(c, 'k2', '{"v": 2}') > 0 AS put2 FROM caches ORDER BY c;
SELECT c, sessioncache.delete(c, 'k2') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'k2') FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 'k2', 'v', 3) FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'k2') FROM caches ORDER BY c;
COMMIT;
SELECT c, sessioncache.get(c, 'k2'), pg_temp.other_get(c, 'k2') AS others FROM caches ORDER BY c;
BEGIN;
SELECT c, sessioncache.put(c, 'k3', '{"v": 1}') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.delete(c, 'k3') FROM caches ORDER BY c;
COMMIT;
SELECT c, sessioncache.get(c, 'k3') IS NULL AS absent, pg_temp.my_rows(c, 'k3') AS rows
FROM caches ORDER BY c;

------------------------------------------------------------------------
-- a rollback leaves nothing
------------------------------------------------------------------------
SELECT c, sessioncache.put(c, 'keep', '{"v": "kept"}', 'u2') > 0 AS put,
       sessioncache.put(c, 'doomed', '{"v": "doomed"}', 'u2') > 0 AS put2
FROM caches ORDER BY c;
DELETE FROM seen;
INSERT INTO seen SELECT c, k, i.version
FROM caches, (VALUES ('keep'), ('doomed'), ('k2')) keys(k), sessioncache.entry_info(c, k) i;
CREATE TEMP TABLE stats_before AS SELECT * FROM sessioncache.cache_stats WHERE cache LIKE 't\_tx.%';
BEGIN;
SELECT c, sessioncache.put(c, 'new', '{"v": "new"}', 'u2') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.put(c, 'keep', '{"v": "overwritten"}') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.patch(c, 'k2', '{"patched": true}') FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 'k2', 'v', 100) FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 'counter', 'n') FROM caches ORDER BY c;
SELECT c, sessioncache.delete(c, 'doomed') FROM caches ORDER BY c;
SELECT c, sessioncache.touch(c, 'keep') FROM caches ORDER BY c;
SELECT c, sessioncache.delete_user(c, 'u2') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'keep') AS keep, sessioncache.get(c, 'doomed') AS doomed,
       sessioncache.get(c, 'new') AS new, sessioncache.get(c, 'k2') AS k2
FROM caches ORDER BY c;
ROLLBACK;
SELECT c, sessioncache.get(c, 'keep') AS keep, sessioncache.get(c, 'doomed') AS doomed,
       sessioncache.get(c, 'new') AS new, sessioncache.get(c, 'counter') AS counter,
       sessioncache.get(c, 'k2') AS k2
FROM caches ORDER BY c;
-- versions, users and rows as they were
SELECT s.c, s.k, i.version = s.version AS same_version, i.user_id
FROM seen s, sessioncache.entry_info(s.c, s.k) i ORDER BY s.c, s.k;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'u2') u ORDER BY c, u.key;
SELECT c.name, d.key, d.value FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs c ON c.id = d.cache_id
WHERE c.name LIKE 't\_tx.%' ORDER BY c.name, d.key;
SELECT cache, key FROM sessioncache.entries WHERE cache LIKE 't\_tx.%' ORDER BY cache, key;
-- nothing was counted either
SELECT s.cache, s.puts - b.puts AS puts, s.deletes - b.deletes AS deletes,
       s.touches - b.touches AS touches, s.entries - b.entries AS entries
FROM sessioncache.cache_stats s JOIN stats_before b USING (cache) ORDER BY s.cache;

-- an error rolls back the whole transaction
BEGIN;
SELECT c, sessioncache.put(c, 'err', '{}') > 0 AS put FROM caches ORDER BY c;
SELECT 1 / 0;
COMMIT;
SELECT c, sessioncache.get(c, 'err') IS NULL AS absent, pg_temp.my_rows(c, 'err') AS rows
FROM caches ORDER BY c;

------------------------------------------------------------------------
-- savepoints
------------------------------------------------------------------------
BEGIN;
SELECT c, sessioncache.put(c, 'sp1', '{"v": "before"}') > 0 AS put FROM caches ORDER BY c;
SAVEPOINT s1;
SELECT c, sessioncache.put(c, 'sp1', '{"v": "after"}') > 0 AS put,
       sessioncache.put(c, 'sp2', '{"v": "after"}') > 0 AS put2 FROM caches ORDER BY c;
SELECT c, sessioncache.delete(c, 'keep') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 'sp1') AS sp1, sessioncache.get(c, 'sp2') AS sp2,
       sessioncache.get(c, 'keep') AS keep
FROM caches ORDER BY c;
ROLLBACK TO SAVEPOINT s1;
-- the earlier write is kept, the later ones are gone
SELECT c, sessioncache.get(c, 'sp1') AS sp1, sessioncache.get(c, 'sp2') AS sp2,
       sessioncache.get(c, 'keep') AS keep
FROM caches ORDER BY c;
SELECT c, pg_temp.my_rows(c, 'sp1') AS sp1, pg_temp.my_rows(c, 'sp2') AS sp2,
       pg_temp.my_rows(c, 'keep') AS keep
FROM caches ORDER BY c;
-- a released savepoint keeps its writes; nested ones roll back separately
SAVEPOINT s2;
SELECT c, sessioncache.put(c, 'sp3', '{"v": "released"}') > 0 AS put FROM caches ORDER BY c;
SAVEPOINT s3;
SELECT c, sessioncache.put(c, 'sp4', '{"v": "inner"}') > 0 AS put,
       sessioncache.patch(c, 'sp3', '{"inner": true}') IS NOT NULL AS patched
FROM caches ORDER BY c;
ROLLBACK TO SAVEPOINT s3;
RELEASE SAVEPOINT s2;
SELECT c, sessioncache.get(c, 'sp3') AS sp3, sessioncache.get(c, 'sp4') AS sp4
FROM caches ORDER BY c;
-- a rollback to a savepoint taken before everything
SAVEPOINT s4;
SELECT c, sessioncache.delete(c, 'sp1') FROM caches ORDER BY c;
ROLLBACK TO SAVEPOINT s4;
COMMIT;
SELECT c, sessioncache.get(c, 'sp1') AS sp1, sessioncache.get(c, 'sp2') AS sp2,
       sessioncache.get(c, 'sp3') AS sp3, sessioncache.get(c, 'sp4') AS sp4,
       sessioncache.get(c, 'keep') AS keep
FROM caches ORDER BY c;
SELECT c, pg_temp.other_get(c, 'sp1') AS sp1, pg_temp.other_get(c, 'sp2') AS sp2,
       pg_temp.other_get(c, 'sp3') AS sp3, pg_temp.other_get(c, 'sp4') AS sp4
FROM caches ORDER BY c;
SELECT c.name, d.key, d.value FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs c ON c.id = d.cache_id
WHERE c.name = 't_tx.d' AND d.key LIKE 'sp%' ORDER BY d.key;

-- many writes (the transaction indexes them) and a rollback to a savepoint
BEGIN;
SELECT c, count(*) FILTER (WHERE sessioncache.put(c, 'many' || i, jsonb_build_object('i', i)) > 0)
FROM caches, generate_series(1, 40) i GROUP BY c ORDER BY c;
SAVEPOINT s5;
SELECT c, count(*) FILTER (WHERE sessioncache.put(c, 'many' || i, '{"i": "changed"}') > 0)
FROM caches, generate_series(31, 50) i GROUP BY c ORDER BY c;
SELECT c, count(*) FILTER (WHERE sessioncache.delete(c, 'many' || i))
FROM caches, generate_series(1, 10) i GROUP BY c ORDER BY c;
ROLLBACK TO SAVEPOINT s5;
SELECT c, count(*) FILTER (WHERE sessioncache.get(c, 'many' || i) = jsonb_build_object('i', i)) AS intact,
       count(*) FILTER (WHERE sessioncache.get(c, 'many' || i) IS NULL) AS absent
FROM caches, generate_series(1, 50) i GROUP BY c ORDER BY c;
COMMIT;
SELECT c, count(*) FILTER (WHERE sessioncache.get(c, 'many' || i) = jsonb_build_object('i', i)) AS intact,
       count(*) FILTER (WHERE sessioncache.get(c, 'many' || i) IS NULL) AS absent
FROM caches, generate_series(1, 50) i GROUP BY c ORDER BY c;

-- a PL/pgSQL exception block is a subtransaction too
DO $$
BEGIN
    BEGIN
        PERFORM sessioncache.put('t_tx.d', 'plpgsql', '{}');
        PERFORM sessioncache.put('t_tx.m', 'plpgsql', '{}');
        PERFORM sessioncache.delete('t_tx.d', 'keep');
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;
SELECT c, sessioncache.get(c, 'plpgsql') IS NULL AS absent, sessioncache.get(c, 'keep') AS keep
FROM caches ORDER BY c;
SELECT pg_temp.my_rows('t_tx.d', 'plpgsql') AS rows;

------------------------------------------------------------------------
-- PREPARE TRANSACTION
------------------------------------------------------------------------
SHOW max_prepared_transactions;
BEGIN;
SELECT sessioncache.put('t_tx.d', 'prep', '{}') > 0 AS put;
PREPARE TRANSACTION 't_tx_put';
BEGIN;
SELECT sessioncache.put('t_tx.m', 'prep', '{}') > 0 AS put;
PREPARE TRANSACTION 't_tx_put_m';
BEGIN;
SELECT sessioncache.delete('t_tx.d', 'keep');
PREPARE TRANSACTION 't_tx_delete';
BEGIN;
SELECT sessioncache.incr('t_tx.m', 'prep', 'n');
PREPARE TRANSACTION 't_tx_incr';
BEGIN;
SELECT sessioncache.patch('t_tx.m', 'keep', '{"p": 1}') IS NOT NULL AS patched;
PREPARE TRANSACTION 't_tx_patch';
BEGIN;
SELECT sessioncache.delete_user('t_tx.d', 'u2');
PREPARE TRANSACTION 't_tx_delete_user';
-- the refused transactions were rolled back
SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 't\_tx\_%';
SELECT c, sessioncache.get(c, 'prep') IS NULL AS absent, sessioncache.get(c, 'keep') AS keep,
       pg_temp.my_rows(c, 'prep') AS rows
FROM caches ORDER BY c;
-- reading does not prevent it (no temporary object may be touched here:
-- PostgreSQL refuses to prepare that with 0A000 too)
BEGIN;
SELECT sessioncache.get('t_tx.d', 'keep') AS d, sessioncache.get('t_tx.m', 'keep') AS m;
SELECT version > 0 AS info FROM sessioncache.entry_info('t_tx.d', 'keep');
SELECT count(*) FROM sessioncache.user_entries('t_tx.m', 'u2');
PREPARE TRANSACTION 't_tx_read';
SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 't\_tx\_%';
COMMIT PREPARED 't_tx_read';
SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 't\_tx\_%';

------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------
SELECT dblink_disconnect('other');
DROP EXTENSION dblink;
SELECT sessioncache.drop_cache('t_tx.d');
SELECT sessioncache.drop_cache('t_tx.m');
