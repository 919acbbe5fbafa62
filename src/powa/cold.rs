//! Window reads from the repository: the fast one used at start and for baselines, and the
//! naive reference it is checked against.
//!
//! The naive read unnests every point of every coalesce range touching the window. The
//! fast read takes each range lying wholly inside the window as one piece, its first and
//! last values being `mins_in_range`/`maxs_in_range` — true for monotonic counters when
//! no reset happened inside the range. That is trusted only when the piece follows an
//! earlier piece of the same series and does not start below where that one ended; the
//! first piece of a series, a piece after a decrease, and a piece after an untrusted one
//! are unnested in a second, targeted query instead. The points the fast read does need
//! (those of the boundary ranges, of the unnested ranges, and the current rows) are
//! collapsed by the repository into one [`Run`] per range or key (first and last point,
//! and the values just before each reset: see [`Layout::pieces_sql`]), so they never
//! cross the wire. A key whose points share a timestamp, or whose pieces interleave in
//! time (PoWA 4.1's duplicate rows under `track = all`), cannot be chained that way: its
//! points are read and folded one by one. So the fast read gives the naive read's
//! numbers, reading the arrays of the boundary ranges only and sending a few rows per
//! key.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::layout::{Layout, SeriesKey};
use super::reader::{ReadMode, Run, SeriesAcc};
use super::session::{QueryError, Rows, Session};
use sentinel_actors::Window;

/// Per-series accumulators of one window read, and what it cost.
#[derive(Default)]
pub struct SeriesRead<const M: usize> {
    pub series: Vec<(SeriesKey, SeriesAcc<M>)>,
    /// Earliest point or piece start seen (the anchor when PoWA had none before the window).
    pub earliest: Option<DateTime<Utc>>,
    /// Newest point seen.
    pub latest: Option<DateTime<Utc>>,
    /// Rows the repository returned.
    pub rows: u64,
    /// Whole ranges taken from mins/maxs without reading their arrays.
    pub ranges_trusted: u64,
    /// Ranges that had to be unnested in the second pass.
    pub ranges_unnested: u64,
}

impl<const M: usize> SeriesRead<M> {
    fn new() -> Self {
        SeriesRead {
            series: Vec::new(),
            earliest: None,
            latest: None,
            rows: 0,
            ranges_trusted: 0,
            ranges_unnested: 0,
        }
    }

    fn saw(&mut self, first: DateTime<Utc>, last: DateTime<Utc>) {
        self.earliest = Some(self.earliest.map_or(first, |e| e.min(first)));
        self.latest = Some(self.latest.map_or(last, |e| e.max(last)));
    }
}

pub(crate) fn key_of(row: &Row) -> SeriesKey {
    SeriesKey {
        dbid: row.get::<_, i64>(0) as u32,
        userid: row.get::<_, i64>(1) as u32,
        queryid: row.get(2),
        sub: row.get::<_, i16>(3) as i8,
    }
}

pub(crate) fn values<const M: usize>(row: &Row, at: usize) -> [f64; M] {
    std::array::from_fn(|i| row.get::<_, f64>(at + i))
}

/// Feeds points ordered by (key, ts) into per-series accumulators.
pub(crate) fn push_point<const M: usize>(
    series: &mut Vec<(SeriesKey, SeriesAcc<M>)>,
    key: SeriesKey,
    ts: DateTime<Utc>,
    v: [f64; M],
) {
    match series.last_mut() {
        Some((k, acc)) if *k == key => acc.push(ts, v),
        _ => series.push((key, SeriesAcc::new(ts, v))),
    }
}

/// Streams the rows of `sql` over the window: `$1` from, `$2` to, `$3` the srvid (PoWA 4+);
/// each row carries the `M` fields of `layout`.
async fn window_rows<'a, const M: usize>(
    client: &'a Session,
    layout: &Layout,
    sql: &str,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Rows<'a>, QueryError> {
    debug_assert_eq!(layout.width(), M);
    let params: Vec<&(dyn ToSql + Sync)> = if layout.multi() {
        vec![&from, &to, &srvid]
    } else {
        vec![&from, &to]
    };
    client.query_raw(sql, params).await
}

/// Every point of `stream` (the rows of [`Layout::points_sql`]): the reference
/// computation.
async fn fold_points<const M: usize>(stream: Rows<'_>) -> Result<SeriesRead<M>, QueryError> {
    pin_mut!(stream);
    let mut out = SeriesRead::new();
    while let Some(row) = stream.try_next().await? {
        out.rows += 1;
        let ts: DateTime<Utc> = row.get(4);
        out.saw(ts, ts);
        push_point(&mut out.series, key_of(&row), ts, values::<M>(&row, 5));
    }
    Ok(out)
}

/// One element of a series in the fast read.
#[derive(Clone, Copy, Debug)]
enum Piece<const M: usize> {
    /// Points collapsed by the repository: of a boundary range, or the current rows.
    Run(Run<M>),
    /// A whole coalesce range, as the run its mins/maxs make (a real one only when
    /// `trusted`: no reset inside, so the counters just grew from first to last).
    Range { run: Run<M>, trusted: bool },
}

/// Pieces of one series, with the running state that decides whether a range is trusted.
struct Pending<const M: usize> {
    key: SeriesKey,
    pieces: Vec<Piece<M>>,
    /// Value at the end of the previous piece.
    prev_last: Option<(DateTime<Utc>, [f64; M])>,
    prev_untrusted: bool,
    any_untrusted: bool,
    /// A piece started before the previous one ended: two history rows of one key
    /// whose points interleave (PoWA 4.1's `track = all` duplicates). Pieces cannot be
    /// chained then; the key's points are read instead.
    overlap: bool,
}

impl<const M: usize> Pending<M> {
    fn new(key: SeriesKey) -> Self {
        Pending {
            key,
            pieces: Vec::new(),
            prev_last: None,
            prev_untrusted: false,
            any_untrusted: false,
            overlap: false,
        }
    }

    fn follows(&mut self, t0: DateTime<Utc>) {
        self.overlap |= self.prev_last.is_some_and(|(t, _)| t0 <= t);
    }

    fn run(&mut self, run: Run<M>) {
        self.follows(run.t0);
        self.prev_last = Some((run.t1, run.last));
        self.prev_untrusted = false;
        self.pieces.push(Piece::Run(run));
    }

    /// Adds a whole range; says whether it is trusted.
    fn range(
        &mut self,
        t0: DateTime<Utc>,
        t1: DateTime<Utc>,
        first: [f64; M],
        last: [f64; M],
    ) -> bool {
        self.follows(t0);
        let trusted = match self.prev_last {
            Some((_, prev)) => !self.prev_untrusted && !super::reader::is_reset(&first, &prev),
            None => false,
        };
        self.prev_last = Some((t1, last));
        self.prev_untrusted = !trusted;
        self.any_untrusted |= !trusted;
        let inc = std::array::from_fn(|i| last[i] - first[i]);
        self.pieces.push(Piece::Range {
            run: Run {
                t0,
                t1,
                first,
                last,
                inc,
            },
            trusted,
        });
        trusted
    }
}

/// The runs of unnested ranges of one series, by the range's lower bound.
type RangeRuns<const M: usize> = HashMap<DateTime<Utc>, Run<M>>;

/// Folds the pieces of one series into an accumulator; `unnested` gives the runs of
/// untrusted ranges by their lower bound.
fn fold<const M: usize>(
    pieces: &[Piece<M>],
    unnested: Option<&RangeRuns<M>>,
) -> Option<SeriesAcc<M>> {
    let mut acc: Option<SeriesAcc<M>> = None;
    for p in pieces {
        let run = match p {
            Piece::Run(run) | Piece::Range { run, trusted: true } => run,
            Piece::Range { run, .. } => match unnested.and_then(|u| u.get(&run.t0)) {
                Some(points) => points,
                None => continue,
            },
        };
        match acc.as_mut() {
            Some(a) => a.push_run(run),
            None => acc = Some(SeriesAcc::from_run(run)),
        }
    }
    acc
}

/// The run at column `at` (t0, t1, first, last, values before resets, duplicates; see
/// [`Layout::pieces_sql`]); None when points of the run share a timestamp.
pub(crate) fn run_at<const M: usize>(row: &Row, at: usize) -> Option<Run<M>> {
    if row.get::<_, bool>(at + 2 + 3 * M) {
        return None;
    }
    let (first, last) = (values::<M>(row, at + 2), values::<M>(row, at + 2 + M));
    let before = values::<M>(row, at + 2 + 2 * M);
    Some(Run {
        t0: row.get(at),
        t1: row.get(at + 1),
        first,
        last,
        inc: std::array::from_fn(|i| (last[i] - first[i] + before[i]).max(0.0)),
    })
}

/// The window `span` (both ends included) read the way `mode` says.
pub async fn read<const M: usize>(
    mode: ReadMode,
    client: &Session,
    layout: &Layout,
    srvid: i32,
    span: Window,
) -> Result<SeriesRead<M>, QueryError> {
    let (from, to) = (span.start, span.end);
    match mode {
        ReadMode::Fast => read_fast(client, layout, srvid, from, to).await,
        ReadMode::Naive => {
            let sql = layout.points_sql();
            fold_points(window_rows::<M>(client, layout, &sql, srvid, from, to).await?).await
        }
    }
}

/// The window [from, to], whole inside ranges read from mins/maxs.
pub async fn read_fast<const M: usize>(
    client: &Session,
    layout: &Layout,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<SeriesRead<M>, QueryError> {
    if !layout.ranges_summable() {
        let sql = layout.points_sql();
        return fold_points(window_rows::<M>(client, layout, &sql, srvid, from, to).await?).await;
    }
    let stream = window_rows::<M>(client, layout, &layout.pieces_sql(), srvid, from, to).await?;
    pin_mut!(stream);
    let mut out = SeriesRead::new();
    let mut deferred: Vec<Pending<M>> = Vec::new();
    let mut interleaved: Vec<SeriesKey> = Vec::new();
    let mut cur: Option<Pending<M>> = None;
    let mut finish_one = |p: Pending<M>, out: &mut SeriesRead<M>| {
        if p.overlap {
            interleaved.push(p.key);
        } else if p.any_untrusted {
            deferred.push(p);
        } else if let Some(acc) = fold(&p.pieces, None) {
            out.series.push((p.key, acc));
        }
    };
    while let Some(row) = stream.try_next().await? {
        out.rows += 1;
        let key = key_of(&row);
        if cur.as_ref().is_some_and(|c| c.key != key) {
            finish_one(cur.take().unwrap(), &mut out);
        }
        let p = cur.get_or_insert_with(|| Pending::new(key));
        let is_range: bool = row.get(4);
        let t0: DateTime<Utc> = row.get(5);
        let t1: DateTime<Utc> = row.get(6);
        out.saw(t0, t1);
        if is_range {
            if p.range(t0, t1, values::<M>(&row, 7), values::<M>(&row, 7 + M)) {
                out.ranges_trusted += 1;
            }
        } else {
            match run_at(&row, 5) {
                Some(run) => p.run(run),
                None => p.overlap = true,
            }
        }
    }
    if let Some(p) = cur.take() {
        finish_one(p, &mut out);
    }
    if !deferred.is_empty() {
        interleaved.extend(unnest_untrusted(client, layout, srvid, deferred, &mut out).await?);
    }
    if !interleaved.is_empty() {
        read_keys(client, layout, srvid, from, to, &interleaved, &mut out).await?;
    }
    Ok(out)
}

/// Second pass: the untrusted ranges of `deferred`, collapsed by the repository. Returns
/// the keys whose ranges hold duplicated timestamps (to be read point by point).
async fn unnest_untrusted<const M: usize>(
    client: &Session,
    layout: &Layout,
    srvid: i32,
    deferred: Vec<Pending<M>>,
    out: &mut SeriesRead<M>,
) -> Result<Vec<SeriesKey>, QueryError> {
    let mut wanted: HashSet<(SeriesKey, DateTime<Utc>)> = HashSet::new();
    let (mut qids, mut dbids, mut userids, mut los) = (vec![], vec![], vec![], vec![]);
    for p in &deferred {
        for piece in &p.pieces {
            if let Piece::Range {
                run,
                trusted: false,
            } = piece
            {
                if wanted.insert((p.key, run.t0)) {
                    qids.push(p.key.queryid);
                    dbids.push(p.key.dbid as i64);
                    userids.push(p.key.userid as i64);
                    los.push(run.t0);
                }
            }
        }
    }
    out.ranges_unnested = wanted.len() as u64;
    let params: Vec<&(dyn ToSql + Sync)> = if layout.multi() {
        vec![&qids, &dbids, &userids, &los, &srvid]
    } else {
        vec![&qids, &dbids, &userids, &los]
    };
    let stream = client.query_raw(&layout.ranges_sql(), params).await?;
    pin_mut!(stream);
    let mut runs: HashMap<SeriesKey, RangeRuns<M>> = HashMap::new();
    let mut points_wanted: HashSet<SeriesKey> = HashSet::new();
    while let Some(row) = stream.try_next().await? {
        out.rows += 1;
        let key = key_of(&row);
        let lo: DateTime<Utc> = row.get(4);
        if !wanted.contains(&(key, lo)) {
            continue; // the other `sub` variant of the same query and range
        }
        match run_at(&row, 6) {
            Some(run) => {
                runs.entry(key).or_default().insert(lo, run);
            }
            None => {
                points_wanted.insert(key);
            }
        }
    }
    for p in deferred {
        if points_wanted.contains(&p.key) {
            continue;
        }
        if let Some(acc) = fold(&p.pieces, runs.get(&p.key)) {
            out.series.push((p.key, acc));
        }
    }
    Ok(points_wanted.into_iter().collect())
}

/// The points of `keys` in [from, to], folded one by one (the reference read, for the
/// keys whose pieces interleave).
async fn read_keys<const M: usize>(
    client: &Session,
    layout: &Layout,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    keys: &[SeriesKey],
    out: &mut SeriesRead<M>,
) -> Result<(), QueryError> {
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
    let params: Vec<&(dyn ToSql + Sync)> = if layout.multi() {
        vec![&qids, &dbids, &userids, &from, &to, &srvid]
    } else {
        vec![&qids, &dbids, &userids, &from, &to]
    };
    let stream = client.query_raw(&layout.key_points_sql(), params).await?;
    pin_mut!(stream);
    let mut series = Vec::new();
    while let Some(row) = stream.try_next().await? {
        out.rows += 1;
        let key = key_of(&row);
        if !wanted.contains(&key) {
            continue; // another `sub` variant of the same query
        }
        let ts: DateTime<Utc> = row.get(4);
        out.saw(ts, ts);
        push_point(&mut series, key, ts, values::<M>(&row, 5));
    }
    out.series.extend(series);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn key() -> SeriesKey {
        SeriesKey {
            dbid: 1,
            userid: 1,
            queryid: 1,
            sub: -1,
        }
    }

    /// A run of one point.
    fn single(min: i64, v: [f64; 2]) -> Run<2> {
        Run {
            t0: t(min),
            t1: t(min),
            first: v,
            last: v,
            inc: [0.0; 2],
        }
    }

    #[test]
    fn first_range_and_ranges_after_a_decrease_are_not_trusted() {
        let mut p = Pending::<2>::new(key());
        p.range(t(0), t(10), [10.0, 1.0], [20.0, 2.0]);
        p.range(t(15), t(25), [25.0, 2.5], [30.0, 3.0]); // after an untrusted one
        p.run(single(30, [5.0, 0.5])); // reset
        p.range(t(35), t(45), [6.0, 0.6], [9.0, 0.9]);
        p.range(t(50), t(60), [1.0, 0.1], [2.0, 0.2]); // decrease: untrusted
        p.range(t(65), t(70), [3.0, 0.3], [4.0, 0.4]); // after an untrusted one
        let trust: Vec<bool> = p
            .pieces
            .iter()
            .filter_map(|x| match x {
                Piece::Range { trusted, .. } => Some(*trusted),
                _ => None,
            })
            .collect();
        // The first range is unnested, and so is the one after it (its predecessor's
        // end is not known until then); after a run, ranges are checked again.
        assert_eq!(trust, vec![false, false, true, false, false]);
        assert!(p.any_untrusted);
        assert!(!p.overlap);
    }

    #[test]
    fn interleaved_pieces_are_seen() {
        let mut p = Pending::<2>::new(key());
        p.run(Run {
            t0: t(0),
            t1: t(10),
            first: [1.0, 1.0],
            last: [3.0, 3.0],
            inc: [2.0, 2.0],
        });
        assert!(!p.overlap);
        // A second history row of the same key and range (4.1 `track = all`).
        p.run(Run {
            t0: t(0),
            t1: t(10),
            first: [5.0, 5.0],
            last: [6.0, 6.0],
            inc: [1.0, 1.0],
        });
        assert!(p.overlap);
        let mut q = Pending::<2>::new(key());
        q.range(t(0), t(10), [1.0, 1.0], [2.0, 2.0]);
        q.range(t(10), t(20), [2.0, 2.0], [3.0, 3.0]);
        assert!(q.overlap, "a range starting where the previous one ends");
    }

    fn range(from: i64, to: i64, first: [f64; 2], last: [f64; 2], trusted: bool) -> Piece<2> {
        Piece::Range {
            run: Run {
                t0: t(from),
                t1: t(to),
                first,
                last,
                inc: std::array::from_fn(|i| last[i] - first[i]),
            },
            trusted,
        }
    }

    #[test]
    fn trusted_ranges_fold_like_their_points() {
        // Points 10, 12, 14 | 20, 22 | 25: ranges [10..14] and [20..22] then a point.
        let pieces = vec![
            Piece::Run(single(0, [10.0, 1.0])),
            range(5, 15, [12.0, 1.0], [14.0, 2.0], true),
            range(20, 20, [20.0, 3.0], [20.0, 3.0], true),
            Piece::Run(single(25, [25.0, 4.0])),
        ];
        let d = fold(&pieces, None).unwrap().finish(Some(t(0)));
        assert_eq!(d, [15.0, 3.0]);
    }

    #[test]
    fn untrusted_ranges_use_their_runs() {
        let pieces = vec![range(0, 10, [1.0, 1.0], [50.0, 5.0], false)];
        // 40, 50, reset to 1, 3: increments 10 + 1 + 2.
        let points = [
            (t(0), [40.0, 4.0]),
            (t(5), [50.0, 5.0]),
            (t(7), [1.0, 1.0]),
            (t(10), [3.0, 1.5]),
        ];
        let mut u = HashMap::new();
        u.insert(t(0), Run::of(&points).unwrap());
        let d = fold(&pieces, Some(&u)).unwrap().finish(Some(t(0)));
        assert_eq!(d[0], 13.0);
    }
}
