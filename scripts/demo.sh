#!/usr/bin/env bash
# The main job: builds and installs sessioncache, starts a local PostgreSQL
# with the extension preloaded in .run/ of this checkout (as the
# unprivileged user "postgres"), and shows it working: the rolling-restart
# scenario of scripts/scenario.py when given no arguments, or just a short
# walkthrough with --walkthrough.  With --ha it runs scripts/ha.py instead:
# the same kind of load on a pg_auto_failover formation (monitor + 2 data
# nodes) through perform failover, perform switchover, a killed postmaster
# and a killed node, with 100,000 durable entries (--bulk N to change) and a
# report of each failover.  Run as root on a Debian machine (there is no
# sudo on a bare one):
#
#     scripts/demo.sh [--walkthrough] [--keep] [--java] [scenario options]
#     scripts/demo.sh --ha [ha.py options]
#
# --keep leaves the server running (connect with the psql line printed).
# --java runs the scenario's app nodes in Java, with the Java client
# (client/java: pgjdbc, NearCache, Membership) instead of the Python one.
# When user postgres cannot read the checkout (e.g. it is in /root), the
# scripts and the servers run from a copy in /tmp/sessioncache-demo instead.
# The servers' data directories are removed at the end; logs stay.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
keep=0
walkthrough=0
ha=0
java=0
args=()
for a in "$@"; do
    case "$a" in
        --keep) keep=1 ;;
        --walkthrough) walkthrough=1 ;;
        --java) java=1 ;;
        --ha) ha=1 ;;
        *) args+=("$a") ;;
    esac
done

if [ $walkthrough -eq 0 ]; then
    echo "sessioncache demo: installs what is missing, builds and installs the extension, then" \
         "runs the rolling-restart scenario (phases 1-4, a few minutes; --quick: about one)"
else
    echo "sessioncache demo: installs what is missing, builds and installs the extension, then" \
         "runs a short SQL walkthrough"
fi
scripts/install-deps.sh
make -s
make -s install >/dev/null

# User postgres runs the servers and the scenario: it must be able to read
# the scripts and write the run directory.  Otherwise work from a copy.
run="$top/.run"
chmod 755 "$top" 2>/dev/null || true
if ! runuser -u postgres -- test -r "$top/scripts/scenario.py" -a -x "$top/client" 2>/dev/null; then
    copy=/tmp/sessioncache-demo
    rm -rf "$copy"
    mkdir -p "$copy"
    cp -a "$top/scripts" "$top/client" "$copy/"
    run="$copy/.run"
    echo "user postgres cannot read $top: running from a copy in $copy"
    top="$copy"
    cd "$top"
fi
mkdir -p "$run"
chown -R postgres: "$run"
[ "$top" = /tmp/sessioncache-demo ] && chown -R postgres: "$top"

if [ $ha -eq 1 ]; then
    # pg_autoctl runs as postgres too; ha.py stops every process it started
    exec runuser -u postgres -- /usr/bin/python3 scripts/ha.py --dir "$run/ha" "${args[@]}"
fi
if [ $walkthrough -eq 0 ] && [ $java -eq 1 ]; then
    # the Java client and its scenario node, built where postgres can read them
    make -s -C client/java demo B="$run/java-build" >/dev/null
    chown -R postgres: "$run/java-build"
    b="$run/java-build"
    args+=(--java "$b/sessioncache-demo.jar:$b/sessioncache-client.jar:/usr/share/java/postgresql.jar")
fi
if [ $walkthrough -eq 0 ] && [ -f scripts/scenario.py ]; then
    # the scenario starts, crashes, restarts and fails over its own servers,
    # and removes their data directories at the end (--keep-data keeps them)
    exec runuser -u postgres -- /usr/bin/python3 scripts/scenario.py --dir "$run" "${args[@]}"
fi

bin=$(pg_config --bindir)
data="$run/data"
port=${PGPORT_DEMO:-5432}
while (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null || [ -e "$run/.s.PGSQL.$port" ]; do
    port=$((port + 1))
done
if [ -f "$data/postmaster.pid" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
fi
rm -rf "$data"
runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
cat >> "$data/postgresql.conf" <<CONF
shared_preload_libraries = 'sessioncache'
port = $port
listen_addresses = ''
unix_socket_directories = '$run'
sessioncache.memory = 64MB
sessioncache.flush_interval = 1s
CONF
runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$run/server.log" -w start >/dev/null
stop_server() {
    if [ $keep -eq 0 ]; then
        runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null
        rm -rf "$data"
        echo "server stopped, its data directory removed (log: $run/server.log)"
    else
        echo "server left running: psql -h $run -p $port -U postgres"
        echo "stop it with: runuser -u postgres -- $bin/pg_ctl -D $data stop"
    fi
}
trap stop_server EXIT
psql="psql -h $run -p $port -U postgres -X -v ON_ERROR_STOP=1"
$psql -q -c "CREATE EXTENSION sessioncache"
$psql -e -f scripts/walkthrough.sql
