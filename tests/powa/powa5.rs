//! What is particular to PoWA 5 (on PostgreSQL 17), on the lab's real `repo5` (local mode
//! and the repository of `remote5`, which trixie's powa-collector 1.3 snapshots):
//! pg_qualstats on the local server, which PoWA 5 never resets; role names of a remote
//! server from PoWA's catalog snapshots; the server's pg_stat_kcache totals; what the live
//! window reports as read; and the index advisor with hypopg on PostgreSQL 17, end to end.
//! The reads every version shares run against PoWA 5 in `read`, `fast_read` and `live`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use powa_sentinel::powa::live::LiveWindow;
use powa_sentinel::powa::qualstats::{read_quals, QualsWindow};
use powa_sentinel::powa::Repository;
use sentinel_actors::Window;
use serde_json::Value;

use crate::support::cli::{about, index_advice, once_advised, once_json, run, Settings};
use crate::support::daemon::Proc;
use crate::support::repo::{repository, server, since};
use crate::support::workload::{batches, between_snapshots, reader_role, selective_filter};
use crate::support::{exclusive, lab, unique};

async fn repo5() -> Repository {
    repository("lab5", &lab().repo5_dsn()).await
}

/// Executions of the test's filter on `t`, summed over its quals.
fn executions(q: &QualsWindow, t: &str) -> f64 {
    q.quals
        .iter()
        .filter(|x| q.text(&x.key).is_some_and(|s| s.contains(t)))
        .map(|x| x.occurrences)
        .sum()
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

/// The one index suggestion for `t`, validated with hypopg, on (customer_id, status).
fn validated_advice<'a>(insights: &'a [Value], t: &str, stderr: &str) -> &'a Value {
    let mine = index_advice(insights, &format!("public.{t}"));
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
    let _turn = crate::support::turn(module_path!());
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
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let (t, start) = batches("remote5", "remote5", "t_q5r", 20000, "k = 7", &[5, 4]);
    let repo = repo5().await;
    let w = quals(&repo, "remote5", start).await;
    assert!(!w.cumulative);
    assert_eq!(executions(&w, &t), 9.0);
    assert!(
        w.rows > 0 && w.rows >= w.quals.len() as u64,
        "the counters' rows are counted as read"
    );
    lab.psql("remote5", "app", &format!("DROP TABLE {t}"));
}

/// PoWA 5 keeps a remote server's roles in `powa_catalog_roles`: users by name, not oid.
#[actix_rt::test]
async fn remote_users_are_named_from_the_catalog_snapshots() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let (t, start) = batches("remote5", "remote5", "t_role5", 100, "id > 3", &[3]);
    let w = since(&repo5().await, "remote5", start).await;
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
    let _turn = crate::support::turn(module_path!());
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
    let w = since(&repo5().await, "local", start).await;
    let other = w.kcache_unmatched.expect("pg_stat_kcache is collected");
    assert!(
        other.cpu_time_ms() > 100.0,
        "the three md5 scans used CPU outside any statement row: {other:?}"
    );
}

/// The live window says how many rows it read, cycle by cycle: the start-up read (the
/// window and its baseline), nothing in an idle cycle though it carries the baseline, and
/// in the next cycle exactly the rows PoWA added since (`powa_sentinel_rows_read_total`
/// and `/status` were always 0 in `run`, then re-added the baseline every cycle).
#[actix_rt::test]
#[allow(clippy::await_holding_lock)]
async fn the_live_window_reports_what_it_read() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    // No snapshot of another test between two cycles: the counts are exact.
    let _guard = exclusive();
    let repo = repo5().await;
    let local = server(&repo, "local").clone();
    // Checkpoints of a day: the baseline is read once, at start-up, whatever the clock.
    let day = chrono::Duration::days(1);
    let mut live = LiveWindow::with_checkpoint("lab5", Arc::new(repo.info.clone()), local, day);
    let start = Utc::now().duration_trunc(day).unwrap() + chrono::Duration::seconds(1);
    let window = |end: DateTime<Utc>| Window { start, end };
    let baseline = [chrono::Duration::minutes(10)];
    let (first, cost) = live
        .cycle(&repo.client, window(Utc::now()), &baseline)
        .await
        .expect("start-up cycle");
    assert!(first.points > 0, "the start-up read read rows");
    assert_eq!(first.points, cost.rows);
    assert_eq!(cost.window_reads, 2, "the window and its baseline");
    assert_eq!(first.baselines.len(), 1);
    let (idle, cost) = live
        .cycle(&repo.client, window(Utc::now()), &baseline)
        .await
        .expect("idle cycle");
    assert!(cost.idle, "no snapshot since");
    assert_eq!(idle.baselines.len(), 1, "the baseline is carried");
    assert_eq!(idle.points, 0, "an idle cycle reads no rows");
    let cursor = idle.last_ts.expect("the window has data");

    lab.repeat("repo5", "app", "SELECT 1", 3);
    lab.snapshot("repo5");
    let added: u64 = lab
        .psql(
            "repo5",
            "powa",
            &format!(
                "SELECT (SELECT count(*) FROM powa_statements_history_current \
                         WHERE srvid = 0 AND (record).ts > '{cursor}') \
                      + (SELECT count(*) FROM powa_kcache_metrics_current \
                         WHERE srvid = 0 AND (metrics).ts > '{cursor}') \
                      + (SELECT count(*) FROM powa_wait_sampling_history_current \
                         WHERE srvid = 0 AND (record).ts > '{cursor}')"
            ),
        )
        .parse()
        .unwrap();
    let (next, cost) = live
        .cycle(&repo.client, window(Utc::now()), &baseline)
        .await
        .expect("incremental cycle");
    assert_eq!(cost.window_reads, 0, "only what PoWA added was read");
    assert!(added > 0);
    assert_eq!(next.points, added, "the new snapshot's rows, and only them");
    assert_eq!(next.points, cost.rows);
}

/// The index advisor on PostgreSQL 17: the suggestion of a selective filter, checked with
/// hypopg, through `once --output json` as a user runs it.
#[test]
fn once_suggests_and_validates_an_index_on_powa_5() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_mi5_{}", unique());
    let (_role, dsn) = reader_role("repo5", "app");
    let password = dsn.split("password=").nth(1).unwrap().to_string();
    selective_filter("repo5", "repo5", &t, 30);
    let (insights, stderr) = once_advised("lab5", &lab.repo5_dsn(), &dsn);
    validated_advice(&insights, &t, &stderr);
    assert!(!stderr.contains(&password), "password leaked");
    lab.psql("repo5", "app", &format!("DROP TABLE {t}"));
}

/// `once --output json` prints what the channels are told: with a state dir, a second run
/// over the same problem prints nothing for it (README, `--output json`).
#[test]
fn once_json_with_a_state_dir_prints_what_changed() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_json5_{}", unique());
    between_snapshots(
        "repo5",
        &format!("CREATE TABLE {t} AS SELECT g AS id FROM generate_series(1, 200000) g"),
        &format!("SELECT count(*) FROM {t} a WHERE md5(a.id::text) LIKE 'ab%'"),
        20,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::log("warning")
        .window("1h")
        .state(&dir.path().join("state"))
        .repository("lab5", &lab.repo5_dsn())
        .toml("servers = [\"local\"]")
        .toml("[analyzers.slow_queries]\ntop_n = 50\nmin_total_time = \"1ms\"")
        .console()
        .write(dir.path());
    let run = || {
        let (insights, _) = once_json(&config);
        about(&insights, &t)
            .into_iter()
            .cloned()
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
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::default()
        .repository("lab5", &lab.repo5_dsn())
        .console()
        .write(dir.path());
    let out = run(&["check"], &config);
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
    // Index changes from PoWA itself: the catalog of remote servers only.
    assert!(
        text.contains(
            "index changes from PoWA: none from PoWA (PoWA 5 keeps no catalog of its local server)"
        ),
        "{text}"
    );
    assert!(
        text.contains("index changes from PoWA: PoWA 5 catalog snapshots (")
            && text.contains(
                "relation statistics (pg_stat_all_indexes, pg_stat_all_tables): when an index was last seen"
            ),
        "{text}"
    );
}

/// `run` on PoWA 5: both servers are collected, and what they read shows in
/// `powa_sentinel_rows_read_total` (always 0 in `run` before, on every version).
#[test]
fn the_daemon_collects_powa_5_and_counts_what_it_reads() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let repo = lab.repo5_dsn();
    let mut d = Proc::start(
        "run",
        |port, _| {
            Settings::log("warning")
                .toml(&format!(
                    r#"[schedule]
cron = "0 0 0 1 1 *"
[collection]
interval = "1s"
min_interval = "1s"
max_jitter = "200ms"
[analysis]
window = "2min"
[http]
listen = "127.0.0.1:{port}""#
                ))
                .repository("lab5", &repo)
                .console()
                .into_text()
        },
        &[],
    );
    let rows = |text: &str, server: &str| -> f64 {
        let prefix = format!("powa_sentinel_rows_read_total{{server=\"lab5/{server}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    let mut seen = false;
    while std::time::Instant::now() < deadline {
        if let Some(text) = d.metrics() {
            if rows(&text, "local") > 0.0 && rows(&text, "remote5") > 0.0 {
                seen = true;
                break;
            }
            last = text;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    d.kill();
    assert!(
        seen,
        "rows read never counted for both servers:\n{}\nlogs:\n{}",
        last.lines()
            .filter(|l| l.contains("rows_read") || l.contains("cycles_total"))
            .collect::<Vec<_>>()
            .join("\n"),
        d.logs()
    );
}

/// With no `monitored` table, a PoWA 5 remote server's index advice names its table and
/// columns and is checked with hypopg: the sentinel reaches remote5 with the connection
/// details PoWA keeps in `powa_servers`, as powa-web does.
#[test]
fn remote_index_advice_names_the_table_without_configuration_on_powa_5() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_mir5_{}", unique());
    selective_filter("remote5", "remote5", &t, 30);
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::once("10min")
        .repository("lab5", &lab.repo5_dsn())
        .toml("servers = [\"remote5\"]")
        .console()
        .write(dir.path());
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
