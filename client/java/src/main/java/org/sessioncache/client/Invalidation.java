package org.sessioncache.client;

/**
 * One change announced on channel {@code sessioncache_invalidate}: a put, delete,
 * expire or evict of one key, or a flush (of one cache when {@link #cache} is set,
 * else of everything).
 */
public final class Invalidation {
    /** What happened. {@code OTHER} is an operation this client does not know: treated as a drop. */
    public enum Op { PUT, DELETE, EXPIRE, EVICT, FLUSH, OTHER }

    public final String cache;
    public final String key;
    public final Op op;
    /** The entry's version, or null when the message carried none. */
    public final Long version;

    public Invalidation(String cache, String key, Op op, Long version) {
        this.cache = cache;
        this.key = key;
        this.op = op;
        this.version = version;
    }

    /** A flush of everything (also what a message that cannot be read means). */
    public static Invalidation flushAll() {
        return new Invalidation(null, null, Op.FLUSH, null);
    }

    public boolean isFlush() {
        return op == Op.FLUSH;
    }

    @Override
    public String toString() {
        return "Invalidation{" + op + " " + cache + "/" + key + " v" + version + "}";
    }
}
