#!/usr/bin/env python3
"""A LISTEN client for bench/run.sh (section notify).

Listens on sessioncache_invalidate until it gets SIGTERM or SIGINT, then
prints one line and exits:

  --mode count     "<objects> <payloads> <flushes>": invalidation objects
                   received, NOTIFY payloads they came in (several objects
                   may share one payload as a JSON array), {"op": "flush"}
                   messages among them.
  --mode latency   "<written> <received> <p50_ms> <p99_ms> <max_ms>": the
                   rows of bench_commit_times (id, clock_timestamp() taken
                   right after the put of key lat-<id> committed) joined with
                   the moment this process received that key's invalidation.

The receive time is taken when the socket becomes readable, before any
parsing, so the figure is commit-to-delivery as a client sees it (plus the
one round trip between the writer's commit and its clock_timestamp(), which
makes it slightly optimistic).  Both clocks are the same machine's.
"""
import argparse
import hashlib
import hmac
import json
import select
import signal
import sys
import time

import psycopg


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil
    return sorted_values[int(rank) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--mode", choices=("count", "latency"), required=True)
    ap.add_argument("--ready-file", required=True,
                    help="created once LISTEN is in effect")
    ap.add_argument("--cache", default="bench_nd_on",
                    help="latency mode: the cache the writer puts to")
    ap.add_argument("--dump", help="latency mode: write 'commit_epoch latency_ms'"
                    " lines here, for a closer look")
    args = ap.parse_args()

    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    conn = psycopg.connect(args.dsn, autocommit=True)
    conn.execute("LISTEN sessioncache_invalidate")
    with open(args.ready_file, "w"):
        pass

    pg = conn.pgconn
    received = {}               # key -> first receive time (epoch seconds)
    objects = payloads = flushes = 0
    while not stop:
        ready, _, _ = select.select([pg.socket], [], [], 0.2)
        if not ready:
            continue
        now = time.time()
        pg.consume_input()
        while True:
            n = pg.notifies()
            if n is None:
                break
            payloads += 1
            if args.mode == "count":
                # cheap: this process shares the machine with the server
                objects += n.extra.count(b'"op":')
                flushes += n.extra.count(b'"op": "flush"')
                continue
            data = json.loads(n.extra.decode())
            for obj in data if isinstance(data, list) else [data]:
                objects += 1
                if obj.get("op") == "flush":
                    flushes += 1
                elif obj.get("cache") == args.cache:
                    # since 1.1 the key comes as its key_hash (issue 12)
                    received.setdefault(obj.get("key", obj.get("key_hash")), now)

    if args.mode == "count":
        print(objects, payloads, flushes)
        return 0

    rows = conn.execute(
        "SELECT id, extract(epoch FROM t)::float8 FROM bench_commit_times").fetchall()
    try:
        secret = bytes(conn.execute("SELECT sessioncache.channel_secret()").fetchone()[0])
    except psycopg.Error:
        secret = None       # a 1.0 server: keys in clear

    def name(i):
        k = f"lat-{i}"
        if secret is None:
            return k
        return hmac.new(secret, f"{args.cache}\0{k}".encode(), hashlib.sha256).digest()[:16].hex()
    pairs = sorted((t, (received[name(i)] - t) * 1000.0)
                   for i, t in rows if name(i) in received)
    if args.dump:
        with open(args.dump, "w") as f:
            for t, ms in pairs:
                f.write(f"{t:.6f} {ms:.3f}\n")
    lat = sorted(ms for _, ms in pairs)
    if not lat:
        print(len(rows), 0, "nan", "nan", "nan")
        return 0
    print(len(rows), len(lat), f"{percentile(lat, 50):.2f}",
          f"{percentile(lat, 99):.2f}", f"{lat[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
