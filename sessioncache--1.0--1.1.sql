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
