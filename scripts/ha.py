#!/usr/bin/python3
"""sessioncache on pg_auto_failover, under load, with a ledger of every
acknowledged commit.

    /usr/bin/python3 scripts/ha.py --dir DIR [--quick] [--bulk N] [--nodes 2|3]
        [--lease SECONDS] [--rate OPS] [--default-timeouts]

Run as an unprivileged user (scripts/demo.sh --ha runs it as postgres).  It
builds a pg_auto_failover formation on this machine (Debian packages
postgresql-15-auto-failover and pg-auto-failover-cli): a monitor and --nodes
data nodes, each run by its own `pg_autoctl run` on a loopback port with its
own data directory (and XDG directories under DIR), every data node
preloading sessioncache, with the replication settings pg_autoctl chooses
(two or more nodes: synchronous_standby_names = 'ANY 1 (...)',
synchronous_commit = on).  The extension is created once, on the primary,
after the standbys stream: it reaches them by replication.

Then --bulk offline sessions are loaded (the durable entries whose pre-warm
is timed) and three auth-server nodes (processes using the reference client,
NearCache + Membership, with a multi-host connection string and
target_session_attrs=read-write) put a steady load on the primary: logins
(put), refreshes (get with touch), offline-session creation, patches,
logouts (delete) and heartbeats.  Each node keeps a ledger of every call the
server acknowledged.  The events:

  1. pg_autoctl perform failover
  2. pg_autoctl perform switchover (back)
  3. SIGKILL of the primary's postmaster (its pg_autoctl restarts it: a
     crash restart in place, no failover)
  4. SIGKILL of the primary's pg_autoctl and postmaster together (the
     machine is lost): the monitor promotes the standby; the lost node's
     pg_autoctl is started again and it rejoins as a standby.

After each (with the load paused): every acknowledged durable write is there
with its value (0 lost, 0 wrong, 0 deleted entries back), no entry expires
before the ledger allows, idle timers are behind the last acknowledged touch
by at most flush_interval (only touches made in the event's window may be
lost), every bulk entry is there; the same three members with the same
member ids and the same view id; each node's near cache is back online (it
LISTENs again) and an invalidation from the new primary reaches it; every
standby (the old primary included) is back, streaming, and its memory
coherent with its table (check_memory(), no cached copy that differs from
the row) and its reads equal the primary's.  Timed: from the event to the
first successful write on the (new) primary, and until the primary's memory
holds every live durable entry (pre-warm).

Prints a table of the events; exit status 0 only when every check passed.
Every process started here is stopped at the end, also on error.
"""

import argparse
import json
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
FLUSH = 1.0             # sessioncache.flush_interval on the data nodes (s)
SLACK = 1.0             # s on top of it: a busy machine runs the writeback late


class HAError(Exception):
    pass


def run(cmd, env=None, timeout=300):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise HAError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stdout[-3000:]))
    return r.stdout


def free_port(avoid):
    rng = random.Random()
    for _ in range(1000):
        p = rng.randrange(20000, 60000)
        if p in avoid:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        return p
    raise HAError("no free port")


def poll(fn, timeout, interval=0.1):
    end = time.monotonic() + timeout
    while True:
        r = fn()
        if r:
            return r
        if time.monotonic() >= end:
            return None
        time.sleep(interval)


# ----------------------------------------------------------------------
# the formation

class Formation:
    """A pg_auto_failover monitor and data nodes, each run by `pg_autoctl run`
    in a session of its own (so that a SIGKILL of its process group is the
    loss of that machine)."""

    def __init__(self, top, nodes, memory, fast_timeouts, worker_workaround):
        self.top = top
        self.workaround = worker_workaround
        self.bindir = run(["pg_config", "--bindir"]).strip()
        x = os.path.join(top, "xdg")
        self.env = dict(os.environ, XDG_CONFIG_HOME=x + "/config", XDG_DATA_HOME=x + "/data",
                        XDG_RUNTIME_DIR=x + "/run",
                        PG_CONFIG=os.path.join(self.bindir, "pg_config"),
                        PATH=self.bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
        self.env.pop("PGDATA", None)
        self.env.pop("PGPORT", None)
        self.memory = memory
        self.fast = fast_timeouts
        used = set()
        self.mport = free_port(used)
        used.add(self.mport)
        self.names = ["node%d" % (i + 1) for i in range(nodes)]
        self.ports = {}
        for n in self.names:
            self.ports[n] = free_port(used)
            used.add(self.ports[n])
        self.procs = {}         # name -> Popen of `pg_autoctl run`
        self.pgids = {}

    def pgdata(self, name):
        return os.path.join(self.top, name)

    def autoctl(self, *args, timeout=300):
        return run(["pg_autoctl"] + list(args), env=self.env, timeout=timeout)

    def monitor_uri(self):
        return "postgres://autoctl_node@localhost:%d/pg_auto_failover?sslmode=disable" % self.mport

    def conninfo(self, name, **kw):
        s = "host=127.0.0.1 port=%d dbname=postgres user=postgres" % self.ports[name]
        return s + "".join(" %s=%s" % kv for kv in kw.items())

    def multi_conninfo(self, timeout=2, user="keycloak"):
        return ("host=%s port=%s dbname=postgres user=%s target_session_attrs=read-write"
                " connect_timeout=%d" % (",".join("127.0.0.1" for _ in self.names),
                                         ",".join(str(self.ports[n]) for n in self.names),
                                         user, timeout))

    def connect(self, name, **kw):
        return psycopg.connect(self.conninfo(name, connect_timeout=3), autocommit=True, **kw)

    def monitor_sql(self, sql, args=()):
        with psycopg.connect("host=127.0.0.1 port=%d dbname=pg_auto_failover user=postgres"
                             " connect_timeout=3" % self.mport, autocommit=True) as c:
            return c.execute(sql, args).fetchall()

    def start(self, name):
        log = open(os.path.join(self.top, name + ".autoctl.log"), "a")
        p = subprocess.Popen(["pg_autoctl", "run", "--pgdata", self.pgdata(name)], env=self.env,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        log.close()
        self.procs[name] = p
        self.pgids[name] = p.pid

    def kill_machine(self, name):
        """SIGKILL to `pg_autoctl run` and everything it started."""
        try:
            os.killpg(self.pgids[name], signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[name].wait(30)

    def postmaster_pid(self, name):
        with open(os.path.join(self.pgdata(name), "postmaster.pid")) as f:
            return int(f.readline())

    def states(self):
        return {r[0]: (r[1], r[2]) for r in self.monitor_sql(
            "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node")}

    def primary(self):
        """The node the monitor has as primary (None while failing over)."""
        for n, (rep, goal) in self.states().items():
            if rep == goal and rep in ("primary", "wait_primary", "single"):
                return n
        return None

    def settled(self):
        st = self.states()
        if len(st) != len(self.names) or any(rep != goal for rep, goal in st.values()):
            return None
        prim = [n for n, (rep, _) in st.items() if rep == "primary"]
        if len(prim) == 1 and all(rep == "secondary" for n, (rep, _) in st.items()
                                  if n != prim[0]):
            return prim[0]
        return None

    def wait_settled(self, timeout=180):
        p = poll(lambda: self.settled(), timeout, 0.25)
        if p is None:
            raise HAError("the formation did not settle within %d s: %s" % (timeout, self.states()))
        return p

    def node_conf(self, port):
        return "\n".join([
            "# scripts/ha.py (after pg_auto_failover's include: these win)",
            "shared_preload_libraries = 'pg_stat_statements,sessioncache'",
            "sessioncache.database = 'postgres'",
            "sessioncache.memory = %s" % self.memory,
            "sessioncache.flush_interval = %gs" % FLUSH,
            "sessioncache.expiry_interval = 1s",
            "shared_buffers = 128MB",
            "max_connections = 100",
            "unix_socket_directories = '%s'" % self.top,
            "log_line_prefix = '%m [%p] '",
            ] + ([
                # Workaround, until the C fix: at a fast shutdown the writeback
                # worker writes back the last touches and its commit waits for
                # the synchronous standby, which pg_auto_failover is promoting:
                # the old primary never stops.  Every role but the auth
                # server's (keycloak: synchronous_commit = on, set with ALTER
                # ROLE) commits locally, the workers included.
                "synchronous_commit = local"] if self.workaround else []) + [""])

    def create(self, say):
        m = self.pgdata("monitor")
        self.autoctl("create", "monitor", "--pgdata", m, "--pgport", str(self.mport),
                     "--hostname", "localhost", "--auth", "trust", "--no-ssl")
        self.autoctl("config", "set", "--pgdata", m, "postgresql.listen_addresses", "127.0.0.1")
        if self.fast:
            # detect a lost node in about 5 s, and promote 10 s after it
            # became unhealthy (the keeper of a partitioned primary demotes
            # itself after 5 s: timeout.network_partition_timeout below)
            with open(os.path.join(m, "postgresql.conf"), "a") as f:
                f.write("\n".join([
                    "pgautofailover.health_check_period = 1000",
                    "pgautofailover.health_check_timeout = 1000",
                    "pgautofailover.health_check_max_retries = 1",
                    "pgautofailover.health_check_retry_delay = 500",
                    "pgautofailover.node_considered_unhealthy_timeout = 5000",
                    "pgautofailover.primary_demote_timeout = 10000",
                    ""]))
        self.start("monitor")
        if not poll(lambda: self._monitor_up(), 60, 0.2):
            raise HAError("the monitor did not start")
        say("monitor on 127.0.0.1:%d" % self.mport)
        for i, name in enumerate(self.names):
            d = self.pgdata(name)
            if i == 0:
                run([os.path.join(self.bindir, "initdb"), "-D", d, "-A", "trust", "-U",
                     "postgres", "-E", "UTF8", "--locale=C"], env=self.env)
                with open(os.path.join(d, "postgresql.conf"), "a") as f:
                    f.write(self.node_conf(self.ports[name]))
            # a standby is created by pg_basebackup from the primary: it gets
            # the primary's postgresql.conf, ours included
            self.autoctl("create", "postgres", "--pgdata", d, "--pgport", str(self.ports[name]),
                         "--listen", "127.0.0.1", "--pghost", self.top,
                         "--hostname", "localhost", "--name", name,
                         "--username", "postgres", "--dbname", "postgres", "--auth", "trust",
                         "--no-ssl", "--monitor", self.monitor_uri(), timeout=600)
            if self.fast:
                self.autoctl("config", "set", "--pgdata", d, "timeout.network_partition_timeout",
                             "5")
            self.start(name)
            want = ("single",) if i == 0 else ("secondary",)
            if not poll(lambda: self.states().get(name, (None, None))[0] in want
                        and self.states()[name][0] == self.states()[name][1], 300, 0.25):
                raise HAError("%s did not reach %s: %s" % (name, want[0], self.states()))
            say("%s on 127.0.0.1:%d is %s" % (name, self.ports[name], want[0]))
        return self.wait_settled()

    def _monitor_up(self):
        try:
            self.monitor_sql("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop_all(self):
        for name in list(self.procs)[::-1]:
            p = self.procs[name]
            if p.poll() is None:
                try:
                    self.autoctl("stop", "--pgdata", self.pgdata(name), timeout=30)
                    p.wait(30)
                except Exception:
                    pass
            if p.poll() is None:
                try:
                    os.killpg(self.pgids[name], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)
        # a postmaster left behind (its pg_autoctl died first)
        for name in list(self.procs):
            try:
                pid = self.postmaster_pid(name if name != "monitor" else "monitor")
                os.kill(pid, 0)
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass


# ----------------------------------------------------------------------
# an auth-server node with its ledger (a child process)

class Rec:
    __slots__ = ("cache", "value", "created", "touches", "state", "rev_attempt", "rev_done")

    def __init__(self, cache, value, created):
        self.cache, self.value, self.created = cache, value, created
        self.touches = []       # acknowledged touches: time.time() before each call
        self.state = "live"     # live | deleted | unsure (a call failed: it may have committed)
        self.rev_attempt = self.rev_done = 0


class AppNode:
    def __init__(self, name, idx, conninfo, cfg, pipe):
        self.name, self.idx, self.pipe, self.cfg = name, idx, pipe, cfg
        self.ledger = {}
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.counts = {k: 0 for k in ("ops", "logins", "offline", "refreshes", "patches",
                                      "logouts", "failed", "nulls", "wrong_reads")}
        self.nc = NearCache(conninfo, max_entries=100000, caches=list(CACHES), pool_size=4,
                            listen_membership=True, backoff_initial=0.05, backoff_max=0.5,
                            ping_interval=1.0)
        self.m = Membership(conninfo, CLUSTER, name, address="10.0.2.%d:7800" % (idx + 1),
                            lease=cfg["lease"], heartbeat_interval=cfg["lease"] / 3.0,
                            backoff_initial=0.05, backoff_max=0.5)
        self.nc.add_membership_listener(self.m.notify)
        self.rejoins = 0

    def count(self, k, n=1):
        with self.lock:
            self.counts[k] += n

    def worker(self, t, busy):
        rng = random.Random()
        mine = []               # keys this thread owns (one writer per key)
        seq = 0
        pause = 1.0 / self.cfg["rate"]
        while True:
            self.running.wait()
            with busy:
                if not self.running.is_set():
                    continue
                live = [k for k in mine if self.ledger[k].state == "live"]
                r = rng.random()
                try:
                    self.count("ops")
                    if r < 0.2 or len(live) < 5:
                        seq += 1
                        off = rng.random() < 0.3
                        cache = "offline_sessions" if off else "sessions"
                        key = "%s-t%d-%s%06d" % (self.name, t, "o" if off else "s", seq)
                        user = "user-%d" % rng.randrange(1000)
                        value = {"user": user, "sid": key, "ip": "10.1.%d.%d" % (t, seq % 250),
                                 "rev": 0}
                        rec = Rec(cache, value, time.time())
                        with self.lock:
                            self.ledger[key] = rec
                        mine.append(key)
                        rec.state = "unsure"
                        self.nc.put(cache, key, value, user_id=user)
                        rec.state = "live"
                        self.count("offline" if off else "logins")
                    elif r < 0.75:
                        key = rng.choice(live)
                        rec = self.ledger[key]
                        t0 = time.time()
                        v = self.nc.get(rec.cache, key, touch=True)
                        if v is None:
                            self.count("nulls")
                            logging.error("refresh: %s is NULL", key)
                        else:
                            if v.get("rev") not in range(rec.rev_done, rec.rev_attempt + 1):
                                self.count("wrong_reads")
                                logging.error("refresh: %s = %r, rev %d..%d", key, v,
                                              rec.rev_done, rec.rev_attempt)
                            rec.touches = (rec.touches + [t0])[-4:]
                            self.count("refreshes")
                    elif r < 0.92:
                        key = rng.choice(live)
                        rec = self.ledger[key]
                        rev = rec.rev_attempt + 1
                        rec.rev_attempt = rev
                        v = self.nc.patch(rec.cache, key, {"rev": rev})
                        if v is None:
                            self.count("nulls")
                            logging.error("patch: %s is NULL", key)
                        else:
                            rec.rev_done = rev
                            rec.value = dict(rec.value, rev=rev)
                            self.count("patches")
                    else:
                        key = rng.choice(live)
                        rec = self.ledger[key]
                        rec.state = "unsure"
                        if self.nc.delete(rec.cache, key):
                            rec.state = "deleted"
                            self.count("logouts")
                        else:
                            self.count("nulls")
                            logging.error("logout: %s was not there", key)
                except psycopg.Error as exc:
                    self.count("failed")
                    logging.info("call failed (database switching?): %s", exc)
                    time.sleep(0.05)
            time.sleep(pause * (0.5 + rng.random()))

    def check(self, windows):
        """Compare the ledger with the primary (the load is paused)."""
        out = {"checked": 0, "lost": 0, "wrong": 0, "back": 0, "early": 0, "timers": 0,
               "unsure": 0, "lost_touches": 0, "oldest_lost": 0.0, "examples": []}
        with self.nc._pool.connection() as conn:
            defs = {r[0]: (r[1] if r[1] is not None else float("inf"),
                           r[2] if r[2] is not None else float("inf")) for r in conn.execute(
                "SELECT name, extract(epoch FROM idle_timeout)::float8,"
                " extract(epoch FROM max_lifespan)::float8 FROM sessioncache.caches")}
            for cache in CACHES:
                keys = [k for k, r in self.ledger.items() if r.cache == cache]
                if not keys:
                    continue
                rows = conn.execute(
                    """SELECT k.key, sessioncache.get(%(c)s, k.key), i.user_id,
                              extract(epoch FROM i.last_access)::float8,
                              extract(epoch FROM i.expires_at)::float8
                       FROM unnest(%(k)s::text[]) WITH ORDINALITY AS k(key, n)
                       LEFT JOIN LATERAL sessioncache.entry_info(%(c)s, k.key) i ON true
                       ORDER BY k.n""", {"c": cache, "k": keys}).fetchall()
                idle, life = defs[cache]
                for key, value, user_id, last, expires in rows:
                    rec = self.ledger[key]
                    if rec.state == "unsure":
                        out["unsure"] += 1
                        continue
                    out["checked"] += 1
                    if rec.state == "deleted":
                        if value is not None:
                            out["back"] += 1
                            out["examples"].append("%s: deleted, but back: %r" % (key, value))
                        continue
                    if value is None:
                        if expires is not None:
                            out["early"] += 1
                            out["examples"].append("%s: expired early" % key)
                        else:
                            out["lost"] += 1
                            out["examples"].append("%s: lost" % key)
                        continue
                    if (value.get("rev") not in range(rec.rev_done, rec.rev_attempt + 1)
                            or {k: v for k, v in value.items() if k != "rev"}
                            != {k: v for k, v in rec.value.items() if k != "rev"}
                            or user_id != rec.value["user"]):
                        out["wrong"] += 1
                        out["examples"].append("%s: %r, ledger %r rev %d..%d" % (
                            key, value, rec.value, rec.rev_done, rec.rev_attempt))
                        continue
                    # an acknowledged touch the server does not reflect is
                    # allowed only in an event's window: flush_interval (plus
                    # slack) before the event, until writes worked again
                    safe = rec.created
                    for t in rec.touches:
                        win = [w for w in windows if w[0] < t < w[2]]
                        if t > last + 1e-3:
                            if win:
                                out["lost_touches"] += 1
                                out["oldest_lost"] = max(out["oldest_lost"], win[0][1] - t)
                            else:
                                out["timers"] += 1
                                out["examples"].append(
                                    "%s: last_access %.3f s before an acknowledged touch"
                                    % (key, t - last))
                        if t > safe and not win:
                            safe = t
                    bound = min(safe + idle, rec.created + life)
                    if expires < bound - 1e-3:
                        out["early"] += 1
                        out["examples"].append("%s: expires %.3f s early" % (key, bound - expires))
        out["examples"] = out["examples"][:5]
        return out

    def state(self):
        return {"online": self.nc.online, "member_id": self.m.member_id,
                "view_id": self.m.view_id, "members": sorted(x["node"] for x in self.m.members),
                "stats": self.nc.stats(), "counts": dict(self.counts),
                "ledger": len(self.ledger)}

    def run(self):
        parent = os.getppid()
        self.m.start()
        self.nc.wait_online(30)
        self.pipe.send(("ready", self.m.member_id))
        busy = []
        for t in range(self.cfg["threads"]):
            busy.append(threading.Lock())
            threading.Thread(target=self.worker, args=(t, busy[-1]), daemon=True).start()
        while True:
            if os.getppid() != parent:
                os._exit(1)
            if not self.pipe.poll(0.2):
                continue
            msg = self.pipe.recv()
            what = msg[0]
            try:
                if what in ("pause", "stop"):
                    self.running.clear()
                    for b in busy:
                        with b:
                            pass
                if what == "stop":
                    self.m.leave()
                    self.nc.close()
                    self.pipe.send(("stopped",))
                    os._exit(0)
                elif what == "pause":
                    reply = ("paused",)
                elif what == "resume":
                    self.running.set()
                    reply = ("resumed",)
                elif what == "state":
                    reply = ("state", self.state())
                elif what == "check":
                    reply = ("check", self.check(msg[1]))
                elif what == "hold":
                    # read a key through the near cache until a copy is held
                    ok = poll(lambda: self.nc.get(msg[1], msg[2]) is not None
                              and self.nc.cached(msg[1], msg[2]), 20, 0.05)
                    reply = ("hold", bool(ok))
                elif what == "held":
                    reply = ("held", self.nc.cached(msg[1], msg[2]))
                else:
                    reply = ("unknown", what)
            except Exception:
                reply = ("error", traceback.format_exc())
            self.pipe.send(reply)


def app_main(name, idx, conninfo, cfg, pipe):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(filename=os.path.join(cfg["logdir"], name + ".log"), level=logging.INFO,
                        format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    try:
        AppNode(name, idx, conninfo, cfg, pipe).run()
    except Exception:
        logging.exception("node failed")
        os._exit(2)


class App:
    def __init__(self, ctx, name, idx, conninfo, cfg):
        self.name = name
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=app_main, args=(name, idx, conninfo, cfg, child),
                                daemon=True)
        self.proc.start()
        child.close()
        if not self.pipe.poll(60):
            raise HAError("app node %s did not start" % name)
        self.member_id = self.pipe.recv()[1]

    def call(self, *msg, timeout=300):
        self.pipe.send(msg)
        if not self.pipe.poll(timeout):
            raise HAError("app node %s does not answer %s" % (self.name, msg[0]))
        r = self.pipe.recv()
        if r[0] == "error":
            raise HAError("app node %s: %s" % (self.name, r[1]))
        return r


# ----------------------------------------------------------------------
# the run

class Event:
    def __init__(self, title):
        self.title = title
        self.row = {}
        self.notes = []
        self.failures = []

    def fail(self, what):
        self.failures.append(what)


class HA:
    def __init__(self, args):
        self.args = args
        self.top = os.path.abspath(args.dir)
        mem_mb = max(64, int(args.bulk * 700 / 2**20 * 1.3) + 32)
        self.f = Formation(self.top, args.nodes, "%dMB" % mem_mb, not args.default_timeouts,
                           args.worker_workaround)
        self.apps = []
        self.events = []
        self.windows = []
        self.view_id = None
        self.member_ids = None

    def say(self, msg):
        print("  .. " + msg, flush=True)

    def prim(self):
        """A connection to whichever node accepts writes."""
        return psycopg.connect(self.f.multi_conninfo(timeout=3, user="postgres"),
                               autocommit=True)

    # -- setup ---------------------------------------------------------------

    def setup(self):
        if os.path.exists(self.top):
            for d in os.listdir(self.top):
                pid = os.path.join(self.top, d, "postmaster.pid")
                if os.path.exists(pid):
                    subprocess.run([os.path.join(self.f.bindir, "pg_ctl"), "-D",
                                    os.path.join(self.top, d), "-m", "immediate", "stop"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.top)
        os.makedirs(os.path.join(self.top, "apps"))
        for sub in ("config", "data", "run"):
            os.makedirs(os.path.join(self.top, "xdg", sub), mode=0o700)
        t = time.monotonic()
        prim = self.f.create(self.say)
        with self.f.connect(prim) as c:
            ssn = c.execute("SHOW synchronous_standby_names").fetchone()[0]
            sc = c.execute("SHOW synchronous_commit").fetchone()[0]
            c.execute("CREATE EXTENSION sessioncache")
            c.execute("CREATE ROLE keycloak LOGIN IN ROLE sessioncache_app, sessioncache_monitor")
            c.execute("ALTER ROLE keycloak SET synchronous_commit = 'on'")
            lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with psycopg.connect(self.f.conninfo(prim, user="keycloak"), autocommit=True) as c:
            sc = c.execute("SHOW synchronous_commit").fetchone()[0]
        self.say("formation up in %.1f s; primary %s; synchronous_standby_names = %s,"
                 " the app role's synchronous_commit = %s" % (time.monotonic() - t, prim, ssn, sc))
        self.setup_notes = ["synchronous_standby_names = %s, the app role's synchronous_commit"
                            " = %s" % (ssn, sc)]
        if self.args.worker_workaround:
            self.setup_notes.append(
                "workaround: synchronous_commit = local for every other role (the writeback"
                " worker's shutdown flush would wait for the standby being promoted)")
        for n in self.f.names:
            if n == prim:
                continue
            with self.f.connect(n) as c:
                ok = poll(lambda: c.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AND EXISTS"
                    " (SELECT FROM pg_extension WHERE extname = 'sessioncache')",
                    (lsn,)).fetchone()[0], 60)
                if not ok:
                    raise HAError("CREATE EXTENSION did not reach %s" % n)
        self.say("CREATE EXTENSION on %s reached the standbys by replication" % prim)
        if self.args.bulk:
            t = time.monotonic()
            with self.f.connect(prim) as c:
                step = 20000
                for a in range(1, self.args.bulk + 1, step):
                    b = min(self.args.bulk, a + step - 1)
                    c.execute(BULK_PUT, (a, b))
            self.say("loaded %d offline sessions in %.1f s" % (self.args.bulk,
                                                              time.monotonic() - t))
        cfg = {"lease": self.args.lease, "threads": self.args.threads, "rate": self.args.rate,
               "logdir": os.path.join(self.top, "apps")}
        ctx = multiprocessing.get_context("spawn")
        for i in range(3):
            self.apps.append(App(ctx, "app-%d" % (i + 1), i, self.f.multi_conninfo(), cfg))
        for a in self.apps:
            a.call("resume")
        self.member_ids = {a.name: a.member_id for a in self.apps}
        with self.prim() as c:
            self.view_id = c.execute("SELECT max(view_id) FROM sessioncache.view(%s)",
                                     (CLUSTER,)).fetchone()[0]
            c.execute("SELECT sessioncache.put('sessions', 'probe-inv', '{\"n\": 0}')")
        self.say("3 app nodes joined (view %s) and load the primary" % self.view_id)
        time.sleep(self.args.settle)

    # -- measuring -----------------------------------------------------------

    def probe_first_write(self, t0, avoid_port, timeout=180):
        """Write through the multi-host string until a write succeeds on a
        server other than avoid_port (any, when None); its time after t0."""
        conninfo = self.f.multi_conninfo(timeout=1)
        end = time.monotonic() + timeout
        n = 0
        while time.monotonic() < end:
            n += 1
            try:
                with psycopg.connect(conninfo, autocommit=True) as c:
                    port = c.execute("SELECT inet_server_port()").fetchone()[0]
                    if avoid_port is None or port != avoid_port:
                        c.execute("SELECT sessioncache.put('sessions', 'probe-write',"
                                  " jsonb_build_object('n', %s::int))", (n,))
                        return time.time() - t0, port
            except psycopg.Error:
                pass
            time.sleep(0.02)
        return None, None

    def prewarm_time(self, t0, timeout=600):
        """Seconds from t0 until the primary's memory holds every live
        durable entry; the prewarm worker's own report."""
        sql = """SELECT (SELECT coalesce(sum(s.entries), 0) FROM sessioncache.cache_stats s
                         JOIN sessioncache.caches c ON c.name = s.cache WHERE c.durable)
                      >= (SELECT count(*) FROM sessioncache.durable_entries
                          WHERE expires_at > now())"""
        with self.prim() as c:
            ok = poll(lambda: c.execute(sql).fetchone()[0], timeout, 0.1)
            t = time.time() - t0
            w = c.execute("SELECT items, last_duration_ms FROM sessioncache.workers"
                          " WHERE name = 'prewarm'").fetchone()
        return (t if ok else None), w

    # -- the checks after each event -------------------------------------------

    def check(self, ev, old_primary):
        # the nodes work again
        base = {a.name: a.call("state")[1]["counts"]["ops"] for a in self.apps}
        if not poll(lambda: all(a.call("state")[1]["counts"]["ops"] > base[a.name] + 20
                                for a in self.apps), 120, 0.2):
            ev.fail("the app nodes made no progress after the event")
        for a in self.apps:
            a.call("pause")
        try:
            self.check_ledger(ev)
            self.check_bulk(ev)
        finally:
            for a in self.apps:
                a.call("resume")
        self.check_membership(ev)
        self.check_invalidations(ev)
        self.check_standbys(ev, old_primary)

    def check_ledger(self, ev):
        tot = {}
        examples = []
        for a in self.apps:
            r = a.call("check", list(self.windows))[1]
            for k, v in r.items():
                if k == "examples":
                    examples += v
                elif k == "oldest_lost":
                    tot[k] = max(tot.get(k, 0.0), v)
                else:
                    tot[k] = tot.get(k, 0) + v
        ev.row.update(checked=tot["checked"], lost=tot["lost"] + tot["wrong"] + tot["back"],
                      early=tot["early"], timers=tot["timers"],
                      lag="%d, %.2f s" % (tot["lost_touches"], tot["oldest_lost"]))
        ev.notes.append("ledger: %d acknowledged entries checked (%d lost, %d wrong, %d deleted"
                        " ones back, %d expired early, %d idle timers off; %d calls unacknowledged"
                        " and not counted); %d touches lost, the oldest made %.2f s before the event"
                        " (allowed: flush_interval %g s + %g s slack)"
                        % (tot["checked"], tot["lost"], tot["wrong"], tot["back"], tot["early"],
                           tot["timers"], tot["unsure"], tot["lost_touches"], tot["oldest_lost"],
                           FLUSH, SLACK))
        if tot["lost"] or tot["wrong"] or tot["back"] or tot["early"] or tot["timers"]:
            ev.fail("ledger: %s; e.g. %s" % (
                {k: tot[k] for k in ("lost", "wrong", "back", "early", "timers")},
                "; ".join(examples)))
        if tot["oldest_lost"] > FLUSH + SLACK:
            ev.fail("a touch made %.2f s before the event was lost" % tot["oldest_lost"])
        nulls = sum(a.call("state")[1]["counts"]["nulls"] for a in self.apps)
        wrong = sum(a.call("state")[1]["counts"]["wrong_reads"] for a in self.apps)
        if nulls or wrong:
            ev.fail("the app nodes read NULL for a live session %d times, a wrong value %d times"
                    % (nulls, wrong))

    def check_bulk(self, ev):
        if not self.args.bulk:
            return
        with self.prim() as c:
            n = c.execute(BULK_CHECK, (self.args.bulk,)).fetchone()[0]
        ev.row["bulk"] = "%d/%d" % (n, self.args.bulk)
        if n != self.args.bulk:
            ev.fail("%d of %d bulk offline sessions read back" % (n, self.args.bulk))

    def check_membership(self, ev):
        def same():
            states = [a.call("state")[1] for a in self.apps]
            return all(s["member_id"] == self.member_ids[a.name]
                       and s["view_id"] == self.view_id for a, s in zip(self.apps, states))
        ok = poll(same, 30, 0.2)
        with self.prim() as c:
            rows = c.execute("SELECT member_id, node, view_id FROM sessioncache.view(%s)",
                             (CLUSTER,)).fetchall()
        vid = rows[0][2] if rows else None
        ev.row["members"] = "%d/3" % len([r for r in rows if self.member_ids.get(r[1]) == r[0]])
        ev.row["view"] = "%s%s" % (vid, " (same)" if vid == self.view_id else " (CHANGED)")
        if not ok or vid != self.view_id or sorted((r[1], r[0]) for r in rows) != sorted(
                (n, m) for n, m in self.member_ids.items()):
            ev.fail("membership changed: view %s (was %s), members %s (were %s)"
                    % (vid, self.view_id, [(r[1], r[0]) for r in rows], self.member_ids))

    def check_invalidations(self, ev):
        """Each node's near cache is online again (it re-LISTENed) and a write
        on the new primary invalidates its copy."""
        for a in self.apps:
            if not a.call("hold", "sessions", "probe-inv")[1]:
                ev.fail("%s does not hold probe-inv (near cache offline?)" % a.name)
        t = time.monotonic()
        with self.prim() as c:
            c.execute("SELECT sessioncache.patch('sessions', 'probe-inv', jsonb_build_object("
                      "'t', clock_timestamp()))")
        ok = poll(lambda: not any(a.call("held", "sessions", "probe-inv")[1] for a in self.apps),
                  10, 0.01)
        took = time.monotonic() - t
        reconnects = sum(a.call("state")[1]["stats"].get("connects", 0) for a in self.apps)
        ev.row["inval"] = "%.0f ms" % (took * 1000) if ok else "NO"
        ev.notes.append("invalidation reached all 3 near caches %.0f ms after the write;"
                        " listener connects so far: %d" % (took * 1000, reconnects))
        if not ok:
            ev.fail("an invalidation on the primary did not reach every near cache in 10 s")

    def check_standbys(self, ev, old_primary):
        try:
            prim = self.f.wait_settled(240)
        except HAError as exc:
            ev.fail(str(exc))
            return
        if getattr(ev, "watcher", None) is not None:
            ev.watcher.join(60)
            if "t" in ev.settled:
                ev.row["rejoin"] = "%.1f s" % ev.settled["t"]
        for a in self.apps:
            a.call("pause")
        try:
            with self.f.connect(prim) as c:
                lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                sample = [r[0] for r in c.execute(
                    "SELECT key FROM sessioncache.durable_entries ORDER BY random() LIMIT 2000")]
                want = c.execute(SAMPLE_READ, (sample,)).fetchall()
            bad = []
            for n in self.f.names:
                if n == prim:
                    continue
                with self.f.connect(n) as c:
                    if not poll(lambda: c.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                                  (lsn,)).fetchone()[0], 60):
                        bad.append("%s did not replay up to the primary" % n)
                        continue
                    rec, mem, incoherent = c.execute(
                        """SELECT pg_is_in_recovery(), sessioncache.check_memory(),
                                  (SELECT count(*) FROM sessioncache.entries e
                                   JOIN sessioncache.cache_defs d ON d.name = e.cache
                                   LEFT JOIN sessioncache.durable_entries t
                                     ON t.cache_id = d.id AND t.key = e.key
                                   WHERE e.durable AND t.version IS DISTINCT FROM e.version)"""
                    ).fetchone()
                    got = c.execute(SAMPLE_READ, (sample,)).fetchall()
                    if not rec or not mem or incoherent or got != want:
                        bad.append("%s: in recovery %s, check_memory %s, %d cached copies differ"
                                   " from their rows, %d of %d sample reads differ from the"
                                   " primary" % (n, rec, mem, incoherent,
                                                 sum(1 for x, y in zip(got, want) if x != y),
                                                 len(want)))
        finally:
            for a in self.apps:
                a.call("resume")
        ev.row["standbys"] = "ok" if not bad else "BAD"
        ev.notes.append("%s rejoined; standbys streaming, coherent, reads equal the primary's"
                        % old_primary if not bad else "; ".join(bad))
        for b in bad:
            ev.fail(b)

    # -- the events ------------------------------------------------------------

    def begin(self, title):
        print("\n== %s" % title, flush=True)
        ev = Event(title)
        self.events.append(ev)
        return ev

    def end(self, ev):
        print("  %s%s" % ("ok" if not ev.failures else "FAILED",
                          "".join("\n  - " + f for f in ev.failures)), flush=True)

    def timed_switch(self, ev, action, expect_new):
        """Run action (which loses or moves the primary) and measure."""
        old = self.f.settled() or self.f.primary()
        old_port = self.f.ports[old]
        ev.row["from"] = old
        t0 = time.time()
        action(old)
        first, port = self.probe_first_write(t0, old_port if expect_new else None)
        end = time.time()
        self.windows.append((t0 - FLUSH - SLACK, t0, end))
        if first is None:
            ev.fail("no write succeeded within 180 s")
            return old
        new = [n for n, p in self.f.ports.items() if p == port][0]
        ev.row["to"] = new
        ev.row["write"] = "%.2f s" % first
        # the time until every node is back in place (the old primary a
        # standby again), watched from now on
        ev.settled = {}

        def watch():
            if poll(lambda: self.f.settled(), 300, 0.25):
                ev.settled["t"] = time.time() - t0
        ev.watcher = threading.Thread(target=watch, daemon=True)
        ev.watcher.start()
        self.say("%s -> %s: first write %.2f s after the event" % (old, new, first))
        pw, worker = self.prewarm_time(t0)
        ev.row["prewarm"] = "%.2f s" % pw if pw is not None else "NO"
        ev.notes.append("memory held every live durable entry %s after the event; the prewarm"
                        " worker: %s" % ("%.2f s" % pw if pw is not None else "never",
                                         "%s entries in %s ms" % worker if worker else "-"))
        if pw is None:
            ev.fail("the new primary's memory never held every live durable entry")
        self.say("memory holds every live durable entry %.2f s after the event"
                 % (pw or float("nan")))
        return old

    def perform(self, ev, what):
        """pg_autoctl perform failover|switchover, on the monitor's node."""
        try:
            self.f.autoctl("perform", what, "--pgdata", self.f.pgdata("monitor"),
                           "--formation", "default", "--group", "0", "--wait", "120",
                           timeout=180)
        except HAError as exc:
            # the command waits for the monitor's notifications; when it
            # misses them the failover may still have happened: the first
            # write and the checks tell
            ev.notes.append("pg_autoctl perform %s reported an error: %s"
                            % (what, str(exc).splitlines()[-1]))

    def event_failover(self):
        ev = self.begin("1 perform failover")
        old = self.timed_switch(ev, lambda o: self.perform(ev, "failover"), True)
        self.check(ev, old)
        self.end(ev)

    def event_switchover(self):
        ev = self.begin("2 perform switchover")
        old = self.timed_switch(ev, lambda o: self.perform(ev, "switchover"), True)
        self.check(ev, old)
        self.end(ev)

    def event_postmaster_kill(self):
        ev = self.begin("3 kill -9 postmaster")
        old = self.timed_switch(ev, lambda o: os.kill(self.f.postmaster_pid(o), signal.SIGKILL),
                                False)
        ev.notes.append("pg_autoctl restarted the killed postmaster (crash recovery in place);"
                        " primary before %s, after %s" % (old, ev.row.get("to")))
        self.check(ev, old)
        self.end(ev)

    def event_machine_kill(self):
        ev = self.begin("4 kill -9 node")
        killed = []

        def kill(o):
            self.f.kill_machine(o)
            killed.append(o)
        old = self.timed_switch(ev, kill, True)
        # the machine comes back: its pg_autoctl rejoins as a standby (pg_rewind)
        self.f.start(killed[0])
        self.say("%s's pg_autoctl started again" % killed[0])
        self.check(ev, old)
        self.end(ev)

    # -- report ------------------------------------------------------------------

    def stop(self):
        self.final = {}
        for a in self.apps:
            try:
                st = a.call("state", timeout=10)[1]
                for k, v in st["counts"].items():
                    self.final[k] = self.final.get(k, 0) + v
                self.final["ledger"] = self.final.get("ledger", 0) + st["ledger"]
            except Exception:
                pass
        for a in self.apps:
            if a.proc.exitcode is None:
                try:
                    a.pipe.send(("stop",))
                    a.pipe.poll(10)
                except (OSError, EOFError):
                    pass
                a.proc.join(5)
            if a.proc.exitcode is None:
                a.proc.kill()
                a.proc.join(5)

    def report(self):
        cols = [("event", "title"), ("from", "from"), ("to", "to"), ("first write", "write"),
                ("prewarm", "prewarm"), ("checked", "checked"), ("lost", "lost"),
                ("expired early", "early"), ("timers off", "timers"), ("lost touches", "lag"),
                ("bulk", "bulk"), ("members", "members"), ("view id", "view"),
                ("invalidation", "inval"), ("rejoin", "rejoin"), ("standbys", "standbys"),
                ("result", "result")]
        rows = []
        for ev in self.events:
            r = dict(ev.row, title=ev.title, result="FAIL" if ev.failures else "PASS")
            rows.append([str(r.get(k, "-")) for _, k in cols])
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, (h, _) in enumerate(cols)]

        def line(cells):
            return "  ".join(c.ljust(w) if i in (0, 1, 2) or i == len(cols) - 1 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        print()
        print("sessioncache on pg_auto_failover: monitor + %d data nodes, %d bulk offline"
              " sessions, 3 app nodes (lease %g s), flush_interval %g s, %s failure detection"
              % (self.args.nodes, self.args.bulk, self.args.lease, FLUSH,
                 "default" if self.args.default_timeouts else "fast (5 s unhealthy, 10 s demote)"))
        print()
        print(line([h for h, _ in cols]))
        print(line(["-" * w for w in widths]))
        for r in rows:
            print(line(r))
        print()
        f = getattr(self, "final", {})
        if f:
            print("app nodes: %d calls (%d logins, %d offline sessions, %d refreshes, %d patches,"
                  " %d logouts), %d failed while the database switched and were retried;"
                  " ledger of %d keys" % (f.get("ops", 0), f.get("logins", 0),
                                          f.get("offline", 0), f.get("refreshes", 0),
                                          f.get("patches", 0), f.get("logouts", 0),
                                          f.get("failed", 0), f.get("ledger", 0)))
        for n in getattr(self, "setup_notes", []):
            print("setup: " + n)
        for ev in self.events:
            for n in ev.notes:
                print("%s: %s" % (ev.title, n))
        print()
        for ev in self.events:
            print("event %s: %s" % (ev.title, "FAIL" if ev.failures else "PASS"))
            for x in ev.failures:
                print("  - " + x)

    def main(self):
        t = time.monotonic()
        try:
            self.setup()
            for e in (self.event_failover, self.event_switchover, self.event_postmaster_kill,
                      self.event_machine_kill):
                e()
                time.sleep(self.args.settle)
        except Exception as exc:
            ev = self.events[-1] if self.events else self.begin("setup")
            ev.fail("aborted: %s" % (exc if isinstance(exc, HAError)
                                     else traceback.format_exc().strip()))
        finally:
            self.stop()
            self.f.stop_all()
        ok = len(self.events) == 4 and not any(ev.failures for ev in self.events)
        self.report()
        print("total %.1f s; every process stopped; logs in %s" % (time.monotonic() - t, self.top))
        print("RESULT: %s" % ("PASS" if ok else "FAIL"))
        return 0 if ok else 1


BULK_PUT = """
SELECT count(sessioncache.put('offline_sessions', 'bulk-' || g,
        jsonb_build_object('user', 'bulkuser-' || (g %% 50000), 'token', md5(g::text),
                           'client', 'account-console', 'scope', 'openid offline_access'),
        'bulkuser-' || (g %% 50000)))
FROM generate_series(%s::int, %s::int) g"""

BULK_CHECK = """
SELECT count(*) FROM generate_series(1, %s::int) g
WHERE sessioncache.get('offline_sessions', 'bulk-' || g)
      = jsonb_build_object('user', 'bulkuser-' || (g %% 50000), 'token', md5(g::text),
                           'client', 'account-console', 'scope', 'openid offline_access')"""

SAMPLE_READ = """
SELECT k, sessioncache.get(d.name, k)
FROM unnest(%s::text[]) k,
     LATERAL (SELECT d.name FROM sessioncache.durable_entries t
              JOIN sessioncache.cache_defs d ON d.id = t.cache_id WHERE t.key = k LIMIT 1) d
ORDER BY k"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="working directory (short: Unix sockets)")
    ap.add_argument("--bulk", type=int, default=100000,
                    help="durable entries loaded before the load starts (pre-warm is timed)")
    ap.add_argument("--nodes", type=int, default=2, choices=(2, 3))
    ap.add_argument("--lease", type=float, default=30.0, help="the app nodes' lease (s)")
    ap.add_argument("--threads", type=int, default=2, help="request threads per app node")
    ap.add_argument("--rate", type=float, default=40.0, help="calls per second per thread")
    ap.add_argument("--settle", type=float, default=5.0, help="load before each event (s)")
    ap.add_argument("--default-timeouts", action="store_true",
                    help="keep pg_auto_failover's default failure detection (20 s + 30 s)")
    ap.add_argument("--no-worker-workaround", dest="worker_workaround", action="store_false",
                    help="leave synchronous_commit = on for the workers too (shows the"
                    " shutdown hang of the old primary that the C fix removes)")
    ap.add_argument("--quick", action="store_true", help="the test suite's size: 2,000 bulk")
    args = ap.parse_args()
    if args.quick:
        args.bulk, args.settle = 2000, 3.0
    if os.geteuid() == 0:
        ap.error("run as an unprivileged user (PostgreSQL refuses root), e.g. runuser -u postgres")
    if len(os.path.join(os.path.abspath(args.dir), ".s.PGSQL.65535")) > 100:
        ap.error("--dir: too long a path for Unix sockets")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    return HA(args).main()


if __name__ == "__main__":
    sys.exit(main())
