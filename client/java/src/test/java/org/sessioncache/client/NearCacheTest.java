package org.sessioncache.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sessioncache.client.TestServer.poll;
import static org.sessioncache.client.TestServer.ukey;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The near-cache against a real server: coherence between clients, own writes,
 *  typed errors, the bounds, the fill race, expiry. */
class NearCacheTest {
    private final List<AutoCloseable> closing = new ArrayList<>();

    NearCache client(NearCache.Options o) throws InterruptedException {
        NearCache c = new NearCache(TestServer.URL, TestServer.props(), o);
        closing.add(c);
        assertTrue(c.awaitOnline(Duration.ofSeconds(10)), "listener did not come online");
        return c;
    }

    NearCache client() throws InterruptedException {
        return client(new NearCache.Options());
    }

    @AfterEach
    void close() throws Exception {
        for (AutoCloseable c : closing) {
            c.close();
        }
    }

    @Test
    void writeInOneClientInvalidatesTheOther() throws Exception {
        NearCache a = client();
        NearCache b = client();
        String k = ukey("k");
        long v1 = b.put("sessions", k, "{\"n\": 1}");
        assertEquals("{\"n\": 1}", a.get("sessions", k));
        assertTrue(a.cached("sessions", k));
        long hits = a.stats().get("hits");
        SessionCache.Entry e = a.getEntry("sessions", k, false);
        assertEquals(v1, e.version);
        assertEquals(hits + 1, a.stats().get("hits"), "second read not served locally");

        long v2 = b.put("sessions", k, "{\"n\": 2}");
        assertTrue(v2 > v1);
        assertTrue(poll(() -> !a.cached("sessions", k), 2000), "put did not invalidate");
        assertEquals("{\"n\": 2}", a.get("sessions", k));
        b.patch("sessions", k, "{\"p\": true}");
        assertTrue(poll(() -> !a.cached("sessions", k), 2000), "patch did not invalidate");
        assertEquals("{\"n\": 2, \"p\": true}", a.get("sessions", k));
        assertEquals(7, b.incr("sessions", k, "n", 5));
        assertTrue(poll(() -> !a.cached("sessions", k), 2000), "incr did not invalidate");
        assertEquals("{\"n\": 7, \"p\": true}", a.get("sessions", k));
        assertTrue(b.delete("sessions", k));
        assertTrue(poll(() -> !a.cached("sessions", k), 2000), "delete did not invalidate");
        assertNull(a.get("sessions", k));
        assertFalse(a.cached("sessions", k), "a miss must not be cached");
    }

    @Test
    void deleteUserAndUserEntries() throws Exception {
        NearCache a = client();
        NearCache b = client();
        String user = ukey("user");
        List<String> keys = List.of(ukey("k"), ukey("k"), ukey("k"));
        for (String k : keys) {
            b.put("sessions", k, "{\"k\": \"" + k + "\"}", user);
            assertTrue(a.get("sessions", k) != null);
        }
        assertEquals(3, b.userEntries("sessions", user).size());
        assertEquals(3, b.deleteUser("sessions", user));
        assertTrue(poll(() -> keys.stream().noneMatch(k -> a.cached("sessions", k)), 2000));
        assertEquals(0, a.userEntries("sessions", user).size());
        assertTrue(b.entryInfo("sessions", keys.get(0)).isEmpty());
    }

    @Test
    void ownWritesAreVisibleAtOnce() throws Exception {
        NearCache a = client();
        String k = ukey("k");
        a.put("sessions", k, "{\"v\": 1}");
        assertEquals("{\"v\": 1}", a.get("sessions", k));
        a.put("sessions", k, "{\"v\": 2}");
        assertFalse(a.cached("sessions", k));
        assertEquals("{\"v\": 2}", a.get("sessions", k));
        a.delete("sessions", k);
        assertNull(a.get("sessions", k));
    }

    @Test
    void olderPutNeverEvictsNewerCopy() throws Exception {
        NearCache a = client();
        String k = ukey("k");
        long v = a.put("sessions", k, "{\"v\": 1}");
        a.get("sessions", k);
        assertTrue(a.cached("sessions", k));
        a.handlePayload(Messages.INVALIDATE_CHANNEL, signed(a, "sessions", k, "put", v - 1));
        a.handlePayload(Messages.INVALIDATE_CHANNEL, signed(a, "sessions", k, "put", v));
        assertTrue(a.cached("sessions", k), "a put no newer than the copy dropped it");
        a.handlePayload(Messages.INVALIDATE_CHANNEL, signed(a, "sessions", k, "put", v + 1));
        assertFalse(a.cached("sessions", k));
        a.get("sessions", k);
        a.handlePayload(Messages.INVALIDATE_CHANNEL, signed(a, "sessions", k, "expire", v));
        assertFalse(a.cached("sessions", k), "expire carries the current version and always drops");
        a.get("sessions", k);
        a.handlePayload(Messages.INVALIDATE_CHANNEL, signed(a, "other", null, "flush", null));
        assertTrue(a.cached("sessions", k), "a flush of another cache dropped this one");
        // forged or malformed messages (anyone may NOTIFY) are ignored and counted
        long rejected = a.channel().rejected();
        a.handlePayload(Messages.INVALIDATE_CHANNEL, "{\"op\": \"flush\"}");
        a.handlePayload(Messages.INVALIDATE_CHANNEL, "garbage");
        a.handlePayload(Messages.INVALIDATE_CHANNEL, "{\"cache\": \"sessions\", \"key\": \"" + k
                + "\", \"op\": \"delete\", \"version\": " + (v + 9) + "}");
        assertTrue(a.cached("sessions", k), "a forged message dropped an entry");
        assertEquals(rejected + 3, a.channel().rejected());
        a.handlePayload(Messages.INVALIDATE_CHANNEL, signed(a, null, null, "flush", null));
        assertEquals(0, a.size());
    }

    /** An invalidation object as the notify worker signs it. */
    static String signed(NearCache a, String cache, String key, String op, Long version) {
        byte[] secret = a.channel().secret();
        java.util.Map<String, Object> m = new java.util.LinkedHashMap<>();
        if (cache != null) {
            m.put("cache", cache);
        }
        if (key != null) {
            m.put("key_hash", Messages.keyHash(secret, cache, key));
        }
        m.put("op", op);
        if (version != null) {
            m.put("version", version);
        }
        m.put("mac", Messages.mac(secret, Messages.INVALIDATE_CHANNEL, m));
        return Json.write(m);
    }

    @Test
    void typedErrors() throws Exception {
        NearCache a = client();
        assertThrows(SessionCacheException.UnknownCache.class, () -> a.get("no_such_cache", "k"));
        assertThrows(SessionCacheException.InvalidArgument.class, () -> a.put("sessions", "", "{}"));
        String cache = "jt_limit";
        TestServer.exec("SELECT sessioncache.define_cache(?, max_per_user => 1)", cache);
        String user = ukey("u");
        a.put(cache, ukey("k"), "{}", user);
        assertThrows(SessionCacheException.PerUserLimit.class, () -> a.put(cache, ukey("k"), "{}", user));
        try (Connection c = TestServer.admin()) {
            try (Statement st = c.createStatement()) {
                st.execute("SET default_transaction_read_only = on");
            }
            SessionCache ro = SessionCache.over(c);
            assertThrows(SessionCacheException.ReadOnly.class, () -> ro.put("auth_sessions", ukey("k"), "{}"));
        }
        Membership m = new Membership(TestServer.factory(), ukey("cl"), "n1", null, Duration.ofSeconds(30), null);
        m.start();
        long mid = m.memberId();
        m.close();
        try (Connection c = TestServer.admin()) {
            SQLException ex = assertThrows(SQLException.class, () -> {
                try (Statement st = c.createStatement()) {
                    st.execute("SELECT sessioncache.heartbeat(" + mid + ")");
                }
            });
            assertTrue(SessionCacheException.map(ex) instanceof SessionCacheException.LeaseLapsed);
        }
    }

    @Test
    void boundedByEntriesAndBytes() throws Exception {
        NearCache.Options o = new NearCache.Options();
        o.maxEntries = 3;
        NearCache a = client(o);
        List<String> keys = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            keys.add(ukey("k"));
            a.put("sessions", keys.get(i), "{\"i\": " + i + "}");
        }
        // let the puts' own invalidations arrive first: only the bound moves copies here
        assertTrue(poll(() -> a.stats().get("invalidations") >= 5, 2000));
        for (int i = 0; i < 3; i++) {
            a.get("sessions", keys.get(i));
        }
        a.get("sessions", keys.get(0));
        a.get("sessions", keys.get(3));
        a.get("sessions", keys.get(4));
        assertEquals(3, a.size());
        assertTrue(a.cached("sessions", keys.get(0)), () -> keys + " held " + a.heldKeys().stream()
                .map(x -> x[1]).collect(java.util.stream.Collectors.toList()) + " " + a.stats());
        assertFalse(a.cached("sessions", keys.get(1)));
        assertTrue(a.stats().get("lru_evictions") >= 2);

        NearCache.Options ob = new NearCache.Options();
        ob.maxBytes = 4096;
        NearCache b = client(ob);
        String big = "{\"pad\": \"" + "x".repeat(900) + "\"}";
        for (int i = 0; i < 10; i++) {
            String k = ukey("big");
            b.put("sessions", k, big);
            b.get("sessions", k);
        }
        assertTrue(b.stats().get("bytes") <= 4096, "over the byte bound: " + b.stats());
        assertTrue(b.size() >= 1 && b.size() <= 2);
    }

    @Test
    void fillOverlappingAnotherWriteIsNotStored() throws Exception {
        NearCache a = client();
        NearCache b = client();
        String k = ukey("k");
        b.put("sessions", k, "{\"v\": \"old\"}");
        CountDownLatch read = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        a.fillHook = () -> {
            read.countDown();
            try {
                release.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
        AtomicReference<String> got = new AtomicReference<>();
        Thread t = new Thread(() -> {
            try {
                got.set(a.get("sessions", k));
            } catch (SQLException e) {
                got.set("error " + e);
            }
        });
        t.start();
        assertTrue(read.await(10, TimeUnit.SECONDS));
        a.fillHook = null;
        long seen = a.stats().get("invalidations");
        b.put("sessions", k, "{\"v\": \"new\"}");
        assertTrue(poll(() -> a.stats().get("invalidations") > seen, 2000));
        release.countDown();
        t.join(10_000);
        assertEquals("{\"v\": \"old\"}", got.get());
        assertFalse(a.cached("sessions", k), "a fill older than a write was stored");
        assertEquals("{\"v\": \"new\"}", a.get("sessions", k));
        assertTrue(a.stats().get("fills_discarded") >= 1);
    }

    @Test
    void ownWriteDuringFillIsNotShadowed() throws Exception {
        NearCache a = client();
        String k = ukey("k");
        a.put("sessions", k, "{\"v\": \"old\"}");
        CountDownLatch read = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        a.fillHook = () -> {
            read.countDown();
            try {
                release.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
        Thread t = new Thread(() -> {
            try {
                a.get("sessions", k);
            } catch (SQLException e) {
                throw new RuntimeException(e);
            }
        });
        t.start();
        assertTrue(read.await(10, TimeUnit.SECONDS));
        a.fillHook = null;
        a.put("sessions", k, "{\"v\": \"new\"}");
        release.countDown();
        t.join(10_000);
        assertFalse(a.cached("sessions", k));
        assertEquals("{\"v\": \"new\"}", a.get("sessions", k));
    }

    @Test
    void localCopyNeverOutlivesServerExpiry() throws Exception {
        TestServer.exec("SELECT sessioncache.define_cache('jt_ttl', durable => false,"
                + " idle_timeout => '1 second', max_lifespan => NULL)");
        NearCache a = client();
        String k = ukey("k");
        a.put("jt_ttl", k, "{\"ttl\": 1}");
        assertEquals("{\"ttl\": 1}", a.get("jt_ttl", k));
        assertTrue(a.cached("jt_ttl", k));
        long t0 = System.nanoTime();
        assertTrue(poll(() -> {
            try {
                return a.get("jt_ttl", k) == null;
            } catch (SQLException e) {
                return false;
            }
        }, 10_000));
        assertTrue((System.nanoTime() - t0) / 1e9 <= 1.5, "served after its expiry");
    }

    @Test
    void touchingReadsGoToTheServer() throws Exception {
        NearCache a = client();
        String k = ukey("k");
        a.put("sessions", k, "{\"t\": 1}");
        a.get("sessions", k);
        long hits = a.stats().get("hits");
        assertEquals("{\"t\": 1}", a.get("sessions", k, true));
        assertEquals(hits, a.stats().get("hits"));
        assertTrue(a.touch("sessions", k));
        assertFalse(a.touch("sessions", ukey("absent")));
    }

    @Test
    void lostListenerDropsEverythingAndRecovers() throws Exception {
        NearCache.Options o = new NearCache.Options();
        o.backoffInitialMillis = 50;
        NearCache a = client(o);
        NearCache b = client();
        String k = ukey("k");
        b.put("sessions", k, "{\"v\": 1}");
        a.get("sessions", k);
        assertTrue(a.cached("sessions", k));
        int pid = a.listenerPid();
        long disc = a.stats().get("disconnects");
        TestServer.terminate(pid);
        assertTrue(poll(() -> a.stats().get("disconnects") > disc, 5000));
        assertTrue(a.awaitOnline(Duration.ofSeconds(10)));
        assertNotEquals(pid, a.listenerPid());
        assertFalse(a.cached("sessions", k), "a copy survived a lost listener");
        a.get("sessions", k);
        assertTrue(a.cached("sessions", k));
        b.put("sessions", k, "{\"v\": 2}");
        assertTrue(poll(() -> !a.cached("sessions", k), 2000), "no invalidation after the reconnect");
    }
}
