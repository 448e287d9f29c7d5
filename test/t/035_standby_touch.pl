
# Copyright (c) 2025, sessioncache contributors
#
# get(..., touch => true) on a hot standby: the standby cannot refresh an
# idle timer (it cannot write), so it reads without the touch and says so
# with a NOTICE (SQLSTATE 01000 class: a warning-level condition, the read
# itself succeeds), instead of failing with 25006.  touch() itself, an
# explicit write, still fails with 25006.  The idle timer on the primary is
# unchanged by the standby's read.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.flush_interval = '200ms'\n");
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION sessioncache;
SELECT sessioncache.put('sessions', 's1', '{"u": "alice"}', 'alice');
SELECT sessioncache.put('auth_sessions', 'a1', '{"step": 1}');
});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

my $last = $primary->safe_psql('postgres',
	q{SELECT last_access FROM sessioncache.entry_info('sessions', 's1')});

my ($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT sessioncache.get('sessions', 's1', touch => true)");
is($ret, 0, 'standby: get with touch succeeds');
is($out, '{"u": "alice"}', 'standby: get with touch returns the value');
like($err, qr/NOTICE:  01000: sessioncache\.get ignores touch on a standby/,
	'standby: a NOTICE says the touch was not done');
unlike($err, qr/ERROR/, 'standby: no error');

($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT sessioncache.get('sessions', 'absent', true) IS NULL");
is($out, 't', 'standby: get with touch of an absent key returns NULL');

# without touch: no notice
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT sessioncache.get('sessions', 's1')");
is($err, '', 'standby: get without touch raises no notice');

# the explicit write still fails
($ret, $out, $err) = $standby->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT sessioncache.touch('sessions', 's1')");
like($err, qr/ERROR:  25006:/, 'standby: touch() still fails with 25006');

# the primary's idle timer did not move
$primary->wait_for_catchup($standby);
is( $primary->safe_psql('postgres',
		q{SELECT last_access FROM sessioncache.entry_info('sessions', 's1')}),
	$last,
	'primary: last_access unchanged by the standby read');
is($standby->safe_psql('postgres', 'SELECT sessioncache.check_memory()'),
	't', 'standby: check_memory()');

# on the primary, get with touch refreshes as before
is($primary->safe_psql('postgres', q{SELECT sessioncache.get('sessions', 's1', true)}),
	'{"u": "alice"}', 'primary: get with touch');
is( $primary->safe_psql('postgres',
		qq{SELECT last_access > '$last' FROM sessioncache.entry_info('sessions', 's1')}),
	't',
	'primary: get with touch refreshes the idle timer');

$standby->stop;
$primary->stop;
done_testing();
