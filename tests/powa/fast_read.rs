//! The fast window read (whole coalesce ranges from mins/maxs) against the naive reference
//! (every point unnested) on real PoWA 4.1.4 and 3.2.0 history: coalesced ranges, a reset
//! inside a range, a reset at a range boundary, a query born inside a range, current rows,
//! and windows starting before, inside and between ranges.

use chrono::{DateTime, Utc};
use powa_sentinel::powa::cold;
use powa_sentinel::powa::layout::Layout;
use powa_sentinel::powa::reader::{read_window_with, ReadMode, COUNTERS};
use sentinel_actors::Window;

use crate::support::repo::{repository, server};
use crate::support::windows::assert_same_windows;
use crate::support::workload::{coalesce, two_queries};
use crate::support::{exclusive, lab, unique};

/// Builds history for one query family and returns the times between phases.
fn build_history(cluster: &str, t: &str) -> Vec<DateTime<Utc>> {
    let lab = lab();
    let mut marks = vec![Utc::now()];
    let (q1, q2) = two_queries(cluster, t);
    // Range 1: three snapshots, with time spent waiting (pg_wait_sampling).
    for n in [7, 11, 13] {
        lab.repeat(cluster, "app", &q1, n);
        lab.psql(cluster, "app", "SELECT pg_sleep(0.2)");
        lab.snapshot(cluster);
    }
    coalesce(cluster);
    marks.push(Utc::now());
    // Range 2: a reset in the middle, and q2 born inside the range.
    lab.repeat(cluster, "app", &q1, 5);
    lab.snapshot(cluster);
    lab.psql(cluster, "powa", "SELECT pg_stat_statements_reset()");
    lab.repeat(cluster, "app", &q1, 3);
    lab.repeat(cluster, "app", &q2, 17);
    lab.snapshot(cluster);
    lab.repeat(cluster, "app", &q1, 4);
    lab.repeat(cluster, "app", &q2, 2);
    lab.snapshot(cluster);
    coalesce(cluster);
    marks.push(Utc::now());
    // Range 3 starts right after a reset (a reset at the range boundary).
    lab.psql(cluster, "powa", "SELECT pg_stat_statements_reset()");
    for n in [2, 9] {
        lab.repeat(cluster, "app", &q1, n);
        lab.repeat(cluster, "app", &q2, n);
        lab.snapshot(cluster);
    }
    coalesce(cluster);
    marks.push(Utc::now());
    // Current rows.
    for n in [6, 1] {
        lab.repeat(cluster, "app", &q1, n);
        lab.psql(cluster, "app", "SELECT pg_sleep(0.2)");
        lab.snapshot(cluster);
    }
    marks.push(Utc::now());
    marks
}

// The lab lock is held for the whole test, reads included: another test's snapshot,
// coalesce or reset on the same cluster (the live test does all three) would change the
// ranges this test reads. Each test has its own runtime thread, so holding it across
// awaits cannot deadlock.
#[allow(clippy::await_holding_lock)]
async fn fast_matches_naive(cluster: &str, dsn: &str) {
    let t = format!("t_fast_{}", unique());
    let _guard = exclusive();
    let marks = build_history(cluster, &t);
    let repo = repository("lab", dsn).await;
    let server = server(&repo, "local");
    let end = *marks.last().unwrap();
    let mut starts = marks[..marks.len() - 1].to_vec();
    // Inside range 2 (straddling it) and long before anything.
    starts.push(marks[1] + (marks[2] - marks[1]) / 2);
    starts.push(marks[0] - chrono::Duration::days(2));
    let mut ours = 0;
    let mut sleeps = 0.0;
    for start in starts {
        let w = Window { start, end };
        let read = |mode| read_window_with(&repo.client, "lab", &repo.info, server, w, true, mode);
        let fast = read(ReadMode::Fast).await.expect("fast read");
        let naive = read(ReadMode::Naive).await.expect("naive read");
        assert_same_windows(&fast, &naive, &format!("{cluster} window from {start}"));
        sleeps += fast
            .waits
            .iter()
            .filter(|w| &*w.event == "PgSleep")
            .map(|w| w.samples)
            .sum::<f64>();
        ours += fast
            .queries
            .iter()
            .filter(|q| q.query.as_deref().is_some_and(|x| x.contains(&t)))
            .count();
    }
    assert!(ours >= 2, "the test's own queries were read ({ours})");
    assert!(
        sleeps > 0.0,
        "pg_wait_sampling saw the sleeps in some window"
    );

    // The fast path really skipped arrays: whole ranges were trusted over the full window.
    let layout = Layout::statements(&repo.info);
    let r =
        cold::read_fast::<{ COUNTERS.len() }>(&repo.client, &layout, server.srvid, marks[0], end)
            .await
            .expect("fast read");
    assert!(
        r.ranges_trusted > 0,
        "some ranges read from mins/maxs ({} unnested)",
        r.ranges_unnested
    );
    lab().psql(cluster, "app", &format!("DROP TABLE {t}"));
}

on_every_powa!(
    fast_matches_naive: fast_read_matches_naive_on_powa_4,
    fast_read_matches_naive_on_powa_5,
    fast_read_matches_naive_on_powa_3
);
