# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 13: an idle notify worker must sleep until a committer
# sets its latch, not poll every 50 ms.  Measured from outside: the
# worker's voluntary context switches (/proc/PID/status, Linux) over 5 s
# with nothing to send.  Polling every 50 ms gives about 100; a worker that
# sleeps on its latch (with at most a long safety timeout) gives a handful.
# The worker must still deliver a notification promptly afterwards.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use Digest::SHA qw(hmac_sha256);

plan skip_all => 'needs /proc/PID/status' unless -r "/proc/$$/status";

my $node = PostgreSQL::Test::Cluster->new('notify_idle');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

# one message first, so that the worker is past its start-up
$node->safe_psql('postgres', q{SELECT sessioncache.put('auth_sessions', 'warm', '{}')});
ok( $node->poll_query_until(
		'postgres',
		q{SELECT sum(notifications) >= 1 FROM sessioncache.cache_stats}),
	'the notify worker has sent a message');
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'sessioncache notify'});
like($pid, qr/^\d+$/, 'the notify worker runs');

sub switches
{
	my $st = slurp_file("/proc/$pid/status");
	$st =~ /^voluntary_ctxt_switches:\s+(\d+)/m or die "no voluntary_ctxt_switches";
	return $1;
}

sleep(1);
my $before = switches();
sleep(5);
my $wakeups = switches() - $before;
diag("the idle notify worker had $wakeups voluntary context switches in 5 s");
cmp_ok($wakeups, '<', 25, 'the idle notify worker wakes fewer than 25 times in 5 s');

# and it is not asleep for good: a put is announced within a second
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN sessioncache_invalidate');
# the key comes as its key_hash (issue 12): HMAC-SHA256(secret, cache NUL key)
my $secret = pack('H*', $node->safe_psql('postgres',
	q{SELECT encode(sessioncache.channel_secret(), 'hex')}));
my $after_idle = unpack('H32', hmac_sha256("auth_sessions\0after_idle", $secret));
my $t0 = time();
$node->safe_psql('postgres', q{SELECT sessioncache.put('auth_sessions', 'after_idle', '{}')});
my $got = '';
while (time() - $t0 < 5)
{
	$got = $listener->query_safe('SELECT 1');
	last if $got =~ /$after_idle/;
	usleep(20_000);
}
like($got, qr/$after_idle/, 'a put after the idle period is announced');
cmp_ok(time() - $t0, '<', 1, 'within a second');
$listener->quit;

$node->stop;
done_testing();
