package org.sessioncache.client;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A node's membership in a sessioncache cluster (API.md, "Cluster membership").
 *
 * <p>{@link #start()} joins (synchronously, so that errors reach the caller) and
 * starts a heartbeat thread that renews the lease every third of it. When a
 * heartbeat fails with SQLSTATE SC001 (the lease lapsed: a long pause, a long
 * outage) the node joins again under a new member id, and the lease listeners are
 * told. A lost connection is reopened with backoff. The view is re-read whenever
 * its id changes: at the next heartbeat, or at once when a message on
 * {@code sessioncache_membership} is fed to {@link #onViewChange} (give
 * {@code membership::onViewChange} to {@link NearCache#addMembershipListener}, or
 * let {@link #listen()} open a listener of its own). {@link #close()} leaves.
 *
 * <p>{@link #viewId()} is the fencing token: a coordinator carries the view id it
 * was coordinator of and checks it where it writes (see the README); a node that
 * was reaped holds an older view id and its writes match nothing.
 */
public final class Membership implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(Membership.class.getName());

    /** One member of the view. */
    public static final class Member {
        public final long memberId;
        public final String node;
        public final String address;
        public final String metaJson;
        public final Instant joinedAt;
        public final boolean coordinator;

        Member(long memberId, String node, String address, String metaJson, Instant joinedAt,
               boolean coordinator) {
            this.memberId = memberId;
            this.node = node;
            this.address = address;
            this.metaJson = metaJson;
            this.joinedAt = joinedAt;
            this.coordinator = coordinator;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof Member)) {
                return false;
            }
            Member m = (Member) o;
            return m.memberId == memberId && m.coordinator == coordinator && m.node.equals(node);
        }

        @Override
        public int hashCode() {
            return Long.hashCode(memberId);
        }

        @Override
        public String toString() {
            return node + "#" + memberId + (coordinator ? "*" : "");
        }
    }

    /** A view: its id and members, oldest first (the first is the coordinator). */
    public static final class View {
        public final long viewId;
        public final List<Member> members;

        View(long viewId, List<Member> members) {
            this.viewId = viewId;
            this.members = Collections.unmodifiableList(members);
        }

        public List<String> nodes() {
            List<String> n = new ArrayList<>();
            for (Member m : members) {
                n.add(m.node);
            }
            return n;
        }
    }

    private final ConnectionFactory factory;
    private final String cluster;
    private final String node;
    private final String address;
    private final Duration lease;
    private final String metaJson;
    private final long intervalNanos;
    private final long backoffInitialMillis;
    private final long backoffMaxMillis;
    private final List<Consumer<View>> viewListeners = new CopyOnWriteArrayList<>();
    private final List<Consumer<Long>> leaseListeners = new CopyOnWriteArrayList<>();
    private final Object lock = new Object();
    private Connection conn;            // the heartbeat thread's (and start/close's)
    private long memberId;              // 0 = not a member
    private View view;
    private Long wantedView;
    private boolean wake;
    private volatile boolean stopping;
    private Thread thread;
    private NotificationListener ownListener;
    private long rejoins;

    public Membership(ConnectionFactory factory, String cluster, String node, String address,
                      Duration lease, String metaJson) {
        this(factory, cluster, node, address, lease, metaJson, null, 100, 5_000);
    }

    /**
     * @param heartbeatInterval null = a third of the lease
     */
    public Membership(ConnectionFactory factory, String cluster, String node, String address,
                      Duration lease, String metaJson, Duration heartbeatInterval,
                      long backoffInitialMillis, long backoffMaxMillis) {
        this.factory = Objects.requireNonNull(factory);
        this.cluster = Objects.requireNonNull(cluster);
        this.node = Objects.requireNonNull(node);
        this.address = address;
        this.lease = Objects.requireNonNull(lease);
        this.metaJson = metaJson == null ? "{}" : metaJson;
        this.intervalNanos = heartbeatInterval != null ? heartbeatInterval.toNanos() : lease.toNanos() / 3;
        this.backoffInitialMillis = backoffInitialMillis;
        this.backoffMaxMillis = backoffMaxMillis;
    }

    public String cluster() {
        return cluster;
    }

    public String node() {
        return node;
    }

    /** The current member id; 0 when not a member. */
    public long memberId() {
        synchronized (lock) {
            return memberId;
        }
    }

    /** The id of the view last read (the fencing token); 0 before the first. */
    public long viewId() {
        synchronized (lock) {
            return view == null ? 0 : view.viewId;
        }
    }

    public View view() {
        synchronized (lock) {
            return view;
        }
    }

    public boolean isCoordinator() {
        synchronized (lock) {
            if (view == null) {
                return false;
            }
            for (Member m : view.members) {
                if (m.memberId == memberId && m.coordinator) {
                    return true;
                }
            }
            return false;
        }
    }

    /** How many times the node joined again after its lease lapsed (SC001). */
    public long rejoins() {
        synchronized (lock) {
            return rejoins;
        }
    }

    /** Called (on the heartbeat thread) after each new view was read. */
    public void addViewListener(Consumer<View> l) {
        viewListeners.add(l);
    }

    /** Called with the lapsed member id when SC001 made the node join again. */
    public void addLeaseLapsedListener(Consumer<Long> l) {
        leaseListeners.add(l);
    }

    /** Joins and starts heartbeating. */
    public Membership start() throws SQLException {
        synchronized (lock) {
            if (thread != null) {
                throw new IllegalStateException("already started");
            }
        }
        ensureConn();
        join();
        thread = new Thread(this::loop, "sessioncache-membership-" + node);
        thread.setDaemon(true);
        thread.start();
        return this;
    }

    /** Opens a listener of its own on sessioncache_membership (instead of a NearCache's). */
    public Membership listen() {
        ownListener = new NotificationListener(factory, List.of(Messages.MEMBERSHIP_CHANNEL),
                new NotificationListener.Handler() {
                    @Override
                    public void onOnline(Connection c, int pid) {
                        wakeUp(null);     // we may have missed changes
                    }

                    @Override
                    public void onNotification(String channel, String payload) {
                        Messages.ViewChange vc = Messages.parseViewChange(payload);
                        if (vc != null) {
                            onViewChange(vc.cluster, vc.viewId);
                        }
                    }

                    @Override
                    public void onOffline() {
                    }
                }, backoffInitialMillis, backoffMaxMillis, 5_000).start();
        return this;
    }

    /** A view change announced on sessioncache_membership: re-read the view soon if it is ours and new. */
    public void onViewChange(String c, Long viewId) {
        if (!cluster.equals(c)) {
            return;
        }
        synchronized (lock) {
            if (view != null && viewId != null && viewId <= view.viewId) {
                return;
            }
        }
        wakeUp(viewId);
    }

    private void wakeUp(Long viewId) {
        synchronized (lock) {
            wantedView = viewId;
            wake = true;
            lock.notifyAll();
        }
    }

    /** Stops heartbeating and leaves the cluster (best effort). */
    @Override
    public void close() {
        stopping = true;
        if (ownListener != null) {
            ownListener.close();
        }
        synchronized (lock) {
            lock.notifyAll();
        }
        if (thread != null) {
            try {
                thread.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try {
            ensureConn();
            long mid = memberId();
            if (mid != 0) {
                try (PreparedStatement ps = conn.prepareStatement("SELECT sessioncache.leave(?)")) {
                    ps.setLong(1, mid);
                    ps.executeQuery().close();
                }
            }
        } catch (SQLException e) {
            LOG.log(Level.WARNING, "sessioncache leave failed: " + e.getMessage());
        } finally {
            synchronized (lock) {
                memberId = 0;
                view = null;
            }
            closeConn();
        }
    }

    // ------------------------------------------------------------------

    private void ensureConn() throws SQLException {
        if (conn == null || conn.isClosed()) {
            conn = factory.open();
            conn.setAutoCommit(true);
        }
    }

    private void closeConn() {
        if (conn != null) {
            ConnectionSource.quietClose(conn);
            conn = null;
        }
    }

    private void join() throws SQLException {
        long mid;
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT member_id, view_id FROM sessioncache.join(?, ?, ?, make_interval(secs => ?), ?::jsonb)")) {
            ps.setString(1, cluster);
            ps.setString(2, node);
            ps.setString(3, address);
            ps.setDouble(4, lease.toNanos() / 1e9);
            ps.setString(5, metaJson);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                mid = rs.getLong(1);
            }
        } catch (SQLException e) {
            throw SessionCacheException.map(e);
        }
        synchronized (lock) {
            memberId = mid;
        }
        readView();
    }

    private void readView() throws SQLException {
        List<Member> ms = new ArrayList<>();
        long vid = 0;
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT view_id, member_id, node, address, meta::text, joined_at, is_coordinator"
                + " FROM sessioncache.view(?)")) {
            ps.setString(1, cluster);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    vid = rs.getLong(1);
                    ms.add(new Member(rs.getLong(2), rs.getString(3), rs.getString(4), rs.getString(5),
                            SessionCache.instant(rs, 6), rs.getBoolean(7)));
                }
            }
        }
        View v;
        boolean changed;
        synchronized (lock) {
            if (ms.isEmpty() && view != null) {
                vid = view.viewId;
            }
            changed = view == null || view.viewId != vid || !view.members.equals(ms);
            v = new View(vid, ms);
            view = v;
            if (wantedView != null && vid >= wantedView) {
                wantedView = null;
            }
        }
        if (changed) {
            for (Consumer<View> l : viewListeners) {
                try {
                    l.accept(v);
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, "view listener failed", e);
                }
            }
        }
    }

    private void heartbeat() throws SQLException {
        long mid = memberId();
        long vid;
        try (PreparedStatement ps = conn.prepareStatement("SELECT sessioncache.heartbeat(?)")) {
            ps.setLong(1, mid);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                vid = rs.getLong(1);
            }
        } catch (SQLException e) {
            if ("SC001".equals(e.getSQLState())) {
                LOG.warning("lease of member " + mid + " lapsed: joining again");
                synchronized (lock) {
                    rejoins++;
                }
                for (Consumer<Long> l : leaseListeners) {
                    try {
                        l.accept(mid);
                    } catch (RuntimeException ex) {
                        LOG.log(Level.WARNING, "lease listener failed", ex);
                    }
                }
                join();
                return;
            }
            throw e;
        }
        boolean stale;
        synchronized (lock) {
            stale = view == null || vid != view.viewId || wantedView != null;
        }
        if (stale) {
            readView();
        }
    }

    private void loop() {
        long nominal = backoffInitialMillis;
        long nextBeat = System.nanoTime() + intervalNanos;
        while (!stopping) {
            boolean woken;
            synchronized (lock) {
                while (!stopping && !wake) {
                    long left = nextBeat - System.nanoTime();
                    if (left <= 0) {
                        break;
                    }
                    try {
                        lock.wait(Math.max(1, left / 1_000_000), 0);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
                woken = wake;
                wake = false;
            }
            if (stopping) {
                break;
            }
            try {
                ensureConn();
                if (woken && System.nanoTime() < nextBeat) {
                    readView();             // a view change was announced
                } else {
                    heartbeat();
                    nextBeat = System.nanoTime() + intervalNanos;
                }
                nominal = backoffInitialMillis;
            } catch (SQLException | RuntimeException e) {
                if (stopping) {
                    break;
                }
                LOG.log(Level.WARNING, "sessioncache membership: " + e.getMessage());
                closeConn();
                long d = (long) (nominal * (1.0 - 0.5 * Math.random()));
                nextBeat = System.nanoTime() + d * 1_000_000L;
                nominal = Math.min(nominal * 2, backoffMaxMillis);
            }
        }
    }
}
