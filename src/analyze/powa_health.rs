//! PoWA's own health: a server PoWA stopped snapshotting, snapshot errors, and a retention
//! too short for the baseline. "PoWA stopped collecting" is itself an insight — without it,
//! silence from every other analyzer would look like good news.

use std::time::Duration;

use serde::Deserialize;

use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use super::{WindowAnalyzer, WindowRules};
use crate::powa::reader::StatementsWindow;
use sentinel_actors::{Insight, Severity};

/// `[analyzers.powa_health]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowaHealthSettings {
    /// Default true.
    pub enabled: bool,
    /// A server is stale when its last snapshot is older than this many snapshot periods…
    /// Default 10 (powa-collector 1.2 snapshots about every 3 periods in practice).
    pub stale_after_periods: u32,
    /// …and older than this. Default 15m.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// The baseline the retention must cover (window + baseline offset); set by the
    /// topology from `[analysis]`, not from this table.
    #[serde(skip)]
    pub needed_retention: Option<Duration>,
}

impl Default for PowaHealthSettings {
    fn default() -> Self {
        PowaHealthSettings {
            enabled: true,
            stale_after_periods: 10,
            stale_after: Duration::from_secs(15 * 60),
            needed_retention: None,
        }
    }
}

impl AnalyzerSettings for PowaHealthSettings {
    fn check(&self, c: &mut Checks<'_>) {
        c.flag(
            self.stale_after_periods == 0,
            "stale_after_periods",
            "must be at least 1",
        );
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

pub type PowaHealthAnalyzer = WindowAnalyzer<PowaHealthSettings>;

impl WindowRules<PowaHealthSettings> for PowaHealthAnalyzer {
    fn findings(&self, s: &PowaHealthSettings, w: &StatementsWindow) -> Vec<Insight> {
        let server = &w.server;
        let now = w.window.end;
        let mut out = Vec::new();
        let mut push =
            |rule: &str, severity, title: String, advice: &str, metrics: Vec<(&str, f64)>| {
                let fingerprint = super::server_fingerprint(w, &["powa_health", rule]);
                out.push(Insight {
                    severity,
                    title,
                    advice: advice.to_string(),
                    metrics: super::metrics(metrics),
                    // At the window's end, where the snapshot's age is measured from.
                    observed_at: now,
                    ..super::insight(w, "powa_health", rule, fingerprint)
                });
            };
        if let Some(freq) = server.frequency {
            let limit = (freq * s.stale_after_periods).max(s.stale_after);
            let age = server
                .last_snapshot
                .map(|t| (now - t).to_std().unwrap_or_default());
            let stale = match age {
                Some(a) => a > limit,
                None => true,
            };
            if stale {
                let title = match (age, server.last_snapshot) {
                    (Some(a), Some(t)) => format!(
                        "PoWA has not snapshotted {} for {} (last at {})",
                        server.name,
                        humantime::format_duration(Duration::from_secs(a.as_secs())),
                        t.format("%Y-%m-%d %H:%M UTC")
                    ),
                    _ => format!("PoWA has never snapshotted {}", server.name),
                };
                push(
                    "stale",
                    Severity::Critical,
                    title,
                    "Check that powa-collector (remote servers) or the powa background worker (local) is running and can reach the server; its log and powa_snapshot_metas.errors say why. Until then no other insight can be trusted for this server.",
                    vec![
                        ("snapshot_age_ms", age.map_or(f64::NAN, |a| a.as_secs_f64() * 1000.0)),
                        ("frequency_ms", freq.as_secs_f64() * 1000.0),
                        // Never snapshotted is as bad as it gets: no finite age.
                        (super::MAGNITUDE, age.map_or(f64::MAX, |a| a.as_secs_f64() * 1000.0)),
                    ],
                );
            }
        }
        if !server.errors.is_empty() {
            push(
                "errors",
                Severity::Warning,
                format!(
                    "PoWA's last snapshot of {} failed in: {}",
                    server.name,
                    server.errors.join(", ")
                ),
                "Those modules' data is missing for this server: check the collector log, and that the extensions exist on the server in the versions PoWA expects.",
                vec![
                    ("failed_functions", server.errors.len() as f64),
                    (super::MAGNITUDE, server.errors.len() as f64),
                ],
            );
        }
        // PoWA itself not collecting what the analyses need. Only modules registered and
        // then switched off are reported (a module never installed is a choice).
        if !server.modules.iter().any(|m| m == "pg_stat_statements") {
            push(
                "modules",
                Severity::Warning,
                format!("PoWA does not collect pg_stat_statements for {}", server.name),
                "No query can be analysed on this server: register the module (powa_activate_extension / powa_register_server with pg_stat_statements) and enable its snapshots in powa_functions.",
                vec![("disabled_modules", server.disabled_modules.len() as f64), (super::MAGNITUDE, 1.0)],
            );
        } else if !server.disabled_modules.is_empty() {
            push(
                "modules",
                Severity::Info,
                format!(
                    "PoWA's {} snapshots are disabled for {}",
                    server.disabled_modules.join(", "),
                    server.name
                ),
                "What they feed is off for this server (pg_stat_kcache: CPU and disk hogs; pg_qualstats: index advice; pg_wait_sampling: wait events): enable them again in powa_functions (powa_activate_extension), or deactivate them for good to silence this.",
                vec![
                    ("disabled_modules", server.disabled_modules.len() as f64),
                    (super::MAGNITUDE, server.disabled_modules.len() as f64),
                ],
            );
        }
        if let (Some(ret), Some(needed)) = (server.retention, s.needed_retention) {
            if ret < needed {
                push(
                    "retention",
                    Severity::Info,
                    format!(
                        "{} keeps {} of history, the baseline needs {}",
                        server.name,
                        humantime::format_duration(ret),
                        humantime::format_duration(needed)
                    ),
                    "Regressions cannot be found on this server: raise its retention (powa_configure_server / powa.retention) or lower analysis.baseline_offset.",
                    vec![
                        ("retention_ms", ret.as_secs_f64() * 1000.0),
                        ("needed_retention_ms", needed.as_secs_f64() * 1000.0),
                        (super::MAGNITUDE, (needed - ret).as_secs_f64() * 1000.0),
                    ],
                );
            }
        }
        out
    }
}

analyze_statements!(PowaHealthAnalyzer, "powa_health");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures;
    use crate::powa::discovery::ServerInfo;
    use chrono::{TimeZone, Utc};

    fn window(server: ServerInfo) -> StatementsWindow {
        let mut w = fixtures::window(vec![]);
        w.server = server;
        w
    }

    fn server(age_s: i64, freq_s: u64) -> ServerInfo {
        let mut s = ServerInfo::named(1, "db1");
        s.modules = vec!["pg_stat_statements".into(), "pg_stat_kcache".into()];
        s.frequency = Some(Duration::from_secs(freq_s));
        s.last_snapshot = Some(Utc.timestamp_opt(1_700_000_000 - age_s, 0).unwrap());
        s.retention = Some(Duration::from_secs(30 * 86400));
        s
    }

    #[test]
    fn healthy_server_is_quiet() {
        let a = PowaHealthAnalyzer::new(PowaHealthSettings {
            needed_retention: Some(Duration::from_secs(8 * 86400)),
            ..Default::default()
        });
        // 3 periods late is what powa-collector 1.2 normally is.
        assert!(a.analyze_window(&window(server(900, 300))).is_empty());
        // The local server with its worker off has no frequency: nothing to judge.
        let mut local = ServerInfo::named(0, "local");
        local.modules = vec!["pg_stat_statements".into()];
        assert!(a.analyze_window(&window(local)).is_empty());
    }

    /// Modules switched off say what is lost; no pg_stat_statements at all is a warning;
    /// a module never registered is nobody's problem.
    #[test]
    fn disabled_modules_are_reported() {
        let a = PowaHealthAnalyzer::new(PowaHealthSettings::default());
        let mut s = server(60, 300);
        s.modules = vec!["pg_stat_statements".into()];
        assert!(a.analyze_window(&window(s.clone())).is_empty());
        s.disabled_modules = vec!["pg_qualstats".into(), "pg_stat_kcache".into()];
        let out = a.analyze_window(&window(s.clone()));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "powa_health.modules");
        assert_eq!(out[0].severity, Severity::Info);
        assert!(
            out[0].title.contains("pg_qualstats, pg_stat_kcache"),
            "{}",
            out[0].title
        );
        s.modules.clear();
        s.disabled_modules = vec!["pg_stat_statements".into()];
        let out = a.analyze_window(&window(s));
        assert_eq!(out[0].severity, Severity::Warning);
    }

    #[test]
    fn stale_errors_and_short_retention_fire() {
        let a = PowaHealthAnalyzer::new(PowaHealthSettings {
            needed_retention: Some(Duration::from_secs(8 * 86400)),
            ..Default::default()
        });
        let mut s = server(4 * 3600, 300);
        s.errors = vec!["powa_kcache_snapshot".into()];
        s.retention = Some(Duration::from_secs(86400));
        let out = a.analyze_window(&window(s));
        let rules: Vec<&str> = out.iter().map(|i| i.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "powa_health.stale",
                "powa_health.errors",
                "powa_health.retention"
            ]
        );
        assert_eq!(out[0].severity, Severity::Critical);
        assert!(out[0].title.contains("4h"), "{}", out[0].title);
        // Stable identity per server and rule.
        let again = a.analyze_window(&window(server(5 * 3600, 300)));
        assert_eq!(again[0].fingerprint, out[0].fingerprint);
    }
}
