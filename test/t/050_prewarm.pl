
# Copyright (c) 2025, sessioncache contributors
#
# After a start, reads are served at once by lazy fills while the prewarm
# worker loads the durable caches in the background, most recently used
# first.  With sessioncache.prewarm off nothing is loaded but what is read.
# When the durable entries do not fit in sessioncache.memory, prewarm stops
# at the budget without errors and every entry is still readable.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $crash_re =
  qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/;

sub new_node
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		    "shared_preload_libraries = 'sessioncache'\n"
		  . "sessioncache.database = 'postgres'\n"
		  . "sessioncache.flush_interval = '500ms'\n"
		  . "sessioncache.expiry_interval = '200ms'\n"
		  # a crash must not stop the server (and with it the TAP suite);
		  # the end of this test checks the log for crashes instead
		  . "restart_after_crash = on\n"
		  . $extra);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
	return $node;
}

# wait (bounded) until the prewarm worker has run and exited
sub wait_for_prewarm
{
	my ($node, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', q{
SELECT runs >= 1 AND pid IS NULL FROM sessioncache.workers WHERE name = 'prewarm'}),
		"$what: the prewarm worker ran and finished");
	is( $node->safe_psql(
			'postgres', q{SELECT runs, errors FROM sessioncache.workers WHERE name = 'prewarm'}),
		'1|0',
		"$what: prewarm ran once, without errors");
}

my $gets_right = q{
SELECT count(*) FILTER (WHERE sessioncache.get(e.cache, e.key) = e.value) FROM expect e};

### 1. a cache that fits in memory: 10,000 entries

my $node = new_node('prewarm', '');
$node->safe_psql(
	'postgres', q{
CREATE TABLE expect AS
SELECT CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END AS cache,
       'k' || g AS key, jsonb_build_object('n', g, 'pad', repeat('p', 50)) AS value,
       'user' || (g % 50) AS user_id
FROM generate_series(1, 10000) g;
SELECT count(sessioncache.put(cache, key, value, user_id)) FROM expect;
});
is($node->safe_psql('postgres', $gets_right), '10000', '10,000 entries written');

# 1a. prewarm off: only what is read is loaded, and reads work at once
$node->append_conf('postgresql.conf', "sessioncache.prewarm = off\n");
$node->restart;
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE sessioncache.get(e.cache, e.key) = e.value)
FROM expect e WHERE substr(e.key, 2)::int <= 100}),
	'100',
	'prewarm off: reads right after the start return the values');
# the writeback worker launches prewarm in its first round: wait for two
ok( $node->poll_query_until(
		'postgres',
		q{SELECT runs >= 2 FROM sessioncache.workers WHERE name = 'writeback'}),
	'prewarm off: the writeback worker has run');
is( $node->safe_psql(
		'postgres', q{
SELECT (SELECT runs FROM sessioncache.workers WHERE name = 'prewarm'),
       (SELECT entries FROM sessioncache.memory),
       (SELECT sum(fills) FROM sessioncache.cache_stats),
       (SELECT sum(entries) FROM sessioncache.cache_stats)}),
	'0|100|100|100',
	'prewarm off: no prewarm, only the 100 entries read were filled');

# 1b. prewarm on: reads right after the start are served while the worker
# loads everything
$node->append_conf('postgresql.conf', "sessioncache.prewarm = on\n");
$node->restart;
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE sessioncache.get(e.cache, e.key) = e.value)
FROM expect e WHERE substr(e.key, 2)::int BETWEEN 101 AND 200}),
	'100',
	'prewarm on: reads right after the start return the values');
wait_for_prewarm($node, 'prewarm on');
is( $node->safe_psql(
		'postgres', q{
SELECT (SELECT entries FROM sessioncache.memory),
       (SELECT sum(entries) FROM sessioncache.cache_stats
        WHERE cache IN ('sessions', 'offline_sessions')),
       (SELECT sum(fills) FROM sessioncache.cache_stats
        WHERE cache IN ('sessions', 'offline_sessions')),
       (SELECT count(*) FROM sessioncache.entries e JOIN expect x USING (cache, key))}),
	'10000|10000|10000|10000',
	'prewarm on: every durable entry is in memory, each filled once');

# now every read is a hit: served from memory, not from the table
$node->safe_psql('postgres', 'SELECT sessioncache.reset_stats()');
is($node->safe_psql('postgres', $gets_right),
	'10000', 'prewarm on: every entry reads back');
is( $node->safe_psql(
		'postgres', q{
SELECT sum(hits), sum(misses), sum(fills) FROM sessioncache.cache_stats
WHERE cache IN ('sessions', 'offline_sessions')}),
	'10000|0|0',
	'prewarm on: all 10,000 reads were hits');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM expect e, LATERAL sessioncache.entry_info(e.cache, e.key) i
WHERE i.user_id = e.user_id AND i.durable}),
	'10000',
	'prewarm on: entries keep their users');
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'prewarm on: check_memory()');

# 1c. writes racing the prewarm worker: right after a start, another session
# replaces every entry and deletes a tenth of them, in small transactions,
# while prewarm loads.  Prewarm must never install a value older than one
# committed, nor bring back a deleted entry.
$node->restart;
my $writer = $node->background_psql('postgres');
$writer->query_safe(
	join("\n",
		map {
			"SELECT count(sessioncache.put(cache, key, value || '{\"v\": 2}', user_id))"
			  . " FROM expect WHERE substr(key, 2)::int % 20 = $_;"
			  . " SELECT count(sessioncache.delete(cache, key))"
			  . " FROM expect WHERE substr(key, 2)::int % 20 = $_"
			  . " AND substr(key, 2)::int % 200 < 20;"
		} (0 .. 19)));
$writer->quit;
wait_for_prewarm($node, 'writes during prewarm');
$node->safe_psql(
	'postgres', q{
UPDATE expect SET value = value || '{"v": 2}';
DELETE FROM expect WHERE substr(key, 2)::int % 200 < 20;
});
is( $node->safe_psql(
		'postgres', q{
SELECT (SELECT count(*) FROM expect),
       (SELECT count(*) FROM sessioncache.entries e JOIN expect x USING (cache, key)),
       (SELECT count(*) FROM sessioncache.entries WHERE cache IN ('sessions', 'offline_sessions'))}),
	'9000|9000|9000',
	'writes during prewarm: memory holds exactly the 9,000 live entries');
is($node->safe_psql('postgres', $gets_right),
	'9000', 'writes during prewarm: every entry reads its last committed value');
is( $node->safe_psql(
		'postgres', q{
SELECT count(sessioncache.get(CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
                              'k' || g))
FROM generate_series(1, 10000) g WHERE g % 200 < 20}),
	'0',
	'writes during prewarm: no deleted entry came back');
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'writes during prewarm: check_memory()');

$node->stop;
unlike(slurp_file($node->logfile), $crash_re, 'prewarm: no process crashed');

### 2. more durable entries than sessioncache.memory holds

# 15,000 entries of about 1.2kB: twice the 8MB budget
my $small = new_node('small', "sessioncache.memory = '8MB'\n");
$small->safe_psql(
	'postgres', q{
CREATE TABLE expect AS
SELECT CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END AS cache,
       'k' || g AS key, jsonb_build_object('n', g, 'pad', repeat(md5(g::text), 35)) AS value,
       'user' || (g % 50) AS user_id, g
FROM generate_series(1, 15000) g;
});
# in 15 transactions, oldest first (last_access orders the prewarm)
$small->safe_psql('postgres',
	join("\n",
		map {
			"SELECT count(sessioncache.put(cache, key, value, user_id)) FROM expect"
			  . " WHERE g > $_ * 1000 AND g <= ($_ + 1) * 1000;"
		} (0 .. 14)));
is( $small->safe_psql(
		'postgres', q{
SELECT (SELECT entries < 15000 FROM sessioncache.memory),
       (SELECT sum(evicted) > 0 FROM sessioncache.cache_stats)}),
	't|t',
	'small memory: the entries do not all fit, durable ones were evicted');
is($small->safe_psql('postgres', $gets_right),
	'15000', 'small memory: every entry reads back before the restart');

my $log_offset = -s $small->logfile;
$small->restart;
wait_for_prewarm($small, 'small memory');
ok( $small->log_contains(
		qr/sessioncache prewarm loaded \d+ entries in \d+ ms \(memory full\)/,
		$log_offset),
	'small memory: prewarm says it stopped at the memory budget');
is( $small->safe_psql(
		'postgres', q{
SELECT m.entries > 0 AND m.entries < 15000, m.used_bytes <= m.total_bytes,
       (SELECT sum(evicted) FROM sessioncache.cache_stats),
       (SELECT sum(fills) FROM sessioncache.cache_stats) = m.entries
FROM sessioncache.memory m}),
	't|t|0|t',
	'small memory: prewarm loaded part of the entries and evicted none');
# most recently used first: the first batch (the last 1,000 written) went
# into empty memory, so all of it is there
is( $small->safe_psql(
		'postgres', q{
SELECT count(*) FROM sessioncache.entries e JOIN expect x USING (cache, key)
WHERE x.g > 14000}),
	'1000',
	'small memory: the 1,000 most recently used entries were loaded');
is($small->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'small memory: check_memory() after prewarm');

# every entry is still readable (lazy fills evicting older ones)
is($small->safe_psql('postgres', $gets_right),
	'15000', 'small memory: every entry reads back after the restart');
is( $small->safe_psql(
		'postgres', q{
SELECT count(*) FROM expect e, LATERAL sessioncache.entry_info(e.cache, e.key) i
WHERE i.user_id = e.user_id}),
	'15000',
	'small memory: entry_info finds every entry');
is( $small->safe_psql(
		'postgres', q{
SELECT (SELECT sum(evicted) > 0 FROM sessioncache.cache_stats),
       sessioncache.check_memory()}),
	't|t',
	'small memory: the reads evicted entries, memory is consistent');
ok( !$small->log_contains(qr/ERROR:/, $log_offset),
	'small memory: no error in the log since the restart');
$small->stop;
unlike(slurp_file($small->logfile), $crash_re, 'small memory: no process crashed');

done_testing();
