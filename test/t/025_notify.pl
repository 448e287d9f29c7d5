
# Copyright (c) 2025, sessioncache contributors
#
# Notifications as a listening session sees them.  (An isolation spec cannot
# check them: they come from the notify worker, whose PID and the versions in
# the payloads change from run to run.)
#
# - A committed put, patch, incr, delete, delete_user, eviction by a per-user
#   limit and expiry each announce every key they change on
#   sessioncache_invalidate, with the version the change made.
# - Rolled-back work, a rolled-back savepoint and a cache with notify off
#   announce nothing.  "Nothing" is checked against a marker committed after
#   the work: the worker sends in commit order, so once the marker has
#   arrived anything sent for the earlier work would have arrived too.
# - The sender is the notify worker, not the committing session (NOTIFY would
#   serialize committing sessions).  Large batches are split into JSON arrays
#   under the 8000-byte payload limit, each key announced once.
# - Every membership view change is announced on sessioncache_membership;
#   a rolled-back join is not.
#
# - (issue 12) No key goes out in clear: an invalidation names its key by
#   key_hash, hex of the first 16 bytes of HMAC-SHA256(secret, cache NUL
#   key), and every object carries a mac over its canonical string (README,
#   "Invalidation messages"), both checked here with the secret that
#   channel_secret() returns.  The checks below read the objects with their
#   keys mapped back from key_hash, as a client does.
#
# Delivery is awaited by polling with a bound, never by a fixed sleep.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Digest::SHA qw(hmac_sha256);
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('notify');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '100ms'\n"
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
$node->safe_psql(
	'postgres', q{
SELECT sessioncache.define_cache('nt');
SELECT sessioncache.define_cache('nt_mem', durable => false);
SELECT sessioncache.define_cache('nt_quiet', notify => false);
SELECT sessioncache.define_cache('nt_limit', max_per_user => 1,
                                 per_user_policy => 'evict_oldest');
});

ok( $node->poll_query_until(
		'postgres', q{
	SELECT pid IS NOT NULL FROM sessioncache.workers WHERE name = 'notify'}),
	'the notify worker runs');
my $worker_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM sessioncache.workers WHERE name = 'notify'});

my $secret = pack('H*', $node->safe_psql('postgres',
	q{SELECT encode(sessioncache.channel_secret(), 'hex')}));
is(length($secret), 32, 'the channel secret has 32 bytes');

sub hmac_hex
{
	return unpack('H32', hmac_sha256(join("\0", @_), $secret));
}

# key_hash -> key for every key this test writes
my %key_of;
for my $cache (qw(nt nt_mem nt_quiet nt_limit))
{
	for my $key (qw(a rolled_back kept in_savepoint errored quiet old new short),
		(map { "u$_" } 1 .. 3), (map { "batch$_" } 1 .. 500),
		(map { "marker$_" } 1 .. 20))
	{
		$key_of{"$cache\0" . hmac_hex($cache, $key)} = $key;
	}
}
my ($bad_macs, $keys_in_clear) = (0, 0);

# check an object's mac, then put its key back in place of key_hash
sub unseal
{
	my ($channel, $o) = @_;
	my @fields =
	  $channel eq 'sessioncache_membership'
	  ? map { $o->{$_} // '' } qw(cluster view_id)
	  : map { $o->{$_} // '' } qw(cache key_hash op version);
	my $mac = delete $o->{mac};
	$bad_macs++ unless defined $mac && $mac eq hmac_hex($channel, @fields);
	$keys_in_clear++ if exists $o->{key};
	if (defined(my $h = delete $o->{key_hash}))
	{
		$o->{key} = $key_of{"$o->{cache}\0$h"} // "unknown:$h";
	}
	return $o;
}

my $listener = $node->background_psql('postgres');
$listener->set_query_timer_restart();
$listener->query_safe(
	'LISTEN sessioncache_invalidate; LISTEN sessioncache_membership');

# every notification received so far: {channel, pid, payload, objects}
my @received;

# Poll the listener (a query makes psql print what has arrived) until
# $done->() is true, for at most 30 seconds (delivery takes about 100 ms).
sub receive_until
{
	my ($done) = @_;
	my $deadline = time() + 30;

	while (1)
	{
		my $out = $listener->query_safe('SELECT 1');
		while ($out =~
			/^Asynchronous notification "([^"]+)" with payload "(.*)" received from server process with PID (\d+)\.$/mg
		  )
		{
			my ($channel, $payload, $pid) = ($1, $2, $3);
			my $decoded = decode_json($payload);
			my @objects = ref($decoded) eq 'ARRAY' ? @$decoded : ($decoded);
			push @received,
			  {
				channel => $channel,
				pid => $pid,
				payload => $payload,
				objects => [ map { unseal($channel, $_) } @objects ]
			  };
		}
		return 1 if $done->();
		return 0 if time() > $deadline;
		usleep(20_000);
	}
}

# the invalidation objects received so far, flattened
sub invalidations
{
	return map { @{ $_->{objects} } }
	  grep { $_->{channel} eq 'sessioncache_invalidate' } @received;
}

# the invalidations of one key of one cache
sub about
{
	my ($cache, $key) = @_;
	return grep { $_->{cache} eq $cache && $_->{key} eq $key } invalidations();
}

# commit a put of a marker key and wait for its notification
my $markers = 0;

sub marker
{
	my $key = 'marker' . ++$markers;
	$node->safe_psql('postgres',
		"SELECT sessioncache.put('nt', '$key', '{}')");
	ok(receive_until(sub { scalar(about('nt', $key)) == 1 }),
		"marker $key arrives");
}

# --- committed changes, each with its version

my $v_put = $node->safe_psql('postgres',
	q{SELECT sessioncache.put('nt', 'a', '{"n": 1}')});
ok(receive_until(sub { scalar(about('nt', 'a')) >= 1 }),
	'a committed put is announced');
is_deeply([ about('nt', 'a') ],
	[ { cache => 'nt', key => 'a', op => 'put', version => $v_put } ],
	'one put message for a, with the version put returned');

my $v_mem = $node->safe_psql('postgres',
	q{SELECT sessioncache.put('nt_mem', 'a', '{"n": 1}')});
ok(receive_until(sub { scalar(about('nt_mem', 'a')) >= 1 }),
	'a put in a memory-only cache is announced');
is_deeply([ about('nt_mem', 'a') ],
	[ { cache => 'nt_mem', key => 'a', op => 'put', version => $v_mem } ],
	'its message carries its cache and version');

$node->safe_psql('postgres', q{
SELECT sessioncache.patch('nt', 'a', '{"p": 1}');
SELECT sessioncache.incr('nt', 'a', 'n');
});
my $v_incr = $node->safe_psql('postgres',
	q{SELECT version FROM sessioncache.entry_info('nt', 'a')});
ok(receive_until(sub { scalar(about('nt', 'a')) >= 3 }),
	'patch and incr are announced');
my @a = about('nt', 'a');
is_deeply([ map { $_->{op} } @a ], [qw(put put put)],
	'patch and incr are announced as puts');
ok($a[0]{version} < $a[1]{version} && $a[1]{version} < $a[2]{version},
	'versions increase in the order of the changes');
is($a[2]{version}, $v_incr, 'the last message has the current version');

$node->safe_psql('postgres', q{SELECT sessioncache.delete('nt', 'a')});
ok(receive_until(sub { scalar(about('nt', 'a')) >= 4 }),
	'a delete is announced');
@a = about('nt', 'a');
is($a[3]{op}, 'delete', 'as a delete');
ok($a[3]{version} > $a[2]{version}, 'with a version above the last put');

is(scalar(grep { $_->{pid} != $worker_pid } @received),
	0, 'every notification comes from the notify worker');

# --- nothing for rolled-back work

$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT sessioncache.put('nt', 'rolled_back', '{}');
SELECT sessioncache.put('nt_mem', 'rolled_back', '{}');
ROLLBACK;
BEGIN;
SELECT sessioncache.put('nt', 'kept', '{}');
SAVEPOINT s;
SELECT sessioncache.put('nt', 'in_savepoint', '{}');
SELECT sessioncache.delete('nt', 'kept');
ROLLBACK TO SAVEPOINT s;
COMMIT;
});
$node->psql(
	'postgres', q{
BEGIN;
SELECT sessioncache.put('nt', 'errored', '{}');
SELECT 1 / 0;
COMMIT;
});
$node->safe_psql('postgres',
	q{SELECT sessioncache.put('nt_quiet', 'quiet', '{}')});
marker();
is(scalar(about('nt', 'rolled_back')) + scalar(about('nt_mem', 'rolled_back')),
	0, 'a rolled-back transaction announces nothing');
is(scalar(about('nt', 'in_savepoint')), 0,
	'a rolled-back savepoint announces nothing');
is_deeply([ map { $_->{op} } about('nt', 'kept') ],
	['put'], 'the writes before the savepoint are announced once');
is(scalar(about('nt', 'errored')), 0,
	'a transaction aborted by an error announces nothing');
is(scalar(about('nt_quiet', 'quiet')), 0,
	'a cache with notify off announces nothing');

# --- delete_user announces each key

$node->safe_psql(
	'postgres', q{
SELECT sessioncache.put('nt', 'u' || g, '{}', 'nt-user') FROM generate_series(1, 3) g;
SELECT sessioncache.put('nt_mem', 'u' || g, '{}', 'nt-user') FROM generate_series(1, 2) g;
});
my $deleted = $node->safe_psql(
	'postgres', q{
SELECT sessioncache.delete_user('nt', 'nt-user') + sessioncache.delete_user('nt_mem', 'nt-user')});
is($deleted, 5, 'delete_user deletes the user\'s five entries');
ok( receive_until(
		sub {
			scalar(grep { $_->{op} eq 'delete' && $_->{key} =~ /^u\d$/ }
				  invalidations()) >= 5;
		}),
	'delete_user is announced');
for my $k (qw(u1 u2 u3))
{
	is_deeply([ map { $_->{op} } about('nt', $k) ],
		[qw(put delete)], "nt $k: its put, then one delete");
}
for my $k (qw(u1 u2))
{
	is_deeply([ map { $_->{op} } about('nt_mem', $k) ],
		[qw(put delete)], "nt_mem $k: its put, then one delete");
}

# --- eviction by a per-user limit, expiry

$node->safe_psql(
	'postgres', q{
SELECT sessioncache.put('nt_limit', 'old', '{}', 'lim');
SELECT sessioncache.put('nt_limit', 'new', '{}', 'lim');
});
ok(receive_until(sub { scalar(about('nt_limit', 'new')) >= 1 }),
	'the put over the limit is announced');
is_deeply([ map { $_->{op} } about('nt_limit', 'old') ],
	[qw(put evict)], 'the evicted oldest entry is announced as an eviction');

$node->safe_psql(
	'postgres', q{
SELECT sessioncache.put('nt_mem', 'short', '{}', idle_timeout => '200 ms');
SELECT sessioncache.put('nt', 'short', '{}', idle_timeout => '200 ms');
});
ok( receive_until(
		sub {
			scalar(grep { $_->{op} eq 'expire' } about('nt_mem', 'short')) >= 1;
		}),
	'expiry of a memory-only entry is announced');
is_deeply([ map { $_->{op} } about('nt_mem', 'short') ],
	[qw(put expire)], 'once, after its put');
ok( receive_until(
		sub {
			scalar(grep { $_->{op} eq 'expire' } about('nt', 'short')) >= 1;
		}),
	'expiry of a durable entry is announced');
is_deeply([ map { $_->{op} } about('nt', 'short') ],
	[qw(put expire)], 'once, after its put');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM sessioncache.durable_entries d
JOIN sessioncache.cache_defs c ON c.id = d.cache_id
WHERE c.name = 'nt' AND d.key = 'short'}),
	0,
	'the expired durable entry\'s row is gone');

# --- a large batch: arrays under the payload limit, each key once

$node->safe_psql('postgres',
	q{SELECT count(sessioncache.put('nt', 'batch' || g, '{}')) FROM generate_series(1, 500) g}
);
ok( receive_until(
		sub { scalar(grep { $_->{key} =~ /^batch/ } invalidations()) >= 500 }),
	'a batch of 500 puts is announced');
my %seen;
$seen{ $_->{key} }++ for grep { $_->{key} =~ /^batch/ } invalidations();
is(scalar(keys %seen), 500, 'every key of the batch is announced');
is(scalar(grep { $_ != 1 } values %seen), 0, 'each exactly once');
ok(scalar(grep { $_->{payload} =~ /^\[/ } @received) > 0,
	'several changes share a payload as a JSON array');
is(scalar(grep { length($_->{payload}) >= 8000 } @received),
	0, 'every payload is under 8000 bytes');

# --- membership

my $joined = $node->safe_psql('postgres',
	q{SELECT member_id || ' ' || view_id FROM sessioncache.join('nt-cluster', 'n1')});
my ($member, $view) = split / /, $joined;
$node->psql(
	'postgres', q{
BEGIN;
SELECT sessioncache.join('nt-cluster', 'n2');
ROLLBACK;
});
$node->safe_psql('postgres', "SELECT sessioncache.leave($member)");

sub views
{
	return map { @{ $_->{objects} } }
	  grep { $_->{channel} eq 'sessioncache_membership' } @received;
}
ok(receive_until(sub { scalar(views()) >= 2 }),
	'the join and the leave are announced');
marker();
is_deeply(
	[ views() ],
	[
		{ cluster => 'nt-cluster', view_id => $view },
		{ cluster => 'nt-cluster', view_id => $view + 1 }
	],
	'one message per committed view change, with its view id; none for the rolled-back join'
);

$listener->quit;

is($bad_macs, 0, 'every object carries a mac that verifies');
is($keys_in_clear, 0, 'no object carries a key in clear');
is(scalar(grep { $_->{payload} =~ /"key"|batch|marker|in_savepoint/ } @received),
	0, 'no payload holds a key in clear');
is(scalar(grep { ($_->{key} // '') =~ /^unknown:/ } invalidations()),
	0, 'every key_hash is one of the keys written');

# the server never crashed meanwhile
my $log = slurp_file($node->logfile);
unlike($log, qr/was terminated by signal/,
	'no server process crashed');

$node->stop;
done_testing();
