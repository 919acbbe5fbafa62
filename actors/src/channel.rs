//! The channel actor: renders a notification into parts and delivers them one by one,
//! paced per destination, retrying what the provider says is temporary.
//!
//! Why the limiter sits *inside* the retry loop: providers such as WeCom count every
//! attempt against the quota, successful or not, so a retry must wait for a token too.
//! Deliveries are serialised per channel (`AtomicResponse`): parts of one report arrive in
//! order, and two reports never interleave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use slog::{debug, warn, Logger};

use crate::error::ChannelError;
use crate::message::Notification;
use crate::throttle::Pacer;

/// A destination for notifications. Implementations live with the domain code; they
/// render within their provider's limits and classify the provider's answers.
pub trait Channel: 'static {
    /// One message as sent to the provider (e.g. a JSON body).
    type Part: Clone + 'static;

    /// Splits the notification into messages that each fit the provider's limits.
    fn render(&self, notification: &Notification) -> Result<Vec<Self::Part>, ChannelError>;

    /// Renders a digest of a notification in at most `max_parts` messages, for when a
    /// burst holds more than the destination's quota lets through: most severe first,
    /// the rest summarised ("+N more", counts by kind and severity), so every insight is
    /// still represented. Channels without a quota keep the default (everything).
    fn render_digest(
        &self,
        notification: &Notification,
        max_parts: usize,
    ) -> Result<Vec<Self::Part>, ChannelError> {
        let _ = max_parts;
        self.render(notification)
    }

    /// Sends one part. The future must not borrow `self` (clone what it needs).
    fn send(&self, part: Self::Part) -> LocalBoxFuture<'static, Result<(), ChannelError>>;
}

/// How hard to try before giving a notification up.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time one notification may take, all parts and retries included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        }
    }
}

/// Ask a channel actor to deliver a notification.
#[derive(Message)]
#[rtype(result = "DeliveryReport")]
pub struct Deliver(pub Notification);

/// What happened to one notification on one channel.
#[derive(Clone, Debug)]
pub struct DeliveryReport {
    pub channel: String,
    pub notification_id: u64,
    pub parts_total: usize,
    pub parts_delivered: usize,
    pub attempts: u32,
    pub outcome: Result<(), ChannelError>,
}

pub struct ChannelActor<C: Channel> {
    name: String,
    channel: Arc<C>,
    pacer: Option<Arc<Pacer>>,
    retry: RetryPolicy,
    log: Logger,
}

impl<C: Channel> ChannelActor<C> {
    pub fn new(
        name: impl Into<String>,
        channel: C,
        pacer: Option<Arc<Pacer>>,
        retry: RetryPolicy,
        log: Logger,
    ) -> Self {
        ChannelActor {
            name: name.into(),
            channel: Arc::new(channel),
            pacer,
            retry,
            log,
        }
    }
}

impl<C: Channel> Actor for ChannelActor<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

/// Deterministic jitter in [0.5, 1.0) of `d`, from the attempt number and notification id,
/// so that retries of many channels do not line up.
fn jittered(d: Duration, seed: u64) -> Duration {
    let x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 10 bits
    d.mul_f64(0.5 + (x as f64) / 2048.0)
}

async fn deliver_parts<C: Channel>(
    channel: Arc<C>,
    name: String,
    parts: Vec<C::Part>,
    pacer: Option<Arc<Pacer>>,
    retry: RetryPolicy,
    notification_id: u64,
    log: Logger,
) -> DeliveryReport {
    let started = Instant::now();
    let total = parts.len();
    let mut attempts = 0u32;
    for (i, part) in parts.into_iter().enumerate() {
        let mut backoff = retry.initial_backoff;
        loop {
            if let Some(p) = &pacer {
                p.ready().await;
            }
            attempts += 1;
            let err = match channel.send(part.clone()).await {
                Ok(()) => {
                    debug!(log, "Part delivered."; "part" => i + 1, "parts" => total);
                    break;
                }
                Err(e) => e,
            };
            let wait = match &err {
                ChannelError::Permanent { .. } => None,
                ChannelError::RateLimited { retry_after, .. } => {
                    if let Some(p) = &pacer {
                        p.pause(*retry_after);
                    }
                    Some(*retry_after)
                }
                ChannelError::Retryable { .. } => {
                    let w = jittered(backoff, notification_id ^ u64::from(attempts));
                    backoff = (backoff * 2).min(retry.max_backoff);
                    Some(w)
                }
            };
            let give_up = match wait {
                None => true,
                Some(w) => started.elapsed() + w > retry.deadline,
            };
            warn!(log, "Delivery attempt failed.";
                "part" => i + 1, "parts" => total, "error" => %err, "giving_up" => give_up);
            if give_up {
                return DeliveryReport {
                    channel: name,
                    notification_id,
                    parts_total: total,
                    parts_delivered: i,
                    attempts,
                    outcome: Err(err),
                };
            }
            if let Some(w) = wait {
                actix_rt::time::sleep(w).await;
            }
        }
    }
    DeliveryReport {
        channel: name,
        notification_id,
        parts_total: total,
        parts_delivered: total,
        attempts,
        outcome: Ok(()),
    }
}

impl<C: Channel> Handler<Deliver> for ChannelActor<C> {
    type Result = AtomicResponse<Self, DeliveryReport>;

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) -> Self::Result {
        let n = msg.0;
        let parts = match self.channel.render(&n) {
            Ok(p) => p,
            Err(e) => {
                let report = DeliveryReport {
                    channel: self.name.clone(),
                    notification_id: n.id,
                    parts_total: 0,
                    parts_delivered: 0,
                    attempts: 0,
                    outcome: Err(e),
                };
                return AtomicResponse::new(Box::pin(fut::ready(report)));
            }
        };
        let fut = deliver_parts(
            Arc::clone(&self.channel),
            self.name.clone(),
            parts,
            self.pacer.clone(),
            self.retry.clone(),
            n.id,
            self.log.clone(),
        );
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}
