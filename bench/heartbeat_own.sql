-- heartbeat of the client's own member (-D mfirst=...: the member id of
-- client 0; client n heartbeats member mfirst + n), as each node of a
-- cluster renews its own lease
\set m :mfirst + :client_id
SELECT sessioncache.heartbeat(:m);
