/* sessioncache--1.0--1.1.sql: the upgrade from 1.0 to 1.1.  A fresh install of 1.1
 * runs sessioncache--1.0.sql and then this script, as contrib modules do, so every
 * change made in 1.1 lives here only. */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION sessioncache UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------
-- issue 12: view ids and member ids keep rising across DROP EXTENSION and
-- CREATE EXTENSION.
--
-- DROP EXTENSION drops the clusters table and the member id sequence; a new
-- installation used to start both at 1 again, so a node that still held a
-- view id of the old installation could pass the fencing check
-- (:view_id = the current view id) once the new cluster reached that number,
-- and a stale member id could heartbeat someone else's member.  Nothing
-- survives DROP EXTENSION to count from, so both start at the clock instead:
-- a new cluster's first view id is one above the number of microseconds
-- since 1970 at its creation, and the member id sequence continues from that
-- number when this script runs.  Each change still adds one.  An id of the
-- old installation is at most its starting clock value plus the number of
-- changes made since; a change is a committed transaction, far less than one
-- per microsecond, so every old id is below the clock when the new
-- installation starts (unless the system clock is set back by more than the
-- old installation's lifetime).  Versions of entries use the same clock.
-- Existing clusters and members (an update from 1.0) keep their ids.
------------------------------------------------------------------------

SELECT pg_catalog.setval('sessioncache.member_id_seq',
    greatest(
        (SELECT s.last_value FROM sessioncache.member_id_seq s),
        (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000000)::bigint));

CREATE OR REPLACE FUNCTION sessioncache.join(
    cluster text, node text, address text DEFAULT NULL,
    lease interval DEFAULT '30 seconds', meta jsonb DEFAULT '{}')
    RETURNS TABLE(member_id bigint, view_id bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- "join" is a keyword: its parameters are reached through aliases
    p_cluster ALIAS FOR $1;
    p_node ALIAS FOR $2;
    p_address ALIAS FOR $3;
    p_lease ALIAS FOR $4;
    p_meta ALIAS FOR $5;
    v_view bigint;
    v_member bigint;
    v_now timestamptz;
BEGIN
    PERFORM sessioncache._check_name('cluster', p_cluster);
    PERFORM sessioncache._check_name('node', p_node);
    IF p_lease IS NULL OR p_lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be positive' USING ERRCODE = '22023';
    END IF;
    IF p_lease > interval '1 day' THEN
        RAISE EXCEPTION 'lease must be at most one day' USING ERRCODE = '22023';
    END IF;
    IF octet_length(p_address) > 1024 THEN
        RAISE EXCEPTION 'address is too long' USING ERRCODE = '54000';
    END IF;

    -- the cluster's row serializes every change of its member set; a new
    -- row starts at the clock (see above), not at 0
    INSERT INTO sessioncache.clusters AS c (cluster, view_id)
        VALUES (p_cluster, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
        ON CONFLICT DO NOTHING;
    SELECT c.view_id + 1 INTO v_view FROM sessioncache.clusters c
        WHERE c.cluster = p_cluster FOR UPDATE;

    -- a re-join of the same node replaces its old member
    DELETE FROM sessioncache.cluster_members m
        WHERE m.cluster = p_cluster AND m.node = p_node;

    v_now := clock_timestamp();
    INSERT INTO sessioncache.cluster_members AS m
        (member_id, cluster, node, address, meta, joined_at, lease,
         lease_expires_at, join_view)
    VALUES (nextval('sessioncache.member_id_seq'), p_cluster, p_node,
            p_address, coalesce(p_meta, '{}'), v_now, p_lease,
            v_now + p_lease, v_view)
    RETURNING m.member_id INTO v_member;

    UPDATE sessioncache.clusters c SET view_id = v_view WHERE c.cluster = p_cluster;
    PERFORM sessioncache._notify_view(p_cluster, v_view);
    RETURN QUERY SELECT v_member, v_view;
END
$$;

-- end of issue 12: ids

------------------------------------------------------------------------
-- issue 12: backup and restore with plain pg_dump and pg_restore (or psql
-- for a plain dump) into a server that preloads sessioncache.
--
-- A restore runs CREATE EXTENSION (which defines the four built-in caches)
-- and then COPYs the dumped rows of the configuration tables.  Two things
-- stood in its way:
--
-- 1. cache_defs was dumped WHERE NOT builtin: a built-in cache redefined in
--    place (define_cache('sessions', ...) keeps builtin = true) lost its
--    settings, and one dropped and defined again (builtin = false, same
--    name) collided with the installed row (23505), which lost the whole
--    table.  Now every row is dumped, and a COPY into cache_defs replaces the
--    built-in row of the same name or id that CREATE EXTENSION made (only one
--    with no durable rows: a restore copies cache_defs before
--    durable_entries).  A dump that lists built-in caches lists all that
--    existed, so a built-in cache missing from it had been dropped: the
--    installed one is removed.  A dump of 1.0 lists none; the installed ones
--    stay.
-- 2. The guard trigger refused every change of durable_entries not made by
--    the extension, the restore's COPY too (42501).  It now lets a COPY into
--    the table through: a COPY can only add rows (the primary key refuses a
--    key that is already there), and a durable entry is in memory only if its
--    row is committed, so no added key can be in memory already.
--
-- After a COPY into either table, shared memory forgets every cache and
-- entry when the transaction commits (as after CREATE EXTENSION): the
-- definitions and entries are read again from the tables on next use, so
-- memory is coherent with whatever was copied.  (Entries of memory-only
-- caches are lost then: a COPY into these tables is a restore, not
-- something to do on a live system.)
--
-- "A COPY" is recognised by the statement the client sent, which is what
-- pg_restore and psql send for a dump: COPY sessioncache.<table> ... FROM.
------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('sessioncache.cache_defs', '');

-- BEFORE INSERT, per row, during a COPY into cache_defs
CREATE FUNCTION sessioncache._restore_cache_def() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM sessioncache.cache_defs d
     WHERE d.builtin AND (d.name = NEW.name OR d.id = NEW.id)
       AND NOT EXISTS (SELECT FROM sessioncache.durable_entries e WHERE e.cache_id = d.id);
    RETURN NEW;
END
$$;

-- AFTER INSERT, per statement, after a COPY into cache_defs
CREATE FUNCTION sessioncache._restored_cache_defs() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM restored r WHERE r.builtin) THEN
        DELETE FROM sessioncache.cache_defs d
         WHERE d.builtin AND d.id NOT IN (SELECT r.id FROM restored r)
           AND NOT EXISTS (SELECT FROM sessioncache.durable_entries e WHERE e.cache_id = d.id);
    END IF;
    PERFORM sessioncache._install();    -- memory forgets every cache at commit
    RETURN NULL;
END
$$;

-- AFTER INSERT, per statement, after a COPY into durable_entries
CREATE FUNCTION sessioncache._restored_entries() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM sessioncache._install();    -- memory forgets every entry at commit
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION sessioncache._restore_cache_def(), sessioncache._restored_cache_defs(),
    sessioncache._restored_entries() FROM PUBLIC;

CREATE TRIGGER cache_defs_restore
    BEFORE INSERT ON sessioncache.cache_defs FOR EACH ROW
    WHEN (pg_catalog.current_query()
          ~* '^\s*copy\s+("?sessioncache"?\s*\.\s*)?"?cache_defs"?[\s(]')
    EXECUTE FUNCTION sessioncache._restore_cache_def();

CREATE TRIGGER cache_defs_restored
    AFTER INSERT ON sessioncache.cache_defs
    REFERENCING NEW TABLE AS restored FOR EACH STATEMENT
    WHEN (pg_catalog.current_query()
          ~* '^\s*copy\s+("?sessioncache"?\s*\.\s*)?"?cache_defs"?[\s(]')
    EXECUTE FUNCTION sessioncache._restored_cache_defs();

DROP TRIGGER durable_entries_guard ON sessioncache.durable_entries;

CREATE TRIGGER durable_entries_guard
    BEFORE INSERT OR UPDATE OR DELETE ON sessioncache.durable_entries
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_query()
          !~* '^\s*copy\s+("?sessioncache"?\s*\.\s*)?"?durable_entries"?[\s(]')
    EXECUTE FUNCTION sessioncache.durable_guard();

CREATE TRIGGER durable_entries_guard_truncate
    BEFORE TRUNCATE ON sessioncache.durable_entries
    FOR EACH STATEMENT EXECUTE FUNCTION sessioncache.durable_guard();

CREATE TRIGGER durable_entries_restored
    AFTER INSERT ON sessioncache.durable_entries FOR EACH STATEMENT
    WHEN (pg_catalog.current_query()
          ~* '^\s*copy\s+("?sessioncache"?\s*\.\s*)?"?durable_entries"?[\s(]')
    EXECUTE FUNCTION sessioncache._restored_entries();

-- end of issue 12: backup and restore

------------------------------------------------------------------------
-- Issue 14: JGroups discovery (JDBC_PING) through sessioncache membership.
--
-- JGroups 2.12's JDBC_PING runs four operator-set statements (its properties
-- initialize_sql, insert_single_sql, delete_single_sql, select_all_pingdata_sql)
-- with the parameters (own_addr, cluster_name, ping_data), (own_addr,
-- cluster_name) and (cluster_name), insert and delete through executeUpdate().
-- Every `interval` ms each node rewrites its row: the delete and then the
-- insert, one after the other on one connection. The view
-- sessioncache.jgroups_ping takes those statements (client/java/jgroups/
-- jdbc_ping.xml has them):
--
--   INSERT INTO sessioncache.jgroups_ping (own_addr, cluster_name, ping_data[, lease]) ...
--       joins cluster cluster_name as node own_addr (lease: the column, default
--       30 seconds), or, when that node is a live member already, renews its
--       lease with heartbeat(): each rewrite renews it and the view id does not
--       move. A lapsed member (SC001) joins again.
--   DELETE FROM sessioncache.jgroups_ping WHERE own_addr = ? AND cluster_name = ?
--       withdraws the row at once and shortens the member's lease to at most a
--       third of it from now. The insert of a rewrite follows at once and renews
--       it; after a clean stop (JGroups deletes its own row) or the coordinator's
--       removal of a member that left the view, the member lapses within a third
--       of its lease. (The delete cannot tell these apart: JDBC_PING issues the
--       same statement for each.)
--   SELECT ping_data FROM sessioncache.jgroups_ping WHERE cluster_name = ?
--       the rows of live members only: a killed node's row is gone when its
--       lease lapses, and the reaper removes the member (and, by the foreign
--       key, its row), whether or not any node is left to clean up.
--
-- sessioncache.members and view() list the JGroups nodes like any member (node
-- = JGroups' address, meta {"jgroups": true}).
------------------------------------------------------------------------

CREATE TABLE sessioncache.jgroups_pingdata (
    member_id    bigint PRIMARY KEY
                 REFERENCES sessioncache.cluster_members ON DELETE CASCADE,
    cluster_name text NOT NULL,
    own_addr     text NOT NULL,
    ping_data    bytea,             -- NULL: withdrawn by a delete
    UNIQUE (cluster_name, own_addr)
);
SELECT pg_catalog.pg_extension_config_dump('sessioncache.jgroups_pingdata', '');

CREATE VIEW sessioncache.jgroups_ping AS
    SELECT p.own_addr, p.cluster_name, p.ping_data, m.lease
    FROM sessioncache.jgroups_pingdata p
    JOIN sessioncache.cluster_members m ON m.member_id = p.member_id
    WHERE p.ping_data IS NOT NULL
      AND greatest(m.lease_expires_at, sessioncache._lease_epoch() + m.lease) > clock_timestamp();
ALTER VIEW sessioncache.jgroups_ping ALTER COLUMN lease SET DEFAULT interval '30 seconds';

CREATE FUNCTION sessioncache._jgroups_ping_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_member bigint;
    v_lease interval;
    v_lease_now interval;
BEGIN
    PERFORM sessioncache._check_name('cluster_name', NEW.cluster_name);
    PERFORM sessioncache._check_name('own_addr', NEW.own_addr);
    IF NEW.ping_data IS NULL THEN
        RAISE EXCEPTION 'ping_data must not be null' USING ERRCODE = '22004';
    END IF;
    IF octet_length(NEW.ping_data) > 65536 THEN
        RAISE EXCEPTION 'ping_data of % bytes is too long', octet_length(NEW.ping_data)
            USING ERRCODE = '54000', DETAIL = 'At most 65536 bytes are allowed.';
    END IF;
    v_lease := coalesce(NEW.lease, interval '30 seconds');

    SELECT m.member_id, m.lease INTO v_member, v_lease_now
        FROM sessioncache.cluster_members m
        WHERE m.cluster = NEW.cluster_name AND m.node = NEW.own_addr;
    IF v_member IS NOT NULL AND v_lease_now = v_lease THEN
        BEGIN
            -- a rewrite: renew the lease, keep the member (and the view id)
            PERFORM sessioncache.heartbeat(v_member);
        EXCEPTION WHEN SQLSTATE 'SC001' THEN
            v_member := NULL;       -- lapsed: join again below
        END;
    ELSE
        v_member := NULL;           -- new, or its lease changed: (re-)join
    END IF;
    IF v_member IS NULL THEN
        -- a re-join of the same node replaces the old member (and, by the
        -- foreign key, its row)
        SELECT j.member_id INTO v_member
            FROM sessioncache.join(NEW.cluster_name, NEW.own_addr, NULL, v_lease,
                                   '{"jgroups": true}'::jsonb) j;
    END IF;
    INSERT INTO sessioncache.jgroups_pingdata AS p (member_id, cluster_name, own_addr, ping_data)
        VALUES (v_member, NEW.cluster_name, NEW.own_addr, NEW.ping_data)
        ON CONFLICT (member_id) DO UPDATE SET ping_data = EXCLUDED.ping_data;
    NEW.lease := v_lease;
    RETURN NEW;
END
$$;

CREATE FUNCTION sessioncache._jgroups_ping_delete() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_member bigint;
BEGIN
    UPDATE sessioncache.jgroups_pingdata p SET ping_data = NULL
        WHERE p.cluster_name = OLD.cluster_name AND p.own_addr = OLD.own_addr
        RETURNING p.member_id INTO v_member;
    IF v_member IS NOT NULL THEN
        UPDATE sessioncache.cluster_members m
            SET lease_expires_at = least(m.lease_expires_at, clock_timestamp() + m.lease / 3)
            WHERE m.member_id = v_member;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER jgroups_ping_insert INSTEAD OF INSERT ON sessioncache.jgroups_ping
    FOR EACH ROW EXECUTE FUNCTION sessioncache._jgroups_ping_insert();
CREATE TRIGGER jgroups_ping_delete INSTEAD OF DELETE ON sessioncache.jgroups_ping
    FOR EACH ROW EXECUTE FUNCTION sessioncache._jgroups_ping_delete();

REVOKE ALL ON sessioncache.jgroups_pingdata, sessioncache.jgroups_ping FROM PUBLIC;
REVOKE ALL ON FUNCTION sessioncache._jgroups_ping_insert(), sessioncache._jgroups_ping_delete()
    FROM PUBLIC;
-- the app role reaches the rows through the view only; the view's filter calls
-- _lease_epoch() with the caller's rights
GRANT SELECT, INSERT, DELETE ON sessioncache.jgroups_ping TO sessioncache_app;
GRANT SELECT ON sessioncache.jgroups_ping TO sessioncache_monitor, pg_monitor;
GRANT EXECUTE ON FUNCTION sessioncache._lease_epoch() TO sessioncache_app;
-- end of issue 14: JGroups JDBC_PING

------------------------------------------------------------------------
-- issue 12: the invalidation channel keeps keys private and cannot be
-- forged; monitors see no key in clear; monitoring that predicts 53200 and
-- counts the two kinds of eviction apart.
--
-- channel_key holds the installation's secret: 32 random bytes (two
-- version-4 UUIDs, 244 random bits), readable by the owner only and not
-- dumped (it is no configuration table: a restore gets a new one, and
-- clients fetch the new one when a mac stops verifying).  The notify worker
-- sends, instead of a key, "key_hash": hex of the first 16 bytes of
-- HMAC-SHA256(secret, cache || NUL || key), and signs every object with
-- "mac" (README, "Invalidation messages", defines the canonical string).
-- channel_secret() hands the secret to sessioncache_app, whose clients map
-- key_hash back to the keys they hold and drop objects whose mac fails.
--
-- The views whose columns changed get new C symbols (sc_*_1_1); the 1.0
-- symbols keep 1.0's shapes for a server still at 1.0.
------------------------------------------------------------------------

CREATE TABLE sessioncache.channel_key (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    secret     bytea NOT NULL CHECK (octet_length(secret) = 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO sessioncache.channel_key (secret)
    SELECT pg_catalog.decode(pg_catalog.replace(
               pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text,
               '-', ''), 'hex');

CREATE FUNCTION sessioncache.channel_secret() RETURNS bytea
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT k.secret FROM sessioncache.channel_key k $$;

DROP VIEW sessioncache.cache_stats;
DROP FUNCTION sessioncache._cache_stats();
CREATE FUNCTION sessioncache._cache_stats(
    OUT cache text, OUT entries bigint, OUT bytes bigint, OUT hits bigint,
    OUT misses bigint, OUT fills bigint, OUT puts bigint, OUT deletes bigint,
    OUT touches bigint, OUT expired bigint, OUT evicted bigint,
    OUT evicted_user_limit bigint, OUT notifications bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_cache_stats_1_1' LANGUAGE C VOLATILE;
CREATE VIEW sessioncache.cache_stats AS
    SELECT * FROM sessioncache._cache_stats();

DROP VIEW sessioncache.memory;
DROP FUNCTION sessioncache._memory();
CREATE FUNCTION sessioncache._memory(
    OUT total_bytes bigint, OUT used_bytes bigint, OUT entries bigint,
    OUT capacity_entries bigint, OUT headroom_bytes bigint,
    OUT fullest_partition integer, OUT fullest_used_fraction float8,
    OUT fullest_largest_free_bytes bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_memory_1_1' LANGUAGE C VOLATILE;
CREATE VIEW sessioncache.memory AS
    SELECT * FROM sessioncache._memory();

CREATE FUNCTION sessioncache._memory_partitions(
    OUT partition integer, OUT total_bytes bigint, OUT used_bytes bigint,
    OUT largest_free_bytes bigint, OUT entries bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_memory_partitions' LANGUAGE C VOLATILE;
CREATE VIEW sessioncache.memory_partitions AS
    SELECT * FROM sessioncache._memory_partitions();

DROP VIEW sessioncache.entries;
DROP FUNCTION sessioncache._entries();
CREATE FUNCTION sessioncache._entries(
    OUT cache text, OUT key text, OUT user_id text, OUT created_at timestamptz,
    OUT last_access timestamptz, OUT expires_at timestamptz,
    OUT durable boolean, OUT version bigint, OUT key_hash text)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_entries_1_1' LANGUAGE C VOLATILE;
CREATE VIEW sessioncache.entries AS
    SELECT * FROM sessioncache._entries();

REVOKE ALL ON sessioncache.channel_key, sessioncache.cache_stats, sessioncache.memory,
    sessioncache.memory_partitions, sessioncache.entries FROM PUBLIC;
REVOKE ALL ON FUNCTION sessioncache.channel_secret(), sessioncache._cache_stats(),
    sessioncache._memory(), sessioncache._memory_partitions(), sessioncache._entries()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sessioncache.channel_secret() TO sessioncache_app;
-- the views' functions run as the caller
GRANT EXECUTE ON FUNCTION sessioncache._cache_stats(), sessioncache._memory(),
    sessioncache._memory_partitions(), sessioncache._entries()
    TO sessioncache_monitor, pg_monitor;
GRANT SELECT ON sessioncache.cache_stats, sessioncache.memory,
    sessioncache.memory_partitions, sessioncache.entries
    TO sessioncache_monitor, pg_monitor;
-- end of issue 12: channel, entries, memory headroom, evictions

-- issue 13: a touch written back costs a small fraction of a row rewrite.
--
-- The writeback used to rewrite the whole wide row of durable_entries for
-- every touched entry: a non-HOT update (expires_at was indexed) with three
-- index inserts and, after each checkpoint, a full-page image of every page
-- it touched.  Now every row owns a slot (access_slot, from a sequence,
-- never reused) in sessioncache.access, a narrow table of 64 timestamps per
-- row (fill factor 50, no index but its key): the writeback updates one
-- block row per 64 slots, HOT, and only the changed bytes go to the WAL.
--
-- A row's last access is the later of its own last_access (written by puts
-- and by touches of entries not in memory) and its slot; a slot only moves
-- forward and belongs to one row for ever, so it can make an idle timer
-- look older than it is (a crash loses at most the last flush_interval of
-- touches), never younger.  expires_at is the expiry as of the row's last
-- write, a lower bound: _expires_at(row) is the truth.  The expiry worker
-- deletes the rows of entries whose copy in memory expired, by key, and
-- finds the others (no copy in memory) by a sweep in key order, so the
-- index on expires_at, which every put paid for, is gone.
------------------------------------------------------------------------

CREATE SEQUENCE sessioncache.access_slot_seq;

-- existing rows get their slots here (the table is rewritten once)
ALTER TABLE sessioncache.durable_entries
    ADD COLUMN access_slot bigint NOT NULL
    DEFAULT nextval('sessioncache.access_slot_seq');

CREATE TABLE sessioncache.access (
    block   bigint PRIMARY KEY,     -- access_slot / 64
    la      timestamptz[] NOT NULL  -- 64 last accesses, -infinity = none
) WITH (fillfactor = 50);

DROP INDEX sessioncache.durable_entries_expiry;

SELECT pg_catalog.pg_extension_config_dump('sessioncache.access', '');
SELECT pg_catalog.pg_extension_config_dump('sessioncache.access_slot_seq', '');

-- slot by slot, the later of two blocks' timestamps
CREATE FUNCTION sessioncache._la_merge(a timestamptz[], b timestamptz[])
    RETURNS timestamptz[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(greatest(x, y) ORDER BY i)
    FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;

-- a row's last access: its own, or its slot's when later
CREATE FUNCTION sessioncache._last_access(d sessioncache.durable_entries)
    RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(d.last_access,
                    (SELECT a.la[(d.access_slot % 64)::int4 + 1]
                     FROM sessioncache.access a WHERE a.block = d.access_slot / 64))
$$;

-- when a row expires: its last access counts its slot, its timeouts are
-- its own or its cache's (durations as extract(epoch) counts them); NULL
-- for a row of no cache
CREATE FUNCTION sessioncache._expires_at(d sessioncache.durable_entries)
    RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least(
        CASE WHEN t.idle = 0 THEN 'infinity'::timestamptz
             ELSE sessioncache._last_access(d) + t.idle * interval '1 microsecond' END,
        CASE WHEN t.max = 0 THEN 'infinity'::timestamptz
             ELSE d.created_at + t.max * interval '1 microsecond' END)
    FROM sessioncache.cache_defs c,
         LATERAL (SELECT coalesce(d.idle_us,
                                  (extract(epoch FROM c.idle_timeout) * 1000000)::bigint,
                                  0) AS idle,
                         coalesce(d.max_us,
                                  (extract(epoch FROM c.max_lifespan) * 1000000)::bigint,
                                  0) AS max) t
    WHERE c.id = d.cache_id
$$;

-- only sessioncache writes the slots (a restore's COPY excepted, as for
-- durable_entries; memory forgets every entry after it, as after a COPY
-- into durable_entries)
CREATE TRIGGER access_guard
    BEFORE INSERT OR UPDATE OR DELETE ON sessioncache.access
    FOR EACH STATEMENT
    WHEN (pg_catalog.current_query()
          !~* '^\s*copy\s+("?sessioncache"?\s*\.\s*)?"?access"?[\s(]')
    EXECUTE FUNCTION sessioncache.durable_guard();

CREATE TRIGGER access_restored
    AFTER INSERT ON sessioncache.access FOR EACH STATEMENT
    WHEN (pg_catalog.current_query()
          ~* '^\s*copy\s+("?sessioncache"?\s*\.\s*)?"?access"?[\s(]')
    EXECUTE FUNCTION sessioncache._restored_entries();

CREATE TRIGGER access_guard_truncate
    BEFORE TRUNCATE ON sessioncache.access
    FOR EACH STATEMENT EXECUTE FUNCTION sessioncache.durable_guard();

REVOKE ALL ON TABLE sessioncache.access FROM PUBLIC;
REVOKE ALL ON SEQUENCE sessioncache.access_slot_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION sessioncache._la_merge(timestamptz[], timestamptz[]),
    sessioncache._expires_at(sessioncache.durable_entries),
    sessioncache._last_access(sessioncache.durable_entries) FROM PUBLIC;

-- end of issue 13
