//! `powa-sentinel once` end to end, as a user runs it: the real binary, a real PoWA 4.1.4
//! repository read as the SELECT-only role, a WeCom-compatible robot on loopback.

#[path = "support/robot.rs"]
mod robot;
mod support;

use std::process::Command;

use serde_json::Value;
use support::{exclusive, lab, unique};

fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("sentinel.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn once_reports_a_slow_query_as_json_and_to_wecom() {
    let lab = lab();
    let t = format!("t_slow_{}", unique());
    {
        let _guard = exclusive();
        lab.psql(
            "repo",
            "app",
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, md5(g::text) AS payload \
                 FROM generate_series(1, 300000) g"
            ),
        );
        // A quiet database: a handful of trivial queries, nothing to report there.
        lab.repeat("repo", "quiet", "SELECT 1", 20);
        lab.snapshot("repo");
        lab.repeat(
            "repo",
            "app",
            // ~250 ms per call (a hash per row over a sequential scan): 8 calls are
            // well above every guard.
            &format!("SELECT count(*) FROM {t} WHERE md5(payload) LIKE '%abc%'"),
            8,
        );
        lab.snapshot("repo");
    }

    let fake = robot::start("robot-key-1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[log]
level = "warning"
format = "json"

[analysis]
window = "10m"

# Other tests' workloads share the lab: room for ours among the top queries.
[analyzers.slow_queries]
top_n = 30

[repositories.lab]
dsn = "{dsn}"

[channels.console]
type = "console"

[channels.robot]
type = "wecom"
base_url = "{url}"
key = "robot-key-1"
"#,
            dsn = lab.repo_dsn(),
            url = fake.url
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .args(["once", "--output", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    // stdout is JSON lines only.
    let insights: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ours: Vec<&Value> = insights
        .iter()
        .filter(|i| i["text"].as_str().is_some_and(|x| x.contains(t.as_str())))
        .collect();
    assert_eq!(ours.len(), 1, "our slow query reported once: {insights:#?}");
    let i = ours[0];
    assert_eq!(i["kind"], "slow_query");
    assert_eq!(i["server"], "local");
    assert_eq!(i["database"], "app");
    assert_eq!(i["repository"], "lab");
    assert_eq!(i["metrics"]["calls"], 8.0);
    assert!(i["metrics"]["mean_time_ms"].as_f64().unwrap() > 1.0);
    // pg_stat_kcache: the query hashes every row, so most of its time is CPU.
    let cpu = i["metrics"]["cpu_time_ms"]
        .as_f64()
        .expect("kcache CPU time");
    let total = i["metrics"]["total_time_ms"].as_f64().unwrap();
    assert!(
        cpu > 0.2 * total && cpu < 1.5 * total,
        "cpu {cpu} ms of {total} ms"
    );
    assert!(i["queryid"].as_str().is_some());
    assert!(
        insights.iter().all(|i| i["database"] != "quiet"),
        "the quiet database produced insights: {insights:#?}"
    );
    // PoWA is collecting every server of the lab: no staleness alarm.
    assert!(
        insights.iter().all(|i| i["rule"] != "powa_health.stale"),
        "a healthy lab reported as stale: {insights:#?}"
    );
    // The console report went to stderr, not stdout.
    assert!(
        stderr.contains(i["queryid"].as_str().unwrap()),
        "console report on stderr:\n{stderr}"
    );

    // The robot got it, within WeCom's limits (the fake rejects anything else).
    let received = std::fs::read_to_string(&fake.record).unwrap_or_default();
    assert!(
        received.contains(i["queryid"].as_str().unwrap()),
        "the WeCom robot did not receive the insight:\n{received}"
    );
    assert!(
        !stderr.contains("robot-key-1"),
        "the robot key leaked into logs"
    );
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}

#[test]
fn invalid_config_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[analysis]\nwindow = \"soon\"\n[repositories.main]\ndsn = \"host=x\"\n[channels.c]\ntype = \"console\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .args(["once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sentinel.toml"), "{stderr}");
    assert!(stderr.contains("analysis.window"), "{stderr}");
}

#[test]
fn version_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("powa-sentinel {}", env!("CARGO_PKG_VERSION"))
    );
}
