//! Per-query deltas of pg_stat_statements counters over a window, as PoWA recorded them.
//!
//! Semantics (the "S3" of the PoWA notes): for a window [a, b], the anchor a' is the
//! server's last snapshot at or before a. Per query, counters are summed step by step in
//! timestamp order from a' to b; a step where `calls` or the execution time goes down is a
//! counter reset (stats reset, restart, eviction) and contributes the new value, not a
//! negative number. A query that first appears after the anchor is counted from zero, so a
//! burst of a new query inside the window is not lost. When PoWA holds nothing before a,
//! the first snapshot inside the window is the anchor.
//!
//! Both `*_history` (coalesced arrays, unordered — hence the ORDER BY) and
//! `*_history_current` are read. Several rows for one key and timestamp (PoWA 4.1 with
//! `pg_stat_statements.track = all` stores top-level and nested entries under one key) are
//! summed before stepping.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::cold;
use super::discovery::{PowaInfo, ServerInfo};
use super::error::PowaError;
use super::layout::{Layout, SeriesKey};
use super::session::{QueryError, Session};
use sentinel_actors::Window;

/// Counters read per query, in this order. Units: times in ms, blocks in blocks.
pub const COUNTERS: [&str; 16] = [
    "calls",
    "exec_time_ms",
    "rows",
    "shared_blks_hit",
    "shared_blks_read",
    "shared_blks_dirtied",
    "shared_blks_written",
    "local_blks_hit",
    "local_blks_read",
    "temp_blks_read",
    "temp_blks_written",
    "blk_read_time_ms",
    "blk_write_time_ms",
    "plans",
    "plan_time_ms",
    "wal_bytes",
];

pub const CALLS: usize = 0;
pub const EXEC_TIME: usize = 1;
pub const ROWS: usize = 2;
pub const SHARED_HIT: usize = 3;
pub const SHARED_READ: usize = 4;
pub const TEMP_WRITTEN: usize = 10;
pub const BLK_READ_TIME: usize = 11;
pub const BLK_WRITE_TIME: usize = 12;
pub const PLAN_TIME: usize = 14;

const N: usize = COUNTERS.len();

/// The counter values of one query.
pub type Counters = [f64; N];

/// Identity of a query series in PoWA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryKey {
    pub dbid: u32,
    pub userid: u32,
    pub queryid: i64,
    /// PoWA 4.2+/5.x only.
    pub toplevel: Option<bool>,
}

/// Deltas of one query over the window.
#[derive(Clone, Debug)]
pub struct QueryStats {
    pub key: QueryKey,
    /// Names and texts are shared (`Arc`): a live window hands the same ones to every
    /// cycle's snapshot without copying them.
    pub database: Option<Arc<str>>,
    pub user: Option<Arc<str>>,
    pub counters: Counters,
    /// CPU and physical I/O from pg_stat_kcache, when PoWA records it for this server.
    pub kcache: Option<super::kcache::Kcache>,
    /// Normalised text, cut to [`TEXT_LIMIT`] characters; None if PoWA purged it.
    pub query: Option<Arc<str>>,
}

impl QueryStats {
    pub fn get(&self, i: usize) -> f64 {
        self.counters[i]
    }

    pub fn mean_time_ms(&self) -> f64 {
        if self.counters[CALLS] > 0.0 {
            self.counters[EXEC_TIME] / self.counters[CALLS]
        } else {
            0.0
        }
    }
}

/// One server's statements over one window.
#[derive(Clone, Debug)]
pub struct StatementsWindow {
    pub repository: String,
    pub server: ServerInfo,
    pub window: Window,
    /// Snapshot the deltas start from (a'), if PoWA had one.
    pub anchor: Option<DateTime<Utc>>,
    /// Newest snapshot time seen in the window.
    pub last_ts: Option<DateTime<Utc>>,
    /// Rows the repository returned for this window: a window read's points, or what a
    /// live cycle read (its incremental, start-up and baseline reads, and the quals').
    pub points: u64,
    /// Queries with at least one call in the window.
    pub queries: Vec<QueryStats>,
    /// The same server over past windows: the window shifted back by 1, 2, … times the
    /// baseline offset, nearest first, as far as retention allows (empty when no
    /// baseline was asked for). Baselines carry counters only.
    pub baselines: Vec<StatementsWindow>,
    /// pg_wait_sampling samples per query and event, most first (empty when PoWA does
    /// not sample waits for this server, and in baselines).
    pub waits: Vec<super::waits::WaitStat>,
    /// pg_qualstats predicates over the window (None when PoWA does not collect them).
    pub quals: Option<std::sync::Arc<crate::powa::qualstats::QualsWindow>>,
    /// What pg_stat_kcache recorded over the window for series no query above carries
    /// (pg_stat_statements evicted the statement, or it had no call in the window); PoWA's
    /// own database left out. Part of the server's CPU and I/O totals: without it a query
    /// shown at 87% of the server's CPU had 76% (None without pg_stat_kcache).
    pub kcache_unmatched: Option<super::kcache::Kcache>,
    /// What changed on the server within the baseline's reach (pg_track_settings); None
    /// where it was not read (baselines, synthetic windows).
    pub changes: Option<Arc<super::changes::Timeline>>,
}

impl StatementsWindow {
    /// Calls per (queryid, dbid, userid), top-level and nested entries summed: what the
    /// quals of the same window are matched with.
    pub fn calls_by_query(&self) -> HashMap<(i64, u32, u32), f64> {
        let mut out = HashMap::new();
        for q in &self.queries {
            *out.entry((q.key.queryid, q.key.dbid, q.key.userid))
                .or_insert(0.0) += q.get(CALLS);
        }
        out
    }

    /// `queries` of `server` over `window`, its deltas anchored at the window's start, with
    /// nothing beside them yet (no baselines, waits, quals or kcache remainder).
    pub fn new(
        repository: impl Into<String>,
        server: ServerInfo,
        window: Window,
        queries: Vec<QueryStats>,
    ) -> Self {
        StatementsWindow {
            repository: repository.into(),
            server,
            window,
            anchor: Some(window.start),
            last_ts: None,
            points: 0,
            queries,
            baselines: Vec::new(),
            waits: Vec::new(),
            quals: None,
            kcache_unmatched: None,
            changes: None,
        }
    }
}

/// Leaves out the statements of PoWA's own database (see [`PowaInfo::database`]), in the
/// window and in its baselines (which carry no names: by the dbids seen in the window).
/// Returns the dbids left out.
pub(crate) fn drop_powa_own(
    queries: &mut Vec<QueryStats>,
    baselines: &mut [StatementsWindow],
    info: &PowaInfo,
) -> std::collections::BTreeSet<u32> {
    let own: std::collections::BTreeSet<u32> = queries
        .iter()
        .filter(|q| q.database.as_deref() == Some(info.database.as_str()))
        .map(|q| q.key.dbid)
        .collect();
    if own.is_empty() {
        return own;
    }
    queries.retain(|q| !own.contains(&q.key.dbid));
    for b in baselines {
        b.queries.retain(|q| !own.contains(&q.key.dbid));
    }
    own
}

/// The kcache numbers of the series no query of the window carries, outside PoWA's own
/// databases `own` (see [`StatementsWindow::kcache_unmatched`]).
pub(crate) fn unmatched_kcache(
    k: &super::kcache::KcacheByQuery,
    queries: &[QueryStats],
    own: &std::collections::BTreeSet<u32>,
) -> super::kcache::Kcache {
    let carried: std::collections::HashSet<QueryKey> = queries.iter().map(|q| q.key).collect();
    let mut sum = super::kcache::Kcache::default();
    for (key, v) in k {
        if !carried.contains(key) && !own.contains(&key.dbid) {
            sum.add(v);
        }
    }
    sum
}

/// Query texts can be megabytes; nobody reads more than this in a chat message.
pub const TEXT_LIMIT: i32 = 4000;

/// Reset detection: a series went backwards. The first two counters of every series are
/// its reset detectors (calls and execution time; user and system CPU time for kcache);
/// a one-counter series (wait samples) has only the first.
pub(crate) fn is_reset<const M: usize>(cur: &[f64; M], prev: &[f64; M]) -> bool {
    cur[0] < prev[0] || (M > 1 && cur[1] < prev[1])
}

/// Consecutive points of one series collapsed into one piece by the repository (see
/// [`super::layout::Layout::pieces_sql`]): the first and last point and the sum of the
/// increments between them, as [`SeriesAcc`] would add them (a drop of the first two
/// fields is a reset; each field's step is at least 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run<const M: usize> {
    pub t0: DateTime<Utc>,
    pub t1: DateTime<Utc>,
    pub first: [f64; M],
    pub last: [f64; M],
    pub inc: [f64; M],
}

impl<const M: usize> Run<M> {
    /// Collapses points ordered by time (the reference for the repository's SQL).
    #[cfg(test)]
    pub fn of(points: &[(DateTime<Utc>, [f64; M])]) -> Option<Run<M>> {
        let (&(t0, _), _) = points.split_first()?;
        let mut acc: Option<SeriesAcc<M>> = None;
        for &(ts, v) in points {
            match acc.as_mut() {
                Some(a) => a.push(ts, v),
                None => acc = Some(SeriesAcc::new(ts, v)),
            }
        }
        let acc = acc?;
        let (t1, last) = acc.last();
        Some(Run {
            t0,
            t1,
            first: acc.first,
            last,
            inc: acc.finish(None),
        })
    }
}

/// Accumulates one key's points, in timestamp order. Rows with the same timestamp are one
/// snapshot (duplicates are summed), so a point is only stepped over once the next
/// timestamp arrives.
#[derive(Clone, Debug)]
pub struct SeriesAcc<const M: usize = N> {
    first_ts: DateTime<Utc>,
    first: [f64; M],
    prev: Option<[f64; M]>,
    pending_ts: DateTime<Utc>,
    pending: [f64; M],
    /// When the pending point ends a run ([`SeriesAcc::push_run`]): the run's own
    /// increments, which stand for the step into the pending point.
    pending_inc: Option<[f64; M]>,
    /// Sum of increments since `first`, pending point excluded.
    inc: [f64; M],
}

impl<const M: usize> SeriesAcc<M> {
    pub fn new(ts: DateTime<Utc>, v: [f64; M]) -> Self {
        SeriesAcc {
            first_ts: ts,
            first: v,
            prev: None,
            pending_ts: ts,
            pending: v,
            pending_inc: None,
            inc: [0.0; M],
        }
    }

    /// A series starting with a run (see [`SeriesAcc::push_run`]).
    pub fn from_run(run: &Run<M>) -> Self {
        let mut acc = SeriesAcc::new(run.t0, run.first);
        acc.end_run(run);
        acc
    }

    /// Adds a run of consecutive points collapsed by the repository: as if its points
    /// were pushed one by one, given that the run starts after the newest point so far
    /// (a run's points are never merged with another piece's).
    pub fn push_run(&mut self, run: &Run<M>) {
        debug_assert!(run.t0 > self.pending_ts, "a run overlaps the series");
        self.push(run.t0, run.first);
        self.end_run(run);
    }

    fn end_run(&mut self, run: &Run<M>) {
        if run.t1 > run.t0 {
            self.commit();
            self.pending_ts = run.t1;
            self.pending = run.last;
            self.pending_inc = Some(run.inc);
        }
    }

    /// Adds the next point; `ts` must not be older than the previous one.
    pub fn push(&mut self, ts: DateTime<Utc>, v: [f64; M]) {
        if ts == self.pending_ts {
            for (p, x) in self.pending.iter_mut().zip(v) {
                *p += x;
            }
            if self.prev.is_none() {
                self.first = self.pending;
            }
            return;
        }
        self.commit();
        self.pending_ts = ts;
        self.pending = v;
    }

    fn commit(&mut self) {
        let cur = self.pending;
        if let Some(inc) = self.pending_inc.take() {
            for (a, x) in self.inc.iter_mut().zip(inc) {
                *a += x;
            }
        } else if let Some(prev) = self.prev {
            let reset = is_reset(&cur, &prev);
            for i in 0..M {
                let step = if reset { cur[i] } else { cur[i] - prev[i] };
                self.inc[i] += step.max(0.0);
            }
        }
        self.prev = Some(cur);
    }

    /// The newest point (duplicates of its timestamp summed): where a live reader goes on.
    pub fn last(&self) -> (DateTime<Utc>, [f64; M]) {
        (self.pending_ts, self.pending)
    }

    /// Final deltas; the first value counts too when the series started after the anchor.
    pub fn finish(&self, anchor: Option<DateTime<Utc>>) -> [f64; M] {
        let mut done = self.clone();
        done.commit();
        let count_first = anchor.is_some_and(|a| self.first_ts > a);
        std::array::from_fn(|i| done.inc[i] + if count_first { self.first[i] } else { 0.0 })
    }
}

fn anchor_sql(info: &PowaInfo) -> String {
    let s = &info.schema;
    let (srv_h, srv_c) = if info.version.multi_server() {
        ("h.srvid = $2 AND ", "c.srvid = $2 AND ")
    } else {
        ("", "")
    };
    // The per-database tables are small; one day of look-back is far more than a
    // snapshot period.
    format!(
        "SELECT max(t) FROM ( \
           SELECT max((r).ts) AS t FROM {s}.powa_statements_history_db h \
             CROSS JOIN LATERAL unnest(h.records) r \
           WHERE {srv_h}h.coalesce_range && tstzrange($1::timestamptz - interval '1 day', $1::timestamptz, '[]') \
             AND (r).ts <= $1::timestamptz \
           UNION ALL \
           SELECT max((c.record).ts) FROM {s}.powa_statements_history_current_db c \
           WHERE {srv_c}(c.record).ts <= $1::timestamptz AND (c.record).ts >= $1::timestamptz - interval '1 day') x"
    )
}

/// How a window is read from the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Whole coalesce ranges inside the window from mins/maxs (see [`super::cold`]).
    Fast,
    /// Every point unnested: the reference the fast read is checked against.
    Naive,
}

/// The fast window reads the collectors make, one signature for both.
macro_rules! fast_read {
    ($(#[$doc:meta])* $name:ident, details: $details:expr) => {
        $(#[$doc])*
        pub async fn $name(
            client: &Session,
            repository: &str,
            info: &PowaInfo,
            server: &ServerInfo,
            window: Window,
        ) -> Result<StatementsWindow, PowaError> {
            read_window_with(client, repository, info, server, window, $details, ReadMode::Fast)
                .await
        }
    };
}

fast_read!(
    /// Reads one server's per-query deltas for `window`, with CPU/IO, names and texts.
    read_window,
    details: true
);

fast_read!(
    /// As [`read_window`], counters only: no kcache, names or texts. A baseline is only
    /// compared with the current window, which carries those already; reading them
    /// twice would double the repository's work for nothing.
    read_baseline,
    details: false
);

/// The server's last snapshot at or before `at` (the anchor of a window starting there).
pub async fn anchor_before(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    at: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, QueryError> {
    let params: Vec<&(dyn ToSql + Sync)> = if info.version.multi_server() {
        vec![&at, &srvid]
    } else {
        vec![&at]
    };
    Ok(client.query_one(&anchor_sql(info), &params).await?.get(0))
}

/// Sums series into queries: PoWA 4.1 keeps no `toplevel`, so its variants are one query.
pub(crate) fn query_key(k: SeriesKey) -> QueryKey {
    QueryKey {
        dbid: k.dbid,
        userid: k.userid,
        queryid: k.queryid,
        toplevel: (k.sub >= 0).then_some(k.sub == 1),
    }
}

/// Any read: with or without `details` (kcache, names, texts, waits), in either `mode`
/// (tests and benchmarks compare the modes).
pub async fn read_window_with(
    client: &Session,
    repository: &str,
    info: &PowaInfo,
    server: &ServerInfo,
    window: Window,
    details: bool,
    mode: ReadMode,
) -> Result<StatementsWindow, PowaError> {
    let ctx = |what: &str, e: QueryError| PowaError::reading(client, &server.name, what, e);
    let anchor = anchor_before(client, info, server.srvid, window.start)
        .await
        .map_err(|e| ctx("the anchor snapshot", e))?;
    let from = anchor.unwrap_or(window.start);
    // The read starts at the anchor: the deltas are taken from its values.
    let span = Window {
        start: from,
        end: window.end,
    };
    let layout = Layout::statements(info);
    let read = cold::read::<N>(mode, client, &layout, server.srvid, span)
        .await
        .map_err(|e| ctx("statements history", e))?;
    // With no snapshot before the window, the first one inside it is the anchor.
    let effective_anchor = anchor.or(read.earliest);
    let mut queries: Vec<QueryStats> = read
        .series
        .iter()
        .map(|(k, acc)| QueryStats {
            key: query_key(*k),
            database: None,
            user: None,
            counters: acc.finish(effective_anchor),
            kcache: None,
            query: None,
        })
        .filter(|q| q.counters[CALLS] > 0.0)
        .collect();

    let mut waits = Vec::new();
    let mut kcache_all = None;
    let mut kcache_unmatched = None;
    if details {
        if server.modules.iter().any(|m| m == "pg_stat_kcache") && !queries.is_empty() {
            let k = super::kcache::read_kcache(
                client,
                info,
                server.srvid,
                from,
                window.end,
                effective_anchor,
                mode,
            )
            .await
            .map_err(|e| ctx("pg_stat_kcache history", e))?;
            super::kcache::attach(&mut queries, &k);
            kcache_all = Some(k);
        }
        decorate(client, info, server, &mut queries)
            .await
            .map_err(|e| ctx("query texts and names", e))?;
        let own = drop_powa_own(&mut queries, &mut [], info);
        kcache_unmatched = kcache_all.map(|k| unmatched_kcache(&k, &queries, &own));
        if super::waits::enabled(&server.modules) {
            let layout = Layout::wait_sampling(info);
            let w = cold::read::<1>(mode, client, &layout, server.srvid, span)
                .await
                .map_err(|e| ctx("pg_wait_sampling history", e))?;
            let names =
                super::waits::read_event_names(client, info, server.srvid, from, window.end)
                    .await
                    .map_err(|e| ctx("wait event names", e))?;
            waits = super::waits::wait_stats(
                w.series
                    .iter()
                    .map(|(k, acc)| (*k, acc.finish(effective_anchor)[0])),
                &names,
            );
        }
    }

    Ok(StatementsWindow {
        repository: repository.to_string(),
        server: server.clone(),
        window,
        anchor,
        last_ts: read.latest,
        points: read.rows,
        queries,
        baselines: Vec::new(),
        waits,
        quals: None,
        kcache_unmatched,
        changes: None,
    })
}

/// Database names (by oid) and role names (local server only: PoWA 4 does not keep
/// remote role names) of one server.
pub(crate) struct Names {
    pub dbs: HashMap<u32, Arc<str>>,
    pub roles: HashMap<u32, Arc<str>>,
}

pub(crate) async fn read_names(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
) -> Result<Names, QueryError> {
    let s = &info.schema;
    let srvid = server.srvid;
    let db_rows = if info.version.multi_server() {
        client
            .query(
                &format!(
                    "SELECT oid::int8, datname::text FROM {s}.powa_databases WHERE srvid = $1"
                ),
                &[&srvid],
            )
            .await?
    } else {
        client
            .query(
                &format!("SELECT oid::int8, datname::text FROM {s}.powa_databases"),
                &[],
            )
            .await?
    };
    let pairs = |rows: Vec<tokio_postgres::Row>| -> HashMap<u32, Arc<str>> {
        rows.iter()
            .map(|r| (r.get::<_, i64>(0) as u32, Arc::from(r.get::<_, &str>(1))))
            .collect()
    };
    let roles = if srvid == 0 {
        pairs(
            client
                .query(
                    "SELECT oid::int8, rolname::text FROM pg_catalog.pg_roles",
                    &[],
                )
                .await?,
        )
    } else if info.version.major >= 5 {
        // PoWA 5 keeps each remote server's roles in its catalog snapshots (refreshed by
        // powa-collector; roles rarely change, so their age matters little here). A
        // repository whose role may not read them just shows oids, as before.
        client
            .query(
                &format!(
                    "SELECT oid::int8, rolname::text FROM {s}.powa_catalog_roles WHERE srvid = $1"
                ),
                &[&srvid],
            )
            .await
            .map(pairs)
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    Ok(Names {
        dbs: pairs(db_rows),
        roles,
    })
}

/// Query texts, cut to [`TEXT_LIMIT`] characters, by (queryid, dbid, userid).
pub(crate) async fn read_texts(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
    ids: &[i64],
) -> Result<HashMap<(i64, u32, u32), Arc<str>>, QueryError> {
    let s = &info.schema;
    let rows = if info.version.multi_server() {
        client
            .query(
                &format!(
                    "SELECT queryid, dbid::int8, userid::int8, left(query, {TEXT_LIMIT}) \
                     FROM {s}.powa_statements WHERE srvid = $1 AND queryid = ANY($2)"
                ),
                &[&server.srvid, &ids],
            )
            .await?
    } else {
        client
            .query(
                &format!(
                    "SELECT queryid, dbid::int8, userid::int8, left(query, {TEXT_LIMIT}) \
                     FROM {s}.powa_statements WHERE queryid = ANY($1)"
                ),
                &[&ids],
            )
            .await?
    };
    Ok(rows
        .iter()
        .map(|r| {
            (
                (
                    r.get::<_, i64>(0),
                    r.get::<_, i64>(1) as u32,
                    r.get::<_, i64>(2) as u32,
                ),
                Arc::from(r.get::<_, &str>(3)),
            )
        })
        .collect())
}

/// Adds database names, role names and query texts.
async fn decorate(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
    queries: &mut [QueryStats],
) -> Result<(), QueryError> {
    if queries.is_empty() {
        return Ok(());
    }
    let names = read_names(client, info, server).await?;
    let ids: Vec<i64> = queries.iter().map(|q| q.key.queryid).collect();
    let texts = read_texts(client, info, server, &ids).await?;
    for q in queries.iter_mut() {
        q.database = names.dbs.get(&q.key.dbid).cloned();
        q.user = names.roles.get(&q.key.userid).cloned();
        q.query = texts
            .get(&(q.key.queryid, q.key.dbid, q.key.userid))
            .cloned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn c(calls: f64, time: f64) -> Counters {
        let mut v = [0.0; N];
        v[CALLS] = calls;
        v[EXEC_TIME] = time;
        v
    }

    proptest::proptest! {
        /// Collapsing consecutive points into runs and pushing the runs gives what pushing
        /// the points gives, resets and duplicated timestamps included: the rule the
        /// repository's SQL implements ([`Run`]).
        #[test]
        fn runs_fold_like_their_points(
            steps in proptest::collection::vec((0u8..4, 0.0f64..50.0, 0.0f64..50.0, 0.0f64..9.0), 1..40),
            cuts in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            // A series: mostly growing, sometimes dropping (a reset), sometimes a second
            // row of the same timestamp.
            let mut points: Vec<(DateTime<Utc>, [f64; 3])> = Vec::new();
            let (mut min, mut v) = (0i64, [0.0; 3]);
            for &(kind, a, b, c) in &steps {
                match kind {
                    0 if !points.is_empty() => {
                        points.push((t(min), [a / 10.0, b / 10.0, c]));
                        continue;
                    }
                    1 => v = [a / 5.0, b / 5.0, c],
                    _ => v = [v[0] + a, v[1] + b, c],
                }
                min += 5;
                points.push((t(min), v));
            }
            let mut whole = SeriesAcc::new(points[0].0, points[0].1);
            for &(ts, p) in &points[1..] {
                whole.push(ts, p);
            }
            // Cut between distinct timestamps only (a run holds all rows of its times).
            let mut runs: Vec<Run<3>> = Vec::new();
            let mut from = 0;
            for i in 1..=points.len() {
                let end = i == points.len();
                if end || (points[i].0 != points[i - 1].0 && cuts[i % cuts.len()]) {
                    runs.push(Run::of(&points[from..i]).unwrap());
                    from = i;
                }
            }
            let mut pieces = SeriesAcc::from_run(&runs[0]);
            for r in &runs[1..] {
                pieces.push_run(r);
            }
            for anchor in [None, Some(t(0)), Some(t(5))] {
                let (a, b) = (whole.finish(anchor), pieces.finish(anchor));
                for i in 0..3 {
                    proptest::prop_assert!((a[i] - b[i]).abs() < 1e-9, "{a:?} vs {b:?}");
                }
            }
            proptest::prop_assert_eq!(whole.last(), pieces.last());
        }
    }

    #[test]
    fn plain_increments() {
        let mut a = SeriesAcc::new(t(0), c(10.0, 100.0));
        a.push(t(5), c(15.0, 150.0));
        a.push(t(10), c(30.0, 400.0));
        let d = a.finish(Some(t(0)));
        assert_eq!((d[CALLS], d[EXEC_TIME]), (20.0, 300.0));
    }

    #[test]
    fn reset_counts_the_new_value() {
        let mut a = SeriesAcc::new(t(0), c(100.0, 1000.0));
        a.push(t(5), c(120.0, 1200.0));
        a.push(t(10), c(7.0, 70.0)); // reset, then 7 calls
        a.push(t(15), c(10.0, 100.0));
        let d = a.finish(Some(t(0)));
        assert_eq!(
            (d[CALLS], d[EXEC_TIME]),
            (20.0 + 7.0 + 3.0, 200.0 + 70.0 + 30.0)
        );
    }

    #[test]
    fn new_query_after_anchor_counts_from_zero() {
        let a = SeriesAcc::new(t(5), c(30.0, 60.0));
        let d = a.finish(Some(t(0)));
        assert_eq!(d[CALLS], 30.0);
        // Present at the anchor: the anchor value is the baseline.
        let b = SeriesAcc::new(t(0), c(30.0, 60.0));
        assert_eq!(b.finish(Some(t(0)))[CALLS], 0.0);
    }

    #[test]
    fn duplicate_rows_of_one_snapshot_are_summed() {
        // track = all in PoWA 4.1: top-level and nested rows under one key.
        let mut a = SeriesAcc::new(t(0), c(10.0, 10.0));
        a.push(t(0), c(100.0, 100.0));
        a.push(t(5), c(12.0, 12.0));
        a.push(t(5), c(150.0, 150.0));
        let d = a.finish(Some(t(0)));
        assert_eq!((d[CALLS], d[EXEC_TIME]), (52.0, 52.0));
    }
}
