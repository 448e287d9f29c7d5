-- the durable put done by hand: the same row upserted into bench_plain, a heap
-- table shaped and indexed like sessioncache.durable_entries
\set k random(1, :nkeys)
INSERT INTO bench_plain AS d
    (cache_id, key, user_id, value, created_at, last_access, version, expires_at)
VALUES (1, 'sess-' || :k, 'user-' || (:k % 100000), :val::jsonb, now(), now(), 1,
        now() + interval '30 minutes')
ON CONFLICT (cache_id, key) DO UPDATE SET
    user_id = excluded.user_id, value = excluded.value,
    last_access = excluded.last_access, version = d.version + 1,
    expires_at = excluded.expires_at;
