-- a touch done by hand: UPDATE of the idle timer on bench_tw, shaped and
-- indexed like sessioncache.durable_entries (-D nkeys)
\set k random(1, :nkeys)
UPDATE bench_tw SET last_access = now(), expires_at = now() + interval '30 minutes'
    WHERE cache_id = 1 AND key = 'sess-' || :k;
