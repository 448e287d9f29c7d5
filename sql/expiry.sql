-- Expiry (API.md, "Entries"): an entry expires at
-- least(last_access + idle_timeout, created_at + max_lifespan); an expired
-- entry is never returned, even before a worker has removed it; touches
-- cannot outlive max_lifespan; the expiry worker removes expired entries
-- and the rows of durable caches.  Waits are bounded polls; only booleans
-- are printed.
\set VERBOSITY sqlstate
SELECT sessioncache.define_cache('t_exp.m', false, '1 hour', '2 seconds');
SELECT sessioncache.define_cache('t_exp.d', true, '1 hour', '2 seconds');
CREATE TEMP TABLE caches(c text PRIMARY KEY);
INSERT INTO caches VALUES ('t_exp.d'), ('t_exp.m');
-- the clock just before and just after the puts: every expiry time is
-- checked against the bounds these give, never against a duration
CREATE TEMP TABLE marks(t_before timestamptz, t_after timestamptz);
-- wait (at most 10 s) until the clock has passed t
CREATE FUNCTION pg_temp.wait_until(t timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..200 LOOP
        EXIT WHEN clock_timestamp() > t;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN clock_timestamp() > t;
END
$$;

-- start just after a second boundary: the expiry worker works in whole
-- seconds, so an entry that expires 1 s later is still in shared memory for
-- most of the next second (the result does not depend on it)
SELECT pg_temp.wait_until(date_trunc('second', clock_timestamp()) + interval '1 second');
-- 'idle' expires after 1 s idle (its own timeout), 'life' at the cache's
-- max_lifespan of 2 s
INSERT INTO marks VALUES (clock_timestamp(), NULL);
SELECT c, sessioncache.put(c, 'idle', '{"v": "idle"}', 'u', idle_timeout => '1 second') > 0 AS put,
       sessioncache.put(c, 'life', '{"v": "life"}', 'u') > 0 AS put2
FROM caches ORDER BY c;
UPDATE marks SET t_after = clock_timestamp();

------------------------------------------------------------------------
-- an expired entry is never returned
------------------------------------------------------------------------
SELECT pg_temp.wait_until(t_after + interval '1 second') AS idle_expired FROM marks;
SELECT c, sessioncache.get(c, 'idle') IS NULL AS get,
       sessioncache.get(c, 'idle', true) IS NULL AS get_touch,
       NOT sessioncache.touch(c, 'idle') AS touch,
       sessioncache.patch(c, 'idle', '{"x": 1}') IS NULL AS patch,
       (SELECT count(*) = 0 FROM sessioncache.entry_info(c, 'idle')) AS entry_info,
       (SELECT count(*) = 0 FROM sessioncache.user_entries(c, 'u') WHERE key = 'idle') AS user_entries,
       (SELECT count(*) = 0 FROM sessioncache.entries WHERE cache = c AND key = 'idle') AS entries_view,
       NOT sessioncache.delete(c, 'idle') AS delete
FROM caches ORDER BY c;
-- the patch and the touch did not bring it back
SELECT c, sessioncache.get(c, 'idle') IS NULL AS still_absent FROM caches ORDER BY c;
-- an expired entry does not count towards a user's entries
SELECT c, sessioncache.delete_user(c, 'nobody') AS nobody FROM caches ORDER BY c;
-- writing an expired key starts a new entry: incr counts from zero, put
-- does not keep the old created_at
SELECT c, sessioncache.incr(c, 'idle', 'n') AS incr FROM caches ORDER BY c;
SELECT c, i.created_at > m.t_after AS new_entry
FROM caches, marks m, sessioncache.entry_info(c, 'idle') i ORDER BY c;
SELECT c, sessioncache.get(c, 'idle') FROM caches ORDER BY c;
-- the new entry has the cache's timeouts: max_lifespan decides
SELECT c, i.expires_at = i.created_at + interval '2 seconds' AS capped
FROM caches, sessioncache.entry_info(c, 'idle') i ORDER BY c;

------------------------------------------------------------------------
-- max_lifespan holds however often the entry is touched
------------------------------------------------------------------------
-- get(touch) and touch every 0.1 s, each in its own transaction, until well
-- after 'life' should have expired; compare each result with the clock read
-- around it
CREATE TEMP TABLE touches(c text, t0 timestamptz, t1 timestamptz, got boolean, touched boolean);
DO $$
DECLARE
    t0 timestamptz;
    v jsonb;
    r boolean;
    cc text;
BEGIN
    FOR i IN 1..60 LOOP
        FOREACH cc IN ARRAY ARRAY['t_exp.d', 't_exp.m'] LOOP
            t0 := clock_timestamp();
            v := sessioncache.get(cc, 'life', true);
            r := sessioncache.touch(cc, 'life');
            INSERT INTO touches VALUES (cc, t0, clock_timestamp(), v IS NOT NULL, r);
        END LOOP;
        COMMIT;
        EXIT WHEN clock_timestamp() > (SELECT t_after FROM marks) + interval '2.3 seconds';
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
-- never alive after max_lifespan; never gone before it
SELECT t.c,
       count(*) FILTER (WHERE t.t0 >= m.t_after + interval '2 seconds' AND (t.got OR t.touched))
           AS alive_after_expiry,
       count(*) FILTER (WHERE t.t1 < m.t_before + interval '2 seconds' AND NOT (t.got AND t.touched))
           AS gone_before_expiry,
       bool_or(t.t0 >= m.t_after + interval '2 seconds') AS went_past_expiry
FROM touches t, marks m GROUP BY t.c ORDER BY t.c;
SELECT c, sessioncache.get(c, 'life') IS NULL AS expired,
       (SELECT count(*) = 0 FROM sessioncache.entry_info(c, 'life')) AS no_info
FROM caches ORDER BY c;

------------------------------------------------------------------------
-- the expiry worker removes expired entries, and durable rows
------------------------------------------------------------------------
-- by now everything has expired ('idle' made again by incr 2 s after it
-- was written)
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT sum(entries) = 0 FROM sessioncache.cache_stats
                   WHERE cache IN ('t_exp.d', 't_exp.m'));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT cache, entries, bytes FROM sessioncache.cache_stats
WHERE cache IN ('t_exp.d', 't_exp.m') ORDER BY cache;
-- counted: 'life' and the second 'idle' (the first one too if the worker
-- removed it before the incr replaced it)
SELECT cache, expired >= 2 AS expired_counted FROM sessioncache.cache_stats WHERE cache = 't_exp.m';
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM sessioncache.durable_entries d
                              JOIN sessioncache.cache_defs c ON c.id = d.cache_id
                              WHERE c.name = 't_exp.d');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT count(*) AS durable_rows_left FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs c ON c.id = d.cache_id WHERE c.name = 't_exp.d';
-- a durable cache counts its expired entries as their rows are deleted
SELECT cache, expired >= 2 AS expired_counted FROM sessioncache.cache_stats WHERE cache = 't_exp.d';
SELECT sessioncache.check_memory();

-- clean up
SELECT sessioncache.drop_cache('t_exp.d');
SELECT sessioncache.drop_cache('t_exp.m');
