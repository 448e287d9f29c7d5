
# Copyright (c) 2025, sessioncache contributors
#
# Loading without shared_preload_libraries: CREATE EXTENSION, LOAD and every
# function fail with an ERROR, SQLSTATE 55000, whose hint names
# shared_preload_libraries; never a FATAL that ends the session, never a
# crash.  Both on a server that never preloaded it and on one where the
# extension was created with the preload and the server was then restarted
# without it.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('nopreload');
$node->init;
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
$node->start;

# Runs the statements in one session (not stopping at errors); returns
# stdout and stderr.  The last statement proves the session survived.
sub session
{
	my ($db, @stmts) = @_;
	my $sql = "\\set VERBOSITY verbose\n"
	  . join('', map { "$_;\n" } @stmts)
	  . "SELECT 'session still alive';\n";
	my ($ret, $out, $err) = $node->psql($db, $sql, on_error_stop => 0);
	return ($out, $err);
}

sub errors_ok
{
	my ($what, $n, $out, $err) = @_;
	like($out, qr/session still alive/, "$what: the session survives");
	unlike($err, qr/FATAL|PANIC|server closed the connection/, "$what: no FATAL");
	my @errors = $err =~ /ERROR:  55000: [^\n]*\n(?:DETAIL:[^\n]*\n)?HINT:  [^\n]*shared_preload_libraries/g;
	is(scalar(@errors), $n, "$what: $n errors with SQLSTATE 55000 and a hint naming shared_preload_libraries")
	  or diag $err;
	my @other = grep { !/55000/ } ($err =~ /^ERROR:  (\S+)/mg);
	is(scalar(@other), 0, "$what: no other error") or diag $err;
}

# 1. never preloaded
my ($out, $err) = session('postgres', 'CREATE EXTENSION sessioncache');
errors_ok('CREATE EXTENSION without the preload', 1, $out, $err);
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'sessioncache'}),
	'0', 'the extension was not created');

($out, $err) = session('postgres', q{LOAD 'sessioncache'}, q{SHOW sessioncache.memory});
like($out, qr/session still alive/, 'LOAD without the preload: the session survives');
unlike($err, qr/FATAL|PANIC/, 'LOAD without the preload: no FATAL');

# 2. created with the preload, then the server restarted without it
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'sessioncache'\nsessioncache.database = 'postgres'\n");
$node->restart;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION sessioncache;
SELECT sessioncache.put('sessions', 'k1', '{"a": 1}', 'u1');
SELECT * FROM sessioncache.join('auth', 'n1', NULL, '1 day');
});
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
$node->restart;

my @calls = (
	q{SELECT sessioncache.get('sessions', 'k1')},
	q{SELECT sessioncache.put('sessions', 'k2', '{}')},
	q{SELECT sessioncache.touch('sessions', 'k1')},
	q{SELECT sessioncache.delete('sessions', 'k1')},
	q{SELECT * FROM sessioncache.entry_info('sessions', 'k1')},
	q{SELECT sessioncache.define_cache('x')},
	q{SELECT * FROM sessioncache.cache_stats},
	q{SELECT * FROM sessioncache.memory},
	q{SELECT * FROM sessioncache.entries},
	q{SELECT * FROM sessioncache.workers},
	q{SELECT * FROM sessioncache.notify_stats},
	q{SELECT sessioncache.reset_stats()});
($out, $err) = session('postgres', @calls);
errors_ok('functions after a restart without the preload', scalar(@calls), $out, $err);

# the durable rows are untouched and come back with the preload
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "'sessioncache'");
$node->restart;
is($node->safe_psql('postgres', q{SELECT sessioncache.get('sessions', 'k1')}),
	'{"a": 1}', 'with the preload again, the entry is there');

$node->stop;
unlike(
	slurp_file($node->logfile),
	qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
	'no process crashed');
done_testing();
