"""Reference near-cache client for the sessioncache PostgreSQL extension.

A near cache keeps recently read entries in the application process, so that
a hot session is read from local memory instead of from the database.  It
stays coherent through the invalidations the extension sends on the
``sessioncache_invalidate`` channel (LISTEN/NOTIFY):

* every committed put/delete/expire/evict of a key drops that key here;
* ``{"op": "flush"}`` (the server's queue overflowed) drops everything;
* a lost listener connection drops everything at once (we cannot know what
  we missed), and until the listener is back every read goes to the server;
* a fill (read from the server, then store locally) that overlaps an
  invalidation of its key is not stored, so a value read before a write can
  never be installed after that write's invalidation has gone by.

The channel carries no key in clear and every object is signed (1.1): an
invalidation names its key by ``key_hash``, hex of the first 16 bytes of
HMAC-SHA256(secret, cache NUL key), and each object carries ``mac``, hex of
the first 16 bytes of HMAC-SHA256(secret, canonical string) (README,
"Invalidation messages").  The listener fetches the secret with
``sessioncache.channel_secret()`` (granted to ``sessioncache_app``) at each
(re)connect, maps key_hash back to the keys it holds or is reading, and
ignores (and counts as ``rejected``) objects whose mac does not verify,
fetching the secret again once first (a restore or a re-created extension
has a new one).  Without the grant nothing is cached locally.  Against a
1.0 server (no ``channel_secret()``) the 1.0 format, key in clear, is read.

The price is bounded staleness: another process's write becomes visible here
when its invalidation arrives (the server promises delivery within about
100 ms of commit).  Writes made through this client are visible to it at once
(the local copy is dropped when the write returns).

Classes:

``NearCache``   the cache: get / put / delete / patch / incr / touch /
                delete_user, with a listener thread.
``Membership``  join a cluster, heartbeat in a thread, follow the view,
                leave.

Everything is thread-safe.  Requires psycopg 3 (Debian: python3-psycopg).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import hmac
import json
import logging
import math
import os
import random
import select
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

__all__ = ["NearCache", "Membership", "backoff_delays"]

log = logging.getLogger("sessioncache_client")

INVALIDATE_CHANNEL = "sessioncache_invalidate"
MEMBERSHIP_CHANNEL = "sessioncache_membership"


def _hmac_hex(secret: bytes, parts) -> str:
    """Hex of the first 16 bytes of HMAC-SHA256(secret, parts joined by NUL)."""
    data = b"\0".join(p.encode("utf-8") for p in parts)
    return hmac.new(secret, data, hashlib.sha256).digest()[:16].hex()


def key_hash(secret: bytes, cache: str, key: str) -> str:
    """The ``key_hash`` the server sends for (cache, key)."""
    return _hmac_hex(secret, (cache, key))


def _field(m: dict, name: str) -> str:
    v = m.get(name)
    if v is None:
        return ""
    if isinstance(v, bool):
        raise ValueError("bad field")
    return str(v)


def message_mac(secret: bytes, channel: str, m: dict) -> str:
    """The ``mac`` an object on ``channel`` must carry (README,
    "Invalidation messages"): the channel name and the object's fields in a
    fixed order, joined by NUL bytes, an absent field as the empty string."""
    if channel == MEMBERSHIP_CHANNEL:
        names = ("cluster", "view_id")
    else:
        names = ("cache", "key_hash", "op", "version")
    return _hmac_hex(secret, [channel] + [_field(m, n) for n in names])


def backoff_delays(initial: float = 0.1, maximum: float = 5.0,
                   jitter: float = 0.5, rng: Optional[random.Random] = None):
    """Yield reconnection delays: ``initial`` doubling up to ``maximum``.

    Each delay is drawn uniformly from ``[d * (1 - jitter), d]`` where ``d``
    is the nominal delay, so that many clients that lost the server at the
    same moment do not all come back at the same moment.
    """
    rng = rng or random.Random()
    d = initial
    while True:
        yield d * (1.0 - jitter * rng.random())
        d = min(d * 2.0, maximum)


class _Entry:
    __slots__ = ("value", "version", "user_id", "deadline", "touched_at")

    def __init__(self, value, version, user_id, deadline, touched_at):
        self.value = value
        self.version = version          # entry version, a lower bound (see _FILL_SQL)
        self.user_id = user_id
        self.deadline = deadline        # time.monotonic() after which the entry is dead
        self.touched_at = touched_at    # monotonic time of our last server-side touch


class _Fill:
    """One read in flight from the server, registered under its key.

    The listener marks it when an invalidation of its key arrives meanwhile;
    the fill is then not installed (unless every such invalidation was a put
    no newer than the version we read)."""
    __slots__ = ("epoch", "stale", "max_put_version")

    def __init__(self, epoch):
        self.epoch = epoch
        self.stale = False
        self.max_put_version = None

    def note(self, op, version):
        if op == "put" and isinstance(version, int) and not isinstance(version, bool):
            if self.max_put_version is None or version > self.max_put_version:
                self.max_put_version = version
        else:
            self.stale = True


# One round trip that reads the entry's metadata *before* its value.  The
# value is computed in the projection of the join, which runs only after the
# join's inputs, entry_info included, have produced their row.  So the version
# we store is never newer than the value we store (a put newer than the
# value always invalidates it), and the remaining lifetime is measured no
# later than the value is read (the local deadline is never later than the
# server's).  (SELECT 1) LEFT JOIN keeps one row when the key is absent.
_FILL_SQL = """
SELECT i.version, i.user_id, i.ttl,
       sessioncache.get(%(cache)s, %(key)s, %(touch)s) AS value
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT e.version, e.user_id,
           extract(epoch FROM e.expires_at - clock_timestamp())::float8 AS ttl
    FROM sessioncache.entry_info(%(cache)s, %(key)s) AS e) AS i ON true
"""


class _Pool:
    """A minimal pool of autocommit data connections (at most ``size``)."""

    def __init__(self, conninfo: str, size: int, kwargs: Dict[str, Any]):
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._idle: List[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextmanager
    def connection(self):
        self._slots.acquire()
        conn = None
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("NearCache is closed")
                if self._idle:
                    conn = self._idle.pop()
            if conn is None:
                conn = psycopg.connect(self._conninfo, autocommit=True, **self._kwargs)
            yield conn
        finally:
            if conn is not None:
                keep = (not conn.closed and not conn.broken and
                        conn.info.transaction_status == pq.TransactionStatus.IDLE)
                with self._lock:
                    if keep and not self._closed:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            self._slots.release()

    def close(self):
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled)


class NearCache:
    """An in-process LRU of sessioncache entries kept coherent by LISTEN/NOTIFY.

    Parameters
    ----------
    conninfo:
        libpq connection string of the database that holds the extension.
    max_entries:
        bound of the local LRU (least recently used entries go first).
    caches:
        names of the caches to keep locally.  ``None`` means every cache whose
        ``notify`` is on, read from ``sessioncache.caches`` at each (re)connect
        of the listener (needs ``sessioncache_monitor``; without it nothing is
        cached locally and a warning is logged).  A cache listed here must
        have ``notify`` on, or its local copies would never be invalidated.
        Other caches are passed through to the server.
    pool_size:
        number of data connections (reads that miss, and writes).
    listen_membership:
        also LISTEN on ``sessioncache_membership``; see
        ``add_membership_listener``.
    on_invalidate:
        ``f(cache, key, op, version)`` called from the listener thread after
        each key invalidation has been applied (``op`` may be ``"flush"`` with
        cache and key None).  ``key`` is the key when this client holds or is
        reading it, else the message's ``key_hash`` (compare with
        ``key_hash(cache, key)``).  Keep it quick.
    on_state:
        ``f(online: bool)`` called from the listener thread when the listener
        goes online (LISTEN done, cache usable) or offline (cache dropped).
    touch_interval:
        ``get(..., touch=True)`` must refresh the idle timer on the server, so
        by default it always reads from the server.  With a number of seconds
        here, a local copy that this client touched less than that long ago
        is served without touching again (the idle timer then lags by at most
        that much).
    copy_values:
        return a deep copy of locally held values (default), so a caller that
        mutates a result does not change the cache.
    backoff_initial, backoff_max:
        listener reconnection delays (doubling, with jitter).
    ping_interval:
        seconds of silence after which the listener sends ``SELECT 1`` to find
        a dead connection (TCP keepalives are also enabled).
    connect_kwargs:
        extra keyword arguments to ``psycopg.connect``.  Behind PgBouncer in
        transaction pooling mode pass ``{"prepare_threshold": None}``: psycopg
        prepares a statement run five times on the server connection it
        happened to get, and the next transaction may run on another one.
    listen_conninfo:
        conninfo of the listener connection (default: ``conninfo``).  LISTEN
        needs a session of its own, so behind a transaction-pooling PgBouncer
        point this straight at PostgreSQL (the data connections may go
        through the pooler).
    start:
        start the listener at once (otherwise call ``start()``).
    """

    def __init__(self, conninfo: str, *, max_entries: int = 10000,
                 caches: Optional[Iterable[str]] = None, pool_size: int = 4,
                 listen_membership: bool = False,
                 on_invalidate: Optional[Callable] = None,
                 on_state: Optional[Callable[[bool], None]] = None,
                 touch_interval: Optional[float] = None,
                 copy_values: bool = True,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 ping_interval: float = 10.0,
                 connect_kwargs: Optional[Dict[str, Any]] = None,
                 listen_conninfo: Optional[str] = None,
                 start: bool = True):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._conninfo = conninfo
        self._listen_conninfo = listen_conninfo or conninfo
        self._max_entries = max_entries
        self._fixed_caches = frozenset(caches) if caches is not None else None
        self._caches: frozenset = self._fixed_caches or frozenset()
        self._listen_membership = listen_membership
        self._on_invalidate = on_invalidate
        self._on_state = on_state
        self._touch_interval = touch_interval
        self._copy = copy_values
        self._backoff = (backoff_initial, backoff_max)
        self._ping_interval = ping_interval
        self._connect_kwargs = dict(connect_kwargs or {})
        self._membership_listeners: List[Callable[[str, int], None]] = []

        self._lock = threading.Lock()
        self._lru: "collections.OrderedDict[Tuple[str, str], _Entry]" = collections.OrderedDict()
        self._fills: Dict[Tuple[str, str], List[_Fill]] = {}
        self._epoch = 0                 # bumped on every drop-everything
        self._online = False
        self._online_cv = threading.Condition(self._lock)
        self._listener_pid: Optional[int] = None
        self._stats = collections.Counter()
        # the channel secret: bytes (signed messages), None (a 1.0 server:
        # keys in clear) or False (no grant: cache nothing locally)
        self._secret = None
        self._secret_refetched = False  # since the last object that verified
        self._hashes: Dict[Tuple[str, str], str] = {}   # (cache, key_hash) -> key

        self._pool = _Pool(conninfo, pool_size, self._connect_kwargs)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: Optional[threading.Thread] = None
        if start:
            self.start()

    # ------------------------------------------------------------------
    # life cycle

    def start(self) -> "NearCache":
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen_loop,
                                            name="sessioncache-listener", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the listener, drop the local copies, close the connections."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join()
        self._pool.close()
        with self._lock:
            self._lru.clear()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------
    # state

    @property
    def online(self) -> bool:
        """True while the listener is connected and the LRU is in use."""
        with self._lock:
            return self._online

    @property
    def listener_pid(self) -> Optional[int]:
        """Backend pid of the listener connection (None while offline)."""
        with self._lock:
            return self._listener_pid

    def wait_online(self, timeout: float) -> bool:
        """Wait until the listener is online; False if ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._online:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._online_cv.wait(left)
            return True

    def stats(self) -> Dict[str, int]:
        """Counters: hits, misses, bypassed, fills_installed, fills_discarded,
        invalidations, dropped, flushes, connects, disconnects, lru_evictions,
        rejected (objects whose mac did not verify), secret_fetches."""
        with self._lock:
            return dict(self._stats)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def cached(self, cache: str, key: str) -> bool:
        """Whether a local copy of the key is held (no server call)."""
        with self._lock:
            return (cache, key) in self._lru

    def add_membership_listener(self, fn: Callable[[str, int], None]) -> None:
        """``fn(cluster, view_id)`` on each membership notification (needs
        ``listen_membership=True``); called from the listener thread."""
        with self._lock:
            self._membership_listeners.append(fn)

    def key_hash(self, cache: str, key: str) -> Optional[str]:
        """The ``key_hash`` the channel uses for (cache, key) under the
        current secret (None before the listener fetched one)."""
        secret = self._secret
        return key_hash(secret, cache, key) if isinstance(secret, bytes) else None

    def invalidate(self, cache: str, key: str) -> None:
        """Drop the local copy of one key."""
        self._drop_key_local(cache, key)

    def clear(self) -> None:
        """Drop every local copy (and keep in-flight fills from landing)."""
        with self._lock:
            self._drop_all_locked()

    # ------------------------------------------------------------------
    # reads

    def get(self, cache: str, key: str, touch: bool = False) -> Any:
        """The entry's value (``None`` when absent or expired).

        Served from the local copy when there is a live one; otherwise read
        from the server (``sessioncache.get``) and kept locally if the cache
        is near-cached, the listener is online and no invalidation of the key
        arrived during the read.
        """
        ent = self.get_entry(cache, key, touch)
        return None if ent is None else ent[0]

    def get_entry(self, cache: str, key: str, touch: bool = False) -> Optional[Tuple[Any, Optional[int]]]:
        """``(value, version)`` or ``None``; as ``get``.  The version is a lower
        bound of the value's version (exact unless a write raced the read)."""
        ck = (cache, key)
        fill = None
        now = time.monotonic()
        with self._lock:
            if self._online and cache in self._caches and self._secret is not False:
                e = self._lru.get(ck)
                if e is not None and e.deadline <= now:
                    del self._lru[ck]          # expired on the server by now
                    e = None
                if e is not None and (not touch or (
                        self._touch_interval is not None and e.touched_at is not None
                        and now - e.touched_at < self._touch_interval)):
                    self._lru.move_to_end(ck)
                    self._stats["hits"] += 1
                    return (copy.deepcopy(e.value) if self._copy else e.value, e.version)
                self._stats["misses"] += 1
                fill = _Fill(self._epoch)
                self._fills.setdefault(ck, []).append(fill)
                self._remember_hash_locked(cache, key)
            else:
                self._stats["bypassed"] += 1
        started = time.monotonic()
        row = None
        try:
            row = self._fetch(cache, key, touch)
        finally:
            if fill is not None:
                self._finish_fill(ck, fill, row, started, touch)
        version, user_id, ttl, value = row
        if value is None:
            return None
        return (value, version)

    def _fetch(self, cache: str, key: str, touch: bool):
        """Read ``(version, user_id, ttl_seconds, value)`` from the server.
        Reads are idempotent, so a broken pooled connection is retried once."""
        params = {"cache": cache, "key": key, "touch": touch}
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    row = conn.execute(_FILL_SQL, params).fetchone()
                    return tuple(row)
            except Exception as exc:
                if attempt == 1 and _is_connection_error(exc):
                    continue
                raise

    def _finish_fill(self, ck, fill: _Fill, row, started: float, touched: bool) -> None:
        with self._lock:
            lst = self._fills.get(ck)
            if lst is not None:
                lst.remove(fill)
                if not lst:
                    del self._fills[ck]
            if row is None:
                return                              # the read failed
            version, user_id, ttl, value = row
            ok = (not fill.stale and fill.epoch == self._epoch and self._online
                  and value is not None)
            if ok and fill.max_put_version is not None:
                # a put arrived meanwhile: keep ours only if it is that put or newer
                ok = version is not None and version >= fill.max_put_version
            if not ok:
                if value is not None:
                    self._stats["fills_discarded"] += 1
                return
            deadline = math.inf if ttl is None else started + float(ttl)
            stored = copy.deepcopy(value) if self._copy else value
            self._lru[ck] = _Entry(stored, version, user_id, deadline,
                                   started if touched else None)
            self._lru.move_to_end(ck)
            self._stats["fills_installed"] += 1
            while len(self._lru) > self._max_entries:
                self._lru.popitem(last=False)
                self._stats["lru_evictions"] += 1

    # ------------------------------------------------------------------
    # writes: pass through, then drop the local copy

    def _write(self, sql: str, params: tuple, cache: str, key: Optional[str] = None):
        try:
            with self._pool.connection() as conn:
                return conn.execute(sql, params).fetchone()[0]
        finally:
            # also after a failure: the write may have committed regardless
            if key is not None:
                self._drop_key_local(cache, key)

    def put(self, cache: str, key: str, value: Any, user_id: Optional[str] = None,
            idle_timeout=None, max_lifespan=None) -> int:
        """``sessioncache.put``; returns the new version.  Timeouts: a
        ``datetime.timedelta`` or an interval string."""
        return self._write(
            "SELECT sessioncache.put(%s, %s, %s, %s, %s::interval, %s::interval)",
            (cache, key, Jsonb(value), user_id, idle_timeout, max_lifespan), cache, key)

    def delete(self, cache: str, key: str) -> bool:
        return self._write("SELECT sessioncache.delete(%s, %s)", (cache, key), cache, key)

    def patch(self, cache: str, key: str, patch: Dict[str, Any]) -> Any:
        return self._write("SELECT sessioncache.patch(%s, %s, %s)",
                           (cache, key, Jsonb(patch)), cache, key)

    def incr(self, cache: str, key: str, field: str, delta: int = 1,
             user_id: Optional[str] = None) -> int:
        return self._write("SELECT sessioncache.incr(%s, %s, %s, %s::bigint, %s)",
                           (cache, key, field, delta, user_id), cache, key)

    def touch(self, cache: str, key: str) -> bool:
        """Refresh the idle timer on the server.  The value does not change,
        so a local copy is kept (and marked touched) unless the key is gone."""
        with self._pool.connection() as conn:
            ok = conn.execute("SELECT sessioncache.touch(%s, %s)", (cache, key)).fetchone()[0]
        if not ok:
            self._drop_key_local(cache, key)
        else:
            with self._lock:
                e = self._lru.get((cache, key))
                if e is not None:
                    e.touched_at = time.monotonic()
        return ok

    def delete_user(self, cache: str, user_id: str) -> int:
        """``sessioncache.delete_user`` (logout everywhere); drops this
        client's local copies of the user's entries at once."""
        try:
            with self._pool.connection() as conn:
                return conn.execute("SELECT sessioncache.delete_user(%s, %s)",
                                    (cache, user_id)).fetchone()[0]
        finally:
            with self._lock:
                for ck in [ck for ck, e in self._lru.items()
                           if ck[0] == cache and e.user_id == user_id]:
                    del self._lru[ck]
                for ck, fills in self._fills.items():
                    if ck[0] == cache:
                        for f in fills:
                            f.stale = True

    # ------------------------------------------------------------------
    # invalidation

    def _drop_key_local(self, cache: str, key: str) -> None:
        with self._lock:
            self._lru.pop((cache, key), None)
            for f in self._fills.get((cache, key), ()):
                f.stale = True

    def _drop_all_locked(self) -> None:
        self._epoch += 1            # in-flight fills will not be installed
        self._lru.clear()
        self._hashes = {}
        for (c, k) in self._fills:  # reads in flight must still be found
            self._remember_hash_locked(c, k)

    def _remember_hash_locked(self, cache: str, key: str) -> None:
        if not isinstance(self._secret, bytes):
            return
        self._hashes[(cache, key_hash(self._secret, cache, key))] = key
        # forget the keys no longer held, now and then
        if len(self._hashes) > 2 * (len(self._lru) + len(self._fills)) + 1024:
            self._hashes = {hk: k for hk, k in self._hashes.items()
                            if (hk[0], k) in self._lru or (hk[0], k) in self._fills}

    def _fetch_secret(self, conn=None):
        """The channel secret: bytes, None (a 1.0 server) or False (no grant)."""
        def run(c):
            return c.execute("SELECT sessioncache.channel_secret()").fetchone()[0]
        self._stats["secret_fetches"] += 1
        try:
            if conn is not None:
                return bytes(run(conn))
            with self._pool.connection() as c:
                return bytes(run(c))
        except psycopg.errors.UndefinedFunction:
            return None
        except psycopg.errors.InsufficientPrivilege:
            log.warning("cannot call sessioncache.channel_secret() (needs "
                        "sessioncache_app): invalidations cannot be verified, "
                        "nothing is cached locally")
            return False

    def _verify(self, channel: str, m: dict) -> bool:
        """Does the object's mac verify?  Fetches the secret again once
        after a failure (it changes when the extension is re-created or the
        database restored); a new secret drops everything held."""
        if self._secret is None:
            return True                 # a 1.0 server: nothing is signed
        for attempt in (1, 2):
            secret = self._secret
            if isinstance(secret, bytes):
                mac = m.get("mac")
                try:
                    good = isinstance(mac, str) and hmac.compare_digest(
                        mac, message_mac(secret, channel, m))
                except ValueError:
                    good = False
                if good:
                    self._secret_refetched = False
                    return True
            if attempt == 2 or self._secret_refetched:
                break
            self._secret_refetched = True
            try:
                new = self._fetch_secret()
            except Exception as exc:
                log.warning("cannot fetch the channel secret: %s", exc)
                break
            if new != secret:
                with self._lock:
                    self._secret = new
                    self._drop_all_locked()     # hashes of the old secret
                    self._stats["flushes"] += 1
        self._stats["rejected"] += 1
        return False

    def _handle_payload(self, channel: str, payload: str) -> None:
        """Apply one notification (called by the listener thread; public
        enough to be driven by tests)."""
        if channel == MEMBERSHIP_CHANNEL:
            try:
                msg = json.loads(payload)
                cluster, view_id = msg["cluster"], int(msg["view_id"])
            except (ValueError, KeyError, TypeError):
                log.warning("malformed membership notification: %r", payload)
                return
            if not self._verify(channel, msg):
                log.warning("membership notification with a bad mac ignored")
                return
            with self._lock:
                listeners = list(self._membership_listeners)
            for fn in listeners:
                try:
                    fn(cluster, view_id)
                except Exception:
                    log.exception("membership listener failed")
            return
        if channel != INVALIDATE_CHANNEL:
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        msgs = msg if isinstance(msg, list) else [msg]
        if self._secret is not None:
            # signed messages: an object that is not one, or whose mac does
            # not verify, is ignored (anyone may NOTIFY this channel)
            msgs = [m for m in msgs if isinstance(m, dict) and self._verify(channel, m)]
        applied = []
        with self._lock:
            for m in msgs:
                if not isinstance(m, dict):
                    # we cannot tell what it invalidates: drop everything
                    log.warning("malformed invalidation, dropping all: %r", payload)
                    self._drop_all_locked()
                    self._stats["flushes"] += 1
                    applied.append((None, None, "flush", None))
                    continue
                op = m.get("op")
                cache, version = m.get("cache"), m.get("version")
                if self._secret is None:
                    key = m.get("key")
                else:
                    kh = m.get("key_hash")
                    key = self._hashes.get((cache, kh)) if isinstance(kh, str) else None
                    if key is None and op != "flush" and isinstance(cache, str) and isinstance(kh, str):
                        # a key we neither hold nor read: nothing to do
                        self._stats["invalidations"] += 1
                        applied.append((cache, kh, op, version))
                        continue
                if op == "flush" and isinstance(cache, str):
                    # {"cache": c, "op": "flush"}: drop all of that cache
                    for ck in [ck for ck in self._lru if ck[0] == cache]:
                        del self._lru[ck]
                    for ck, fills in self._fills.items():
                        if ck[0] == cache:
                            for f in fills:
                                f.stale = True
                    self._stats["flushes"] += 1
                    applied.append((cache, None, "flush", None))
                    continue
                if op == "flush" or not isinstance(cache, str) or not isinstance(key, str):
                    if op != "flush":
                        log.warning("malformed invalidation, dropping all: %r", m)
                    self._drop_all_locked()
                    self._stats["flushes"] += 1
                    applied.append((None, None, "flush", None))
                    continue
                self._stats["invalidations"] += 1
                ck = (cache, key)
                for f in self._fills.get(ck, ()):
                    f.note(op, version)
                e = self._lru.get(ck)
                if e is not None:
                    # a put we already hold (or older) changes nothing; any
                    # other op (including unknown ones) drops the copy
                    keep = (op == "put" and isinstance(version, int)
                            and e.version is not None and version <= e.version)
                    if not keep:
                        del self._lru[ck]
                        self._stats["dropped"] += 1
                applied.append((cache, key, op, version))
        if self._on_invalidate is not None:
            for a in applied:
                try:
                    self._on_invalidate(*a)
                except Exception:
                    log.exception("on_invalidate callback failed")

    # ------------------------------------------------------------------
    # the listener thread

    def _connect_listener(self) -> psycopg.Connection:
        kwargs = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                  "keepalives_count": 3}
        kwargs.update(self._connect_kwargs)
        return psycopg.connect(self._listen_conninfo, autocommit=True, **kwargs)

    def _read_caches(self, conn: psycopg.Connection) -> frozenset:
        if self._fixed_caches is not None:
            return self._fixed_caches
        try:
            rows = conn.execute("SELECT name FROM sessioncache.caches WHERE notify").fetchall()
            return frozenset(r[0] for r in rows)
        except psycopg.errors.InsufficientPrivilege:
            log.warning("cannot read sessioncache.caches: nothing is cached locally; "
                        "pass caches=[...] to NearCache")
            return frozenset()

    def _set_online(self, online: bool, pid: Optional[int] = None) -> None:
        with self._lock:
            was = self._online
            # going either way, nothing held or in flight may be trusted
            self._drop_all_locked()
            self._online = online
            self._listener_pid = pid if online else None
            if online:
                self._stats["connects"] += 1
                self._online_cv.notify_all()
            elif was:
                self._stats["disconnects"] += 1
        if self._on_state is not None and online != was:
            try:
                self._on_state(online)
            except Exception:
                log.exception("on_state callback failed")

    def _sleep(self, seconds: float) -> None:
        r, _, _ = select.select([self._wake_r], [], [], seconds)
        if r:
            os.read(self._wake_r, 64)

    def _listen_loop(self) -> None:
        delays = backoff_delays(*self._backoff)
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect_listener()
                # notifications that arrive while a query runs on this
                # connection (LISTEN itself, the pings) come through here
                conn.add_notify_handler(lambda n: self._handle_payload(n.channel, n.payload))
                conn.execute("LISTEN " + INVALIDATE_CHANNEL)
                if self._listen_membership:
                    conn.execute("LISTEN " + MEMBERSHIP_CHANNEL)
                caches = self._read_caches(conn)
                secret = self._fetch_secret(conn)
                with self._lock:
                    self._caches = caches
                    self._secret = secret
                    self._secret_refetched = False
                # LISTEN has committed: every later commit will reach us
                self._set_online(True, conn.info.backend_pid)
                delays = backoff_delays(*self._backoff)
                self._pump(conn)
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("sessioncache listener: %s", exc)
            finally:
                self._set_online(False)
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            if not self._stop.is_set():
                self._sleep(next(delays))

    def _pump(self, conn: psycopg.Connection) -> None:
        """Deliver notifications until stopped; raise when the connection is lost."""
        pgconn = conn.pgconn
        sock = pgconn.socket
        enc = conn.info.encoding
        last = time.monotonic()
        while not self._stop.is_set():
            r, _, _ = select.select([sock, self._wake_r], [], [], self._ping_interval)
            if self._wake_r in r:
                os.read(self._wake_r, 64)
                continue
            if sock in r:
                pgconn.consume_input()          # raises when the server is gone
                while True:
                    n = pgconn.notifies()
                    if n is None:
                        break
                    self._handle_payload(n.relname.decode(enc), n.extra.decode(enc))
                if pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("listener connection lost")
                last = time.monotonic()
            elif time.monotonic() - last >= self._ping_interval:
                conn.execute("SELECT 1")        # notifications meanwhile go to the handler
                last = time.monotonic()


class Membership:
    """Cluster membership for an application node.

    ``start()`` joins ``cluster`` as ``node`` and heartbeats in a thread every
    ``heartbeat_interval`` seconds (default a third of the lease).  When the
    lease has lapsed (SQLSTATE SC001, e.g. after a long pause or a lost
    connection) it joins again.  The current view is re-read whenever the
    view id changes; pass ``notify`` to a ``NearCache(listen_membership=True)``
    with ``near_cache.add_membership_listener(m.notify)`` to learn of changes
    at once rather than at the next heartbeat.

    Read ``view_id``, ``members``, ``is_coordinator``, ``member_id``.
    ``on_view_change(membership)`` is called from the heartbeat thread after
    each new view has been read.
    """

    def __init__(self, conninfo: str, cluster: str, node: str, *,
                 address: Optional[str] = None, lease: float = 30.0,
                 meta: Optional[Dict[str, Any]] = None,
                 heartbeat_interval: Optional[float] = None,
                 on_view_change: Optional[Callable[["Membership"], None]] = None,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 connect_kwargs: Optional[Dict[str, Any]] = None):
        self._conninfo = conninfo
        self.cluster = cluster
        self.node = node
        self._address = address
        self._lease = lease
        self._meta = meta or {}
        self._interval = heartbeat_interval if heartbeat_interval is not None else lease / 3.0
        self._on_view_change = on_view_change
        self._backoff = (backoff_initial, backoff_max)
        self._connect_kwargs = dict(connect_kwargs or {})
        self._lock = threading.Lock()
        self._member_id: Optional[int] = None
        self._view_id: Optional[int] = None
        self._members: List[Dict[str, Any]] = []
        self._wanted_view: Optional[int] = None
        self._conn: Optional[psycopg.Connection] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- public state ----------------------------------------------------

    @property
    def member_id(self) -> Optional[int]:
        with self._lock:
            return self._member_id

    @property
    def view_id(self) -> Optional[int]:
        with self._lock:
            return self._view_id

    @property
    def members(self) -> List[Dict[str, Any]]:
        """The current view, oldest member first (dicts of the columns of
        ``sessioncache.view``)."""
        with self._lock:
            return [dict(m) for m in self._members]

    @property
    def is_coordinator(self) -> bool:
        with self._lock:
            return any(m["member_id"] == self._member_id and m["is_coordinator"]
                       for m in self._members)

    # -- life cycle --------------------------------------------------------

    def start(self) -> "Membership":
        """Join (synchronously, so errors reach the caller) and start heartbeating."""
        self._ensure_conn()
        self._join()
        self._thread = threading.Thread(target=self._loop, name="sessioncache-membership",
                                        daemon=True)
        self._thread.start()
        return self

    def leave(self) -> None:
        """Stop heartbeating and leave the cluster (best effort)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._ensure_conn()
            with self._lock:
                mid = self._member_id
            if mid is not None:
                self._conn.execute("SELECT sessioncache.leave(%s)", (mid,))
        except psycopg.Error as exc:
            log.warning("sessioncache leave failed: %s", exc)
        finally:
            with self._lock:
                self._member_id = None
                self._members = []
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.leave()

    def notify(self, cluster: str, view_id: int) -> None:
        """A membership notification: re-read the view soon if it is ours and new."""
        if cluster != self.cluster:
            return
        with self._lock:
            if self._view_id is not None and view_id <= self._view_id:
                return
            self._wanted_view = view_id
        self._wake.set()

    # -- internals ---------------------------------------------------------

    def _ensure_conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
        return self._conn

    def _join(self) -> None:
        row = self._conn.execute(
            "SELECT member_id, view_id FROM sessioncache.join(%s, %s, %s, "
            "make_interval(secs => %s), %s)",
            (self.cluster, self.node, self._address, float(self._lease), Jsonb(self._meta))
        ).fetchone()
        with self._lock:
            self._member_id = row[0]
        self._read_view()

    def _read_view(self) -> None:
        cur = self._conn.execute(
            "SELECT view_id, member_id, node, address, meta, joined_at, is_coordinator "
            "FROM sessioncache.view(%s)", (self.cluster,))
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        changed = False
        with self._lock:
            view_id = max((r["view_id"] for r in rows), default=self._view_id)
            if view_id != self._view_id or rows != self._members:
                changed = True
            self._view_id = view_id
            self._members = rows
            if self._wanted_view is not None and view_id is not None and view_id >= self._wanted_view:
                self._wanted_view = None
        if changed and self._on_view_change is not None:
            try:
                self._on_view_change(self)
            except Exception:
                log.exception("on_view_change callback failed")

    def _heartbeat(self) -> None:
        with self._lock:
            mid = self._member_id
        try:
            view_id = self._conn.execute("SELECT sessioncache.heartbeat(%s)", (mid,)).fetchone()[0]
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) == "SC001":
                log.warning("lease of member %s lapsed: joining again", mid)
                self._join()
                return
            raise
        with self._lock:
            stale = view_id != self._view_id or self._wanted_view is not None
        if stale:
            self._read_view()

    def _loop(self) -> None:
        delays = backoff_delays(*self._backoff)
        next_beat = time.monotonic() + self._interval
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_beat - time.monotonic()))
            if self._stop.is_set():
                break
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                self._ensure_conn()
                if woken and time.monotonic() < next_beat:
                    self._read_view()           # a view change was announced
                else:
                    self._heartbeat()
                    next_beat = time.monotonic() + self._interval
                delays = backoff_delays(*self._backoff)
            except Exception as exc:
                log.warning("sessioncache membership: %s", exc)
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except Exception:
                        pass
                    self._conn = None
                next_beat = time.monotonic() + next(delays)
