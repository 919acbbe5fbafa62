//! Regressions: queries whose mean time per call went up against the baseline: the same
//! window shifted back by `analysis.baseline_offset`, or with several past windows
//! (`analysis.baseline_periods`), their median and robust spread (see [`super::baseline`]).
//!
//! Mean times of fast queries are noisy (on a busy machine a 0.05 ms query varies 2–3×
//! between windows), so a regression must pass every guard: enough calls in both windows,
//! an absolute increase in milliseconds, a relative factor, and enough time in the current
//! window to matter. Severity grows with the factor and with the query's share of the
//! server's time: a 10× slowdown of a query nobody runs is less urgent than a 2× slowdown
//! of the query that carries the server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::baseline::{median, Baselines, Robust};
use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use super::{WindowAnalyzer, WindowRules};
use crate::powa::reader::{QueryStats, StatementsWindow, CALLS, EXEC_TIME, ROWS};
use sentinel_actors::{Insight, Severity};

/// `[analyzers.regression]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegressionSettings {
    /// Default true. Needs a baseline: see `analysis.baseline_offset`.
    pub enabled: bool,
    /// Calls needed in each window for a mean to mean something. Default 10.
    pub min_calls: u64,
    /// Smallest increase of the mean time per call worth a message. Default 2ms.
    #[serde(with = "humantime_serde")]
    pub min_mean_increase: Duration,
    /// Current mean / baseline mean from which it is a regression. Default 1.5 (+50%).
    pub min_factor: f64,
    /// The query must cost at least this much in the current window. Default 1s.
    #[serde(with = "humantime_serde")]
    pub min_total_time: Duration,
    /// Factor from which it is a warning (or from 10% of the server's time). Default 3.
    pub warning_factor: f64,
    /// Factor from which it is critical when the query also has at least
    /// `critical_share` of the server's time. Default 10.
    pub critical_factor: f64,
    /// Default 0.2 (20% of the server's execution time in the window).
    pub critical_share: f64,
    /// With two or more baselines, the current mean must also exceed the baselines'
    /// median by this many robust standard deviations (MAD × 1.4826). Default 3.
    pub spread_factor: f64,
}

impl Default for RegressionSettings {
    fn default() -> Self {
        RegressionSettings {
            enabled: true,
            min_calls: 10,
            min_mean_increase: Duration::from_millis(2),
            min_factor: 1.5,
            min_total_time: Duration::from_secs(1),
            warning_factor: 3.0,
            critical_factor: 10.0,
            critical_share: 0.2,
            spread_factor: 3.0,
        }
    }
}

impl AnalyzerSettings for RegressionSettings {
    fn check(&self, c: &mut Checks<'_>) {
        c.above_one(
            &[("min_factor", self.min_factor)],
            "must be above 1 (1.5 means 50% slower than the baseline)",
        );
        c.flag(
            self.warning_factor < self.min_factor || self.critical_factor < self.warning_factor,
            "warning_factor",
            "keep min_factor <= warning_factor <= critical_factor",
        );
        c.share_of_time("critical_share", self.critical_share);
        c.deviations(
            "spread_factor",
            self.spread_factor,
            "must be 0 or more (robust standard deviations above the baselines' median)",
        );
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The baseline a query is compared with: medians over the baselines where it ran enough.
struct Then {
    /// Baselines used (where the query had at least `min_calls`).
    n: usize,
    mean: Robust,
    calls: f64,
    rows_per_call: f64,
}

pub type RegressionAnalyzer = WindowAnalyzer<RegressionSettings>;

impl WindowRules<RegressionSettings> for RegressionAnalyzer {
    fn findings(&self, s: &RegressionSettings, w: &StatementsWindow) -> Vec<Insight> {
        let bases = Baselines::of(w);
        if bases.is_empty() {
            return Vec::new();
        }
        let server_total: f64 = w.queries.iter().map(|q| q.get(EXEC_TIME)).sum();
        let min_calls = s.min_calls as f64;
        let floor_ms = s.min_total_time.as_secs_f64() * 1000.0;
        let min_increase = s.min_mean_increase.as_secs_f64() * 1000.0;
        let mut out: Vec<(f64, Insight)> = Vec::new();
        for q in &w.queries {
            // Cheapest guards first: most of a 10,000-query window stops here.
            if q.get(CALLS) < min_calls || q.get(EXEC_TIME) < floor_ms {
                continue;
            }
            if q.query
                .as_deref()
                .is_some_and(|t| super::is_monitoring_query(t) || super::is_utility(t))
            {
                continue;
            }
            let used: Vec<&QueryStats> = bases
                .entries(&q.key)
                .flatten()
                .filter(|b| b.get(CALLS) >= min_calls)
                .collect();
            let means: Vec<f64> = used.iter().map(|b| b.mean_time_ms()).collect();
            let Some(mean) = Robust::of(&means) else {
                continue;
            };
            let now = q.mean_time_ms();
            let then = mean.median;
            if then <= 0.0 {
                continue;
            }
            let factor = now / then;
            if factor < s.min_factor
                || now - then < min_increase
                || !mean.exceeded_by(now, s.spread_factor)
            {
                continue;
            }
            let calls: Vec<f64> = used.iter().map(|b| b.get(CALLS)).collect();
            let rows: Vec<f64> = used.iter().map(|b| b.get(ROWS) / b.get(CALLS)).collect();
            let then = Then {
                n: used.len(),
                mean,
                calls: median(&calls).unwrap_or(0.0),
                rows_per_call: median(&rows).unwrap_or(0.0),
            };
            let share = super::ratio(q.get(EXEC_TIME), server_total);
            let severity = if factor >= s.critical_factor && share >= s.critical_share {
                Severity::Critical
            } else if factor >= s.warning_factor || share >= 0.1 {
                Severity::Warning
            } else {
                Severity::Info
            };
            let extra = (now - then.mean.median) * q.get(CALLS);
            out.push((
                extra,
                self.insight(w, bases.len(), q, &then, factor, share, severity),
            ));
        }
        // Most extra time first: that is what the regression costs the server.
        out.sort_by(|a, b| b.0.total_cmp(&a.0));
        out.into_iter().map(|(_, i)| i).collect()
    }
}

impl RegressionAnalyzer {
    #[allow(clippy::too_many_arguments)]
    fn insight(
        &self,
        w: &StatementsWindow,
        present: usize,
        q: &QueryStats,
        b: &Then,
        factor: f64,
        share: f64,
        severity: Severity,
    ) -> Insight {
        let database = super::database_name(q);
        let (now, then) = (q.mean_time_ms(), b.mean.median);
        let rows_now = q.get(ROWS) / q.get(CALLS);
        let rows_then = b.rows_per_call;
        let mut found = super::query_insight(w, q, "regression", "mean_time", &["regression"]);
        let profile = super::classify::classify(w, q, share);
        profile.label(&mut found.labels);
        let mut metrics = BTreeMap::new();
        metrics.insert("mean_time_ms".to_string(), now);
        metrics.insert("baseline_mean_time_ms".to_string(), then);
        metrics.insert("baseline_mean_time_spread_ms".to_string(), b.mean.sigma);
        metrics.insert("baselines_used".to_string(), b.n as f64);
        metrics.insert("baselines_present".to_string(), present as f64);
        metrics.insert("factor".to_string(), factor);
        metrics.insert("calls".to_string(), q.get(CALLS));
        metrics.insert("baseline_calls".to_string(), b.calls);
        metrics.insert("extra_time_ms".to_string(), (now - then) * q.get(CALLS));
        metrics.insert("share_of_total_time".to_string(), share);
        metrics.insert("rows_per_call".to_string(), rows_now);
        metrics.insert("baseline_rows_per_call".to_string(), rows_then);
        // Worse means slower still: the slowdown factor.
        metrics.insert(super::MAGNITUDE.to_string(), factor);
        let advice = if rows_then > 0.0 && rows_now / rows_then >= 2.0 {
            format!(
                "It now returns {rows_now:.0} rows per call instead of {rows_then:.0}: the data or the parameters changed; check the filters and whether the application asks for more than it needs."
            )
        } else {
            use super::classify::Class;
            match profile.class {
                // The numbers name the cause: say it.
                Class::LockWait
                | Class::TempSpill
                | Class::SelectiveFilter
                | Class::WholeTableAggregate
                | Class::IoBound
                | Class::CpuBound => format!(
                    "Same work, slower. {} Compare its plan now with the plan before (EXPLAIN (ANALYZE, BUFFERS)).",
                    profile.advice
                ),
                _ => "Same work, slower: compare its plan now with the plan before (EXPLAIN (ANALYZE, BUFFERS)); look for a dropped or invalid index, stale statistics (ANALYZE), a changed setting, or lock waits.".to_string(),
            }
        };
        let against = if b.n > 1 {
            format!(" (median of {} past windows)", b.n)
        } else {
            String::new()
        };
        Insight {
            severity,
            title: format!(
                "Query on {} / {database} is {factor:.1}× slower: {} → {} per call{against}",
                w.server.name,
                super::human_ms(then),
                super::human_ms(now)
            ),
            advice,
            metrics,
            ..found
        }
    }
}

analyze_statements!(RegressionAnalyzer, "regression");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query, with_baseline as windows};

    fn q(id: i64, calls: f64, mean_ms: f64) -> QueryStats {
        query(id, calls, calls * mean_ms)
    }

    /// Query 1 run 400 times at a mean of `now` ms, and at `then` ms in each past window.
    fn weekly(now: f64, then: &[f64]) -> StatementsWindow {
        crate::analyze::fixtures::with_baselines(
            vec![q(1, 400.0, now)],
            then.iter().map(|m| vec![q(1, 400.0, *m)]).collect(),
        )
    }

    #[test]
    fn a_real_slowdown_fires() {
        let a = RegressionAnalyzer::new(RegressionSettings::default());
        let w = windows(
            vec![q(1, 400.0, 40.0), q(2, 100.0, 1.0)],
            vec![q(1, 400.0, 0.1), q(2, 100.0, 1.0)],
        );
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].label("queryid"), Some("1"));
        assert!((out[0].metric("factor").unwrap() - 400.0).abs() < 1e-6);
        assert_eq!(out[0].severity, Severity::Critical);
        assert_eq!(out[0].kind, "regression");
    }

    #[test]
    fn noise_stays_quiet() {
        let a = RegressionAnalyzer::new(RegressionSettings::default());
        let w = windows(
            vec![
                q(1, 5000.0, 0.03), // 0.01 ms -> 0.03 ms: 3× but far below the 2 ms floor
                q(2, 5.0, 900.0),   // too few calls
                q(3, 50.0, 12.0),   // +20%: below the factor
                q(4, 500.0, 50.0),  // no baseline: a new query is not a regression
            ],
            vec![q(1, 5000.0, 0.01), q(2, 5.0, 100.0), q(3, 50.0, 10.0)],
        );
        assert!(a.analyze_window(&w).is_empty());
        // And nothing without a baseline at all.
        let mut no_base = windows(vec![q(1, 400.0, 40.0)], vec![]);
        no_base.baselines.clear();
        assert!(a.analyze_window(&no_base).is_empty());
    }

    #[test]
    fn one_odd_week_neither_makes_nor_hides_a_regression() {
        let a = RegressionAnalyzer::new(RegressionSettings::default());
        // Against the odd week alone this is 20× slower; against the usual weeks it is
        // the same.
        let w = weekly(40.0, &[2.0, 41.0, 39.0]);
        assert!(
            a.analyze_window(&w).is_empty(),
            "{:#?}",
            a.analyze_window(&w)
        );
        // An odd slow week does not hide a real slowdown.
        let w = weekly(40.0, &[2.0, 45.0, 2.2]);
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].metric("baselines_used"), Some(3.0));
        assert!((out[0].metric("baseline_mean_time_ms").unwrap() - 2.2).abs() < 1e-9);
        assert!((out[0].metric("magnitude").unwrap() - 40.0 / 2.2).abs() < 1e-9);
        assert!(
            out[0].title.contains("median of 3 past windows"),
            "{}",
            out[0].title
        );
    }

    #[test]
    fn usual_spread_is_not_a_regression() {
        let a = RegressionAnalyzer::new(RegressionSettings::default());
        // Median 20 ms, but weeks vary by ±10 ms: 35 ms is 1.75× and +15 ms, yet within
        // 3 robust standard deviations (20 + 3 × 14.8).
        let w = weekly(35.0, &[10.0, 20.0, 30.0]);
        assert!(a.analyze_window(&w).is_empty());
        // With a looser k it is one.
        let loose = RegressionAnalyzer::new(RegressionSettings {
            spread_factor: 0.5,
            ..Default::default()
        });
        assert_eq!(loose.analyze_window(&w).len(), 1);
    }

    #[test]
    fn empty_baselines_are_absent() {
        let a = RegressionAnalyzer::new(RegressionSettings::default());
        // The nearest week is purged (empty); the one before is the only sample.
        let w = crate::analyze::fixtures::with_baselines(
            vec![q(1, 400.0, 40.0)],
            vec![vec![], vec![q(1, 400.0, 2.0)], vec![]],
        );
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].metric("baselines_used"), Some(1.0));
        assert_eq!(out[0].metric("baselines_present"), Some(1.0));
        // All empty: no regression can be claimed.
        let w =
            crate::analyze::fixtures::with_baselines(vec![q(1, 400.0, 40.0)], vec![vec![], vec![]]);
        assert!(a.analyze_window(&w).is_empty());
    }

    proptest::proptest! {
        /// Whatever the weeks look like, a reported regression passes every guard against
        /// the median, and a query no slower than its baselines' median is never reported.
        #[test]
        fn guards_hold_for_any_baselines(
            now_mean in 0.01f64..200.0,
            weeks in proptest::collection::vec(0.01f64..200.0, 1..6),
            calls in 10.0f64..2000.0,
        ) {
            let a = RegressionAnalyzer::new(RegressionSettings::default());
            let w = crate::analyze::fixtures::with_baselines(
                vec![q(1, calls, now_mean)],
                weeks.iter().map(|m| vec![q(1, 100.0, *m)]).collect(),
            );
            let med = median(&weeks).unwrap();
            let out = a.analyze_window(&w);
            if now_mean <= med {
                proptest::prop_assert!(out.is_empty());
            }
            for i in &out {
                let then = i.metric("baseline_mean_time_ms").unwrap();
                proptest::prop_assert!((then - med).abs() < 1e-9);
                proptest::prop_assert!(i.metric("factor").unwrap() >= 1.5);
                proptest::prop_assert!(now_mean - then >= 2.0 - 1e-9);
            }
        }
    }
}
