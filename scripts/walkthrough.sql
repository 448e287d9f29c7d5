-- A short tour of sessioncache (run by scripts/demo.sh --walkthrough).
\pset footer off
SELECT name, durable, idle_timeout, max_lifespan FROM sessioncache.caches ORDER BY name;

-- an auth server logs a user in: one online session, one offline token
SELECT sessioncache.put('sessions', 'sess-1', '{"user": "alice", "ip": "10.0.0.7"}', user_id => 'alice') > 0 AS stored;
SELECT sessioncache.put('offline_sessions', 'off-1', '{"user": "alice", "client": "mobile"}', user_id => 'alice') > 0 AS stored;
SELECT sessioncache.get('sessions', 'sess-1', touch => true);
SELECT sessioncache.patch('sessions', 'sess-1', '{"step_up": true}');
SELECT key, value FROM sessioncache.user_entries('sessions', 'alice');

-- brute-force detection on login_failures
SELECT sessioncache.incr('login_failures', 'alice', 'failures') AS failures;
SELECT sessioncache.incr('login_failures', 'alice', 'failures') AS failures;
SELECT sessioncache.delete('login_failures', 'alice') AS cleared_on_success;

-- a rolled-back write leaves no trace
BEGIN;
SELECT sessioncache.put('sessions', 'ghost', '{}') > 0 AS staged;
ROLLBACK;
SELECT sessioncache.get('sessions', 'ghost') IS NULL AS gone;

-- cluster membership instead of JGroups discovery
SELECT member_id IS NOT NULL AS joined, view_id FROM sessioncache.join('auth', 'node-a', '10.0.0.1:7800');
SELECT member_id IS NOT NULL AS joined, view_id FROM sessioncache.join('auth', 'node-b', '10.0.0.2:7800');
SELECT node, address, is_coordinator, view_id FROM sessioncache.view('auth');

-- logout everywhere
SELECT sessioncache.delete_user('sessions', 'alice') AS sessions_removed;

-- monitoring
SELECT cache, entries, hits, misses, puts, deletes, touches FROM sessioncache.cache_stats ORDER BY cache;
SELECT total_bytes, used_bytes, entries FROM sessioncache.memory;
SELECT name, pid IS NOT NULL AS running FROM sessioncache.workers ORDER BY name;
