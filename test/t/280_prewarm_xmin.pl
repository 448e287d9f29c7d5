# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 8: prewarm must work in short transactions, one per
# batch, not one transaction and one cursor over the whole table (which pins
# the xmin horizon of the busiest table for the whole prewarm).  While the
# prewarm worker loads 200,000 rows, the test samples its backend_xmin in
# pg_stat_activity and consumes transaction ids meanwhile: with a
# transaction per batch the worker's xmin moves on (or is unset between
# batches); today it stays at one value from start to end.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $rows = 200_000;
my $node = PostgreSQL::Test::Cluster->new('prewarm_xmin');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.memory = '128MB'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
# the rows, written straight into the table (the guard is a statement
# trigger, which does not fire with session_replication_role = replica)
$node->safe_psql(
	'postgres', qq{
SELECT sessioncache.define_cache('pw', true, '1 hour', '10 hours');
SET session_replication_role = replica;
INSERT INTO sessioncache.durable_entries
       (cache_id, key, value, created_at, last_access, version, expires_at)
SELECT d.id, 'p' || g, '{"p": true}', now(), now() - g * interval '1 ms', g, now() + interval '1 hour'
FROM sessioncache.cache_defs d, generate_series(1, $rows) g WHERE d.name = 'pw';
});
$node->restart;

my $sampler = $node->background_psql('postgres');
my %xmins;
my $samples = 0;
my $t0 = time();
while (time() - $t0 < 60)
{
	my $r = $sampler->query_safe(q{
SELECT 'xmin:' || coalesce(backend_xmin::text, 'none') FROM pg_stat_activity
WHERE backend_type = 'sessioncache prewarm'; SELECT txid_current();});
	if ($r =~ /^xmin:(\d+|none)$/m)
	{
		$xmins{$1}++;
		$samples++;
	}
	last if $node->safe_psql('postgres',
		q{SELECT runs >= 1 AND pid IS NULL FROM sessioncache.workers WHERE name = 'prewarm'}) eq 't';
	usleep(20_000);
}
$sampler->quit;
diag(sprintf("prewarm took %.1f s; %d samples of its backend_xmin: %s",
		time() - $t0, $samples, join(', ', map { "$_ x$xmins{$_}" } sort keys %xmins)));
cmp_ok($samples, '>=', 3, 'the prewarm worker was seen at least 3 times');
is( $node->safe_psql('postgres',
		q{SELECT entries FROM sessioncache.cache_stats WHERE cache = 'pw'}),
	$rows, 'prewarm loaded every row');
cmp_ok(scalar(keys %xmins), '>=', 2,
	'the prewarm worker\'s xmin did not stay at one value while it loaded');

$node->stop;
done_testing();
