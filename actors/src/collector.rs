//! The collector actor: one per monitored server. It asks its [`Source`] for a snapshot
//! and hands the snapshot to every analyzer, waiting until they have accepted it. A
//! collection never overlaps the previous one (`AtomicResponse`): a slow repository makes
//! the next request wait, it does not stack queries on the database.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::{join_all, LocalBoxFuture};

use crate::analyzer::AnalyzeSnapshot;
use crate::error::SourceError;
use crate::message::{Snapshot, Window};

/// What a source produces: the body and the newest data time it covers.
pub type Collected<T> = Result<(Arc<T>, DateTime<Utc>), SourceError>;

/// Where snapshots come from (a PoWA server, a fixture).
pub trait Source: Unpin + 'static {
    type Output: Send + Sync + 'static;
    /// Stable name used as the snapshot's source and in logs.
    fn name(&self) -> &str;
    /// Reads the data for `window`. Returns the body and the newest data time it covers.
    fn collect(&mut self, window: Window) -> LocalBoxFuture<'static, Collected<Self::Output>>;
}

/// Collect the given window now and pass it on.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<CollectSummary, SourceError>")]
pub struct Collect {
    pub window: Window,
}

/// What one collection produced.
#[derive(Clone, Debug, Default)]
pub struct CollectSummary {
    pub seq: u64,
    pub insights: usize,
    /// The newest data time the snapshot covers.
    pub taken_at: Option<DateTime<Utc>>,
    /// Rows read from the source, as the collector's `measure` counts them (0 without one).
    pub rows: u64,
}

/// Counts the rows of a snapshot body, for metrics.
pub type Measure<T> = fn(&T) -> u64;

pub struct CollectorActor<S: Source> {
    source: S,
    analyzers: Vec<Recipient<AnalyzeSnapshot<S::Output>>>,
    seq: u64,
    measure: Option<Measure<S::Output>>,
}

impl<S: Source> CollectorActor<S> {
    pub fn new(source: S, analyzers: Vec<Recipient<AnalyzeSnapshot<S::Output>>>) -> Self {
        CollectorActor {
            source,
            analyzers,
            seq: 0,
            measure: None,
        }
    }

    /// Counts each snapshot's rows with `measure` (reported in [`CollectSummary::rows`]).
    pub fn with_measure(mut self, measure: Measure<S::Output>) -> Self {
        self.measure = Some(measure);
        self
    }

    /// Starts the collection numbering at `seq` (a restarted collector continues its
    /// predecessor's sequence, so analyzers do not mistake it for a gap or a replay).
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }
}

impl<S: Source> Actor for CollectorActor<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // One collection runs at a time; the scheduler never queues more than one behind
        // it, so a small bounded mailbox is enough.
        ctx.set_mailbox_capacity(4);
    }
}

impl<S: Source> Handler<Collect> for CollectorActor<S> {
    type Result = AtomicResponse<Self, Result<CollectSummary, SourceError>>;

    fn handle(&mut self, msg: Collect, _ctx: &mut Self::Context) -> Self::Result {
        self.seq += 1;
        let seq = self.seq;
        let name = self.source.name().to_string();
        let analyzers = self.analyzers.clone();
        let read = self.source.collect(msg.window);
        let measure = self.measure;
        AtomicResponse::new(Box::pin(
            async move {
                let (body, taken_at) = read.await?;
                let rows = measure.map(|m| m(&body)).unwrap_or(0);
                let snapshot = Snapshot {
                    source: name,
                    seq,
                    taken_at,
                    body,
                };
                let results = join_all(
                    analyzers
                        .iter()
                        .map(|a| a.send(AnalyzeSnapshot(snapshot.clone()))),
                )
                .await;
                let mut insights = 0;
                for r in results {
                    match r {
                        Ok(Ok(n)) => insights += n,
                        Ok(Err(e)) | Err(e) => {
                            return Err(SourceError::new(format!(
                                "an analyzer did not take the snapshot: {e}"
                            )))
                        }
                    }
                }
                Ok(CollectSummary {
                    seq,
                    insights,
                    taken_at: Some(taken_at),
                    rows,
                })
            }
            .into_actor(self),
        ))
    }
}
