//! The analyzer actor: a thin shell around a pure, synchronous [`Analyze`] implementation.
//! Snapshots in, insights out to the gate. Keeping the logic pure means it is unit-tested
//! on hand-built snapshots, without actors, databases or clocks.

use actix::prelude::*;

use crate::gate::Insights;
use crate::message::{Insight, Snapshot};

/// Turns one snapshot into zero or more insights. May keep state between snapshots
/// (baselines, rolling windows), but must bound it.
pub trait Analyze: Unpin + 'static {
    type Input: Send + Sync + 'static;
    fn name(&self) -> &str;
    fn analyze(&mut self, snapshot: &Snapshot<Self::Input>) -> Vec<Insight>;
}

/// A snapshot for an analyzer; answered with the number of insights produced, once the
/// gate has accepted them.
pub struct AnalyzeSnapshot<S>(pub Snapshot<S>);

impl<S: Send + Sync + 'static> Message for AnalyzeSnapshot<S> {
    type Result = Result<usize, MailboxError>;
}

pub struct AnalyzerActor<A: Analyze> {
    analyzer: A,
    gate: Recipient<Insights>,
}

impl<A: Analyze> AnalyzerActor<A> {
    pub fn new(analyzer: A, gate: Recipient<Insights>) -> Self {
        AnalyzerActor { analyzer, gate }
    }
}

impl<A: Analyze> Actor for AnalyzerActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

impl<A: Analyze> Handler<AnalyzeSnapshot<A::Input>> for AnalyzerActor<A> {
    type Result = ResponseFuture<Result<usize, MailboxError>>;

    fn handle(&mut self, msg: AnalyzeSnapshot<A::Input>, _ctx: &mut Self::Context) -> Self::Result {
        let insights = self.analyzer.analyze(&msg.0);
        let n = insights.len();
        let gate = self.gate.clone();
        let report = Insights {
            analyzer: self.analyzer.name().to_string(),
            source: msg.0.source.clone(),
            seq: msg.0.seq,
            at: msg.0.taken_at,
            insights,
        };
        Box::pin(async move {
            // Sent even when empty (a clean pass resolves earlier findings); `send`, not
            // `do_send`, so a full gate mailbox pushes back on us.
            gate.send(report).await?;
            Ok(n)
        })
    }
}
