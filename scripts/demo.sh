#!/usr/bin/env bash
# The main job: builds and installs sessioncache, starts a local PostgreSQL
# with the extension preloaded in .run/ of this checkout (as the
# unprivileged user "postgres"), and shows it working: the rolling-restart
# scenario of scripts/scenario.py when given no arguments, or just a short
# walkthrough with --walkthrough.  Run as root on a Debian machine:
#
#     sudo scripts/demo.sh [--walkthrough] [--keep] [--java] [scenario options]
#
# --keep leaves the server running (connect with the psql line printed).
# --java runs the scenario's app nodes in Java, with the Java client
# (client/java: pgjdbc, NearCache, Membership) instead of the Python one.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
keep=0
walkthrough=0
java=0
args=()
for a in "$@"; do
    case "$a" in
        --keep) keep=1 ;;
        --walkthrough) walkthrough=1 ;;
        --java) java=1 ;;
        *) args+=("$a") ;;
    esac
done

scripts/install-deps.sh
make -s
make -s install >/dev/null

run="$top/.run"
mkdir -p "$run"
chown postgres: "$run"
chmod 755 "$top" || true

if [ $walkthrough -eq 0 ] && [ $java -eq 1 ]; then
    # the Java client and its scenario node, built where postgres can read them
    make -s -C client/java demo B="$run/java-build" >/dev/null
    chown -R postgres: "$run/java-build"
    b="$run/java-build"
    args+=(--java "$b/sessioncache-demo.jar:$b/sessioncache-client.jar:/usr/share/java/postgresql.jar")
fi
if [ $walkthrough -eq 0 ] && [ -f scripts/scenario.py ]; then
    # the scenario starts, crashes, restarts and fails over its own servers
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
        echo "server stopped"
    else
        echo "server left running: psql -h $run -p $port -U postgres"
        echo "stop it with: runuser -u postgres -- $bin/pg_ctl -D $data stop"
    fi
}
trap stop_server EXIT
psql="psql -h $run -p $port -U postgres -X -v ON_ERROR_STOP=1"
$psql -q -c "CREATE EXTENSION sessioncache"
$psql -e -f scripts/walkthrough.sql
