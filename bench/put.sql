-- put of a ~400-byte session (-D val) under key sess-K, K in 1..nkeys:
-- with nkeys = the filled key count it replaces existing entries, with a big
-- nkeys (1e9) nearly every put creates a new key.
\set k random(1, :nkeys)
SELECT sessioncache.put(:cache, 'sess-' || :k, :val::jsonb, 'user-' || (:k % 100000));
