-- a put to a cache with notify on, then (in its own transaction, right after
-- the put committed) the key's id and the clock: listener.py joins them with
-- the moment the key's invalidation arrived
SELECT sessioncache.put(:cache, 'lat-' || nextval('bench_lat_seq'), :val::jsonb);
INSERT INTO bench_commit_times VALUES (currval('bench_lat_seq'), clock_timestamp());
