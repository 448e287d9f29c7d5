
# Copyright (c) 2025, sessioncache contributors
#
# The whole API through PgBouncer in transaction pooling mode, as Keycloak
# installations run it: every client transaction may run on another server
# connection, and one server connection serves many clients in turn.  The
# pool is smaller than the number of clients, so connections really are
# shared.  Server-side prepared statements are not used (PgBouncer 1.18 does
# not carry them across server connections): psql and pgbench -M extended
# use unnamed statements, the reference client runs with psycopg's
# prepare_threshold=None.  LISTEN needs a session of its own, so the near
# cache's listener connects straight to PostgreSQL.
#
# Checks: each function and view through the pooler; a rolled-back or failed
# transaction leaves nothing on the shared server connection for the next
# client; SQLSTATEs come through; a transaction writing many keys; exact
# counters under concurrent pgbench clients multiplexed on two server
# connections; the reference near-cache client and membership behind the
# pooler (test/pgbouncer_client.py).
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use Time::HiRes qw(usleep);

my $pgbouncer = '/usr/sbin/pgbouncer';
plan skip_all => "$pgbouncer is not installed (scripts/install-deps.sh installs it)"
  unless -x $pgbouncer;

my $node = PostgreSQL::Test::Cluster->new('pooled');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '200ms'\n"
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION sessioncache;
CREATE ROLE app LOGIN IN ROLE sessioncache_app;
CREATE ROLE mon LOGIN IN ROLE sessioncache_monitor;
});

# PgBouncer on a free loopback port and a Unix socket in a short directory,
# transaction pooling, 2 server connections per (database, user)
my $dir   = PostgreSQL::Test::Utils::tempdir_short();
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my ($host, $port) = ($node->host, $node->port);
PostgreSQL::Test::Utils::append_to_file("$dir/userlist.txt",
	qq{"postgres" ""\n"app" ""\n"mon" ""\n});
PostgreSQL::Test::Utils::append_to_file(
	"$dir/pgbouncer.ini", qq{
[databases]
postgres = host=$host port=$port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
});
my ($bout, $berr) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'<', \undef, '>', \$bout, '2>', \$berr);
END { $bouncer->kill_kill if $bouncer; }

# psql through the pooler (simple query protocol)
sub via
{
	my ($user, $sql, %opts) = @_;
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres', "\\set VERBOSITY verbose\n$sql",
		connstr => "host=127.0.0.1 port=$bport dbname=postgres user=$user",
		%opts);
	return ($ret, $stdout, $stderr);
}

sub via_ok
{
	my ($user, $sql) = @_;
	my ($ret, $stdout, $stderr) = via($user, $sql);
	diag $stderr if $ret != 0;
	return $ret == 0 ? $stdout : "ERROR: $stderr";
}

sub sqlstate_via
{
	my ($user, $sql) = @_;
	my ($ret, $stdout, $stderr) = via($user, $sql);
	return '' if $ret == 0;
	return $stderr =~ /ERROR:  ([0-9A-Z]{5}):/ ? $1 : "no SQLSTATE in: $stderr";
}

my $up = 0;
for (1 .. 100)
{
	my ($ret) = via('app', 'SELECT 1');
	if ($ret == 0) { $up = 1; last; }
	usleep(100_000);
}
ok($up, 'pgbouncer accepts connections') or diag "pgbouncer: $bout $berr";
my ($cret, $config) = via('postgres', 'SHOW CONFIG',
	connstr => "host=127.0.0.1 port=$bport dbname=pgbouncer user=postgres");
like($config, qr/^pool_mode\|transaction\|/m, 'pool_mode is transaction');

# each entry function as the app role
is( via_ok(
		'app', q{
SELECT sessioncache.put('sessions', 'b1', '{"u": "alice"}', 'alice') > 0,
       sessioncache.put('sessions', 'b2', '{"u": "alice", "n": 2}', 'alice') > 0,
       sessioncache.put('auth_sessions', 'f1', '{"step": 1}') > 0}),
	't|t|t',
	'put into durable and memory-only caches');
is( via_ok(
		'app', q{
SELECT sessioncache.get('sessions', 'b1'), sessioncache.get('sessions', 'b1', true),
       sessioncache.touch('sessions', 'b2'), sessioncache.get('auth_sessions', 'f1')}),
	'{"u": "alice"}|{"u": "alice"}|t|{"step": 1}',
	'get, get with touch, touch');
is( via_ok(
		'app', q{
SELECT sessioncache.patch('sessions', 'b1', '{"ip": "10.0.0.1"}'),
       sessioncache.incr('login_failures', 'realm:alice', 'failures'),
       sessioncache.incr('login_failures', 'realm:alice', 'failures', 4)}),
	'{"u": "alice", "ip": "10.0.0.1"}|1|5',
	'patch and incr');
is( via_ok(
		'app', q{
SELECT string_agg(key || '=' || value::text, ',' ORDER BY key)
FROM sessioncache.user_entries('sessions', 'alice')}),
	'b1={"u": "alice", "ip": "10.0.0.1"},b2={"n": 2, "u": "alice"}',
	'user_entries');
is( via_ok(
		'app', q{
SELECT user_id, durable, version > 0, expires_at > last_access
FROM sessioncache.entry_info('sessions', 'b1')}),
	'alice|t|t|t',
	'entry_info');
is( via_ok(
		'app', q{
SELECT sessioncache.delete('sessions', 'b2'), sessioncache.delete('sessions', 'b2'),
       sessioncache.delete_user('sessions', 'alice'), sessioncache.get('sessions', 'b1')}),
	't|f|1|',
	'delete and delete_user');

# transactions: several statements of one client transaction run on one
# server connection; a rollback, a rolled-back savepoint and a failed
# transaction leave nothing for the next client of that connection
is( via_ok(
		'app', q{
BEGIN;
SELECT sessioncache.put('sessions', 't1', '{"v": 1}', 'bob');
SAVEPOINT s;
SELECT sessioncache.put('sessions', 't2', '{"v": 2}', 'bob');
ROLLBACK TO SAVEPOINT s;
SELECT sessioncache.get('sessions', 't1') IS NOT NULL AS own_write;
COMMIT;
SELECT sessioncache.get('sessions', 't1'), sessioncache.get('sessions', 't2') IS NULL;
}) =~ /t\n\{"v": 1\}\|t$/ ? 1 : 0,
	1,
	'a transaction reads its own writes; a rolled-back savepoint leaves nothing');
is( sqlstate_via(
		'app', q{
BEGIN;
SELECT sessioncache.put('sessions', 'r1', '{"v": 1}', 'carol');
SELECT sessioncache.put('auth_sessions', 'r2', '{"v": 1}');
SELECT 1 / 0;
}),
	'22012',
	'a failing transaction');
is( via_ok(
		'app', q{
BEGIN;
SELECT sessioncache.put('sessions', 'r3', '{"v": 1}', 'carol') > 0;
ROLLBACK;
SELECT count(*) FROM sessioncache.user_entries('sessions', 'carol');
SELECT sessioncache.get('sessions', 'r1') IS NULL, sessioncache.get('auth_sessions', 'r2') IS NULL,
       sessioncache.get('sessions', 'r3') IS NULL;}),
	"t\n0\nt|t|t",
	'failed and rolled-back transactions left nothing on the shared server connections');
is( via_ok(
		'app', q{
BEGIN;
SELECT count(sessioncache.put('sessions', 'bulk' || g, jsonb_build_object('g', g), 'bulkuser'))
FROM generate_series(1, 5000) g;
COMMIT;
SELECT count(*) FROM sessioncache.user_entries('sessions', 'bulkuser');}),
	"5000\n5000",
	'a transaction writing 5,000 keys');

# errors keep their SQLSTATE through the pooler
is(sqlstate_via('app', q{SELECT sessioncache.get('nope', 'k')}),
	'42704', 'unknown cache: 42704');
is(sqlstate_via('app', q{SELECT sessioncache.put('sessions', '', '{}')}),
	'22023', 'empty key: 22023');
is(sqlstate_via('app', q{SELECT sessioncache.heartbeat(-1)}),
	'SC001', 'heartbeat of an unknown member: SC001');
is(sqlstate_via('app', q{SELECT sessioncache.define_cache('appcache')}),
	'42501', 'the app role cannot define caches');
is( sqlstate_via(
		'app', q{
BEGIN;
SELECT sessioncache.put('sessions', 'p1', '{}');
PREPARE TRANSACTION 'x';}),
	'0A000',
	'PREPARE TRANSACTION after a cache write: 0A000');

# membership: each call is its own transaction
my ($mid, $vid) = split /\|/,
  via_ok('app', q{SELECT * FROM sessioncache.join('pooled', 'n1', '10.0.0.1:7800', '30 s')});
like($mid, qr/^\d+$/, 'join');
is(via_ok('app', "SELECT sessioncache.heartbeat($mid) = $vid"), 't', 'heartbeat');
is( via_ok(
		'app', q{SELECT string_agg(node || ':' || is_coordinator, ',') FROM sessioncache.view('pooled')}),
	'n1:true',
	'view');
is(via_ok('app', "SELECT sessioncache.leave($mid)"), '', 'leave');

# the owner's functions and the views
is( via_ok(
		'postgres', q{
SELECT sessioncache.define_cache('pooled_cache', idle_timeout => '5 min');
SELECT sessioncache.put('pooled_cache', 'x', '{"x": 1}') > 0;
SELECT sessioncache.drop_cache('pooled_cache');
SELECT count(*) FROM sessioncache.caches WHERE name = 'pooled_cache';
SELECT sessioncache.reset_stats();
SELECT sessioncache.check_memory();}),
	"\nt\n\n0\n\nt",
	'define_cache, drop_cache, reset_stats, check_memory');
is( via_ok(
		'mon', q{
SELECT count(*) > 0 FROM sessioncache.cache_stats;
SELECT entries >= 0 FROM sessioncache.memory;
SELECT count(*) >= 3 FROM sessioncache.workers;
SELECT count(*) > 0 FROM sessioncache.entries;
SELECT count(*) >= 0 FROM sessioncache.members;
SELECT queued >= 0 FROM sessioncache.notify_stats;}),
	"t\nt\nt\nt\nt\nt",
	'the monitoring views');

# concurrency: 8 pgbench clients multiplexed on 2 server connections, with
# the extended protocol (unnamed statements); every increment counts
my $script = "$dir/pooled.sql";
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set k random(1, 200)
SELECT sessioncache.incr('login_failures', 'pooled-counter', 'n');
SELECT sessioncache.put('sessions', 'pg-' || :client_id::text || '-' || :k::text, jsonb_build_object('k', :k::int), 'pguser' || :client_id::text);
SELECT sessioncache.get('sessions', 'pg-' || :client_id::text || '-' || :k::text, true);
BEGIN;
SELECT sessioncache.patch('sessions', 'pg-' || :client_id::text || '-' || :k::text, '{"p": 1}');
SELECT sessioncache.incr('login_failures', 'pooled-tx', 'n');
END;
});
my ($pout, $perr) = ('', '');
my $ran = IPC::Run::run(
	[
		'pgbench', '-n', '-M', 'extended', '-c', '8', '-j', '2', '-t', '150',
		'-f', $script, '-h', '127.0.0.1', '-p', $bport, '-U', 'app', 'postgres'
	],
	'<', \undef, '>', \$pout, '2>', \$perr);
ok($ran, 'pgbench through the pooler: 8 clients, 150 transactions each')
  or diag "$pout\n$perr";
like($pout, qr/number of failed transactions: 0 /, 'no failed transaction')
  or diag $pout;
is( via_ok(
		'app', q{
SELECT sessioncache.get('login_failures', 'pooled-counter')->>'n',
       sessioncache.get('login_failures', 'pooled-tx')->>'n'}),
	'1200|1200',
	'every increment counted');
my ($srv) = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'});
ok($srv <= 2, "the app's clients shared at most 2 server connections ($srv)");
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'check_memory() after the pooled load');

# the reference client: data through the pooler, listener direct
my $python = '/usr/bin/python3';
my $client = abs_path(dirname(__FILE__) . '/../pgbouncer_client.py');
my ($cout, $cerr) = ('', '');
my $cok = IPC::Run::run(
	[
		$python, $client,
		"host=127.0.0.1 port=$bport dbname=postgres user=app",
		"host=$host port=$port dbname=postgres user=app"
	],
	'<', \undef, '>', \$cout, '2>', \$cerr, IPC::Run::timeout(300));
note $cout;
diag $cerr if $cerr ne '';
ok($cok, 'the reference client behind the pooler: every check passed');
my @notok = $cout =~ /^(not ok .*)$/mg;
is(scalar(@notok), 0, 'no failed client check') or diag join("\n", @notok);
like($cout, qr/^1\.\.\d+$/m, 'the client checks ran to the end');

$bouncer->signal('TERM');
$bouncer->finish;
undef $bouncer;
$node->stop;
unlike(
	slurp_file($node->logfile),
	qr/was terminated by signal|terminated by exception|PANIC|TRAP:/,
	'no process crashed');
done_testing();
