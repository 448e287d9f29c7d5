# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 3: the workers must obey SIGTERM during a long round.
# With 8,000 expired rows (each delete made to take 1 ms) of a durable cache waiting for the expiry worker
# (a durable-expiry backlog), "pg_ctl stop -m fast" completes within 5 s,
# and pg_terminate_backend() of the expiry worker in the middle of the round
# ends it within 5 s too (it is started again).  Today the SIGTERM handler
# only sets a flag that the worker reads between rounds.
#
# The backlog is written straight into the durable table (the guard
# trigger, a statement trigger, does not fire with session_replication_role
# = replica) so that building it takes a second, not minutes.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

# 200,000 rows take the worker only about 2 s here (1,000,000 about 3 s):
# not long enough to tell a 5 s bound from a worker that simply finishes
# its round.  So a row trigger makes each delete sleep 1 ms (about 2 ms in
# practice): 8,000 rows are a round of about 16 s, in batches of 1,000.
my $rows = 8_000;

my $node = PostgreSQL::Test::Cluster->new('fast_stop');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  . "sessioncache.flush_interval = '200ms'\n"
	  . "autovacuum = off\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('backlog', true, '1 hour', '10 hours', NULL, 'deny', false);
CREATE FUNCTION public.slow_delete() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_catalog.pg_sleep(0.001); RETURN OLD; END $$;
CREATE TRIGGER slow_delete BEFORE DELETE ON sessioncache.durable_entries
FOR EACH ROW EXECUTE FUNCTION public.slow_delete();
});

# $rows rows that expired an hour ago, written in one statement
sub make_backlog
{
	$node->safe_psql(
		'postgres', qq{
SET session_replication_role = replica;
INSERT INTO sessioncache.durable_entries
       (cache_id, key, value, created_at, last_access, version, expires_at)
SELECT d.id, 'b' || g, '{"b": true}', now() - interval '2 hours', now() - interval '2 hours',
       g, now() - interval '1 hour'
FROM sessioncache.cache_defs d, generate_series(1, $rows) g WHERE d.name = 'backlog'
ON CONFLICT DO NOTHING;
});
}

sub rows_left
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM sessioncache.durable_entries});
}

# wait (at most 30 s) until the expiry worker is working on the backlog
sub wait_backlog_started
{
	my $t0 = time();
	while (time() - $t0 < 30)
	{
		return 1 if rows_left() < $rows;
		usleep(20_000);
	}
	return 0;
}

make_backlog();

# 1. pg_ctl stop -m fast in the middle of the backlog
ok(wait_backlog_started(), 'stop: the expiry worker works on the backlog');
my $left = rows_left();
cmp_ok($left, '>', 1000, 'stop: more than a batch of the backlog is left when the stop is asked for');
my $t0 = time();
$node->stop('fast');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5, "stop: pg_ctl stop -m fast took less than 5 s during the backlog");
$node->start;
diag(sprintf("fast stop took %.1f s with %d rows left before, %d after",
		$elapsed, $left, rows_left()));

# 2. pg_terminate_backend of the expiry worker in the middle of the backlog
make_backlog();
ok(wait_backlog_started(), 'terminate: the expiry worker works on the backlog');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'sessioncache expiry'});
like($pid, qr/^\d+$/, 'terminate: the expiry worker runs');
$t0 = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$left = rows_left();
cmp_ok($left, '>', 1000, 'terminate: more than a batch of the backlog is left');
my $gone = 0;
while (time() - $t0 < 5)
{
	$gone = $node->safe_psql('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid") eq 't';
	last if $gone;
	usleep(50_000);
}
$elapsed = time() - $t0;
ok($gone, 'terminate: the expiry worker exited within 5 s of pg_terminate_backend');
diag(sprintf("the worker %s after %.1f s", $gone ? 'exited' : 'still ran', $elapsed));

# the worker comes back and finishes the backlog, at full speed
$node->safe_psql('postgres', 'DROP TRIGGER slow_delete ON sessioncache.durable_entries');
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 0 FROM sessioncache.durable_entries}),
	'the backlog is done in the end');
$node->stop('fast');
done_testing();
