package org.sessioncache.client;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiPredicate;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The one place that reads the payloads of sessioncache's notification channels
 * (the format is in API.md). Kept apart so that a change of the wire format (for
 * example a MAC or keyed hash added to each message) is made here only.
 *
 * <p>Anything that cannot be read as an invalidation becomes a flush of everything:
 * a listener that cannot tell what a message invalidates must drop all it holds.
 *
 * <p>Since 1.1 the channel is signed (README, "Invalidation messages"): an
 * invalidation names its key by {@code key_hash} and every object carries a
 * {@code mac}. A {@link Channel} holds the secret (from
 * {@code sessioncache.channel_secret()}), maps key_hash back to the keys the
 * client holds, and drops (and counts) objects whose mac does not verify.
 */
public final class Messages {
    public static final String INVALIDATE_CHANNEL = "sessioncache_invalidate";
    public static final String MEMBERSHIP_CHANNEL = "sessioncache_membership";

    private Messages() {
    }

    /** Hex of the first 16 bytes of HMAC-SHA256(secret, parts joined by NUL bytes). */
    static String hmacHex(byte[] secret, String... parts) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret, "HmacSHA256"));
            for (int i = 0; i < parts.length; i++) {
                if (i > 0) {
                    mac.update((byte) 0);
                }
                mac.update(parts[i].getBytes(StandardCharsets.UTF_8));
            }
            byte[] d = mac.doFinal();
            StringBuilder sb = new StringBuilder(32);
            for (int i = 0; i < 16; i++) {
                sb.append(Character.forDigit((d[i] >> 4) & 15, 16)).append(Character.forDigit(d[i] & 15, 16));
            }
            return sb.toString();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }

    /** The {@code key_hash} the server sends for (cache, key). */
    public static String keyHash(byte[] secret, String cache, String key) {
        return hmacHex(secret, cache, key);
    }

    private static String field(Map<?, ?> m, String name) {
        Object v = m.get(name);
        return v == null ? "" : v.toString();
    }

    /** The {@code mac} an object on {@code channel} must carry. */
    public static String mac(byte[] secret, String channel, Map<?, ?> m) {
        if (MEMBERSHIP_CHANNEL.equals(channel)) {
            return hmacHex(secret, channel, field(m, "cluster"), field(m, "view_id"));
        }
        return hmacHex(secret, channel, field(m, "cache"), field(m, "key_hash"), field(m, "op"),
                field(m, "version"));
    }

    /**
     * The channel's secret and the keys a client holds, by key_hash. Before
     * {@link #load} (and against a 1.0 server, which has no
     * {@code channel_secret()}) messages are read unsigned, keys in clear.
     */
    public static final class Channel {
        /** Fetches the secret again (after a failed mac); null: cannot. */
        public interface Fetcher {
            Connection connect() throws SQLException;
        }

        private volatile byte[] secret;     // null: unsigned messages
        private volatile boolean noGrant;
        private volatile boolean refetched;
        private final Fetcher fetcher;
        private final Map<String, String> keys = new ConcurrentHashMap<>();
        private final AtomicLong rejected = new AtomicLong();
        private final AtomicLong fetches = new AtomicLong();
        /** Called when the secret changed: everything held was hashed with the old one. */
        public volatile Runnable onNewSecret = () -> { };

        public Channel(Fetcher fetcher) {
            this.fetcher = fetcher;
        }

        /** Reads the secret on c (the listener's connection, at each (re)connect). */
        public void load(Connection c) throws SQLException {
            fetches.incrementAndGet();
            try (Statement st = c.createStatement();
                 ResultSet rs = st.executeQuery("SELECT sessioncache.channel_secret()")) {
                rs.next();
                secret = rs.getBytes(1);
                noGrant = false;
            } catch (SQLException e) {
                if ("42883".equals(e.getSQLState())) {
                    secret = null;              // a 1.0 server: keys in clear
                    noGrant = false;
                } else if ("42501".equals(e.getSQLState())) {
                    secret = new byte[0];       // cannot verify anything
                    noGrant = true;
                } else {
                    throw e;
                }
            }
            refetched = false;
            keys.clear();
        }

        /** Without channel_secret() the client must cache nothing. */
        public boolean usable() {
            return !noGrant;
        }

        public long rejected() {
            return rejected.get();
        }

        public long secretFetches() {
            return fetches.get();
        }

        /** The key_hash of (cache, key) under the current secret, null when unsigned. */
        public String hashOf(String cache, String key) {
            byte[] s = secret;
            return s == null || s.length == 0 ? null : keyHash(s, cache, key);
        }

        /** Remembers a key the client holds or reads. */
        public void remember(String cache, String key) {
            String h = hashOf(cache, key);
            if (h != null) {
                keys.put(cache + '\0' + h, key);
            }
        }

        int size() {
            return keys.size();
        }

        byte[] secret() {
            return secret;
        }

        /** Forgets the keys for which keep(cache, key) is false. */
        void retain(BiPredicate<String, String> keep) {
            keys.entrySet().removeIf(e -> !keep.test(e.getKey().substring(0, e.getKey().indexOf('\0')),
                    e.getValue()));
        }

        private boolean verify(String channel, Map<?, ?> m) {
            for (int attempt = 1; attempt <= 2; attempt++) {
                byte[] s = secret;
                if (s == null) {
                    return true;
                }
                Object mac = m.get("mac");
                if (s.length > 0 && mac instanceof String
                        && MessageDigest.isEqual(((String) mac).getBytes(StandardCharsets.US_ASCII),
                                Messages.mac(s, channel, m).getBytes(StandardCharsets.US_ASCII))) {
                    refetched = false;
                    return true;
                }
                if (attempt == 2 || refetched || fetcher == null) {
                    break;
                }
                refetched = true;
                try (Connection c = fetcher.connect()) {
                    load(c);
                    refetched = true;
                } catch (SQLException e) {
                    break;
                }
                if (!java.util.Arrays.equals(s, secret)) {
                    onNewSecret.run();
                }
            }
            rejected.incrementAndGet();
            return false;
        }
    }

    /**
     * Reads a payload of {@code sessioncache_invalidate} as seen through a
     * {@link Channel}: objects whose mac fails are left out; a key_hash
     * becomes the key the channel knows, or stays as it is (a key this client
     * does not hold: the invalidation then matches nothing).
     */
    public static List<Invalidation> parseInvalidations(String payload, Channel ch) {
        if (ch == null || ch.secret == null) {
            return parseInvalidations(payload);
        }
        Object msg;
        try {
            msg = Json.parse(payload);
        } catch (IllegalArgumentException ex) {
            ch.rejected.incrementAndGet();
            return Collections.emptyList();
        }
        List<?> items = msg instanceof List ? (List<?>) msg : Collections.singletonList(msg);
        List<Invalidation> out = new ArrayList<>(items.size());
        for (Object o : items) {
            if (!(o instanceof Map) || !ch.verify(INVALIDATE_CHANNEL, (Map<?, ?>) o)) {
                if (!(o instanceof Map)) {
                    ch.rejected.incrementAndGet();
                }
                continue;
            }
            Map<?, ?> m = (Map<?, ?>) o;
            Object cache = m.get("cache");
            Object kh = m.get("key_hash");
            if (cache instanceof String && kh instanceof String) {
                String key = ch.keys.get(cache + "\0" + kh);
                Map<Object, Object> copy = new java.util.HashMap<>(m);
                copy.put("key", key != null ? key : (String) kh);
                out.add(one(copy));
            } else {
                out.add(one(m));
            }
        }
        return out;
    }

    /** Reads a payload of {@code sessioncache_membership}; null when malformed or its mac fails. */
    public static ViewChange parseViewChange(String payload, Channel ch) {
        if (ch == null || ch.secret == null) {
            return parseViewChange(payload);
        }
        try {
            Object o = Json.parse(payload);
            if (!(o instanceof Map) || !ch.verify(MEMBERSHIP_CHANNEL, (Map<?, ?>) o)) {
                return null;
            }
        } catch (IllegalArgumentException ex) {
            return null;
        }
        return parseViewChange(payload);
    }

    /** A view change announced on {@code sessioncache_membership}. */
    public static final class ViewChange {
        public final String cluster;
        public final long viewId;

        public ViewChange(String cluster, long viewId) {
            this.cluster = cluster;
            this.viewId = viewId;
        }
    }

    /**
     * Reads a payload of {@code sessioncache_invalidate}: one JSON object or an array
     * of them. Never throws: malformed input yields a flush of everything.
     */
    public static List<Invalidation> parseInvalidations(String payload) {
        Object msg;
        try {
            msg = Json.parse(payload);
        } catch (IllegalArgumentException ex) {
            return Collections.singletonList(Invalidation.flushAll());
        }
        List<?> items = msg instanceof List ? (List<?>) msg : Collections.singletonList(msg);
        List<Invalidation> out = new ArrayList<>(items.size());
        for (Object o : items) {
            out.add(one(o));
        }
        return out;
    }

    private static Invalidation one(Object o) {
        if (!(o instanceof Map)) {
            return Invalidation.flushAll();
        }
        Map<?, ?> m = (Map<?, ?>) o;
        Object op = m.get("op");
        Object cache = m.get("cache");
        Object key = m.get("key");
        Object version = m.get("version");
        if ("flush".equals(op)) {
            // {"op": "flush"}: everything; {"cache": c, "op": "flush"}: that cache
            return new Invalidation(cache instanceof String ? (String) cache : null, null,
                    Invalidation.Op.FLUSH, null);
        }
        if (!(cache instanceof String) || !(key instanceof String)) {
            return Invalidation.flushAll();
        }
        Invalidation.Op kind;
        if ("put".equals(op)) {
            kind = Invalidation.Op.PUT;
        } else if ("delete".equals(op)) {
            kind = Invalidation.Op.DELETE;
        } else if ("expire".equals(op)) {
            kind = Invalidation.Op.EXPIRE;
        } else if ("evict".equals(op)) {
            kind = Invalidation.Op.EVICT;
        } else {
            kind = Invalidation.Op.OTHER;
        }
        Long v = version instanceof Long ? (Long) version : null;
        return new Invalidation((String) cache, (String) key, kind, v);
    }

    /** Reads a payload of {@code sessioncache_membership}; null when malformed. */
    public static ViewChange parseViewChange(String payload) {
        try {
            Object o = Json.parse(payload);
            if (o instanceof Map) {
                Object c = ((Map<?, ?>) o).get("cluster");
                Object v = ((Map<?, ?>) o).get("view_id");
                if (c instanceof String && v instanceof Long) {
                    return new ViewChange((String) c, (Long) v);
                }
            }
        } catch (IllegalArgumentException ex) {
            // fall through
        }
        return null;
    }
}
