# shellcheck shell=bash
# Shared by bench/run.sh and bench/load.sh (sourced, not run): the checks,
# the temporary server, the session value and the fill procedure.
#
# After bench_server_start, these are set: $work (the temporary directory:
# data/, server.log), $port, $server_pid, $bindir, and q runs psql on the
# server.  An EXIT trap stops the server by its pid (SIGINT, a fast
# shutdown; SIGQUIT after 60 s), also when anything fails, and then prints
# the tail of the server log and keeps the directory.  BENCH_KEEP=1 keeps the
# directory in any case; BENCH_CONF adds lines to postgresql.conf (after the
# script's own, so they win), e.g. BENCH_CONF="sessioncache.expiry_interval = '100ms'".

progress() { printf '# %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# bench_preflight: root, the server binaries, psql, pgbench, the extension
bench_preflight() {
    local tool
    if [ "$(id -u)" -ne 0 ]; then
        echo "run as root: the server is started as user postgres" >&2
        exit 2
    fi
    bindir=$(pg_config --bindir)
    for tool in initdb pg_ctl postgres; do
        [ -x "$bindir/$tool" ] || { echo "missing $bindir/$tool" >&2; exit 2; }
    done
    for tool in psql pgbench; do
        command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
    done
    [ -f "$(pg_config --pkglibdir)/sessioncache.so" ] ||
        { echo "sessioncache is not installed: cd /work/main && make && make install" >&2; exit 2; }
}

bench_cleanup() {
    local status=$?
    local p
    set +e
    # our background jobs still running (listener, poller, sampler): by pid
    for p in $(jobs -pr); do
        kill "$p" 2>/dev/null
    done
    # a server whose start timed out has a pid file all the same
    if [ -z "$server_pid" ] && [ -f "$work/data/postmaster.pid" ]; then
        server_pid=$(head -n 1 "$work/data/postmaster.pid")
    fi
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        progress "stopping the server (pid $server_pid)"
        kill -INT "$server_pid"
        for _ in $(seq 1 600); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$server_pid" 2>/dev/null && kill -QUIT "$server_pid"
    fi
    if [ $status -ne 0 ] && [ -f "$work/server.log" ]; then
        echo "=== last lines of the server log" >&2
        tail -n 40 "$work/server.log" >&2
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ $status -ne 0 ]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit $status
}

# bench_server_start NAME: initdb as user postgres in a fresh
# /tmp/sessioncache-NAME.XXXXXX, then starts a server there listening on a
# unix socket in that directory only, on a free port.  The configuration
# lines on stdin are appended to postgresql.conf.
bench_server_start() {
    local conf
    conf=$(cat)
    work=$(mktemp -d "/tmp/sessioncache-$1.XXXXXX")
    chmod 755 "$work"
    chown postgres: "$work"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    server_pid=
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM

    progress "initdb in $work/data"
    runuser -u postgres -- "$bindir/initdb" -D "$work/data" -A trust -U postgres \
        -E UTF8 --no-sync >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
    cat >>"$work/data/postgresql.conf" <<EOF

# bench/$(basename "$0")
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
$conf
${BENCH_CONF:-}
EOF
    runuser -u postgres -- "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" \
        -w -t 60 start >/dev/null
    server_pid=$(head -n 1 "$work/data/postmaster.pid")
    progress "server pid $server_pid, socket $work, port $port"
}

q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U postgres -d postgres "$@"; }

# bench_session_value: sets $val to a ~400-byte (pg_column_size) jsonb
# session, Keycloak-like, and $val_bytes to its exact size
bench_session_value() {
    local base padlen
    base='{"user_id": "f3c1e2a4-7b9d-4e15-9a0c-2d8b6e4f1a37", "realm": "master", "ip": "203.0.113.42", "started": 1764200000, "refreshed": 1764200300, "state": "LOGGED_IN", "auth_method": "openid-connect", "remember_me": false, "clients": {"account-console": {"redirect_uri": "https://sso.example.com/realms/master/account/", "scope": "openid profile email"}}, "pad": ""}'
    padlen=$(q -c "SELECT n FROM generate_series(0, 400) n
                   WHERE pg_column_size(jsonb_set(\$v\$$base\$v\$::jsonb, '{pad}', to_jsonb(repeat('x', n)))) >= 400
                   ORDER BY n LIMIT 1")
    val=$(q -c "SELECT jsonb_set(\$v\$$base\$v\$::jsonb, '{pad}', to_jsonb(repeat('x', $padlen)))::text")
    val_bytes=$(q -c "SELECT pg_column_size(\$v\$$val\$v\$::jsonb)")
}

# bench_create_fill: the procedure behind fill
bench_create_fill() {
    q <<'EOF'
-- put sess-first..sess-last (user user-<k mod 100000>), 1000 per transaction:
-- each put holds a key lock until commit, so one huge transaction would run
-- out of lock table
CREATE PROCEDURE bench_fill(c text, first bigint, last bigint, v jsonb,
                            idle interval DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    i bigint := first;
BEGIN
    WHILE i <= last LOOP
        PERFORM sessioncache.put(c, 'sess-' || j, v, 'user-' || (j % 100000), idle)
            FROM generate_series(i, least(i + 999, last)) j;
        COMMIT;
        i := i + 1000;
    END LOOP;
END
$$;
EOF
}

# fill CACHE FIRST LAST [IDLE_TIMEOUT]: put sess-FIRST..sess-LAST, 1000 per
# transaction, from one session (two sessions writing more than 64 keys of a
# cache per transaction can deadlock on its escalated lock)
fill() {
    local cache=$1 first=$2 last=$3 idle=${4:-} idle_sql=NULL
    [ -n "$idle" ] && idle_sql="interval '$idle'"
    q -c "CALL bench_fill('$cache', $first, $last, \$v\$$val\$v\$, $idle_sql)" ||
        die "fill of $cache failed"
}

# sched_ns PID: CPU time of a process in ns (/proc/<pid>/schedstat), or
# nothing when the file is missing
sched_ns() { awk '{ print $1 }' "/proc/$1/schedstat" 2>/dev/null || true; }
