//! Delivery guarantees of the channel actors against the fake WeCom robot, over real HTTP
//! on loopback, through `channels::start` with the on-disk outbox:
//!
//! - a burst of 1,000 insights to one robot key: no message rejected, at most 20 in any
//!   rolling window, every insight represented (in full or counted in a digest);
//! - an outage (HTTP 500, then dropped connections) loses nothing and repeats nothing,
//!   also when callers stopped waiting;
//! - a bad key (errcode 93000) fails its channel for good, keeps its notifications in the
//!   outbox marked failed, and does not hold up another channel.
//!
//! The rate window is scaled down on both sides (20 messages per 2 s instead of per
//! minute) so the tests take seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use chrono::{TimeZone, Utc};
use slog::{o, Logger};

use powa_sentinel::actors::channel::{Deliver, GetHealth, HealthState, RetryPolicy};
use powa_sentinel::actors::outbox::Outbox;
use powa_sentinel::actors::{
    ChannelError, Fingerprint, Insight, Notification, NotifyReason, Severity, Window,
};
use powa_sentinel::channels::{self, ChannelEnv, ChannelSettings};
use powa_sentinel::outbox::RedbOutbox;

use crate::fake_wecom::{Accepted, FakeConfig, FakeWeCom, Fault};
use crate::support::Turn;

const KEY: &str = "robot-key-burst-0001";
const WINDOW: Duration = Duration::from_secs(2);

fn insight(k: usize) -> Insight {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    let labels: BTreeMap<String, String> = [
        ("repository", "main".to_string()),
        ("server", "remote1".to_string()),
        ("database", "app".to_string()),
        ("queryid", format!("-{}", 1_000_000 + k)),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    Insight {
        fingerprint: Fingerprint::of(["delivery", &k.to_string()]),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity: match k % 10 {
            0 => Severity::Critical,
            1..=4 => Severity::Warning,
            _ => Severity::Info,
        },
        labels,
        title: format!("Slow query {k}"),
        advice: "Check its plan.".into(),
        text: Some(format!("SELECT * FROM t{k} WHERE x = $1")),
        metrics: BTreeMap::from([
            ("calls".to_string(), 5.0),
            ("mean_time_ms".to_string(), 80.0),
        ]),
        window: Window { start: t0, end: t1 },
        observed_at: t1,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

fn notification(id: u64, ks: impl IntoIterator<Item = usize>) -> Notification {
    Notification {
        id,
        channel: "ops".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(ks.into_iter().map(insight).collect()),
        created_at: Utc::now(),
        mentions: Default::default(),
    }
}

fn env(outbox: Arc<dyn Outbox>, deadline: Duration) -> ChannelEnv {
    ChannelEnv::new(Logger::root(slog::Discard, o!()), false)
        .with_rate_window(WINDOW)
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            deadline,
        })
        .with_outbox(outbox)
}

fn wecom(fake: &FakeWeCom, key: &str) -> ChannelSettings {
    serde_json::from_value(serde_json::json!({"type": "wecom", "key": key, "base_url": fake.url()}))
        .unwrap()
}

/// Every insight's queryid in the messages, with how often it appears, and the sum of the
/// "+N" counts of digests (insights summarised rather than shown).
fn tally(msgs: &[Accepted], ks: std::ops::Range<usize>) -> (BTreeMap<usize, usize>, usize) {
    let all: Vec<&str> = msgs.iter().map(|m| m.content.as_str()).collect();
    let all = all.join("\n");
    let shown = ks
        .map(|k| (k, all.matches(&format!("-{}", 1_000_000 + k)).count()))
        .collect();
    let counted = crate::fake_wecom::counted_in_digests(&all);
    (shown, counted)
}

/// What every test here runs on, taken first and kept while the test runs: this module's
/// turn, an on-disk outbox in a directory of its own, a fake robot accepting [`KEY`], 20
/// messages per [`WINDOW`], and the channels' environment on that outbox, retrying until
/// `deadline`.
type Rig = (
    Turn,
    tempfile::TempDir,
    Arc<dyn Outbox>,
    FakeWeCom,
    ChannelEnv,
);

fn rig(deadline: Duration) -> Rig {
    let turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let outbox: Arc<dyn Outbox> = Arc::new(RedbOutbox::open(dir.path()).unwrap());
    let fake = FakeWeCom::start_with(FakeConfig::new(&[KEY]).with_window(20, WINDOW)).unwrap();
    let env = env(Arc::clone(&outbox), deadline);
    (turn, dir, outbox, fake, env)
}

async fn health(r: &Recipient<GetHealth>) -> powa_sentinel::actors::channel::ChannelHealth {
    r.send(GetHealth).await.expect("channel answers")
}

/// 1,000 insights arrive as 1,000 notifications at once, far more than 20 messages per
/// window can carry one by one. None is rejected by the robot (no 45009), no rolling
/// window holds more than 20, every insight is represented, every caller is answered.
#[actix_rt::test]
async fn burst_of_1000_insights_never_exceeds_the_quota_and_loses_nothing() {
    let (_turn, _dir, outbox, fake, mut env) = rig(Duration::from_secs(300));
    let r = channels::start("ops", &wecom(&fake, KEY), &mut env).unwrap();
    let h = env.controls()["ops"].health.clone();

    let sends: Vec<_> = (0..1000)
        .map(|k| r.send(Deliver(notification(k as u64 + 1, [k]))))
        .collect();
    let reports = futures_util::future::join_all(sends).await;
    for (k, rep) in reports.iter().enumerate() {
        let rep = rep.as_ref().expect("actor answers");
        assert_eq!(rep.notification_id, k as u64 + 1);
        assert_eq!(rep.outcome, Ok(()), "{rep:?}");
    }

    let msgs = fake.messages(KEY);
    eprintln!(
        "burst: 1000 insights in {} messages, at most {} in a window",
        msgs.len(),
        fake.max_accepted_in_window(KEY)
    );
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert!(
        fake.max_accepted_in_window(KEY) <= 20,
        "{} in one window",
        fake.max_accepted_in_window(KEY)
    );
    assert_eq!(fake.requests_for(KEY), msgs.len(), "no retry was needed");
    assert!(
        msgs.len() < 1000,
        "a burst is merged, not sent one by one: {} messages",
        msgs.len()
    );
    let (shown, counted) = tally(&msgs, 0..1000);
    let full = shown.values().filter(|n| **n > 0).count();
    assert!(
        full + counted >= 1000,
        "{full} shown in full and {counted} counted, of 1000"
    );
    let health = health(&h).await;
    assert_eq!(health.state, HealthState::Ok);
    assert_eq!(health.accepted, 1000);
    assert_eq!(health.delivered, 1000);
    assert!(health.digests >= 1 && health.merged > 1, "{health:?}");
    assert_eq!(health.rate_limited, 0);
    assert!(
        outbox.entries("ops").unwrap().is_empty(),
        "delivered entries are removed"
    );
    fake.stop().await;
}

/// The robot answers HTTP 500, then drops connections, for longer than the callers wait.
/// Callers hear "not delivered yet, kept in the outbox"; once the robot is back everything
/// is delivered, each insight exactly once.
#[actix_rt::test]
async fn outage_loses_nothing_and_repeats_nothing() {
    let (_turn, _dir, outbox, fake, mut env) = rig(Duration::from_millis(1500));
    let r = channels::start("ops", &wecom(&fake, KEY), &mut env).unwrap();
    let controls = env.controls()["ops"].clone();

    fake.outage_for(Fault::Http500, Duration::from_secs(2));
    // Queued after the 500s: the outage goes on as dropped connections.
    fake.inject(Fault::Drop, 4);
    let first = r.send(Deliver(notification(1, 0..3)));
    let second = r.send(Deliver(notification(2, 3..6)));
    let (first, second) = futures_util::join!(first, second);
    for rep in [first.unwrap(), second.unwrap()] {
        match &rep.outcome {
            Err(ChannelError::Retryable { reason }) => {
                assert!(reason.contains("kept in the outbox"), "{reason}")
            }
            other => panic!("expected 'not delivered yet', got {other:?}"),
        }
    }
    let during = health(&controls.health).await;
    assert_eq!(during.state, HealthState::Degraded, "{during:?}");
    assert!(during.last_error.is_some());
    assert!(
        !outbox.entries("ops").unwrap().is_empty(),
        "pending entries are journaled"
    );

    // Another notification during or after the outage, then wait for the backlog.
    let third = r.send(Deliver(notification(3, 6..9)));
    let drained = controls
        .drain
        .send(powa_sentinel::actors::channel::Drain {
            within: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let third = third.await.unwrap();
    assert_eq!(drained.pending, 0, "{drained:?}");
    assert!(
        third.outcome.is_ok() || third.outcome.as_ref().is_err_and(|e| !e.is_permanent()),
        "{third:?}"
    );

    let msgs = fake.messages(KEY);
    let (shown, counted) = tally(&msgs, 0..9);
    assert_eq!(counted, 0, "nothing to summarise in so few");
    for (k, n) in shown {
        assert_eq!(n, 1, "insight {k} delivered {n} times:\n{msgs:#?}");
    }
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert!(
        fake.requests_for(KEY) > msgs.len(),
        "the outage was retried"
    );
    let after = health(&controls.health).await;
    assert_eq!(after.state, HealthState::Ok, "{after:?}");
    assert_eq!(after.delivered, 3);
    assert!(outbox.entries("ops").unwrap().is_empty());
    fake.stop().await;
}

/// A bad key (93000) is a permanent failure: its notifications stay in the outbox marked
/// failed, its health says failed with the errcode, it is not retried in a loop — and a
/// channel with a good key delivers everything meanwhile.
#[actix_rt::test]
async fn permanent_error_does_not_block_another_channel() {
    let bad_key = "not-a-robot-key-93000";
    let (_turn, _dir, outbox, fake, mut env) = rig(Duration::from_secs(60));
    let bad = channels::start("bad", &wecom(&fake, bad_key), &mut env).unwrap();
    let good = channels::start("good", &wecom(&fake, KEY), &mut env).unwrap();

    let mut sends = Vec::new();
    for k in 0..5usize {
        sends.push(bad.send(Deliver(notification(100 + k as u64, [k]))));
        sends.push(good.send(Deliver(notification(200 + k as u64, [k]))));
    }
    let reports: Vec<_> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for rep in &reports {
        if rep.channel == "bad" {
            match &rep.outcome {
                Err(ChannelError::Permanent { reason }) => {
                    assert!(reason.contains("93000"), "{reason}");
                    assert!(!reason.contains(bad_key), "secret leaked: {reason}");
                }
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(rep.outcome, Ok(()), "{rep:?}");
        }
    }
    let (shown, _) = tally(&fake.messages(KEY), 0..5);
    assert!(shown.values().all(|n| *n == 1), "{shown:?}");
    // One request per rendered batch at most, never a retry loop.
    assert!(
        fake.requests_for(bad_key) <= 5,
        "{} requests",
        fake.requests_for(bad_key)
    );
    assert!(fake.rejected().iter().all(|r| r.errcode == 93000));

    let h = health(&env.controls()["bad"].health).await;
    assert_eq!(h.state, HealthState::Failed);
    assert!(h.last_error.as_deref().unwrap().contains("93000"), "{h:?}");
    assert_eq!(h.failed, 5);
    let kept = outbox.entries("bad").unwrap();
    assert!(!kept.is_empty() && kept.iter().all(|e| e.failed.is_some()));
    assert_eq!(
        health(&env.controls()["good"].health).await.state,
        HealthState::Ok
    );
    assert!(outbox.entries("good").unwrap().is_empty());
    fake.stop().await;
}

/// WeCom's 45009 ("too many") on one channel pauses the robot key for every channel that
/// posts with it, for the quota window: nothing reaches the robot before the pause ends,
/// and everything is delivered after it.
#[actix_rt::test]
async fn rate_limited_answer_pauses_every_channel_of_the_key() {
    let (_turn, _dir, _outbox, fake, mut env) = rig(Duration::from_secs(60));
    let a = channels::start("a", &wecom(&fake, KEY), &mut env).unwrap();
    let text: ChannelSettings = serde_json::from_value(serde_json::json!({
        "type": "wecom", "key": KEY, "base_url": fake.url(), "msgtype": "text"
    }))
    .unwrap();
    let b = channels::start("b", &text, &mut env).unwrap();
    let health_a = env.controls()["a"].health.clone();

    fake.inject(Fault::Errcode(45009), 1);
    let t0 = std::time::Instant::now();
    let first = a.send(Deliver(notification(1, [0])));
    // Wait until channel a has heard 45009, then give channel b work on the same key.
    let first = actix_rt::spawn(first);
    while health(&health_a).await.rate_limited == 0 {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let later = futures_util::future::join_all(
        (1..4).map(|k| b.send(Deliver(notification(10 + k as u64, [k])))),
    )
    .await;
    assert_eq!(first.await.unwrap().unwrap().outcome, Ok(()));
    for rep in later {
        assert_eq!(rep.unwrap().outcome, Ok(()));
    }
    let msgs = fake.messages(KEY);
    assert!(!msgs.is_empty());
    for m in &msgs {
        assert!(
            m.instant.duration_since(t0) >= WINDOW,
            "a message reached the robot {:?} after 45009, inside the {WINDOW:?} pause",
            m.instant.duration_since(t0)
        );
    }
    let (shown, _) = tally(&msgs, 0..4);
    assert!(shown.values().all(|n| *n == 1), "{shown:?}");
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    fake.stop().await;
}

/// A restart does not reset the quota: the new process's pacer starts empty, but the
/// outbox remembers when the last window's messages went out. 15 messages, a "restart"
/// (new pacer, same outbox), 15 more at once: the robot rejects none.
#[actix_rt::test]
async fn restart_keeps_counting_the_quota() {
    let (_turn, _dir, outbox, fake, mut before) = rig(Duration::from_secs(60));
    let r = channels::start("ops", &wecom(&fake, KEY), &mut before).unwrap();
    for k in 0..15usize {
        let rep = r
            .send(Deliver(notification(k as u64 + 1, [k])))
            .await
            .unwrap();
        assert_eq!(rep.outcome, Ok(()));
    }
    // The restarted process: a new environment, so a new pacer for the key.
    let mut after = env(Arc::clone(&outbox), Duration::from_secs(60));
    let r = channels::start("ops", &wecom(&fake, KEY), &mut after).unwrap();
    let reports = futures_util::future::join_all(
        (15..30usize).map(|k| r.send(Deliver(notification(k as u64 + 1, [k])))),
    )
    .await;
    for rep in reports {
        assert_eq!(rep.unwrap().outcome, Ok(()));
    }
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert!(fake.max_accepted_in_window(KEY) <= 20);
    let (shown, counted) = tally(&fake.messages(KEY), 0..30);
    let full = shown.values().filter(|n| **n > 0).count();
    assert!(full + counted >= 30, "{full} + {counted}");
    fake.stop().await;
}
