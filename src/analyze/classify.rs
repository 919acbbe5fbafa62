//! Why an expensive query is expensive, from its own evidence, before any advice: the
//! fix for a selective filter (an index) is wrong for a whole-table aggregate (precompute
//! it), a sort spilling to disk (work_mem), a query waiting on locks (the blocker) or one
//! burning CPU (the plan's per-row work).
//!
//! Evidence, and what PostgreSQL makes of it:
//! * pg_wait_sampling samples every backend every `profile_period` (10 ms by default): a
//!   query's samples in a wait event are time spent there. Lock samples worth 30 % of the
//!   execution time mean the query mostly waits for another transaction.
//! * `temp_blks_written` is written only when a sort, hash or materialisation outgrows
//!   `work_mem`; a megabyte per call (or a tenth of the blocks it touches) is the cost.
//! * pg_qualstats counts, per predicate group, the rows evaluated and the rows discarded:
//!   a filter that throws most rows away after reading them is what an index avoids. This
//!   is the only evidence for "missing index" (with a plan, which PoWA does not keep).
//! * Without a WHERE clause, or with pg_qualstats seeing no selective filter, an
//!   aggregate reading thousands of blocks per call for a few rows reads the whole table
//!   by design: no index makes it read less.
//! * pg_stat_kcache separates CPU (user + system) from the execution time; the rest is
//!   waiting (I/O, locks, network). Block read time (`track_io_timing`) and IO wait samples
//!   say how much of it is disk.
//!
//! Thresholds are shares of the query's own time or per-call sizes, so a busy server and a
//! quiet one classify the same query the same way.

use std::collections::BTreeMap;

use crate::powa::qualstats::QualsWindow;
use crate::powa::reader::{
    QueryStats, StatementsWindow, BLK_READ_TIME, BLK_WRITE_TIME, CALLS, EXEC_TIME, ROWS,
    SHARED_HIT, SHARED_READ, TEMP_WRITTEN,
};
use crate::render::format::count;

/// pg_wait_sampling's default `profile_period`: the time one sample stands for.
pub const SAMPLE_MS: f64 = 10.0;
/// Lock waits from this share of the execution time make a lock-wait query.
pub const LOCK_SHARE: f64 = 0.3;
/// …with at least this many samples (100 ms at the default period).
pub const MIN_WAIT_SAMPLES: f64 = 10.0;
/// Temp blocks written per call from which a query spills (1 MB of 8 kB blocks).
pub const SPILL_BLOCKS_PER_CALL: f64 = 128.0;
/// Blocks per call from which a scan is large (8 MB).
pub const LARGE_SCAN_BLOCKS: f64 = 1000.0;
/// A predicate group discarding this share of the rows it evaluates…
pub const SELECTIVE_RATIO: f64 = 0.3;
/// …and at least this many rows per execution is a filter an index would serve.
pub const SELECTIVE_ROWS: f64 = 1000.0;
/// Time on disk (read/write time or IO wait samples) from this share: I/O-bound.
pub const IO_SHARE: f64 = 0.3;
/// CPU time from this share of the execution time: CPU-bound.
pub const CPU_SHARE: f64 = 0.6;
/// On a busy server a computing backend also waits for a core, which no counter shows:
/// from this CPU share, with nothing on disk, on locks or in any sampled wait event, the
/// rest of the time is that wait and the query is CPU-bound too.
pub const CPU_SHARE_BUSY: f64 = 0.2;
/// "Nothing" on disk, on locks or in sampled waits: under this share of the time.
pub const NOTHING_ELSE: f64 = 0.05;

/// What kind of expensive a query is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Mostly waiting for locks another transaction holds.
    LockWait,
    /// Sorts or hashes outgrow work_mem and go to temp files.
    TempSpill,
    /// pg_qualstats: a filter reads many rows to keep few (an index would serve it).
    SelectiveFilter,
    /// Aggregates a whole table: many blocks per call, few rows, nothing to filter on.
    WholeTableAggregate,
    /// Reads many blocks per call for few rows, and nothing says why (no pg_qualstats).
    LargeScan,
    /// Mostly waiting for the disk.
    IoBound,
    /// Mostly computing.
    CpuBound,
    /// Cheap per call, called very often.
    ManyCalls,
    /// Nothing stands out, but it is most of the server's time.
    Dominant,
    /// Nothing stands out.
    General,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 10] = [
        Class::LockWait,
        Class::TempSpill,
        Class::SelectiveFilter,
        Class::WholeTableAggregate,
        Class::LargeScan,
        Class::IoBound,
        Class::CpuBound,
        Class::ManyCalls,
        Class::Dominant,
        Class::General,
    ];

    /// The `class` label of the insights.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::LockWait => "lock_wait",
            Class::TempSpill => "temp_spill",
            Class::SelectiveFilter => "selective_filter",
            Class::WholeTableAggregate => "whole_table_aggregate",
            Class::LargeScan => "large_scan",
            Class::IoBound => "io_bound",
            Class::CpuBound => "cpu_bound",
            Class::ManyCalls => "many_calls",
            Class::Dominant => "dominant",
            Class::General => "general",
        }
    }
}

/// The selective filter pg_qualstats saw for a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// `schema.table (col, col)` when the names are known, else
    /// `relation oid <n> (database <name>)`.
    pub on: String,
    pub ratio: f64,
    pub rows_per_execution: f64,
    /// Names unknown: the oid and its database, and why (what gives the names), if known.
    pub unnamed: Option<Unnamed>,
}

/// A filtered relation known by its oid only.
#[derive(Clone, Debug, PartialEq)]
pub struct Unnamed {
    pub relid: u32,
    pub database: Option<String>,
    pub why: Option<String>,
}

/// A query's class, the numbers behind it, and the advice that follows.
#[derive(Clone, Debug)]
pub struct Profile {
    pub class: Class,
    /// Evidence as metrics (shares are 0–1), for `--output json`.
    pub evidence: Vec<(&'static str, f64)>,
    pub filter: Option<Filter>,
    /// The top wait event (`type:event`) when wait samples say something.
    pub top_wait: Option<String>,
    pub advice: String,
}

impl Profile {
    /// Adds its labels to an insight's: the `class`, and the `filter` pg_qualstats saw.
    pub fn label(&self, labels: &mut BTreeMap<String, String>) {
        labels.insert("class".to_string(), self.class.as_str().to_string());
        if let Some(f) = &self.filter {
            labels.insert("filter".to_string(), f.on.clone());
        }
    }
}

/// Words of a normalised text, lower-cased, outside strings and quoted identifiers.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
        }
        if c.is_alphanumeric() || c == '_' {
            cur.extend(c.to_lowercase());
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if c == '(' {
                out.push("(".to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Shape of a statement from its text: has a WHERE clause, aggregates.
fn shape(text: Option<&str>) -> (Option<bool>, bool) {
    let Some(t) = text else {
        return (None, false);
    };
    let w = words(t);
    let has_where = w.iter().any(|x| x == "where");
    let group_by = w.windows(2).any(|p| p[0] == "group" && p[1] == "by");
    const AGGS: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "string_agg",
        "array_agg",
        "json_agg",
        "jsonb_agg",
        "stddev",
        "variance",
        "percentile_cont",
        "percentile_disc",
        "bool_and",
        "bool_or",
    ];
    let agg_call = w
        .windows(2)
        .any(|p| p[1] == "(" && AGGS.contains(&p[0].as_str()));
    (Some(has_where), group_by || agg_call)
}

/// The strongest selective filter pg_qualstats saw for this query, if any.
fn selective_filter(quals: &QualsWindow, q: &QueryStats) -> Option<Filter> {
    let best = quals
        .quals
        .iter()
        .filter(|g| g.key.queryid == q.key.queryid && g.key.dbid == q.key.dbid)
        // The evaluation type is not checked: pg_qualstats keeps the type of the first
        // plan it saw, so a filter that lost its index may still say "index"; the rows
        // it discards are what tell.
        .filter(|g| {
            g.filter_ratio() >= SELECTIVE_RATIO && g.filtered_per_execution() >= SELECTIVE_ROWS
        })
        .max_by(|a, b| a.nbfiltered.total_cmp(&b.nbfiltered))?;
    let relid = best.predicates[0].relid;
    let mut unnamed = None;
    let on = match quals.relation(q.key.dbid, relid) {
        Some(rel) => {
            let cols: Vec<String> = best
                .predicates
                .iter()
                .filter(|p| p.relid == relid)
                .map(|p| {
                    rel.columns
                        .get(&p.attnum)
                        .cloned()
                        .unwrap_or_else(|| format!("#{}", p.attnum))
                })
                .collect();
            format!("{}.{} ({})", rel.schema, rel.name, cols.join(", "))
        }
        None => {
            let database = quals.databases.get(&q.key.dbid).cloned();
            let on = match &database {
                Some(d) => format!("relation oid {relid} (database {d})"),
                None => format!("relation oid {relid}"),
            };
            unnamed = Some(Unnamed {
                relid,
                database,
                why: quals.why_unnamed(q.key.dbid).map(str::to_string),
            });
            on
        }
    };
    Some(Filter {
        on,
        ratio: best.filter_ratio(),
        rows_per_execution: if best.occurrences > 0.0 {
            best.execution_count / best.occurrences
        } else {
            0.0
        },
        unnamed,
    })
}

/// What to do about a selective filter. A missing-index finding, where the advisor has
/// one for the query, replaces this with its statement; this is for the rest: names
/// unknown (then what gives them), or a filter below the advisor's guards.
fn filter_advice(f: &Filter) -> String {
    let seen = format!(
        "pg_qualstats: its filter on {} throws away {} of the {} rows it reads per execution",
        f.on,
        pct(f.ratio),
        count(f.rows_per_execution)
    );
    match &f.unnamed {
        None => format!(
            "{seen}: an index on those columns would let it read only the rows it keeps. EXPLAIN (ANALYZE, BUFFERS) shows the scan that reads them."
        ),
        Some(u) => {
            let why = u
                .why
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_else(|| " (PoWA keeps only oids for this server)".to_string());
            let name_it = match &u.database {
                Some(d) => format!(" {}", QualsWindow::name_by_hand(u.relid, d)),
                None => String::new(),
            };
            format!(
                "{seen}; an index on the filtered columns would let it read only the rows it keeps. Names unknown, so no statement{why}.{name_it}"
            )
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Classifies `q` from its counters, its kcache numbers, its wait samples and its quals
/// in `w`; `share` is its share of the server's execution time.
pub fn classify(w: &StatementsWindow, q: &QueryStats, share: f64) -> Profile {
    let calls = q.get(CALLS).max(1.0);
    let exec = q.get(EXEC_TIME);
    let mean = q.mean_time_ms();
    let rows_per_call = q.get(ROWS) / calls;
    let blocks_per_call = (q.get(SHARED_HIT) + q.get(SHARED_READ)) / calls;
    let temp_per_call = q.get(TEMP_WRITTEN) / calls;
    let share_of_exec = |ms: f64| {
        if exec > 0.0 {
            (ms / exec).min(1.0)
        } else {
            0.0
        }
    };

    // Wait samples of this query (PoWA may file them under dbid 0: match the queryid).
    let mut samples = 0.0;
    let mut lock = 0.0;
    let mut io = 0.0;
    let mut top: Option<(&str, &str, f64)> = None;
    for s in w.waits.iter().filter(|s| s.queryid == q.key.queryid) {
        samples += s.samples;
        match &*s.event_type {
            "Lock" => lock += s.samples,
            "IO" => io += s.samples,
            _ => {}
        }
        if top.is_none_or(|t| s.samples > t.2) {
            top = Some((&s.event_type, &s.event, s.samples));
        }
    }
    let lock_share = share_of_exec(lock * SAMPLE_MS);
    let io_time = q.get(BLK_READ_TIME) + q.get(BLK_WRITE_TIME);
    let io_share = share_of_exec(io_time).max(share_of_exec(io * SAMPLE_MS));
    let cpu_share = q.kcache.map(|k| share_of_exec(k.cpu_time_ms()));
    let waits_share = share_of_exec(samples * SAMPLE_MS);
    let physical_per_call = q.kcache.map(|k| k.reads_bytes / calls);
    let top_wait = top
        .filter(|_| samples >= MIN_WAIT_SAMPLES)
        .map(|(t, e, _)| format!("{t}:{e}"));

    let filter = w.quals.as_deref().and_then(|qw| selective_filter(qw, q));
    let quals_seen = w
        .quals
        .as_deref()
        .is_some_and(|qw| qw.notes.is_empty() || !qw.quals.is_empty());
    let (has_where, aggregates) = shape(q.query.as_deref());
    let large_scan =
        blocks_per_call >= LARGE_SCAN_BLOCKS && rows_per_call * 10.0 <= blocks_per_call;

    let mut evidence: Vec<(&'static str, f64)> = vec![
        ("blocks_per_call", blocks_per_call),
        ("rows_per_call", rows_per_call),
    ];
    if let Some(c) = cpu_share {
        evidence.push(("cpu_share", c));
    }
    if io_share > 0.0 {
        evidence.push(("io_share", io_share));
    }
    if lock > 0.0 {
        evidence.push(("lock_wait_share", lock_share));
    }
    if temp_per_call > 0.0 {
        evidence.push(("temp_mb_per_call", temp_per_call * 8192.0 / 1e6));
    }
    if let Some(f) = &filter {
        evidence.push(("filter_ratio", f.ratio));
        evidence.push(("filter_rows_per_execution", f.rows_per_execution));
    }

    let (class, advice) = if lock >= MIN_WAIT_SAMPLES && lock_share >= LOCK_SHARE {
        (
            Class::LockWait,
            format!(
                "It spends {} of its time waiting for locks ({}): another transaction holds the rows or the table it needs. Find the blocker (pg_blocking_pids, pg_locks), keep the transactions that take those locks short, and do not leave sessions idle in transaction; an index or more memory will not help.",
                pct(lock_share),
                top_wait.as_deref().unwrap_or("Lock")
            ),
        )
    } else if temp_per_call >= SPILL_BLOCKS_PER_CALL
        || (temp_per_call > 0.0 && temp_per_call >= 0.1 * blocks_per_call)
    {
        (
            Class::TempSpill,
            format!(
                "It writes {:.1} MB per call to temporary files: its sorts or hashes outgrow work_mem. Raise work_mem for it (SET LOCAL work_mem in its transaction, or per role), or make it sort and hash fewer rows; EXPLAIN (ANALYZE, BUFFERS) shows which node spills.",
                temp_per_call * 8192.0 / 1e6
            ),
        )
    } else if let Some(f) = &filter {
        (Class::SelectiveFilter, filter_advice(f))
    } else if large_scan && aggregates && (has_where == Some(false) || quals_seen) {
        let why = if has_where == Some(false) {
            "it has no WHERE clause"
        } else {
            "pg_qualstats sees no selective filter in it"
        };
        (
            Class::WholeTableAggregate,
            format!(
                "It aggregates a whole table: {blocks_per_call:.0} blocks read per call for {rows_per_call:.0} row(s), and {why}, so an index would not make it read less. Precompute it (a materialized view or a summary table refreshed on a schedule), cache the result, or run it less often."
            ),
        )
    } else if large_scan {
        let why = if w.quals.is_none() {
            "pg_qualstats is not collected for this server, so nothing tells a selective filter from a whole-table read"
        } else {
            "pg_qualstats sees no selective filter in it"
        };
        (
            Class::LargeScan,
            format!(
                "It reads {blocks_per_call:.0} blocks per call for {rows_per_call:.0} row(s): {why}. EXPLAIN (ANALYZE, BUFFERS) shows which scan, sort or join reads them."
            ),
        )
    } else if io_share >= IO_SHARE
        || (physical_per_call.is_some_and(|b| b >= 1e6) && cpu_share.is_some_and(|c| c < 0.5))
    {
        (
            Class::IoBound,
            format!(
                "It waits on the disk ({} of its time reading and writing): its data is not in memory. Check with EXPLAIN (ANALYZE, BUFFERS) which reads it could avoid, and whether shared_buffers and the machine's RAM fit its working set.",
                pct(io_share)
            ),
        )
    } else if let Some(c) = cpu_share.filter(|c| {
        *c >= CPU_SHARE
            || (*c >= CPU_SHARE_BUSY
                && io_share < NOTHING_ELSE
                && waits_share < NOTHING_ELSE
                && physical_per_call.is_some_and(|b| b < 65536.0))
    }) {
        let rest = if c < CPU_SHARE {
            " and none on disk or in a wait event (the rest is waiting for a core: the server is busy)"
        } else {
            ", with little I/O"
        };
        (
            Class::CpuBound,
            format!(
                "pg_stat_kcache: {} of its execution time is CPU{rest}. In EXPLAIN (ANALYZE) look for per-row functions, casts and regular expressions, large sorts and hashes, and nested loops over many rows; check that JIT does not fire on it (jit_above_cost).",
                pct(c)
            ),
        )
    } else if mean < 5.0 && calls > 10_000.0 {
        (
            Class::ManyCalls,
            format!(
                "Cheap per call ({}) but executed {calls:.0} times: cache the result, batch the calls, or check for an N+1 pattern in the application.",
                super::human_ms(mean)
            ),
        )
    } else if share > 0.5 {
        (
            Class::Dominant,
            "It dominates this server's workload: tuning it first pays the most; start with EXPLAIN (ANALYZE, BUFFERS).".to_string(),
        )
    } else {
        (
            Class::General,
            "Check its plan with EXPLAIN (ANALYZE, BUFFERS): where the time goes decides the fix."
                .to_string(),
        )
    };
    Profile {
        class,
        evidence,
        filter,
        top_wait,
        advice,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::analyze::fixtures::{query, wait, window};
    use crate::powa::kcache::Kcache;
    use crate::powa::qualstats::{Predicate, QualKey, QualStats};

    fn q(text: &str, calls: f64, total_ms: f64) -> QueryStats {
        let mut q = query(1, calls, total_ms);
        q.query = Some(text.into());
        q
    }

    fn blocks(mut q: QueryStats, per_call: f64, rows_per_call: f64) -> QueryStats {
        q.counters[SHARED_HIT] = per_call * q.get(CALLS);
        q.counters[ROWS] = rows_per_call * q.get(CALLS);
        q
    }

    fn quals(q: &QueryStats, ratio: f64, rows: f64) -> Arc<QualsWindow> {
        Arc::new(QualsWindow {
            quals: vec![QualStats {
                key: QualKey {
                    dbid: q.key.dbid,
                    userid: q.key.userid,
                    queryid: q.key.queryid,
                    qualid: 1,
                },
                predicates: vec![Predicate {
                    relid: 100,
                    attnum: 2,
                    opno: 96,
                    eval_type: 'f',
                }],
                occurrences: q.get(CALLS),
                execution_count: q.get(CALLS) * rows,
                nbfiltered: q.get(CALLS) * rows * ratio,
            }],
            ..Default::default()
        })
    }

    fn class_of(w: &StatementsWindow) -> Profile {
        classify(w, &w.queries[0], 0.1)
    }

    #[test]
    fn an_aggregate_over_a_whole_table_is_not_a_missing_index() {
        let sales = blocks(
            q(
                "SELECT region, sum(amount) FROM sales GROUP BY 1 ORDER BY 2 DESC LIMIT $1",
                20.0,
                4000.0,
            ),
            2500.0,
            20.0,
        );
        let w = window(vec![sales]);
        let p = class_of(&w);
        assert_eq!(p.class, Class::WholeTableAggregate);
        assert!(!p.advice.contains("index on"), "{}", p.advice);
        assert!(p.advice.contains("no WHERE clause"), "{}", p.advice);
        // With a WHERE clause it takes pg_qualstats to tell.
        let filtered = blocks(
            q("SELECT count(*) FROM sales WHERE region = $1", 20.0, 4000.0),
            2500.0,
            1.0,
        );
        let mut w = window(vec![filtered.clone()]);
        assert_eq!(class_of(&w).class, Class::LargeScan);
        assert!(class_of(&w).advice.contains("not collected"));
        w.quals = Some(Arc::new(QualsWindow::default()));
        assert_eq!(class_of(&w).class, Class::WholeTableAggregate);
        w.quals = Some(quals(&filtered, 0.99, 300_000.0));
        let p = class_of(&w);
        assert_eq!(p.class, Class::SelectiveFilter);
        assert!(
            p.advice.contains("99%") && p.advice.contains("300,000"),
            "{}",
            p.advice
        );
        // A filter keeping most rows is no index case.
        w.quals = Some(quals(&filtered, 0.1, 300_000.0));
        assert_eq!(class_of(&w).class, Class::WholeTableAggregate);
    }

    /// Where the table has no name, the advice says why and what gives it, and how to name
    /// it by hand meanwhile; where it has one, the columns. Neither points at a finding
    /// that may not exist.
    #[test]
    fn a_selective_filter_says_what_it_is_on_or_why_it_cannot() {
        let filtered = blocks(
            q("SELECT * FROM orders WHERE customer_id = $1", 50.0, 4000.0),
            2500.0,
            1.0,
        );
        let mut w = window(vec![filtered.clone()]);
        let mut qw = (*quals(&filtered, 0.99, 300_000.0)).clone();
        let dbid = filtered.key.dbid;
        qw.databases.insert(dbid, "app".into());
        qw.unnamed.insert(
            dbid,
            "sentinel_ro may not connect to database app: GRANT CONNECT ON DATABASE app TO sentinel_ro".into(),
        );
        w.quals = Some(Arc::new(qw.clone()));
        let p = class_of(&w);
        assert_eq!(p.class, Class::SelectiveFilter);
        assert_eq!(
            p.filter.as_ref().map(|f| f.on.as_str()),
            Some("relation oid 100 (database app)")
        );
        for part in [
            "GRANT CONNECT ON DATABASE app TO sentinel_ro",
            "SELECT 100::regclass in app",
            "Names unknown",
        ] {
            assert!(p.advice.contains(part), "{part}: {}", p.advice);
        }
        assert!(!p.advice.contains("finding"), "{}", p.advice);

        // Named: the table and its column.
        qw.catalogs.insert(
            dbid,
            crate::powa::qualstats::DbCatalog {
                relations: [(
                    100,
                    crate::powa::qualstats::Relation {
                        schema: "public".into(),
                        name: "orders".into(),
                        rows: 300_000.0,
                        columns: [(2, "customer_id".to_string())].into(),
                        indexes: Some(vec![]),
                    },
                )]
                .into(),
            },
        );
        w.quals = Some(Arc::new(qw));
        let p = class_of(&w);
        assert!(
            p.advice.contains("public.orders (customer_id)") && !p.advice.contains("Names unknown"),
            "{}",
            p.advice
        );
    }

    #[test]
    fn cpu_io_spill_and_locks_each_get_their_own_class() {
        let mut cpu = q(
            "SELECT count(*) FROM generate_series(1, $1) g WHERE md5(g::text) LIKE $2",
            10.0,
            3000.0,
        );
        cpu.kcache = Some(Kcache {
            user_time_s: 2.7,
            system_time_s: 0.1,
            ..Default::default()
        });
        let p = class_of(&window(vec![cpu.clone()]));
        assert_eq!(p.class, Class::CpuBound);
        assert!(p.advice.contains("93%"), "{}", p.advice);
        // Seen on a loaded 2-core lab: 36% CPU, nothing else: waiting for a core.
        let mut busy = cpu.clone();
        busy.kcache = Some(Kcache {
            user_time_s: 1.08,
            ..Default::default()
        });
        let p = class_of(&window(vec![busy.clone()]));
        assert_eq!(p.class, Class::CpuBound, "{}", p.advice);
        assert!(
            p.advice.contains("36%") && p.advice.contains("busy"),
            "{}",
            p.advice
        );
        // …but not when the rest is a sampled wait (here: the client).
        let mut w = window(vec![busy]);
        w.waits = vec![wait(1, "Client", "ClientWrite", 150.0)];
        assert_eq!(class_of(&w).class, Class::General);

        let mut io = q("SELECT * FROM big WHERE id = $1", 10.0, 3000.0);
        io.counters[BLK_READ_TIME] = 2000.0;
        io.kcache = Some(Kcache {
            user_time_s: 0.3,
            reads_bytes: 5e8,
            ..Default::default()
        });
        assert_eq!(class_of(&window(vec![io])).class, Class::IoBound);

        let mut spill = cpu.clone();
        spill.counters[TEMP_WRITTEN] = 10.0 * 400.0;
        let p = class_of(&window(vec![spill]));
        assert_eq!(p.class, Class::TempSpill);
        assert!(p.advice.contains("work_mem"), "{}", p.advice);

        let upd = q("UPDATE t SET v = v + $1 WHERE id = $2", 3.0, 4000.0);
        let mut w = window(vec![upd]);
        w.waits = vec![wait(1, "Lock", "transactionid", 390.0)];
        let p = class_of(&w);
        assert_eq!(p.class, Class::LockWait);
        assert_eq!(p.top_wait.as_deref(), Some("Lock:transactionid"));
        assert!(p.advice.contains("98%"), "{}", p.advice);
        // A few samples are noise.
        w.waits[0].samples = 5.0;
        assert_eq!(class_of(&w).class, Class::General);
    }

    #[test]
    fn no_class_but_the_filter_one_advises_an_index() {
        let cases: Vec<StatementsWindow> = {
            let mut cpu = q("SELECT 1", 10.0, 3000.0);
            cpu.kcache = Some(Kcache {
                user_time_s: 2.9,
                ..Default::default()
            });
            let agg = blocks(q("SELECT sum(a) FROM t", 10.0, 3000.0), 5000.0, 1.0);
            let scan = blocks(q("SELECT a FROM t WHERE b = $1", 10.0, 3000.0), 5000.0, 1.0);
            let many = q("SELECT a FROM t WHERE id = $1", 50_000.0, 3000.0);
            vec![
                window(vec![cpu]),
                window(vec![agg]),
                window(vec![scan]),
                window(vec![many]),
                window(vec![q("SELECT a", 10.0, 3000.0)]),
            ]
        };
        for w in &cases {
            let p = class_of(w);
            let a = p.advice.to_lowercase();
            assert!(
                !a.contains("index on") && !a.contains("missing index"),
                "{}: {}",
                p.class.as_str(),
                p.advice
            );
        }
    }

    #[test]
    fn reads_the_shape_of_a_statement() {
        assert_eq!(shape(Some("select count(*) from t")), (Some(false), true));
        assert_eq!(
            shape(Some("SELECT a FROM t WHERE 'where' = $1")),
            (Some(true), false)
        );
        assert_eq!(
            shape(Some("SELECT \"where\", max (x) FROM t")),
            (Some(false), true)
        );
        assert_eq!(
            shape(Some("SELECT region FROM s GROUP BY 1")),
            (Some(false), true)
        );
        assert_eq!(shape(None), (None, false));
    }
}
