package org.sessioncache.client;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

/**
 * The server the tests run against, started by client/java/run-tests.sh (as the
 * user postgres, in a temporary directory, on a free loopback port); its
 * coordinates arrive as system properties.
 */
final class TestServer {
    static final String URL = System.getProperty("sc.url");
    static final String PGDATA = System.getProperty("sc.pgdata");
    static final String BINDIR = System.getProperty("sc.bindir", "/usr/lib/postgresql/15/bin");
    static final String LOG = System.getProperty("sc.log");

    private TestServer() {
    }

    static Properties props() {
        Properties p = new Properties();
        p.setProperty("user", "postgres");
        return p;
    }

    static Connection admin() throws SQLException {
        Connection c = DriverManager.getConnection(URL, props());
        c.setAutoCommit(true);
        return c;
    }

    static ConnectionFactory factory() {
        return ConnectionFactory.of(URL, props());
    }

    static void exec(String sql, Object... args) throws SQLException {
        try (Connection c = admin(); PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            ps.execute();
        }
    }

    static List<List<Object>> query(String sql, Object... args) throws SQLException {
        try (Connection c = admin(); PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            List<List<Object>> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    List<Object> row = new ArrayList<>();
                    for (int i = 1; i <= n; i++) {
                        row.add(rs.getObject(i));
                    }
                    out.add(row);
                }
            }
            return out;
        }
    }

    static Object scalar(String sql, Object... args) throws SQLException {
        List<List<Object>> r = query(sql, args);
        return r.isEmpty() ? null : r.get(0).get(0);
    }

    /** pg_ctl as the user running the tests (postgres). */
    static void pgCtl(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(BINDIR + "/pg_ctl", "-D", PGDATA, "-w", "-t", "120"));
        cmd.addAll(Arrays.asList(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(new File(LOG + ".pg_ctl")));
        Process p = pb.start();
        if (!p.waitFor(180, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException("pg_ctl " + String.join(" ", args) + " failed");
        }
    }

    static void restart() throws Exception {
        pgCtl("-m", "fast", "-l", LOG, "restart");
    }

    static int postmasterPid() throws Exception {
        return Integer.parseInt(Files.readAllLines(Path.of(PGDATA, "postmaster.pid")).get(0).trim());
    }

    static boolean poll(BooleanSupplier cond, long millis) throws InterruptedException {
        long end = System.nanoTime() + millis * 1_000_000L;
        while (true) {
            if (cond.getAsBoolean()) {
                return true;
            }
            if (System.nanoTime() > end) {
                return false;
            }
            Thread.sleep(5);
        }
    }

    static String ukey(String prefix) {
        return prefix + "-" + Long.toHexString(Double.doubleToLongBits(Math.random())).substring(0, 12)
                + Long.toHexString(System.nanoTime() & 0xffff);
    }

    static void terminate(int pid) throws SQLException {
        try (Connection c = admin(); Statement st = c.createStatement()) {
            st.execute("SELECT pg_terminate_backend(" + pid + ")");
        }
    }
}
