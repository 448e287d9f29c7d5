-- the durable get done by hand: a primary-key lookup in bench_plain
\set k random(1, :nkeys)
SELECT value FROM bench_plain WHERE cache_id = 1 AND key = 'sess-' || :k;
