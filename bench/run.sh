#!/usr/bin/env bash
# Benchmarks of sessioncache: throughput and ratios against a baseline run in
# the same invocation, never an assertion.  See bench/README.md.
#
#     bench/run.sh [all|issue13|core|memory|durable|notify|expiry|membership|
#                        keycloak|touchwal|touchdesign]...
#
# Runs as root; starts its own temporary server as user postgres (a fresh
# initdb in a temporary directory, unix socket only, in that directory, on a
# free port), creates the extension, runs the chosen sections, prints the
# report on stdout (progress goes to stderr) and stops the server by its pid,
# also when anything fails.
#
# Environment:
#   BENCH_SECONDS   time of each pgbench case (default 10)
#   BENCH_ROUNDS    the cases compared with each other run interleaved, each
#                   for BENCH_SECONDS / BENCH_ROUNDS seconds per round, so that
#                   a change in the machine's load hits them alike (default 5)
#   BENCH_KEEP=1    keep the temporary directory (data, server log) at the end
#   BENCH_CONF      more postgresql.conf lines (after the script's own)
#   BENCH_PLOT      where the keycloak section writes its plot (default
#                   ./keycloak-mix.svg; its data beside it, .dat)
#
# The exit status is 0 when every case ran, whatever the figures are: the
# targets are printed beside the figures, never asserted.  It is 1 when the
# server crashed during a case that watches for it (the summary is printed
# all the same).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
T=${BENCH_SECONDS:-10}
case $T in '' | *[!0-9]* | 0) echo "BENCH_SECONDS must be a positive integer" >&2; exit 2 ;; esac
ROUNDS=${BENCH_ROUNDS:-5}
case $ROUNDS in '' | *[!0-9]* | 0) echo "BENCH_ROUNDS must be a positive integer" >&2; exit 2 ;; esac
[ "$ROUNDS" -gt "$T" ] && ROUNDS=$T

all_sections="core memory durable notify expiry membership keycloak touchwal touchdesign"
# the figures of issue 13, each beside its goal
issue13_sections="core durable keycloak touchwal"
sections=()
for a in "${@:-all}"; do
    case $a in
        all) read -r -a sections <<<"$all_sections" ;;
        issue13) read -r -a more <<<"$issue13_sections"; sections+=("${more[@]}") ;;
        core | memory | durable | notify | expiry | membership | keycloak | touchwal | touchdesign) sections+=("$a") ;;
        *) echo "usage: $0 [all|issue13|core|memory|durable|notify|expiry|membership|keycloak|touchwal|touchdesign]..." >&2; exit 2 ;;
    esac
done

. "$here/common.sh"
bench_preflight

# a python3 that has psycopg (for the LISTEN client), if any
python=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import psycopg' 2>/dev/null; then
        python=$(command -v "$p")
        break
    fi
done

# ---------------------------------------------------------------- server

bench_server_start bench <<'EOF'
max_connections = 50
shared_preload_libraries = 'sessioncache'
sessioncache.database = 'postgres'
sessioncache.memory = '1GB'
sessioncache.expiry_interval = '1s'
shared_buffers = '256MB'
synchronous_commit = on
max_wal_size = '8GB'
checkpoint_timeout = '30min'
autovacuum = off
jit = off
EOF
dsn="host=$work port=$port user=postgres dbname=postgres"

# ---------------------------------------------------------------- report

summary=()
# add_summary section metric value target status
add_summary() { summary+=("$(printf '%-10s %-46s %12s  %-10s %s' "$@")"); }

# meets VALUE OP LIMIT -> "ok" or "MISSED"
meets() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "" || v == "nan") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
        print ok ? "ok" : "MISSED" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.3f", a / b }'; }
section_header() { printf '\n== %s\n' "$1"; }
# ---------------------------------------------------------------- pgbench

# pgb SECONDS SCRIPT CLIENTS [pgbench options...]: prints the tps; the full
# pgbench output stays in $work/last_pgbench.out.  SCRIPT is relative to
# bench/ unless absolute.
pgb() {
    local secs=$1 script=$2 clients=$3
    shift 3
    [[ $script == /* ]] || script=$here/$script
    progress "pgbench $(basename "$script") -c $clients $* (${secs}s)"
    if ! pgbench -n -M prepared -T "$secs" -c "$clients" -j 2 \
        -f "$script" -D val="$val" -h "$work" -p "$port" -U postgres "$@" \
        postgres >"$work/last_pgbench.out" 2>&1; then
        cat "$work/last_pgbench.out" >&2
        die "pgbench $(basename "$script") failed"
    fi
    awk '/^tps = / { print $3; exit }' "$work/last_pgbench.out"
}

# measure CASE...: runs the cases interleaved, ROUNDS times T/ROUNDS seconds
# each, and sets TPS[name] (the mean) and SPREAD[name] (max - min of the
# rounds over the mean, in %).  A CASE is "name|script|clients|options"; a
# name written "!name" gets a CHECKPOINT before each of its runs, so that
# every write case starts with the same full-page-write debt; when
# $vacuum_before_write names tables, they are vacuumed before that
# CHECKPOINT (autovacuum is off: a case that updates a small table would
# otherwise run slower round after round, on its dead rows).
declare -A TPS SPREAD
vacuum_before_write=
measure() {
    local secs=$((T / ROUNDS)) spec name script clients opts r t
    local -A all=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for spec in "$@"; do
            IFS='|' read -r name script clients opts <<<"$spec"
            if [[ $name == !* ]]; then
                name=${name#!}
                [ -n "$vacuum_before_write" ] && q -c "VACUUM $vacuum_before_write"
                q -c "CHECKPOINT"
            fi
            # shellcheck disable=SC2086 # opts are words without blanks
            t=$(pgb "$secs" "$script" "$clients" $opts)
            all[$name]="${all[$name]:-} $t"
        done
    done
    for name in "${!all[@]}"; do
        read -r "TPS[$name]" "SPREAD[$name]" <<<"$(tr ' ' '\n' <<<"${all[$name]}" | awk 'NF {
            n++; s += $1; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
            END { m = s / n; printf "%.1f %.0f\n", m, (m > 0) ? 100 * (max - min) / m : 0 }')"
    done
}

# row LABEL NAME [BASE [TARGET]]: the case's tps, half the spread of its
# rounds ("-" for a single run), its ratio to case BASE and the target
# ("OP LIMIT", or "-" for none); sets $r to the ratio
row() {
    local label=$1 name=$2 base=${3:-} target=${4:--} spread=" -  "
    [ -n "${SPREAD[$name]:-}" ] && spread=$(printf '±%2s%%' "$((SPREAD[$name] / 2))")
    if [ -z "$base" ]; then
        printf '  %-48s %9.0f tps  %s\n' "$label" "${TPS[$name]}" "$spread"
        return
    fi
    r=$(ratio "${TPS[$name]}" "${TPS[$base]}")
    if [ "$target" = - ]; then
        printf '  %-48s %9.0f tps  %s   ratio %6s\n' "$label" "${TPS[$name]}" "$spread" "$r"
    else
        printf '  %-48s %9.0f tps  %s   ratio %6s   target %-7s %s\n' "$label" \
            "${TPS[$name]}" "$spread" "$r" "$target" \
            "$(meets "$r" "${target%% *}" "${target##* }")"
    fi
}

# per-second tps of the last pgbench run made with -P 1, one per line
progress_tps() { awk '/^progress: / { print $4 }' "$work/last_pgbench.out"; }

# wait until the notify worker has sent everything queued (bounded)
notify_quiet() {
    local i
    for i in $(seq 1 300); do
        [ "$(q -c 'SELECT queued FROM sessioncache.notify_stats')" = 0 ] && return 0
        sleep 0.1
    done
    progress "notify queue did not drain within 30 s"
}

# listener_start MODE: starts bench/listener.py, sets listener_pid
listener_pid=
listener_start() {
    rm -f "$work/listener.ready" "$work/listener.out"
    "$python" "$here/listener.py" --dsn "$dsn" --mode "$1" \
        --ready-file "$work/listener.ready" --dump "$work/latency.txt" >"$work/listener.out" 2>"$work/listener.err" &
    listener_pid=$!
    for _ in $(seq 1 100); do
        [ -f "$work/listener.ready" ] && return 0
        kill -0 "$listener_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/listener.err" >&2
    die "listener.py did not start"
}
# listener_stop: stops it; its result line is in $work/listener.out (not to
# be called in a subshell: it waits for its child)
listener_stop() {
    kill -TERM "$listener_pid"
    wait "$listener_pid" || { cat "$work/listener.err" >&2; die "listener.py failed"; }
}

# ---------------------------------------------------------------- set-up

q -c "CREATE EXTENSION sessioncache"

bench_session_value
# the reference "returning the value": the same jsonb as a constant
printf -- "-- the session value as a constant (generated by run.sh)\nSELECT '%s'::jsonb;\n" "$val" \
    >"$work/value_const.sql"
# the same as text: the floor of a get that would send stored text (no
# jsonb output conversion)
printf -- "-- the session value as a text constant (generated by run.sh)\nSELECT '%s'::text;\n" "$val" \
    >"$work/value_text.sql"

bench_create_fill
q <<'EOF'
-- poll cache_stats.expired every 10 ms until it reaches target (or the
-- deadline): ms from the first expiry to the first expired entry counted,
-- ms from the last expiry to the count reaching target, the final count
CREATE FUNCTION bench_wait_expired(c text, target bigint, first_exp timestamptz,
                                   last_exp timestamptz, timeout_s float8,
                                   OUT first_ms float8, OUT done_ms float8,
                                   OUT final bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    t_first timestamptz;
    deadline timestamptz := last_exp + make_interval(secs => timeout_s);
BEGIN
    LOOP
        SELECT s.expired INTO n FROM sessioncache.cache_stats s WHERE s.cache = c;
        IF n > 0 AND t_first IS NULL THEN
            t_first := clock_timestamp();
        END IF;
        EXIT WHEN n >= target OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.01);
    END LOOP;
    first_ms := extract(epoch FROM t_first - first_exp) * 1000;
    IF n >= target THEN
        done_ms := extract(epoch FROM clock_timestamp() - last_exp) * 1000;
    END IF;
    final := n;
END
$$;

-- join per members to each of the clusters bench-1..bench-<nclusters> with
-- a 1-second lease, all in one transaction; after its commit, poll every
-- 10 ms until sessioncache.members is empty (or timeout_s passed).  Returns
-- epochs: the start of the joins, the first and the last lease to lapse,
-- the commit, the first removal seen (a view_id changed) and the moment
-- sessioncache.members was seen empty (NULL if never); and the members left.
CREATE PROCEDURE bench_reap(nclusters int, per int, timeout_s float8,
                            OUT t_start float8, OUT first_lapse float8,
                            OUT last_lapse float8, OUT t_commit float8,
                            OUT t_first float8, OUT t_empty float8,
                            OUT members_left bigint)
LANGUAGE plpgsql AS $$
DECLARE
    views0 numeric;
    views numeric;
    deadline timestamptz;
BEGIN
    t_start := extract(epoch FROM clock_timestamp());
    PERFORM FROM generate_series(1, nclusters) c, generate_series(1, per) g,
        LATERAL sessioncache.join('bench-' || c, 'node-' || g, lease => '1 second') j;
    SELECT extract(epoch FROM min(m.lease_expires_at)), extract(epoch FROM max(m.lease_expires_at))
        INTO first_lapse, last_lapse
        FROM sessioncache.members m WHERE m.cluster LIKE 'bench-%';
    SELECT sum(c.view_id) INTO views0 FROM sessioncache.clusters c WHERE c.cluster LIKE 'bench-%';
    COMMIT;
    t_commit := extract(epoch FROM clock_timestamp());
    deadline := clock_timestamp() + make_interval(secs => timeout_s);
    -- cheap probes (the reaper shares the machine with this loop): a
    -- cluster's view_id changes when its members are removed, and EXISTS
    -- stops at the first member left
    LOOP
        IF t_first IS NULL THEN
            SELECT sum(c.view_id) INTO views FROM sessioncache.clusters c
                WHERE c.cluster LIKE 'bench-%';
            IF views <> views0 THEN
                t_first := extract(epoch FROM clock_timestamp());
            END IF;
        END IF;
        IF NOT EXISTS (SELECT FROM sessioncache.members) THEN
            t_empty := extract(epoch FROM clock_timestamp());
            EXIT;
        END IF;
        EXIT WHEN clock_timestamp() > deadline;
        PERFORM pg_sleep(0.01);
    END LOOP;
    SELECT count(*) INTO members_left FROM sessioncache.members;
END
$$;
EOF

printf 'sessioncache benchmarks: %ss per case, %s CPUs, PostgreSQL %s\n' \
    "$T" "$(nproc)" "$(q -c 'SHOW server_version')"
printf 'session value: %s bytes of jsonb (pg_column_size); keys sess-<n>, user ids user-<n mod 100000>\n' "$val_bytes"

# ---------------------------------------------------------------- core

section_core() {
    local n=100000 opts="-D cache=bench_mem -D nkeys=100000" r
    section_header "core: memory-only cache, $n entries, 4 clients (-c 4 -j 2)"
    q -c "SELECT sessioncache.define_cache('bench_mem', durable => false,
              idle_timeout => '1 day', max_lifespan => '2 days')" >/dev/null
    progress "filling bench_mem with $n entries"
    fill bench_mem 1 $n
    notify_quiet
    q -c "SELECT sessioncache.reset_stats()" >/dev/null

    measure "s1|select1.sql|4|" "const|$work/value_const.sql|4|" "ctext|$work/value_text.sql|4|" \
        "get|get.sql|4|$opts" "touch|touch.sql|4|$opts" "put|put.sql|4|$opts"

    row "SELECT 1 (baseline)" s1
    row "get (hit)" get s1 ">= 0.85"
    add_summary core "get / SELECT 1" "$r" ">= 0.85" "$(meets "$r" ">=" 0.85)"
    row "touch" touch s1 ">= 0.8"
    add_summary core "touch / SELECT 1" "$r" ">= 0.8" "$(meets "$r" ">=" 0.8)"
    row "put (replace; the cache has notify on)" put s1 ">= 0.7"
    add_summary core "put / SELECT 1" "$r" ">= 0.7" "$(meets "$r" ">=" 0.7)"
    printf '  reference: what returning the value costs, without any cache:\n'
    row "SELECT of the same jsonb value as a constant" const s1
    row "get (hit) / that constant" get const
    add_summary core "get / SELECT of the value as a constant" "$r" "-" "info"
    row "SELECT of the same value as a text constant" ctext s1
    add_summary core "value as text constant / SELECT 1" "$r" "-" "info"
    row "the jsonb constant / the text constant" const ctext
    add_summary core "jsonb constant / text constant" "$r" "-" "info"
    q -F ' ' -c "SELECT 'check: hits', hits, 'misses', misses, 'entries', entries
                 FROM sessioncache.cache_stats WHERE cache = 'bench_mem'" | sed 's/^/  /'
    q -c "SELECT sessioncache.drop_cache('bench_mem')" >/dev/null
}

# ---------------------------------------------------------------- memory

section_memory() {
    local n=20000 label kexpr vexpr uexpr used0 used1 kb vb ub per over worst=0 session_per= out
    section_header "memory: shared memory per entry beyond key and value ($n entries each)"
    q -c "SELECT sessioncache.define_cache('bench_size', durable => false,
              idle_timeout => '1 day', max_lifespan => '2 days', notify => false)" >/dev/null
    printf '  %-34s %9s %9s %9s %10s   %s\n' "entries of" "key B" "value B" "user B" \
        "bytes/ent" "overhead (target <= 96)"
    # label|key expr|value expr|user expr (j is the entry number)
    while IFS='|' read -r label kexpr vexpr uexpr; do
        progress "memory: $label"
        used0=$(q -c "SELECT used_bytes FROM sessioncache.memory")
        q -c "DO \$\$ BEGIN
                FOR b IN 0..$((n / 1000 - 1)) LOOP
                    PERFORM sessioncache.put('bench_size', $kexpr, $vexpr, $uexpr)
                        FROM generate_series(b * 1000 + 1, b * 1000 + 1000) j;
                    COMMIT;
                END LOOP;
              END \$\$"
        used1=$(q -c "SELECT used_bytes FROM sessioncache.memory")
        # the sizes of what was stored, recomputed the same way
        out=$(q -F ' ' -c "SELECT avg(octet_length($kexpr)),
                     avg(pg_column_size($vexpr)), coalesce(avg(octet_length($uexpr)), 0)
                     FROM generate_series(1, $n) j")
        read -r kb vb ub <<<"$out"
        per=$(awk -v a="$used0" -v b="$used1" -v n=$n 'BEGIN { printf "%.1f", (b - a) / n }')
        over=$(awk -v p="$per" -v k="$kb" -v v="$vb" -v u="$ub" 'BEGIN { printf "%.1f", p - k - v - u }')
        printf '  %-34s %9.1f %9.1f %9.1f %10s   %6s  %s\n' "$label" "$kb" "$vb" "$ub" "$per" "$over" \
            "$(meets "$over" "<=" 96)"
        worst=$(awk -v a="$worst" -v b="$over" 'BEGIN { print (b > a) ? b : a }')
        if [ "$label" = "sessions (uuid key/user, 400 B)" ]; then
            session_per=$per
        fi
        q -c "SELECT sessioncache.drop_cache('bench_size');
              SELECT sessioncache.define_cache('bench_size', durable => false,
                  idle_timeout => '1 day', max_lifespan => '2 days', notify => false)" >/dev/null
    done <<EOF
32-byte key, ~100 B value|lpad(j::text, 32, 'k')|jsonb_build_object('pad', repeat('x', 84))|NULL::text
32-byte key, ~400 B value|lpad(j::text, 32, 'k')|jsonb_build_object('pad', repeat('x', 384))|NULL::text
32-byte key, ~1000 B value|lpad(j::text, 32, 'k')|jsonb_build_object('pad', repeat('x', 984))|NULL::text
sessions (uuid key/user, 400 B)|md5(j::text)::uuid::text|\$v\$$val\$v\$::jsonb|md5((j % 5000)::text)::uuid::text
EOF
    add_summary memory "bytes per entry beyond key+value (worst)" "$worst" "<= 96" "$(meets "$worst" "<=" 96)"
    printf '  sizing: 1 million 400-byte sessions (uuid key and user id) use %s MB of sessioncache.memory\n' \
        "$(awk -v p="$session_per" 'BEGIN { printf "%.0f", p * 1e6 / 1048576 }')"
    add_summary memory "MB per million 400-byte sessions" \
        "$(awk -v p="$session_per" 'BEGIN { printf "%.0f", p * 1e6 / 1048576 }')" "-" "info"
    q -c "SELECT sessioncache.drop_cache('bench_size')" >/dev/null
}

# ---------------------------------------------------------------- durable

section_durable() {
    local n=100000 st r
    section_header "durable: cache 'sessions' vs a plain heap table, 8 clients, synchronous_commit = on"
    q <<'SQL'
-- shaped and indexed like sessioncache.durable_entries
CREATE TABLE bench_plain (
    cache_id    int NOT NULL,
    key         text NOT NULL,
    user_id     text,
    value       jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    last_access timestamptz NOT NULL,
    idle_us     bigint,
    max_us      bigint,
    version     bigint NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (cache_id, key)
);
CREATE INDEX bench_plain_user ON bench_plain (cache_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX bench_plain_expiry ON bench_plain (expires_at);
SQL
    progress "filling 'sessions' and bench_plain with $n entries"
    fill sessions 1 $n
    q -c "INSERT INTO bench_plain (cache_id, key, user_id, value, created_at, last_access,
                                   version, expires_at)
          SELECT 1, 'sess-' || j, 'user-' || (j % 100000), \$v\$$val\$v\$::jsonb, now(), now(), 1,
                 now() + interval '30 minutes'
          FROM generate_series(1, $n) j"
    q -c "VACUUM ANALYZE bench_plain" -c "VACUUM ANALYZE sessioncache.durable_entries" -c "CHECKPOINT"
    notify_quiet
    q -c "SELECT sessioncache.reset_stats()" >/dev/null

    measure "pget|plain_get.sql|8|-D nkeys=$n" "dget|get.sql|8|-D cache=sessions -D nkeys=$n" \
        "const|$work/value_const.sql|8|"
    st=$(q -F ' ' -c "SELECT 'check: hits', hits, 'misses', misses, 'fills', fills
                      FROM sessioncache.cache_stats WHERE cache = 'sessions'")
    measure "!pput|plain_upsert.sql|8|-D nkeys=1000000000" \
        "!dput|put.sql|8|-D cache=sessions -D nkeys=1000000000"

    row "plain upsert into bench_plain (baseline)" pput
    row "durable put, new keys" dput pput ">= 0.9"
    add_summary durable "durable put / plain upsert" "$r" ">= 0.9" "$(meets "$r" ">=" 0.9)"
    row "primary-key SELECT from bench_plain (baseline)" pget
    row "durable get (hit in memory)" dget pget ">= 1.6"
    add_summary durable "durable get / primary-key SELECT" "$r" ">= 1.6" "$(meets "$r" ">=" 1.6)"
    printf '  reference: what returning the value costs, without any table or cache:\n'
    row "SELECT of the same jsonb value as a constant" const pget
    row "durable get / that constant" dget const
    add_summary durable "durable get / SELECT of the value as a constant" "$r" "-" "info"
    printf '  %s (during the get runs)\n' "$st"
    q -c "DROP TABLE bench_plain"
}

# ---------------------------------------------------------------- notify

# notify worker counters: "runs messages cpu_ns"
notify_worker_counters() {
    local pid runs items out
    out=$(q -F ' ' -c "SELECT pid, runs, items FROM sessioncache.workers WHERE name = 'notify'")
    read -r pid runs items <<<"$out"
    printf '%s %s %s\n' "$runs" "$items" "$(awk '{ print $1 }' "/proc/$pid/schedstat" 2>/dev/null || echo 0)"
}

section_notify() {
    local n=100000 big="-D nkeys=1000000000" r objs payloads flushes puts c
    local w0 w1 written received lat p50 p99 pmax
    section_header "notify: puts with notify off vs on, 8 clients"
    q -c "SELECT sessioncache.define_cache('bench_nd_off', durable => false, notify => false,
              idle_timeout => '1 day', max_lifespan => '2 days');
          SELECT sessioncache.define_cache('bench_nd_on', durable => false, notify => true,
              idle_timeout => '1 day', max_lifespan => '2 days');
          SELECT sessioncache.define_cache('bench_d_off', durable => true, notify => false);
          SELECT sessioncache.define_cache('bench_d_on', durable => true, notify => true)" >/dev/null
    progress "filling bench_nd_off and bench_nd_on with $n entries each"
    fill bench_nd_off 1 $n
    fill bench_nd_on 1 $n
    notify_quiet
    q -c "SELECT sessioncache.reset_stats()" >/dev/null
    if [ -n "$python" ]; then listener_start count; fi

    w0=$(notify_worker_counters)
    measure "ndoff|put.sql|8|-D cache=bench_nd_off -D nkeys=$n" \
        "ndon|put.sql|8|-D cache=bench_nd_on -D nkeys=$n"
    measure "!doff|put.sql|8|-D cache=bench_d_off $big" "!don|put.sql|8|-D cache=bench_d_on $big"
    notify_quiet
    w1=$(notify_worker_counters)

    row "non-durable put, notify off (baseline)" ndoff
    row "non-durable put, notify on" ndon ndoff ">= 0.9"
    add_summary notify "non-durable put: notify on / off" "$r" ">= 0.9" "$(meets "$r" ">=" 0.9)"
    row "durable put, notify off (baseline)" doff
    row "durable put, notify on" don doff ">= 0.9"
    add_summary notify "durable put: notify on / off" "$r" ">= 0.9" "$(meets "$r" ">=" 0.9)"
    puts=$(q -c "SELECT sum(puts) FROM sessioncache.cache_stats
                 WHERE cache IN ('bench_nd_on', 'bench_d_on')")
    read -r -a w0 <<<"$w0"
    read -r -a w1 <<<"$w1"
    awk -v r=$((w1[0] - w0[0])) -v m=$((w1[1] - w0[1])) -v ns=$((w1[2] - w0[2])) 'BEGIN {
        printf "  check: the notify worker sent %d messages in %d rounds (%.1f per round), using %.0f ms of CPU (%.1f us per message)\n",
            m, r, (r > 0) ? m / r : 0, ns / 1e6, (m > 0) ? ns / 1e3 / m : 0 }'
    if [ -n "$python" ]; then
        sleep 0.5
        listener_stop
        read -r objs payloads flushes <"$work/listener.out"
        printf '  check: a listener received %s invalidations in %s payloads (%s flush) for %s puts to notify-on caches\n' \
            "$objs" "$payloads" "$flushes" "$puts"
    fi

    printf '  naive NOTIFY in the writer'"'"'s transaction (what the extension avoids):\n'
    measure "ndtx|put_txn.sql|8|-D cache=bench_nd_off -D nkeys=$n" \
        "ndnaive|put_naive_notify.sql|8|-D cache=bench_nd_off -D nkeys=$n"
    measure "!dtx|put_txn.sql|8|-D cache=bench_d_off $big" \
        "!dnaive|put_naive_notify.sql|8|-D cache=bench_d_off $big"
    row "non-durable BEGIN; put; SELECT; END (baseline)" ndtx
    row "non-durable BEGIN; put; pg_notify; END" ndnaive ndtx
    add_summary notify "non-durable put + naive pg_notify / without" "$r" "-" "info"
    row "durable BEGIN; put; SELECT; END (baseline)" dtx
    row "durable BEGIN; put; pg_notify; END" dnaive dtx
    add_summary notify "durable put + naive pg_notify / without" "$r" "-" "info"

    if [ -z "$python" ]; then
        printf '  latency: skipped (no python3 with psycopg; scripts/install-deps.sh installs python3-psycopg)\n'
        add_summary notify "commit-to-delivery p99 (ms)" "skipped" "<= 100" "n/a"
    else
        q -c "CREATE UNLOGGED TABLE bench_commit_times (id bigint, t timestamptz)" \
            -c "CREATE SEQUENCE bench_lat_seq"
        notify_quiet
        listener_start latency
        lat=$(pgb "$T" put_latency.sql 4 --rate=1000 -D cache=bench_nd_on)
        sleep 1
        listener_stop
        read -r written received p50 p99 pmax <"$work/listener.out"
        printf '  commit-to-delivery at %.0f puts/s (4 clients, --rate=1000): p50 %s ms, p99 %s ms, max %s ms   target p99 <= 100 %s\n' \
            "$lat" "$p50" "$p99" "$pmax" "$(meets "$p99" "<=" 100)"
        printf '  check: %s of %s committed puts were announced to the listener\n' "$received" "$written"
        add_summary notify "commit-to-delivery p50 (ms)" "$p50" "-" "info"
        add_summary notify "commit-to-delivery p99 (ms)" "$p99" "<= 100" "$(meets "$p99" "<=" 100)"
        q -c "DROP TABLE bench_commit_times" -c "DROP SEQUENCE bench_lat_seq"
    fi
    for c in bench_nd_off bench_nd_on bench_d_off bench_d_on; do
        q -c "SELECT sessioncache.drop_cache('$c')" >/dev/null
    done
}

# ---------------------------------------------------------------- expiry

# utime + stime of a process, in clock ticks (fields 14 and 15 of
# /proc/<pid>/stat, counted after the parenthesized command name)
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# worker_cpu_ns NAME...: CPU time (ns, /proc/<pid>/schedstat) of the named
# workers, 0 when unknown
worker_cpu_ns() {
    local w pid out=()
    for w in "$@"; do
        pid=$(q -c "SELECT pid FROM sessioncache.workers WHERE name = '$w'")
        out+=("$(awk '{ print $1 }' "/proc/$pid/schedstat" 2>/dev/null || echo 0)")
    done
    echo "${out[*]}"
}

# expiry worker CPU over T seconds: prints "runs stat_ms sched_ms" (sched_ms
# empty when /proc/<pid>/schedstat is missing)
expiry_cpu() {
    local pid runs0 runs1 st0 st1 sc0 sc1
    pid=$(q -c "SELECT pid FROM sessioncache.workers WHERE name = 'expiry'")
    [ -n "$pid" ] || die "no expiry worker"
    runs0=$(q -c "SELECT runs FROM sessioncache.workers WHERE name = 'expiry'")
    st0=$(proc_ticks "$pid")
    sc0=$(awk '{ print $1 }' "/proc/$pid/schedstat" 2>/dev/null || true)
    sleep "$T"
    runs1=$(q -c "SELECT runs FROM sessioncache.workers WHERE name = 'expiry'")
    st1=$(proc_ticks "$pid")
    sc1=$(awk '{ print $1 }' "/proc/$pid/schedstat" 2>/dev/null || true)
    awk -v r=$((runs1 - runs0)) -v st=$((st1 - st0)) -v hz="$(getconf CLK_TCK)" \
        -v sc0="$sc0" -v sc1="$sc1" 'BEGIN {
        if (r <= 0) { print 0, "nan", "nan"; exit }
        printf "%d %.3f %s\n", r, st * 1000 / hz / r,
            (sc0 == "") ? "nan" : sprintf("%.3f", (sc1 - sc0) / 1e6 / r) }'
}

section_expiry() {
    local n=1000000 nexp=100000 live idle r t_wait first_ms done_ms final first_exp last_exp poll_pid runs_big stat_big sched_big runs_small stat_small sched_small out
    live=$((n - nexp))
    idle=$((2 * T))
    section_header "expiry: $n entries, $nexp of them expiring together, get with 4 clients on the $live others"
    q -c "ALTER SYSTEM SET sessioncache.expiry_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
    q -c "SELECT sessioncache.define_cache('bench_exp', durable => false,
              idle_timeout => '1 day', max_lifespan => '2 days')" >/dev/null
    progress "filling bench_exp with $live entries (idle_timeout 1 day)"
    fill bench_exp 1 $live
    progress "filling bench_exp with $nexp entries (idle_timeout $idle s)"
    fill bench_exp $((live + 1)) $n "$idle seconds"
    # the fill is sequential: sess-<live+1> expires first, sess-<n> last
    out=$(q -F ' ' -c "SELECT extract(epoch FROM min(i.expires_at)), extract(epoch FROM max(i.expires_at))
                       FROM (VALUES ($live + 1), ($n)) v(k)
                       CROSS JOIN LATERAL sessioncache.entry_info('bench_exp', 'sess-' || k) i")
    read -r first_exp last_exp <<<"$out"
    q -c "SELECT sessioncache.reset_stats()" >/dev/null

    # the baseline runs half before the window and half after it (when the
    # expired entries are gone), so that a drift in the machine's load
    # cancels out; the window is timed to have the expiries in its middle
    local half=$(((T + 1) / 2)) b1 b2 cpu0 cpu1 ns0 ns1
    b1=$(pgb "$half" get.sql 4 -D cache=bench_exp -D nkeys=$live -P 1)
    progress_tps >"$work/base.progress"
    t_wait=$(q -c "SELECT round(greatest(0, $first_exp - extract(epoch FROM clock_timestamp()) - $T / 2.0), 3)")
    progress "waiting ${t_wait}s for the expiry window"
    sleep "$t_wait"
    q -F ' ' -c "SELECT coalesce(round(first_ms)::text, 'none'), coalesce(round(done_ms)::text, 'none'), final
                 FROM bench_wait_expired('bench_exp', $nexp, to_timestamp($first_exp),
                                         to_timestamp($last_exp), $T + 30)" \
        >"$work/expiry.wait" &
    poll_pid=$!
    cpu0=$(worker_cpu_ns expiry notify)
    ns0=$(q -F ' ' -c "SELECT dropped, flushes FROM sessioncache.notify_stats")
    TPS[xwin]=$(pgb "$T" get.sql 4 -D cache=bench_exp -D nkeys=$live -P 1)
    cpu1=$(worker_cpu_ns expiry notify)
    ns1=$(q -F ' ' -c "SELECT dropped, flushes FROM sessioncache.notify_stats")
    progress_tps >"$work/win.progress"
    wait "$poll_pid" || die "polling cache_stats failed"
    read -r first_ms done_ms final <"$work/expiry.wait"
    b2=$(pgb "$half" get.sql 4 -D cache=bench_exp -D nkeys=$live -P 1)
    progress_tps >>"$work/base.progress"
    TPS[xbase]=$(awk -v a="$b1" -v b="$b2" 'BEGIN { printf "%.1f", (a + b) / 2 }')
    SPREAD[xbase]=$(awk -v a="$b1" -v b="$b2" 'BEGIN { d = a - b; if (d < 0) d = -d; printf "%.0f", 100 * d / ((a + b) / 2) }')

    printf '  the %s entries fell due over %.2f s (the time their puts took)\n' "$nexp" \
        "$(awk -v a="$first_exp" -v b="$last_exp" 'BEGIN { print b - a }')"
    printf '  first expiry -> first one counted in cache_stats.expired: %s ms\n' "$first_ms"
    if [ "$done_ms" != none ]; then
        printf '  last expiry -> cache_stats.expired = %s: %s ms (expiry_interval 1 s)\n' "$nexp" "$done_ms"
        add_summary expiry "last expiry -> all $nexp counted (ms)" "$done_ms" "-" "info"
    else
        printf '  cache_stats.expired reached only %s of %s within %s s\n' "$final" "$nexp" "$((T + 30))"
        add_summary expiry "last expiry -> all $nexp counted (ms)" "never" "-" "MISSED"
    fi
    row "get, no expiry (baseline: half before, half after)" xbase
    row "get, window with the expiries" xwin xbase ">= 0.9"
    add_summary expiry "get during expiry / without" "$r" ">= 0.9" "$(meets "$r" ">=" 0.9)"
    # the worst second of the window against the baseline's median second
    local med worst_s
    med=$(sort -n "$work/base.progress" | awk '{ v[NR] = $1 } END {
        if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    worst_s=$(sort -n "$work/win.progress" | head -n 1)
    printf '  worst second of the window / median second of the baseline: %s\n' \
        "$(ratio "${worst_s:-0}" "$med")"

    read -r -a cpu0 <<<"$cpu0"
    read -r -a cpu1 <<<"$cpu1"
    read -r -a ns0 <<<"$ns0"
    read -r -a ns1 <<<"$ns1"
    printf '  during the window: expiry worker %s ms CPU, notify worker %s ms CPU; the %s expiries'"'"' messages: %s dropped, %s flush sent\n' \
        "$(((cpu1[0] - cpu0[0]) / 1000000))" "$(((cpu1[1] - cpu0[1]) / 1000000))" "$nexp" \
        "$((ns1[0] - ns0[0]))" "$((ns1[1] - ns0[1]))"
    add_summary expiry "expiry messages dropped (queue overflow)" "$((ns1[0] - ns0[0]))" "-" "info"

    # the expiry worker's CPU per run when nothing expires
    progress "expiry worker CPU with $n entries"
    fill bench_exp $((live + 1)) $n
    notify_quiet
    sleep 2
    out=$(expiry_cpu)
    read -r runs_big stat_big sched_big <<<"$out"
    q -c "SELECT sessioncache.drop_cache('bench_exp')" >/dev/null
    q -c "SELECT sessioncache.define_cache('bench_exp', durable => false,
              idle_timeout => '1 day', max_lifespan => '2 days')" >/dev/null
    progress "expiry worker CPU with $nexp entries"
    fill bench_exp 1 $nexp
    notify_quiet
    sleep 2
    out=$(expiry_cpu)
    read -r runs_small stat_small sched_small <<<"$out"
    printf '  expiry worker CPU per run, nothing expiring (%s s at expiry_interval 1 s):\n' "$T"
    printf '    %-10s %5s runs   %8s ms/run (utime+stime)   %8s ms/run (schedstat)\n' \
        "$nexp" "$runs_small" "$stat_small" "$sched_small"
    printf '    %-10s %5s runs   %8s ms/run (utime+stime)   %8s ms/run (schedstat)\n' \
        "$n" "$runs_big" "$stat_big" "$sched_big"
    if [ "$sched_big" != nan ]; then
        r=$(ratio "$sched_big" "$sched_small")
    else
        r=$(ratio "$stat_big" "$stat_small")
    fi
    printf '    1M / 100k: %s   target: flat (<= 1.5) %s\n' "$r" "$(meets "$r" "<=" 1.5)"
    add_summary expiry "worker CPU/run, 1M / 100k entries" "$r" "<= 1.5" "$(meets "$r" "<=" 1.5)"
    q -c "SELECT sessioncache.drop_cache('bench_exp')" >/dev/null
}

# ---------------------------------------------------------------- membership

# server_crashed LOG_OFFSET WHEN: a statement failed because the server
# crashed.  Prints the crash lines of the server log written since
# LOG_OFFSET (bytes), waits (at most 60 s) for the server to accept
# connections again, and marks the run as failed: the summary is still
# printed, then run.sh exits 1.
crashed=0
server_crashed() {
    crashed=1
    printf '  THE SERVER CRASHED %s:\n' "$2"
    tail -c +"$(($1 + 1))" "$work/server.log" |
        grep -E 'terminated by signal|exited with exit code|PANIC|reinitializing' | head -n 5 |
        sed 's/^[^]]*] /    /'
    for _ in $(seq 1 600); do
        q -c "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "the server did not come back within 60 s"
}

# leave_all: every member of every cluster leaves
leave_all() {
    q -c "SELECT sessioncache.leave(member_id) FROM sessioncache.members" >/dev/null
}

section_membership() {
    local n=1000 nclusters=10 per=1000 big out mfirst mlast cnt opts r
    local runs0 runs1 items0 items1 cpu0 cpu1 log0 t_start first_lapse last_lapse t_commit t_first t_empty left
    local runs_none stat_none sched_none runs_live stat_live sched_live idle_ms reap_ms
    local upd0 upd1 hot0 hot1 pid pid1 ref
    big=$((nclusters * per))
    section_header "membership: heartbeats of $n members with 4 clients; the reaper with $big members"

    # the heartbeat: $n members of cluster 'bench', lease 1 hour
    q -c "CREATE ROLE bench_async LOGIN SUPERUSER" \
        -c "ALTER ROLE bench_async SET synchronous_commit = off"
    out=$(q -F ' ' -c "SELECT min(j.member_id), max(j.member_id), count(*)
                       FROM generate_series(1, $n) g,
                       LATERAL sessioncache.join('bench', 'node-' || g, lease => '1 hour') j")
    read -r mfirst mlast cnt <<<"$out"
    [ "$cnt" = "$n" ] && [ $((mlast - mfirst + 1)) = "$n" ] ||
        die "the $n members' ids are not consecutive ($mfirst..$mlast)"
    opts="-D mfirst=$mfirst -D mlast=$mlast"
    q -c "VACUUM ANALYZE sessioncache.cluster_members" -c "VACUUM ANALYZE sessioncache.clusters"
    out=$(q -F ' ' -c "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
                       WHERE relid = 'sessioncache.cluster_members'::regclass")
    read -r upd0 hot0 <<<"$out"
    # a heartbeat is an UPDATE: vacuum the members before each run
    vacuum_before_write=sessioncache.cluster_members
    measure "s1|select1.sql|4|" "!hb|heartbeat.sql|4|$opts" "!hbasync|heartbeat.sql|4|-U bench_async $opts"
    vacuum_before_write=
    row "SELECT 1 (baseline)" s1
    row "heartbeat of a random member" hb s1
    add_summary membership "heartbeat / SELECT 1" "$r" "-" "info"
    printf '  reference: the same heartbeats without waiting for the WAL flush at commit:\n'
    row "heartbeat, synchronous_commit = off" hbasync s1
    row "heartbeat / that (synchronous_commit = off)" hb hbasync
    add_summary membership "heartbeat / heartbeat without commit flush" "$r" "-" "info"
    sleep 1 # the backends' statistics reach the cumulative stats
    out=$(q -F ' ' -c "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
                       WHERE relid = 'sessioncache.cluster_members'::regclass")
    read -r upd1 hot1 <<<"$out"
    q -F ' ' -c "SELECT 'check:', count(*), 'members in cluster bench, view_id', min(view_id), '->', max(view_id)
                 FROM sessioncache.members WHERE cluster = 'bench'" | sed 's/^/  /'
    printf '  check: %s updates of cluster_members, %s of them HOT\n' "$((upd1 - upd0))" "$((hot1 - hot0))"
    leave_all

    # the expiry worker's CPU per run with no member at all
    q -c "VACUUM ANALYZE sessioncache.cluster_members" -c "VACUUM ANALYZE sessioncache.clusters"
    sleep 2
    progress "expiry worker CPU with no member"
    out=$(expiry_cpu)
    read -r runs_none stat_none sched_none <<<"$out"

    # the expiry worker's CPU per run with $big live members (lease 1 hour)
    q -c "SELECT count(*) FROM generate_series(1, $nclusters) c, generate_series(1, $per) g,
              LATERAL sessioncache.join('bench-' || c, 'node-' || g, lease => '1 hour') j" >/dev/null
    q -c "VACUUM ANALYZE sessioncache.cluster_members" -c "VACUUM ANALYZE sessioncache.clusters"
    sleep 2
    progress "expiry worker CPU with $big live members"
    out=$(expiry_cpu)
    read -r runs_live stat_live sched_live <<<"$out"
    printf '  expiry worker CPU per run, no lease lapsing (%s s at expiry_interval 1 s, no cache entries):\n' "$T"
    printf '    %-16s %5s runs   %8s ms/run (utime+stime)   %8s ms/run (schedstat)\n' \
        "no member" "$runs_none" "$stat_none" "$sched_none"
    printf '    %-16s %5s runs   %8s ms/run (utime+stime)   %8s ms/run (schedstat)\n' \
        "$big members" "$runs_live" "$stat_live" "$sched_live"
    if [ "$sched_live" != nan ]; then
        r=$(ratio "$sched_live" "$sched_none")
    else
        r=$(ratio "$stat_live" "$stat_none")
    fi
    printf '    %s members / none: %s (the reaper'"'"'s idle cost)\n' "$big" "$r"
    add_summary membership "expiry CPU/run, $big live members / none" "$r" "-" "info"

    # the reaper: $big members with a 1-second lease, joined in one
    # transaction, so that they become visible to the reaper together
    leave_all
    q -c "DROP ROLE bench_async"
    q -c "VACUUM ANALYZE sessioncache.cluster_members" -c "VACUUM ANALYZE sessioncache.clusters"
    progress "joining $big members with lease 1 s, then waiting for the reaper"
    log0=$(wc -c <"$work/server.log")
    out=$(q -F ' ' -c "SELECT pid, runs, items FROM sessioncache.workers WHERE name = 'expiry'")
    read -r pid runs0 items0 <<<"$out"
    cpu0=$(sched_ns "$pid")
    if ! out=$(q -F ' ' -c "CALL bench_reap($nclusters, $per, 60, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"); then
        # a crash of the server: say so, let it come back, and fail at the end
        server_crashed "$log0" "during the reap of $big members"
        add_summary membership "lapse -> all $big members removed (ms)" "crash" "-" "MISSED"
        return
    fi
    read -r t_start first_lapse last_lapse t_commit t_first t_empty left <<<"$out"
    out=$(q -F ' ' -c "SELECT pid, runs, items FROM sessioncache.workers WHERE name = 'expiry'")
    read -r pid1 runs1 items1 <<<"$out"
    cpu1=$(sched_ns "$pid")
    [ "$pid1" = "$pid" ] || progress "the expiry worker's pid changed during the reap ($pid -> $pid1)"
    awk -v s="$t_start" -v c="$t_commit" -v f="$first_lapse" -v l="$last_lapse" -v n=$big -v nc=$nclusters 'BEGIN {
        printf "  %d members (%d clusters, lease 1 s) joined in one transaction of %.2f s; their leases lapsed %.2f s to %.2f s after its start\n",
            n, nc, c - s, f - s, l - s }'
    # the reaper can see a lapsed member from the later of the commit and the
    # last lapse on
    ref=$(awk -v c="$t_commit" -v l="$last_lapse" 'BEGIN { printf "%.6f", (l > c) ? l : c }')
    if [ -n "$t_first" ]; then
        printf '  commit (or last lapse, if later) -> first cluster'"'"'s members removed: %.0f ms\n' \
            "$(awk -v a="$t_first" -v r="$ref" 'BEGIN { print (a - r) * 1000 }')"
    fi
    if [ -n "$t_empty" ]; then
        reap_ms=$(awk -v a="$t_empty" -v r="$ref" 'BEGIN { printf "%.0f", (a - r) * 1000 }')
        printf '  commit (or last lapse, if later) -> sessioncache.members empty: %s ms (expiry_interval 1 s, polled every 10 ms)\n' "$reap_ms"
        add_summary membership "lapse -> all $big members removed (ms)" "$reap_ms" "-" "info"
    else
        printf '  sessioncache.members still had %s members 60 s after the commit\n' "$left"
        add_summary membership "lapse -> all $big members removed (ms)" "never" "-" "MISSED"
    fi
    if [ -n "$cpu0" ] && [ -n "$cpu1" ] && [ "$sched_none" != nan ]; then
        # the runs made meanwhile cost their idle share anyway: take it off
        idle_ms=$(awk -v r=$((runs1 - runs0)) -v i="$sched_none" 'BEGIN { printf "%.1f", r * i }')
        awk -v ns=$((cpu1 - cpu0)) -v r=$((runs1 - runs0)) -v idle="$idle_ms" -v it=$((items1 - items0)) -v n=$big 'BEGIN {
            net = ns / 1e6 - idle
            printf "  expiry worker: %.1f ms CPU over its %d runs from the joins'"'"' start to the table empty; minus their idle cost (%.1f ms for %d runs): %.1f ms for removing %d members (%.1f us each; %d removals counted in sessioncache.workers.items)\n",
                ns / 1e6, r, idle, r, net, n, net * 1000 / n, it }'
        add_summary membership "reaper CPU per member removed (us)" \
            "$(awk -v ns=$((cpu1 - cpu0)) -v idle="$idle_ms" -v n=$big 'BEGIN { printf "%.1f", (ns / 1e6 - idle) * 1000 / n }')" "-" "info"
    fi
}

# ---------------------------------------------------------------- WAL helpers

lsn() { q -c "SELECT pg_current_wal_insert_lsn()"; }
# wal_since LSN: bytes of WAL written since LSN
wal_since() { q -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$1')::bigint"; }

# writeback_settled: returns once the writeback worker has written every
# touch made before the call: two of its rounds completed after the call,
# the last of them writing nothing (bounded: 120 s)
writeback_settled() {
    local out runs items last_runs last_items seen=0
    out=$(q -F ' ' -c "SELECT runs, items FROM sessioncache.workers WHERE name = 'writeback'")
    read -r last_runs last_items <<<"$out"
    for _ in $(seq 1 600); do
        sleep 0.2
        out=$(q -F ' ' -c "SELECT runs, items FROM sessioncache.workers WHERE name = 'writeback'")
        read -r runs items <<<"$out"
        [ "$runs" = "$last_runs" ] && continue
        seen=$((seen + 1))
        [ "$seen" -ge 2 ] && [ "$items" = "$last_items" ] && return 0
        last_runs=$runs
        last_items=$items
    done
    progress "the writeback worker did not settle within 120 s"
}

# measure_wal CASE...: as measure, and WALTX[name], the WAL bytes per
# transaction over all its rounds.  A CASE is "name|script|clients|options|
# settle"; every run starts after a VACUUM of $vacuum_before_write (if set)
# and a CHECKPOINT, so that each pays the same full-page writes; with settle
# "wb" the run's WAL is read once the writeback worker has written the run's
# touches (its WAL is part of the run's).
declare -A WALTX
measure_wal() {
    local secs=$((T / ROUNDS)) spec name script clients opts settle r t l0 txns
    local -A all=() wal=() tx=()
    for ((r = 1; r <= ROUNDS; r++)); do
        for spec in "$@"; do
            IFS='|' read -r name script clients opts settle <<<"$spec"
            [ -n "$vacuum_before_write" ] && q -c "VACUUM $vacuum_before_write"
            q -c "CHECKPOINT"
            l0=$(lsn)
            # shellcheck disable=SC2086 # opts are words without blanks
            t=$(pgb "$secs" "$script" "$clients" $opts)
            txns=$(awk '/^number of transactions actually processed: / { print $6; exit }' "$work/last_pgbench.out")
            [ "$settle" = wb ] && writeback_settled
            wal[$name]=$((${wal[$name]:-0} + $(wal_since "$l0")))
            tx[$name]=$((${tx[$name]:-0} + txns))
            all[$name]="${all[$name]:-} $t"
        done
    done
    for name in "${!all[@]}"; do
        read -r "TPS[$name]" "SPREAD[$name]" <<<"$(tr ' ' '\n' <<<"${all[$name]}" | awk 'NF {
            n++; s += $1; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
            END { m = s / n; printf "%.1f %.0f\n", m, (m > 0) ? 100 * (max - min) / m : 0 }')"
        WALTX[$name]=$(awk -v w="${wal[$name]}" -v n="${tx[$name]}" 'BEGIN { printf "%.0f", (n > 0) ? w / n : 0 }')
    done
}

# ---------------------------------------------------------------- keycloak

# Keycloak 26's persistent session tables, as its Liquibase changelogs
# leave them (jpa-changelog-*.xml up to 26.0.0; see bench/README.md)
create_keycloak_tables() {
    q <<'SQL'
CREATE TABLE offline_user_session (
    user_session_id      varchar(36) NOT NULL,
    user_id              varchar(255) NOT NULL,
    realm_id             varchar(36) NOT NULL,
    created_on           integer NOT NULL,
    offline_flag         varchar(4) NOT NULL,
    data                 text,
    last_session_refresh integer DEFAULT 0 NOT NULL,
    broker_session_id    varchar(1024),
    version              integer DEFAULT 0,
    CONSTRAINT constraint_offl_us_ses_pk2 PRIMARY KEY (user_session_id, offline_flag)
);
CREATE INDEX idx_offline_uss_by_user ON offline_user_session (user_id, realm_id, offline_flag);
CREATE INDEX idx_offline_uss_by_last_session_refresh
    ON offline_user_session (realm_id, offline_flag, last_session_refresh);
CREATE INDEX idx_offline_uss_by_broker_session_id ON offline_user_session (broker_session_id, realm_id);
CREATE TABLE offline_client_session (
    user_session_id         varchar(36) NOT NULL,
    client_id               varchar(255) NOT NULL,
    offline_flag            varchar(4) NOT NULL,
    "timestamp"             integer,
    data                    text,
    client_storage_provider varchar(36) DEFAULT 'local' NOT NULL,
    external_client_id      varchar(255) DEFAULT 'local' NOT NULL,
    version                 integer DEFAULT 0,
    CONSTRAINT constraint_offl_cl_ses_pk3
        PRIMARY KEY (user_session_id, client_id, client_storage_provider, external_client_id, offline_flag)
);
SQL
}

# keycloak_plot FILE.dat FILE.svg: throughput and WAL per transaction
# against the clients, both systems
keycloak_plot() {
    gnuplot <<GNUPLOT
set terminal svg size 900,380 dynamic font "sans,11" background rgb "white"
set output "$2"
set multiplot layout 1,2 title "The auth server's mix (80% refresh, 20% login), synchronous commit, 100k sessions"
set key below
set grid
set xlabel "clients"
set xtics ("1" 1, "4" 4, "8" 8, "16" 16)
set ylabel "transactions per second"
set yrange [0:*]
plot "$1" using 1:3 with linespoints lw 2 pt 7 title "sessioncache", \
     "$1" using 1:2 with linespoints lw 2 pt 5 title "Keycloak 26 tables"
set ylabel "WAL bytes per transaction"

plot "$1" using 1:5 with linespoints lw 2 pt 7 title "sessioncache", \
     "$1" using 1:4 with linespoints lw 2 pt 5 title "Keycloak 26 tables"
unset multiplot
GNUPLOT
}

section_keycloak() {
    local n=100000 c rt rw spread_kc spread_sc plot="${BENCH_PLOT:-$PWD/keycloak-mix.svg}" dat
    dat="${plot%.*}.dat"
    section_header "keycloak: the auth server's mix (80% refresh, 20% login), Keycloak 26's session tables vs sessioncache, $n sessions, synchronous_commit = on"
    create_keycloak_tables
    q -c "SELECT sessioncache.define_cache('bench_kc', durable => true,
              idle_timeout => '30 minutes', max_lifespan => '10 hours')" >/dev/null
    progress "filling the Keycloak tables and cache bench_kc with $n sessions (uuid ids)"
    q -c "INSERT INTO offline_user_session
          SELECT md5(j::text)::uuid::text, 'user-' || (j % 100000),
                 '9d2e1c4a-6f3b-4e8a-b1d7-3c5f0a2e8b61', extract(epoch FROM now())::int, '0',
                 \$v\$$val\$v\$, extract(epoch FROM now())::int, NULL, 0
          FROM generate_series(1, $n) j" \
        -c "INSERT INTO offline_client_session
          SELECT md5(j::text)::uuid::text, '4b7e2d19-8c3a-4f6e-9a05-e1d2c3b4a596', '0',
                 extract(epoch FROM now())::int, repeat('x', 300), 'local', 'local', 0
          FROM generate_series(1, $n) j"
    q -c "DO \$\$ BEGIN
            FOR b IN 0..$((n / 1000 - 1)) LOOP
                PERFORM sessioncache.put('bench_kc', md5(j::text)::uuid::text, \$v\$$val\$v\$::jsonb,
                                         'user-' || (j % 100000))
                    FROM generate_series(b * 1000 + 1, b * 1000 + 1000) j;
                COMMIT;
            END LOOP;
          END \$\$"
    q -c "VACUUM ANALYZE offline_user_session, offline_client_session, sessioncache.durable_entries"
    notify_quiet
    writeback_settled

    vacuum_before_write="offline_user_session, offline_client_session, sessioncache.durable_entries"
    printf '  %-8s %16s %16s %8s   %-10s %12s %12s %8s   %s\n' clients "Keycloak tps" "sessioncache tps" ratio \
        target "KC WAL/txn" "sc WAL/txn" ratio target
    printf '# clients keycloak_tps sessioncache_tps keycloak_wal_per_txn sessioncache_wal_per_txn\n' >"$dat"
    for c in 1 4 8 16; do
        measure_wal "kc$c|kc_refresh.sql@80|$c|-f $here/kc_login.sql@20 -D nkeys=$n|" \
            "sc$c|sc_refresh.sql@80|$c|-f $here/sc_login.sql@20 -D nkeys=$n -D cache=bench_kc|wb"
        rt=$(ratio "${TPS[sc$c]}" "${TPS[kc$c]}")
        rw=$(ratio "${WALTX[sc$c]}" "${WALTX[kc$c]}")
        spread_kc=${SPREAD[kc$c]}
        spread_sc=${SPREAD[sc$c]}
        spread_kc=$(printf '±%s%%' "$((spread_kc / 2))")
        spread_sc=$(printf '±%s%%' "$((spread_sc / 2))")
        printf '  %-8s %9.0f %6s %9.0f %6s %8s   %-3s %-6s %12s %12s %8s   %-3s %-6s\n' "$c" \
            "${TPS[kc$c]}" "$spread_kc" "${TPS[sc$c]}" "$spread_sc" "$rt" ">= 6" "$(meets "$rt" ">=" 6)" \
            "${WALTX[kc$c]}" "${WALTX[sc$c]}" "$rw" "<= 0.15" "$(meets "$rw" "<=" 0.15)"
        printf '%s %s %s %s %s\n' "$c" "${TPS[kc$c]}" "${TPS[sc$c]}" "${WALTX[kc$c]}" "${WALTX[sc$c]}" >>"$dat"
        add_summary keycloak "mix tps / Keycloak 26, $c clients" "$rt" ">= 6" "$(meets "$rt" ">=" 6)"
        add_summary keycloak "mix WAL per txn / Keycloak 26, $c clients" "$rw" "<= 0.15" "$(meets "$rw" "<=" 0.15)"
    done
    vacuum_before_write=
    q -F ' ' -c "SELECT 'check: bench_kc hits', hits, 'misses', misses, 'fills', fills, 'puts', puts, 'touches', touches
                 FROM sessioncache.cache_stats WHERE cache = 'bench_kc'" | sed 's/^/  /'
    if command -v gnuplot >/dev/null; then
        keycloak_plot "$dat" "$plot"
        printf '  plot: %s (data: %s)\n' "$plot" "$dat"
    else
        printf '  plot: skipped (no gnuplot; apt-get install gnuplot-nox); data: %s\n' "$dat"
    fi
    q -c "DROP TABLE offline_user_session, offline_client_session" \
        -c "SELECT sessioncache.drop_cache('bench_kc')" >/dev/null
}

# ---------------------------------------------------------------- touchwal

TOUCHES=${BENCH_TOUCHES:-20000}

# touch_window SCRIPT OPTS SETTLE: WAL bytes of TOUCHES touches by 4
# clients, a CHECKPOINT before and half-way; with SETTLE "wb" the window
# ends once the writeback worker has written them
touch_window() {
    local l0 per=$((TOUCHES / 2 / 4)) half
    q -c "CHECKPOINT"
    l0=$(lsn)
    for half in 1 2; do
        # shellcheck disable=SC2086 # options are words without blanks
        pgbench -n -M prepared -t "$per" -c 4 -j 2 -f "$here/$1" $2 -h "$work" -p "$port" \
            -U postgres postgres >"$work/last_pgbench.out" 2>&1 ||
            { cat "$work/last_pgbench.out" >&2; die "pgbench $1 failed"; }
        [ "$half" = 1 ] && q -c "CHECKPOINT"
    done
    [ "$3" = wb ] && writeback_settled
    wal_since "$l0"
}

section_touchwal() {
    local n=100000 p1 d1 p2 d2 pm dm r
    section_header "touchwal: WAL per touch of a durable session vs a plain UPDATE, $TOUCHES touches over $n sessions, CHECKPOINT half-way"
    q -c "SELECT sessioncache.define_cache('bench_tw', durable => true,
              idle_timeout => '30 minutes', max_lifespan => '10 hours')" >/dev/null
    q <<'SQL'
-- shaped and indexed like sessioncache.durable_entries
CREATE TABLE bench_tw (
    cache_id int NOT NULL, key text NOT NULL, user_id text, value jsonb NOT NULL,
    created_at timestamptz NOT NULL, last_access timestamptz NOT NULL,
    idle_us bigint, max_us bigint, version bigint NOT NULL,
    expires_at timestamptz NOT NULL, PRIMARY KEY (cache_id, key));
CREATE INDEX bench_tw_user ON bench_tw (cache_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX bench_tw_expiry ON bench_tw (expires_at);
SQL
    progress "filling bench_tw (table) and bench_tw (cache) with $n sessions"
    fill bench_tw 1 $n
    q -c "INSERT INTO bench_tw SELECT 1, 'sess-' || j, 'user-' || (j % 100000), \$v\$$val\$v\$::jsonb,
                 now(), now(), NULL, NULL, 1, now() + interval '30 minutes'
          FROM generate_series(1, $n) j"
    q -c "VACUUM ANALYZE bench_tw, sessioncache.durable_entries"
    notify_quiet
    writeback_settled
    printf '  full_page_writes = %s, sessioncache.flush_interval = %s, wal_compression = %s\n' \
        "$(q -c 'SHOW full_page_writes')" "$(q -c 'SHOW sessioncache.flush_interval')" "$(q -c 'SHOW wal_compression')"
    # twice each, alternating, so that the tables' growth hits both alike
    p1=$(touch_window plain_touch.sql "-D nkeys=$n" "")
    q -c "VACUUM bench_tw, sessioncache.durable_entries"
    d1=$(touch_window touch.sql "-D cache=bench_tw -D nkeys=$n" wb)
    q -c "VACUUM bench_tw, sessioncache.durable_entries"
    p2=$(touch_window plain_touch.sql "-D nkeys=$n" "")
    q -c "VACUUM bench_tw, sessioncache.durable_entries"
    d2=$(touch_window touch.sql "-D cache=bench_tw -D nkeys=$n" wb)
    pm=$(awk -v a="$p1" -v b="$p2" -v n="$TOUCHES" 'BEGIN { printf "%.0f", (a + b) / 2 / n }')
    dm=$(awk -v a="$d1" -v b="$d2" -v n="$TOUCHES" 'BEGIN { printf "%.0f", (a + b) / 2 / n }')
    printf '  %-52s %6.0f B/touch (runs: %.0f, %.0f)\n' "plain UPDATE SET last_access, expires_at (baseline)" "$pm" \
        "$(awk -v a="$p1" -v n="$TOUCHES" 'BEGIN { print a / n }')" "$(awk -v a="$p2" -v n="$TOUCHES" 'BEGIN { print a / n }')"
    r=$(ratio "$dm" "$pm")
    printf '  %-52s %6.0f B/touch (runs: %.0f, %.0f)   ratio %s   target <= 0.1 %s\n' \
        "durable touch, writeback included" "$dm" \
        "$(awk -v a="$d1" -v n="$TOUCHES" 'BEGIN { print a / n }')" "$(awk -v a="$d2" -v n="$TOUCHES" 'BEGIN { print a / n }')" \
        "$r" "$(meets "$r" "<=" 0.1)"
    add_summary touchwal "WAL per touch / plain UPDATE" "$r" "<= 0.1" "$(meets "$r" "<=" 0.1)"
    q -c "DROP TABLE bench_tw" -c "SELECT sessioncache.drop_cache('bench_tw')" >/dev/null
}

# ---------------------------------------------------------------- touchdesign

# td_window PROC [FOLD]: WAL bytes per touch of the prototype PROC over the
# whole stream (flushes 0-9), a CHECKPOINT before and half-way, FOLD called
# at the end (inside the window).  The writes run with synchronous_commit
# off: that changes no WAL volume, only the time.
td_window() {
    local l0
    q -c "UPDATE td_touches SET t = t + interval '1 hour'" # later than anything written
    q -c "VACUUM td_wide" -c "VACUUM td_narrow" -c "VACUUM td_packed" -c "CHECKPOINT"
    l0=$(lsn)
    PGOPTIONS="-c synchronous_commit=off" q -c "CALL $1(0, 4)"
    q -c "CHECKPOINT"
    PGOPTIONS="-c synchronous_commit=off" q -c "CALL $1(5, 9)"
    [ -n "${2:-}" ] && PGOPTIONS="-c synchronous_commit=off" q -c "CALL $2()"
    awk -v w="$(wal_since "$l0")" -v n="$TOUCHES" 'BEGIN { printf "%.0f", w / n }'
}

section_touchdesign() {
    local n=100000 per_flush=2000 p1 p2 pm w label proc fold setup line r
    local -a td_results=()
    section_header "touchdesign: WAL per touch of candidate homes for the idle timer, plain SQL prototypes ($TOUCHES touches over $n sessions, $per_flush per flush, CHECKPOINT half-way)"
    q -f "$here/touch_designs.sql"
    q -c "CALL td_setup($n, $TOUCHES, $per_flush, \$v\$$val\$v\$::jsonb)" \
        -c "CALL td_narrow_setup($n, 70)" -c "CALL td_packed_setup($n, 50)" -c "VACUUM ANALYZE"
    p1=$(td_window td_plain)
    while IFS='|' read -r label proc fold setup; do
        [ -n "$setup" ] && q -c "CALL $setup"
        progress "touchdesign: $label"
        w=$(td_window "$proc" "$fold")
        td_results+=("$label|$w")
    done <<LIST
today: writeback of the wide row, 500 rows per transaction|td_writeback_wide||
(a) narrow row per session (id, last_access, expires_at), ff 100|td_narrow||td_narrow_setup($n, 100)
(a) narrow row per session, fillfactor 70|td_narrow||td_narrow_setup($n, 70)
(c) 64 sessions per row, int4 seconds array, fillfactor 50|td_packed||
(b) append-only record per flush, folded into (c) at the end|td_log|td_fold|
LIST
    p2=$(td_window td_plain)
    pm=$(awk -v a="$p1" -v b="$p2" 'BEGIN { printf "%.0f", (a + b) / 2 }')
    printf '  %-62s %6s B/touch (runs: %s, %s)\n' "plain UPDATE of the wide row per touch (baseline)" "$pm" "$p1" "$p2"
    for line in "${td_results[@]}"; do
        IFS='|' read -r label w <<<"$line"
        r=$(ratio "$w" "$pm")
        printf '  %-62s %6s B/touch   ratio %s   (goal <= 0.1: %s)\n' "$label" "$w" "$r" "$(meets "$r" "<=" 0.1)"
        add_summary touchdesign "${label:0:46}" "$r" "<= 0.1" "info"
    done
    q -c "DROP TABLE td_touches, td_wide, td_narrow, td_packed, td_log" \
        -c "DROP PROCEDURE td_setup, td_plain, td_writeback_wide, td_narrow_setup, td_narrow,
                           td_packed_setup, td_packed, td_log, td_fold" \
        -c "DROP FUNCTION td_sec"
}

# ---------------------------------------------------------------- run

for s in "${sections[@]}"; do
    "section_$s"
done

printf '\n== summary\n'
printf '%-10s %-46s %12s  %-10s %s\n' section metric value target status
for line in "${summary[@]}"; do
    printf '%s\n' "$line"
done
if [ "$crashed" = 1 ]; then
    printf '\nthe server crashed during the run (see above)\n'
    exit 1
fi
