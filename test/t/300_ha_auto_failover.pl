
# Copyright (c) 2025, sessioncache contributors
#
# sessioncache on pg_auto_failover (scripts/ha.py --quick): a monitor and two
# data nodes run by pg_autoctl, the extension created once on the primary,
# 2,000 durable entries and three app nodes (the reference client with a
# multi-host connection string) under load, through `pg_autoctl perform
# failover`, `perform switchover`, a SIGKILL of the primary's postmaster and
# a SIGKILL of the primary's whole node (pg_autoctl included).  After each:
# nothing acknowledged lost, nothing expired early, no idle timer behind an
# acknowledged touch older than flush_interval before the event, every bulk
# entry there, the same members and view id, invalidations reach every near
# cache, every standby (the old primary included) back and coherent.
#
# The script runs its own servers (as the user running this test); this test
# checks its exit status, each event's row and that nothing is left running.
#
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;

plan skip_all => 'pg_autoctl is not installed (scripts/install-deps.sh installs it)'
  unless -x '/usr/bin/pg_autoctl';

my $python = '/usr/bin/python3';
my $script = abs_path(dirname(__FILE__) . '/../../scripts/ha.py');

# short: the servers' Unix sockets live there
my $dir = PostgreSQL::Test::Utils::tempdir_short() . '/ha';

my ($out, $err) = ('', '');
my $exited = eval {
	IPC::Run::run(
		# no workaround: the workers commit without waiting for the standby
		# (a fast shutdown of the old primary does not hang), and a lease
		# shorter than pg_auto_failover's read-only window after a promotion
		# (10 s here) survives, since its grace starts once writes are allowed
		[ $python, $script, '--quick', '--no-worker-workaround', '--lease', '8',
		  '--dir', $dir ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(900));
	1;
};
my $status = $exited ? $? >> 8 : -1;
note $out;
diag "ha.py: $@" unless $exited;
diag "ha.py stderr:\n$err" if $err ne '';

is($status, 0, 'ha.py exits with status 0');
like($out, qr/^RESULT: PASS$/m, 'the report says every check passed');
like($out, qr/synchronous_standby_names = ANY 1 \(pgautofailover_standby_\d+\)/,
	"pg_auto_failover's synchronous replication");
like($out, qr/CREATE EXTENSION on node1 reached the standbys by replication/,
	'the extension reached the standby by replication');

# event  from  to  first write  prewarm  checked  lost  expired early
# timers off  lost touches  bulk  members  view id  invalidation  rejoin
# standbys  result
my @events = (
	[ '1 perform failover',   1 ],
	[ '2 perform switchover', 1 ],
	[ '3 kill -9 postmaster', 0 ],
	[ '4 kill -9 node',       1 ]);
for my $e (@events)
{
	my ($event, $moves) = @$e;
	my ($row) = $out =~ /^(\Q$event\E  .*)$/m;
	ok(defined $row, "$event: reported") or next;
	my @f = split /\s{2,}/, $row;
	is(scalar(@f), 17, "$event: 17 columns") or diag $row;
	if ($moves)
	{
		isnt($f[1], $f[2], "$event: the primary moved ($f[1] -> $f[2])");
	}
	else
	{
		is($f[1], $f[2], "$event: the primary stayed ($f[1]), restarted by pg_autoctl");
	}
	like($f[3], qr/^\d+\.\d\d s$/, "$event: a write succeeded on the primary after $f[3]");
	# the time until memory held every live durable entry, or the share it
	# held when the prewarm worker was done (it skips an install that a
	# concurrent write in the same partition raced; a read fills the rest)
	like($f[4], qr/^(\d+\.\d\d s|\d+\.\d%)$/, "$event: pre-warmed: $f[4]");
	ok($f[5] > 0, "$event: $f[5] acknowledged entries checked");
	is("lost $f[6], expired early $f[7], timers off $f[8]",
		'lost 0, expired early 0, timers off 0',
		"$event: nothing lost or expired early, no idle timer off");
	is($f[10], '2000/2000', "$event: every bulk entry there");
	is($f[11], '3/3', "$event: every member kept its lease");
	like($f[12], qr/^\d+ \(same\)$/, "$event: the view id did not change");
	like($f[13], qr/^\d+ ms$/, "$event: invalidations reach every near cache");
	is($f[15], 'ok', "$event: the standbys are back and coherent");
	is($f[16], 'PASS', "$event: passed");
}

# nothing left running in the directory
my ($ps) = '';
IPC::Run::run([ 'ps', '-eo', 'args' ], '>', \$ps);
my @left = grep { index($_, $dir) >= 0 } split /\n/, $ps;
is(scalar(@left), 0, 'no pg_autoctl or postgres left running') or diag join("\n", @left);

done_testing();
