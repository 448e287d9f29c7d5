
# Copyright (c) 2025, sessioncache contributors
#
# The end-to-end scenario of the main job (scripts/scenario.py) at its small
# size (--quick: 2,000 sessions and 2,000 offline sessions of 500 users):
# three app nodes using the reference near-cache client create and refresh
# the sessions; three new nodes join and the old ones are killed with
# SIGKILL; the database is restarted, then crashed; a streaming standby is
# promoted.  After every phase every session must be readable with its
# value, none expired early, every idle timer must reflect the nodes'
# touches, no live node's near cache may hold a stale copy, the view must
# list exactly the live nodes (a higher view id after a change of members,
# the same after a restart, crash or failover) with one coordinator, and the
# nodes must never have read NULL for a live session.
#
# The scenario starts and stops its own servers (as the user running this
# test); this test checks its exit status, each phase's row of its report
# and that it left no server running.
#
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;

my $python = '/usr/bin/python3';
my $script = abs_path(dirname(__FILE__) . '/../../scripts/scenario.py');
my ($sessions, $offline) = (2000, 2000);    # what --quick means

# Debian's python3 with psycopg 3 (scripts/install-deps.sh installs it)
my $have_psycopg =
  IPC::Run::run([ $python, '-c', 'import psycopg' ], '>', \my $o1, '2>', \my $e1);
ok($have_psycopg, "$python can import psycopg") or diag $e1;

# Under tmp_check, kept after the test for its logs.  The servers' Unix
# sockets live there: fall back to a short directory for a deep checkout.
my $dir = "$PostgreSQL::Test::Utils::tmp_check/scenario";
$dir = PostgreSQL::Test::Utils::tempdir_short() if length($dir) > 80;

my ($out, $err) = ('', '');
my $exited = eval {
	IPC::Run::run(
		[ $python, $script, '--quick', '--dir', $dir ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(900));
	1;
};
my $status = $exited ? $? >> 8 : -1;
note $out;
diag "scenario.py: $@" unless $exited;
diag "scenario.py stderr:\n$err" if $err ne '';

is($status, 0, 'scenario.py exits with status 0');
like($out, qr/^RESULT: PASS$/m, 'the report says every check passed');

# One row per phase:
#  phase  sessions  offline  lost  expired early  wrong  timers off  stale
#  logouts  view id  coordinator  time  result
my @phases = (
	[ '1 create',      '',        'node-a1' ],
	[ '2 roll nodes',  ' (up)',   'node-b1' ],
	[ '3a db restart', ' (same)', 'node-b1' ],
	[ '3b db crash',   ' (same)', 'node-b1' ],
	[ '4 failover',    ' (same)', 'node-b1' ]);
my @views;
for my $p (@phases)
{
	my ($phase, $view_change, $coordinator) = @$p;
	my ($row) = $out =~ /^(\Q$phase\E  .*)$/m;
	push @views, -1;
	ok(defined $row, "phase $phase: reported") or next;
	my @f = split /\s{2,}/, $row;
	# "8 (up)" and "8 (same)" are one column; so is "1.2 s"
	is(scalar(@f), 13, "phase $phase: 13 columns") or diag $row;
	is("$f[1] $f[2]", "$sessions/$sessions $offline/$offline",
		"phase $phase: every session and offline session alive");
	is( "lost $f[3], expired early $f[4], wrong $f[5], timers off $f[6], stale $f[7], logouts $f[8]",
		'lost 0, expired early 0, wrong 0, timers off 0, stale 0, logouts 0',
		"phase $phase: nothing lost, expired early, wrong or stale; no logout");
	like($f[9], qr/^\d+\Q$view_change\E$/,
		"phase $phase: view id" . ($view_change eq '' ? '' : $view_change));
	$views[-1] = $1 if $f[9] =~ /^(\d+)/;
	is($f[10], $coordinator, "phase $phase: $coordinator coordinates");
	is($f[12], 'PASS', "phase $phase: passed");
	like($out, qr/^phase \Q$phase\E: PASS$/m, "phase $phase: PASS in the summary");
}

# the view ids: up in phases 1 and 2, then the same to the end
ok($views[1] > $views[0], 'view id higher after the roll to new nodes');
is("@views[2..4]", join(' ', ($views[1]) x 3),
	'view id unchanged by the restart, the crash and the failover');

# every server it started is stopped
for my $d ("$dir/primary", "$dir/standby")
{
	ok(!-e "$d/postmaster.pid", "no server left running in $d");
}

done_testing();
