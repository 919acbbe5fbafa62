//! The channel actor: journals what it accepts, renders it into parts and delivers them one
//! by one, paced per destination, retrying what the provider says is temporary.
//!
//! How a notification travels:
//!
//! 1. `Deliver` journals it in the [`Outbox`] (queued) and puts it in the actor's own
//!    queue; the answer ([`DeliveryReport`]) comes when it is delivered, failed for good,
//!    or when [`RetryPolicy::deadline`] passed — whichever is first. A late answer does not
//!    give the notification up: it stays in the outbox and the actor keeps trying.
//! 2. One delivery runs at a time per channel, so parts arrive in order and two reports
//!    never interleave. When the delivery in flight ends, the actor takes what queued up
//!    meanwhile. If it fits in what the destination's quota allows soon
//!    ([`Pacer::capacity`]), the oldest notification goes alone; otherwise *everything*
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
//! pauses the whole destination (the shared [`Pacer`]) for `retry_after`; `Permanent`
//! errors are not retried: the entry stays in the outbox marked failed, the channel's
//! [`ChannelHealth`] says so, and later notifications are still tried (once each).
//!
//! Why the limiter sits *inside* the retry loop: providers such as WeCom count every
//! attempt against the quota, successful or not, so a retry must wait for a cell too.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use slog::{debug, error, info, warn, Logger};
use tokio::sync::oneshot;

use crate::error::ChannelError;
use crate::message::{Mentions, Notification, NotifyReason};
use crate::outbox::{
    EntryBody, MemoryOutbox, Outbox, OutboxEntry, RenderedEntry, Seq, StoredNotification,
};
use crate::throttle::Pacer;

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

/// How to retry, and how long a caller waits for an answer.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First wait after a temporary failure; doubled after each further one.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Longest a `Deliver` waits for its answer. Past it the caller hears "not delivered
    /// yet" while the notification stays in the outbox and is still retried.
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

impl RetryPolicy {
    /// The wait before attempt `failures + 1` of a part that failed `failures` times
    /// (≥ 1): `initial_backoff · 2^(failures-1)`, capped at `max_backoff`, times a jitter
    /// factor in [0.5, 1.0) drawn from `seed`, so that retries of many channels and parts
    /// do not line up.
    pub fn backoff(&self, failures: u32, seed: u64) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        jittered(base, seed)
    }
}

/// Jitter in [0.5, 1.0) of `d`, from a seed (SplitMix64 finaliser of it).
fn jittered(d: Duration, seed: u64) -> Duration {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let x = z >> 53; // 11 bits
    d.mul_f64(0.5 + (x as f64) / 4096.0)
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

/// An accepted notification not yet rendered.
struct Queued {
    seq: Seq,
    notification: Notification,
}

/// A rendered entry: what one delivery sends.
struct Batch<P> {
    seq: Seq,
    /// The queued entries it was rendered from (whose callers wait for its outcome).
    sources: Vec<Seq>,
    parts: Vec<P>,
    next_part: usize,
}

/// The progress of the delivery in flight, shared with its future.
#[derive(Default)]
struct Live {
    sources: Vec<Seq>,
    parts_total: usize,
    parts_delivered: usize,
    attempts: u32,
    /// The last attempt failed with a temporary error.
    retrying: bool,
    last_error: Option<ChannelError>,
    last_error_at: Option<DateTime<Utc>>,
    rate_limited: u64,
    parts_ok: u64,
    attempts_total: u64,
    outbox_errors: u64,
}

struct Waiter {
    notification_id: u64,
    tx: oneshot::Sender<DeliveryReport>,
}

pub struct ChannelActor<C: Channel> {
    name: String,
    channel: Arc<C>,
    pacer: Option<Arc<Pacer>>,
    retry: RetryPolicy,
    log: Logger,
    outbox: Arc<dyn Outbox>,
    queue: VecDeque<Queued>,
    /// Boxed: parts need not be `Unpin`, the actor must be.
    ready: VecDeque<Box<Batch<C::Part>>>,
    waiters: HashMap<Seq, Waiter>,
    drains: Vec<(Instant, oneshot::Sender<DrainReport>)>,
    busy: bool,
    live: Rc<RefCell<Live>>,
    /// Seqs used when the outbox could not journal (counting down from the top, so they
    /// never meet the outbox's own).
    local_seq: Seq,
    recovered: usize,
    failed_in_outbox: usize,
    permanent: bool,
    accepted: u64,
    delivered: u64,
    failed: u64,
    digests: u64,
    merged: u64,
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
        ChannelActor {
            name: name.into(),
            channel: Arc::new(channel),
            pacer,
            retry,
            log,
            outbox: Arc::new(MemoryOutbox::new()),
            queue: VecDeque::new(),
            ready: VecDeque::new(),
            waiters: HashMap::new(),
            drains: Vec::new(),
            busy: false,
            live: Rc::new(RefCell::new(Live::default())),
            local_seq: u64::MAX,
            recovered: 0,
            failed_in_outbox: 0,
            permanent: false,
            accepted: 0,
            delivered: 0,
            failed: 0,
            digests: 0,
            merged: 0,
        }
    }

    /// Journals into `outbox`; what it holds for this channel's name is delivered first
    /// when the actor starts.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    fn pending(&self) -> usize {
        self.queue.len() + self.ready.len() + usize::from(self.busy)
    }

    fn outbox_error(&self, what: &str, e: &crate::error::OutboxError) {
        self.live.borrow_mut().outbox_errors += 1;
        error!(self.log, "Outbox write failed: a restart now could lose or repeat this notification.";
            "channel" => &self.name, "operation" => what, "error" => %e);
    }

    /// Tells the pacer what this channel sent in the last window, per the outbox (an
    /// earlier process may have used part of the quota).
    fn seed_pacer(&self) {
        let Some(pacer) = &self.pacer else { return };
        let now = Utc::now();
        let window = chrono::TimeDelta::from_std(pacer.window()).unwrap_or_default();
        match self.outbox.sent_since(&self.name, now - window) {
            Ok(times) => {
                if !times.is_empty() {
                    debug!(self.log, "Quota already used in this window."; "channel" => &self.name, "sent" => times.len());
                }
                pacer.seed(times.iter().filter_map(|t| (now - *t).to_std().ok()));
            }
            Err(e) => self.outbox_error("read sent", &e),
        }
    }

    /// Loads what the outbox holds for this channel.
    fn recover(&mut self) {
        let entries = match self.outbox.entries(&self.name) {
            Ok(e) => e,
            Err(e) => {
                self.outbox_error("read", &e);
                return;
            }
        };
        let (mut queued, mut rendered) = (0, 0);
        for OutboxEntry {
            seq,
            body,
            next_part,
            failed,
            ..
        } in entries
        {
            if failed.is_some() {
                self.failed_in_outbox += 1;
                continue;
            }
            match body {
                EntryBody::Queued(n) => {
                    queued += 1;
                    self.queue.push_back(Queued {
                        seq,
                        notification: n.into(),
                    });
                }
                EntryBody::Rendered(r) => {
                    let parts: Result<Vec<C::Part>, _> =
                        r.parts.iter().map(|p| serde_json::from_slice(p)).collect();
                    match parts {
                        Ok(parts) => {
                            rendered += 1;
                            self.ready.push_back(Box::new(Batch {
                                seq,
                                sources: Vec::new(),
                                next_part: next_part.min(parts.len()),
                                parts,
                            }));
                        }
                        Err(e) => {
                            let why = format!("stored parts cannot be read back: {e}");
                            error!(self.log, "Outbox entry unreadable; kept, marked failed.";
                                "channel" => &self.name, "seq" => seq, "error" => &why);
                            if let Err(e) = self.outbox.fail(seq, &why) {
                                self.outbox_error("fail", &e);
                            }
                            self.failed_in_outbox += 1;
                        }
                    }
                }
            }
        }
        self.recovered = queued + rendered;
        if self.recovered > 0 {
            info!(self.log, "Outbox: resuming what was pending before the restart.";
                "channel" => &self.name, "rendered" => rendered, "queued" => queued);
        }
        if self.failed_in_outbox > 0 {
            warn!(self.log, "Outbox: notifications that failed permanently are kept, not retried.";
                "channel" => &self.name, "failed" => self.failed_in_outbox);
        }
    }

    /// Starts the next delivery if none is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let batch = loop {
            if let Some(b) = self.ready.pop_front() {
                break Some(b);
            }
            if self.queue.is_empty() {
                break None;
            }
            if let Some(b) = self.prepare() {
                break Some(b);
            }
        };
        let Some(batch) = batch else {
            self.answer_drains(true);
            return;
        };
        self.busy = true;
        {
            let mut live = self.live.borrow_mut();
            live.sources.clone_from(&batch.sources);
            live.parts_total = batch.parts.len();
            live.parts_delivered = batch.next_part;
            live.attempts = 0;
            live.retrying = false;
        }
        let Batch {
            seq,
            sources,
            parts,
            next_part,
        } = *batch;
        let fut = deliver_parts(
            Arc::clone(&self.channel),
            parts,
            next_part,
            seq,
            Rc::clone(&self.live),
            Run {
                name: self.name.clone(),
                pacer: self.pacer.clone(),
                retry: self.retry.clone(),
                outbox: Arc::clone(&self.outbox),
                log: self.log.clone(),
            },
        );
        ctx.spawn(fut.into_actor(self).map(move |outcome, act, ctx| {
            act.busy = false;
            act.finish(seq, sources, outcome);
            act.pump(ctx);
        }));
    }

    /// Renders the next batch from the queue: the oldest notification alone when what is
    /// queued fits in the quota, else a digest of everything queued. `None` when rendering
    /// failed (the sources are then failed and answered).
    fn prepare(&mut self) -> Option<Box<Batch<C::Part>>> {
        let capacity = self
            .pacer
            .as_ref()
            .map_or(usize::MAX, |p| p.capacity())
            .max(1);
        let head = self.queue.front()?;
        let head_parts = self.channel.render(&head.notification);
        // Does the whole queue fit? Render the others only as far as needed to know.
        let mut fits = match &head_parts {
            Ok(p) => p.len() <= capacity,
            Err(_) => true,
        };
        // Without a quota (capacity unbounded) everything fits: no need to render ahead.
        if fits && self.queue.len() > 1 && capacity != usize::MAX {
            let mut total = head_parts.as_ref().map_or(0, Vec::len);
            for q in self.queue.iter().skip(1) {
                total += self.channel.render(&q.notification).map_or(0, |p| p.len());
                if total > capacity {
                    fits = false;
                    break;
                }
            }
        }
        let (sources, rendered, digest, ids, insights) = if fits {
            let q = self.queue.pop_front()?;
            let ids = vec![q.notification.id];
            let insights = q.notification.insights.len();
            (vec![q.seq], head_parts, false, ids, insights)
        } else {
            let items: Vec<Queued> = self.queue.drain(..).collect();
            let merged = merge(items.iter().map(|q| &q.notification));
            let ids = items.iter().map(|q| q.notification.id).collect();
            let insights = merged.insights.len();
            if items.len() > 1 {
                self.merged += items.len() as u64;
            }
            self.digests += 1;
            info!(self.log, "Burst beyond the quota: sending a digest.";
                "channel" => &self.name, "notifications" => items.len(),
                "insights" => insights, "max_parts" => capacity);
            let parts = self.channel.render_digest(&merged, capacity);
            (
                items.iter().map(|q| q.seq).collect(),
                parts,
                true,
                ids,
                insights,
            )
        };
        let parts = match rendered.and_then(|parts| {
            let encoded = parts
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ChannelError::Permanent {
                    reason: format!("a rendered part cannot be journaled: {e}"),
                })?;
            Ok((parts, encoded))
        }) {
            Ok(p) => p,
            Err(e) => {
                for s in &sources {
                    if let Err(oe) = self.outbox.fail(*s, &e.to_string()) {
                        self.outbox_error("fail", &oe);
                    }
                }
                self.report_failure(&e, sources.len());
                self.answer(&sources, 0, 0, 0, Err(e));
                return None;
            }
        };
        let (parts, encoded) = parts;
        let entry = RenderedEntry {
            notification_ids: ids,
            insights,
            digest,
            parts: encoded,
        };
        let seq = match self.outbox.render(&self.name, &sources, &entry) {
            Ok(seq) => {
                crate::failpoint::hit("render");
                seq
            }
            Err(e) => {
                self.outbox_error("render", &e);
                self.next_local_seq()
            }
        };
        Some(Box::new(Batch {
            seq,
            sources,
            parts,
            next_part: 0,
        }))
    }

    fn next_local_seq(&mut self) -> Seq {
        self.local_seq -= 1;
        self.local_seq
    }

    /// A batch of `notifications` failed for good.
    fn report_failure(&mut self, e: &ChannelError, notifications: usize) {
        self.permanent = true;
        self.failed += notifications.max(1) as u64;
        self.failed_in_outbox += 1;
        {
            let mut live = self.live.borrow_mut();
            live.last_error = Some(e.clone());
            live.last_error_at = Some(Utc::now());
        }
        error!(self.log, "Channel failed permanently: the notification is kept in the outbox, marked failed, and not retried. Fix the channel's settings.";
            "channel" => &self.name, "error" => %e);
    }

    /// A delivery ended (delivered, or failed for good).
    fn finish(&mut self, seq: Seq, sources: Vec<Seq>, outcome: Result<(), ChannelError>) {
        let (total, delivered, attempts) = {
            let mut live = self.live.borrow_mut();
            live.retrying = false;
            (live.parts_total, live.parts_delivered, live.attempts)
        };
        match &outcome {
            Ok(()) => {
                if let Err(e) = self.outbox.done(seq) {
                    self.outbox_error("done", &e);
                }
                crate::failpoint::hit("outbox-done");
                self.permanent = false;
                self.delivered += sources.len().max(1) as u64;
                debug!(self.log, "Delivered."; "channel" => &self.name, "parts" => total);
            }
            Err(e) => {
                if let Err(oe) = self.outbox.fail(seq, &e.to_string()) {
                    self.outbox_error("fail", &oe);
                }
                self.report_failure(e, sources.len());
            }
        }
        self.answer(&sources, total, delivered, attempts, outcome);
    }

    fn answer(
        &mut self,
        sources: &[Seq],
        parts_total: usize,
        parts_delivered: usize,
        attempts: u32,
        outcome: Result<(), ChannelError>,
    ) {
        for s in sources {
            if let Some(w) = self.waiters.remove(s) {
                let _ = w.tx.send(DeliveryReport {
                    channel: self.name.clone(),
                    notification_id: w.notification_id,
                    parts_total,
                    parts_delivered,
                    attempts,
                    outcome: outcome.clone(),
                });
            }
        }
    }

    /// The answer for a caller whose deadline passed before its notification was done.
    fn late_report(&mut self, seq: Seq, notification_id: u64) -> DeliveryReport {
        self.waiters.remove(&seq);
        let live = self.live.borrow();
        let in_flight = live.sources.contains(&seq);
        let reason = match &live.last_error {
            Some(e) if live.retrying || !in_flight => format!(
                "not delivered within {:?} (last error: {e}); kept in the outbox and still retried",
                self.retry.deadline
            ),
            _ => format!(
                "not delivered within {:?}; kept in the outbox and still being sent",
                self.retry.deadline
            ),
        };
        DeliveryReport {
            channel: self.name.clone(),
            notification_id,
            parts_total: if in_flight { live.parts_total } else { 0 },
            parts_delivered: if in_flight { live.parts_delivered } else { 0 },
            attempts: if in_flight { live.attempts } else { 0 },
            outcome: Err(ChannelError::Retryable { reason }),
        }
    }

    fn drain_report(&self) -> DrainReport {
        DrainReport {
            channel: self.name.clone(),
            recovered: self.recovered,
            delivered: self.delivered,
            failed: self.failed,
            pending: self.pending(),
            failed_in_outbox: self.failed_in_outbox,
        }
    }

    /// Answers the drains that are due: all when idle, else those past their deadline.
    fn answer_drains(&mut self, idle: bool) {
        let now = Instant::now();
        let report = self.drain_report();
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.drains)
            .into_iter()
            .partition(|(until, _)| idle || *until <= now);
        self.drains = keep;
        for (_, tx) in due {
            let _ = tx.send(report.clone());
        }
    }

    fn health(&self) -> ChannelHealth {
        let live = self.live.borrow();
        let state = if self.permanent {
            HealthState::Failed
        } else if live.retrying {
            HealthState::Degraded
        } else {
            HealthState::Ok
        };
        ChannelHealth {
            channel: self.name.clone(),
            state,
            last_error: live.last_error.as_ref().map(ToString::to_string),
            last_error_at: live.last_error_at,
            accepted: self.accepted,
            delivered: self.delivered,
            failed: self.failed,
            parts_delivered: live.parts_ok,
            attempts: live.attempts_total,
            rate_limited: live.rate_limited,
            digests: self.digests,
            merged: self.merged,
            pending: self.pending(),
            failed_in_outbox: self.failed_in_outbox,
            outbox_errors: live.outbox_errors,
        }
    }
}

/// Merges notifications into one: all insights in order, the most urgent reason, every
/// mention once, the latest creation time, the first id.
pub fn merge<'a>(ns: impl IntoIterator<Item = &'a Notification>) -> Notification {
    let mut it = ns.into_iter();
    let Some(first) = it.next() else {
        return Notification {
            id: 0,
            channel: String::new(),
            reason: NotifyReason::Report,
            insights: Arc::new(Vec::new()),
            created_at: Utc::now(),
            mentions: Mentions::default(),
        };
    };
    let mut out = first.clone();
    let mut insights = first.insights.as_ref().clone();
    for n in it {
        insights.extend(n.insights.iter().cloned());
        if n.reason == NotifyReason::Immediate {
            out.reason = NotifyReason::Immediate;
        }
        out.created_at = out.created_at.max(n.created_at);
        for u in &n.mentions.userids {
            if !out.mentions.userids.contains(u) {
                out.mentions.userids.push(u.clone());
            }
        }
        for m in &n.mentions.mobiles {
            if !out.mentions.mobiles.contains(m) {
                out.mentions.mobiles.push(m.clone());
            }
        }
    }
    out.insights = Arc::new(insights);
    out
}

impl<C: Channel> Actor for ChannelActor<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.seed_pacer();
        self.recover();
        self.pump(ctx);
    }
}

/// What a delivery needs besides its parts.
struct Run {
    name: String,
    pacer: Option<Arc<Pacer>>,
    retry: RetryPolicy,
    outbox: Arc<dyn Outbox>,
    log: Logger,
}

/// Sends `parts[start..]`, journaling each confirmed part. Returns when every part is
/// delivered or one failed permanently; temporary failures are retried without limit.
async fn deliver_parts<P: Clone + 'static, C: Channel<Part = P>>(
    channel: Arc<C>,
    parts: Vec<P>,
    start: usize,
    seq: Seq,
    live: Rc<RefCell<Live>>,
    run: Run,
) -> Result<(), ChannelError> {
    let total = parts.len();
    for (i, part) in parts.into_iter().enumerate().skip(start) {
        let mut failures = 0u32;
        loop {
            if let Some(p) = &run.pacer {
                p.ready().await;
            }
            {
                let mut l = live.borrow_mut();
                l.attempts += 1;
                l.attempts_total += 1;
            }
            let err = match channel.send(part.clone()).await {
                Ok(()) => {
                    crate::failpoint::hit("part-sent");
                    // Journal first thing after the provider's answer: a kill from here
                    // to the commit is the only way a part is sent twice.
                    if let Err(e) = run.outbox.progress(seq, i + 1) {
                        live.borrow_mut().outbox_errors += 1;
                        error!(run.log, "Outbox write failed: a restart now would repeat this part.";
                            "channel" => &run.name, "error" => %e);
                    }
                    if run.pacer.is_some() {
                        if let Err(e) = run.outbox.record_sent(&run.name, Utc::now()) {
                            live.borrow_mut().outbox_errors += 1;
                            warn!(run.log, "Outbox write failed: a restart may not know this message used the quota.";
                                "channel" => &run.name, "error" => %e);
                        }
                    }
                    let mut l = live.borrow_mut();
                    l.parts_delivered = i + 1;
                    l.parts_ok += 1;
                    l.retrying = false;
                    debug!(run.log, "Part delivered."; "part" => i + 1, "parts" => total);
                    break;
                }
                Err(e) => e,
            };
            {
                let mut l = live.borrow_mut();
                l.last_error = Some(err.clone());
                l.last_error_at = Some(Utc::now());
                l.retrying = !err.is_permanent();
            }
            failures += 1;
            let seed = seq.rotate_left(17) ^ ((i as u64) << 8) ^ u64::from(failures);
            let wait = match &err {
                ChannelError::Permanent { .. } => return Err(err),
                ChannelError::Unconfirmed { .. } => {
                    let window = run.pacer.as_ref().map_or(Duration::ZERO, |p| p.window());
                    let wait = window
                        .max(run.retry.max_backoff)
                        .max(run.retry.backoff(failures, seed));
                    warn!(run.log, "No answer in time: the provider may have received this part. Retrying after a longer wait; the retry may be a duplicate.";
                        "channel" => &run.name, "part" => i + 1, "parts" => total, "error" => %err,
                        "retry_in" => ?wait);
                    actix_rt::time::sleep(wait).await;
                    continue;
                }
                ChannelError::RateLimited { retry_after, .. } => {
                    live.borrow_mut().rate_limited += 1;
                    match &run.pacer {
                        // Every sender of the destination waits in `ready()`.
                        Some(p) => {
                            p.pause(*retry_after);
                            Duration::ZERO
                        }
                        None => *retry_after,
                    }
                }
                ChannelError::Retryable { .. } => run.retry.backoff(failures, seed),
            };
            warn!(run.log, "Delivery attempt failed.";
                "channel" => &run.name, "part" => i + 1, "parts" => total, "error" => %err,
                "retry_in" => ?wait);
            if !wait.is_zero() {
                actix_rt::time::sleep(wait).await;
            }
        }
    }
    Ok(())
}

impl<C: Channel> Handler<Deliver> for ChannelActor<C> {
    type Result = ResponseActFuture<Self, DeliveryReport>;

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) -> Self::Result {
        let n = msg.0;
        let seq = match self
            .outbox
            .accept(&self.name, &StoredNotification::from(&n))
        {
            Ok(Some(seq)) => {
                crate::failpoint::hit("journal-accept");
                seq
            }
            Ok(None) => {
                // Offered again (the gate replays what it decided before a restart): the
                // outbox has it, pending or delivered; it goes out from there, once.
                info!(self.log, "Notification already accepted earlier; not accepted twice.";
                    "channel" => &self.name, "notification" => n.id);
                return Box::pin(fut::ready(DeliveryReport {
                    channel: self.name.clone(),
                    notification_id: n.id,
                    parts_total: 0,
                    parts_delivered: 0,
                    attempts: 0,
                    outcome: Ok(()),
                }));
            }
            Err(e) => {
                self.outbox_error("accept", &e);
                self.next_local_seq()
            }
        };
        self.accepted += 1;
        let (tx, rx) = oneshot::channel();
        let id = n.id;
        self.waiters.insert(
            seq,
            Waiter {
                notification_id: id,
                tx,
            },
        );
        self.queue.push_back(Queued {
            seq,
            notification: n,
        });
        self.pump(ctx);
        let deadline = self.retry.deadline;
        Box::pin(
            async move { actix_rt::time::timeout(deadline, rx).await }
                .into_actor(self)
                .map(move |res, act, _ctx| match res {
                    Ok(Ok(report)) => report,
                    _ => act.late_report(seq, id),
                }),
        )
    }
}

impl<C: Channel> Handler<GetHealth> for ChannelActor<C> {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _msg: GetHealth, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.health())
    }
}

impl<C: Channel> Handler<Drain> for ChannelActor<C> {
    type Result = ResponseActFuture<Self, DrainReport>;

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        if self.pending() == 0 {
            let report = self.drain_report();
            return Box::pin(fut::ready(report));
        }
        let (tx, rx) = oneshot::channel();
        self.drains.push((Instant::now() + msg.within, tx));
        // Wake up at the deadline to answer with what is left.
        ctx.run_later(msg.within, |act, _| act.answer_drains(false));
        Box::pin(
            async move { rx.await.ok() }
                .into_actor(self)
                .map(|res, act, _| res.unwrap_or_else(|| act.drain_report())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Fingerprint, Insight, Severity, Window};
    use std::cell::Cell;
    use std::collections::BTreeMap;

    fn insight(n: u64, severity: Severity) -> Insight {
        let t = Utc::now();
        Insight {
            fingerprint: Fingerprint(n),
            kind: "slow_query".into(),
            rule: "slow_query.total_time".into(),
            severity,
            labels: BTreeMap::from([("queryid".to_string(), n.to_string())]),
            title: format!("insight {n}"),
            advice: String::new(),
            text: None,
            metrics: BTreeMap::new(),
            window: Window { start: t, end: t },
            observed_at: t,
            status: None,
        }
    }

    fn notification(id: u64, insights: Vec<Insight>) -> Notification {
        Notification {
            id,
            channel: "t".into(),
            reason: NotifyReason::Report,
            insights: Arc::new(insights),
            created_at: Utc::now(),
            mentions: Mentions::default(),
        }
    }

    /// A channel that renders one part per insight, records what it sends and fails as
    /// scripted.
    #[derive(Clone, Default)]
    struct Script {
        sent: Rc<RefCell<Vec<String>>>,
        /// Errors returned by the next sends, in order.
        errors: Rc<RefCell<VecDeque<ChannelError>>>,
        digests: Rc<Cell<usize>>,
    }

    impl Channel for Script {
        type Part = String;
        fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
            Ok(n.insights.iter().map(|i| i.title.clone()).collect())
        }
        fn render_digest(
            &self,
            n: &Notification,
            max_parts: usize,
        ) -> Result<Vec<String>, ChannelError> {
            self.digests.set(self.digests.get() + 1);
            let titles: Vec<String> = n.insights.iter().map(|i| i.title.clone()).collect();
            Ok(vec![format!("digest {}: {}", max_parts, titles.join(","))])
        }
        fn send(&self, part: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
            let next = self.errors.borrow_mut().pop_front();
            if next.is_none() {
                self.sent.borrow_mut().push(part);
            }
            Box::pin(futures_util::future::ready(next.map_or(Ok(()), Err)))
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            deadline: Duration::from_secs(10),
        }
    }

    fn discard() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let r = RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        };
        for seed in 0..200u64 {
            for (failures, base) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
                let w = r.backoff(failures, seed);
                let base = Duration::from_secs(base);
                assert!(w >= base / 2 && w < base, "{failures}: {w:?}");
            }
        }
        let waits: std::collections::BTreeSet<Duration> =
            (0..50u64).map(|s| r.backoff(3, s)).collect();
        assert!(waits.len() > 40, "jitter spreads retries: {waits:?}");
    }

    #[test]
    fn merge_keeps_every_insight_and_the_most_urgent_reason() {
        let a = notification(1, vec![insight(1, Severity::Info)]);
        let mut b = notification(
            2,
            vec![
                insight(2, Severity::Critical),
                insight(3, Severity::Warning),
            ],
        );
        b.reason = NotifyReason::Immediate;
        b.mentions.userids = vec!["alice".into()];
        let m = merge([&a, &b]);
        assert_eq!(m.id, 1);
        assert_eq!(m.reason, NotifyReason::Immediate);
        assert_eq!(m.insights.len(), 3);
        assert_eq!(m.mentions.userids, ["alice"]);
    }

    #[actix_rt::test]
    async fn retryable_errors_are_retried_and_progress_is_journaled() {
        let ch = Script::default();
        ch.errors.borrow_mut().extend([
            ChannelError::Retryable {
                reason: "500".into(),
            },
            ChannelError::Retryable {
                reason: "timeout".into(),
            },
        ]);
        let outbox = Arc::new(MemoryOutbox::new());
        let addr = ChannelActor::new("t", ch.clone(), None, quick(), discard())
            .with_outbox(outbox.clone())
            .start();
        let n = notification(
            7,
            vec![insight(1, Severity::Warning), insight(2, Severity::Info)],
        );
        let rep = addr.send(Deliver(n)).await.unwrap();
        assert_eq!(rep.outcome, Ok(()));
        assert_eq!(
            (rep.parts_total, rep.parts_delivered, rep.attempts),
            (2, 2, 4)
        );
        assert_eq!(*ch.sent.borrow(), ["insight 1", "insight 2"]);
        assert!(
            outbox.entries("t").unwrap().is_empty(),
            "done entries are removed"
        );
        let h = addr.send(GetHealth).await.unwrap();
        assert_eq!(h.state, HealthState::Ok);
        assert_eq!((h.delivered, h.parts_delivered, h.attempts), (1, 2, 4));
        assert!(h.last_error.unwrap().contains("timeout"));
    }

    #[actix_rt::test]
    async fn permanent_error_is_kept_failed_and_reported() {
        let ch = Script::default();
        ch.errors.borrow_mut().push_back(ChannelError::Permanent {
            reason: "errcode 93000".into(),
        });
        let outbox = Arc::new(MemoryOutbox::new());
        let addr = ChannelActor::new("t", ch.clone(), None, quick(), discard())
            .with_outbox(outbox.clone())
            .start();
        let rep = addr
            .send(Deliver(notification(
                1,
                vec![insight(1, Severity::Critical)],
            )))
            .await
            .unwrap();
        assert!(rep.outcome.as_ref().is_err_and(ChannelError::is_permanent));
        assert_eq!(rep.attempts, 1, "not retried");
        let kept = outbox.entries("t").unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].failed.as_deref(),
            Some("permanent failure: errcode 93000")
        );
        let h = addr.send(GetHealth).await.unwrap();
        assert_eq!(h.state, HealthState::Failed);
        assert_eq!((h.failed, h.failed_in_outbox), (1, 1));
        // The next notification is tried (once) and its success clears the state.
        let rep = addr
            .send(Deliver(notification(2, vec![insight(2, Severity::Info)])))
            .await
            .unwrap();
        assert_eq!(rep.outcome, Ok(()));
        assert_eq!(addr.send(GetHealth).await.unwrap().state, HealthState::Ok);
        assert_eq!(
            outbox.entries("t").unwrap().len(),
            1,
            "the failed one stays"
        );
    }

    /// A restarted actor resumes a rendered entry at its first unconfirmed part, with the
    /// stored bytes, then renders what was still queued; failed entries are left alone.
    #[actix_rt::test]
    async fn restart_resumes_at_the_unconfirmed_part() {
        let outbox = Arc::new(MemoryOutbox::new());
        let q1 = outbox
            .accept("t", &StoredNotification::from(&notification(1, vec![])))
            .unwrap()
            .unwrap();
        let r = outbox
            .render(
                "t",
                &[q1],
                &RenderedEntry {
                    notification_ids: vec![1],
                    insights: 3,
                    digest: false,
                    parts: ["\"stored 1\"", "\"stored 2\"", "\"stored 3\""]
                        .iter()
                        .map(|s| s.as_bytes().to_vec())
                        .collect(),
                },
            )
            .unwrap();
        outbox.progress(r, 1).unwrap();
        outbox
            .accept(
                "t",
                &StoredNotification::from(&notification(2, vec![insight(9, Severity::Info)])),
            )
            .unwrap();
        let f = outbox
            .accept(
                "t",
                &StoredNotification::from(&notification(3, vec![insight(8, Severity::Info)])),
            )
            .unwrap()
            .unwrap();
        outbox.fail(f, "bad key").unwrap();
        outbox
            .accept(
                "other",
                &StoredNotification::from(&notification(4, vec![insight(7, Severity::Info)])),
            )
            .unwrap();

        let ch = Script::default();
        let addr = ChannelActor::new("t", ch.clone(), None, quick(), discard())
            .with_outbox(outbox.clone())
            .start();
        let d = addr
            .send(Drain {
                within: Duration::from_secs(5),
            })
            .await
            .unwrap();
        assert_eq!((d.recovered, d.pending, d.delivered), (2, 0, 2));
        assert_eq!(*ch.sent.borrow(), ["stored 2", "stored 3", "insight 9"]);
        let left = outbox.entries("t").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].seq, f);
        assert_eq!(outbox.entries("other").unwrap().len(), 1, "not ours");
        assert_eq!(addr.send(GetHealth).await.unwrap().failed_in_outbox, 1);
    }

    /// Notifications queued beyond the pacer's capacity are merged into one digest, and
    /// every caller is answered.
    #[actix_rt::test]
    async fn burst_beyond_capacity_becomes_one_digest() {
        let ch = Script::default();
        let pacer = Arc::new(Pacer::new(4, Duration::from_millis(400)));
        let addr = ChannelActor::new("t", ch.clone(), Some(pacer), quick(), discard()).start();
        let sends: Vec<_> = (0..12u64)
            .map(|k| addr.send(Deliver(notification(k, vec![insight(k, Severity::Info)]))))
            .collect();
        let reports = futures_util::future::join_all(sends).await;
        let mut ids: Vec<u64> = Vec::new();
        for r in reports {
            let r = r.unwrap();
            assert_eq!(r.outcome, Ok(()), "{r:?}");
            ids.push(r.notification_id);
        }
        assert_eq!(
            ids,
            (0..12).collect::<Vec<_>>(),
            "each caller hears about its own"
        );
        {
            let sent = ch.sent.borrow();
            assert!(sent.len() < 12, "{sent:?}");
            assert!(ch.digests.get() >= 1);
            let all = sent.join("\n");
            for k in 0..12 {
                assert!(all.contains(&format!("insight {k}")), "{k} lost: {sent:?}");
            }
        }
        let h = addr.send(GetHealth).await.unwrap();
        assert!(h.merged >= 2 && h.digests >= 1, "{h:?}");
        assert_eq!(h.delivered, 12);
    }

    /// A part whose answer never came is retried only after the longer wait, not at the
    /// pace of the backoff.
    #[actix_rt::test]
    async fn an_unconfirmed_part_waits_the_longer_delay() {
        let ch = Script::default();
        ch.errors.borrow_mut().push_back(ChannelError::Unconfirmed {
            reason: "timeout".into(),
        });
        let retry = RetryPolicy {
            max_backoff: Duration::from_millis(300),
            ..quick()
        };
        let addr = ChannelActor::new("t", ch.clone(), None, retry, discard()).start();
        let t = Instant::now();
        let rep = addr
            .send(Deliver(notification(1, vec![insight(1, Severity::Info)])))
            .await
            .unwrap();
        assert_eq!((rep.outcome, rep.attempts), (Ok(()), 2));
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "retried after {:?}",
            t.elapsed()
        );
    }

    /// A notification offered again (the gate's replay after a restart) is not sent again.
    #[actix_rt::test]
    async fn a_notification_offered_again_is_sent_once() {
        let ch = Script::default();
        let outbox = Arc::new(MemoryOutbox::new());
        let addr = ChannelActor::new("t", ch.clone(), None, quick(), discard())
            .with_outbox(outbox.clone())
            .start();
        let n = notification(5, vec![insight(1, Severity::Info)]);
        let first = addr.send(Deliver(n.clone())).await.unwrap();
        assert_eq!((first.outcome, first.parts_total), (Ok(()), 1));
        let again = addr.send(Deliver(n)).await.unwrap();
        assert_eq!((again.outcome, again.parts_total), (Ok(()), 0));
        assert_eq!(*ch.sent.borrow(), ["insight 1"]);
        assert_eq!(addr.send(GetHealth).await.unwrap().accepted, 1);
    }

    /// Past the deadline the caller hears "not delivered yet"; the actor keeps trying.
    #[actix_rt::test]
    async fn late_answer_keeps_the_notification() {
        let ch = Script::default();
        ch.errors.borrow_mut().extend(std::iter::repeat_n(
            ChannelError::Retryable {
                reason: "down".into(),
            },
            8,
        ));
        let outbox = Arc::new(MemoryOutbox::new());
        let retry = RetryPolicy {
            deadline: Duration::from_millis(30),
            ..quick()
        };
        let addr = ChannelActor::new("t", ch.clone(), None, retry, discard())
            .with_outbox(outbox.clone())
            .start();
        let rep = addr
            .send(Deliver(notification(1, vec![insight(1, Severity::Info)])))
            .await
            .unwrap();
        match &rep.outcome {
            Err(ChannelError::Retryable { reason }) => {
                assert!(reason.contains("kept in the outbox"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            addr.send(GetHealth).await.unwrap().state,
            HealthState::Degraded
        );
        let d = addr
            .send(Drain {
                within: Duration::from_secs(5),
            })
            .await
            .unwrap();
        assert_eq!((d.pending, d.delivered), (0, 1));
        assert_eq!(*ch.sent.borrow(), ["insight 1"]);
        assert!(outbox.entries("t").unwrap().is_empty());
    }
}
