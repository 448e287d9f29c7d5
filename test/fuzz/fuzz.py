#!/usr/bin/python3
"""Concurrent fuzzer for the sessioncache SQL API.

Run by test/fuzz/run.sh against a private server; see test/fuzz/README.md.

Several worker threads (one connection each) call every public function of
sessioncache with random and hostile arguments, always as bound parameters,
inside transactions that commit, roll back, roll back to savepoints or try
PREPARE TRANSACTION, while a chaos thread cancels and terminates their
backends.  Each worker also owns a set of keys in two tracked caches and
models exactly what it committed to them, so the values read back can be
checked.  Afterwards the harness checks that:

  (a) the server never restarted (server log, pg_postmaster_start_time());
  (b) every error carried an allowed SQLSTATE (histogram printed);
  (c) the invariants hold: check_memory(), cache_stats vs memory, the durable
      table vs what the API returns, and the tracked keys' final values;
plus security probes (privileges, the durable table's guard, and caller
objects reached by the extension's internal SQL).

Exit status: 0 when everything holds, 1 on any violation, 2 on a harness
error.
"""

import argparse
import collections
import json
import os
import random
import re
import sys
import threading
import time
import traceback

import psycopg
from psycopg.types.string import TextLoader

# ---------------------------------------------------------------------------
# What errors are allowed
# ---------------------------------------------------------------------------

# SQLSTATEs the API documents (API.md and README.md's error table) and the
# ones PostgreSQL itself raises while parsing or casting the arguments, or
# for what the harness does on purpose (cancel, terminate, deadlocks between
# random multi-key transactions, privilege probes).
ALLOWED = {
    '42704': 'unknown cache (API)',
    '22023': 'bad argument: empty key, bad name/policy, timeout not positive (API)',
    '22004': 'NULL argument (API)',
    '54000': 'key/user_id over 255 bytes, value over the limit (API)',
    '22008': 'timeout over 100 years (README); interval input out of range (PG)',
    '22003': 'incr out of range (README); bigint/int cast out of range (PG)',
    'SC001': 'lease lapsed on heartbeat (API)',
    'SC002': 'per-user limit with policy deny (API)',
    '53200': 'shared memory full for a non-durable cache (API)',
    '53400': 'more than 64 caches (README)',
    '0A000': 'PREPARE TRANSACTION after a cache write (API); durability change',
    '42501': 'privilege probes; direct change of the durable table (README)',
    '22P02': 'invalid input syntax (jsonb, boolean, integer input; PG)',
    '22P05': 'jsonb \\u0000 escape (PG jsonb input)',
    '22007': 'invalid interval syntax (PG interval input)',
    '54001': 'stack depth limit exceeded (PG jsonb input of deep nesting)',
    '40P01': 'deadlock between random multi-key transactions (PG)',
    '40001': 'serialization failure in REPEATABLE READ/SERIALIZABLE (PG)',
    '57014': 'query canceled (pg_cancel_backend, statement_timeout)',
    '57P01': 'admin shutdown (pg_terminate_backend)',
    '25P02': 'statement in a failed transaction (harness does it on purpose)',
}
# the harness's own connection-level outcomes (no SQLSTATE)
CONN_LOST = '(conn-lost)'

ROLE_APP = 'fz_app'
ROLE_MON = 'fz_mon'
ROLE_NOBODY = 'fz_nobody'
ROLE_EVIL = 'fz_evil'

# caches: names starting with fz_d are durable, fz_m are memory-only
FIXED_CACHES = [
    # name, durable, idle, max, max_per_user, policy, notify
    ('fz_d0', True, '2 s', '10 s', None, 'deny', True),
    ('fz_d1', True, None, None, None, 'deny', True),
    ('fz_dlim', True, '30 s', None, 3, 'deny', True),
    ('fz_devict', True, '5 s', None, 2, 'evict_oldest', False),
    ('fz_m0', False, '1 s', '3 s', None, 'deny', True),
    ('fz_m1', False, '8 s', None, None, 'deny', False),
    ('fz_mlim', False, '20 s', None, 2, 'evict_oldest', True),
    ('fz_own_d', True, None, None, None, 'deny', True),
    ('fz_own_m', False, None, None, None, 'deny', True),
]
TMP_CACHES = ['fz_dt0', 'fz_dt1', 'fz_mt0', 'fz_mt1']
BUILTIN_CACHES = ['sessions', 'offline_sessions', 'auth_sessions', 'login_failures']
OWNED_CACHES = ['fz_own_d', 'fz_own_m']
DURABLE_NAMES = {'sessions', 'offline_sessions', 'login_failures'}


def cache_is_durable(name):
    return name in DURABLE_NAMES or (isinstance(name, str) and name.startswith('fz_d'))


class ConnLost(Exception):
    """The worker's connection is gone (terminated, or the server died)."""


# ---------------------------------------------------------------------------
# Results shared by all threads
# ---------------------------------------------------------------------------

class Results:
    def __init__(self, max_print=40):
        self.lock = threading.Lock()
        self.hist = collections.Counter()          # sqlstate -> n
        self.per_op = collections.Counter()        # (op, sqlstate) -> n
        self.samples = {}                          # sqlstate -> (op, message)
        self.calls = 0
        self.ok = 0
        self.violations = []
        self.details = []
        self.warnings = []
        self.style = collections.Counter()         # message -> n
        self.max_print = max_print
        self.unexpected_conn_losses = 0

    def violation(self, msg, detail=None):
        with self.lock:
            self.violations.append(msg)
            if detail:
                self.details.append((msg, detail))
            if len(self.violations) <= self.max_print:
                print('VIOLATION: ' + msg, file=sys.stderr, flush=True)

    def warning(self, msg):
        with self.lock:
            if msg not in self.warnings:
                self.warnings.append(msg)

    def record(self, op, sqlstate, message=None):
        with self.lock:
            self.calls += 1
            if sqlstate is None:
                self.ok += 1
                self.per_op[(op, 'ok')] += 1
                return
            self.hist[sqlstate] += 1
            self.per_op[(op, sqlstate)] += 1
            if sqlstate not in self.samples:
                self.samples[sqlstate] = (op, (message or '')[:300])


# ---------------------------------------------------------------------------
# Literals for the journal (a replayable SQL transcript of each worker)
# ---------------------------------------------------------------------------

_unit_res = {}


def _encode_long(s):
    """A long string as a concatenation of literals and repeat() calls, so
    that the journal stays small and replayable."""
    parts = []
    lit = []
    i = 0
    n = len(s)
    while i < n:
        best_len, best_unit = 0, None
        for ulen in range(1, 9):
            u = s[i:i + ulen]
            if len(u) < ulen:
                break
            r = _unit_res.get(u)
            if r is None:
                if len(_unit_res) > 500:
                    _unit_res.clear()
                r = _unit_res[u] = re.compile('(?:%s)+' % re.escape(u))
            m = r.match(s, i)
            covered = m.end() - i
            if covered > best_len and covered >= 40:
                best_len, best_unit = covered - covered % ulen, u
        if best_unit is not None:
            if lit:
                parts.append("'" + ''.join(lit).replace("'", "''") + "'")
                lit = []
            parts.append("repeat('%s', %d)" % (best_unit.replace("'", "''"),
                                                best_len // len(best_unit)))
            i += best_len
        else:
            lit.append(s[i])
            i += 1
        if len(parts) > 40 or len(lit) > 2000:
            return "'" + s[:100].replace("'", "''") + "...' /* %d chars, truncated */" % n
    if lit:
        parts.append("'" + ''.join(lit).replace("'", "''") + "'")
    return '(' + ' || '.join(parts) + ')'


def sql_literal(v):
    if v is None:
        return 'NULL'
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if len(s) > 120:
        return _encode_long(s)
    return "'" + s.replace("'", "''") + "'"


def render(sqltext, params):
    out = sqltext
    for p in params or ():
        out = out.replace('%s', sql_literal(p), 1)
    return out


def canon(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'))


def jl(text):
    """jsonb arrives as text (values may nest deeper than Python's json
    module can parse): parse it where a value is compared."""
    return None if text is None else json.loads(text)


def connect(dsn, **kw):
    conn = psycopg.connect(dsn, autocommit=True, **kw)
    # as text: jsonb may nest deeper than Python's json module parses, and
    # timestamps may be infinity, which Python's datetime cannot hold
    for t in ('jsonb', 'json', 'timestamptz', 'timestamp', 'interval'):
        conn.adapters.register_loader(t, TextLoader)
    return conn


# ---------------------------------------------------------------------------
# Hostile arguments
# ---------------------------------------------------------------------------

class Gen:
    """Random arguments, mostly ordinary, sometimes hostile."""

    def __init__(self, rng, huge_budget, hostile=0.15):
        self.rng = rng
        self.huge_budget = huge_budget
        self.hostile = hostile

    def coin(self, p):
        return self.rng.random() < p

    def huge(self, unit='x'):
        """A multi-megabyte string, within the run's budget (each one also
        lands in the server log when an error message echoes it)."""
        if self.huge_budget <= 0:
            return unit * 300
        self.huge_budget -= 1
        return unit * self.rng.choice([1 << 20, 3 << 20])

    def cache(self):
        r = self.rng.random()
        if r < 0.80 or not self.coin(self.hostile * 4):
            return self.rng.choice([c[0] for c in FIXED_CACHES] + TMP_CACHES * 2 +
                                   BUILTIN_CACHES)
        return self.rng.choice([
            None, '', 'nope', 'Sessions', ' sessions', 'sessions ', 'sessions\n',
            'a' * 63, 'a' * 64, "x'; DROP TABLE sessioncache.cache_defs; --",
            'a"b', 'fz;d0', 'ñandú', 'fz_d0\t', 'FZ_D0', '%s', '\\', '..', ':-_.',
            'fz_dt9', 'séance', '\u202e', 'a' * 1000,
        ] + ([self.huge('c')] if self.coin(0.02) else []))

    def key(self):
        if not self.coin(self.hostile):
            return 'k%d' % self.rng.randrange(40)
        return self.rng.choice([
            None, '', ' ', 'a' * 255, 'a' * 256, 'é' * 127 + 'a', 'é' * 128,
            '€' * 85, '€' * 86, "k'; --", 'k"', 'k;k', '\n', '\t\r', '\\',
            '%s', '%%', 'own', 'bulk:1', '🙂' * 63, '🙂' * 64, 'k' * 10000,
        ] + ([self.huge('k')] if self.coin(0.05) else []))

    def user(self, null_ok=True):
        if not self.coin(self.hostile):
            if null_ok and self.coin(0.3):
                return None
            return 'u%d' % self.rng.randrange(10)
        return self.rng.choice([
            None, '', 'u' * 255, 'u' * 256, 'é' * 128, "u'--", 'u"', '%s',
            'u' * 5000,
        ] + ([self.huge('u')] if self.coin(0.05) else []))

    _deep = {}

    def deep(self, n, opener='['):
        k = (n, opener)
        if k not in Gen._deep:
            closer = {'[': ']', '{"a":': '}'}[opener]
            Gen._deep[k] = opener * n + '1' + closer * n
        return Gen._deep[k]

    def small_json(self, depth=0):
        r = self.rng.random()
        if depth > 2 or r < 0.3:
            return self.rng.choice([0, 1, -7, 2 ** 40, 'x', 'ünï', True, None, 1.5, ''])
        if r < 0.5:
            return [self.small_json(depth + 1) for _ in range(self.rng.randrange(4))]
        return {'f%d' % self.rng.randrange(6): self.small_json(depth + 1)
                for _ in range(self.rng.randrange(5))}

    def value(self):
        """jsonb input text (cast with ::jsonb in the statement)."""
        if not self.coin(self.hostile):
            v = self.small_json()
            if self.coin(0.7):
                v = {'v': v, 'n': self.rng.randrange(100)}
            if self.coin(0.1):
                v = {'pad': 'p' * self.rng.choice([1000, 8000, 15000, 16300, 20000])}
            return json.dumps(v)
        return self.rng.choice([
            None, '', '{', '{"a":}', 'nan', "'", '[1,2', '{"a":1,"a":2}', 'null',
            'true', '1', '"s"', '[]', '{}', '1e400', '-0', '1.5', '"\\u0000"',
            '"\\ud800"', '{"n": 9223372036854775807}', '{"n": 9223372036854775808}',
            '{"n": -9223372036854775808}', '{"n": 1e30}', '{"n": 1.5}', '{"n": "7"}',
            '{"n": null}', '{"n": 1e1000000}', '{"n": 0.0000001}',
            self.deep(self.rng.choice([100, 5000, 200000])),
            self.deep(self.rng.choice([100, 5000, 200000]), '{"a":'),
            json.dumps({'pad': 'q' * self.rng.choice([60000, 1 << 20, (1 << 20) - 100])}),
        ] + ([json.dumps({'pad': self.huge('v')})] if self.coin(0.1) else []))

    def patch(self):
        if not self.coin(self.hostile):
            return json.dumps({'p%d' % self.rng.randrange(4): self.small_json(1)})
        return self.value()

    def interval(self):
        if not self.coin(self.hostile * 2):
            return self.rng.choice([None, None, '1 s', '3 s', '1 min', '1 hour', '1 day'])
        return self.rng.choice([
            '0', '-1 s', '-1 day', '1 microsecond', '1 ms', '100 years',
            '100 years 1 day', '1000 years', '1000000000 years', '1 mon -29 days',
            '1 mon -31 days', '-1 mon 31 days', 'P1D', '@ 1 hour ago', 'foo', '',
            '2147483647 days', '-2147483648 months', '00:00:00.000001',
            '178000000 years', '1 year -12 months',
        ])

    def lease(self):
        if not self.coin(self.hostile * 2):
            return self.rng.choice(['50 ms', '200 ms', '1 s', '30 s', None])
        return self.rng.choice([None, '0', '-1 s', '1 microsecond', '1 day',
                                '1 day 1 s', '2 days', 'foo', '1000000000 years'])

    def field(self):
        if not self.coin(self.hostile):
            return self.rng.choice(['n', 'n', 'c', 'v'])
        return self.rng.choice([None, '', 'a"b', '\\', 'x' * 300, "f'", 'é', 'pad',
                                'x' * 20000])

    def delta(self):
        if not self.coin(self.hostile):
            return self.rng.randint(-3, 5)
        return self.rng.choice([None, 0, 2 ** 63 - 1, -2 ** 63, 2 ** 63, -2 ** 63 - 1,
                                2 ** 62, 10 ** 30])

    def boolean(self, default=True):
        if not self.coin(self.hostile):
            return default if self.coin(0.7) else not default
        return None

    def cluster(self):
        if not self.coin(self.hostile):
            return 'c%d' % self.rng.randrange(3)
        return self.rng.choice([None, '', 'c' * 255, 'c' * 256, "c'; --", 'c"', '%s'])

    def node(self):
        if not self.coin(self.hostile):
            return 'n%d' % self.rng.randrange(6)
        return self.rng.choice([None, '', 'n' * 255, 'n' * 256, "n'", 'é' * 128])

    def address(self):
        if not self.coin(self.hostile):
            return self.rng.choice([None, 'host:8080', '10.0.0.1:7800'])
        return self.rng.choice(['', 'a' * 1024, 'a' * 1025, "h'; --"])


# ---------------------------------------------------------------------------
# The model of a worker's own keys
# ---------------------------------------------------------------------------

class Owned:
    """What one worker committed to the keys only it writes.

    A state is None (absent) or (canonical json, user).  committed maps
    (cache, key) to the list of possible committed states: one normally, two
    after a commit whose outcome the client could not see (the connection
    died); the next read decides.  pending is the current transaction's
    overlay; savepoints a stack of (name, overlay copy, wrote flag)."""

    NKEYS = 12

    def __init__(self, w):
        self.w = w
        self.user = 'ou%d' % w
        self.keys = ['own:%d:%d' % (w, j) for j in range(self.NKEYS)]
        self.committed = {}
        self.versions = {}     # (cache, key) -> highest committed version known
        self.pending = {}
        self.pending_versions = {}

    def current(self, ck):
        if ck in self.pending:
            return [self.pending[ck]]
        return self.committed.get(ck, [None])

    def begin(self):
        self.pending = {}
        self.pending_versions = {}

    def commit(self):
        for ck, st in self.pending.items():
            self.committed[ck] = [st]
        for ck, v in self.pending_versions.items():
            self.versions[ck] = max(self.versions.get(ck, 0), v)
        self.begin()

    def commit_unknown(self):
        """The commit's outcome is unknown: either state is possible."""
        for ck, st in self.pending.items():
            cands = list(self.committed.get(ck, [None]))
            if st not in cands:
                cands.append(st)
            self.committed[ck] = cands
        self.begin()

    def rollback(self):
        self.begin()


# ---------------------------------------------------------------------------
# A worker
# ---------------------------------------------------------------------------

class Worker(threading.Thread):
    def __init__(self, idx, h):
        super().__init__(name='worker-%d' % idx, daemon=True)
        self.idx = idx
        self.h = h                      # the harness
        self.rng = random.Random(h.seed * 1000 + idx)
        self.gen = Gen(self.rng, h.huge_budget)
        self.conn = None
        self.pid = None
        self.terminated_at = 0.0        # when chaos last terminated our backend
        self.journal = collections.deque(maxlen=300)
        self.model = Owned(idx)
        self.member_ids = collections.deque(maxlen=20)
        self.in_txn = False
        self.txn_failed = False
        self.wrote = False              # a cache write that must refuse PREPARE
        self.savepoints = []            # (name, pending copy, pending_versions copy, wrote)
        self.sp_counter = 0
        self.gid_counter = 0
        self.inflight = {}
        self.error = None

    def violation(self, msg):
        tail = list(self.journal)[-25:]
        self.h.results.violation('worker %d: %s' % (self.idx, msg),
                                 detail='\n'.join('      ' + l[:300] for l in tail))

    # -- connection ------------------------------------------------------

    def connect(self):
        self.pid = None
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        last = None
        for _ in range(300):
            if self.h.stop.is_set() and self.h.hard_stop.is_set():
                raise ConnLost('stopping')
            try:
                conn = connect(self.h.dsn, connect_timeout=10)
                conn.execute("SET statement_timeout = '15s'")
                conn.execute("SET application_name = 'fuzz-w%d'" % self.idx)
                self.conn = conn
                self.pid = conn.info.backend_pid
                self.journal.append('-- connected, backend pid %d' % self.pid)
                return
            except psycopg.Error as e:
                last = e
                time.sleep(0.1)
        raise RuntimeError('cannot reconnect: %s' % last)

    # -- running one statement ------------------------------------------

    def run(self):
        try:
            self.connect()
            while not self.h.stop.is_set():
                try:
                    self.one_round()
                except ConnLost as e:
                    self.after_conn_lost(str(e))
                    if self.h.stop.is_set():
                        break
                    self.connect()
        except Exception as e:      # a harness bug: report, don't hide
            self.error = '%s\n%s' % (e, traceback.format_exc())
            self.violation('worker %d stopped on a harness error: %s' %
                                     (self.idx, e))
        finally:
            try:
                if self.conn is not None:
                    self.conn.close()
            except Exception:
                pass

    def after_conn_lost(self, why=''):
        recent = time.time() - self.terminated_at < 5.0
        if not recent:
            with self.h.results.lock:
                self.h.results.unexpected_conn_losses += 1
            last = [l for l in self.journal if not l.startswith('--')][-1:]
            self.h.results.warning('worker %d lost its connection (not terminated by the harness): '
                                   '%s after: %s' % (self.idx, why[:200], last[0][:300] if last else '?'))
        if self.in_txn:
            if self.txn_failed:
                self.model.rollback()
            else:
                # the server rolled back unless we were in COMMIT: handled there
                self.model.rollback()
        self.in_txn = False
        self.txn_failed = False
        self.savepoints = []
        self.wrote = False

    def ex(self, op, sqltext, params=None, counted=True, fetch=True):
        """Execute one statement.  Returns (rows or None, sqlstate or None,
        message).  Raises ConnLost when the connection is gone."""
        self.journal.append(render(sqltext, params) + ';')
        try:
            cur = self.conn.execute(sqltext, params)
            rows = cur.fetchall() if (fetch and cur.description is not None) else None
        except psycopg.Error as e:
            st = getattr(e, 'sqlstate', None)
            msg = str(e).split('\n')[0]
            diag = getattr(e, 'diag', None)
            primary = diag.message_primary if diag is not None else None
            self.journal.append('-- => ERROR %s: %s' % (st, msg[:200]))
            if st is None:
                if not (self.conn.closed or self.conn.broken):
                    raise RuntimeError('client-side error on %s: %s' % (op, msg))
                if counted:
                    self.h.results.record(op, CONN_LOST, msg)
                    self.h.count_call()
                raise ConnLost(msg)
            if counted:
                self.h.results.record(op, st, msg)
                self.h.count_call()
            self.h.check_style(op, st, primary)
            if self.conn.closed or self.conn.broken:
                raise ConnLost(msg)
            if self.in_txn:
                self.txn_failed = True
            return None, st, msg
        if counted:
            self.h.results.record(op, None)
            self.h.count_call()
        return rows, None, None

    # -- transactions ---------------------------------------------------

    def one_round(self):
        r = self.rng.random()
        if r < 0.35:
            # autocommit: each statement its own transaction
            for _ in range(self.rng.randint(1, 4)):
                self.step(autocommit=True)
            return
        if not self.begin():
            return
        for _ in range(self.rng.randint(1, 8)):
            if self.h.stop.is_set():
                break
            r = self.rng.random()
            if r < 0.10:
                self.savepoint()
            elif r < 0.17 and self.savepoints:
                self.rollback_to()
            elif r < 0.20 and self.savepoints:
                self.release()
            elif self.txn_failed:
                if self.savepoints and self.coin(0.6):
                    self.rollback_to()
                elif self.coin(0.2):
                    # a statement in a failed transaction: 25P02
                    self.random_op()
                else:
                    break
            else:
                self.step(autocommit=False)
        self.finish()

    def coin(self, p):
        return self.rng.random() < p

    def begin(self):
        iso = self.rng.choices(['', ' ISOLATION LEVEL REPEATABLE READ',
                                ' ISOLATION LEVEL SERIALIZABLE'], [80, 15, 5])[0]
        self.model.begin()
        self.savepoints = []
        self.wrote = False
        self.txn_failed = False
        rows, st, msg = self.ex('BEGIN', 'BEGIN' + iso, counted=False)
        if st is not None:
            if st != '57014':
                self.violation('BEGIN failed with %s: %s' % (st, msg))
            self.end_block()
            return False
        self.in_txn = True
        return True

    def savepoint(self):
        if self.txn_failed:
            return
        self.sp_counter += 1
        name = 'sp%d' % self.sp_counter
        rows, st, msg = self.ex('SAVEPOINT', 'SAVEPOINT ' + name, counted=False)
        if st is None:
            self.savepoints.append((name, dict(self.model.pending),
                                    dict(self.model.pending_versions), self.wrote))
        else:
            self.check_harness_state(st, msg, 'SAVEPOINT')

    def rollback_to(self):
        i = self.rng.randrange(len(self.savepoints))
        name, pend, pver, wrote = self.savepoints[i]
        rows, st, msg = self.ex('ROLLBACK TO', 'ROLLBACK TO SAVEPOINT ' + name,
                                counted=False)
        if st is None:
            # the savepoint stays; later ones are gone
            self.savepoints = self.savepoints[:i + 1]
            self.model.pending = dict(pend)
            self.model.pending_versions = dict(pver)
            self.wrote = wrote
            self.txn_failed = False
        else:
            self.check_harness_state(st, msg, 'ROLLBACK TO')

    def release(self):
        if self.txn_failed:
            return
        i = self.rng.randrange(len(self.savepoints))
        name = self.savepoints[i][0]
        rows, st, msg = self.ex('RELEASE', 'RELEASE SAVEPOINT ' + name, counted=False)
        if st is None:
            self.savepoints = self.savepoints[:i]
        else:
            self.check_harness_state(st, msg, 'RELEASE')

    def check_harness_state(self, st, msg, what):
        if st not in ('57014', '57P01', '40P01', '40001', '25P02'):
            self.violation('%s failed with %s: %s' % (what, st, msg))

    def finish(self):
        r = self.rng.random()
        if self.txn_failed:
            r *= 0.9          # no PREPARE of a failed transaction
        if r < 0.62:
            self.commit()
        elif r < 0.9:
            self.rollback()
        else:
            self.prepare()

    def server_in_txn(self):
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def end_block(self):
        """Make sure no transaction block is left open: a cancel that arrives
        just before COMMIT, ROLLBACK or PREPARE runs fails the block instead
        of ending it."""
        for _ in range(5):
            if not self.server_in_txn():
                break
            self.ex('ROLLBACK', 'ROLLBACK', counted=False)
        self.in_txn = False
        self.txn_failed = False

    def commit(self):
        failed = self.txn_failed
        try:
            rows, st, msg = self.ex('COMMIT', 'COMMIT', counted=False)
        except ConnLost:
            if not failed:
                self.model.commit_unknown()
            else:
                self.model.rollback()
            self.in_txn = False
            raise
        if st is None and not failed:
            self.model.commit()
        else:
            # an error at COMMIT means it did not commit
            self.model.rollback()
        self.end_block()

    def rollback(self):
        try:
            self.ex('ROLLBACK', 'ROLLBACK', counted=False)
            self.end_block()
        finally:
            self.in_txn = False
            self.model.rollback()

    def prepare(self):
        self.gid_counter += 1
        gid = 'fz_%d_%d_%d' % (self.h.seed % 100000, self.idx, self.gid_counter)
        wrote = self.wrote
        try:
            rows, st, msg = self.ex('PREPARE TRANSACTION',
                                    "PREPARE TRANSACTION '%s'" % gid)
        except ConnLost:
            # the server rolled back unless the PREPARE went through
            self.model.commit_unknown()
            self.in_txn = False
            raise
        if st is not None:
            self.end_block()
        self.in_txn = False
        if st is not None:
            self.model.rollback()
            if wrote and st != '0A000' and st not in ('57014', '40001', '40P01'):
                self.violation(
                    'PREPARE TRANSACTION after a cache write failed with %s, not 0A000: %s'
                    % (st, msg))
            return
        if wrote:
            self.violation(
                'PREPARE TRANSACTION succeeded after a cache write (API: 0A000); gid %s'
                % gid)
        # finish the prepared transaction from this (now idle) session
        how = 'COMMIT PREPARED' if self.coin(0.5) else 'ROLLBACK PREPARED'
        try:
            rows, st, msg = self.ex(how, "%s '%s'" % (how, gid), counted=False)
        except ConnLost:
            self.model.commit_unknown()
            raise
        if st is None and how == 'COMMIT PREPARED':
            self.model.commit()
        elif st is None:
            self.model.rollback()
        else:
            self.model.commit_unknown()

    # -- one step: an owned-key operation or a random one ---------------

    def step(self, autocommit):
        if self.coin(0.30) and 'owned' not in self.h.skip:
            self.owned_op(autocommit)
        else:
            self.random_op()

    def set_wrote(self, cond=True):
        if cond:
            self.wrote = True

    # -- owned keys: exact expectations -------------------------------

    def owned_op(self, autocommit):
        m = self.model
        cache = self.rng.choice(OWNED_CACHES)
        key = self.rng.choice(m.keys)
        ck = (cache, key)
        if autocommit:
            m.begin()
        self.inflight = {}
        try:
            cands = m.current(ck)
            if len(cands) > 1:
                if not self.resolve(ck, cands):
                    return
                cands = m.current(ck)
            cur = cands[0]
            ops = ['put'] * 35 + ['patch'] * 13 + ['incr'] * 13 + ['delete'] * 10 + \
                ['get'] * 14 + ['touch'] * 3 + ['delete_user'] * 4 + \
                ['user_entries'] * 4 + ['entry_info'] * 4
            op = self.rng.choice(ops)
            getattr(self, 'own_' + op)(cache, key, ck, cur)
        except ConnLost:
            if autocommit:
                # the statement may have committed before the connection died
                m.pending.update(self.inflight)
                m.commit_unknown()
            raise
        if autocommit:
            m.commit()

    def state_of(self, value, user):
        return None if value is None else (canon(value), user)

    def fmt_state(self, st):
        return 'absent' if st is None else '%s (user %s)' % st

    def resolve(self, ck, cands):
        """After a commit of unknown outcome: read the key, check it is one of
        the possible states, and adopt it."""
        cache, key = ck
        rows, st, msg = self.ex('get', 'SELECT sessioncache.get(%s, %s), '
                                '(SELECT user_id FROM sessioncache.entry_info(%s, %s))',
                                (cache, key, cache, key))
        if st is not None:
            self.owned_failed()
            return False
        s = self.state_of(jl(rows[0][0]), rows[0][1])
        if s not in cands:
            self.violation(
                'after a commit of unknown outcome, %s/%s is %s, neither of %s'
                % (cache, key, self.fmt_state(s), [self.fmt_state(c) for c in cands]))
        self.model.committed[ck] = [s]
        return True

    def owned_failed(self):
        """A statement on owned keys failed: the transaction is aborted (or, in
        autocommit, nothing happened)."""
        if not self.in_txn:
            self.model.rollback()

    def own_value(self):
        v = {'w': self.idx, 'n': self.rng.randrange(1000)}
        if self.coin(0.5):
            v['s'] = self.rng.choice(['x', 'ünï', "q'uote", 'a"b', '\\', 'y' * 300])
        if self.coin(0.3):
            v['l'] = [self.rng.randrange(10) for _ in range(self.rng.randrange(5))]
        return v

    def own_put(self, cache, key, ck, cur):
        m = self.model
        v = self.own_value()
        user = m.user if self.coin(0.6) else None
        idle = self.rng.choice([None, None, '1 day', '36500 days'])
        self.inflight = {ck: self.state_of(v, user)}
        rows, st, msg = self.ex('put', 'SELECT sessioncache.put(%s, %s, %s::jsonb, %s, %s::interval)',
                                (cache, key, json.dumps(v), user, idle))
        if st is not None:
            return self.owned_failed()
        version = rows[0][0]
        known = max(m.versions.get(ck, 0), m.pending_versions.get(ck, 0))
        if version is None or version <= known:
            self.violation('put(%s, %s) returned version %s, not above %s'
                                     % (cache, key, version, known))
        m.pending[ck] = self.state_of(v, user)
        m.pending_versions[ck] = version if version is not None else 0
        self.set_wrote()

    def own_patch(self, cache, key, ck, cur):
        m = self.model
        p = {'p%d' % self.rng.randrange(3): self.rng.randrange(100)}
        if self.coin(0.3):
            p['n'] = self.rng.randrange(100)
        if cur is not None:
            merged = json.loads(cur[0])
            merged.update(p)
            self.inflight = {ck: (canon(merged), cur[1])}
        rows, st, msg = self.ex('patch', 'SELECT sessioncache.patch(%s, %s, %s::jsonb)',
                                (cache, key, json.dumps(p)))
        if st is not None:
            return self.owned_failed()
        got = jl(rows[0][0])
        if cur is None:
            if got is not None:
                self.violation('patch(%s, %s) of an absent key returned %s'
                                         % (cache, key, canon(got)))
            return
        if got is None or canon(got) != canon(merged):
            self.violation('patch(%s, %s) returned %s, expected %s'
                                     % (cache, key, got and canon(got), canon(merged)))
        m.pending[ck] = (canon(merged), cur[1])
        self.set_wrote()

    def own_incr(self, cache, key, ck, cur):
        m = self.model
        delta = self.rng.randint(-5, 5)
        user = m.user if self.coin(0.6) else None
        if cur is None:
            newv, newuser, n = {'n': delta}, user, delta
        else:
            v = json.loads(cur[0])
            n = v.get('n', 0) + delta
            v['n'] = n
            newv, newuser = v, cur[1]
        self.inflight = {ck: self.state_of(newv, newuser)}
        rows, st, msg = self.ex('incr', 'SELECT sessioncache.incr(%s, %s, %s, %s::bigint, %s)',
                                (cache, key, 'n', delta, user))
        if st is not None:
            return self.owned_failed()
        got = rows[0][0]
        if got != n:
            self.violation('incr(%s, %s) returned %s, expected %s'
                                     % (cache, key, got, n))
        m.pending[ck] = self.state_of(newv, newuser)
        self.set_wrote()

    def own_delete(self, cache, key, ck, cur):
        m = self.model
        self.inflight = {ck: None}
        rows, st, msg = self.ex('delete', 'SELECT sessioncache.delete(%s, %s)', (cache, key))
        if st is not None:
            return self.owned_failed()
        if rows[0][0] != (cur is not None):
            self.violation('delete(%s, %s) returned %s, the key was %s'
                                     % (cache, key, rows[0][0], self.fmt_state(cur)))
        if cur is not None:
            self.set_wrote()
        m.pending[ck] = None

    def own_get(self, cache, key, ck, cur):
        touch = self.rng.choice([None, False, True])
        rows, st, msg = self.ex('get', 'SELECT sessioncache.get(%s, %s, %s), '
                                '(SELECT user_id FROM sessioncache.entry_info(%s, %s))',
                                (cache, key, touch, cache, key))
        if st is not None:
            return self.owned_failed()
        s = self.state_of(jl(rows[0][0]), rows[0][1])
        if s != cur:
            self.violation('get(%s, %s) in %s returned %s, expected %s'
                                     % (cache, key,
                                        'a transaction' if self.in_txn else 'autocommit',
                                        self.fmt_state(s), self.fmt_state(cur)))

    def own_touch(self, cache, key, ck, cur):
        rows, st, msg = self.ex('touch', 'SELECT sessioncache.touch(%s, %s)', (cache, key))
        if st is not None:
            return self.owned_failed()
        if rows[0][0] != (cur is not None):
            self.violation('touch(%s, %s) returned %s, the key was %s'
                                     % (cache, key, rows[0][0], self.fmt_state(cur)))

    def own_states(self, cache):
        """Current states of all own keys of a cache, or None if any is
        ambiguous."""
        out = {}
        for k in self.model.keys:
            c = self.model.current((cache, k))
            if len(c) > 1:
                return None
            out[k] = c[0]
        return out

    def own_delete_user(self, cache, key, ck, cur):
        m = self.model
        states = self.own_states(cache)
        if states is None:
            return self.own_get(cache, key, ck, cur)
        mine = [k for k, s in states.items() if s is not None and s[1] == m.user]
        self.inflight = {(cache, k): None for k in mine}
        rows, st, msg = self.ex('delete_user', 'SELECT sessioncache.delete_user(%s, %s)',
                                (cache, m.user))
        if st is not None:
            return self.owned_failed()
        if rows[0][0] != len(mine):
            self.violation('delete_user(%s, %s) returned %s, expected %d'
                                     % (cache, m.user, rows[0][0], len(mine)))
        for k in mine:
            m.pending[(cache, k)] = None
        if mine:
            self.set_wrote()

    def own_user_entries(self, cache, key, ck, cur):
        m = self.model
        states = self.own_states(cache)
        if states is None:
            return self.own_get(cache, key, ck, cur)
        rows, st, msg = self.ex('user_entries',
                                'SELECT key, value FROM sessioncache.user_entries(%s, %s)',
                                (cache, m.user))
        if st is not None:
            return self.owned_failed()
        got = sorted((r[0], canon(jl(r[1]))) for r in rows)
        exp = sorted((k, s[0]) for k, s in states.items() if s is not None and s[1] == m.user)
        if got != exp:
            self.violation('user_entries(%s, %s) returned %d rows %s, expected %d %s'
                                     % (cache, m.user, len(got), [g[0] for g in got],
                                        len(exp), [e[0] for e in exp]))

    def own_entry_info(self, cache, key, ck, cur):
        m = self.model
        rows, st, msg = self.ex('entry_info',
                                'SELECT user_id, version, durable, expires_at > created_at '
                                'FROM sessioncache.entry_info(%s, %s)', (cache, key))
        if st is not None:
            return self.owned_failed()
        if (len(rows) == 1) != (cur is not None):
            self.violation('entry_info(%s, %s) returned %d rows, the key was %s'
                                     % (cache, key, len(rows), self.fmt_state(cur)))
            return
        if rows:
            user, version, durable, sane = rows[0]
            if user != cur[1] or durable != (cache == 'fz_own_d') or not sane:
                self.violation('entry_info(%s, %s) = %s, expected user %s'
                                         % (cache, key, rows[0], cur[1]))
            known = m.versions.get(ck, 0)
            if version < known:
                self.violation('entry_info(%s, %s) version %s went back below %s'
                                         % (cache, key, version, known))

    # -- random and hostile operations --------------------------------

    def random_op(self):
        ops = [
            ('put', 20), ('get', 18), ('touch', 5), ('patch', 7), ('incr', 7),
            ('delete', 7), ('delete_user', 3), ('user_entries', 3), ('entry_info', 4),
            ('define_cache', 2), ('drop_cache', 1.5), ('join', 3), ('heartbeat', 4),
            ('leave', 1.5), ('view', 2), ('reset_stats', 0.3), ('views', 3),
            ('bulk', 2.0), ('priv', 1.5), ('guard', 0.5), ('set_limit', 0.7),
        ]
        ops = [o for o in ops if o[0] not in self.h.skip]
        op = self.rng.choices([o[0] for o in ops], [o[1] for o in ops])[0]
        getattr(self, 'r_' + op)()

    def r_put(self):
        g = self.gen
        form = self.rng.randrange(4)
        cache, key, value = g.cache(), g.key(), g.value()
        if form == 0:
            args = (cache, key, value)
            q = 'SELECT sessioncache.put(%s, %s, %s::jsonb)'
        elif form == 1:
            args = (cache, key, value, g.user())
            q = 'SELECT sessioncache.put(cache => %s, key => %s, value => %s::jsonb, user_id => %s)'
        else:
            args = (cache, key, value, g.user(), g.interval(), g.interval())
            q = 'SELECT sessioncache.put(%s, %s, %s::jsonb, %s, %s::interval, %s::interval)'
        rows, st, msg = self.ex('put', q, args)
        if st is None:
            self.set_wrote()
        elif st == '53200' and cache_is_durable(cache) and 'sessioncache' in (msg or ''):
            self.violation('put into durable cache %s failed with 53200: %s'
                                     % (cache, msg))

    def r_get(self):
        g = self.gen
        if self.coin(0.5):
            self.ex('get', 'SELECT sessioncache.get(%s, %s)', (g.cache(), g.key()))
        else:
            touch = g.boolean(False)
            self.ex('get', 'SELECT sessioncache.get(%s, %s, %s)', (g.cache(), g.key(), touch))

    def r_touch(self):
        g = self.gen
        self.ex('touch', 'SELECT sessioncache.touch(%s, %s)', (g.cache(), g.key()))

    def r_patch(self):
        g = self.gen
        cache = g.cache()
        rows, st, msg = self.ex('patch', 'SELECT sessioncache.patch(%s, %s, %s::jsonb)',
                                (cache, g.key(), g.patch()))
        if st is None and rows[0][0] is not None:
            self.set_wrote()

    def r_incr(self):
        g = self.gen
        form = self.rng.randrange(3)
        if form == 0:
            rows, st, msg = self.ex('incr', 'SELECT sessioncache.incr(%s, %s, %s)',
                                    (g.cache(), g.key(), g.field()))
        else:
            rows, st, msg = self.ex('incr', 'SELECT sessioncache.incr(%s, %s, %s, %s::bigint, %s)',
                                    (g.cache(), g.key(), g.field(), g.delta(), g.user()))
        if st is None:
            self.set_wrote()

    def r_delete(self):
        g = self.gen
        rows, st, msg = self.ex('delete', 'SELECT sessioncache.delete(%s, %s)', (g.cache(), g.key()))
        if st is None and rows[0][0]:
            self.set_wrote()

    def r_delete_user(self):
        g = self.gen
        rows, st, msg = self.ex('delete_user', 'SELECT sessioncache.delete_user(%s, %s)',
                                (g.cache(), g.user(null_ok=False)))
        if st is None and rows[0][0]:
            self.set_wrote()

    def r_user_entries(self):
        g = self.gen
        self.ex('user_entries', 'SELECT count(*), sum(octet_length(value::text)) '
                'FROM sessioncache.user_entries(%s, %s)', (g.cache(), g.user(null_ok=False)))

    def r_entry_info(self):
        g = self.gen
        self.ex('entry_info', 'SELECT * FROM sessioncache.entry_info(%s, %s)',
                (g.cache(), g.key()))

    def r_define_cache(self):
        g = self.gen
        if self.coin(0.7):
            name = self.rng.choice(TMP_CACHES)
            durable = name.startswith('fz_d')
        elif self.coin(0.5):
            # an existing fixed cache with the other durability: 0A000
            name, durable = self.rng.choice([('fz_d0', False), ('fz_m0', True),
                                             ('sessions', False)])
        else:
            name, durable = g.cache(), g.boolean()
            if name in [c[0] for c in FIXED_CACHES] or name in BUILTIN_CACHES or \
                    name in TMP_CACHES:
                name = 'fz_xx%d' % self.rng.randrange(3)   # keep the fixed ones intact
        idle, mx = g.interval(), g.interval()
        mpu = self.rng.choice([None, None, 1, 2, 5]) if not self.coin(g.hostile) else \
            self.rng.choice([0, -1, 2 ** 31 - 1, 2 ** 31])
        pol = self.rng.choice(['deny', 'evict_oldest']) if not self.coin(g.hostile) else \
            self.rng.choice([None, '', 'DENY', 'evict', "deny'; --", 'x' * 500])
        notify = g.boolean()
        form = self.rng.randrange(3)
        if form == 0:
            rows, st, msg = self.ex('define_cache', 'SELECT sessioncache.define_cache(%s, %s)',
                                    (name, durable))
        else:
            rows, st, msg = self.ex(
                'define_cache',
                'SELECT sessioncache.define_cache(%s, %s, %s::interval, %s::interval, '
                '%s::integer, %s, %s)', (name, durable, idle, mx, mpu, pol, notify))
        if st is None:
            self.set_wrote()

    def r_drop_cache(self):
        g = self.gen
        if self.coin(0.85):
            name = self.rng.choice(TMP_CACHES + ['fz_xx0', 'fz_xx1', 'fz_xx2'])
        else:
            name = g.cache()
            if name in [c[0] for c in FIXED_CACHES] or name in BUILTIN_CACHES:
                name = 'nope'
        rows, st, msg = self.ex('drop_cache', 'SELECT sessioncache.drop_cache(%s)', (name,))
        if st is None:
            self.set_wrote()

    def r_join(self):
        g = self.gen
        rows, st, msg = self.ex('join', 'SELECT member_id, view_id FROM sessioncache.join(%s, %s, %s, %s::interval, %s::jsonb)',
                                (g.cluster(), g.node(), g.address(), g.lease(),
                                 g.value() if self.coin(0.5) else None))
        if st is None and rows:
            self.member_ids.append(rows[0][0])
            self.set_wrote()

    def member_id(self):
        if self.member_ids and self.coin(0.8):
            return self.rng.choice(list(self.member_ids))
        return self.rng.choice([None, 0, -1, 2 ** 63 - 1, 2 ** 63, 1, 2, 3])

    def r_heartbeat(self):
        self.ex('heartbeat', 'SELECT sessioncache.heartbeat(%s::bigint)', (self.member_id(),))

    def r_leave(self):
        self.ex('leave', 'SELECT sessioncache.leave(%s::bigint)', (self.member_id(),))

    def r_view(self):
        self.ex('view', 'SELECT count(*), count(*) FILTER (WHERE is_coordinator) '
                'FROM sessioncache.view(%s)', (self.gen.cluster(),))

    def r_reset_stats(self):
        self.ex('reset_stats', 'SELECT sessioncache.reset_stats()')

    def r_views(self):
        q = self.rng.choice([
            ('cache_stats', 'SELECT count(*), sum(entries), sum(bytes) FROM sessioncache.cache_stats'),
            ('memory', 'SELECT * FROM sessioncache.memory'),
            ('entries', 'SELECT count(*), count(DISTINCT cache) FROM sessioncache.entries'),
            ('workers', 'SELECT * FROM sessioncache.workers'),
            ('members', 'SELECT count(*), count(*) FILTER (WHERE is_coordinator) FROM sessioncache.members'),
            ('caches', 'SELECT * FROM sessioncache.caches'),
            ('notify_stats', 'SELECT * FROM sessioncache.notify_stats'),
            ('check_memory', 'SELECT sessioncache.check_memory()'),
        ])
        rows, st, msg = self.ex('view:' + q[0], q[1])
        if st is None and q[0] == 'check_memory' and rows[0][0] is not True:
            self.violation('check_memory() returned %s during the run' % rows[0][0])

    def r_bulk(self):
        """Many keys in one statement: past 64 keys a transaction escalates to
        one lock on the cache."""
        g = self.gen
        cache = self.rng.choice(['fz_m1', 'fz_d1', 'fz_dt0', 'fz_mt0', 'fz_mt1', 'fz_m0',
                                 'auth_sessions', 'fz_dlim', 'fz_mlim'])
        n = self.rng.choice([10, 64, 65, 70, 300, 1000])
        kind = self.rng.randrange(4)
        if kind <= 1:
            size = self.rng.choice([10, 1000, 8000, 15000, 15000])
            user = self.rng.choice([None, 'u1', 'bulkuser'])
            rows, st, msg = self.ex(
                'bulk_put',
                "SELECT count(sessioncache.put(%s, 'bulk:' || g, jsonb_build_object('pad', repeat('b', %s::int), 'g', g), %s)) "
                'FROM generate_series(1, %s::int) g', (cache, size, user, n))
            if st is None:
                self.set_wrote()
        elif kind == 2:
            rows, st, msg = self.ex(
                'bulk_delete',
                "SELECT count(*) FILTER (WHERE sessioncache.delete(%s, 'bulk:' || g)) "
                'FROM generate_series(1, %s::int) g', (cache, n))
            if st is None and rows[0][0]:
                self.set_wrote()
        else:
            self.ex('bulk_get',
                    "SELECT count(sessioncache.get(%s, 'bulk:' || g, %s)) "
                    'FROM generate_series(1, %s::int) g', (cache, self.coin(0.3), n))

    def r_set_limit(self):
        v = self.rng.choice(['64', '1kB', '16kB', '100kB', '1MB', '1MB', '2MB', '0', 'x'])
        if self.in_txn:
            self.ex('set_limit', 'SELECT set_config(%s, %s, true)',
                    ('sessioncache.max_value_size', v))
        else:
            self.ex('set_limit', 'SELECT set_config(%s, %s, false)',
                    ('sessioncache.max_value_size', v))

    # privilege probes: run under another role inside a savepoint (or a
    # transaction of their own) that is always rolled back
    PRIV_CALLS = {
        # name: (sql, args builder, who may)
        'put': ("SELECT sessioncache.put('fz_d1', %s, '{}')", lambda g: (g.key(),), {ROLE_APP}),
        'get': ("SELECT sessioncache.get('fz_m1', %s)", lambda g: (g.key(),), {ROLE_APP}),
        'incr': ("SELECT sessioncache.incr('login_failures', %s, 'failures')", lambda g: (g.key(),), {ROLE_APP}),
        'delete_user': ("SELECT sessioncache.delete_user('fz_d1', %s)", lambda g: ('u1',), {ROLE_APP}),
        'join': ("SELECT * FROM sessioncache.join('cpriv', %s)", lambda g: ('n1',), {ROLE_APP}),
        'view': ("SELECT count(*) FROM sessioncache.view('cpriv')", lambda g: (), {ROLE_APP}),
        'define_cache': ("SELECT sessioncache.define_cache('fz_priv', %s)", lambda g: (True,), set()),
        'drop_cache': ("SELECT sessioncache.drop_cache('fz_d1')", lambda g: (), set()),
        'reset_stats': ('SELECT sessioncache.reset_stats()', lambda g: (), set()),
        'check_memory': ('SELECT sessioncache.check_memory()', lambda g: (), set()),
        '_install': ('SELECT sessioncache._install()', lambda g: (), set()),
        '_notify_view': ("SELECT sessioncache._notify_view('c0', 1)", lambda g: (), set()),
        'cache_stats': ('SELECT count(*) FROM sessioncache.cache_stats', lambda g: (), {ROLE_MON}),
        'entries': ('SELECT count(*) FROM sessioncache.entries', lambda g: (), {ROLE_MON}),
        'members': ('SELECT count(*) FROM sessioncache.members', lambda g: (), {ROLE_MON}),
        'memory': ('SELECT count(*) FROM sessioncache.memory', lambda g: (), {ROLE_MON}),
        'read_table': ('SELECT count(*) FROM sessioncache.durable_entries', lambda g: (), set()),
        'write_table': ("UPDATE sessioncache.durable_entries SET value = '{}' WHERE key = %s",
                        lambda g: ('k1',), set()),
        'write_members': ("DELETE FROM sessioncache.cluster_members WHERE node = %s",
                          lambda g: ('n1',), set()),
    }

    def r_priv(self):
        role = self.rng.choice([ROLE_APP, ROLE_APP, ROLE_MON, ROLE_NOBODY])
        name = self.rng.choice(sorted(self.PRIV_CALLS))
        sqltext, build, allowed = self.PRIV_CALLS[name]
        args = build(self.gen)
        self.sandboxed('priv:' + name, "SET LOCAL ROLE " + role, sqltext, args,
                       expect_ok=role in allowed, who=role)

    def r_guard(self):
        """Direct changes of the durable table by the superuser: the guard must
        refuse them (42501)."""
        q = self.rng.choice([
            ("UPDATE sessioncache.durable_entries SET value = '{\"x\":1}' WHERE key = %s", ('k1',)),
            ("DELETE FROM sessioncache.durable_entries WHERE key = %s", ('k2',)),
            ("INSERT INTO sessioncache.durable_entries VALUES (1, %s, NULL, '{}', now(), now(), NULL, NULL, 1, 'infinity')",
             ('guard',)),
            ('TRUNCATE sessioncache.durable_entries', ()),
            ("UPDATE sessioncache.durable_entries SET value = value WHERE false AND key = %s", ('k',)),
        ])
        self.sandboxed('guard', None, q[0], q[1], expect_ok=False, who='superuser',
                       expect_state='42501')

    def sandboxed(self, op, setup, sqltext, args, expect_ok, who, expect_state='42501'):
        """Run one statement in a savepoint (or a transaction of its own) that
        is rolled back afterwards, so that it leaves nothing behind."""
        if self.in_txn:
            if self.txn_failed:
                return
            self.sp_counter += 1
            sp = 'sx%d' % self.sp_counter
            rows, st, msg = self.ex('SAVEPOINT', 'SAVEPOINT ' + sp, counted=False)
            if st is not None:
                return
            opened = False
        else:
            rows, st, msg = self.ex('BEGIN', 'BEGIN', counted=False)
            if st is not None:
                return
            self.in_txn = True
            opened = True
        try:
            st = None
            if setup:
                rows, st, msg = self.ex(op + ':setup', setup, counted=False)
            if st is None:
                rows, st, msg = self.ex(op, sqltext, args)
                if expect_ok and st == '42501':
                    self.violation('%s as %s was refused with 42501: %s'
                                             % (op, who, msg))
                elif not expect_ok and st is None:
                    self.violation('%s as %s succeeded; expected SQLSTATE %s'
                                             % (op, who, expect_state))
                elif not expect_ok and st not in (expect_state, '57014', '40P01', '25P02'):
                    self.violation('%s as %s failed with %s, expected %s: %s'
                                             % (op, who, st, expect_state, msg))
        finally:
            if opened:
                self.ex('ROLLBACK', 'ROLLBACK', counted=False)
                self.end_block()
            else:
                rows, st, msg = self.ex('ROLLBACK TO', 'ROLLBACK TO SAVEPOINT ' + sp,
                                        counted=False)
                if st is None:
                    self.txn_failed = False
                    self.ex('RELEASE', 'RELEASE SAVEPOINT ' + sp, counted=False)


# ---------------------------------------------------------------------------
# Chaos: cancel and terminate the workers' backends
# ---------------------------------------------------------------------------

class Chaos(threading.Thread):
    def __init__(self, h):
        super().__init__(name='chaos', daemon=True)
        self.h = h
        self.rng = random.Random(h.seed * 7 + 1)
        self.cancels = 0
        self.terminates = 0
        self.worker_kills = 0
        self.reloads = 0
        self.error = None

    def run(self):
        try:
            self.loop()
        except Exception as e:
            self.error = '%s\n%s' % (e, traceback.format_exc())

    def q(self, conn, sqltext, params=None):
        try:
            cur = conn.execute(sqltext, params)
            return cur.fetchall() if cur.description is not None else None
        except psycopg.Error as e:
            if conn.closed or conn.broken:
                raise
            return None

    def loop(self):
        h = self.h
        conn = connect(h.dsn)
        conn.execute("SET application_name = 'fuzz-chaos'")
        last_cleanup = last_check = last_reload = last_bgw = time.time()
        while not h.stop.is_set():
            time.sleep(self.rng.uniform(0.02, 0.25) * h.chaos_scale)
            try:
                victims = [w for w in h.workers if w.pid is not None]
                if victims:
                    w = self.rng.choice(victims)
                    pid = w.pid
                    if self.rng.random() < 0.87:
                        self.q(conn, 'SELECT pg_cancel_backend(%s)', (pid,))
                        self.cancels += 1
                    else:
                        w.terminated_at = time.time()
                        self.q(conn, 'SELECT pg_terminate_backend(%s)', (pid,))
                        self.terminates += 1
                now = time.time()
                if now - last_cleanup > 1.0:
                    last_cleanup = now
                    h.cleanup_prepared(conn, older_than='2 s')
                if now - last_check > 3.0:
                    last_check = now
                    rows = self.q(conn, 'SELECT sessioncache.check_memory()')
                    if rows is not None and rows[0][0] is not True:
                        h.results.violation('check_memory() returned %s during the run'
                                            % rows[0][0])
                if now - last_reload > 5.0:
                    last_reload = now
                    self.q(conn, "ALTER SYSTEM SET sessioncache.flush_interval = %s"
                           % self.rng.choice(["'10ms'", "'100ms'", "'1s'"]))
                    self.q(conn, "ALTER SYSTEM SET sessioncache.expiry_interval = %s"
                           % self.rng.choice(["'10ms'", "'50ms'", "'500ms'"]))
                    self.q(conn, 'SELECT pg_reload_conf()')
                    self.reloads += 1
                if now - last_bgw > 12.0:
                    # an administrator stops one of the extension's workers: it
                    # must come back and its work must not be lost
                    last_bgw = now
                    rows = self.q(conn, "SELECT pid FROM pg_stat_activity "
                                  "WHERE backend_type LIKE 'sessioncache%' ORDER BY random() LIMIT 1")
                    if rows:
                        self.q(conn, 'SELECT pg_terminate_backend(%s)', (rows[0][0],))
                        self.worker_kills += 1
            except psycopg.Error:
                # our own connection died (the server restarted?): reconnect
                time.sleep(0.2)
                try:
                    conn = connect(h.dsn)
                except psycopg.Error:
                    pass
        try:
            conn.execute('ALTER SYSTEM RESET ALL')
            conn.execute('SELECT pg_reload_conf()')
            conn.close()
        except psycopg.Error:
            pass


# ---------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------

CRASH_PATTERNS = [
    re.compile(r'terminated by signal'),
    re.compile(r'server process \(PID \d+\) was terminated'),
    re.compile(r'all server processes terminated'),
    re.compile(r'terminated by exception'),
    re.compile(r'\bPANIC:'),
    re.compile(r'^TRAP:'),
    re.compile(r'AddressSanitizer'),
    re.compile(r'database system was interrupted'),
]


class Harness:
    def __init__(self, args):
        self.args = args
        self.dsn = 'host=%s port=%d dbname=postgres user=postgres' % (args.host, args.port)
        self.seed = args.seed
        self.results = Results()
        self.stop = threading.Event()
        self.hard_stop = threading.Event()
        self.huge_budget = args.huge_budget
        self.chaos_scale = 1.0
        self.calls_lock = threading.Lock()
        self.calls_done = 0
        self.workers = []
        self.style_lock = threading.Lock()
        self.skip = set(x.strip() for x in args.skip.split(',') if x.strip())
        self.sentinel = None

    def count_call(self):
        with self.calls_lock:
            self.calls_done += 1
            if self.calls_done >= self.args.calls:
                self.stop.set()

    def check_style(self, op, sqlstate, primary):
        """API.md: primary messages are lower case, without a final period
        (PostgreSQL's own messages follow the same rule)."""
        if not primary or sqlstate in ('57014', '57P01', '25P02', '40P01', '40001'):
            return
        if primary[0].isupper() and not primary.startswith(('PREPARE', 'SQL', 'JSON', 'UTF')) \
                or primary.endswith('.'):
            with self.style_lock:
                self.results.style[(sqlstate, primary[:120])] += 1

    def connect(self):
        return connect(self.dsn)

    def cleanup_prepared(self, conn, older_than='0 s'):
        try:
            rows = conn.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'fz\\_%%' "
                "AND prepared < now() - %s::interval", (older_than,)).fetchall()
            for (gid,) in rows:
                try:
                    conn.execute("ROLLBACK PREPARED '%s'" % gid.replace("'", "''"))
                except psycopg.Error:
                    pass
        except psycopg.Error:
            if conn.closed or conn.broken:
                raise

    # -- set-up ---------------------------------------------------------

    def setup(self, conn):
        for role in (ROLE_APP, ROLE_MON, ROLE_NOBODY, ROLE_EVIL):
            conn.execute('DROP ROLE IF EXISTS %s' % role)
        conn.execute('CREATE ROLE %s IN ROLE sessioncache_app' % ROLE_APP)
        conn.execute('CREATE ROLE %s IN ROLE sessioncache_monitor' % ROLE_MON)
        conn.execute('CREATE ROLE %s' % ROLE_NOBODY)
        conn.execute('CREATE ROLE %s LOGIN IN ROLE sessioncache_app' % ROLE_EVIL)
        for c in FIXED_CACHES:
            conn.execute('SELECT sessioncache.define_cache(%s, %s, %s::interval, %s::interval, '
                         '%s::integer, %s, %s)', c)
        self.start_time = conn.execute('SELECT pg_postmaster_start_time()').fetchone()[0]

    # -- security probes ---------------------------------------------------

    def security_probes(self, conn):
        """A caller must not be able to make the extension's internal SQL
        (which runs as the tables' owner) execute objects the caller defined,
        e.g. an operator found first through the caller's search_path."""
        conn.execute('DROP SCHEMA IF EXISTS fz_evil CASCADE')
        conn.execute('CREATE SCHEMA fz_evil AUTHORIZATION %s' % ROLE_EVIL)
        conn.execute('CREATE TABLE fz_evil.log (who text, what text)')
        conn.execute('ALTER TABLE fz_evil.log OWNER TO %s' % ROLE_EVIL)
        conn.execute('GRANT INSERT ON fz_evil.log TO PUBLIC')
        with conn.transaction():
            conn.execute('SET LOCAL ROLE %s' % ROLE_EVIL)
            conn.execute("""
                CREATE FUNCTION fz_evil.spy_eq(a text, b text) RETURNS boolean
                LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO fz_evil.log VALUES (current_user, 'text = text');
                    RETURN a OPERATOR(pg_catalog.=) b;
                END $$""")
            conn.execute('CREATE OPERATOR fz_evil.= (LEFTARG = text, RIGHTARG = text, '
                         'FUNCTION = fz_evil.spy_eq)')
            conn.execute("""
                CREATE FUNCTION fz_evil.spy_eq4(a integer, b integer) RETURNS boolean
                LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO fz_evil.log VALUES (current_user, 'int4 = int4');
                    RETURN a OPERATOR(pg_catalog.=) b;
                END $$""")
            conn.execute('CREATE OPERATOR fz_evil.= (LEFTARG = integer, RIGHTARG = integer, '
                         'FUNCTION = fz_evil.spy_eq4)')
        calls = [
            ("SELECT sessioncache.get('fz_d1', 'evil-miss')", 'get (durable miss)'),
            ("SELECT sessioncache.put('fz_d1', 'evil-k', '{\"a\":1}', 'evil-u')", 'put (durable)'),
            ("SELECT sessioncache.patch('fz_d1', 'evil-k', '{\"b\":2}')", 'patch (durable)'),
            ("SELECT sessioncache.incr('fz_d1', 'evil-k', 'n')", 'incr (durable)'),
            ("SELECT sessioncache.touch('fz_d1', 'evil-k')", 'touch (durable)'),
            ("SELECT count(*) FROM sessioncache.user_entries('fz_d1', 'evil-u')", 'user_entries (durable)'),
            ("SELECT sessioncache.delete_user('fz_d1', 'evil-u')", 'delete_user (durable)'),
            ("SELECT sessioncache.delete('fz_d1', 'evil-k')", 'delete (durable)'),
            ("SELECT count(*) FROM sessioncache.join('fz_evil_c', 'n1')", 'join'),
            ("SELECT count(*) FROM sessioncache.view('fz_evil_c')", 'view'),
        ]
        hijacked = []
        econn = connect(self.dsn.replace('user=postgres', 'user=%s' % ROLE_EVIL))
        try:
            econn.execute('SET search_path = fz_evil, pg_catalog')
            for sqltext, what in calls:
                conn.execute('TRUNCATE fz_evil.log')
                try:
                    econn.execute(sqltext)
                except psycopg.Error as e:
                    self.results.warning('security probe %s failed: %s %s'
                                         % (what, e.sqlstate, str(e).split('\n')[0]))
                rows = conn.execute("SELECT who, what, count(*) FROM fz_evil.log "
                                    "WHERE who <> %s GROUP BY 1, 2", (ROLE_EVIL,)).fetchall()
                for who, op, n in rows:
                    hijacked.append('%s ran the caller\'s "%s" operator as %s' % (what, op, who))
        finally:
            econn.close()
        for m in hijacked:
            self.results.violation('security: ' + m + ' (internal SQL resolves operators '
                                   'through the caller\'s search_path)')
        # leave the schema: later runs of the fuzz don't use it
        conn.execute('DROP SCHEMA fz_evil CASCADE')
        return hijacked

    # -- contract probes ---------------------------------------------------

    CONTRACT = [
        # what, statement, parameters, expected SQLSTATE (None: succeeds)
        ('a key of 255 bytes', "SELECT sessioncache.put('fz_m1', %s, '{}')", ('k' * 255,), None),
        ('a key of 255 bytes in 2-byte characters',
         "SELECT sessioncache.put('fz_m1', %s, '{}')", ('é' * 127 + 'k',), None),
        ('a key of 256 bytes', "SELECT sessioncache.put('fz_m1', %s, '{}')", ('k' * 256,), '54000'),
        ('a NULL key', "SELECT sessioncache.get('fz_m1', %s)", (None,), '22004'),
        ('an empty key', "SELECT sessioncache.get('fz_m1', %s)", ('',), '22023'),
        ('a user_id of 255 bytes', "SELECT sessioncache.put('fz_m1', 'kc', '{}', %s)", ('u' * 255,), None),
        ('a user_id of 256 bytes', "SELECT sessioncache.put('fz_m1', 'kc', '{}', %s)", ('u' * 256,), '54000'),
        ('an unknown cache', "SELECT sessioncache.get(%s, 'k')", ('fz_none',), '42704'),
        ('a bad cache name', "SELECT sessioncache.get(%s, 'k')", ('Bad Name',), '22023'),
        ('a NULL cache name', "SELECT sessioncache.get(%s, 'k')", (None,), '22004'),
        ('a timeout of exactly 100 years (the limit)',
         "SELECT sessioncache.put('fz_m1', 'kc', '{}', NULL, %s::interval)", ('100 years',), None),
        ('a timeout of 36500 days',
         "SELECT sessioncache.put('fz_m1', 'kc', '{}', NULL, %s::interval)", ('36500 days',), None),
        ('a timeout over 100 years',
         "SELECT sessioncache.put('fz_m1', 'kc', '{}', NULL, %s::interval)", ('100 years 1 day',), '22008'),
        ('a zero timeout', "SELECT sessioncache.put('fz_m1', 'kc', '{}', NULL, %s::interval)", ('0',), '22023'),
        ('a negative timeout', "SELECT sessioncache.put('fz_m1', 'kc', '{}', NULL, NULL, %s::interval)",
         ('-1 s',), '22023'),
        ('heartbeat of an unknown member', 'SELECT sessioncache.heartbeat(%s::bigint)', (-1,), 'SC001'),
        ('incr past bigint', "SELECT sessioncache.incr('fz_m1', 'kinc', 'n', %s::bigint)",
         (2 ** 63 - 1,), None),
        ('incr past bigint (overflow)', "SELECT sessioncache.incr('fz_m1', 'kinc', 'n', %s::bigint)",
         (1,), '22003'),
        ('a bad per_user_policy', "SELECT sessioncache.define_cache('fz_xx0', true, NULL, NULL, 1, %s)",
         ('sometimes',), '22023'),
    ]

    def contract_probes(self, conn):
        """A few deterministic checks of the documented limits and SQLSTATEs."""
        for what, sqltext, params, expect in self.CONTRACT:
            try:
                conn.execute(sqltext, params)
                got = None
            except psycopg.Error as e:
                got = e.sqlstate
                msg = str(e).split('\n')[0]
            if got != expect:
                self.results.violation('contract: %s: expected %s, got %s%s'
                                       % (what, expect or 'success', got or 'success',
                                          (' (%s)' % msg) if got else ''))
        try:
            with conn.transaction():
                conn.execute("SELECT sessioncache.put('fz_m1', 'kprep', '{}')")
                conn.execute("PREPARE TRANSACTION 'fz_contract'")
            self.results.violation('contract: PREPARE TRANSACTION after a put succeeded')
            conn.execute("ROLLBACK PREPARED 'fz_contract'")
        except psycopg.Error as e:
            if e.sqlstate != '0A000':
                self.results.violation('contract: PREPARE TRANSACTION after a put: expected 0A000, got %s'
                                       % e.sqlstate)
        conn.execute("SELECT sessioncache.delete('fz_m1', 'kinc')")

    # -- the run -----------------------------------------------------------

    def run(self):
        a = self.args
        conn = self.connect()
        self.setup(conn)
        print('fuzz: seed %d, %d workers, %d calls, deadline %ds, server max_value_size %s'
              % (self.seed, a.workers, a.calls, a.deadline,
                 conn.execute('SHOW sessioncache.max_value_size').fetchone()[0]), flush=True)
        if not a.no_security:
            self.security_probes(conn)
        self.contract_probes(conn)
        # a connection that nobody cancels or terminates: a crash restart of
        # the server (which pg_postmaster_start_time() does not show) kills it
        self.sentinel = self.connect()
        self.sentinel_pid = self.sentinel.info.backend_pid

        self.workers = [Worker(i, self) for i in range(a.workers)]
        chaos = Chaos(self)
        t0 = time.time()
        for w in self.workers:
            w.start()
        if not a.no_chaos:
            chaos.start()
        last_report = t0
        while not self.stop.is_set():
            time.sleep(0.2)
            now = time.time()
            if now - t0 > a.deadline:
                print('fuzz: deadline of %ds reached after %d calls' % (a.deadline, self.calls_done),
                      flush=True)
                self.stop.set()
            if now - last_report >= a.progress:
                last_report = now
                print('fuzz: %d calls, %.0f/s' % (self.calls_done, self.calls_done / (now - t0)),
                      flush=True)
            if all(not w.is_alive() for w in self.workers):
                self.stop.set()
        elapsed = time.time() - t0
        for w in self.workers:
            w.join(timeout=40)
        hung = [w for w in self.workers if w.is_alive()]
        for w in hung:
            self.results.violation('worker %d did not stop within 40 s (backend pid %s)' % (w.idx, w.pid))
        self.hard_stop.set()
        if chaos.is_alive() or not a.no_chaos:
            chaos.join(timeout=20)
        if chaos.error:
            self.results.violation('chaos thread failed: %s' % chaos.error)
        try:
            conn.close()
        except Exception:
            pass

        print('fuzz: %d calls in %.1fs (%.0f/s); chaos: %d cancels, %d terminates, %d worker kills, %d reloads'
              % (self.results.calls, elapsed, self.results.calls / max(elapsed, 0.001),
                 chaos.cancels, chaos.terminates, chaos.worker_kills, chaos.reloads), flush=True)
        self.final_checks()
        return self.report()

    # -- the checks afterwards ---------------------------------------------

    def crash_lines(self):
        lines = []
        if not self.args.log or not os.path.exists(self.args.log):
            return lines
        with open(self.args.log, 'r', errors='replace') as f:
            for line in f:
                if len(line) > 4000:
                    line = line[:4000]
                if any(p.search(line) for p in CRASH_PATTERNS):
                    lines.append(line.rstrip())
        return lines

    def final_checks(self):
        r = self.results
        print('\n== (a) the server never restarted', flush=True)
        crash = self.crash_lines()
        for line in crash[:20]:
            print('   log: ' + line)
        if crash:
            r.violation('the server log shows %d crash line(s), e.g. %s' % (len(crash), crash[0]))
            self.dump_journals('crash')
        try:
            conn = self.connect()
        except psycopg.Error as e:
            r.violation('cannot connect after the run: %s' % e)
            return
        restarted = bool(crash)
        try:
            pid = self.sentinel.execute('SELECT pg_backend_pid()').fetchone()[0]
            if pid != self.sentinel_pid:
                raise psycopg.OperationalError('another backend')
        except psycopg.Error as e:
            restarted = True
            r.violation('the sentinel connection died during the run (a crash restart '
                        'terminates every backend): %s' % str(e).split('\n')[0])
        try:
            with conn:
                st = conn.execute('SELECT pg_postmaster_start_time()').fetchone()[0]
                if st != self.start_time:
                    restarted = True
                    r.violation('pg_postmaster_start_time() changed: the server restarted')
                if not restarted:
                    print('   ok: no crash line in the log, pg_postmaster_start_time() unchanged, '
                          'the sentinel connection survived')
                self.cleanup_prepared(conn)
                left = conn.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()[0]
                if left:
                    r.violation('%d prepared transactions left over' % left)
                if restarted:
                    print('   (the server restarted: memory-only caches were emptied, so '
                          'tracked memory-only keys are expected to differ)')
                self.invariants(conn)
        except psycopg.Error as e:
            r.violation('the final checks lost the server: %s' % str(e).split('\n')[0])
            crash = self.crash_lines()
            if crash:
                r.violation('the server log shows a crash during the final checks: %s' % crash[-1])

    def invariants(self, conn):
        r = self.results
        row = conn.execute(
            'SELECT m.total_bytes, m.used_bytes, m.entries, s.* FROM sessioncache.memory m, '
            '(SELECT sum(hits) hits, sum(misses) misses, sum(fills) fills, sum(puts) puts, '
            'sum(deletes) deletes, sum(touches) touches, sum(expired) expired, '
            'sum(evicted) evicted, sum(notifications) notifications '
            'FROM sessioncache.cache_stats) s').fetchone()
        print('\n   coverage: memory %s of %s bytes used, %s entries; since the last reset_stats(): '
              'hits %s, misses %s, fills %s, puts %s, deletes %s, touches %s, expired %s, '
              'evicted %s, notifications %s; memory full (53200) %d times'
              % (row[1], row[0], row[2], *row[3:], r.hist.get('53200', 0)))
        print('\n== (c) invariants', flush=True)

        def check(name, ok, detail=''):
            print('   %s: %s%s' % ('ok' if ok else 'FAILED', name,
                                   (' -- ' + detail) if detail and not ok else ''))
            if not ok:
                r.violation('invariant: %s %s' % (name, detail))

        ok = conn.execute('SELECT sessioncache.check_memory()').fetchone()[0]
        check('sessioncache.check_memory() is true', ok is True, 'it returned %s' % ok)

        # the sum of the caches' entries equals memory.entries (the expiry
        # worker runs meanwhile: poll, bounded)
        last = None
        for _ in range(50):
            last = conn.execute(
                'SELECT (SELECT coalesce(sum(entries), 0) FROM sessioncache.cache_stats)::bigint, '
                '(SELECT entries FROM sessioncache.memory)::bigint').fetchone()
            if last[0] == last[1]:
                break
            time.sleep(0.1)
        check('sum(cache_stats.entries) = memory.entries', last[0] == last[1],
              'cache_stats says %s, memory says %s' % last)

        # entries in memory belong to defined caches
        n = conn.execute('SELECT count(*) FROM sessioncache.entries e WHERE e.cache IS NULL '
                         'OR NOT EXISTS (SELECT FROM sessioncache.caches c WHERE c.name = e.cache)'
                         ).fetchone()[0]
        check('every entry in memory belongs to a defined cache', n == 0, '%d do not' % n)

        # durable rows belong to defined caches
        n = conn.execute('SELECT count(*) FROM sessioncache.durable_entries d WHERE NOT EXISTS '
                         '(SELECT FROM sessioncache.cache_defs c WHERE c.id = d.cache_id)').fetchone()[0]
        check('every durable row belongs to a defined cache', n == 0, '%d rows of dropped caches' % n)

        # every live durable row is what the API returns
        rows = conn.execute(
            "SELECT c.name, d.key, d.value::text, g::text FROM sessioncache.durable_entries d "
            "JOIN sessioncache.cache_defs c ON c.id = d.cache_id, "
            "LATERAL sessioncache.get(c.name, d.key) g "
            "WHERE d.expires_at > now() + interval '5 s' AND g IS DISTINCT FROM d.value").fetchall()
        total = conn.execute("SELECT count(*) FROM sessioncache.durable_entries "
                             "WHERE expires_at > now() + interval '5 s'").fetchone()[0]
        check('get() returns the row of each of the %d live durable rows' % total, not rows,
              '%d differ, e.g. %s' % (len(rows), [(x[0], x[1], (x[2] or '')[:80], (x[3] or 'NULL')[:80])
                                                  for x in rows[:3]]))

        # every live durable entry in memory has its row, at the same version
        rows = conn.execute(
            "SELECT e.cache, e.key, e.version, d.version FROM sessioncache.entries e "
            "JOIN sessioncache.cache_defs c ON c.name = e.cache "
            "LEFT JOIN sessioncache.durable_entries d ON d.cache_id = c.id AND d.key = e.key "
            "WHERE e.durable AND e.expires_at > now() + interval '5 s' "
            "AND d.version IS DISTINCT FROM e.version").fetchall()
        check('durable entries in memory match their rows (no stale or orphan copy)', not rows,
              '%d differ, e.g. %s' % (len(rows), rows[:3]))

        # the owned keys: exactly what each worker committed
        nkeys = nknown = 0
        bad = []
        for w in self.workers:
            for ck, cands in sorted(w.model.committed.items()):
                cache, key = ck
                got = conn.execute('SELECT sessioncache.get(%s, %s), '
                                   '(SELECT user_id FROM sessioncache.entry_info(%s, %s))',
                                   (cache, key, cache, key)).fetchone()
                s = None if got[0] is None else (canon(jl(got[0])), got[1])
                nkeys += 1
                nknown += len(cands) == 1
                if s not in cands:
                    bad.append('%s/%s is %s, expected %s' % (
                        cache, key, w.fmt_state(s), ' or '.join(w.fmt_state(c) for c in cands)))
        check('%d tracked keys (%d with one known final value) hold what was committed'
              % (nkeys, nknown), not bad, '%d differ: %s' % (len(bad), bad[:5]))

        # the table's rows of tracked keys too (durable tracked cache)
        bad = []
        for w in self.workers:
            for (cache, key), cands in w.model.committed.items():
                if cache != 'fz_own_d' or len(cands) != 1:
                    continue
                row = conn.execute(
                    "SELECT d.value, d.user_id FROM sessioncache.durable_entries d "
                    "JOIN sessioncache.cache_defs c ON c.id = d.cache_id "
                    "WHERE c.name = %s AND d.key = %s", (cache, key)).fetchone()
                s = None if row is None else (canon(jl(row[0])), row[1])
                if s != cands[0]:
                    bad.append('%s/%s row is %s, expected %s'
                               % (cache, key, w.fmt_state(s), w.fmt_state(cands[0])))
        check('the durable rows of tracked keys hold what was committed', not bad,
              '%d differ: %s' % (len(bad), bad[:5]))

        werr = conn.execute('SELECT name, errors FROM sessioncache.workers WHERE errors > 0').fetchall()
        if werr:
            r.warning('background workers reported errors: %s' % werr)

    def report(self):
        r = self.results
        print('\n== (b) SQLSTATE histogram (%d calls, %d ok)' % (r.calls, r.ok))
        bad_states = []
        for st, n in sorted(r.hist.items(), key=lambda x: -x[1]):
            if st == CONN_LOST:
                what = 'connection lost (pg_terminate_backend)'
                allowed = True
            else:
                allowed = st in ALLOWED
                what = ALLOWED.get(st, 'NOT ALLOWED')
            print('   %-12s %8d  %s' % (st, n, what))
            if not allowed:
                op, msg = r.samples.get(st, ('?', '?'))
                bad_states.append(st)
                r.violation('SQLSTATE %s is not allowed (%d times), e.g. from %s: %s'
                            % (st, n, op, msg))
        if self.args.per_op:
            print('\n   per operation:')
            for (op, st), n in sorted(r.per_op.items()):
                print('   %-24s %-10s %8d' % (op, st, n))
        if r.unexpected_conn_losses:
            r.warning('%d connection losses not caused by pg_terminate_backend'
                      % r.unexpected_conn_losses)
        if r.style:
            print('\n== message style (API.md: lower-case primary message, no final period)')
            for (st, msg), n in sorted(r.style.items()):
                print('   %s %5d  %s' % (st, n, msg))
        if r.warnings:
            print('\n== warnings')
            for w in r.warnings:
                print('   ' + w)
        for w in self.workers:
            if w.error:
                print('\nworker %d harness error:\n%s' % (w.idx, w.error))
        if r.violations:
            self.dump_journals('violation')
            print('\nFUZZ FAILED: %d violation(s)' % len(r.violations))
            for v in r.violations[:60]:
                print('   - ' + v)
            if len(r.violations) > 60:
                print('   ... and %d more' % (len(r.violations) - 60))
            for msg, detail in r.details[:8]:
                print('\n   %s\n   last statements of the worker:\n%s' % (msg, detail))
            print('   seed %d; journals of the last statements of each worker in %s'
                  % (self.seed, self.args.outdir))
            return 1
        print('\nFUZZ PASSED (seed %d)' % self.seed)
        return 0

    _dumped = False

    def dump_journals(self, why):
        if self._dumped or not self.args.outdir:
            return
        self._dumped = True
        os.makedirs(self.args.outdir, exist_ok=True)
        for w in self.workers:
            path = os.path.join(self.args.outdir, 'journal-w%d.sql' % w.idx)
            with open(path, 'w') as f:
                f.write('-- worker %d, last %d statements (%s)\n' % (w.idx, len(w.journal), why))
                for line in w.journal:
                    f.write(line + '\n')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--host', required=True, help='unix socket directory')
    p.add_argument('--port', type=int, default=5432)
    p.add_argument('--calls', type=int, default=20000, help='API calls in all (successful or not)')
    p.add_argument('--workers', type=int, default=6)
    p.add_argument('--deadline', type=int, default=70, help='stop calling after this many seconds')
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--log', help='the server log, checked for crashes')
    p.add_argument('--outdir', help='where journals go on failure')
    p.add_argument('--huge-budget', type=int, default=4,
                   help='multi-megabyte arguments per worker')
    p.add_argument('--progress', type=int, default=10, help='seconds between progress lines')
    p.add_argument('--per-op', action='store_true', help='print the histogram per operation')
    p.add_argument('--no-chaos', action='store_true', help='no cancels or terminations')
    p.add_argument('--no-security', action='store_true', help='skip the security probes')
    p.add_argument('--skip', default='',
                   help='comma-separated random operations to leave out (e.g. join,heartbeat '
                   'to get past a known crash), or "owned" for the tracked keys')
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2 ** 31)
    # each failure counts: a statement error isn't counted as a call for the
    # stop condition unless it succeeded, so cap the attempts too
    h = Harness(args)
    try:
        rc = h.run()
    except Exception:
        traceback.print_exc()
        rc = 2
    sys.exit(rc)


if __name__ == '__main__':
    main()
