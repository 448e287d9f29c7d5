# Copyright (c) 2025, sessioncache contributors
#
# Issue 11, defect 12: when sessioncache.database names a database that does
# not exist, the workers must not die and restart every second (today: three
# workers, each a FATAL and an "exited with exit code 1" line a second, 6
# log lines a second, forever).  They log once and wait with a back-off.
# The test counts the log lines about the workers or the missing database
# over 5 s, after a second of settling.
#
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('missing_db');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'sc_missing_db'\n"
	  . "sessioncache.expiry_interval = '200ms'\n");
$node->start;

sleep(1);
my $offset = -s $node->logfile;
sleep(5);
my $log = substr(slurp_file($node->logfile), $offset);
my @lines = grep { /sc_missing_db|sessioncache/ } split /\n/, $log;
my $exits = () = $log =~ /background worker "sessioncache [a-z]+" \(PID \d+\) exited/g;
diag(scalar(@lines) . " log lines about the workers in 5 s, $exits worker exits");
cmp_ok(scalar(@lines), '<=', 6,
	'at most 6 log lines about the workers or the missing database in 5 s');
cmp_ok($exits, '<=', 3, 'the workers do not keep exiting and restarting');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server serves queries');

$node->stop;
done_testing();
