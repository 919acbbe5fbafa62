//! Analyzers: each turns a server's snapshot into insights. One file per analyzer, its
//! settings beside it.

pub mod baseline;
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
pub use health_score::{HealthScoreAnalyzer, HealthScoreSettings};
pub use missing_index::{MissingIndexAnalyzer, MissingIndexSettings};
pub use per_server::{AnalyzerSettings, PerServer};
pub use powa_health::{PowaHealthAnalyzer, PowaHealthSettings};
pub use regression::{RegressionAnalyzer, RegressionSettings};
pub use resource_hog::{ResourceHogAnalyzer, ResourceHogSettings};
use sentinel_actors::Fingerprint;
pub use slow_query::{SlowQueryAnalyzer, SlowQuerySettings};
pub use workload_change::{WorkloadChangeAnalyzer, WorkloadChangeSettings};

/// The metric every insight carries: the number whose growth means the problem got worse
/// (a share of time, a slowdown factor, bytes…). The gate compares it between cycles to
/// tell an escalation from the same problem seen again.
pub const MAGNITUDE: &str = "magnitude";

/// `[analyzers]`: one table per analyzer, each with optional per-server overrides
/// (`[analyzers.<name>.servers."<repository>/<server>"]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzersSettings {
    #[serde(default)]
    pub slow_queries: PerServer<SlowQuerySettings>,
    #[serde(default)]
    pub regression: PerServer<RegressionSettings>,
    #[serde(default)]
    pub powa_health: PerServer<PowaHealthSettings>,
    #[serde(default)]
    pub workload_change: PerServer<WorkloadChangeSettings>,
    #[serde(default)]
    pub resource_hogs: PerServer<ResourceHogSettings>,
    #[serde(default)]
    pub health_score: PerServer<HealthScoreSettings>,
    #[serde(default)]
    pub missing_index: MissingIndexSettings,
}

impl AnalyzersSettings {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        self.slow_queries
            .validate(&format!("{path}.slow_queries"), problems);
        self.regression
            .validate(&format!("{path}.regression"), problems);
        self.powa_health
            .validate(&format!("{path}.powa_health"), problems);
        self.workload_change
            .validate(&format!("{path}.workload_change"), problems);
        self.resource_hogs
            .validate(&format!("{path}.resource_hogs"), problems);
        self.health_score
            .validate(&format!("{path}.health_score"), problems);
        self.missing_index
            .validate(&format!("{path}.missing_index"), problems);
    }
}

/// The database name, or its oid when PoWA no longer knows the name.
pub fn database_name(q: &QueryStats) -> String {
    q.database
        .as_deref()
        .map_or_else(|| format!("oid {}", q.key.dbid), str::to_string)
}

/// Where a finding about one query is: repository, server, database, user, queryid.
pub fn query_labels(w: &StatementsWindow, q: &QueryStats) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("repository".to_string(), w.repository.clone()),
        ("server".to_string(), w.server.name.clone()),
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
    ])
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
        let pairs = [
            (
                format!("{:?}", *a.slow_queries),
                format!("{:?}", SlowQuerySettings::default()),
            ),
            (
                format!("{:?}", *a.regression),
                format!("{:?}", RegressionSettings::default()),
            ),
            (
                format!("{:?}", *a.powa_health),
                format!("{:?}", PowaHealthSettings::default()),
            ),
            (
                format!("{:?}", *a.workload_change),
                format!("{:?}", WorkloadChangeSettings::default()),
            ),
            (
                format!("{:?}", *a.resource_hogs),
                format!("{:?}", ResourceHogSettings::default()),
            ),
            (
                format!("{:?}", *a.health_score),
                format!("{:?}", HealthScoreSettings::default()),
            ),
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
            "SELECT $1, * FROM public.powa_statements_src($2)"
        ));
        assert!(!is_monitoring_query(
            "SELECT * FROM powa_orders WHERE id = $1"
        ));
    }
}
