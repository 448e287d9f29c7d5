
# Copyright (c) 2025, sessioncache contributors
#
# The update path, tested the way contrib modules are: install 1.0
# explicitly, fill it with entries, caches and members, ALTER EXTENSION
# sessioncache UPDATE, then check that every entry, cache and member is still
# there and the API works.  Then the extension is dropped and created afresh
# (1.0 script + the 1.0--1.1 script, as a new user gets it): the catalog of
# the updated installation and that of the fresh one must be the same
# objects with the same definitions, owners and privileges.  The comparison
# lists whatever the extension owns, so objects added to the upgrade script
# later are compared without changing this test.
#
# Also: view ids and member ids keep rising across DROP EXTENSION and CREATE
# EXTENSION (a node that held a view id of the dropped installation must not
# pass the fencing check of the new one).
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '200ms'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  . "restart_after_crash = on\n");
$node->start;

my $default = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'sessioncache'});
my @versions = split /\n/,
  $node->safe_psql('postgres',
	q{SELECT version FROM pg_available_extension_versions
      WHERE name = 'sessioncache' ORDER BY string_to_array(version, '.')::int[]});
ok(scalar(@versions) >= 2 && $versions[0] eq '1.0',
	"versions available: @versions (default $default)");

# Everything the extension owns, one line per object and property, with no
# OID and no value that depends on when it was created.  Sorted, so that two
# installations compare line by line.
my $catalog_sql = q{
WITH members AS (
    SELECT d.classid, d.objid, d.objsubid
    FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
      AND e.extname = 'sessioncache'),
acl(kind, name, acl) AS (
    SELECT 'rel', c.oid::regclass::text, c.relacl FROM pg_class c
    WHERE c.relnamespace = 'sessioncache'::regnamespace
    UNION ALL
    SELECT 'proc', p.oid::regprocedure::text, p.proacl FROM pg_proc p
    WHERE p.pronamespace = 'sessioncache'::regnamespace
    UNION ALL
    SELECT 'schema', n.nspname, n.nspacl FROM pg_namespace n WHERE n.nspname = 'sessioncache'),
lines(line) AS (
    -- every member object
    SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM members
    UNION ALL
    -- functions: their whole definition (language, volatility, security,
    -- settings, body) and owner
    SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_get_functiondef(p.oid)
           || E'\nowner ' || pg_get_userbyid(p.proowner)
    FROM pg_proc p WHERE p.pronamespace = 'sessioncache'::regnamespace AND p.prokind <> 'a'
    UNION ALL
    -- tables, views, sequences, indexes: kind, owner, options
    SELECT format('relation %s kind %s owner %s persistence %s options %s',
                  c.oid::regclass, c.relkind, pg_get_userbyid(c.relowner),
                  c.relpersistence, c.reloptions)
    FROM pg_class c WHERE c.relnamespace = 'sessioncache'::regnamespace
    UNION ALL
    SELECT format('column %s.%s %s notnull %s default %s', c.oid::regclass, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid))
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    WHERE c.relnamespace = 'sessioncache'::regnamespace AND a.attnum > 0
      AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s %s: %s', co.conrelid::regclass, co.conname,
                  pg_get_constraintdef(co.oid))
    FROM pg_constraint co WHERE co.connamespace = 'sessioncache'::regnamespace
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relnamespace = 'sessioncache'::regnamespace
    UNION ALL
    SELECT format('trigger %s enabled %s', pg_get_triggerdef(t.oid), t.tgenabled)
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'sessioncache'::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT 'view ' || c.oid::regclass || E'\n' || pg_get_viewdef(c.oid)
    FROM pg_class c WHERE c.relnamespace = 'sessioncache'::regnamespace AND c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('sequence %s type %s start %s inc %s min %s max %s cache %s cycle %s',
                  s.seqrelid::regclass, format_type(s.seqtypid, NULL), s.seqstart,
                  s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
    WHERE c.relnamespace = 'sessioncache'::regnamespace
    UNION ALL
    SELECT format('type %s kind %s owner %s', t.oid::regtype, t.typtype, pg_get_userbyid(t.typowner))
    FROM pg_type t WHERE t.typnamespace = 'sessioncache'::regnamespace
      AND t.typrelid = 0 AND t.typelem = 0
    UNION ALL
    -- privileges: one line per grantee and privilege (NULL = the defaults)
    SELECT format('acl %s %s: %s', a.kind, a.name,
                  coalesce((SELECT string_agg(format('%s=%s%s',
                                   CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                                        ELSE pg_get_userbyid(x.grantee) END,
                                   x.privilege_type,
                                   CASE WHEN x.is_grantable THEN '*' ELSE '' END),
                                   ' ' ORDER BY 1)
                            FROM aclexplode(a.acl) x), 'default'))
    FROM acl a
    UNION ALL
    -- what pg_dump keeps
    SELECT format('config_dump %s where %s', cfg.rel::regclass, cfg.cond)
    FROM pg_extension e,
         unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)
    WHERE e.extname = 'sessioncache'
    UNION ALL
    SELECT format('extension version %s relocatable %s schema %s owner %s',
                  e.extversion, e.extrelocatable, e.extnamespace::regnamespace,
                  pg_get_userbyid(e.extowner))
    FROM pg_extension e WHERE e.extname = 'sessioncache'
    UNION ALL
    SELECT format('comment %s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid),
                  d.description)
    FROM pg_description d JOIN members m
      ON m.classid = d.classoid AND m.objid = d.objoid
    UNION ALL
    SELECT format('role %s login %s', r.rolname, r.rolcanlogin) FROM pg_roles r
    WHERE r.rolname LIKE 'sessioncache%')
SELECT line FROM lines ORDER BY line COLLATE "C"
};

sub catalog { return $node->safe_psql('postgres', $catalog_sql); }

# the data that must survive the update, as one sorted text
my $data_sql = q{
SELECT string_agg(x, E'\n' ORDER BY x COLLATE "C") FROM (
    SELECT format('def %s %s %s %s %s %s %s', name, durable, idle_timeout, max_lifespan,
                  max_per_user, per_user_policy, notify) AS x
    FROM sessioncache.caches
    UNION ALL
    SELECT format('entry %s %s %s %s %s %s %s %s', t.cache, t.key, i.user_id, i.created_at,
                  i.last_access, i.expires_at, i.version,
                  sessioncache.get(t.cache, t.key))
    FROM probe t LEFT JOIN LATERAL sessioncache.entry_info(t.cache, t.key) i ON true
    UNION ALL
    SELECT format('view %s %s %s %s %s', v.view_id, v.member_id, v.node, v.address,
                  v.is_coordinator)
    FROM sessioncache.view('auth') v
    UNION ALL
    SELECT format('user %s %s', u.key, u.value)
    FROM sessioncache.user_entries('sessions', 'alice') u) s
};

# 1. install 1.0 and fill it
$node->safe_psql('postgres', q{CREATE EXTENSION sessioncache VERSION '1.0'});
is($node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'sessioncache'}),
	'1.0', 'installed version 1.0');

$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('tenant_a', true, '2 hours', '1 day', 5, 'evict_oldest');
SELECT sessioncache.define_cache('scratch', false, '1 hour', NULL);
SELECT sessioncache.define_cache('offline_sessions', true, '45 days', '90 days');
SELECT count(sessioncache.put('sessions', 's' || g, jsonb_build_object('n', g),
                              CASE WHEN g % 10 = 0 THEN 'alice' ELSE 'u' || g % 7 END))
FROM generate_series(1, 500) g;
SELECT count(sessioncache.put('offline_sessions', 'o' || g, jsonb_build_object('o', g), 'u1'))
FROM generate_series(1, 100) g;
SELECT count(sessioncache.put('tenant_a', 't' || g, jsonb_build_object('t', g), 'bob'))
FROM generate_series(1, 3) g;
SELECT sessioncache.incr('login_failures', 'realm:alice', 'failures', 3);
SELECT count(sessioncache.put('auth_sessions', 'a' || g, '{"flow": 1}')) FROM generate_series(1, 20) g;
SELECT count(sessioncache.put('scratch', 'x' || g, '{"x": 1}')) FROM generate_series(1, 20) g;
SELECT sessioncache.touch('sessions', 's1');
SELECT sessioncache.delete('sessions', 's2');
SELECT * FROM sessioncache.join('auth', 'n1', '10.0.0.1:7800', '1 day');
SELECT * FROM sessioncache.join('auth', 'n2', '10.0.0.2:7800', '1 day');
SELECT * FROM sessioncache.join('auth', 'n3', NULL, '1 day');
SELECT sessioncache.leave(member_id) FROM sessioncache.view('auth') WHERE node = 'n3';
CREATE TABLE probe AS
SELECT 'sessions' AS cache, 's' || g AS key FROM generate_series(1, 500) g
UNION ALL SELECT 'offline_sessions', 'o' || g FROM generate_series(1, 100) g
UNION ALL SELECT 'tenant_a', 't' || g FROM generate_series(1, 3) g
UNION ALL SELECT 'login_failures', 'realm:alice'
UNION ALL SELECT 'auth_sessions', 'a' || g FROM generate_series(1, 20) g
UNION ALL SELECT 'scratch', 'x' || g FROM generate_series(1, 20) g;
});
# the touch reaches the table before the update (it is compared with the
# table's state afterwards)
$node->poll_query_until('postgres',
	q{SELECT last_access = (SELECT last_access FROM sessioncache.entry_info('sessions', 's1'))
      FROM sessioncache.durable_entries WHERE key = 's1'});
my $before = $node->safe_psql('postgres', $data_sql);
like($before, qr/entry sessions s1 alice|entry sessions s1 u/, 'data written in 1.0');
is( $node->safe_psql(
		'postgres', q{SELECT count(sessioncache.get(cache, key)) FROM probe}),
	'643', '643 live entries before the update (one of the 644 deleted)');
my ($max_member_10, $max_view_10) = split /\|/,
  $node->safe_psql('postgres',
	q{SELECT max(member_id), max(view_id) FROM sessioncache.view('auth')});

# 2. ALTER EXTENSION UPDATE (to the default version)
$node->safe_psql('postgres', 'ALTER EXTENSION sessioncache UPDATE');
is($node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'sessioncache'}),
	$default, "updated to $default");
is($node->safe_psql('postgres', $data_sql), $before,
	'after the update: every definition, entry (value, version, timers, user), member and view is unchanged'
);
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'check_memory() after the update');

# 3. the API works on the updated installation
is( $node->safe_psql(
		'postgres', q{
SELECT sessioncache.put('sessions', 'new1', '{"v": 1}', 'alice') > max(version)
FROM sessioncache.entries;
SELECT sessioncache.patch('sessions', 'new1', '{"w": 2}');
SELECT sessioncache.incr('login_failures', 'realm:alice', 'failures');
SELECT sessioncache.delete('sessions', 's3');
SELECT count(*) FROM sessioncache.user_entries('sessions', 'alice');
SELECT sessioncache.delete_user('tenant_a', 'bob');
SELECT sessioncache.define_cache('after_update', false);
SELECT sessioncache.put('after_update', 'k', '{}') > 0;
SELECT sessioncache.drop_cache('scratch');
}),
	"t\n{\"v\": 1, \"w\": 2}\n4\nt\n51\n3\n\nt\n",
	'put, patch, incr, delete, user_entries, delete_user, define_cache, drop_cache work');
my ($m4, $v4) = split /\|/,
  $node->safe_psql('postgres', q{SELECT * FROM sessioncache.join('auth', 'n4', NULL, '1 day')});
ok($m4 > $max_member_10 && $v4 > $max_view_10,
	"join after the update: member $m4 > $max_member_10, view $v4 > $max_view_10");
is( $node->safe_psql(
		'postgres', qq{
SELECT sessioncache.heartbeat($m4) = $v4;
SELECT string_agg(node || ':' || is_coordinator, ',' ORDER BY node) FROM sessioncache.members;
SELECT sessioncache.leave($m4);
SELECT count(*) FROM sessioncache.cache_stats WHERE cache = 'sessions';
SELECT count(*) FROM sessioncache.workers WHERE pid IS NOT NULL;
SELECT count(*) > 0 FROM sessioncache.memory WHERE used_bytes > 0;
}),
	"t\nn1:true,n2:false,n4:false\n\n1\n3\nt",
	'heartbeat, members, leave and the monitoring views work');

# the roles keep their rights after the update
$node->safe_psql('postgres', q{
CREATE ROLE app LOGIN IN ROLE sessioncache_app;
CREATE ROLE mon LOGIN IN ROLE sessioncache_monitor;
CREATE ROLE nobody LOGIN;
});
my $privs_sql = q{
SELECT format('%s %s %s', r, p.oid::regprocedure, has_function_privilege(r, p.oid, 'EXECUTE'))
FROM pg_proc p, unnest(ARRAY['app', 'mon', 'nobody']) r
WHERE p.pronamespace = 'sessioncache'::regnamespace
UNION ALL
SELECT format('%s %s %s %s %s %s', r, c.oid::regclass,
              has_table_privilege(r, c.oid, 'SELECT'), has_table_privilege(r, c.oid, 'INSERT'),
              has_table_privilege(r, c.oid, 'UPDATE'), has_table_privilege(r, c.oid, 'DELETE'))
FROM pg_class c, unnest(ARRAY['app', 'mon', 'nobody']) r
WHERE c.relnamespace = 'sessioncache'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'm')
ORDER BY 1};
my $privs_updated = $node->safe_psql('postgres', $privs_sql);
unlike($privs_updated, qr/^nobody .* t(?: [tf])*$/m, 'a role without grants can use nothing');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
WHERE p.pronamespace = 'sessioncache'::regnamespace AND x.grantee = 0
UNION ALL
SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) x
WHERE c.relnamespace = 'sessioncache'::regnamespace AND x.grantee = 0}),
	"0\n0",
	'nothing in schema sessioncache is granted to PUBLIC');
is( $node->psql(
		'postgres', q{SELECT sessioncache.get('sessions', 's1') IS NOT NULL},
		extra_params => [ '-U', 'app' ]),
	0,
	'the app role reads entries after the update');

my $cat_updated = catalog();
my $views_before_drop = $node->safe_psql('postgres',
	q{SELECT max(member_id) || '|' || max(view_id) FROM sessioncache.view('auth')});
my ($max_member_old, $max_view_old) = split /\|/, $views_before_drop;

# 4. a fresh installation of the default version in the same database
$node->safe_psql('postgres', 'DROP EXTENSION sessioncache');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_class WHERE relname = 'durable_entries'}),
	'0', 'DROP EXTENSION removes the durable table (and every durable session)');
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
my $cat_fresh = catalog();
my $privs_fresh = $node->safe_psql('postgres', $privs_sql);

like($cat_fresh, qr/^extension version \Q$default\E /m, "fresh install is $default");
is($cat_updated, $cat_fresh,
	'updated and fresh installations: same objects, definitions, owners, privileges, dump settings');
if ($cat_updated ne $cat_fresh)
{
	my %u = map { $_ => 1 } split /\n/, $cat_updated;
	my %f = map { $_ => 1 } split /\n/, $cat_fresh;
	diag "only in the updated one: $_" for grep { !$f{$_} } sort keys %u;
	diag "only in the fresh one: $_" for grep { !$u{$_} } sort keys %f;
}
is($privs_fresh, $privs_updated, 'same effective privileges of app, monitor and nobody');
ok(scalar(() = $cat_fresh =~ /^member /mg) >= 30,
	'the comparison covers every member object (' . scalar(() = $cat_fresh =~ /^member /mg) . ')');

# 5. ids keep rising across DROP EXTENSION / CREATE EXTENSION
my ($m_new, $v_new) = split /\|/,
  $node->safe_psql('postgres', q{SELECT * FROM sessioncache.join('auth', 'n1', NULL, '1 day')});
ok($v_new > $max_view_old,
	"re-created extension: first view id $v_new is above the dropped installation's $max_view_old");
ok($m_new > $max_member_old,
	"re-created extension: first member id $m_new is above the dropped installation's $max_member_old");
my ($m_2, $v_2) = split /\|/,
  $node->safe_psql('postgres', q{SELECT * FROM sessioncache.join('auth', 'n2', NULL, '1 day')});
is($v_2, $v_new + 1, 'a view change increments the view id by one');
is($node->safe_psql('postgres', qq{SELECT sessioncache.heartbeat($m_2)}),
	$v_2, 'heartbeat returns the new view id');
# the fencing check of the README, with a view id of the dropped installation
is( $node->safe_psql(
		'postgres',
		qq{SELECT $max_view_old = (SELECT view_id FROM sessioncache.view('auth') LIMIT 1)}),
	'f', 'an old view id fails the fencing check');
# and once more, with no cluster row written in between by the same session
$node->safe_psql('postgres', 'DROP EXTENSION sessioncache; CREATE EXTENSION sessioncache');
my ($m_3, $v_3) = split /\|/,
  $node->safe_psql('postgres', q{SELECT * FROM sessioncache.join('auth', 'n1', NULL, '1 day')});
ok($v_3 > $v_2 && $m_3 > $m_2, "second re-creation: view $v_3 > $v_2, member $m_3 > $m_2");

$node->stop;
unlike(
	slurp_file($node->logfile),
	qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
	'no process crashed');
done_testing();
