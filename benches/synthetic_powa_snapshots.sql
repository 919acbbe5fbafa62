-- Takes snapshots of synthetic remote servers (registered by synthetic_powa.sql) the way
-- PoWA does: every 5-minute snapshot's rows go to powa_statements_history_current(_db)
-- and powa_kcache_metrics_current(_db) (PoWA's record types), powa_snapshot_metas
-- advances (coalesce_seq, snapts), and when coalesce_seq reaches a multiple of
-- powa_coalesce (100) PoWA's own powa_statements_aggregate(srvid) and
-- powa_kcache_aggregate(srvid) coalesce them and aggts is set, as powa_take_snapshot
-- does: history rows, the order of `records` and mins/maxs are PoWA's. Rows go in 100
-- snapshots at a time (one INSERT … SELECT over generate_series per table) up to the
-- next coalesce, then PoWA aggregates; each batch is committed.
--
-- psql variables: srvids (a comma-separated list), add (snapshots to take per server;
-- -1: up to the size bench_synthetic records), force_coalesce (true: call the aggregates
-- after the last snapshot whatever coalesce_seq says). Run with `psql -f` (not -c): the
-- DO block commits per batch.
--
-- The workload (bench_synthetic gives keys, snapshots S, t_end and global_reset), per
-- query key q (1..keys) and snapshot index j (taken at t_end - (S - 1 - j) * 5 min):
-- * calls per snapshot 1 + q % 20, mean time 0.1 + (q % 50) * 0.7 ms;
-- * every tenth key is born late, at snapshot (q * 37) % 2000;
-- * every 101st key has its counters reset once, at snapshot 300 + (q * 7) % 1900;
-- * a server-wide reset (pg_stat_statements_reset: every key drops at snapshot
--   global_reset) on the servers that have one;
-- * regression: keys q % 97 = 1 (but not the spiking ones) run 5x slower from
--   snapshot S - 288 on (the last day of the built history, and on after it);
-- * spike: keys q % 89 = 2 get 50x their calls during one hour (snapshots S - 60 to
--   S - 49);
-- * pg_stat_kcache has every key but q % 25 = 0 (as for utility statements), top-level
--   only: user CPU 70 % and system CPU 10 % of the execution time plus planning
--   (plan_*: half the keys plan), reads a quarter of the blocks read, writes the blocks
--   written and temp blocks, in bytes.
-- Counters are cumulative since the key's birth or last reset, as pg_stat_statements
-- keeps them: the first snapshot after either holds one snapshot's worth.

SET client_min_messages = warning;
SELECT set_config('bench.srvids', :'srvids', false),
       set_config('bench.add', :'add', false),
       set_config('bench.force_coalesce', :'force_coalesce', false);
SET work_mem = '256MB';

DROP TABLE IF EXISTS pg_temp.bench_keys, pg_temp.bench_pts;
CREATE TEMP TABLE bench_keys AS
SELECT q,
       CASE WHEN q % 10 = 0 THEN (q * 37) % 2000 ELSE 0 END AS born,
       CASE WHEN q % 101 = 0 THEN 300 + (q * 7) % 1900 ELSE -1 END AS reset_at,
       1 + q % 20 AS rate,
       0.1 + (q % 50) * 0.7 AS mean_ms,
       q % 97 = 1 AND q % 89 <> 2 AS regresses,
       q % 89 = 2 AS spikes
FROM generate_series(1, (SELECT max(keys) FROM bench_synthetic
                         WHERE srvid = ANY (string_to_array(current_setting('bench.srvids'), ',')::int[]))) q;
CREATE TEMP TABLE bench_pts (q int, ts timestamptz, c float8, t float8);

DO $$
DECLARE
  m record;
  add int := current_setting('bench.add')::int;
  force bool := current_setting('bench.force_coalesce')::bool;
  srv int;
  ns int;
  seq bigint;
  until bigint;
  j0 int;
  j1 int;
  first_ts timestamptz;
  last_ts timestamptz;
BEGIN
  FOR srv IN SELECT unnest(string_to_array(current_setting('bench.srvids'), ',')::int[]) LOOP
    SELECT * INTO STRICT m FROM bench_synthetic WHERE srvid = srv;
    ns := m.snapshots;
    SELECT coalesce_seq INTO STRICT seq FROM powa_snapshot_metas WHERE srvid = srv;
    until := CASE WHEN add < 0 THEN ns ELSE seq + add END;
    -- Snapshot j is the (j + 1)th: coalesce_seq counts the snapshots taken.
    WHILE seq < until LOOP
      j0 := seq;
      j1 := least(until, (seq / 100 + 1) * 100) - 1;
      first_ts := m.t_end - (ns - 1 - j0) * interval '5 minutes';
      last_ts := m.t_end - (ns - 1 - j1) * interval '5 minutes';
      TRUNCATE bench_pts;
      -- n: snapshots since birth or the last reset (the first one counts), s: of them in
      -- the spike, slow: of them in the regression.
      INSERT INTO bench_pts
      SELECT q, m.t_end - (ns - 1 - j) * interval '5 minutes',
             rate * (n + 49 * s),
             mean_ms * rate * (n + 49 * s + 4 * slow)
      FROM (
        SELECT q, j, rate, mean_ms,
               j - st + 1 AS n,
               CASE WHEN spikes THEN greatest(0, least(j, ns - 49) - greatest(st, ns - 60) + 1) ELSE 0 END AS s,
               CASE WHEN regresses THEN greatest(0, j - greatest(st, ns - 288) + 1) ELSE 0 END AS slow
        FROM (
          SELECT k.*, j,
                 greatest(born,
                          CASE WHEN reset_at >= 0 AND j >= reset_at THEN reset_at ELSE 0 END,
                          CASE WHEN m.global_reset >= 0 AND j >= m.global_reset THEN m.global_reset ELSE 0 END) AS st
          FROM bench_keys k CROSS JOIN generate_series(j0, j1) j
          WHERE k.q <= m.keys AND j >= born) x
      ) y;

      INSERT INTO powa_statements_history_current (srvid, queryid, dbid, userid, record)
      SELECT srv, p.q, 16384, 10,
             ROW(ts, c::bigint, t, (c * (p.q % 10))::bigint, (c * 10)::bigint, (c * (p.q % 3))::bigint,
                 (c * (p.q % 2))::bigint, (c * (p.q % 4 / 3))::bigint, 0, 0, 0, 0,
                 (c * (p.q % 2))::bigint, (c * (p.q % 2))::bigint, c * 0.01 * (p.q % 3), c * 0.002 * (p.q % 4 / 3),
                 (c * (p.q % 2))::bigint, c * (p.q % 2) * 0.05, (c * (p.q % 5))::bigint, 0, (c * (p.q % 5) * 120)::numeric
                )::powa_statements_history_record
      FROM bench_pts p;

      INSERT INTO powa_statements_history_current_db (srvid, dbid, record)
      SELECT srv, 16384,
             ROW(ts, sum((r).calls), sum((r).total_exec_time), sum((r).rows), sum((r).shared_blks_hit),
                 sum((r).shared_blks_read), sum((r).shared_blks_dirtied), sum((r).shared_blks_written), 0, 0, 0, 0,
                 sum((r).temp_blks_read), sum((r).temp_blks_written), sum((r).blk_read_time), sum((r).blk_write_time),
                 sum((r).plans), sum((r).total_plan_time), sum((r).wal_records), 0, sum((r).wal_bytes)
                )::powa_statements_history_record
      FROM (SELECT (record).ts AS ts, record AS r FROM powa_statements_history_current
            WHERE srvid = srv AND (record).ts >= first_ts) s
      GROUP BY ts;

      INSERT INTO powa_kcache_metrics_current (srvid, queryid, dbid, userid, metrics, top)
      SELECT srv, p.q, 16384, 10,
             ROW(ts,
                 0, 0, c * (p.q % 2) * 0.00004, c * (p.q % 2) * 0.00001,
                 (c * (p.q % 2))::bigint, 0, 0, 0, 0, 0, 0, 0,
                 (c * (p.q % 3) * 2048)::bigint, ((c * (p.q % 4 / 3) + c * (p.q % 2)) * 8192)::bigint,
                 t * 0.0007, t * 0.0001,
                 (c * 3)::bigint, 0, 0, 0, 0, 0, c::bigint, (c * (p.q % 3))::bigint
                )::powa_kcache_type,
             true
      FROM bench_pts p
      WHERE p.q % 25 <> 0;

      INSERT INTO powa_kcache_metrics_current_db (srvid, dbid, metrics, top)
      SELECT srv, 16384,
             ROW(ts,
                 sum((k).plan_reads), sum((k).plan_writes), sum((k).plan_user_time), sum((k).plan_system_time),
                 sum((k).plan_minflts), 0, 0, 0, 0, 0, 0, 0,
                 sum((k).exec_reads), sum((k).exec_writes), sum((k).exec_user_time), sum((k).exec_system_time),
                 sum((k).exec_minflts), 0, 0, 0, 0, 0, sum((k).exec_nvcsws), sum((k).exec_nivcsws)
                )::powa_kcache_type,
             true
      FROM (SELECT (metrics).ts AS ts, metrics AS k FROM powa_kcache_metrics_current
            WHERE srvid = srv AND (metrics).ts >= first_ts) s
      GROUP BY ts;

      seq := j1 + 1;
      UPDATE powa_snapshot_metas SET coalesce_seq = seq, snapts = last_ts WHERE srvid = srv;
      -- What powa_take_snapshot does when coalesce_seq % powa_coalesce = 0.
      IF seq % 100 = 0 OR (force AND seq = until) THEN
        PERFORM powa_statements_aggregate(srv);
        PERFORM powa_kcache_aggregate(srv);
        UPDATE powa_snapshot_metas SET aggts = last_ts WHERE srvid = srv;
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END
$$;
