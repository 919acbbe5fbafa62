//! Resource hogs: the queries that take most of a server's CPU or of its physical disk
//! reads or writes, from pg_stat_kcache. Execution time mixes CPU, disk and lock waits; a
//! DBA sizing or tuning a server needs to know *which resource* a query eats, because the
//! fix differs (a plan for CPU, an index or memory for reads, work_mem or batching for
//! writes).
//!
//! A hog is a query whose share of the server's total for one resource is above
//! `min_share`, and whose own amount is above an absolute floor, so that an idle server,
//! where one query is always "100%" of almost nothing, stays quiet.
//!
//! Without kcache data for a server, disk I/O falls back on pg_stat_statements: block I/O
//! time (track_io_timing) or, without it, shared blocks read (which include reads the OS
//! cache served). The insight says so. CPU cannot be told apart from waits without kcache,
//! so there is no CPU finding then.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use serde::Deserialize;

use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use super::{WindowAnalyzer, WindowRules};
use crate::powa::reader::{
    QueryStats, StatementsWindow, BLK_READ_TIME, BLK_WRITE_TIME, CALLS, EXEC_TIME, PLAN_TIME,
    SHARED_READ, TEMP_WRITTEN,
};
use sentinel_actors::{Insight, Severity};

/// `[analyzers.resource_hogs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceHogSettings {
    /// Default true.
    pub enabled: bool,
    /// Share of the server's total for a resource from which a query is a hog. Default 0.3.
    pub min_share: f64,
    /// Share from which it is a warning rather than info. Default 0.6.
    pub warning_share: f64,
    /// At most this many hogs per resource and server. Default 3.
    pub top_n: usize,
    /// CPU time (user + system) a query must use in the window. Default 1m.
    #[serde(with = "humantime_serde")]
    pub min_cpu_time: Duration,
    /// Physical bytes read a query must cause in the window (kcache); also the floor for
    /// shared blocks read × 8 kB in the fallback. Default 1073741824 (1 GiB).
    pub min_read_bytes: u64,
    /// Physical bytes written a query must cause in the window (kcache). Default 1 GiB.
    pub min_write_bytes: u64,
    /// Block I/O time (read + write, track_io_timing) a query must spend in the window, in
    /// the fallback without kcache. Default 1m.
    #[serde(with = "humantime_serde")]
    pub min_io_time: Duration,
}

impl Default for ResourceHogSettings {
    fn default() -> Self {
        ResourceHogSettings {
            enabled: true,
            min_share: 0.3,
            warning_share: 0.6,
            top_n: 3,
            min_cpu_time: Duration::from_secs(60),
            min_read_bytes: 1 << 30,
            min_write_bytes: 1 << 30,
            min_io_time: Duration::from_secs(60),
        }
    }
}

impl AnalyzerSettings for ResourceHogSettings {
    fn check(&self, c: &mut Checks<'_>) {
        c.within(
            &[
                ("min_share", self.min_share),
                ("warning_share", self.warning_share),
            ],
            (Bound::Excluded(0.0), Bound::Included(1.0)),
            "is a fraction of the server's total, above 0 and at most 1",
        );
        c.flag(
            self.warning_share < self.min_share,
            "warning_share",
            "must not be below min_share",
        );
        c.at_least_one("top_n", self.top_n, self.enabled);
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

/// The resources a query can hog, and how each is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resource {
    /// kcache user + system CPU, ms.
    Cpu,
    /// kcache physical reads, bytes.
    Reads,
    /// kcache physical writes, bytes.
    Writes,
    /// Fallback: block read + write time, ms.
    IoTime,
    /// Fallback: shared blocks read, as bytes.
    BlocksRead,
}

impl Resource {
    fn rule(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Reads => "reads",
            Resource::Writes => "writes",
            Resource::IoTime => "io_time",
            Resource::BlocksRead => "blocks_read",
        }
    }

    fn amount(self, q: &QueryStats) -> f64 {
        match self {
            Resource::Cpu => q.kcache.map_or(0.0, |k| k.cpu_time_ms()),
            Resource::Reads => q.kcache.map_or(0.0, |k| k.reads_bytes),
            Resource::Writes => q.kcache.map_or(0.0, |k| k.writes_bytes),
            Resource::IoTime => q.get(BLK_READ_TIME) + q.get(BLK_WRITE_TIME),
            Resource::BlocksRead => q.get(SHARED_READ) * 8192.0,
        }
    }

    /// What the server spent outside the window's queries (pg_stat_kcache series without
    /// a statement row): part of the total a query's share is taken of.
    fn unmatched(self, w: &StatementsWindow) -> f64 {
        let Some(k) = w.kcache_unmatched else {
            return 0.0;
        };
        match self {
            Resource::Cpu => k.cpu_time_ms(),
            Resource::Reads => k.reads_bytes,
            Resource::Writes => k.writes_bytes,
            Resource::IoTime | Resource::BlocksRead => 0.0,
        }
    }

    fn floor(self, s: &ResourceHogSettings) -> f64 {
        match self {
            Resource::Cpu => s.min_cpu_time.as_secs_f64() * 1000.0,
            Resource::Reads | Resource::BlocksRead => s.min_read_bytes as f64,
            Resource::Writes => s.min_write_bytes as f64,
            Resource::IoTime => s.min_io_time.as_secs_f64() * 1000.0,
        }
    }

    /// The amount the way a person says it.
    fn human(self, x: f64) -> String {
        match self {
            Resource::Cpu | Resource::IoTime => super::human_ms(x),
            _ if x >= 1e9 => format!("{:.1} GB", x / 1e9),
            _ => format!("{:.0} MB", x / 1e6),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Resource::Cpu => "CPU",
            Resource::Reads => "disk reads",
            Resource::Writes => "disk writes",
            Resource::IoTime => "block I/O time (no pg_stat_kcache)",
            Resource::BlocksRead => "blocks read (no pg_stat_kcache)",
        }
    }
}

pub type ResourceHogAnalyzer = WindowAnalyzer<ResourceHogSettings>;

impl WindowRules<ResourceHogSettings> for ResourceHogAnalyzer {
    fn findings(&self, s: &ResourceHogSettings, w: &StatementsWindow) -> Vec<Insight> {
        let queries: Vec<&QueryStats> = super::user_queries(w).collect();
        let has_kcache = queries.iter().any(|q| q.kcache.is_some());
        let resources: &[Resource] = if has_kcache {
            &[Resource::Cpu, Resource::Reads, Resource::Writes]
        } else if queries.iter().any(|q| Resource::IoTime.amount(q) > 0.0) {
            &[Resource::IoTime]
        } else {
            &[Resource::BlocksRead]
        };
        let mut out = Vec::new();
        for &r in resources {
            let total: f64 = queries.iter().map(|q| r.amount(q)).sum::<f64>() + r.unmatched(w);
            let floor = r.floor(s);
            if total < floor || total <= 0.0 {
                continue;
            }
            let mut hogs: Vec<(&QueryStats, f64)> = queries
                .iter()
                .map(|q| (*q, r.amount(q)))
                .filter(|(_, x)| *x >= floor && *x / total >= s.min_share)
                .collect();
            hogs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.key.cmp(&b.0.key)));
            for (q, x) in hogs.into_iter().take(s.top_n) {
                out.push(self.insight(s, w, q, r, x, total, has_kcache));
            }
        }
        out
    }
}

impl ResourceHogAnalyzer {
    #[allow(clippy::too_many_arguments)]
    fn insight(
        &self,
        s: &ResourceHogSettings,
        w: &StatementsWindow,
        q: &QueryStats,
        r: Resource,
        amount: f64,
        total: f64,
        has_kcache: bool,
    ) -> Insight {
        let share = amount / total;
        let database = super::database_name(q);
        let mut metrics = BTreeMap::from([
            ("share".to_string(), share),
            ("amount".to_string(), amount),
            ("server_total".to_string(), total),
            ("calls".to_string(), q.get(CALLS)),
            ("total_time_ms".to_string(), q.get(EXEC_TIME)),
            ("kcache".to_string(), if has_kcache { 1.0 } else { 0.0 }),
            (super::MAGNITUDE.to_string(), share),
        ]);
        super::kcache_metrics(q, &mut metrics);
        let profile = super::classify::classify(w, q, 0.0);
        let mut found =
            super::query_insight(w, q, "resource_hog", r.rule(), &["resource_hog", r.rule()]);
        profile.label(&mut found.labels);
        let advice = advice(q, r, &profile);
        let title = format!(
            "Query takes {:.0}% of {}'s {} ({} of {}) on {database}",
            share * 100.0,
            w.server.name,
            r.what(),
            r.human(amount),
            r.human(total),
        );
        Insight {
            severity: if share >= s.warning_share {
                Severity::Warning
            } else {
                Severity::Info
            },
            title,
            advice,
            metrics,
            ..found
        }
    }
}

/// What to do depends on the resource, and on what the counters say about the query
/// (its class: an index only when pg_qualstats saw a selective filter).
fn advice(q: &QueryStats, r: Resource, p: &super::classify::Profile) -> String {
    use super::classify::Class;
    let cause = matches!(
        p.class,
        Class::SelectiveFilter | Class::WholeTableAggregate | Class::TempSpill | Class::LockWait
    );
    match r {
        Resource::Cpu => {
            let exec = q.get(EXEC_TIME);
            let plan = q.get(PLAN_TIME);
            let mut a = if cause {
                format!("It burns CPU, not disk. {}", p.advice)
            } else {
                String::from(
                    "It burns CPU, not disk: in EXPLAIN (ANALYZE, BUFFERS) look for large sorts, hashes or aggregates, nested loops over many rows, and functions or casts evaluated per row.",
                )
            };
            if plan > 0.0 && plan >= 0.2 * (plan + exec) {
                a.push_str(&format!(
                    " Planning takes {:.0}% of its time: use prepared statements, or simplify the query (fewer joins, partitions).",
                    plan / (plan + exec) * 100.0
                ));
            }
            a.push_str(" On short queries, check that JIT does not fire (jit_above_cost).");
            a
        }
        Resource::Reads | Resource::BlocksRead | Resource::IoTime => {
            let mut a = if cause {
                format!("It reads from disk rather than memory. {} If its working set is hot data, shared_buffers or the machine's RAM are too small.", p.advice)
            } else {
                String::from(
                    "It reads from disk rather than memory: make it read less (narrower columns, LIMIT, partition pruning; EXPLAIN (ANALYZE, BUFFERS) shows which scan reads most); if its working set is hot data, shared_buffers or the machine's RAM are too small.",
                )
            };
            if r != Resource::Reads {
                a.push_str(" Install pg_stat_kcache on this server to tell real disk reads from the OS cache and to see CPU.");
            }
            a
        }
        Resource::Writes => {
            if q.get(TEMP_WRITTEN) > 0.0 {
                format!(
                    "It writes to disk, including {:.0} MB of temp files: its sorts or hashes overflow work_mem; raise work_mem for it (SET LOCAL) or make it sort less.",
                    q.get(TEMP_WRITTEN) * 8192.0 / 1e6
                )
            } else {
                "It writes to disk: data pages and WAL from bulk changes; batch the writes, drop indexes nobody uses (every write maintains them), and check checkpoint and WAL settings (max_wal_size, wal_compression).".to_string()
            }
        }
    }
}

analyze_statements!(ResourceHogAnalyzer, "resource_hogs");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query, window};
    use crate::analyze::PerServer;
    use crate::powa::kcache::Kcache;

    fn k(q: &mut QueryStats, cpu_s: f64, reads: f64, writes: f64) {
        q.kcache = Some(Kcache {
            user_time_s: cpu_s * 0.9,
            system_time_s: cpu_s * 0.1,
            reads_bytes: reads,
            writes_bytes: writes,
        });
    }

    fn rules(out: &[Insight]) -> Vec<(String, String)> {
        out.iter()
            .map(|i| (i.rule.clone(), i.label("queryid").unwrap().to_string()))
            .collect()
    }

    #[test]
    fn cpu_read_and_write_hogs_fire() {
        let a = ResourceHogAnalyzer::new(ResourceHogSettings::default());
        let mut cpu = query(1, 100.0, 400_000.0);
        k(&mut cpu, 300.0, 0.0, 0.0);
        let mut reader = query(2, 100.0, 100_000.0);
        k(&mut reader, 20.0, 8e9, 0.0);
        let mut writer = query(3, 100.0, 100_000.0);
        k(&mut writer, 20.0, 0.0, 3e9);
        writer.counters[TEMP_WRITTEN] = 300_000.0;
        let mut small = query(4, 100.0, 100_000.0);
        k(&mut small, 50.0, 1e9, 1e9);
        let out = a.analyze_window(&window(vec![cpu, reader, writer, small]));
        assert_eq!(
            rules(&out),
            [
                ("resource_hog.cpu".into(), "1".into()),
                ("resource_hog.reads".into(), "2".into()),
                ("resource_hog.writes".into(), "3".into()),
            ]
        );
        assert!((out[0].metric("share").unwrap() - 300.0 / 390.0).abs() < 1e-9);
        assert_eq!(out[0].severity, Severity::Warning);
        assert_eq!(
            out[0].metric(crate::analyze::MAGNITUDE),
            out[0].metric("share")
        );
        assert!(out[2].advice.contains("temp files"), "{}", out[2].advice);
        // Stable identity: same query, same resource, other numbers.
        let mut cpu2 = query(1, 900.0, 900_000.0);
        k(&mut cpu2, 600.0, 0.0, 0.0);
        let again = a.analyze_window(&window(vec![cpu2]));
        assert_eq!(again[0].fingerprint, out[0].fingerprint);
    }

    #[test]
    fn shares_count_the_cpu_of_series_without_a_statement_row() {
        let a = ResourceHogAnalyzer::new(ResourceHogSettings::default());
        let mut cpu = query(1, 100.0, 400_000.0);
        k(&mut cpu, 300.0, 0.0, 0.0);
        let mut w = window(vec![cpu]);
        w.kcache_unmatched = Some(Kcache {
            user_time_s: 100.0,
            ..Default::default()
        });
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 1);
        assert!(
            (out[0].metric("share").unwrap() - 0.75).abs() < 1e-9,
            "{out:#?}"
        );
        assert!((out[0].metric("server_total").unwrap() - 400_000.0).abs() < 1e-6);
    }

    #[test]
    fn idle_servers_and_spread_load_stay_quiet() {
        let a = ResourceHogAnalyzer::new(ResourceHogSettings::default());
        // One query is 100% of an idle server's CPU, but only 5 s of it.
        let mut idle = query(1, 10.0, 6_000.0);
        k(&mut idle, 5.0, 1e6, 1e6);
        assert!(a.analyze_window(&window(vec![idle])).is_empty());
        // Busy server, load spread over ten queries: nobody dominates.
        let busy: Vec<QueryStats> = (0..10)
            .map(|i| {
                let mut q = query(i, 100.0, 200_000.0);
                k(&mut q, 120.0, 2e9, 2e9);
                q
            })
            .collect();
        assert!(a.analyze_window(&window(busy)).is_empty());
    }

    #[test]
    fn without_kcache_io_falls_back_and_says_so() {
        let a = ResourceHogAnalyzer::new(ResourceHogSettings::default());
        let mut heavy = query(1, 10.0, 500_000.0);
        heavy.counters[BLK_READ_TIME] = 200_000.0;
        let mut other = query(2, 10.0, 500_000.0);
        other.counters[BLK_READ_TIME] = 10_000.0;
        let out = a.analyze_window(&window(vec![heavy.clone(), other.clone()]));
        assert_eq!(rules(&out), [("resource_hog.io_time".into(), "1".into())]);
        assert!(
            out[0].title.contains("no pg_stat_kcache"),
            "{}",
            out[0].title
        );
        assert!(out[0].advice.contains("pg_stat_kcache"));
        assert_eq!(out[0].metric("kcache"), Some(0.0));
        // No I/O timing either: shared blocks read.
        heavy.counters[BLK_READ_TIME] = 0.0;
        other.counters[BLK_READ_TIME] = 0.0;
        heavy.counters[SHARED_READ] = 500_000.0; // 4 GB
        let out = a.analyze_window(&window(vec![heavy, other]));
        assert_eq!(
            rules(&out),
            [("resource_hog.blocks_read".into(), "1".into())]
        );
    }

    #[test]
    fn per_server_override_changes_the_floor() {
        let base = ResourceHogSettings::default();
        let lab = ResourceHogSettings {
            min_cpu_time: Duration::from_secs(1),
            ..base.clone()
        };
        let a = ResourceHogAnalyzer::new(PerServer::from(base).with_server("main/db1", lab));
        let mut idle = query(1, 10.0, 6_000.0);
        k(&mut idle, 5.0, 0.0, 0.0);
        let out = a.analyze_window(&window(vec![idle.clone()]));
        assert_eq!(rules(&out), [("resource_hog.cpu".into(), "1".into())]);
        let mut other = window(vec![idle]);
        other.server.name = "db2".into();
        assert!(a.analyze_window(&other).is_empty());
    }
}
