-- a first look: the predefined caches and one round trip
SELECT name, durable, idle_timeout, max_lifespan FROM sessioncache.caches ORDER BY name;
SELECT sessioncache.put('sessions', 'smoke', '{"a": 1}', 'u1') > 0 AS put;
SELECT sessioncache.get('sessions', 'smoke');
SELECT sessioncache.delete('sessions', 'smoke');
SELECT sessioncache.get('sessions', 'smoke');
