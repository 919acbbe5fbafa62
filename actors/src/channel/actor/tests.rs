//! The shell's tests: the actor on actix and real (short) time, against a scripted
//! channel. The decisions themselves are tested on virtual time in `queue`'s tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::channel::testing::{discard, insight, notification, quick, rendered, Script};
use crate::channel::{ChannelActor, Deliver, Drain, GetHealth, HealthState, RetryPolicy};
use crate::error::ChannelError;
use crate::message::Severity;
use crate::outbox::{MemoryOutbox, Outbox, RenderedEntry, StoredNotification};
use crate::throttle::Pacer;

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
                insights: 3,
                ..rendered(vec![1], &["\"stored 1\"", "\"stored 2\"", "\"stored 3\""])
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
