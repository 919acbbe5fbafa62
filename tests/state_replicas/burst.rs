//! A burst through three replicas to one robot key: a PoWA repository of its own lists
//! 250 servers that never snapshot, so the first cycles find four findings per server
//! (1,000 in all: the critical "never snapshotted", its health score…), analysed on
//! whichever replica collects the server, all in the next reports; as the first message
//! arrives, 250 more servers join the fleet (1,000 findings more, a minute later). The one delivering
//! replica keeps the robot's quota for the whole fleet: no errcode 45009, at most the
//! quota in any 60 s, and every finding is in a message, shown or counted in a digest.
//!
//! Grouping tells those 2,000 findings in a handful of messages (one entry per problem,
//! "Also on: … +N more"), far fewer than WeCom's 20 a minute: so that the quota binds and
//! the pacer must hold messages back, the robot enforces 2 messages a minute here (the
//! fake's own limit, answering 45009 beyond it) and the channel is told so
//! (`max_per_minute = 2`); the test fails if no more than that many messages came.

use std::time::Duration;

use serde_json::Value;

use crate::robot;
use crate::support;
use crate::{collecting, replicas, schema, tail, wait_all};

const KEY: &str = "robot-key-burst";
const SERVERS: usize = 250;
/// Servers of the whole fleet, both waves.
const FLEET: usize = 2 * SERVERS;
/// The robot's quota in this test (messages per rolling 60 s), and the channel's.
const QUOTA: usize = 2;

/// (at, content) of every message the robot accepted.
fn accepted(path: &std::path::Path) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let at = chrono::DateTime::parse_from_rfc3339(v["at"].as_str()?).ok()?;
            Some((
                at.with_timezone(&chrono::Utc),
                v["content"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// How many of the fleet's servers the messages represent: the servers they name (in an
/// alert's title or its "Also on"), and those they count (a digest's or a list's "+N").
fn represented(msgs: &[(chrono::DateTime<chrono::Utc>, String)]) -> (usize, usize) {
    let all: Vec<&str> = msgs.iter().map(|(_, c)| c.as_str()).collect();
    let all = all.join("\n");
    let named: std::collections::BTreeSet<usize> = all
        .split("fleet-")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .filter(|n| (1..=FLEET).contains(n))
        .collect();
    (named.len(), crate::fake_wecom::counted_in_digests(&all))
}

#[test]
fn a_burst_through_three_replicas_keeps_one_robot_quota() {
    let _slot = crate::whole_machine();
    let lab = support::lab();
    let db = format!("fleet_{}", std::process::id());
    lab.psql(
        "repo",
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    lab.psql("repo", "postgres", &format!("CREATE DATABASE {db}"));
    lab.psql("repo", &db, "CREATE EXTENSION powa CASCADE");
    let wave = |from: usize, to: usize| {
        lab.psql(
            "repo",
            &db,
            &format!(
                "INSERT INTO powa_servers (hostname, alias, port, username, dbname)
                 SELECT 'fleet-'||i, 'fleet-'||i, 5432, 'powa', 'powa' FROM generate_series({from}, {to}) i"
            ),
        )
    };
    wave(1, SERVERS);
    lab.psql(
        "repo",
        &db,
        &format!(
            "GRANT CONNECT ON DATABASE {db} TO {ro}; GRANT USAGE ON SCHEMA public TO {ro};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ro}",
            ro = lab.var("POWA_LAB_RO_USER")
        ),
    );
    let fleet_dsn = lab
        .repo_dsn()
        .replace("dbname=powa", &format!("dbname={db}"));
    let schema = schema("burst");
    let quota = QUOTA.to_string();
    let fake = robot::start(KEY, &["--max-per-window", &quota, "--window", "60s"]);
    let extra = format!(
        r#"[schedule]
cron = "*/30 * * * * *"
[channels.robot]
type = "wecom"
base_url = "{}"
key = "{KEY}"
max_per_minute = {QUOTA}"#,
        fake.url
    );
    let repositories =
        format!("[repositories.fleet]\ndsn = \"{fleet_dsn}\"\nreach_servers = false");
    let state = lab.state_dsn();
    // A few hundred servers: every 15 s is plenty (a finding fires at its second sight).
    let start = || crate::replica_on(&schema, &state, &repositories, "15s", &extra);
    let mut a = start();
    let mut b = start();
    let mut c = start();
    wait_all(
        &mut [&mut a, &mut b, &mut c],
        "the fleet split between three replicas",
        Duration::from_secs(90),
        |ps| {
            let total: usize = ps.iter().map(|p| collecting(p).len()).sum();
            ps.iter().all(|p| {
                replicas(p).is_some_and(|r| r["members"].as_array().map(Vec::len) == Some(3))
            }) && total == SERVERS + 1
                && ps.iter().all(|p| !collecting(p).is_empty())
        },
    );
    let t0 = std::time::Instant::now();
    let mut second = false;
    loop {
        let msgs = accepted(&fake.record);
        if !second && !msgs.is_empty() {
            wave(SERVERS + 1, FLEET);
            second = true;
        }
        let (shown, counted) = represented(&msgs);
        if second && shown + counted >= FLEET {
            break;
        }
        if t0.elapsed() > Duration::from_secs(300) {
            let msgs = accepted(&fake.record);
            let sample: Vec<&str> = msgs.iter().take(3).map(|(_, c)| c.as_str()).collect();
            panic!(
                "{shown} shown + {counted} counted of {FLEET} servers in {} messages; the first:\n{}\n{}",
                msgs.len(),
                sample.join("\n-----\n"),
                [&a, &b, &c].iter().map(|p| tail(&p.logs(), 15)).collect::<Vec<_>>().join("\n=====\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let msgs = accepted(&fake.record);
    let (shown, counted) = represented(&msgs);
    let mut most = 0;
    for (i, (t, _)) in msgs.iter().enumerate() {
        let n = msgs[i..]
            .iter()
            .take_while(|(u, _)| *u - *t < chrono::TimeDelta::seconds(60))
            .count();
        most = most.max(n);
    }
    eprintln!(
        "{} messages for {FLEET} servers: {shown} shown, {counted} counted in digests; at most {most} in 60 s",
        msgs.len()
    );
    assert!(most <= QUOTA, "{most} messages in 60 s to one key");
    assert!(
        msgs.len() > QUOTA,
        "{} messages: the quota never bound, the test proves nothing",
        msgs.len()
    );
    // The errcode as a word, not inside a number of a log line (0.0450091 s).
    let hit = |logs: &str| {
        logs.match_indices("45009").any(|(i, _)| {
            let b = logs.as_bytes();
            let digit = |c: u8| c.is_ascii_digit() || c == b'.';
            (i == 0 || !digit(b[i - 1])) && b.get(i + 5).is_none_or(|c| !digit(*c))
        })
    };
    for p in [&a, &b, &c] {
        assert!(
            !hit(&p.logs()),
            "a replica hit the quota:\n{}",
            tail(&p.logs(), 20)
        );
    }
    for p in [a, b, c] {
        p.stop(Duration::from_secs(30));
    }
    crate::state_sql(&format!("DROP SCHEMA {schema} CASCADE"));
    lab.psql(
        "repo",
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}
