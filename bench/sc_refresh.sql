-- the same refresh on sessioncache: read the session and refresh its idle
-- timer (-D cache, -D nkeys), sessions 1..nkeys as in kc_refresh.sql
\set k random(1, :nkeys)
SELECT sessioncache.get(:cache, md5(:k::text)::uuid::text, touch => true);
