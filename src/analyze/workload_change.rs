//! Workload changes against the baseline: call volumes that jump or collapse, heavy
//! queries that were not there before, temp-file spills and disk reads that grew. Slower
//! calls are the regression analyzer's business; this one is about *how much* is run.
//!
//! With several past windows (`analysis.baseline_periods`) every comparison is with their
//! median, and a change must also leave their usual spread (see [`super::baseline`]). A
//! query that did not run in a past window counts as 0 calls there; a past window with no
//! data at all is ignored.
//!
//! Every rule needs the change to matter in absolute terms too (extra calls, time, blocks),
//! so that a query going from 2 to 9 calls is never news.

use std::time::Duration;

use serde::Deserialize;

use super::baseline::{Baselines, Robust};
use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use super::{WindowAnalyzer, WindowRules};
use crate::powa::reader::{
    QueryStats, StatementsWindow, CALLS, EXEC_TIME, SHARED_READ, TEMP_WRITTEN,
};
use sentinel_actors::{Insight, Severity};

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
    /// Disk reads now / then from which a read spike is reported. Default 4.
    pub read_factor: f64,
    /// Smallest increase of reads worth a message, in bytes: physical reads from
    /// pg_stat_kcache when the baselines have them, else shared blocks read × 8 kB (which
    /// include reads served by the OS cache). Default 1073741824 (1 GiB).
    pub min_read_bytes: u64,
    /// With two or more baselines, a change must also leave the baselines' usual range:
    /// median ± this many robust standard deviations (MAD × 1.4826). Default 3.
    pub spread_factor: f64,
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
            read_factor: 4.0,
            min_read_bytes: 1 << 30,
            spread_factor: 3.0,
        }
    }
}

impl AnalyzerSettings for WorkloadChangeSettings {
    fn check(&self, c: &mut Checks<'_>) {
        c.above_one(
            &[
                ("calls_factor", self.calls_factor),
                ("temp_factor", self.temp_factor),
                ("read_factor", self.read_factor),
            ],
            "must be above 1",
        );
        c.share_of_time("new_query_min_share", self.new_query_min_share);
        c.deviations(
            "spread_factor",
            self.spread_factor,
            "must be 0 or more (robust standard deviations around the baselines' median)",
        );
    }

    fn enabled(&self) -> bool {
        self.enabled
    }
}

struct Finding<'a> {
    rule: &'static str,
    severity: Severity,
    q: &'a QueryStats,
    title: String,
    advice: &'static str,
    metrics: Vec<(&'static str, f64)>,
}

/// One block of shared buffers, in bytes.
const BLOCK: f64 = 8192.0;

/// Physical reads from kcache when the query has them now and in every baseline where it
/// ran; otherwise shared blocks read. Both windows must be measured the same way.
fn reads(q: &QueryStats, then: &[Option<&QueryStats>]) -> (bool, f64) {
    let physical = q.kcache.is_some() && then.iter().flatten().all(|b| b.kcache.is_some());
    (
        physical,
        if physical {
            q.kcache.map_or(0.0, |k| k.reads_bytes)
        } else {
            q.get(SHARED_READ) * BLOCK
        },
    )
}

pub type WorkloadChangeAnalyzer = WindowAnalyzer<WorkloadChangeSettings>;

impl WindowRules<WorkloadChangeSettings> for WorkloadChangeAnalyzer {
    fn findings(&self, s: &WorkloadChangeSettings, w: &StatementsWindow) -> Vec<Insight> {
        // No baseline data at all (PoWA purged it, or the server is new): nothing is "new".
        let bases = Baselines::of(w);
        if bases.is_empty() {
            return Vec::new();
        }
        let server_total: f64 = w.queries.iter().map(|q| q.get(EXEC_TIME)).sum();
        let floor_ms = s.min_total_time.as_secs_f64() * 1000.0;
        let k = s.spread_factor;
        let user_query = |q: &QueryStats| {
            q.query
                .as_deref()
                .is_none_or(|t| !super::is_monitoring_query(t) && !super::is_utility(t))
        };
        let mut found = Vec::new();
        let mut then: Vec<Option<&QueryStats>> = Vec::with_capacity(bases.len());
        let mut vals: Vec<f64> = Vec::with_capacity(bases.len());
        for q in w.queries.iter().filter(|q| user_query(q)) {
            then.clear();
            then.extend(bases.entries(&q.key));
            // Cheap exit for the long tail: a query too small now for every rule, and too
            // small in every past window to have collapsed.
            let floor_reads = q.get(SHARED_READ) * BLOCK < s.min_read_bytes as f64
                && q.kcache
                    .is_none_or(|k| k.reads_bytes < s.min_read_bytes as f64);
            if q.get(EXEC_TIME) < floor_ms
                && q.get(TEMP_WRITTEN) < s.min_temp_blocks as f64
                && floor_reads
                && then.iter().flatten().all(|b| b.get(EXEC_TIME) < floor_ms)
            {
                continue;
            }
            let mut robust = |f: &dyn Fn(&QueryStats) -> f64| {
                vals.clear();
                vals.extend(then.iter().map(|b| b.map_or(0.0, f)));
                Robust::of(&vals).expect("at least one baseline")
            };
            let (calls, time) = (q.get(CALLS), q.get(EXEC_TIME));
            let share = super::ratio(time, server_total);
            let calls_then = robust(&|b| b.get(CALLS));
            let time_then = robust(&|b| b.get(EXEC_TIME));
            let temp_then = robust(&|b| b.get(TEMP_WRITTEN));
            let (physical, read_now) = reads(q, &then);
            let read_then = robust(&|b| {
                if physical {
                    b.kcache.map_or(0.0, |k| k.reads_bytes)
                } else {
                    b.get(SHARED_READ) * BLOCK
                }
            });
            let n = bases.len() as f64;
            let against = if bases.len() > 1 {
                format!(" (median of {} past windows)", bases.len())
            } else {
                String::new()
            };
            // Absent from (most of) the past windows: new.
            if calls_then.median == 0.0 {
                if share >= s.new_query_min_share && time >= floor_ms {
                    found.push(Finding {
                        rule: "new_heavy_query",
                        severity: if share >= 0.5 { Severity::Warning } else { Severity::Info },
                        q,
                        title: format!(
                            "New query on {} takes {:.0}% of its time ({} calls, {})",
                            w.server.name,
                            share * 100.0,
                            calls,
                            if bases.len() > 1 {
                                format!("absent from most of the {} past windows", bases.len())
                            } else {
                                "none in the baseline".to_string()
                            }
                        ),
                        advice: "A release or a new job brought it: check that it is expected, and its plan before it grows.",
                        metrics: vec![
                            ("calls", calls),
                            ("total_time_ms", time),
                            ("share_of_total_time", share),
                            ("baselines_used", n),
                            (super::MAGNITUDE, share),
                        ],
                    });
                }
                continue;
            }
            let (c0, t0) = (calls_then.median, time_then.median);
            if calls >= s.calls_factor * c0.max(1.0)
                && calls - c0 >= s.min_extra_calls as f64
                && calls_then.exceeded_by(calls, k)
                && time >= floor_ms
            {
                found.push(Finding {
                    rule: "calls_up",
                    severity: if share >= 0.2 { Severity::Warning } else { Severity::Info },
                    q,
                    title: format!(
                        "Calls ×{:.1} on {}: {:.0} → {:.0} in the same window{against}",
                        calls / c0.max(1.0),
                        w.server.name,
                        c0,
                        calls
                    ),
                    advice: "The application runs it much more often than before: look for a retry loop, an N+1 pattern, a cache that stopped working, or a new caller.",
                    metrics: vec![
                        ("calls", calls),
                        ("baseline_calls", c0),
                        ("total_time_ms", time),
                        ("baseline_total_time_ms", t0),
                        ("share_of_total_time", share),
                        ("baselines_used", n),
                        (super::MAGNITUDE, calls / c0.max(1.0)),
                    ],
                });
            } else if c0 >= s.calls_factor * calls.max(1.0)
                && c0 - calls >= s.min_extra_calls as f64
                && calls_then.undercut_by(calls, k)
                && t0 >= floor_ms
            {
                found.push(Finding {
                    rule: "calls_down",
                    severity: Severity::Info,
                    q,
                    title: format!(
                        "Calls collapsed on {}: {:.0} → {:.0} in the same window{against}",
                        w.server.name, c0, calls
                    ),
                    advice: "A heavy query almost stopped: expected after a change, or a sign that a feature or a job is failing upstream.",
                    metrics: vec![
                        ("calls", calls),
                        ("baseline_calls", c0),
                        ("baselines_used", n),
                        (super::MAGNITUDE, c0 / calls.max(1.0)),
                    ],
                });
            }
            let (temp, tp0) = (q.get(TEMP_WRITTEN), temp_then.median);
            if temp >= s.temp_factor * tp0.max(1.0)
                && temp - tp0 >= s.min_temp_blocks as f64
                && temp_then.exceeded_by(temp, k)
            {
                found.push(Finding {
                    rule: "temp_up",
                    severity: Severity::Warning,
                    q,
                    title: format!(
                        "Temp files ×{:.1} on {}: {:.0} MB written{against}",
                        temp / tp0.max(1.0),
                        w.server.name,
                        temp * BLOCK / 1e6
                    ),
                    advice: "Its sorts or hashes no longer fit in work_mem: the data grew or the plan changed; check EXPLAIN (ANALYZE, BUFFERS) and work_mem for it.",
                    metrics: vec![
                        ("temp_blks_written", temp),
                        ("baseline_temp_blks_written", tp0),
                        ("baselines_used", n),
                        (super::MAGNITUDE, temp * BLOCK),
                    ],
                });
            }
            let r0 = read_then.median;
            if read_now >= s.read_factor * r0.max(BLOCK)
                && read_now - r0 >= s.min_read_bytes as f64
                && read_then.exceeded_by(read_now, k)
            {
                found.push(Finding {
                    rule: "reads_up",
                    severity: if share >= 0.2 { Severity::Warning } else { Severity::Info },
                    q,
                    title: format!(
                        "{} ×{:.1} on {}: {:.0} MB read{against}",
                        if physical { "Disk reads" } else { "Blocks read" },
                        read_now / r0.max(BLOCK),
                        w.server.name,
                        read_now / 1e6
                    ),
                    advice: if physical {
                        "It reads far more from disk than before: its data no longer fits in memory, or its plan switched to a scan; check EXPLAIN (ANALYZE, BUFFERS), missing or unused indexes, and shared_buffers."
                    } else {
                        "It reads far more blocks outside shared buffers than before (pg_stat_kcache is not there to tell disk from OS cache): check EXPLAIN (ANALYZE, BUFFERS) for a new scan, missing or unused indexes, and shared_buffers."
                    },
                    metrics: vec![
                        ("read_bytes", read_now),
                        ("baseline_read_bytes", r0),
                        ("physical_reads", if physical { 1.0 } else { 0.0 }),
                        ("baselines_used", n),
                        (super::MAGNITUDE, read_now),
                    ],
                });
            }
        }
        found.into_iter().map(|f| self.insight(w, f)).collect()
    }
}

impl WorkloadChangeAnalyzer {
    fn insight(&self, w: &StatementsWindow, f: Finding<'_>) -> Insight {
        Insight {
            severity: f.severity,
            title: f.title,
            advice: f.advice.to_string(),
            metrics: super::metrics(f.metrics),
            ..super::query_insight(
                w,
                f.q,
                "workload_change",
                f.rule,
                &["workload_change", f.rule],
            )
        }
    }
}

analyze_statements!(WorkloadChangeAnalyzer, "workload_change");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query as q, with_baseline as windows};

    fn rules(out: &[Insight]) -> Vec<(String, String)> {
        out.iter()
            .map(|i| (i.rule.clone(), i.label("queryid").unwrap().to_string()))
            .collect()
    }

    /// `now` alone in the window, and one query in each of three baselines.
    fn one_query_three_weeks(now: QueryStats, then: [QueryStats; 3]) -> StatementsWindow {
        crate::analyze::fixtures::with_baselines(vec![now], then.map(|b| vec![b]).to_vec())
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

    #[test]
    fn several_baselines_use_the_median() {
        let a = WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default());
        // One busy week (30,000 calls) does not hide a spike over the usual 3,000; one
        // week where it was absent does not make the query "new".
        let w = crate::analyze::fixtures::with_baselines(
            vec![q(1, 30_000.0, 6_000.0), q(2, 500.0, 40_000.0)],
            vec![
                vec![q(1, 3_000.0, 600.0), q(2, 500.0, 40_000.0)],
                vec![q(1, 30_000.0, 6_000.0), q(9, 1.0, 1.0)],
                vec![q(1, 3_100.0, 620.0), q(2, 480.0, 39_000.0)],
            ],
        );
        let out = a.analyze_window(&w);
        assert_eq!(
            rules(&out),
            [("workload_change.calls_up".to_string(), "1".to_string())]
        );
        assert_eq!(out[0].metric("baseline_calls"), Some(3_100.0));
        assert_eq!(out[0].metric("baselines_used"), Some(3.0));
        // A query that ran in only one of three weeks is new.
        let w = one_query_three_weeks(
            q(3, 500.0, 40_000.0),
            [q(3, 500.0, 40_000.0), q(9, 1.0, 1.0), q(9, 1.0, 1.0)],
        );
        assert_eq!(
            rules(&a.analyze_window(&w)),
            [(
                "workload_change.new_heavy_query".to_string(),
                "3".to_string()
            )]
        );
        // Weeks that vary a lot: 9,000 calls is 3× the median but within the spread.
        let w = one_query_three_weeks(
            q(1, 9_000.0, 6_000.0),
            [
                q(1, 1_000.0, 600.0),
                q(1, 3_000.0, 600.0),
                q(1, 5_000.0, 600.0),
            ],
        );
        assert!(a.analyze_window(&w).is_empty());
    }

    #[test]
    fn read_spikes_fire_with_an_absolute_floor() {
        let a = WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default());
        let mut now = q(1, 100.0, 60_000.0);
        now.counters[SHARED_READ] = 1_000_000.0; // 8 GB
        let mut then = q(1, 100.0, 20_000.0);
        then.counters[SHARED_READ] = 10_000.0;
        let mut small = q(2, 100.0, 60_000.0);
        small.counters[SHARED_READ] = 50_000.0; // ×50 but 0.4 GB
        let mut small_then = q(2, 100.0, 60_000.0);
        small_then.counters[SHARED_READ] = 1_000.0;
        let out = a.analyze_window(&windows(vec![now, small], vec![then, small_then]));
        assert_eq!(
            rules(&out),
            [("workload_change.reads_up".to_string(), "1".to_string())]
        );
        assert_eq!(out[0].metric("physical_reads"), Some(0.0));
        assert_eq!(out[0].metric("read_bytes"), Some(1e6 * 8192.0));
        assert!(out[0].title.starts_with("Blocks read"), "{}", out[0].title);
        // With kcache on both sides, physical reads are compared instead.
        let k = |b: f64| crate::powa::kcache::Kcache {
            reads_bytes: b,
            ..Default::default()
        };
        let mut now = q(1, 100.0, 60_000.0);
        now.counters[SHARED_READ] = 1_000_000.0;
        now.kcache = Some(k(100e6)); // served by the OS cache: little disk
        let mut then = q(1, 100.0, 20_000.0);
        then.counters[SHARED_READ] = 10_000.0;
        then.kcache = Some(k(50e6));
        assert!(a.analyze_window(&windows(vec![now], vec![then])).is_empty());
    }
}
