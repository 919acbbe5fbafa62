//! "What changed?" on the real lab: pg_track_settings snapshotted by PoWA 4.1.4 (the
//! local server and remote1; remote2 has none), a per-database `work_mem` lowered between
//! two workload phases, a restart of remote1. The temp spill names its cause, the control
//! query stays silent, the restart is in remote1's timeline, and a server without the
//! extension gets the note and what to do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use powa_sentinel::analyze::{
    RegressionAnalyzer, RegressionSettings, SettingsChangeAnalyzer, SettingsChangeSettings,
    WorkloadChangeAnalyzer, WorkloadChangeSettings,
};
use powa_sentinel::powa::changes::{Availability, ChangeReader, What};
use powa_sentinel::powa::indexes::IndexTracker;
use powa_sentinel::powa::monitored::MonitoredSettings;
use powa_sentinel::powa::reader::read_baseline;
use powa_sentinel::powa::resets::ResetReader;
use sentinel_actors::{Notification, NotifyReason, Window};

use crate::support::repo::{lab4, read, server};
use crate::support::{exclusive, lab, unique};

#[actix_rt::test]
async fn a_lowered_work_mem_is_named_as_the_cause_of_the_temp_spill() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let db = format!("etl_{}", unique());
    let t = "events";
    // 300,000 integers sorted: about 10 MB, in memory at 64MB, on disk at 64kB.
    let sort = format!("SELECT k FROM {t} ORDER BY k OFFSET 299990");
    let control = format!("SELECT count(*) FROM {t} WHERE id < 100");
    // A range read through an index that is dropped between the phases: a regression.
    let range = "SELECT count(*) FROM orders WHERE created_at BETWEEN '2026-01-01 10:00' AND '2026-01-01 10:01'";
    let repo = lab4().await;
    let m = MonitoredSettings::from_dsn(lab.var("POWA_LAB_REPO_ADMIN_DSN"));
    let mut tracker = IndexTracker::default();
    let (t0, t1) = {
        let _guard = exclusive();
        lab.psql("repo", "postgres", &format!("CREATE DATABASE {db}"));
        lab.psql(
            "repo",
            &db,
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, (g::bigint * 7919) % 300000 AS k \
                 FROM generate_series(1, 300000) g; ALTER TABLE {t} ADD PRIMARY KEY (id); ANALYZE {t}; \
                 CREATE TABLE orders AS SELECT g AS id, timestamptz '2026-01-01' + g * interval '1 second' AS created_at \
                 FROM generate_series(1, 1000000) g; CREATE INDEX orders_created_at_idx ON orders (created_at); ANALYZE orders"
            ),
        );
        lab.psql(
            "repo",
            "postgres",
            &format!("ALTER DATABASE {db} SET work_mem = '64MB'"),
        );
        lab.snapshot("repo");
        let t0 = Utc::now();
        lab.repeat("repo", &db, &sort, 60);
        lab.repeat("repo", &db, &control, 60);
        lab.repeat("repo", &db, range, 60);
        lab.snapshot("repo");
        (t0, Utc::now())
    };
    // The collector's look at the indexes after the first phase.
    let a = read(&repo, "local", Window { start: t0, end: t1 }).await;
    tracker
        .cycle(&m, "lab/local", &a, &repo.info.database, t1)
        .await
        .unwrap();
    let t2 = {
        let _guard = exclusive();
        let started = std::time::Instant::now();
        lab.psql("repo", &db, "DROP INDEX orders_created_at_idx");
        lab.psql(
            "repo",
            "postgres",
            &format!("ALTER DATABASE {db} SET work_mem = '64kB'"),
        );
        lab.repeat("repo", &db, &sort, 60);
        lab.repeat("repo", &db, &control, 60);
        lab.repeat("repo", &db, range, 60);
        if let Some(rest) =
            ((t1 - t0).to_std().unwrap() + Duration::from_secs(1)).checked_sub(started.elapsed())
        {
            std::thread::sleep(rest);
        }
        lab.snapshot("repo");
        Utc::now()
    };
    let len = t2 - t1;
    assert!(t1 - len <= t0);

    let local = server(&repo, "local");
    let mut current = read(&repo, "local", Window { start: t1, end: t2 }).await;
    tracker
        .cycle(&m, "lab/local", &current, &repo.info.database, t2)
        .await
        .unwrap();
    let baseline = read_baseline(
        &repo.client,
        &repo.name,
        &repo.info,
        local,
        Window {
            start: t1 - len,
            end: t1,
        },
    )
    .await
    .unwrap();
    current.baselines = vec![baseline];
    let timeline = ChangeReader::default()
        .cycle(&repo.client, &repo.info, local, t1 - len, &HashMap::new())
        .await
        .unwrap();
    assert_eq!(timeline.availability, Availability::Available);
    let lowered = timeline
        .events
        .iter()
        .find(|e| {
            matches!(&e.what, What::Setting { name, to, database, .. }
                if name == "work_mem" && to.as_deref() == Some("64kB")
                    && database.as_deref() == Some(db.as_str()))
        })
        .unwrap_or_else(|| panic!("the ALTER DATABASE is in the timeline: {timeline:#?}"));
    assert!(
        lowered.at > t1 && lowered.at <= t2,
        "{lowered:?} in ({t1}, {t2}]"
    );
    current.changes = Some(Arc::new(timeline.with_indexes(tracker.events(t1 - len))));

    let mut found =
        WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default()).analyze_window(&current);
    found.extend(RegressionAnalyzer::new(RegressionSettings::default()).analyze_window(&current));
    let ours: Vec<_> = found
        .iter()
        .filter(|i| i.label("database") == Some(db.as_str()))
        .collect();
    assert!(
        ours.iter().all(|i| i
            .text
            .as_deref()
            .is_some_and(|x| x.contains("ORDER BY k") || x.contains("FROM orders"))),
        "the control query stays silent: {ours:#?}"
    );
    // The regression names the dropped index, and building it again is the fix.
    let slower = ours
        .iter()
        .find(|i| {
            i.kind == "regression" && i.text.as_deref().is_some_and(|x| x.contains("FROM orders"))
        })
        .unwrap_or_else(|| panic!("the range read regressed: {found:#?}"));
    let gone = slower
        .changes
        .iter()
        .find(|c| c.kind == "index_dropped" && c.evidence.is_some())
        .unwrap_or_else(|| panic!("the dropped index as the cause: {slower:#?}"));
    assert!(
        gone.what
            .starts_with("index public.orders_created_at_idx on public.orders, there at "),
        "{gone:?}"
    );
    assert_eq!(
        gone.undo.as_deref(),
        Some("CREATE INDEX CONCURRENTLY orders_created_at_idx ON public.orders USING btree (created_at);")
    );
    // The work_mem change is no cause of the range read's slowdown.
    assert!(
        slower
            .changes
            .iter()
            .all(|c| c.kind == "index_dropped" || c.evidence.is_none()),
        "{slower:#?}"
    );
    let spill = ours
        .iter()
        .find(|i| i.rule == "workload_change.temp_up")
        .unwrap_or_else(|| panic!("a temp spill finding for the sort: {found:#?}"));
    let cause = spill
        .changes
        .iter()
        .find(|c| c.evidence.is_some())
        .unwrap_or_else(|| panic!("a likely cause: {spill:#?}"));
    assert_eq!(cause.what, format!("work_mem 64MB → 64kB on database {db}"));
    assert!(
        cause
            .evidence
            .as_deref()
            .unwrap()
            .starts_with("temp blocks written per call 0 → "),
        "{cause:?}"
    );

    // What the DBA reads.
    let n = Notification {
        id: 1,
        channel: "console".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(vec![(*spill).clone()]),
        created_at: t2,
        mentions: Default::default(),
    };
    let text = powa_sentinel::render::plain_report(&n);
    assert!(
        text.contains(&format!("Cause: work_mem 64MB → 64kB on database {db} at ")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Fix: ALTER DATABASE {db} SET work_mem = '64MB'; (undoes the change at "
        )),
        "{text}"
    );

    // The same change, told once as a settings change of the server (work_mem is a
    // memory setting), within a window that holds it.
    let events =
        SettingsChangeAnalyzer::new(SettingsChangeSettings::default()).analyze_window(&current);
    assert!(
        events.iter().any(|i| i.title.contains("work_mem")
            && i.changes.iter().any(|c| c.what.contains(&db))),
        "{events:#?}"
    );
    lab.psql("repo", "postgres", &format!("DROP DATABASE {db}"));
}

#[actix_rt::test]
async fn a_restart_is_in_the_timeline_and_a_server_without_history_says_what_to_do() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let repo = lab4().await;
    let before = Utc::now() - chrono::Duration::seconds(1);
    {
        let _guard = exclusive();
        lab.pg_ctl("remote1", "stop");
        lab.pg_ctl("remote1", "start");
        lab.snapshot("remote");
    }
    let remote1 = server(&repo, "remote1");
    let timeline = ChangeReader::default()
        .cycle(&repo.client, &repo.info, remote1, before, &HashMap::new())
        .await
        .unwrap();
    assert!(
        timeline
            .events
            .iter()
            .any(|e| e.what == What::Restart && e.at >= before),
        "remote1's restart after {before}: {timeline:#?}"
    );

    // A statistics reset is known without pg_track_settings: PoWA's own totals fall.
    let remote2 = server(&repo, "remote2");
    let t = format!("t_reset_{}", unique());
    {
        let _guard = exclusive();
        lab.psql("remote2", "app", &format!("CREATE TABLE {t} (id int)"));
        lab.repeat("remote2", "app", &format!("SELECT count(*) FROM {t}"), 120);
        lab.snapshot("remote");
        lab.psql(
            "remote2",
            "powa",
            "SELECT pg_stat_statements_reset(0::oid, \
             (SELECT oid FROM pg_database WHERE datname = 'app'), 0::bigint)",
        );
        lab.snapshot("remote");
        lab.psql("remote2", "app", &format!("DROP TABLE {t}"));
    }
    let mut resets = ResetReader::default();
    resets
        .cycle(&repo.client, &repo.info, remote2, before)
        .await
        .unwrap();
    let told = resets.events(before);
    assert!(
        told.iter().any(|e| e.what
            == What::StatsReset {
                databases: vec!["app".into()]
            }),
        "the reset of app on remote2: {told:#?}"
    );

    let none = ChangeReader::default()
        .cycle(&repo.client, &repo.info, remote2, before, &HashMap::new())
        .await
        .unwrap();
    let Availability::Missing(why) = &none.availability else {
        panic!("remote2 has no pg_track_settings: {none:#?}");
    };
    assert!(
        why.contains("powa_activate_extension(2, 'pg_track_settings')"),
        "{why}"
    );
}

/// The index tracker's shell on the real server: the first look records, a dropped index
/// is found at the next one with its definition, and a persisted tracker carries the
/// look over to the next run (as `once` does).
#[actix_rt::test]
async fn a_dropped_index_is_found_at_the_next_look_even_by_the_next_run() {
    use powa_sentinel::powa::indexes::state_file;

    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_idx_{}", unique());
    let (start, end) = {
        let _guard = exclusive();
        lab.psql(
            "repo",
            "app",
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, g % 97 AS k FROM generate_series(1, 1000) g; \
                 CREATE INDEX {t}_k_idx ON {t} (k)"
            ),
        );
        lab.snapshot("repo");
        let start = Utc::now();
        lab.repeat(
            "repo",
            "app",
            &format!("SELECT count(*) FROM {t} WHERE k = 3"),
            5,
        );
        lab.snapshot("repo");
        (start, Utc::now())
    };
    let repo = lab4().await;
    let w = read(&repo, "local", Window { start, end }).await;
    let m = MonitoredSettings::from_dsn(lab.var("POWA_LAB_REPO_ADMIN_DSN"));
    let dir = tempfile::tempdir().unwrap();
    let file = state_file(dir.path(), "lab", server(&repo, "local"));

    let mut first = IndexTracker::persisted(file.clone());
    first
        .cycle(&m, "lab/local", &w, &repo.info.database, end)
        .await
        .unwrap();
    assert!(
        first.events(start).is_empty(),
        "the first look only records"
    );

    lab.psql("repo", "app", &format!("DROP INDEX {t}_k_idx"));
    let later = end + chrono::Duration::minutes(5);
    let mut next_run = IndexTracker::persisted(file);
    next_run
        .cycle(&m, "lab/local", &w, &repo.info.database, later)
        .await
        .unwrap();
    let events = next_run.events(start);
    let dropped = events
        .iter()
        .find_map(|e| match &e.what {
            What::IndexDropped {
                index,
                def,
                database,
                seen_until,
                ..
            } if index == &format!("public.{t}_k_idx") => Some((def, database, *seen_until)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the dropped index: {events:#?}"));
    assert_eq!(
        dropped.0,
        &format!("CREATE INDEX {t}_k_idx ON public.{t} USING btree (k)")
    );
    assert_eq!(dropped.1, "app");
    assert_eq!(dropped.2, end);
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}

/// Asks powa-collector to refresh remote5's catalog of `app` over its NOTIFY protocol
/// (as powa-web's "refresh catalog" does; it is otherwise refreshed once a year) and
/// waits until it did. The refresh is stamped with its snapshot's start, which may
/// precede the request: wait for a new stamp, not for one after now.
fn refresh_catalog(lab: &crate::support::Lab) {
    let srvid = lab.var("POWA_LAB_REMOTE5_SRVID");
    let stamp = format!(
        "SELECT coalesce(last_refresh::text, '') FROM powa_catalog_databases \
         WHERE srvid = {srvid} AND datname = 'app'"
    );
    let old = lab.psql("repo5", "powa", &stamp);
    // The collector checks the sender's role in pg_stat_activity: the session must
    // outlive the NOTIFY (delivered at COMMIT), else the request is ignored.
    lab.psql(
        "repo5",
        "powa",
        &format!(
            "NOTIFY powa_collector, 'REFRESH_DB_CAT - {srvid} 1 app'; COMMIT; SELECT pg_sleep(2)"
        ),
    );
    for _ in 0..120 {
        if lab.psql("repo5", "powa", &stamp) != old {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("powa-collector did not refresh remote5's catalog of app (last at {old})");
}

/// PoWA 5 with no connection to the server: two indexes of remote5 dropped between two
/// workload phases are named from the repository's catalog snapshots (refreshed by
/// powa-collector), dated by PoWA's index statistics; each range read's regression
/// names its dropped index with the table's seq scans up and index scans down, and the
/// report lists both drops in its "Changes" section in every dialect.
// The lab lock is held for the whole test: another test's reset or restart during the two
// phases would hide the regression (each test has its own runtime thread, so holding it
// across awaits cannot deadlock).
#[allow(clippy::await_holding_lock)]
#[actix_rt::test]
async fn on_powa_5_the_catalog_names_the_dropped_indexes_and_the_scans_moved() {
    use powa_sentinel::powa::catalog;
    use powa_sentinel::render::{self, Lang, RenderOptions, Style};

    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let _guard = exclusive();
    let tag = unique();
    let tables = [format!("ord_a_{tag}"), format!("ord_b_{tag}")];
    let range = |t: &str| {
        format!(
            "SELECT count(*) FROM {t} WHERE created_at BETWEEN '2026-01-01 10:00' AND '2026-01-01 10:01'"
        )
    };
    // Each phase lasts this long at least: several of remote5's 5 s snapshots.
    let phase = Duration::from_secs(25);
    // Calls per table and phase: without its index a call scans 300,000 rows (~15–20 ms),
    // so the phase's total time clears the regression analyzer's 1 s floor
    // (`min_total_time`) with room, on a fast machine too (60 calls did not, always).
    const CALLS: usize = 200;
    let repo = crate::support::repo::repository("lab5", &lab.repo5_dsn()).await;
    let srvid = server(&repo, "remote5").srvid;
    let mut tracker = IndexTracker::default();
    for t in &tables {
        lab.psql(
            "remote5",
            "app",
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, timestamptz '2026-01-01' + g * interval '1 second' AS created_at \
                 FROM generate_series(1, 300000) g; CREATE INDEX {t}_created_at_idx ON {t} (created_at); ANALYZE {t}"
            ),
        );
    }
    refresh_catalog(lab);
    let t0 = lab.mark("remote5");
    let started = std::time::Instant::now();
    for t in &tables {
        lab.repeat("remote5", "app", &range(t), CALLS);
    }
    std::thread::sleep(phase.saturating_sub(started.elapsed()));
    let t1 = lab.mark("remote5");
    // The first look records what the catalog has.
    let cost = std::time::Instant::now();
    let refreshed = tracker
        .catalog_cycle(&repo.client, &repo.info, srvid)
        .await
        .unwrap();
    eprintln!("catalog source, first look: {:?}", cost.elapsed());
    assert!(refreshed.contains_key("app"), "{refreshed:?}");
    assert!(tracker.events(t0).is_empty(), "the first look only records");

    let started = std::time::Instant::now();
    for t in &tables {
        lab.psql("remote5", "app", &format!("DROP INDEX {t}_created_at_idx"));
        lab.repeat("remote5", "app", &range(t), CALLS);
    }
    std::thread::sleep(
        ((t1 - t0).to_std().unwrap() + Duration::from_secs(1)).saturating_sub(started.elapsed()),
    );
    lab.snapshot("remote5");
    let t2 = Utc::now();
    let len = t2 - t1;
    refresh_catalog(lab);
    let cost = std::time::Instant::now();
    tracker
        .catalog_cycle(&repo.client, &repo.info, srvid)
        .await
        .unwrap();
    eprintln!(
        "catalog source, a look at a new refresh: {:?}",
        cost.elapsed()
    );
    let cost = std::time::Instant::now();
    let again = tracker
        .catalog_cycle(&repo.client, &repo.info, srvid)
        .await
        .unwrap();
    eprintln!(
        "catalog source, a cycle with no new refresh: {:?}",
        cost.elapsed()
    );
    assert_eq!(again.len(), refreshed.len());
    let events = tracker.events(t1 - len);
    for t in &tables {
        let (at, seen_until, def) = events
            .iter()
            .find_map(|e| match &e.what {
                What::IndexDropped {
                    index,
                    table,
                    database,
                    seen_until,
                    def,
                } if *index == format!("public.{t}_created_at_idx") => {
                    assert_eq!(table, &format!("public.{t}"));
                    assert_eq!(database, "app");
                    Some((e.at, *seen_until, def.clone()))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("the dropped index of {t}: {events:#?}"));
        // Dated by PoWA's statistics, not by the catalog refreshes.
        assert!(
            seen_until >= t0 && seen_until < t2,
            "{seen_until} in [{t0}, {t2})"
        );
        assert!(at > seen_until && at <= t2, "{at} in ({seen_until}, {t2}]");
        assert!(def.is_empty(), "the catalog has no definition");
    }

    let mut current = read(&repo, "remote5", Window { start: t1, end: t2 }).await;
    let baseline = read_baseline(
        &repo.client,
        &repo.name,
        &repo.info,
        server(&repo, "remote5"),
        Window {
            start: t1 - len,
            end: t1,
        },
    )
    .await
    .unwrap();
    current.baselines = vec![baseline];
    let timeline = ChangeReader::default()
        .cycle(
            &repo.client,
            &repo.info,
            server(&repo, "remote5"),
            t1 - len,
            &HashMap::new(),
        )
        .await
        .unwrap();
    assert!(!timeline.is_available(), "remote5 has no pg_track_settings");
    let mut timeline = timeline.with_indexes(events);
    let cost = std::time::Instant::now();
    timeline.scans = catalog::scans_of(
        &repo.client,
        &repo.info,
        srvid,
        &timeline,
        (t1 - len, t1),
        (t1, t2),
    )
    .await
    .unwrap();
    eprintln!(
        "relation statistics, {} table(s) over two windows: {:?}",
        timeline.scans.len(),
        cost.elapsed()
    );
    assert_eq!(timeline.scans.len(), 2, "{:#?}", timeline.scans);
    current.changes = Some(Arc::new(timeline));
    let found = RegressionAnalyzer::new(RegressionSettings::default()).analyze_window(&current);
    let mut told = Vec::new();
    for t in &tables {
        let slower = found
            .iter()
            .find(|i| i.text.as_deref().is_some_and(|x| x.contains(t.as_str())))
            .unwrap_or_else(|| panic!("the range read of {t} regressed: {found:#?}"));
        let gone = slower
            .changes
            .iter()
            .find(|c| c.kind == "index_dropped" && c.evidence.is_some())
            .unwrap_or_else(|| panic!("the dropped index as the cause: {slower:#?}"));
        let evidence = gone.evidence.as_deref().unwrap();
        assert!(
            evidence.contains(&format!("seq scans on public.{t} 0 → ")),
            "{evidence}"
        );
        assert!(evidence.contains(" per hour, index scans "), "{evidence}");
        assert!(
            evidence.ends_with(" → 0"),
            "no index scans after: {evidence}"
        );
        assert_eq!(gone.undo, None, "no definition, no statement: {gone:?}");
        told.push(slower.clone());
    }

    // The report: one entry per regression, and the section with both drops.
    let n = Notification {
        id: 1,
        channel: "console".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(told),
        created_at: t2,
        mentions: Default::default(),
    };
    for lang in [Lang::En, Lang::Zh] {
        let opts = RenderOptions {
            lang,
            ..RenderOptions::default()
        };
        let heading = match lang {
            Lang::En => "Changes",
            Lang::Zh => "变更记录",
        };
        let mut all = vec![
            ("console", render::plain_report_with(&n, &opts)),
            ("html", render::html_report(&n, &opts)),
        ];
        for (name, style, budget) in [
            ("markdown", Style::Markdown, render::WECOM_MARKDOWN_BUDGET),
            (
                "markdown_v2",
                Style::MarkdownV2,
                render::WECOM_MARKDOWN_BUDGET,
            ),
            ("text", Style::Text, render::WECOM_TEXT_BUDGET),
        ] {
            let parts = render::render(&n, style, budget, &opts);
            assert!(parts.iter().all(|p| p.len() <= budget), "{name}");
            all.push((name, parts.join("\n")));
        }
        for (name, text) in all {
            let at = text
                .rfind(heading)
                .unwrap_or_else(|| panic!("{name} {lang:?}: no section:\n{text}"));
            let section = &text[at..];
            assert!(section.contains("remote5: "), "{name}: {section}");
            for t in &tables {
                // Markdown defuses `_`: look for the escaped-or-not name's distinctive tail.
                let tail = &t[t.len() - 8..];
                assert!(
                    section.contains(tail),
                    "{name} {lang:?}: {t} in the section:\n{section}"
                );
            }
        }
    }
    for t in &tables {
        lab.psql("remote5", "app", &format!("DROP TABLE {t}"));
    }
}

/// What the change sources cost per cycle on the lab, measured: the first cycle of each
/// (reading the baseline's reach, a day here) and a steady one (only what PoWA added
/// since), in milliseconds and in rows the repository returned (from its own
/// pg_stat_statements, as the read-only role). A steady cycle stays well under the
/// bound; `--nocapture` prints the figures.
#[actix_rt::test]
async fn the_change_sources_cost_little_per_cycle() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let ro = lab.var("POWA_LAB_RO_USER").to_string();
    // Calls, rows and ms of the read-only role's statements that match `re`.
    let stats = |cluster: &str, re: &str| -> (f64, f64, f64) {
        let out = lab.psql(
            cluster,
            "powa",
            &format!(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0), \
                        coalesce(sum(total_exec_time), 0) \
                   FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
                  WHERE r.rolname = '{ro}' AND s.query ~ '{re}'"
            ),
        );
        let v: Vec<f64> = out.split('|').map(|x| x.parse().unwrap_or(0.0)).collect();
        (v[0], v[1], v[2])
    };
    let since = Utc::now() - chrono::Duration::days(1);
    let repo = lab4().await;
    let remote1 = server(&repo, "remote1");
    let mut changes = ChangeReader::default();
    let mut resets = ResetReader::default();
    let mut report = Vec::new();
    for pass in ["first", "steady"] {
        let before = stats("repo", "pg_track_settings|pg_reboot");
        let t = std::time::Instant::now();
        let tl = changes
            .cycle(&repo.client, &repo.info, remote1, since, &HashMap::new())
            .await
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let after = stats("repo", "pg_track_settings|pg_reboot");
        report.push(format!(
            "pg_track_settings (PoWA 4, remote1), {pass}: {ms:.1} ms, {} rows in {} queries, {} events kept",
            after.1 - before.1,
            after.0 - before.0,
            tl.events.len()
        ));
        if pass == "steady" {
            assert!(ms < 250.0, "{report:#?}");
        }
        let t = std::time::Instant::now();
        resets
            .cycle(&repo.client, &repo.info, remote1, since)
            .await
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        report.push(format!(
            "statistics resets (PoWA 4, remote1), {pass}: {ms:.1} ms"
        ));
        if pass == "steady" {
            assert!(ms < 250.0, "{report:#?}");
        }
    }
    let repo5 = crate::support::repo::repository("lab5", &lab.repo5_dsn()).await;
    let srvid = server(&repo5, "remote5").srvid;
    let mut tracker = IndexTracker::default();
    for pass in ["first", "steady"] {
        let before = stats("repo5", "powa_catalog");
        let t = std::time::Instant::now();
        let looked = tracker
            .catalog_cycle(&repo5.client, &repo5.info, srvid)
            .await
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let after = stats("repo5", "powa_catalog");
        report.push(format!(
            "PoWA 5 catalog (remote5, {} databases), {pass}: {ms:.1} ms, {} rows in {} queries",
            looked.len(),
            after.1 - before.1,
            after.0 - before.0
        ));
        if pass == "steady" {
            assert!(ms < 250.0, "{report:#?}");
        }
    }
    eprintln!("{}", report.join("\n"));
}
