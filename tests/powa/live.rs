//! The live window against the naive reference on real PoWA, cycle after cycle: new
//! snapshots, a counter reset, a query born between cycles, a coalesce (rows moving from
//! `*_current` to history), idle cycles, the start-up lump aging out and buckets sliding
//! out of the window. Checkpoints are seconds here so that the window slides during the
//! test; the daemon uses hours.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use powa_sentinel::powa::live::LiveWindow;
use powa_sentinel::powa::reader::{read_window_with, ReadMode};
use sentinel_actors::Window;

use crate::support::repo::{repository, server};
use crate::support::windows::assert_same_windows_of;
use crate::support::workload::{coalesce, two_queries};
use crate::support::{exclusive, lab, unique};

// The lab lock is held for the whole test: a snapshot taken by another test between a
// cycle and its reference read would be in one and not the other. Each test has its own
// runtime thread, so holding it across awaits cannot deadlock.
#[allow(clippy::await_holding_lock)]
async fn live_matches_naive(cluster: &str, dsn: &str) {
    let lab = lab();
    let _guard = exclusive();
    let t = format!("t_live_{}", unique());
    let (q1, q2) = two_queries(cluster, &t);
    lab.repeat(cluster, "app", &q1, 3);
    lab.snapshot(cluster);

    let repo = repository("lab", dsn).await;
    let server = server(&repo, "local").clone();
    let mut live = LiveWindow::with_checkpoint(
        "lab",
        Arc::new(repo.info.clone()),
        server.clone(),
        chrono::Duration::seconds(4),
    );
    let length = chrono::Duration::seconds(12);
    let mut incremental_cycles = 0;
    let mut idle_cycles = 0;
    let mut slid = false;
    let mut waited = false;
    for step in 0..9 {
        match step {
            0 => {}
            2 => {
                lab.psql(cluster, "powa", "SELECT pg_stat_statements_reset()");
                lab.repeat(cluster, "app", &q1, 2);
                lab.snapshot(cluster);
            }
            3 => {
                lab.repeat(cluster, "app", &q2, 11);
                lab.snapshot(cluster);
            }
            4 => {
                lab.repeat(cluster, "app", &q1, 5);
                lab.snapshot(cluster);
                coalesce(cluster);
                lab.repeat(cluster, "app", &q2, 4);
                lab.snapshot(cluster);
            }
            6 => {} // nothing new: an idle cycle
            n => {
                lab.repeat(cluster, "app", &q1, n + 1);
                // Through the test's table, so the statement is the test's own: other
                // tests of this crate sleep too, in the same database, at the same time.
                lab.psql(
                    cluster,
                    "app",
                    &format!("SELECT pg_sleep(0.1), count(*) FROM {t}"),
                );
                lab.snapshot(cluster);
            }
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let now = Utc::now();
        let (w, cost) = live
            .cycle(
                &repo.client,
                Window {
                    start: now - length,
                    end: now,
                },
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("cycle {step}: {e}"));
        if step > 0 && cost.window_reads == 0 {
            incremental_cycles += 1;
        }
        idle_cycles += usize::from(cost.idle);
        slid |= w.window.start > now - length - chrono::Duration::seconds(4)
            && w.window.start.timestamp() % 4 == 0;
        let end = w.last_ts.expect("the live window has data");
        let naive = read_window_with(
            &repo.client,
            "lab",
            &repo.info,
            &server,
            Window {
                start: w.window.start,
                end,
            },
            true,
            ReadMode::Naive,
        )
        .await
        .expect("naive read");
        // The test's own queries. Others in the lab come and go from pg_stat_statements
        // (the reset above, evictions): a series with a gap across the window start is
        // counted from zero by the window read but from its last value by the live
        // window, which followed it (a known difference, see the live module).
        assert_same_windows_of(&w, &naive, &format!("{cluster} cycle {step}"), |x| {
            x.contains(&t)
        });
        waited |= w.waits.iter().any(|x| &*x.event == "PgSleep");
        let ours = w
            .queries
            .iter()
            .find(|q| q.query.as_deref().is_some_and(|x| x.contains(&t)));
        if step <= 4 {
            assert!(ours.is_some(), "cycle {step}: q1 is in the window");
        }
    }
    assert!(incremental_cycles >= 3, "cycles read only new rows");
    if cluster == "repo" {
        assert!(idle_cycles >= 1, "a cycle without a snapshot read nothing");
    }
    assert!(slid, "the window start moved onto the checkpoint grid");
    assert!(waited, "the live window carries pg_wait_sampling's samples");
    lab.psql(cluster, "app", &format!("DROP TABLE {t}"));
}

on_every_powa!(
    live_matches_naive: live_window_matches_naive_on_powa_4,
    // Passes alone (`cargo test --test powa -- --ignored live_window`), fails in a full
    // run since 2026-12-02: the live window counts more calls of the test's own query than
    // the naive read at a cycle after a coalesce. Under investigation in the reader issue.
    live_window_matches_naive_on_powa_5 ignored "fails in full runs only: see the reader issue",
    live_window_matches_naive_on_powa_3
);
