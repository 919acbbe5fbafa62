//! The channel actor: the actix shell around a [`DeliveryQueue`]. It turns messages into
//! calls of the queue, keeps the callers' answer channels and deadlines, waits on the
//! pacer, runs the sends and sleeps until retries are due. Every decision is the queue's.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use slog::Logger;
use tokio::sync::oneshot;

use super::queue::{Accepted, Answer, DeliveryQueue, Finished, Moment, Next};
use super::{Channel, Deliver, DeliveryReport, Drain, DrainReport, GetHealth, RetryPolicy};
use crate::outbox::{Outbox, Seq};
use crate::throttle::Pacer;

pub struct ChannelActor<C: Channel> {
    queue: DeliveryQueue<C>,
    channel: Rc<C>,
    pacer: Option<Arc<Pacer>>,
    waiters: HashMap<Seq, oneshot::Sender<DeliveryReport>>,
    drains: Vec<(Instant, oneshot::Sender<DrainReport>)>,
    /// A step of the queue is under way (the pacer's wait and a send, or the sleep until a
    /// retry): the next one is asked for when it ends.
    stepping: bool,
    /// Why the outbox refused a send ([`Outbox::may_send`]): the actor stops.
    stopped_by: Option<String>,
    log: Logger,
}

impl<C: Channel> ChannelActor<C> {
    /// A channel with an in-memory outbox; see [`ChannelActor::with_outbox`].
    pub fn new(
        name: impl Into<String>,
        channel: C,
        pacer: Option<Arc<Pacer>>,
        retry: RetryPolicy,
        log: Logger,
    ) -> Self {
        let channel = Rc::new(channel);
        let window = pacer.as_ref().map(|p| p.window());
        ChannelActor {
            queue: DeliveryQueue::new(name, Rc::clone(&channel), retry, window, log.clone()),
            channel,
            pacer,
            waiters: HashMap::new(),
            drains: Vec::new(),
            stepping: false,
            stopped_by: None,
            log,
        }
    }

    /// Journals into `outbox`; what it holds for this channel's name is delivered first
    /// when the actor starts.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.queue = self.queue.with_outbox(outbox);
        self
    }

    /// Hands the queue's answers to the callers still waiting.
    fn answer(&mut self) {
        for Answer { seq, report } in self.queue.answers() {
            if let Some(tx) = self.waiters.remove(&seq) {
                let _ = tx.send(report);
            }
        }
    }

    /// Runs the queue's next step, unless one is under way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.stepping {
            return;
        }
        let capacity = self.pacer.as_ref().map_or(usize::MAX, |p| p.capacity());
        let now = Moment::now();
        let next = self.queue.next(now, capacity);
        self.answer();
        match next {
            Next::Idle => self.answer_drains(true),
            Next::Wait(until) => {
                self.stepping = true;
                ctx.run_later(until.saturating_duration_since(now.instant), |act, ctx| {
                    act.stepping = false;
                    act.pump(ctx);
                });
            }
            Next::Send(part) => {
                self.stepping = true;
                let pacer = self.pacer.clone();
                let paced = async move {
                    if let Some(p) = pacer {
                        p.ready().await;
                    }
                };
                let attempt = paced
                    .into_actor(self)
                    .then(move |(), act, _| {
                        // Checked after the pacer's wait, which may have been long: a
                        // replica that lost the delivery meanwhile sends nothing.
                        let send = match act.queue.may_send() {
                            Ok(()) => {
                                act.queue.attempting();
                                act.channel.send(part)
                            }
                            Err(e) => {
                                act.stopped_by = Some(e.to_string());
                                Box::pin(std::future::ready(Ok(())))
                            }
                        };
                        send.into_actor(act)
                    })
                    .map(|result, act, ctx| {
                        if let Some(why) = &act.stopped_by {
                            slog::warn!(act.log, "This channel stops: it may not send any more; what it holds stays in the outbox for the replica that delivers now.";
                                "reason" => why);
                            ctx.stop();
                            return;
                        }
                        if let Finished::PauseDestination(d) =
                            act.queue.finish(Moment::now(), result)
                        {
                            if let Some(p) = &act.pacer {
                                p.pause(d);
                            }
                        }
                        act.answer();
                        act.stepping = false;
                        act.pump(ctx);
                    });
                ctx.spawn(attempt);
            }
        }
    }

    /// Answers the drains that are due: all when idle, else those past their deadline.
    fn answer_drains(&mut self, idle: bool) {
        let now = Instant::now();
        let report = self.queue.drain_report();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.drains)
            .into_iter()
            .partition(|(until, _)| idle || *until <= now);
        self.drains = keep;
        for (_, tx) in due {
            let _ = tx.send(report.clone());
        }
    }
}

impl<C: Channel> Actor for ChannelActor<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        if let Some(pacer) = &self.pacer {
            pacer.seed(self.queue.quota_used(Utc::now()));
        }
        self.queue.recover();
        self.pump(ctx);
    }
}

impl<C: Channel> Handler<Deliver> for ChannelActor<C> {
    type Result = ResponseActFuture<Self, DeliveryReport>;

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) -> Self::Result {
        let id = msg.0.id;
        let seq = match self.queue.accept(msg.0) {
            Accepted::Queued(seq) => seq,
            Accepted::Again(report) => return Box::pin(fut::ready(report)),
        };
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(seq, tx);
        self.pump(ctx);
        let deadline = self.queue.retry().deadline;
        Box::pin(
            async move { actix_rt::time::timeout(deadline, rx).await }
                .into_actor(self)
                .map(move |res, act, _ctx| match res {
                    Ok(Ok(report)) => report,
                    _ => {
                        act.waiters.remove(&seq);
                        act.queue.late_report(seq, id)
                    }
                }),
        )
    }
}

impl<C: Channel> Handler<GetHealth> for ChannelActor<C> {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _msg: GetHealth, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.queue.health())
    }
}

impl<C: Channel> Handler<Drain> for ChannelActor<C> {
    type Result = ResponseActFuture<Self, DrainReport>;

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        if self.queue.pending() == 0 {
            let report = self.queue.drain_report();
            return Box::pin(fut::ready(report));
        }
        let (tx, rx) = oneshot::channel();
        self.drains.push((Instant::now() + msg.within, tx));
        // Wake up at the deadline to answer with what is left.
        ctx.run_later(msg.within, |act, _| act.answer_drains(false));
        Box::pin(
            async move { rx.await.ok() }
                .into_actor(self)
                .map(|res, act, _| res.unwrap_or_else(|| act.queue.drain_report())),
        )
    }
}

#[cfg(test)]
mod tests;
