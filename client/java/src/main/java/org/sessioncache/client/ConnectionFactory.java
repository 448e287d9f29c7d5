package org.sessioncache.client;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.Properties;
import javax.sql.DataSource;

/**
 * Opens a new connection. The near-cache's listener and the membership heartbeat
 * each hold one connection of their own for as long as it works.
 */
@FunctionalInterface
public interface ConnectionFactory {
    Connection open() throws SQLException;

    /**
     * Connections to a JDBC URL. A multi-host URL with {@code targetServerType=primary}
     * finds the primary on every (re)connect, which is what follows a failover.
     * TCP keepalives are turned on unless the properties say otherwise.
     */
    static ConnectionFactory of(String url, Properties props) {
        Properties p = new Properties();
        if (props != null) {
            p.putAll(props);
        }
        p.putIfAbsent("tcpKeepAlive", "true");
        return () -> DriverManager.getConnection(url, p);
    }

    static ConnectionFactory of(DataSource ds) {
        return ds::getConnection;
    }
}
