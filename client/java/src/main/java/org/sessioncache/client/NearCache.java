package org.sessioncache.client;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;
import javax.sql.DataSource;

/**
 * A near-cache: recently read entries kept in this JVM, coherent through the
 * invalidations sessioncache sends on {@code sessioncache_invalidate}.
 *
 * <ul>
 * <li>Bounded by entries and by bytes (least recently used first out).
 * <li>Versions are ordered: a {@code put} invalidation whose version is no newer than
 *     the copy held changes nothing (the copy already reflects it); any other
 *     message drops the copy.
 * <li>Fill race: a read registers itself under its key while it runs; an
 *     invalidation arriving meanwhile marks it and a marked read is returned but
 *     not stored (unless only puts no newer than what it read marked it). An own
 *     write drops the copy at once and marks reads in flight, so a write is never
 *     shadowed by a stale fill and the client reads its own writes.
 * <li>{@code {"op":"flush"}}, a message it cannot read, a lost listener connection
 *     and a re-established one (a restart, a failover) drop everything and bump an
 *     epoch: no read from before is stored. While the listener is offline every read
 *     goes to the server and nothing is kept.
 * <li>Each copy carries the entry's server-side deadline, so it is never served
 *     after it expired even if the {@code expire} message is late.
 * </ul>
 *
 * Another node's write is seen here once its invalidation has arrived (the server
 * promises delivery within about 100 ms of commit). Thread-safe.
 */
public class NearCache extends SessionCache {
    private static final Logger LOG = Logger.getLogger(NearCache.class.getName());

    /** Settings; every field has a default. */
    public static final class Options {
        public int maxEntries = 100_000;
        public long maxBytes = 256L << 20;
        /** Caches held locally (they must have notify on); null = every cache with notify on. */
        public Set<String> caches;
        /** A copy touched on the server less than this long ago serves a touching read; 0 = never. */
        public Duration touchInterval = Duration.ZERO;
        public boolean listenMembership;
        public int poolSize = 8;
        public long backoffInitialMillis = 100;
        public long backoffMaxMillis = 5_000;
        public int pingIntervalMillis = 5_000;

        public Options caches(String... names) {
            caches = new HashSet<>(List.of(names));
            return this;
        }
    }

    private static final class Key {
        final String cache;
        final String key;
        final int hash;

        Key(String cache, String key) {
            this.cache = cache;
            this.key = key;
            this.hash = 31 * cache.hashCode() + key.hashCode();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Key && ((Key) o).cache.equals(cache) && ((Key) o).key.equals(key);
        }

        @Override
        public int hashCode() {
            return hash;
        }
    }

    private static final class Copy {
        final String value;
        final long version;
        final String userId;
        final long deadline;      // System.nanoTime() after which it is dead; Long.MAX_VALUE = never
        long touchedAt;           // nanoTime of our last server-side touch; 0 = none
        final long bytes;

        Copy(String value, long version, String userId, long deadline, long touchedAt, long bytes) {
            this.value = value;
            this.version = version;
            this.userId = userId;
            this.deadline = deadline;
            this.touchedAt = touchedAt;
            this.bytes = bytes;
        }
    }

    /** A read in flight, registered under its key. */
    private static final class Fill {
        final long epoch;
        boolean stale;
        Long maxPutVersion;

        Fill(long epoch) {
            this.epoch = epoch;
        }

        void note(Invalidation inv) {
            if (inv.op == Invalidation.Op.PUT && inv.version != null) {
                if (maxPutVersion == null || inv.version > maxPutVersion) {
                    maxPutVersion = inv.version;
                }
            } else {
                stale = true;
            }
        }
    }

    private final Options opt;
    private final Object lock = new Object();
    private final LinkedHashMap<Key, Copy> lru = new LinkedHashMap<>(1024, 0.75f, true);
    private final Map<Key, List<Fill>> fills = new HashMap<>();
    private long bytes;
    private long epoch;
    private boolean online;
    private Set<String> held = Set.of();
    private final Map<String, Long> stats = new LinkedHashMap<>();
    private final List<Consumer<Invalidation>> invalidationListeners = new CopyOnWriteArrayList<>();
    private final List<BiConsumer<String, Long>> membershipListeners = new CopyOnWriteArrayList<>();
    private final List<Consumer<Boolean>> stateListeners = new CopyOnWriteArrayList<>();
    private final NotificationListener listener;
    /** The signed channel's secret and the held keys by key_hash (issue 12). */
    private final Messages.Channel channel;
    /** Tests only: runs between a fill's read and its store. */
    volatile Runnable fillHook;

    /** A near-cache over a JDBC URL: its own pool for calls and one listener connection. */
    public NearCache(String url, Properties props, Options opt) {
        this(ConnectionSource.pool(ConnectionFactory.of(url, props), opt.poolSize),
                ConnectionFactory.of(url, props), opt);
    }

    /** A near-cache over a caller's pool (the listener keeps one of its connections). */
    public NearCache(DataSource ds, Options opt) {
        this(ConnectionSource.of(ds), ConnectionFactory.of(ds), opt);
    }

    NearCache(ConnectionSource source, ConnectionFactory listenerFactory, Options opt) {
        super(source);
        this.opt = opt;
        for (String s : new String[] {"hits", "misses", "bypassed", "fills_installed", "fills_discarded",
                "invalidations", "dropped", "flushes", "connects", "disconnects", "lru_evictions"}) {
            stats.put(s, 0L);
        }
        channel = new Messages.Channel(listenerFactory::open);
        channel.onNewSecret = () -> {
            synchronized (lock) {
                dropAllLocked();
            }
        };
        List<String> channels = new ArrayList<>();
        channels.add(Messages.INVALIDATE_CHANNEL);
        if (opt.listenMembership) {
            channels.add(Messages.MEMBERSHIP_CHANNEL);
        }
        listener = new NotificationListener(listenerFactory, channels, new NotificationListener.Handler() {
            @Override
            public void onOnline(Connection c, int pid) throws SQLException {
                Set<String> caches = readCaches(c);
                channel.load(c);
                source.evictIdle();
                setOnline(true, caches);
            }

            @Override
            public void onNotification(String channel, String payload) {
                handlePayload(channel, payload);
            }

            @Override
            public void onOffline() {
                // the server was most likely lost (restart, crash, failover): the
                // pool's idle connections point at it too
                source.evictIdle();
                setOnline(false, null);
            }
        }, opt.backoffInitialMillis, opt.backoffMaxMillis, opt.pingIntervalMillis).start();
    }

    // ------------------------------------------------------------------
    // state and counters

    public boolean isOnline() {
        synchronized (lock) {
            return online;
        }
    }

    /** Waits until the listener is online; false on timeout. */
    public boolean awaitOnline(Duration timeout) throws InterruptedException {
        long end = System.nanoTime() + timeout.toNanos();
        synchronized (lock) {
            while (!online) {
                long left = end - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                TimeUnit.NANOSECONDS.timedWait(lock, left);
            }
            return true;
        }
    }

    /** The listener connection's server pid (0 when offline). */
    public int listenerPid() {
        return listener.backendPid();
    }

    /** hits, misses, bypassed, fills_installed, fills_discarded, invalidations, dropped,
     *  flushes, connects, disconnects, lru_evictions, and entries/bytes held now. */
    /** The signed channel: its key_hash of a key, rejected messages, secret fetches. */
    public Messages.Channel channel() {
        return channel;
    }

    public Map<String, Long> stats() {
        synchronized (lock) {
            Map<String, Long> s = new LinkedHashMap<>(stats);
            s.put("entries", (long) lru.size());
            s.put("bytes", bytes);
            return s;
        }
    }

    public int size() {
        synchronized (lock) {
            return lru.size();
        }
    }

    /** Whether a live copy of the key is held. */
    public boolean cached(String cache, String key) {
        synchronized (lock) {
            Copy c = lru.get(new Key(cache, key));
            return c != null && c.deadline - System.nanoTime() > 0;
        }
    }

    /** The copy held and its version, without going to the server; null when none. */
    public Map.Entry<String, Long> peek(String cache, String key) {
        synchronized (lock) {
            Copy c = lru.get(new Key(cache, key));
            if (c == null || c.deadline - System.nanoTime() <= 0) {
                return null;
            }
            return Map.entry(c.value, c.version);
        }
    }

    /** Called (on the listener thread) for every invalidation after it was applied. */
    public void addInvalidationListener(Consumer<Invalidation> l) {
        invalidationListeners.add(l);
    }

    /** Called with (cluster, view id) for each message on sessioncache_membership
     *  (needs {@link Options#listenMembership}); e.g. {@code membership::onViewChange}. */
    public void addMembershipListener(BiConsumer<String, Long> l) {
        membershipListeners.add(l);
    }

    /** Called with true / false when the listener comes online / goes offline. */
    public void addStateListener(Consumer<Boolean> l) {
        stateListeners.add(l);
    }

    private void count(String what, long n) {
        stats.merge(what, n, Long::sum);
    }

    // ------------------------------------------------------------------
    // reads

    @Override
    public String get(String cache, String key, boolean touch) throws SQLException {
        Entry e = getEntry(cache, key, touch);
        return e == null ? null : e.value;
    }

    @Override
    public Entry getEntry(String cache, String key, boolean touch) throws SQLException {
        Objects.requireNonNull(cache, "cache");
        Objects.requireNonNull(key, "key");
        Key k = new Key(cache, key);
        Fill f;
        long now = System.nanoTime();
        synchronized (lock) {
            Copy c = lru.get(k);
            if (c != null) {
                if (c.deadline - now <= 0) {
                    remove(k);
                } else if (!touch || (opt.touchInterval.toNanos() > 0 && c.touchedAt != 0
                        && now - c.touchedAt < opt.touchInterval.toNanos())) {
                    count("hits", 1);
                    return new Entry(c.value, c.version, c.userId,
                            c.deadline == Long.MAX_VALUE ? null : (c.deadline - now) / 1e9);
                }
            }
            if (!online || !held.contains(cache) || !channel.usable()) {
                count("bypassed", 1);
                f = null;
            } else {
                count("misses", 1);
                f = new Fill(epoch);
                fills.computeIfAbsent(k, x -> new ArrayList<>(1)).add(f);
                channel.remember(cache, key);
                if (channel.size() > 2 * (lru.size() + fills.size()) + 1024) {
                    channel.retain((c1, k1) -> lru.containsKey(new Key(c1, k1))
                            || fills.containsKey(new Key(c1, k1)));
                }
            }
        }
        Entry e = null;
        try {
            e = super.getEntry(cache, key, touch);
            Runnable hook = fillHook;
            if (hook != null && f != null) {
                hook.run();
            }
            return e;
        } finally {
            if (f != null) {
                finishFill(k, f, e, touch, now);
            }
        }
    }

    private void finishFill(Key k, Fill f, Entry e, boolean touch, long started) {
        synchronized (lock) {
            List<Fill> l = fills.get(k);
            if (l != null) {
                l.remove(f);
                if (l.isEmpty()) {
                    fills.remove(k);
                }
            }
            if (e == null || e.version == null) {
                return;     // absent (a miss is not cached) or failed
            }
            boolean ok = !f.stale && f.epoch == epoch && online && held.contains(k.cache)
                    && (f.maxPutVersion == null || f.maxPutVersion <= e.version);
            if (!ok) {
                count("fills_discarded", 1);
                return;
            }
            long deadline = e.ttlSeconds == null ? Long.MAX_VALUE
                    : started + (long) (Math.max(0, e.ttlSeconds) * 1e9);
            long size = 2L * (e.value.length() + k.key.length() + k.cache.length()) + 96;
            Copy old = lru.get(k);
            if (old != null) {
                if (old.version > e.version) {
                    count("fills_discarded", 1);
                    return;     // a newer copy got there first
                }
                remove(k);
            }
            lru.put(k, new Copy(e.value, e.version, e.userId, deadline, touch ? started : 0, size));
            bytes += size;
            count("fills_installed", 1);
            Iterator<Map.Entry<Key, Copy>> it = lru.entrySet().iterator();
            while ((lru.size() > opt.maxEntries || bytes > opt.maxBytes) && it.hasNext()) {
                Map.Entry<Key, Copy> old2 = it.next();
                bytes -= old2.getValue().bytes;
                it.remove();
                count("lru_evictions", 1);
            }
        }
    }

    private void remove(Key k) {
        Copy c = lru.remove(k);
        if (c != null) {
            bytes -= c.bytes;
        }
    }

    // ------------------------------------------------------------------
    // writes: through to the server, then drop the copy (even on failure: the
    // commit may have happened anyway) and mark reads in flight

    private void ownWrite(String cache, String key) {
        Key k = new Key(cache, key);
        synchronized (lock) {
            remove(k);
            List<Fill> l = fills.get(k);
            if (l != null) {
                for (Fill f : l) {
                    f.stale = true;
                }
            }
        }
    }

    @Override
    public long put(String cache, String key, String value, String userId, Duration idle,
                    Duration life) throws SQLException {
        try {
            return super.put(cache, key, value, userId, idle, life);
        } finally {
            ownWrite(cache, key);
        }
    }

    @Override
    public boolean touch(String cache, String key) throws SQLException {
        boolean r = super.touch(cache, key);
        synchronized (lock) {
            Copy c = lru.get(new Key(cache, key));
            if (c != null) {
                if (r) {
                    c.touchedAt = System.nanoTime();
                } else {
                    remove(new Key(cache, key));
                }
            }
        }
        return r;
    }

    @Override
    public String patch(String cache, String key, String patchJson) throws SQLException {
        try {
            return super.patch(cache, key, patchJson);
        } finally {
            ownWrite(cache, key);
        }
    }

    @Override
    public long incr(String cache, String key, String field, long delta, String userId) throws SQLException {
        try {
            return super.incr(cache, key, field, delta, userId);
        } finally {
            ownWrite(cache, key);
        }
    }

    @Override
    public boolean delete(String cache, String key) throws SQLException {
        try {
            return super.delete(cache, key);
        } finally {
            ownWrite(cache, key);
        }
    }

    @Override
    public int deleteUser(String cache, String userId) throws SQLException {
        try {
            return super.deleteUser(cache, userId);
        } finally {
            synchronized (lock) {
                lru.entrySet().removeIf(en -> {
                    boolean drop = en.getKey().cache.equals(cache) && Objects.equals(en.getValue().userId, userId);
                    if (drop) {
                        bytes -= en.getValue().bytes;
                    }
                    return drop;
                });
                for (Map.Entry<Key, List<Fill>> en : fills.entrySet()) {
                    if (en.getKey().cache.equals(cache)) {
                        for (Fill f : en.getValue()) {
                            f.stale = true;
                        }
                    }
                }
            }
        }
    }

    /** Drops the local copy of one key. */
    public void invalidate(String cache, String key) {
        ownWrite(cache, key);
    }

    /** Drops every local copy (and every read in flight's right to be stored). */
    public void clear() {
        synchronized (lock) {
            dropAllLocked();
        }
    }

    private void dropAllLocked() {
        lru.clear();
        bytes = 0;
        epoch++;
        for (List<Fill> l : fills.values()) {
            for (Fill f : l) {
                f.stale = true;
            }
        }
    }

    // ------------------------------------------------------------------
    // the listener's side

    private Set<String> readCaches(Connection c) throws SQLException {
        if (opt.caches != null) {
            return Set.copyOf(opt.caches);
        }
        try (Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT name FROM sessioncache.caches WHERE notify")) {
            Set<String> s = new HashSet<>();
            while (rs.next()) {
                s.add(rs.getString(1));
            }
            return s;
        } catch (SQLException e) {
            if ("42501".equals(e.getSQLState())) {
                LOG.warning("cannot read sessioncache.caches: nothing is cached locally;"
                        + " set Options.caches");
                return Set.of();
            }
            throw e;
        }
    }

    private void setOnline(boolean on, Set<String> caches) {
        boolean was;
        synchronized (lock) {
            was = online;
            // going either way, nothing held or in flight may be trusted
            dropAllLocked();
            online = on;
            if (on) {
                held = caches;
                count("connects", 1);
                lock.notifyAll();
            } else if (was) {
                count("disconnects", 1);
            }
        }
        if (was != on) {
            for (Consumer<Boolean> l : stateListeners) {
                try {
                    l.accept(on);
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, "state listener failed", e);
                }
            }
        }
    }

    /** Applies one notification (public for tests that feed payloads directly). */
    public void handlePayload(String channel, String payload) {
        if (Messages.MEMBERSHIP_CHANNEL.equals(channel)) {
            Messages.ViewChange vc = Messages.parseViewChange(payload, this.channel);
            if (vc == null) {
                LOG.warning("malformed membership notification: " + payload);
                return;
            }
            for (BiConsumer<String, Long> l : membershipListeners) {
                try {
                    l.accept(vc.cluster, vc.viewId);
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, "membership listener failed", e);
                }
            }
            return;
        }
        if (!Messages.INVALIDATE_CHANNEL.equals(channel)) {
            return;
        }
        List<Invalidation> msgs = Messages.parseInvalidations(payload, this.channel);
        synchronized (lock) {
            for (Invalidation inv : msgs) {
                if (inv.isFlush()) {
                    if (inv.cache == null) {
                        dropAllLocked();
                    } else {
                        dropCacheLocked(inv.cache);
                    }
                    count("flushes", 1);
                    continue;
                }
                count("invalidations", 1);
                Key k = new Key(inv.cache, inv.key);
                List<Fill> l = fills.get(k);
                if (l != null) {
                    for (Fill f : l) {
                        f.note(inv);
                    }
                }
                Copy c = lru.get(k);
                if (c != null) {
                    // a put we already hold (or older) changes nothing; anything
                    // else, unknown operations included, drops the copy
                    boolean keep = inv.op == Invalidation.Op.PUT && inv.version != null
                            && inv.version <= c.version;
                    if (!keep) {
                        remove(k);
                        count("dropped", 1);
                    }
                }
            }
        }
        for (Invalidation inv : msgs) {
            for (Consumer<Invalidation> l : invalidationListeners) {
                try {
                    l.accept(inv);
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, "invalidation listener failed", e);
                }
            }
        }
    }

    private void dropCacheLocked(String cache) {
        lru.entrySet().removeIf(en -> {
            boolean drop = en.getKey().cache.equals(cache);
            if (drop) {
                bytes -= en.getValue().bytes;
            }
            return drop;
        });
        for (Map.Entry<Key, List<Fill>> en : fills.entrySet()) {
            if (en.getKey().cache.equals(cache)) {
                for (Fill f : en.getValue()) {
                    f.stale = true;
                }
            }
        }
    }

    /** Drops the listener connection (it reconnects); everything held is dropped. */
    public void reconnectListener() {
        listener.reconnect();
    }

    /** The keys held locally, for diagnostics: (cache, key) pairs. */
    public List<String[]> heldKeys() {
        synchronized (lock) {
            List<String[]> out = new ArrayList<>(lru.size());
            for (Key k : lru.keySet()) {
                out.add(new String[] {k.cache, k.key});
            }
            return out;
        }
    }

    @Override
    public void close() {
        listener.close();
        super.close();
    }

}
