-- put in an explicit transaction with a second statement that computes the
-- notification payload but sends nothing: the baseline of put_naive_notify.sql
\set k random(1, :nkeys)
BEGIN;
SELECT sessioncache.put(:cache, 'sess-' || :k, :val::jsonb, 'user-' || (:k % 100000));
SELECT 'sess-' || :k;
END;
