-- logout, then login again under the same key (-D cache, -D nkeys, -D val):
-- delete sess-K, then put it back, each in its own transaction, so that the
-- key population (and the memory it takes) stays steady over a long run
\set k random(1, :nkeys)
SELECT sessioncache.delete(:cache, 'sess-' || :k);
SELECT sessioncache.put(:cache, 'sess-' || :k, :val::jsonb, 'user-' || (:k % 100000));
