#!/usr/bin/env python3
"""Tests of the sessioncache near-cache client against a real server.

Run as root (or as postgres): the script makes a temporary directory owned by
postgres, runs initdb and starts a server on a unix socket inside it with
shared_preload_libraries = 'sessioncache', creates the extension, runs the
tests and always stops the server (by its pid) and removes the directory.
Exit status 0 when every test passed.

    python3 client/test_nearcache.py [-v] [unittest test names...]
"""

import json
import logging
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import psycopg  # noqa: E402

from sessioncache_client import Membership, NearCache, backoff_delays  # noqa: E402

POLL_BOUND = 2.0        # seconds: how long we wait for something that must happen
SERVER = {}             # filled by start_server(): dir, conninfo, pid


# ----------------------------------------------------------------------
# the temporary server

def pg_bindir():
    try:
        out = subprocess.run(["pg_config", "--bindir"], check=True,
                             capture_output=True, text=True).stdout.strip()
        if os.path.exists(os.path.join(out, "initdb")):
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/lib/postgresql/15/bin"


def as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def start_server():
    pw = pwd.getpwnam("postgres")
    d = tempfile.mkdtemp(prefix="sessioncache_nearcache_")
    SERVER["dir"] = d
    os.chown(d, pw.pw_uid, pw.pw_gid)
    os.chmod(d, 0o711)      # the socket must be reachable by this (root) process
    data = os.path.join(d, "data")
    bindir = pg_bindir()
    as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-A", "trust",
                 "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"])
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("\n# sessioncache near-cache client test\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{d}'\n"
                "port = 5432\n"
                "shared_preload_libraries = 'sessioncache'\n"
                "sessioncache.database = 'postgres'\n"
                "sessioncache.memory = 32MB\n"
                "sessioncache.expiry_interval = 100ms\n"
                "sessioncache.flush_interval = 200ms\n"
                "fsync = off\n")
    as_postgres([os.path.join(bindir, "pg_ctl"), "-D", data, "-l",
                 os.path.join(d, "server.log"), "-w", "-t", "60", "start"])
    with open(os.path.join(data, "postmaster.pid")) as f:
        SERVER["pid"] = int(f.readline())
    SERVER["conninfo"] = f"host={d} port=5432 dbname=postgres user=postgres"
    with psycopg.connect(SERVER["conninfo"], autocommit=True) as c:
        c.execute("CREATE EXTENSION sessioncache")
        # load the cache definitions at once (see
        # test_membership_change_right_after_create_extension for why)
        c.execute("SELECT sessioncache.get('sessions', 'probe')")


def stop_server():
    pid = SERVER.get("pid")
    if pid:
        try:
            os.kill(pid, signal.SIGINT)         # fast shutdown
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGQUIT)        # immediate shutdown
            time.sleep(1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        SERVER["pid"] = None


def server_log_tail(n=40):
    try:
        with open(os.path.join(SERVER["dir"], "server.log")) as f:
            return "".join(f.readlines()[-n:])
    except (KeyError, OSError):
        return ""


# ----------------------------------------------------------------------
# helpers

def server_accepts_connections():
    try:
        with admin() as c:
            c.execute("SELECT sessioncache.get('sessions', 'probe')")
        return True
    except psycopg.Error:
        return False


def admin():
    return psycopg.connect(SERVER["conninfo"], autocommit=True)


def poll(cond, bound=POLL_BOUND, step=0.01):
    """Wait until cond() is true, at most ``bound`` seconds; return its last value."""
    deadline = time.monotonic() + bound
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def ukey(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Recorder:
    """on_invalidate callback that remembers what it saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = []
        self.client = None      # set by NearCacheTest.client: maps keys to key_hash

    def __call__(self, cache, key, op, version):
        with self.lock:
            self.seen.append((cache, key, op, version))

    def saw(self, cache, key, op=None, version=None):
        # a key the client neither holds nor reads comes as its key_hash
        kh = self.client.key_hash(cache, key) if self.client is not None else None
        with self.lock:
            return any(c == cache and k in (key, kh) and (op is None or o == op)
                       and (version is None or v == version)
                       for c, k, o, v in self.seen)


class NearCacheTest(unittest.TestCase):

    def client(self, **kw):
        kw.setdefault("on_invalidate", Recorder())
        c = NearCache(SERVER["conninfo"], **kw)
        c.recorder = kw["on_invalidate"]
        if isinstance(c.recorder, Recorder):
            c.recorder.client = c
        self.addCleanup(c.close)
        self.assertTrue(c.wait_online(10), "listener did not come online")
        return c

    # -- coherence between two clients ------------------------------------

    def test_write_in_one_client_invalidates_the_other(self):
        a, b = self.client(), self.client()
        k = ukey()
        v1 = b.put("sessions", k, {"n": 1})
        self.assertEqual(a.get("sessions", k), {"n": 1})
        self.assertTrue(a.cached("sessions", k))
        hits = a.stats().get("hits", 0)
        self.assertEqual(a.get_entry("sessions", k), ({"n": 1}, v1))
        self.assertEqual(a.stats().get("hits", 0), hits + 1, "second read not served locally")

        v2 = b.put("sessions", k, {"n": 2})
        self.assertGreater(v2, v1)
        self.assertTrue(poll(lambda: not a.cached("sessions", k)),
                        "invalidation of a put did not reach the other client")
        self.assertEqual(a.get("sessions", k), {"n": 2})

        b.patch("sessions", k, {"p": True})
        self.assertTrue(poll(lambda: not a.cached("sessions", k)), "patch did not invalidate")
        self.assertEqual(a.get("sessions", k), {"n": 2, "p": True})

        b.incr("sessions", k, "n", 5)
        self.assertTrue(poll(lambda: not a.cached("sessions", k)), "incr did not invalidate")
        self.assertEqual(a.get("sessions", k), {"n": 7, "p": True})

    def test_delete_invalidates(self):
        a, b = self.client(), self.client()
        k = ukey()
        b.put("sessions", k, {"x": 1})
        self.assertEqual(a.get("sessions", k), {"x": 1})
        self.assertTrue(b.delete("sessions", k))
        self.assertTrue(poll(lambda: not a.cached("sessions", k)), "delete did not invalidate")
        self.assertTrue(a.recorder.saw("sessions", k, "delete"))
        self.assertIsNone(a.get("sessions", k))
        self.assertFalse(a.cached("sessions", k), "a miss must not be cached")

    def test_delete_user_invalidates(self):
        a, b = self.client(), self.client()
        user = ukey("user")
        keys = [ukey() for _ in range(3)]
        for k in keys:
            b.put("sessions", k, {"k": k}, user_id=user)
            self.assertEqual(a.get("sessions", k), {"k": k})
        self.assertEqual(b.delete_user("sessions", user), 3)
        self.assertTrue(poll(lambda: not any(a.cached("sessions", k) for k in keys)),
                        "delete_user did not invalidate every entry of the user")
        # and the writer's own copies go at once
        for k in keys:
            b.get("sessions", k)
        self.assertFalse(any(b.cached("sessions", k) for k in keys))

    def test_own_writes_are_visible_at_once(self):
        a = self.client()
        k = ukey()
        a.put("sessions", k, {"v": 1})
        self.assertEqual(a.get("sessions", k), {"v": 1})
        a.put("sessions", k, {"v": 2})
        self.assertFalse(a.cached("sessions", k))
        self.assertEqual(a.get("sessions", k), {"v": 2})
        a.delete("sessions", k)
        self.assertIsNone(a.get("sessions", k))

    def test_many_changes_in_one_transaction(self):
        # the notify worker may send these as one JSON array
        a = self.client()
        keys = [ukey() for _ in range(50)]
        with admin() as c:
            with c.transaction():
                for k in keys:
                    c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 1}')", (k,))
        for k in keys:
            self.assertEqual(a.get("sessions", k), {"v": 1})
        with admin() as c:
            with c.transaction():
                for k in keys:
                    c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 2}')", (k,))
        self.assertTrue(poll(lambda: not any(a.cached("sessions", k) for k in keys)),
                        "not every key of a multi-key commit was invalidated")
        self.assertTrue(all(a.get("sessions", k) == {"v": 2} for k in keys))

    def test_rolled_back_write_sends_nothing(self):
        a = self.client()
        k1, k2 = ukey(), ukey()
        with admin() as c:
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 1}')", (k1,))
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 1}')", (k2,))
            self.assertTrue(poll(lambda: a.recorder.saw("sessions", k1)
                                 and a.recorder.saw("sessions", k2)))
            self.assertEqual(a.get("sessions", k1), {"v": 1})
            a.recorder.seen.clear()
            c.execute("BEGIN")
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 9}')", (k1,))
            c.execute("ROLLBACK")
            # a committed change queued after the rolled-back one
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 2}')", (k2,))
        self.assertTrue(poll(lambda: a.recorder.saw("sessions", k2)))
        self.assertFalse(a.recorder.saw("sessions", k1), "rolled-back write was notified")
        self.assertTrue(a.cached("sessions", k1))
        self.assertEqual(a.get("sessions", k1), {"v": 1})

    # -- failure behaviour ----------------------------------------------------

    def test_lost_listener_drops_everything_and_recovers(self):
        a, b = self.client(backoff_initial=0.05), self.client()
        keys = [ukey() for _ in range(5)]
        for k in keys:
            b.put("sessions", k, {"k": k})
            self.assertEqual(a.get("sessions", k), {"k": k})
        self.assertEqual(len(a), 5)

        # hold the reconnection, so that we can look at the offline state
        gate = threading.Event()
        real_connect = a._connect_listener

        def held_connect():
            gate.wait(30)
            return real_connect()
        a._connect_listener = held_connect

        pid = a.listener_pid
        disconnects = a.stats().get("disconnects", 0)
        with admin() as c:
            self.assertTrue(c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0])
        self.assertTrue(poll(lambda: a.stats().get("disconnects", 0) > disconnects),
                        "the listener did not notice the lost connection")
        self.assertEqual(len(a), 0, "local copies survived a lost listener connection")
        self.assertFalse(a.online)

        # offline: reads go to the server and nothing is kept
        b.put("sessions", keys[0], {"k": "offline"})
        bypassed = a.stats().get("bypassed", 0)
        self.assertEqual(a.get("sessions", keys[0]), {"k": "offline"})
        self.assertEqual(a.stats().get("bypassed", 0), bypassed + 1)
        self.assertEqual(len(a), 0)

        gate.set()
        self.assertTrue(a.wait_online(10), "the listener did not reconnect")
        self.assertNotEqual(a.listener_pid, pid)
        self.assertEqual(a.get("sessions", keys[1]), {"k": keys[1]})
        self.assertTrue(a.cached("sessions", keys[1]))
        b.put("sessions", keys[1], {"k": "after"})
        self.assertTrue(poll(lambda: not a.cached("sessions", keys[1])),
                        "invalidations do not work after the reconnection")
        self.assertEqual(a.get("sessions", keys[1]), {"k": "after"})

    def test_reconnect_backs_off(self):
        # the listener keeps trying while the server refuses it, with growing delays
        a = self.client(backoff_initial=0.05, backoff_max=0.4)
        attempts = []
        real_connect = a._connect_listener

        def failing_connect():
            attempts.append(time.monotonic())
            if len(attempts) < 5:
                raise psycopg.OperationalError("refused by the test")
            return real_connect()
        a._connect_listener = failing_connect
        with admin() as c:
            c.execute("SELECT pg_terminate_backend(%s)", (a.listener_pid,))
        self.assertTrue(poll(lambda: len(attempts) >= 5 and a.online, bound=10))
        gaps = [y - x for x, y in zip(attempts, attempts[1:4])]
        # after the first failure the nominal delays are 0.1, 0.2, 0.4 (up to 50% jitter)
        for gap, nominal in zip(gaps, (0.1, 0.2, 0.4)):
            self.assertGreaterEqual(gap, nominal * 0.5)

    def test_expire_notification_drops_key(self):
        with admin() as c:
            c.execute("SELECT sessioncache.define_cache('nc_short', durable => false, "
                      "idle_timeout => '1 second', max_lifespan => NULL)")
        a, b = self.client(), self.client()
        k = ukey()
        b.put("nc_short", k, {"short": True})
        self.assertEqual(a.get("nc_short", k), {"short": True})
        self.assertTrue(a.cached("nc_short", k))
        # idle timeout 1 s, expiry worker every 100 ms: the bound is generous
        self.assertTrue(poll(lambda: a.recorder.saw("nc_short", k, "expire"), bound=10),
                        "no expire notification")
        self.assertFalse(a.cached("nc_short", k), "expired key still held locally")
        self.assertIsNone(a.get("nc_short", k))

    def test_cache_without_notify_is_not_held(self):
        with admin() as c:
            c.execute("SELECT sessioncache.define_cache('nc_quiet', notify => false)")
        a = self.client()          # reads the cache list at connect, after the define
        k = ukey()
        a.put("nc_quiet", k, {"q": 1})
        self.assertEqual(a.get("nc_quiet", k), {"q": 1})
        self.assertFalse(a.cached("nc_quiet", k))

    def test_drop_cache_invalidates(self):
        # drop_cache removes the cache's entries: a committed change of each of
        # them, so a near cache must learn of it (API.md, Notifications)
        with admin() as c:
            c.execute("SELECT sessioncache.define_cache('nc_dropped', durable => false)")
        a = self.client()
        k = ukey()
        a.put("nc_dropped", k, {"d": 1})
        self.assertEqual(a.get("nc_dropped", k), {"d": 1})
        self.assertTrue(a.cached("nc_dropped", k))
        with admin() as c:
            c.execute("SELECT sessioncache.drop_cache('nc_dropped')")
            c.execute("SELECT sessioncache.define_cache('nc_dropped', durable => false)")
            self.assertIsNone(c.execute("SELECT sessioncache.get('nc_dropped', %s)",
                                        (k,)).fetchone()[0])
        self.assertTrue(poll(lambda: not a.cached("nc_dropped", k)),
                        "drop_cache sent no invalidation: the near cache still serves "
                        "an entry of the dropped cache")
        self.assertIsNone(a.get("nc_dropped", k))

    def test_membership_change_right_after_create_extension(self):
        # CREATE EXTENSION resets the cache definitions; a membership change
        # committed before anything reloads them must still be notified
        # (and must not crash the notify worker)
        nc = self.client(listen_membership=True)
        seen = []
        nc.add_membership_listener(lambda cluster, view_id: seen.append(cluster))
        cluster = ukey("cluster")
        try:
            try:
                with admin() as c:
                    with c.transaction():
                        c.execute("DROP EXTENSION sessioncache")
                        c.execute("CREATE EXTENSION sessioncache")
                        c.execute("SELECT sessioncache.join(%s, 'n1')", (cluster,))
            except psycopg.OperationalError as e:
                lost = str(e).splitlines()[0]
            else:
                lost = None
            self.assertIsNone(lost, "connection lost at commit (did the server crash?)")
            self.assertTrue(poll(lambda: cluster in seen),
                            "no membership notification (did the notify worker crash? "
                            "see the server log)")
            self.assertEqual(nc.stats().get("disconnects", 0), 0,
                             "the listener lost its connection: the server restarted")
        finally:
            # after a crash, let the server recover before the next test
            poll(server_accepts_connections, bound=30, step=0.1)

    # -- the fill race ---------------------------------------------------------

    def test_invalidation_during_fill_is_not_lost(self):
        a, b = self.client(), self.client()
        k = ukey()
        v1 = b.put("sessions", k, {"v": "old"})
        self.assertTrue(poll(lambda: a.recorder.saw("sessions", k, "put", v1)))

        # a's read of k returns the old value, then pauses before installing it
        read_done, release = self.paused_fill(a, k)

        result = {}
        t = threading.Thread(target=lambda: result.setdefault("v", a.get("sessions", k)))
        t.start()
        self.assertTrue(read_done.wait(10))
        v2 = b.put("sessions", k, {"v": "new"})
        # wait until a's listener has processed the invalidation, then let the fill finish
        self.assertTrue(poll(lambda: a.recorder.saw("sessions", k, "put", v2)),
                        "invalidation did not arrive")
        discarded = a.stats().get("fills_discarded", 0)
        release.set()
        t.join(10)
        self.assertEqual(result["v"], {"v": "old"})  # the read itself was older than the write
        self.assertFalse(a.cached("sessions", k), "a stale fill was installed")
        self.assertEqual(a.stats().get("fills_discarded", 0), discarded + 1)
        self.assertEqual(a.get("sessions", k), {"v": "new"})

    def paused_fill(self, client, key):
        """Make client's next read of key pause between the server read and
        the install; returns (read_done, release) events."""
        read_done, release = threading.Event(), threading.Event()
        real_fetch = client._fetch

        def slow_fetch(cache, k, touch):
            row = real_fetch(cache, k, touch)
            if k == key and not read_done.is_set():
                read_done.set()
                release.wait(30)
            return row
        client._fetch = slow_fetch
        self.addCleanup(setattr, client, "_fetch", real_fetch)
        return read_done, release

    def test_delete_during_fill_is_not_lost(self):
        a, b = self.client(), self.client()
        k = ukey()
        v1 = b.put("sessions", k, {"v": "old"})
        self.assertTrue(poll(lambda: a.recorder.saw("sessions", k, "put", v1)))
        read_done, release = self.paused_fill(a, k)
        t = threading.Thread(target=a.get, args=("sessions", k))
        t.start()
        self.assertTrue(read_done.wait(10))
        b.delete("sessions", k)
        self.assertTrue(poll(lambda: a.recorder.saw("sessions", k, "delete")))
        release.set()
        t.join(10)
        self.assertFalse(a.cached("sessions", k), "a fill older than a delete was installed")
        self.assertIsNone(a.get("sessions", k))

    def test_own_write_during_fill_is_not_lost(self):
        a = self.client()
        k = ukey()
        a.put("sessions", k, {"v": "old"})
        # hold a's listener, so that only the write itself can stop the fill
        listener_free = threading.Event()
        real_handle = a._handle_payload

        def held_handle(channel, payload):
            listener_free.wait(30)
            real_handle(channel, payload)
        a._handle_payload = held_handle
        self.addCleanup(listener_free.set)
        read_done, release = self.paused_fill(a, k)
        t = threading.Thread(target=a.get, args=("sessions", k))
        t.start()
        self.assertTrue(read_done.wait(10))
        a.put("sessions", k, {"v": "new"})
        release.set()
        t.join(10)
        # read-your-writes without waiting for the notification
        self.assertFalse(a.cached("sessions", k))
        self.assertEqual(a.get("sessions", k), {"v": "new"})
        listener_free.set()

    # -- local behaviour -------------------------------------------------------

    def test_lru_is_bounded(self):
        a = self.client(max_entries=3)
        keys = [ukey() for _ in range(5)]
        for k in keys:
            a.put("sessions", k, {"k": k})
        for k in keys[:3]:
            a.get("sessions", k)
        a.get("sessions", keys[0])                   # keys[0] is now the most recent
        for k in keys[3:]:
            a.get("sessions", k)
        self.assertEqual(len(a), 3)
        self.assertEqual([a.cached("sessions", k) for k in keys],
                         [True, False, False, True, True])

    def test_returned_values_are_copies(self):
        a = self.client()
        k = ukey()
        a.put("sessions", k, {"list": [1]})
        v = a.get("sessions", k)
        v["list"].append(2)
        self.assertEqual(a.get("sessions", k), {"list": [1]})

    def test_touch_reads_go_to_the_server(self):
        a = self.client()
        k = ukey()
        a.put("sessions", k, {"t": 1})
        a.get("sessions", k)
        with admin() as c:
            before = c.execute("SELECT last_access FROM sessioncache.entry_info('sessions', %s)",
                               (k,)).fetchone()[0]
            hits = a.stats().get("hits", 0)
            self.assertEqual(a.get("sessions", k, touch=True), {"t": 1})
            self.assertEqual(a.stats().get("hits", 0), hits, "a touching read was served locally")
            after = c.execute("SELECT last_access FROM sessioncache.entry_info('sessions', %s)",
                              (k,)).fetchone()[0]
        self.assertGreater(after, before)

    def test_touch_interval_serves_recent_touches_locally(self):
        a = self.client(touch_interval=3600)
        k = ukey()
        a.put("sessions", k, {"t": 1})
        self.assertEqual(a.get("sessions", k, touch=True), {"t": 1})   # server, touches
        hits = a.stats().get("hits", 0)
        self.assertEqual(a.get("sessions", k, touch=True), {"t": 1})   # touched just now
        self.assertEqual(a.stats().get("hits", 0), hits + 1)

    def test_local_copy_never_outlives_server_expiry(self):
        with admin() as c:
            c.execute("SELECT sessioncache.define_cache('nc_ttl', durable => false, "
                      "idle_timeout => '1 second', max_lifespan => NULL)")
        a = self.client()
        # hold a's listener: only the local deadline can retire the copy
        listener_free = threading.Event()
        real_handle = a._handle_payload
        a._handle_payload = lambda ch, pl: (listener_free.wait(30), real_handle(ch, pl))
        self.addCleanup(listener_free.set)
        k = ukey()
        a.put("nc_ttl", k, {"ttl": 1})
        self.assertEqual(a.get("nc_ttl", k), {"ttl": 1})
        self.assertTrue(a.cached("nc_ttl", k))
        self.assertTrue(poll(lambda: a.get("nc_ttl", k) is None, bound=10),
                        "an expired entry was still served from the local copy")
        listener_free.set()

    def test_payload_parsing(self):
        # notifications fed straight to the handler (no server involved)
        a = NearCache("host=/nonexistent", start=False, caches=["sessions"])
        self.addCleanup(a.close)
        from sessioncache_client import _Entry
        import math

        def fill(*keys):
            for k in keys:
                a._lru[("sessions", k)] = _Entry({"k": k}, 10, None, math.inf, None)
        fill("a", "b", "c")
        a._handle_payload("sessioncache_invalidate", json.dumps(
            [{"cache": "sessions", "key": "a", "op": "delete", "version": 11},
             {"cache": "sessions", "key": "b", "op": "put", "version": 10},
             {"cache": "other", "key": "c", "op": "put", "version": 12}]))
        self.assertEqual(sorted(k for _, k in a._lru), ["b", "c"])   # put v10 is what we hold
        a._handle_payload("sessioncache_invalidate",
                          json.dumps({"cache": "sessions", "key": "b", "op": "expire", "version": 10}))
        self.assertEqual(sorted(k for _, k in a._lru), ["c"])
        a._handle_payload("sessioncache_invalidate", '{"op": "flush"}')
        self.assertEqual(len(a), 0)
        fill("d")
        a._handle_payload("sessioncache_invalidate", "not json")
        self.assertEqual(len(a), 0, "a malformed message must drop everything")
        seen = []
        a.add_membership_listener(lambda c, v: seen.append((c, v)))
        a._handle_payload("sessioncache_membership", '{"cluster": "c1", "view_id": 7}')
        self.assertEqual(seen, [("c1", 7)])

    # -- the signed channel (issue 12) ----------------------------------------

    def roles(self):
        with admin() as c:
            c.execute("""DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nc_app') THEN
                    CREATE ROLE nc_app LOGIN IN ROLE sessioncache_app, sessioncache_monitor;
                END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nc_plain') THEN
                    CREATE ROLE nc_plain LOGIN;
                END IF; END $$""")
        base = SERVER["conninfo"].replace("user=postgres", "")
        return base + " user=nc_app", base + " user=nc_plain"

    def test_plain_role_sees_no_key_on_the_channel(self):
        app_ci, plain_ci = self.roles()
        with psycopg.connect(plain_ci, autocommit=True) as spy:
            with self.assertRaises(psycopg.errors.InsufficientPrivilege):
                spy.execute("SELECT sessioncache.channel_secret()")
        payloads = []
        with psycopg.connect(plain_ci, autocommit=True) as spy:
            spy.add_notify_handler(lambda n: payloads.append(n.payload))
            spy.execute("LISTEN sessioncache_invalidate")
            spy.execute("LISTEN sessioncache_membership")
            keys = [ukey("SECRET-SESSION-ID") for _ in range(5)]
            with psycopg.connect(app_ci, autocommit=True) as app:
                for k in keys:
                    app.execute("SELECT sessioncache.put('sessions', %s, '{}', 'alice')", (k,))
                app.execute("SELECT sessioncache.delete('sessions', %s)", (keys[0],))
                app.execute("SELECT sessioncache.put('auth_sessions', %s, '{}')", (keys[1],))
            deadline = time.monotonic() + 10
            while sum(p.count('"op": "') for p in payloads) < 7 and time.monotonic() < deadline:
                time.sleep(0.05)
                spy.execute("SELECT 1")
            objs = []
            for p in payloads:
                m = json.loads(p)
                objs += m if isinstance(m, list) else [m]
            self.assertGreaterEqual(len(objs), 7, payloads)
            for p in payloads:
                for k in keys:
                    self.assertNotIn(k, p, "a key went out in clear")
                self.assertNotIn("alice", p)
            self.assertTrue(all("key" not in o and len(o.get("key_hash", "x" * 32)) == 32
                                and len(o.get("mac", "")) == 32 for o in objs), objs)

    def test_forged_messages_are_ignored(self):
        app_ci, plain_ci = self.roles()
        a = NearCache(app_ci, on_invalidate=Recorder())
        self.addCleanup(a.close)
        a.recorder = a._on_invalidate
        a.recorder.client = a
        self.assertTrue(a.wait_online(10))
        k, marker = ukey(), ukey()
        with admin() as c:
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 1}')", (k,))
        self.assertEqual(a.get("sessions", k), {"v": 1})
        self.assertTrue(a.cached("sessions", k))
        rejected = a.stats().get("rejected", 0)
        kh = a.key_hash("sessions", k)      # even knowing the hash does not help
        forged = [
            {"op": "flush"},
            {"cache": "sessions", "op": "flush"},
            {"cache": "sessions", "key": k, "op": "delete", "version": 1 << 62},
            {"cache": "sessions", "key_hash": kh, "op": "delete", "version": 1 << 62,
             "mac": "0" * 32},
            [{"cache": "sessions", "key_hash": kh, "op": "put", "version": 1 << 62}],
        ]
        with psycopg.connect(plain_ci, autocommit=True) as spy:
            for f in forged:
                spy.execute("SELECT pg_notify('sessioncache_invalidate', %s)", (json.dumps(f),))
            spy.execute("SELECT pg_notify('sessioncache_invalidate', 'not json')")
        # a genuine change committed after the forgeries arrives after them
        with admin() as c:
            c.execute("SELECT sessioncache.put('sessions', %s, '{}')", (marker,))
        self.assertTrue(poll(lambda: a.recorder.saw("sessions", marker, "put"), bound=10))
        self.assertTrue(a.cached("sessions", k), "a forged message dropped an entry")
        self.assertGreaterEqual(a.stats().get("rejected", 0), rejected + 5)
        # and genuine invalidations still work, exactly
        k2 = ukey()
        with admin() as c:
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 1}')", (k2,))
        self.assertEqual(a.get("sessions", k2), {"v": 1})
        with psycopg.connect(app_ci, autocommit=True) as app:
            app.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 2}')", (k,))
        self.assertTrue(poll(lambda: not a.cached("sessions", k)), "genuine put did not invalidate")
        self.assertTrue(a.cached("sessions", k2), "an unrelated key was dropped")
        self.assertEqual(a.get("sessions", k), {"v": 2})

    def test_new_secret_is_fetched_once(self):
        app_ci, _ = self.roles()
        a = NearCache(app_ci, on_invalidate=Recorder())
        self.addCleanup(a.close)
        a.recorder = a._on_invalidate
        a.recorder.client = a
        self.assertTrue(a.wait_online(10))
        k = ukey()
        with admin() as c:
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 1}')", (k,))
        self.assertEqual(a.get("sessions", k), {"v": 1})
        fetches = a.stats().get("secret_fetches", 0)
        with admin() as c:      # what a restore or a re-created extension does
            c.execute("UPDATE sessioncache.channel_key SET secret = "
                      "decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')")
            c.execute("SELECT sessioncache.put('sessions', %s, '{\"v\": 2}')", (k,))
        self.assertTrue(poll(lambda: not a.cached("sessions", k), bound=10),
                        "the put signed with the new secret did not invalidate")
        self.assertEqual(a.stats().get("secret_fetches", 0), fetches + 1)
        self.assertEqual(a.get("sessions", k), {"v": 2})
        self.assertTrue(a.cached("sessions", k))
        k3 = ukey()
        with admin() as c:
            c.execute("SELECT sessioncache.put('sessions', %s, '{}')", (k3,))
            c.execute("SELECT sessioncache.delete('sessions', %s)", (k,))
        self.assertTrue(poll(lambda: not a.cached("sessions", k)), "delete did not invalidate")
        self.assertEqual(a.stats().get("secret_fetches", 0), fetches + 1)

    def test_backoff_schedule(self):
        rng = random.Random(1)
        d = backoff_delays(0.1, 5.0, rng=rng)
        nominal = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
        for n in nominal:
            x = next(d)
            self.assertTrue(n * 0.5 <= x <= n, (x, n))


class MembershipTest(unittest.TestCase):

    def test_join_view_coordinator_leave(self):
        cluster = ukey("cluster")
        nc = NearCache(SERVER["conninfo"], listen_membership=True)
        self.addCleanup(nc.close)
        self.assertTrue(nc.wait_online(10))
        m1 = Membership(SERVER["conninfo"], cluster, "node1", lease=30)
        m2 = Membership(SERVER["conninfo"], cluster, "node2", lease=30)
        nc.add_membership_listener(m1.notify)
        nc.add_membership_listener(m2.notify)
        m1.start()
        self.addCleanup(m1.leave)
        self.assertTrue(m1.is_coordinator)
        first_view = m1.view_id
        m2.start()
        self.addCleanup(m2.leave)
        self.assertFalse(m2.is_coordinator)
        self.assertGreater(m2.view_id, first_view)
        # m1 learns of the new view through the notification, not a heartbeat
        self.assertTrue(poll(lambda: m1.view_id == m2.view_id))
        self.assertEqual([m["node"] for m in m1.members], ["node1", "node2"])
        m1.leave()
        self.assertTrue(poll(lambda: m2.is_coordinator and len(m2.members) == 1),
                        "the remaining member did not become coordinator")

    def test_lapsed_lease_rejoins(self):
        cluster = ukey("cluster")
        m = Membership(SERVER["conninfo"], cluster, "node1", lease=30, heartbeat_interval=0.05)
        m.start()
        self.addCleanup(m.leave)
        old = m.member_id
        with admin() as c:      # make the lease lapse behind the member's back
            # (a tiny lease also ends the grace period after the server's start)
            c.execute("UPDATE sessioncache.cluster_members SET lease_expires_at = "
                      "now() - interval '1 hour', lease = interval '1 microsecond' "
                      "WHERE member_id = %s", (old,))
        self.assertTrue(poll(lambda: m.member_id not in (None, old), bound=5),
                        "the member did not join again after its lease lapsed")
        self.assertTrue(poll(lambda: m.is_coordinator))


def main():
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        print("run as root (or postgres)", file=sys.stderr)
        return 2
    # the client logs each lost connection at WARNING; the tests cause several
    logging.getLogger("sessioncache_client").setLevel(
        logging.DEBUG if "-v" in sys.argv else logging.CRITICAL)
    ok = False
    try:
        start_server()
        argv = [sys.argv[0]] + sys.argv[1:]
        prog = unittest.main(module=__name__, argv=argv, exit=False, verbosity=1)
        r = prog.result
        ok = r.wasSuccessful()
        print(f"near-cache client tests: {r.testsRun} run, {len(r.failures)} failed, "
              f"{len(r.errors)} errors, {len(r.skipped)} skipped: {'OK' if ok else 'FAILED'}")
        if not ok:
            print("---- server log (tail) ----\n" + server_log_tail())
    except subprocess.CalledProcessError as e:
        print(f"server setup failed: {e}\n{e.stdout}\n{e.stderr}\n{server_log_tail()}",
              file=sys.stderr)
    finally:
        stop_server()
        if SERVER.get("dir"):
            shutil.rmtree(SERVER["dir"], ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))   # still runs the cleanup
    sys.exit(main())
