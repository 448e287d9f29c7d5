-- the same login on sessioncache: a durable put of the session (-D cache,
-- -D val), new uuid keys as in kc_login.sql
\set k random(1000001, 1000000000000)
SELECT sessioncache.put(:cache, md5(:k::text)::uuid::text, :val::jsonb, 'user-' || (:k::bigint % 100000));
