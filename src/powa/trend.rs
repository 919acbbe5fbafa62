//! One query's numbers snapshot by snapshot, for a trend chart.
//!
//! The window reader ([`super::reader`]) keeps only each query's deltas over the whole
//! window: that is all the analyzers need, and what keeps the collectors small. A chart
//! needs the steps between snapshots, and only for the few insights a channel charts, so
//! they are read here, on demand, for one query at a time: every point of its series in
//! the window and in each baseline window (history arrays unnested, current rows), with
//! the reader's rules — rows of one snapshot summed, a counter that goes down is a reset
//! that counts its new value, a series first seen after the anchor counts from zero.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::discovery::{PowaInfo, ServerInfo};
use super::layout::Layout;
use super::reader::{anchor_before, Names, CALLS, COUNTERS, EXEC_TIME};
use super::session::{QueryError, Session};
use sentinel_actors::{TrendPoint, TrendSeries, Window};

const N: usize = COUNTERS.len();

/// Which query: its database oid and queryid on one server (all its users and its
/// top-level and nested variants together, as a chart shows the statement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrendQuery {
    pub dbid: u32,
    pub queryid: i64,
}

/// The database oid behind the `database` label of an insight: its name as PoWA knows it,
/// or "oid N" when PoWA had no name.
pub async fn database_oid(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
    label: &str,
) -> Result<Option<u32>, QueryError> {
    if let Some(oid) = label.strip_prefix("oid ").and_then(|o| o.parse().ok()) {
        return Ok(Some(oid));
    }
    let Names { dbs, .. } = super::reader::read_names(client, info, server).await?;
    Ok(dbs
        .into_iter()
        .find(|(_, name)| name.as_ref() == label)
        .map(|(oid, _)| oid))
}

/// The per-snapshot points of `q` in each of `windows` (`(offset_secs, window)`, the
/// window itself at offset 0), in that order. A window PoWA holds nothing of gives a
/// series without points.
pub async fn read_trend(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
    q: TrendQuery,
    windows: &[(i64, Window)],
) -> Result<Vec<TrendSeries>, QueryError> {
    let layout = Layout::statements(info);
    let sql = layout.query_points_sql();
    let mut out = Vec::with_capacity(windows.len());
    for &(offset_secs, w) in windows {
        let anchor = anchor_before(client, info, server.srvid, w.start).await?;
        let from = anchor.unwrap_or(w.start);
        let dbid = i64::from(q.dbid);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from, &w.end, &q.queryid, &dbid];
        if layout.multi() {
            params.push(&server.srvid);
        }
        let rows = client.query(&sql, &params).await?;
        let points = rows.iter().map(|r| {
            let key = (
                r.get::<_, i64>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2),
                r.get::<_, i16>(3),
            );
            let ts: DateTime<Utc> = r.get(4);
            let v: [f64; N] = std::array::from_fn(|i| r.get::<_, f64>(5 + i));
            (key, ts, v[CALLS], v[EXEC_TIME])
        });
        out.push(TrendSeries {
            offset_secs,
            start: w.start,
            end: w.end,
            points: steps(points, anchor.or(Some(from))),
        });
    }
    Ok(out)
}

/// The steps between consecutive snapshots of `points` (`(series key, ts, calls,
/// exec_time_ms)`, ordered by key then time), summed over the series by snapshot time.
/// A series' first point is the anchor of its steps, unless it comes after `anchor` (the
/// query appeared inside the window): then it counts from zero.
pub fn steps<K: PartialEq>(
    points: impl IntoIterator<Item = (K, DateTime<Utc>, f64, f64)>,
    anchor: Option<DateTime<Utc>>,
) -> Vec<TrendPoint> {
    let mut by_ts: BTreeMap<DateTime<Utc>, (f64, f64)> = BTreeMap::new();
    // (key, ts, calls, time) of the point being summed, and the previous snapshot's.
    let mut cur: Option<(K, DateTime<Utc>, f64, f64)> = None;
    let mut prev: Option<(f64, f64)> = None;
    let step = |by_ts: &mut BTreeMap<_, (f64, f64)>,
                ts: DateTime<Utc>,
                c: f64,
                t: f64,
                prev: Option<(f64, f64)>| {
        let (dc, dt) = match prev {
            // A counter that went down: a reset, counting what came after it.
            Some((pc, pt)) if c < pc || t < pt => (c, t),
            Some((pc, pt)) => (c - pc, t - pt),
            None if anchor.is_some_and(|a| ts > a) => (c, t),
            None => return,
        };
        let e = by_ts.entry(ts).or_default();
        e.0 += dc.max(0.0);
        e.1 += dt.max(0.0);
    };
    for (k, ts, c, t) in points {
        match cur.take() {
            Some((ck, cts, cc, ct)) if ck == k && cts == ts => {
                cur = Some((ck, cts, cc + c, ct + t))
            }
            Some((ck, cts, cc, ct)) => {
                step(&mut by_ts, cts, cc, ct, prev);
                prev = (ck == k).then_some((cc, ct));
                cur = Some((k, ts, c, t));
            }
            None => cur = Some((k, ts, c, t)),
        }
    }
    if let Some((_, cts, cc, ct)) = cur {
        step(&mut by_ts, cts, cc, ct, prev);
    }
    by_ts
        .into_iter()
        .map(|(at, (calls, time))| TrendPoint {
            at,
            calls,
            mean_time_ms: if calls > 0.0 { time / calls } else { 0.0 },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + min * 60, 0).unwrap()
    }

    #[test]
    fn steps_between_snapshots_summed_over_series() {
        let pts = vec![
            // user 1: anchor at 0, then +10 calls / 100 ms, +5 / 500 ms.
            (1, t(0), 100.0, 1000.0),
            (1, t(5), 110.0, 1100.0),
            (1, t(10), 115.0, 1600.0),
            // user 2: appears at 5 (after the anchor): counts from zero.
            (2, t(5), 10.0, 10.0),
            (2, t(10), 20.0, 30.0),
        ];
        let s = steps(pts, Some(t(0)));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].at, s[0].calls), (t(5), 20.0));
        assert_eq!(s[0].mean_time_ms, 110.0 / 20.0);
        assert_eq!((s[1].at, s[1].calls), (t(10), 15.0));
        assert_eq!(s[1].mean_time_ms, 520.0 / 15.0);
    }

    #[test]
    fn a_reset_counts_its_new_value_and_duplicates_are_one_snapshot() {
        let pts = vec![
            (1, t(0), 50.0, 500.0),
            (1, t(5), 60.0, 600.0),
            (1, t(5), 1.0, 1.0), // track = all: a nested row of the same snapshot
            (1, t(10), 4.0, 40.0), // reset
        ];
        let s = steps(pts, Some(t(0)));
        assert_eq!(s[0].calls, 11.0);
        assert_eq!((s[1].calls, s[1].mean_time_ms), (4.0, 10.0));
    }
}
