//! Hand-built windows for the analyzers' unit tests.

use chrono::{TimeZone, Utc};
use sentinel_actors::Window;

use crate::powa::discovery::ServerInfo;
use crate::powa::reader::{
    QueryKey, QueryStats, StatementsWindow, CALLS, COUNTERS, EXEC_TIME, ROWS,
};

/// A query of database `app`, user `bob`, one row per call.
pub fn query(id: i64, calls: f64, total_ms: f64) -> QueryStats {
    let mut c = [0.0; COUNTERS.len()];
    c[CALLS] = calls;
    c[EXEC_TIME] = total_ms;
    c[ROWS] = calls;
    QueryStats {
        key: QueryKey {
            dbid: 1,
            userid: 10,
            queryid: id,
            toplevel: None,
        },
        database: Some("app".into()),
        user: Some("bob".into()),
        counters: c,
        kcache: None,
        query: Some(format!("SELECT * FROM t{id} WHERE x = $1").into()),
    }
}

/// The end of every fixture window.
pub fn end() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).unwrap()
}

/// One hour of server `db1` (srvid 1) ending at [`end`].
pub fn window(queries: Vec<QueryStats>) -> StatementsWindow {
    let start = end() - chrono::Duration::hours(1);
    StatementsWindow {
        repository: "main".into(),
        server: ServerInfo::named(1, "db1"),
        window: Window { start, end: end() },
        anchor: Some(start),
        last_ts: None,
        points: 0,
        queries,
        baselines: Vec::new(),
        waits: Vec::new(),
        quals: None,
        kcache_unmatched: None,
    }
}

/// [`window`] of `now`, with `then` as its baseline.
pub fn with_baseline(now: Vec<QueryStats>, then: Vec<QueryStats>) -> StatementsWindow {
    let mut w = window(now);
    w.baselines = vec![window(then)];
    w
}

/// [`window`] of `now`, with one baseline per element of `then` (nearest first).
pub fn with_baselines(now: Vec<QueryStats>, then: Vec<Vec<QueryStats>>) -> StatementsWindow {
    let mut w = window(now);
    w.baselines = then.into_iter().map(window).collect();
    w
}
