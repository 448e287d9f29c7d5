package org.sessioncache.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The payload formats and the error mapping, without a server. */
class MessagesTest {

    @Test
    void parsesObjectsArraysAndFlushes() {
        List<Invalidation> l = Messages.parseInvalidations(
                "[{\"cache\": \"sessions\", \"key\": \"a\", \"op\": \"delete\", \"version\": 11},"
                + " {\"cache\": \"sessions\", \"key\": \"b\\u00e9\", \"op\": \"put\", \"version\": 1234567890123456}]");
        assertEquals(2, l.size());
        assertEquals(Invalidation.Op.DELETE, l.get(0).op);
        assertEquals(11L, l.get(0).version);
        assertEquals("b\u00e9", l.get(1).key);
        assertEquals(1234567890123456L, l.get(1).version);
        Invalidation f = Messages.parseInvalidations("{\"op\": \"flush\"}").get(0);
        assertTrue(f.isFlush());
        assertNull(f.cache);
        Invalidation fc = Messages.parseInvalidations("{\"cache\": \"sessions\", \"op\": \"flush\"}").get(0);
        assertTrue(fc.isFlush());
        assertEquals("sessions", fc.cache);
        for (String bad : new String[] {"not json", "[1]", "{\"cache\": 1, \"key\": \"k\"}", "", "{\"a\":"}) {
            List<Invalidation> x = Messages.parseInvalidations(bad);
            assertTrue(x.get(0).isFlush() && x.get(0).cache == null, bad);
        }
        assertEquals(Invalidation.Op.OTHER,
                Messages.parseInvalidations("{\"cache\": \"c\", \"key\": \"k\", \"op\": \"new\"}").get(0).op);
        Messages.ViewChange vc = Messages.parseViewChange("{\"cluster\": \"auth\", \"view_id\": 7}");
        assertEquals("auth", vc.cluster);
        assertEquals(7L, vc.viewId);
        assertNull(Messages.parseViewChange("{\"cluster\": 7}"));
    }

    @Test
    void jsonRoundTrip() {
        Object v = Json.parse("{\"a\": [1, 2.5, true, null, \"x\\\"y\\n\"], \"b\": {}}");
        assertEquals(v, Json.parse(Json.write(v)));
        assertEquals(List.of(1L, 2.5, true), ((List<?>) Json.parse("[1, 2.5, true]")));
        assertEquals(Map.of(), Json.parse(" {} "));
    }

    @Test
    void mapsSqlStates() {
        assertInstanceOf(SessionCacheException.UnknownCache.class,
                SessionCacheException.map(new SQLException("x", "42704")));
        assertInstanceOf(SessionCacheException.PerUserLimit.class,
                SessionCacheException.map(new SQLException("x", "SC002")));
        assertInstanceOf(SessionCacheException.MemoryFull.class,
                SessionCacheException.map(new SQLException("x", "53200")));
        assertInstanceOf(SessionCacheException.LeaseLapsed.class,
                SessionCacheException.map(new SQLException("x", "SC001")));
        assertInstanceOf(SessionCacheException.ReadOnly.class,
                SessionCacheException.map(new SQLException("x", "25006")));
        SQLException other = new SQLException("x", "08006");
        assertEquals(other, SessionCacheException.map(other));
        assertTrue(SessionCacheException.isConnectionLost(other));
        assertFalse(SessionCacheException.isConnectionLost(new SQLException("x", "42704")));
    }
}
