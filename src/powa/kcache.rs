//! Per-query CPU time and physical I/O from pg_stat_kcache, as PoWA recorded them
//! (`powa_kcache_metrics`, whose array column is `metrics`, plus the `_current` table).
//!
//! Units as PoWA stores them: CPU in seconds, reads and writes in bytes of real disk I/O
//! (not blocks). Planning and execution (PoWA 4.1+) are added together, and so are the
//! top-level and nested rows (`top`), which are separate series of one query. Deltas use
//! the same anchored, reset-aware stepping as the statements reader, with user and system
//! time as reset detectors.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::discovery::PowaInfo;
use super::reader::SeriesAcc;

/// One query's kcache deltas over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Kcache {
    pub user_time_s: f64,
    pub system_time_s: f64,
    pub reads_bytes: f64,
    pub writes_bytes: f64,
}

impl Kcache {
    pub fn cpu_time_ms(&self) -> f64 {
        (self.user_time_s + self.system_time_s) * 1000.0
    }

    pub fn io_bytes(&self) -> f64 {
        self.reads_bytes + self.writes_bytes
    }
}

/// Field expressions for user, system, reads, writes, in that order.
fn fields(info: &PowaInfo) -> [String; 4] {
    let split = (info.version.major, info.version.minor) >= (4, 1);
    ["user_time", "system_time", "reads", "writes"].map(|f| {
        if split {
            format!("coalesce((m).plan_{f}, 0)::float8 + coalesce((m).exec_{f}, 0)::float8")
        } else {
            format!("coalesce((m).{f}, 0)::float8")
        }
    })
}

fn sql(info: &PowaInfo) -> String {
    let s = &info.schema;
    let (srv_h, srv_c) = if info.version.multi_server() {
        ("h.srvid = $3 AND ", "c.srvid = $3 AND ")
    } else {
        ("", "")
    };
    let f = fields(info).join(", ");
    format!(
        "WITH pts AS ( \
           SELECT h.dbid, h.userid, h.queryid, m \
           FROM {s}.powa_kcache_metrics h CROSS JOIN LATERAL unnest(h.metrics) m \
           WHERE {srv_h}h.coalesce_range && tstzrange($1::timestamptz, $2::timestamptz, '[]') \
             AND (m).ts BETWEEN $1 AND $2 \
           UNION ALL \
           SELECT c.dbid, c.userid, c.queryid, c.metrics \
           FROM {s}.powa_kcache_metrics_current c \
           WHERE {srv_c}(c.metrics).ts BETWEEN $1 AND $2) \
         SELECT dbid::int8, userid::int8, queryid, (m).ts, {f} \
         FROM pts ORDER BY dbid, userid, queryid, (m).ts"
    )
}

/// Reads kcache deltas for [from, to] keyed by (dbid, userid, queryid). `anchor` is the
/// statements reader's anchor, so both count a new query the same way.
pub async fn read_kcache(
    client: &Client,
    info: &PowaInfo,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    anchor: Option<DateTime<Utc>>,
) -> Result<HashMap<(u32, u32, i64), Kcache>, tokio_postgres::Error> {
    let params: Vec<&(dyn ToSql + Sync)> = if info.version.multi_server() {
        vec![&from, &to, &srvid]
    } else {
        vec![&from, &to]
    };
    let stream = client.query_raw(&sql(info), params).await?;
    pin_mut!(stream);
    let mut series: Vec<((u32, u32, i64), SeriesAcc<4>)> = Vec::new();
    while let Some(row) = stream.try_next().await? {
        let key = (
            row.get::<_, i64>(0) as u32,
            row.get::<_, i64>(1) as u32,
            row.get::<_, i64>(2),
        );
        let ts: DateTime<Utc> = row.get(3);
        let v: [f64; 4] = std::array::from_fn(|i| row.get::<_, f64>(4 + i));
        match series.last_mut() {
            Some((k, acc)) if *k == key => acc.push(ts, v),
            _ => series.push((key, SeriesAcc::new(ts, v))),
        }
    }
    Ok(series
        .into_iter()
        .map(|(k, acc)| {
            let d = acc.finish(anchor);
            (
                k,
                Kcache {
                    user_time_s: d[0],
                    system_time_s: d[1],
                    reads_bytes: d[2],
                    writes_bytes: d[3],
                },
            )
        })
        .collect())
}
