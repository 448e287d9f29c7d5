
# Copyright (c) 2025, sessioncache contributors
#
# Prometheus: Debian's postgres_exporter (prometheus-postgres-exporter) runs
# with monitoring/postgres_exporter.yaml against a test server, as a role
# that has only pg_monitor and sessioncache_monitor, on a loopback port; its
# /metrics must carry the sessioncache series (entries, memory, hits and
# misses, expiry lag, notification drops, cluster members) with the values
# the views show, and no query of the file may fail.
#
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $exporter = '/usr/bin/prometheus-postgres-exporter';
plan skip_all => "$exporter is not installed (scripts/install-deps.sh installs it)"
  unless -x $exporter;
my $queries = abs_path(dirname(__FILE__) . '/../../monitoring/postgres_exporter.yaml');
ok(-f $queries, "queries file $queries");

my $node = PostgreSQL::Test::Cluster->new('prometheus');
$node->init;
$node->append_conf('postgresql.conf',
	    "shared_preload_libraries = 'sessioncache'\n"
	  . "sessioncache.database = 'postgres'\n"
	  . "sessioncache.expiry_interval = '200ms'\n"
	  . "restart_after_crash = on\n");
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION sessioncache;
CREATE ROLE prometheus LOGIN IN ROLE pg_monitor, sessioncache_monitor;
SELECT count(sessioncache.put('sessions', 's' || g, '{"a": 1}', 'u' || g % 10))
FROM generate_series(1, 300) g;
SELECT count(sessioncache.put('auth_sessions', 'a' || g, '{}')) FROM generate_series(1, 20) g;
SELECT count(sessioncache.get('sessions', 's' || g)) FROM generate_series(1, 50) g;
SELECT count(sessioncache.get('sessions', 'absent' || g)) FROM generate_series(1, 7) g;
SELECT count(*) FROM sessioncache.join('auth', 'n1', NULL, '1 hour');
SELECT count(*) FROM sessioncache.join('auth', 'n2', NULL, '1 hour');
SELECT count(*) FROM sessioncache.join('batch', 'w1', NULL, '1 hour');
});
ok( $node->poll_query_until(
		'postgres', q{SELECT runs > 0 FROM sessioncache.workers WHERE name = 'expiry'}),
	'the expiry worker has run');

my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($out, $err) = ('', '');
local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d user=prometheus dbname=postgres sslmode=disable',
	$node->host, $node->port);
my $h = IPC::Run::start(
	[
		$exporter, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$queries", '--disable-settings-metrics',
		'--log.level=warn'
	],
	'<', \undef, '>', \$out, '2>', \$err);

# wait (bounded) for the exporter to answer with the sessioncache series
my $http = HTTP::Tiny->new(timeout => 10);
my $metrics = '';
for (1 .. 100)
{
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	if ($r->{success} && $r->{content} =~ /^sessioncache_cluster_members/m)
	{
		$metrics = $r->{content};
		last;
	}
	usleep(200_000);
}
$h->kill_kill;
$h->finish;
ok($metrics ne '', 'the exporter serves /metrics with sessioncache series')
  or diag "exporter output:\n$out\n$err";

# the value of a series, by name and labels
sub series
{
	my ($name, %labels) = @_;
	for my $line (split /\n/, $metrics)
	{
		next unless $line =~ /^\Q$name\E(?:\{([^}]*)\})? (\S+)$/;
		my ($l, $v) = ($1 // '', $2);
		next if grep { $l !~ /(?:^|,)\Q$_\E="\Q$labels{$_}\E"/ } keys %labels;
		return $v;
	}
	return undef;
}

sub num_is
{
	my ($name, $labels, $want, $what) = @_;
	my $got = series($name, %$labels);
	ok(defined $got && $got == $want, "$what: $name = " . ($got // 'missing') . ", want $want");
}

my ($entries, $hits, $misses) = split /\|/,
  $node->safe_psql('postgres',
	q{SELECT entries, hits, misses FROM sessioncache.cache_stats WHERE cache = 'sessions'});
num_is('sessioncache_cache_entries', { cache => 'sessions' }, $entries, 'entries');
num_is('sessioncache_cache_entries', { cache => 'auth_sessions' }, 20, 'entries');
num_is('sessioncache_cache_hits', { cache => 'sessions' }, $hits, 'hits');
num_is('sessioncache_cache_misses', { cache => 'sessions' }, $misses, 'misses');
ok($hits >= 50 && $misses >= 7, "hits $hits, misses $misses");
for my $s (
	qw(sessioncache_cache_bytes sessioncache_cache_fills sessioncache_cache_puts
	sessioncache_cache_deletes sessioncache_cache_touches sessioncache_cache_expired
	sessioncache_cache_evicted sessioncache_cache_evicted_user_limit
	sessioncache_cache_notifications))
{
	ok(defined series($s, cache => 'sessions'), "$s\{cache=\"sessions\"} present");
}

my ($total, $used, $mentries) = split /\|/,
  $node->safe_psql('postgres', q{SELECT total_bytes, used_bytes, entries FROM sessioncache.memory});
num_is('sessioncache_memory_total_bytes', {}, $total, 'memory');
num_is('sessioncache_memory_entries', {}, $mentries, 'memory');
my $free = series('sessioncache_memory_free_bytes');
ok(defined $free && $free > 0 && $free < $total, "memory headroom (free bytes, placeholder): $free");
ok(defined series('sessioncache_memory_capacity_entries'), 'capacity_entries present');
# the headroom series (issue 12): what predicts 53200
my $headroom = series('sessioncache_memory_headroom_bytes');
ok(defined $headroom && $headroom > 0 && $headroom < $free,
	"memory headroom (largest entry sure to fit): $headroom");
my $fraction = series('sessioncache_memory_fullest_used_fraction');
ok(defined $fraction && $fraction > 0 && $fraction < 1,
	"fullest partition's used fraction: " . ($fraction // 'missing'));
ok(defined series('sessioncache_memory_fullest_largest_free_bytes'),
	'fullest partition\'s largest free block present');
for my $p (0, 31)
{
	ok(defined series('sessioncache_memory_partition_largest_free_bytes', partition => $p),
		"largest free block of partition $p present");
	ok(defined series('sessioncache_memory_partition_used_bytes', partition => $p),
		"used bytes of partition $p present");
}

my $lag = series('sessioncache_expiry_lag_seconds');
ok(defined $lag && $lag >= 0 && $lag < 60, "expiry lag: $lag s");
num_is('sessioncache_worker_running', { worker => 'expiry' }, 1, 'workers');
ok(defined series('sessioncache_worker_errors', worker => 'writeback'), 'worker errors present');

num_is('sessioncache_notify_dropped', {}, 0, 'notify drops');
ok(defined series('sessioncache_notify_queued'), 'notify queue length present');
ok(defined series('sessioncache_notify_flushes'), 'notify flushes present');

num_is('sessioncache_cluster_members', { cluster => 'auth' }, 2, 'members');
num_is('sessioncache_cluster_members', { cluster => 'batch' }, 1, 'members');
num_is('sessioncache_cluster_coordinators', { cluster => 'auth' }, 1, 'members');
ok(defined series('sessioncache_cluster_view_id', cluster => 'auth'), 'view id present');

# no query of the file failed, and the exporter reached the server
num_is('pg_up', {}, 1, 'exporter');
my @load_errors = $metrics =~ /^pg_exporter_user_queries_load_error\{[^}]*\} 1$/mg;
is(scalar(@load_errors), 0, 'the queries file loaded');
num_is('pg_exporter_last_scrape_error', {}, 0, 'exporter');
unlike($err, qr/sessioncache.*(error|failed)|(error|failed).*sessioncache/i,
	'the exporter logged no error about a sessioncache query');

$node->stop;
done_testing();
