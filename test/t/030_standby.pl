
# Copyright (c) 2025, sessioncache contributors
#
# Streaming replication and failover: durable entries are rows, so a hot
# standby reads every committed entry through the API (and sees later
# changes once replayed), refuses writes as a read-only server does, and
# after promotion serves every committed entry and accepts writes.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '500ms'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  # a crash must not stop the server (and with it the TAP suite); the
	  # end of this test checks the log for crashes instead
	  . "restart_after_crash = on\n");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

# The SQLSTATE of the error a statement raises ('' when it succeeds).
sub sqlstate_of
{
	my ($node, $sql) = @_;
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return '' if $ret == 0;
	return $stderr =~ /ERROR:  ([0-9A-Z]{5}):/ ? $1 : "no SQLSTATE in: $stderr";
}

# 2,000 durable entries (1,000 per durable cache, 20 users), and what each
# should hold, in a table that replicates with them
$primary->safe_psql(
	'postgres', q{
CREATE TABLE expect AS
SELECT CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END AS cache,
       'k' || g AS key, jsonb_build_object('n', g) AS value, 'user' || (g % 20) AS user_id
FROM generate_series(1, 2000) g;
SELECT count(sessioncache.put(cache, key, value, user_id)) FROM expect;
ALTER TABLE expect ADD COLUMN version bigint, ADD COLUMN created_at timestamptz;
UPDATE expect e SET version = i.version, created_at = i.created_at
FROM (SELECT x.cache, x.key, i.* FROM expect x,
      LATERAL sessioncache.entry_info(x.cache, x.key) i) i
WHERE i.cache = e.cache AND i.key = e.key;
});
is($primary->safe_psql('postgres', 'SELECT count(version) FROM expect'),
	'2000', 'primary: 2,000 entries written');

$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'standby is in recovery');

my $all_match = q{
SELECT count(*) FILTER (WHERE sessioncache.get(e.cache, e.key) = e.value),
       count(*) FILTER (WHERE i.version = e.version AND i.created_at = e.created_at
                          AND i.user_id = e.user_id AND i.durable)
FROM expect e LEFT JOIN LATERAL sessioncache.entry_info(e.cache, e.key) i ON true};

is($standby->safe_psql('postgres', $all_match),
	'2000|2000', 'standby: get and entry_info return every committed entry');
is( $standby->safe_psql(
		'postgres', q{
SELECT count(*) FROM (SELECT DISTINCT cache, user_id FROM expect) u,
LATERAL (SELECT count(*) AS n FROM expect e
         WHERE e.cache = u.cache AND e.user_id = u.user_id) want,
LATERAL (SELECT count(*) AS n, count(e.key) AS same
         FROM sessioncache.user_entries(u.cache, u.user_id) x
         LEFT JOIN expect e ON e.cache = u.cache AND e.key = x.key AND e.value = x.value) got
WHERE got.n <> want.n OR got.same <> want.n}),
	'0',
	'standby: user_entries returns each user\'s entries');

# changes made on the primary after the standby started: replace 100, delete
# 50, create 50 new entries; read each on the standby before and after replay
$standby->safe_psql('postgres',
	q{SELECT count(sessioncache.get('sessions', 'k' || g)) FROM generate_series(2, 400, 2) g});
$primary->safe_psql(
	'postgres', q{
SELECT count(sessioncache.put(cache, key, value || '{"v": 2}', user_id))
FROM expect WHERE substr(key, 2)::int <= 100;
UPDATE expect SET value = value || '{"v": 2}' WHERE substr(key, 2)::int <= 100;
SELECT count(*) FILTER (WHERE sessioncache.delete(cache, key))
FROM expect WHERE substr(key, 2)::int BETWEEN 101 AND 150;
DELETE FROM expect WHERE substr(key, 2)::int BETWEEN 101 AND 150;
INSERT INTO expect (cache, key, value, user_id)
SELECT 'sessions', 'new' || g, jsonb_build_object('new', g), 'newuser' FROM generate_series(1, 50) g;
SELECT count(sessioncache.put(cache, key, value, user_id)) FROM expect WHERE key LIKE 'new%';
UPDATE expect e SET version = i.version, created_at = i.created_at
FROM (SELECT x.cache, x.key, i.* FROM expect x,
      LATERAL sessioncache.entry_info(x.cache, x.key) i) i
WHERE i.cache = e.cache AND i.key = e.key;
});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', $all_match),
	'2000|2000', 'standby: replayed replacements and new entries are visible through get');
is( $standby->safe_psql(
		'postgres', q{
SELECT count(sessioncache.get(CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
                              'k' || g)),
       count(i.version)
FROM generate_series(101, 150) g
LEFT JOIN LATERAL sessioncache.entry_info(CASE WHEN g % 2 = 0 THEN 'sessions'
                                              ELSE 'offline_sessions' END, 'k' || g) i ON true}),
	'0|0',
	'standby: replayed deletes are visible');

# writes on the standby fail as on any read-only server (25006)
is(sqlstate_of($standby, q{SELECT sessioncache.put('sessions', 'k2', '{}')}),
	'25006', 'standby: put of an existing key fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.put('sessions', 'nokey', '{}')}),
	'25006', 'standby: put of a new key fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.patch('sessions', 'k2', '{"p": 1}')}),
	'25006', 'standby: patch fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.incr('offline_sessions', 'k1', 'n')}),
	'25006', 'standby: incr fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.delete('sessions', 'k2')}),
	'25006', 'standby: delete fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.delete_user('sessions', 'user2')}),
	'25006', 'standby: delete_user fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.touch('sessions', 'k2')}),
	'25006', 'standby: touch fails with 25006');
is(sqlstate_of($standby, q{SELECT sessioncache.put('auth_sessions', 'a1', '{}')}),
	'25006', 'standby: put into a memory-only cache fails with 25006');
is($standby->safe_psql('postgres', q{SELECT sessioncache.get('auth_sessions', 'a1')}),
	'', 'standby: the memory-only cache stays empty');
is($standby->safe_psql('postgres', $all_match),
	'2000|2000', 'standby: the refused writes changed nothing');

# A version is never reused and never goes backwards for a key, across a
# failover too: clients order a key's invalidations by version.  The
# primary restarts while the standby runs (a rolling restart), then puts and
# deletes a key; on the promoted server a new put of that key must get a
# higher version than the one it had before the delete.
$primary->restart;
my $v_before = $primary->safe_psql('postgres',
	q{SELECT sessioncache.put('sessions', 'vk', '{"v": 1}', 'vuser')});
$primary->safe_psql('postgres', q{SELECT sessioncache.delete('sessions', 'vk')});
$primary->wait_for_catchup($standby);

# two cluster members with a short lease join just before the failover
my $lease_s = 2;
my (@members, $v);
for my $n (qw(m1 m2))
{
	my ($m, $view) = split /\|/,
	  $primary->safe_psql('postgres',
		"SELECT * FROM sessioncache.join('auth', '$n', NULL, '$lease_s seconds')");
	push @members, $m;
	$v = $view;    # the second join's view is the current one
}
my $heartbeats = join(', ', map { "sessioncache.heartbeat($_)" } @members);

# Failover: the last heartbeats reach the standby, the primary stops, and
# the standby is promoted only after the members' leases have run out.
# Membership is durable and every member keeps its lease for one more lease
# period after a failover: nobody is removed, the view does not change.
is($primary->safe_psql('postgres', "SELECT $heartbeats"),
	"$v|$v", 'primary: members heartbeat in the view of the last join');
my $last_heartbeat = time;
$primary->wait_for_catchup($standby);
is( $standby->safe_psql(
		'postgres', q{
SELECT string_agg(node, ',' ORDER BY node), min(view_id), max(view_id)
FROM sessioncache.members WHERE cluster = 'auth'}),
	"m1,m2|$v|$v",
	'standby: the members are replicated');
$primary->stop;
usleep(1_000_000 * ($last_heartbeat + $lease_s + 0.5 - time))
  if time < $last_heartbeat + $lease_s + 0.5;
$standby->promote;
ok( $standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'standby promoted');
ok( $standby->poll_query_until(
		'postgres', q{
SELECT count(*) = 3 FROM sessioncache.workers
WHERE name IN ('expiry', 'writeback', 'notify') AND pid IS NOT NULL}),
	'promoted: the workers run');

is( $standby->safe_psql(
		'postgres', q{
SELECT string_agg(node, ',' ORDER BY node), min(view_id), max(view_id),
       bool_and(lease_expires_at > clock_timestamp())
FROM sessioncache.members WHERE cluster = 'auth'}),
	"m1,m2|$v|$v|t",
	'promoted: members whose lease ran out during the failover are still there');
is($standby->safe_psql('postgres', "SELECT $heartbeats"),
	"$v|$v", 'promoted: their heartbeats succeed, same view');
is($standby->safe_psql('postgres', $all_match),
	'2000|2000', 'promoted: every committed durable entry is readable');
is( $standby->safe_psql(
		'postgres', q{
SELECT count(sessioncache.get(CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
                              'k' || g))
FROM generate_series(101, 150) g}),
	'0',
	'promoted: deleted entries stay deleted');
is($standby->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'promoted: check_memory()');

is( $standby->safe_psql(
		'postgres',
		qq{SELECT sessioncache.put('sessions', 'vk', '{"v": 2}', 'vuser') > $v_before}),
	't',
	'promoted: a deleted key put again gets a higher version than before the delete');

# writes work on the promoted server, with versions above the old ones
is( $standby->safe_psql(
		'postgres', q{
SELECT sessioncache.put('sessions', 'k2', '{"promoted": true}', 'user2')
         > (SELECT max(version) FROM expect),
       sessioncache.patch('sessions', 'k4', '{"p": 1}') = '{"n": 4, "v": 2, "p": 1}',
       sessioncache.incr('offline_sessions', 'k1', 'n', 10) = 11,
       sessioncache.delete('sessions', 'k6'),
       sessioncache.put('sessions', 'fresh', '{"f": 1}', 'freshuser') IS NOT NULL,
       sessioncache.put('auth_sessions', 'a1', '{"a": 1}') IS NOT NULL}),
	't|t|t|t|t|t',
	'promoted: put, patch, incr, delete work');
is( $standby->safe_psql(
		'postgres', q{
SELECT sessioncache.get('sessions', 'k2'), sessioncache.get('sessions', 'k4'),
       sessioncache.get('offline_sessions', 'k1'), sessioncache.get('sessions', 'k6'),
       sessioncache.get('sessions', 'fresh'), sessioncache.get('auth_sessions', 'a1'),
       (SELECT i.created_at = e.created_at FROM expect e,
               LATERAL sessioncache.entry_info('sessions', 'k2') i WHERE e.key = 'k2')}),
	'{"promoted": true}|{"n": 4, "p": 1, "v": 2}|{"n": 11, "v": 2}||{"f": 1}|{"a": 1}|t',
	'promoted: the writes read back, replace keeps created_at');

# the promoted server's writes are durable too
$standby->stop('immediate');
$standby->start;
is( $standby->safe_psql(
		'postgres', q{
SELECT sessioncache.get('sessions', 'k2'), sessioncache.get('sessions', 'fresh'),
       sessioncache.get('sessions', 'k6') IS NULL}),
	'{"promoted": true}|{"f": 1}|t',
	'promoted: writes survive an immediate stop');
is($standby->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'promoted: check_memory() at the end');

$standby->stop;
for my $n ($primary, $standby)
{
	unlike(
		slurp_file($n->logfile),
		qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
		$n->name . ': no process crashed');
}
done_testing();
