#!/usr/bin/env bash
# Reads on a hot standby against reads on the primary (issue 15).
#
#     sudo bench/standby.sh [N]       (N durable sessions, default 100000)
#
# Starts a primary (sessioncache preloaded) and a streaming standby built with
# pg_basebackup, both as user postgres in a temporary directory, on Unix
# sockets only; puts N sessions (400-byte values) on the primary and waits for
# the standby to replay them and for the primary's prewarm.  Then, with
# pgbench (4 clients, 2 threads, 10 s each, the same invocation for all):
#
#   SELECT 1                       on each (the round-trip floor)
#   sessioncache.get(sessions, k)  on each: the primary answers from shared
#                                  memory, the standby from the replicated
#                                  table (replay does not reach memory)
#   the same row by primary key    on each (what the standby's get does)
#
# and prints each rate and the standby/primary ratios.  A benchmark: it
# asserts nothing.  Both servers are stopped by pid at the end.
set -euo pipefail
n=${1:-100000}
[ "$(id -u)" -eq 0 ] || { echo "run as root (the servers run as postgres)" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
bindir=$(pg_config --bindir)
work=$(mktemp -d /tmp/sessioncache-standby.XXXXXX)
chmod 755 "$work"
chown postgres: "$work"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -INT "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$work"
}
trap cleanup EXIT
as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
p1=$(free_port)
p2=$(free_port)
mem=$(( n * 700 / 1048576 + 64 ))

as_pg "$bindir/initdb" -D "$work/primary" -A trust -U postgres >/dev/null
cat >> "$work/primary/postgresql.conf" <<CONF
shared_preload_libraries = 'sessioncache'
listen_addresses = ''
unix_socket_directories = '$work'
sessioncache.memory = ${mem}MB
shared_buffers = 256MB
wal_level = replica
hot_standby = on
CONF
as_pg "$bindir/pg_ctl" -D "$work/primary" -o "-p $p1" -l "$work/primary.log" -w start >/dev/null
pids+=("$(head -n 1 "$work/primary/postmaster.pid")")
q1() { as_pg psql -h "$work" -p "$p1" -U postgres -X -qAt -v ON_ERROR_STOP=1 "$@"; }
q2() { as_pg psql -h "$work" -p "$p2" -U postgres -X -qAt -v ON_ERROR_STOP=1 "$@"; }
q1 -c "CREATE EXTENSION sessioncache"
echo "# putting $n sessions on the primary" >&2
for ((a = 1; a <= n; a += 20000)); do
    b=$(( a + 19999 < n ? a + 19999 : n ))
    q1 -c "SELECT count(sessioncache.put('sessions', 'sess-' || g,
             jsonb_build_object('user', 'user-' || (g % 5000), 'realm', 'demo',
                                'ip', '10.0.0.1', 'pad', repeat('x', 330)),
             'user-' || (g % 5000))) FROM generate_series($a, $b) g" >/dev/null
done
as_pg "$bindir/pg_basebackup" -D "$work/standby" -h "$work" -p "$p1" -U postgres -R -X stream -c fast
as_pg "$bindir/pg_ctl" -D "$work/standby" -o "-p $p2" -l "$work/standby.log" -w start >/dev/null
pids+=("$(head -n 1 "$work/standby/postmaster.pid")")
lsn=$(q1 -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 600); do
    [ "$(q2 -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
# the primary's memory holds every session (prewarm, or read them once)
q1 -c "SELECT count(sessioncache.get('sessions', 'sess-' || g)) FROM generate_series(1, $n) g" >/dev/null
echo "# primary: $(q1 -c "SELECT entries FROM sessioncache.cache_stats WHERE cache = 'sessions'") sessions in memory;" \
     "standby: $(q2 -c "SELECT count(*) FROM sessioncache.durable_entries") rows replayed, in recovery: $(q2 -c 'SELECT pg_is_in_recovery()')" >&2

cat > "$work/pk.sql" <<'SQL'
\set k random(1, :nkeys)
SELECT value FROM sessioncache.durable_entries WHERE cache_id = 1 AND key = 'sess-' || :k;
SQL
chown postgres: "$work/pk.sql"
[ "$(q1 -c "SELECT id FROM sessioncache.cache_defs WHERE name = 'sessions'")" = 1 ] ||
    { echo "cache 'sessions' is not id 1: adjust pk.sql" >&2; exit 1; }

tps() {  # port script
    as_pg pgbench -n -M prepared -c 4 -j 2 -T 10 -h "$work" -p "$1" -U postgres \
        -D cache=sessions -D nkeys="$n" -f "$2" postgres 2>/dev/null |
        awk '/^tps = / { printf "%.0f", $3 }'
}
printf '%-34s %12s %12s %9s\n' "statement (4 clients, 10 s)" "primary tps" "standby tps" "ratio"
for s in select1 get pk; do
    case $s in
        select1) f=$here/select1.sql; label="SELECT 1" ;;
        get) f=$here/get.sql; label="sessioncache.get (present key)" ;;
        pk) f=$work/pk.sql; label="durable_entries by primary key" ;;
    esac
    a=$(tps "$p1" "$f")
    b=$(tps "$p2" "$f")
    printf '%-34s %12s %12s %9s\n' "$label" "$a" "$b" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
done
