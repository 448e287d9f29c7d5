package org.sessioncache.client;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Properties;
import javax.sql.DataSource;

/**
 * The SQL functions of sessioncache (API.md, "Entries") as Java methods.
 *
 * <p>Values are JSON text ({@code jsonb} on the server); {@link Json} reads and writes
 * it when a tree is wanted. Errors the extension defines arrive as subclasses of
 * {@link SessionCacheException} (unknown cache, per-user limit, memory full, read
 * only, invalid argument, ...); other failures as the driver's {@link SQLException}.
 *
 * <p>Over a caller's {@link Connection} every call runs in that connection's current
 * transaction (a write is seen by others only when the caller commits). Over a
 * {@link DataSource} or a URL each call takes a connection for itself (autocommit
 * for the URL's own pool). A read that fails because its connection was lost is
 * retried once on a fresh connection (reads are idempotent); a write is never
 * retried, since {@code incr} and friends are not idempotent.
 *
 * <p>Thread-safe when built over a DataSource or a URL.
 */
public class SessionCache implements AutoCloseable {
    final ConnectionSource source;

    SessionCache(ConnectionSource source) {
        this.source = source;
    }

    /** Calls through a caller's pool; each call takes and closes one connection. */
    public static SessionCache over(DataSource ds) {
        return new SessionCache(ConnectionSource.of(ds));
    }

    /** Calls on a caller's connection, in its current transaction; never closes it. */
    public static SessionCache over(Connection conn) {
        return new SessionCache(ConnectionSource.of(conn));
    }

    /** Calls through a pool of at most {@code poolSize} autocommit connections to {@code url}. */
    public static SessionCache connect(String url, Properties props, int poolSize) {
        return new SessionCache(ConnectionSource.pool(ConnectionFactory.of(url, props), poolSize));
    }

    /** The entry's value and metadata, as read in one round trip (see {@link #getEntry}). */
    public static final class Entry {
        public final String value;
        /** A lower bound of the version of {@link #value} (read before the value). */
        public final Long version;
        public final String userId;
        /** Seconds until the entry expires, measured before the value was read; null = never. */
        public final Double ttlSeconds;

        Entry(String value, Long version, String userId, Double ttlSeconds) {
            this.value = value;
            this.version = version;
            this.userId = userId;
            this.ttlSeconds = ttlSeconds;
        }
    }

    /** One row of {@code user_entries}. */
    public static final class UserEntry {
        public final String key;
        public final String value;
        public final Instant createdAt;
        public final Instant lastAccess;
        public final Instant expiresAt;

        UserEntry(String key, String value, Instant createdAt, Instant lastAccess, Instant expiresAt) {
            this.key = key;
            this.value = value;
            this.createdAt = createdAt;
            this.lastAccess = lastAccess;
            this.expiresAt = expiresAt;
        }
    }

    /** The row of {@code entry_info}. */
    public static final class EntryInfo {
        public final String userId;
        public final Instant createdAt;
        public final Instant lastAccess;
        public final Instant expiresAt;
        public final long version;
        public final boolean durable;

        EntryInfo(String userId, Instant createdAt, Instant lastAccess, Instant expiresAt,
                  long version, boolean durable) {
            this.userId = userId;
            this.createdAt = createdAt;
            this.lastAccess = lastAccess;
            this.expiresAt = expiresAt;
            this.version = version;
            this.durable = durable;
        }
    }

    @FunctionalInterface
    interface Call<T> {
        T run(Connection c) throws SQLException;
    }

    /** Runs a call; maps errors; retries a read once after a lost connection. */
    <T> T call(boolean read, Call<T> body) throws SQLException {
        for (int attempt = 0; ; attempt++) {
            Connection c = source.acquire();
            boolean broken = false;
            try {
                return body.run(c);
            } catch (SQLException e) {
                broken = SessionCacheException.isConnectionLost(e) || "25006".equals(e.getSQLState())
                        && c.getAutoCommit();
                if (read && attempt == 0 && broken && source.canRetry()) {
                    continue;
                }
                throw SessionCacheException.map(e);
            } finally {
                source.release(c, broken);
            }
        }
    }

    // ------------------------------------------------------------------
    // reads

    /** The value, or null when absent or expired. */
    public String get(String cache, String key) throws SQLException {
        return get(cache, key, false);
    }

    /** The value, or null when absent or expired; {@code touch} refreshes the idle timer. */
    public String get(String cache, String key, boolean touch) throws SQLException {
        return call(!touch, c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT sessioncache.get(?, ?, ?)::text")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                ps.setBoolean(3, touch);
                return one(ps, rs -> rs.getString(1));
            }
        });
    }

    // One round trip that reads the entry's metadata *before* its value (the
    // value is computed in the projection, after the lateral join's row): the
    // version is never newer than the value, and the remaining lifetime is
    // measured no later than the value is read.  (SELECT 1) LEFT JOIN keeps a
    // row when the key is absent.
    static final String FILL_SQL =
            "SELECT i.version, i.user_id, i.ttl, sessioncache.get(?, ?, ?)::text AS value"
            + " FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
            + "  SELECT e.version, e.user_id,"
            + "         CASE WHEN isfinite(e.expires_at)"
            + "              THEN extract(epoch FROM e.expires_at - clock_timestamp())::float8 END AS ttl"
            + "  FROM sessioncache.entry_info(?, ?) AS e) AS i ON true";

    /** The value with its version, user and remaining lifetime; null when absent. */
    public Entry getEntry(String cache, String key, boolean touch) throws SQLException {
        return call(!touch, c -> {
            try (PreparedStatement ps = c.prepareStatement(FILL_SQL)) {
                ps.setString(1, cache);
                ps.setString(2, key);
                ps.setBoolean(3, touch);
                ps.setString(4, cache);
                ps.setString(5, key);
                return one(ps, rs -> {
                    String v = rs.getString(4);
                    if (v == null) {
                        return null;
                    }
                    long ver = rs.getLong(1);
                    Long version = rs.wasNull() ? null : ver;
                    double ttl = rs.getDouble(3);
                    Double t = rs.wasNull() ? null : ttl;
                    return new Entry(v, version, rs.getString(2), t);
                });
            }
        });
    }

    /** The user's live entries. */
    public List<UserEntry> userEntries(String cache, String userId) throws SQLException {
        return call(true, c -> {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT key, value::text, created_at, last_access, expires_at"
                    + " FROM sessioncache.user_entries(?, ?)")) {
                ps.setString(1, cache);
                ps.setString(2, userId);
                List<UserEntry> out = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        out.add(new UserEntry(rs.getString(1), rs.getString(2), instant(rs, 3),
                                instant(rs, 4), instant(rs, 5)));
                    }
                }
                return out;
            }
        });
    }

    /** The entry's metadata; empty when absent. */
    public Optional<EntryInfo> entryInfo(String cache, String key) throws SQLException {
        return call(true, c -> {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT user_id, created_at, last_access, expires_at, version, durable"
                    + " FROM sessioncache.entry_info(?, ?)")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                return Optional.ofNullable(one(ps, rs -> new EntryInfo(rs.getString(1), instant(rs, 2),
                        instant(rs, 3), instant(rs, 4), rs.getLong(5), rs.getBoolean(6))));
            }
        });
    }

    // ------------------------------------------------------------------
    // writes

    public long put(String cache, String key, String value) throws SQLException {
        return put(cache, key, value, null, null, null);
    }

    public long put(String cache, String key, String value, String userId) throws SQLException {
        return put(cache, key, value, userId, null, null);
    }

    /** Creates or replaces; returns the new version. Null timeouts: the cache's. */
    public long put(String cache, String key, String value, String userId, Duration idleTimeout,
                    Duration maxLifespan) throws SQLException {
        return call(false, c -> {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT sessioncache.put(?, ?, ?::jsonb, ?,"
                    + " make_interval(secs => ?), make_interval(secs => ?))")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                ps.setString(3, value);
                ps.setString(4, userId);
                seconds(ps, 5, idleTimeout);
                seconds(ps, 6, maxLifespan);
                return one(ps, rs -> rs.getLong(1));
            }
        });
    }

    /** Refreshes the idle timer; false when absent. */
    public boolean touch(String cache, String key) throws SQLException {
        return call(false, c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT sessioncache.touch(?, ?)")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                return one(ps, rs -> rs.getBoolean(1));
            }
        });
    }

    /** Atomic top-level merge {@code value || patch}; the result, or null when absent. */
    public String patch(String cache, String key, String patchJson) throws SQLException {
        return call(false, c -> {
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT sessioncache.patch(?, ?, ?::jsonb)::text")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                ps.setString(3, patchJson);
                return one(ps, rs -> rs.getString(1));
            }
        });
    }

    public long incr(String cache, String key, String field, long delta) throws SQLException {
        return incr(cache, key, field, delta, null);
    }

    /** Atomic counter in {@code value->field}, creating the entry when absent; the new count. */
    public long incr(String cache, String key, String field, long delta, String userId) throws SQLException {
        return call(false, c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT sessioncache.incr(?, ?, ?, ?, ?)")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                ps.setString(3, field);
                ps.setLong(4, delta);
                ps.setString(5, userId);
                return one(ps, rs -> rs.getLong(1));
            }
        });
    }

    /** False when absent. */
    public boolean delete(String cache, String key) throws SQLException {
        return call(false, c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT sessioncache.delete(?, ?)")) {
                ps.setString(1, cache);
                ps.setString(2, key);
                return one(ps, rs -> rs.getBoolean(1));
            }
        });
    }

    /** Logout everywhere: removes the user's entries, returns how many. */
    public int deleteUser(String cache, String userId) throws SQLException {
        return call(false, c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT sessioncache.delete_user(?, ?)")) {
                ps.setString(1, cache);
                ps.setString(2, userId);
                return one(ps, rs -> rs.getInt(1));
            }
        });
    }

    @Override
    public void close() {
        source.close();
    }

    // ------------------------------------------------------------------

    @FunctionalInterface
    interface Row<T> {
        T read(ResultSet rs) throws SQLException;
    }

    static <T> T one(PreparedStatement ps, Row<T> row) throws SQLException {
        try (ResultSet rs = ps.executeQuery()) {
            return rs.next() ? row.read(rs) : null;
        }
    }

    static void seconds(PreparedStatement ps, int i, Duration d) throws SQLException {
        if (d == null) {
            ps.setNull(i, Types.DOUBLE);
        } else {
            ps.setDouble(i, d.toNanos() / 1e9);
        }
    }

    static Instant instant(ResultSet rs, int i) throws SQLException {
        Timestamp t = rs.getTimestamp(i);
        return t == null ? null : t.toInstant();
    }
}
