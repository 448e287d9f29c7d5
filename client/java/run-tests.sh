#!/usr/bin/env bash
# Builds the Java client and runs its JUnit 5 tests against a temporary server
# (as root).  The server runs as user postgres in a temporary directory, on a
# free loopback port, with the sessioncache installed by the last `make
# install`; the JVM runs as postgres too (the restart test calls pg_ctl).  The
# server is always stopped by its pid and the directory removed.
#
#   client/java/run-tests.sh [JUnit ConsoleLauncher selectors, e.g. --select-class ...]
#
# With no selector every test class in build/test-classes runs, the JGroups
# test (JGroupsPingTest: JGroups 2.12 nodes in JVMs of their own) included.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "run-tests.sh: run as root (the server itself runs as postgres)" >&2
    exit 2
fi
. "$here/testlib.sh"

tmp=$(mktemp -d /tmp/sessioncache-java.XXXXXX)
trap 'sc_stop_server; rm -rf "$tmp"' EXIT
make -s -C "$here" tests B="$tmp/build" >/dev/null
chown -R postgres: "$tmp"
chmod 711 "$tmp"

sc_start_server "$tmp"

selectors=("$@")
[ ${#selectors[@]} -gt 0 ] || selectors=(--scan-class-path)
cp "$here/jgroups/jdbc_ping.xml" "$tmp/jdbc_ping.xml"
chown postgres: "$tmp/jdbc_ping.xml"
set +e
runuser -u postgres -- java -Dsc.url="$SC_URL" -Dsc.pgdata="$SC_PGDATA" -Dsc.bindir="$SC_BINDIR" \
    -Dsc.log="$SC_LOG" -Dsc.jgroups.stack="$tmp/jdbc_ping.xml" -Djava.util.logging.config.file="$here/logging.properties" \
    -cp "$tmp/build/test-classes:$(sc_junit_cp "$tmp/build")" org.junit.platform.console.ConsoleLauncher \
    --disable-banner --details=tree --disable-ansi-colors \
    "${selectors[@]}" 2>&1 | tee "$tmp/junit.out"
status=${PIPESTATUS[0]}
set -e
sc_summary "java client tests" "$tmp/junit.out" "$status"
if [ "$status" -ne 0 ]; then
    echo "---- server log (tail) ----"
    tail -n 40 "$SC_LOG" || true
fi
exit "$status"
