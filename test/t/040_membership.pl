
# Copyright (c) 2025, sessioncache contributors
#
# Cluster membership with leases: a member that stops heart-beating is
# removed once its lease lapses (and not before), which changes the view;
# members survive a clean restart and an immediate stop without any view
# change, even when the server was down for longer than their lease, because
# after a start every lease is extended by one lease period from the moment
# the server is up (the lease epoch, src/membership.c).
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $lease_s = 2;           # lease of every member
my $expiry_ms = 200;       # sessioncache.expiry_interval: the reaper's period
# Margin on top of lease + expiry_interval for the reaper to get to a lapsed
# member: its round also expires entries, and on a loaded test machine a
# worker can be scheduled late.  Generous on purpose: the bound only catches
# a member that is never removed or removed far too late.
my $margin_s = 3;

my $node = PostgreSQL::Test::Cluster->new('members');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '500ms'\n"
	  . "sessioncache.expiry_interval = '${expiry_ms}ms'\n"
	  # a crash must not stop the server (and with it the TAP suite); the
	  # end of this test checks the log for crashes instead
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION sessioncache');

# View ids start at the clock (microseconds) when a cluster is created and
# add one per change: the test counts from the first one.
my %member;
my $first_view;
for my $n (qw(n1 n2 n3))
{
	my ($id, $view) = split /\|/,
	  $node->safe_psql('postgres',
		"SELECT * FROM sessioncache.join('auth', '$n', 'addr-$n', '$lease_s seconds')");
	$member{$n} = $id;
	$first_view //= $view;
}
my $view = $first_view + 2;
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(node || ':' || is_coordinator, ',' ORDER BY node), min(view_id), max(view_id)
FROM sessioncache.members WHERE cluster = 'auth'}),
	"n1:true,n2:false,n3:false|$view|$view",
	'three members joined, view first + 2, n1 coordinates');

# Heartbeat n1 and n2 every 0.5 s for the given number of seconds, or until
# the query $until returns something other than "wait"; returns its last
# answer.  Every heartbeat must return the current view (or, when given, one
# of the views in @$views: a view may change during the loop).
sub heartbeat_loop
{
	my ($seconds, $what, $until, $views) = @_;
	my %ok = map { $_ => 1 } (defined $views ? @$views : ($view));
	my $end = time + $seconds;
	my $bad = 0;
	my $answer = 'wait';
	while (time < $end)
	{
		my $hb = $node->safe_psql('postgres',
			"SELECT sessioncache.heartbeat($member{n1}), sessioncache.heartbeat($member{n2})"
		);
		my ($v1, $v2) = split /\|/, $hb;
		$bad++ unless $ok{$v1} && $ok{$v2};
		if (defined $until)
		{
			$answer = $node->safe_psql('postgres', $until);
			last if $answer ne 'wait';
		}
		usleep(500_000);
	}
	is($bad, 0,
		"$what: every heartbeat returned view " . join(' or ', sort keys %ok));
	return $answer;
}

# n3 stops: it must stay while its lease is valid and be gone within
# lease + expiry_interval + margin, in a new view.
my $n3_expires = $node->safe_psql('postgres',
	"SELECT lease_expires_at FROM sessioncache.members WHERE member_id = $member{n3}");
my $answer = heartbeat_loop(
	$lease_s + $expiry_ms / 1000 + $margin_s + 1,
	'while n3 lapses', qq{
SELECT CASE WHEN EXISTS (SELECT FROM sessioncache.view('auth') WHERE member_id = $member{n3})
            THEN 'wait'
            WHEN clock_timestamp() < '$n3_expires'::timestamptz THEN 'removed early'
            WHEN clock_timestamp() <= '$n3_expires'::timestamptz
                 + interval '${expiry_ms} ms' + interval '$margin_s s' THEN 'removed'
            ELSE 'removed late' END}, [ $view, $view + 1 ]);
is($answer, 'removed',
	'n3 is removed after its lease lapsed, within expiry_interval + margin');
$view++;
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(node, ',' ORDER BY node), min(view_id), max(view_id)
FROM sessioncache.members WHERE cluster = 'auth'}),
	"n1,n2|$view|$view",
	'n1 and n2 remain, view first + 3');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(node || ':' || is_coordinator, ',' ORDER BY node), min(view_id)
FROM sessioncache.view('auth')}),
	"n1:true,n2:false|$view",
	'view() says the same');

# a lapsed member's heartbeat fails with SC001 and it must join again
my ($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT sessioncache.heartbeat($member{n3})");
like($err, qr/ERROR:  SC001:/, 'heartbeat of the removed member fails with SC001');

heartbeat_loop(1, 'before the clean restart');

# The server stays down for longer than the lease, then comes back: without
# the lease epoch every lease would have lapsed.
sub down_and_up
{
	my ($mode, $what) = @_;
	$node->safe_psql('postgres',
		"SELECT sessioncache.heartbeat($member{n1}), sessioncache.heartbeat($member{n2})");
	my $stopped_at = time;
	$node->stop($mode);
	usleep(1_000_000 * ($lease_s + 0.5 - (time - $stopped_at)))
	  if time - $stopped_at < $lease_s + 0.5;
	$node->start;

	is( $node->safe_psql(
			'postgres', q{
SELECT string_agg(node, ',' ORDER BY node), min(view_id), max(view_id),
       bool_and(lease_expires_at > clock_timestamp())
FROM sessioncache.members WHERE cluster = 'auth'}),
		"n1,n2|$view|$view|t",
		"$what: n1 and n2 are still members right after the start, same view, leases extended");

	# well past the expiry worker's first rounds, still no view change
	heartbeat_loop(1.5, "$what: after the start");
	is( $node->safe_psql(
			'postgres', q{
SELECT string_agg(node, ',' ORDER BY node), min(view_id), max(view_id)
FROM sessioncache.members WHERE cluster = 'auth'}),
		"n1,n2|$view|$view",
		"$what: no view change after the start");
}

down_and_up('fast', 'clean restart');
down_and_up('immediate', 'immediate stop');

# The extension is one lease period, not forever: n2 stops heart-beating
# after the start and lapses, and the view changes once.
my $n2_expires = $node->safe_psql('postgres',
	"SELECT lease_expires_at FROM sessioncache.members WHERE member_id = $member{n2}");
# (the members view hides a lapsed member at once; the view keeps it until
# the reaper removes it and changes the view)
my $n2_gone = q{NOT EXISTS (SELECT FROM sessioncache.view('auth') WHERE member_id = }
  . $member{n2} . ')';
ok( $node->poll_query_until(
		'postgres', qq{
SELECT sessioncache.heartbeat($member{n1}) IS NOT NULL AND $n2_gone}),
	'n2 lapses when it stops heart-beating after the start');
is($node->safe_psql('postgres', qq{SELECT clock_timestamp() >= '$n2_expires'::timestamptz}),
	't', 'n2 was removed after its extended lease');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(node, ',' ORDER BY node), min(view_id)
FROM sessioncache.members WHERE cluster = 'auth'}),
	'n1|' . ($view + 1),
	'only n1 remains, view first + 4');

$node->stop;
unlike(
	slurp_file($node->logfile),
	qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
	'no process crashed');

# A membership change as the very first use of a new installation: the view
# change is announced by the notify worker before any cache function ran.
# (With this node's long expiry_interval the expiry worker does not load the
# cache definitions first, so this is deterministic.)
my $fresh = PostgreSQL::Test::Cluster->new('fresh');
$fresh->init;
$fresh->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '1h'\n"
	  . "restart_after_crash = on\n");
$fresh->start;
$fresh->safe_psql('postgres', 'CREATE EXTENSION sessioncache');
($ret, $out, $err) = $fresh->psql('postgres',
	"SELECT view_id > extract(epoch FROM now()) * 1000000 - 3600e6 FROM sessioncache.join('auth', 'first', NULL, '1 hour')");
is($out, 't', 'first use: join succeeds, its view id starts at the clock');
ok( $fresh->poll_query_until(
		'postgres',
		'SELECT queued = 0 FROM sessioncache.notify_stats'),
	'first use: the view change has been sent');
is( $fresh->safe_psql(
		'postgres', q{SELECT string_agg(node, ',') FROM sessioncache.members}),
	'first',
	'first use: the member is there');
$fresh->stop;
unlike(
	slurp_file($fresh->logfile),
	qr/was terminated by signal|terminated by exception|exited with exit code [^01]|PANIC|TRAP:/,
	'first use: no process crashed');
done_testing();
