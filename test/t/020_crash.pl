
# Copyright (c) 2025, sessioncache contributors
#
# Crash of a backend in the middle of a write storm: the postmaster kills
# and restarts every child and re-creates shared memory.  Afterwards shared
# memory is consistent, every entry committed before the kill reads back with
# its last committed value, nothing of the killed transaction is visible, and
# the workers run again.  Then the same for a SIGKILL of a worker.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '500ms'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  # PostgreSQL::Test::Cluster turns it off
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

my $workers_up = q{
SELECT count(*) = 3 FROM sessioncache.workers
WHERE name IN ('expiry', 'writeback', 'notify') AND pid IS NOT NULL};

ok($node->poll_query_until('postgres', $workers_up),
	'expiry, writeback and notify workers run');

# pids of the three permanent workers, name => pid (never printed)
sub worker_pids
{
	my %pids = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres',
		q{SELECT name, pid FROM sessioncache.workers
		  WHERE name IN ('expiry', 'writeback', 'notify') AND pid IS NOT NULL});
	return \%pids;
}

# Kill a process with SIGKILL and wait until the postmaster has re-initialized
# and accepts connections again.
sub kill9_and_wait
{
	my ($pid, $what) = @_;
	my $offset = -s $node->logfile;

	is(kill('KILL', $pid), 1, "$what: sent SIGKILL");
	$node->wait_for_log(
		qr/all server processes terminated; reinitializing/, $offset);
	ok($node->poll_query_until('postgres', 'SELECT true'),
		"$what: server accepts connections after the crash-restart");
	ok($node->poll_query_until('postgres', $workers_up),
		"$what: the workers run again");
	return $offset;
}

# 2,000 committed entries, 10 users
$node->safe_psql(
	'postgres', q{
SELECT count(sessioncache.put('sessions', 'c' || g, jsonb_build_object('c', g),
                              'cuser' || (g % 10)))
FROM generate_series(1, 2000) g;
CREATE TABLE snap AS
SELECT 'c' || g AS key, g AS n, i.version, i.created_at
FROM generate_series(1, 2000) g, LATERAL sessioncache.entry_info('sessions', 'c' || g) i;
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM snap'),
	'2000', '2,000 entries committed');
my $old_pids = worker_pids();

# The storm: a DO block that commits every 500 iterations; iteration i
# creates key storm<i> and overwrites key c<i % 2000 + 1>.  It runs until it
# is killed, so the kill lands inside an open transaction of up to 500
# iterations (1,000 puts).
my $storm = $node->background_psql('postgres', on_error_stop => 0);
$storm->query_safe("SET application_name = 'storm'");
$storm->query_until(
	qr/storm started/, q{
\echo storm started
DO $$
BEGIN
  FOR i IN 1..100000000 LOOP
    PERFORM sessioncache.put('sessions', 'storm' || i, jsonb_build_object('i', i),
                             'stormuser');
    PERFORM sessioncache.put('sessions', 'c' || (i % 2000 + 1),
                             jsonb_build_object('storm', i),
                             'cuser' || ((i % 2000 + 1) % 10));
    IF i % 500 = 0 THEN
      COMMIT;
    END IF;
  END LOOP;
END
$$;
});

# wait until 10 batches (5,000 iterations) have committed
ok( $node->poll_query_until(
		'postgres',
		q{SELECT sessioncache.get('sessions', 'storm5000') IS NOT NULL}),
	'the storm has committed 10 batches');
my $storm_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity
	  WHERE application_name = 'storm' AND state = 'active'});
like($storm_pid, qr/^\d+$/, 'found the storm backend in pg_stat_activity');

kill9_and_wait($storm_pid, 'backend SIGKILL');
# its psql has lost the connection; \q to a dead psql may raise EPIPE
eval { $storm->quit; };

my $new_pids = worker_pids();
is( scalar(grep { $new_pids->{$_} != $old_pids->{$_} } keys %$old_pids),
	3, 'the three workers were restarted (new pids)');
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'check_memory() after the crash-restart');

# K, the last committed iteration: storm1..stormK are present, nothing beyond.
my $k = $node->safe_psql(
	'postgres', q{
SELECT max(substr(key, 6)::int) FROM sessioncache.user_entries('sessions', 'stormuser')});
ok($k >= 5000, 'at least the 10 batches seen before the kill survived');
is($k % 500, 0, 'the last surviving iteration ends a batch (no partial transaction)');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*),
       count(*) FILTER (WHERE value = jsonb_build_object('i', substr(key, 6)::int))
FROM sessioncache.user_entries('sessions', 'stormuser')}),
	"$k|$k",
	'every committed storm entry is there with its value, and only those');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(sessioncache.get('sessions', 'storm' || g))
FROM generate_series($k + 1, $k + 500) g}),
	'0',
	'no entry of the killed transaction is readable');

# c<n> holds the last committed storm write j <= K with j % 2000 + 1 = n, or
# its original value if there is none
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM (
  SELECT s.*, $k - ((($k - (s.n - 1)) % 2000) + 2000) % 2000 AS j FROM snap s) s,
  LATERAL sessioncache.entry_info('sessions', s.key) i
WHERE sessioncache.get('sessions', s.key) =
      CASE WHEN s.j >= 1 THEN jsonb_build_object('storm', s.j)
           ELSE jsonb_build_object('c', s.n) END
  AND i.created_at = s.created_at AND i.version >= s.version
  AND i.user_id = 'cuser' || (s.n % 10)}),
	'2000',
	'every overwritten entry holds its last committed value and its created_at');

# writes work and versions keep rising
is( $node->safe_psql(
		'postgres', q{
SELECT sessioncache.put('sessions', 'after', '{"x": 1}')
       > (SELECT max(i.version) FROM snap s,
                 LATERAL sessioncache.entry_info('sessions', s.key) i),
       sessioncache.get('sessions', 'after')}),
	't|{"x": 1}',
	'a write after the crash works and gets a higher version');
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'check_memory() after the reads');

# A SIGKILL of a worker (the writeback worker, while entries are dirty) is a
# crash too: the same recovery, and the committed entries are all there.
$node->safe_psql(
	'postgres', q{
SELECT count(*) FILTER (WHERE sessioncache.touch('sessions', 'c' || g))
FROM generate_series(1, 2000) g;
SELECT count(sessioncache.put('auth_sessions', 'a' || g, '{}')) FROM generate_series(1, 10) g;
});
my $wb_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM sessioncache.workers WHERE name = 'writeback'});
$old_pids = worker_pids();
kill9_and_wait($wb_pid, 'writeback worker SIGKILL');
$new_pids = worker_pids();
is( scalar(grep { $new_pids->{$_} != $old_pids->{$_} } keys %$old_pids),
	3, 'the three workers were restarted after the worker crash');
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM snap s
WHERE sessioncache.get('sessions', s.key) IS NOT NULL},
	),
	'2000',
	'committed entries survive a worker crash');
is( $node->safe_psql(
		'postgres', q{
SELECT count(sessioncache.get('auth_sessions', 'a' || g)) FROM generate_series(1, 10) g}),
	'0',
	'the memory-only cache is empty after a worker crash');
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'check_memory() after the worker crash');

$node->stop;
# the two SIGKILLs above are the only crashes
my @crashes = slurp_file($node->logfile) =~
  /(was terminated by signal \d+|terminated by exception|exited with exit code [^01]|PANIC|TRAP:)/g;
is(join(',', @crashes),
	'was terminated by signal 9,was terminated by signal 9',
	'no process crashed but the two killed ones');
done_testing();
