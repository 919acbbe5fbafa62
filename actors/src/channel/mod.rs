//! The channel actor: journals what it accepts, renders it into parts and delivers them one
//! by one, paced per destination, retrying what the provider says is temporary.
//!
//! How a notification travels:
//!
//! 1. `Deliver` journals it in the [`Outbox`](crate::outbox::Outbox) (queued) and puts it in the actor's own
//!    queue; the answer ([`DeliveryReport`]) comes when it is delivered, failed for good,
//!    or when [`RetryPolicy::deadline`] passed — whichever is first. A late answer does not
//!    give the notification up: it stays in the outbox and the actor keeps trying.
//! 2. One delivery runs at a time per channel, so parts arrive in order and two reports
//!    never interleave. When the delivery in flight ends, the actor takes what queued up
//!    meanwhile. If it fits in what the destination's quota allows soon
//!    ([`Pacer::capacity`](crate::throttle::Pacer::capacity)), the oldest notification goes alone; otherwise *everything*
//!    queued is merged into one notification and rendered with
//!    [`Channel::render_digest`] within that capacity. Nothing is dropped to keep the pace:
//!    every insight is in the digest, in full or counted. Every `Deliver` merged into a
//!    digest is answered with the digest's outcome.
//! 3. The rendered parts replace the queued entries in the outbox (one transaction); each
//!    part confirmed by the provider is journaled at once; a delivered entry is removed.
//!    After a restart the actor resumes rendered entries at their first unconfirmed part
//!    (same bytes), then renders what was still queued.
//!
//! Failures: `Retryable` errors are retried with jittered exponential backoff, without
//! limit (the provider's outage ends, the notification is never given up); `Unconfirmed`
//! (no answer in time: the provider may have delivered it) is retried too, but not before
//! the destination's rate window and the longest backoff have passed, with a warning that
//! the retry may be a duplicate — so a slow provider repeats a part at most once per
//! window instead of once per backoff; `RateLimited`
//! pauses the whole destination (the shared [`Pacer`](crate::throttle::Pacer)) for `retry_after`; `Permanent`
//! errors are not retried: the entry stays in the outbox marked failed, the channel's
//! [`ChannelHealth`] says so, and later notifications are still tried (once each).
//!
//! Why the limiter sits *inside* the retry loop: providers such as WeCom count every
//! attempt against the quota, successful or not, so a retry must wait for a cell too.
//!
//! Where each concern lives: [`queue::DeliveryQueue`] decides — what is queued, what to
//! send now, what an attempt's outcome means, what is journaled in the outbox and when,
//! the health counters — with the time passed in, so it is tested without actix or a
//! clock; [`digest`] holds the digest rule, [`retry`] the retry rule.
//! [`ChannelActor`] is the thin actix shell around it: it feeds it messages and timers,
//! waits on the pacer and runs the sends.

mod actor;
pub mod digest;
pub mod queue;
pub mod retry;
#[cfg(test)]
mod testing;

use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ChannelError;
use crate::message::Notification;

pub use actor::ChannelActor;
pub use digest::merge;
pub use retry::RetryPolicy;

/// A destination for notifications. Implementations live with the domain code; they
/// render within their provider's limits and classify the provider's answers.
pub trait Channel: 'static {
    /// One message as sent to the provider (e.g. a JSON body). Serializable because the
    /// outbox keeps rendered parts across restarts.
    type Part: Clone + Serialize + DeserializeOwned + 'static;

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

/// Ask a channel actor to deliver a notification.
#[derive(Message)]
#[rtype(result = "DeliveryReport")]
pub struct Deliver(pub Notification);

/// What happened to one notification on one channel. When the notification was merged
/// into a digest, the counts are the digest's. `Ok` with `parts_total` 0: the outbox had
/// already accepted this notification (offered again after a restart); it is delivered
/// from there, once.
#[derive(Clone, Debug)]
pub struct DeliveryReport {
    pub channel: String,
    pub notification_id: u64,
    pub parts_total: usize,
    pub parts_delivered: usize,
    pub attempts: u32,
    pub outcome: Result<(), ChannelError>,
}

impl DeliveryReport {
    /// Notification `id` of `channel` delivered in one part at the first attempt (what
    /// sinks without parts or retries answer).
    pub fn delivered(channel: &str, id: u64) -> DeliveryReport {
        DeliveryReport {
            channel: channel.to_string(),
            notification_id: id,
            parts_total: 1,
            parts_delivered: 1,
            attempts: 1,
            outcome: Ok(()),
        }
    }
}

/// Ask how a channel is doing.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "ChannelHealth")]
pub struct GetHealth;

/// How a channel is doing overall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// The last delivery succeeded (or nothing was sent yet) and nothing is failing now.
    Ok,
    /// Temporary failures: retrying (provider down, rate limited).
    Degraded,
    /// The last delivery failed permanently (bad key, refused message): a person must
    /// fix the channel's settings. Back to `Ok` after the next success.
    Failed,
}

/// A channel's state and counters since the actor started.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelHealth {
    pub channel: String,
    pub state: HealthState,
    /// The most recent error (secrets redacted by the channel), and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Notifications accepted, delivered (alone or within a digest), failed for good.
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Parts confirmed by the provider, and attempts made (retries included).
    pub parts_delivered: u64,
    pub attempts: u64,
    /// Answers that said "too many" (the destination was paused).
    pub rate_limited: u64,
    /// Digests rendered because a burst exceeded the quota, and notifications merged.
    pub digests: u64,
    pub merged: u64,
    /// Entries waiting to be delivered (queued, rendered or in flight).
    pub pending: usize,
    /// Entries kept in the outbox after a permanent failure (this run's and earlier ones').
    pub failed_in_outbox: usize,
    /// Outbox reads or writes that failed (the channel kept going from memory).
    pub outbox_errors: u64,
}

/// Wait until the channel has nothing left to do (everything delivered or failed for
/// good), at most `within`. `once` sends this so that it exits only after what it
/// recovered from the outbox at start is delivered.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "DrainReport")]
pub struct Drain {
    pub within: Duration,
}

/// What a channel did with its backlog.
#[derive(Clone, Debug, Default)]
pub struct DrainReport {
    pub channel: String,
    /// Entries found in the outbox when the actor started.
    pub recovered: usize,
    /// Notifications delivered and failed for good since the actor started.
    pub delivered: u64,
    pub failed: u64,
    /// Entries still waiting when the answer was given (deadline reached).
    pub pending: usize,
    /// Entries kept in the outbox after a permanent failure, this run's and earlier
    /// ones' (`powa-sentinel outbox retry` re-queues them).
    pub failed_in_outbox: usize,
}
