# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 4: a stalled notify worker must not stop expiry.  The
# notify worker is stopped with SIGSTOP (the test runs as the server's
# user), the notification ring is filled with 9,000 puts, then 300 entries
# of a memory-only cache with notify on reach their 2-second lifespan.
# They must leave shared memory on time (within 5 s of their expiry).
# Today the expiry worker waits up to 5 s per message for room in the full
# ring, so they stay for minutes, and memory-only caches fill up (53200).
# Once the worker runs again, listeners get one {"op": "flush"} for what
# was dropped.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $node = PostgreSQL::Test::Cluster->new('notify_stall');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '200ms'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
$node->safe_psql('postgres',
	q{SELECT sessioncache.define_cache('stall_mem', false, '1 hour', '2 seconds')});

my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'sessioncache notify'});
like($pid, qr/^\d+$/, 'the notify worker runs');
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN sessioncache_invalidate');

ok(kill('STOP', $pid), 'the notify worker is stopped (SIGSTOP)');
my $stopped = 1;
END { kill('CONT', $pid) if $stopped && $pid; }

# fill the ring (8,192 messages): the puts themselves never wait
$node->safe_psql('postgres',
	q{SELECT count(sessioncache.put('auth_sessions', 'fill' || g, '{}')) FROM generate_series(1, 9000) g});

my $t_put = time();
$node->safe_psql('postgres',
	q{SELECT count(sessioncache.put('stall_mem', 'k' || g, jsonb_build_object('g', g))) FROM generate_series(1, 300) g});
my $left = '';
while (1)
{
	$left = $node->safe_psql('postgres',
		q{SELECT entries FROM sessioncache.cache_stats WHERE cache = 'stall_mem'});
	last if $left eq '0' || time() > $t_put + 2 + 5;
	usleep(200_000);
}
diag(sprintf("%s entries left %.1f s after the puts", $left, time() - $t_put));
is($left, '0', 'with the notify worker stopped, expired entries left memory within 5 s');
is( $node->safe_psql(
		'postgres', q{SELECT count(sessioncache.get('stall_mem', 'k' || g)) FROM generate_series(1, 300) g}),
	'0', 'and none is returned');

# the worker runs again: one flush for the dropped messages
kill('CONT', $pid);
$stopped = 0;
my $got = '';
my $t0 = time();
while (time() - $t0 < 10)
{
	$got .= $listener->query_safe('SELECT 1');
	last if $got =~ /"op": "flush"/;
	usleep(50_000);
}
like($got, qr/"op": "flush"/, 'after the stall, listeners are told to flush');
$listener->quit;

$node->stop;
done_testing();
