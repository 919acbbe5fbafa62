//! Advice that fits the numbers, on real PoWA: each expensive query is classified from its
//! own evidence (pg_stat_statements, pg_stat_kcache, pg_qualstats, pg_wait_sampling as
//! PoWA recorded them) and gets the advice of its class only. The workload runs in a
//! database of this test's own on the repository's local server.

use std::sync::OnceLock;

use powa_sentinel::analyze::{
    MissingIndexAnalyzer, MissingIndexSettings, SlowQueryAnalyzer, SlowQuerySettings,
};
use sentinel_actors::Insight;

use crate::support::repo::window_with_quals;
use crate::support::workload::{around, lookup, orders, reader_role};
use crate::support::{lab, unique};

const DB: &str = "names_adv";

/// The test database, with hypopg (for the advisor) and a role that may read it: (role,
/// dsn).
fn database() -> &'static (String, String) {
    static DBROLE: OnceLock<(String, String)> = OnceLock::new();
    DBROLE.get_or_init(|| {
        let lab = lab();
        if lab.psql(
            "repo",
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{DB}'"),
        ) == "0"
        {
            lab.psql("repo", "postgres", &format!("CREATE DATABASE {DB}"));
        }
        lab.psql(
            "repo",
            DB,
            "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS hypopg",
        );
        reader_role("repo", DB)
    })
}

/// The phrase only each class's advice has.
const SIGNATURES: [(&str, &str); 5] = [
    ("lock_wait", "waiting for locks"),
    ("temp_spill", "temporary files"),
    ("selective_filter", "read only the rows it keeps"),
    ("whole_table_aggregate", "aggregates a whole table"),
    ("cpu_bound", "of its execution time is CPU"),
];

fn find<'a>(insights: &'a [Insight], marker: &str) -> &'a Insight {
    let mine: Vec<&Insight> = insights
        .iter()
        .filter(|i| i.text.as_deref().is_some_and(|t| t.contains(marker)))
        .collect();
    assert_eq!(mine.len(), 1, "one finding for {marker}: {insights:#?}");
    mine[0]
}

#[actix_rt::test]
async fn each_class_gets_its_own_advice() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    database();
    let u = unique();
    // pg_stat_statements ignores aliases: each query names a table of this run, so
    // that it is a query series of its own.
    let (sales, cust, lk, one) = (
        format!("sales_{u}"),
        format!("cust_{u}"),
        format!("lk_{u}"),
        format!("one_{u}"),
    );
    let setup = || {
        lab.psql(
            "repo",
            DB,
            &format!(
                "CREATE TABLE {sales} AS SELECT g AS id, g % 20 AS region, (g % 1000)::numeric AS amount \
                 FROM generate_series(1, 300000) g; \
                 CREATE TABLE {lk} (id int PRIMARY KEY, v int); INSERT INTO {lk} VALUES (1, 0); \
                 CREATE TABLE {one} (n int); INSERT INTO {one} VALUES (150000); \
                 ANALYZE {sales}"
            ),
        );
        orders("repo", DB, &cust);
    };
    let (start, end) = around("repo", setup, || {
        // Whole-table aggregate: no WHERE, 300k rows read for 5 returned.
        lab.repeat(
            "repo",
            DB,
            &format!("SELECT region, sum(amount) FROM {sales} GROUP BY 1 ORDER BY 2 DESC LIMIT 5"),
            10,
        );
        // Selective filter: 300k rows read, a handful kept.
        lab.repeat("repo", DB, &lookup(&cust), 30);
        // CPU: hashing in a projection, no table, nothing spilled.
        lab.repeat(
            "repo",
            DB,
            &format!(
                "SELECT count(*) AS cpu FROM (SELECT generate_series(1, (SELECT n FROM {one})) AS g) s \
                 WHERE md5(md5(g::text)) LIKE '0%'"
            ),
            4,
        );
        // Temp spill: a distinct count over more than work_mem holds.
        lab.psql(
            "repo",
            DB,
            &format!(
                "SET work_mem = '1MB'; {q}; {q}; {q}",
                q = format!(
                    "SELECT count(DISTINCT md5(g::text)) AS spill \
                     FROM (SELECT generate_series(1, (SELECT n FROM {one}) + 50000) AS g) s"
                )
            ),
        );
        // Lock wait: another transaction holds the row for a few seconds.
        let mut holder = lab.psql_background(
            "repo",
            DB,
            &format!("BEGIN; UPDATE {lk} SET v = v + 1 WHERE id = 1; SELECT pg_sleep(4); COMMIT"),
        );
        std::thread::sleep(std::time::Duration::from_millis(2500));
        for _ in 0..3 {
            lab.psql(
                "repo",
                DB,
                &format!("UPDATE {lk} SET v = v + 1 WHERE id = 1"),
            );
        }
        assert!(holder.wait().unwrap().success());
    });

    let w = window_with_quals(start, end, None).await;
    // Other tests share the server: room for every query of ours.
    let all = SlowQueryAnalyzer::new(SlowQuerySettings {
        top_n: 10_000,
        min_total_time: std::time::Duration::ZERO,
        ..Default::default()
    })
    .analyze_window(&w);

    for (marker, class) in [
        (sales.as_str(), "whole_table_aggregate"),
        (cust.as_str(), "selective_filter"),
        (
            &format!("AS cpu FROM (SELECT generate_series($1, (SELECT n FROM {one}))"),
            "cpu_bound",
        ),
        (
            &format!("AS spill FROM (SELECT generate_series($1, (SELECT n FROM {one}) + $2)"),
            "temp_spill",
        ),
        (&format!("UPDATE {lk}"), "lock_wait"),
    ] {
        let i = find(&all, marker);
        assert_eq!(i.label("class"), Some(class), "{marker}: {i:#?}");
        for (other, phrase) in SIGNATURES {
            assert_eq!(
                i.advice.contains(phrase),
                other == class,
                "{marker} ({class}) and the phrase of {other}: {}",
                i.advice
            );
        }
        if class != "selective_filter" {
            assert!(!i.advice.contains("index on"), "{marker}: {}", i.advice);
        }
    }
    let agg = find(&all, &sales);
    assert!(agg.metric("blocks_per_call").unwrap() >= 1000.0, "{agg:#?}");
    let lock = find(&all, &format!("UPDATE {lk}"));
    assert_eq!(
        lock.label("top_wait"),
        Some("Lock:transactionid"),
        "{lock:#?}"
    );
    let cpu = find(
        &all,
        &format!("AS cpu FROM (SELECT generate_series($1, (SELECT n FROM {one}))"),
    );
    assert!(cpu.metric("cpu_share").unwrap() >= 0.2, "{cpu:#?}");
    lab.psql(
        "repo",
        DB,
        &format!("DROP TABLE {sales}, {cust}, {lk}, {one}"),
    );
}

/// A typed literal (`interval '30 days'`) is normalised to `interval $n`, which no parser
/// accepts: the hypopg check still runs, and no SQL error reaches the advice.
#[actix_rt::test]
async fn typed_literals_do_not_stop_the_hypopg_check() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let (_role, dsn) = database().clone();
    let t = format!("ev_{}", unique());
    let create = format!(
        "CREATE TABLE {t} AS SELECT g AS id, 1 + (g % 10000) AS customer_id, \
                '2026-01-01'::timestamptz + g * interval '1 minute' AS created_at \
         FROM generate_series(1, 300000) g; ANALYZE {t}"
    );
    let query = format!(
        "SELECT id FROM {t} WHERE customer_id = 4242 \
         AND created_at > now() - interval '30 days' * 20"
    );
    let (start, end) = around(
        "repo",
        || {
            lab.psql("repo", DB, &create);
        },
        || lab.repeat("repo", DB, &query, 30),
    );
    let w = window_with_quals(start, end, Some(&dsn)).await;
    let quals = w.quals.clone().unwrap();
    assert!(
        quals
            .texts
            .values()
            .any(|x| x.contains(&t) && x.contains("interval $")),
        "the normalised text keeps `interval $n`: {:?}",
        quals
            .texts
            .values()
            .filter(|x| x.contains(&t))
            .collect::<Vec<_>>()
    );
    let insights = MissingIndexAnalyzer::new(MissingIndexSettings::default()).analyze_window(&w);
    let mine: Vec<&Insight> = insights
        .iter()
        .filter(|i| i.label("table") == Some(format!("public.{t}").as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{insights:#?}");
    assert_eq!(
        mine[0].rule, "missing_index.btree_validated",
        "{:#?}",
        mine[0]
    );
    for i in &insights {
        assert!(
            !i.advice.contains("syntax error") && !i.advice.contains("ERROR"),
            "{i:#?}"
        );
    }
    lab.psql("repo", DB, &format!("DROP TABLE {t}"));
}
