//! The reader against real PoWA repositories (4.1.4 with remote servers, 3.2.0), as the
//! SELECT-only role: discovery, exact window deltas for a query first seen in the window,
//! across a counter reset, and read-only sessions.

use chrono::Utc;
use powa_sentinel::powa::{connect, RepositorySettings, ServerInfo};

use crate::support::repo::{calls_of, repository, since};
use crate::support::workload::{after_snapshot, batches};
use crate::support::{lab, unique};

/// A remote server as the lab's powa-collector snapshots it: every 5 s, kept 30 days,
/// snapshotted already.
fn assert_collected_by_powa_collector(remote: &ServerInfo) {
    assert_eq!(remote.frequency, Some(std::time::Duration::from_secs(5)));
    assert_eq!(
        remote.retention,
        Some(std::time::Duration::from_secs(30 * 86400))
    );
    assert!(remote.last_snapshot.is_some(), "{remote:?}");
}

#[actix_rt::test]
async fn discovers_powa_4_with_remote_servers() {
    let _turn = crate::support::turn(module_path!());
    let repo = repository("lab", &lab().repo_dsn()).await;
    assert_eq!(repo.info.version.to_string(), "4.1.4");
    assert_eq!(repo.info.schema, "public");
    assert_eq!(repo.info.exec_time_field(), "total_exec_time");
    let names: Vec<&str> = repo.info.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["local", "remote1", "remote2"]);
    let remote = &repo.info.servers[1];
    assert_collected_by_powa_collector(remote);
    for m in ["pg_stat_statements", "pg_stat_kcache", "pg_qualstats"] {
        assert!(
            remote.modules.iter().any(|x| x == m),
            "{m} not in {:?}",
            remote.modules
        );
    }
}

#[actix_rt::test]
async fn discovers_powa_5_with_a_remote_server() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let repo = repository("lab", &lab.repo5_dsn()).await;
    assert_eq!(repo.info.version.to_string(), lab.powa5_version());
    assert_eq!(repo.info.schema, "public");
    assert_eq!(repo.info.exec_time_field(), "total_exec_time");
    let names: Vec<&str> = repo.info.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["local", "remote5"]);
    let remote = &repo.info.servers[1];
    assert_collected_by_powa_collector(remote);
    for s in &repo.info.servers {
        for m in [
            "pg_stat_statements",
            "pg_stat_kcache",
            "pg_qualstats",
            "pg_wait_sampling",
        ] {
            assert!(
                s.modules.iter().any(|x| x == m),
                "{m} not in {:?} of {}",
                s.modules,
                s.name
            );
        }
    }
}

#[actix_rt::test]
async fn discovers_powa_3() {
    let _turn = crate::support::turn(module_path!());
    let repo = repository("lab", &lab().repo3_dsn()).await;
    assert_eq!(repo.info.version.to_string(), "3.2.0");
    assert_eq!(repo.info.exec_time_field(), "total_time");
    let names: Vec<&str> = repo.info.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["local"]);
}

/// A query that first appears inside the window is counted from zero; a
/// pg_stat_statements reset inside the window does not lose or negate calls.
async fn exact_deltas(cluster: &str, dsn: &str) {
    let lab = lab();
    let t = format!("t_delta_{}", unique());
    let q = format!("SELECT count(*) FROM {t} WHERE id < 50");
    let start = after_snapshot(cluster, cluster, &t, 100, || {
        lab.repeat(cluster, "app", &q, 37);
        lab.snapshot(cluster);
        lab.repeat(cluster, "app", &q, 5);
        lab.snapshot(cluster);
        lab.psql(cluster, "powa", "SELECT pg_stat_statements_reset()");
        lab.repeat(cluster, "app", &q, 3);
    });

    let repo = repository("lab", dsn).await;
    let w = since(&repo, "local", start).await;
    assert_eq!(calls_of(&w, &t), 45.0, "37 + 5 + 3 calls across a reset");
    let before_start = since(&repo, "local", Utc::now()).await;
    assert_eq!(
        calls_of(&before_start, &t),
        0.0,
        "an empty window has no calls"
    );
    lab.psql(cluster, "app", &format!("DROP TABLE {t}"));
}

on_every_powa!(exact_deltas: exact_deltas_on_powa_4, exact_deltas_on_powa_5, exact_deltas_on_powa_3);

/// Batches of `calls` to a table of a remote server (`cluster`), each followed by a
/// snapshot of `snapshot` (its collector's): the server's window counts them all, with
/// database names resolved, and the repository's `other` servers never see them. Takes
/// this module's turn on the lab for the whole test.
async fn remote_deltas(cluster: &str, snapshot: &str, dsn: &str, calls: &[usize], other: &[&str]) {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let prefix = format!("t_{cluster}");
    let (t, start) = batches(cluster, snapshot, &prefix, 100, "id > 10", calls);
    let repo = repository("lab", dsn).await;
    let w = since(&repo, cluster, start).await;
    assert_eq!(calls_of(&w, &t), calls.iter().sum::<usize>() as f64);
    assert!(
        w.queries.iter().all(|q| q.database.is_some()),
        "database names resolved"
    );
    for name in other {
        let w = since(&repo, name, start).await;
        assert_eq!(calls_of(&w, &t), 0.0, "{name} never sees it");
    }
    lab.psql(cluster, "app", &format!("DROP TABLE {t}"));
}

#[actix_rt::test]
async fn remote_server_deltas_come_from_powa_collector() {
    // Per-server: the other server and the repository's own server never see it.
    remote_deltas(
        "remote1",
        "remote",
        &lab().repo_dsn(),
        &[23],
        &["remote2", "local"],
    )
    .await;
}

/// PoWA 5 in remote mode: powa-collector 1.3 snapshots remote5 into repo5.
#[actix_rt::test]
async fn remote_server_deltas_come_from_powa_collector_on_powa_5() {
    remote_deltas(
        "remote5",
        "remote5",
        &lab().repo5_dsn(),
        &[23, 4],
        &["local"],
    )
    .await;
}

#[actix_rt::test]
async fn sessions_are_read_only() {
    let _turn = crate::support::turn(module_path!());
    let repo = repository("lab", &lab().repo_dsn()).await;
    let err = repo
        .client
        .batch_execute("CREATE TEMP TABLE sentinel_must_not_write (x int)")
        .await
        .expect_err("a write must fail");
    let text = powa_sentinel::powa::connect::describe_pg_error(&err);
    assert!(text.contains("read-only"), "{text}");
    let app: String = repo
        .client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "powa-sentinel");
}

/// The error of a connection to `dsn` that must fail (`what`).
async fn refused(dsn: &str, what: &str) -> String {
    connect("lab", &RepositorySettings::from_dsn(dsn))
        .await
        .err()
        .expect(what)
        .to_string()
}

#[actix_rt::test]
async fn bad_inputs_say_what_to_do() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let good = lab.repo_dsn();
    let wrong_pw = format!("{good} password=certainly-wrong");
    let e = refused(&wrong_pw, "wrong password must fail").await;
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("certainly-wrong"), "password leaked: {e}");

    let db = format!("nopowa_{}", unique());
    lab.psql("repo", "postgres", &format!("CREATE DATABASE {db}"));
    let ro = lab.var("POWA_LAB_RO_USER");
    lab.psql(
        "repo",
        "postgres",
        &format!("GRANT CONNECT ON DATABASE {db} TO {ro}"),
    );
    let no_powa = format!("{good} dbname={db}");
    let e = refused(&no_powa, "a database without PoWA must fail").await;
    assert!(
        e.contains(&format!("PoWA is not installed in database `{db}`")),
        "{e}"
    );
    lab.psql(
        "repo",
        "postgres",
        &format!("DROP DATABASE {db} WITH (FORCE)"),
    );

    let closed = "host=127.0.0.1 port=1 user=x dbname=powa connect_timeout=2";
    let e = refused(closed, "a closed port must fail").await;
    assert!(e.contains("cannot connect") && e.contains("refused"), "{e}");
}

/// A server registered but never snapshotted: PoWA keeps `-infinity` as its last
/// snapshot time, which discovery reports as "never", not as a failure (a repository of
/// its own, so the shared lab keeps its servers).
#[actix_rt::test]
async fn a_server_never_snapshotted_is_discovered() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let db = format!("powa_fresh_{}", unique());
    lab.psql("repo", "postgres", &format!("CREATE DATABASE {db}"));
    lab.psql(
        "repo",
        &db,
        "SET client_min_messages = warning; CREATE EXTENSION pg_stat_statements; \
         CREATE EXTENSION btree_gist; CREATE EXTENSION powa; \
         INSERT INTO powa_servers (hostname, alias, port, username, dbname, frequency, retention) \
         VALUES ('db9.example', 'fresh', 5432, 'powa', 'powa', 300, '1 day'); \
         UPDATE powa_functions SET enabled = false \
         WHERE srvid = 0 AND module = 'pg_stat_statements' AND operation = 'snapshot'",
    );
    let dsn = format!(
        "host={} port={} dbname={db} user={}",
        lab.var("POWA_LAB_SOCKET_DIR"),
        lab.var("POWA_LAB_REPO_PORT"),
        lab.var("POWA_LAB_ADMIN_USER"),
    );
    let found = connect("fresh", &RepositorySettings::from_dsn(&dsn)).await;
    lab.psql(
        "repo",
        "postgres",
        &format!("DROP DATABASE {db} WITH (FORCE)"),
    );
    let repo = found.unwrap_or_else(|e| panic!("connect: {e}"));
    let fresh = repo
        .info
        .servers
        .iter()
        .find(|s| s.name == "fresh")
        .unwrap_or_else(|| panic!("not discovered: {:?}", repo.info.servers));
    assert_eq!(fresh.last_snapshot, None, "never snapshotted");
    assert!(fresh.modules.is_empty(), "{:?}", fresh.modules);
    // A module switched off in powa_functions is told apart from one never registered.
    let local = repo.info.servers.iter().find(|s| s.srvid == 0).unwrap();
    assert_eq!(local.disabled_modules, ["pg_stat_statements"]);
    assert!(!local.modules.iter().any(|m| m == "pg_stat_statements"));
}
