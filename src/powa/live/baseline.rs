//! Baselines of a live window: past windows kept as per-series totals and moved with the
//! window once per checkpoint, by the hours they lost (from their own boundary cache) and
//! gained (read), instead of being read again.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::super::discovery::ServerInfo;
use super::super::error::PowaError;
use super::super::layout::SeriesKey;
use super::super::reader::{query_key, QueryStats, StatementsWindow, CALLS};
use super::super::session::Session;
use super::boundary::{BoundaryCache, Grid};
use super::family::{self, Reads};
use super::{CycleCost, LiveWindow, N};
use sentinel_actors::Window;

/// Per-series totals of the statements over a span.
pub(super) struct Totals {
    anchor: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
    series: HashMap<SeriesKey, [f64; N]>,
}

/// A baseline: the window shifted back by `offset`, kept as per-series totals so that it
/// moves with the window by the hours it gained and lost (see
/// [`LiveWindow::slide_baseline`]), not by reading it again every checkpoint.
pub(super) struct Baseline {
    offset: Duration,
    span: Window,
    anchor: Option<DateTime<Utc>>,
    last_ts: Option<DateTime<Utc>>,
    totals: HashMap<SeriesKey, [f64; N]>,
    /// The parts ahead of its start, while that lies in coalesced history: the hours it
    /// loses are taken off from there, not read (see [`BoundaryCache`]).
    cache: Option<BoundaryCache<N>>,
    /// The cache is to be filled at the next cycle (see [`LiveWindow::fill_due`]).
    cache_due: bool,
}

impl Baseline {
    /// Approximate heap held by its boundary cache.
    pub(super) fn cache_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.heap_bytes())
    }

    /// As a window read of its span gives it (counters only, like `read_baseline`).
    pub(super) fn window(&self, repository: &str, server: &ServerInfo) -> StatementsWindow {
        let mut queries: Vec<QueryStats> = self
            .totals
            .iter()
            .filter(|(_, c)| c[CALLS] > 0.0)
            .map(|(k, c)| QueryStats {
                key: query_key(*k),
                database: None,
                user: None,
                counters: *c,
                kcache: None,
                query: None,
            })
            .collect();
        queries.sort_by_key(|q| q.key);
        StatementsWindow {
            anchor: self.anchor,
            last_ts: self.last_ts,
            ..StatementsWindow::new(repository.to_string(), server.clone(), self.span, queries)
        }
    }
}

impl LiveWindow {
    /// The statements' per-series totals over [from, to], anchored like a window read.
    pub(super) async fn read_totals(
        &self,
        client: &Session,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<Totals, PowaError> {
        let reads = Reads::new(client, &self.server);
        let anchor = self.anchor(&reads, from).await?;
        let read = reads
            .lump(&self.statements, anchor.unwrap_or(from), to, cost)
            .await?
            .unwrap_or_default();
        let effective = anchor.or(read.earliest);
        Ok(Totals {
            anchor,
            latest: read.latest,
            series: read
                .series
                .iter()
                .map(|(k, acc)| (*k, acc.finish(effective)))
                .collect(),
        })
    }

    /// A baseline read whole (the first time, or when it moved by more than it spans).
    async fn read_baseline(
        &self,
        client: &Session,
        offset: Duration,
        span: Window,
        cost: &mut CycleCost,
    ) -> Result<Baseline, PowaError> {
        let t = self.read_totals(client, span.start, span.end, cost).await?;
        // The start lies in the ranges unnested now: the first hours it loses are there,
        // cached at the next cycle (see [`LiveWindow::fill_due`]).
        Ok(Baseline {
            offset,
            span,
            anchor: t.anchor,
            last_ts: t.latest,
            totals: t.series,
            cache: None,
            cache_due: t.anchor.is_some(),
        })
    }

    /// The boundary cache of a baseline starting at `span.start` (`anchor` the snapshot
    /// before it), if coalesced history reaches from there to `need` (a checkpoint of
    /// `grid`): see [`LiveWindow::fill_lump_cache`].
    async fn fill_baseline_cache(
        &self,
        client: &Session,
        anchor: DateTime<Utc>,
        span: Window,
        grid: Grid,
        need: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<Option<BoundaryCache<N>>, PowaError> {
        let reads = Reads::new(client, &self.server);
        let Some(horizon) = reads
            .horizon(&self.statements, span.start, need, grid, None)
            .await?
        else {
            return Ok(None);
        };
        cost.boundary_fills += 1;
        // Every series: one born after the baseline's end is added when the end reaches
        // it, and taken off when the start does.
        reads
            .fill(
                &self.statements,
                anchor,
                span.start,
                horizon,
                grid,
                |_| true,
                cost,
            )
            .await
    }

    /// Moves `b` to `span`: takes off the hours its start passed and adds the ones its
    /// end reached (increments add up along a series), reading those hours only.
    async fn slide_baseline(
        &self,
        client: &Session,
        b: &mut Baseline,
        span: Window,
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        if span.start < b.span.start || span.start >= b.span.end || span.end < b.span.end {
            cost.window_reads += 1;
            *b = self.read_baseline(client, b.offset, span, cost).await?;
            return Ok(());
        }
        cost.slides += 1;
        if span.start > b.span.start {
            let covered = |b: &Baseline| {
                b.cache
                    .as_ref()
                    .is_some_and(|c| c.covers(b.span.start, span.start))
            };
            if !covered(b) {
                // The start left the ranges the cache holds: unnest the next ones.
                b.cache = None;
                b.cache_due = false;
                let reads = Reads::new(client, &self.server);
                if let Some(anchor) = self.anchor(&reads, b.span.start).await? {
                    let grid = self.grid(b.offset);
                    b.cache = self
                        .fill_baseline_cache(client, anchor, b.span, grid, span.start, cost)
                        .await?;
                }
            }
            let cached = covered(b);
            let (gone, latest) = match b.cache.as_mut().filter(|_| cached) {
                Some(cache) => {
                    cost.cached_slides += 1;
                    cache.take(span.start)
                }
                None => {
                    let t = self
                        .read_totals(client, b.span.start, span.start, cost)
                        .await?;
                    (t.series.into_iter().collect(), t.latest)
                }
            };
            for (k, part) in &gone {
                if let Some(total) = b.totals.get_mut(k) {
                    family::subtract(total, part);
                }
            }
            // The last snapshot before the new start (none in those hours: the old one).
            b.anchor = latest.or(b.anchor);
        }
        if span.end > b.span.end {
            let more = self.read_totals(client, b.span.end, span.end, cost).await?;
            for (k, part) in more.series {
                let total = b.totals.entry(k).or_insert([0.0; N]);
                for (t, p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
            b.last_ts = more.latest.or(b.last_ts);
        }
        b.span = span;
        Ok(())
    }

    /// Moves every baseline to `span` shifted back by its offset (`offsets`: those of
    /// this cycle): the ones kept slide by the hours they gained and lost, a new one is
    /// read whole.
    pub(super) async fn move_baselines(
        &mut self,
        client: &Session,
        span: Window,
        offsets: &[Duration],
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        let mut kept = std::mem::take(&mut self.baselines);
        for off in offsets {
            let span = Window {
                start: span.start - *off,
                end: span.end - *off,
            };
            let b = match kept.iter().position(|b| b.offset == *off) {
                Some(i) => {
                    let mut b = kept.swap_remove(i);
                    self.slide_baseline(client, &mut b, span, cost).await?;
                    b
                }
                None => {
                    cost.window_reads += 1;
                    self.read_baseline(client, *off, span, cost).await?
                }
            };
            self.baselines.push(b);
        }
        Ok(())
    }

    /// Fills the boundary caches the baselines' first reads left due (see
    /// [`LiveWindow::fill_due`]).
    pub(super) async fn fill_due_baselines(
        &mut self,
        client: &Session,
        cost: &mut CycleCost,
    ) -> Result<(), PowaError> {
        for i in 0..self.baselines.len() {
            let b = &mut self.baselines[i];
            if !std::mem::take(&mut b.cache_due) {
                continue;
            }
            let Some(anchor) = b.anchor else { continue };
            let (span, offset) = (b.span, b.offset);
            let grid = self.grid(offset);
            let need = grid.floor(span.start) + self.width;
            let cache = self
                .fill_baseline_cache(client, anchor, span, grid, need, cost)
                .await?;
            self.baselines[i].cache = cache;
        }
        Ok(())
    }
}
