-- touch of a key that is present (-D cache=..., -D nkeys=N)
\set k random(1, :nkeys)
SELECT sessioncache.touch(:cache, 'sess-' || :k);
