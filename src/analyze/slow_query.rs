//! Top slow queries per server: the few statements that cost a server the most, ranked
//! per server (a big server must not crowd out a small one), each with its share of the
//! server's total execution time and advice that depends on *why* it is expensive
//! ([`super::classify`]: lock waits, temp spills, a selective filter, a whole-table
//! aggregate, CPU, I/O…), named in the `class` label.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use super::{WindowAnalyzer, WindowRules};
use crate::powa::reader::{
    QueryStats, StatementsWindow, BLK_READ_TIME, BLK_WRITE_TIME, CALLS, EXEC_TIME, ROWS,
    SHARED_HIT, SHARED_READ, TEMP_WRITTEN,
};
use sentinel_actors::{Insight, Severity};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Total execution time in the window: what the server spends its time on.
    #[default]
    TotalTime,
    /// Mean time per call: what users wait for.
    MeanTime,
    /// Number of calls.
    Calls,
    /// CPU time (user + system, pg_stat_kcache); falls back to execution time for
    /// queries kcache has no data for.
    CpuTime,
    /// Time spent reading and writing blocks (track_io_timing); with pg_stat_kcache,
    /// bytes of physical I/O rank first.
    IoTime,
}

impl RankBy {
    fn key(self, q: &QueryStats) -> f64 {
        match self {
            RankBy::TotalTime => q.get(EXEC_TIME),
            RankBy::MeanTime => q.mean_time_ms(),
            RankBy::Calls => q.get(CALLS),
            RankBy::CpuTime => q.kcache.map_or(q.get(EXEC_TIME), |k| k.cpu_time_ms()),
            RankBy::IoTime => {
                let timed = q.get(BLK_READ_TIME) + q.get(BLK_WRITE_TIME);
                // Bytes dwarf milliseconds: a query with physical I/O outranks one without.
                q.kcache.map_or(timed, |k| k.io_bytes() + timed)
            }
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RankBy::TotalTime => "total_time",
            RankBy::MeanTime => "mean_time",
            RankBy::Calls => "calls",
            RankBy::CpuTime => "cpu_time",
            RankBy::IoTime => "io_time",
        }
    }
}

/// `[analyzers.slow_queries]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowQuerySettings {
    /// Default true.
    pub enabled: bool,
    /// How many queries per server. Default 5.
    pub top_n: usize,
    /// total_time (default), mean_time or calls.
    pub rank_by: RankBy,
    /// A query must have run at least this many times in the window. Default 2.
    pub min_calls: u64,
    /// A query must have cost at least this much in total in the window. Default 1s:
    /// below that, nothing is worth a message.
    #[serde(with = "humantime_serde")]
    pub min_total_time: Duration,
    /// A query must average at least this per call. Default 0ms.
    #[serde(with = "humantime_serde")]
    pub min_mean_time: Duration,
    /// Mean time per call from which the insight is a warning. Default 500ms.
    #[serde(with = "humantime_serde")]
    pub warning_mean_time: Duration,
    /// Mean time per call from which the insight is critical. Default 5s.
    #[serde(with = "humantime_serde")]
    pub critical_mean_time: Duration,
    /// Skip maintenance and session statements (VACUUM, CREATE INDEX, COPY, BEGIN…).
    /// Default true.
    pub exclude_utility: bool,
}

impl Default for SlowQuerySettings {
    fn default() -> Self {
        SlowQuerySettings {
            enabled: true,
            top_n: 5,
            rank_by: RankBy::TotalTime,
            min_calls: 2,
            min_total_time: Duration::from_secs(1),
            min_mean_time: Duration::ZERO,
            warning_mean_time: Duration::from_millis(500),
            critical_mean_time: Duration::from_secs(5),
            exclude_utility: true,
        }
    }
}

impl AnalyzerSettings for SlowQuerySettings {
    fn check(&self, c: &mut Checks<'_>) {
        c.at_least_one("top_n", self.top_n, self.enabled);
        c.flag(
            self.critical_mean_time < self.warning_mean_time,
            "critical_mean_time",
            "must not be below warning_mean_time",
        );
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

pub type SlowQueryAnalyzer = WindowAnalyzer<SlowQuerySettings>;

impl SlowQueryAnalyzer {
    fn eligible(s: &SlowQuerySettings, q: &QueryStats) -> bool {
        if let Some(text) = &q.query {
            if super::is_monitoring_query(text) || (s.exclude_utility && super::is_utility(text)) {
                return false;
            }
        }
        q.get(CALLS) >= s.min_calls as f64
            && q.get(EXEC_TIME) >= s.min_total_time.as_secs_f64() * 1000.0
            && q.mean_time_ms() >= s.min_mean_time.as_secs_f64() * 1000.0
    }

    fn severity(s: &SlowQuerySettings, mean_ms: f64) -> Severity {
        if mean_ms >= s.critical_mean_time.as_secs_f64() * 1000.0 {
            Severity::Critical
        } else if mean_ms >= s.warning_mean_time.as_secs_f64() * 1000.0 {
            Severity::Warning
        } else {
            Severity::Info
        }
    }
}

impl WindowRules<SlowQuerySettings> for SlowQueryAnalyzer {
    /// Analyses one server's window.
    fn findings(&self, s: &SlowQuerySettings, w: &StatementsWindow) -> Vec<Insight> {
        let server_total: f64 = super::user_queries(w).map(|q| q.get(EXEC_TIME)).sum();
        let mut ranked: Vec<&QueryStats> =
            w.queries.iter().filter(|q| Self::eligible(s, q)).collect();
        let rank_by = s.rank_by;
        ranked.sort_by(|a, b| {
            rank_by
                .key(b)
                .total_cmp(&rank_by.key(a))
                .then(a.key.cmp(&b.key))
        });
        ranked
            .into_iter()
            .take(s.top_n)
            .enumerate()
            .map(|(i, q)| Self::insight(s, w, q, i + 1, server_total))
            .collect()
    }
}

impl SlowQueryAnalyzer {
    fn insight(
        s: &SlowQuerySettings,
        w: &StatementsWindow,
        q: &QueryStats,
        rank: usize,
        server_total: f64,
    ) -> Insight {
        let database = super::database_name(q);
        let total = q.get(EXEC_TIME);
        let calls = q.get(CALLS);
        let mean = q.mean_time_ms();
        let share = super::ratio(total, server_total);
        let hit = q.get(SHARED_HIT);
        let read = q.get(SHARED_READ);

        let mut found =
            super::query_insight(w, q, "slow_query", s.rank_by.as_str(), &["slow_query"]);

        let mut metrics = BTreeMap::new();
        metrics.insert("rank".to_string(), rank as f64);
        metrics.insert("calls".to_string(), calls);
        metrics.insert("total_time_ms".to_string(), total);
        metrics.insert("mean_time_ms".to_string(), mean);
        metrics.insert("share_of_total_time".to_string(), share);
        metrics.insert("rows".to_string(), q.get(ROWS));
        metrics.insert("shared_blks_hit".to_string(), hit);
        metrics.insert("shared_blks_read".to_string(), read);
        metrics.insert("temp_blks_written".to_string(), q.get(TEMP_WRITTEN));
        let io_time = q.get(BLK_READ_TIME) + q.get(BLK_WRITE_TIME);
        if io_time > 0.0 {
            metrics.insert("io_time_ms".to_string(), io_time);
        }
        super::kcache_metrics(q, &mut metrics);

        // Why it is expensive decides the advice (see `classify`): the class goes in a
        // label, its evidence in the metrics.
        let profile = super::classify::classify(w, q, share);
        profile.label(&mut found.labels);
        for (k, v) in &profile.evidence {
            metrics.insert((*k).to_string(), *v);
        }
        // What it waited on, when pg_wait_sampling says: a mean time made of lock waits
        // is not fixed by an index. 10 samples is 100 ms at the default sampling period.
        let mut advice = profile.advice;
        if let Some(t) =
            crate::powa::waits::top_wait(&w.waits, q.key.queryid).filter(|t| t.samples >= 10.0)
        {
            let event = format!("{}:{}", t.top.event_type, t.top.event);
            metrics.insert("wait_samples".to_string(), t.samples);
            metrics.insert("top_wait_share".to_string(), t.share);
            advice = format!(
                "{advice} Most sampled wait: {event} ({:.0}% of {:.0} samples), {}.",
                t.share * 100.0,
                t.samples,
                crate::powa::waits::hint(&t.top.event_type)
            );
            found.labels.insert("top_wait".to_string(), event);
        }

        // Worse means a bigger share of the server (total time), or a bigger ranking value.
        let magnitude = match s.rank_by {
            RankBy::TotalTime => share,
            other => other.key(q),
        };
        metrics.insert(super::MAGNITUDE.to_string(), magnitude);
        let by = match s.rank_by {
            RankBy::TotalTime => format!("{:.0}% of its execution time", share * 100.0),
            RankBy::MeanTime => format!("{} per call", super::human_ms(mean)),
            RankBy::Calls => format!("{calls:.0} calls"),
            RankBy::CpuTime => format!(
                "{} of CPU",
                super::human_ms(q.kcache.map_or(total, |k| k.cpu_time_ms()))
            ),
            RankBy::IoTime => match q.kcache {
                Some(k) if k.io_bytes() > 0.0 => {
                    format!("{:.1} MB of disk I/O", k.io_bytes() / 1e6)
                }
                _ => format!("{} of I/O time", super::human_ms(io_time)),
            },
        };
        let title = format!("#{rank} query on {} / {database}: {by}", w.server.name);
        Insight {
            severity: Self::severity(s, mean),
            title,
            advice,
            metrics,
            ..found
        }
    }
}

analyze_statements!(SlowQueryAnalyzer, "slow_queries");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query, window};

    fn q(id: i64, calls: f64, total_ms: f64, text: &str) -> QueryStats {
        let mut q = query(id, calls, total_ms);
        q.query = Some(text.into());
        q
    }

    /// What the analyzer with the default settings finds in a window of `queries`.
    fn with_defaults(queries: Vec<QueryStats>) -> Vec<Insight> {
        SlowQueryAnalyzer::new(SlowQuerySettings::default()).analyze_window(&window(queries))
    }

    #[test]
    fn ranks_by_total_time_with_share() {
        let out = with_defaults(vec![
            q(1, 10.0, 3000.0, "SELECT a"),
            q(2, 100.0, 6000.0, "SELECT b"),
            q(3, 5.0, 1000.0, "SELECT c"),
        ]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].label("queryid"), Some("2"));
        assert!((out[0].metric("share_of_total_time").unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(out[0].severity, Severity::Info);
        // Same problem, same fingerprint, whatever the numbers.
        let again = with_defaults(vec![q(2, 1.0e3, 9.0e4, "SELECT b")]);
        assert_eq!(again[0].fingerprint, out[0].fingerprint);
    }

    /// A query mostly waiting on locks says so; a few samples (under 100 ms) say nothing.
    #[test]
    fn names_what_a_query_waits_on() {
        use crate::analyze::fixtures::wait;
        let a = SlowQueryAnalyzer::new(SlowQuerySettings::default());
        let mut w = window(vec![
            q(1, 10.0, 3000.0, "UPDATE a SET x = $1"),
            q(2, 10.0, 3000.0, "SELECT b"),
        ]);
        w.waits = vec![
            wait(1, "Lock", "transactionid", 150.0),
            wait(1, "IO", "DataFileRead", 50.0),
            wait(2, "IO", "DataFileRead", 5.0),
        ];
        let out = a.analyze_window(&w);
        let one = out
            .iter()
            .find(|i| i.label("queryid") == Some("1"))
            .unwrap();
        assert_eq!(one.label("top_wait"), Some("Lock:transactionid"));
        assert_eq!(one.metric("wait_samples"), Some(200.0));
        assert!(one.advice.contains("75% of 200 samples"), "{}", one.advice);
        assert!(one.advice.contains("locks"), "{}", one.advice);
        let two = out
            .iter()
            .find(|i| i.label("queryid") == Some("2"))
            .unwrap();
        assert_eq!(two.label("top_wait"), None);
        assert!(!two.advice.contains("wait"), "{}", two.advice);
    }

    #[test]
    fn quiet_below_the_guards() {
        assert!(with_defaults(vec![
            q(1, 500.0, 900.0, "SELECT fast"),        // under 1 s in total
            q(2, 1.0, 50_000.0, "SELECT once"),       // a single call
            q(3, 50.0, 90_000.0, "VACUUM ANALYZE t"), // maintenance
            q(4, 50.0, 90_000.0, "SELECT powa_take_snapshot()"),
        ])
        .is_empty());
    }

    #[test]
    fn severity_follows_mean_time() {
        let out = with_defaults(vec![
            q(1, 2.0, 12_000.0, "SELECT slow"),
            q(2, 4.0, 2_400.0, "SELECT mid"),
        ]);
        assert_eq!(out[0].severity, Severity::Critical);
        assert_eq!(out[1].severity, Severity::Warning);
    }

    #[test]
    fn cpu_ranking_uses_kcache_when_present() {
        use crate::powa::kcache::Kcache;
        let s = SlowQuerySettings {
            rank_by: RankBy::CpuTime,
            ..Default::default()
        };
        let a = SlowQueryAnalyzer::new(s);
        let mut waits = q(1, 10.0, 9_000.0, "SELECT pg_sleep(1)");
        waits.kcache = Some(Kcache {
            user_time_s: 0.01,
            ..Default::default()
        });
        let mut burns = q(2, 10.0, 3_000.0, "SELECT md5(x) FROM big");
        burns.kcache = Some(Kcache {
            user_time_s: 2.5,
            system_time_s: 0.3,
            ..Default::default()
        });
        let out = a.analyze_window(&window(vec![waits, burns]));
        assert_eq!(
            out[0].label("queryid"),
            Some("2"),
            "the CPU burner ranks first"
        );
        assert!((out[0].metric("cpu_time_ms").unwrap() - 2800.0).abs() < 1e-6);
        assert_eq!(out[0].rule, "slow_query.cpu_time");
    }

    #[test]
    fn top_n_is_per_server_and_bounded() {
        let s = SlowQuerySettings {
            top_n: 2,
            ..Default::default()
        };
        let a = SlowQueryAnalyzer::new(s);
        let w = window(
            (1..=10)
                .map(|i| q(i, 10.0, 1000.0 * i as f64, "SELECT x"))
                .collect(),
        );
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].label("queryid"), Some("10"));
    }
}
