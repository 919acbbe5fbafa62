//! Delivery under faults, on real processes: the real `powa-sentinel once` against the
//! shared PoWA lab, the `fake-wecom` robot on loopback recording every accepted message,
//! and a `[state] dir`. Needs the `failpoints` feature (`cargo test --all-features`).
//!
//! Each fault is one test; read together they are the table of docs/operations.md:
//!
//! | fault | lost | sent twice |
//! |---|---|---|
//! | abort after the gate's commit, before any channel journaled | 0 | 0 |
//! | abort after the channel journaled, before rendering | 0 | 0 |
//! | abort after the rendered parts were journaled, before sending | 0 | 0 |
//! | abort after the provider confirmed part 2, before its progress was journaled | 0 | that part |
//! | abort after the delivered entry was removed, before the gate heard of it | 0 | 0 |
//! | `once --dry-run`, then the real `once` | 0 (the state is untouched) | 0 |
//! | bad key (93000), key fixed, `outbox retry` | 0 | 0 |
//! | provider slower than the client timeout | 0 | ≤ 1 copy per rate window |
//!
//! Kills: run 1 aborts at a failpoint (`POWA_SENTINEL_FAILPOINT`, compiled in with the
//! `failpoints` feature only); what its gate decided to announce is read from its state
//! (every finding marked notified). Run 2, without the failpoint, on the same state dir,
//! must bring every one of them to the robot, and repeat no message except the part in
//! flight at the abort.

// Without the `failpoints` feature the abort tests are compiled out and their helpers go
// unused.
#![cfg_attr(not(feature = "failpoints"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{OnceLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use powa_sentinel::actors::failpoint::ENV as FAILPOINT;
use powa_sentinel::gate::store::Store;
use serde_json::Value;

use crate::robot;
use crate::support::cli::{command, run, succeeded, Settings};
use crate::support::daemon::Proc;
use crate::support::workload::many_queries;
use crate::support::{exclusive, same_servers, Turn};

const KEY: &str = "robot-key-faults";
const SIGABRT: i32 = 6;

/// Only the slow-query analyzer, every finding carrying a queryid the test can look for.
fn config(dir: &Path, fake: &robot::Robot) -> PathBuf {
    config_with(dir, fake, KEY, "")
}

/// [`config`] with another robot key and more `[channels.robot]` settings.
fn config_with(dir: &Path, fake: &robot::Robot, key: &str, channel_extra: &str) -> PathBuf {
    let settings = Settings::delivery(dir)
        .toml("[analyzers.slow_queries]\ntop_n = 8\nmin_calls = 1\nmin_total_time = \"0ms\"");
    [
        "regression",
        "workload_change",
        "powa_health",
        "resource_hogs",
        "health_score",
        "missing_index",
    ]
    .iter()
    .fold(settings, |s, a| {
        s.toml(&format!("[analyzers.{a}]\nenabled = false"))
    })
    .wecom("robot", &fake.url, key)
    .toml("msgtype = \"text\"\nsql_preview_chars = 1500")
    .toml(channel_extra)
    .write(dir)
}

/// This module's turn on the lab, and enough distinct queries for a report of several
/// messages (made once per test binary); the lab's servers stay the lab's own while the
/// guards are held (every test here holds them throughout). The servers' guard is
/// released first, then the turn.
fn workload() -> (RwLockReadGuard<'static, ()>, Turn) {
    let turn = crate::support::turn(module_path!());
    let servers = same_servers();
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| many_queries("t_fault", 10));
    (servers, turn)
}

fn once(config: &Path, failpoint: Option<&str>) -> Output {
    let mut cmd = command(&["once", "--config"]);
    cmd.arg(config);
    if let Some(f) = failpoint {
        cmd.env(FAILPOINT, f);
    }
    cmd.output().unwrap()
}

/// The accepted messages so far, in order.
fn recorded(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["content"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The queryids of every finding the gate marked notified.
fn announced(state: &Path) -> BTreeSet<String> {
    let loaded = Store::open(state).unwrap().load().unwrap();
    loaded
        .scopes
        .values()
        .flat_map(|s| s.findings.values())
        .filter(|f| f.notified.is_some())
        .filter_map(|f| f.last.label("queryid").map(str::to_string))
        .collect()
}

/// The queryids of `ids` that no message of `sent` names.
fn not_in<'a>(ids: &'a BTreeSet<String>, sent: &[String]) -> Vec<&'a String> {
    let text = sent.join("\n");
    ids.iter()
        .filter(|q| !text.contains(&format!("queryid {q}")))
        .collect()
}

/// How many times each message was accepted.
fn copies(all: &[String]) -> BTreeMap<&str, usize> {
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for m in all {
        *copies.entry(m.as_str()).or_default() += 1;
    }
    copies
}

/// Run 1 aborted at `failpoint`, run 2 delivers: nothing lost, at most `twice_allowed`
/// messages repeated.
fn abort_then_rerun(failpoint: &str, twice_allowed: usize) {
    let _lab = workload();
    let dir = tempfile::tempdir().unwrap();
    let fake = robot::start(KEY, &["--max-per-window", "1000"]);
    let cfg = config(dir.path(), &fake);

    let run1 = once(&cfg, Some(failpoint));
    let stderr1 = String::from_utf8_lossy(&run1.stderr);
    assert_eq!(
        run1.status.signal(),
        Some(SIGABRT),
        "run 1 did not abort at `{failpoint}` ({}):\n{stderr1}",
        run1.status
    );
    let before = recorded(&fake.record);
    let expected = announced(&dir.path().join("state"));
    assert!(
        !expected.is_empty(),
        "run 1 announced nothing before `{failpoint}`:\n{stderr1}"
    );

    let started = Instant::now();
    let run2 = once(&cfg, None);
    let recovery = started.elapsed();
    let stderr2 = String::from_utf8_lossy(&run2.stderr);
    assert!(
        run2.status.success(),
        "run 2 failed ({}):\n{stderr2}",
        run2.status
    );
    let all = recorded(&fake.record);
    let lost = not_in(&expected, &all);
    let copies = copies(&all);
    let twice: Vec<&&str> = copies
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(m, _)| m)
        .collect();
    eprintln!(
        "fault `{failpoint}`: {} finding(s) announced by run 1, {} message(s) before the abort, \
         {} after run 2; lost {}, sent twice {}; run 2 took {:.1}s",
        expected.len(),
        before.len(),
        all.len(),
        lost.len(),
        twice.len(),
        recovery.as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "`{failpoint}`: findings announced by run 1 never reached the robot: {lost:?}\nrun 2:\n{stderr2}\nthe robot got:\n{}",
        all.join("\n----\n")
    );
    assert!(
        twice.len() <= twice_allowed,
        "`{failpoint}`: messages repeated: {twice:#?}"
    );
    assert!(!stderr2.contains(KEY), "the robot key leaked into logs");
}

#[test]
#[cfg(feature = "failpoints")]
fn abort_after_the_gate_commit_loses_nothing() {
    abort_then_rerun("gate-commit", 0);
}

#[test]
#[cfg(feature = "failpoints")]
fn abort_after_the_journal_accept_loses_nothing() {
    abort_then_rerun("journal-accept", 0);
}

#[test]
#[cfg(feature = "failpoints")]
fn abort_after_render_loses_nothing() {
    abort_then_rerun("render", 0);
}

#[test]
#[cfg(feature = "failpoints")]
fn abort_after_a_confirmed_part_repeats_only_that_part() {
    abort_then_rerun("part-sent@2", 1);
}

#[test]
#[cfg(feature = "failpoints")]
fn abort_after_the_outbox_removed_the_entry_repeats_nothing() {
    abort_then_rerun("outbox-done", 0);
}

/// Every file of the state dir with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for e in rd.map(|e| e.unwrap()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            // The index looks (`indexes/`) are state too.
            for (sub, bytes) in files(&e.path()) {
                out.insert(format!("{name}/{sub}"), bytes);
            }
        } else {
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    out
}

/// The queryids a rendered text names.
fn queryids(text: &str) -> BTreeSet<String> {
    text.split("queryid ")
        .skip(1)
        .filter_map(|rest| {
            let id: String = rest
                .chars()
                .take_while(|c| *c == '-' || c.is_ascii_digit())
                .collect();
            (!id.is_empty() && id != "-").then_some(id)
        })
        .collect()
}

/// A preview reads the state and writes none of it: the real run after it still sends
/// everything, and a preview over an existing state leaves its files byte for byte.
#[test]
fn a_dry_run_changes_no_state_and_the_real_run_sends_everything() {
    let _lab = workload();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let fake = robot::start(KEY, &["--max-per-window", "1000"]);
    let cfg = config(dir.path(), &fake);

    // The preview and the real run see the same findings: no other test's snapshot between
    // them (the top queries would change).
    let lab_lock = exclusive();
    let dry = run(&["once", "--dry-run"], &cfg);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "dry run failed:\n{stderr}");
    assert!(
        files(&state).is_empty(),
        "the dry run created state: {:?}",
        files(&state).keys()
    );
    assert!(
        recorded(&fake.record).is_empty(),
        "the dry run sent something"
    );
    assert!(stderr.contains("Rendered, not sent (dry run)."), "{stderr}");
    assert!(
        !stderr.contains("\"Delivered.\""),
        "the dry run says it delivered:\n{stderr}"
    );
    let previewed = queryids(&stdout);
    assert!(
        !previewed.is_empty(),
        "the dry run rendered nothing:\n{stdout}"
    );

    let real = run(&["once"], &cfg);
    drop(lab_lock);
    let stderr = String::from_utf8_lossy(&real.stderr);
    assert!(real.status.success(), "real run failed:\n{stderr}");
    let missing = not_in(&previewed, &recorded(&fake.record));
    assert!(
        missing.is_empty(),
        "previewed but not sent by the real run: {missing:?}\n{stderr}"
    );

    // Over an existing state (gate, outbox), a preview leaves every file as it was.
    let before = files(&state);
    assert!(before.contains_key("gate.redb") && before.contains_key("outbox.redb"));
    let dry = run(&["once", "--dry-run"], &cfg);
    assert!(dry.status.success());
    let backtest = run(&["backtest", "--from", "2h"], &cfg);
    assert!(
        backtest.status.success(),
        "{}",
        String::from_utf8_lossy(&backtest.stderr)
    );
    assert!(files(&state) == before, "a preview changed the state dir");

    // With the outbox held by another process (a running daemon), a preview still works
    // and says why it does not show the outbox.
    let held = powa_sentinel::outbox::RedbOutbox::open(&state).unwrap();
    let dry = run(&["once", "--dry-run"], &cfg);
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "dry run beside a daemon:\n{stderr}");
    assert!(
        stderr.contains("The preview goes on without the outbox.")
            && stderr.contains("in use by a running powa-sentinel"),
        "{stderr}"
    );
    drop(held);
    eprintln!(
        "dry run: {} queryid(s) previewed, all sent by the real run; state unchanged by a second dry run and a backtest",
        previewed.len()
    );
}

/// `once` on a state in `dir` with a robot key the robot does not know: the robot, and the
/// run.
fn once_with_a_bad_key(dir: &Path) -> (robot::Robot, Output) {
    let fake = robot::start(KEY, &["--max-per-window", "1000"]);
    let bad = config_with(dir, &fake, "robot-key-wrong", "");
    let run1 = run(&["once"], &bad);
    (fake, run1)
}

/// A bad key fails the report for good; once the key is fixed, `once` keeps saying so
/// (exit 1) until `outbox retry`, after which the same report is delivered.
#[test]
fn bad_key_then_fixed_key_then_outbox_retry_delivers_the_report() {
    let _lab = workload();
    let dir = tempfile::tempdir().unwrap();
    let (fake, run1) = once_with_a_bad_key(dir.path());
    let stderr = String::from_utf8_lossy(&run1.stderr);
    assert_eq!(run1.status.code(), Some(1), "bad key:\n{stderr}");
    assert!(stderr.contains("93000"), "{stderr}");
    let announced = announced(&dir.path().join("state"));
    assert!(!announced.is_empty());

    let good = config(dir.path(), &fake);
    let run2 = run(&["once"], &good);
    let stderr = String::from_utf8_lossy(&run2.stderr);
    assert_eq!(
        run2.status.code(),
        Some(1),
        "a failed entry is left, yet once succeeded:\n{stderr}"
    );
    assert!(stderr.contains("outbox retry"), "{stderr}");

    let (text, _) = succeeded(&run(&["outbox", "list"], &good));
    assert!(
        text.contains("channel robot seq")
            && text.contains(": failed, age ")
            && text.contains("93000"),
        "{text}"
    );
    let check = run(&["check"], &good);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("outbox: channel robot: 0 pending, 1 failed"),
        "{text}"
    );

    let nothing = run(&["outbox", "retry", "424242"], &good);
    assert_eq!(nothing.status.code(), Some(2));
    let retry = run(&["outbox", "retry", "--all"], &good);
    let text = String::from_utf8_lossy(&retry.stdout);
    assert!(
        retry.status.success() && text.contains("re-queued: channel robot"),
        "{text}"
    );

    let started = Instant::now();
    let run3 = run(&["once"], &good);
    let stderr = String::from_utf8_lossy(&run3.stderr);
    assert!(run3.status.success(), "after retry:\n{stderr}");
    let lost = not_in(&announced, &recorded(&fake.record));
    assert!(lost.is_empty(), "not delivered after retry: {lost:?}");
    let list = run(&["outbox", "list"], &good);
    assert!(String::from_utf8_lossy(&list.stdout).contains("outbox: empty"));
    eprintln!(
        "bad key: {} finding(s) failed, delivered {:.1}s after `outbox retry`",
        announced.len(),
        started.elapsed().as_secs_f64()
    );
}

/// `outbox drop` removes a failed entry for good, saying what it removes; `once` then
/// succeeds.
#[test]
fn outbox_drop_removes_a_failed_entry() {
    let _lab = workload();
    let dir = tempfile::tempdir().unwrap();
    let (fake, run1) = once_with_a_bad_key(dir.path());
    assert_eq!(run1.status.code(), Some(1));
    let good = config(dir.path(), &fake);
    let drop = run(&["outbox", "drop", "--channel", "robot"], &good);
    let text = String::from_utf8_lossy(&drop.stdout);
    assert!(
        drop.status.success() && text.contains("dropped: channel robot seq"),
        "{text}"
    );
    let list = run(&["outbox", "list"], &good);
    assert!(String::from_utf8_lossy(&list.stdout).contains("outbox: empty"));
    let after = run(&["once"], &good);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}

/// A provider slower than the client timeout: the request may have been delivered, so
/// it is retried only after the rate window, not at the pace of the backoff.
#[test]
fn a_provider_slower_than_the_timeout_gets_at_most_one_copy_per_window() {
    let _lab = workload();
    let dir = tempfile::tempdir().unwrap();
    let fake = robot::start(KEY, &["--max-per-window", "1000", "--delay", "2500ms"]);
    let cfg = config_with(dir.path(), &fake, KEY, "timeout = \"1s\"");
    let mut once = Proc::start_on("once", &cfg, &[]);
    // From the first copy the robot accepted (the analysis before it takes what the lab
    // makes it take), watch 25 s, well under the 60 s rate window: the backoff alone (1 s
    // doubling) would have retried four or five times by then.
    let t = Instant::now();
    while recorded(&fake.record).is_empty() {
        assert!(once.running(), "once ended early");
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "nothing accepted in 3 min"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = Instant::now();
    while first.elapsed() < Duration::from_secs(25) {
        assert!(once.running(), "once ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    once.kill();
    std::thread::sleep(Duration::from_secs(3));
    let all = recorded(&fake.record);
    let copies = copies(&all);
    let stderr = once.logs();
    eprintln!(
        "slow provider: {} message(s) accepted in the 25 s after the first, most copies of one: {}",
        all.len(),
        copies.values().max().unwrap_or(&0)
    );
    assert!(
        !all.is_empty(),
        "the slow robot accepted nothing:\n{stderr}"
    );
    assert!(
        copies.values().all(|n| *n == 1),
        "a part was accepted more than once within one window: {:?}",
        copies.values().collect::<Vec<_>>()
    );
    assert!(stderr.contains("may be a duplicate"), "{stderr}");
}
