-- get of a key that is present (-D cache=..., -D nkeys=N: keys sess-1..sess-N exist)
\set k random(1, :nkeys)
SELECT sessioncache.get(:cache, 'sess-' || :k);
