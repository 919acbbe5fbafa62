//! Resource hogs, new heavy queries and the health score on a real PoWA 4.1.4 repository
//! with pg_stat_kcache, read as the SELECT-only role; and the quiet control database
//! produces nothing.

use std::time::Duration;

use powa_sentinel::analyze::health_score::HealthInputs;
use powa_sentinel::analyze::{
    HealthScoreAnalyzer, HealthScoreSettings, PerServer, PowaHealthAnalyzer, PowaHealthSettings,
    RegressionAnalyzer, RegressionSettings, ResourceHogAnalyzer, ResourceHogSettings,
    SlowQueryAnalyzer, SlowQuerySettings, WorkloadChangeAnalyzer, WorkloadChangeSettings,
};
use sentinel_actors::Insight;

use crate::support::repo::window_and_baseline;
use crate::support::workload::two_phases;
use crate::support::{lab, unique};

/// Thresholds scaled to a lab that runs seconds of work, set as a per-server override
/// of the lab's local server: the analyzer-wide defaults stay production-sized.
fn lab_hogs() -> PerServer<ResourceHogSettings> {
    PerServer::from(ResourceHogSettings::default()).with_server(
        "lab/local",
        ResourceHogSettings {
            min_cpu_time: Duration::from_secs(1),
            ..Default::default()
        },
    )
}

fn ours<'a>(insights: &'a [Insight], marker: &str) -> Vec<&'a Insight> {
    insights
        .iter()
        .filter(|i| i.text.as_deref().is_some_and(|x| x.contains(marker)))
        .collect()
}

/// Phase A runs a steady query; phase B the same plus a new CPU-heavy query. The heavy
/// query is a CPU hog and a new heavy query; the steady one and the quiet database stay
/// quiet in every analyzer.
#[actix_rt::test]
async fn cpu_hog_and_new_heavy_query_quiet_database_silent() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let u = unique();
    let (steady_t, heavy_t) = (format!("t_steady_{u}"), format!("t_cpu_{u}"));
    let steady = format!("SELECT count(*) FROM {steady_t} WHERE id < 5000");
    // Hashes every row: CPU, no disk (the table is small and cached).
    let heavy = format!("SELECT count(*) FROM {heavy_t} WHERE md5(md5(g::text)) LIKE '0%'");
    let (t0, t1, t2) = two_phases(
        &format!(
            "CREATE TABLE {steady_t} AS SELECT g AS id FROM generate_series(1, 20000) g; \
                     CREATE TABLE {heavy_t} AS SELECT g FROM generate_series(1, 200000) g; \
                     ANALYZE {steady_t}; ANALYZE {heavy_t}; SELECT count(*) FROM {heavy_t}"
        ),
        || {
            lab.repeat("repo", "app", &steady, 50);
            lab.repeat("repo", "quiet", "SELECT 1", 20);
        },
        || {
            lab.repeat("repo", "app", &steady, 50);
            lab.repeat("repo", "quiet", "SELECT 1", 20);
            lab.repeat("repo", "app", &heavy, 12);
        },
    );
    let len = t2 - t1;
    assert!(t1 - len <= t0);

    let (mut current, baseline) = window_and_baseline(t1, t2).await;
    assert!(!baseline.queries.is_empty(), "phase A is in the baseline");
    // A second, purged baseline (nothing in retention) counts as absent.
    let mut purged = baseline.clone();
    purged.queries.clear();
    current.baselines = vec![baseline, purged];

    // CPU hog, from pg_stat_kcache.
    let hogs = ResourceHogAnalyzer::new(lab_hogs()).analyze_window(&current);
    let mine = ours(&hogs, &heavy_t);
    assert_eq!(mine.len(), 1, "the CPU-heavy query is a CPU hog: {hogs:#?}");
    let i = mine[0];
    assert_eq!(i.rule, "resource_hog.cpu");
    assert_eq!(i.label("database"), Some("app"));
    assert_eq!(i.metric("kcache"), Some(1.0));
    assert!(i.metric("share").unwrap() >= 0.3, "{i:#?}");
    assert!(i.metric("cpu_time_ms").unwrap() >= 1000.0, "{i:#?}");
    assert_eq!(i.metric("magnitude"), i.metric("share"));
    // The production defaults keep this lab-sized load quiet.
    let defaults =
        ResourceHogAnalyzer::new(ResourceHogSettings::default()).analyze_window(&current);
    assert!(ours(&defaults, &heavy_t).is_empty(), "{defaults:#?}");

    // A new heavy query, absent from the baseline.
    let changes =
        WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default()).analyze_window(&current);
    let mine = ours(&changes, &heavy_t);
    assert_eq!(mine.len(), 1, "the new heavy query: {changes:#?}");
    assert_eq!(mine[0].rule, "workload_change.new_heavy_query");
    assert_eq!(mine[0].metric("calls"), Some(12.0));
    assert_eq!(mine[0].metric("baselines_used"), Some(1.0));
    assert!(ours(&changes, &steady_t).is_empty(), "{changes:#?}");

    // Nothing else about our queries, and nothing at all about the quiet database.
    let regressions =
        RegressionAnalyzer::new(RegressionSettings::default()).analyze_window(&current);
    assert!(ours(&regressions, &steady_t).is_empty(), "{regressions:#?}");
    let slow = SlowQueryAnalyzer::new(SlowQuerySettings::default()).analyze_window(&current);
    let everything: Vec<&Insight> = hogs
        .iter()
        .chain(&changes)
        .chain(&regressions)
        .chain(&slow)
        .collect();
    assert!(
        everything
            .iter()
            .all(|i| i.label("database") != Some("quiet")),
        "the quiet database produced insights: {everything:#?}"
    );

    // The health score counts both findings, and says so.
    let mut score = HealthScoreAnalyzer::new(
        HealthScoreSettings {
            report_below: 100.0,
            ..Default::default()
        },
        HealthInputs {
            powa: PowaHealthAnalyzer::new(PowaHealthSettings::default()),
            regression: RegressionAnalyzer::new(RegressionSettings::default()),
            workload: WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default()),
            hogs: ResourceHogAnalyzer::new(lab_hogs()),
        },
    );
    let out = score.analyze_window(&current);
    assert_eq!(out.len(), 1, "{out:#?}");
    let h = &out[0];
    assert_eq!(h.kind, "health_score");
    assert_eq!(h.label("server"), Some("local"));
    assert!(h.metric("penalty_resource_hogs").unwrap() > 0.0, "{h:#?}");
    assert!(h.metric("penalty_workload").unwrap() > 0.0, "{h:#?}");
    assert!(h.metric("score").unwrap() < 100.0, "{h:#?}");

    lab.psql(
        "repo",
        "app",
        &format!("DROP TABLE {steady_t}; DROP TABLE {heavy_t}"),
    );
}
