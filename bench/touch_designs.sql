-- Prototypes of where a touch's idle timer could be kept, in plain SQL
-- (bench/run.sh section touchdesign; see bench/README.md).  Every design
-- receives the same stream of touches (td_touches: N touches of keys spread
-- evenly over the sessions, in flushes of a fixed size, as the writeback
-- worker would collect them) and writes what it would write per flush.
-- run.sh measures the WAL each one writes, with a CHECKPOINT half-way.

-- the touch stream: seq, flush number, session id, time
CREATE TABLE td_touches (seq int PRIMARY KEY, flush int NOT NULL, id int NOT NULL,
                         t timestamptz NOT NULL);

-- td_setup(nsess, ntouch, per_flush, value): the wide table (shaped like
-- sessioncache.durable_entries, with its indexes) and the touch stream
CREATE PROCEDURE td_setup(nsess int, ntouch int, per_flush int, v jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setseed(0.13);
    INSERT INTO td_touches
        SELECT g, (g - 1) / per_flush, 1 + floor(random() * nsess)::int,
               now() + g * interval '2.5 ms'
        FROM generate_series(1, ntouch) g;
    CREATE TABLE td_wide (
        cache_id int NOT NULL, key text NOT NULL, user_id text, value jsonb NOT NULL,
        created_at timestamptz NOT NULL, last_access timestamptz NOT NULL,
        idle_us bigint, max_us bigint, version bigint NOT NULL,
        expires_at timestamptz NOT NULL, PRIMARY KEY (cache_id, key));
    CREATE INDEX td_wide_user ON td_wide (cache_id, user_id) WHERE user_id IS NOT NULL;
    CREATE INDEX td_wide_expiry ON td_wide (expires_at);
    INSERT INTO td_wide
        SELECT 1, 'sess-' || j, 'user-' || (j % 100000), v, now(), now(), NULL, NULL, 1,
               now() + interval '30 minutes'
        FROM generate_series(1, nsess) j;
END
$$;

-- (0) one UPDATE of the wide row per touch, each its own transaction
CREATE PROCEDURE td_plain(first_flush int, last_flush int)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id, t FROM td_touches WHERE flush BETWEEN first_flush AND last_flush ORDER BY seq LOOP
        UPDATE td_wide SET last_access = r.t, expires_at = r.t + interval '30 minutes'
            WHERE cache_id = 1 AND key = 'sess-' || r.id;
        COMMIT;
    END LOOP;
END
$$;

-- (1) today's writeback: per flush, the distinct keys' wide rows, 500 per transaction
CREATE PROCEDURE td_writeback_wide(first_flush int, last_flush int)
LANGUAGE plpgsql AS $$
DECLARE
    f int;
    c int;
BEGIN
    FOR f IN first_flush..last_flush LOOP
        FOR c IN 0..(SELECT (count(DISTINCT id) - 1) / 500 FROM td_touches WHERE flush = f) LOOP
            UPDATE td_wide d SET last_access = v.t, expires_at = v.t + interval '30 minutes'
                FROM (SELECT id, t FROM (SELECT id, max(t) t FROM td_touches WHERE flush = f GROUP BY id) x
                      ORDER BY id OFFSET c * 500 LIMIT 500) v
                WHERE d.cache_id = 1 AND d.key = 'sess-' || v.id AND d.last_access < v.t;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;

-- (a) a narrow row per session: (id, last_access, expires_at), no index but
-- the primary key, so every writeback is a HOT update
CREATE PROCEDURE td_narrow_setup(nsess int, ff int)
LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS td_narrow;
    EXECUTE format('CREATE TABLE td_narrow (id bigint PRIMARY KEY, last_access timestamptz NOT NULL,
                    expires_at timestamptz NOT NULL) WITH (fillfactor = %s)', ff);
    INSERT INTO td_narrow SELECT j, now(), now() + interval '30 minutes' FROM generate_series(1, nsess) j;
END
$$;
CREATE PROCEDURE td_narrow(first_flush int, last_flush int)
LANGUAGE plpgsql AS $$
DECLARE
    f int;
    c int;
BEGIN
    FOR f IN first_flush..last_flush LOOP
        FOR c IN 0..(SELECT (count(DISTINCT id) - 1) / 500 FROM td_touches WHERE flush = f) LOOP
            UPDATE td_narrow d SET last_access = v.t, expires_at = v.t + interval '30 minutes'
                FROM (SELECT id, t FROM (SELECT id, max(t) t FROM td_touches WHERE flush = f GROUP BY id) x
                      ORDER BY id OFFSET c * 500 LIMIT 500) v
                WHERE d.id = v.id AND d.last_access < v.t;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;

-- (c) the narrow rows packed: one row per block of 64 session ids, holding
-- their last_access as int4 seconds since 2020 (rounded down: a timer can
-- only look older).  The expiry time is computed, not stored.  HOT updates.
CREATE FUNCTION td_sec(t timestamptz) RETURNS int LANGUAGE sql IMMUTABLE AS
$$ SELECT floor(extract(epoch FROM t - timestamptz '2020-01-01 00:00+00'))::int $$;
CREATE PROCEDURE td_packed_setup(nsess int, ff int)
LANGUAGE plpgsql AS $$
BEGIN
    DROP TABLE IF EXISTS td_packed;
    EXECUTE format('CREATE TABLE td_packed (block int PRIMARY KEY, la int4[] NOT NULL)
                    WITH (fillfactor = %s)', ff);
    INSERT INTO td_packed SELECT b, array_fill(td_sec(now()), ARRAY[64])
        FROM generate_series(0, (nsess - 1) / 64) b;
END
$$;
CREATE PROCEDURE td_packed(first_flush int, last_flush int)
LANGUAGE plpgsql AS $$
DECLARE
    f int;
    r record;
    a int4[];
    n int;
BEGIN
    FOR f IN first_flush..last_flush LOOP
        n := 0;
        -- per block: the new array, in one UPDATE per block, 500 rows per transaction
        FOR r IN SELECT id / 64 AS block, array_agg(id % 64 ORDER BY id) AS slots,
                        array_agg(td_sec(t) ORDER BY id) AS secs
                 FROM (SELECT id, max(t) t FROM td_touches WHERE flush = f GROUP BY id) x
                 GROUP BY id / 64 ORDER BY 1 LOOP
            SELECT la INTO a FROM td_packed WHERE block = r.block FOR UPDATE;
            FOR i IN 1..array_length(r.slots, 1) LOOP
                a[r.slots[i] + 1] := greatest(a[r.slots[i] + 1], r.secs[i]);
            END LOOP;
            UPDATE td_packed SET la = a WHERE block = r.block;
            n := n + 1;
            IF n % 500 = 0 THEN COMMIT; END IF;
        END LOOP;
        COMMIT;
    END LOOP;
END
$$;

-- (b) an append-only record: per flush, rows of up to 600 (id, seconds)
-- pairs as two arrays, no index, stored inline (no TOAST); folded into
-- td_packed rarely (td_fold: here once, at the end of the window)
CREATE TABLE td_log (flush int NOT NULL, ids int4[] NOT NULL, secs int4[] NOT NULL)
    WITH (toast_tuple_target = 8160);
ALTER TABLE td_log ALTER ids SET STORAGE main, ALTER secs SET STORAGE main;
CREATE PROCEDURE td_log(first_flush int, last_flush int)
LANGUAGE plpgsql AS $$
DECLARE
    f int;
BEGIN
    FOR f IN first_flush..last_flush LOOP
        INSERT INTO td_log
            SELECT f, array_agg(id ORDER BY id), array_agg(td_sec(t) ORDER BY id)
            FROM (SELECT id, t, (row_number() OVER (ORDER BY id) - 1) / 600 AS chunk
                  FROM (SELECT id, max(t) t FROM td_touches WHERE flush = f GROUP BY id) x) y
            GROUP BY chunk;
        COMMIT;
    END LOOP;
END
$$;
CREATE PROCEDURE td_fold()
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    a int4[];
BEGIN
    FOR r IN SELECT id / 64 AS block, array_agg(id % 64 ORDER BY id) AS slots,
                    array_agg(s ORDER BY id) AS secs
             FROM (SELECT u.id, max(u.s) s FROM td_log, unnest(ids, secs) u(id, s) GROUP BY u.id) x
             GROUP BY id / 64 ORDER BY 1 LOOP
        SELECT la INTO a FROM td_packed WHERE block = r.block FOR UPDATE;
        FOR i IN 1..array_length(r.slots, 1) LOOP
            a[r.slots[i] + 1] := greatest(a[r.slots[i] + 1], r.secs[i]);
        END LOOP;
        UPDATE td_packed SET la = a WHERE block = r.block;
    END LOOP;
    TRUNCATE td_log;
    COMMIT;
END
$$;
