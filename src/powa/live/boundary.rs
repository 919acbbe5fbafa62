//! The boundary cache of a live window: what each series gained in every checkpoint of
//! the history range the window start lies in, read once when the start enters that range,
//! so that the start moving by an hour is a subtraction, not a read.
//!
//! Without it, each checkpoint the start passed was read again from the repository: the
//! hour lies inside a coalesced range (PoWA coalesces about every 8 h 20 min), so every
//! key's range was unnested again for its twelve points of that hour, nine times per range.
//! With it, the ranges around the start are unnested once, up to their end (the
//! *horizon*), and their points are collapsed by the repository into one run per key and
//! checkpoint ([`Layout::bucket_runs_sql`]); here those runs are chained into one *part*
//! per key and checkpoint: the sum of the series' increments over the points of that
//! checkpoint, each against the series' previous point. When the start moves, the parts of
//! the checkpoints it passed are summed and taken off, and forgotten; once the start
//! reaches the horizon, the next ranges are read the same way.
//!
//! Exactness: parts are `f64`, added in time order as the window read adds them, and a
//! part is what a window read of its checkpoint anchored at the snapshot before it gives
//! for every series that the snapshot holds (one step into the checkpoint, then the steps
//! inside it, a drop of the first two counters being a reset). A series that PoWA did
//! not hold at the cache's anchor is counted from zero, as the start-up read counted it;
//! further on, parts chain across a series' gaps, as the live buckets do (see the known
//! difference in the live module). Points sharing a timestamp (PoWA 4.1's duplicate rows)
//! or history rows of one key interleaving in time are read point by point for those keys
//! and summed per snapshot first, as the window read does.
//!
//! Memory: one part per series and checkpoint ahead of the start, all-zero parts (idle
//! hours) left out, packed ([`Packed`]): 8 bytes, then 4 per field that `f32` holds
//! exactly (counts), 8 per other non-zero field (times), nothing per zero field — at most
//! `8 + 8·M` bytes (136 for the 16 statements counters, 40 for kcache), about 80 and 32
//! on the bench's workload — plus about 60 bytes per series. A range of PoWA's default
//! 100 snapshots of 5 minutes spans 9 checkpoints, so a cache holds at most about
//! `keys × (60 + 9 × part)` bytes, right after a fill, falling as the start moves: for
//! 16,500 keys busy every hour, about 13 MB of statements and 5 MB of kcache for the
//! lump (gone once the start-up lump has aged out, 24 h after start) and 13 MB per
//! baseline, at the worst; idle keys cost their 60 bytes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;

use super::super::cold::{key_of, run_at, values};
use super::super::layout::{Layout, SeriesKey};
use super::super::reader::{is_reset, Run};
use super::super::session::{QueryError, Rows, Session};
use super::family::bucket_of;

/// What one series gained over one checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Part<const M: usize> {
    k: u32,
    v: [f64; M],
}

/// One series' parts, packed: per part its checkpoint (`u32`), a 2-bit tag per field
/// (zero, `f32`, `f64`), then its non-zero fields, each as `f32` when that holds it
/// exactly (counts of calls, rows and blocks), else as `f64` (times): so nothing is
/// rounded, and an idle field costs nothing.
#[derive(Clone, Debug, Default)]
struct Packed(Vec<u8>);

const ZERO: u32 = 0;
const F32: u32 = 1;
const F64: u32 = 2;

impl Packed {
    fn push<const M: usize>(&mut self, part: &Part<M>) {
        const { assert!(M <= 16, "2-bit tags of at most 16 fields fit a u32") };
        let mut tags = 0u32;
        let at = self.0.len();
        self.0.extend_from_slice(&part.k.to_le_bytes());
        self.0.extend_from_slice(&[0; 4]);
        for (i, &x) in part.v.iter().enumerate() {
            let tag = if x == 0.0 {
                ZERO
            } else if (x as f32) as f64 == x {
                self.0.extend_from_slice(&(x as f32).to_le_bytes());
                F32
            } else {
                self.0.extend_from_slice(&x.to_le_bytes());
                F64
            };
            tags |= tag << (2 * i);
        }
        self.0[at + 4..at + 8].copy_from_slice(&tags.to_le_bytes());
    }

    /// The part at byte `at` and where the next one starts.
    fn read<const M: usize>(&self, mut at: usize) -> (Part<M>, usize) {
        let word = |at: usize| u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap());
        let (k, tags) = (word(at), word(at + 4));
        at += 8;
        let v = std::array::from_fn(|i| match (tags >> (2 * i)) & 3 {
            F32 => {
                at += 4;
                f32::from_le_bytes(self.0[at - 4..at].try_into().unwrap()) as f64
            }
            F64 => {
                at += 8;
                f64::from_le_bytes(self.0[at - 8..at].try_into().unwrap())
            }
            _ => 0.0,
        });
        (Part { k, v }, at)
    }

    #[cfg(test)]
    fn unpack<const M: usize>(&self) -> Vec<Part<M>> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < self.0.len() {
            let (p, next) = self.read(at);
            out.push(p);
            at = next;
        }
        out
    }

    /// The sum of the parts up to checkpoint `last` (None when there are none), which
    /// are forgotten.
    fn take<const M: usize>(&mut self, last: u32) -> Option<[f64; M]> {
        let (mut sum, mut at, mut any) = ([0.0; M], 0, false);
        while at < self.0.len() {
            let (p, next) = self.read::<M>(at);
            if p.k > last {
                break;
            }
            for (s, x) in sum.iter_mut().zip(p.v) {
                *s += x;
            }
            (at, any) = (next, true);
        }
        self.0.drain(..at);
        any.then_some(sum)
    }
}

/// The checkpoint grid of a cache: that of the window, shifted back by `shift` for a
/// baseline (whose start is the window's, `shift` earlier).
#[derive(Clone, Copy, Debug)]
pub(super) struct Grid {
    pub(super) width: Duration,
    pub(super) shift: Duration,
}

impl Grid {
    fn bucket(&self, ts: DateTime<Utc>) -> u32 {
        bucket_of(ts + self.shift, self.width)
    }

    /// The checkpoint at or before `ts`.
    pub(super) fn floor(&self, ts: DateTime<Utc>) -> DateTime<Utc> {
        (ts + self.shift)
            .duration_trunc(self.width)
            .unwrap_or(ts + self.shift)
            - self.shift
    }

    /// The first instant of bucket `k` (buckets hold (k·width, (k+1)·width]).
    fn bucket_start(&self, k: u32) -> DateTime<Utc> {
        let us = self.width.num_microseconds().unwrap_or(3_600_000_000);
        DateTime::<Utc>::from_timestamp_micros(k as i64 * us + 1).unwrap_or_default() - self.shift
    }
}

/// One family's parts from a window start (`edge`) up to a checkpoint (`horizon`).
pub(super) struct BoundaryCache<const M: usize> {
    /// The start the parts follow: every part is of a checkpoint after it.
    edge: DateTime<Utc>,
    /// The checkpoint the parts reach: the start moves up to there without a read.
    horizon: DateTime<Utc>,
    grid: Grid,
    parts: HashMap<SeriesKey, Packed>,
    /// Newest point of each checkpoint, over all series: the last snapshot before a start
    /// moved past it.
    latest: Vec<(u32, DateTime<Utc>)>,
}

/// What moving a start took off: each series' sum of the parts passed, and the newest
/// point among them.
pub(super) type Taken<const M: usize> = (Vec<(SeriesKey, [f64; M])>, Option<DateTime<Utc>>);

/// What a fill read.
pub(super) struct Filled<const M: usize> {
    pub(super) cache: BoundaryCache<M>,
    pub(super) rows: u64,
}

impl<const M: usize> BoundaryCache<M> {
    /// Reads the points of `layout` in [anchor, horizon] — the history ranges around the
    /// start `edge` unnested once, the current rows in that span — into parts, keeping
    /// the series `keep` selects. `anchor` is PoWA's last snapshot at or before `edge`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fill(
        client: &Session,
        layout: &Layout,
        srvid: i32,
        anchor: DateTime<Utc>,
        edge: DateTime<Utc>,
        horizon: DateTime<Utc>,
        grid: Grid,
        keep: impl Fn(&SeriesKey) -> bool,
    ) -> Result<Filled<M>, QueryError> {
        let mut cache = BoundaryCache {
            edge,
            horizon,
            grid,
            parts: HashMap::new(),
            latest: Vec::new(),
        };
        if !layout.ranges_summable() {
            // Wait samples: a series is spread over several rows per snapshot and range
            // (see `Layout::wait_sampling`), so its points are read, as the window read
            // reads them.
            let params: Vec<&(dyn ToSql + Sync)> = if layout.multi() {
                vec![&anchor, &horizon, &srvid]
            } else {
                vec![&anchor, &horizon]
            };
            let stream = client.query_raw(&layout.points_sql(), params).await?;
            let rows = cache.fold_points(stream, None, &keep).await?;
            cache.latest.sort_unstable();
            return Ok(Filled { cache, rows });
        }
        let bounds: Vec<DateTime<Utc>> = (grid.bucket(anchor)..=grid.bucket(horizon))
            .map(|k| grid.bucket_start(k))
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = if layout.multi() {
            vec![&anchor, &horizon, &bounds, &srvid]
        } else {
            vec![&anchor, &horizon, &bounds]
        };
        let stream = client.query_raw(&layout.bucket_runs_sql(), params).await?;
        pin_mut!(stream);
        let mut rows = 0u64;
        let mut pointwise: Vec<SeriesKey> = Vec::new();
        // The runs of one key, None once they cannot be chained.
        let mut cur: Option<(SeriesKey, Option<Vec<Run<M>>>)> = None;
        while let Some(row) = stream.try_next().await? {
            rows += 1;
            let key = key_of(&row);
            if cur.as_ref().is_some_and(|(k, _)| *k != key) {
                let (k, runs) = cur.take().unwrap();
                cache.add_series(k, runs, &keep, &mut pointwise);
            }
            let (_, runs) = cur.get_or_insert_with(|| (key, Some(Vec::new())));
            let run = run_at::<M>(&row, 6);
            match (runs.as_mut(), run) {
                (Some(v), Some(run)) if v.last().is_none_or(|p| run.t0 > p.t1) => v.push(run),
                _ => *runs = None,
            }
        }
        if let Some((k, runs)) = cur.take() {
            cache.add_series(k, runs, &keep, &mut pointwise);
        }
        if !pointwise.is_empty() {
            rows += cache
                .read_points(client, layout, srvid, anchor, &pointwise)
                .await?;
        }
        cache.latest.sort_unstable();
        Ok(Filled { cache, rows })
    }

    fn add_series(
        &mut self,
        key: SeriesKey,
        runs: Option<Vec<Run<M>>>,
        keep: &impl Fn(&SeriesKey) -> bool,
        pointwise: &mut Vec<SeriesKey>,
    ) {
        if !keep(&key) {
            return;
        }
        match runs {
            Some(runs) => self.insert(key, &runs),
            None => pointwise.push(key),
        }
    }

    fn insert(&mut self, key: SeriesKey, runs: &[Run<M>]) {
        for r in runs.iter().filter(|r| r.t1 > self.edge) {
            let k = self.grid.bucket(r.t1);
            match self.latest.iter_mut().find(|(b, _)| *b == k) {
                Some((_, t)) => *t = (*t).max(r.t1),
                None => self.latest.push((k, r.t1)),
            }
        }
        let parts = parts_of(runs, self.edge, |ts| self.grid.bucket(ts));
        if !parts.is_empty() {
            let mut packed = Packed::default();
            for p in &parts {
                packed.push(p);
            }
            packed.0.shrink_to_fit();
            self.parts.insert(key, packed);
        }
    }

    /// The keys whose runs could not be chained, read point by point over [anchor,
    /// horizon], the rows of one snapshot summed; returns the rows read.
    async fn read_points(
        &mut self,
        client: &Session,
        layout: &Layout,
        srvid: i32,
        anchor: DateTime<Utc>,
        keys: &[SeriesKey],
    ) -> Result<u64, QueryError> {
        let wanted: HashSet<SeriesKey> = keys.iter().copied().collect();
        let mut asked = HashSet::new();
        let (mut qids, mut dbids, mut userids) = (vec![], vec![], vec![]);
        for k in keys {
            if asked.insert((k.queryid, k.dbid, k.userid)) {
                qids.push(k.queryid);
                dbids.push(k.dbid as i64);
                userids.push(k.userid as i64);
            }
        }
        let horizon = self.horizon;
        let params: Vec<&(dyn ToSql + Sync)> = if layout.multi() {
            vec![&qids, &dbids, &userids, &anchor, &horizon, &srvid]
        } else {
            vec![&qids, &dbids, &userids, &anchor, &horizon]
        };
        let stream = client.query_raw(&layout.key_points_sql(), params).await?;
        self.fold_points(stream, Some(&wanted), &|_| true).await
    }

    /// Parts from point rows (keys, ts, fields; ordered by key and ts) of the series
    /// `wanted` (all when None) that `keep` selects; returns the rows read.
    async fn fold_points(
        &mut self,
        stream: Rows<'_>,
        wanted: Option<&HashSet<SeriesKey>>,
        keep: &impl Fn(&SeriesKey) -> bool,
    ) -> Result<u64, QueryError> {
        pin_mut!(stream);
        let mut rows = 0u64;
        let mut cur: Option<(SeriesKey, Vec<Run<M>>)> = None;
        while let Some(row) = stream.try_next().await? {
            rows += 1;
            let key = key_of(&row);
            if wanted.is_some_and(|w| !w.contains(&key)) || !keep(&key) {
                continue; // another `sub` variant of the same query
            }
            if cur.as_ref().is_some_and(|(k, _)| *k != key) {
                let (k, runs) = cur.take().unwrap();
                self.insert(k, &runs);
            }
            let (_, runs) = cur.get_or_insert_with(|| (key, Vec::new()));
            let (ts, v): (DateTime<Utc>, [f64; M]) = (row.get(4), values::<M>(&row, 5));
            match runs.last_mut() {
                // Rows of one snapshot are one point.
                Some(p) if p.t0 == ts => {
                    for (a, x) in p.first.iter_mut().zip(v) {
                        *a += x;
                    }
                    p.last = p.first;
                }
                _ => runs.push(Run {
                    t0: ts,
                    t1: ts,
                    first: v,
                    last: v,
                    inc: [0.0; M],
                }),
            }
        }
        if let Some((k, runs)) = cur.take() {
            self.insert(k, &runs);
        }
        Ok(rows)
    }

    /// Whether the parts take the start from `from` to `to` (a checkpoint).
    pub(super) fn covers(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.edge == from && to <= self.horizon
    }

    /// Moves the start to `to` (see [`BoundaryCache::covers`]): each series' parts of the
    /// checkpoints passed, summed, and the newest point among them; forgets those parts.
    pub(super) fn take(&mut self, to: DateTime<Utc>) -> Taken<M> {
        let last = self.grid.bucket(to);
        let mut out = Vec::new();
        self.parts.retain(|key, parts| {
            if let Some(sum) = parts.take::<M>(last) {
                out.push((*key, sum));
            }
            !parts.0.is_empty()
        });
        let n = self.latest.iter().take_while(|(k, _)| *k <= last).count();
        let newest = self.latest.drain(..n).map(|(_, t)| t).max();
        self.edge = to;
        (out, newest)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.parts.capacity() * (std::mem::size_of::<(SeriesKey, Packed)>() + 8)
            + self.parts.values().map(|p| p.0.capacity()).sum::<usize>()
            + self.latest.capacity() * std::mem::size_of::<(u32, DateTime<Utc>)>()
    }
}

/// One series' parts from its runs (in time order, disjoint, each within one checkpoint):
/// the increments of the points after `edge`, by checkpoint. A run starting at or before
/// `edge` holds the point at the anchor, the series' value the window starts from; a
/// series whose first run starts after `edge` was not in the anchor snapshot and counts
/// from zero. Between runs, one step from the previous run's last point to the run's first
/// (a drop of the first two counters being a reset, each field's step at least 0), as
/// [`super::super::reader::SeriesAcc::push_run`] adds it.
fn parts_of<const M: usize>(
    runs: &[Run<M>],
    edge: DateTime<Utc>,
    bucket: impl Fn(DateTime<Utc>) -> u32,
) -> Vec<Part<M>> {
    let mut parts: Vec<Part<M>> = Vec::new();
    let mut prev: Option<[f64; M]> = None;
    for run in runs {
        let mut inc = run.inc;
        match prev {
            Some(p) => {
                let reset = is_reset(&run.first, &p);
                for i in 0..M {
                    let step = if reset {
                        run.first[i]
                    } else {
                        run.first[i] - p[i]
                    };
                    inc[i] += step.max(0.0);
                }
            }
            None if run.t0 > edge => {
                for (a, x) in inc.iter_mut().zip(run.first) {
                    *a += x;
                }
            }
            None => {}
        }
        prev = Some(run.last);
        if run.t1 <= edge || inc.iter().all(|x| *x == 0.0) {
            continue;
        }
        let k = bucket(run.t1);
        match parts.last_mut() {
            Some(p) if p.k == k => {
                for (a, x) in p.v.iter_mut().zip(inc) {
                    *a += x;
                }
            }
            _ => parts.push(Part { k, v: inc }),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powa::reader::SeriesAcc;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap() + Duration::minutes(min)
    }

    const HOUR: Grid = Grid {
        width: Duration::hours(1),
        shift: Duration::zero(),
    };

    fn runs_of(points: &[(DateTime<Utc>, [f64; 2])], grid: Grid) -> Vec<Run<2>> {
        let mut runs: Vec<Run<2>> = Vec::new();
        let mut from = 0;
        for i in 1..=points.len() {
            if i == points.len() || grid.bucket(points[i].0) != grid.bucket(points[from].0) {
                runs.push(Run::of(&points[from..i]).unwrap());
                from = i;
            }
        }
        runs
    }

    /// What a window read of [anchor, to] gives for the series.
    fn read(
        points: &[(DateTime<Utc>, [f64; 2])],
        anchor: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> [f64; 2] {
        let mut acc: Option<SeriesAcc<2>> = None;
        for &(ts, v) in points.iter().filter(|(ts, _)| *ts >= anchor && *ts <= to) {
            match acc.as_mut() {
                Some(a) => a.push(ts, v),
                None => acc = Some(SeriesAcc::new(ts, v)),
            }
        }
        acc.map_or([0.0; 2], |a| a.finish(Some(anchor)))
    }

    proptest::proptest! {
        /// The parts of the checkpoints a start passes add up to what a window read of
        /// those checkpoints gives, anchored at the snapshot before them, resets and a
        /// series born after the anchor included.
        #[test]
        fn parts_add_up_to_the_reads_of_their_hours(
            steps in proptest::collection::vec((0u8..6, 0.0f64..50.0, 0.0f64..50.0), 1..60),
            born_late in proptest::bool::ANY,
            shifted in proptest::bool::ANY,
        ) {
            let grid = Grid {
                width: Duration::hours(1),
                shift: if shifted { Duration::minutes(90) } else { Duration::zero() },
            };
            // Snapshots every 5 minutes from 00:05; the start is at 00:20 (its anchor the
            // snapshot of 00:20), then at each checkpoint.
            let edge = t(20);
            let mut points = Vec::new();
            let mut v = [0.0; 2];
            for (i, &(kind, a, b)) in steps.iter().enumerate() {
                let ts = t(5 + 5 * i as i64);
                v = match kind {
                    0 => [a / 10.0, b / 10.0],
                    _ => [v[0] + a, v[1] + b],
                };
                if born_late && ts <= edge {
                    continue;
                }
                points.push((ts, v));
            }
            // What a fill reads: from the anchor on.
            points.retain(|(ts, _)| *ts >= edge);
            proptest::prop_assume!(!points.is_empty());
            let runs = runs_of(&points, grid);
            let mut parts = parts_of(&runs, edge, |ts| grid.bucket(ts));
            let (mut from, mut anchor) = (edge, edge);
            let end = points.last().unwrap().0;
            while from < end {
                let to = grid.floor(from) + grid.width;
                let last = grid.bucket(to);
                let n = parts.iter().take_while(|p| p.k <= last).count();
                let mut got = [0.0; 2];
                for p in parts.drain(..n) {
                    got[0] += p.v[0];
                    got[1] += p.v[1];
                }
                // A series is in the anchor snapshot unless it was born after it.
                let want = read(&points, anchor, to);
                for i in 0..2 {
                    proptest::prop_assert!((got[i] - want[i]).abs() < 1e-9, "{from}..{to}: {got:?} vs {want:?}");
                }
                // The next anchor: the last snapshot at or before the new start.
                anchor = t(5 * ((to - t(0)).num_minutes() / 5));
                from = to;
            }
            proptest::prop_assert!(parts.is_empty());
        }
    }

    #[test]
    fn the_anchor_point_starts_the_series_and_idle_hours_have_no_part() {
        let pts = [
            (t(20), [10.0, 1.0]), // the anchor
            (t(50), [12.0, 1.5]),
            (t(60), [12.0, 1.5]),
            (t(75), [12.0, 1.5]), // an idle hour
            (t(130), [3.0, 0.2]), // a reset
        ];
        let parts = parts_of(&runs_of(&pts, HOUR), t(20), |ts| HOUR.bucket(ts));
        let k0 = HOUR.bucket(t(50));
        assert_eq!(
            parts,
            vec![
                Part {
                    k: k0,
                    v: [2.0, 0.5]
                },
                Part {
                    k: k0 + 2,
                    v: [3.0, 0.2]
                },
            ]
        );
        // Born after the anchor: from zero.
        let parts = parts_of(&runs_of(&pts[1..], HOUR), t(20), |ts| HOUR.bucket(ts));
        assert_eq!(parts[0].v, [12.0, 1.5]);
    }

    #[test]
    fn a_shifted_grid_puts_checkpoints_where_the_baseline_starts() {
        let grid = Grid {
            width: Duration::hours(1),
            shift: Duration::minutes(30),
        };
        // The baseline starts at 00:30, 01:30, …
        assert_eq!(grid.floor(t(89)), t(30));
        assert_eq!(grid.floor(t(90)), t(90));
        assert_eq!(grid.bucket(t(90)), grid.bucket(t(31)));
        assert_eq!(grid.bucket(t(91)), grid.bucket(t(90)) + 1);
        assert_eq!(
            grid.bucket_start(grid.bucket(t(90))),
            t(30) + Duration::microseconds(1)
        );
    }

    #[test]
    fn packed_parts_are_exact_and_small() {
        let parts = [
            Part {
                k: 7,
                v: [3.0, 0.1],
            },
            Part {
                k: 9,
                v: [0.0, 1e300],
            },
            Part {
                k: 12,
                v: [16_777_217.0, 0.5],
            },
        ];
        let mut p = Packed::default();
        for x in &parts {
            p.push(x);
        }
        assert_eq!(p.unpack::<2>(), parts.to_vec());
        // 3 as f32, 0.1 as f64; zero; 2^24 + 1 needs f64, 0.5 fits f32.
        assert_eq!(p.0.len(), (8 + 4 + 8) + (8 + 8) + (8 + 8 + 4));
        assert_eq!(p.take::<2>(6), None);
        assert_eq!(p.take::<2>(9), Some([3.0, 0.1 + 1e300]));
        assert_eq!(p.unpack::<2>(), parts[2..].to_vec());
        assert_eq!(p.take::<2>(99), Some([16_777_217.0, 0.5]));
        assert!(p.0.is_empty());
    }

    #[test]
    fn take_sums_the_parts_passed_and_forgets_them() {
        let mut c = BoundaryCache::<2> {
            edge: t(0),
            horizon: t(180),
            grid: HOUR,
            parts: HashMap::new(),
            latest: vec![],
        };
        let key = SeriesKey {
            dbid: 1,
            userid: 1,
            queryid: 7,
            sub: -1,
        };
        let pts = [
            (t(0), [1.0, 1.0]),
            (t(30), [2.0, 2.0]),
            (t(90), [4.0, 4.0]),
            (t(150), [5.0, 6.0]),
        ];
        c.insert(key, &runs_of(&pts, HOUR));
        assert!(c.covers(t(0), t(120)) && !c.covers(t(60), t(120)) && !c.covers(t(0), t(240)));
        let (got, newest) = c.take(t(120));
        assert_eq!(got, vec![(key, [3.0, 3.0])]);
        assert_eq!(newest, Some(t(90)));
        assert!(c.covers(t(120), t(180)));
        let (got, _) = c.take(t(180));
        assert_eq!(got, vec![(key, [1.0, 2.0])]);
        assert!(c.parts.is_empty(), "nothing is kept once passed");
    }
}
