//! `powa-sentinel once` end to end, as a user runs it: the real binary, a real PoWA 4.1.4
//! repository read as the SELECT-only role, a WeCom-compatible robot on loopback.

use crate::robot;
use crate::support::cli::{about, command, json_lines, run, succeeded, Settings};
use crate::support::workload::slow_query;
use crate::support::{lab, same_servers, unique};

#[test]
fn once_reports_a_slow_query_as_json_and_to_wecom() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    // A server registered by another test would be told as stale.
    let _servers = same_servers();
    let t = format!("t_slow_{}", unique());
    slow_query(&t);

    let fake = robot::start("robot-key-1", &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::once("10m")
        .toml("# Other tests' workloads share the lab: room for ours among the top queries.")
        .toml("[analyzers.slow_queries]\ntop_n = 30")
        .repository("lab", &lab.repo_dsn())
        .console()
        .wecom("robot", &fake.url, "robot-key-1")
        .write(dir.path());
    let (stdout, stderr) = succeeded(&run(&["once", "--output", "json"], &config));

    // stdout is JSON lines only.
    let insights = json_lines(&stdout);
    let ours = about(&insights, &t);
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
    let _turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::default()
        .window("soon")
        .repository("main", "host=x")
        .toml("[channels.c]\ntype = \"console\"")
        .write(dir.path());
    let out = run(&["once"], &config);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sentinel.toml"), "{stderr}");
    assert!(stderr.contains("analysis.window"), "{stderr}");
}

#[test]
fn version_prints() {
    let _turn = crate::support::turn(module_path!());
    let out = command(&["--version"]).output().unwrap();
    assert!(out.status.success());
    // "powa-sentinel 0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-02)"
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rest = text
        .strip_prefix(&format!(
            "powa-sentinel {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, date) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{text}"
    );
}
