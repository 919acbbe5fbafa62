//! A health score per server: 0–100 and a status word, for the person who wants one number
//! per server before reading the details.
//!
//! The score starts at 100 and loses points per component; each component is capped, so
//! one kind of problem cannot hide the others, and each is reported as its own metric
//! (`penalty_<component>`), so the number can always be explained. Components:
//!
//! | component        | penalty                                                        | cap |
//! |------------------|----------------------------------------------------------------|-----|
//! | `powa_stale`     | 40 when PoWA stopped snapshotting the server                   | 40  |
//! | `powa_errors`    | 10 when PoWA's last snapshot had errors                        | 10  |
//! | `regressions`    | 20 / 10 / 3 per critical / warning / info regression           | 40  |
//! | `workload`       | 5 per warning, 2 per info workload change (not collapses)      | 20  |
//! | `resource_hogs`  | 5 per warning, 2 per info resource hog                         | 15  |
//! | `top_query`      | 0 at ≤ 50% of the server's time in one query, to 15 at 100%    | 15  |
//! | `cache_hit`      | 0 at ≥ 95% shared-buffer hits, to 10 at ≤ 50%                  | 10  |
//!
//! The findings behind the first five come from the other analyzers, run here with their
//! own (per-server) settings, so the score agrees with what they report. The last two need a
//! busy enough server (`min_server_time`, 100,000 blocks accessed).
//!
//! One info insight per server (fingerprint: repository, server, kind), emitted only when
//! the score is below `report_below` or when the status changed since the previous cycle,
//! so a healthy fleet produces nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::checks::Checks;
use super::per_server::{AnalyzerSettings, PerServer};
use super::{PowaHealthAnalyzer, RegressionAnalyzer, ResourceHogAnalyzer, WorkloadChangeAnalyzer};
use crate::powa::reader::{StatementsWindow, EXEC_TIME, SHARED_HIT, SHARED_READ};
use sentinel_actors::{Insight, Severity};

/// `[analyzers.health_score]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthScoreSettings {
    /// Default true.
    pub enabled: bool,
    /// From this score up the server is `healthy`. Default 90.
    pub healthy_from: f64,
    /// Below this score the server is `critical`; between the two, `degraded`. Default 60.
    pub critical_below: f64,
    /// Report the score every cycle while it is below this. Default 90 (= not healthy).
    pub report_below: f64,
    /// Also report when the status word changes (e.g. back to healthy). Default true.
    pub report_status_changes: bool,
    /// The server must have run at least this much in the window for the `top_query` and
    /// `cache_hit` components to count. Default 1m.
    #[serde(with = "humantime_serde")]
    pub min_server_time: Duration,
}

impl Default for HealthScoreSettings {
    fn default() -> Self {
        HealthScoreSettings {
            enabled: true,
            healthy_from: 90.0,
            critical_below: 60.0,
            report_below: 90.0,
            report_status_changes: true,
            min_server_time: Duration::from_secs(60),
        }
    }
}

impl AnalyzerSettings for HealthScoreSettings {
    fn check(&self, c: &mut Checks<'_>) {
        c.within(
            &[
                ("healthy_from", self.healthy_from),
                ("critical_below", self.critical_below),
                ("report_below", self.report_below),
            ],
            0.0..=100.0,
            "is a score, between 0 and 100",
        );
        c.flag(
            self.critical_below > self.healthy_from,
            "critical_below",
            "must not be above healthy_from",
        );
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The status word of a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Degraded,
    Critical,
}

impl Status {
    fn of(score: f64, s: &HealthScoreSettings) -> Status {
        if score >= s.healthy_from {
            Status::Healthy
        } else if score >= s.critical_below {
            Status::Degraded
        } else {
            Status::Critical
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Critical => "critical",
        }
    }
}

/// The analyzers whose findings feed the score.
pub struct HealthInputs {
    pub powa: PowaHealthAnalyzer,
    pub regression: RegressionAnalyzer,
    pub workload: WorkloadChangeAnalyzer,
    pub hogs: ResourceHogAnalyzer,
}

/// One server's score and what it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub score: f64,
    /// (component, penalty, short reason), in the table's order; only non-zero penalties.
    pub penalties: Vec<(&'static str, f64, String)>,
}

pub struct HealthScoreAnalyzer {
    settings: PerServer<HealthScoreSettings>,
    inputs: HealthInputs,
    /// Status of each server at the previous cycle; bounded by the number of servers.
    last: HashMap<String, Status>,
}

fn weight(sev: Severity, critical: f64, warning: f64, info: f64) -> f64 {
    match sev {
        Severity::Critical => critical,
        Severity::Warning => warning,
        Severity::Info => info,
    }
}

impl HealthScoreAnalyzer {
    pub fn new(settings: impl Into<PerServer<HealthScoreSettings>>, inputs: HealthInputs) -> Self {
        HealthScoreAnalyzer {
            settings: settings.into(),
            inputs,
            last: HashMap::new(),
        }
    }

    /// The score of one window, without the reporting policy.
    pub fn score(&self, s: &HealthScoreSettings, w: &StatementsWindow) -> Score {
        let mut penalties = Vec::new();
        let mut add = |name: &'static str, p: f64, cap: f64, why: String| {
            let p = p.min(cap);
            if p > 0.0 {
                penalties.push((name, p, why));
            }
        };
        let powa = self.inputs.powa.analyze_window(w);
        if powa.iter().any(|i| i.rule == "powa_health.stale") {
            add("powa_stale", 40.0, 40.0, "PoWA is not snapshotting".into());
        }
        if powa.iter().any(|i| i.rule == "powa_health.errors") {
            add("powa_errors", 10.0, 10.0, "PoWA snapshot errors".into());
        }
        let reg = self.inputs.regression.analyze_window(w);
        add(
            "regressions",
            reg.iter()
                .map(|i| weight(i.severity, 20.0, 10.0, 3.0))
                .sum(),
            40.0,
            format!("{} regression(s)", reg.len()),
        );
        let wl: Vec<Insight> = self
            .inputs
            .workload
            .analyze_window(w)
            .into_iter()
            .filter(|i| i.rule != "workload_change.calls_down")
            .collect();
        add(
            "workload",
            wl.iter().map(|i| weight(i.severity, 5.0, 5.0, 2.0)).sum(),
            20.0,
            format!("{} workload change(s)", wl.len()),
        );
        let hogs = self.inputs.hogs.analyze_window(w);
        add(
            "resource_hogs",
            hogs.iter().map(|i| weight(i.severity, 5.0, 5.0, 2.0)).sum(),
            15.0,
            format!("{} resource hog(s)", hogs.len()),
        );
        let user: Vec<_> = super::user_queries(w).collect();
        let total: f64 = user.iter().map(|q| q.get(EXEC_TIME)).sum();
        if total >= s.min_server_time.as_secs_f64() * 1000.0 {
            let top = user.iter().map(|q| q.get(EXEC_TIME)).fold(0.0, f64::max) / total;
            add(
                "top_query",
                ((top - 0.5) / 0.5).clamp(0.0, 1.0) * 15.0,
                15.0,
                format!("one query takes {:.0}% of the time", top * 100.0),
            );
            let hit: f64 = user.iter().map(|q| q.get(SHARED_HIT)).sum();
            let read: f64 = user.iter().map(|q| q.get(SHARED_READ)).sum();
            if hit + read >= 100_000.0 {
                let ratio = hit / (hit + read);
                add(
                    "cache_hit",
                    ((0.95 - ratio) / 0.45).clamp(0.0, 1.0) * 10.0,
                    10.0,
                    format!("cache hit ratio {:.0}%", ratio * 100.0),
                );
            }
        }
        let lost: f64 = penalties.iter().map(|p| p.1).sum();
        Score {
            score: (100.0 - lost).max(0.0).round(),
            penalties,
        }
    }

    pub fn analyze_window(&mut self, w: &StatementsWindow) -> Vec<Insight> {
        let s = self.settings.get(&w.repository, &w.server.name).clone();
        if !s.enabled {
            return Vec::new();
        }
        let score = self.score(&s, w);
        let status = Status::of(score.score, &s);
        let key = format!("{}/{}", w.repository, w.server.name);
        let before = self.last.insert(key, status);
        let changed = before.is_some_and(|b| b != status);
        if score.score >= s.report_below && !(changed && s.report_status_changes) {
            return Vec::new();
        }
        let mut metrics = BTreeMap::from([
            ("score".to_string(), score.score),
            // Worse means more points lost.
            (super::MAGNITUDE.to_string(), 100.0 - score.score),
        ]);
        for (name, p, _) in &score.penalties {
            metrics.insert(format!("penalty_{name}"), *p);
        }
        let why = if score.penalties.is_empty() {
            "nothing found".to_string()
        } else {
            score
                .penalties
                .iter()
                .map(|(_, p, why)| format!("{why} (−{p:.0})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let was = match before {
            Some(b) if changed => format!(", was {}", b.as_str()),
            _ => String::new(),
        };
        let advice = match status {
            Status::Healthy => "Back to healthy: nothing to do.".to_string(),
            _ => "Start with the component that costs the most points; the other insights for this server give the details.".to_string(),
        };
        let fingerprint = super::server_fingerprint(w, &["health_score"]);
        let mut found = super::insight(w, "health_score", "score", fingerprint);
        found
            .labels
            .insert("health".to_string(), status.as_str().to_string());
        vec![Insight {
            title: format!(
                "Health of {}: {:.0}/100 ({}{was}): {why}",
                w.server.name,
                score.score,
                status.as_str()
            ),
            advice,
            metrics,
            ..found
        }]
    }
}

analyze_statements!(HealthScoreAnalyzer, "health_score");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query, window, with_baseline};
    use crate::analyze::{
        PowaHealthSettings, RegressionSettings, ResourceHogSettings, WorkloadChangeSettings,
    };

    fn analyzer(s: HealthScoreSettings) -> HealthScoreAnalyzer {
        HealthScoreAnalyzer::new(
            s,
            HealthInputs {
                powa: PowaHealthAnalyzer::new(PowaHealthSettings::default()),
                regression: RegressionAnalyzer::new(RegressionSettings::default()),
                workload: WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default()),
                hogs: ResourceHogAnalyzer::new(ResourceHogSettings::default()),
            },
        )
    }

    /// Ten queries sharing 100 s evenly, all fast in the baseline too.
    fn calm() -> Vec<crate::powa::reader::QueryStats> {
        (0..10).map(|i| query(i, 1000.0, 10_000.0)).collect()
    }

    #[test]
    fn a_healthy_server_is_quiet() {
        let mut a = analyzer(HealthScoreSettings::default());
        let w = with_baseline(calm(), calm());
        assert_eq!(a.score(&HealthScoreSettings::default(), &w).score, 100.0);
        assert!(a.analyze_window(&w).is_empty());
        assert!(a.analyze_window(&window(vec![])).is_empty());
    }

    #[test]
    fn problems_lower_the_score_and_it_is_explained() {
        let mut a = analyzer(HealthScoreSettings::default());
        // Query 0 regressed 50× and now carries most of the server.
        let mut now = calm();
        now[0] = query(0, 1000.0, 500_000.0);
        let w = with_baseline(now, calm());
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 1, "{out:#?}");
        let i = &out[0];
        assert_eq!(i.kind, "health_score");
        assert_eq!(i.severity, Severity::Info);
        // Critical regression (20) + top query at 84% ((0.847-0.5)/0.5 × 15 ≈ 10).
        assert_eq!(i.metric("penalty_regressions"), Some(20.0));
        let top = i.metric("penalty_top_query").unwrap();
        assert!((top - 10.4).abs() < 0.1, "{top}");
        assert_eq!(i.metric("score"), Some((100.0f64 - 20.0 - top).round()));
        assert_eq!(
            i.metric("magnitude"),
            Some(100.0 - i.metric("score").unwrap())
        );
        assert_eq!(i.label("health"), Some("degraded"));
        assert!(i.title.contains("1 regression"), "{}", i.title);
        // Same server, next cycle: same fingerprint.
        let again = a.analyze_window(&w);
        assert_eq!(again[0].fingerprint, i.fingerprint);
        // Recovery is reported once, then silence.
        let healthy = with_baseline(calm(), calm());
        let back = a.analyze_window(&healthy);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].label("health"), Some("healthy"));
        assert!(back[0].title.contains("was degraded"), "{}", back[0].title);
        assert!(a.analyze_window(&healthy).is_empty());
    }

    #[test]
    fn thresholds_are_validated() {
        let mut problems = Vec::new();
        HealthScoreSettings {
            critical_below: 95.0,
            report_below: 120.0,
            ..Default::default()
        }
        .validate("analyzers.health_score", &mut problems);
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "analyzers.health_score.report_below",
                "analyzers.health_score.critical_below"
            ]
        );
    }
}
