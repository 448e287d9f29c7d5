package org.sessioncache.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sessioncache.client.TestServer.poll;
import static org.sessioncache.client.TestServer.ukey;

import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Membership (views, coordinator, fencing token, lease lapse) and a server
 *  restart under running clients. */
class RestartAndMembershipTest {
    private final List<AutoCloseable> closing = new ArrayList<>();

    @AfterEach
    void close() throws Exception {
        for (int i = closing.size() - 1; i >= 0; i--) {
            closing.get(i).close();
        }
    }

    Membership member(String cluster, String node, Duration lease, Duration beat) {
        Membership m = new Membership(TestServer.factory(), cluster, node, "127.0.0.1:7800", lease,
                "{\"test\": true}", beat, 50, 500);
        closing.add(m);
        return m;
    }

    @Test
    void viewsCoordinatorAndFencingToken() throws Exception {
        String cluster = ukey("cl");
        NearCache.Options o = new NearCache.Options();
        o.listenMembership = true;
        NearCache nc = new NearCache(TestServer.URL, TestServer.props(), o);
        closing.add(nc);
        assertTrue(nc.awaitOnline(Duration.ofSeconds(10)));
        Membership m1 = member(cluster, "node1", Duration.ofSeconds(30), null);
        Membership m2 = member(cluster, "node2", Duration.ofSeconds(30), null);
        nc.addMembershipListener(m1::onViewChange);
        List<Membership.View> seen = new CopyOnWriteArrayList<>();
        m1.addViewListener(seen::add);
        m1.start();
        assertTrue(m1.isCoordinator());
        long first = m1.viewId();
        m2.listen().start();
        assertFalse(m2.isCoordinator());
        assertTrue(m2.viewId() > first);
        // m1 learns of the new view from the notification, long before a heartbeat (10 s)
        assertTrue(poll(() -> m1.viewId() == m2.viewId(), 2000));
        assertEquals(List.of("node1", "node2"), m1.view().nodes());
        assertTrue(seen.size() >= 1);
        long token = m1.viewId();
        assertEquals(1L, TestServer.scalar("SELECT count(*) FROM sessioncache.members"
                + " WHERE cluster = ? AND is_coordinator AND view_id = ?", cluster, token));
        m1.close();
        assertTrue(poll(() -> m2.isCoordinator() && m2.view().members.size() == 1, 3000),
                "the remaining member did not become coordinator");
        assertTrue(m2.viewId() > token, "the fencing token did not advance");
    }

    @Test
    void leaseLapseMakesTheNodeJoinAgain() throws Exception {
        String cluster = ukey("cl");
        // a heartbeat interval longer than the lease: the lease lapses for real,
        // the reaper removes the member, the next heartbeat gets SC001
        Membership m = member(cluster, "slow", Duration.ofMillis(1500), Duration.ofMillis(4000));
        Membership watcher = member(cluster, "watcher", Duration.ofSeconds(30), null);
        List<Long> lapsed = new CopyOnWriteArrayList<>();
        m.addLeaseLapsedListener(lapsed::add);
        m.start();
        watcher.listen().start();
        long old = m.memberId();
        assertTrue(poll(() -> watcher.view().nodes().equals(List.of("watcher")), 8000),
                "the reaper did not remove the lapsed member: " + watcher.view().nodes());
        assertTrue(poll(() -> m.memberId() != old && m.memberId() != 0, 8000),
                "the member did not join again after SC001");
        assertEquals(List.of(old), lapsed);
        assertEquals(1, m.rejoins());
        assertTrue(poll(() -> watcher.view().nodes().equals(List.of("watcher", "slow")), 3000));
    }

    /** pg_ctl restart under two clients and a member: the near-caches drop
     *  everything, come back online, re-LISTEN, and stay coherent; the member keeps
     *  its id (a restart evicts no one). */
    @Test
    void serverRestartUnderTheClient() throws Exception {
        NearCache.Options o = new NearCache.Options();
        o.backoffInitialMillis = 50;
        o.backoffMaxMillis = 500;
        NearCache a = new NearCache(TestServer.URL, TestServer.props(), o);
        closing.add(a);
        NearCache b = new NearCache(TestServer.URL, TestServer.props(), o);
        closing.add(b);
        assertTrue(a.awaitOnline(Duration.ofSeconds(10)) && b.awaitOnline(Duration.ofSeconds(10)));
        String cluster = ukey("cl");
        Membership m = member(cluster, "n1", Duration.ofSeconds(6), null);
        m.start();
        long mid = m.memberId();
        List<String> keys = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            keys.add(ukey("rs"));
            b.put("sessions", keys.get(i), "{\"i\": " + i + "}");
            a.get("sessions", keys.get(i));
        }
        assertEquals(20, a.size());
        int pid = TestServer.postmasterPid();
        long t0 = System.nanoTime();
        TestServer.restart();
        assertNotEquals(pid, TestServer.postmasterPid());
        assertTrue(poll(() -> a.stats().get("disconnects") >= 1, 10_000), "the listener missed the restart");
        assertTrue(a.awaitOnline(Duration.ofSeconds(20)) && b.awaitOnline(Duration.ofSeconds(20)));
        System.out.printf("server restart: near-caches back online %.1f s after pg_ctl restart began%n",
                (System.nanoTime() - t0) / 1e9);
        // reads work at once (the pool's dead connections are replaced; a read is retried once)
        for (int i = 0; i < 20; i++) {
            assertEquals("{\"i\": " + i + "}", a.get("sessions", keys.get(i)));
        }
        b.put("sessions", keys.get(0), "{\"i\": \"after\"}");
        assertTrue(poll(() -> !a.cached("sessions", keys.get(0)), 2000), "no invalidation after the restart");
        assertEquals("{\"i\": \"after\"}", a.get("sessions", keys.get(0)));
        // the member kept its lease through the restart and still heartbeats
        Thread.sleep(2500);
        assertEquals(mid, m.memberId());
        assertEquals(0, m.rejoins());
        assertTrue(TestServer.query("SELECT 1 FROM sessioncache.members WHERE member_id = ?", mid).size() == 1);
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void ignore(SQLException e) {
    }
}
