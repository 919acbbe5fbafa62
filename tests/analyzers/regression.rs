//! Analyzers on workloads made to trigger them, on a real PoWA 4.1.4 repository read as
//! the SELECT-only role.

use powa_sentinel::analyze::{
    RegressionAnalyzer, RegressionSettings, WorkloadChangeAnalyzer, WorkloadChangeSettings,
};
use sentinel_actors::Severity;

use crate::support::repo::window_and_baseline;
use crate::support::workload::two_phases;
use crate::support::{lab, unique};

/// An index dropped between a baseline phase and a current phase makes a query slower; a
/// query called 15× more often is a workload change; a query that did not change stays
/// quiet. The table is large enough (a million rows) that the slowed-down query's 60
/// sequential scans stay well above the default `min_total_time` (1 s) on a fast machine
/// with the table in cache: at 400,000 rows they took 0.98 s here, and nothing fired.
#[actix_rt::test]
async fn regression_and_call_spike_between_two_phases() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_regress_{}", unique());
    let fast = format!(
        "SELECT count(*) FROM {t} WHERE created_at BETWEEN '2026-01-01 10:00' AND '2026-01-01 10:01'"
    );
    let steady = format!("SELECT count(*) FROM {t} WHERE id < 1000");
    // Same plan in both phases, called 15× more in the second: a workload change.
    let spiky = format!("SELECT count(*) FROM {t} WHERE id BETWEEN 1 AND 30000");
    let (t0, t1, t2) = two_phases(
        &format!(
                    "CREATE TABLE {t} AS SELECT g AS id, timestamptz '2026-01-01' + g * interval '1 second' AS created_at \
                     FROM generate_series(1, 1000000) g; \
                     CREATE INDEX ON {t} (created_at); CREATE INDEX ON {t} (id); ANALYZE {t}"
                ),
        || {
            lab.repeat("repo", "app", &fast, 60);
            lab.repeat("repo", "app", &steady, 60);
            lab.repeat("repo", "app", &spiky, 100);
        },
        // The current window must be longer than the baseline phase, so that the baseline
        // window (shifted back by the current window's length) covers all of it.
        || {
            lab.psql("repo", "app", &format!("DROP INDEX {t}_created_at_idx"));
            lab.repeat("repo", "app", &fast, 60);
            lab.repeat("repo", "app", &steady, 60);
            lab.repeat("repo", "app", &spiky, 1500);
        },
    );
    let len = t2 - t1;
    assert!(t1 - len <= t0);

    let (mut current, baseline) = window_and_baseline(t1, t2).await;
    current.baselines = vec![baseline];

    let insights = RegressionAnalyzer::new(RegressionSettings::default()).analyze_window(&current);
    let ours: Vec<_> = insights
        .iter()
        .filter(|i| i.text.as_deref().is_some_and(|x| x.contains(&t)))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "exactly the slowed-down query: {insights:#?}"
    );
    let i = ours[0];
    assert!(
        i.text.as_deref().unwrap().contains("created_at BETWEEN"),
        "{i:#?}"
    );
    assert!(i.metric("factor").unwrap() > 5.0, "{i:#?}");
    assert_eq!(i.metric("calls"), Some(60.0));
    assert_eq!(i.metric("baseline_calls"), Some(60.0));
    assert!(i.severity >= Severity::Warning, "{i:#?}");

    let changes =
        WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default()).analyze_window(&current);
    let (ours, others): (Vec<_>, Vec<_>) = changes
        .iter()
        .filter(|i| i.text.as_deref().is_some_and(|x| x.contains(&t)))
        .partition(|i| i.rule == "workload_change.calls_up");
    assert_eq!(ours.len(), 1, "exactly the spiking query: {changes:#?}");
    // The slowed-down query now reads the whole table: it may also be a change in reads,
    // and nothing else is.
    assert!(
        others.iter().all(|i| i.rule == "workload_change.reads_up"
            && i.text
                .as_deref()
                .is_some_and(|x| x.contains("created_at BETWEEN"))),
        "{others:#?}"
    );
    assert!(
        ours[0].text.as_deref().unwrap().contains("BETWEEN"),
        "{:#?}",
        ours[0]
    );
    assert_eq!(ours[0].metric("calls"), Some(1500.0));
    assert_eq!(ours[0].metric("baseline_calls"), Some(100.0));
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
