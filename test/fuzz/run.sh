#!/usr/bin/env bash
# Fuzz sessioncache on a private temporary server (see test/fuzz/README.md).
#
#   test/fuzz/run.sh --short     about a minute: what the test suite runs
#   test/fuzz/run.sh --long      1,000,000 calls
#   options: --calls N  --seed S  --workers N  --deadline SECONDS
#            --value-size 16kB|1MB (the server's sessioncache.max_value_size;
#            default: chosen from the seed)  --keep (keep the temp dir)
#            --skip OPS (comma-separated operations to leave out, e.g. to get
#            past a known crash: --skip join,heartbeat,leave,view)
#
# Run as root (it switches to user postgres) or as postgres.  Uses the
# installed extension (make install); PG_CONFIG picks the installation.
# Environment:
#   FUZZ_ASAN=1     the server was built with -fsanitize=address (make asan):
#                   collect AddressSanitizer reports and fail on any
#   FUZZ_OUT=DIR    keep logs and journals there instead of a temp dir
#
# Exit status: 0 when the run passed, 1 on a violation, 2 on a set-up error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root
    exec runuser -u postgres -- env PATH="$PATH" ${PG_CONFIG:+PG_CONFIG="$PG_CONFIG"} \
        ${FUZZ_ASAN:+FUZZ_ASAN="$FUZZ_ASAN"} ${FUZZ_OUT:+FUZZ_OUT="$FUZZ_OUT"} \
        bash "$here/run.sh" "$@"
fi

mode=short
calls=
seed=
workers=6
deadline=
value_size=
keep=0
skip=
while [ $# -gt 0 ]; do
    case "$1" in
        --short) mode=short ;;
        --long) mode=long ;;
        --calls) calls=$2; shift ;;
        --seed) seed=$2; shift ;;
        --workers) workers=$2; shift ;;
        --deadline) deadline=$2; shift ;;
        --value-size) value_size=$2; shift ;;
        --keep) keep=1 ;;
        --skip) skip=$2; shift ;;
        *) echo "usage: $0 [--short|--long] [--calls N] [--seed S] [--workers N] [--deadline S] [--value-size SIZE] [--skip OPS] [--keep]" >&2
           exit 2 ;;
    esac
    shift
done
if [ "$mode" = short ]; then
    : "${calls:=25000}" "${deadline:=60}"
    huge=3
else
    : "${calls:=1000000}" "${deadline:=14400}"
    huge=40
fi
: "${seed:=$(( (RANDOM << 15 | RANDOM) + 1 ))}"
if [ -z "$value_size" ]; then
    # "sometimes 1MB": half of the seeds
    if [ $((seed % 2)) = 0 ]; then value_size=1MB; else value_size=16kB; fi
fi

PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$("$PG_CONFIG" --bindir)
python=/usr/bin/python3
[ -x "$python" ] || python=python3
if ! "$python" -c 'import psycopg' 2>/dev/null; then
    echo "fuzz: python3-psycopg is missing (apt-get install python3-psycopg)" >&2
    exit 2
fi

tmp=${FUZZ_OUT:-$(mktemp -d /tmp/sessioncache-fuzz.XXXXXX)}
mkdir -p "$tmp"
data=$tmp/data
log=$tmp/server.log
rm -rf "$data" "$log" "$tmp/asan"
port=$(( 20000 + seed % 20000 ))
pid=
status=2

stop_server() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid" 2>/dev/null || true          # fast shutdown
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "fuzz: server did not stop in 30 s; immediate shutdown" >&2
            kill -QUIT "$pid" 2>/dev/null || true
            sleep 2
        fi
    fi
    pid=
}

cleanup() {
    stop_server
    if [ "$status" = 0 ] && [ "$keep" = 0 ] && [ -z "${FUZZ_OUT:-}" ]; then
        rm -rf "$tmp"
    else
        echo "fuzz: logs kept in $tmp (server.log, journal-w*.sql)"
    fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

if [ -n "${FUZZ_ASAN:-}" ]; then
    # a server built with -fsanitize=address (make asan): where reports go (initdb and psql
    # are instrumented too: no leak reports)
    mkdir -p "$tmp/asan"
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:disable_coredump=0:log_path=$tmp/asan/asan"
fi
"$bindir/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1 || {
    cat "$tmp/initdb.log" >&2; exit 2; }
cat >>"$data/postgresql.conf" <<EOF
# sessioncache fuzz run
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $port
shared_preload_libraries = 'sessioncache'
sessioncache.database = 'postgres'
sessioncache.memory = 16MB
sessioncache.max_value_size = '$value_size'
sessioncache.expiry_interval = 50ms
sessioncache.flush_interval = 100ms
max_connections = 60
max_prepared_transactions = 16
max_locks_per_transaction = 128
deadlock_timeout = 50ms
fsync = off
full_page_writes = off
log_line_prefix = '%m [%p] %e '
log_min_messages = warning
log_min_error_statement = error
log_error_verbosity = default
EOF

# a crashing backend leaves a core in the data directory when allowed
ulimit -c unlimited 2>/dev/null || true
if ! "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null; then
    cat "$log" >&2
    exit 2
fi
pid=$(head -1 "$data/postmaster.pid")
export PGHOST=$tmp PGPORT=$port PGUSER=postgres PGDATABASE=postgres
"$bindir/psql" -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION sessioncache' || exit 2

echo "fuzz: $mode run, seed $seed, server in $tmp (port $port), max_value_size $value_size"
set +e
"$python" "$here/fuzz.py" --host "$tmp" --port "$port" --calls "$calls" --workers "$workers" \
    --deadline "$deadline" --seed "$seed" --log "$log" --outdir "$tmp" --huge-budget "$huge" \
    ${skip:+--skip "$skip"}
status=$?
set -e
[ "$status" -le 2 ] || status=2

# a crash while stopping counts too (e.g. a worker's SIGTERM handling)
stop_server
if grep -E 'terminated by signal|server process \(PID [0-9]+\) was terminated|all server processes terminated|PANIC:|^TRAP:' "$log" >/dev/null; then
    if [ "$status" = 0 ]; then
        echo "FUZZ FAILED: the server log shows a crash during shutdown:" >&2
        status=1
    fi
    grep -E -A2 'terminated by signal|PANIC:|^TRAP:' "$log" | head -20 >&2
fi
cores=$(ls "$data"/core* 2>/dev/null || true)
if [ -n "$cores" ]; then
    status=1
    for c in $cores; do
        echo "fuzz: core file $c" >&2
        if command -v gdb >/dev/null; then
            gdb -batch -ex bt "$bindir/postgres" "$c" 2>/dev/null | grep -E '^#' | head -25 >&2 || true
        fi
    done
fi
if [ -d "$tmp/asan" ] && ls "$tmp/asan"/asan* >/dev/null 2>&1; then
    echo "FUZZ FAILED: AddressSanitizer reports:" >&2
    for f in "$tmp/asan"/asan*; do
        grep -E 'ERROR: AddressSanitizer|^    #[0-9]+ .*sessioncache|SUMMARY' "$f" | head -15 >&2
    done
    status=1
fi
exit "$status"
