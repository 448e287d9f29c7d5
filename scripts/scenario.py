#!/usr/bin/python3
"""The rolling-restart scenario: roll the whole auth cluster to new nodes,
restart and fail over the database, and log no one out.

    /usr/bin/python3 scripts/scenario.py --dir DIR [--quick] [--keep-data]
        [--java CLASSPATH]
        [--sessions N] [--offline N] [--users N] [--lease SECONDS] [--threads N]

Run as an unprivileged user (scripts/demo.sh runs it as postgres).  It sets
up its own PostgreSQL 15 primary in DIR/primary (initdb, a free port, the
Unix socket in DIR, sessioncache preloaded), then:

  1. three app nodes (processes using the reference near-cache client,
     client/sessioncache_client: NearCache + Membership) join cluster
     "auth" and create the sessions and offline sessions; each keeps
     refreshing its share (get(..., touch=True)), reads a hot set of keys
     through its near cache and now and then patches one of its hot keys;
  2. three new nodes join, then the three old ones are killed with SIGKILL
     (no leave); the reaper must remove them within lease + expiry_interval
     (plus a margin), after which the new nodes take over the writes;
  3. the database is restarted cleanly (pg_ctl restart -m fast), then
     stopped immediately (a crash) and started again;
  4. a streaming standby is built with pg_basebackup -R, started, made a
     synchronous standby, the primary is stopped immediately and the
     standby promoted; the nodes reach it through their multi-host conninfo
     (target_session_attrs=read-write).

After every phase (with the nodes paused so that nothing moves while it
looks) it checks through the SQL API that every session and offline
session is readable with its value (identity fields, the last committed
patch), that none expired early and every idle timer reflects the nodes'
touches (write-behind may lose the touches of the last flush_interval
before a crash, no more), that each user's entries are all listed, that the
view lists exactly the live nodes with one coordinator (the longest-standing
node), its view id higher after a change of members and unchanged after a
restart, crash or failover, that every live node agrees, and that no live
node's near cache holds a value the server no longer has.

With --java CLASSPATH the app nodes are Java processes using the Java client
(client/java: NearCache + Membership over pgjdbc, the demo node
org.sessioncache.demo.ScenarioNode) instead of Python ones; they speak JSON
lines on stdin/stdout, reach the servers over loopback TCP (a multi-host
JDBC URL with targetServerType=primary for the new nodes) and keep their
bookkeeping in a file both sides map.  Every check is the same.

The node processes keep their bookkeeping (touch times, patch revisions,
counters) in shared memory owned by this process, so it survives their
SIGKILL.  Every server started here is stopped at the end (by its pid if
pg_ctl fails), also on error or interrupt, and its data directory removed
(unless --keep-data; the logs stay in DIR).  Prints a table of the phases
with a legend of its columns; the exit status is 0 only when every check
passed.
"""

import argparse
import ctypes
import json
import mmap
import queue
import logging
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "client"))

import psycopg  # noqa: E402
from sessioncache_client import NearCache, Membership  # noqa: E402

CLUSTER = "auth"
CACHES = ("sessions", "offline_sessions")
# counters each node keeps in shared memory (they survive a SIGKILL)
COUNTERS = ("steps", "touches", "errors", "nulls", "bad", "hot_reads",
            "patches", "patch_errors")
C = {name: i for i, name in enumerate(COUNTERS)}
TOUCH_RING = 3          # the last touches remembered per key
RESTART_SLACK = 0.1     # s: a touch racing a clean shutdown may be lost
CRASH_SLACK = 1.0       # s: on top of flush_interval after a crash (a busy machine
                        # may run the writeback worker late)

LEGEND = """
columns:
  sessions, offline  entries read back with their value / entries created (all must be there)
  lost               entries that are gone
  expired early      entries whose expires_at is earlier than their cache's idle_timeout
                     allows, counted from the last touch the server must have kept
  wrong              value, user, last committed patch or created_at not what the nodes wrote
  timers off         idle timers (last_access) older than the last touch the server must
                     have kept, or in the future.  Touches are written behind, every
                     flush_interval (%(flush)g s here): a crash or failover may lose those of
                     the last flush_interval + %(crash)g s (the margin covers a writeback round
                     running late on a busy machine), a clean restart those of the last
                     %(restart)g s.  Such a loss only makes a timer look older; it is listed in
                     the "touches ... lost (allowed)" lines below, not counted here.
  stale              copies in the live nodes' near caches that differ from the server
                     once the invalidations have arrived
  logouts            reads by the nodes that returned nothing for a live session
  view id            the cluster's view id: (up) rose with the change of members, (same)
                     unchanged
  coordinator        the node that coordinates the view
lost, expired early, wrong, timers off, stale and logouts must all be 0."""


# ----------------------------------------------------------------------
# the data set: slot numbers, keys and values (computed the same way by
# every process)

class DataSet:
    def __init__(self, sessions, offline, users, hot):
        self.sessions = sessions
        self.offline = offline
        self.users = users
        self.n = sessions + offline
        self.hot = hot
        self.uwidth = max(4, len(str(users)))

    def cache(self, slot):
        return "sessions" if slot < self.sessions else "offline_sessions"

    def key(self, slot):
        if slot < self.sessions:
            return "sess-%06d" % (slot + 1)
        return "off-%06d" % (slot - self.sessions + 1)

    def user(self, slot):
        j = slot if slot < self.sessions else slot - self.sessions
        return "user-%0*d" % (self.uwidth, j % self.users + 1)

    def value(self, slot):
        """The value a slot is created with (patches change only "rev")."""
        if slot < self.sessions:
            return {"user": self.user(slot), "sid": self.key(slot), "realm": "demo",
                    "ip": "10.0.%d.%d" % (slot // 250 % 250, slot % 250 + 1), "rev": 0}
        j = slot - self.sessions
        return {"user": self.user(slot), "token": "tok-%06d" % (j + 1),
                "client": "account-console", "scope": "openid offline_access", "rev": 0}

    def same_identity(self, slot, value):
        if not isinstance(value, dict):
            return False
        want = self.value(slot)
        return (set(value) == set(want)
                and all(value[f] == want[f] for f in want if f != "rev"))

    def is_hot(self, slot):
        return slot < self.hot or self.sessions <= slot < self.sessions + self.hot

    def hot_slots(self):
        return list(range(self.hot)) + list(range(self.sessions, self.sessions + self.hot))

    def slots_of(self, share, shares):
        return [s for s in range(self.n) if s % shares == share]


# ----------------------------------------------------------------------
# an app node (a child process)

class AppNode:
    """One auth-server node (run in a child process): a NearCache and a
    Membership of the reference client.  A few request threads (an auth
    server serves requests concurrently) each refresh a part of the node's
    share of the keys with get(..., touch=True), read the hot keys through
    the near cache and, when told to, patch their own hot keys (one writer
    per key).  Commands from the scenario come over a pipe."""

    def __init__(self, name, share, shares, conninfo, cfg, shared, cmd):
        self.name, self.cmd = name, cmd
        self.ds = ds = DataSet(cfg["sessions"], cfg["offline"], cfg["users"], cfg["hot"])
        (self.touch_ring, self.rev_attempt, self.rev_done, self.created_t0,
         self.counters) = shared
        self.base = cfg["node_index"] * len(COUNTERS)
        self.own = ds.slots_of(share, shares)
        random.Random(share).shuffle(self.own)
        self.hot = ds.hot_slots()
        self.threads = min(cfg["threads"], len(self.own))
        self.count_lock = threading.Lock()
        self.running = threading.Event()
        self.writes = False
        self.nc = NearCache(conninfo, max_entries=ds.n + 1000, caches=list(CACHES),
                            pool_size=4, listen_membership=True,
                            backoff_initial=0.05, backoff_max=0.5, ping_interval=2.0)
        self.m = Membership(conninfo, CLUSTER, name,
                            address="10.0.1.%d:7800" % (cfg["node_index"] + 1),
                            lease=cfg["lease"], heartbeat_interval=cfg["heartbeat"],
                            meta={"pid": os.getpid()}, backoff_initial=0.05,
                            backoff_max=0.5)
        self.nc.add_membership_listener(self.m.notify)

    def count(self, what, n=1):
        with self.count_lock:
            self.counters[self.base + C[what]] += n

    def check_read(self, what, slot, v):
        if v is None:
            self.count("nulls")
            logging.error("%s: %s %s is NULL", what, self.ds.cache(slot), self.ds.key(slot))
        elif not self.ds.same_identity(slot, v):
            self.count("bad")
            logging.error("%s: %s %s has a wrong value %r", what, self.ds.cache(slot),
                          self.ds.key(slot), v)
        else:
            return True
        return False

    def touch(self, slot):
        t0 = time.time()        # the server's last_access is no earlier
        v = self.nc.get(self.ds.cache(slot), self.ds.key(slot), touch=True)
        if self.check_read("touch", slot, v):
            i = slot * TOUCH_RING
            for k in range(TOUCH_RING - 1, 0, -1):
                self.touch_ring[i + k] = self.touch_ring[i + k - 1]
            self.touch_ring[i] = t0
            self.count("touches")

    def hot_read(self, rng):
        slot = self.hot[rng.randrange(len(self.hot))]
        self.check_read("read", slot, self.nc.get(self.ds.cache(slot), self.ds.key(slot)))
        self.count("hot_reads")

    def patch(self, slot):
        r = max(self.rev_attempt[slot], self.rev_done[slot]) + 1
        self.rev_attempt[slot] = r      # before the call: it may commit and we die
        try:
            v = self.nc.patch(self.ds.cache(slot), self.ds.key(slot), {"rev": r})
        except psycopg.Error:
            self.count("patch_errors")
            raise
        if self.check_read("patch", slot, v):
            self.rev_done[slot] = r
            self.count("patches")

    def create(self, threads):
        """Create the node's share with put() from several threads."""
        ds = self.ds
        errors = []
        lock = threading.Lock()
        it = iter(self.own)

        def work():
            while True:
                with lock:
                    slot = next(it, None)
                if slot is None:
                    return
                self.created_t0[slot] = time.time()     # created_at is no earlier
                for attempt in range(50):
                    try:
                        self.nc.put(ds.cache(slot), ds.key(slot), ds.value(slot),
                                    user_id=ds.user(slot))
                        break
                    except psycopg.Error as exc:
                        self.count("errors")
                        if attempt == 49:
                            with lock:
                                errors.append("%s: %s" % (ds.key(slot), exc))
                        time.sleep(0.1)
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return errors

    def dump(self):
        """The locally held copies, read from the near cache only (a read
        that went to the server does not count)."""
        out = []
        for slot in range(self.ds.n):
            cache, key = self.ds.cache(slot), self.ds.key(slot)
            if not self.nc.cached(cache, key):
                continue
            hits = self.nc.stats().get("hits", 0)
            ent = self.nc.get_entry(cache, key)
            if self.nc.stats().get("hits", 0) == hits + 1 and ent is not None:
                out.append((cache, key, ent[0], ent[1]))
        return out

    def state(self):
        members = self.m.members
        return {"online": self.nc.online, "member_id": self.m.member_id,
                "view_id": self.m.view_id, "is_coordinator": self.m.is_coordinator,
                "members": sorted(x["node"] for x in members),
                "stats": self.nc.stats(), "held": len(self.nc)}

    def work(self, part, busy):
        """A request thread: refresh `part`, read hot keys, patch the hot
        keys of `part`.  Holds `busy` during each step (see pause)."""
        rng = random.Random()
        part_hot = [s for s in part if self.ds.is_hot(s)]
        pos = step = 0
        while True:
            self.running.wait()
            with busy:
                if not self.running.is_set():
                    continue
                step += 1
                self.count("steps")
                try:
                    self.touch(part[pos])
                    pos = (pos + 1) % len(part)
                    self.hot_read(rng)
                    if self.writes and part_hot and step % 10 == 0:
                        self.patch(part_hot[rng.randrange(len(part_hot))])
                except psycopg.Error as exc:
                    # the database is down or failing over: retry
                    self.count("errors")
                    logging.info("step failed (retrying): %s", exc)
                    time.sleep(0.05)

    def run(self):
        parent = os.getppid()
        self.m.start()
        self.nc.wait_online(30)
        self.cmd.send(("ready", self.m.member_id, self.m.view_id))
        busy = []
        for t in range(self.threads):
            busy.append(threading.Lock())
            threading.Thread(target=self.work, args=(self.own[t::self.threads], busy[-1]),
                             name="request-%d" % t, daemon=True).start()
        while True:
            if os.getppid() != parent:
                os._exit(1)
            if not self.cmd.poll(0.2):
                continue
            msg = self.cmd.recv()
            what = msg[0]
            if what in ("pause", "stop"):
                # no step in flight once every thread's lock was free
                self.running.clear()
                for b in busy:
                    with b:
                        pass
            if what == "stop":
                self.m.leave()
                self.nc.close()
                self.cmd.send(("stopped",))
                os._exit(0)
            elif what == "pause":
                reply = ("paused",)
            elif what == "resume":
                self.running.set()
                reply = ("resumed",)
            elif what == "writes":
                self.writes = msg[1]
                reply = ("writes", self.writes)
            elif what == "create":
                reply = ("created", len(self.own), self.create(msg[1]))
            elif what == "state":
                reply = ("state", self.state())
            elif what == "dump":
                reply = ("dump", self.dump(), self.state())
            else:
                reply = ("unknown", what)
            self.cmd.send(reply)


def node_main(name, share, shares, conninfo, cfg, shared, cmd):
    """Entry point of a node process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(filename=os.path.join(cfg["logdir"], name + ".log"),
                        level=logging.INFO,
                        format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    try:
        AppNode(name, share, shares, conninfo, cfg, shared, cmd).run()
    except Exception:
        logging.exception("node failed")
        os._exit(2)


# ----------------------------------------------------------------------
# servers

class ScenarioError(Exception):
    pass


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, **kw)
    if r.returncode != 0:
        raise ScenarioError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stdout))
    return r.stdout


def free_port(sockdir, avoid):
    rng = random.Random()
    for _ in range(1000):
        p = rng.randrange(20000, 60000)
        if p in avoid or os.path.exists(os.path.join(sockdir, ".s.PGSQL.%d" % p)):
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        return p
    raise ScenarioError("no free port")


class Server:
    """A PostgreSQL server in a data directory, run with pg_ctl."""
    started = []            # every server started by this process

    def __init__(self, bindir, name, datadir, port, sockdir, logfile):
        self.bindir, self.name, self.datadir = bindir, name, datadir
        self.port, self.sockdir, self.logfile = port, sockdir, logfile
        self.pids = set()

    def pg_ctl(self, *args):
        return run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w",
                    "-t", "180"] + list(args))

    def _note_pid(self):
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            self.pids.add(int(f.readline()))
        if self not in Server.started:
            Server.started.append(self)

    def start(self):
        self.pg_ctl_detached("-l", self.logfile, "start")
        self._note_pid()

    def pg_ctl_detached(self, *args):
        # in a session of its own: a ^C at the terminal reaches this script
        # (which stops the servers), not the postmaster
        return run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w",
                    "-t", "180"] + list(args), start_new_session=True)

    def stop(self, mode="fast"):
        self.pg_ctl("-m", mode, "stop")

    def restart(self):
        self.pg_ctl_detached("-m", "fast", "-l", self.logfile, "restart")
        self._note_pid()

    def promote(self):
        self.pg_ctl_detached("promote")

    def conninfo(self):
        return "host=%s port=%d dbname=postgres user=postgres" % (self.sockdir, self.port)

    def connect(self):
        return psycopg.connect(self.conninfo(), autocommit=True)

    def cleanup(self):
        """Stop the server if one we started still runs here."""
        pidfile = os.path.join(self.datadir, "postmaster.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return
        if pid not in self.pids:
            return
        try:
            self.pg_ctl("-m", "fast", "stop")
        except ScenarioError:
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass


def server_conf(port, sockdir, memory, tcp=False):
    return "\n".join([
        "# scenario.py",
        "port = %d" % port,
        "listen_addresses = '%s'" % ("127.0.0.1" if tcp else ""),
        "unix_socket_directories = '%s'" % sockdir,
        "shared_preload_libraries = 'sessioncache'",
        "sessioncache.database = 'postgres'",
        "sessioncache.memory = %s" % memory,
        "sessioncache.flush_interval = 1s",
        "sessioncache.expiry_interval = 1s",
        "wal_level = replica",
        "max_wal_senders = 4",
        "max_replication_slots = 4",
        "hot_standby = on",
        "max_connections = 100",
        "shared_buffers = 128MB",
        "log_line_prefix = '%m [%p] '",
        ""])


# ----------------------------------------------------------------------
# the scenario

class Node:
    def __init__(self, ctx, name, share, shares, index, conninfo, cfg, shared):
        self.name, self.share, self.index = name, share, index
        self.pipe, child = ctx.Pipe()
        c = dict(cfg, node_index=index)
        self.proc = ctx.Process(target=node_main, name=name,
                                args=(name, share, shares, conninfo, c, shared, child),
                                daemon=True)
        self.proc.start()
        child.close()
        self.member_id = None
        self.alive = True

    def call(self, *msg, timeout=120):
        self.pipe.send(msg)
        if not self.pipe.poll(timeout):
            raise ScenarioError("node %s does not answer %s" % (self.name, msg[0]))
        return self.pipe.recv()

    def wait_ready(self, timeout=60):
        if not self.pipe.poll(timeout):
            raise ScenarioError("node %s did not start" % self.name)
        r = self.pipe.recv()
        self.member_id = r[1]

    def kill(self):
        if self.proc.pid is not None and self.proc.exitcode is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)
        self.alive = False


class _JsonLines:
    """The pipe of a Java node: JSON arrays, one a line, on its stdin/stdout
    (send, poll and recv as a multiprocessing connection offers them)."""

    def __init__(self, popen):
        self.popen = popen
        self.q = queue.Queue()
        self.head = None
        t = threading.Thread(target=self._read, daemon=True)
        t.start()

    def _read(self):
        for line in self.popen.stdout:
            try:
                self.q.put(tuple(json.loads(line)))
            except ValueError:
                logging.warning("node said: %r", line)
        self.q.put(None)        # EOF: the node is gone

    def send(self, msg):
        try:
            self.popen.stdin.write((json.dumps(list(msg)) + "\n").encode())
            self.popen.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise OSError("node is gone") from exc

    def poll(self, timeout=0):
        if self.head is None:
            try:
                self.head = self.q.get(timeout=timeout) if timeout else self.q.get_nowait()
            except queue.Empty:
                return False
        return self.head is not None

    def recv(self):
        if not self.poll(None):
            raise EOFError("node is gone")
        r, self.head = self.head, None
        return r


class _JavaProc:
    def __init__(self, popen):
        self.popen = popen
        self.pid = popen.pid

    @property
    def exitcode(self):
        return self.popen.poll()

    def join(self, timeout=None):
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


class JavaNode(Node):
    """An app node in Java (org.sessioncache.demo.ScenarioNode): the same
    commands and replies as Node, over JSON lines."""

    def __init__(self, classpath, name, share, shares, index, url, cfg, shared_file, offsets):
        self.name, self.share, self.index = name, share, index
        args = dict(cfg, node_index=index, name=name, share=share, shares=shares, url=url,
                    shared=shared_file, offsets=offsets)
        log = open(os.path.join(cfg["logdir"], name + ".log"), "ab")
        popen = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:+UseSerialGC", "-cp", classpath,
             "org.sessioncache.demo.ScenarioNode", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()
        self.proc = _JavaProc(popen)
        self.pipe = _JsonLines(popen)
        self.member_id = None
        self.alive = True


class Phase:
    def __init__(self, title):
        self.title = title
        self.started = time.monotonic()
        self.failures = []
        self.row = {}
        self.notes = []

    def fail(self, what):
        self.failures.append(what)

    @property
    def ok(self):
        return not self.failures


class Scenario:
    def __init__(self, args):
        self.args = args
        self.dir = os.path.abspath(args.dir)
        self.ds = DataSet(args.sessions, args.offline, args.users,
                          hot=max(1, min(1000, min(args.sessions, args.offline) // 10)))
        self.lease = args.lease
        self.heartbeat = max(0.2, args.lease / 3.0)
        self.flush = 1.0
        self.expiry = 1.0
        self.keep_data = getattr(args, "keep_data", False)
        self.bindir = run(["pg_config", "--bindir"]).strip()
        self.ctx = multiprocessing.get_context("spawn")
        n = self.ds.n
        self.max_nodes = 6
        self.java = args.java
        if self.java:
            # Java nodes map the same file (native byte order, 8-byte slots)
            os.makedirs(self.dir, exist_ok=True)
            self.shared_file = os.path.join(self.dir, "java-nodes.bin")
            layout = [("touch_ring", ctypes.c_double, n * TOUCH_RING),
                      ("rev_attempt", ctypes.c_longlong, n), ("rev_done", ctypes.c_longlong, n),
                      ("created_t0", ctypes.c_double, n),
                      ("counters", ctypes.c_longlong, self.max_nodes * len(COUNTERS))]
            total = 8 * sum(k for _, _, k in layout)
            with open(self.shared_file, "w+b") as f:
                f.truncate(total)
                self.mm = mmap.mmap(f.fileno(), total)
            self.offsets = {}
            off = 0
            for name, ctype, k in layout:
                setattr(self, name, (ctype * k).from_buffer(self.mm, off))
                self.offsets[name] = off
                off += 8 * k
        else:
            self.touch_ring = multiprocessing.RawArray(ctypes.c_double, n * TOUCH_RING)
            self.rev_attempt = multiprocessing.RawArray(ctypes.c_longlong, n)
            self.rev_done = multiprocessing.RawArray(ctypes.c_longlong, n)
            self.created_t0 = multiprocessing.RawArray(ctypes.c_double, n)
            self.counters = multiprocessing.RawArray(ctypes.c_longlong,
                                                     self.max_nodes * len(COUNTERS))
        self.nodes = []
        self.phases = []
        self.primary = None
        self.standby = None
        self.current = None          # the server the nodes should be using
        # (from, to, (window, what)): touches made in (from, to) may be lost: the
        # last `window` seconds before the server stopped, and while it was down
        self.disruptions = []
        self.checked_disruptions = 0
        self.created_at = {}         # slot -> created_at seen by the first check
        self.view_id = None
        self.last_counters = [0] * len(COUNTERS)
        self.cache_defs = {}
        self.sized = False

    # -- helpers -----------------------------------------------------------

    def shared(self):
        return (self.touch_ring, self.rev_attempt, self.rev_done, self.created_t0, self.counters)

    def cfg(self):
        return {"sessions": self.ds.sessions, "offline": self.ds.offline,
                "users": self.ds.users, "hot": self.ds.hot, "lease": self.lease,
                "threads": self.args.threads,
                "heartbeat": self.heartbeat, "logdir": self.logdir}

    def say(self, msg):
        print("  .. " + msg, flush=True)

    def live(self):
        return [n for n in self.nodes if n.alive]

    def start_node(self, name, share, conninfo):
        if self.java:
            url = self.jdbc_old if conninfo == self.conninfo_old else self.jdbc_new
            node = JavaNode(self.java, name, share, 3, len(self.nodes), url, self.cfg(),
                            self.shared_file, self.offsets)
        else:
            node = Node(self.ctx, name, share, 3, len(self.nodes), conninfo, self.cfg(),
                        self.shared())
        self.nodes.append(node)
        node.wait_ready()
        return node

    def counter_totals(self):
        tot = [0] * len(COUNTERS)
        for i in range(self.max_nodes):
            for j in range(len(COUNTERS)):
                tot[j] += self.counters[i * len(COUNTERS) + j]
        return tot

    def poll(self, what, fn, timeout, interval=0.2):
        """Call fn() until it returns a true value; None after timeout."""
        end = time.monotonic() + timeout
        while True:
            r = fn()
            if r:
                return r
            if time.monotonic() >= end:
                return None
            time.sleep(interval)

    def wait_progress(self, nodes, steps, timeout=120):
        """Wait until each node is online and has touched `steps` more keys."""
        start = {n.name: None for n in nodes}

        def done():
            ok = True
            for n in nodes:
                st = n.call("state")[1]
                t = self.counters[n.index * len(COUNTERS) + C["touches"]]
                if start[n.name] is None:
                    start[n.name] = t
                if not st["online"] or t - start[n.name] < steps:
                    ok = False
            return ok
        if not self.poll("progress", done, timeout, 0.1):
            raise ScenarioError("nodes made no progress within %d s" % timeout)

    # -- setup ---------------------------------------------------------------

    def setup(self):
        os.makedirs(self.dir, exist_ok=True)
        self.logdir = os.path.join(self.dir, "nodes")
        for sub in ("primary", "standby"):
            d = os.path.join(self.dir, sub)
            if os.path.exists(os.path.join(d, "postmaster.pid")):
                # left running by an interrupted earlier run
                subprocess.run([os.path.join(self.bindir, "pg_ctl"), "-D", d, "-m",
                                "immediate", "stop"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(self.logdir, ignore_errors=True)
        os.makedirs(self.logdir)
        if len(os.path.join(self.dir, ".s.PGSQL.65535")) > 100:
            raise ScenarioError("--dir %s: too long a path for a Unix socket" % self.dir)
        p1 = free_port(self.dir, set())
        p2 = free_port(self.dir, {p1})
        pdir = os.path.join(self.dir, "primary")
        run([os.path.join(self.bindir, "initdb"), "-D", pdir, "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--locale=C"])
        mem = "256MB" if self.ds.n > 20000 else "64MB"
        with open(os.path.join(pdir, "postgresql.conf"), "a") as f:
            f.write(server_conf(p1, self.dir, mem, tcp=bool(self.java)))
        self.primary = Server(self.bindir, "primary", pdir, p1, self.dir,
                              os.path.join(self.dir, "primary.log"))
        self.standby = Server(self.bindir, "standby", os.path.join(self.dir, "standby"), p2,
                              self.dir, os.path.join(self.dir, "standby.log"))
        self.primary.start()
        self.current = self.primary
        with self.primary.connect() as conn:
            conn.execute("CREATE EXTENSION sessioncache")
            for name, idle, life in conn.execute(
                    "SELECT name, extract(epoch FROM idle_timeout)::float8,"
                    " extract(epoch FROM max_lifespan)::float8 FROM sessioncache.caches"):
                self.cache_defs[name] = (idle if idle is not None else float("inf"),
                                         life if life is not None else float("inf"))
        # the first nodes know only the primary; the new ones also the
        # standby's address (libpq tries both, keeps the one that accepts writes)
        self.conninfo_old = self.primary.conninfo()
        self.conninfo_new = ("host=%s,%s port=%d,%d dbname=postgres user=postgres "
                             "target_session_attrs=read-write connect_timeout=5"
                             % (self.dir, self.dir, p1, p2))
        # the Java nodes: pgjdbc over loopback TCP, the same two ways
        self.jdbc_old = "jdbc:postgresql://127.0.0.1:%d/postgres?user=postgres" % p1
        self.jdbc_new = ("jdbc:postgresql://127.0.0.1:%d,127.0.0.1:%d/postgres?user=postgres"
                         "&targetServerType=primary&connectTimeout=5" % (p1, p2))

    # -- the checks ------------------------------------------------------------

    def safe_touch_bound(self, slot):
        """The latest touch (or the creation) of slot that the server must
        reflect: touches this close before a crash may be lost."""
        lb = self.created_t0[slot]
        for k in range(TOUCH_RING):
            t = self.touch_ring[slot * TOUCH_RING + k]
            if t > lb and all(not (lo < t < hi) for lo, hi, _ in self.disruptions):
                lb = t
        return lb

    def check(self, phase, live_names, expect_coordinator, view_rule):
        """Everything "after every phase" says; failures go to phase."""
        nodes = [n for n in self.live() if n.name in live_names]
        # 1. the nodes work against the server (after a restart: reconnected)
        self.wait_progress(nodes, steps=20)

        # 2. the data, with the nodes paused: first, before the nodes touch
        #    again the keys they touched just before a crash
        for n in nodes:
            n.call("pause")
        try:
            self.check_entries(phase)
            self.check_near_caches(phase, nodes)
        finally:
            for n in nodes:
                n.call("resume")
        # 3. membership: heartbeats resumed (after a restart every lease got
        #    one more lease period: wait until that has run out, so that a node
        #    that does not heartbeat would have been reaped), the view is the
        #    live nodes, every node agrees
        conn = self.current.connect()
        try:
            epoch = conn.execute(
                "SELECT extract(epoch FROM sessioncache._lease_epoch())::float8").fetchone()[0]
            wait_until = epoch + self.lease + 2 * self.expiry + 0.5

            def beat():
                rows = conn.execute(
                    "SELECT node FROM sessioncache.cluster_members WHERE cluster = %s"
                    " AND lease_expires_at > sessioncache._lease_epoch() + lease",
                    (CLUSTER,)).fetchall()
                return set(live_names) <= {r[0] for r in rows}
            if not self.poll("heartbeats", beat, 30):
                phase.fail("the live nodes' heartbeats did not resume")
            self.poll("lease epoch", lambda: time.time() >= wait_until, 60)

            def view_settled():
                rows = conn.execute(
                    "SELECT view_id, node, is_coordinator FROM sessioncache.view(%s)",
                    (CLUSTER,)).fetchall()
                if sorted(r[1] for r in rows) != sorted(live_names):
                    return None
                vid = rows[0][0]
                states = [n.call("state")[1] for n in nodes]
                if any(s["view_id"] != vid or s["members"] != sorted(live_names)
                       for s in states):
                    return None
                return rows, states
            r = self.poll("view", view_settled, 20)
            rows = conn.execute(
                "SELECT view_id, node, is_coordinator FROM sessioncache.view(%s)",
                (CLUSTER,)).fetchall()
            vid = rows[0][0] if rows else None
            coords = [r[1] for r in rows if r[2]]
            if r is None:
                phase.fail("view %s lists %s, the live nodes are %s (or the nodes disagree)"
                           % (vid, sorted(x[1] for x in rows), sorted(live_names)))
            else:
                states = r[1]
                node_coords = [n.name for n, s in zip(nodes, states) if s["is_coordinator"]]
                if node_coords != [expect_coordinator]:
                    phase.fail("nodes that think they coordinate: %s, expected %s"
                               % (node_coords, expect_coordinator))
            if coords != [expect_coordinator]:
                phase.fail("coordinator(s) %s, expected %s" % (coords, expect_coordinator))
            mcoords = conn.execute(
                "SELECT count(*) FILTER (WHERE is_coordinator), count(DISTINCT view_id)"
                " FROM sessioncache.members WHERE cluster = %s", (CLUSTER,)).fetchone()
            if tuple(mcoords) != (1, 1):
                phase.fail("sessioncache.members: %d coordinators, %d view ids" % tuple(mcoords))
            prev = self.view_id
            if view_rule == "higher" and not (vid is not None and (prev is None or vid > prev)):
                phase.fail("view id %s is not higher than %s" % (vid, prev))
            if view_rule == "same" and vid != prev:
                phase.fail("view id %s changed (was %s)" % (vid, prev))
            phase.row["view"] = "%s%s" % (vid, {"higher": " (up)" if prev else "",
                                                "same": " (same)"}[view_rule])
            phase.row["coordinator"] = ",".join(coords) or "-"
            self.view_id = vid
        finally:
            conn.close()

        tot = self.counter_totals()
        delta = [a - b for a, b in zip(tot, self.last_counters)]
        self.last_counters = tot
        phase.row["logouts"] = delta[C["nulls"]]
        phase.row["touches"] = delta[C["touches"]]
        if delta[C["nulls"]]:
            phase.fail("the nodes read NULL for a live session %d times (see %s)"
                       % (delta[C["nulls"]], self.logdir))
        if delta[C["bad"]]:
            phase.fail("the nodes read a wrong value %d times" % delta[C["bad"]])

    def check_entries(self, phase):
        ds = self.ds
        lost = wrong = early = timers = 0
        # the touches a crash of this phase may have lost: how many there
        # were, how many were lost (shows that the idle-timer check bites)
        recent = self.disruptions[self.checked_disruptions:]
        self.checked_disruptions = len(self.disruptions)
        at_risk = risk_lost = 0
        oldest_lost = None
        alive = {c: 0 for c in CACHES}
        examples = []
        conn = self.current.connect()
        try:
            for cache in CACHES:
                slots = [s for s in range(ds.n) if ds.cache(s) == cache]
                keys = [ds.key(s) for s in slots]
                rows = conn.execute(
                    """SELECT k.key, sessioncache.get(%(c)s, k.key) AS value, i.user_id,
                              extract(epoch FROM i.created_at)::float8,
                              extract(epoch FROM i.last_access)::float8,
                              extract(epoch FROM i.expires_at)::float8,
                              extract(epoch FROM clock_timestamp())::float8
                       FROM unnest(%(k)s::text[]) WITH ORDINALITY AS k(key, n)
                       LEFT JOIN LATERAL sessioncache.entry_info(%(c)s, k.key) i ON true
                       ORDER BY k.n""", {"c": cache, "k": keys}).fetchall()
                idle, life = self.cache_defs[cache]
                for slot, (key, value, user_id, created, last, expires, now) in zip(slots, rows):
                    lb = self.safe_touch_bound(slot)
                    bound = min(lb + idle, self.created_t0[slot] + life)
                    if value is None:
                        if created is not None:
                            early += 1
                            examples.append("%s %s: no value; entry_info says it expires"
                                            " %.3f s before it may" % (cache, key, bound - expires))
                        else:
                            lost += 1
                            examples.append("%s %s: gone" % (cache, key))
                        continue
                    bad = None
                    rev = value.get("rev") if isinstance(value, dict) else None
                    if not ds.same_identity(slot, value) or user_id != ds.user(slot):
                        bad = "wrong value %r (user %s)" % (value, user_id)
                    elif not (isinstance(rev, int)
                              and self.rev_done[slot] <= rev <= self.rev_attempt[slot]):
                        bad = "rev %s, the last committed patch was %d (attempted %d)" % (
                            rev, self.rev_done[slot], self.rev_attempt[slot])
                    elif slot in self.created_at and self.created_at[slot] != created:
                        bad = "created_at changed (recreated?)"
                    if bad:
                        wrong += 1
                        examples.append("%s %s: %s" % (cache, key, bad))
                        continue
                    self.created_at.setdefault(slot, created)
                    alive[cache] += 1
                    if expires < bound - 1e-3:
                        early += 1
                        examples.append("%s %s: expires_at %.3f s before it may"
                                        % (cache, key, bound - expires))
                        continue
                    for lo, hi, what in recent:
                        ts = [t for t in self.touch_ring[slot * TOUCH_RING:(slot + 1) * TOUCH_RING]
                              if lo < t < what[2]]
                        if ts:
                            at_risk += 1
                            if last < max(ts) - 1e-3:
                                risk_lost += 1
                                # how long before the stop the lost touch was made
                                age = what[2] - min(t for t in ts if t > last + 1e-3)
                                oldest_lost = age if oldest_lost is None else max(oldest_lost, age)
                    if last < lb - 1e-3 or last > now + 1e-3:
                        timers += 1
                        examples.append("%s %s: last_access %.3f s before the last touch it"
                                        " must reflect, %.3f s before now"
                                        % (cache, key, lb - last, now - last))
            # the server's own view of itself
            try:
                conn.execute("SELECT sessioncache.check_memory()")
            except psycopg.Error as exc:
                phase.fail("check_memory(): %s" % exc)
            for name, errors in conn.execute(
                    "SELECT name, errors FROM sessioncache.workers WHERE errors > 0"):
                phase.fail("the %s worker had %d failed rounds (see the server log)"
                           % (name, errors))
            dropped, flushes = conn.execute(
                "SELECT dropped, flushes FROM sessioncache.notify_stats").fetchone()
            if dropped or flushes:
                phase.notes.append("notify queue overflowed: %d dropped, %d flushes"
                                   % (dropped, flushes))
            if not self.sized:
                self.sized = True
                used, total, entries = conn.execute(
                    "SELECT used_bytes, total_bytes, entries FROM sessioncache.memory").fetchone()
                table = conn.execute(
                    "SELECT pg_total_relation_size('sessioncache.durable_entries')").fetchone()[0]
                phase.notes.append(
                    "%d entries in shared memory use %.1f MB of %.0f MB (%.0f bytes each);"
                    " the durable table with its indexes %.1f MB"
                    % (entries, used / 2**20, total / 2**20, used / max(entries, 1),
                       table / 2**20))
            # every user's entries are all listed (the per-user index)
            users = ["user-%0*d" % (ds.uwidth, u + 1) for u in range(ds.users)]
            want = {}
            for s in range(ds.n):
                want[(ds.cache(s), ds.user(s))] = want.get((ds.cache(s), ds.user(s)), 0) + 1
            for cache in CACHES:
                got = dict(conn.execute(
                    """SELECT u, (SELECT count(*) FROM sessioncache.user_entries(%s, u))
                       FROM unnest(%s::text[]) u""", (cache, users)).fetchall())
                badu = [u for u in users if got.get(u, 0) != want.get((cache, u), 0)]
                if badu:
                    phase.fail("user_entries(%s, ...) wrong for %d users, e.g. %s: %d, want %d"
                               % (cache, len(badu), badu[0], got.get(badu[0], 0),
                                  want.get((cache, badu[0]), 0)))
        finally:
            conn.close()
        if recent:
            phase.notes.append(
                "%d keys touched in the last %.1f s before the %s, %d of those touches"
                " not yet written back and lost (allowed: their idle timers look older by"
                " at most that much; no session is lost)%s"
                % (at_risk, recent[-1][2][0], recent[-1][2][1], risk_lost,
                   "" if oldest_lost is None else
                   ", the oldest %.2f s before the stop" % oldest_lost))
        phase.row.update({"sessions": "%d/%d" % (alive["sessions"], ds.sessions),
                          "offline": "%d/%d" % (alive["offline_sessions"], ds.offline),
                          "lost": lost, "wrong": wrong, "early": early, "timers": timers})
        if lost or wrong or early or timers:
            phase.fail("%d lost, %d wrong, %d expired early, %d idle timers off; e.g.\n      %s"
                       % (lost, wrong, early, timers, "\n      ".join(examples[:5])))

    def check_near_caches(self, phase, nodes):
        """No live node holds a copy that differs from the server.  The
        writers are paused; invalidations may still be in flight (the server
        sends them within about 100 ms), so a mismatch is looked at again
        for a few seconds before it counts as stale."""
        dumps = {}
        checked = 0
        for n in nodes:
            dumps[n.name] = n.call("dump")[1]
            checked += len(dumps[n.name])
        stale = {}
        end = time.monotonic() + 5.0
        conn = self.current.connect()
        try:
            while True:
                stale = {}
                for name, entries in dumps.items():
                    for cache in CACHES:
                        mine = [(k, v) for c, k, v, _ in entries if c == cache]
                        if not mine:
                            continue
                        rows = conn.execute(
                            "SELECT sessioncache.get(%s, k) FROM unnest(%s::text[]) k",
                            (cache, [k for k, _ in mine])).fetchall()
                        for (k, v), (sv,) in zip(mine, rows):
                            if v != sv:
                                stale[(name, cache, k)] = (v, sv)
                if not stale or time.monotonic() >= end:
                    break
                time.sleep(0.2)
                # look again at what the nodes hold now
                for n in nodes:
                    dumps[n.name] = n.call("dump")[1]
        finally:
            conn.close()
        phase.row["stale"] = len(stale)
        phase.notes.append("%d near-cache copies compared" % checked)
        if stale:
            (name, cache, k), (v, sv) = next(iter(stale.items()))
            phase.fail("%d stale near-cache entries, e.g. %s holds %s %s = %r, the server %r"
                       % (len(stale), name, cache, k, v, sv))

    # -- the phases --------------------------------------------------------------

    def begin(self, title):
        print("\n== %s" % title, flush=True)
        p = Phase(title)
        self.phases.append(p)
        return p

    def end(self, p):
        p.row["time"] = time.monotonic() - p.started
        print("  %s (%.1f s)%s" % ("ok" if p.ok else "FAILED", p.row["time"],
                                  "".join("\n  - " + f for f in p.failures)), flush=True)

    def phase1(self):
        p = self.begin("1 create")
        olds = []
        for i in range(3):
            olds.append(self.start_node("node-a%d" % (i + 1), i, self.conninfo_old))
        self.say("3 nodes joined; creating %d sessions and %d offline sessions for %d users"
                 % (self.ds.sessions, self.ds.offline, self.ds.users))
        t = time.monotonic()
        for n in olds:
            n.pipe.send(("create", 4))
        for n in olds:
            if not n.pipe.poll(600):
                raise ScenarioError("node %s did not finish creating" % n.name)
            r = n.pipe.recv()
            if r[2]:
                p.fail("%s could not create %d entries, e.g. %s" % (n.name, len(r[2]), r[2][0]))
        self.say("created in %.1f s" % (time.monotonic() - t))
        p.notes.append("create %.1f s" % (time.monotonic() - t))
        for n in olds:
            n.call("writes", True)
            n.call("resume")
        self.wait_progress(olds, steps=200)
        self.check(p, [n.name for n in olds], "node-a1", "higher")
        self.end(p)

    def phase2(self):
        p = self.begin("2 roll nodes")
        olds = self.live()
        news = []
        for i in range(3):
            news.append(self.start_node("node-b%d" % (i + 1), i, self.conninfo_new))
        for n in news:
            n.call("resume")
        self.say("3 new nodes joined and refresh their shares")
        self.wait_progress(news, steps=200)
        t_kill = time.monotonic()
        for n in olds:
            n.kill()
        self.say("killed %s with SIGKILL" % ", ".join(n.name for n in olds))
        conn = self.current.connect()
        try:
            want = sorted(n.name for n in news)
            bound = self.lease + self.expiry + 10.0
            gone = self.poll("reaper", lambda: sorted(r[0] for r in conn.execute(
                "SELECT node FROM sessioncache.view(%s)", (CLUSTER,))) == want, bound, 0.1)
        finally:
            conn.close()
        took = time.monotonic() - t_kill
        if not gone:
            p.fail("the killed nodes were not removed within %.0f s" % bound)
        else:
            self.say("the reaper removed them %.1f s after the kill (lease %.0f s)"
                     % (took, self.lease))
            p.notes.append("reaped after %.1f s" % took)
        for n in news:
            n.call("writes", True)
        self.wait_progress(news, steps=200)
        self.check(p, want, "node-b1", "higher")
        self.end(p)

    def phase3(self):
        p = self.begin("3a db restart")
        nodes = self.live()
        self.wait_progress(nodes, steps=200)
        t = time.time()
        self.primary.restart()
        self.disruptions.append((t - RESTART_SLACK, time.time(), (RESTART_SLACK, "restart", t)))
        self.say("pg_ctl restart -m fast done")
        self.check(p, [n.name for n in nodes], "node-b1", "same")
        self.end(p)

        p = self.begin("3b db crash")
        self.wait_progress(nodes, steps=200)
        t = time.time()
        self.primary.stop("immediate")
        self.primary.start()
        self.disruptions.append((t - self.flush - CRASH_SLACK, time.time(),
                                 (self.flush + CRASH_SLACK, "crash", t)))
        self.say("pg_ctl stop -m immediate, start")
        self.check(p, [n.name for n in nodes], "node-b1", "same")
        self.end(p)

    def phase4(self):
        p = self.begin("4 failover")
        nodes = self.live()
        sb = self.standby
        run([os.path.join(self.bindir, "pg_basebackup"), "-D", sb.datadir, "-h", self.dir,
             "-p", str(self.primary.port), "-U", "postgres", "-R", "-X", "stream",
             "-c", "fast", "-C", "-S", "scenario_standby"])
        with open(os.path.join(sb.datadir, "postgresql.conf"), "a") as f:
            f.write("port = %d\n" % sb.port)
        sb.start()
        with self.primary.connect() as conn:
            def caught_up():
                r = conn.execute(
                    "SELECT r.replay_lsn >= pg_current_wal_lsn() FROM pg_stat_replication r"
                    " WHERE r.state = 'streaming'").fetchone()
                return r is not None and r[0]
            if not self.poll("catch-up", caught_up, 120):
                raise ScenarioError("the standby did not catch up")
            # synchronous from now on: a commit the nodes saw is on the standby
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            if not self.poll("sync", lambda: conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
            ).fetchone()[0] == 1, 60):
                raise ScenarioError("the standby did not become synchronous")
        self.say("standby built with pg_basebackup, streaming, synchronous")
        self.wait_progress(nodes, steps=200)
        t = time.time()
        self.primary.stop("immediate")
        sb.promote()
        self.disruptions.append((t - self.flush - CRASH_SLACK, time.time(),
                                 (self.flush + CRASH_SLACK, "failover", t)))
        self.current = sb
        self.say("primary stopped immediately, standby promoted")
        with sb.connect() as conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                p.fail("the promoted standby is still in recovery")
        self.check(p, [n.name for n in nodes], "node-b1", "same")
        # the nodes really are on the new primary
        with sb.connect() as conn:
            n = conn.execute("SELECT count(*) FROM pg_stat_activity"
                             " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                             ).fetchone()[0]
            if n == 0:
                p.fail("no client is connected to the new primary")
        self.end(p)

    def stop_nodes(self):
        self.final_stats = {}
        for n in self.live():
            try:
                for k, v in n.call("state", timeout=10)[1]["stats"].items():
                    self.final_stats[k] = self.final_stats.get(k, 0) + v
            except Exception:
                pass
        for n in self.nodes:
            if n.alive and n.proc.exitcode is None:
                try:
                    n.pipe.send(("stop",))
                    n.pipe.poll(10)
                except (OSError, EOFError):
                    pass
                n.proc.join(5)
            if n.proc.exitcode is None:
                n.kill()
            n.alive = False

    def remove_data(self):
        """Remove the data directories of the stopped servers (unless
        --keep-data): a full run leaves about 160 MB in them."""
        if self.keep_data:
            return False
        removed = False
        for name in ("primary", "standby"):
            d = os.path.join(self.dir, name)
            if os.path.isdir(d) and not os.path.exists(os.path.join(d, "postmaster.pid")):
                shutil.rmtree(d, ignore_errors=True)
                removed = True
        return removed

    def report(self):
        cols = [("phase", "title", "<"), ("sessions", "sessions", ">"),
                ("offline", "offline", ">"), ("lost", "lost", ">"),
                ("expired early", "early", ">"), ("wrong", "wrong", ">"),
                ("timers off", "timers", ">"), ("stale", "stale", ">"),
                ("logouts", "logouts", ">"), ("view id", "view", ">"),
                ("coordinator", "coordinator", "<"), ("time", "time", ">"),
                ("result", "result", "<")]
        rows = []
        for p in self.phases:
            r = dict(p.row, title=p.title, result="PASS" if p.ok else "FAIL")
            r["time"] = "%.1f s" % r["time"] if "time" in r else "-"
            rows.append([str(r.get(k, "-")) for _, k, _ in cols])
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, (h, _, _) in enumerate(cols)]

        def line(cells):
            return "  ".join(c.ljust(w) if a == "<" else c.rjust(w)
                             for c, w, (_, _, a) in zip(cells, widths, cols)).rstrip()
        print()
        print("sessioncache rolling-restart scenario: %d sessions, %d offline sessions, "
              "%d users, 3 + 3 %s nodes, lease %g s, flush_interval %g s"
              % (self.ds.sessions, self.ds.offline, self.ds.users,
                 "Java" if self.java else "Python", self.lease, self.flush))
        print()
        print(line([h for h, _, _ in cols]))
        print(line(["-" * w for w in widths]))
        for r in rows:
            print(line(r))
        print()
        tot = self.counter_totals()
        print("nodes: %d touches, %d near-cache reads, %d patches, %d failed calls retried"
              " (while the database was down)" % (tot[C["touches"]], tot[C["hot_reads"]],
                                                  tot[C["patches"]], tot[C["errors"]]))
        touched = sum(1 for s in range(self.ds.n) if self.touch_ring[s * TOUCH_RING] > 0)
        print("%d of the %d keys were touched at least once" % (touched, self.ds.n))
        print(LEGEND % {"flush": self.flush, "crash": CRASH_SLACK, "restart": RESTART_SLACK})
        st = getattr(self, "final_stats", {})
        if st:
            print("near caches of the last nodes: %d hits, %d misses, %d bypassed (offline),"
                  " %d invalidations, %d flushes, %d reconnects"
                  % (st.get("hits", 0), st.get("misses", 0), st.get("bypassed", 0),
                     st.get("invalidations", 0), st.get("flushes", 0), st.get("disconnects", 0)))
        for p in self.phases:
            if p.notes:
                print("phase %s: %s" % (p.title, "; ".join(p.notes)))
        print()
        for p in self.phases:
            print("phase %s: %s" % (p.title, "PASS" if p.ok else "FAIL"))
            for f in p.failures:
                print("  - " + f)

    def main(self):
        t = time.monotonic()
        print("sessioncache rolling-restart scenario: %d sessions and %d offline sessions of %d"
              " users; phases 1 create, 2 roll nodes, 3a db restart, 3b db crash, 4 failover;"
              " servers and logs in %s" % (self.ds.sessions, self.ds.offline, self.ds.users,
                                           self.dir), flush=True)
        try:
            self.setup()
            for ph in (self.phase1, self.phase2, self.phase3, self.phase4):
                ph()
        except ScenarioError as exc:
            p = self.phases[-1] if self.phases else self.begin("setup")
            p.fail("aborted: %s" % exc)
        except Exception:
            p = self.phases[-1] if self.phases else self.begin("setup")
            p.fail("aborted: %s" % traceback.format_exc().strip())
        finally:
            self.stop_nodes()
            for s in Server.started:
                s.cleanup()
            removed = self.remove_data()
        ok = all(p.ok for p in self.phases) and len(self.phases) == 5
        self.report()
        print("total %.1f s; servers stopped%s; logs in %s"
              % (time.monotonic() - t,
                 ", their data directories removed" if removed else "", self.dir))
        print("RESULT: %s" % ("PASS" if ok else "FAIL"))
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="working directory (servers, logs)")
    ap.add_argument("--sessions", type=int, default=20000)
    ap.add_argument("--offline", type=int, default=20000)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--lease", type=float, default=3.0, help="the nodes' lease (s)")
    ap.add_argument("--threads", type=int, default=3, help="request threads per node")
    ap.add_argument("--keep-data", action="store_true",
                    help="keep the servers' data directories (removed by default)")
    ap.add_argument("--java", metavar="CLASSPATH",
                    help="run the app nodes in Java (client/java) with this class path")
    ap.add_argument("--quick", action="store_true",
                    help="the small size of the test suite: 2,000 + 2,000 for 500 users")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.offline, args.users = 2000, 2000, 500
    if min(args.sessions, args.offline, args.users) < 3:
        ap.error("at least 3 sessions, offline sessions and users")
    if args.threads < 1 or args.lease <= 0:
        ap.error("--threads and --lease must be positive")
    if os.geteuid() == 0:
        ap.error("run as an unprivileged user (PostgreSQL refuses root), e.g. runuser -u postgres")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        return Scenario(args).main()
    except KeyboardInterrupt:
        print("\ninterrupted; the nodes and every server started here are stopped", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
