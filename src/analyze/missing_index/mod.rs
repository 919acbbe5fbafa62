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
//!
//! The parts: `candidates` chooses the indexes from the quals, `statement` words them
//! (names, `CREATE INDEX`, helped queries), `verdict` applies hypopg's; this file holds
//! the settings and turns each kept candidate into an insight.

mod candidates;
mod statement;
mod verdict;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use crate::powa::qualstats::QualsWindow;
use crate::powa::reader::StatementsWindow;
pub use candidates::{candidates, worth_a_look, worth_naming, Candidate};
use sentinel_actors::{Insight, Severity};
pub use statement::ddl;
use statement::Names;
pub use verdict::validation_of;

/// `[analyzers.missing_index]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissingIndexSettings {
    /// Default true (it only has data where PoWA collects pg_qualstats).
    pub enabled: bool,
    /// A predicate group's query must have run at least this many times in the window
    /// ([`QualsWindow::executions`]: pg_stat_statements' calls, as pg_qualstats samples).
    /// Default 10.
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

impl AnalyzerSettings for MissingIndexSettings {
    fn check(&self, c: &mut Checks<'_>) {
        for (key, v) in [
            ("min_filter_ratio", self.min_filter_ratio),
            ("min_gain", self.min_gain),
        ] {
            c.flag(
                !(0.0..=1.0).contains(&v),
                key,
                format!("must be a share between 0 and 1 (got {v})"),
            );
        }
        c.at_least_one("max_per_table", self.max_per_table, self.enabled);
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

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
        if !verdict::keeps(s, validation) {
            return None;
        }
        let names = Names::of(q, c);
        let ids = statement::helped(c);
        let mut metrics = BTreeMap::from([
            ("executions".to_string(), c.executions),
            ("rows_evaluated".to_string(), c.evaluated()),
            ("rows_filtered".to_string(), c.filtered()),
            ("filter_ratio".to_string(), c.filter_ratio()),
            (
                "rows_filtered_per_execution".to_string(),
                c.filtered_per_execution(),
            ),
            ("queries".to_string(), ids.len() as f64),
            // Worse means more rows read for nothing per execution.
            (super::MAGNITUDE.to_string(), c.filtered_per_execution()),
        ]);
        if let Some(r) = names.relation.filter(|r| r.rows >= 0.0) {
            metrics.insert("table_rows".to_string(), r.rows);
        }
        let severity = if c.filtered() >= s.warning_filtered_rows {
            Severity::Warning
        } else {
            Severity::Info
        };
        let title = format!(
            "Missing index on {} ({}) in {} / {}: {:.0}% of rows filtered, {:.0} per execution",
            names.table,
            names.columns,
            w.server.name,
            names.database,
            c.filter_ratio() * 100.0,
            c.filtered_per_execution()
        );
        let fingerprint = super::server_fingerprint(
            w,
            &[
                names.database.as_str(),
                names.table.as_str(),
                names.columns.as_str(),
                "missing_index",
            ],
        );
        let (rule, advice) = names.advice(w, q, c);
        let mut found = Insight {
            severity,
            title,
            advice,
            text: Some(names.text(q, c)),
            metrics,
            ..super::insight(w, "missing_index", rule, fingerprint)
        };
        found.labels.extend([
            ("database".to_string(), names.database),
            ("table".to_string(), names.table),
            ("columns".to_string(), names.columns),
            ("srvid".to_string(), w.server.srvid.to_string()),
            ("queryids".to_string(), statement::listed(&ids)),
        ]);
        verdict::tell(validation, &mut found);
        Some(found)
    }
}

/// What kept the advisor from seeing everything (quals unreadable, a monitored database
/// unreachable, hypopg missing): one finding per server, so it gets fixed.
fn blind(w: &StatementsWindow, q: &QualsWindow) -> Option<Insight> {
    if q.notes.is_empty() {
        return None;
    }
    let fingerprint = super::server_fingerprint(w, &["missing_index_blind"]);
    Some(Insight {
        title: format!("Index advisor cannot see everything on {}", w.server.name),
        advice: format!(
            "Fix what is below, or narrow the advisor ([analyzers.missing_index]): {}",
            q.notes.join("; ")
        ),
        metrics: super::metrics([
            ("problems", q.notes.len() as f64),
            (super::MAGNITUDE, q.notes.len() as f64),
        ]),
        ..super::insight(w, "missing_index", "blind", fingerprint)
    })
}

analyze_statements!(MissingIndexAnalyzer, "missing_index");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{
        advise, advise_with, orders, qual, quals, window, INT_EQ, LIKE, TEXT_EQ,
    };

    /// pg_qualstats sampled 3 of the query's 50 calls (its sample rate, or its table
    /// full): the guard and the figures go by the calls pg_stat_statements counted, the
    /// shares and sizes per execution by what pg_qualstats saw.
    #[test]
    fn sampled_quals_count_the_query_calls() {
        let rel = || Some(orders(300_000.0, vec![]));
        let sampled = || {
            quals(
                vec![qual(1, 11, &[(2, INT_EQ)], 3.0, 300_000.0, 3.0)],
                rel(),
            )
        };
        assert!(
            advise(sampled()).is_empty(),
            "3 executions alone are too few"
        );
        let mut q = sampled();
        q.calls.insert((11, 1, 10), 50.0);
        let found = advise(q);
        assert_eq!(found.len(), 1, "{found:#?}");
        let i = &found[0];
        assert_eq!(i.metric("executions"), Some(50.0));
        assert_eq!(i.metric("rows_filtered"), Some(50.0 * 299_997.0));
        assert_eq!(i.metric("rows_filtered_per_execution"), Some(299_997.0));
        // 15M rows thrown away over the 50 calls: past warning_filtered_rows, which the
        // 900k pg_qualstats saw are not.
        assert_eq!(i.severity, Severity::Warning);
        // A filter inside a nested loop runs more often than its query: its own count.
        let mut inner = quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 400.0, 300_000.0, 3.0)],
            rel(),
        );
        inner.calls.insert((11, 1, 10), 20.0);
        assert_eq!(advise(inner)[0].metric("executions"), Some(400.0));
    }

    #[test]
    fn quiet_below_every_guard() {
        let rel = || Some(orders(300_000.0, vec![]));
        let eq = [(2, INT_EQ)];
        // Too few executions.
        assert!(advise(quals(vec![qual(1, 11, &eq, 5.0, 300_000.0, 3.0)], rel())).is_empty());
        // Few rows discarded per execution.
        assert!(advise(quals(vec![qual(1, 11, &eq, 50.0, 900.0, 3.0)], rel())).is_empty());
        // Most rows kept: a poor filter.
        assert!(advise(quals(
            vec![qual(1, 11, &eq, 50.0, 300_000.0, 250_000.0)],
            rel()
        ))
        .is_empty());
        // A small table.
        assert!(advise(quals(
            vec![qual(1, 11, &eq, 50.0, 300_000.0, 3.0)],
            Some(orders(500.0, vec![]))
        ))
        .is_empty());
        // An operator a btree cannot serve.
        assert!(advise(quals(
            vec![qual(1, 11, &[(3, LIKE)], 50.0, 300_000.0, 3.0)],
            rel()
        ))
        .is_empty());
        // PoWA's own statements.
        let mut own = quals(vec![qual(1, 11, &eq, 50.0, 300_000.0, 3.0)], rel());
        own.texts
            .insert((11, 1, 10), "SELECT powa_take_snapshot()".into());
        assert!(advise(own).is_empty());
        // Off.
        let off = MissingIndexSettings {
            enabled: false,
            ..Default::default()
        };
        assert!(advise_with(
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
    fn what_could_not_be_read_is_one_finding_per_server() {
        let mut q = quals(vec![], None);
        q.notes = vec![
            "database `app`: hypopg is not installed".into(),
            "server `db1`: cannot connect to database `crm`".into(),
        ];
        let out = advise(q);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "missing_index.blind");
        assert!(out[0]
            .advice
            .contains("hypopg is not installed; server `db1`"));
    }

    #[test]
    fn fingerprint_is_stable_across_numbers() {
        let a = advise(quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        ));
        let b = advise(quals(
            vec![qual(7, 99, &[(2, INT_EQ)], 500.0, 310_000.0, 8.0)],
            Some(orders(310_000.0, vec![])),
        ));
        assert_eq!(a[0].fingerprint, b[0].fingerprint);
        let c = advise(quals(
            vec![qual(1, 11, &[(3, TEXT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        ));
        assert_ne!(a[0].fingerprint, c[0].fingerprint);
    }
}
