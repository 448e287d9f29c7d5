
# Copyright (c) 2025, sessioncache contributors
#
# Restarts: committed entries of durable caches survive a clean restart and
# an immediate stop (a crash of the whole server) exactly as rows do; a
# rolled-back batch leaves no trace; a memory-only cache starts empty; the
# write-behind of touch() loses at most one flush interval of idle timer.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# the flush interval set below, in milliseconds (the last_access bounds use it)
my $flush_ms = 500;

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '${flush_ms}ms'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  # a crash must not stop the server (and with it the TAP suite); the
	  # end of this test checks the log for crashes instead
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

# wait (bounded) until the three permanent workers run
sub wait_for_workers
{
	my ($what) = @_;
	ok( $node->poll_query_until(
			'postgres', q{
		SELECT count(*) = 3 FROM sessioncache.workers
		WHERE name IN ('expiry', 'writeback', 'notify') AND pid IS NOT NULL}),
		"$what: expiry, writeback and notify workers run");
}

wait_for_workers('first start');

# 10,000 entries: even numbers in sessions, odd ones in offline_sessions,
# 100 users.  Then replace 1,000 of them (new version, same created_at) and
# delete 100 (a committed delete must stay deleted too).
$node->safe_psql(
	'postgres', q{
CREATE TABLE expect (cache text, key text, value jsonb, PRIMARY KEY (cache, key));
SELECT count(sessioncache.put(
           CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
           'k' || g,
           jsonb_build_object('n', g, 'pad', repeat('x', g % 97)),
           'user' || (g % 100)))
FROM generate_series(1, 10000) g;
SELECT count(sessioncache.put(
           CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
           'k' || g,
           jsonb_build_object('n', g, 'replaced', true),
           'user' || (g % 100)))
FROM generate_series(1, 1000) g;
SELECT count(*) FROM generate_series(9901, 10000) g
WHERE sessioncache.delete(
           CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
           'k' || g);
INSERT INTO expect
SELECT CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END, 'k' || g,
       CASE WHEN g <= 1000 THEN jsonb_build_object('n', g, 'replaced', true)
            ELSE jsonb_build_object('n', g, 'pad', repeat('x', g % 97)) END
FROM generate_series(1, 9900) g;
});

# Caches defined by the user: a durable one (its 200 entries join the
# expected set), a memory-only one, and a durable one that is dropped (its
# rows go with it).
$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('custom_durable', true, '1 hour', '1 day');
SELECT sessioncache.define_cache('custom_mem', false, '1 hour', '1 day');
SELECT sessioncache.define_cache('dropped', true, '1 hour', '1 day');
SELECT count(sessioncache.put('custom_durable', 'cd' || g, jsonb_build_object('cd', g),
                              'cduser' || (g % 7)))
FROM generate_series(1, 200) g;
SELECT count(sessioncache.put('dropped', 'k' || g, '{"dropped": true}', 'user1'))
FROM generate_series(1, 100) g;
SELECT sessioncache.drop_cache('dropped');
INSERT INTO expect
SELECT 'custom_durable', 'cd' || g, jsonb_build_object('cd', g) FROM generate_series(1, 200) g;
});

# The snapshot: everything entry_info and get say about each expected key.
$node->safe_psql(
	'postgres', q{
CREATE TABLE snap AS
SELECT e.cache, e.key, sessioncache.get(e.cache, e.key) AS value, i.*
FROM expect e
LEFT JOIN LATERAL sessioncache.entry_info(e.cache, e.key) i ON true;
});

# the snapshot is what was written (so the comparisons below cannot pass
# against an empty or wrong snapshot)
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(*) FILTER (WHERE s.value = e.value AND s.version IS NOT NULL
                                  AND s.durable AND s.user_id IS NOT NULL)
FROM snap s JOIN expect e USING (cache, key)}),
	'10100|10100',
	'snapshot holds the 10,100 committed entries with their values');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE sessioncache.get(CASE WHEN g % 2 = 0 THEN 'sessions'
                                                    ELSE 'offline_sessions' END,
                                               'k' || g) IS NULL)
FROM generate_series(9901, 10000) g}),
	'100',
	'deleted entries are absent before the restart');
is( $node->safe_psql(
		'postgres', q{
SELECT count(DISTINCT s.version) = count(*),
       bool_and(s.created_at <= s.last_access)
FROM snap s}),
	't|t',
	'versions are distinct, created_at <= last_access');

# Before each stop: fill the memory-only cache and roll back a batch that
# creates keys and overwrites and deletes committed ones.
sub before_stop
{
	my ($what) = @_;
	$node->safe_psql(
		'postgres', q{
SELECT count(sessioncache.put('auth_sessions', 'a' || g, jsonb_build_object('a', g)))
FROM generate_series(1, 100) g;
SELECT count(sessioncache.put('custom_mem', 'm' || g, jsonb_build_object('m', g)))
FROM generate_series(1, 50) g;
BEGIN;
SELECT count(sessioncache.put('sessions', 'rb' || g, '{"rolled_back": true}', 'rbuser'))
FROM generate_series(1, 500) g;
SELECT count(sessioncache.put(e.cache, e.key, '{"rolled_back": true}'))
FROM expect e WHERE e.key IN (SELECT 'k' || g FROM generate_series(1, 500) g);
SELECT count(sessioncache.delete(e.cache, e.key))
FROM expect e WHERE e.key IN (SELECT 'k' || g FROM generate_series(501, 700) g);
ROLLBACK;
});
	is( $node->safe_psql(
			'postgres', q{
SELECT count(sessioncache.get('auth_sessions', 'a' || g)) FROM generate_series(1, 100) g}
		),
		'100',
		"$what: memory-only cache holds 100 entries before the stop");
}

# After each start: every committed entry reads back unchanged.
sub check_after_start
{
	my ($what) = @_;

	wait_for_workers($what);
	is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
		't', "$what: check_memory() after start");

	# the first reads race the pre-warm worker: both must be right
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM snap s
LEFT JOIN LATERAL sessioncache.entry_info(s.cache, s.key) i ON true
WHERE i.version IS DISTINCT FROM s.version
   OR i.created_at IS DISTINCT FROM s.created_at
   OR i.last_access IS DISTINCT FROM s.last_access
   OR i.expires_at IS DISTINCT FROM s.expires_at
   OR i.user_id IS DISTINCT FROM s.user_id
   OR i.durable IS DISTINCT FROM s.durable
   OR sessioncache.get(s.cache, s.key) IS DISTINCT FROM s.value}),
		'0',
		"$what: all 10,100 entries have their value, version, created_at, last_access, user");

	# per user: user_entries returns exactly the user's snapshot entries
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM (SELECT DISTINCT cache, user_id FROM snap) u,
LATERAL (SELECT count(*) AS n FROM snap s
         WHERE s.cache = u.cache AND s.user_id = u.user_id) want,
LATERAL (SELECT count(*) AS n, count(s.key) AS same
         FROM sessioncache.user_entries(u.cache, u.user_id) x
         LEFT JOIN snap s ON s.cache = u.cache AND s.key = x.key
                         AND s.value = x.value AND s.user_id = u.user_id) got
WHERE got.n <> want.n OR got.same <> want.n}),
		'0',
		"$what: user_entries returns each user's entries");

	is( $node->safe_psql(
			'postgres', q{
SELECT count(sessioncache.get(CASE WHEN g % 2 = 0 THEN 'sessions' ELSE 'offline_sessions' END,
                              'k' || g))
FROM generate_series(9901, 10000) g}),
		'0',
		"$what: deleted entries stay deleted");

	is( $node->safe_psql(
			'postgres', q{
SELECT (SELECT count(sessioncache.get('sessions', 'rb' || g))
        FROM generate_series(1, 500) g),
       (SELECT count(*) FROM sessioncache.user_entries('sessions', 'rbuser')),
       (SELECT count(*) FROM snap s WHERE sessioncache.get(s.cache, s.key) ? 'rolled_back')}
		),
		'0|0|0',
		"$what: no trace of the rolled-back batch");

	is( $node->safe_psql(
			'postgres', q{
SELECT count(sessioncache.get('auth_sessions', 'a' || g)) FROM generate_series(1, 100) g}
		),
		'0',
		"$what: memory-only cache auth_sessions is empty");
	is( $node->safe_psql(
			'postgres', q{
SELECT count(sessioncache.get('custom_mem', 'm' || g)) FROM generate_series(1, 50) g}
		),
		'0',
		"$what: user-defined memory-only cache is defined and empty");
	is( $node->safe_psql(
			'postgres', q{
SELECT string_agg(name || ':' || durable || ':' || idle_timeout, ',' ORDER BY name)
FROM sessioncache.caches}),
		'auth_sessions:false:00:30:00,custom_durable:true:01:00:00,custom_mem:false:01:00:00,'
		  . 'login_failures:true:12:00:00,offline_sessions:true:30 days,sessions:true:00:30:00',
		"$what: the cache definitions survive, the dropped cache stays dropped");
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT sessioncache.get('dropped', 'k1')");
	like($err, qr/ERROR:  42704:/, "$what: the dropped cache does not exist");

	# a new write gets a version above every version written before the stop
	is( $node->safe_psql(
			'postgres', q{
SELECT sessioncache.put('sessions', 'k2', '{"after": true}', 'user2')
       > (SELECT max(version) FROM snap)}),
		't',
		"$what: a write after the start gets a higher version");
	$node->safe_psql(
		'postgres', q{
SELECT sessioncache.put('sessions', 'k2', value, user_id) FROM snap WHERE key = 'k2';
UPDATE snap s SET version = i.version, last_access = i.last_access,
                  expires_at = i.expires_at
FROM sessioncache.entry_info('sessions', 'k2') i WHERE s.key = 'k2';
});

	is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
		't', "$what: check_memory() after the reads");
}

# 1. clean restart
before_stop('clean restart');
my $log_offset = -s $node->logfile;
$node->restart;
check_after_start('clean restart');

# 2. immediate stop (no shutdown checkpoint: the rows come from WAL replay)
before_stop('immediate stop');
$node->stop('immediate');
$node->start;
check_after_start('immediate stop');

ok( !$node->log_contains(qr/ERROR:.*sessioncache|sessioncache.*inconsistent/, $log_offset),
	'no sessioncache error in the log across the restarts');

# a cache defined again under a dropped cache's name starts empty
is( $node->safe_psql(
		'postgres', q{
SELECT sessioncache.define_cache('dropped', true, '1 hour', '1 day');
SELECT count(sessioncache.get('dropped', 'k' || g)) FROM generate_series(1, 100) g;
SELECT count(*) FROM sessioncache.user_entries('dropped', 'user1');}),
	"\n0\n0",
	'a cache defined again under a dropped name has none of the old entries');

# 3. last_access across an immediate stop.
#
# Set A is touched once, then we wait until the writeback worker has run two
# whole rounds after the touch committed and at least one flush interval has
# passed, then stop immediately.  Set B is touched a first time with A and a
# second time just before the stop.
#
# The contract: a crash makes an idle timer look older by at most
# flush_interval, never younger.  So after the restart every last_access is
# <= the last touch, and >= last touch - flush_interval - slack for A; for B,
# whose last touch is younger than one flush interval, it is at least the
# first touch (which is older than one flush interval at the stop).
#
# The slack: both timestamps are the server's own microsecond values (the
# "touch" time is read back from entry_info in memory, the restored one from
# the table), so no clock skew is involved.  We still allow 100 ms because
# the writeback worker waits flush_interval after the END of its previous
# round, so a touch can reach the table up to one round's duration later
# than flush_interval.
#
# The entries were put 2 flush intervals + slack before the touch, so a lost
# touch (last_access = put time) breaks the lower bound for A.
my $slack_ms = 100;
$node->safe_psql(
	'postgres', q{
SELECT count(sessioncache.put('sessions', 'la' || g, jsonb_build_object('la', g), 'lauser'))
FROM generate_series(1, 200) g;
SELECT count(sessioncache.put('sessions', 'lb' || g, jsonb_build_object('lb', g), 'lbuser'))
FROM generate_series(1, 200) g;
CREATE TABLE put_times AS
SELECT i.* , k.key FROM (SELECT 'la' || g AS key FROM generate_series(1, 200) g
                         UNION ALL SELECT 'lb' || g FROM generate_series(1, 200) g) k,
     LATERAL sessioncache.entry_info('sessions', k.key) i;
});
usleep(1000 * (2 * $flush_ms + $slack_ms));

my $runs_before = $node->safe_psql('postgres',
	"SELECT runs FROM sessioncache.workers WHERE name = 'writeback'");
$node->safe_psql(
	'postgres', q{
SELECT count(*) FILTER (WHERE sessioncache.touch('sessions', 'la' || g)
                          AND sessioncache.touch('sessions', 'lb' || g))
FROM generate_series(1, 200) g;
CREATE TABLE touch1 AS
SELECT k.key, i.last_access FROM (SELECT 'la' || g AS key FROM generate_series(1, 200) g
                                  UNION ALL SELECT 'lb' || g FROM generate_series(1, 200) g) k,
     LATERAL sessioncache.entry_info('sessions', k.key) i;
});
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM touch1 t JOIN put_times p USING (key)
WHERE t.last_access > p.last_access + interval '1 second'}),
	'400',
	'touch moved last_access of the 400 entries (in memory)');

# two whole writeback rounds after the touch, and one flush interval
ok( $node->poll_query_until(
		'postgres', qq{
SELECT runs >= $runs_before + 2 AND clock_timestamp() >
       (SELECT max(last_access) FROM touch1) + interval '${flush_ms} ms'
FROM sessioncache.workers WHERE name = 'writeback'}),
	'writeback worker ran twice since the touch');

$node->safe_psql(
	'postgres', q{
SELECT count(*) FILTER (WHERE sessioncache.touch('sessions', 'lb' || g))
FROM generate_series(1, 200) g;
CREATE TABLE touch2 AS
SELECT 'lb' || g AS key, i.last_access
FROM generate_series(1, 200) g, LATERAL sessioncache.entry_info('sessions', 'lb' || g) i;
});
$node->stop('immediate');
$node->start;

is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FILTER (WHERE i.last_access <= t.last_access),
       count(*) FILTER (WHERE i.last_access >= t.last_access
                              - interval '${flush_ms} ms' - interval '${slack_ms} ms')
FROM touch1 t, LATERAL sessioncache.entry_info('sessions', t.key) i
WHERE t.key LIKE 'la%'}),
	'200|200',
	'set A: last_access never newer than the touch, older by at most flush_interval');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE i.last_access <= t2.last_access),
       count(*) FILTER (WHERE i.last_access >= t1.last_access)
FROM touch2 t2 JOIN touch1 t1 USING (key),
     LATERAL sessioncache.entry_info('sessions', t2.key) i}),
	'200|200',
	'set B: last_access between the flushed touch and the last touch');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM put_times p, LATERAL sessioncache.entry_info('sessions', p.key) i
WHERE i.created_at = p.created_at AND i.version = p.version
  AND sessioncache.get('sessions', p.key) IS NOT NULL}),
	'400',
	'touched entries keep created_at and version');
is($node->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'check_memory() at the end');

$node->stop;
unlike(
	slurp_file($node->logfile),
	qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
	'no process crashed');
done_testing();
