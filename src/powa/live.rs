//! A live window: one server's per-query deltas kept up to date from what PoWA added since
//! the previous cycle, instead of re-reading the whole window every cycle.
//!
//! At start, one fast window read ([`super::cold`]) gives every series' total over the
//! window so far (the *lump*) and its last cumulative value. Every cycle then reads only
//! the points newer than the cursor: the `*_current` rows and, when PoWA coalesced since
//! the last cycle (`powa_snapshot_metas.aggts` moved), the history ranges reaching past
//! the cursor. Each new point becomes an increment (reset-aware, summing the duplicate
//! rows of one snapshot, counting a series first seen from zero) added to an hourly
//! checkpoint bucket. The window is the lump plus the buckets from its start on.
//!
//! The window start moves by whole checkpoints (hours): the window of a cycle at 10:20
//! with a 24-hour length starts at 10:00 the day before, so the state stays bounded (at
//! most one bucket per series and hour). When the start passes a checkpoint, the hours it
//! left behind are taken off the lump, until the lump has aged out of the window:
//! increments add up along a series, so the rest of the lump is never read again. Those
//! hours lie inside a coalesced history range (24 h back, PoWA has coalesced long ago),
//! which a read of one hour would unnest whole for every key; so the ranges around the
//! start are unnested once, when the start enters them, into per-checkpoint parts (the
//! `boundary` module), and the hours are taken off from there — a read of them only
//! where the start lies in `*_current` or a range ends within the hour. Baselines (past
//! windows) are kept as per-series totals and moved the same way once per checkpoint: the
//! hour they lost is taken off (from their own boundary cache), the hour they gained read
//! and added. So every read after start-up covers what PoWA added, the hours a baseline
//! gained, or a range the start entered, never a whole window.
//!
//! One live window per server feeds every analyzer: they all look at the same window, so
//! the state is kept once rather than once per analyzer.
//!
//! Coalesces are seen through `powa_snapshot_metas.aggts`, which PoWA (4 and later) sets
//! in the very snapshot that coalesces; reading history every cycle would cost a scan of
//! the kcache history (it has no range index). Rows moved by calling PoWA's aggregate
//! functions by hand leave `aggts` alone: their increments are then folded at the next
//! point still in `*_current` (same totals, possibly one checkpoint late).
//!
//! Known difference with the window read: a query evicted from pg_stat_statements (or
//! reset) that comes back after snapshots without it is diffed here against the value it
//! had before the gap (counted in full only if a counter went down), while the window
//! read counts it from zero when the gap spans the window start. Both diff across gaps
//! inside the window.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::cold::SeriesRead;
use super::discovery::{PowaInfo, ServerInfo};
use super::error::PowaError;
use super::kcache::{series_query, Kcache};
use super::layout::{Layout, SeriesKey};
use super::reader::{
    anchor_before, query_key, read_names, read_texts, Names, QueryKey, QueryStats,
    StatementsWindow, CALLS, COUNTERS,
};
use super::session::{QueryError, Session};
use super::waits::{self, EventNames};
use sentinel_actors::Window;

mod baseline;
mod boundary;
mod family;

use baseline::Baseline;
use boundary::Grid;
use family::{bucket_of, Family, Reads, Step};

const N: usize = COUNTERS.len();

/// What one window read gave for every family (see [`LiveWindow::read_lump`]).
struct Lump {
    /// PoWA's last snapshot before the read's start, if any.
    anchor: Option<DateTime<Utc>>,
    /// Where the deltas start: the anchor, else the first point read.
    effective: Option<DateTime<Utc>>,
    statements: SeriesRead<N>,
    kcache: Option<SeriesRead<4>>,
    waits: Option<SeriesRead<1>>,
}

/// Bucket width of the live window.
pub fn checkpoint() -> Duration {
    Duration::hours(1)
}

/// What one cycle cost the repository.
#[derive(Clone, Copy, Debug, Default)]
pub struct CycleCost {
    /// Rows the repository returned this cycle: incremental reads, and the start-up and
    /// baseline window reads when they ran.
    pub rows: u64,
    /// Whole windows read this cycle: the start-up read, a baseline's first read.
    pub window_reads: u32,
    /// Reads of only the hours a window moved by: the lump's start passing a checkpoint
    /// outside the boundary cache, a baseline moving (the hours it gained are read).
    pub slides: u32,
    /// Starts (the lump's, a baseline's) moved past a checkpoint by the boundary cache,
    /// without a read.
    pub cached_slides: u32,
    /// Boundary caches filled: the history ranges around a start unnested once (a read
    /// per family), the start-up's included.
    pub boundary_fills: u32,
    /// Whether PoWA had nothing new (only `powa_snapshot_metas` was read).
    pub idle: bool,
}

/// One server's live window. Not `Sync`-shared: the collector owns it and never runs two
/// cycles at once.
pub struct LiveWindow {
    repository: String,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    width: Duration,
    statements: Family<N>,
    kcache: Family<4>,
    waits: Family<1>,
    event_names: EventNames,
    /// Newest point folded; None until the start-up read.
    cursor: Option<DateTime<Utc>>,
    /// `powa_snapshot_metas.aggts` when last seen.
    aggts: Option<DateTime<Utc>>,
    /// Span the lumps cover: (start, end].
    lump: Option<(DateTime<Utc>, DateTime<Utc>)>,
    names: Option<Names>,
    names_k: Option<u32>,
    /// Texts by (queryid, dbid, userid); None: looked up, PoWA has none (retried each
    /// checkpoint).
    texts: HashMap<(i64, u32, u32), Option<Arc<str>>>,
    texts_checked_k: u32,
    baselines: Vec<Baseline>,
    baselines_k: Option<u32>,
    /// The anchor of the start-up read, while the lump's boundary cache is still to be
    /// filled (see [`LiveWindow::fill_due`]).
    lump_cache_due: Option<DateTime<Utc>>,
}

impl LiveWindow {
    pub fn new(repository: &str, info: Arc<PowaInfo>, server: ServerInfo) -> Self {
        Self::with_checkpoint(repository, info, server, checkpoint())
    }

    /// With another bucket width (tests use seconds to see the window slide).
    pub fn with_checkpoint(
        repository: &str,
        info: Arc<PowaInfo>,
        server: ServerInfo,
        width: Duration,
    ) -> Self {
        let kcache_enabled = server.modules.iter().any(|m| m == "pg_stat_kcache");
        let waits_enabled = waits::enabled(&server.modules);
        LiveWindow {
            repository: repository.to_string(),
            statements: Family::new(Layout::statements(&info), "statements", true),
            kcache: Family::new(Layout::kcache(&info), "pg_stat_kcache", kcache_enabled),
            waits: Family::new(
                Layout::wait_sampling(&info),
                "pg_wait_sampling",
                waits_enabled,
            ),
            event_names: EventNames::new(),
            info,
            server,
            width,
            cursor: None,
            aggts: None,
            lump: None,
            names: None,
            names_k: None,
            texts: HashMap::new(),
            texts_checked_k: 0,
            baselines: Vec::new(),
            baselines_k: None,
            lump_cache_due: None,
        }
    }

    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// Approximate heap held by the rolling state (series, buckets, lumps, boundary
    /// caches, texts).
    pub fn heap_bytes(&self) -> usize {
        self.statements.heap_bytes()
            + self.kcache.heap_bytes()
            + self.waits.heap_bytes()
            + self
                .baselines
                .iter()
                .map(Baseline::cache_bytes)
                .sum::<usize>()
            + self
                .texts
                .values()
                .map(|t| 48 + t.as_ref().map_or(0, |s| s.len()))
                .sum::<usize>()
    }

    /// The checkpoints of a start `shift` back from the window's (a baseline's offset).
    fn grid(&self, shift: Duration) -> Grid {
        Grid {
            width: self.width,
            shift,
        }
    }

    fn err(&self, client: &Session, what: &str, e: QueryError) -> PowaError {
        PowaError::reading(client, &self.server.name, what, e)
    }

    /// Brings the window up to `window.end` and returns it, with baselines shifted back
    /// by each of `baseline_offsets`.
    pub async fn cycle(
        &mut self,
        client: &Session,
        window: Window,
        baseline_offsets: &[Duration],
    ) -> Result<(StatementsWindow, CycleCost), PowaError> {
        let mut cost = CycleCost::default();
        let width = self.width;
        // The window starts on a checkpoint, and never before what the lump covers.
        let grid_start = window.start.duration_trunc(width).unwrap_or(window.start);
        // The first read starts exactly where asked (what `once` reports); later ones
        // move by whole checkpoints.
        let start = match self.lump {
            Some((lump_start, _)) => grid_start.max(lump_start),
            None if self.cursor.is_none() => window.start,
            None => grid_start,
        };
        match self.cursor {
            None => {
                self.start_up(
                    client,
                    Window {
                        start,
                        end: window.end,
                    },
                    &mut cost,
                )
                .await?;
                cost.window_reads += 1;
            }
            Some(cursor) => {
                self.fill_due(client, &mut cost).await?;
                self.follow(client, cursor, &mut cost).await?;
                self.age_lump(client, start, &mut cost).await?;
            }
        }
        let start = match self.lump {
            Some((lump_start, _)) => grid_start.max(lump_start),
            None => grid_start,
        };
        let from_k = bucket_of(start + Duration::microseconds(1), width);
        self.statements.trim(from_k, start);
        self.kcache.trim(from_k, start);
        self.waits.trim(from_k, start);

        // Baselines: once per checkpoint, each moved by the hours it gained and lost.
        if self.baselines_k != Some(from_k) {
            let span = Window {
                start,
                end: window.end,
            };
            self.move_baselines(client, span, baseline_offsets, &mut cost)
                .await?;
            self.baselines_k = Some(from_k);
        }

        let mut w = self
            .materialize(
                client,
                Window {
                    start,
                    end: window.end,
                },
                from_k,
            )
            .await?;
        // What this cycle read, for the metrics: the baselines it carries were read at
        // their checkpoint and counted then.
        w.points = cost.rows;
        for b in &mut w.baselines {
            b.points = 0;
        }
        Ok((w, cost))
    }

    /// PoWA's last snapshot of the server at or before `at`: where a read starting there
    /// takes its deltas from.
    async fn anchor(
        &self,
        reads: &Reads<'_>,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, PowaError> {
        anchor_before(reads.client, &self.info, reads.srvid, at)
            .await
            .map_err(|e| reads.err("the anchor snapshot", e))
    }

    async fn start_up(
        &mut self,
        client: &Session,
        window: Window,
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        self.aggts = self.metas(client).await?.and_then(|m| m.1);
        let lump = self
            .read_lump(client, window.start, window.end, cost)
            .await?;
        self.statements.seed(&lump.statements, lump.effective);
        if let Some(k) = &lump.kcache {
            self.kcache.seed(k, lump.effective);
        }
        if let Some(w) = &lump.waits {
            self.waits.seed(w, lump.effective);
        }
        let cursor = lump
            .statements
            .latest
            .or(lump.anchor)
            .unwrap_or(window.start);
        self.cursor = Some(cursor);
        self.lump = Some((window.start, cursor));
        // The start lies in the ranges just read: the first hours it passes are there,
        // cached at the next cycle.
        self.lump_cache_due = lump.anchor;
        Ok(())
    }

    /// Fills the boundary caches the start-up and the baselines' first reads left due:
    /// at the second cycle, not with those reads, so that a one-shot analysis (`once`)
    /// and a fleet's first cycle do not unnest the ranges around the starts a second
    /// time for caches they may never use, while the first checkpoint the starts pass
    /// already finds them (else it would pay for them, see [`LiveWindow::age_lump`]).
    async fn fill_due(&mut self, client: &Session, cost: &mut CycleCost) -> Result<(), PowaError> {
        if let (Some(anchor), Some((lump_start, _))) = (self.lump_cache_due.take(), self.lump) {
            let need = self.grid(Duration::zero()).floor(lump_start) + self.width;
            self.fill_lump_cache(client, anchor, lump_start, need, cost)
                .await?;
        }
        self.fill_due_baselines(client, cost).await
    }

    /// Fills the boundary caches of the lump's families for the window start `edge`
    /// (`anchor`: PoWA's last snapshot at or before it), when the history ranges around
    /// it reach past `need` (a checkpoint): those ranges are unnested once, up to the
    /// checkpoint before their end (no further than the lump), and the start then moves
    /// through them without a read. Else the caches are left empty and the hours the
    /// start passes are read (the start lies in `*_current`, or a range ends within
    /// the hour).
    async fn fill_lump_cache(
        &mut self,
        client: &Session,
        anchor: DateTime<Utc>,
        edge: DateTime<Utc>,
        need: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        self.statements.cache = None;
        self.kcache.cache = None;
        self.waits.cache = None;
        let Some((_, lump_end)) = self.lump else {
            return Ok(());
        };
        let grid = self.grid(Duration::zero());
        let reads = Reads::new(client, &self.server);
        let Some(horizon) = reads
            .horizon(&self.statements, edge, need, grid, Some(lump_end))
            .await?
        else {
            return Ok(());
        };
        cost.boundary_fills += 1;
        let (st, kc, wa) = (&self.statements, &self.kcache, &self.waits);
        let s = reads
            .fill(st, anchor, edge, horizon, grid, |k| st.has_lump(k), cost)
            .await?;
        let k = reads
            .fill(kc, anchor, edge, horizon, grid, |k| kc.has_lump(k), cost)
            .await?;
        let w = reads
            .fill(wa, anchor, edge, horizon, grid, |k| wa.has_lump(k), cost)
            .await?;
        self.statements.cache = s;
        self.kcache.cache = k;
        self.waits.cache = w;
        Ok(())
    }

    /// Every family's totals from the anchor before `start` to `end`, in one fast read
    /// each (the families PoWA does not record for the server are not read).
    async fn read_lump(
        &self,
        client: &Session,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<Lump, PowaError> {
        let reads = Reads::new(client, &self.server);
        let anchor = self.anchor(&reads, start).await?;
        let from = anchor.unwrap_or(start);
        let statements = reads.lump(&self.statements, from, end, cost).await?;
        let kcache = reads.lump(&self.kcache, from, end, cost).await?;
        let waits = reads.lump(&self.waits, from, end, cost).await?;
        Ok(Lump {
            anchor,
            effective: anchor.or(statements.as_ref().and_then(|s| s.earliest)),
            statements: statements.unwrap_or_default(),
            kcache,
            waits,
        })
    }

    /// (snapts, aggts) of the server; None before PoWA 4.
    async fn metas(
        &self,
        client: &Session,
    ) -> Result<Option<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)>, PowaError> {
        if !self.info.version.multi_server() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT CASE WHEN isfinite(snapts) THEN snapts END, \
                    CASE WHEN isfinite(aggts) THEN aggts END \
             FROM {}.powa_snapshot_metas WHERE srvid = $1",
            self.info.schema
        );
        let row = client
            .query_opt(&sql, &[&self.server.srvid])
            .await
            .map_err(|e| self.err(client, "powa_snapshot_metas", e))?;
        Ok(Some(row.map_or((None, None), |r| (r.get(0), r.get(1)))))
    }

    /// Reads what PoWA added since the cursor.
    async fn follow(
        &mut self,
        client: &Session,
        cursor: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        let metas = self.metas(client).await?;
        let with_history = match metas {
            Some((snapts, aggts)) => {
                if let Some(s) = snapts {
                    self.server.last_snapshot = Some(s);
                }
                if snapts.is_none_or(|s| s <= cursor) {
                    cost.idle = true;
                    return Ok(());
                }
                let coalesced = aggts.is_some() && aggts != self.aggts;
                self.aggts = aggts;
                coalesced
            }
            // PoWA 3 keeps no per-server metadata: look at history every cycle.
            None => true,
        };
        let reads = Reads::new(client, &self.server);
        let step = Step {
            cursor,
            with_history,
            width: self.width,
        };
        let newest = reads.fold(&mut self.statements, step, cost).await?;
        reads.fold(&mut self.kcache, step, cost).await?;
        reads.fold(&mut self.waits, step, cost).await?;
        if let Some(n) = newest {
            self.cursor = Some(cursor.max(n));
        }
        Ok(())
    }

    /// Shrinks the lump when the window start passed into it, by taking off the hours it
    /// passed: from the boundary cache while the start lies in the history ranges it
    /// holds (filling it again, once, when the start enters the next ranges), else by
    /// reading those hours only (not the rest of the lump); drops it once it aged out.
    async fn age_lump(
        &mut self,
        client: &Session,
        grid_start: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        let Some((lump_start, lump_end)) = self.lump else {
            return Ok(());
        };
        if grid_start <= lump_start {
            return Ok(());
        }
        if grid_start >= lump_end {
            self.statements.drop_lumps();
            self.kcache.drop_lumps();
            self.waits.drop_lumps();
            self.lump = None;
            return Ok(());
        }
        let covered = |w: &Self| {
            w.statements.cache_covers(lump_start, grid_start)
                && w.kcache.cache_covers(lump_start, grid_start)
                && w.waits.cache_covers(lump_start, grid_start)
        };
        if !covered(self) {
            let reads = Reads::new(client, &self.server);
            match self.anchor(&reads, lump_start).await? {
                Some(anchor) => {
                    self.fill_lump_cache(client, anchor, lump_start, grid_start, cost)
                        .await?
                }
                None => {
                    self.statements.cache = None;
                    self.kcache.cache = None;
                    self.waits.cache = None;
                }
            }
        }
        if covered(self) {
            self.statements.shrink_lump_cached(grid_start);
            self.kcache.shrink_lump_cached(grid_start);
            self.waits.shrink_lump_cached(grid_start);
            self.lump = Some((grid_start, lump_end));
            cost.cached_slides += 1;
            return Ok(());
        }
        cost.slides += 1;
        // The same anchor as the lump's own read (the last snapshot before its start),
        // up to the last snapshot before the new start: exactly the increments the lump
        // holds for the hours left behind.
        let gone = self.read_lump(client, lump_start, grid_start, cost).await?;
        self.statements
            .shrink_lump(Some(&gone.statements), gone.effective);
        self.kcache
            .shrink_lump(gone.kcache.as_ref(), gone.effective);
        self.waits.shrink_lump(gone.waits.as_ref(), gone.effective);
        self.lump = Some((grid_start, lump_end));
        Ok(())
    }

    async fn materialize(
        &mut self,
        client: &Session,
        window: Window,
        from_k: u32,
    ) -> Result<StatementsWindow, PowaError> {
        let mut kc: HashMap<QueryKey, Kcache> = HashMap::new();
        for (k, s) in &self.kcache.series {
            let d = Kcache::from_delta(s.total(from_k));
            if d != Kcache::default() {
                kc.entry(series_query(&self.info, *k)).or_default().add(&d);
            }
        }
        let mut queries: Vec<QueryStats> = self
            .statements
            .series
            .iter()
            .filter_map(|(k, s)| {
                let counters = s.total(from_k);
                (counters[CALLS] > 0.0).then(|| {
                    let key = query_key(*k);
                    QueryStats {
                        key,
                        database: None,
                        user: None,
                        counters,
                        kcache: kc.get(&key).copied(),
                        query: None,
                    }
                })
            })
            .collect();
        queries.sort_by_key(|q| q.key);
        self.decorate(client, &mut queries, from_k).await?;
        let totals: Vec<(SeriesKey, f64)> = self
            .waits
            .series
            .iter()
            .map(|(k, s)| (*k, s.total(from_k)[0]))
            .filter(|(_, n)| *n > 0.0)
            .collect();
        if totals
            .iter()
            .any(|(k, _)| !self.event_names.contains_key(&k.userid))
        {
            let names = waits::read_event_names(
                client,
                &self.info,
                self.server.srvid,
                window.start,
                window.end,
            )
            .await
            .map_err(|e| self.err(client, "wait event names", e))?;
            self.event_names.extend(names);
        }
        let waits = waits::wait_stats(totals, &self.event_names);
        let mut baselines: Vec<StatementsWindow> = self
            .baselines
            .iter()
            .map(|b| b.window(&self.repository, &self.server))
            .collect();
        let own = super::reader::drop_powa_own(&mut queries, &mut baselines, &self.info);
        let kcache_unmatched = self
            .kcache
            .enabled
            .then(|| super::reader::unmatched_kcache(&kc, &queries, &own));
        Ok(StatementsWindow {
            last_ts: self.cursor,
            baselines,
            waits,
            kcache_unmatched,
            ..StatementsWindow::new(
                self.repository.clone(),
                self.server.clone(),
                window,
                queries,
            )
        })
    }

    /// Names and texts, read once per query (missing texts retried each checkpoint).
    async fn decorate(
        &mut self,
        client: &Session,
        queries: &mut [QueryStats],
        k: u32,
    ) -> Result<(), PowaError> {
        if k != self.texts_checked_k {
            self.texts.retain(|_, t| t.is_some());
            self.texts_checked_k = k;
        }
        // A database created since the names were read: read them again, once per
        // checkpoint at most (PoWA may keep history of a database it no longer names).
        let unknown_db = self
            .names
            .as_ref()
            .is_none_or(|n| queries.iter().any(|q| !n.dbs.contains_key(&q.key.dbid)));
        if unknown_db && self.names_k != Some(k) {
            self.names_k = Some(k);
            self.names = Some(
                read_names(client, &self.info, &self.server)
                    .await
                    .map_err(|e| self.err(client, "database and role names", e))?,
            );
        }
        let missing: Vec<i64> = queries
            .iter()
            .filter(|q| {
                !self
                    .texts
                    .contains_key(&(q.key.queryid, q.key.dbid, q.key.userid))
            })
            .map(|q| q.key.queryid)
            .collect();
        if !missing.is_empty() {
            let found = read_texts(client, &self.info, &self.server, &missing)
                .await
                .map_err(|e| self.err(client, "query texts", e))?;
            for q in queries.iter() {
                let id = (q.key.queryid, q.key.dbid, q.key.userid);
                let t = found.get(&id).cloned();
                self.texts.entry(id).or_insert(t);
            }
        }
        let names = self.names.as_ref();
        for q in queries.iter_mut() {
            q.database = names.and_then(|n| n.dbs.get(&q.key.dbid).cloned());
            q.user = names.and_then(|n| n.roles.get(&q.key.userid).cloned());
            q.query = self
                .texts
                .get(&(q.key.queryid, q.key.dbid, q.key.userid))
                .cloned()
                .flatten();
        }
        Ok(())
    }
}
