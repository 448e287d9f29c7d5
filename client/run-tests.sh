#!/bin/sh
# Run the near-cache client tests against a temporary server (as root).
# The test starts its own PostgreSQL (as user postgres) in a temporary
# directory, with the sessioncache extension installed from this tree's
# last `make install`, and always stops it.
#
#   client/run-tests.sh [-v] [unittest test names...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "run-tests.sh: run as root (the server itself runs as postgres)" >&2
	exit 2
fi

# Debian's python3 has python3-psycopg; another python3 first on PATH may not
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if ! "$py" -c 'import psycopg' 2>/dev/null; then
	echo "run-tests.sh: installing python3-psycopg" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-psycopg >/dev/null \
		|| { apt-get update -q >/dev/null && \
		     DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-psycopg >/dev/null; }
fi

exec "$py" "$here/test_nearcache.py" "$@"
