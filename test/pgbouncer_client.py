#!/usr/bin/python3
"""The reference client behind PgBouncer in transaction pooling mode (run by
test/t/060_pgbouncer.pl).

    pgbouncer_client.py BOUNCER_CONNINFO DIRECT_CONNINFO

Two NearCaches and a Membership whose data connections go through the pooler
(with psycopg's server-side prepared statements off) and whose listeners
connect straight to PostgreSQL.  Each check prints "ok N - what" or
"not ok N - what" (TAP); the exit status is the number of failures.
"""

import sys
import time

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/client")

from sessioncache_client import NearCache, Membership  # noqa: E402

bouncer, direct = sys.argv[1], sys.argv[2]
NOPREPARE = {"prepare_threshold": None}
n = 0
failed = 0


def ok(cond, what):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, what), flush=True)


def wait(fn, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.02)
    return fn()


a = NearCache(bouncer, caches=["sessions"], pool_size=3, listen_membership=True,
              connect_kwargs=NOPREPARE, listen_conninfo=direct)
b = NearCache(bouncer, caches=["sessions"], pool_size=3,
              connect_kwargs=NOPREPARE, listen_conninfo=direct)
ok(a.wait_online(20) and b.wait_online(20), "both listeners online (direct connections)")

# many rounds of the same statements: with psycopg's default prepare_threshold
# they would be prepared on whichever server connection ran them
good = True
for i in range(20):
    v = a.put("sessions", "pb-k", {"i": i}, user_id="pb-user")
    if not isinstance(v, int):
        good = False
    got = b.get("sessions", "pb-k")
    if got != {"i": i}:
        # b may still hold the previous value until the invalidation arrives
        if not wait(lambda: b.get("sessions", "pb-k") == {"i": i}):
            good = False
            print("# round %d: b reads %r" % (i, b.get("sessions", "pb-k")), flush=True)
ok(good, "20 puts by one client, each seen by the other's near cache")
ok(b.stats().get("hits", 0) > 0 or b.cached("sessions", "pb-k"),
   "the other client holds copies locally")

# a write invalidates the other's copy through the direct listener
b.get("sessions", "pb-k")
ok(wait(lambda: b.cached("sessions", "pb-k")), "b holds pb-k")
a.patch("sessions", "pb-k", {"p": 1})
ok(wait(lambda: not b.cached("sessions", "pb-k")), "a's patch invalidates b's copy")
ok(b.get("sessions", "pb-k") == {"i": 19, "p": 1}, "b reads the patched value")
ok(a.incr("sessions", "pb-c", "n", 5, user_id="pb-user") == 5
   and b.incr("sessions", "pb-c", "n", 2) == 7, "incr from both clients")
ok(b.touch("sessions", "pb-k") is True, "touch")
ok(a.get("sessions", "pb-k", touch=True) == {"i": 19, "p": 1}, "get with touch")
ok(a.delete_user("sessions", "pb-user") == 2, "delete_user removes both entries")
ok(wait(lambda: b.get("sessions", "pb-k") is None), "b sees the logout")
ok(a.delete("sessions", "pb-k") is False, "delete of an absent key")

# membership: join, 15 heartbeats (more than psycopg's prepare threshold), view
views = []
m = Membership(bouncer, "pb-cluster", "pb-node", lease=5, heartbeat_interval=0.05,
               connect_kwargs=NOPREPARE, on_view_change=lambda mm: views.append(mm.view_id))
a.add_membership_listener(m.notify)
m.start()
t0 = time.monotonic()
ok(wait(lambda: m.is_coordinator), "the member is the coordinator of its view")
time.sleep(1.0)     # about 20 heartbeats
ok(m.member_id is not None and m.view_id is not None, "heartbeats keep the member")
m2 = Membership(bouncer, "pb-cluster", "pb-node-2", lease=5, connect_kwargs=NOPREPARE)
m2.start()
ok(wait(lambda: sorted(x["node"] for x in m.members) == ["pb-node", "pb-node-2"]),
   "the first member sees the second one join")
m2.leave()
ok(wait(lambda: [x["node"] for x in m.members] == ["pb-node"]), "the leave is seen")
m.leave()

a.close()
b.close()
print("1..%d" % n)
sys.exit(failed)
