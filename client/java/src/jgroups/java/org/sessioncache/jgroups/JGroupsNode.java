package org.sessioncache.jgroups;

import java.util.ArrayList;
import java.util.List;
import org.jgroups.Address;
import org.jgroups.JChannel;
import org.jgroups.ReceiverAdapter;
import org.jgroups.View;
import org.jgroups.util.UUID;

/**
 * One JGroups 2.12 node for the JDBC_PING test: joins CLUSTER with the stack
 * file STACK under the logical name NAME, prints its address and every view
 * on stdout, one line each, and runs until it is killed (or stdin closes, or
 * it reads "leave": then it closes the channel cleanly).
 *
 *   java ... org.sessioncache.jgroups.JGroupsNode STACK CLUSTER NAME
 *
 * Lines: "ADDRESS <address as JDBC_PING stores it> <name>" and
 * "VIEW <coordinator's address> <view id> <address,address,...>".
 */
public final class JGroupsNode {
    private JGroupsNode() {
    }

    static String addr(Address a) {
        // what JDBC_PING (FILE_PING.addressAsString) writes as own_addr
        return a instanceof UUID ? ((UUID) a).toStringLong() : String.valueOf(a);
    }

    static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        JChannel ch = new JChannel(args[0]);
        ch.setName(args[2]);
        ch.setReceiver(new ReceiverAdapter() {
            @Override
            public void viewAccepted(View v) {
                List<String> ms = new ArrayList<>();
                for (Address a : v.getMembers()) {
                    ms.add(addr(a));
                }
                say("VIEW " + addr(v.getVid().getCoordAddress()) + " " + v.getVid().getId() + " "
                        + String.join(",", ms));
            }
        });
        ch.connect(args[1]);
        say("ADDRESS " + addr(ch.getAddress()) + " " + args[2]);
        java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("leave")) {
                break;
            }
        }
        ch.close();
        say("CLOSED");
        System.exit(0);
    }
}
