-- A synthetic but schema-correct PoWA 4.1 history for one remote server, as the
-- archivist would have stored it: one snapshot every 5 minutes, coalesced every 100
-- snapshots into one history row per query (records in no particular order, field-wise
-- mins/maxs), the last snapshots still in the *_current tables, per-database sums in the
-- _db tables, and the server's snapshot metadata.
--
-- psql variables: srvid, keys, snapshots (all integers).
-- Queries: most live the whole history; every tenth one is born later (so ranges do not
-- all start together); every 101st has its counters reset once.

BEGIN;
DELETE FROM powa_servers WHERE id = :srvid;
INSERT INTO powa_servers (id, hostname, alias, port, username, dbname, frequency, powa_coalesce, retention)
VALUES (:srvid, 'bench-' || :srvid, 'bench-' || :srvid, 10000 + :srvid, 'powa', 'powa', 300, 100, '30 days');
INSERT INTO powa_databases (srvid, oid, datname) VALUES (:srvid, 16384, 'app');
INSERT INTO powa_statements (srvid, queryid, dbid, userid, query, last_present_ts)
SELECT :srvid, q, 16384, 10,
       'SELECT * FROM bench_table_' || q || ' WHERE id = $1 AND created_at > $2', now()
FROM generate_series(1, :keys) q;

CREATE TEMP TABLE pts ON COMMIT DROP AS
WITH k AS (
  SELECT q,
         CASE WHEN q % 10 = 0 THEN (q * 37) % 2000 ELSE 0 END AS born,
         1 + q % 20 AS rate,
         0.1 + (q % 50) * 0.7 AS mean_ms
  FROM generate_series(1, :keys) q
), s AS (
  SELECT j, now() - ((:snapshots - j) * interval '5 minutes') AS ts
  FROM generate_series(0, :snapshots - 1) j
)
SELECT k.q, s.j, s.ts,
       (k.rate * (s.j - CASE WHEN k.q % 101 = 0 AND s.j >= 1234 THEN 1234 ELSE k.born END + 1))::bigint AS calls,
       k.mean_ms
FROM k JOIN s ON s.j >= k.born;

CREATE TEMP TABLE recs ON COMMIT DROP AS
SELECT q, j, ts,
       ROW(ts, calls, calls * mean_ms, calls * (q % 10), calls * 10, calls * (q % 3), 0, 0,
           0, 0, 0, 0, calls * (q % 2), calls * (q % 2), calls * 0.01, 0, 0, 0, 0, 0, 0
          )::powa_statements_history_record AS r
FROM pts;

-- Whole ranges of 100 snapshots go to history, the rest stays current.
INSERT INTO powa_statements_history (srvid, queryid, dbid, userid, coalesce_range, records, mins_in_range, maxs_in_range)
SELECT :srvid, q, 16384, 10, tstzrange(min(ts), max(ts), '[]'),
       array_agg(r ORDER BY md5(j::text)),
       ROW(min(ts), min((r).calls), min((r).total_exec_time), min((r).rows), min((r).shared_blks_hit),
           min((r).shared_blks_read), 0, 0, 0, 0, 0, 0, min((r).temp_blks_read), min((r).temp_blks_written),
           min((r).blk_read_time), 0, 0, 0, 0, 0, 0)::powa_statements_history_record,
       ROW(max(ts), max((r).calls), max((r).total_exec_time), max((r).rows), max((r).shared_blks_hit),
           max((r).shared_blks_read), 0, 0, 0, 0, 0, 0, max((r).temp_blks_read), max((r).temp_blks_written),
           max((r).blk_read_time), 0, 0, 0, 0, 0, 0)::powa_statements_history_record
FROM recs
WHERE j < (:snapshots / 100) * 100
GROUP BY q, j / 100;

INSERT INTO powa_statements_history_current (srvid, queryid, dbid, userid, record)
SELECT :srvid, q, 16384, 10, r FROM recs WHERE j >= (:snapshots / 100) * 100;

-- Per-database sums per snapshot.
CREATE TEMP TABLE dbrecs ON COMMIT DROP AS
SELECT j, ts,
       ROW(ts, sum((r).calls), sum((r).total_exec_time), sum((r).rows), sum((r).shared_blks_hit),
           sum((r).shared_blks_read), 0, 0, 0, 0, 0, 0, sum((r).temp_blks_read), sum((r).temp_blks_written),
           sum((r).blk_read_time), 0, 0, 0, 0, 0, 0)::powa_statements_history_record AS r
FROM recs GROUP BY j, ts;

INSERT INTO powa_statements_history_db (srvid, dbid, coalesce_range, records, mins_in_range, maxs_in_range)
SELECT :srvid, 16384, tstzrange(min(ts), max(ts), '[]'), array_agg(r),
       (array_agg(r ORDER BY j))[1], (array_agg(r ORDER BY j DESC))[1]
FROM dbrecs WHERE j < (:snapshots / 100) * 100 GROUP BY j / 100;

INSERT INTO powa_statements_history_current_db (srvid, dbid, record)
SELECT :srvid, 16384, r FROM dbrecs WHERE j >= (:snapshots / 100) * 100;

INSERT INTO powa_snapshot_metas (srvid, coalesce_seq, snapts, aggts)
SELECT :srvid, :snapshots, max(ts), (SELECT max(upper(coalesce_range)) FROM powa_statements_history_db WHERE srvid = :srvid)
FROM dbrecs
ON CONFLICT (srvid) DO UPDATE SET coalesce_seq = EXCLUDED.coalesce_seq, snapts = EXCLUDED.snapts, aggts = EXCLUDED.aggts;
COMMIT;
