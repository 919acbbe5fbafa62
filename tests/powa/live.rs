//! The live window against the naive reference on real PoWA, cycle after cycle: new
//! snapshots, a counter reset, a query born between cycles, a coalesce (rows moving from
//! `*_current` to history), idle cycles, the window start moving through coalesced
//! history (the boundary cache), the start-up lump aging out and buckets sliding out of
//! the window. Checkpoints are seconds here so that the window slides during the
//! test; the daemon uses hours.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, Utc};
use powa_sentinel::powa::live::LiveWindow;
use powa_sentinel::powa::reader::{read_window_with, ReadMode, StatementsWindow, CALLS};
use sentinel_actors::Window;

use crate::support::repo::{repository, server};
use crate::support::windows::assert_same_windows_of;
use crate::support::workload::{coalescing_snapshot, two_queries};
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
    // History for the window start to move through: snapshots of q1's calls over a bit
    // more than the window's length, coalesced by PoWA, so that the start lies in one
    // range for several checkpoints. The live window unnests that range once, at
    // start-up, and takes the checkpoints the start passes off its boundary cache
    // instead of reading them; the comparisons below check those subtractions.
    for i in 0..7 {
        lab.repeat(cluster, "app", &q1, i + 1);
        // Wait samples in that history too (a statement of its own: after the reset of
        // step 2 it is gone for good, so it never comes back across a gap).
        lab.psql(
            cluster,
            "app",
            &format!("SELECT pg_sleep(0.1), count(*) + 1 FROM {t}"),
        );
        lab.snapshot(cluster);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    coalescing_snapshot(cluster);

    let repo = repository("lab", dsn).await;
    let server = server(&repo, "local").clone();
    let mut live = LiveWindow::with_checkpoint(
        "lab",
        Arc::new(repo.info.clone()),
        server.clone(),
        chrono::Duration::seconds(4),
    );
    let length = chrono::Duration::seconds(12);
    // A baseline over the window itself: it moves by a checkpoint every other cycle or
    // so, and the hours it leaves behind hold the test's calls (a baseline further back
    // would only ever lose hours from before the test).
    let offset = chrono::Duration::zero();
    let mut slides = 0;
    let (mut cached_slides, mut fills) = (0, 0);
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
                // PoWA's own coalesce, as in production: a direct call of the aggregate
                // functions moves the rows without telling `powa_snapshot_metas.aggts`,
                // so the live window would fold this snapshot's increment into the next
                // one's checkpoint, and a window starting between the two would differ.
                coalescing_snapshot(cluster);
                lab.repeat(cluster, "app", &q2, 4);
                lab.snapshot(cluster);
            }
            6 => {} // nothing new: an idle cycle
            n => {
                lab.repeat(cluster, "app", &q1, n + 1);
                // Through the test's table, so the statement is the test's own: other
                // tests of this crate sleep too, in the same database, at the same time.
                // Only after the reset of step 2: run before it, the statement would be
                // gone from the snapshots in between and come back with the value it had
                // before, the known difference of the live window with the window read
                // (see the comment of the comparison below) on whichever cycle's window
                // starts inside that gap.
                if n > 2 {
                    lab.psql(
                        cluster,
                        "app",
                        &format!("SELECT pg_sleep(0.1), count(*) FROM {t}"),
                    );
                }
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
                &[offset],
            )
            .await
            .unwrap_or_else(|e| panic!("cycle {step}: {e}"));
        if step > 0 && cost.window_reads == 0 {
            incremental_cycles += 1;
        }
        slides += cost.slides;
        cached_slides += cost.cached_slides;
        fills += cost.boundary_fills;
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
        // The baseline, moved by the hours it gained and lost, against a read of its span.
        let ours: Vec<i64> = naive
            .queries
            .iter()
            .filter(|q| q.query.as_deref().is_some_and(|x| x.contains(&t)))
            .map(|q| q.key.queryid)
            .collect();
        let b = &w.baselines[0];
        let fresh = read_window_with(
            &repo.client,
            "lab",
            &repo.info,
            &server,
            b.window,
            false,
            ReadMode::Naive,
        )
        .await
        .expect("naive baseline read");
        let counters = |x: &StatementsWindow| {
            let mut v: Vec<_> = x
                .queries
                .iter()
                .filter(|q| ours.contains(&q.key.queryid))
                .map(|q| (q.key, q.counters))
                .collect();
            v.sort_by_key(|p| p.0);
            v
        };
        let (live_b, naive_b) = (counters(b), counters(&fresh));
        assert_eq!(
            live_b.iter().map(|p| p.0).collect::<Vec<_>>(),
            naive_b.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{cluster} cycle {step}: the baseline's queries"
        );
        for ((k, x), (_, y)) in live_b.iter().zip(&naive_b) {
            for i in 0..x.len() {
                assert!(
                    (x[i] - y[i]).abs() <= 1e-6 * x[i].abs().max(y[i].abs()).max(1.0),
                    "{cluster} cycle {step}: baseline {k:?} counter {i}: live {} vs naive {}",
                    x[i],
                    y[i]
                );
            }
        }
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
    assert!(
        slides >= 2,
        "the lump and the baseline moved without a whole read"
    );
    assert!(waited, "the live window carries pg_wait_sampling's samples");
    assert!(
        fills >= 1 && cached_slides >= 2,
        "{cluster}: the starts moved through coalesced history without reading it \
         ({fills} fills, {cached_slides} checkpoints from the boundary cache)"
    );
    lab.psql(cluster, "app", &format!("DROP TABLE {t}"));
}

on_every_powa!(
    live_matches_naive: live_window_matches_naive_on_powa_4,
    live_window_matches_naive_on_powa_5,
    live_window_matches_naive_on_powa_3
);

/// The points PoWA coalesced between two cycles count at their own time: a window that
/// starts after a coalesced snapshot and before the next one holds only what happened
/// after its start. The window start is chosen (not taken from the clock), so this does
/// not depend on how long the snapshots take, unlike the cycle-after-cycle comparison.
#[allow(clippy::await_holding_lock)]
async fn live_keeps_coalesced_points_at_their_time(cluster: &str, dsn: &str) {
    let lab = lab();
    let _guard = exclusive();
    let t = format!("t_livec_{}", unique());
    let (q1, _) = two_queries(cluster, &t);
    lab.repeat(cluster, "app", &q1, 3);
    lab.snapshot(cluster);
    let repo = repository("lab", dsn).await;
    let server = server(&repo, "local").clone();
    let width = chrono::Duration::seconds(1);
    let mut live =
        LiveWindow::with_checkpoint("lab", Arc::new(repo.info.clone()), server.clone(), width);
    let now = Utc::now();
    live.cycle(
        &repo.client,
        Window {
            start: now - chrono::Duration::seconds(60),
            end: now,
        },
        &[],
    )
    .await
    .expect("start-up cycle");

    // Five calls up to a snapshot that PoWA coalesces, a checkpoint, two calls.
    lab.repeat(cluster, "app", &q1, 5);
    coalescing_snapshot(cluster);
    let after = Utc::now();
    let checkpoint = after.duration_trunc(width).unwrap() + width;
    tokio::time::sleep((checkpoint - after).to_std().unwrap() + Duration::from_millis(100)).await;
    lab.repeat(cluster, "app", &q1, 2);
    lab.snapshot(cluster);

    let now = Utc::now();
    let (w, _) = live
        .cycle(
            &repo.client,
            Window {
                start: checkpoint,
                end: now,
            },
            &[],
        )
        .await
        .expect("cycle after the coalesce");
    assert_eq!(w.window.start, checkpoint, "the window starts where asked");
    let ours = |w: &powa_sentinel::powa::reader::StatementsWindow| {
        w.queries
            .iter()
            .find(|q| q.query.as_deref().is_some_and(|x| x.contains(&t)))
            .map(|q| q.counters[CALLS])
    };
    assert_eq!(
        ours(&w),
        Some(2.0),
        "{cluster}: the calls after the checkpoint only"
    );
    let naive = read_window_with(
        &repo.client,
        "lab",
        &repo.info,
        &server,
        Window {
            start: checkpoint,
            end: w.last_ts.expect("the live window has data"),
        },
        true,
        ReadMode::Naive,
    )
    .await
    .expect("naive read");
    assert_eq!(ours(&naive), Some(2.0), "{cluster}: the naive read agrees");
    lab.psql(cluster, "app", &format!("DROP TABLE {t}"));
}

on_every_powa!(
    live_keeps_coalesced_points_at_their_time: live_window_keeps_coalesced_points_on_powa_4,
    live_window_keeps_coalesced_points_on_powa_5,
    live_window_keeps_coalesced_points_on_powa_3
);
