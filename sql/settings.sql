-- Settings (API.md, "Settings"): their values in the test configuration
-- (test/sessioncache.conf), their contexts and defaults, and who may change
-- them.
\set VERBOSITY sqlstate
SHOW sessioncache.memory;
SHOW sessioncache.database;
SHOW sessioncache.max_value_size;
SHOW sessioncache.expiry_interval;
SHOW sessioncache.flush_interval;
SHOW sessioncache.prewarm;
SELECT current_setting('sessioncache.database') = current_database() AS in_its_database;

-- contexts and built-in defaults as documented
SELECT name, context, vartype, unit, boot_val
FROM pg_settings WHERE name LIKE 'sessioncache.%' ORDER BY name;
SELECT name,
       CASE name
           WHEN 'sessioncache.memory' THEN pg_size_bytes(boot_val || unit) = pg_size_bytes('64MB')
           WHEN 'sessioncache.max_value_size' THEN boot_val::bigint = pg_size_bytes('16kB')
           WHEN 'sessioncache.expiry_interval' THEN (boot_val || unit)::interval = interval '1s'
           WHEN 'sessioncache.flush_interval' THEN (boot_val || unit)::interval = interval '5s'
           WHEN 'sessioncache.database' THEN boot_val = 'postgres'
           WHEN 'sessioncache.prewarm' THEN boot_val = 'on'
       END AS default_as_documented
FROM pg_settings WHERE name LIKE 'sessioncache.%' ORDER BY name;
SELECT name, short_desc IS NOT NULL AND short_desc <> '' AS described
FROM pg_settings WHERE name LIKE 'sessioncache.%' ORDER BY name;

------------------------------------------------------------------------
-- postmaster and sighup settings cannot be SET: 55P02
------------------------------------------------------------------------
SET sessioncache.memory = '128MB';
SET sessioncache.memory = '32MB';
SET sessioncache.database = 'postgres';
SET sessioncache.expiry_interval = '1s';
SET sessioncache.flush_interval = '1s';
SET sessioncache.prewarm = off;
BEGIN;
SET LOCAL sessioncache.memory = '1GB';
ROLLBACK;
SHOW sessioncache.memory;
SHOW sessioncache.expiry_interval;

-- the prefix is reserved: no made-up sessioncache.* setting
SET sessioncache.no_such_setting = 1;
SELECT current_setting('sessioncache.no_such_setting', true) IS NULL AS unknown;

------------------------------------------------------------------------
-- max_value_size: a superuser may change it
------------------------------------------------------------------------
SET sessioncache.max_value_size = '1kB';
SHOW sessioncache.max_value_size;
SET sessioncache.max_value_size = 2048;
SHOW sessioncache.max_value_size;
SET sessioncache.max_value_size = '1MB';
SHOW sessioncache.max_value_size;
-- within bounds (64 bytes to 1MB)
SET sessioncache.max_value_size = 63;
SET sessioncache.max_value_size = '2MB';
SET sessioncache.max_value_size = 'lots';
SHOW sessioncache.max_value_size;
RESET sessioncache.max_value_size;
SHOW sessioncache.max_value_size;
-- SET LOCAL ends with the transaction, and applies within it
SELECT sessioncache.define_cache('t_settings', false);
BEGIN;
SET LOCAL sessioncache.max_value_size = 64;
SHOW sessioncache.max_value_size;
SELECT sessioncache.put('t_settings', 'k', jsonb_build_object('s', repeat('x', 100)));
ROLLBACK;
SHOW sessioncache.max_value_size;
SELECT sessioncache.put('t_settings', 'k', jsonb_build_object('s', repeat('x', 100))) > 0 AS put;
SELECT sessioncache.drop_cache('t_settings');

-- an ordinary role may not change it: 42501
CREATE ROLE regress_sc_settings_user;
SET ROLE regress_sc_settings_user;
SHOW sessioncache.max_value_size;
SET sessioncache.max_value_size = '1kB';
SET sessioncache.max_value_size = '1MB';
SHOW sessioncache.max_value_size;
RESET ROLE;
DROP ROLE regress_sc_settings_user;
