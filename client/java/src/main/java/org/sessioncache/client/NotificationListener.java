package org.sessioncache.client;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Random;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * A thread that holds one connection, LISTENs on some channels and hands each
 * notification to a {@link Handler}; it reconnects with exponential backoff (with
 * jitter, so that many nodes that lost the server at once do not come back at
 * once) when the connection is lost, and pings the server after
 * {@code pingIntervalMillis} of silence so that a dead connection is found.
 *
 * <p>The handler learns when LISTEN has committed ({@link Handler#onOnline}: from
 * then on every later commit reaches it) and when the connection is lost
 * ({@link Handler#onOffline}: notifications may have been missed). A multi-host URL
 * with {@code targetServerType=primary} makes each reconnection find the current
 * primary, which is how a failover is followed.
 */
public final class NotificationListener implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(NotificationListener.class.getName());

    /** What the listener calls; every method runs on the listener's thread. */
    public interface Handler {
        /** LISTEN has committed on a new connection (run queries on {@code c} if needed). */
        void onOnline(Connection c, int backendPid) throws SQLException;

        void onNotification(String channel, String payload);

        /** The connection was lost (or the listener stopped); called once per online period. */
        void onOffline();
    }

    private final ConnectionFactory factory;
    private final List<String> channels;
    private final Handler handler;
    private final long backoffInitialMillis;
    private final long backoffMaxMillis;
    private final int pingIntervalMillis;
    private final Random random = new Random();
    private final Thread thread;
    private volatile boolean stopping;
    private volatile Connection current;
    private volatile int backendPid;

    public NotificationListener(ConnectionFactory factory, List<String> channels, Handler handler,
                                long backoffInitialMillis, long backoffMaxMillis, int pingIntervalMillis) {
        for (String ch : channels) {
            if (!ch.matches("[a-z_][a-z0-9_]*")) {
                throw new IllegalArgumentException("bad channel name " + ch);
            }
        }
        this.factory = factory;
        this.channels = List.copyOf(channels);
        this.handler = handler;
        this.backoffInitialMillis = backoffInitialMillis;
        this.backoffMaxMillis = backoffMaxMillis;
        this.pingIntervalMillis = pingIntervalMillis;
        this.thread = new Thread(this::loop, "sessioncache-listener");
        this.thread.setDaemon(true);
    }

    public NotificationListener start() {
        thread.start();
        return this;
    }

    /** The server pid of the current listening connection, 0 when offline. */
    public int backendPid() {
        return backendPid;
    }

    /** Drops the current connection (as if it had been lost); used by tests and on demand. */
    public void reconnect() {
        Connection c = current;
        if (c != null) {
            ConnectionSource.quietClose(c);
        }
    }

    @Override
    public void close() {
        stopping = true;
        thread.interrupt();
        reconnect();
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Reconnection delays: initial doubling to max, each drawn from [d/2, d]. */
    long nextDelay(long nominal) {
        return (long) (nominal * (1.0 - 0.5 * random.nextDouble()));
    }

    private void loop() {
        long nominal = backoffInitialMillis;
        while (!stopping) {
            Connection c = null;
            boolean online = false;
            try {
                c = factory.open();
                c.setAutoCommit(true);
                current = c;
                PGConnection pg = c.unwrap(PGConnection.class);
                try (Statement st = c.createStatement()) {
                    for (String ch : channels) {
                        st.execute("LISTEN " + ch);
                    }
                }
                int pid = pg.getBackendPID();
                backendPid = pid;
                online = true;
                handler.onOnline(c, pid);
                nominal = backoffInitialMillis;
                pump(c, pg);
            } catch (SQLException | RuntimeException e) {
                if (!stopping) {
                    LOG.log(Level.WARNING, "sessioncache listener: " + e.getMessage());
                }
            } finally {
                backendPid = 0;
                current = null;
                if (c != null) {
                    ConnectionSource.quietClose(c);
                }
                if (online) {
                    try {
                        handler.onOffline();
                    } catch (RuntimeException e) {
                        LOG.log(Level.WARNING, "sessioncache listener: onOffline failed", e);
                    }
                }
            }
            if (stopping) {
                break;
            }
            try {
                Thread.sleep(nextDelay(nominal));
            } catch (InterruptedException e) {
                if (stopping) {
                    break;
                }
            }
            nominal = Math.min(nominal * 2, backoffMaxMillis);
        }
    }

    private void pump(Connection c, PGConnection pg) throws SQLException {
        long last = System.nanoTime();
        while (!stopping) {
            // blocks until a notification arrives or the timeout; throws when the
            // connection is lost
            PGNotification[] ns = pg.getNotifications(Math.max(1, Math.min(pingIntervalMillis, 500)));
            if (ns != null && ns.length > 0) {
                for (PGNotification n : ns) {
                    try {
                        handler.onNotification(n.getName(), n.getParameter());
                    } catch (RuntimeException e) {
                        LOG.log(Level.WARNING, "sessioncache listener: handler failed", e);
                    }
                }
                last = System.nanoTime();
            } else if (System.nanoTime() - last >= pingIntervalMillis * 1_000_000L) {
                try (Statement st = c.createStatement()) {
                    st.execute("SELECT 1");
                }
                last = System.nanoTime();
            }
            if (c.isClosed()) {
                throw new SQLException("listener connection closed", "08003");
            }
        }
    }
}
