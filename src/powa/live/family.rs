//! The rolling state of one source of a live window (statements, kcache or wait
//! samples): per series, its last cumulative value, the lump the start-up read gave, and
//! one bucket of increments per checkpoint; and the reads that fill it, their errors
//! worded for the server.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::super::cold::{self, SeriesRead};
use super::super::discovery::ServerInfo;
use super::super::error::PowaError;
use super::super::layout::{Layout, SeriesKey};
use super::super::reader::is_reset;
use super::super::session::{QueryError, Session};
use super::boundary::{BoundaryCache, Grid};
use super::CycleCost;

/// One server's reads on one session, their errors worded for the server.
pub(super) struct Reads<'a> {
    pub(super) client: &'a Session,
    server: &'a str,
    pub(super) srvid: i32,
}

/// What a cycle asks of every family: the points newer than `cursor`.
#[derive(Clone, Copy)]
pub(super) struct Step {
    pub(super) cursor: DateTime<Utc>,
    /// Look into the history ranges too (PoWA coalesced since the last cycle).
    pub(super) with_history: bool,
    pub(super) width: Duration,
}

impl<'a> Reads<'a> {
    pub(super) fn new(client: &'a Session, server: &'a ServerInfo) -> Self {
        Reads {
            client,
            server: &server.name,
            srvid: server.srvid,
        }
    }

    pub(super) fn err(&self, what: &str, e: QueryError) -> PowaError {
        PowaError::reading(self.client, self.server, what, e)
    }

    /// One family's totals from `from` to `end`, in one fast read (None when the
    /// family is not recorded for the server).
    pub(super) async fn lump<const M: usize>(
        &self,
        family: &Family<M>,
        from: DateTime<Utc>,
        end: DateTime<Utc>,
        cost: &mut CycleCost,
    ) -> Result<Option<SeriesRead<M>>, PowaError> {
        if !family.enabled {
            return Ok(None);
        }
        let read = cold::read_fast::<M>(self.client, &family.layout, self.srvid, from, end)
            .await
            .map_err(|e| self.err(&format!("{} history", family.label), e))?;
        cost.rows += read.rows;
        Ok(Some(read))
    }

    /// The newest end of `family`'s history ranges overlapping [from, to], if any.
    async fn reach<const M: usize>(
        &self,
        family: &Family<M>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, PowaError> {
        let params: Vec<&(dyn ToSql + Sync)> = if family.layout.multi() {
            vec![&from, &to, &self.srvid]
        } else {
            vec![&from, &to]
        };
        let row = self
            .client
            .query_one(&family.layout.reach_sql(), &params)
            .await
            .map_err(|e| self.err(&format!("{} history ranges", family.label), e))?;
        Ok(row.get(0))
    }

    /// How far a boundary cache for the start `edge` can reach: the checkpoint of `grid`
    /// before the end of `family`'s history ranges around `edge` (and before `limit`),
    /// when that is `need` or later; None when the cache would not hold one checkpoint.
    pub(super) async fn horizon<const M: usize>(
        &self,
        family: &Family<M>,
        edge: DateTime<Utc>,
        need: DateTime<Utc>,
        grid: Grid,
        limit: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, PowaError> {
        let Some(reach) = self.reach(family, edge, need).await? else {
            return Ok(None);
        };
        let horizon = match limit {
            Some(l) => grid.floor(reach).min(grid.floor(l)),
            None => grid.floor(reach),
        };
        Ok((horizon >= need).then_some(horizon))
    }

    /// One family's boundary cache for the window start `edge` (`anchor` the snapshot
    /// before it), up to `horizon`, of the series `keep` selects (None when the family is
    /// not recorded for the server).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fill<const M: usize>(
        &self,
        family: &Family<M>,
        anchor: DateTime<Utc>,
        edge: DateTime<Utc>,
        horizon: DateTime<Utc>,
        grid: Grid,
        keep: impl Fn(&SeriesKey) -> bool,
        cost: &mut CycleCost,
    ) -> Result<Option<BoundaryCache<M>>, PowaError> {
        if !family.enabled {
            return Ok(None);
        }
        let filled = BoundaryCache::fill(
            self.client,
            &family.layout,
            self.srvid,
            anchor,
            edge,
            horizon,
            grid,
            keep,
        )
        .await
        .map_err(|e| self.err(&format!("{} history", family.label), e))?;
        cost.rows += filled.rows;
        Ok(Some(filled.cache))
    }

    /// Folds one family's points newer than the cursor (nothing when the family is not
    /// recorded for the server); returns the newest point's time.
    pub(super) async fn fold<const M: usize>(
        &self,
        family: &mut Family<M>,
        step: Step,
        cost: &mut CycleCost,
    ) -> Result<Option<DateTime<Utc>>, PowaError> {
        if !family.enabled {
            return Ok(None);
        }
        let (
            srvid,
            Step {
                cursor,
                with_history,
                width,
            },
        ) = (self.srvid, step);
        let (rows, newest) = family
            .step(self.client, srvid, cursor, with_history, width)
            .await
            .map_err(|e| self.err(&format!("new {} snapshots", family.label), e))?;
        cost.rows += rows;
        Ok(newest)
    }
}

/// One checkpoint's increments. `f32` halves the state; increments of one hour keep far
/// more precision than any threshold needs (relative error below 1e-7).
#[derive(Clone, Debug)]
pub(super) struct Bucket<const M: usize> {
    k: u32,
    v: [f32; M],
}

#[derive(Clone, Debug)]
pub(super) struct Series<const M: usize> {
    last_ts: DateTime<Utc>,
    last: [f64; M],
    /// Total over the part of the window covered by the start-up read.
    lump: Option<Box<[f64; M]>>,
    buckets: Vec<Bucket<M>>,
}

impl<const M: usize> Series<M> {
    fn add(&mut self, k: u32, inc: [f64; M]) {
        match self.buckets.last_mut() {
            Some(b) if b.k == k => {
                for (x, d) in b.v.iter_mut().zip(inc) {
                    *x += d as f32;
                }
            }
            _ => self.buckets.push(Bucket {
                k,
                v: inc.map(|d| d as f32),
            }),
        }
    }

    pub(super) fn total(&self, from_k: u32) -> [f64; M] {
        let mut t = self.lump.as_deref().copied().unwrap_or([0.0; M]);
        for b in self.buckets.iter().filter(|b| b.k >= from_k) {
            for (x, d) in t.iter_mut().zip(b.v) {
                *x += d as f64;
            }
        }
        t
    }
}

/// `total -= part`, field by field: what is left of a sum once the increments of its first
/// part are taken off. A difference within rounding of zero (the part was all of it) is
/// zero, so a query idle since then does not linger with a few femtoseconds.
pub(crate) fn subtract<const M: usize>(total: &mut [f64; M], part: &[f64; M]) {
    for (t, p) in total.iter_mut().zip(part) {
        let left = *t - p;
        *t = if left <= t.abs() * 1e-12 { 0.0 } else { left };
    }
}

/// Index of the checkpoint bucket holding a point at `ts`: bucket k covers
/// (k·checkpoint, (k+1)·checkpoint], so a point exactly at a window start (the anchor)
/// falls before the window, as in the window reads.
pub(super) fn bucket_of(ts: DateTime<Utc>, width: Duration) -> u32 {
    let us = ts.timestamp_micros() - 1;
    us.div_euclid(width.num_microseconds().unwrap_or(3_600_000_000)) as u32
}

/// The series of one source (statements, kcache or wait samples).
pub(super) struct Family<const M: usize> {
    pub(super) layout: Layout,
    pub(super) series: HashMap<SeriesKey, Series<M>>,
    /// What the source is called in errors ("reading pg_stat_kcache history").
    label: &'static str,
    /// PoWA records it for this server (statements always): else it is never read.
    pub(super) enabled: bool,
    /// The parts of the lump ahead of the window start, while it lies in coalesced
    /// history (see [`BoundaryCache`]).
    pub(super) cache: Option<BoundaryCache<M>>,
}

impl<const M: usize> Family<M> {
    pub(super) fn new(layout: Layout, label: &'static str, enabled: bool) -> Self {
        Family {
            layout,
            series: HashMap::new(),
            label,
            enabled,
            cache: None,
        }
    }

    /// Start-up: every series' total so far and its last value.
    pub(super) fn seed(&mut self, read: &SeriesRead<M>, anchor: Option<DateTime<Utc>>) {
        self.series.clear();
        for (k, acc) in &read.series {
            let (last_ts, last) = acc.last();
            self.series.insert(
                *k,
                Series {
                    last_ts,
                    last,
                    lump: Some(Box::new(acc.finish(anchor))),
                    buckets: Vec::new(),
                },
            );
        }
    }

    /// Takes off the lump what `read` gave for its first part (the hours the window
    /// start passed): increments add up along a series, so the lump over the rest is the
    /// difference, without reading the rest again. Last values are not touched.
    pub(super) fn shrink_lump(
        &mut self,
        read: Option<&SeriesRead<M>>,
        anchor: Option<DateTime<Utc>>,
    ) {
        let Some(read) = read else { return };
        for (k, acc) in &read.series {
            if let Some(lump) = self.series.get_mut(k).and_then(|s| s.lump.as_deref_mut()) {
                subtract(lump, &acc.finish(anchor));
            }
        }
    }

    /// Whether the series has a lump (the start-up read saw it).
    pub(super) fn has_lump(&self, key: &SeriesKey) -> bool {
        self.series.get(key).is_some_and(|s| s.lump.is_some())
    }

    /// Forgets every lump (the window start passed the start-up read's end).
    pub(super) fn drop_lumps(&mut self) {
        for s in self.series.values_mut() {
            s.lump = None;
        }
        self.cache = None;
    }

    /// Whether the boundary cache takes the window start from `from` to `to` (true for a
    /// family PoWA does not record: there is nothing to take).
    pub(super) fn cache_covers(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        !self.enabled || self.cache.as_ref().is_some_and(|c| c.covers(from, to))
    }

    /// Moves the window start to `to` with the boundary cache (see
    /// [`Family::cache_covers`]): the parts of the checkpoints passed are taken off the
    /// lumps, as [`Family::shrink_lump`] takes off a read of them.
    pub(super) fn shrink_lump_cached(&mut self, to: DateTime<Utc>) {
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        let (gone, _) = cache.take(to);
        for (k, part) in &gone {
            if let Some(lump) = self.series.get_mut(k).and_then(|s| s.lump.as_deref_mut()) {
                subtract(lump, part);
            }
        }
    }

    /// Folds the points newer than `cursor`; returns (rows, newest ts).
    async fn step(
        &mut self,
        client: &Session,
        srvid: i32,
        cursor: DateTime<Utc>,
        with_history: bool,
        width: Duration,
    ) -> Result<(u64, Option<DateTime<Utc>>), QueryError> {
        let params: Vec<&(dyn ToSql + Sync)> = if self.layout.multi() {
            vec![&cursor, &srvid]
        } else {
            vec![&cursor]
        };
        let stream = client
            .query_raw(&self.layout.since_sql(with_history), params)
            .await?;
        pin_mut!(stream);
        let mut rows = 0u64;
        let mut newest: Option<DateTime<Utc>> = None;
        let mut cur: Option<(SeriesKey, DateTime<Utc>, [f64; M])> = None;
        while let Some(row) = stream.try_next().await? {
            rows += 1;
            let (key, ts, v) = point::<M>(&row);
            newest = Some(newest.map_or(ts, |n| n.max(ts)));
            match cur.as_mut() {
                Some((k, t, sum)) if *k == key && *t == ts => {
                    for (s, x) in sum.iter_mut().zip(v) {
                        *s += x;
                    }
                }
                _ => {
                    if let Some((k, t, sum)) = cur.replace((key, ts, v)) {
                        self.apply(k, t, sum, width);
                    }
                }
            }
        }
        if let Some((k, t, sum)) = cur {
            self.apply(k, t, sum, width);
        }
        Ok((rows, newest))
    }

    fn apply(&mut self, key: SeriesKey, ts: DateTime<Utc>, v: [f64; M], width: Duration) {
        let k = bucket_of(ts, width);
        match self.series.get_mut(&key) {
            Some(s) => {
                if ts <= s.last_ts {
                    return; // already folded
                }
                let reset = is_reset(&v, &s.last);
                let inc = std::array::from_fn(|i| {
                    let d = if reset { v[i] } else { v[i] - s.last[i] };
                    d.max(0.0)
                });
                s.add(k, inc);
                s.last = v;
                s.last_ts = ts;
            }
            None => {
                // First seen after the start: counted from zero.
                let mut s = Series {
                    last_ts: ts,
                    last: v,
                    lump: None,
                    buckets: Vec::new(),
                };
                s.add(k, v.map(|x| x.max(0.0)));
                self.series.insert(key, s);
            }
        }
    }

    /// Drops buckets before the window and series PoWA no longer reports.
    pub(super) fn trim(&mut self, from_k: u32, start: DateTime<Utc>) {
        self.series.retain(|_, s| {
            s.buckets.retain(|b| b.k >= from_k);
            s.last_ts >= start || s.lump.is_some() || !s.buckets.is_empty()
        });
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let per_series = std::mem::size_of::<(SeriesKey, Series<M>)>();
        self.series.capacity() * (per_series + 8)
            + self
                .series
                .values()
                .map(|s| {
                    s.buckets.capacity() * std::mem::size_of::<Bucket<M>>()
                        + s.lump.as_ref().map_or(0, |_| M * 8)
                })
                .sum::<usize>()
            + self.cache.as_ref().map_or(0, |c| c.heap_bytes())
    }
}

fn point<const M: usize>(row: &Row) -> (SeriesKey, DateTime<Utc>, [f64; M]) {
    (
        SeriesKey {
            dbid: row.get::<_, i64>(0) as u32,
            userid: row.get::<_, i64>(1) as u32,
            queryid: row.get(2),
            sub: row.get::<_, i16>(3) as i8,
        },
        row.get(4),
        std::array::from_fn(|i| row.get::<_, f64>(5 + i)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powa::PowaInfo;
    use chrono::TimeZone;

    #[test]
    fn a_point_on_a_checkpoint_belongs_to_the_bucket_before() {
        let h = Duration::hours(1);
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        assert_eq!(bucket_of(t, h) + 1, bucket_of(t + Duration::seconds(1), h));
        assert_eq!(bucket_of(t - Duration::seconds(1), h), bucket_of(t, h));
    }

    fn key(q: i64) -> SeriesKey {
        SeriesKey {
            dbid: 1,
            userid: 1,
            queryid: q,
            sub: -1,
        }
    }

    #[test]
    fn increments_are_reset_aware_and_new_series_count_from_zero() {
        let h = Duration::hours(1);
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        let layout = Layout::kcache(&PowaInfo {
            version: crate::powa::discovery::PowaVersion::parse("3.2.0").unwrap(),
            schema: "public".into(),
            statement_fields: vec![],
            has_toplevel: false,
            servers: vec![],
            database: "powa".into(),
        });
        let mut f: Family<2> = Family::new(layout, "test", true);
        let m = |x: i64| t0 + Duration::minutes(x);
        f.apply(key(1), m(5), [10.0, 1.0], h); // new: counts 10
        f.apply(key(1), m(10), [15.0, 2.0], h); // +5
        f.apply(key(1), m(65), [3.0, 0.5], h); // reset: +3, next hour
        f.apply(key(1), m(65), [99.0, 9.0], h); // already folded: ignored
        let s = &f.series[&key(1)];
        let k10 = bucket_of(m(5), h);
        assert_eq!(s.total(k10), [18.0, 2.5]);
        assert_eq!(s.total(k10 + 1), [3.0, 0.5]);
        f.trim(k10 + 1, m(60));
        assert_eq!(f.series[&key(1)].buckets.len(), 1);
        // A series gone from PoWA leaves once it has nothing in the window.
        f.trim(k10 + 5, m(300));
        assert!(f.series.is_empty());
    }
}
