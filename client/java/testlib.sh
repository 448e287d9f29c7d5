# Shared by run-tests.sh and jgroups-test.sh (sourced, as root): a temporary
# PostgreSQL with sessioncache preloaded, on a free loopback port, run as postgres.

SC_BINDIR=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[ -x "$SC_BINDIR/initdb" ] || SC_BINDIR=/usr/lib/postgresql/15/bin
SC_PGDATA=
SC_PID=

sc_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# sc_start_server DIR [extra postgresql.conf lines...]
sc_start_server() {
    local dir=$1
    shift
    SC_PGDATA="$dir/data"
    SC_LOG="$dir/server.log"
    SC_PORT=$(sc_free_port)
    runuser -u postgres -- "$SC_BINDIR/initdb" -D "$SC_PGDATA" -A trust -U postgres --no-sync \
        -E UTF8 --locale C >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $SC_PORT"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = 'sessioncache'"
        echo "sessioncache.database = 'postgres'"
        echo "sessioncache.memory = 32MB"
        echo "sessioncache.expiry_interval = 100ms"
        echo "sessioncache.flush_interval = 200ms"
        echo "max_connections = 100"
        echo "fsync = off"
        for l in "$@"; do echo "$l"; done
    } >>"$SC_PGDATA/postgresql.conf"
    runuser -u postgres -- "$SC_BINDIR/pg_ctl" -D "$SC_PGDATA" -l "$SC_LOG" -w -t 60 start >/dev/null
    SC_PID=$(head -n 1 "$SC_PGDATA/postmaster.pid")
    SC_URL="jdbc:postgresql://127.0.0.1:$SC_PORT/postgres"
    runuser -u postgres -- "$SC_BINDIR/psql" -h "$dir" -p "$SC_PORT" -U postgres -X -q \
        -v ON_ERROR_STOP=1 -c "CREATE EXTENSION sessioncache" \
        -c "SELECT sessioncache.get('sessions', 'probe')" >/dev/null
}

# Stops the server by its pid (the one in postmaster.pid: a restart by a test
# changes it), whatever state it is in.
sc_stop_server() {
    local pid
    [ -n "$SC_PGDATA" ] || return 0
    pid=$(head -n 1 "$SC_PGDATA/postmaster.pid" 2>/dev/null || echo "$SC_PID")
    [ -n "$pid" ] || return 0
    kill -INT "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -QUIT "$pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
}

sc_junit_cp() {
    local j=/usr/share/java
    echo "$1/sessioncache-client.jar:$j/postgresql.jar:$j/jgroups.jar:$j/junit-platform-console-standalone.jar:$j/junit-platform-console.jar:$j/junit-platform-launcher.jar:$j/junit-platform-engine.jar:$j/junit-platform-commons.jar:$j/junit-platform-reporting.jar:$j/junit-jupiter-api.jar:$j/junit-jupiter-engine.jar:$j/junit-jupiter-params.jar:$j/opentest4j.jar:$j/apiguardian-api.jar"
}

# sc_summary NAME JUNIT_OUTPUT STATUS: the plain closing line.
sc_summary() {
    local ok failed
    ok=$(sed -n 's/^\[ *\([0-9]*\) tests successful *\]$/\1/p' "$2" | tail -n 1)
    failed=$(sed -n 's/^\[ *\([0-9]*\) tests failed *\]$/\1/p' "$2" | tail -n 1)
    echo "$1: ${ok:-0} passed, ${failed:-0} failed"
    if [ "$3" -eq 0 ] && [ "${ok:-0}" -eq 0 ]; then
        echo "$1: no test ran" >&2
        return 1
    fi
}
