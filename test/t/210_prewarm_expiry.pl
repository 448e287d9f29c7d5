# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 1: entries loaded by the prewarm worker after a restart
# must sit on the expiry wheel at their real expiry time, so that they leave
# shared memory on time.  (prewarm_batch left expires_at uninitialised before
# SCInstallEntry: the entries landed in an arbitrary wheel slot and stayed in
# memory long after they expired.)
#
# The expiry worker also removes the memory copy of a durable row it
# deletes, which would hide a misplaced wheel entry: so while the entries
# expire, a session holds an ACCESS EXCLUSIVE lock on the durable table and
# the worker's row deletion times out (lock_timeout), leaving the wheel as
# the only way out of memory.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('prewarm_expiry');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  . "sessioncache.flush_interval = '200ms'\n"
	  # the workers' row statements give up quickly while the table is locked
	  . "lock_timeout = '300ms'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

# 2,000 durable entries with an 8-second idle timeout (cache-wide), and
# 2,000 with a 3600-second cache timeout but their own 8-second lifespan
$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('pw_short', true, '8 seconds', '10 hours');
SELECT sessioncache.define_cache('pw_own', true, '1 hour', '10 hours');
SELECT count(sessioncache.put('pw_short', 'k' || g, jsonb_build_object('g', g)))
FROM generate_series(1, 2000) g;
SELECT count(sessioncache.put('pw_own', 'k' || g, jsonb_build_object('g', g), NULL, NULL,
                              '8 seconds'))
FROM generate_series(1, 2000) g;
});
$node->restart;

# wait (bounded) until prewarm has loaded them
ok( $node->poll_query_until(
		'postgres', q{
SELECT runs >= 1 AND pid IS NULL FROM sessioncache.workers WHERE name = 'prewarm'}),
	'the prewarm worker ran and finished');
my $deadline = $node->safe_psql('postgres',
	q{SELECT extract(epoch FROM max(expires_at)) FROM sessioncache.durable_entries});
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(cache || ':' || entries, ',' ORDER BY cache) FROM sessioncache.cache_stats
WHERE cache IN ('pw_short', 'pw_own')}),
	'pw_own:2000,pw_short:2000',
	'prewarm loaded the 4,000 entries before they expired');

# keep the expiry worker away from the rows: only the wheel removes copies
my $locker = $node->background_psql('postgres');
$locker->query_safe(
	'BEGIN; LOCK TABLE sessioncache.durable_entries IN ACCESS EXCLUSIVE MODE');

# they expire at most 8 s after the puts; the expiry worker runs every
# 200 ms and works in whole seconds: allow 5 s more
my $left = '';
while (1)
{
	$left = $node->safe_psql(
		'postgres', q{
SELECT coalesce(sum(entries), 0) FROM sessioncache.cache_stats WHERE cache IN ('pw_short', 'pw_own')});
	last if $left eq '0';
	last if Time::HiRes::time() > $deadline + 5;
	usleep(200_000);
}
is($left, '0', 'prewarmed entries left shared memory within 5 s of their expiry');
$locker->query_safe('COMMIT');
$locker->quit;
ok( $node->poll_query_until(
		'postgres', q{
SELECT (SELECT entries FROM sessioncache.memory) = 0
   AND (SELECT count(*) FROM sessioncache.durable_entries) = 0}),
	'then memory and table are empty');

$node->stop;
done_testing();
