//! Which btree indexes the quals call for: predicate groups past the guards become, per
//! table, candidates with the equality columns first (ordered by how many groups share
//! them, so that one index serves several queries through its prefix) and then at most one
//! range column (a btree narrows its scan on the first range column only). Groups whose
//! columns are a prefix of another's join it; a candidate an existing index already
//! provides is dropped when the table's catalog was read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::MissingIndexSettings;
use crate::analyze::ratio;
use crate::powa::qualstats::{QualKey, QualStats, QualsWindow};

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
    /// pg_qualstats' counters, summed over its groups: sampled (see
    /// [`QualsWindow::calls`]), so they give shares and per-execution sizes.
    pub occurrences: f64,
    pub execution_count: f64,
    pub nbfiltered: f64,
    /// How often its groups' queries ran ([`QualsWindow::executions`]).
    pub executions: f64,
}

impl Candidate {
    /// Share of the evaluated rows its groups discarded.
    pub fn filter_ratio(&self) -> f64 {
        ratio(self.nbfiltered, self.execution_count).min(1.0)
    }

    /// Rows its groups discarded per execution.
    pub fn filtered_per_execution(&self) -> f64 {
        ratio(self.nbfiltered, self.occurrences)
    }

    /// Rows its groups discarded in the window: per execution, times the executions
    /// pg_stat_statements counted.
    pub fn filtered(&self) -> f64 {
        self.filtered_per_execution() * self.executions
    }

    /// Rows its groups were evaluated on in the window, counted the same way.
    pub fn evaluated(&self) -> f64 {
        ratio(self.execution_count, self.occurrences) * self.executions
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
    w.executions(q) >= s.min_executions as f64 && worth_naming(w, q, s)
}

/// A predicate group selective enough for a candidate, however few times it ran: its
/// table is named for the findings about its query, which show the filter.
pub fn worth_naming(w: &QualsWindow, q: &QualStats, s: &MissingIndexSettings) -> bool {
    q.filtered_per_execution() >= s.min_filtered_rows_per_execution
        && q.filter_ratio() >= s.min_filter_ratio
        && !w
            .text(&q.key)
            .is_some_and(crate::analyze::is_monitoring_query)
}

/// One group's columns on one table, with its counters.
struct Group {
    key: QualKey,
    eq: BTreeSet<i32>,
    range: Option<i32>,
    all_filters: bool,
    occ: f64,
    exec: f64,
    filt: f64,
    runs: f64,
}

/// The candidates of one server's quals, strongest first. Pure: the collector calls it
/// too, to know what to try with hypopg.
pub fn candidates(w: &QualsWindow, s: &MissingIndexSettings) -> Vec<Candidate> {
    let mut by_table: BTreeMap<(u32, u32), Vec<Group>> = BTreeMap::new();
    for q in w.quals.iter().filter(|q| worth_a_look(w, q, s)) {
        let relids: BTreeSet<u32> = q.predicates.iter().map(|p| p.relid).collect();
        for relid in relids {
            match w.relation(q.key.dbid, relid) {
                Some(rel) if rel.rows >= 0.0 && rel.rows < s.min_table_rows => continue,
                // The database's catalog was read and the table is gone: dropped since.
                None if w.catalogs.contains_key(&q.key.dbid) => continue,
                _ => {}
            }
            if let Some(g) = group(w, q, relid) {
                by_table.entry((q.key.dbid, relid)).or_default().push(g);
            }
        }
    }
    let mut out: Vec<Candidate> = by_table
        .into_iter()
        .flat_map(|((dbid, relid), groups)| of_table(w, s, dbid, relid, groups))
        .collect();
    out.sort_by(|a, b| {
        b.filtered()
            .total_cmp(&a.filtered())
            .then((a.dbid, a.relid).cmp(&(b.dbid, b.relid)))
    });
    out
}

/// The columns group `q` filters on in table `relid` that a btree can serve, if any.
fn group(w: &QualsWindow, q: &QualStats, relid: u32) -> Option<Group> {
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
        return None;
    }
    Some(Group {
        key: q.key,
        eq,
        range,
        all_filters,
        occ: q.occurrences,
        exec: q.execution_count,
        filt: q.nbfiltered,
        runs: w.executions(q),
    })
}

/// The candidates of one table, strongest first, at most `max_per_table`.
fn of_table(
    w: &QualsWindow,
    s: &MissingIndexSettings,
    dbid: u32,
    relid: u32,
    groups: Vec<Group>,
) -> Vec<Candidate> {
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
                    executions: 0.0,
                });
                table.last_mut().expect("just pushed")
            }
        };
        c.quals.push(g.key);
        c.queries.insert((g.key.queryid, g.key.userid));
        c.occurrences += g.occ;
        c.execution_count += g.exec;
        c.nbfiltered += g.filt;
        c.executions += g.runs;
    }
    if let Some(indexes) = rel.and_then(|r| r.indexes.as_ref()) {
        table.retain(|c| {
            !indexes.iter().any(|ix| {
                ix.am == "btree" && !ix.partial && covered(&ix.columns, &c.columns, c.equality)
            })
        });
    }
    table.sort_by(|a, b| b.filtered().total_cmp(&a.filtered()));
    table.truncate(s.max_per_table);
    table
}

#[cfg(test)]
mod tests {
    use crate::analyze::fixtures::{advise, orders, qual, quals, INT_EQ, INT_GT, TEXT_EQ};
    use crate::powa::qualstats::DbCatalog;
    use sentinel_actors::Severity;

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
        let out = advise(q);
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
        let out = advise(q);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].label("columns"), Some("customer_id, status"));
        assert_eq!(out[0].label("queryids"), Some("11,12,13"));
        assert_eq!(out[0].metric("queries"), Some(3.0));
        assert_eq!(out[0].metric("executions"), Some(110.0));
    }

    #[test]
    fn an_existing_index_covers_the_equality_set_in_any_order() {
        let preds = [(2, INT_EQ), (3, TEXT_EQ)];
        let covered = quals(
            vec![qual(1, 11, &preds, 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![vec![3, 2, 4]])),
        );
        assert!(advise(covered).is_empty());
        // An index on one of the columns does not give what the pair gives.
        let partial = quals(
            vec![qual(1, 11, &preds, 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![vec![2]])),
        );
        assert_eq!(advise(partial).len(), 1);
    }

    #[test]
    fn a_table_missing_from_a_read_catalog_was_dropped() {
        let mut q = quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            None,
        );
        q.catalogs.insert(1, DbCatalog::default());
        assert!(advise(q).is_empty());
    }
}
