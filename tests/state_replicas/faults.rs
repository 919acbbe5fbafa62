//! The state database's faults under two replicas: their sessions terminated by the
//! server (`pg_terminate_backend`), the database frozen past the lease (a proxy that
//! stops forwarding, as a stopped server does), the database's server restarted and
//! crashed (`pg_ctl stop -m fast` / `-m immediate`, then started), and a PoWA repository
//! outage. Every replica recovers: beats go on, the servers are collected again, the
//! delivery goes on, no finding is told twice.

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
    let _slot = crate::slot();
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
    let _slot = crate::slot();
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

/// A state database of its own on the lab's PoWA 3 cluster (`repo3`, which no replica of
/// these tests reads), so that its server can be restarted without touching the PoWA
/// repositories: the lab's state role and database, created there if missing.
fn state_on_repo3() -> String {
    let lab = support::lab();
    let dsn = lab.state_dsn();
    let field = |k: &str| {
        dsn.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let (user, password) = (field("user"), field("password"));
    lab.psql(
        "repo3",
        "postgres",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN
             CREATE ROLE {user} LOGIN PASSWORD '{password}'; END IF; END $$"
        ),
    );
    if lab
        .psql(
            "repo3",
            "postgres",
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = '{}'",
                field("dbname")
            ),
        )
        .trim()
        .is_empty()
    {
        lab.psql(
            "repo3",
            "postgres",
            &format!("CREATE DATABASE {} OWNER {user}", field("dbname")),
        );
    }
    let port = field("port");
    dsn.replace(
        &format!("port={port}"),
        &format!("port={}", lab.var("POWA_LAB_REPO3_PORT")),
    )
}

#[test]
fn a_state_database_restart_and_crash_are_recovered_from() {
    let _slot = crate::slot();
    let schema = schema("restart");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings.jsonl");
    let lab = support::lab();
    let state = state_on_repo3();
    let mut a = replica(&schema, &state, &extra(&out));
    let mut b = replica(&schema, &state, &extra(&out));
    until_sharing_and_reported(&mut a, &mut b, &out);

    for (how, down) in [("stop", Duration::ZERO), ("crash", Duration::from_secs(6))] {
        let beats: Vec<Option<String>> = [&a, &b].iter().map(|p| last_beat(p)).collect();
        lab.pg_ctl("repo3", how);
        // Down past the 3 s lease for the crash: both must stop acting on their leases.
        if !down.is_zero() {
            wait_all(
                &mut [&mut a, &mut b],
                "both stop at their deadline",
                Duration::from_secs(30),
                |ps| ps.iter().all(|p| collecting(p).is_empty()),
            );
            std::thread::sleep(down);
        }
        lab.pg_ctl("repo3", "start");
        wait_all(
            &mut [&mut a, &mut b],
            &format!("beats and the work shared again after the {how}"),
            Duration::from_secs(60),
            |ps| {
                ps.iter()
                    .zip(&beats)
                    .all(|(p, before)| last_beat(p).is_some() && last_beat(p) != *before)
                    && two_sharing(ps)
            },
        );
        // The delivery goes on: the delivering replica makes its scheduled reports again
        // (every 5 s; the findings are those already told, so nothing new reaches the file).
        let since = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string();
        wait_all(
            &mut [&mut a, &mut b],
            &format!("a scheduled report after the {how}"),
            Duration::from_secs(60),
            |ps| {
                ps.iter().any(|p| {
                    crate::me(p).is_some()
                        && crate::me(p) == deliverer(p)
                        && p.status().is_some_and(|s| {
                            s["last_report"]
                                .as_str()
                                .is_some_and(|l| l > since.as_str())
                        })
                })
            },
        );
    }
    std::thread::sleep(Duration::from_secs(6));
    no_finding_twice(&out);
    crate::assert_never_collected_twice(&[&a, &b]);
    for p in [a, b] {
        p.stop(Duration::from_secs(30));
    }
    lab.psql(
        "repo3",
        "sentinel_state",
        &format!("DROP SCHEMA {schema} CASCADE"),
    );
}

/// PgBouncer in transaction mode in front of the lab's state database, with two server
/// sessions for every client (so that the replicas' transactions are handed to whichever
/// server session is free, as a busy pooler does), and the state DSN through it.
struct Bouncer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    dsn: String,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bouncer() -> Bouncer {
    let lab = support::lab();
    let state = lab.state_dsn();
    let field = |k: &str| {
        state
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let port = support::daemon::free_port();
    let (user, db) = (field("user"), field("dbname"));
    std::fs::write(dir.path().join("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
    std::fs::write(
        dir.path().join("pgbouncer.ini"),
        format!(
            "[databases]\n{db} = host=127.0.0.1 port={} dbname={db} user={user} password={}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
             default_pool_size = 2\nmax_client_conn = 100\nlogfile = {}\n",
            field("port"),
            field("password"),
            dir.path().join("users.txt").display(),
            dir.path().join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // PgBouncer refuses to run as root: it switches to the lab's clusters' user itself
    // (`-u`), so that the child is PgBouncer and killing it stops it. Its output goes to
    // its log file, never to the test's (a survivor holding the test's stderr open would
    // keep whoever reads it waiting).
    let ini = dir.path().join("pgbouncer.ini");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = std::process::Command::new("/usr/sbin/pgbouncer");
    if root {
        cmd.args(["-u", lab.var("POWA_LAB_OS_USER")]);
    }
    let child = cmd
        .arg(&ini)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pgbouncer (Debian package pgbouncer; powa-lab install installs it)");
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "pgbouncer did not listen:\n{}",
            std::fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dsn = state.replace(&format!("port={}", field("port")), &format!("port={port}"));
    Bouncer {
        child,
        _dir: dir,
        dsn,
    }
}

#[test]
fn replicas_work_through_a_pooler_in_transaction_mode() {
    let _slot = crate::slot();
    let schema = schema("pooler");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings.jsonl");
    let pool = bouncer();
    let mut a = replica(&schema, &pool.dsn, &extra(&out));
    let mut b = replica(&schema, &pool.dsn, &extra(&out));
    until_sharing_and_reported(&mut a, &mut b, &out);
    // A few more cycles and beats, every transaction handed to either server session.
    std::thread::sleep(Duration::from_secs(8));
    for p in [&a, &b] {
        let logs = p.logs();
        assert!(
            !logs.contains("prepared statement") && !logs.contains("Lost the leases"),
            "a replica failed through the pooler:\n{}",
            crate::tail(&logs, 20)
        );
    }
    assert!(two_sharing(&[&a, &b]), "the replicas stopped sharing");
    settle_and_stop(a, b, &out, &schema);
}
