package org.sessioncache.client;

import java.sql.SQLException;

/**
 * An error reported by sessioncache, typed by its SQLSTATE (see API.md's error table).
 * Every subclass keeps the server's {@link SQLException} as its cause and its
 * SQLSTATE, so callers that only know JDBC still see the usual information.
 */
public class SessionCacheException extends SQLException {
    private static final long serialVersionUID = 1L;

    public SessionCacheException(SQLException cause) {
        super(cause.getMessage(), cause.getSQLState(), cause.getErrorCode(), cause);
    }

    /** 42704: the cache does not exist (or was dropped concurrently). */
    public static class UnknownCache extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public UnknownCache(SQLException c) { super(c); }
    }

    /** SC002: the user already holds the cache's max_per_user entries (policy deny). */
    public static class PerUserLimit extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public PerUserLimit(SQLException c) { super(c); }
    }

    /** 53200: shared memory is full for a non-durable cache. */
    public static class MemoryFull extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public MemoryFull(SQLException c) { super(c); }
    }

    /** SC001: the member's lease has lapsed; the node must join again. */
    public static class LeaseLapsed extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public LeaseLapsed(SQLException c) { super(c); }
    }

    /** 25006: a write on a standby or in a read-only transaction. */
    public static class ReadOnly extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public ReadOnly(SQLException c) { super(c); }
    }

    /** 22023, 22004, 22008, 22003, 54000: an argument the server refused. */
    public static class InvalidArgument extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public InvalidArgument(SQLException c) { super(c); }
    }

    /** 40001, 40P01: serialization failure or deadlock; the transaction may be retried. */
    public static class Retryable extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public Retryable(SQLException c) { super(c); }
    }

    /** 55000: the extension is not loaded via shared_preload_libraries, or wrong database. */
    public static class NotAvailable extends SessionCacheException {
        private static final long serialVersionUID = 1L;
        public NotAvailable(SQLException c) { super(c); }
    }

    /**
     * Maps a server error to its typed exception; anything sessioncache does not
     * define (connection failures included) is returned unchanged.
     */
    public static SQLException map(SQLException e) {
        if (e instanceof SessionCacheException) {
            return e;
        }
        String state = e.getSQLState();
        if (state == null) {
            return e;
        }
        switch (state) {
            case "42704": return new UnknownCache(e);
            case "SC002": return new PerUserLimit(e);
            case "53200": return new MemoryFull(e);
            case "SC001": return new LeaseLapsed(e);
            case "25006": return new ReadOnly(e);
            case "22023": case "22004": case "22008": case "22003": case "54000":
                return new InvalidArgument(e);
            case "40001": case "40P01": return new Retryable(e);
            case "55000": return new NotAvailable(e);
            default: return e;
        }
    }

    /** True when the error means the connection is gone (class 08, admin shutdown, ...). */
    public static boolean isConnectionLost(SQLException e) {
        String state = e.getSQLState();
        if (state == null) {
            return true;
        }
        return state.startsWith("08") || state.equals("57P01") || state.equals("57P02")
                || state.equals("57P03");
    }
}
