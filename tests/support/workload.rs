//! Workloads on the lab that the tests make PoWA record: tables of a test's own (named
//! with [`unique`], so that its queries are series of their own), the queries that make an
//! analyzer speak, and the snapshots around them. What takes snapshots runs under
//! [`exclusive`], so that another test's snapshot does not cut its phases; the pieces
//! without a snapshot ([`orders`], [`two_queries`], [`coalesce`]) are for tests that hold
//! it themselves or need no phases.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{exclusive, lab, unique};

/// Under the lab lock: `setup` (the test's tables), a snapshot of `snapshot` (a cluster,
/// `remote` or `all`, as [`Lab::snapshot`](super::Lab::snapshot) takes), `work` (its
/// queries, and snapshots of its own), a snapshot again. Returns when `work` began and
/// when the last snapshot was done: the window that holds all of `work`.
pub fn around(
    snapshot: &str,
    setup: impl FnOnce(),
    work: impl FnOnce(),
) -> (DateTime<Utc>, DateTime<Utc>) {
    let lab = lab();
    let _guard = exclusive();
    setup();
    let start = lab.mark(snapshot);
    if snapshot.starts_with("remote") || snapshot == "all" {
        // powa-collector resets pg_qualstats after its read: let that pass first.
        std::thread::sleep(Duration::from_secs(1));
    }
    work();
    lab.snapshot(snapshot);
    (start, Utc::now())
}

/// A 300k-row table `t` in `db` of `cluster` shaped like the lab's `orders`: `id` (the
/// primary key, its only index), `customer_id`, `status`, `amount`.
pub fn orders(cluster: &str, db: &str, t: &str) {
    lab().psql(
        cluster,
        db,
        &format!(
            "CREATE TABLE {t} AS SELECT g AS id, 1 + (g % 10000) AS customer_id, \
                    CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END AS status, \
                    (g % 500)::numeric AS amount \
             FROM generate_series(1, 300000) g; \
             ALTER TABLE {t} ADD PRIMARY KEY (id); ANALYZE {t}"
        ),
    );
}

/// The selective filter on the unindexed columns of an [`orders`] table: every row read,
/// a handful kept. An index on (customer_id, status) serves it.
pub fn lookup(t: &str) -> String {
    format!("SELECT id, amount FROM {t} WHERE customer_id = 4242 AND status = 'open'")
}

/// An [`orders`] table `t` in `app` of `cluster` and its [`lookup`] run `calls` times,
/// [`around`] by snapshots of `snapshot`.
pub fn selective_filter(cluster: &str, snapshot: &str, t: &str, calls: usize) {
    let lab = lab();
    around(
        snapshot,
        || orders(cluster, "app", t),
        || lab.repeat(cluster, "app", &lookup(t), calls),
    );
}

/// A table `t` of `rows` rows (`id` 1..rows, `k` = id % 100) in `app` of `cluster`, then
/// `work` [`around`] by snapshots of `snapshot`. Returns when `work` began.
pub fn after_snapshot(
    cluster: &str,
    snapshot: &str,
    t: &str,
    rows: usize,
    work: impl FnOnce(),
) -> DateTime<Utc> {
    let create = format!(
        "CREATE TABLE {t} AS SELECT g AS id, g % 100 AS k FROM generate_series(1, {rows}) g"
    );
    let setup = || {
        lab().psql(cluster, "app", &create);
    };
    around(snapshot, setup, work).0
}

/// A table `<prefix>_<unique>` of `rows` rows in `app` of `cluster` (as in
/// [`after_snapshot`]), then `batches` of calls to `SELECT count(*) FROM <table> WHERE
/// <filter>`, each followed by a snapshot of `snapshot`. Returns the table and when the
/// first batch began.
pub fn batches(
    cluster: &str,
    snapshot: &str,
    prefix: &str,
    rows: usize,
    filter: &str,
    batches: &[usize],
) -> (String, DateTime<Utc>) {
    let lab = lab();
    let t = format!("{prefix}_{}", unique());
    let q = format!("SELECT count(*) FROM {t} WHERE {filter}");
    let start = after_snapshot(cluster, snapshot, &t, rows, || {
        for (k, n) in batches.iter().enumerate() {
            if k > 0 {
                lab.snapshot(snapshot);
            }
            lab.repeat(cluster, "app", &q, *n);
        }
    });
    (t, start)
}

/// On `cluster`: `create` (the test's table) in `app` and a handful of trivial queries in
/// the quiet database of the repository (which must give nothing), then `query` run
/// `calls` times in `app`, [`around`] by snapshots.
pub fn between_snapshots(cluster: &str, create: &str, query: &str, calls: usize) {
    let lab = lab();
    let setup = || {
        lab.psql(cluster, "app", create);
        if cluster == "repo" {
            lab.repeat(cluster, "quiet", "SELECT 1", 20);
        }
    };
    around(cluster, setup, || lab.repeat(cluster, "app", query, calls));
}

/// A slow query on the repository's local server: a 300k-row table `t` hashed row by row
/// (~250 ms a call), 8 calls, well above every guard of the slow-query analyzer.
pub fn slow_query(t: &str) {
    between_snapshots(
        "repo",
        &format!(
            "CREATE TABLE {t} AS SELECT g AS id, md5(g::text) AS payload \
             FROM generate_series(1, 300000) g"
        ),
        &format!("SELECT count(*) FROM {t} WHERE md5(payload) LIKE '%abc%'"),
        8,
    );
}

/// A 1000-row table `t` in `app` of `cluster`, and the two queries on it that the read
/// tests follow: (a count, a max).
pub fn two_queries(cluster: &str, t: &str) -> (String, String) {
    lab().psql(
        cluster,
        "app",
        &format!("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 1000) g"),
    );
    (
        format!("SELECT count(*) FROM {t} WHERE id < 500"),
        format!("SELECT max(id) FROM {t} WHERE id > 10"),
    )
}

/// PoWA's aggregate of the local server's statements, kcache and wait samples on
/// `cluster`: the rows of `*_current` move to history as one coalesced range.
pub fn coalesce(cluster: &str) {
    let sql = if cluster == "repo3" {
        "SELECT powa_statements_aggregate(), powa_kcache_aggregate(), powa_wait_sampling_aggregate()"
    } else {
        "SELECT powa_statements_aggregate(0), powa_kcache_aggregate(0), powa_wait_sampling_aggregate(0)"
    };
    lab().psql(cluster, "powa", sql);
}

/// A snapshot of `cluster` that PoWA itself coalesces, as every `powa.coalesce`-th one
/// is in production: PoWA's coalesce counter is moved forward so that the next
/// `powa_take_snapshot()` aggregates the local server's `*_current` rows into history
/// in the same transaction and, from PoWA 4 on, records it in
/// `powa_snapshot_metas.aggts`. [`coalesce`] calls the aggregate functions directly and
/// leaves `aggts` alone, which PoWA never does: a reader that follows `aggts` (the live
/// window) does not see those rows move. Panics unless the snapshot did coalesce.
pub fn coalescing_snapshot(cluster: &str) {
    let lab = lab();
    // The counter only moves forward: the next value is a multiple of powa.coalesce
    // (srvid 0, so PoWA 5's `srvid % 20` shift is 0).
    let (bump, current) = if cluster == "repo3" {
        (
            "SELECT setval('powa_coalesce_sequence', \
                    (last_value / current_setting('powa.coalesce')::bigint + 1) \
                    * current_setting('powa.coalesce')::bigint - 1) \
             FROM powa_coalesce_sequence",
            "SELECT count(*) FROM powa_statements_history_current",
        )
    } else {
        (
            "UPDATE powa_snapshot_metas \
             SET coalesce_seq = (coalesce_seq / current_setting('powa.coalesce')::bigint + 1) \
                                * current_setting('powa.coalesce')::bigint - 1 \
             WHERE srvid = 0",
            "SELECT count(*) FROM powa_statements_history_current WHERE srvid = 0",
        )
    };
    lab.psql(cluster, "powa", bump);
    lab.snapshot(cluster);
    assert_eq!(
        lab.psql(cluster, "powa", current),
        "0",
        "the snapshot of {cluster} coalesced"
    );
    if cluster != "repo3" {
        assert_eq!(
            lab.psql(
                cluster,
                "powa",
                "SELECT aggts = snapts FROM powa_snapshot_metas WHERE srvid = 0"
            ),
            "t",
            "PoWA recorded the coalesce of {cluster}"
        );
    }
}

/// `tables` distinct queries on the repository's local server (a 20k-row table each,
/// three calls), then a snapshot: enough findings for a report of several messages.
pub fn many_queries(prefix: &str, tables: usize) {
    let lab = lab();
    let _guard = exclusive();
    let t = format!("{prefix}_{}", unique());
    for k in 0..tables {
        lab.psql(
            "repo",
            "app",
            &format!(
                "CREATE TABLE {t}_{k} AS SELECT g AS id, md5(g::text) AS v \
                 FROM generate_series(1, 20000) g"
            ),
        );
        lab.repeat(
            "repo",
            "app",
            &format!("SELECT count(*) FROM {t}_{k} WHERE v LIKE '%{k}abc%'"),
            3,
        );
    }
    lab.snapshot("repo");
}

/// `create` (the tables, in `app`), then phase A and phase B on the repository's local
/// server, each between snapshots, B lasting at least a second longer than A: a baseline
/// window of B's length ending where B starts covers all of A. Returns (A's start, B's
/// start, B's end).
pub fn two_phases(
    create: &str,
    a: impl FnOnce(),
    b: impl FnOnce(),
) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let lab = lab();
    let _guard = exclusive();
    lab.psql("repo", "app", create);
    lab.snapshot("repo");
    let t0 = Utc::now();
    a();
    lab.snapshot("repo");
    let t1 = Utc::now();
    let started = std::time::Instant::now();
    b();
    let phase_a = (t1 - t0).to_std().unwrap();
    if let Some(rest) = (phase_a + Duration::from_secs(1)).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    lab.snapshot("repo");
    (t0, t1, Utc::now())
}

/// A login role on `cluster` that may read `db` (not a superuser: the index advisor's
/// session needs no more), and a DSN for it. Returns (role, dsn).
pub fn reader_role(cluster: &str, db: &str) -> (String, String) {
    let lab = lab();
    let role = format!("advisor_{}", unique());
    let password = format!("pw{}", unique());
    // GRANTs from parallel tests can fail with "tuple concurrently updated": one at a
    // time.
    static GRANTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = GRANTS.lock().unwrap_or_else(|e| e.into_inner());
    lab.psql(
        cluster,
        db,
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; \
             GRANT CONNECT ON DATABASE {db} TO {role}; GRANT pg_read_all_data TO {role}"
        ),
    );
    let port = lab.var(&format!("POWA_LAB_{}_PORT", cluster.to_uppercase()));
    let dsn = format!("host=127.0.0.1 port={port} user={role} password={password}");
    (role, dsn)
}
