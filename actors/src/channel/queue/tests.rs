//! The delivery queue on virtual time: every moment is made up, nothing sleeps.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::channel::testing::{
    discard, insight, notification, quick, rendered, retryable, single, Script,
};
use crate::message::Severity;

const MINUTE: Duration = Duration::from_secs(60);

fn queue_of(ch: &Script, window: Option<Duration>) -> (DeliveryQueue<Script>, Arc<MemoryOutbox>) {
    let outbox = Arc::new(MemoryOutbox::new());
    let q = DeliveryQueue::new("t", Rc::new(ch.clone()), quick(), window, discard())
        .with_outbox(outbox.clone());
    (q, outbox)
}

fn queue(window: Option<Duration>) -> (DeliveryQueue<Script>, Arc<MemoryOutbox>) {
    queue_of(&Script::default(), window)
}

fn queued(a: Accepted) -> Seq {
    match a {
        Accepted::Queued(seq) => seq,
        Accepted::Again(r) => panic!("not queued: {r:?}"),
    }
}

/// Asks what to do at `now` and expects a part to send, about to be attempted.
fn send(q: &mut DeliveryQueue<Script>, now: Moment, capacity: usize) -> String {
    match q.next(now, capacity) {
        Next::Send(part) => {
            q.attempting();
            part
        }
        other => panic!("nothing to send: {other:?}"),
    }
}

/// A queue whose one notification's one part ("insight 1") is being sent at the moment
/// returned.
fn in_flight(window: Option<Duration>) -> (DeliveryQueue<Script>, Arc<MemoryOutbox>, Moment) {
    let (mut q, outbox) = queue(window);
    let t = Moment::now();
    queued(q.accept(single(1)));
    assert_eq!(send(&mut q, t, usize::MAX), "insight 1");
    (q, outbox, t)
}

fn body(outbox: &MemoryOutbox) -> Vec<(EntryBody, usize, Option<String>)> {
    let entries = outbox.entries("t").unwrap();
    entries
        .into_iter()
        .map(|e| (e.body, e.next_part, e.failed))
        .collect()
}

/// Each step journaled: queued on accept, rendered before the first part, progress after
/// each confirmed part, removed when delivered; the caller answered once, at the end.
#[test]
fn a_notification_goes_part_by_part_and_each_step_is_journaled() {
    let (mut q, outbox) = queue(None);
    let t = Moment::now();
    let n = notification(
        7,
        vec![insight(1, Severity::Warning), insight(2, Severity::Info)],
    );
    let seq = queued(q.accept(n));
    assert!(matches!(
        body(&outbox)[..],
        [(EntryBody::Queued(_), 0, None)]
    ));
    assert_eq!(q.pending(), 1);

    assert_eq!(send(&mut q, t, usize::MAX), "insight 1");
    match &body(&outbox)[..] {
        [(EntryBody::Rendered(r), 0, None)] => {
            assert_eq!((r.notification_ids.as_slice(), r.digest), (&[7][..], false))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.finish(t, Ok(())), Finished::Sent);
    assert_eq!(body(&outbox)[0].1, 1, "progress journaled");
    assert!(q.answers().is_empty(), "answered only at the end");

    assert_eq!(send(&mut q, t, usize::MAX), "insight 2");
    assert_eq!(q.finish(t, Ok(())), Finished::Done);
    let answers = q.answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].seq, seq);
    let r = &answers[0].report;
    assert_eq!(
        (
            r.notification_id,
            r.parts_total,
            r.parts_delivered,
            r.attempts
        ),
        (7, 2, 2, 2)
    );
    assert_eq!(r.outcome, Ok(()));
    assert!(body(&outbox).is_empty(), "done entries are removed");
    assert_eq!(q.next(t, usize::MAX), Next::Idle);
    let h = q.health();
    assert_eq!(
        (h.state, h.delivered, h.parts_delivered),
        (HealthState::Ok, 1, 2)
    );
    assert_eq!(q.pending(), 0);
}

/// A temporary failure makes the part wait its jittered backoff, doubled after each
/// further failure; asked before that, the queue says until when.
#[test]
fn temporary_failures_wait_their_backoff() {
    let (mut q, _, t) = in_flight(None);
    let at = match q.finish(t, Err(retryable("502"))) {
        Finished::RetryAt(at) => at,
        other => panic!("{other:?}"),
    };
    let first = at - t.instant;
    assert!(
        first >= Duration::from_micros(2500) && first < Duration::from_millis(5),
        "{first:?}"
    );
    assert_eq!(q.next(t.after(first / 2), usize::MAX), Next::Wait(at));
    assert_eq!(q.health().state, HealthState::Degraded);

    let t2 = t.after(first);
    assert_eq!(
        send(&mut q, t2, usize::MAX),
        "insight 1",
        "the same part again"
    );
    let second = match q.finish(t2, Err(retryable("timeout"))) {
        Finished::RetryAt(at) => at - t2.instant,
        other => panic!("{other:?}"),
    };
    assert!(
        second >= Duration::from_millis(5) && second < Duration::from_millis(10),
        "{second:?}"
    );
    let t3 = t2.after(second);
    send(&mut q, t3, usize::MAX);
    assert_eq!(q.finish(t3, Ok(())), Finished::Done);
    let r = &q.answers()[0].report;
    assert_eq!((r.attempts, r.outcome.clone()), (3, Ok(())));
    let h = q.health();
    assert_eq!((h.state, h.attempts), (HealthState::Ok, 3));
    assert!(h.last_error.unwrap().contains("timeout"));
    assert_eq!(h.last_error_at, Some(t2.wall));
}

/// No answer in time: the provider may have the part, so it goes again only after the
/// destination's window (here longer than any backoff).
#[test]
fn an_unconfirmed_part_waits_the_window() {
    let (mut q, _, t) = in_flight(Some(MINUTE));
    let unconfirmed = ChannelError::Unconfirmed {
        reason: "timeout".into(),
    };
    assert_eq!(
        q.finish(t, Err(unconfirmed)),
        Finished::RetryAt(t.instant + MINUTE)
    );
    assert_eq!(
        q.next(t.after(MINUTE - Duration::from_millis(1)), usize::MAX),
        Next::Wait(t.instant + MINUTE)
    );
    assert_eq!(send(&mut q, t.after(MINUTE), usize::MAX), "insight 1");
}

/// "Too many" pauses a paced destination (the part then goes when the pacer lets it) and
/// simply waits on an unpaced one.
#[test]
fn rate_limited_pauses_a_paced_destination() {
    let limited = || ChannelError::RateLimited {
        reason: "45009".into(),
        retry_after: Duration::from_secs(7),
    };
    let (mut paced, outbox, t) = in_flight(Some(MINUTE));
    assert_eq!(
        paced.finish(t, Err(limited())),
        Finished::PauseDestination(Duration::from_secs(7))
    );
    assert_eq!(send(&mut paced, t, 20), "insight 1", "the pacer holds it");
    assert_eq!(
        paced.finish(t.after(Duration::from_secs(7)), Ok(())),
        Finished::Done
    );
    assert_eq!(paced.health().rate_limited, 1);
    assert_eq!(
        outbox.sent_since("t", t.wall).unwrap(),
        [t.wall + chrono::TimeDelta::seconds(7)],
        "a paced channel journals what used the quota"
    );

    let (mut unpaced, outbox) = queue(None);
    queued(unpaced.accept(single(2)));
    send(&mut unpaced, t, usize::MAX);
    assert_eq!(
        unpaced.finish(t, Err(limited())),
        Finished::RetryAt(t.instant + Duration::from_secs(7))
    );
    send(&mut unpaced, t.after(Duration::from_secs(7)), usize::MAX);
    unpaced.finish(t.after(Duration::from_secs(7)), Ok(()));
    assert!(outbox.sent_since("t", t.wall).unwrap().is_empty());
}

/// What fits in the capacity goes one by one; beyond it, everything queued becomes one
/// digest rendered within the capacity, and every caller hears about its own.
#[test]
fn a_burst_beyond_the_capacity_is_one_digest() {
    let (mut q, outbox) = queue(Some(MINUTE));
    let t = Moment::now();
    for k in 0..3 {
        queued(q.accept(single(k)));
    }
    assert_eq!(send(&mut q, t, 3), "insight 0", "three fit in three");
    q.finish(t, Ok(()));
    assert_eq!(q.answers().len(), 1);
    for k in 3..8 {
        queued(q.accept(single(k)));
    }
    assert_eq!(
        send(&mut q, t, 3),
        "digest 3: insight 1,insight 2,insight 3,insight 4,insight 5,insight 6,insight 7"
    );
    match &body(&outbox)[..] {
        [(EntryBody::Rendered(r), 0, None)] => {
            assert_eq!(r.notification_ids, (1..8).collect::<Vec<_>>());
            assert_eq!((r.insights, r.digest), (7, true));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.finish(t, Ok(())), Finished::Done);
    let answers = q.answers();
    let ids: Vec<u64> = answers.iter().map(|a| a.report.notification_id).collect();
    assert_eq!(ids, (1..8).collect::<Vec<_>>());
    assert!(answers
        .iter()
        .all(|a| a.report.outcome.is_ok() && a.report.parts_total == 1));
    let h = q.health();
    assert_eq!((h.digests, h.merged, h.delivered), (1, 7, 8));
}

/// A notification that cannot be rendered fails on its own, at once; the next one goes.
#[test]
fn a_notification_that_cannot_be_rendered_fails_alone() {
    let ch = Script::default();
    ch.unrenderable.borrow_mut().push(1);
    let (mut q, outbox) = queue_of(&ch, None);
    let t = Moment::now();
    let bad = queued(q.accept(single(1)));
    queued(q.accept(single(2)));
    assert_eq!(send(&mut q, t, usize::MAX), "insight 2");
    let answers = q.answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].seq, bad);
    assert!(answers[0]
        .report
        .outcome
        .as_ref()
        .is_err_and(ChannelError::is_permanent));
    assert_eq!(q.health().state, HealthState::Failed);
    q.finish(t, Ok(()));
    let h = q.health();
    assert_eq!(
        (h.state, h.failed, h.failed_in_outbox),
        (HealthState::Ok, 1, 1)
    );
    match &body(&outbox)[..] {
        [(EntryBody::Queued(n), 0, Some(why))] => {
            assert_eq!(n.id, 1);
            assert!(why.contains("too long"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

/// A permanent error is not retried: the entry stays in the outbox, marked failed.
#[test]
fn a_permanent_error_fails_the_entry_for_good() {
    let (mut q, outbox, t) = in_flight(None);
    let refused = ChannelError::Permanent {
        reason: "errcode 93000".into(),
    };
    assert_eq!(q.finish(t, Err(refused)), Finished::Done);
    let r = &q.answers()[0].report;
    assert_eq!((r.attempts, r.parts_delivered), (1, 0));
    assert_eq!(q.next(t, usize::MAX), Next::Idle, "not retried");
    assert_eq!(
        body(&outbox)[0].2.as_deref(),
        Some("permanent failure: errcode 93000")
    );
    let d = q.drain_report();
    assert_eq!((d.failed, d.failed_in_outbox, d.pending), (1, 1, 0));
}

/// A caller whose deadline passed hears where its notification is: in flight (with its
/// progress and the last error) or still queued behind another.
#[test]
fn a_late_answer_says_where_the_notification_is() {
    let (mut q, _) = queue(None);
    let t = Moment::now();
    let first = queued(q.accept(single(1)));
    let second = queued(q.accept(single(2)));
    send(&mut q, t, usize::MAX);
    let r = q.late_report(first, 1);
    match &r.outcome {
        Err(ChannelError::Retryable { reason }) => {
            assert!(reason.contains("still being sent"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    q.finish(t, Err(retryable("down")));
    let r = q.late_report(first, 1);
    assert_eq!((r.notification_id, r.parts_total, r.attempts), (1, 1, 1));
    match &r.outcome {
        Err(ChannelError::Retryable { reason }) => {
            assert!(
                reason.contains("last error: temporary failure: down"),
                "{reason}"
            );
            assert!(reason.contains("kept in the outbox"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let r = q.late_report(second, 2);
    assert_eq!((r.parts_total, r.attempts), (0, 0), "not in flight");
}

/// After a restart: an entry whose parts were all confirmed is completed without sending
/// anything again; one whose stored parts cannot be read back is marked failed; what was
/// queued is rendered after what was rendered.
#[test]
fn recovery_completes_confirmed_entries_and_fails_unreadable_ones() {
    let outbox = Arc::new(MemoryOutbox::new());
    let stored = |k| StoredNotification::from(&single(k));
    let a = outbox.accept("t", &stored(1)).unwrap().unwrap();
    let confirmed = outbox
        .render("t", &[a], &rendered(vec![1], &["\"one\"", "\"two\""]))
        .unwrap();
    outbox.progress(confirmed, 2).unwrap();
    let b = outbox.accept("t", &stored(2)).unwrap().unwrap();
    let unreadable = outbox
        .render("t", &[b], &rendered(vec![2], &["not json"]))
        .unwrap();
    outbox.accept("t", &stored(3)).unwrap();

    let mut q = DeliveryQueue::new("t", Rc::<Script>::default(), quick(), None, discard())
        .with_outbox(outbox.clone());
    q.recover();
    assert_eq!(q.pending(), 2);
    let t = Moment::now();
    assert_eq!(send(&mut q, t, usize::MAX), "insight 3");
    assert!(q.answers().is_empty(), "nobody waits for recovered entries");
    q.finish(t, Ok(()));
    let d = q.drain_report();
    assert_eq!((d.recovered, d.delivered, d.pending), (2, 2, 0));
    assert_eq!(d.failed_in_outbox, 1);
    let left = outbox.entries("t").unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, unreadable);
    assert!(left[0]
        .failed
        .as_deref()
        .is_some_and(|why| why.starts_with("stored parts cannot be read back")));
}

/// The pacer of a restarted channel is seeded with what the outbox says was sent in the
/// last window; an unpaced channel does not ask.
#[test]
fn the_quota_used_comes_from_the_outbox() {
    let (mut q, outbox) = queue(Some(MINUTE));
    let now: DateTime<Utc> = Utc::now();
    for ago in [10, 100] {
        outbox
            .record_sent("t", now - chrono::TimeDelta::seconds(ago))
            .unwrap();
    }
    assert_eq!(q.quota_used(now), [Duration::from_secs(10)]);
    let (mut unpaced, _) = queue(None);
    assert!(unpaced.quota_used(now).is_empty());
}

/// A notification offered again (the gate's replay after a restart) is answered at once
/// and not queued twice.
#[test]
fn a_notification_offered_again_is_answered_at_once() {
    let (mut q, _) = queue(None);
    queued(q.accept(single(5)));
    match q.accept(single(5)) {
        Accepted::Again(r) => {
            assert_eq!(
                (r.notification_id, r.parts_total, r.outcome),
                (5, 0, Ok(()))
            )
        }
        Accepted::Queued(seq) => panic!("queued again as {seq}"),
    }
    assert_eq!((q.pending(), q.health().accepted), (1, 1));
}

/// An outbox that can write nothing.
struct Broken;

fn broken<T>() -> Result<T, OutboxError> {
    Err(OutboxError::new("disk full"))
}

impl Outbox for Broken {
    fn accept(&self, _: &str, _: &StoredNotification) -> Result<Option<Seq>, OutboxError> {
        broken()
    }
    fn render(&self, _: &str, _: &[Seq], _: &RenderedEntry) -> Result<Seq, OutboxError> {
        broken()
    }
    fn progress(&self, _: Seq, _: usize) -> Result<(), OutboxError> {
        broken()
    }
    fn fail(&self, _: Seq, _: &str) -> Result<(), OutboxError> {
        broken()
    }
    fn requeue(&self, _: Seq) -> Result<bool, OutboxError> {
        broken()
    }
    fn done(&self, _: Seq) -> Result<(), OutboxError> {
        broken()
    }
    fn entries(&self, _: &str) -> Result<Vec<OutboxEntry>, OutboxError> {
        broken()
    }
    fn backlog(&self) -> Result<Vec<crate::outbox::Backlog>, OutboxError> {
        broken()
    }
    fn record_sent(&self, _: &str, _: DateTime<Utc>) -> Result<(), OutboxError> {
        broken()
    }
    fn sent_since(&self, _: &str, _: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>, OutboxError> {
        broken()
    }
}

/// Without a journal the channel keeps delivering from memory, counting each failed write.
#[test]
fn a_broken_outbox_does_not_stop_delivery() {
    let mut q = DeliveryQueue::new(
        "t",
        Rc::<Script>::default(),
        quick(),
        Some(MINUTE),
        discard(),
    )
    .with_outbox(Arc::new(Broken));
    q.recover();
    assert!(q.quota_used(Utc::now()).is_empty());
    let t = Moment::now();
    let a = queued(q.accept(single(1)));
    let b = queued(q.accept(single(2)));
    assert_ne!(a, b, "local entries are told apart");
    assert_eq!(send(&mut q, t, 20), "insight 1");
    assert_eq!(q.finish(t, Ok(())), Finished::Done);
    assert_eq!(q.answers()[0].seq, a);
    let h = q.health();
    // read, read sent, accept ×2, render, progress, record sent, done.
    assert_eq!((h.delivered, h.outbox_errors), (1, 8));
}
