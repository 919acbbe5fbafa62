//! The predicates (quals) PoWA recorded from pg_qualstats for one server over a window:
//! which relation, columns and operators each AND-group filters on, in which queries, how
//! often it ran and how many rows it threw away. This is the raw material of the
//! missing-index advisor.
//!
//! Facts this reader relies on (PoWA 3.2, 4.x and 5.x share them):
//! * `powa_qualstats_quals` holds each group's predicates as `qual_type[]`
//!   (relid, attnum, opno, eval_type) — numbers, not names;
//! * counters live in `powa_qualstats_quals_history` (coalesced `records` arrays) and
//!   `powa_qualstats_quals_history_current` (flat columns). They are **per-snapshot
//!   deltas** (PoWA resets pg_qualstats after each snapshot), so a window is a plain sum of
//!   the rows whose `ts` falls in (start, end]; the coalesce ranges' mins/maxs are useless.
//!   PoWA 5.x in local mode never actually runs that reset (seen on 5.0.2 and 5.1.2: 5,
//!   10, 15 for three snapshots of five executions each), so there the values are
//!   cumulative: a window is the last value in it minus the last value before it (a qual
//!   with no point before the window was born in it and counts from zero), and a value that
//!   drops is an eviction from a full pg_qualstats, not new work (see [`step`]).
//! * `occurences` = executions that used the predicate, `execution_count` = rows it was
//!   evaluated on, `nbfiltered` = rows it discarded; the filter ratio is
//!   nbfiltered / execution_count.
//!
//! Names: PoWA 4.x and 3.x keep no catalog, and a relation oid only means something in
//! its own database of its own server, so table and column names (and existing indexes)
//! come from a read-only connection to the monitored database
//! ([`super::monitored`]): configured, or the repository's own connection for `local`,
//! or the `powa_servers` entry of a remote server. PoWA 5.x keeps `powa_catalog_*`
//! snapshots for remote servers, used when present. Operators are built-in for nearly
//! every qual worth an index, and built-in operator oids are the same on every PostgreSQL,
//! so their names and btree strategies come from the repository's own catalog.
//!
//! The example constants PoWA keeps (`powa_qualstats_constvalues_*`) are never read: they
//! may hold personal data and must not end up in a chat.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio_postgres::types::ToSql;

use super::connect::describe_pg_error;
use super::discovery::{PowaInfo, ServerInfo};
use super::error::PowaError;
use super::reader::TEXT_LIMIT;
use super::session::{QueryError, Session};
use sentinel_actors::Window;

/// The module name PoWA gives pg_qualstats in `powa_functions`.
pub const MODULE: &str = "pg_qualstats";

/// Identity of one AND-group of predicates in one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualKey {
    pub dbid: u32,
    pub userid: u32,
    pub queryid: i64,
    pub qualid: i64,
}

/// One predicate of a group: `relid.attnum <opno> ?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Predicate {
    pub relid: u32,
    pub attnum: i32,
    pub opno: u32,
    /// `f`: evaluated as a filter after a scan; `i`: used as an index condition (as first
    /// planned: pg_qualstats keeps the type it saw first).
    pub eval_type: char,
}

/// One group's counters summed over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct QualStats {
    pub key: QualKey,
    pub predicates: Vec<Predicate>,
    /// Executions that evaluated the group.
    pub occurrences: f64,
    /// Rows the group was evaluated on.
    pub execution_count: f64,
    /// Rows the group discarded.
    pub nbfiltered: f64,
}

impl QualStats {
    /// Share of evaluated rows the group discarded (0 when never evaluated).
    pub fn filter_ratio(&self) -> f64 {
        if self.execution_count > 0.0 {
            (self.nbfiltered / self.execution_count).min(1.0)
        } else {
            0.0
        }
    }

    /// Rows discarded per execution.
    pub fn filtered_per_execution(&self) -> f64 {
        if self.occurrences > 0.0 {
            self.nbfiltered / self.occurrences
        } else {
            0.0
        }
    }
}

/// What an operator can do for a btree index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// Member of a btree operator family.
    pub btree: bool,
    /// Btree equality (strategy 3): such columns go first in an index.
    pub equality: bool,
}

/// An existing index of a relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub am: String,
    /// Key columns by attnum; 0 for an expression.
    pub columns: Vec<i32>,
    pub partial: bool,
}

/// A relation of a monitored database.
#[derive(Clone, Debug, PartialEq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    /// Planner estimate (`reltuples`); negative when never analysed.
    pub rows: f64,
    pub columns: BTreeMap<i32, String>,
    /// None when the source knows no indexes (PoWA 5 catalog snapshots).
    pub indexes: Option<Vec<IndexDef>>,
}

/// Names of one monitored database's relations, for the relations the quals touch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbCatalog {
    pub relations: HashMap<u32, Relation>,
}

/// One server's quals over one window, with whatever names could be resolved.
#[derive(Clone, Debug, Default)]
pub struct QualsWindow {
    pub quals: Vec<QualStats>,
    /// Database names by oid.
    pub databases: HashMap<u32, String>,
    /// Normalised query texts (cut to [`TEXT_LIMIT`]) by (queryid, dbid, userid).
    pub texts: HashMap<(i64, u32, u32), String>,
    /// Operators by oid.
    pub operators: HashMap<u32, Operator>,
    /// Catalogs by database oid, for the databases that could be read.
    pub catalogs: HashMap<u32, DbCatalog>,
    /// Hypothetical-index checks done on the monitored server, if any.
    pub validations: Vec<super::hypopg::Validation>,
    /// Why names, catalogs or validations are missing (one line each).
    pub notes: Vec<String>,
    /// The values were cumulative (PoWA 5 local mode) and were stepped.
    pub cumulative: bool,
    /// Rows the repository returned for the counters (points in PoWA 5 local mode, one
    /// per predicate group elsewhere), for the rows-read metric.
    pub rows: u64,
    /// Why the server itself could not be reached for names (no `monitored` table and
    /// `reach_servers` off, no readable `powa_servers` entry, …).
    pub why_no_names: Option<String>,
    /// Per database oid whose catalog could not be read though the server was reached:
    /// why, and what to do (a role without CONNECT there, say), for the findings that
    /// must show oids.
    pub unnamed: HashMap<u32, String>,
    /// pg_stat_statements' calls per (queryid, dbid, userid) in the same window.
    /// pg_qualstats undercounts executions: it samples them (one in `max_connections` by
    /// default) and stops tracking new predicates while its table is full
    /// (`pg_qualstats.max`), while calls are exact.
    pub calls: HashMap<(i64, u32, u32), f64>,
}

impl QualsWindow {
    pub fn relation(&self, dbid: u32, relid: u32) -> Option<&Relation> {
        self.catalogs.get(&dbid)?.relations.get(&relid)
    }

    /// How often the query of `q` ran in the window: its pg_stat_statements calls, or
    /// pg_qualstats' occurrences when those are more (a predicate on the inner side of a
    /// nested loop runs many times per call).
    pub fn executions(&self, q: &QualStats) -> f64 {
        let calls = self
            .calls
            .get(&(q.key.queryid, q.key.dbid, q.key.userid))
            .copied()
            .unwrap_or(0.0);
        q.occurrences.max(calls)
    }

    /// How a DBA names relation `relid` of `database` by hand, while the sentinel cannot.
    pub fn name_by_hand(relid: u32, database: &str) -> String {
        format!("SELECT {relid}::regclass in {database} names the table.")
    }

    /// Why a relation of database `dbid` is known by its oid only, when that is known.
    pub fn why_unnamed(&self, dbid: u32) -> Option<&str> {
        self.unnamed
            .get(&dbid)
            .or(self.why_no_names.as_ref())
            .map(String::as_str)
    }

    pub fn text(&self, k: &QualKey) -> Option<&str> {
        self.texts
            .get(&(k.queryid, k.dbid, k.userid))
            .map(String::as_str)
    }
}

/// Reads the quals of `server` over `window`, with names from the repository (database
/// names, query texts, built-in operators and, in PoWA 5, catalog snapshots). `None` when
/// PoWA does not collect pg_qualstats for this server.
pub async fn read_quals(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
    window: Window,
) -> Result<Option<QualsWindow>, PowaError> {
    if !server.modules.iter().any(|m| m == MODULE) {
        return Ok(None);
    }
    let ctx = |what: &str, e: QueryError| PowaError::reading(client, &server.name, what, e);
    let multi = info.version.multi_server();
    // PoWA 5 formats the local reset statement but never runs it.
    let cumulative = info.version.major >= 5 && server.srvid == 0;
    let srvid = server.srvid;
    let mut out = QualsWindow {
        cumulative,
        ..Default::default()
    };

    let params: Vec<&(dyn ToSql + Sync)> = if multi {
        vec![&window.start, &window.end, &srvid]
    } else {
        vec![&window.start, &window.end]
    };
    let layout = current_layout(client, info)
        .await
        .map_err(|e| ctx("the pg_qualstats tables' layout", e))?
        .ok_or_else(|| {
            PowaError::Read(format!(
                "server `{}`: PoWA {}'s pg_qualstats tables have no occurences/execution_count counters; reading quals is supported from PoWA 3.2 on",
                server.name, info.version
            ))
        })?;
    let rows = client
        .query(&counters_sql(info, cumulative, layout), &params)
        .await
        .map_err(|e| ctx("pg_qualstats history", e))?;
    out.rows = rows.len() as u64;
    let mut stats: BTreeMap<QualKey, QualStats> = BTreeMap::new();
    let mut series: BTreeMap<QualKey, [f64; 3]> = BTreeMap::new();
    for r in &rows {
        let key = QualKey {
            qualid: r.get(0),
            queryid: r.get(1),
            dbid: r.get::<_, i64>(2) as u32,
            userid: r.get::<_, i64>(3) as u32,
        };
        let v = [r.get::<_, f64>(4), r.get::<_, f64>(5), r.get::<_, f64>(6)];
        let inc = if cumulative {
            // Points come in ts order per key; those up to the window's start only anchor.
            let ts: chrono::DateTime<chrono::Utc> = r.get(7);
            let prev = series.insert(key, v);
            if ts <= window.start {
                continue;
            }
            step(prev, v)
        } else {
            v
        };
        let e = stats.entry(key).or_insert_with(|| QualStats {
            key,
            predicates: Vec::new(),
            occurrences: 0.0,
            execution_count: 0.0,
            nbfiltered: 0.0,
        });
        e.occurrences += inc[0];
        e.execution_count += inc[1];
        e.nbfiltered += inc[2];
    }
    stats.retain(|_, q| q.occurrences > 0.0);
    if stats.is_empty() {
        return Ok(Some(out));
    }

    let qualids: Vec<i64> = stats.keys().map(|k| k.qualid).collect();
    let queryids: Vec<i64> = stats.keys().map(|k| k.queryid).collect();
    let s = &info.schema;
    let srv = if multi { "srvid = $3 AND " } else { "" };
    let defs_sql = format!(
        "SELECT q.qualid, q.queryid, q.dbid::int8, q.userid::int8, \
                (x).relid::int8, (x).attnum::int4, (x).opno::int8, (x).eval_type::text \
         FROM {s}.powa_qualstats_quals q CROSS JOIN LATERAL unnest(q.quals) x \
         WHERE {srv}q.qualid = ANY($1) AND q.queryid = ANY($2)"
    );
    let p: Vec<&(dyn ToSql + Sync)> = if multi {
        vec![&qualids, &queryids, &srvid]
    } else {
        vec![&qualids, &queryids]
    };
    for r in client
        .query(&defs_sql, &p)
        .await
        .map_err(|e| ctx("pg_qualstats quals", e))?
    {
        let key = QualKey {
            qualid: r.get(0),
            queryid: r.get(1),
            dbid: r.get::<_, i64>(2) as u32,
            userid: r.get::<_, i64>(3) as u32,
        };
        if let Some(q) = stats.get_mut(&key) {
            let eval: String = r.get(7);
            let pred = Predicate {
                relid: r.get::<_, i64>(4) as u32,
                attnum: r.get(5),
                opno: r.get::<_, i64>(6) as u32,
                eval_type: eval.chars().next().unwrap_or('?'),
            };
            if !q.predicates.contains(&pred) {
                q.predicates.push(pred);
            }
        }
    }
    out.quals = stats
        .into_values()
        .filter(|q| !q.predicates.is_empty())
        .map(|mut q| {
            q.predicates.sort();
            q
        })
        .collect();

    // Database names and texts.
    let (db_sql, txt_sql) = if multi {
        (
            format!("SELECT oid::int8, datname::text FROM {s}.powa_databases WHERE srvid = $1"),
            format!(
                "SELECT queryid, dbid::int8, userid::int8, left(query, {TEXT_LIMIT}) \
                 FROM {s}.powa_statements WHERE srvid = $2 AND queryid = ANY($1)"
            ),
        )
    } else {
        (
            format!("SELECT oid::int8, datname::text FROM {s}.powa_databases"),
            format!(
                "SELECT queryid, dbid::int8, userid::int8, left(query, {TEXT_LIMIT}) \
                 FROM {s}.powa_statements WHERE queryid = ANY($1)"
            ),
        )
    };
    let db_rows = if multi {
        client.query(&db_sql, &[&srvid]).await
    } else {
        client.query(&db_sql, &[]).await
    }
    .map_err(|e| ctx("database names", e))?;
    out.databases = db_rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u32, r.get(1)))
        .collect();
    let ids: Vec<i64> = out.quals.iter().map(|q| q.key.queryid).collect();
    let txt_rows = if multi {
        client.query(&txt_sql, &[&ids, &srvid]).await
    } else {
        client.query(&txt_sql, &[&ids]).await
    }
    .map_err(|e| ctx("query texts", e))?;
    out.texts = txt_rows
        .iter()
        .map(|r| {
            (
                (
                    r.get::<_, i64>(0),
                    r.get::<_, i64>(1) as u32,
                    r.get::<_, i64>(2) as u32,
                ),
                r.get(3),
            )
        })
        .collect();

    // Built-in operators (oids below FirstNormalObjectId are fixed across installations).
    let opnos: Vec<i64> = out
        .quals
        .iter()
        .flat_map(|q| q.predicates.iter().map(|p| p.opno as i64))
        .filter(|o| *o < 16384)
        .collect();
    out.operators = read_operators(client, &opnos)
        .await
        .map_err(|e| ctx("operators", e))?;

    if info.version.major >= 5 && srvid > 0 {
        match read_powa_catalog(client, info, srvid, &out.quals).await {
            Ok(c) => out.catalogs = c,
            Err(e) => out.notes.push(format!(
                "PoWA catalog snapshots unreadable: {}",
                describe_pg_error(&e)
            )),
        }
    }
    Ok(Some(out))
}

/// The increment of a cumulative series at a point inside the window from its previous
/// point. Without a previous point the qual was born in the window: its values count
/// whole. A decrease of any counter means pg_qualstats evicted the entry (it is full) and
/// re-created it: the point only re-anchors the series. Counting the new values whole
/// would add the entries that come and go in a full pg_qualstats again and again (seen on
/// PoWA 5.1.2: executions grew 8 → 75 → 105 → 152 in three minutes on an idle server); the
/// executions between the eviction and the point are lost instead, which errs on the side
/// of fewer suggestions.
fn step(prev: Option<[f64; 3]>, cur: [f64; 3]) -> [f64; 3] {
    match prev {
        None => cur,
        Some(prev) if cur.iter().zip(prev).any(|(c, p)| *c < p) => [0.0; 3],
        Some(prev) => [cur[0] - prev[0], cur[1] - prev[1], cur[2] - prev[2]],
    }
}

/// How far before the window a cumulative series' anchor is looked for. PoWA records
/// every pg_qualstats entry at every snapshot, so one snapshot period would do; a day
/// covers any frequency and a collector that paused.
const ANCHOR_LOOKBACK: &str = "1 day";

/// How `powa_qualstats_quals_history_current` stores its counters: flat columns (3.2,
/// 4.x) or one composite `record` column (the layout of every other current table, which
/// later versions may adopt). None when neither is there (PoWA before 3.2).
async fn current_layout(
    client: &Session,
    info: &PowaInfo,
) -> Result<Option<&'static str>, QueryError> {
    let schema = info.schema.trim_matches('"').replace("\"\"", "\"");
    let cols: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'powa_qualstats_quals_history_current' \
               AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has = |c: &str| cols.iter().any(|x| x == c);
    Ok(if has("execution_count") && has("occurences") {
        Some("c")
    } else if has("record") {
        Some("(c.record)")
    } else {
        None
    })
}

fn counters_sql(info: &PowaInfo, cumulative: bool, c: &str) -> String {
    let s = &info.schema;
    let (srv_h, srv_c) = if info.version.multi_server() {
        ("h.srvid = $3 AND ", "c.srvid = $3 AND ")
    } else {
        ("", "")
    };
    // Cumulative series also read their anchor, the last point before the window.
    let from = if cumulative {
        format!("($1::timestamptz - interval '{ANCHOR_LOOKBACK}')")
    } else {
        "$1::timestamptz".to_string()
    };
    let pts = format!(
        "SELECT h.qualid, h.queryid, h.dbid, h.userid, (r).ts AS ts, \
                (r).occurences AS o, (r).execution_count AS e, (r).nbfiltered AS f \
         FROM {s}.powa_qualstats_quals_history h CROSS JOIN LATERAL unnest(h.records) r \
         WHERE {srv_h}h.coalesce_range && tstzrange({from}, $2::timestamptz, '(]') \
           AND (r).ts > {from} AND (r).ts <= $2 \
         UNION ALL \
         SELECT c.qualid, c.queryid, c.dbid, c.userid, {c}.ts, \
                {c}.occurences, {c}.execution_count, {c}.nbfiltered \
         FROM {s}.powa_qualstats_quals_history_current c \
         WHERE {srv_c}{c}.ts > {from} AND {c}.ts <= $2"
    );
    if cumulative {
        format!(
            "SELECT qualid, queryid, dbid::int8, userid::int8, \
                    coalesce(o, 0)::float8, coalesce(e, 0)::float8, coalesce(f, 0)::float8, ts \
             FROM ({pts}) p ORDER BY qualid, queryid, dbid, userid, ts"
        )
    } else {
        format!(
            "SELECT qualid, queryid, dbid::int8, userid::int8, \
                    coalesce(sum(o), 0)::float8, coalesce(sum(e), 0)::float8, \
                    coalesce(sum(f), 0)::float8 \
             FROM ({pts}) p GROUP BY qualid, queryid, dbid, userid"
        )
    }
}

/// Operator names and btree roles, from the catalog `client` is connected to.
pub async fn read_operators(
    client: &Session,
    opnos: &[i64],
) -> Result<HashMap<u32, Operator>, QueryError> {
    if opnos.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT o.oid::int8, o.oprname::text, \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_amop a JOIN pg_catalog.pg_am m ON m.oid = a.amopmethod \
                            WHERE a.amopopr = o.oid AND m.amname = 'btree'), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_amop a JOIN pg_catalog.pg_am m ON m.oid = a.amopmethod \
                            WHERE a.amopopr = o.oid AND m.amname = 'btree' AND a.amopstrategy = 3) \
             FROM pg_catalog.pg_operator o WHERE o.oid::int8 = ANY($1)",
            &[&opnos],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0) as u32,
                Operator {
                    name: r.get(1),
                    btree: r.get(2),
                    equality: r.get(3),
                },
            )
        })
        .collect())
}

/// Relations and columns from the monitored database's own catalog, with their indexes.
pub async fn read_catalog(client: &Session, relids: &[i64]) -> Result<DbCatalog, QueryError> {
    let mut cat = DbCatalog::default();
    if relids.is_empty() {
        return Ok(cat);
    }
    for r in client
        .query(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.reltuples::float8 \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid::int8 = ANY($1)",
            &[&relids],
        )
        .await?
    {
        cat.relations.insert(
            r.get::<_, i64>(0) as u32,
            Relation {
                schema: r.get(1),
                name: r.get(2),
                rows: r.get(3),
                columns: BTreeMap::new(),
                indexes: Some(Vec::new()),
            },
        );
    }
    for r in client
        .query(
            "SELECT attrelid::int8, attnum::int4, attname::text FROM pg_catalog.pg_attribute \
             WHERE attrelid::int8 = ANY($1) AND attnum > 0 AND NOT attisdropped",
            &[&relids],
        )
        .await?
    {
        if let Some(rel) = cat.relations.get_mut(&(r.get::<_, i64>(0) as u32)) {
            rel.columns.insert(r.get(1), r.get(2));
        }
    }
    for r in client
        .query(
            "SELECT i.indrelid::int8, ic.relname::text, m.amname::text, \
                    string_to_array(i.indkey::text, ' ')::int4[], i.indpred IS NOT NULL \
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_catalog.pg_am m ON m.oid = ic.relam \
             WHERE i.indrelid::int8 = ANY($1) AND i.indisvalid",
            &[&relids],
        )
        .await?
    {
        if let Some(Some(ix)) = cat
            .relations
            .get_mut(&(r.get::<_, i64>(0) as u32))
            .map(|rel| rel.indexes.as_mut())
        {
            ix.push(IndexDef {
                name: r.get(1),
                am: r.get(2),
                columns: r.get(3),
                partial: r.get(4),
            });
        }
    }
    Ok(cat)
}

/// PoWA 5's catalog snapshots of remote servers: names and sizes, no indexes.
async fn read_powa_catalog(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    quals: &[QualStats],
) -> Result<HashMap<u32, DbCatalog>, QueryError> {
    let s = &info.schema;
    let present: bool = client
        .query_one(
            &format!(
                "SELECT to_regclass('{}.powa_catalog_class') IS NOT NULL",
                s.replace('\'', "''")
            ),
            &[],
        )
        .await?
        .get(0);
    let mut out: HashMap<u32, DbCatalog> = HashMap::new();
    if !present {
        return Ok(out);
    }
    let relids: Vec<i64> = quals
        .iter()
        .flat_map(|q| q.predicates.iter().map(|p| p.relid as i64))
        .collect();
    for r in client
        .query(
            &format!(
                "SELECT c.dbid::int8, c.oid::int8, n.nspname, c.relname, c.reltuples::float8 \
                 FROM {s}.powa_catalog_class c JOIN {s}.powa_catalog_namespace n \
                   ON n.srvid = c.srvid AND n.dbid = c.dbid AND n.oid = c.relnamespace \
                 WHERE c.srvid = $1 AND c.oid::int8 = ANY($2)"
            ),
            &[&srvid, &relids],
        )
        .await?
    {
        out.entry(r.get::<_, i64>(0) as u32)
            .or_default()
            .relations
            .insert(
                r.get::<_, i64>(1) as u32,
                Relation {
                    schema: r.get(2),
                    name: r.get(3),
                    rows: r.get(4),
                    columns: BTreeMap::new(),
                    indexes: None,
                },
            );
    }
    for r in client
        .query(
            &format!(
                "SELECT dbid::int8, attrelid::int8, attnum::int4, attname \
                 FROM {s}.powa_catalog_attribute \
                 WHERE srvid = $1 AND attrelid::int8 = ANY($2) AND attnum > 0"
            ),
            &[&srvid, &relids],
        )
        .await?
    {
        if let Some(rel) = out
            .get_mut(&(r.get::<_, i64>(0) as u32))
            .and_then(|c| c.relations.get_mut(&(r.get::<_, i64>(1) as u32)))
        {
            rel.columns.insert(r.get(2), r.get(3));
        }
    }
    Ok(out)
}

/// What a collector needs to produce a server's [`QualsWindow`] each cycle: the
/// advisor's thresholds (to know which quals deserve a look on the monitored server) and
/// how to reach that server, if configured.
#[derive(Clone, Debug)]
pub struct QualsCollector {
    pub repository: String,
    pub settings: crate::analyze::missing_index::MissingIndexSettings,
    pub monitored: Option<super::monitored::MonitoredSettings>,
}

impl QualsCollector {
    /// The window's quals with every name that could be resolved; None when PoWA does
    /// not collect pg_qualstats for the server.
    pub async fn collect(
        &self,
        client: &Session,
        info: &PowaInfo,
        server: &ServerInfo,
        window: Window,
        calls: HashMap<(i64, u32, u32), f64>,
    ) -> Result<Option<Arc<QualsWindow>>, PowaError> {
        self.collect_routed(client, info, server, window, calls, None)
            .await
    }

    /// As [`QualsCollector::collect`]; `why_no_names` says why `monitored` is None, when
    /// it is.
    pub async fn collect_routed(
        &self,
        client: &Session,
        info: &PowaInfo,
        server: &ServerInfo,
        window: Window,
        calls: HashMap<(i64, u32, u32), f64>,
        why_no_names: Option<String>,
    ) -> Result<Option<Arc<QualsWindow>>, PowaError> {
        // A failure here must not cost the server its other analyses: it becomes a note
        // the advisor reports.
        let mut w = match read_quals(client, info, server, window).await {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(None),
            Err(e) => QualsWindow {
                notes: vec![e.to_string()],
                ..Default::default()
            },
        };
        w.calls = calls;
        match &self.monitored {
            Some(m) => {
                if !w.quals.is_empty() {
                    super::monitored::enrich(&mut w, &self.repository, server, m, &self.settings)
                        .await;
                }
            }
            None => w.why_no_names = why_no_names,
        }
        Ok(Some(Arc::new(w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_values_are_stepped_from_their_anchor_and_drops_only_reanchor() {
        // PoWA 5 local mode: 10 before the window (the anchor), then 25, 40, then an
        // eviction (5), then 12.
        let total = |anchor: Option<[f64; 3]>, pts: &[[f64; 3]]| {
            let mut prev = anchor;
            let mut total = [0.0; 3];
            for p in pts {
                for (t, i) in total.iter_mut().zip(step(prev, *p)) {
                    *t += i;
                }
                prev = Some(*p);
            }
            total
        };
        let pts = [
            [25.0, 2.5e4, 2.2e4],
            [40.0, 4e4, 3.6e4],
            [5.0, 5e3, 4e3],
            [12.0, 1.2e4, 1e4],
        ];
        assert_eq!(
            total(Some([10.0, 1e4, 9e3]), &pts),
            [15.0 + 15.0 + 7.0, 3.7e4, 3.3e4]
        );
        // Born inside the window: its first point counts whole.
        assert_eq!(
            total(None, &[[5.0, 5e4, 4.9e4], [10.0, 1e5, 9.8e4]]),
            [10.0, 1e5, 9.8e4]
        );
    }

    #[test]
    fn ratios() {
        let q = QualStats {
            key: QualKey {
                dbid: 1,
                userid: 1,
                queryid: 1,
                qualid: 1,
            },
            predicates: vec![],
            occurrences: 40.0,
            execution_count: 8_000_000.0,
            nbfiltered: 7_840_000.0,
        };
        assert!((q.filter_ratio() - 0.98).abs() < 1e-12);
        assert_eq!(q.filtered_per_execution(), 196_000.0);
        let never = QualStats {
            occurrences: 0.0,
            execution_count: 0.0,
            ..q
        };
        assert_eq!(
            (never.filter_ratio(), never.filtered_per_execution()),
            (0.0, 0.0)
        );
    }
}
