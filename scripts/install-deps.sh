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
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's postgresql package may start a cluster of its own: not needed here.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
    pg_lsclusters -h | awk '$4 == "online" {print $1, $2}' | while read -r v c; do
        pg_ctlcluster "$v" "$c" stop || true
    done
fi
