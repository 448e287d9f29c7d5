# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 6: a worker must treat a cache id missing from its copy
# of the definitions as "keep", never as "dropped".  Today the expiry
# worker, during a long round, deletes the rows of a cache created after
# the round began although their entries are live in memory (it takes the
# unknown cache's copies for absent).
#
# A long expiry round is made with 3,000 expired rows of another cache and
# a row trigger that makes each delete take about 2 ms (about 6 s in all).
# Once the round has begun, a new durable cache is defined with a 1-second
# idle timeout, 100 entries are put in it and touched every 200 ms (the
# touches stay in memory: flush_interval is 60 s, so the rows look expired
# as the expiry worker's copy check is what keeps them).  When the round is
# over (and 2 s more), every one of the 100 rows must still be there.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $rows = 3000;
my $node = PostgreSQL::Test::Cluster->new('new_cache_round');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '100ms'\n"
	  . "sessioncache.flush_interval = '60s'\n");
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION sessioncache;
SELECT sessioncache.define_cache('backlog', true, '1 hour', '10 hours', NULL, 'deny', false);
CREATE FUNCTION public.slow_delete() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_catalog.pg_sleep(0.001); RETURN OLD; END $$;
CREATE TRIGGER slow_delete BEFORE DELETE ON sessioncache.durable_entries
FOR EACH ROW EXECUTE FUNCTION public.slow_delete();
});
# the backlog, written straight into the table (the guard is a statement
# trigger, which does not fire with session_replication_role = replica)
$node->safe_psql(
	'postgres', qq{
SET session_replication_role = replica;
INSERT INTO sessioncache.durable_entries
       (cache_id, key, value, created_at, last_access, version, expires_at)
SELECT d.id, 'b' || g, '{"b": true}', now() - interval '2 hours', now() - interval '2 hours',
       g, now() - interval '1 hour'
FROM sessioncache.cache_defs d, generate_series(1, $rows) g WHERE d.name = 'backlog';
});

my $backlog_left = q{
SELECT count(*) FROM sessioncache.durable_entries d JOIN sessioncache.cache_defs c
ON c.id = d.cache_id WHERE c.name = 'backlog'};
my $t0 = time();
usleep(20_000) while $node->safe_psql('postgres', $backlog_left) == $rows && time() - $t0 < 30;
cmp_ok($node->safe_psql('postgres', $backlog_left), '<', $rows,
	'the expiry worker has begun its round on the backlog');

# the new cache, during the round
$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('born_in_round', true, '1 second', '10 hours');
SELECT count(sessioncache.put('born_in_round', 'k' || g, jsonb_build_object('g', g)))
FROM generate_series(1, 100) g;
});
my $touch = q{
SELECT count(*) FILTER (WHERE sessioncache.touch('born_in_round', 'k' || g))
FROM generate_series(1, 100) g};
my $touched = 100;
$t0 = time();
while ($node->safe_psql('postgres', $backlog_left) > 0 && time() - $t0 < 60)
{
	$touched = $node->safe_psql('postgres', $touch);
	last if $touched ne '100';
	usleep(200_000);
}
is($node->safe_psql('postgres', $backlog_left), '0', 'the backlog is gone');
# the same round goes on with the next batch (the new cache's rows): keep
# touching for 2 s more
$t0 = time();
while (time() - $t0 < 2)
{
	$touched = $node->safe_psql('postgres', $touch);
	last if $touched ne '100';
	usleep(200_000);
}
is($touched, '100', 'the 100 entries of the new cache stayed live in memory');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM sessioncache.durable_entries d JOIN sessioncache.cache_defs c
ON c.id = d.cache_id WHERE c.name = 'born_in_round'}),
	'100',
	'the rows of the live entries of the cache created during the round are all there');

$node->safe_psql('postgres', 'DROP TRIGGER slow_delete ON sessioncache.durable_entries');
$node->stop;
done_testing();
