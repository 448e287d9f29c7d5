#!/usr/bin/env bash
# The load test of the robustness issue: 32 clients for 5 minutes of a mixed
# workload (70% get, 20% touch, 5% put, 5% delete, and membership
# heartbeats) on 200,000 sessions of the durable cache 'sessions'.  See
# bench/README.md.
#
#     bench/load.sh                 (make load; as root)
#     LOAD_SECONDS=30 bench/load.sh
#
# Runs as root; starts its own temporary server as user postgres, as
# bench/run.sh does (bench/common.sh).  The report goes to stdout, progress
# lines (# ...) to stderr.
#
# Environment:
#   LOAD_SECONDS    length of the run (default 300)
#   LOAD_CLIENTS    pgbench clients (default 32), one cluster member each
#   BENCH_KEEP=1    keep the temporary directory (server log, pgbench output
#                   and its per-transaction logs, the memory samples)
#   BENCH_CONF      more postgresql.conf lines
#
# Exit status: 1 when the run had an error (a failed transaction, an aborted
# client, an ERROR in the server log, a worker error) or a restart (a crash
# line in the server log, a new postmaster start time, a worker with a new
# pid); 2 for a usage problem; 0 otherwise.  Throughput, latency and memory
# are printed, with ok/MISSED beside their targets, never asserted.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
secs=${LOAD_SECONDS:-300}
case $secs in '' | *[!0-9]* | 0) echo "LOAD_SECONDS must be a positive integer" >&2; exit 2 ;; esac
clients=${LOAD_CLIENTS:-32}
case $clients in '' | *[!0-9]* | 0) echo "LOAD_CLIENTS must be a positive integer" >&2; exit 2 ;; esac
nkeys=200000
interval=10 # seconds between memory samples

. "$here/common.sh"
bench_preflight

bench_server_start load <<EOF
max_connections = $((clients + 20))
shared_preload_libraries = 'sessioncache'
sessioncache.database = 'postgres'
sessioncache.memory = '256MB'
shared_buffers = '256MB'
synchronous_commit = on
max_wal_size = '4GB'
jit = off
EOF

# ---------------------------------------------------------------- set-up

q -c "CREATE EXTENSION sessioncache"
bench_session_value
bench_create_fill
progress "loading $nkeys sessions into 'sessions'"
fill sessions 1 "$nkeys"
q -c "VACUUM ANALYZE sessioncache.durable_entries" -c "CHECKPOINT"

# one member per client, in cluster 'load', with the default lease (30 s);
# client n heartbeats member mfirst + n, in about 1 of its transactions in
# 101: its lease lapses (and its next heartbeat fails with SC001) only if the
# client went through 30 s with no heartbeat, i.e. with far fewer than 100
# transactions, which is a stall the test must report anyway.
out=$(q -F ' ' -c "SELECT min(j.member_id), max(j.member_id), count(*)
                   FROM generate_series(0, $clients - 1) g,
                   LATERAL sessioncache.join('load', 'node-' || g) j")
read -r mfirst mlast cnt <<<"$out"
[ "$cnt" = "$clients" ] && [ $((mlast - mfirst + 1)) = "$clients" ] ||
    die "the members' ids are not consecutive ($mfirst..$mlast)"

printf 'sessioncache load test: %s clients for %s s, %s CPUs, PostgreSQL %s\n' \
    "$clients" "$secs" "$(nproc)" "$(q -c 'SHOW server_version')"
printf "%s sessions in the durable cache 'sessions' (%s-byte jsonb values, user ids user-<n mod 100000>), %s members in cluster 'load'\n" \
    "$nkeys" "$val_bytes" "$clients"

# ---------------------------------------------------------------- sampler

# sample SECONDS: one line "t used_bytes entries pss_kB anon_kB shmem_kB":
# sessioncache.memory, and the proportional set size of the postmaster and
# its children (/proc/<pid>/smaps_rollup: Pss, Pss_Anon, Pss_Shmem), which
# counts each shared page once
sample() {
    local mem pids p
    mem=$(q -F ' ' -c "SELECT used_bytes, entries FROM sessioncache.memory")
    pids=("$server_pid")
    for p in $(ps -o pid= --ppid "$server_pid"); do pids+=("$p"); done
    for p in "${pids[@]}"; do cat "/proc/$p/smaps_rollup" 2>/dev/null || true; done |
        awk -v t="$1" -v mem="$mem" '
            $1 == "Pss:" { pss += $2 } $1 == "Pss_Anon:" { anon += $2 } $1 == "Pss_Shmem:" { shm += $2 }
            END { printf "%s %s %d %d %d\n", t, mem, pss, anon, shm }'
}

# sampler: a sample at 0, $interval, 2 x $interval... seconds from now, until
# killed; each also goes to stderr, with the last tps pgbench reported (-P)
sampler() {
    local t0 t k=0
    t0=$(date +%s.%N)
    while :; do
        sample "$((k * interval))" >>"$work/memory.samples"
        awk 'END { printf "# %4ss  used %.1f MB, %d entries, server %.0f MB (private %.0f MB)", $1, $2 / 1048576, $3, $4 / 1024, $5 / 1024 }' \
            "$work/memory.samples" >&2
        awk '/^progress: / { t = $4 } END { if (t != "") printf ", %s tps", t; printf "\n" }' "$work/pgbench.out" >&2
        k=$((k + 1))
        t=$(awk -v a="$t0" -v b="$(date +%s.%N)" -v n=$((k * interval)) 'BEGIN { d = a + n - b; printf "%.3f", (d > 0) ? d : 0 }')
        sleep "$t"
    done
}

# workers_mem: "name=bytes ..." the grand total of each worker's memory
# contexts (pg_log_backend_memory_contexts, read back from the server log)
workers_mem() {
    local name pid out=() n0 tot
    for name in expiry writeback notify; do
        pid=$(q -c "SELECT pid FROM sessioncache.workers WHERE name = '$name'")
        tot=-
        n0=$(grep -c "\[$pid\] LOG:  Grand total: " "$work/server.log" || true)
        if [ -n "$pid" ] && [ "$(q -c "SELECT pg_log_backend_memory_contexts($pid)")" = t ]; then
            for _ in $(seq 1 100); do
                if [ "$(grep -c "\[$pid\] LOG:  Grand total: " "$work/server.log" || true)" -gt "$n0" ]; then
                    tot=$(grep "\[$pid\] LOG:  Grand total: " "$work/server.log" | tail -n 1 |
                        sed 's/.*Grand total: \([0-9]*\) bytes.*/\1/')
                    break
                fi
                sleep 0.1
            done
        fi
        out+=("$name=$tot")
    done
    echo "${out[*]}"
}

# ---------------------------------------------------------------- the run

state() {
    q -F ' ' -c "SELECT extract(epoch FROM pg_postmaster_start_time()),
                        (SELECT string_agg(name || '=' || coalesce(pid::text, '-'), ','
                                           ORDER BY name)
                         FROM sessioncache.workers WHERE name <> 'prewarm'),
                        (SELECT sum(errors) FROM sessioncache.workers)"
}
q -c "SELECT sessioncache.reset_stats()" >/dev/null
read -r start0 pids0 werr0 <<<"$(state)"
wmem0=$(workers_mem)
log0=$(wc -c <"$work/server.log")

: >"$work/memory.samples"
: >"$work/pgbench.out"
sampler &
sampler_pid=$!

progress "pgbench: $clients clients, ${secs} s"
set +e
pgbench -n -M prepared -c "$clients" -j 2 -T "$secs" -r -P 10 \
    --log --log-prefix="$work/txlog" \
    -f "$here/get.sql@70" -f "$here/touch.sql@20" -f "$here/put.sql@5" \
    -f "$here/delete.sql@5" -f "$here/heartbeat_own.sql@1" \
    -D cache=sessions -D nkeys="$nkeys" -D val="$val" -D mfirst="$mfirst" \
    -h "$work" -p "$port" -U postgres postgres >"$work/pgbench.out" 2>&1
pgbench_status=$?
set -e
kill "$sampler_pid" 2>/dev/null
wait "$sampler_pid" 2>/dev/null || true

# ---------------------------------------------------------------- checks

read -r start1 pids1 werr1 <<<"$(state)"
tail -c +"$((log0 + 1))" "$work/server.log" >"$work/run.log"
wmem1=$(workers_mem)

summary=()
errors=0
restarts=0
# check LABEL VALUE TARGET STATUS
check() { summary+=("$(printf '%-52s %12s  %-10s %s' "$@")"); }
# must_be_zero LABEL VALUE KIND: a check whose failure is an error or a restart
must_be_zero() {
    if [ "$2" = 0 ]; then
        check "$1" "$2" "= 0" ok
    else
        check "$1" "$2" "= 0" FAILED
        if [ "$3" = error ]; then errors=$((errors + 1)); else restarts=$((restarts + 1)); fi
    fi
}

failed=$(awk '/^number of failed transactions: / { print $5; exit }' "$work/pgbench.out")
aborted=$(grep -c 'aborted in command' "$work/pgbench.out" || true)
err_lines=$(grep -cE '(ERROR|FATAL|PANIC): ' "$work/run.log" || true)
crash_lines=$(grep -cE 'terminated by signal|was terminated|exited with exit code|all server processes terminated|reinitializing|PANIC' "$work/run.log" || true)

section_header() { printf '\n== %s\n' "$1"; }
section_header "errors and restarts"
printf '  pgbench: exit status %s, %s clients aborted, %s failed transactions\n' \
    "$pgbench_status" "$aborted" "${failed:-?}"
if [ "$aborted" != 0 ]; then
    grep 'aborted in command' "$work/pgbench.out" | head -n 5 | sed 's/^/    /'
fi
printf '  server log during the run: %s ERROR/FATAL/PANIC lines, %s crash or worker-exit lines\n' \
    "$err_lines" "$crash_lines"
if [ "$err_lines" != 0 ] || [ "$crash_lines" != 0 ]; then
    grep -E '(ERROR|FATAL|PANIC): |terminated by signal|was terminated|exited with exit code|reinitializing' \
        "$work/run.log" | head -n 10 | sed 's/^[^]]*] /    /'
fi
printf '  postmaster start time %s; worker pids %s; worker errors %s -> %s\n' \
    "$([ "$start0" = "$start1" ] && echo unchanged || echo CHANGED)" \
    "$([ "$pids0" = "$pids1" ] && echo unchanged || echo "CHANGED ($pids0 -> $pids1)")" \
    "$werr0" "$werr1"

must_be_zero "pgbench failed transactions" "${failed:-1}" error
must_be_zero "pgbench clients aborted" "$aborted" error
must_be_zero "pgbench exit status" "$pgbench_status" error
must_be_zero "ERROR/FATAL/PANIC lines in the server log" "$err_lines" error
must_be_zero "worker errors (sessioncache.workers.errors)" "$((werr1 - werr0))" error
must_be_zero "crash or worker-exit lines in the server log" "$crash_lines" restart
must_be_zero "postmaster restarts (pg_postmaster_start_time)" "$([ "$start0" = "$start1" ] && echo 0 || echo 1)" restart
must_be_zero "workers with a new pid" "$([ "$pids0" = "$pids1" ] && echo 0 || echo 1)" restart

# ---------------------------------------------------------------- throughput

section_header "throughput and latency"
tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$work/pgbench.out")
printf '  %s transactions in %s s: %s tps (%s clients, -j 2, -M prepared)\n' \
    "$(awk '/^number of transactions actually processed: / { print $6; exit }' "$work/pgbench.out")" \
    "$secs" "$tps" "$clients"
check "throughput (tps)" "$tps" "-" info
# the 10-second intervals of pgbench -P 10: a stall shows as a low minimum
read -r pmin pmed pmax <<<"$(awk '/^progress: / { print $4 }' "$work/pgbench.out" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - -"; exit }
    printf "%.0f %.0f %.0f\n", v[1], (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[NR] }')"
printf '  tps per 10 s (pgbench -P 10): min %s, median %s, max %s\n' "$pmin" "$pmed" "$pmax"
check "tps per 10 s: min / median" "$pmin / $pmed" "-" info
# per script: pgbench's share and tps, and the percentiles of its
# per-transaction latencies (the time column of the --log files, in us)
printf '  %-16s %7s %9s %9s %9s %9s %10s\n' script share tps "p50 ms" "p99 ms" "max ms" "> 100 ms"
awk '/^SQL script [0-9]+: / { s = $3 - 1; sub(/:$/, "", s); name[s] = $4 }
     /^ - [0-9]+ transactions \(/ && s != "" {
         share = $4; sub(/^\(/, "", share); t = $NF; sub(/\)$/, "", t); print s, name[s], share, t; s = "" }' \
    "$work/pgbench.out" >"$work/scripts.txt"
while read -r s name share stps; do
    awk -v s="$s" '$4 == s && $3 ~ /^[0-9]+$/ { print $3 }' "$work"/txlog.* | sort -n >"$work/lat.txt"
    read -r p50 p99 pmax slow <<<"$(awk '{ v[NR] = $1; if ($1 > 100000) slow++ } END {
        if (NR == 0) { print "nan nan nan 0"; exit }
        i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
        i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
        printf "%.2f %.2f %.2f %d\n", v[i50] / 1000, v[i99] / 1000, v[NR] / 1000, slow }' "$work/lat.txt")"
    printf '  %-16s %7s %9.0f %9s %9s %9s %10s\n' "$(basename "$name" .sql)" "$share" "$stps" "$p50" "$p99" "$pmax" "$slow"
    check "$(basename "$name" .sql): p50 / p99 latency (ms)" "$p50 / $p99" "-" info
done <"$work/scripts.txt"
rm -f "$work/lat.txt"
q -F ' ' -c "SELECT 'cache sessions: hits', hits, 'misses', misses, 'puts', puts, 'deletes', deletes,
                    'touches', touches, 'entries', entries
             FROM sessioncache.cache_stats WHERE cache = 'sessions'" | sed 's/^/  /'

# ---------------------------------------------------------------- memory

section_header "memory (a sample every $interval s)"
# trend COLUMN [FROM_T]: "first last max slope_per_min trend_pct" of a column
# of memory.samples, from time FROM_T on: slope of the least-squares line,
# and that slope over the time covered as a share of the first value
trend() {
    awk -v c="$1" -v from="${2:-0}" '$1 >= from {
            n++; x = $1; y = $c; sx += x; sy += y; sxx += x * x; sxy += x * y
            if (n == 1) { first = y; t0 = x } last = y; t1 = x; if (y > max) max = y }
        END {
            d = n * sxx - sx * sx; slope = (d > 0) ? (n * sxy - sx * sy) / d : 0
            printf "%.0f %.0f %.0f %.1f %.2f\n", first, last, max, slope * 60,
                (first > 0) ? 100 * slope * (t1 - t0) / first : 0 }' "$work/memory.samples"
}
half=$((secs / 2))
read -r f l m s p <<<"$(trend 2)"
printf '  sessioncache.memory.used_bytes: first %.1f MB, last %.1f MB, max %.1f MB; slope %.0f bytes/min, trend over the run %s%%   target |trend| <= 1%%: %s\n' \
    "$(awk -v v="$f" 'BEGIN { print v / 1048576 }')" "$(awk -v v="$l" 'BEGIN { print v / 1048576 }')" \
    "$(awk -v v="$m" 'BEGIN { print v / 1048576 }')" "$s" "$p" \
    "$(awk -v p="$p" 'BEGIN { print (p <= 1 && p >= -1) ? "ok" : "MISSED" }')"
check "used_bytes trend over the run (%)" "$p" "|x| <= 1" "$(awk -v p="$p" 'BEGIN { print (p <= 1 && p >= -1) ? "ok" : "MISSED" }')"
read -r f l m s p <<<"$(trend 3)"
printf '  sessioncache.memory.entries: first %s, last %s, max %s\n' "$f" "$l" "$m"
read -r f l m s p <<<"$(trend 4)"
printf '  server processes (sum of Pss): first %.0f MB, last %.0f MB, max %.0f MB; slope %.1f MB/min\n' \
    "$(awk -v v="$f" 'BEGIN { print v / 1024 }')" "$(awk -v v="$l" 'BEGIN { print v / 1024 }')" \
    "$(awk -v v="$m" 'BEGIN { print v / 1024 }')" "$(awk -v v="$s" 'BEGIN { print v / 1024 }')"
read -r f l m s p <<<"$(trend 6)"
printf '    of which shared memory (Pss_Shmem: grows as pages of shared_buffers and the cache are first touched): first %.0f MB, last %.0f MB\n' \
    "$(awk -v v="$f" 'BEGIN { print v / 1024 }')" "$(awk -v v="$l" 'BEGIN { print v / 1024 }')"
read -r f l m s p <<<"$(trend 5)"
printf '    of which private (Pss_Anon: the processes'"'"' own memory): first %.0f MB, last %.0f MB, max %.0f MB; slope %.2f MB/min\n' \
    "$(awk -v v="$f" 'BEGIN { print v / 1024 }')" "$(awk -v v="$l" 'BEGIN { print v / 1024 }')" \
    "$(awk -v v="$m" 'BEGIN { print v / 1024 }')" "$(awk -v v="$s" 'BEGIN { print v / 1024 }')"
# the backends' caches fill during the first minutes: judge the second half
read -r f l m s p <<<"$(trend 5 "$half")"
printf '    private memory over the second half of the run: trend %s%%   target |trend| <= 5%%: %s\n' "$p" \
    "$(awk -v p="$p" 'BEGIN { print (p <= 5 && p >= -5) ? "ok" : "MISSED" }')"
check "private memory trend, second half (%)" "$p" "|x| <= 5" "$(awk -v p="$p" 'BEGIN { print (p <= 5 && p >= -5) ? "ok" : "MISSED" }')"

# the workers' memory contexts, before and after the run
printf '  workers'"'"' memory contexts (grand total, before -> after the run):'
wgrowth=0
for name in expiry writeback notify; do
    b=$(tr ' ' '\n' <<<"$wmem0" | sed -n "s/^$name=//p")
    a=$(tr ' ' '\n' <<<"$wmem1" | sed -n "s/^$name=//p")
    printf ' %s %s -> %s kB' "$name" "$(awk -v v="$b" 'BEGIN { printf "%.0f", v / 1024 }')" \
        "$(awk -v v="$a" 'BEGIN { printf "%.0f", v / 1024 }')"
    wgrowth=$(awk -v g="$wgrowth" -v a="$a" -v b="$b" 'BEGIN { d = (b > 0) ? 100 * (a - b) / b : 0; print (d > g) ? d : g }')
done
printf '\n    largest growth: %.1f%%   target <= 10%%: %s\n' "$wgrowth" \
    "$(awk -v g="$wgrowth" 'BEGIN { print (g <= 10) ? "ok" : "MISSED" }')"
check "workers' memory contexts, largest growth (%)" "$(printf '%.1f' "$wgrowth")" "<= 10" \
    "$(awk -v g="$wgrowth" 'BEGIN { print (g <= 10) ? "ok" : "MISSED" }')"

# ---------------------------------------------------------------- summary

printf '\n== summary\n'
printf '%-52s %12s  %-10s %s\n' check value target status
for line in "${summary[@]}"; do
    printf '%s\n' "$line"
done
if [ $errors -eq 0 ] && [ $restarts -eq 0 ]; then
    printf '\nPASSED: no error, no restart\n'
else
    printf '\nFAILED: %s error check(s) and %s restart check(s) failed (server log and pgbench output kept in %s)\n' \
        "$errors" "$restarts" "$work"
    BENCH_KEEP=1
    exit 1
fi
