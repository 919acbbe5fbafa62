//! Replicas: several real `powa-sentinel run` processes on one state database (the lab's
//! `sentinel_state`, a schema per test), the lab's real PoWA repositories, a file channel
//! and the WeCom-compatible robot as a process of its own.
//!
//! - `split`: three replicas share the servers (none collected by two, none left out) and
//!   one report's findings arrive once, whichever replica analysed them;
//! - `takeover`: `kill -9` of the delivering replica in the middle of a multi-part report,
//!   `SIGSTOP` of it past its lease then `SIGCONT`: the other one carries on, nothing is
//!   lost, nothing is sent twice but the one part in flight;
//! - `burst`: 2,000 findings of 500 servers in two waves through three replicas to one
//!   robot key: one quota for the fleet, every finding told;
//! - `faults`: the replicas' state-database sessions terminated, the state database
//!   frozen past the lease, restarted and crashed, PgBouncer in transaction mode in front
//!   of it, a PoWA repository outage: every replica recovers, nothing lost or doubled.
//!
//! Waits are liveness bounds, never speed assertions.
//!
//! The crate is named to run after the others (cargo runs them in name order): the
//! replicas' state database is on the lab's PoWA 4 repository cluster, so PoWA records
//! their statements as top queries of its `local` server, which the other crates'
//! expectations do not know of.

#[path = "../support/fake_wecom.rs"]
mod fake_wecom;
#[path = "../support/robot.rs"]
mod robot;
#[path = "../support/mod.rs"]
mod support;

mod burst;
mod faults;
mod split;
mod takeover;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use support::daemon::Proc;

/// How many of this crate's tests run at once. Each starts two or three replicas that
/// collect every second and beat a 3 s lease: four tests at once on a two-core machine
/// (the load average went past 6) starved the beats and lost the leases, which is what
/// the tests check for, not what they set up.
const SLOTS: usize = 2;

/// Held for the whole of a test: the [`SLOTS`] it took.
pub struct Slot(usize);

fn slots() -> &'static (std::sync::Mutex<usize>, std::sync::Condvar) {
    static S: std::sync::OnceLock<(std::sync::Mutex<usize>, std::sync::Condvar)> =
        std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

/// Waits until a slot is free and takes it.
pub fn slot() -> Slot {
    take(1)
}

/// Waits until the crate's other tests are done and takes every slot: for a test whose
/// replicas alone keep the machine busy (a fleet of hundreds of servers).
pub fn whole_machine() -> Slot {
    take(SLOTS)
}

fn take(n: usize) -> Slot {
    let (lock, cv) = slots();
    let mut busy = lock.lock().unwrap_or_else(|e| e.into_inner());
    while *busy + n > SLOTS {
        busy = cv.wait(busy).unwrap_or_else(|e| e.into_inner());
    }
    *busy += n;
    Slot(n)
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = slots();
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= self.0;
        cv.notify_all();
    }
}

/// A fresh schema of the lab's state database for one test (dropped first).
pub fn schema(test: &str) -> String {
    let schema = format!("r_{test}_{}", std::process::id());
    state_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    schema
}

/// Runs `sql` on the state database as its owner; the first column of each row.
pub fn state_sql(sql: &str) -> Vec<String> {
    support::lab().state_sql(sql)
}

/// The settings every replica of a test shares (but `[http] listen`): the lab's three
/// servers of its PoWA 4 repository and the PoWA 5 repository's, collected every second,
/// the state database of `schema` with a 3 s lease (`state` may point it elsewhere),
/// then `extra` (the channels, the schedule's keys).
pub fn replica_settings(port: u16, schema: &str, state_dsn: &str, extra: &str) -> String {
    let lab = support::lab();
    let repositories = format!(
        "[repositories.main]\ndsn = \"{}\"\nservers = [\"local\", \"remote1\", \"remote2\"]\n\
         [repositories.five]\ndsn = \"{}\"",
        lab.repo_dsn(),
        lab.repo5_dsn()
    );
    settings_on(port, schema, state_dsn, &repositories, "1s", extra)
}

/// [`replica_settings`] on the `repositories` tables given, each server collected every
/// `interval`.
pub fn settings_on(
    port: u16,
    schema: &str,
    state_dsn: &str,
    repositories: &str,
    interval: &str,
    extra: &str,
) -> String {
    format!(
        r#"[log]
level = "debug"
format = "json"
[collection]
interval = "{interval}"
min_interval = "1s"
max_jitter = "200ms"
rediscover_every = "5s"
repository_retry_max = "2s"
shutdown_deadline = "10s"
max_concurrent_per_repository = 2
[http]
listen = "127.0.0.1:{port}"
[analysis]
window = "1h"
{repositories}
[state]
dsn = "{state_dsn}"
schema = "{schema}"
lease = "3s"
connect_timeout = "2s"
statement_timeout = "2s"
{extra}
"#
    )
}

/// Starts one replica on the `repositories` tables given (see [`settings_on`]).
pub fn replica_on(
    schema: &str,
    state_dsn: &str,
    repositories: &str,
    interval: &str,
    extra: &str,
) -> Proc {
    let (schema, dsn, repositories, interval, extra) = (
        schema.to_string(),
        state_dsn.to_string(),
        repositories.to_string(),
        interval.to_string(),
        extra.to_string(),
    );
    Proc::start(
        "run",
        move |port, _| settings_on(port, &schema, &dsn, &repositories, &interval, &extra),
        &[],
    )
}

/// A proxy that can freeze in front of the lab's repo cluster (which holds the PoWA 4
/// repository and the state database), and `dsn` rewritten to go through it.
pub fn through_proxy(dsn: &str) -> (support::faults::Proxy, String) {
    let port: u16 = support::lab().var("POWA_LAB_REPO_PORT").parse().unwrap();
    let proxy = support::faults::Proxy::start(([127, 0, 0, 1], port).into(), None);
    let dsn = dsn.replace(&format!("port={port}"), &format!("port={}", proxy.port));
    (proxy, dsn)
}

/// Starts one replica.
pub fn replica(schema: &str, state_dsn: &str, extra: &str) -> Proc {
    let (schema, dsn, extra) = (schema.to_string(), state_dsn.to_string(), extra.to_string());
    Proc::start(
        "run",
        move |port, _| replica_settings(port, &schema, &dsn, &extra),
        &[],
    )
}

/// `/status` → `replicas`, when the replica answers.
pub fn replicas(p: &Proc) -> Option<Value> {
    p.status()
        .map(|s| s["replicas"].clone())
        .filter(|r| r.is_object())
}

/// This replica's member id.
pub fn me(p: &Proc) -> Option<String> {
    replicas(p).and_then(|r| r["me"].as_str().map(String::from))
}

/// The servers a replica collects now.
pub fn collecting(p: &Proc) -> BTreeSet<String> {
    replicas(p)
        .map(|r| {
            r["collecting"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Who delivers, as a replica sees it.
pub fn deliverer(p: &Proc) -> Option<String> {
    replicas(p).and_then(|r| r["delivery"]["holder"].as_str().map(String::from))
}

/// How many servers the fleet collects, as a replica discovered them: the three chosen
/// of the PoWA 4 repository and every server of the PoWA 5 one (0 before both answered).
pub fn expected_servers(p: &Proc) -> usize {
    p.status()
        .and_then(|s| {
            let five = s["repositories"]["five"]["servers"].as_u64()?;
            s["repositories"]["main"]["reachable"]
                .as_bool()
                .filter(|r| *r)?;
            Some(3 + five as usize)
        })
        .unwrap_or(0)
}

/// When each replica ran a collector for each server: (server → [(start, stop)]) from its
/// log, the stop `None` while it still runs.
pub fn collector_intervals(p: &Proc) -> BTreeMap<String, Vec<(String, Option<String>)>> {
    let mut out: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for line in p.logs().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(msg), Some(server), Some(ts)) =
            (v["msg"].as_str(), v["server"].as_str(), v["ts"].as_str())
        else {
            continue;
        };
        if msg == "Collector started." {
            out.entry(server.to_string())
                .or_default()
                .push((ts.to_string(), None));
        } else if msg.starts_with("Server gone from the repository") {
            if let Some(last) = out.get_mut(server).and_then(|v| v.last_mut()) {
                last.1 = Some(ts.to_string());
            }
        }
    }
    out
}

/// No server had collectors on two replicas at once: the intervals of each server, over
/// every replica, do not overlap (RFC 3339 times of one clock compare as text).
pub fn assert_never_collected_twice(procs: &[&Proc]) {
    let mut by_server: BTreeMap<String, Vec<(String, String, usize)>> = BTreeMap::new();
    for (i, p) in procs.iter().enumerate() {
        for (server, spans) in collector_intervals(p) {
            for (start, stop) in spans {
                by_server.entry(server.clone()).or_default().push((
                    start,
                    stop.unwrap_or_else(|| "9999".into()),
                    i,
                ));
            }
        }
    }
    for (server, mut spans) in by_server {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0 || w[0].2 == w[1].2,
                "{server} was collected by replicas {} and {} at once: {:?} and {:?}",
                w[0].2,
                w[1].2,
                w[0],
                w[1]
            );
        }
    }
}

/// Waits until `cond` holds over all the replicas; panics with their logs after `limit`.
pub fn wait_all(
    procs: &mut [&mut Proc],
    what: &str,
    limit: Duration,
    cond: impl Fn(&[&Proc]) -> bool,
) {
    let t0 = std::time::Instant::now();
    loop {
        let views: Vec<&Proc> = procs.iter().map(|p| &**p).collect();
        if cond(&views) {
            return;
        }
        for p in procs.iter_mut() {
            assert!(
                p.running(),
                "a replica exited while waiting for {what}:\n{}",
                p.output()
            );
        }
        if t0.elapsed() > limit {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("status {:?}\n{}", p.status(), tail(&p.logs(), 40)))
                .collect();
            panic!("never saw {what}:\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `n` lines of `text` that are not debug records.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"level\":\"DEBUG\""))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The insights a file channel wrote.
pub fn file_insights(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
