//! Hand-built windows for the analyzers' unit tests: statements, wait samples, and the
//! quals of a table `public.orders` for the index advisor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use sentinel_actors::{Insight, Window};

use crate::analyze::{MissingIndexAnalyzer, MissingIndexSettings};
use crate::powa::discovery::ServerInfo;
use crate::powa::qualstats::{
    DbCatalog, IndexDef, Operator, Predicate, QualKey, QualStats, QualsWindow, Relation,
};
use crate::powa::reader::{
    QueryKey, QueryStats, StatementsWindow, CALLS, COUNTERS, EXEC_TIME, ROWS,
};
use crate::powa::waits::WaitStat;

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
    StatementsWindow::new(
        "main",
        ServerInfo::named(1, "db1"),
        Window { start, end: end() },
        queries,
    )
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

/// `samples` of wait event `event_type:event` for query `queryid` of database 1.
pub fn wait(queryid: i64, event_type: &str, event: &str, samples: f64) -> WaitStat {
    WaitStat {
        dbid: 1,
        queryid,
        event_type: event_type.into(),
        event: event.into(),
        samples,
    }
}

/// Operator oids of the quals: `int = int`, `text = text`, `int > int`, `text ~~ text`.
pub const INT_EQ: u32 = 96;
pub const TEXT_EQ: u32 = 98;
pub const INT_GT: u32 = 521;
pub const LIKE: u32 = 1209;
/// The oid of `public.orders`.
pub const ORDERS: u32 = 100;

fn op(name: &str, btree: bool, equality: bool) -> Operator {
    Operator {
        name: name.into(),
        btree,
        equality,
    }
}

/// Predicate group `qualid` of query `queryid` (database 1, user 10) on `orders`: filters
/// on `(attnum, opno)`, run `occ` times on `rows` rows each, keeping `kept` of them.
pub fn qual(
    qualid: i64,
    queryid: i64,
    preds: &[(i32, u32)],
    occ: f64,
    rows: f64,
    kept: f64,
) -> QualStats {
    QualStats {
        key: QualKey {
            dbid: 1,
            userid: 10,
            queryid,
            qualid,
        },
        predicates: preds
            .iter()
            .map(|(attnum, opno)| Predicate {
                relid: ORDERS,
                attnum: *attnum,
                opno: *opno,
                eval_type: 'f',
            })
            .collect(),
        occurrences: occ,
        execution_count: occ * rows,
        nbfiltered: occ * (rows - kept),
    }
}

/// `public.orders` (id, customer_id, status, created_at, "Weird Col") of `rows` rows, with
/// a btree index on each of `indexes`' column lists.
pub fn orders(rows: f64, indexes: Vec<Vec<i32>>) -> Relation {
    Relation {
        schema: "public".into(),
        name: "orders".into(),
        rows,
        columns: BTreeMap::from([
            (1, "id".to_string()),
            (2, "customer_id".to_string()),
            (3, "status".to_string()),
            (4, "created_at".to_string()),
            (5, "Weird Col".to_string()),
        ]),
        indexes: Some(
            indexes
                .into_iter()
                .enumerate()
                .map(|(i, columns)| IndexDef {
                    name: format!("ix{i}"),
                    am: "btree".into(),
                    columns,
                    partial: false,
                })
                .collect(),
        ),
    }
}

/// The quals of database `app` (oid 1) with the operators above and a text per query;
/// with `rel`, its catalog was read and holds `orders` as `rel`.
pub fn quals(qs: Vec<QualStats>, rel: Option<Relation>) -> QualsWindow {
    let mut w = QualsWindow {
        quals: qs,
        databases: HashMap::from([(1, "app".to_string())]),
        operators: HashMap::from([
            (INT_EQ, op("=", true, true)),
            (TEXT_EQ, op("=", true, true)),
            (INT_GT, op(">", true, false)),
            (LIKE, op("~~", false, false)),
        ]),
        ..Default::default()
    };
    for q in &w.quals {
        w.texts.insert(
            (q.key.queryid, 1, 10),
            format!("SELECT * FROM orders WHERE /* {} */ x = $1", q.key.queryid),
        );
    }
    if let Some(r) = rel {
        w.catalogs.insert(
            1,
            DbCatalog {
                relations: HashMap::from([(ORDERS, r)]),
            },
        );
    }
    w
}

/// The index advisor's insights on the quals `q` of [`window`], with the default settings.
pub fn advise(q: QualsWindow) -> Vec<Insight> {
    advise_with(q, MissingIndexSettings::default())
}

/// [`advise`] with settings `s`.
pub fn advise_with(q: QualsWindow, s: MissingIndexSettings) -> Vec<Insight> {
    let mut w = window(vec![]);
    w.quals = Some(Arc::new(q));
    MissingIndexAnalyzer::new(s).analyze_window(&w)
}
