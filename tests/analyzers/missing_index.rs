//! The missing-index advisor on a real PoWA 4.1.4 repository (and 3.2.0 for reading):
//! pg_qualstats quals read as the SELECT-only role, names and existing indexes read from
//! the monitored database, candidates checked with hypopg in a read-only session.

use chrono::{DateTime, Utc};
use powa_sentinel::analyze::{MissingIndexAnalyzer, MissingIndexSettings};
use powa_sentinel::powa::qualstats::{read_quals, QualStats, QualsWindow};
use sentinel_actors::{Insight, Window};

use crate::support::cli::{index_advice, once_advised};
use crate::support::repo::{lab4, read, repository, server, window_with_quals};
use crate::support::workload::{around, lookup, orders, reader_role};
use crate::support::{lab, unique};

/// A 300k-row table queried with a selective filter on unindexed columns (as the lab's
/// `orders` workload), plus an indexed lookup and a small table: only the first needs an
/// index. Returns the table name and the window holding the workload.
fn workload(cluster: &str, snapshot: &str) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let lab = lab();
    let t = format!("t_mi_{}", unique());
    let setup = || {
        orders(cluster, "app", &t);
        lab.psql(
            cluster,
            "app",
            &format!(
                "CREATE TABLE {t}_small AS SELECT g AS id, g % 7 AS kind FROM generate_series(1, 300) g; \
                 ANALYZE {t}_small"
            ),
        );
    };
    let (start, end) = around(snapshot, setup, || {
        lab.repeat(cluster, "app", &lookup(&t), 30);
        lab.repeat(
            cluster,
            "app",
            &format!("SELECT amount FROM {t} WHERE id = 77"),
            30,
        );
        lab.repeat(
            cluster,
            "app",
            &format!("SELECT count(*) FROM {t}_small WHERE kind = 3"),
            30,
        );
        if cluster == "repo" {
            lab.repeat(
                cluster,
                "quiet",
                "SELECT count(*) FROM pg_class WHERE relname = 'nothing'",
                30,
            );
        }
    });
    (t, start, end)
}

/// Drops the tables of [`workload`].
fn drop_workload(cluster: &str, t: &str) {
    lab().psql(
        cluster,
        "app",
        &format!("DROP TABLE {t}; DROP TABLE {t}_small"),
    );
}

/// The qual of the selective filter on `t`.
fn filter_qual<'a>(quals: &'a QualsWindow, t: &str) -> &'a QualStats {
    quals
        .quals
        .iter()
        .find(|q| {
            quals
                .text(&q.key)
                .is_some_and(|x| x.contains(t) && x.contains("customer_id"))
        })
        .expect("the filter's qual")
}

fn ours<'a>(insights: &'a [Insight], t: &str) -> Vec<&'a Insight> {
    insights
        .iter()
        .filter(|i| {
            i.label("table")
                .is_some_and(|x| x.ends_with(&format!(".{t}")))
        })
        .collect()
}

#[actix_rt::test]
async fn proposes_and_validates_the_index_of_a_selective_filter() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let (_role, dsn) = reader_role("repo", "app");
    let (t, start, end) = workload("repo", "repo");
    let w = window_with_quals(start, end, Some(&dsn)).await;
    let quals = w.quals.clone().expect("pg_qualstats is collected on local");
    assert!(quals.notes.is_empty(), "{:?}", quals.notes);

    let insights = MissingIndexAnalyzer::new(MissingIndexSettings::default()).analyze_window(&w);
    let mine = ours(&insights, &t);
    assert_eq!(mine.len(), 1, "one suggestion for {t}: {insights:#?}");
    let i = mine[0];
    assert_eq!(i.label("database"), Some("app"));
    assert_eq!(i.label("columns"), Some("customer_id, status"));
    assert_eq!(i.rule, "missing_index.btree_validated");
    let text = i.text.as_deref().unwrap();
    assert!(
        text.contains(&format!(
            "CREATE INDEX CONCURRENTLY ON public.{t} USING btree (customer_id, status);"
        )),
        "{text}"
    );
    assert!(text.contains("customer_id = $1"), "{text}");
    assert_eq!(i.metric("executions"), Some(30.0));
    assert!(i.metric("filter_ratio").unwrap() > 0.99, "{i:#?}");
    let (before, after) = (
        i.metric("cost_before").unwrap(),
        i.metric("cost_after").unwrap(),
    );
    assert!(after < before / 10.0, "hypopg gain: {before} -> {after}");
    assert!(i.metric("estimated_gain").unwrap() > 0.9);
    // The hypothetical index stayed in that session: nothing in the catalog.
    assert_eq!(
        lab.psql(
            "repo",
            "app",
            &format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{t}'")
        ),
        "1"
    );
    // Primary-key lookups and the small table ask for nothing; neither does `quiet`.
    assert!(ours(&insights, &format!("{t}_small")).is_empty());
    assert!(
        insights
            .iter()
            .all(|i| i.label("database") != Some("quiet")),
        "{insights:#?}"
    );
    // Same problem, same fingerprint next cycle.
    let again = MissingIndexAnalyzer::new(MissingIndexSettings::default()).analyze_window(&w);
    assert_eq!(ours(&again, &t)[0].fingerprint, i.fingerprint);

    // A gain threshold above what the index brings silences it.
    let strict = MissingIndexSettings {
        min_gain: 1.0,
        ..Default::default()
    };
    assert!(ours(&MissingIndexAnalyzer::new(strict).analyze_window(&w), &t).is_empty());
    drop_workload("repo", &t);
}

#[actix_rt::test]
async fn without_a_monitored_connection_it_says_what_to_configure() {
    let _turn = crate::support::turn(module_path!());
    let (t, start, end) = workload("repo", "repo");
    let repo = lab4().await;
    let window = Window { start, end };
    let mut w = read(&repo, "local", window).await;
    let quals = read_quals(&repo.client, &repo.info, server(&repo, "local"), window)
        .await
        .unwrap()
        .unwrap();
    // The 300k-row filter: 30 executions, every row evaluated, nearly all discarded.
    let q = filter_qual(&quals, &t);
    assert_eq!(q.occurrences, 30.0);
    assert_eq!(q.execution_count, 30.0 * 300_000.0);
    assert!(q.filter_ratio() > 0.99);
    assert_eq!(q.predicates.len(), 2);
    w.quals = Some(std::sync::Arc::new(quals));
    let insights = MissingIndexAnalyzer::new(MissingIndexSettings::default()).analyze_window(&w);
    let unresolved: Vec<_> = insights
        .iter()
        .filter(|i| {
            i.rule == "missing_index.unresolved"
                && i.text.as_deref().is_some_and(|x| x.contains(&t))
        })
        .collect();
    assert_eq!(unresolved.len(), 1, "{insights:#?}");
    assert!(
        unresolved[0]
            .advice
            .contains("[repositories.lab.monitored.\"local\"]"),
        "{:?}",
        unresolved[0].advice
    );
    drop_workload("repo", &t);
}

/// PoWA 3.2.0 keeps quals the same way, without srvid.
#[actix_rt::test]
async fn reads_quals_from_powa_3() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let (t, start, end) = workload("repo3", "repo3");
    let repo = repository("lab3", &lab.repo3_dsn()).await;
    let quals = read_quals(
        &repo.client,
        &repo.info,
        server(&repo, "local"),
        Window { start, end },
    )
    .await
    .unwrap()
    .expect("pg_qualstats is collected on PoWA 3");
    let q = filter_qual(&quals, &t);
    assert_eq!(q.occurrences, 30.0);
    assert!(q.filter_ratio() > 0.99);
    assert!(q
        .predicates
        .iter()
        .all(|p| quals.operators.get(&p.opno).is_some_and(|o| o.equality)));
    drop_workload("repo3", &t);
}

/// `powa-sentinel once --output json` carries the suggestion, validated.
#[test]
fn once_shows_the_suggestion() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let (_role, dsn) = reader_role("repo", "app");
    let (t, _, _) = workload("repo", "repo");
    let (insights, stderr) = once_advised("lab", &lab.repo_dsn(), &dsn);
    let mine = index_advice(&insights, &format!("public.{t}"));
    assert_eq!(mine.len(), 1, "{insights:#?}");
    assert_eq!(mine[0]["rule"], "missing_index.btree_validated");
    assert!(
        mine[0]["metrics"]["cost_after"].as_f64().unwrap()
            < mine[0]["metrics"]["cost_before"].as_f64().unwrap()
    );
    assert!(
        !stderr.contains(dsn.split("password=").nth(1).unwrap()),
        "password leaked"
    );
    drop_workload("repo", &t);
}
