//! The delivery's side of the findings queue: the replica holding the delivery feeds the
//! queued reports to its gate, oldest first, a batch at a time as [`Queued`], so that the
//! gate's one commit of their decisions removes them from the queue (exactly once,
//! whichever replica dies when).
//!
//! A report fed whose commit failed stays in the queue (the gate retries the removal
//! with its next commit): it is remembered here and not fed twice. A new consumer (after
//! a hand-over) starts with what is left, which is exactly what no committed decision
//! consumed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use slog::{warn, Logger};

use sentinel_actors::gate::Queued;
use sentinel_actors::task::Cancel;

use crate::statedb::{queue, StateDb};
use crate::topology::Gate;

/// How long the consumer waits when the queue had nothing new.
pub const POLL: Duration = Duration::from_millis(500);

/// How many reports one read takes.
const BATCH: i64 = 256;

pub async fn run(db: Arc<StateDb>, gate: Addr<Gate>, mut cancel: Cancel, log: Logger) {
    let mut fed: BTreeSet<i64> = BTreeSet::new();
    loop {
        let read = {
            let db = Arc::clone(&db);
            tokio::task::spawn_blocking(move || {
                db.transact(false, |c| {
                    Box::pin(async move { queue::oldest(c, BATCH).await })
                })
            })
        };
        let rows = tokio::select! {
            r = read => r,
            _ = cancel.cancelled() => return,
        };
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                warn!(log, "Cannot read the findings queue; trying again."; "error" => %e);
                if !cancel.sleep(POLL * 4).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                warn!(log, "Cannot read the findings queue."; "error" => %e);
                return;
            }
        };
        // Those fed and since removed by a commit are no longer in the queue.
        let present: BTreeSet<i64> = rows.iter().map(|(p, _)| *p).collect();
        fed.retain(|p| present.contains(p));
        let batch: Vec<(u64, _)> = rows
            .into_iter()
            .filter(|(p, _)| !fed.contains(p))
            .map(|(p, r)| (p as u64, r))
            .collect();
        let new = batch.len() as u64;
        if new > 0 {
            let positions: Vec<i64> = batch.iter().map(|(p, _)| *p as i64).collect();
            // One decision, one commit, for the whole batch.
            let sent = tokio::select! {
                r = gate.send(Queued(batch)) => r,
                _ = cancel.cancelled() => return,
            };
            if sent.is_err() {
                warn!(
                    log,
                    "The gate stopped; the queue is left for the replica that delivers next."
                );
                return;
            }
            fed.extend(positions);
        }
        crate::metrics::metrics().consumed(new);
        if new == 0 && !cancel.sleep(POLL).await {
            return;
        }
    }
}
