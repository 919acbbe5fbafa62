//! Stages in front of a channel (the chart enricher, the report-page writer): each gets
//! the notification first, prepares something, then hands it on.
//!
//! The preparing holds the stage's actor (`wait`), so notifications reach the channel in
//! the order they came; the delivery itself does not, so the channel still sees what
//! queues up meanwhile (and may merge it into a digest). The stage answers with the
//! channel's own report, or a retryable failure when the channel stopped first.

use std::future::Future;

use actix::prelude::*;

use sentinel_actors::channel::{Deliver, DeliveryReport};
use sentinel_actors::{ChannelError, Notification};

/// Runs `prepare` on `stage`'s context, then delivers what it gives to `inner`.
/// `channel` and `id` name the notification in the report when the channel never
/// answers.
pub fn hand_on<A, F>(
    ctx: &mut Context<A>,
    inner: Recipient<Deliver>,
    channel: String,
    id: u64,
    prepare: F,
) -> ResponseFuture<DeliveryReport>
where
    A: Actor<Context = Context<A>>,
    F: Future<Output = Notification> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    ctx.wait(
        actix::fut::wrap_future::<_, A>(prepare).map(move |n, _, _| {
            let sent = inner.send(Deliver(n));
            actix::spawn(async move {
                let _ = tx.send(sent.await);
            });
        }),
    );
    Box::pin(async move {
        match rx.await {
            Ok(Ok(report)) => report,
            _ => DeliveryReport {
                channel,
                notification_id: id,
                parts_total: 0,
                parts_delivered: 0,
                attempts: 0,
                outcome: Err(ChannelError::Retryable {
                    reason: "the channel stopped before answering".into(),
                }),
            },
        }
    })
}
