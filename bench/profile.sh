#!/usr/bin/env bash
# Where a get's cycles go: perf profiles of one backend serving
# `SELECT sessioncache.get(...)` (400-byte values, memory-only cache, all
# hits) and `SELECT 1`, one client each, and the inclusive share of the
# functions that matter (jsonb output, the extension, the executor, the
# protocol, the kernel).  See bench/README.md, "profile.sh".
#
#     bench/profile.sh                 # as root; PROFILE_SECONDS=10 per case
#
# Needs perf (Debian linux-perf).  Without hardware counters (a VM) it
# samples the cpu-clock software event, which is what the shares below use.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
S=${PROFILE_SECONDS:-10}
. "$here/common.sh"
bench_preflight
command -v perf >/dev/null || { echo "missing perf (apt-get install linux-perf)" >&2; exit 2; }

bench_server_start profile <<'EOF'
shared_preload_libraries = 'sessioncache'
sessioncache.database = 'postgres'
sessioncache.memory = '256MB'
shared_buffers = '128MB'
jit = off
autovacuum = off
EOF
q -c "CREATE EXTENSION sessioncache"
bench_session_value
bench_create_fill
q -c "SELECT sessioncache.define_cache('bench_prof', durable => false,
          idle_timeout => '1 day', max_lifespan => '2 days', notify => false)" >/dev/null
progress "filling bench_prof with 100000 entries"
fill bench_prof 1 100000

# profile NAME SCRIPT [pgbench options]: perf record of the one backend
# serving pgbench -c 1 for S seconds; prints its tps
profile() {
    local name=$1 script=$2 pid pg
    shift 2
    pgbench -n -M prepared -c 1 -T "$S" -f "$script" -D val="$val" -h "$work" -p "$port" \
        -U postgres "$@" postgres >"$work/$name.pgbench" 2>&1 &
    pg=$!
    for _ in $(seq 1 50); do
        pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1")
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || die "no pgbench backend"
    perf record -q -e cpu-clock -F 2999 -p "$pid" -o "$work/$name.perf" -- sleep $((S - 1)) \
        >/dev/null 2>&1 || die "perf record failed"
    wait "$pg"
    awk '/^tps = / { printf "%.0f", $3 }' "$work/$name.pgbench"
}

# self FILE KEY REGEX: self share (%) of the samples whose leaf symbol
# (KEY sym) or DSO (KEY dso) matches REGEX
self_share() {
    perf report -i "$1" --no-children --sort "$2" --stdio 2>/dev/null |
        awk -v re="$3" '$1 ~ /%$/ { v = $1; sub(/%/, "", v); if ($NF ~ re) s += v }
            END { printf "%.1f", s }'
}

tget=$(profile get "$here/get.sql" -D cache=bench_prof -D nkeys=100000)
ts1=$(profile s1 "$here/select1.sql")
printf 'profile: one client, %s s each, perf cpu-clock samples of the backend (self time)\n' "$S"
printf '  get: %s tps, SELECT 1: %s tps, ratio %s\n' "$tget" "$ts1" \
    "$(awk -v a="$tget" -v b="$ts1" 'BEGIN { printf "%.3f", a / b }')"
kget=$(self_share "$work/get.perf" dso '^\[kernel')
ks1=$(self_share "$work/s1.perf" dso '^\[kernel')
printf '  %-58s %7s%% %7s%%\n' "the kernel (socket send/recv, scheduling)" "$kget" "$ks1"
printf '  %-58s %8s %8s\n' "user space, as a share of all samples (of user space):" get "SELECT 1"
while IFS='|' read -r label key re; do
    a=$(self_share "$work/get.perf" "$key" "$re")
    b=$(self_share "$work/s1.perf" "$key" "$re")
    printf '  %-58s %5s%% (%4.1f%%) %5s%% (%4.1f%%)\n' "$label" "$a" \
        "$(awk -v a="$a" -v k="$kget" 'BEGIN { print (k < 100) ? 100 * a / (100 - k) : 0 }')" "$b" \
        "$(awk -v a="$b" -v k="$ks1" 'BEGIN { print (k < 100) ? 100 * a / (100 - k) : 0 }')"
done <<'LIST'
sessioncache.so (lookup, copy, stats)|dso|^sessioncache
jsonb output (jsonb_out, JsonbToCString, escape_json, iterators)|sym|^(jsonb_out|JsonbToCString|escape_json|JsonbIterator.*|fillJsonbValue|iteratorFromContainer|add_indent|jsonb_put_escaped_value|JsonbDeepContains)$
StringInfo appends (output and protocol)|sym|^(appendStringInfo.*|appendBinaryStringInfo.*|enlargeStringInfo|pq_sendcountedtext|pq_sendtext)$
memory contexts (palloc, AllocSet*, MemoryContext*)|sym|^(palloc.*|pfree|AllocSet.*|MemoryContext.*)$
libc (memcpy, memcmp, strlen, send, recv)|dso|^libc
LIST
printf '  top self symbols of get:\n'
perf report -i "$work/get.perf" --no-children --sort dso,sym --stdio 2>/dev/null |
    awk '$1 ~ /%$/ && ++n <= 20 { print "    " $0 }'
