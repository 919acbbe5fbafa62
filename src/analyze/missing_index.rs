//! Missing indexes, from the predicates PoWA recorded with pg_qualstats.
//!
//! A predicate group (the AND-ed quals of one scan) that runs often, is evaluated on many
//! rows and throws most of them away is what an index avoids. Per table the groups become
//! a few btree candidates: equality columns first (ordered by how many groups share them,
//! so that one index serves several queries through its prefix), then at most one range
//! column (a btree uses only the first range column to narrow the scan). Groups whose
//! columns are a prefix of another's are merged into it. A candidate an existing index
//! already provides is dropped when the monitored database's catalog was read; when a
//! hypothetical index was tried with hypopg, only candidates whose estimated cost gain
//! reaches `min_gain` are kept, and the insight says before/after.
//!
//! Example constants are never read, so they cannot reach a chat.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use crate::powa::discovery::quote_ident;
use crate::powa::hypopg::Validation;
use crate::powa::qualstats::{QualKey, QualStats, QualsWindow};
use crate::powa::reader::StatementsWindow;
use crate::problem::Problem;
use sentinel_actors::analyzer::Analyze;
use sentinel_actors::{Fingerprint, Insight, Severity, Snapshot};

/// `[analyzers.missing_index]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissingIndexSettings {
    /// Default true (it only has data where PoWA collects pg_qualstats).
    pub enabled: bool,
    /// A predicate group must have run at least this many times in the window. Default 10.
    pub min_executions: u64,
    /// …and discarded at least this many rows per execution on average. Default 1000.
    pub min_filtered_rows_per_execution: f64,
    /// …and discarded at least this share of the rows it was evaluated on. Default 0.3.
    pub min_filter_ratio: f64,
    /// Tables estimated smaller than this are left alone (a scan of a small table is
    /// cheap and its primary key shows high filter ratios). Used when the catalog was
    /// read. Default 10000.
    pub min_table_rows: f64,
    /// At most this many suggestions per table. Default 2.
    pub max_per_table: usize,
    /// Rows discarded in the window from which a suggestion is a warning. Default 10M.
    pub warning_filtered_rows: f64,
    /// Try each candidate as a hypothetical index (hypopg) on the monitored server when
    /// `[repositories.<name>.monitored."<server>"]` says how to reach it. Default true.
    pub hypopg: bool,
    /// With hypopg, keep a suggestion only when the helped queries' estimated cost drops
    /// by at least this share. Default 0.3.
    pub min_gain: f64,
    /// At most this many hypopg checks per server and cycle. Default 10.
    pub max_validations: usize,
}

impl Default for MissingIndexSettings {
    fn default() -> Self {
        MissingIndexSettings {
            enabled: true,
            min_executions: 10,
            min_filtered_rows_per_execution: 1000.0,
            min_filter_ratio: 0.3,
            min_table_rows: 10_000.0,
            max_per_table: 2,
            warning_filtered_rows: 10_000_000.0,
            hypopg: true,
            min_gain: 0.3,
            max_validations: 10,
        }
    }
}

impl MissingIndexSettings {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        for (key, v) in [
            ("min_filter_ratio", self.min_filter_ratio),
            ("min_gain", self.min_gain),
        ] {
            if !(0.0..=1.0).contains(&v) {
                problems.push(Problem::new(
                    format!("{path}.{key}"),
                    format!("must be a share between 0 and 1 (got {v})"),
                ));
            }
        }
        if self.max_per_table == 0 && self.enabled {
            problems.push(Problem::new(
                format!("{path}.max_per_table"),
                "must be at least 1 (set enabled = false to turn the analyzer off)",
            ));
        }
    }
}

/// One proposed btree index.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub dbid: u32,
    pub relid: u32,
    /// Column attnums in index order.
    pub columns: Vec<i32>,
    /// How many leading columns are equality columns.
    pub equality: usize,
    pub quals: Vec<QualKey>,
    /// (queryid, userid) of the queries it would help.
    pub queries: BTreeSet<(i64, u32)>,
    pub occurrences: f64,
    pub execution_count: f64,
    pub nbfiltered: f64,
}

impl Candidate {
    pub fn filter_ratio(&self) -> f64 {
        if self.execution_count > 0.0 {
            (self.nbfiltered / self.execution_count).min(1.0)
        } else {
            0.0
        }
    }
}

/// Does this existing index already give what `columns` (the first `equality` of them
/// in any order, then the rest in order) would?
fn covered(index_cols: &[i32], columns: &[i32], equality: usize) -> bool {
    if index_cols.len() < columns.len() {
        return false;
    }
    let lead: BTreeSet<i32> = index_cols[..equality].iter().copied().collect();
    let want: BTreeSet<i32> = columns[..equality].iter().copied().collect();
    lead == want && index_cols[equality..columns.len()] == columns[equality..]
}

/// A predicate group past the numeric guards, not from PoWA's own work.
pub fn worth_a_look(w: &QualsWindow, q: &QualStats, s: &MissingIndexSettings) -> bool {
    q.occurrences >= s.min_executions as f64
        && q.filtered_per_execution() >= s.min_filtered_rows_per_execution
        && q.filter_ratio() >= s.min_filter_ratio
        && !w
            .text(&q.key)
            .is_some_and(crate::analyze::is_monitoring_query)
}

/// The candidates of one server's quals, strongest first. Pure: the collector calls it
/// too, to know what to try with hypopg.
pub fn candidates(w: &QualsWindow, s: &MissingIndexSettings) -> Vec<Candidate> {
    struct Group {
        key: QualKey,
        eq: BTreeSet<i32>,
        range: Option<i32>,
        all_filters: bool,
        occ: f64,
        exec: f64,
        filt: f64,
    }
    let mut by_table: BTreeMap<(u32, u32), Vec<Group>> = BTreeMap::new();
    for q in &w.quals {
        if q.occurrences < s.min_executions as f64
            || q.filtered_per_execution() < s.min_filtered_rows_per_execution
            || q.filter_ratio() < s.min_filter_ratio
        {
            continue;
        }
        if w.text(&q.key)
            .is_some_and(crate::analyze::is_monitoring_query)
        {
            continue;
        }
        let relids: BTreeSet<u32> = q.predicates.iter().map(|p| p.relid).collect();
        for relid in relids {
            match w.relation(q.key.dbid, relid) {
                Some(rel) if rel.rows >= 0.0 && rel.rows < s.min_table_rows => continue,
                // The database's catalog was read and the table is gone: dropped since.
                None if w.catalogs.contains_key(&q.key.dbid) => continue,
                _ => {}
            }
            let mut eq = BTreeSet::new();
            let mut range = BTreeSet::new();
            let mut all_filters = true;
            for p in q.predicates.iter().filter(|p| p.relid == relid) {
                let Some(op) = w.operators.get(&p.opno) else {
                    continue;
                };
                if !op.btree {
                    continue;
                }
                all_filters &= p.eval_type == 'f';
                if op.equality {
                    eq.insert(p.attnum);
                } else {
                    range.insert(p.attnum);
                }
            }
            let range = range.into_iter().find(|c| !eq.contains(c));
            if eq.is_empty() && range.is_none() {
                continue;
            }
            by_table
                .entry((q.key.dbid, relid))
                .or_default()
                .push(Group {
                    key: q.key,
                    eq,
                    range,
                    all_filters,
                    occ: q.occurrences,
                    exec: q.execution_count,
                    filt: q.nbfiltered,
                });
        }
    }

    let mut out = Vec::new();
    for ((dbid, relid), groups) in by_table {
        let rel = w.relation(dbid, relid);
        // Without the catalog there is no way to tell an index condition that still
        // works from a stale one: trust only groups that were filters.
        let groups: Vec<Group> = if rel.is_some() {
            groups
        } else {
            groups.into_iter().filter(|g| g.all_filters).collect()
        };
        let mut freq: HashMap<i32, usize> = HashMap::new();
        for g in &groups {
            for c in &g.eq {
                *freq.entry(*c).or_default() += 1;
            }
        }
        let mut shaped: Vec<(Vec<i32>, usize, &Group)> = groups
            .iter()
            .map(|g| {
                let mut cols: Vec<i32> = g.eq.iter().copied().collect();
                cols.sort_by(|a, b| freq[b].cmp(&freq[a]).then(a.cmp(b)));
                let equality = cols.len();
                cols.extend(g.range);
                (cols, equality, g)
            })
            .collect();
        // Longest first, so that shorter groups can join a candidate they are a prefix of.
        shaped.sort_by(|a, b| {
            b.0.len()
                .cmp(&a.0.len())
                .then(b.2.filt.total_cmp(&a.2.filt))
                .then(a.0.cmp(&b.0))
        });
        let mut table: Vec<Candidate> = Vec::new();
        for (cols, equality, g) in shaped {
            // An index serves any predicate set on a prefix of its columns.
            let host = table.iter_mut().find(|c| c.columns.starts_with(&cols));
            let c = match host {
                Some(c) => c,
                None => {
                    table.push(Candidate {
                        dbid,
                        relid,
                        columns: cols,
                        equality,
                        quals: Vec::new(),
                        queries: BTreeSet::new(),
                        occurrences: 0.0,
                        execution_count: 0.0,
                        nbfiltered: 0.0,
                    });
                    table.last_mut().expect("just pushed")
                }
            };
            c.quals.push(g.key);
            c.queries.insert((g.key.queryid, g.key.userid));
            c.occurrences += g.occ;
            c.execution_count += g.exec;
            c.nbfiltered += g.filt;
        }
        if let Some(indexes) = rel.and_then(|r| r.indexes.as_ref()) {
            table.retain(|c| {
                !indexes.iter().any(|ix| {
                    ix.am == "btree" && !ix.partial && covered(&ix.columns, &c.columns, c.equality)
                })
            });
        }
        table.sort_by(|a, b| b.nbfiltered.total_cmp(&a.nbfiltered));
        table.truncate(s.max_per_table);
        out.extend(table);
    }
    out.sort_by(|a, b| {
        b.nbfiltered
            .total_cmp(&a.nbfiltered)
            .then((a.dbid, a.relid).cmp(&(b.dbid, b.relid)))
    });
    out
}

/// `CREATE INDEX CONCURRENTLY` for a candidate, when its names are known.
pub fn ddl(w: &QualsWindow, c: &Candidate) -> Option<String> {
    let rel = w.relation(c.dbid, c.relid)?;
    let cols: Option<Vec<String>> = c
        .columns
        .iter()
        .map(|a| rel.columns.get(a).map(|n| quote_ident(n)))
        .collect();
    Some(format!(
        "CREATE INDEX CONCURRENTLY ON {}.{} USING btree ({})",
        quote_ident(&rel.schema),
        quote_ident(&rel.name),
        cols?.join(", ")
    ))
}

/// The hypopg result for a candidate, if one was tried.
pub fn validation_of<'a>(w: &'a QualsWindow, c: &Candidate) -> Option<&'a Validation> {
    w.validations
        .iter()
        .find(|v| v.dbid == c.dbid && v.relid == c.relid && v.columns == c.columns)
}

/// Helped queries listed per suggestion; the rest are counted.
const MAX_LISTED: usize = 5;

pub struct MissingIndexAnalyzer {
    settings: MissingIndexSettings,
}

impl MissingIndexAnalyzer {
    pub fn new(settings: MissingIndexSettings) -> Self {
        MissingIndexAnalyzer { settings }
    }

    pub fn analyze_window(&self, w: &StatementsWindow) -> Vec<Insight> {
        if !self.settings.enabled {
            return Vec::new();
        }
        let Some(quals) = w.quals.as_deref() else {
            return Vec::new();
        };
        let mut out: Vec<Insight> = candidates(quals, &self.settings)
            .iter()
            .filter_map(|c| self.insight(w, quals, c))
            .collect();
        out.extend(blind(w, quals));
        out
    }

    fn insight(&self, w: &StatementsWindow, q: &QualsWindow, c: &Candidate) -> Option<Insight> {
        let s = &self.settings;
        let validation = validation_of(q, c);
        if s.hypopg {
            if let Some(v) = validation {
                if v.error.is_none() && v.gain().is_none_or(|g| g < s.min_gain) {
                    return None;
                }
            }
        }
        let database = q
            .databases
            .get(&c.dbid)
            .cloned()
            .unwrap_or_else(|| format!("oid {}", c.dbid));
        let rel = q.relation(c.dbid, c.relid);
        let table = rel
            .map(|r| format!("{}.{}", quote_ident(&r.schema), quote_ident(&r.name)))
            .unwrap_or_else(|| format!("relation oid {}", c.relid));
        let col_names: Vec<String> = c
            .columns
            .iter()
            .map(|a| {
                rel.and_then(|r| r.columns.get(a))
                    .map(|n| quote_ident(n))
                    .unwrap_or_else(|| format!("#{a}"))
            })
            .collect();
        let columns = col_names.join(", ");
        let statement = ddl(q, c);

        let ids: BTreeSet<i64> = c.queries.iter().map(|(id, _)| *id).collect();
        let mut labels = BTreeMap::from([
            ("repository".to_string(), w.repository.clone()),
            ("server".to_string(), w.server.name.clone()),
            ("database".to_string(), database.clone()),
            ("table".to_string(), table.clone()),
            ("columns".to_string(), columns.clone()),
            ("srvid".to_string(), w.server.srvid.to_string()),
        ]);
        let mut shown: Vec<String> = ids
            .iter()
            .take(MAX_LISTED)
            .map(|id| id.to_string())
            .collect();
        if ids.len() > MAX_LISTED {
            shown.push(format!("+{}", ids.len() - MAX_LISTED));
        }
        labels.insert("queryids".to_string(), shown.join(","));

        let mut metrics = BTreeMap::from([
            ("executions".to_string(), c.occurrences),
            ("rows_evaluated".to_string(), c.execution_count),
            ("rows_filtered".to_string(), c.nbfiltered),
            ("filter_ratio".to_string(), c.filter_ratio()),
            (
                "rows_filtered_per_execution".to_string(),
                if c.occurrences > 0.0 {
                    c.nbfiltered / c.occurrences
                } else {
                    0.0
                },
            ),
            ("queries".to_string(), ids.len() as f64),
        ]);
        // Worse means more rows read for nothing per execution.
        metrics.insert(
            super::MAGNITUDE.to_string(),
            metrics["rows_filtered_per_execution"],
        );
        if let Some(r) = rel.filter(|r| r.rows >= 0.0) {
            metrics.insert("table_rows".to_string(), r.rows);
        }

        let mut text = String::new();
        match &statement {
            Some(d) => text.push_str(&format!("{d};\n")),
            None => text.push_str(&format!(
                "-- btree index on {table} columns {columns} (names unknown)\n"
            )),
        }
        let mut seen = BTreeSet::new();
        for (queryid, userid) in &c.queries {
            if !seen.insert(*queryid) {
                continue;
            }
            if seen.len() > MAX_LISTED {
                text.push_str(&format!("-- and {} more queries\n", ids.len() - MAX_LISTED));
                break;
            }
            let t = q
                .texts
                .get(&(*queryid, c.dbid, *userid))
                .map(|t| short(t, 160))
                .unwrap_or_else(|| "(text purged by PoWA)".to_string());
            text.push_str(&format!("-- helps queryid {queryid}: {t}\n"));
        }

        let mut advice = match &statement {
            Some(_) => "Create the index (CONCURRENTLY does not block writes), then check the helped queries' plans.".to_string(),
            None => format!(
                "PoWA keeps only oids for this server{}: set [repositories.{}.monitored.\"{}\"] so the sentinel can read names and existing indexes in `{database}` and propose a ready statement.",
                q.why_no_names
                    .as_deref()
                    .map(|why| format!(" and the sentinel cannot reach it ({why})"))
                    .unwrap_or_default(),
                w.repository,
                w.server.name
            ),
        };
        let mut rule = if statement.is_some() {
            "missing_index.btree"
        } else {
            "missing_index.unresolved"
        };
        match validation {
            Some(v) if v.error.is_none() => {
                let (before, after) = v.total_costs();
                let gain = v.gain().unwrap_or(0.0);
                metrics.insert("cost_before".to_string(), before);
                metrics.insert("cost_after".to_string(), after);
                metrics.insert("estimated_gain".to_string(), gain);
                advice = format!(
                    "hypopg: estimated cost {before:.0} → {after:.0} ({:.0}% less) over {} helped quer{}. {advice}",
                    gain * 100.0,
                    v.queries.len(),
                    if v.queries.len() == 1 { "y" } else { "ies" }
                );
                rule = "missing_index.btree_validated";
            }
            Some(v) => {
                advice = format!(
                    "{advice} (hypopg check not possible: {})",
                    v.error.as_deref().unwrap_or("")
                );
            }
            None => {}
        }

        let severity = if c.nbfiltered >= s.warning_filtered_rows {
            Severity::Warning
        } else {
            Severity::Info
        };
        let title = format!(
            "Missing index on {table} ({columns}) in {} / {database}: {:.0}% of rows filtered, {:.0} per execution",
            w.server.name,
            c.filter_ratio() * 100.0,
            metrics["rows_filtered_per_execution"]
        );
        let fingerprint = Fingerprint::of([
            w.repository.as_str(),
            w.server.name.as_str(),
            database.as_str(),
            table.as_str(),
            columns.as_str(),
            "missing_index",
        ]);
        Some(Insight {
            fingerprint,
            kind: "missing_index".to_string(),
            rule: rule.to_string(),
            severity,
            labels,
            title,
            advice,
            text: Some(text),
            metrics,
            window: w.window,
            observed_at: w.last_ts.unwrap_or(w.window.end),
            status: None,
        })
    }
}

/// What kept the advisor from seeing everything (quals unreadable, a monitored database
/// unreachable, hypopg missing): one finding per server, so it gets fixed.
fn blind(w: &StatementsWindow, q: &QualsWindow) -> Option<Insight> {
    if q.notes.is_empty() {
        return None;
    }
    Some(Insight {
        fingerprint: Fingerprint::of([
            w.repository.as_str(),
            w.server.name.as_str(),
            "missing_index_blind",
        ]),
        kind: "missing_index".to_string(),
        rule: "missing_index.blind".to_string(),
        severity: Severity::Info,
        labels: BTreeMap::from([
            ("repository".to_string(), w.repository.clone()),
            ("server".to_string(), w.server.name.clone()),
        ]),
        title: format!("Index advisor cannot see everything on {}", w.server.name),
        advice: format!(
            "Fix what is below, or narrow the advisor ([analyzers.missing_index]): {}",
            q.notes.join("; ")
        ),
        text: None,
        metrics: BTreeMap::from([
            ("problems".to_string(), q.notes.len() as f64),
            (super::MAGNITUDE.to_string(), q.notes.len() as f64),
        ]),
        window: w.window,
        observed_at: w.last_ts.unwrap_or(w.window.end),
        status: None,
    })
}

/// The first `n` characters of a query text on one line.
fn short(t: &str, n: usize) -> String {
    let one: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > n {
        format!("{}…", one.chars().take(n).collect::<String>())
    } else {
        one
    }
}

impl Analyze for MissingIndexAnalyzer {
    type Input = StatementsWindow;

    fn name(&self) -> &str {
        "missing_index"
    }

    fn analyze(&mut self, snapshot: &Snapshot<StatementsWindow>) -> Vec<Insight> {
        self.analyze_window(&snapshot.body)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::analyze::fixtures::window;
    use crate::powa::hypopg::QueryCost;
    use crate::powa::qualstats::{DbCatalog, IndexDef, Operator, Predicate, QualStats, Relation};

    const INT_EQ: u32 = 96;
    const TEXT_EQ: u32 = 98;
    const INT_GT: u32 = 521;
    const LIKE: u32 = 1209;
    const ORDERS: u32 = 100;

    fn op(name: &str, btree: bool, equality: bool) -> Operator {
        Operator {
            name: name.into(),
            btree,
            equality,
        }
    }

    fn qual(
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

    fn orders(rows: f64, indexes: Vec<Vec<i32>>) -> Relation {
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

    fn quals(qs: Vec<QualStats>, rel: Option<Relation>) -> QualsWindow {
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

    fn run(q: QualsWindow) -> Vec<Insight> {
        run_with(q, MissingIndexSettings::default())
    }

    fn run_with(q: QualsWindow, s: MissingIndexSettings) -> Vec<Insight> {
        let mut w = window(vec![]);
        w.quals = Some(Arc::new(q));
        MissingIndexAnalyzer::new(s).analyze_window(&w)
    }

    #[test]
    fn equality_columns_first_then_one_range_column() {
        let q = quals(
            vec![qual(
                1,
                11,
                &[(4, INT_GT), (2, INT_EQ)],
                50.0,
                300_000.0,
                3.0,
            )],
            Some(orders(300_000.0, vec![vec![1]])),
        );
        let out = run(q);
        assert_eq!(out.len(), 1, "{out:#?}");
        let i = &out[0];
        assert_eq!(i.label("columns"), Some("customer_id, created_at"));
        assert_eq!(i.label("table"), Some("public.orders"));
        assert_eq!(i.rule, "missing_index.btree");
        assert!(i.text.as_deref().unwrap().starts_with(
            "CREATE INDEX CONCURRENTLY ON public.orders USING btree (customer_id, created_at);\n-- helps queryid 11: SELECT * FROM orders"
        ));
        assert_eq!(i.metric("executions"), Some(50.0));
        assert!((i.metric("rows_filtered_per_execution").unwrap() - 299_997.0).abs() < 1e-6);
        assert_eq!(i.metric("table_rows"), Some(300_000.0));
        assert_eq!(i.severity, Severity::Warning);
    }

    #[test]
    fn prefix_groups_merge_and_shared_columns_lead() {
        let q = quals(
            vec![
                qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 30.0),
                qual(2, 12, &[(3, TEXT_EQ), (2, INT_EQ)], 40.0, 300_000.0, 3.0),
                qual(3, 13, &[(2, INT_EQ)], 20.0, 300_000.0, 30.0),
            ],
            Some(orders(300_000.0, vec![])),
        );
        let out = run(q);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].label("columns"), Some("customer_id, status"));
        assert_eq!(out[0].label("queryids"), Some("11,12,13"));
        assert_eq!(out[0].metric("queries"), Some(3.0));
        assert_eq!(out[0].metric("executions"), Some(110.0));
    }

    #[test]
    fn many_helped_queries_are_counted_not_listed() {
        let qs = (0..8)
            .map(|i| qual(i, 100 + i, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0))
            .collect();
        let out = run(quals(qs, Some(orders(300_000.0, vec![]))));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].label("queryids"), Some("100,101,102,103,104,+3"));
        let text = out[0].text.as_deref().unwrap();
        assert_eq!(text.matches("-- helps queryid").count(), 5);
        assert!(text.ends_with("-- and 3 more queries\n"), "{text}");
        assert_eq!(out[0].metric("queries"), Some(8.0));
    }

    #[test]
    fn an_existing_index_covers_the_equality_set_in_any_order() {
        let preds = [(2, INT_EQ), (3, TEXT_EQ)];
        let covered = quals(
            vec![qual(1, 11, &preds, 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![vec![3, 2, 4]])),
        );
        assert!(run(covered).is_empty());
        // An index on one of the columns does not give what the pair gives.
        let partial = quals(
            vec![qual(1, 11, &preds, 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![vec![2]])),
        );
        assert_eq!(run(partial).len(), 1);
    }

    #[test]
    fn quiet_below_every_guard() {
        let rel = || Some(orders(300_000.0, vec![]));
        let eq = [(2, INT_EQ)];
        // Too few executions.
        assert!(run(quals(vec![qual(1, 11, &eq, 5.0, 300_000.0, 3.0)], rel())).is_empty());
        // Few rows discarded per execution.
        assert!(run(quals(vec![qual(1, 11, &eq, 50.0, 900.0, 3.0)], rel())).is_empty());
        // Most rows kept: a poor filter.
        assert!(run(quals(
            vec![qual(1, 11, &eq, 50.0, 300_000.0, 250_000.0)],
            rel()
        ))
        .is_empty());
        // A small table.
        assert!(run(quals(
            vec![qual(1, 11, &eq, 50.0, 300_000.0, 3.0)],
            Some(orders(500.0, vec![]))
        ))
        .is_empty());
        // An operator a btree cannot serve.
        assert!(run(quals(
            vec![qual(1, 11, &[(3, LIKE)], 50.0, 300_000.0, 3.0)],
            rel()
        ))
        .is_empty());
        // PoWA's own statements.
        let mut own = quals(vec![qual(1, 11, &eq, 50.0, 300_000.0, 3.0)], rel());
        own.texts
            .insert((11, 1, 10), "SELECT powa_take_snapshot()".into());
        assert!(run(own).is_empty());
        // Off.
        let off = MissingIndexSettings {
            enabled: false,
            ..Default::default()
        };
        assert!(run_with(
            quals(vec![qual(1, 11, &eq, 50.0, 300_000.0, 3.0)], rel()),
            off
        )
        .is_empty());
        // No quals at all (module off).
        assert!(MissingIndexAnalyzer::new(MissingIndexSettings::default())
            .analyze_window(&window(vec![]))
            .is_empty());
    }

    #[test]
    fn identifiers_are_quoted_where_needed() {
        let q = quals(
            vec![qual(1, 11, &[(5, INT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        );
        let out = run(q);
        assert!(out[0].text.as_deref().unwrap().starts_with(
            "CREATE INDEX CONCURRENTLY ON public.orders USING btree (\"Weird Col\");"
        ));
    }

    #[test]
    fn without_catalog_only_filters_are_trusted_and_the_advice_says_why() {
        let mut index_cond = qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0);
        index_cond.predicates[0].eval_type = 'i';
        assert!(run(quals(vec![index_cond], None)).is_empty());
        let out = run(quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            None,
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "missing_index.unresolved");
        assert_eq!(out[0].label("columns"), Some("#2"));
        assert!(out[0]
            .advice
            .contains("[repositories.main.monitored.\"db1\"]"));
    }

    fn validated(before: f64, after: f64, error: Option<&str>) -> QualsWindow {
        let mut q = quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        );
        q.validations.push(Validation {
            dbid: 1,
            relid: ORDERS,
            columns: vec![2],
            queries: vec![QueryCost {
                queryid: 11,
                before,
                after,
                uses_index: after < before,
            }],
            error: error.map(str::to_string),
            details: vec![],
        });
        q
    }

    #[test]
    fn hypopg_results_gate_and_inform() {
        let out = run(validated(5000.0, 150.0, None));
        assert_eq!(out[0].rule, "missing_index.btree_validated");
        assert_eq!(out[0].metric("cost_before"), Some(5000.0));
        assert_eq!(out[0].metric("cost_after"), Some(150.0));
        assert!(out[0]
            .advice
            .starts_with("hypopg: estimated cost 5000 → 150 (97% less)"));
        // Below the minimum gain: dropped.
        assert!(run(validated(5000.0, 4000.0, None)).is_empty());
        // Kept when validation is off.
        let off = MissingIndexSettings {
            hypopg: false,
            ..Default::default()
        };
        assert_eq!(run_with(validated(5000.0, 4000.0, None), off).len(), 1);
        // A check that could not run keeps the suggestion and says why.
        let out = run(validated(0.0, 0.0, Some("hypopg is not installed")));
        assert_eq!(out[0].rule, "missing_index.btree");
        assert!(out[0].advice.contains("hypopg is not installed"));
    }

    #[test]
    fn a_table_missing_from_a_read_catalog_was_dropped() {
        let mut q = quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            None,
        );
        q.catalogs.insert(1, DbCatalog::default());
        assert!(run(q).is_empty());
    }

    #[test]
    fn what_could_not_be_read_is_one_finding_per_server() {
        let mut q = quals(vec![], None);
        q.notes = vec![
            "database `app`: hypopg is not installed".into(),
            "server `db1`: cannot connect to database `crm`".into(),
        ];
        let out = run(q);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "missing_index.blind");
        assert!(out[0]
            .advice
            .contains("hypopg is not installed; server `db1`"));
    }

    #[test]
    fn fingerprint_is_stable_across_numbers() {
        let a = run(quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        ));
        let b = run(quals(
            vec![qual(7, 99, &[(2, INT_EQ)], 500.0, 310_000.0, 8.0)],
            Some(orders(310_000.0, vec![])),
        ));
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        let c = run(quals(
            vec![qual(1, 11, &[(3, TEXT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        ));
        assert_ne!(a[0].fingerprint, c[0].fingerprint);
    }
}
