#!/usr/bin/env bash
# Runs every test of sessioncache: builds and installs it, then runs the
# regression (pg_regress + pgTAP), isolation and Perl TAP suites, each on
# temporary PostgreSQL instances started as the unprivileged user "postgres",
# then the near-cache clients' tests (Python and Java) and the short fuzz run.  Run as root on a Debian machine:
#
#     scripts/test.sh        (as root: there is no sudo on a bare Debian machine)
#
# Exit status is non-zero when anything fails; diffs are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/install-deps.sh
make -s clean >/dev/null
make -s
make -s install >/dev/null

# PostgreSQL refuses to run as root: run the suites as postgres in a copy
# (which postgres can read even when the checkout is in root's home folder).
work=$(mktemp -d /tmp/sessioncache-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$top/." "$work/"
chown -R postgres: "$work"

status=0
runuser -u postgres -- make -C "$work" -s installcheck || status=$?
if [ $status -ne 0 ]; then
    for f in "$work"/regression.diffs "$work"/test/output_iso/regression.diffs; do
        [ -f "$f" ] && { echo "=== $f"; cat "$f"; }
    done
    for f in "$work"/tmp_check/log/regress_log_*; do
        [ -f "$f" ] && { echo "=== $f (tail)"; tail -n 60 "$f"; }
    done
fi

# the rest runs from the copy too (parts of it run as postgres)
cd "$work"

# the reference near-cache client against a real server
if [ $status -eq 0 ]; then
    sh client/run-tests.sh || status=$?
fi

# the Java client (client/java) against a real server
if [ $status -eq 0 ]; then
    bash client/java/run-tests.sh || status=$?
fi

# the short form of the fuzz harness
if [ -f test/fuzz/run.sh ] && [ $status -eq 0 ]; then
    bash test/fuzz/run.sh --short || status=$?
fi

if [ $status -eq 0 ]; then echo "ALL TESTS PASSED"; else echo "TESTS FAILED"; fi
exit $status
