
# Copyright (c) 2025, sessioncache contributors
#
# Backup and restore the way an operator does it, each into a fresh server
# that preloads sessioncache:
#
#   1. pg_dump -Fc, then a plain pg_restore;
#   2. a plain-format pg_dump piped into psql;
#   3. pg_restore in sections with the cache definitions loaded into shared
#      memory before the data arrives (memory must not keep the installed
#      built-in definitions);
#   4. pg_upgrade (15 to 15, copy mode) of the source cluster.
#
# The source has user-defined caches (durable and memory-only), a built-in
# cache redefined in place, one dropped and defined again with other
# timeouts, one dropped for good, durable entries with per-entry timeouts and
# touches, and members of two clusters.  After each restore, every cache
# definition, durable row, sequence, cluster and member is the same as in
# the source, the API returns every entry with its value and metadata
# (memory is coherent with the tables), and writes, definitions and joins
# work and go on from the restored ids.
#
use strict;
use warnings;
use Cwd;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf =
    "shared_preload_libraries = 'sessioncache'\n"
  . "sessioncache.database = 'postgres'\n"
  . "sessioncache.flush_interval = '200ms'\n"
  # the expiry worker loads the definitions often: a restore must not
  # depend on it not having done so
  . "sessioncache.expiry_interval = '100ms'\n"
  . "restart_after_crash = on\n";

sub new_node
{
	my ($name) = @_;
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	$n->append_conf('postgresql.conf', $conf);
	return $n;
}

my $src = new_node('source');
$src->start;
$src->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
$src->safe_psql(
	'postgres', q{
-- a built-in cache redefined in place (its row stays "builtin")
SELECT sessioncache.define_cache('offline_sessions', true, '45 days', '90 days', 20, 'evict_oldest');
-- one dropped and defined again with other timeouts (a new id, same name)
SELECT sessioncache.drop_cache('sessions');
SELECT sessioncache.define_cache('sessions', true, '1 hour', '12 hours', NULL, 'deny', false);
-- one dropped for good
SELECT sessioncache.drop_cache('login_failures');
-- user-defined caches
SELECT sessioncache.define_cache('tenant_a', true, '2 hours', '1 day', 3, 'deny');
SELECT sessioncache.define_cache('scratch', false, '1 hour', NULL);
SELECT count(sessioncache.put('sessions', 's' || g, jsonb_build_object('n', g, 'pad', repeat('p', g % 50)),
                              'user' || (g % 40)))
FROM generate_series(1, 2000) g;
SELECT count(sessioncache.put('sessions', 'short' || g, '{"short": true}', 'user1',
                              '20 minutes', '2 hours'))
FROM generate_series(1, 10) g;
SELECT count(sessioncache.put('offline_sessions', 'o' || g, jsonb_build_object('o', g), 'user' || (g % 7)))
FROM generate_series(1, 300) g;
SELECT count(sessioncache.put('tenant_a', 't' || g, jsonb_build_object('t', g), 'bob'))
FROM generate_series(1, 3) g;
SELECT count(sessioncache.put('auth_sessions', 'a' || g, '{}')) FROM generate_series(1, 10) g;
SELECT count(sessioncache.put('scratch', 'x' || g, '{}')) FROM generate_series(1, 10) g;
SELECT count(*) FILTER (WHERE sessioncache.touch('sessions', 's' || g)) FROM generate_series(1, 100) g;
SELECT count(*) FILTER (WHERE sessioncache.delete('sessions', 's' || g)) FROM generate_series(1901, 2000) g;
SELECT count(*) FROM sessioncache.join('auth', 'n1', '10.0.0.1:7800', '1 day', '{"zone": "a"}');
SELECT count(*) FROM sessioncache.join('auth', 'n2', '10.0.0.2:7800', '1 day');
SELECT count(*) FROM sessioncache.join('auth', 'n3', NULL, '1 day');
SELECT sessioncache.leave(member_id) FROM sessioncache.view('auth') WHERE node = 'n2';
SELECT count(*) FROM sessioncache.join('batch', 'w1', NULL, '1 day');
});

# the touches reach the table (a dump reads the table)
ok( $src->poll_query_until(
		'postgres', q{
SELECT count(*) = 0 FROM sessioncache.durable_entries e
JOIN sessioncache.cache_defs c ON c.id = e.cache_id,
LATERAL sessioncache.entry_info(c.name, e.key) i
WHERE i.last_access <> sessioncache._last_access(e)}),
	'source: every touch is written back');

# Everything a restore must bring back, as one sorted text: the tables as
# they are, and what the API says about each of their rows.
my $snapshot_sql = q{
SELECT string_agg(x, E'\n' ORDER BY x COLLATE "C") FROM (
    SELECT format('def %s', row(d.*)) AS x FROM sessioncache.cache_defs d
    UNION ALL
    SELECT format('row %s', row(e.*)) FROM sessioncache.durable_entries e
    UNION ALL
    SELECT format('api %s %s %s %s', c.name, e.key, sessioncache.get(c.name, e.key), row(i.*))
    FROM sessioncache.durable_entries e JOIN sessioncache.cache_defs c ON c.id = e.cache_id
    LEFT JOIN LATERAL sessioncache.entry_info(c.name, e.key) i ON true
    UNION ALL
    SELECT format('user %s %s %s', u.name, u.user_id,
                  (SELECT string_agg(x.key || '=' || x.value || '@' || x.expires_at, ',' ORDER BY x.key)
                   FROM sessioncache.user_entries(u.name, u.user_id) x))
    FROM (SELECT DISTINCT c.name, e.user_id FROM sessioncache.durable_entries e
          JOIN sessioncache.cache_defs c ON c.id = e.cache_id WHERE e.user_id IS NOT NULL) u
    UNION ALL
    SELECT format('cluster %s', row(c.*)) FROM sessioncache.clusters c
    UNION ALL
    SELECT format('member %s', row(m.*)) FROM sessioncache.cluster_members m
    UNION ALL
    SELECT format('view %s %s', c.cluster, row(v.*)) FROM sessioncache.clusters c,
    LATERAL sessioncache.view(c.cluster) v
    UNION ALL
    SELECT format('caches %s', row(c.*)) FROM sessioncache.caches c
    UNION ALL
    SELECT format('seq cache_id %s %s', last_value, is_called) FROM sessioncache.cache_id_seq
    UNION ALL
    SELECT format('seq member_id %s %s', last_value, is_called) FROM sessioncache.member_id_seq) s
};
my $want = $src->safe_psql('postgres', $snapshot_sql);
is( $src->safe_psql(
		'postgres', q{
SELECT count(*) FROM sessioncache.durable_entries;
SELECT string_agg(name, ',' ORDER BY name) FROM sessioncache.caches;}),
	"2053\nauth_sessions,offline_sessions,scratch,sessions,tenant_a",
	'source: 2,053 durable rows (offline_sessions kept 20 per user), five caches');
my $auth_view = $src->safe_psql('postgres', q{SELECT view_id FROM sessioncache.clusters WHERE cluster = 'auth'});

# Checks on a restored server ($what names the way it was restored).
sub check_restored
{
	my ($node, $what) = @_;
	my $got = $node->safe_psql('postgres', $snapshot_sql);
	is($got, $want,
		"$what: every cache definition, durable row, entry (through the API), user's entries, "
		  . 'cluster, member and sequence is as in the source');
	if ($got ne $want)
	{
		my %g = map { $_ => 1 } split /\n/, $got;
		my %w = map { $_ => 1 } split /\n/, $want;
		my @missing = grep { !$g{$_} } sort keys %w;
		my @extra = grep { !$w{$_} } sort keys %g;
		diag "$what: missing " . scalar(@missing) . ", e.g.\n  " . join("\n  ", @missing[0 .. 4]);
		diag "$what: unexpected " . scalar(@extra) . ", e.g.\n  " . join("\n  ", @extra[0 .. 4]);
	}
	is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
		't', "$what: check_memory()");

	# memory follows the restored definitions: a new entry of the redefined
	# caches gets their timeouts, the dropped built-in cache stays dropped
	is( $node->safe_psql(
			'postgres', q{
SELECT sessioncache.put('sessions', 'new', '{"new": 1}', 'user1') > 0;
SELECT expires_at - last_access FROM sessioncache.entry_info('sessions', 'new');
SELECT sessioncache.put('offline_sessions', 'onew', '{}') > 0;
SELECT expires_at - last_access FROM sessioncache.entry_info('offline_sessions', 'onew');
SELECT sessioncache.get('sessions', 'new');
SELECT sessioncache.delete('sessions', 's1');
SELECT sessioncache.get('sessions', 's1') IS NULL;
SELECT count(*) FROM sessioncache.user_entries('sessions', 'user1');}),
		"t\n01:00:00\nt\n45 days\n{\"new\": 1}\nt\nt\n58",
		"$what: put, get, delete and user_entries work with the restored timeouts");
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT sessioncache.get('login_failures', 'x')");
	like($err, qr/ERROR:  42704:/, "$what: the dropped built-in cache stays dropped");
	($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT sessioncache.put('tenant_a', 't4', '{}', 'bob')");
	like($err, qr/ERROR:  SC002:/, "$what: the per-user limit of a restored cache holds");

	# ids go on from the restored sequences and views
	is( $node->safe_psql(
			'postgres', qq{
SELECT sessioncache.define_cache('after_restore', false);
SELECT (SELECT id FROM sessioncache.cache_defs WHERE name = 'after_restore')
       > (SELECT max(id) FROM sessioncache.cache_defs WHERE name <> 'after_restore');
SELECT j.member_id > (SELECT max(member_id) FROM sessioncache.cluster_members WHERE node <> 'n4')
       AND j.view_id = $auth_view + 1
FROM sessioncache.join('auth', 'n4', NULL, '1 day') j;
SELECT string_agg(node || ':' || is_coordinator, ',' ORDER BY node) FROM sessioncache.members;}),
		"\nt\nt\nn1:true,n3:false,n4:false,w1:true",
		"$what: a new cache and a new member get ids above the restored ones; n1 still coordinates");
	is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
		't', "$what: check_memory() after the writes");
}

my $dir = PostgreSQL::Test::Utils::tempdir();

# 1. custom format, plain pg_restore
command_ok(
	[ 'pg_dump', '-Fc', '-f', "$dir/source.dump", '-d', $src->connstr('postgres') ],
	'pg_dump -Fc');
my $t1 = new_node('restore_custom');
$t1->start;
command_ok([ 'pg_restore', '--exit-on-error', '-d', $t1->connstr('postgres'), "$dir/source.dump" ],
	'pg_restore (no option) succeeds');
check_restored($t1, 'pg_restore');
# the guard still refuses every other change of the durable table, by a
# superuser too
for my $sql (
	q{INSERT INTO sessioncache.durable_entries SELECT cache_id, key || 'x', user_id, value, created_at, last_access, idle_us, max_us, version, expires_at FROM sessioncache.durable_entries LIMIT 1},
	q{UPDATE sessioncache.durable_entries SET value = '{}'},
	q{DELETE FROM sessioncache.durable_entries},
	q{TRUNCATE sessioncache.durable_entries},
	# a COPY names the table first: this one is an INSERT
	q{WITH x AS (SELECT 'copy sessioncache.durable_entries ') INSERT INTO sessioncache.durable_entries SELECT * FROM sessioncache.durable_entries WHERE false})
{
	my ($ret, $out, $err) = $t1->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	like($err, qr/ERROR:  42501:/, 'superuser: ' . substr($sql, 0, 40) . '... refused');
}
$t1->stop;

# 2. plain format through psql
command_ok(
	[ 'pg_dump', '-f', "$dir/source.sql", '-d', $src->connstr('postgres') ],
	'pg_dump (plain format)');
my $t2 = new_node('restore_plain');
$t2->start;
command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$dir/source.sql", '-d', $t2->connstr('postgres') ],
	'psql -f of the plain dump succeeds');
check_restored($t2, 'psql');
$t2->stop;

# 3. in sections, with the installed definitions loaded into memory before
# the data is restored (as a worker or an early client could do)
my $t3 = new_node('restore_sections');
$t3->start;
command_ok(
	[ 'pg_restore', '--exit-on-error', '--section=pre-data', '-d', $t3->connstr('postgres'), "$dir/source.dump" ],
	'pg_restore --section=pre-data');
is( $t3->safe_psql(
		'postgres', q{
SELECT sessioncache.get('sessions', 's2') IS NULL, sessioncache.get('login_failures', 'x') IS NULL;
SELECT count(*) FROM sessioncache.cache_stats}),
	"t|t\n4",
	'sections: memory holds the four installed built-in caches before the data');
command_ok(
	[ 'pg_restore', '--exit-on-error', '--section=data', '--section=post-data', '-d', $t3->connstr('postgres'), "$dir/source.dump" ],
	'pg_restore --section=data --section=post-data');
check_restored($t3, 'sections');
$t3->stop;

# 4. pg_upgrade, both clusters preloading sessioncache
$src->stop;
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $t4 = new_node('upgraded');
my $cwd = getcwd();
chdir $dir or die "chdir $dir: $!";
my @upgrade = (
	"$bindir/pg_upgrade", '--no-sync',
	'-b', $bindir, '-B', $bindir,
	'-d', $src->data_dir, '-D', $t4->data_dir,
	'-s', $src->host, '-p', $src->port, '-P', $t4->port);

# Plain pg_upgrade: no workers run in binary-upgrade mode, so pg_upgrade can
# recreate sessioncache.database
my ($stdout, $stderr);
ok(IPC::Run::run(\@upgrade, '>', \$stdout, '2>', \$stderr),
	'pg_upgrade without options')
  or diag "$stdout\n$stderr";
chdir $cwd;
$t4->start;
check_restored($t4, 'pg_upgrade');
$t4->stop;

for my $n ($src, $t1, $t2, $t3, $t4)
{
	unlike(
		slurp_file($n->logfile),
		qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
		$n->name . ': no process crashed');
}
done_testing();
