-- baseline: the cheapest round trip a prepared statement can make
SELECT 1;
