-- Registers one synthetic remote server in a PoWA 4.1 repository, as powa_register_server
-- would (powa_servers, its extensions and snapshot functions, an empty
-- powa_snapshot_metas row), with its database and query texts, and records in
-- bench_synthetic the workload model its snapshots follow (see
-- synthetic_powa_snapshots.sql, which then takes the snapshots).
--
-- psql variables: srvid, keys, snapshots, global_reset (snapshot index of a server-wide
-- pg_stat_statements_reset, or -1), t_end (timestamp of snapshot `snapshots - 1`),
-- generator (version of the model).

SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS bench_synthetic (
  srvid int PRIMARY KEY REFERENCES powa_servers (id) ON DELETE CASCADE,
  generator int NOT NULL,
  keys int NOT NULL,
  snapshots int NOT NULL,
  t_end timestamptz NOT NULL,
  global_reset int NOT NULL,
  complete bool NOT NULL DEFAULT false
);
BEGIN;
DELETE FROM powa_servers WHERE id = :srvid;
INSERT INTO powa_servers (id, hostname, alias, port, username, dbname, frequency, powa_coalesce, retention)
VALUES (:srvid, 'bench-' || :srvid, 'bench-' || :srvid, 10000 + :srvid, 'powa', 'powa', 300, 100, '30 days');
INSERT INTO powa_extensions (srvid, extname, version)
VALUES (:srvid, 'pg_stat_statements', '1.10'), (:srvid, 'pg_stat_kcache', '2.2.1'), (:srvid, 'powa', '4.1.4');
INSERT INTO powa_functions (srvid, module, operation, function_name, query_source, added_manually, enabled, priority, extname)
VALUES (:srvid, 'pg_stat_statements', 'snapshot', 'powa_databases_snapshot', 'powa_databases_src', true, true, -3, 'pg_stat_statements'),
       (:srvid, 'pg_stat_statements', 'snapshot', 'powa_statements_snapshot', 'powa_statements_src', true, true, -2, 'pg_stat_statements'),
       (:srvid, 'pg_stat_statements', 'aggregate', 'powa_statements_aggregate', NULL, true, true, 10, 'pg_stat_statements'),
       (:srvid, 'pg_stat_statements', 'purge', 'powa_statements_purge', NULL, true, true, 10, 'pg_stat_statements'),
       (:srvid, 'pg_stat_kcache', 'snapshot', 'powa_kcache_snapshot', 'powa_kcache_src', true, true, -1, 'pg_stat_kcache'),
       (:srvid, 'pg_stat_kcache', 'aggregate', 'powa_kcache_aggregate', NULL, true, true, 10, 'pg_stat_kcache'),
       (:srvid, 'pg_stat_kcache', 'purge', 'powa_kcache_purge', NULL, true, true, 10, 'pg_stat_kcache');
INSERT INTO powa_databases (srvid, oid, datname) VALUES (:srvid, 16384, 'app');
INSERT INTO powa_statements (srvid, queryid, dbid, userid, query, last_present_ts)
SELECT :srvid, q, 16384, 10,
       'SELECT * FROM bench_table_' || q || ' WHERE id = $1 AND created_at > $2', :'t_end'::timestamptz
FROM generate_series(1, :keys) q;
INSERT INTO powa_snapshot_metas (srvid, coalesce_seq, snapts, aggts, purgets)
VALUES (:srvid, 0, '-infinity', '-infinity', '-infinity');
INSERT INTO bench_synthetic (srvid, generator, keys, snapshots, t_end, global_reset)
VALUES (:srvid, :generator, :keys, :snapshots, :'t_end', :global_reset);
COMMIT;
