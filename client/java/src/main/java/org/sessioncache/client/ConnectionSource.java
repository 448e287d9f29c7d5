package org.sessioncache.client;

import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.Semaphore;
import javax.sql.DataSource;

/**
 * Where {@link SessionCache} gets the connection for one call: a caller's
 * {@link DataSource} (a connection per call, closed after it: the pool's own
 * business), a caller's single {@link Connection} (used as it is, in whatever
 * transaction it is in, never closed), or a small pool of autocommit connections
 * over a {@link ConnectionFactory}.
 */
abstract class ConnectionSource implements AutoCloseable {
    abstract Connection acquire() throws SQLException;

    /** Gives a connection back; {@code broken} when a call on it failed for a connection reason. */
    abstract void release(Connection c, boolean broken);

    /** False when a failed read must not be retried on another connection. */
    abstract boolean canRetry();

    @Override
    public void close() {
    }

    /** Closes the idle connections (the server they point at was lost). */
    void evictIdle() {
    }

    static ConnectionSource of(DataSource ds) {
        return new ConnectionSource() {
            @Override
            Connection acquire() throws SQLException {
                return ds.getConnection();
            }

            @Override
            void release(Connection c, boolean broken) {
                try {
                    c.close();
                } catch (SQLException ignored) {
                    // the pool's business
                }
            }

            @Override
            boolean canRetry() {
                return true;
            }
        };
    }

    static ConnectionSource of(Connection conn) {
        return new ConnectionSource() {
            @Override
            Connection acquire() {
                return conn;
            }

            @Override
            void release(Connection c, boolean broken) {
            }

            @Override
            boolean canRetry() {
                return false;
            }
        };
    }

    /** A pool of at most {@code size} autocommit connections. */
    static ConnectionSource pool(ConnectionFactory factory, int size) {
        return new Pool(factory, size);
    }

    private static final class Pool extends ConnectionSource {
        private final ConnectionFactory factory;
        private final Semaphore slots;
        private final Deque<Connection> idle = new ArrayDeque<>();
        private boolean closed;

        Pool(ConnectionFactory factory, int size) {
            this.factory = factory;
            this.slots = new Semaphore(Math.max(1, size), true);
        }

        @Override
        Connection acquire() throws SQLException {
            slots.acquireUninterruptibly();
            try {
                Connection c;
                synchronized (this) {
                    if (closed) {
                        throw new SQLException("sessioncache client is closed", "08003");
                    }
                    c = idle.pollFirst();
                }
                if (c == null) {
                    c = factory.open();
                    c.setAutoCommit(true);
                }
                return c;
            } catch (SQLException | RuntimeException e) {
                slots.release();
                throw e;
            }
        }

        @Override
        void release(Connection c, boolean broken) {
            boolean keep;
            Connection[] stale = new Connection[0];
            synchronized (this) {
                keep = !broken && !closed;
                if (keep) {
                    idle.addFirst(c);
                } else if (broken) {
                    // the others most likely point at the same lost server (a
                    // restart or a failover): open fresh ones from now on
                    stale = idle.toArray(stale);
                    idle.clear();
                }
            }
            if (!keep) {
                quietClose(c);
            }
            for (Connection s : stale) {
                quietClose(s);
            }
            slots.release();
        }

        @Override
        boolean canRetry() {
            return true;
        }

        @Override
        void evictIdle() {
            Connection[] stale;
            synchronized (this) {
                stale = idle.toArray(new Connection[0]);
                idle.clear();
            }
            for (Connection s : stale) {
                quietClose(s);
            }
        }

        @Override
        public void close() {
            synchronized (this) {
                closed = true;
                for (Connection c : idle) {
                    quietClose(c);
                }
                idle.clear();
            }
        }
    }

    static void quietClose(Connection c) {
        try {
            c.close();
        } catch (SQLException ignored) {
            // closing a broken connection
        }
    }
}
