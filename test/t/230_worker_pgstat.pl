# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 7: the workers report their table statistics.  The rows
# that the expiry worker deletes and the ones the writeback worker updates
# must show up in pg_stat_user_tables for sessioncache.durable_entries
# (n_tup_del, n_tup_upd, n_dead_tup), or autovacuum never hears of the dead
# tuples and the table and its indexes bloat.  Today the workers never call
# pgstat_report_stat(), so nothing they do is counted until they exit.
#
# autovacuum is off so that n_dead_tup cannot be reset under the test.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_pgstat');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  . "sessioncache.flush_interval = '200ms'\n"
	  . "autovacuum = off\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

my $stats = q{
SELECT n_tup_del, n_tup_upd, n_dead_tup FROM pg_stat_user_tables
WHERE relid = 'sessioncache.durable_entries'::regclass};

# 500 rows that expire after a second, 500 that are touched
$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('st_exp', true, '1 hour', '1 second');
SELECT sessioncache.define_cache('st_touch', true, '1 hour', '10 hours');
SELECT count(sessioncache.put('st_exp', 'k' || g, '{}')) FROM generate_series(1, 500) g;
SELECT count(sessioncache.put('st_touch', 'k' || g, '{}')) FROM generate_series(1, 500) g;
});
# what the backends themselves did: inserts only
is($node->safe_psql('postgres', $stats), '0|0|0',
	'before the workers: no row deleted or updated');
$node->safe_psql('postgres',
	q{SELECT pg_sleep(0.2); SELECT count(sessioncache.touch('st_touch', 'k' || g)) FROM generate_series(1, 500) g});

# the expiry worker deletes the expired rows, the writeback worker writes
# the touches (both checked in the table itself)
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE c.name = 'st_exp') = 0
   AND count(*) FILTER (WHERE c.name = 'st_touch'
                        AND sessioncache._last_access(d) > d.created_at) = 500
FROM sessioncache.durable_entries d JOIN sessioncache.cache_defs c ON c.id = d.cache_id}),
	'the expiry worker deleted the 500 rows and the writeback worker wrote the 500 touches');

# within 10 s (a worker may report at most once a second, and the stats
# snapshot of a new session is fresh)
my $got = '';
foreach my $i (1 .. 50)
{
	$got = $node->safe_psql(
		'postgres', q{
SELECT d.n_tup_del >= 500, a.n_tup_ins + a.n_tup_upd >= 1, d.n_dead_tup >= 500
FROM pg_stat_user_tables d, pg_stat_user_tables a
WHERE d.relid = 'sessioncache.durable_entries'::regclass
  AND a.relid = 'sessioncache.access'::regclass});
	last if $got eq 't|t|t';
	select(undef, undef, undef, 0.2);
}
is($got, 't|t|t',
	'pg_stat_user_tables counts the workers\' 500 deletes and their dead tuples, and the written-back idle timers (in sessioncache.access)');
diag('n_tup_del|n_tup_upd|n_dead_tup: ' . $node->safe_psql('postgres', $stats));

$node->stop;
done_testing();
