/* sessioncache--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION sessioncache" to load this file. \quit

-- Roles are cluster-wide and outlive the extension; create them once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'sessioncache_app') THEN
        CREATE ROLE sessioncache_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'sessioncache_monitor') THEN
        CREATE ROLE sessioncache_monitor NOLOGIN;
    END IF;
END
$$;

------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------

CREATE SEQUENCE sessioncache.cache_id_seq;

-- Cache definitions; shared memory holds a copy.
CREATE TABLE sessioncache.cache_defs (
    id              integer PRIMARY KEY,
    name            text NOT NULL UNIQUE
                    CHECK (name ~ '^[a-z0-9_.:-]{1,63}$'),
    durable         boolean NOT NULL,
    idle_timeout    interval CHECK (idle_timeout > interval '0'),
    max_lifespan    interval CHECK (max_lifespan > interval '0'),
    max_per_user    integer CHECK (max_per_user > 0),
    per_user_policy text NOT NULL DEFAULT 'deny'
                    CHECK (per_user_policy IN ('deny', 'evict_oldest')),
    notify          boolean NOT NULL DEFAULT true,
    builtin         boolean NOT NULL DEFAULT false
);

-- The entries of durable caches: the source of truth.
CREATE TABLE sessioncache.durable_entries (
    cache_id    integer NOT NULL,
    key         text NOT NULL,
    user_id     text,
    value       jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    last_access timestamptz NOT NULL,
    idle_us     bigint,             -- per-entry overrides, microseconds
    max_us      bigint,
    version     bigint NOT NULL,
    expires_at  timestamptz NOT NULL,   -- for the expiry worker's index
    PRIMARY KEY (cache_id, key)
);
CREATE INDEX durable_entries_user ON sessioncache.durable_entries (cache_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX durable_entries_expiry ON sessioncache.durable_entries (expires_at);

-- Cluster membership.  view_id is per cluster, never reused: cluster rows
-- are never deleted.
CREATE TABLE sessioncache.clusters (
    cluster text PRIMARY KEY CHECK (octet_length(cluster) BETWEEN 1 AND 255),
    view_id bigint NOT NULL
);

CREATE SEQUENCE sessioncache.member_id_seq;

CREATE TABLE sessioncache.cluster_members (
    member_id        bigint PRIMARY KEY,
    cluster          text NOT NULL REFERENCES sessioncache.clusters,
    node             text NOT NULL CHECK (octet_length(node) BETWEEN 1 AND 255),
    address          text,
    meta             jsonb NOT NULL DEFAULT '{}',
    joined_at        timestamptz NOT NULL,
    lease            interval NOT NULL CHECK (lease > interval '0'),
    lease_expires_at timestamptz NOT NULL,
    join_view        bigint NOT NULL,   -- join order; the least is coordinator
    UNIQUE (cluster, node)
);
CREATE INDEX cluster_members_lease ON sessioncache.cluster_members (lease_expires_at);

-- pg_dump keeps user-defined caches, durable entries and membership.
SELECT pg_catalog.pg_extension_config_dump('sessioncache.cache_defs', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('sessioncache.cache_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sessioncache.durable_entries', '');
SELECT pg_catalog.pg_extension_config_dump('sessioncache.clusters', '');
SELECT pg_catalog.pg_extension_config_dump('sessioncache.member_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('sessioncache.cluster_members', '');

------------------------------------------------------------------------
-- Internal functions
------------------------------------------------------------------------

CREATE FUNCTION sessioncache.durable_guard() RETURNS trigger
    AS 'MODULE_PATHNAME', 'durable_guard' LANGUAGE C;

CREATE TRIGGER durable_entries_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON sessioncache.durable_entries
    FOR EACH STATEMENT EXECUTE FUNCTION sessioncache.durable_guard();

-- Clears shared memory of a previous installation when this one commits.
CREATE FUNCTION sessioncache._install() RETURNS void
    AS 'MODULE_PATHNAME', 'sc_install' LANGUAGE C VOLATILE;

-- The moment leases started to count on this primary (see membership.c).
CREATE FUNCTION sessioncache._lease_epoch() RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'sc_lease_epoch' LANGUAGE C VOLATILE;

-- Queue a view change for sessioncache_membership when the caller commits.
CREATE FUNCTION sessioncache._notify_view(cluster text, view_id bigint) RETURNS void
    AS 'MODULE_PATHNAME', 'sc_notify_view' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache._cache_stats(
    OUT cache text, OUT entries bigint, OUT bytes bigint, OUT hits bigint,
    OUT misses bigint, OUT fills bigint, OUT puts bigint, OUT deletes bigint,
    OUT touches bigint, OUT expired bigint, OUT evicted bigint,
    OUT notifications bigint, OUT stats_reset timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_cache_stats' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache._memory(
    OUT total_bytes bigint, OUT used_bytes bigint, OUT entries bigint,
    OUT capacity_entries bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_memory' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache._entries(
    OUT cache text, OUT key text, OUT user_id text, OUT created_at timestamptz,
    OUT last_access timestamptz, OUT expires_at timestamptz,
    OUT durable boolean, OUT version bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_entries' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache._workers(
    OUT name text, OUT pid integer, OUT last_run timestamptz, OUT runs bigint,
    OUT items bigint, OUT errors bigint, OUT last_duration_ms float8,
    OUT last_max_lock_hold_us bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_workers' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache._notify_stats(
    OUT queued bigint, OUT dropped bigint, OUT flushes bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'sc_notify_stats' LANGUAGE C VOLATILE;

------------------------------------------------------------------------
-- Caches
------------------------------------------------------------------------

CREATE FUNCTION sessioncache.define_cache(
    name text,
    durable boolean DEFAULT true,
    idle_timeout interval DEFAULT '30 min',
    max_lifespan interval DEFAULT '10 hours',
    max_per_user integer DEFAULT NULL,
    per_user_policy text DEFAULT 'deny',
    notify boolean DEFAULT true)
    RETURNS void
    AS 'MODULE_PATHNAME', 'sc_define_cache' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.drop_cache(name text) RETURNS void
    AS 'MODULE_PATHNAME', 'sc_drop_cache' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.reset_stats() RETURNS void
    AS 'MODULE_PATHNAME', 'sc_reset_stats' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.check_memory() RETURNS boolean
    AS 'MODULE_PATHNAME', 'sc_check_memory' LANGUAGE C VOLATILE;

------------------------------------------------------------------------
-- Entries
------------------------------------------------------------------------

CREATE FUNCTION sessioncache.put(
    cache text, key text, value jsonb, user_id text DEFAULT NULL,
    idle_timeout interval DEFAULT NULL, max_lifespan interval DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'sc_put' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.get(cache text, key text, touch boolean DEFAULT false)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sc_get' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.touch(cache text, key text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sc_touch' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.patch(cache text, key text, patch jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'sc_patch' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.incr(
    cache text, key text, field text, delta bigint DEFAULT 1, user_id text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'sc_incr' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.delete(cache text, key text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'sc_delete' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.delete_user(cache text, user_id text) RETURNS integer
    AS 'MODULE_PATHNAME', 'sc_delete_user' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.user_entries(cache text, user_id text)
    RETURNS TABLE(key text, value jsonb, created_at timestamptz,
                  last_access timestamptz, expires_at timestamptz)
    AS 'MODULE_PATHNAME', 'sc_user_entries' LANGUAGE C VOLATILE;

CREATE FUNCTION sessioncache.entry_info(cache text, key text)
    RETURNS TABLE(user_id text, created_at timestamptz, last_access timestamptz,
                  expires_at timestamptz, version bigint, durable boolean)
    AS 'MODULE_PATHNAME', 'sc_entry_info' LANGUAGE C VOLATILE;

------------------------------------------------------------------------
-- Cluster membership
--
-- SECURITY DEFINER so that the app role needs no right on the tables; each
-- sets search_path and names every object with its schema.
------------------------------------------------------------------------

CREATE FUNCTION sessioncache._check_name(what text, v text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF v IS NULL THEN
        RAISE EXCEPTION '% must not be null', what USING ERRCODE = '22004';
    ELSIF v = '' THEN
        RAISE EXCEPTION '% must not be empty', what USING ERRCODE = '22023';
    ELSIF octet_length(v) > 255 THEN
        RAISE EXCEPTION '% of % bytes is too long', what, octet_length(v)
            USING ERRCODE = '54000', DETAIL = 'At most 255 bytes are allowed.';
    END IF;
END
$$;

CREATE FUNCTION sessioncache.join(
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

    -- the cluster's row serializes every change of its member set
    INSERT INTO sessioncache.clusters AS c (cluster, view_id)
        VALUES (p_cluster, 0) ON CONFLICT DO NOTHING;
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

CREATE FUNCTION sessioncache.heartbeat(member_id bigint) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cluster text;
    v_view bigint;
    v_epoch timestamptz := sessioncache._lease_epoch();
BEGIN
    IF heartbeat.member_id IS NULL THEN
        RAISE EXCEPTION 'member_id must not be null' USING ERRCODE = '22004';
    END IF;
    -- a lapsed lease is never renewed, even before the reaper removes it
    UPDATE sessioncache.cluster_members m
        SET lease_expires_at = clock_timestamp() + m.lease
        WHERE m.member_id = heartbeat.member_id
          AND greatest(m.lease_expires_at, v_epoch + m.lease) > clock_timestamp()
        RETURNING m.cluster INTO v_cluster;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease of member % has lapsed', heartbeat.member_id
            USING ERRCODE = 'SC001',
                  DETAIL = 'The member has been or is about to be removed from its cluster.',
                  HINT = 'Join the cluster again.';
    END IF;
    SELECT c.view_id INTO v_view FROM sessioncache.clusters c WHERE c.cluster = v_cluster;
    RETURN v_view;
END
$$;

CREATE FUNCTION sessioncache.leave(member_id bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cluster text;
    v_view bigint;
BEGIN
    IF leave.member_id IS NULL THEN
        RAISE EXCEPTION 'member_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT m.cluster INTO v_cluster FROM sessioncache.cluster_members m
        WHERE m.member_id = leave.member_id;
    IF NOT FOUND THEN
        RETURN;                 -- already gone: leaving is idempotent
    END IF;
    SELECT c.view_id + 1 INTO v_view FROM sessioncache.clusters c
        WHERE c.cluster = v_cluster FOR UPDATE;
    DELETE FROM sessioncache.cluster_members m WHERE m.member_id = leave.member_id;
    IF FOUND THEN
        UPDATE sessioncache.clusters c SET view_id = v_view WHERE c.cluster = v_cluster;
        PERFORM sessioncache._notify_view(v_cluster, v_view);
    END IF;
END
$$;

CREATE FUNCTION sessioncache.view(cluster text)
    RETURNS TABLE(view_id bigint, member_id bigint, node text, address text,
                  meta jsonb, joined_at timestamptz, is_coordinator boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM sessioncache._check_name('cluster', view.cluster);
    RETURN QUERY
        SELECT c.view_id, m.member_id, m.node, m.address, m.meta, m.joined_at,
               m.join_view = min(m.join_view) OVER ()
        FROM sessioncache.clusters c
        JOIN sessioncache.cluster_members m ON m.cluster = c.cluster
        WHERE c.cluster = view.cluster
        ORDER BY m.join_view;
END
$$;

------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------

CREATE VIEW sessioncache.caches AS
    SELECT name, durable, idle_timeout, max_lifespan, max_per_user,
           per_user_policy, notify
    FROM sessioncache.cache_defs;

CREATE VIEW sessioncache.cache_stats AS
    SELECT * FROM sessioncache._cache_stats();

CREATE VIEW sessioncache.memory AS
    SELECT * FROM sessioncache._memory();

CREATE VIEW sessioncache.entries AS
    SELECT * FROM sessioncache._entries();

CREATE VIEW sessioncache.workers AS
    SELECT * FROM sessioncache._workers();

CREATE VIEW sessioncache.notify_stats AS
    SELECT * FROM sessioncache._notify_stats();

-- every live member (a lapsed one is in the view until the reaper removes
-- it, but not here); is_coordinator is that of the current view
CREATE VIEW sessioncache.members AS
    SELECT cluster, member_id, node, address, joined_at, lease_expires_at,
           is_coordinator, view_id
    FROM (SELECT m.cluster, m.member_id, m.node, m.address, m.joined_at,
                 greatest(m.lease_expires_at, sessioncache._lease_epoch() + m.lease)
                     AS lease_expires_at,
                 m.join_view = min(m.join_view) OVER (PARTITION BY m.cluster)
                     AS is_coordinator,
                 c.view_id
          FROM sessioncache.cluster_members m
          JOIN sessioncache.clusters c ON c.cluster = m.cluster) v
    WHERE lease_expires_at > clock_timestamp();

------------------------------------------------------------------------
-- The predefined caches (Keycloak-shaped)
------------------------------------------------------------------------

INSERT INTO sessioncache.cache_defs
    (id, name, durable, idle_timeout, max_lifespan, builtin)
VALUES
    (nextval('sessioncache.cache_id_seq'), 'sessions', true, '30 min', '10 hours', true),
    (nextval('sessioncache.cache_id_seq'), 'offline_sessions', true, '30 days', '60 days', true),
    (nextval('sessioncache.cache_id_seq'), 'auth_sessions', false, '30 min', '30 min', true),
    (nextval('sessioncache.cache_id_seq'), 'login_failures', true, '12 hours', NULL, true);

SELECT sessioncache._install();

------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC
------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA sessioncache FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA sessioncache FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA sessioncache FROM PUBLIC;

GRANT USAGE ON SCHEMA sessioncache TO sessioncache_app, sessioncache_monitor, pg_monitor;

GRANT EXECUTE ON FUNCTION
    sessioncache.put(text, text, jsonb, text, interval, interval),
    sessioncache.get(text, text, boolean),
    sessioncache.touch(text, text),
    sessioncache.patch(text, text, jsonb),
    sessioncache.incr(text, text, text, bigint, text),
    sessioncache.delete(text, text),
    sessioncache.delete_user(text, text),
    sessioncache.user_entries(text, text),
    sessioncache.entry_info(text, text),
    sessioncache.join(text, text, text, interval, jsonb),
    sessioncache.heartbeat(bigint),
    sessioncache.leave(bigint),
    sessioncache.view(text)
    TO sessioncache_app;

-- the views' functions run as the caller
GRANT EXECUTE ON FUNCTION
    sessioncache._cache_stats(), sessioncache._memory(), sessioncache._entries(),
    sessioncache._workers(), sessioncache._notify_stats(), sessioncache._lease_epoch()
    TO sessioncache_monitor, pg_monitor;
GRANT SELECT ON
    sessioncache.caches, sessioncache.cache_stats, sessioncache.memory,
    sessioncache.entries, sessioncache.workers, sessioncache.notify_stats,
    sessioncache.members
    TO sessioncache_monitor, pg_monitor;
