//! Three replicas on one state database: the servers are split between them (each one
//! collected by exactly one, none left out), the one holding the delivery reports what
//! all of them found, each finding once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support;
use crate::{
    assert_never_collected_twice, collecting, deliverer, expected_servers, file_insights, me,
    replica, replicas, schema, wait_all,
};

#[test]
fn three_replicas_share_the_servers_and_report_each_finding_once() {
    let _slot = crate::slot();
    let schema = schema("split");
    let robot = crate::robot::start("robot-key-split", &["--max-per-window", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings.jsonl");
    let extra = format!(
        r#"[schedule]
cron = "*/10 * * * * *"
[analyzers.slow_queries]
top_n = 10
min_calls = 1
min_total_time = "0ms"
[channels.file]
type = "file"
path = "{}"
[channels.robot]
type = "wecom"
base_url = "{}"
key = "robot-key-split"
msgtype = "text"
charts = false"#,
        out.display(),
        robot.url
    );
    let state = support::lab().state_dsn();
    let mut a = replica(&schema, &state, &extra);
    let mut b = replica(&schema, &state, &extra);
    let mut c = replica(&schema, &state, &extra);

    // Every server collected by exactly one replica, all three with a share.
    wait_all(
        &mut [&mut a, &mut b, &mut c],
        "the servers split between three replicas",
        Duration::from_secs(90),
        |ps| {
            let want = expected_servers(ps[0]);
            let shares: Vec<BTreeSet<String>> = ps.iter().map(|p| collecting(p)).collect();
            let all: BTreeSet<&String> = shares.iter().flatten().collect();
            let total: usize = shares.iter().map(|s| s.len()).sum();
            want > 0
                && ps.iter().all(|p| {
                    replicas(p).is_some_and(|r| r["members"].as_array().map(Vec::len) == Some(3))
                })
                && all.len() == want
                && total == want
                && shares.iter().filter(|s| !s.is_empty()).count() >= 2
        },
    );
    let ids: Vec<String> = [&a, &b, &c].iter().map(|p| me(p).unwrap()).collect();
    let delivering = deliverer(&a).expect("someone delivers");
    assert!(ids.contains(&delivering), "{delivering} is one of {ids:?}");
    for p in [&a, &b, &c] {
        assert_eq!(
            deliverer(p).as_deref(),
            Some(delivering.as_str()),
            "one view"
        );
    }

    // Two reports' worth: findings of servers collected by at least two replicas reach
    // the file, through the queue.
    wait_all(
        &mut [&mut a, &mut b, &mut c],
        "findings of two replicas' servers in one report",
        Duration::from_secs(120),
        |ps| {
            let shares: Vec<BTreeSet<String>> = ps.iter().map(|p| collecting(p)).collect();
            let owner_of = |server: &str| shares.iter().position(|s| s.contains(server));
            let found: BTreeSet<usize> = file_insights(&out)
                .iter()
                .filter_map(|i| {
                    let key = format!("{}/{}", i["repository"].as_str()?, i["server"].as_str()?);
                    owner_of(&key)
                })
                .collect();
            found.len() >= 2
        },
    );
    std::thread::sleep(Duration::from_secs(12));
    let insights = file_insights(&out);
    // Each notification once: no message reaches the robot twice. (The file channel's
    // lines are not the test: one insight may ride in two notifications, as the cause
    // told with an alert and in its own entry.)
    let messages: Vec<String> = std::fs::read_to_string(&robot.record)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &messages {
        let v: serde_json::Value = serde_json::from_str(m).unwrap();
        *seen
            .entry(v["content"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let twice = seen.values().filter(|n| **n > 1).count();
    assert!(!messages.is_empty(), "the robot got nothing");
    assert_eq!(twice, 0, "messages sent twice");
    eprintln!(
        "{} findings from {} servers; shares {:?}",
        insights.len(),
        insights
            .iter()
            .map(|i| format!("{}/{}", i["repository"], i["server"]))
            .collect::<BTreeSet<_>>()
            .len(),
        [&a, &b, &c]
            .iter()
            .map(|p| collecting(p).len())
            .collect::<Vec<_>>()
    );

    // `check` lists the three and who delivers.
    let (text, _) = support::cli::succeeded(&support::cli::run(&["check"], &a.config));
    assert!(text.contains("replicas: 3 live on this database"), "{text}");
    assert!(text.contains(&format!("{delivering} (version")), "{text}");
    assert!(text.contains(", delivers since"), "{text}");
    // The metrics say who holds what.
    let holder = [&a, &b, &c]
        .into_iter()
        .find(|p| me(p).as_deref() == Some(delivering.as_str()))
        .unwrap();
    let metrics = holder.metrics().unwrap();
    assert!(
        metrics.contains("powa_sentinel_leases_held{kind=\"delivery\"} 1"),
        "{metrics}"
    );

    assert_never_collected_twice(&[&a, &b, &c]);
    for p in [a, b, c] {
        p.stop(Duration::from_secs(30));
    }
    // Clean stops give everything back.
    let held = crate::state_sql(&format!(
        "SELECT count(*)::text FROM {schema}.leases WHERE holder IS NOT NULL"
    ));
    assert_eq!(held, ["0"]);
    crate::state_sql(&format!("DROP SCHEMA {schema} CASCADE"));
}
