-- The seed system's PoWA ≥ 4 query (statements only): every record of the history
-- ranges touching the window unnested, first and last value per key by ts, joined to
-- server, database and text, top 10,000 by total time; srvids $3..$4. It reads no
-- `*_current` rows and is wrong on resets: timed, not checked.
-- $1, $2: the window; shared by the reader bench (bound) and benches/once_sessions.sh
-- (substituted).
SELECT coalesce(nullif(s.alias, ''), s.hostname || ':' || s.port) AS server, d.datname, h.queryid, st.query,
h.calls, h.total_time, h.total_time / nullif(h.calls, 0) AS mean_time
FROM (SELECT srvid, queryid, dbid, userid,
(array_agg((r).calls ORDER BY (r).ts DESC))[1] - (array_agg((r).calls ORDER BY (r).ts))[1] AS calls,
(array_agg((r).total_exec_time ORDER BY (r).ts DESC))[1]
- (array_agg((r).total_exec_time ORDER BY (r).ts))[1] AS total_time
FROM powa_statements_history h CROSS JOIN LATERAL unnest(h.records) r
WHERE h.coalesce_range && tstzrange($1, $2, '[]') AND (r).ts BETWEEN $1 AND $2
AND h.srvid BETWEEN $3 AND $4
GROUP BY srvid, queryid, dbid, userid) h
JOIN powa_servers s ON s.id = h.srvid
LEFT JOIN powa_databases d ON d.srvid = h.srvid AND d.oid = h.dbid
LEFT JOIN powa_statements st ON st.srvid = h.srvid AND st.queryid = h.queryid
AND st.dbid = h.dbid AND st.userid = h.userid
ORDER BY h.total_time DESC LIMIT 10000
