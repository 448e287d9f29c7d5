package org.sessioncache.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Real JGroups 2.12 channels (Debian's libjgroups-java) in separate JVMs on
 * loopback, discovering each other with JDBC_PING pointed at sessioncache
 * (client/java/jgroups/jdbc_ping.xml and the view sessioncache.jgroups_ping),
 * connected as a role that is only a member of sessioncache_app.
 *
 * Three nodes form one view; their rewrites renew their leases without changing
 * the view id; all three are killed with SIGKILL and three new ones started: the
 * new ones must form a view of exactly themselves, and sessioncache.members must
 * list exactly them, within lease + one interval of the kill. Then the new ones
 * are killed too and no node is started: their rows and members must go when
 * their leases lapse.
 */
class JGroupsPingTest {
    static final String CLUSTER = "jgroups-auth";
    static final int LEASE_MS = 8000;
    static final int INTERVAL_MS = 1000;
    static final String ROLE = "regress_jgroups_node";
    private final List<Node> nodes = new ArrayList<>();

    final class Node {
        final String name;
        final Process proc;
        volatile String address;
        final List<List<String>> views = new CopyOnWriteArrayList<>();

        Node(String name, int port) throws Exception {
            this.name = name;
            String stack = System.getProperty("sc.jgroups.stack");
            List<String> cmd = new ArrayList<>(List.of(
                    System.getProperty("java.home") + "/bin/java", "-Xmx96m", "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1", "-Djava.net.preferIPv4Stack=true",
                    "-Djgroups.jdbc.url=" + TestServer.URL, "-Djgroups.jdbc.user=" + ROLE,
                    "-Djgroups.sessioncache.lease=" + LEASE_MS + " milliseconds",
                    "-Djgroups.jdbc_ping.interval=" + INTERVAL_MS, "-Djgroups.discovery.timeout=1000",
                    "-Djgroups.merge.min=1000", "-Djgroups.merge.max=2000", "-Djgroups.fd.timeout=1000",
                    "-Djgroups.join.timeout=1000",
                    "-Djgroups.tcp.port=" + port, "-cp", System.getProperty("java.class.path"),
                    "org.sessioncache.jgroups.JGroupsNode", stack, CLUSTER, name));
            File log = new File(System.getProperty("sc.log") + "." + name);
            proc = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.to(log)).start();
            Thread t = new Thread(() -> {
                try (BufferedReader r = new BufferedReader(
                        new InputStreamReader(proc.getInputStream(), StandardCharsets.UTF_8))) {
                    String line;
                    while ((line = r.readLine()) != null) {
                        String[] w = line.split(" ");
                        if (w[0].equals("ADDRESS")) {
                            address = w[1];
                        } else if (w[0].equals("VIEW") && w.length == 4) {
                            views.add(Arrays.asList(w[3].split(",")));
                        }
                    }
                } catch (Exception e) {
                    // the process died
                }
            }, "jgroups-" + name);
            t.setDaemon(true);
            t.start();
        }

        Set<String> lastView() {
            return views.isEmpty() ? Set.of() : new HashSet<>(views.get(views.size() - 1));
        }

        void kill() throws InterruptedException {
            proc.destroyForcibly();     // SIGKILL
            proc.waitFor();
        }
    }

    @AfterEach
    void killAll() throws InterruptedException {
        for (Node n : nodes) {
            if (n.proc.isAlive()) {
                n.kill();
            }
        }
    }

    List<Node> start(String prefix, int port) throws Exception {
        List<Node> l = new ArrayList<>();
        for (int i = 1; i <= 3; i++) {
            Node n = new Node(prefix + i, port);
            l.add(n);
            nodes.add(n);
        }
        return l;
    }

    static Set<String> members() throws Exception {
        return TestServer.query("SELECT node FROM sessioncache.members WHERE cluster = ?", CLUSTER).stream()
                .map(r -> (String) r.get(0)).collect(Collectors.toSet());
    }

    static Set<String> pingRows() throws Exception {
        return TestServer.query("SELECT own_addr FROM sessioncache.jgroups_ping WHERE cluster_name = ?",
                CLUSTER).stream().map(r -> (String) r.get(0)).collect(Collectors.toSet());
    }

    static boolean formed(List<Node> ns) {
        Set<String> want = ns.stream().map(n -> n.address).collect(Collectors.toSet());
        if (want.contains(null)) {
            return false;
        }
        for (Node n : ns) {
            if (!n.lastView().equals(want)) {
                return false;
            }
        }
        return true;
    }

    static Set<String> addresses(List<Node> ns) {
        return ns.stream().map(n -> n.address).collect(Collectors.toSet());
    }

    @Test
    void rollThreeNodesToThreeNewOnes() throws Exception {
        if (TestServer.query("SELECT 1 FROM pg_roles WHERE rolname = ?", ROLE).isEmpty()) {
            TestServer.exec("CREATE ROLE " + ROLE + " LOGIN IN ROLE sessioncache_app");
        }
        int port = 20000 + (int) (Math.random() * 30000);

        // 1. three nodes form one view through sessioncache
        long t0 = System.nanoTime();
        List<Node> olds = start("old", port);
        assertTrue(TestServer.poll(() -> formed(olds), 60_000), "the first three nodes formed no common view");
        double firstMs = (System.nanoTime() - t0) / 1e6;
        assertTrue(TestServer.poll(() -> {
            try {
                return members().equals(addresses(olds)) && pingRows().equals(addresses(olds));
            } catch (Exception e) {
                return false;
            }
        }, 5000), "sessioncache.members does not list the three JGroups nodes");

        // 2. rewrites renew the leases without changing members or the view id
        List<List<Object>> before = TestServer.query("SELECT member_id, view_id, lease_expires_at"
                + " FROM sessioncache.members WHERE cluster = ? ORDER BY member_id", CLUSTER);
        // every node rewrites its row within a few intervals; on a loaded
        // machine a JVM may be late, so wait (bounded by the lease) for all three
        List<List<Object>> after = before;
        long renewDeadline = System.currentTimeMillis() + LEASE_MS;
        do {
            Thread.sleep(INTERVAL_MS);
            after = TestServer.query("SELECT member_id, view_id, lease_expires_at"
                    + " FROM sessioncache.members WHERE cluster = ? ORDER BY member_id", CLUSTER);
        } while (!allRenewed(before, after) && System.currentTimeMillis() < renewDeadline);
        assertEquals(3, after.size());
        for (int i = 0; i < 3; i++) {
            assertEquals(before.get(i).get(0), after.get(i).get(0), "a rewrite replaced the member");
            assertEquals(before.get(i).get(1), after.get(i).get(1), "a rewrite changed the view id");
            assertTrue(((java.sql.Timestamp) after.get(i).get(2)).after((java.sql.Timestamp) before.get(i).get(2)),
                    "a rewrite did not renew the lease");
        }

        // 3. SIGKILL all three, start three new ones
        for (Node n : olds) {
            n.kill();
        }
        long kill = System.nanoTime();
        List<Node> news = start("new", port);
        Double viewMs = null;
        Double membersMs = null;
        long bound = LEASE_MS + INTERVAL_MS;
        while ((System.nanoTime() - kill) / 1_000_000 < bound + 20_000 && (viewMs == null || membersMs == null)) {
            double el = (System.nanoTime() - kill) / 1e6;
            if (viewMs == null && formed(news)) {
                viewMs = el;
            }
            if (membersMs == null && news.stream().allMatch(n -> n.address != null)
                    && members().equals(addresses(news)) && pingRows().equals(addresses(news))) {
                membersMs = el;
            }
            Thread.sleep(20);
        }
        System.out.printf("JGroups JDBC_PING through sessioncache: lease %d ms, interval %d ms;"
                + " first view of 3 after %.0f ms; after SIGKILL of all 3, the 3 new nodes' view"
                + " (exactly the new ones, at every node) after %s ms, sessioncache.members and"
                + " jgroups_ping = the new ones after %s ms (bound lease + interval = %d ms)%n",
                LEASE_MS, INTERVAL_MS, firstMs, viewMs == null ? "never" : String.format("%.0f", viewMs),
                membersMs == null ? "never" : String.format("%.0f", membersMs), bound);
        assertTrue(viewMs != null && viewMs <= bound, "the new nodes did not form their view in time: " + viewMs);
        assertTrue(membersMs != null && membersMs <= bound,
                "sessioncache.members did not agree in time: " + membersMs + " " + members());
        for (Node n : news) {
            for (Node o : olds) {
                assertTrue(!n.lastView().contains(o.address), "a killed node is in a new view");
            }
        }

        // 4. kill the new ones too and start none: their rows go when their leases lapse
        for (Node n : news) {
            n.kill();
        }
        long kill2 = System.nanoTime();
        assertTrue(TestServer.poll(() -> {
            try {
                return members().isEmpty() && pingRows().isEmpty();
            } catch (Exception e) {
                return false;
            }
        }, LEASE_MS + 5000), "the killed nodes' rows outlived their leases");
        double goneMs = (System.nanoTime() - kill2) / 1e6;
        assertTrue(TestServer.poll(() -> {
            try {
                return ((Long) TestServer.scalar("SELECT count(*) FROM sessioncache.jgroups_pingdata"
                        + " WHERE cluster_name = ?", CLUSTER)) == 0;
            } catch (Exception e) {
                return false;
            }
        }, 3000), "the reaper left rows of removed members");
        System.out.printf("JGroups JDBC_PING: with no node left, the killed nodes' members and rows were"
                + " gone %.0f ms after the SIGKILL (lease %d ms)%n", goneMs, LEASE_MS);
    }

    /* the same members, each with a later lease expiry */
    private static boolean allRenewed(List<List<Object>> before, List<List<Object>> after) {
        if (before.size() != after.size())
            return false;
        for (int i = 0; i < before.size(); i++) {
            if (!before.get(i).get(0).equals(after.get(i).get(0)))
                return false;
            if (!((java.sql.Timestamp) after.get(i).get(2)).after((java.sql.Timestamp) before.get(i).get(2)))
                return false;
        }
        return true;
    }
}
