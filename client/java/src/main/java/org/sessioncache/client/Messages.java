package org.sessioncache.client;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The one place that reads the payloads of sessioncache's notification channels
 * (the format is in API.md). Kept apart so that a change of the wire format (for
 * example a MAC or keyed hash added to each message) is made here only.
 *
 * <p>Anything that cannot be read as an invalidation becomes a flush of everything:
 * a listener that cannot tell what a message invalidates must drop all it holds.
 */
public final class Messages {
    public static final String INVALIDATE_CHANNEL = "sessioncache_invalidate";
    public static final String MEMBERSHIP_CHANNEL = "sessioncache_membership";

    private Messages() {
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
