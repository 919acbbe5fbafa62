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

use super::cold;
use super::discovery::PowaInfo;
use super::layout::{Layout, SeriesKey};
use super::reader::{QueryKey, QueryStats, ReadMode};
use super::session::{QueryError, Session};
use sentinel_actors::Window;

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

/// Kcache deltas per series, keyed like the statements they belong to.
pub type KcacheByQuery = HashMap<QueryKey, Kcache>;

impl Kcache {
    pub fn from_delta(d: [f64; 4]) -> Kcache {
        Kcache {
            user_time_s: d[0],
            system_time_s: d[1],
            reads_bytes: d[2],
            writes_bytes: d[3],
        }
    }

    pub fn add(&mut self, o: &Kcache) {
        self.user_time_s += o.user_time_s;
        self.system_time_s += o.system_time_s;
        self.reads_bytes += o.reads_bytes;
        self.writes_bytes += o.writes_bytes;
    }
}

/// Reads kcache deltas for [from, to]. `anchor` is the statements reader's anchor, so
/// both count a new query the same way.
pub async fn read_kcache(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    anchor: Option<DateTime<Utc>>,
    mode: ReadMode,
) -> Result<KcacheByQuery, QueryError> {
    let layout = Layout::kcache(info);
    let read = cold::read::<4>(
        mode,
        client,
        &layout,
        srvid,
        Window {
            start: from,
            end: to,
        },
    )
    .await?;
    let mut out = KcacheByQuery::new();
    for (k, acc) in &read.series {
        let d = Kcache::from_delta(acc.finish(anchor));
        out.entry(series_query(info, *k)).or_default().add(&d);
    }
    Ok(out)
}

/// The statements key a kcache series belongs to: `top` is the statements' `toplevel`
/// where PoWA records that (4.2+); in 4.1 both variants belong to the one query.
pub fn series_query(info: &PowaInfo, k: SeriesKey) -> QueryKey {
    QueryKey {
        dbid: k.dbid,
        userid: k.userid,
        queryid: k.queryid,
        toplevel: (info.has_toplevel && k.sub >= 0).then_some(k.sub == 1),
    }
}

/// Gives each query its kcache numbers.
pub fn attach(queries: &mut [QueryStats], k: &KcacheByQuery) {
    for q in queries.iter_mut() {
        q.kcache = k.get(&q.key).copied();
    }
}
