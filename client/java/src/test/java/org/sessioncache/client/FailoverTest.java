package org.sessioncache.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.sessioncache.client.TestServer.poll;

import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Failover under a client with a multi-host URL (targetServerType=primary): a
 * primary and a streaming standby of their own (initdb, pg_basebackup -R, on free
 * loopback ports, stopped by pid afterwards); the primary is stopped immediately
 * and the standby promoted; the near-cache must reconnect to the new primary,
 * re-LISTEN, start empty, serve the committed values and be invalidated again;
 * the member must keep its id.
 */
class FailoverTest {
    private final List<AutoCloseable> closing = new ArrayList<>();
    private Path dir;
    private final List<Path> datadirs = new ArrayList<>();

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static void run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(new File(TestServer.LOG + ".failover")))
                .start();
        if (!p.waitFor(180, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + " failed (see " + TestServer.LOG
                    + ".failover)");
        }
    }

    static String bin(String prog) {
        return TestServer.BINDIR + "/" + prog;
    }

    void conf(Path data, int port) throws IOException {
        Files.writeString(data.resolve("postgresql.conf"), String.join("\n",
                "", "listen_addresses = '127.0.0.1'", "port = " + port,
                "unix_socket_directories = '" + dir + "'",
                "shared_preload_libraries = 'sessioncache'", "sessioncache.database = 'postgres'",
                "sessioncache.memory = 16MB", "sessioncache.expiry_interval = 100ms",
                "sessioncache.flush_interval = 200ms", "fsync = off", "wal_level = replica",
                "max_wal_senders = 4", "hot_standby = on", ""),
                java.nio.file.StandardOpenOption.APPEND);
    }

    void start(Path data) throws Exception {
        datadirs.add(data);
        run(bin("pg_ctl"), "-D", data.toString(), "-l", data + ".log", "-w", "-t", "60", "start");
    }

    @AfterEach
    void cleanup() throws Exception {
        for (int i = closing.size() - 1; i >= 0; i--) {
            closing.get(i).close();
        }
        for (Path d : datadirs) {
            Path pidf = d.resolve("postmaster.pid");
            if (Files.exists(pidf)) {
                long pid = Long.parseLong(Files.readAllLines(pidf).get(0).trim());
                ProcessHandle.of(pid).ifPresent(h -> {
                    // SIGQUIT = immediate shutdown, by pid
                    try {
                        new ProcessBuilder("kill", "-QUIT", Long.toString(pid)).start().waitFor();
                        h.onExit().get(30, TimeUnit.SECONDS);
                    } catch (Exception e) {
                        h.destroyForcibly();
                    }
                });
            }
        }
        if (dir != null) {
            try (Stream<Path> w = Files.walk(dir)) {
                w.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    static boolean inRecovery(String url) throws SQLException {
        try (Connection c = DriverManager.getConnection(url, TestServer.props());
             Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT pg_is_in_recovery()")) {
            rs.next();
            return rs.getBoolean(1);
        }
    }

    @Test
    void multiHostUrlFollowsThePromotedStandby() throws Exception {
        dir = Files.createTempDirectory("sc-failover");
        Path primary = dir.resolve("primary");
        Path standby = dir.resolve("standby");
        int p1 = freePort();
        int p2 = freePort();
        run(bin("initdb"), "-D", primary.toString(), "-A", "trust", "-U", "postgres", "--no-sync",
                "-E", "UTF8", "--locale", "C");
        conf(primary, p1);
        start(primary);
        String url1 = "jdbc:postgresql://127.0.0.1:" + p1 + "/postgres";
        String url2 = "jdbc:postgresql://127.0.0.1:" + p2 + "/postgres";
        try (Connection c = DriverManager.getConnection(url1, TestServer.props());
             Statement st = c.createStatement()) {
            st.execute("CREATE EXTENSION sessioncache");
        }
        run(bin("pg_basebackup"), "-D", standby.toString(), "-h", "127.0.0.1", "-p", Integer.toString(p1),
                "-U", "postgres", "-R", "-X", "stream", "-c", "fast");
        Files.writeString(standby.resolve("postgresql.conf"), "\nport = " + p2 + "\n",
                java.nio.file.StandardOpenOption.APPEND);
        start(standby);
        assertTrue(inRecovery(url2));

        String multi = "jdbc:postgresql://127.0.0.1:" + p1 + ",127.0.0.1:" + p2
                + "/postgres?targetServerType=primary&connectTimeout=5";
        NearCache.Options o = new NearCache.Options();
        o.backoffInitialMillis = 50;
        o.backoffMaxMillis = 500;
        NearCache a = new NearCache(multi, TestServer.props(), o);
        closing.add(a);
        NearCache b = new NearCache(multi, TestServer.props(), o);
        closing.add(b);
        assertTrue(a.awaitOnline(Duration.ofSeconds(10)) && b.awaitOnline(Duration.ofSeconds(10)));
        Membership m = new Membership(ConnectionFactory.of(multi, TestServer.props()), "fo", "n1", null,
                Duration.ofSeconds(6), null, null, 50, 500);
        closing.add(m);
        m.start();
        long mid = m.memberId();
        for (int i = 0; i < 10; i++) {
            b.put("sessions", "fo-" + i, "{\"i\": " + i + "}");
            assertEquals("{\"i\": " + i + "}", a.get("sessions", "fo-" + i));
        }
        // synchronous from now on: what the client saw committed is on the standby
        try (Connection c = DriverManager.getConnection(url1, TestServer.props());
             Statement st = c.createStatement()) {
            st.execute("ALTER SYSTEM SET synchronous_standby_names = '*'");
            st.execute("SELECT pg_reload_conf()");
        }
        assertTrue(poll(() -> {
            try (Connection c = DriverManager.getConnection(url1, TestServer.props());
                 Statement st = c.createStatement();
                 ResultSet rs = st.executeQuery("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")) {
                rs.next();
                return rs.getInt(1) == 1;
            } catch (SQLException e) {
                return false;
            }
        }, 30_000), "the standby did not become synchronous");
        b.put("sessions", "fo-0", "{\"i\": \"last before failover\"}");
        assertTrue(poll(() -> !a.cached("sessions", "fo-0"), 2000));
        a.get("sessions", "fo-0");
        assertEquals(10, a.size());
        long disconnects = a.stats().get("disconnects");
        int oldPid = a.listenerPid();

        long t0 = System.nanoTime();
        run(bin("pg_ctl"), "-D", primary.toString(), "-m", "immediate", "-w", "stop");
        run(bin("pg_ctl"), "-D", standby.toString(), "-w", "promote");
        assertTrue(poll(() -> a.stats().get("disconnects") > disconnects, 10_000), "the listener missed the failover");
        assertTrue(a.awaitOnline(Duration.ofSeconds(30)) && b.awaitOnline(Duration.ofSeconds(30)),
                "the near-caches did not reach the new primary");
        System.out.printf("failover: near-caches online on the promoted standby %.1f s after the primary"
                + " was stopped%n", (System.nanoTime() - t0) / 1e9);
        assertNotEquals(oldPid, a.listenerPid());
        assertFalse(inRecovery(url2));
        assertFalse(a.cached("sessions", "fo-1"), "a copy survived the failover");
        assertEquals("{\"i\": \"last before failover\"}", a.get("sessions", "fo-0"));
        for (int i = 1; i < 10; i++) {
            assertEquals("{\"i\": " + i + "}", a.get("sessions", "fo-" + i));
        }
        // writes go to the new primary, invalidations come from it
        b.put("sessions", "fo-1", "{\"i\": \"after failover\"}");
        assertTrue(poll(() -> !a.cached("sessions", "fo-1"), 2000), "no invalidation from the new primary");
        assertEquals("{\"i\": \"after failover\"}", a.get("sessions", "fo-1"));
        // the member survived the failover with its id
        Thread.sleep(2500);
        assertEquals(mid, m.memberId());
        assertEquals(0, m.rejoins());
    }
}
