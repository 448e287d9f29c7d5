package org.sessioncache.demo;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.logging.Logger;
import org.sessioncache.client.Json;
import org.sessioncache.client.Membership;
import org.sessioncache.client.NearCache;
import org.sessioncache.client.SessionCache;

/**
 * An auth-server node of the rolling-restart scenario (scripts/scenario.py
 * --java), written with the Java client: a NearCache and a Membership, request
 * threads that refresh the node's share of the sessions (touching reads), read
 * the hot keys through the near cache and patch their own hot keys. It does what
 * scenario.py's AppNode does, and keeps the same bookkeeping (touch times, patch
 * revisions, counters) in a file that scenario.py maps too, so it survives SIGKILL.
 *
 * Commands arrive on stdin and replies leave on stdout, one JSON array a line.
 * Arguments: a JSON object (see scenario.py's JavaNode).
 */
public final class ScenarioNode {
    private static final Logger LOG = Logger.getLogger("scenario");
    static final String[] COUNTERS = {"steps", "touches", "errors", "nulls", "bad", "hot_reads",
        "patches", "patch_errors"};
    static final int TOUCH_RING = 3;

    final Map<?, ?> cfg;
    final int sessions;
    final int offline;
    final int users;
    final int hot;
    final int n;
    final int uwidth;
    final MappedByteBuffer shm;
    final long offTouch;
    final long offRevAttempt;
    final long offRevDone;
    final long offCreated;
    final long offCounters;
    final int base;
    final List<Integer> own = new ArrayList<>();
    final List<Integer> hotSlots = new ArrayList<>();
    final NearCache nc;
    final Membership m;
    final ReentrantLock countLock = new ReentrantLock();
    final Object runLock = new Object();
    volatile boolean running;
    volatile boolean writes;
    final PrintStream out;

    ScenarioNode(Map<?, ?> cfg, PrintStream out) throws Exception {
        this.cfg = cfg;
        this.out = out;
        sessions = num("sessions");
        offline = num("offline");
        users = num("users");
        hot = num("hot");
        n = sessions + offline;
        uwidth = Math.max(4, String.valueOf(users).length());
        try (RandomAccessFile f = new RandomAccessFile((String) cfg.get("shared"), "rw")) {
            shm = f.getChannel().map(FileChannel.MapMode.READ_WRITE, 0, f.length());
        }
        shm.order(ByteOrder.nativeOrder());
        Map<?, ?> off = (Map<?, ?>) cfg.get("offsets");
        offTouch = (Long) off.get("touch_ring");
        offRevAttempt = (Long) off.get("rev_attempt");
        offRevDone = (Long) off.get("rev_done");
        offCreated = (Long) off.get("created_t0");
        offCounters = (Long) off.get("counters");
        base = num("node_index") * COUNTERS.length;
        int share = num("share");
        int shares = num("shares");
        for (int s = 0; s < n; s++) {
            if (s % shares == share) {
                own.add(s);
            }
        }
        Collections.shuffle(own, new Random(share));
        for (int s = 0; s < hot; s++) {
            hotSlots.add(s);
        }
        for (int s = sessions; s < sessions + hot; s++) {
            hotSlots.add(s);
        }
        String url = (String) cfg.get("url");
        Properties props = new Properties();
        props.setProperty("user", "postgres");
        NearCache.Options o = new NearCache.Options();
        o.maxEntries = n + 1000;
        o.caches("sessions", "offline_sessions");
        o.poolSize = 4;
        o.listenMembership = true;
        o.backoffInitialMillis = 50;
        o.backoffMaxMillis = 500;
        o.pingIntervalMillis = 2000;
        nc = new NearCache(url, props, o);
        double lease = ((Number) cfg.get("lease")).doubleValue();
        double beat = ((Number) cfg.get("heartbeat")).doubleValue();
        m = new Membership(org.sessioncache.client.ConnectionFactory.of(url, props), "auth",
                (String) cfg.get("name"), "10.0.1." + (num("node_index") + 1) + ":7800",
                Duration.ofMillis((long) (lease * 1000)),
                "{\"pid\": " + ProcessHandle.current().pid() + ", \"client\": \"java\"}",
                Duration.ofMillis((long) (beat * 1000)), 50, 500);
        nc.addMembershipListener(m::onViewChange);
    }

    int num(String k) {
        return ((Number) cfg.get(k)).intValue();
    }

    // -- the data set (as scenario.py's DataSet) --------------------------------

    String cache(int slot) {
        return slot < sessions ? "sessions" : "offline_sessions";
    }

    String key(int slot) {
        return slot < sessions ? String.format("sess-%06d", slot + 1)
                : String.format("off-%06d", slot - sessions + 1);
    }

    String user(int slot) {
        int j = slot < sessions ? slot : slot - sessions;
        return String.format("user-%0" + uwidth + "d", j % users + 1);
    }

    Map<String, Object> value(int slot) {
        Map<String, Object> v = new LinkedHashMap<>();
        if (slot < sessions) {
            v.put("user", user(slot));
            v.put("sid", key(slot));
            v.put("realm", "demo");
            v.put("ip", "10.0." + (slot / 250 % 250) + "." + (slot % 250 + 1));
        } else {
            int j = slot - sessions;
            v.put("user", user(slot));
            v.put("token", String.format("tok-%06d", j + 1));
            v.put("client", "account-console");
            v.put("scope", "openid offline_access");
        }
        v.put("rev", 0L);
        return v;
    }

    boolean sameIdentity(int slot, Object value) {
        if (!(value instanceof Map)) {
            return false;
        }
        Map<?, ?> got = (Map<?, ?>) value;
        Map<String, Object> want = value(slot);
        if (!got.keySet().equals(want.keySet())) {
            return false;
        }
        for (Map.Entry<String, Object> e : want.entrySet()) {
            if (!e.getKey().equals("rev") && !e.getValue().equals(got.get(e.getKey()))) {
                return false;
            }
        }
        return true;
    }

    boolean isHot(int slot) {
        return slot < hot || (slot >= sessions && slot < sessions + hot);
    }

    // -- the shared bookkeeping -------------------------------------------------

    void count(String what, long k) {
        int i = 0;
        while (!COUNTERS[i].equals(what)) {
            i++;
        }
        int at = (int) offCounters + 8 * (base + i);
        countLock.lock();
        try {
            shm.putLong(at, shm.getLong(at) + k);
        } finally {
            countLock.unlock();
        }
    }

    double now() {
        return System.currentTimeMillis() / 1000.0;
    }

    boolean checkRead(String what, int slot, String v) {
        if (v == null) {
            count("nulls", 1);
            LOG.severe(what + ": " + cache(slot) + " " + key(slot) + " is NULL");
        } else if (!sameIdentity(slot, Json.parse(v))) {
            count("bad", 1);
            LOG.severe(what + ": " + cache(slot) + " " + key(slot) + " has a wrong value " + v);
        } else {
            return true;
        }
        return false;
    }

    void touch(int slot) throws SQLException {
        double t0 = now();      // the server's last_access is no earlier
        String v = nc.get(cache(slot), key(slot), true);
        if (checkRead("touch", slot, v)) {
            int i = (int) offTouch + 8 * slot * TOUCH_RING;
            synchronized (this) {
                for (int k = TOUCH_RING - 1; k > 0; k--) {
                    shm.putDouble(i + 8 * k, shm.getDouble(i + 8 * (k - 1)));
                }
                shm.putDouble(i, t0);
            }
            count("touches", 1);
        }
    }

    void hotRead(Random r) throws SQLException {
        int slot = hotSlots.get(r.nextInt(hotSlots.size()));
        checkRead("read", slot, nc.get(cache(slot), key(slot)));
        count("hot_reads", 1);
    }

    void patch(int slot) throws SQLException {
        int ia = (int) offRevAttempt + 8 * slot;
        int id = (int) offRevDone + 8 * slot;
        long r = Math.max(shm.getLong(ia), shm.getLong(id)) + 1;
        shm.putLong(ia, r);     // before the call: it may commit and we die
        String v;
        try {
            v = nc.patch(cache(slot), key(slot), "{\"rev\": " + r + "}");
        } catch (SQLException e) {
            count("patch_errors", 1);
            throw e;
        }
        if (checkRead("patch", slot, v)) {
            shm.putLong(id, r);
            count("patches", 1);
        }
    }

    List<Object> create(int threads) throws InterruptedException {
        List<Object> errors = Collections.synchronizedList(new ArrayList<>());
        AtomicInteger next = new AtomicInteger();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            ts.add(new Thread(() -> {
                while (true) {
                    int i = next.getAndIncrement();
                    if (i >= own.size()) {
                        return;
                    }
                    int slot = own.get(i);
                    shm.putDouble((int) offCreated + 8 * slot, now());   // created_at is no earlier
                    for (int attempt = 0; attempt < 50; attempt++) {
                        try {
                            nc.put(cache(slot), key(slot), Json.write(value(slot)), user(slot));
                            break;
                        } catch (SQLException e) {
                            count("errors", 1);
                            if (attempt == 49) {
                                errors.add(key(slot) + ": " + e.getMessage());
                            }
                            sleep(100);
                        }
                    }
                }
            }));
        }
        ts.forEach(Thread::start);
        for (Thread t : ts) {
            t.join();
        }
        return errors;
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    Map<String, Object> state() {
        Map<String, Object> s = new LinkedHashMap<>();
        Membership.View v = m.view();
        List<String> names = new ArrayList<>(v == null ? List.of() : v.nodes());
        Collections.sort(names);
        s.put("online", nc.isOnline());
        s.put("member_id", m.memberId() == 0 ? null : m.memberId());
        s.put("view_id", v == null ? null : v.viewId);
        s.put("is_coordinator", m.isCoordinator());
        s.put("members", names);
        Map<String, Object> st = new LinkedHashMap<>(nc.stats());
        s.put("stats", st);
        s.put("held", nc.size());
        return s;
    }

    List<Object> dump() {
        List<Object> outl = new ArrayList<>();
        for (int slot = 0; slot < n; slot++) {
            Map.Entry<String, Long> e = nc.peek(cache(slot), key(slot));
            if (e != null) {
                outl.add(List.of(cache(slot), key(slot), Json.parse(e.getKey()), e.getValue()));
            }
        }
        return outl;
    }

    /** A request thread: refresh part, read hot keys, patch the hot keys of part. */
    void work(List<Integer> part, ReentrantLock busy) {
        Random r = new Random();
        List<Integer> partHot = new ArrayList<>();
        for (int s : part) {
            if (isHot(s)) {
                partHot.add(s);
            }
        }
        int pos = 0;
        long step = 0;
        while (true) {
            synchronized (runLock) {
                while (!running) {
                    try {
                        runLock.wait();
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }
            busy.lock();
            try {
                if (!running) {
                    continue;
                }
                step++;
                count("steps", 1);
                try {
                    touch(part.get(pos));
                    pos = (pos + 1) % part.size();
                    hotRead(r);
                    if (writes && !partHot.isEmpty() && step % 10 == 0) {
                        patch(partHot.get(r.nextInt(partHot.size())));
                    }
                } catch (SQLException e) {
                    // the database is down or failing over: retry
                    count("errors", 1);
                    LOG.info("step failed (retrying): " + e.getMessage());
                    sleep(50);
                }
            } finally {
                busy.unlock();
            }
        }
    }

    void reply(Object... msg) {
        synchronized (out) {
            out.println(Json.write(List.of(msg)));
            out.flush();
        }
    }

    void run() throws Exception {
        m.start();
        nc.awaitOnline(Duration.ofSeconds(30));
        reply("ready", m.memberId(), m.viewId());
        int threads = Math.min(num("threads"), own.size());
        List<ReentrantLock> busy = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            List<Integer> part = new ArrayList<>();
            for (int i = t; i < own.size(); i += threads) {
                part.add(own.get(i));
            }
            ReentrantLock b = new ReentrantLock();
            busy.add(b);
            Thread th = new Thread(() -> work(part, b), "request-" + t);
            th.setDaemon(true);
            th.start();
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            List<?> msg = (List<?>) Json.parse(line);
            String what = (String) msg.get(0);
            if (what.equals("pause") || what.equals("stop")) {
                // no step in flight once every thread's lock was free
                running = false;
                for (ReentrantLock b : busy) {
                    b.lock();
                    b.unlock();
                }
            }
            switch (what) {
                case "stop":
                    m.close();
                    nc.close();
                    reply("stopped");
                    System.exit(0);
                    break;
                case "pause":
                    reply("paused");
                    break;
                case "resume":
                    synchronized (runLock) {
                        running = true;
                        runLock.notifyAll();
                    }
                    reply("resumed");
                    break;
                case "writes":
                    writes = (Boolean) msg.get(1);
                    reply("writes", writes);
                    break;
                case "create":
                    reply("created", own.size(), create(((Number) msg.get(1)).intValue()));
                    break;
                case "state":
                    reply("state", state());
                    break;
                case "dump":
                    reply("dump", dump(), state());
                    break;
                default:
                    reply("unknown", what);
            }
        }
        // the scenario went away
        System.exit(1);
    }

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false,
                StandardCharsets.UTF_8);
        // logging (java.util.logging) goes to stderr, which scenario.py sends to the node's log
        try {
            new ScenarioNode((Map<?, ?>) Json.parse(args[0]), out).run();
        } catch (Throwable e) {
            LOG.log(java.util.logging.Level.SEVERE, "node failed", e);
            System.exit(2);
        }
    }
}
