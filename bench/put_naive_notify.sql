-- what the extension avoids: NOTIFY from the writer's own transaction (the
-- commit then takes PostgreSQL's database-wide notify lock)
\set k random(1, :nkeys)
BEGIN;
SELECT sessioncache.put(:cache, 'sess-' || :k, :val::jsonb, 'user-' || (:k % 100000));
SELECT pg_notify('bench_naive', 'sess-' || :k);
END;
