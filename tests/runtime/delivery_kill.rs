//! kill -9 in the middle of a delivery, then a restart: the real `powa-sentinel once`
//! against the real PoWA lab, a slow WeCom-compatible robot on loopback recording every
//! accepted message, and a `[state] dir` holding the outbox.
//!
//! The first run renders its report as `text` parts and is killed after the robot
//! accepted two of them. The second run is configured for `markdown`, so what it sends
//! from the outbox (the stored `text` parts) is told apart from its own new report. The
//! rest of the first report must arrive before anything new, with the stored bytes, each
//! part once — except that the one part in flight at the kill may arrive twice (the robot
//! accepted it, the process died before journaling the answer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use powa_sentinel::actors::outbox::Outbox;
use powa_sentinel::outbox::RedbOutbox;
use serde_json::Value;

use crate::robot;
use crate::support::cli::{run, Settings};
use crate::support::daemon::Proc;
use crate::support::same_servers;
use crate::support::workload::many_queries;

const KEY: &str = "robot-key-kill-9";

fn config(dir: &Path, fake: &robot::Robot, msgtype: &str) -> PathBuf {
    Settings::delivery(dir)
        .toml(
            r#"
# Enough findings for several messages: every server's top queries, whatever their time.
[analyzers.slow_queries]
top_n = 10
min_calls = 1
min_total_time = "0ms"
"#,
        )
        .wecom("robot", &fake.url, KEY)
        // Text parts only: the test tells the parts of run 1 by their "(part i/n)" marker
        // (charts are parts too; tests/channels/charts.rs has them).
        .toml(&format!(
            "msgtype = \"{msgtype}\"\nsql_preview_chars = 2000\ncharts = false"
        ))
        .write_to(dir.join(format!("sentinel-{msgtype}.toml")))
}

/// The accepted messages so far: (msgtype, content).
fn recorded(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["msgtype"].as_str().unwrap().to_string(),
                v["content"].as_str().unwrap().to_string(),
            )
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

#[test]
fn kill_9_mid_delivery_then_restart_delivers_the_rest_once() {
    let _turn = crate::support::turn(module_path!());
    // A server registered by another test would change the second run's report.
    let _servers = same_servers();
    // Enough distinct queries for a report of many messages, whatever else the lab ran.
    many_queries("t_kill", 12);
    let dir = tempfile::tempdir().unwrap();
    // A slow robot; its quota is not what this test is about (the pacer is fresh after a
    // restart).
    let fake = robot::start(KEY, &["--delay", "700ms", "--max-per-window", "1000"]);

    // Run 1: killed after the robot accepted two parts.
    let mut run1 = Proc::start_on("once", &config(dir.path(), &fake, "text"), &[]);
    let t = Instant::now();
    loop {
        if recorded(&fake.record).len() >= 2 {
            break;
        }
        if !run1.running() {
            panic!(
                "run 1 ended ({:?}) before it could be killed mid-delivery",
                run1.wait_exit(Duration::ZERO).0
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "run 1 delivered nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run1.kill(); // SIGKILL
                 // The request in flight may still be answered (and recorded) by the robot.
    std::thread::sleep(Duration::from_millis(1500));
    let before = recorded(&fake.record);
    let n = part_of(&before[0].1)
        .expect("run 1's report has several parts")
        .1;
    assert!(
        before.len() < n,
        "run 1 finished ({} of {n} parts) before the kill",
        before.len()
    );

    // The outbox holds the rest.
    {
        let outbox = RedbOutbox::open(&dir.path().join("state")).unwrap();
        let pending = outbox.entries("robot").unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert!(pending[0].next_part >= before.len() - 1);
    }

    // Run 2, as markdown: the stored text parts go first, then the new report. The gate
    // remembers run 1's findings as announced (their delivery is the outbox's job), so
    // run 2 would have nothing new to say: forget the gate's state, not the outbox, to
    // give it a report of its own to order after the resumed parts.
    std::fs::remove_file(
        dir.path()
            .join("state")
            .join(powa_sentinel::gate::store::FILE),
    )
    .expect("run 1 kept the gate's state in the state dir");
    let out = run(&["once"], &config(dir.path(), &fake, "markdown"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run 2 failed:\n{stderr}");
    assert!(
        stderr.contains("Resumed what the outbox held"),
        "run 2 said nothing about the outbox:\n{stderr}"
    );
    assert!(!stderr.contains(KEY), "the robot key leaked into logs");

    let all = recorded(&fake.record);
    let first_markdown = all
        .iter()
        .position(|(t, _)| t == "markdown")
        .expect("run 2's own report was sent");
    assert!(
        all[first_markdown..].iter().all(|(t, _)| t == "markdown"),
        "the rest of run 1's report went out before anything new"
    );
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, content) in all.iter().filter(|(t, _)| t == "text") {
        let (i, total) = part_of(content).expect("part marker");
        assert_eq!(total, n, "all text parts belong to run 1's report");
        *seen.entry(i).or_default() += 1;
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "every part of run 1's report arrived"
    );
    eprintln!(
        "run 1: {} of {n} parts before the kill; parts seen after run 2: {seen:?}",
        before.len()
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
        assert_eq!(
            *i,
            before.len(),
            "only the part in flight at the kill may be repeated"
        );
    }
    // Stored bytes were resent, not re-rendered: each text part is identical to the
    // first copy of it, and the parts recorded before the kill are not sent again
    // (except the one in flight).
    let dup_ok = |i: usize| twice.first() == Some(&i);
    for (k, (_, content)) in before.iter().enumerate() {
        let copies = all.iter().filter(|(_, c)| c == content).count();
        assert!(
            copies == 1 || (copies == 2 && dup_ok(k + 1)),
            "part {} sent {copies} times",
            k + 1
        );
    }

    let outbox = RedbOutbox::open(&dir.path().join("state")).unwrap();
    assert!(
        outbox.entries("robot").unwrap().is_empty(),
        "the outbox is empty after run 2"
    );
}
