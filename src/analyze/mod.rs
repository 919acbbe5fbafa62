//! Analyzers: each turns a server's snapshot into insights. One file per analyzer, its
//! settings beside it; what they share (where a finding is, its identity, its time, the
//! checks of their settings) is here and in [`checks`].

/// `Analyze` for an analyzer of one server's statements window: its name, and its
/// `analyze_window` on the snapshot's body. A macro rather than a blanket impl: `Analyze`
/// belongs to the runtime's crate, and Rust allows no blanket impl of another crate's trait.
macro_rules! analyze_statements {
    ($analyzer:ty, $name:literal) => {
        impl sentinel_actors::analyzer::Analyze for $analyzer {
            type Input = crate::powa::reader::StatementsWindow;

            fn name(&self) -> &str {
                $name
            }

            fn analyze(
                &mut self,
                snapshot: &sentinel_actors::Snapshot<Self::Input>,
            ) -> Vec<sentinel_actors::Insight> {
                self.analyze_window(&snapshot.body)
            }
        }
    };
}

pub mod baseline;
pub mod changes;
pub mod checks;
pub mod classify;
#[cfg(test)]
mod fixtures;
pub mod health_score;
pub mod missing_index;
pub mod per_server;
pub mod powa_health;
pub mod regression;
pub mod resource_hog;
pub mod slow_query;
pub mod workload_change;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::powa::reader::{QueryStats, StatementsWindow};
use crate::problem::Problem;
pub use changes::{SettingsChangeAnalyzer, SettingsChangeSettings};
pub use health_score::{HealthScoreAnalyzer, HealthScoreSettings};
pub use missing_index::{MissingIndexAnalyzer, MissingIndexSettings};
pub use per_server::{AnalyzerSettings, PerServer};
pub use powa_health::{PowaHealthAnalyzer, PowaHealthSettings};
pub use regression::{RegressionAnalyzer, RegressionSettings};
pub use resource_hog::{ResourceHogAnalyzer, ResourceHogSettings};
use sentinel_actors::{Fingerprint, Insight, Severity};
pub use slow_query::{SlowQueryAnalyzer, SlowQuerySettings};
pub use workload_change::{WorkloadChangeAnalyzer, WorkloadChangeSettings};

/// The metric every insight carries: the number whose growth means the problem got worse
/// (a share of time, a slowdown factor, bytes…). The gate compares it between cycles to
/// tell an escalation from the same problem seen again.
pub const MAGNITUDE: &str = "magnitude";

/// `[analyzers]`: one table per analyzer, each with optional per-server overrides
/// (`[analyzers.<name>.servers."<repository>/<server>"]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzersSettings {
    pub slow_queries: PerServer<SlowQuerySettings>,
    pub regression: PerServer<RegressionSettings>,
    pub powa_health: PerServer<PowaHealthSettings>,
    pub workload_change: PerServer<WorkloadChangeSettings>,
    pub resource_hogs: PerServer<ResourceHogSettings>,
    pub health_score: PerServer<HealthScoreSettings>,
    pub missing_index: MissingIndexSettings,
    pub settings_change: PerServer<SettingsChangeSettings>,
}

impl AnalyzersSettings {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let at = |analyzer: &str| format!("{path}.{analyzer}");
        self.slow_queries.validate(&at("slow_queries"), problems);
        self.regression.validate(&at("regression"), problems);
        self.powa_health.validate(&at("powa_health"), problems);
        self.workload_change
            .validate(&at("workload_change"), problems);
        self.resource_hogs.validate(&at("resource_hogs"), problems);
        self.health_score.validate(&at("health_score"), problems);
        self.missing_index.validate(&at("missing_index"), problems);
        self.settings_change
            .validate(&at("settings_change"), problems);
    }
}

/// An analyzer of one server's statements window whose only state is its settings. The
/// per-server lookup and the `enabled` switch are here, once; each analyzer supplies its
/// rules ([`WindowRules`]).
pub struct WindowAnalyzer<S> {
    settings: PerServer<S>,
}

/// What an analyzer finds in a window, under the settings in force for its server (where
/// the analyzer is enabled).
pub trait WindowRules<S> {
    fn findings(&self, s: &S, w: &StatementsWindow) -> Vec<Insight>;
}

impl<S: AnalyzerSettings> WindowAnalyzer<S>
where
    Self: WindowRules<S>,
{
    pub fn new(settings: impl Into<PerServer<S>>) -> Self {
        WindowAnalyzer {
            settings: settings.into(),
        }
    }

    /// Nothing for a server the analyzer is disabled for.
    pub fn analyze_window(&self, w: &StatementsWindow) -> Vec<Insight> {
        let s = self.settings.get(&w.repository, &w.server.name);
        if !s.enabled() {
            return Vec::new();
        }
        let mut out = self.findings(s, w);
        changes::attach(&mut out, w);
        out
    }
}

/// The database name, or its oid when PoWA no longer knows the name.
pub fn database_name(q: &QueryStats) -> String {
    q.database
        .as_deref()
        .map_or_else(|| format!("oid {}", q.key.dbid), str::to_string)
}

/// Where a finding about a server is: repository and server.
pub fn server_labels(w: &StatementsWindow) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("repository".to_string(), w.repository.clone()),
        ("server".to_string(), w.server.name.clone()),
    ])
}

/// Where a finding about one query is: repository, server, database, user, queryid.
pub fn query_labels(w: &StatementsWindow, q: &QueryStats) -> BTreeMap<String, String> {
    let mut labels = server_labels(w);
    labels.extend([
        ("database".to_string(), database_name(q)),
        (
            "user".to_string(),
            q.user
                .as_deref()
                .map_or_else(|| format!("oid {}", q.key.userid), str::to_string),
        ),
        ("queryid".to_string(), q.key.queryid.to_string()),
        // For links to powa-web's pages, which are addressed by server id.
        ("srvid".to_string(), w.server.srvid.to_string()),
    ]);
    labels
}

/// Stable identity of a finding about a server: repository, server, then `tags` (the
/// kind, and what the finding is about on that server).
pub fn server_fingerprint(w: &StatementsWindow, tags: &[&str]) -> Fingerprint {
    Fingerprint::of(
        [w.repository.as_str(), w.server.name.as_str()]
            .into_iter()
            .chain(tags.iter().copied()),
    )
}

/// Stable identity of a finding about one query series: the series' full PoWA key, then
/// `tags` (the kind, and the rule where one kind has several findings per query).
pub fn query_fingerprint(w: &StatementsWindow, q: &QueryStats, tags: &[&str]) -> Fingerprint {
    let key = [
        w.repository.clone(),
        w.server.name.clone(),
        q.key.dbid.to_string(),
        q.key.userid.to_string(),
        q.key.queryid.to_string(),
        q.key.toplevel.map(|t| t.to_string()).unwrap_or_default(),
    ];
    Fingerprint::of(key.iter().map(String::as_str).chain(tags.iter().copied()))
}

/// The insight of rule `<kind>.<rule>` with identity `fingerprint` about the server of
/// `w`: labelled with the repository and the server, about the window and dated by its
/// newest snapshot, as every analyzer does it. It is info and says nothing yet: the
/// analyzer sets what it found over it, `Insight { severity, title, advice, metrics,
/// ..insight(…) }`.
pub fn insight(w: &StatementsWindow, kind: &str, rule: &str, fingerprint: Fingerprint) -> Insight {
    Insight {
        fingerprint,
        kind: kind.to_string(),
        rule: format!("{kind}.{rule}"),
        severity: Severity::Info,
        labels: server_labels(w),
        title: String::new(),
        advice: String::new(),
        text: None,
        metrics: BTreeMap::new(),
        window: w.window,
        observed_at: w.last_ts.unwrap_or(w.window.end),
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

/// [`insight`] about query `q`: its [`query_labels`], its [`query_fingerprint`] with
/// `tags`, and its text.
pub fn query_insight(
    w: &StatementsWindow,
    q: &QueryStats,
    kind: &str,
    rule: &str,
    tags: &[&str],
) -> Insight {
    Insight {
        labels: query_labels(w, q),
        text: q.query.as_deref().map(str::to_string),
        ..insight(w, kind, rule, query_fingerprint(w, q, tags))
    }
}

/// Metrics from `(name, value)` pairs.
pub fn metrics<'a>(pairs: impl IntoIterator<Item = (&'a str, f64)>) -> BTreeMap<String, f64> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `part / whole`, 0 when there is no whole (an idle server, a filter never run).
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// The queries of `w` that are not PoWA's or the sentinel's own work (a query without
/// text counts as the user's): what a server's totals are made of.
pub fn user_queries(w: &StatementsWindow) -> impl Iterator<Item = &QueryStats> {
    w.queries
        .iter()
        .filter(|q| q.query.as_deref().is_none_or(|t| !is_monitoring_query(t)))
}

/// pg_stat_kcache's numbers of a query as metrics, when it has them.
pub fn kcache_metrics(q: &QueryStats, metrics: &mut BTreeMap<String, f64>) {
    if let Some(k) = q.kcache {
        metrics.insert("cpu_time_ms".to_string(), k.cpu_time_ms());
        metrics.insert("read_bytes".to_string(), k.reads_bytes);
        metrics.insert("write_bytes".to_string(), k.writes_bytes);
    }
}

/// Statements PoWA itself or the sentinel runs: never the user's problem. Everything
/// PoWA does (snapshots of each module, aggregation, purge, remote `_src` reads) and every
/// read of its tables (powa-web, the sentinel) names one of PoWA's objects; a user table
/// that merely starts with `powa_` does not count.
pub fn is_monitoring_query(text: &str) -> bool {
    const POWA: &[&str] = &[
        "powa_take_snapshot",
        "powa_statements",
        "powa_qualstats",
        "powa_kcache",
        "powa_wait_sampling",
        "powa_functions",
        "powa_servers",
        "powa_snapshot",
        "powa_databases",
        "powa_catalog",
        "powa_extension",
        "powa_module",
        "powa_all_",
        "powa_stat_",
        "powa_user_functions",
        "powa_db_module",
        "powa_roles",
    ];
    let t = text.to_ascii_lowercase();
    (t.contains("powa_") && (t.contains("_src(") || POWA.iter().any(|p| t.contains(p))))
        // The sentinel's own reads on the monitored servers say who they are.
        || t.contains("/* powa-sentinel */")
        || t.contains("pg_qualstats_reset")
        || t.contains("pg_stat_kcache_reset")
}

/// Maintenance and session statements (VACUUM, CREATE INDEX, COPY, BEGIN…): their cost is
/// not fixed by tuning a query.
pub fn is_utility(text: &str) -> bool {
    const UTILITY: &[&str] = &[
        "vacuum",
        "analyze",
        "analyse",
        "create",
        "alter",
        "drop",
        "truncate",
        "reindex",
        "cluster",
        "checkpoint",
        "begin",
        "commit",
        "rollback",
        "start",
        "end",
        "set",
        "reset",
        "show",
        "discard",
        "deallocate",
        "listen",
        "notify",
        "unlisten",
        "grant",
        "revoke",
        "comment",
        "copy",
        "lock",
        "refresh",
        "savepoint",
        "release",
        "prepare",
        "execute",
        "do",
        "call",
        "load",
        "security",
    ];
    let first = text
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    UTILITY.contains(&first.as_str())
}

/// A duration in milliseconds, the way a person says it: `850 µs`, `12.3 ms`, `4.2 s`,
/// `3 min 20 s`.
pub fn human_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        if s < 3600 {
            format!("{} min {} s", s / 60, s % 60)
        } else {
            format!("{} h {} min", s / 3600, (s % 3600) / 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config/powa-sentinel.toml documents every analyzer key with its default value.
    #[test]
    fn the_shipped_config_documents_the_defaults() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let s = crate::config::Settings::load_with_env(&p, Some(BTreeMap::new()))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = &s.analyzers;
        fn debug<S: std::fmt::Debug>(shipped: &S, default: S) -> (String, String) {
            (format!("{shipped:?}"), format!("{default:?}"))
        }
        let pairs = [
            debug(&*a.slow_queries, SlowQuerySettings::default()),
            debug(&*a.regression, RegressionSettings::default()),
            debug(&*a.powa_health, PowaHealthSettings::default()),
            debug(&*a.workload_change, WorkloadChangeSettings::default()),
            debug(&*a.resource_hogs, ResourceHogSettings::default()),
            debug(&*a.health_score, HealthScoreSettings::default()),
        ];
        for (shipped, default) in pairs {
            assert_eq!(shipped, default);
        }
    }

    #[test]
    fn classifies_statements() {
        assert!(is_utility("VACUUM ANALYZE pgbench_accounts"));
        assert!(is_utility("  copy t from stdin"));
        assert!(!is_utility("SELECT * FROM t"));
        assert!(!is_utility("with x as (select 1) select * from x"));
        assert!(is_monitoring_query("SELECT powa_take_snapshot()"));
        assert!(is_monitoring_query("SELECT powa_statements_snapshot($1)"));
        assert!(is_monitoring_query("SELECT powa_kcache_aggregate($1)"));
        assert!(is_monitoring_query(
            "/* powa-sentinel */ SELECT quote_ident(n.nspname) FROM pg_catalog.pg_index i"
        ));
        assert!(is_monitoring_query(
            "SELECT $1, * FROM public.powa_statements_src($2)"
        ));
        assert!(!is_monitoring_query(
            "SELECT * FROM powa_orders WHERE id = $1"
        ));
    }
}
