//! The delivering replica dies (`kill -9`) or freezes past its lease (`SIGSTOP`, then
//! `SIGCONT`) in the middle of a report of many parts, sent to the WeCom-compatible robot
//! as text. The other replica takes the delivery over and sends the rest from the state
//! database's outbox: every part arrives, none twice but the one in flight; the frozen
//! one sends nothing when it wakes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::robot;
use crate::support::daemon::Proc;
use crate::support::workload::many_queries;
use crate::{deliverer, me, replica, replicas, schema, tail, wait_all};

const KEY: &str = "robot-key-replicas";

fn extra(robot: &robot::Robot) -> String {
    format!(
        r#"[schedule]
cron = "*/20 * * * * *"
[analyzers.slow_queries]
top_n = 10
min_calls = 1
min_total_time = "0ms"
[channels.robot]
type = "wecom"
base_url = "{}"
key = "{KEY}"
msgtype = "text"
sql_preview_chars = 2000
charts = false"#,
        robot.url
    )
}

/// The accepted messages so far: (report, part i, of n, content), the report told by
/// its first two lines (title and the counts with the window).
fn parts(path: &Path) -> Vec<(String, usize, usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let content = v["content"].as_str()?.to_string();
            let (i, n) = part_of(&content)?;
            let report = content.lines().nth(1).unwrap_or("").to_string();
            Some((report, i, n, content))
        })
        .collect()
}

/// "(part i/n)" of a message.
fn part_of(content: &str) -> Option<(usize, usize)> {
    let start = content.find("(part ")? + "(part ".len();
    let rest = &content[start..];
    let (i, rest) = rest.split_once('/')?;
    let (n, _) = rest.split_once(')')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// How many times each part of the report `report` (of `n` parts) was accepted, by
/// part number.
fn copies_of(record: &Path, report: &str, n: usize) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for (r, i, total, _) in parts(record) {
        if r == report && total == n {
            *seen.entry(i).or_default() += 1;
        }
    }
    seen
}

/// Starts A, waits until it delivers, starts B, waits until B holds servers; then waits
/// for a report of several parts to be half sent.
fn two_replicas_mid_report(schema: &str, robot: &robot::Robot) -> (Proc, Proc, String, usize) {
    many_queries("t_replicas", 12);
    let state = crate::support::lab().state_dsn();
    let mut a = replica(schema, &state, &extra(robot));
    a.wait_for("A delivers", Duration::from_secs(60), |p| {
        me(p).is_some() && deliverer(p) == me(p)
    });
    let mut b = replica(schema, &state, &extra(robot));
    wait_all(
        &mut [&mut a, &mut b],
        "two members, B with a share",
        Duration::from_secs(60),
        |ps| {
            ps.iter().all(|p| {
                replicas(p).is_some_and(|r| r["members"].as_array().map(Vec::len) == Some(2))
            }) && !crate::collecting(ps[1]).is_empty()
        },
    );
    let t = Instant::now();
    loop {
        // A report of four parts or more, half sent (an early one may be short: the
        // first cycles had found little yet).
        let sent = parts(&robot.record);
        for (report, _, n, _) in &sent {
            let got = sent
                .iter()
                .filter(|(r, _, m, _)| r == report && m == n)
                .count();
            if *n >= 4 && got >= 2 && got < *n {
                return (a, b, report.clone(), *n);
            }
        }
        assert!(a.running(), "A exited:\n{}", a.output());
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "A delivered no report of several parts:\n{}",
            tail(&a.logs(), 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every part of the first report arrived; none twice but the one in flight (`cut`: how
/// many were recorded when A was stopped).
fn assert_first_report_whole(record: &Path, first: &str, n: usize, cut: usize) {
    let seen = copies_of(record, first, n);
    eprintln!("{cut} of {n} parts before the stop; parts seen: {seen:?}");
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "every part of the report arrived: {seen:?}"
    );
    let twice: Vec<usize> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        seen.values().all(|c| *c <= 2) && twice.len() <= 1,
        "parts repeated: {seen:?}"
    );
    if let Some(i) = twice.first() {
        assert!(
            *i == cut || *i == cut + 1,
            "only the part in flight at the stop may be repeated (part {i}, {cut} recorded)"
        );
    }
}

#[test]
fn kill_9_of_the_delivering_replica_mid_report_loses_nothing() {
    let _slot = crate::slot();
    let schema = schema("kill");
    let fake = robot::start(KEY, &["--delay", "700ms", "--max-per-window", "1000"]);
    let (mut a, mut b, report, n) = two_replicas_mid_report(&schema, &fake);
    let a_id = me(&a).unwrap();
    a.kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let cut: usize = copies_of(&fake.record, &report, n).values().sum();
    assert!(cut < n, "A finished ({cut} of {n} parts) before the kill");
    let took = b.wait_for("B takes the delivery over", Duration::from_secs(30), |p| {
        deliverer(p).is_some_and(|d| d != a_id)
    });
    eprintln!(
        "hand-over {:?} after the kill (lease 3s)",
        killed.elapsed().min(took + Duration::from_millis(1500))
    );
    b.wait_for("the rest of the report", Duration::from_secs(60), |_| {
        copies_of(&fake.record, &report, n).len() == n
    });
    // B now collects every server.
    b.wait_for("B collects A's servers too", Duration::from_secs(30), |p| {
        replicas(p).is_some_and(|r| r["members"].as_array().map(Vec::len) == Some(1))
            && crate::collecting(p).len() == crate::expected_servers(p)
    });
    assert_first_report_whole(&fake.record, &report, n, cut);
    let metrics = b.metrics().unwrap();
    assert!(
        metrics.contains("powa_sentinel_lease_handovers_total{kind=\"delivery\"} 1"),
        "{metrics}"
    );
    b.stop(Duration::from_secs(30));
    crate::state_sql(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn a_replica_frozen_past_its_lease_sends_nothing_when_it_wakes() {
    let _slot = crate::slot();
    let schema = schema("stop");
    let fake = robot::start(KEY, &["--delay", "700ms", "--max-per-window", "1000"]);
    let (a, mut b, report, n) = two_replicas_mid_report(&schema, &fake);
    let a_id = me(&a).unwrap();
    a.signal("STOP");
    std::thread::sleep(Duration::from_millis(1500));
    let cut: usize = copies_of(&fake.record, &report, n).values().sum();
    assert!(cut < n, "A finished ({cut} of {n} parts) before it froze");
    b.wait_for("B takes the delivery over", Duration::from_secs(30), |p| {
        deliverer(p).is_some_and(|d| d != a_id)
    });
    b.wait_for("the rest of the report", Duration::from_secs(60), |_| {
        copies_of(&fake.record, &report, n).len() == n
    });
    let before_wake = parts(&fake.record).len();
    a.signal("CONT");
    let mut a = a;
    // A wakes, finds its leases gone, and joins again as a member that does not deliver.
    a.wait_for("A back as a member", Duration::from_secs(30), |p| {
        replicas(p).is_some_and(|r| {
            r["members"].as_array().map(Vec::len) == Some(2) && r["last_beat"].is_string()
        }) && deliverer(p).is_some_and(|d| d != a_id)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_first_report_whole(&fake.record, &report, n, cut);
    let after = parts(&fake.record);
    eprintln!(
        "{} messages when A woke, {} three seconds later",
        before_wake,
        after.len()
    );
    assert!(
        a.logs().contains("no longer holds the `delivery` lease")
            || a.logs().contains("This channel stops")
            || a.logs().contains("Lost the leases"),
        "A said nothing of losing the delivery:\n{}",
        tail(&a.logs(), 30)
    );
    for p in [a, b] {
        p.stop(Duration::from_secs(30));
    }
    crate::state_sql(&format!("DROP SCHEMA {schema} CASCADE"));
}
