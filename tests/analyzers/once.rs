//! `powa-sentinel once --output json` shows the new analyzers' findings, with per-server
//! thresholds from the settings file, on a real PoWA 4.1.4 repository with pg_stat_kcache.

use serde_json::Value;

use crate::support::cli::{about, once_json, Settings};
use crate::support::workload::between_snapshots;
use crate::support::{lab, unique};

#[test]
fn once_shows_a_cpu_hog_and_the_health_score_with_per_server_thresholds() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_hog_{}", unique());
    // Hashes every row twice: CPU, the table cached.
    let hog = format!("SELECT count(*) FROM {t} WHERE md5(md5(g::text)) LIKE '0%'");
    let create = format!(
        "CREATE TABLE {t} AS SELECT g FROM generate_series(1, 200000) g; \
         ANALYZE {t}; SELECT count(*) FROM {t}"
    );
    between_snapshots("repo", &create, &hog, 20);
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::log("warning")
        .window("2m")
        .repository("lab", &lab.repo_dsn())
        .toml(
            r#"
# Lab-sized thresholds for the lab's own server only. Other tests' workloads share the
# lab's recent minutes: a lower share and more hogs listed leave room for ours.
[analyzers.resource_hogs.servers."lab/local"]
min_cpu_time = "1s"
min_share = 0.05
top_n = 20

[analyzers.health_score.servers."lab/local"]
report_below = 100.0
"#,
        )
        .console()
        .write(dir.path());
    let (insights, _) = once_json(&config);

    let hogs: Vec<&Value> = about(&insights, &t)
        .into_iter()
        .filter(|i| i["kind"] == "resource_hog")
        .collect();
    assert_eq!(hogs.len(), 1, "our CPU hog once: {insights:#?}");
    let h = hogs[0];
    assert_eq!(h["rule"], "resource_hog.cpu");
    assert_eq!(h["server"], "local");
    assert_eq!(h["database"], "app");
    assert!(h["metrics"]["share"].as_f64().unwrap() >= 0.05, "{h:#}");

    let scores: Vec<&Value> = insights
        .iter()
        .filter(|i| i["kind"] == "health_score" && i["server"] == "local")
        .collect();
    assert_eq!(
        scores.len(),
        1,
        "one health score for the server: {insights:#?}"
    );
    let s = &scores[0];
    assert_eq!(s["severity"], "info");
    assert!(s["metrics"]["score"].as_f64().unwrap() < 100.0, "{s:#}");
    assert!(
        s["metrics"]["penalty_resource_hogs"].as_f64().unwrap() > 0.0,
        "{s:#}"
    );

    // The other servers keep the defaults: the lab's load is below their floors.
    assert!(
        insights
            .iter()
            .filter(|i| i["kind"] == "resource_hog")
            .all(|i| i["server"] == "local"),
        "{insights:#?}"
    );
    // Every insight says how big it is, for the gate's escalation check.
    for i in &insights {
        assert!(i["metrics"]["magnitude"].is_number(), "no magnitude: {i:#}");
    }
    assert!(
        insights.iter().all(|i| i["database"] != "quiet"),
        "the quiet database produced insights: {insights:#?}"
    );
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
