//! The state database's faults under two replicas: their sessions terminated by the
//! server (`pg_terminate_backend`), and the database frozen past the lease (a proxy that
//! stops forwarding, as a stopped server does). Every replica recovers: beats go on, the
//! servers are collected again, the delivery goes on, no finding is told twice.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{self};
use crate::{collecting, deliverer, file_insights, replica, replicas, schema, wait_all};

fn extra(out: &std::path::Path) -> String {
    format!(
        r#"[schedule]
cron = "*/5 * * * * *"
[channels.file]
type = "file"
path = "{}""#,
        out.display()
    )
}

/// Beats seen so far by a replica (its `last_beat` changes each one).
fn last_beat(p: &support::daemon::Proc) -> Option<String> {
    replicas(p).and_then(|r| r["last_beat"].as_str().map(String::from))
}

fn no_finding_twice(out: &std::path::Path) {
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for i in file_insights(out) {
        *times
            .entry(format!(
                "{}:{}:{}",
                i["fingerprint"], i["status"], i["observed_at"]
            ))
            .or_default() += 1;
    }
    let twice: Vec<&String> = times
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(twice.is_empty(), "findings told twice: {twice:?}");
}

/// Both replicas see each other, every server is collected by one of them, one delivers.
fn two_sharing(ps: &[&support::daemon::Proc]) -> bool {
    let want = crate::expected_servers(ps[0]);
    let total: usize = ps.iter().map(|p| collecting(p).len()).sum();
    want > 0
        && total == want
        && ps.iter().all(|p| deliverer(p).is_some())
        && ps
            .iter()
            .all(|p| replicas(p).is_some_and(|r| r["members"].as_array().map(Vec::len) == Some(2)))
}

/// Waits until two replicas share the work and a first report reached `out`.
fn until_sharing_and_reported(
    a: &mut support::daemon::Proc,
    b: &mut support::daemon::Proc,
    out: &std::path::Path,
) {
    wait_all(
        &mut [a, b],
        "two replicas sharing",
        Duration::from_secs(90),
        two_sharing,
    );
    wait_all(
        &mut [a, b],
        "a first report",
        Duration::from_secs(60),
        |_| !file_insights(out).is_empty(),
    );
}

/// After a fault: a few more cycles, then no finding told twice, no server collected by
/// both at once; both stopped, the schema dropped.
fn settle_and_stop(
    a: support::daemon::Proc,
    b: support::daemon::Proc,
    out: &std::path::Path,
    schema: &str,
) {
    std::thread::sleep(Duration::from_secs(6));
    no_finding_twice(out);
    crate::assert_never_collected_twice(&[&a, &b]);
    for p in [a, b] {
        p.stop(Duration::from_secs(30));
    }
    crate::state_sql(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn terminated_sessions_and_a_frozen_state_database_are_recovered_from() {
    let schema = schema("faults");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings.jsonl");
    // Through a proxy that can freeze, to the lab's state database.
    let (proxy, dsn) = crate::through_proxy(&support::lab().state_dsn());
    let mut a = replica(&schema, &dsn, &extra(&out));
    let mut b = replica(&schema, &dsn, &extra(&out));
    until_sharing_and_reported(&mut a, &mut b, &out);

    // Every session of the schema's processes terminated by the server.
    let killed = crate::state_sql(&format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity
         WHERE application_name = 'powa-sentinel/{schema}'"
    ));
    eprintln!("terminated {killed:?} sessions");
    let beats: Vec<Option<String>> = [&a, &b].iter().map(|p| last_beat(p)).collect();
    wait_all(
        &mut [&mut a, &mut b],
        "beats after the sessions were cut",
        Duration::from_secs(30),
        |ps| {
            ps.iter()
                .zip(&beats)
                .all(|(p, before)| last_beat(p) != *before && last_beat(p).is_some())
                && two_sharing(ps)
        },
    );

    // Frozen past the lease: both stop collecting and delivering, then carry on.
    proxy.freeze();
    wait_all(
        &mut [&mut a, &mut b],
        "both stop at their deadline",
        Duration::from_secs(30),
        |ps| {
            ps.iter()
                .all(|p| collecting(p).is_empty() && p.logs().contains("Lost the leases"))
        },
    );
    let frozen_at = file_insights(&out).len();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        file_insights(&out).len(),
        frozen_at,
        "nothing delivered while frozen"
    );
    proxy.thaw();
    wait_all(
        &mut [&mut a, &mut b],
        "the replicas sharing again",
        Duration::from_secs(60),
        two_sharing,
    );
    settle_and_stop(a, b, &out, &schema);
}

#[test]
fn a_powa_repository_outage_pauses_its_servers_on_every_replica() {
    let schema = schema("powa_down");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings.jsonl");
    let lab = support::lab();
    // The PoWA 4 repository through a proxy that can freeze; the state database direct.
    let (proxy, repo) = crate::through_proxy(&lab.repo_dsn());
    let repositories = format!(
        "[repositories.main]\ndsn = \"{repo}\"\nservers = [\"local\", \"remote1\", \"remote2\"]\n\
         statement_timeout = \"2s\"\nconnect_timeout = \"2s\"\n\
         [repositories.five]\ndsn = \"{}\"",
        lab.repo5_dsn()
    );
    let state = lab.state_dsn();
    let start = || crate::replica_on(&schema, &state, &repositories, "1s", &extra(&out));
    let mut a = start();
    let mut b = start();
    until_sharing_and_reported(&mut a, &mut b, &out);
    let reachable = |p: &support::daemon::Proc| {
        p.status()
            .and_then(|s| s["repositories"]["main"]["reachable"].as_bool())
    };
    proxy.freeze();
    wait_all(
        &mut [&mut a, &mut b],
        "the repository marked down on both",
        Duration::from_secs(60),
        |ps| ps.iter().all(|p| reachable(p) == Some(false)),
    );
    // The leases stay where they were: nobody else could reach it either.
    let shares: Vec<_> = [&a, &b].iter().map(|p| collecting(p)).collect();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        [&a, &b].iter().map(|p| collecting(p)).collect::<Vec<_>>(),
        shares,
        "a repository outage moves no server"
    );
    proxy.thaw();
    let cycles = |p: &support::daemon::Proc| {
        p.status().and_then(|s| {
            s["servers"]["main/local"]["last_success"]
                .as_str()
                .map(String::from)
        })
    };
    let before: Vec<_> = [&a, &b].iter().map(|p| cycles(p)).collect();
    wait_all(
        &mut [&mut a, &mut b],
        "the repository back on both",
        Duration::from_secs(60),
        |ps| {
            ps.iter().all(|p| reachable(p) == Some(true))
                && ps
                    .iter()
                    .zip(&before)
                    .any(|(p, b)| cycles(p).is_some() && cycles(p) != *b)
        },
    );
    settle_and_stop(a, b, &out, &schema);
}
