-- Entry operations: put, get, touch, patch, incr, delete, delete_user,
-- user_entries, entry_info (API.md, "Entries"), on a durable cache
-- (sessions) and a memory-only one (auth_sessions).  Every query runs on
-- both caches; c names the cache.
\set VERBOSITY sqlstate
CREATE TEMP TABLE caches(c text PRIMARY KEY);
INSERT INTO caches VALUES ('sessions'), ('auth_sessions');
CREATE TEMP TABLE seen(c text, step text, version bigint, created_at timestamptz,
                       last_access timestamptz, expires_at timestamptz);

------------------------------------------------------------------------
-- put and get
------------------------------------------------------------------------
SELECT c, sessioncache.get(c, 't_entries:k1') IS NULL AS absent FROM caches ORDER BY c;
SELECT c, (SELECT count(*) FROM sessioncache.entry_info(c, 't_entries:k1')) AS info_rows
FROM caches ORDER BY c;

-- a put returns the new version, which entry_info reports
INSERT INTO seen
SELECT c, 'put1', sessioncache.put(c, 't_entries:k1', '{"a": 1, "b": {"x": 1}}', 'alice'),
       NULL, NULL, NULL FROM caches;
SELECT c, version > 0 AS positive FROM seen WHERE step = 'put1' ORDER BY c;
UPDATE seen s SET created_at = i.created_at, last_access = i.last_access,
                  expires_at = i.expires_at
FROM caches, sessioncache.entry_info(caches.c, 't_entries:k1') i
WHERE s.c = caches.c AND s.step = 'put1';
SELECT s.c, i.user_id, i.version = s.version AS same_version, i.durable,
       i.created_at = i.last_access AS fresh,
       i.expires_at - i.last_access = interval '30 min' AS idle_30min
FROM seen s, sessioncache.entry_info(s.c, 't_entries:k1') i
WHERE s.step = 'put1' ORDER BY s.c;
SELECT c, sessioncache.get(c, 't_entries:k1') FROM caches ORDER BY c;

-- the durable cache writes the row; the memory-only one does not
SELECT c.name, d.key, d.user_id, d.value
FROM sessioncache.durable_entries d JOIN sessioncache.cache_defs c ON c.id = d.cache_id
WHERE d.key LIKE 't\_entries:%' ORDER BY c.name, d.key;

-- a replace keeps created_at, moves last_access and raises the version
SELECT pg_sleep(0.01);
INSERT INTO seen
SELECT c, 'put2', sessioncache.put(c, 't_entries:k1', '{"a": 2}', 'alice'),
       NULL, NULL, NULL FROM caches;
SELECT s2.c, s2.version > s1.version AS version_up,
       i.version = s2.version AS reported,
       i.created_at = s1.created_at AS created_kept,
       i.last_access > s1.last_access AS accessed_later
FROM seen s1 JOIN seen s2 ON s2.c = s1.c AND s2.step = 'put2',
     sessioncache.entry_info(s1.c, 't_entries:k1') i
WHERE s1.step = 'put1' ORDER BY s1.c;
SELECT c, sessioncache.get(c, 't_entries:k1') FROM caches ORDER BY c;

-- versions strictly increase over many replaces
SELECT c, bool_and(v2 > v1) AS increasing
FROM (SELECT c, i, v AS v2, lag(v) OVER (PARTITION BY c ORDER BY i) AS v1
      FROM (SELECT c, i, sessioncache.put(c, 't_entries:k1', jsonb_build_object('i', i), 'alice') AS v
            FROM caches, generate_series(1, 20) i ORDER BY c, i) p) q
WHERE v1 IS NOT NULL GROUP BY c ORDER BY c;

-- a replace may change or drop the user
SELECT c, sessioncache.put(c, 't_entries:k1', '{"a": 3}', 'bob') > 0 AS put FROM caches ORDER BY c;
SELECT c, i.user_id FROM caches, sessioncache.entry_info(c, 't_entries:k1') i ORDER BY c;
SELECT c, sessioncache.put(c, 't_entries:k1', '{"a": 4}') > 0 AS put FROM caches ORDER BY c;
SELECT c, i.user_id FROM caches, sessioncache.entry_info(c, 't_entries:k1') i ORDER BY c;
SELECT c, count(*) FROM caches, sessioncache.user_entries(c, 'bob') GROUP BY c ORDER BY c;

-- any jsonb value; the JSON null is a value, not an absence
SELECT c, v, sessioncache.put(c, 't_entries:j', v) > 0 AS put,
       sessioncache.get(c, 't_entries:j') = v AS same
FROM caches, (VALUES ('"text"'::jsonb), ('42'), ('[1, "two", null]'), ('{}'), ('true'),
                     ('{"nested": {"deep": [1, {"x": "y"}]}, "u": "\u00e9\u263a"}'),
                     ('null')) vals(v)
ORDER BY c, v::text;
SELECT c, sessioncache.put(c, 't_entries:j', 'null') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:j') IS NULL AS sql_null,
       sessioncache.get(c, 't_entries:j') = 'null'::jsonb AS json_null
FROM caches ORDER BY c;

-- per-entry timeouts override the cache's
SELECT c, sessioncache.put(c, 't_entries:t1', '{}', NULL, '1 hour', '2 hours') > 0 AS put,
       sessioncache.put(c, 't_entries:t2', '{}', NULL, idle_timeout => '5 min') > 0 AS put_idle,
       sessioncache.put(c, 't_entries:t3', '{}', NULL, max_lifespan => '10 min') > 0 AS put_max
FROM caches ORDER BY c;
SELECT c, k, i.expires_at - i.last_access AS idle_left, i.expires_at - i.created_at AS life
FROM caches, (VALUES ('t_entries:t1'), ('t_entries:t2'), ('t_entries:t3')) keys(k),
     sessioncache.entry_info(c, k) i
ORDER BY c, k;
-- a replace without timeouts goes back to the cache's:
-- least(last_access + idle_timeout, created_at + max_lifespan)
SELECT c, sessioncache.put(c, 't_entries:t1', '{}') > 0 AS put FROM caches ORDER BY c;
SELECT c, i.expires_at = least(i.last_access + d.idle_timeout,
                               i.created_at + d.max_lifespan) AS cache_timeouts
FROM caches JOIN sessioncache.caches d ON d.name = c,
     sessioncache.entry_info(c, 't_entries:t1') i ORDER BY c;

------------------------------------------------------------------------
-- get with touch, and touch
------------------------------------------------------------------------
DELETE FROM seen;
-- per-entry timeouts, so that the idle timer decides in both caches
SELECT c, sessioncache.put(c, 't_entries:k2', '{"t": 1}', 'alice', '10 min', '1 hour') > 0 AS put
FROM caches ORDER BY c;
INSERT INTO seen SELECT c, 'before', i.version, i.created_at, i.last_access, i.expires_at
FROM caches, sessioncache.entry_info(c, 't_entries:k2') i;
SELECT pg_sleep(0.01);
-- a plain get does not refresh the idle timer
SELECT c, sessioncache.get(c, 't_entries:k2') FROM caches ORDER BY c;
SELECT s.c, i.last_access = s.last_access AS unchanged
FROM seen s, sessioncache.entry_info(s.c, 't_entries:k2') i ORDER BY s.c;
SELECT c, sessioncache.get(c, 't_entries:k2', false) FROM caches ORDER BY c;
SELECT s.c, i.last_access = s.last_access AS unchanged
FROM seen s, sessioncache.entry_info(s.c, 't_entries:k2') i ORDER BY s.c;
-- get(touch => true) does
SELECT c, sessioncache.get(c, 't_entries:k2', true) FROM caches ORDER BY c;
SELECT s.c, i.last_access > s.last_access AS refreshed,
       i.expires_at > s.expires_at AS expires_later,
       i.expires_at - i.last_access = interval '10 min' AS idle_10min,
       i.created_at = s.created_at AS created_kept,
       i.version = s.version AS same_version
FROM seen s, sessioncache.entry_info(s.c, 't_entries:k2') i ORDER BY s.c;
DELETE FROM seen;
INSERT INTO seen SELECT c, 'before', i.version, i.created_at, i.last_access, i.expires_at
FROM caches, sessioncache.entry_info(c, 't_entries:k2') i;
SELECT pg_sleep(0.01);
-- touch refreshes too, and says whether the entry was there
SELECT c, sessioncache.touch(c, 't_entries:k2') FROM caches ORDER BY c;
SELECT s.c, i.last_access > s.last_access AS refreshed,
       i.expires_at > s.expires_at AS expires_later,
       i.created_at = s.created_at AS created_kept
FROM seen s, sessioncache.entry_info(s.c, 't_entries:k2') i ORDER BY s.c;
SELECT c, sessioncache.get(c, 't_entries:k2') FROM caches ORDER BY c;
-- a touch of a durable entry is written behind: the row's last access (its
-- own last_access or, later, its slot in sessioncache.access) catches up
-- within sessioncache.flush_interval (waited for, bounded)
CREATE TEMP VIEW row_timers AS
SELECT c.name AS cache, d.key, sessioncache._last_access(d) AS last_access,
       sessioncache._expires_at(d) AS expires_at
FROM sessioncache.durable_entries d JOIN sessioncache.cache_defs c ON c.id = d.cache_id;
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT r.last_access = i.last_access
                   FROM row_timers r, sessioncache.entry_info('sessions', 't_entries:k2') i
                   WHERE r.cache = 'sessions' AND r.key = 't_entries:k2');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT r.last_access = i.last_access AS written_back, r.expires_at = i.expires_at AS expiry_written_back
FROM row_timers r, sessioncache.entry_info('sessions', 't_entries:k2') i
WHERE r.cache = 'sessions' AND r.key = 't_entries:k2';
SELECT c, sessioncache.touch(c, 't_entries:absent') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:absent', true) IS NULL AS absent FROM caches ORDER BY c;
-- touching an absent key creates nothing
SELECT c, (SELECT count(*) FROM sessioncache.entry_info(c, 't_entries:absent')) AS info_rows
FROM caches ORDER BY c;
-- a touch never extends an entry past its max_lifespan
SELECT c, sessioncache.put(c, 't_entries:k3', '{}', NULL, '1 hour', '1 hour') > 0 AS put
FROM caches ORDER BY c;
SELECT c, sessioncache.touch(c, 't_entries:k3') FROM caches ORDER BY c;
SELECT c, i.expires_at = i.created_at + interval '1 hour' AS capped
FROM caches, sessioncache.entry_info(c, 't_entries:k3') i ORDER BY c;

------------------------------------------------------------------------
-- patch
------------------------------------------------------------------------
DELETE FROM seen;
SELECT c, sessioncache.put(c, 't_entries:p', '{"a": 1, "b": {"x": 1}, "keep": [1, 2]}', 'carol') > 0 AS put
FROM caches ORDER BY c;
INSERT INTO seen SELECT c, 'before', i.version, i.created_at, i.last_access, i.expires_at
FROM caches, sessioncache.entry_info(c, 't_entries:p') i;
-- a top-level merge: b is replaced as a whole, c is added, the rest kept
SELECT c, sessioncache.patch(c, 't_entries:p', '{"b": {"y": 2}, "c": 3}') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:p') FROM caches ORDER BY c;
SELECT s.c, i.version > s.version AS version_up, i.created_at = s.created_at AS created_kept,
       i.user_id
FROM seen s, sessioncache.entry_info(s.c, 't_entries:p') i ORDER BY s.c;
SELECT c, sessioncache.patch(c, 't_entries:p', '{}') FROM caches ORDER BY c;
SELECT c, sessioncache.patch(c, 't_entries:p', '{"a": null}') FROM caches ORDER BY c;
-- absent: NULL, and nothing is created
SELECT c, sessioncache.patch(c, 't_entries:nope', '{"a": 1}') IS NULL AS absent FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:nope') IS NULL AS still_absent FROM caches ORDER BY c;
SELECT c, sessioncache.patch(c, 't_entries:p', NULL) FROM caches ORDER BY c;
-- the per-entry timeouts survive a patch
SELECT c, sessioncache.patch(c, 't_entries:k3', '{"z": 1}') FROM caches ORDER BY c;
SELECT c, i.expires_at - i.created_at = interval '1 hour' AS timeouts_kept
FROM caches, sessioncache.entry_info(c, 't_entries:k3') i ORDER BY c;

------------------------------------------------------------------------
-- incr
------------------------------------------------------------------------
-- creates the entry, then counts
SELECT c, sessioncache.incr(c, 't_entries:n', 'hits') FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n', 'hits') FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n', 'hits', 10) FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n', 'hits', -15) FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n', 'other', 5) FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:n') FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n', 'hits', 0) FROM caches ORDER BY c;
-- incr on an entry made by put keeps the other fields
SELECT c, sessioncache.put(c, 't_entries:n2', '{"name": "x", "count": 41}', 'dave') > 0 AS put
FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n2', 'count') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:n2') FROM caches ORDER BY c;
SELECT c, i.user_id FROM caches, sessioncache.entry_info(c, 't_entries:n2') i ORDER BY c;
-- the user of a new counter
SELECT c, sessioncache.incr(c, 't_entries:n3', 'f', 2, 'erin') FROM caches ORDER BY c;
SELECT c, i.user_id FROM caches, sessioncache.entry_info(c, 't_entries:n3') i ORDER BY c;
-- integral numbers written as such are fine
SELECT c, sessioncache.put(c, 't_entries:n4', '{"f": 2.0, "g": 1e2}') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.incr(c, 't_entries:n4', 'f'), sessioncache.incr(c, 't_entries:n4', 'g')
FROM caches ORDER BY c;
-- a field that is not an integer: an error, and the value is unchanged
SELECT c, sessioncache.put(c, 't_entries:bad', '{"s": "abc", "f": 1.5, "o": {}, "n": null, "b": true, "big": 9223372036854775807}') > 0 AS put
FROM caches ORDER BY c;
SELECT sessioncache.incr('sessions', 't_entries:bad', 's');
SELECT sessioncache.incr('auth_sessions', 't_entries:bad', 's');
SELECT sessioncache.incr('sessions', 't_entries:bad', 'f');
SELECT sessioncache.incr('auth_sessions', 't_entries:bad', 'f');
SELECT sessioncache.incr('sessions', 't_entries:bad', 'o');
SELECT sessioncache.incr('auth_sessions', 't_entries:bad', 'n');
SELECT sessioncache.incr('sessions', 't_entries:bad', 'b');
SELECT sessioncache.incr('auth_sessions', 't_entries:bad', 'big');
SELECT sessioncache.incr('sessions', 't_entries:bad', 'big', -9223372036854775807 - 1) = -1 AS in_range;
-- a value that is not an object
SELECT c, sessioncache.put(c, 't_entries:arr', '[1, 2]') > 0 AS put FROM caches ORDER BY c;
SELECT sessioncache.incr('sessions', 't_entries:arr', 'x');
SELECT sessioncache.incr('auth_sessions', 't_entries:arr', 'x');
SELECT c, sessioncache.get(c, 't_entries:arr') FROM caches ORDER BY c;
SELECT sessioncache.incr('sessions', 't_entries:n', NULL);
SELECT sessioncache.incr('sessions', 't_entries:n', 'hits', NULL);
SELECT sessioncache.incr('sessions', 't_entries:n', '');

------------------------------------------------------------------------
-- delete
------------------------------------------------------------------------
SELECT c, sessioncache.delete(c, 't_entries:k2') FROM caches ORDER BY c;
SELECT c, sessioncache.get(c, 't_entries:k2') IS NULL AS gone FROM caches ORDER BY c;
SELECT c, (SELECT count(*) FROM sessioncache.entry_info(c, 't_entries:k2')) AS info_rows
FROM caches ORDER BY c;
SELECT c, sessioncache.delete(c, 't_entries:k2') FROM caches ORDER BY c;
SELECT c, sessioncache.touch(c, 't_entries:k2') FROM caches ORDER BY c;
SELECT count(*) AS durable_rows FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs c ON c.id = d.cache_id
WHERE c.name = 'sessions' AND d.key = 't_entries:k2';
-- a put after a delete starts a new entry with a higher version
DELETE FROM seen;
INSERT INTO seen SELECT c, 'old', i.version, i.created_at, i.last_access, i.expires_at
FROM caches, sessioncache.entry_info(c, 't_entries:p') i;
SELECT c, sessioncache.delete(c, 't_entries:p') FROM caches ORDER BY c;
SELECT pg_sleep(0.01);
SELECT c, sessioncache.put(c, 't_entries:p', '{"new": true}') > 0 AS put FROM caches ORDER BY c;
SELECT s.c, i.version > s.version AS version_up, i.created_at > s.created_at AS new_entry
FROM seen s, sessioncache.entry_info(s.c, 't_entries:p') i ORDER BY s.c;

------------------------------------------------------------------------
-- delete_user and user_entries
------------------------------------------------------------------------
SELECT c, sessioncache.put(c, 't_entries:u' || i, jsonb_build_object('i', i),
                           CASE WHEN i <= 3 THEN 'frank' ELSE 'grace' END) > 0 AS put
FROM caches, generate_series(1, 5) i ORDER BY c, i;
-- one of frank's entries has already expired: not listed, not counted
SELECT c, sessioncache.put(c, 't_entries:u0', '{"i": 0}', 'frank', '1 millisecond') > 0 AS put
FROM caches ORDER BY c;
SELECT pg_sleep(0.01);
SELECT c, u.key, u.value, u.created_at = u.last_access AS fresh,
       u.expires_at = least(u.last_access + d.idle_timeout,
                            u.created_at + d.max_lifespan) AS expiry_ok
FROM caches JOIN sessioncache.caches d ON d.name = c,
     sessioncache.user_entries(c, 'frank') u ORDER BY c, u.key;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'grace') u ORDER BY c, u.key;
SELECT c, count(*) FROM caches, sessioncache.user_entries(c, 'nobody') u GROUP BY c;
-- user_entries agrees with entry_info
SELECT c, bool_and(i.created_at = u.created_at AND i.last_access = u.last_access
                   AND i.expires_at = u.expires_at AND i.user_id = 'frank') AS consistent
FROM caches, sessioncache.user_entries(c, 'frank') u,
     sessioncache.entry_info(c, u.key) i GROUP BY c ORDER BY c;
-- logout everywhere
SELECT c, sessioncache.delete_user(c, 'frank') FROM caches ORDER BY c;
SELECT c, count(*) FROM caches, sessioncache.user_entries(c, 'frank') u GROUP BY c;
SELECT c, k, sessioncache.get(c, k) FROM caches,
       (VALUES ('t_entries:u1'), ('t_entries:u3'), ('t_entries:u4'), ('t_entries:u5')) keys(k)
ORDER BY c, k;
SELECT c, sessioncache.delete_user(c, 'frank') FROM caches ORDER BY c;
SELECT c, sessioncache.delete_user(c, 'nobody') FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'grace') u ORDER BY c, u.key;
SELECT count(*) AS frank_live_rows FROM sessioncache.durable_entries
WHERE user_id = 'frank' AND expires_at > now();
-- an entry that changed hands belongs to its new user only
SELECT c, sessioncache.put(c, 't_entries:u4', '{"i": 4}', 'heidi') > 0 AS put FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'grace') u ORDER BY c, u.key;
SELECT c, sessioncache.delete_user(c, 'grace') FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, 'heidi') u ORDER BY c, u.key;
SELECT c, sessioncache.delete_user(c, 'heidi') FROM caches ORDER BY c;
-- user ids are compared exactly
SELECT c, sessioncache.put(c, 't_entries:case', '{}', 'Ivan') > 0 AS put FROM caches ORDER BY c;
SELECT c, sessioncache.delete_user(c, 'ivan'), sessioncache.delete_user(c, 'Ivan ')
FROM caches ORDER BY c;
SELECT c, sessioncache.delete_user(c, 'Ivan') FROM caches ORDER BY c;
-- an empty user id is a user id
SELECT c, sessioncache.put(c, 't_entries:empty-user', '{}', '') > 0 AS put FROM caches ORDER BY c;
SELECT c, u.key FROM caches, sessioncache.user_entries(c, '') u ORDER BY c;
SELECT c, sessioncache.delete_user(c, '') FROM caches ORDER BY c;
SELECT sessioncache.delete_user('sessions', NULL);
SELECT * FROM sessioncache.user_entries('auth_sessions', NULL);

------------------------------------------------------------------------
-- the entries view agrees
------------------------------------------------------------------------
SELECT e.cache, e.key, e.user_id, e.durable,
       e.version = i.version AND e.created_at = i.created_at AND
       e.last_access = i.last_access AND e.expires_at = i.expires_at AS consistent
FROM sessioncache.entries e, sessioncache.entry_info(e.cache, e.key) i
WHERE e.key LIKE 't\_entries:%' ORDER BY e.cache, e.key;

-- clean up
SELECT c, count(*) FILTER (WHERE sessioncache.delete(c, e.key)) AS deleted
FROM caches JOIN sessioncache.entries e ON e.cache = caches.c
WHERE e.key LIKE 't\_entries:%' GROUP BY c ORDER BY c;
SELECT count(*) FROM sessioncache.entries WHERE key LIKE 't\_entries:%';
-- (t_entries:u0 expired: its row goes with the expiry worker)
SELECT count(*) FROM sessioncache.durable_entries
WHERE key LIKE 't\_entries:%' AND expires_at > now();
