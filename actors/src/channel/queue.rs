//! The delivery queue: every decision of a channel, without the actor.
//!
//! It holds what the channel accepted, renders it into batches (one notification, or a
//! digest of everything queued — [`digest`](super::digest)), says what to send now and
//! what an attempt's outcome means ([`retry`](super::retry)), journals each step in the
//! [`Outbox`] and keeps the channel's health. It never waits and never reads a clock:
//! the caller passes the time in ([`Moment`]) and runs what it is told — wait on the
//! pacer, send a part, sleep until a retry is due, answer callers. So the whole state
//! machine is tested on virtual time, and the actor ([`ChannelActor`](super::ChannelActor))
//! is a shell that feeds it messages and timers.
//!
//! One batch is in flight at a time: [`DeliveryQueue::next`] hands out its parts in order
//! until it is delivered or failed for good, then takes the next one.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use slog::{debug, error, info, warn, Logger};

use super::digest::{merge, oldest_goes_alone};
use super::retry::{AfterFailure, RetryPolicy};
use super::{Channel, ChannelHealth, DeliveryReport, DrainReport, HealthState};
use crate::error::{ChannelError, OutboxError};
use crate::message::Notification;
use crate::outbox::{
    EntryBody, MemoryOutbox, Outbox, OutboxEntry, RenderedEntry, Seq, StoredNotification,
};

/// A reading of the clocks, passed in by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    /// For waits: monotonic, so a clock change does not stretch or cut a backoff.
    pub instant: Instant,
    /// For what is journaled and shown (when a message was sent, when an error happened).
    pub wall: DateTime<Utc>,
}

impl Moment {
    pub fn now() -> Moment {
        Moment {
            instant: Instant::now(),
            wall: Utc::now(),
        }
    }

    /// This moment `d` later.
    pub fn after(self, d: Duration) -> Moment {
        Moment {
            instant: self.instant + d,
            wall: self.wall + chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX),
        }
    }
}

/// What became of a notification offered to [`DeliveryQueue::accept`].
#[derive(Debug)]
pub enum Accepted {
    /// Journaled and queued as this entry: its answer comes from [`DeliveryQueue::answers`].
    Queued(Seq),
    /// The outbox had accepted it before (offered again after a restart): it is delivered
    /// from there, once; this is the answer to give now.
    Again(DeliveryReport),
}

/// What to do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<P> {
    /// Wait for the destination's pacer, then send this part, calling
    /// [`DeliveryQueue::attempting`] right before and [`DeliveryQueue::finish`] with the
    /// provider's answer.
    Send(P),
    /// The part in flight is retried at this instant: ask again then.
    Wait(Instant),
    /// Nothing left to do.
    Idle,
}

/// What an attempt's outcome means, besides asking [`DeliveryQueue::next`] again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// The part is confirmed; the batch has more.
    Sent,
    /// The batch is over (delivered, or failed for good); its callers' answers are ready.
    Done,
    /// A temporary failure: the part goes again at this instant.
    RetryAt(Instant),
    /// "Too many" on a paced destination: pause its pacer this long (every channel sending
    /// there must wait); the part goes again when the pacer lets it.
    PauseDestination(Duration),
}

/// The answer for the caller waiting on entry `seq`.
#[derive(Clone, Debug)]
pub struct Answer {
    pub seq: Seq,
    pub report: DeliveryReport,
}

/// An accepted notification not yet rendered.
struct Queued {
    seq: Seq,
    notification: Notification,
}

/// A rendered entry: what one delivery sends.
struct Batch<P> {
    seq: Seq,
    /// The queued entries it was rendered from, with their notification ids: their
    /// callers wait for its outcome. Empty for an entry recovered already rendered.
    sources: Vec<(Seq, u64)>,
    parts: Vec<P>,
    next_part: usize,
    /// Failed attempts of the part at `next_part`.
    failures: u32,
    retry_at: Option<Instant>,
}

/// The batch in flight (or the last one), as callers whose deadline passed hear of it.
#[derive(Default)]
struct Progress {
    sources: Vec<Seq>,
    parts_total: usize,
    parts_delivered: usize,
    attempts: u32,
    /// The last attempt failed with a temporary error.
    retrying: bool,
}

/// Counters since the queue was created.
#[derive(Default)]
struct Counters {
    accepted: u64,
    delivered: u64,
    failed: u64,
    digests: u64,
    merged: u64,
    parts_ok: u64,
    attempts: u64,
    rate_limited: u64,
    outbox_errors: u64,
}

/// The delivery state machine of one channel; see the module's documentation.
pub struct DeliveryQueue<C: Channel> {
    name: String,
    /// Shared with the actor that runs the sends (on the same thread).
    channel: Rc<C>,
    retry: RetryPolicy,
    /// The destination's rate window, when the channel is paced.
    window: Option<Duration>,
    log: Logger,
    outbox: Arc<dyn Outbox>,
    queue: VecDeque<Queued>,
    /// Boxed: parts need not be `Unpin`, the actor holding the queue must be.
    ready: VecDeque<Box<Batch<C::Part>>>,
    current: Option<Box<Batch<C::Part>>>,
    progress: Progress,
    answers: Vec<Answer>,
    /// Seqs used when the outbox could not journal (counting down from the top, so they
    /// never meet the outbox's own).
    local_seq: Seq,
    recovered: usize,
    failed_in_outbox: usize,
    /// The last delivery failed for good.
    permanent: bool,
    last_error: Option<(ChannelError, DateTime<Utc>)>,
    count: Counters,
}

impl<C: Channel> DeliveryQueue<C> {
    /// The queue of channel `name`, paced in windows of `window` if it is paced, with an
    /// in-memory outbox; see [`DeliveryQueue::with_outbox`].
    pub fn new(
        name: impl Into<String>,
        channel: Rc<C>,
        retry: RetryPolicy,
        window: Option<Duration>,
        log: Logger,
    ) -> Self {
        DeliveryQueue {
            name: name.into(),
            channel,
            retry,
            window,
            log,
            outbox: Arc::new(MemoryOutbox::new()),
            queue: VecDeque::new(),
            ready: VecDeque::new(),
            current: None,
            progress: Progress::default(),
            answers: Vec::new(),
            local_seq: u64::MAX,
            recovered: 0,
            failed_in_outbox: 0,
            permanent: false,
            last_error: None,
            count: Counters::default(),
        }
    }

    /// Journals into `outbox`; [`DeliveryQueue::recover`] loads what it holds for this
    /// channel's name.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Entries waiting to be delivered: queued, rendered, or in flight.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.ready.len() + usize::from(self.current.is_some())
    }

    fn outbox_error(&mut self, what: &str, e: &OutboxError) {
        self.count.outbox_errors += 1;
        error!(self.log, "Outbox write failed: a restart now could lose or repeat this notification.";
            "channel" => &self.name, "operation" => what, "error" => %e);
    }

    /// How long ago this channel sent each message of the last window, per the outbox (an
    /// earlier process may have used part of the quota): what to seed its pacer with.
    /// Nothing for a channel that is not paced.
    pub fn quota_used(&mut self, now: DateTime<Utc>) -> Vec<Duration> {
        let Some(window) = self.window else {
            return Vec::new();
        };
        let window = chrono::TimeDelta::from_std(window).unwrap_or_default();
        match self.outbox.sent_since(&self.name, now - window) {
            Ok(times) => {
                if !times.is_empty() {
                    debug!(self.log, "Quota already used in this window."; "channel" => &self.name, "sent" => times.len());
                }
                times
                    .iter()
                    .filter_map(|t| (now - *t).to_std().ok())
                    .collect()
            }
            Err(e) => {
                self.outbox_error("read sent", &e);
                Vec::new()
            }
        }
    }

    /// Loads what the outbox holds for this channel: rendered entries resume at their
    /// first unconfirmed part, queued ones are rendered again, failed ones are counted
    /// and left alone.
    pub fn recover(&mut self) {
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
                                failures: 0,
                                retry_at: None,
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

    /// Journals `n` and queues it, unless the outbox accepted it before. When the outbox
    /// cannot journal, it is queued all the same (a restart would lose it).
    pub fn accept(&mut self, n: Notification) -> Accepted {
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
                return Accepted::Again(self.report(n.id, 0, 0, 0, Ok(())));
            }
            Err(e) => {
                self.outbox_error("accept", &e);
                self.next_local_seq()
            }
        };
        self.count.accepted += 1;
        self.queue.push_back(Queued {
            seq,
            notification: n,
        });
        Accepted::Queued(seq)
    }

    /// What to do at `now`, the destination's quota allowing `capacity` more messages
    /// within its window (`usize::MAX` when it has none). Takes the next batch when none
    /// is in flight: a rendered one first, else the oldest queued notification alone when
    /// everything queued fits in `capacity`, else a digest of everything queued.
    pub fn next(&mut self, now: Moment, capacity: usize) -> Next<C::Part> {
        loop {
            if let Some(b) = &self.current {
                if let Some(at) = b.retry_at.filter(|at| *at > now.instant) {
                    return Next::Wait(at);
                }
                if let Some(part) = b.parts.get(b.next_part) {
                    return Next::Send(part.clone());
                }
                // Every part was confirmed before (a restart between the last part and
                // the removal of its entry), or there were none.
                self.complete(now, Ok(()));
                continue;
            }
            let batch = match self.ready.pop_front() {
                Some(b) => b,
                None if self.queue.is_empty() => return Next::Idle,
                None => match self.prepare(now, capacity.max(1)) {
                    Some(b) => b,
                    None => continue,
                },
            };
            self.progress = Progress {
                sources: batch.sources.iter().map(|(s, _)| *s).collect(),
                parts_total: batch.parts.len(),
                parts_delivered: batch.next_part,
                attempts: 0,
                retrying: false,
            };
            self.current = Some(batch);
        }
    }

    /// Renders the next batch from the queue. `None` when rendering failed (the sources
    /// are then failed and answered).
    fn prepare(&mut self, now: Moment, capacity: usize) -> Option<Box<Batch<C::Part>>> {
        let head = self.queue.front()?;
        let head_parts = self.channel.render(&head.notification);
        let channel = &self.channel;
        let rest = self.queue.iter().skip(1).map(|q| {
            channel
                .render(&q.notification)
                .map_or(0, |parts| parts.len())
        });
        let alone = oldest_goes_alone(&head_parts, rest, capacity);
        let (sources, rendered, digest, insights) = if alone {
            let q = self.queue.pop_front()?;
            let insights = q.notification.insights.len();
            (
                vec![(q.seq, q.notification.id)],
                head_parts,
                false,
                insights,
            )
        } else {
            let items: Vec<Queued> = self.queue.drain(..).collect();
            let merged = merge(items.iter().map(|q| &q.notification));
            let insights = merged.insights.len();
            if items.len() > 1 {
                self.count.merged += items.len() as u64;
            }
            self.count.digests += 1;
            info!(self.log, "Burst beyond the quota: sending a digest.";
                "channel" => &self.name, "notifications" => items.len(),
                "insights" => insights, "max_parts" => capacity);
            let parts = self.channel.render_digest(&merged, capacity);
            let sources = items.iter().map(|q| (q.seq, q.notification.id)).collect();
            (sources, parts, true, insights)
        };
        let encoded = rendered.and_then(|parts| {
            let encoded = parts
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ChannelError::Permanent {
                    reason: format!("a rendered part cannot be journaled: {e}"),
                })?;
            Ok((parts, encoded))
        });
        let (parts, encoded) = match encoded {
            Ok(p) => p,
            Err(e) => {
                for (s, _) in &sources {
                    if let Err(oe) = self.outbox.fail(*s, &e.to_string()) {
                        self.outbox_error("fail", &oe);
                    }
                }
                self.report_failure(now, &e, sources.len());
                self.answer(&sources, 0, 0, 0, Err(e));
                return None;
            }
        };
        let entry = RenderedEntry {
            notification_ids: sources.iter().map(|(_, id)| *id).collect(),
            insights,
            digest,
            parts: encoded,
        };
        let replaces: Vec<Seq> = sources.iter().map(|(s, _)| *s).collect();
        let seq = match self.outbox.render(&self.name, &replaces, &entry) {
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
            failures: 0,
            retry_at: None,
        }))
    }

    fn next_local_seq(&mut self) -> Seq {
        self.local_seq -= 1;
        self.local_seq
    }

    /// May the part [`Next::Send`] named be sent now? (See [`Outbox::may_send`].)
    pub fn may_send(&self) -> Result<(), crate::OutboxError> {
        self.outbox.may_send()
    }

    /// The part [`Next::Send`] named is about to be sent (the pacer let it go).
    pub fn attempting(&mut self) {
        self.progress.attempts += 1;
        self.count.attempts += 1;
    }

    /// The provider's answer to the part [`Next::Send`] named, received at `now`.
    pub fn finish(&mut self, now: Moment, result: Result<(), ChannelError>) -> Finished {
        match result {
            Ok(()) => self.confirmed(now),
            Err(e) => self.failed(now, e),
        }
    }

    fn confirmed(&mut self, now: Moment) -> Finished {
        let Some(batch) = self.current.as_mut() else {
            return Finished::Done;
        };
        crate::failpoint::hit("part-sent");
        let (seq, total) = (batch.seq, batch.parts.len());
        batch.next_part += 1;
        batch.failures = 0;
        batch.retry_at = None;
        let confirmed = batch.next_part;
        // Journal first thing after the provider's answer: a kill from here to the commit
        // is the only way a part is sent twice.
        if let Err(e) = self.outbox.progress(seq, confirmed) {
            self.count.outbox_errors += 1;
            error!(self.log, "Outbox write failed: a restart now would repeat this part.";
                "channel" => &self.name, "error" => %e);
        }
        if self.window.is_some() {
            if let Err(e) = self.outbox.record_sent(&self.name, now.wall) {
                self.count.outbox_errors += 1;
                warn!(self.log, "Outbox write failed: a restart may not know this message used the quota.";
                    "channel" => &self.name, "error" => %e);
            }
        }
        self.progress.parts_delivered = confirmed;
        self.progress.retrying = false;
        self.count.parts_ok += 1;
        debug!(self.log, "Part delivered."; "part" => confirmed, "parts" => total);
        if confirmed < total {
            return Finished::Sent;
        }
        self.complete(now, Ok(()));
        Finished::Done
    }

    fn failed(&mut self, now: Moment, err: ChannelError) -> Finished {
        let Some(batch) = self.current.as_mut() else {
            return Finished::Done;
        };
        let (i, total) = (batch.next_part, batch.parts.len());
        batch.failures += 1;
        let seed = batch.seq.rotate_left(17) ^ ((i as u64) << 8) ^ u64::from(batch.failures);
        let (wait, finished) = match self.retry.after(&err, batch.failures, seed, self.window) {
            AfterFailure::GiveUp => {
                self.complete(now, Err(err));
                return Finished::Done;
            }
            AfterFailure::RetryIn(wait) => (wait, Finished::RetryAt(now.instant + wait)),
            AfterFailure::PauseDestination(d) => (Duration::ZERO, Finished::PauseDestination(d)),
        };
        batch.retry_at = Some(now.instant + wait);
        self.progress.retrying = true;
        if let ChannelError::RateLimited { .. } = err {
            self.count.rate_limited += 1;
        }
        if let ChannelError::Unconfirmed { .. } = err {
            warn!(self.log, "No answer in time: the provider may have received this part. Retrying after a longer wait; the retry may be a duplicate.";
                "channel" => &self.name, "part" => i + 1, "parts" => total, "error" => %err,
                "retry_in" => ?wait);
        } else {
            warn!(self.log, "Delivery attempt failed.";
                "channel" => &self.name, "part" => i + 1, "parts" => total, "error" => %err,
                "retry_in" => ?wait);
        }
        self.last_error = Some((err, now.wall));
        finished
    }

    /// The batch in flight is over: delivered, or failed for good.
    fn complete(&mut self, now: Moment, outcome: Result<(), ChannelError>) {
        let Some(batch) = self.current.take() else {
            return;
        };
        self.progress.retrying = false;
        match &outcome {
            Ok(()) => {
                if let Err(e) = self.outbox.done(batch.seq) {
                    self.outbox_error("done", &e);
                }
                crate::failpoint::hit("outbox-done");
                self.permanent = false;
                self.count.delivered += batch.sources.len().max(1) as u64;
                debug!(self.log, "Delivered."; "channel" => &self.name, "parts" => batch.parts.len());
            }
            Err(e) => {
                if let Err(oe) = self.outbox.fail(batch.seq, &e.to_string()) {
                    self.outbox_error("fail", &oe);
                }
                self.report_failure(now, e, batch.sources.len());
            }
        }
        let (total, delivered, attempts) = (
            self.progress.parts_total,
            self.progress.parts_delivered,
            self.progress.attempts,
        );
        self.answer(&batch.sources, total, delivered, attempts, outcome);
    }

    /// A batch of `notifications` failed for good.
    fn report_failure(&mut self, now: Moment, e: &ChannelError, notifications: usize) {
        self.permanent = true;
        self.count.failed += notifications.max(1) as u64;
        self.failed_in_outbox += 1;
        self.last_error = Some((e.clone(), now.wall));
        error!(self.log, "Channel failed permanently: the notification is kept in the outbox, marked failed, and not retried. Fix the channel's settings.";
            "channel" => &self.name, "error" => %e);
    }

    fn report(
        &self,
        notification_id: u64,
        parts_total: usize,
        parts_delivered: usize,
        attempts: u32,
        outcome: Result<(), ChannelError>,
    ) -> DeliveryReport {
        DeliveryReport {
            channel: self.name.clone(),
            notification_id,
            parts_total,
            parts_delivered,
            attempts,
            outcome,
        }
    }

    fn answer(
        &mut self,
        sources: &[(Seq, u64)],
        parts_total: usize,
        parts_delivered: usize,
        attempts: u32,
        outcome: Result<(), ChannelError>,
    ) {
        for &(seq, id) in sources {
            let report = self.report(id, parts_total, parts_delivered, attempts, outcome.clone());
            self.answers.push(Answer { seq, report });
        }
    }

    /// The answers due to callers since the last call: one per notification of each batch
    /// that ended (a digest answers every notification merged into it).
    pub fn answers(&mut self) -> Vec<Answer> {
        std::mem::take(&mut self.answers)
    }

    /// The answer for a caller whose deadline passed before notification
    /// `notification_id` (entry `seq`) was done: "not delivered yet", and why.
    pub fn late_report(&self, seq: Seq, notification_id: u64) -> DeliveryReport {
        let live = &self.progress;
        let in_flight = live.sources.contains(&seq);
        let reason = match &self.last_error {
            Some((e, _)) if live.retrying || !in_flight => format!(
                "not delivered within {:?} (last error: {e}); kept in the outbox and still retried",
                self.retry.deadline
            ),
            _ => format!(
                "not delivered within {:?}; kept in the outbox and still being sent",
                self.retry.deadline
            ),
        };
        let (total, delivered, attempts) = if in_flight {
            (live.parts_total, live.parts_delivered, live.attempts)
        } else {
            (0, 0, 0)
        };
        self.report(
            notification_id,
            total,
            delivered,
            attempts,
            Err(ChannelError::Retryable { reason }),
        )
    }

    pub fn drain_report(&self) -> DrainReport {
        DrainReport {
            channel: self.name.clone(),
            recovered: self.recovered,
            delivered: self.count.delivered,
            failed: self.count.failed,
            pending: self.pending(),
            failed_in_outbox: self.failed_in_outbox,
        }
    }

    pub fn health(&self) -> ChannelHealth {
        let state = if self.permanent {
            HealthState::Failed
        } else if self.progress.retrying {
            HealthState::Degraded
        } else {
            HealthState::Ok
        };
        ChannelHealth {
            channel: self.name.clone(),
            state,
            last_error: self.last_error.as_ref().map(|(e, _)| e.to_string()),
            last_error_at: self.last_error.as_ref().map(|(_, at)| *at),
            accepted: self.count.accepted,
            delivered: self.count.delivered,
            failed: self.count.failed,
            parts_delivered: self.count.parts_ok,
            attempts: self.count.attempts,
            rate_limited: self.count.rate_limited,
            digests: self.count.digests,
            merged: self.count.merged,
            pending: self.pending(),
            failed_in_outbox: self.failed_in_outbox,
            outbox_errors: self.count.outbox_errors,
        }
    }
}

#[cfg(test)]
mod tests;
