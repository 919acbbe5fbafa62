//! What is particular to PoWA 5 (on PostgreSQL 17), on the lab's real `repo5` (local mode
//! and the repository of `remote5`, which trixie's powa-collector 1.3 snapshots):
//! pg_qualstats on the local server, which PoWA 5 never resets; role names of a remote
//! server from PoWA's catalog snapshots; the server's pg_stat_kcache totals; what the live
//! window reports as read; and the index advisor with hypopg on PostgreSQL 17, end to end.
//! The reads every version shares run against PoWA 5 in `powa_read`, `powa_fast_read` and
//! `powa_live`.

mod support;

use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use powa_sentinel::powa::live::LiveWindow;
use powa_sentinel::powa::qualstats::{read_quals, QualsWindow};
use powa_sentinel::powa::reader::{read_window, StatementsWindow};
use powa_sentinel::powa::{connect, Repository, RepositorySettings};
use sentinel_actors::Window;
use serde_json::Value;
use support::{exclusive, lab, unique};

async fn repo5() -> Repository {
    connect("lab5", &RepositorySettings::from_dsn(&lab().repo5_dsn()))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn server<'a>(repo: &'a Repository, name: &str) -> &'a powa_sentinel::powa::ServerInfo {
    repo.info
        .servers
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no server {name}: {:?}", repo.info.servers))
}

/// Executions of the test's filter on `t`, summed over its quals.
fn executions(q: &QualsWindow, t: &str) -> f64 {
    q.quals
        .iter()
        .filter(|x| q.text(&x.key).is_some_and(|s| s.contains(t)))
        .map(|x| x.occurrences)
        .sum()
}

/// `server`'s window from `start` to now.
async fn window(repo: &Repository, name: &str, start: DateTime<Utc>) -> StatementsWindow {
    let window = Window {
        start,
        end: Utc::now(),
    };
    read_window(
        &repo.client,
        &repo.name,
        &repo.info,
        server(repo, name),
        window,
    )
    .await
    .unwrap_or_else(|e| panic!("read_window: {e}"))
}

/// `powa-sentinel once --output json --config <config>`: the insights printed, which must
/// all be JSON; the run must succeed.
fn once_json(config: &std::path::Path) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .args(["once", "--output", "json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let insights = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (insights, stderr)
}

async fn quals(repo: &Repository, name: &str, start: DateTime<Utc>) -> QualsWindow {
    let window = Window {
        start,
        end: Utc::now(),
    };
    read_quals(&repo.client, &repo.info, server(repo, name), window)
        .await
        .unwrap_or_else(|e| panic!("read_quals: {e}"))
        .expect("pg_qualstats is collected")
}

/// A 300k-row table `t` filtered 30 times on unindexed columns (customer_id, status) on
/// `cluster`, between two snapshots of `snapshot`.
fn selective_filter_workload(cluster: &str, snapshot: &str, t: &str) {
    let lab = lab();
    let _guard = exclusive();
    lab.psql(
        cluster,
        "app",
        &format!(
            "CREATE TABLE {t} AS SELECT g AS id, 1 + (g % 10000) AS customer_id, \
                    CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END AS status \
             FROM generate_series(1, 300000) g; \
             ALTER TABLE {t} ADD PRIMARY KEY (id); ANALYZE {t}"
        ),
    );
    lab.snapshot(snapshot);
    // A remote's collector resets pg_qualstats after its read: let that pass first.
    std::thread::sleep(std::time::Duration::from_secs(1));
    lab.repeat(
        cluster,
        "app",
        &format!("SELECT id FROM {t} WHERE customer_id = 4242 AND status = 'open'"),
        30,
    );
    lab.snapshot(snapshot);
}

/// The one index suggestion for `t`, validated with hypopg, on (customer_id, status).
fn validated_advice<'a>(insights: &'a [Value], t: &str, stderr: &str) -> &'a Value {
    let mine: Vec<&Value> = insights
        .iter()
        .filter(|i| i["kind"] == "missing_index" && i["table"] == format!("public.{t}"))
        .collect();
    assert_eq!(mine.len(), 1, "{insights:#?}\n{stderr}");
    assert_eq!(mine[0]["rule"], "missing_index.btree_validated");
    assert_eq!(mine[0]["columns"], "customer_id, status");
    assert!(
        mine[0]["metrics"]["cost_after"].as_f64().unwrap()
            < mine[0]["metrics"]["cost_before"].as_f64().unwrap() / 10.0,
        "{:#?}",
        mine[0]
    );
    mine[0]
}

/// PoWA 5 does not reset pg_qualstats after a local snapshot: its values only grow (5, 10,
/// 15 for three snapshots of five executions). A window counts from the last point before
/// it, and a qual first seen inside the window from zero.
#[actix_rt::test]
async fn local_quals_count_from_the_point_before_the_window_or_from_zero() {
    let lab = lab();
    let t = format!("t_q5_{}", unique());
    let born = format!("t_q5b_{}", unique());
    let (before, start) = {
        let _guard = exclusive();
        for table in [&t, &born] {
            lab.psql(
                "repo5",
                "app",
                &format!(
                    "CREATE TABLE {table} AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 20000) g"
                ),
            );
        }
        let q = |table: &str| format!("SELECT count(*) FROM {table} WHERE k = 7");
        lab.repeat("repo5", "app", &q(&t), 5);
        lab.snapshot("repo5");
        let before = Utc::now();
        lab.repeat("repo5", "app", &q(&t), 5);
        lab.repeat("repo5", "app", &q(&born), 6);
        lab.snapshot("repo5");
        let start = Utc::now();
        lab.repeat("repo5", "app", &q(&t), 5);
        lab.repeat("repo5", "app", &q(&born), 6);
        lab.snapshot("repo5");
        (before, start)
    };
    let repo = repo5().await;
    let w = quals(&repo, "local", before).await;
    assert!(w.cumulative, "PoWA 5's local quals are cumulative");
    assert_eq!(executions(&w, &t), 10.0, "5 + 5 after the anchor (5)");
    assert_eq!(executions(&w, &born), 12.0, "born in the window: from zero");
    let later = quals(&repo, "local", start).await;
    assert_eq!(executions(&later, &t), 5.0);
    assert_eq!(executions(&later, &born), 6.0);
    let q = w
        .quals
        .iter()
        .find(|x| w.text(&x.key).is_some_and(|s| s.contains(&t)))
        .unwrap();
    assert_eq!(q.execution_count, 10.0 * 20_000.0, "rows evaluated");
    lab.psql(
        "repo5",
        "app",
        &format!("DROP TABLE {t}; DROP TABLE {born}"),
    );
}

/// On a remote server powa-collector resets pg_qualstats after each snapshot: plain sums.
/// The collector reads the remote's pg_qualstats, writes the snapshot, and resets
/// pg_qualstats afterwards: executions that land between its read and its reset are lost
/// by PoWA itself (seen here when the first batch ran right as the wait for a snapshot
/// returned). The test lets that reset pass before its batches.
#[actix_rt::test]
async fn remote_quals_are_per_snapshot_sums() {
    let lab = lab();
    let t = format!("t_q5r_{}", unique());
    let start = {
        let _guard = exclusive();
        lab.psql(
            "remote5",
            "app",
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, g % 100 AS k FROM generate_series(1, 20000) g"
            ),
        );
        lab.snapshot("remote5");
        std::thread::sleep(std::time::Duration::from_secs(1));
        let start = Utc::now();
        let q = format!("SELECT count(*) FROM {t} WHERE k = 7");
        lab.repeat("remote5", "app", &q, 5);
        lab.snapshot("remote5");
        lab.repeat("remote5", "app", &q, 4);
        lab.snapshot("remote5");
        start
    };
    let repo = repo5().await;
    let w = quals(&repo, "remote5", start).await;
    assert!(!w.cumulative);
    assert_eq!(executions(&w, &t), 9.0);
    lab.psql("remote5", "app", &format!("DROP TABLE {t}"));
}

/// PoWA 5 keeps a remote server's roles in `powa_catalog_roles`: users by name, not oid.
#[actix_rt::test]
async fn remote_users_are_named_from_the_catalog_snapshots() {
    let lab = lab();
    let t = format!("t_role5_{}", unique());
    let start = {
        let _guard = exclusive();
        lab.psql(
            "remote5",
            "app",
            &format!("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 100) g"),
        );
        lab.snapshot("remote5");
        let start = Utc::now();
        lab.repeat(
            "remote5",
            "app",
            &format!("SELECT count(*) FROM {t} WHERE id > 3"),
            3,
        );
        lab.snapshot("remote5");
        start
    };
    let w = window(&repo5().await, "remote5", start).await;
    let q = w
        .queries
        .iter()
        .find(|q| q.query.as_deref().is_some_and(|x| x.contains(&t)))
        .expect("the test's query");
    assert_eq!(
        q.user.as_deref(),
        Some(lab.var("POWA_LAB_ADMIN_USER")),
        "{q:?}"
    );
    lab.psql("remote5", "app", &format!("DROP TABLE {t}"));
}

/// CPU pg_stat_kcache recorded for a statement pg_stat_statements no longer has still
/// belongs to the server's total (it was left out: a query's share came out too high).
#[actix_rt::test]
async fn kcache_without_a_statement_row_stays_in_the_server_totals() {
    let lab = lab();
    let start = {
        let _guard = exclusive();
        lab.snapshot("repo5");
        let start = Utc::now();
        lab.repeat(
            "repo5",
            "app",
            &format!(
                "SELECT count(*) FROM generate_series(1, 300000) g WHERE md5(g::text || '{}') LIKE '0%'",
                unique()
            ),
            3,
        );
        // The statement is gone from pg_stat_statements before PoWA snapshots it;
        // pg_stat_kcache still has its CPU time.
        lab.psql("repo5", "powa", "SELECT pg_stat_statements_reset()");
        lab.snapshot("repo5");
        start
    };
    let w = window(&repo5().await, "local", start).await;
    let other = w.kcache_unmatched.expect("pg_stat_kcache is collected");
    assert!(
        other.cpu_time_ms() > 100.0,
        "the three md5 scans used CPU outside any statement row: {other:?}"
    );
}

/// The live window says how many rows it read: `powa_sentinel_rows_read_total` and
/// `/status` were always 0 in `run`.
#[actix_rt::test]
async fn the_live_window_reports_what_it_read() {
    let lab = lab();
    let repo = repo5().await;
    let local = server(&repo, "local").clone();
    let mut live = LiveWindow::with_checkpoint(
        "lab5",
        Arc::new(repo.info.clone()),
        local,
        chrono::Duration::seconds(4),
    );
    let now = Utc::now();
    let window = |end: DateTime<Utc>| Window {
        start: end - chrono::Duration::minutes(10),
        end,
    };
    let (first, cost) = live
        .cycle(&repo.client, window(now), &[])
        .await
        .expect("start-up cycle");
    assert!(first.points > 0, "the start-up read read rows");
    assert_eq!(first.points, cost.rows);
    {
        let _guard = exclusive();
        lab.repeat("repo5", "app", "SELECT 1", 3);
        lab.snapshot("repo5");
    }
    let (next, cost) = live
        .cycle(&repo.client, window(Utc::now()), &[])
        .await
        .expect("incremental cycle");
    assert!(next.points > 0, "the new snapshot's rows were read");
    assert_eq!(next.points, cost.rows);
}

/// The index advisor on PostgreSQL 17: the suggestion of a selective filter, checked with
/// hypopg, through `once --output json` as a user runs it.
#[test]
fn once_suggests_and_validates_an_index_on_powa_5() {
    let lab = lab();
    let t = format!("t_mi5_{}", unique());
    let role = format!("advisor5_{}", unique());
    let password = format!("pw{}", unique());
    lab.psql(
        "repo5",
        "app",
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; \
             GRANT CONNECT ON DATABASE app TO {role}; GRANT pg_read_all_data TO {role}"
        ),
    );
    selective_filter_workload("repo5", "repo5", &t);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sentinel.toml");
    let dsn = format!(
        "host=127.0.0.1 port={} user={role} password={password}",
        lab.var("POWA_LAB_REPO5_PORT")
    );
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "warning"
format = "json"

[analysis]
window = "1h"

[repositories.lab5]
dsn = "{repo}"

[repositories.lab5.monitored."local"]
dsn = "{dsn}"

[channels.console]
type = "console"
"#,
            repo = lab.repo5_dsn()
        ),
    )
    .unwrap();
    let (insights, stderr) = once_json(&config);
    validated_advice(&insights, &t, &stderr);
    assert!(!stderr.contains(&password), "password leaked");
    lab.psql("repo5", "app", &format!("DROP TABLE {t}"));
}

/// `once --output json` prints what the channels are told: with a state dir, a second run
/// over the same problem prints nothing for it (README, `--output json`).
#[test]
fn once_json_with_a_state_dir_prints_what_changed() {
    let lab = lab();
    let t = format!("t_json5_{}", unique());
    {
        let _guard = exclusive();
        lab.psql(
            "repo5",
            "app",
            &format!("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 200000) g"),
        );
        lab.snapshot("repo5");
        lab.repeat(
            "repo5",
            "app",
            &format!("SELECT count(*) FROM {t} a WHERE md5(a.id::text) LIKE 'ab%'"),
            20,
        );
        lab.snapshot("repo5");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "warning"

[analysis]
window = "1h"

[state]
dir = "{state}"

[repositories.lab5]
dsn = "{repo}"
servers = ["local"]

[analyzers.slow_queries]
top_n = 50
min_total_time = "1ms"

[channels.console]
type = "console"
"#,
            state = dir.path().join("state").display(),
            repo = lab.repo5_dsn()
        ),
    )
    .unwrap();
    let run = || {
        once_json(&config)
            .0
            .into_iter()
            .filter(|i| i["text"].as_str().is_some_and(|x| x.contains(&t)))
            .collect::<Vec<_>>()
    };
    let first = run();
    assert!(!first.is_empty(), "the test's query is a finding");
    assert!(first.iter().all(|i| i["status"] == "new"), "{first:#?}");
    let second = run();
    assert!(second.is_empty(), "nothing changed: {second:#?}");
    lab.psql("repo5", "app", &format!("DROP TABLE {t}"));
}

/// `check` on PoWA 5 names the version, both servers, their modules (PoWA 5's new sources
/// listed, none an error) and the retention.
#[test]
fn check_lists_powa_5() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            "[repositories.lab5]\ndsn = \"{}\"\n\n[channels.console]\ntype = \"console\"\n",
            lab.repo5_dsn()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "PoWA {} in schema public, 2 server(s)",
            lab.powa5_version()
        )),
        "{text}"
    );
    assert!(text.contains("server local (srvid 0)"), "{text}");
    assert!(
        text.contains("server remote5 (srvid 1): snapshot every 5s"),
        "{text}"
    );
    for m in [
        "pg_stat_statements",
        "pg_stat_kcache",
        "pg_qualstats",
        "pg_stat_io",
    ] {
        assert!(text.contains(m), "{m}: {text}");
    }
    assert!(text.contains("retention 30days"), "{text}");
}

/// `run` on PoWA 5: both servers are collected, and what they read shows in
/// `powa_sentinel_rows_read_total` (always 0 in `run` before, on every version).
#[test]
fn the_daemon_collects_powa_5_and_counts_what_it_reads() {
    use std::io::{Read, Write};
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "warning"
[schedule]
cron = "0 0 0 1 1 *"
[collection]
interval = "1s"
min_interval = "1s"
max_jitter = "200ms"
[analysis]
window = "2min"
[http]
listen = "127.0.0.1:{port}"
[repositories.lab5]
dsn = "{repo}"
[channels.console]
type = "console"
"#,
            repo = lab.repo5_dsn()
        ),
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let metrics = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    let rows = |text: &str, server: &str| -> f64 {
        let prefix = format!("powa_sentinel_rows_read_total{{server=\"lab5/{server}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut last = String::new();
    let mut seen = false;
    while std::time::Instant::now() < deadline {
        if let Some(text) = metrics() {
            if rows(&text, "local") > 0.0 && rows(&text, "remote5") > 0.0 {
                seen = true;
                break;
            }
            last = text;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen,
        "rows read never counted for both servers:\n{}\nlogs:\n{}",
        last.lines()
            .filter(|l| l.contains("rows_read") || l.contains("cycles_total"))
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
}

/// With no `monitored` table, a PoWA 5 remote server's index advice names its table and
/// columns and is checked with hypopg: the sentinel reaches remote5 with the connection
/// details PoWA keeps in `powa_servers`, as powa-web does.
#[test]
fn remote_index_advice_names_the_table_without_configuration_on_powa_5() {
    let lab = lab();
    let t = format!("t_mir5_{}", unique());
    selective_filter_workload("remote5", "remote5", &t);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "warning"
format = "json"

[analysis]
window = "10min"

[repositories.lab5]
dsn = "{repo}"
servers = ["remote5"]

[channels.console]
type = "console"
"#,
            repo = lab.repo5_dsn()
        ),
    )
    .unwrap();
    let (insights, stderr) = once_json(&config);
    let advice = validated_advice(&insights, &t, &stderr);
    assert_eq!(advice["server"], "remote5");
    assert!(
        advice["text"]
            .as_str()
            .unwrap()
            .contains(&format!("CREATE INDEX CONCURRENTLY ON public.{t}")),
        "{advice:#?}"
    );
    assert!(
        !stderr.contains(lab.var("POWA_LAB_COLLECTOR_PASSWORD")),
        "the powa_servers password leaked"
    );
    lab.psql("remote5", "app", &format!("DROP TABLE {t}"));
}
