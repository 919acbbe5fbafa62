//! Workload changes against the baseline window: call volumes that jump or collapse, heavy
//! queries that were not there before, and temp-file spills that grew. Slower calls are the
//! regression analyzer's business; this one is about *how much* is run.
//!
//! Every rule needs the change to matter in absolute terms too (extra calls, time, blocks),
//! so that a query going from 2 to 9 calls is never news.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Problem;
use crate::powa::reader::{QueryKey, QueryStats, StatementsWindow, CALLS, EXEC_TIME, TEMP_WRITTEN};
use sentinel_actors::analyzer::Analyze;
use sentinel_actors::{Insight, Severity, Snapshot};

/// `[analyzers.workload_change]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadChangeSettings {
    /// Default true. Needs a baseline: see `analysis.baseline_offset`.
    pub enabled: bool,
    /// Calls now / calls then (or then / now for a collapse) from which it is a change.
    /// Default 3.
    pub calls_factor: f64,
    /// Smallest difference in calls worth a message. Default 1000.
    pub min_extra_calls: u64,
    /// The query must cost at least this much in the window where it is big. Default 1s.
    #[serde(with = "humantime_serde")]
    pub min_total_time: Duration,
    /// A query absent from the baseline is reported when it takes at least this share of
    /// the server's time now. Default 0.1.
    pub new_query_min_share: f64,
    /// Temp blocks written now / then from which a spill is reported. Default 4.
    pub temp_factor: f64,
    /// Smallest temp spill worth a message, in blocks (8 kB each). Default 12800 (100 MB).
    pub min_temp_blocks: u64,
}

impl Default for WorkloadChangeSettings {
    fn default() -> Self {
        WorkloadChangeSettings {
            enabled: true,
            calls_factor: 3.0,
            min_extra_calls: 1000,
            min_total_time: Duration::from_secs(1),
            new_query_min_share: 0.1,
            temp_factor: 4.0,
            min_temp_blocks: 12_800,
        }
    }
}

impl WorkloadChangeSettings {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        for (key, v) in [
            ("calls_factor", self.calls_factor),
            ("temp_factor", self.temp_factor),
        ] {
            if v.is_nan() || v <= 1.0 {
                problems.push(Problem::new(format!("{path}.{key}"), "must be above 1"));
            }
        }
        if !(0.0..=1.0).contains(&self.new_query_min_share) {
            problems.push(Problem::new(
                format!("{path}.new_query_min_share"),
                "is a fraction of the server's time, between 0 and 1",
            ));
        }
    }
}

pub struct WorkloadChangeAnalyzer {
    settings: WorkloadChangeSettings,
}

struct Finding<'a> {
    rule: &'static str,
    severity: Severity,
    q: &'a QueryStats,
    title: String,
    advice: &'static str,
    metrics: Vec<(&'static str, f64)>,
}

impl WorkloadChangeAnalyzer {
    pub fn new(settings: WorkloadChangeSettings) -> Self {
        WorkloadChangeAnalyzer { settings }
    }

    pub fn analyze_window(&self, w: &StatementsWindow) -> Vec<Insight> {
        let s = &self.settings;
        let Some(base) = w.baselines.first() else {
            return Vec::new();
        };
        // No baseline data at all (PoWA purged it, or the server is new): nothing is "new".
        if !s.enabled || base.queries.is_empty() {
            return Vec::new();
        }
        let before: HashMap<QueryKey, &QueryStats> =
            base.queries.iter().map(|q| (q.key, q)).collect();
        let server_total: f64 = w.queries.iter().map(|q| q.get(EXEC_TIME)).sum();
        let floor_ms = s.min_total_time.as_secs_f64() * 1000.0;
        let user_query = |q: &QueryStats| {
            q.query
                .as_deref()
                .is_none_or(|t| !super::is_monitoring_query(t) && !super::is_utility(t))
        };
        let mut found = Vec::new();
        for q in w.queries.iter().filter(|q| user_query(q)) {
            let (calls, time) = (q.get(CALLS), q.get(EXEC_TIME));
            let share = if server_total > 0.0 {
                time / server_total
            } else {
                0.0
            };
            let Some(b) = before.get(&q.key) else {
                if share >= s.new_query_min_share && time >= floor_ms {
                    found.push(Finding {
                        rule: "new_heavy_query",
                        severity: if share >= 0.5 { Severity::Warning } else { Severity::Info },
                        q,
                        title: format!(
                            "New query on {} takes {:.0}% of its time ({} calls, none in the baseline)",
                            w.server.name,
                            share * 100.0,
                            calls
                        ),
                        advice: "A release or a new job brought it: check that it is expected, and its plan before it grows.",
                        metrics: vec![("calls", calls), ("total_time_ms", time), ("share_of_total_time", share)],
                    });
                }
                continue;
            };
            let (calls_then, time_then) = (b.get(CALLS), b.get(EXEC_TIME));
            if calls >= s.calls_factor * calls_then.max(1.0)
                && calls - calls_then >= s.min_extra_calls as f64
                && time >= floor_ms
            {
                found.push(Finding {
                    rule: "calls_up",
                    severity: if share >= 0.2 { Severity::Warning } else { Severity::Info },
                    q,
                    title: format!(
                        "Calls ×{:.1} on {}: {:.0} → {:.0} in the same window",
                        calls / calls_then.max(1.0),
                        w.server.name,
                        calls_then,
                        calls
                    ),
                    advice: "The application runs it much more often than before: look for a retry loop, an N+1 pattern, a cache that stopped working, or a new caller.",
                    metrics: vec![
                        ("calls", calls),
                        ("baseline_calls", calls_then),
                        ("total_time_ms", time),
                        ("baseline_total_time_ms", time_then),
                        ("share_of_total_time", share),
                    ],
                });
            } else if calls_then >= s.calls_factor * calls.max(1.0)
                && calls_then - calls >= s.min_extra_calls as f64
                && time_then >= floor_ms
            {
                found.push(Finding {
                    rule: "calls_down",
                    severity: Severity::Info,
                    q,
                    title: format!(
                        "Calls collapsed on {}: {:.0} → {:.0} in the same window",
                        w.server.name, calls_then, calls
                    ),
                    advice: "A heavy query almost stopped: expected after a change, or a sign that a feature or a job is failing upstream.",
                    metrics: vec![("calls", calls), ("baseline_calls", calls_then)],
                });
            }
            let (temp, temp_then) = (q.get(TEMP_WRITTEN), b.get(TEMP_WRITTEN));
            if temp >= s.temp_factor * temp_then.max(1.0)
                && temp - temp_then >= s.min_temp_blocks as f64
            {
                found.push(Finding {
                    rule: "temp_up",
                    severity: Severity::Warning,
                    q,
                    title: format!(
                        "Temp files ×{:.1} on {}: {:.0} MB written",
                        temp / temp_then.max(1.0),
                        w.server.name,
                        temp * 8192.0 / 1e6
                    ),
                    advice: "Its sorts or hashes no longer fit in work_mem: the data grew or the plan changed; check EXPLAIN (ANALYZE, BUFFERS) and work_mem for it.",
                    metrics: vec![("temp_blks_written", temp), ("baseline_temp_blks_written", temp_then)],
                });
            }
        }
        found.into_iter().map(|f| self.insight(w, f)).collect()
    }

    fn insight(&self, w: &StatementsWindow, f: Finding<'_>) -> Insight {
        let q = f.q;
        let labels = super::query_labels(w, q);
        Insight {
            fingerprint: super::query_fingerprint(w, q, &["workload_change", f.rule]),
            kind: "workload_change".to_string(),
            rule: format!("workload_change.{}", f.rule),
            severity: f.severity,
            labels,
            title: f.title,
            advice: f.advice.to_string(),
            text: q.query.as_deref().map(str::to_string),
            metrics: f
                .metrics
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            window: w.window,
            observed_at: w.last_ts.unwrap_or(w.window.end),
            status: None,
        }
    }
}

impl Analyze for WorkloadChangeAnalyzer {
    type Input = StatementsWindow;

    fn name(&self) -> &str {
        "workload_change"
    }

    fn analyze(&mut self, snapshot: &Snapshot<StatementsWindow>) -> Vec<Insight> {
        self.analyze_window(&snapshot.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query as q, with_baseline as windows};

    fn rules(out: &[Insight]) -> Vec<(String, String)> {
        out.iter()
            .map(|i| (i.rule.clone(), i.label("queryid").unwrap().to_string()))
            .collect()
    }

    #[test]
    fn spikes_collapses_and_new_heavy_queries_fire() {
        let a = WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default());
        let mut temp = q(4, 100.0, 5_000.0);
        temp.counters[TEMP_WRITTEN] = 50_000.0;
        let mut temp_then = q(4, 100.0, 4_000.0);
        temp_then.counters[TEMP_WRITTEN] = 1_000.0;
        let w = windows(
            vec![
                q(1, 30_000.0, 6_000.0),
                q(2, 10.0, 10.0),
                q(3, 500.0, 40_000.0),
                temp,
            ],
            vec![q(1, 3_000.0, 600.0), q(2, 20_000.0, 4_000.0), temp_then],
        );
        let out = a.analyze_window(&w);
        assert_eq!(
            rules(&out),
            [
                ("workload_change.calls_up".to_string(), "1".to_string()),
                ("workload_change.calls_down".to_string(), "2".to_string()),
                (
                    "workload_change.new_heavy_query".to_string(),
                    "3".to_string()
                ),
                ("workload_change.temp_up".to_string(), "4".to_string()),
            ]
        );
    }

    #[test]
    fn small_or_cheap_changes_stay_quiet() {
        let a = WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default());
        let w = windows(
            vec![
                q(1, 9.0, 5_000.0),     // ×4.5 but only 7 more calls
                q(2, 50_000.0, 200.0),  // ×10 calls but 0.2 s in all
                q(3, 600.0, 400.0),     // new, but cheap
                q(4, 2_000.0, 9_000.0), // ×2: below the factor
            ],
            vec![
                q(1, 2.0, 1_000.0),
                q(2, 5_000.0, 20.0),
                q(4, 1_000.0, 4_000.0),
                q(9, 1.0, 1.0),
            ],
        );
        assert!(
            a.analyze_window(&w).is_empty(),
            "{:#?}",
            a.analyze_window(&w)
        );
        // An empty baseline (purged history) makes nothing "new".
        let fresh = windows(vec![q(3, 500.0, 40_000.0)], vec![]);
        assert!(a.analyze_window(&fresh).is_empty());
    }
}
