//! The outbox: a journal of what a channel has accepted and not yet delivered, so that a
//! restart neither re-sends what was delivered nor forgets what was pending.
//!
//! An entry goes through two shapes:
//!
//! 1. **queued** — the notification as accepted from the gate, journaled before anything
//!    is sent (so it can still be merged into a digest with what arrives after it);
//! 2. **rendered** — the exact bytes of each part, replacing the queued entries it was
//!    rendered from in one transaction, with the index of the next part to send. A
//!    resumed report therefore continues at the part that had not been confirmed, with
//!    identical bytes, even if the renderer changed in between.
//!
//! The channel actor records progress right after the provider confirmed a part. A kill
//! between the provider's answer and that record means the part is sent again after the
//! restart: at most one part, once, may be repeated (the provider offers no idempotency
//! key to do better). An entry that failed permanently is kept, marked failed, and not
//! retried until a person re-queues it (`powa-sentinel outbox retry`); a done entry is
//! removed.
//!
//! Accepting is idempotent by (channel, notification id): the outbox remembers the ids it
//! accepted ([`ACCEPTED_KEEP`], at most [`ACCEPTED_KEEP_MAX`]), and a notification offered
//! again — the gate replays what it decided but had not seen journaled when the process
//! died — is not journaled (nor sent) a second time, whether it is still pending or was
//! delivered long ago.
//!
//! The trait is domain-free and synchronous (entries are small and writes are one short
//! transaction each); [`MemoryOutbox`] keeps everything in memory, the domain crate
//! provides a durable implementation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::OutboxError;
use crate::message::{Insight, Mentions, Notification, NotifyReason};

/// Identity of an outbox entry: increases with every entry written, across restarts.
pub type Seq = u64;

/// A notification as journaled: everything needed to render it again after a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredNotification {
    pub id: u64,
    pub channel: String,
    pub reason: NotifyReason,
    pub insights: Vec<Insight>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub mentions: Mentions,
}

impl From<&Notification> for StoredNotification {
    fn from(n: &Notification) -> Self {
        StoredNotification {
            id: n.id,
            channel: n.channel.clone(),
            reason: n.reason,
            insights: n.insights.as_ref().clone(),
            created_at: n.created_at,
            mentions: n.mentions.clone(),
        }
    }
}

impl From<StoredNotification> for Notification {
    fn from(s: StoredNotification) -> Self {
        Notification {
            id: s.id,
            channel: s.channel,
            reason: s.reason,
            insights: Arc::new(s.insights),
            created_at: s.created_at,
            mentions: s.mentions,
        }
    }
}

/// A notification (or a digest of several) rendered into the parts sent to the provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderedEntry {
    /// The ids of the notifications it was rendered from.
    pub notification_ids: Vec<u64>,
    /// How many insights it represents.
    pub insights: usize,
    /// Rendered as a digest (the quota did not allow everything in full).
    pub digest: bool,
    /// Each part as encoded by the channel actor (opaque here).
    pub parts: Vec<Vec<u8>>,
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EntryBody {
    Queued(StoredNotification),
    Rendered(RenderedEntry),
}

/// One entry, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry {
    pub seq: Seq,
    pub channel: String,
    pub body: EntryBody,
    /// When the (oldest) notification it holds was accepted; `None` for entries written
    /// by a version that did not record it.
    pub accepted_at: Option<DateTime<Utc>>,
    /// Parts already confirmed by the provider (rendered entries only).
    pub next_part: usize,
    /// Why delivery failed permanently; such an entry is kept and not retried.
    pub failed: Option<String>,
}

/// How much one channel has in the outbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub channel: String,
    pub pending: usize,
    pub failed: usize,
}

/// The journal of a set of channels. Implementations must make each call atomic and
/// durable before returning (a crash right after a call keeps its effect).
pub trait Outbox: Send + Sync + 'static {
    /// Journals a newly accepted notification of `channel`. `None`: this outbox already
    /// accepted a notification with this id for this channel (pending, failed or
    /// delivered): nothing is journaled, it must not be sent again.
    fn accept(&self, channel: &str, n: &StoredNotification) -> Result<Option<Seq>, OutboxError>;

    /// Replaces the queued entries `replaces` by one rendered entry, in one transaction.
    fn render(
        &self,
        channel: &str,
        replaces: &[Seq],
        entry: &RenderedEntry,
    ) -> Result<Seq, OutboxError>;

    /// Records that the parts before `next_part` of entry `seq` were delivered.
    fn progress(&self, seq: Seq, next_part: usize) -> Result<(), OutboxError>;

    /// Marks `seq` as failed for good: kept for a person to see, not retried until
    /// [`Outbox::requeue`].
    fn fail(&self, seq: Seq, error: &str) -> Result<(), OutboxError>;

    /// Clears the failed mark of `seq`, so the next channel actor started on this outbox
    /// sends it again (from its first unconfirmed part). False when `seq` is not a failed
    /// entry.
    fn requeue(&self, seq: Seq) -> Result<bool, OutboxError>;

    /// Removes a delivered entry.
    fn done(&self, seq: Seq) -> Result<(), OutboxError>;

    /// Every entry of `channel`, failed ones included, oldest first.
    fn entries(&self, channel: &str) -> Result<Vec<OutboxEntry>, OutboxError>;

    /// Pending and failed counts of every channel that has entries.
    fn backlog(&self) -> Result<Vec<Backlog>, OutboxError>;

    /// Records that a message of `channel` was confirmed at `at`. The quota of a
    /// destination counts messages in a rolling window; remembering them lets a restarted
    /// process keep counting (instead of starting from a full budget).
    fn record_sent(&self, channel: &str, at: DateTime<Utc>) -> Result<(), OutboxError>;

    /// May a part be sent now? An outbox shared by replicas answers no once this
    /// process may have lost the right to deliver (its lease passed: another replica
    /// sends now). Asked right before each send, after the pacer's wait.
    fn may_send(&self) -> Result<(), OutboxError> {
        Ok(())
    }

    /// When messages of `channel` were confirmed since `since`, oldest first.
    fn sent_since(
        &self,
        channel: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, OutboxError>;
}

/// How long and how many accepted notification ids an outbox remembers, to refuse a
/// notification offered twice: longer than a process stays down in practice, fewer than
/// would grow without bound (an id is a few dozen bytes).
pub const ACCEPTED_KEEP: chrono::TimeDelta = chrono::TimeDelta::days(7);
pub const ACCEPTED_KEEP_MAX: usize = 10_000;

/// Which remembered ids to forget at `now`: those older than [`ACCEPTED_KEEP`], and when
/// more than [`ACCEPTED_KEEP_MAX`] remain, the oldest down to nine tenths of it (so the
/// next scan is thousands of accepts away). Helper for implementations.
pub fn accepted_to_forget<K: Clone>(
    ids: impl IntoIterator<Item = (K, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Vec<K> {
    let mut all: Vec<(K, DateTime<Utc>)> = ids.into_iter().collect();
    all.sort_by_key(|(_, at)| *at);
    let horizon = now - ACCEPTED_KEEP;
    let old = all.iter().take_while(|(_, at)| *at < horizon).count();
    let excess = if all.len() > ACCEPTED_KEEP_MAX {
        all.len() - (ACCEPTED_KEEP_MAX - ACCEPTED_KEEP_MAX / 10)
    } else {
        0
    };
    let n = old.max(excess);
    all.into_iter().take(n).map(|(k, _)| k).collect()
}

/// How long and how many send times an outbox keeps per channel: more than any quota
/// window, fewer than would grow without bound.
pub const SENT_KEEP: chrono::TimeDelta = chrono::TimeDelta::hours(1);
pub const SENT_KEEP_MAX: usize = 256;

/// Adds `at` to a channel's send times and forgets what is past [`SENT_KEEP`] (helper for
/// implementations of [`Outbox::record_sent`]).
pub fn remember_sent(times: &mut Vec<DateTime<Utc>>, at: DateTime<Utc>) {
    times.push(at);
    times.sort_unstable();
    let horizon = at - SENT_KEEP;
    times.retain(|t| *t >= horizon);
    if times.len() > SENT_KEEP_MAX {
        times.drain(..times.len() - SENT_KEEP_MAX);
    }
}

/// Sums up entries per channel (helper for implementations of [`Outbox::backlog`]).
pub fn backlog_of<'a>(entries: impl IntoIterator<Item = (&'a str, bool)>) -> Vec<Backlog> {
    let mut by: BTreeMap<&str, Backlog> = BTreeMap::new();
    for (channel, failed) in entries {
        let b = by.entry(channel).or_insert_with(|| Backlog {
            channel: channel.to_string(),
            ..Backlog::default()
        });
        if failed {
            b.failed += 1;
        } else {
            b.pending += 1;
        }
    }
    by.into_values().collect()
}

/// The earlier of two optional times (helper for implementations of [`Outbox::render`]).
pub fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An outbox that lives as long as the process: what is pending survives a channel
/// actor's restart, not the process's. Used when no state directory is configured.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    next: AtomicU64,
    entries: Mutex<BTreeMap<Seq, OutboxEntry>>,
    sent: Mutex<BTreeMap<String, Vec<DateTime<Utc>>>>,
    accepted: Mutex<BTreeMap<(String, u64), DateTime<Utc>>>,
}

impl MemoryOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Seq, OutboxEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_seq(&self) -> Seq {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }
}

impl Outbox for MemoryOutbox {
    fn accept(&self, channel: &str, n: &StoredNotification) -> Result<Option<Seq>, OutboxError> {
        let now = Utc::now();
        {
            let mut ids = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
            if ids.insert((channel.to_string(), n.id), now).is_some() {
                return Ok(None);
            }
            if ids.len() > ACCEPTED_KEEP_MAX {
                let forget = accepted_to_forget(ids.iter().map(|(k, at)| (k.clone(), *at)), now);
                for k in forget {
                    ids.remove(&k);
                }
            }
        }
        let seq = self.next_seq();
        self.lock().insert(
            seq,
            OutboxEntry {
                seq,
                channel: channel.to_string(),
                body: EntryBody::Queued(n.clone()),
                accepted_at: Some(now),
                next_part: 0,
                failed: None,
            },
        );
        Ok(Some(seq))
    }

    fn render(&self, ch: &str, from: &[Seq], entry: &RenderedEntry) -> Result<Seq, OutboxError> {
        let seq = self.next_seq();
        let mut map = self.lock();
        let mut accepted_at = None;
        for s in from {
            if let Some(e) = map.remove(s) {
                accepted_at = earliest(accepted_at, e.accepted_at);
            }
        }
        map.insert(
            seq,
            OutboxEntry {
                seq,
                channel: ch.to_string(),
                body: EntryBody::Rendered(entry.clone()),
                accepted_at: accepted_at.or(Some(Utc::now())),
                next_part: 0,
                failed: None,
            },
        );
        Ok(seq)
    }

    fn progress(&self, seq: Seq, next_part: usize) -> Result<(), OutboxError> {
        if let Some(e) = self.lock().get_mut(&seq) {
            e.next_part = next_part;
        }
        Ok(())
    }

    fn fail(&self, seq: Seq, error: &str) -> Result<(), OutboxError> {
        if let Some(e) = self.lock().get_mut(&seq) {
            e.failed = Some(error.to_string());
        }
        Ok(())
    }

    fn requeue(&self, seq: Seq) -> Result<bool, OutboxError> {
        Ok(self
            .lock()
            .get_mut(&seq)
            .and_then(|e| e.failed.take())
            .is_some())
    }

    fn done(&self, seq: Seq) -> Result<(), OutboxError> {
        self.lock().remove(&seq);
        Ok(())
    }

    fn entries(&self, channel: &str) -> Result<Vec<OutboxEntry>, OutboxError> {
        Ok(self
            .lock()
            .values()
            .filter(|e| e.channel == channel)
            .cloned()
            .collect())
    }

    fn backlog(&self) -> Result<Vec<Backlog>, OutboxError> {
        let map = self.lock();
        Ok(backlog_of(
            map.values()
                .map(|e| (e.channel.as_str(), e.failed.is_some())),
        ))
    }

    fn sent_since(
        &self,
        channel: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, OutboxError> {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        Ok(sent
            .get(channel)
            .map(|v| v.iter().copied().filter(|t| *t >= since).collect())
            .unwrap_or_default())
    }

    fn record_sent(&self, channel: &str, at: DateTime<Utc>) -> Result<(), OutboxError> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        remember_sent(sent.entry(channel.to_string()).or_default(), at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: u64) -> StoredNotification {
        StoredNotification {
            id,
            channel: "ops".into(),
            reason: NotifyReason::Report,
            insights: Vec::new(),
            created_at: Utc::now(),
            mentions: Mentions::default(),
        }
    }

    #[test]
    fn memory_outbox_follows_an_entry_through_its_life() {
        let o = MemoryOutbox::new();
        let a = o.accept("ops", &stored(1)).unwrap().unwrap();
        let b = o.accept("ops", &stored(2)).unwrap().unwrap();
        let c = o.accept("other", &stored(3)).unwrap().unwrap();
        assert!(a < b && b < c);
        assert_eq!(o.accept("ops", &stored(1)).unwrap(), None, "offered twice");
        let r = o
            .render(
                "ops",
                &[a, b],
                &RenderedEntry {
                    notification_ids: vec![1, 2],
                    insights: 0,
                    digest: true,
                    parts: vec![b"p1".to_vec(), b"p2".to_vec()],
                },
            )
            .unwrap();
        let e = o.entries("ops").unwrap();
        assert_eq!(e.len(), 1, "the queued entries were replaced");
        assert_eq!(e[0].seq, r);
        o.progress(r, 1).unwrap();
        assert_eq!(o.entries("ops").unwrap()[0].next_part, 1);
        o.fail(c, "errcode 93000").unwrap();
        assert!(!o.requeue(r).unwrap(), "not failed");
        assert_eq!(
            o.backlog().unwrap(),
            vec![
                Backlog {
                    channel: "ops".into(),
                    pending: 1,
                    failed: 0
                },
                Backlog {
                    channel: "other".into(),
                    pending: 0,
                    failed: 1
                }
            ]
        );
        o.done(r).unwrap();
        assert!(o.entries("ops").unwrap().is_empty());
        let t = Utc::now();
        o.record_sent("ops", t - chrono::TimeDelta::hours(2))
            .unwrap();
        o.record_sent("ops", t - chrono::TimeDelta::seconds(90))
            .unwrap();
        o.record_sent("ops", t).unwrap();
        let minute = t - chrono::TimeDelta::minutes(1);
        assert_eq!(o.sent_since("ops", minute).unwrap(), [t]);
        let all = o
            .sent_since("ops", t - chrono::TimeDelta::hours(3))
            .unwrap();
        assert_eq!(all.len(), 2, "older than an hour is forgotten");
        assert_eq!(
            o.entries("other").unwrap()[0].failed.as_deref(),
            Some("errcode 93000")
        );
        assert!(o.requeue(c).unwrap());
        assert_eq!(o.entries("other").unwrap()[0].failed, None, "re-queued");
        assert!(
            o.accept("other", &stored(1)).unwrap().is_some(),
            "per channel"
        );
    }

    #[test]
    fn remembered_ids_are_forgotten_by_age_then_by_count() {
        let now = Utc::now();
        let day = chrono::TimeDelta::days(1);
        let ids = [(1, now - day * 8), (2, now - day), (3, now)];
        assert_eq!(accepted_to_forget(ids, now), [1]);
        let many = (0..ACCEPTED_KEEP_MAX as u64 + 3)
            .map(|k| (k, now - chrono::TimeDelta::seconds(100_000 - k as i64)));
        let gone = accepted_to_forget(many, now);
        assert_eq!(gone.len(), ACCEPTED_KEEP_MAX / 10 + 3);
        assert_eq!(gone[..3], [0, 1, 2], "the oldest go");
    }
}
