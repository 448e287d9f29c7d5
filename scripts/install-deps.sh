#!/usr/bin/env bash
# Installs what building and testing sessioncache needs on Debian (as root).
# Skips apt entirely when everything is already there.
set -euo pipefail

packages=(
    postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
    libipc-run-perl build-essential pg-bsd-indent
    python3-psycopg cppcheck clang-tidy gnuplot-nox
    pgbouncer postgresql-15-auto-failover pg-auto-failover-cli
    openjdk-17-jdk-headless libpostgresql-jdbc-java junit5 libjgroups-java
    prometheus-postgres-exporter
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Servers running now are someone else's: never touch them.  Installing
# Debian's postgresql or prometheus-postgres-exporter package may start a
# cluster or an exporter of its own (where services may start): those, and
# only those, are stopped again (the tests start their own servers).
online_clusters() {
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1 "/" $2}' | sort
    fi
}
exporter_running() { pgrep -x prometheus-post >/dev/null 2>&1 || pgrep -f '^/usr/bin/prometheus-postgres-exporter' >/dev/null 2>&1; }
if [ ${#missing[@]} -gt 0 ]; then
    before=$(online_clusters)
    exporter_before=0
    exporter_running && exporter_before=1
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    for c in $(comm -13 <(echo "$before") <(online_clusters)); do
        echo "stopping PostgreSQL cluster $c, started by the package installation just now"
        pg_ctlcluster "${c%/*}" "${c#*/}" stop || true
    done
    if [ $exporter_before -eq 0 ] && exporter_running; then
        echo "stopping prometheus-postgres-exporter, started by the package installation just now"
        service prometheus-postgres-exporter stop >/dev/null 2>&1 || true
    fi
fi
