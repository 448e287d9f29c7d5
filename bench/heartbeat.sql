-- heartbeat of a random member (-D mfirst=... -D mlast=...: the member ids of
-- the members joined, consecutive)
\set m random(:mfirst, :mlast)
SELECT sessioncache.heartbeat(:m);
