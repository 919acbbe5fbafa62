//! The gate across restarts: two gate actors, one after the other, on the same state
//! directory. The second must not re-notify what the first notified, must keep honouring
//! the silences, and must deliver what quiet hours held when the window ends.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use powa_sentinel::gate::quiet_hours::QuietHoursSettings;
use powa_sentinel::gate::silence::{Matcher, Silence};
use powa_sentinel::gate::store::Store;
use powa_sentinel::gate::{Gate, GateSettings};
use sentinel_actors::channel::{Deliver, DeliveryReport};
use sentinel_actors::gate::{Flush, FlushSummary, GateActor, Insights};
use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Insight, NotifyReason, Severity};

use crate::support::sample;

/// What a channel received: (channel, reason, fingerprint, status).
type Log = Arc<Mutex<Vec<(String, NotifyReason, u64, Option<Lifecycle>)>>>;

struct Recorder(Log);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Recorder {
    type Result = MessageResult<Deliver>;
    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) -> Self::Result {
        let n = msg.0;
        let mut log = self.0.lock().unwrap();
        for i in n.insights.iter() {
            log.push((n.channel.clone(), n.reason, i.fingerprint.0, i.status));
        }
        MessageResult(DeliveryReport::delivered(&n.channel, n.id))
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn insight(fp: u64, severity: Severity, database: &str) -> Insight {
    let labels = [
        ("repository", "main"),
        ("server", "db1"),
        ("database", database),
    ];
    Insight {
        severity,
        text: Some("SELECT 1".into()),
        ..sample::slow_query(fp, t("2026-03-02T00:00:00Z"), &labels)
    }
}

fn report(at: DateTime<Utc>) -> Insights {
    Insights {
        analyzer: "slow_queries".into(),
        source: "main/db1".into(),
        seq: 1,
        at,
        insights: vec![
            insight(1, Severity::Warning, "app"),
            insight(2, Severity::Critical, "app"),
            insight(3, Severity::Warning, "batch"),
        ],
    }
}

fn settings() -> GateSettings {
    let mut s = GateSettings::default();
    // `night` is quiet 00:00–07:00 UTC for everything below critical.
    s.quiet_hours.insert(
        "night".into(),
        QuietHoursSettings {
            start: "00:00".into(),
            end: "07:00".into(),
            timezone: "UTC".into(),
            bypass_severity: "critical".into(),
        },
    );
    s
}

/// Starts a gate on `dir` with channels `day` and `night`, both recording into `log`.
fn start_gate(dir: &std::path::Path, log: &Log) -> Addr<GateActor<Gate>> {
    start_gate_with(&settings(), &["day", "night"], dir, log)
}

/// Starts a gate with `settings` on `dir`, its channels `names` recording into `log`.
fn start_gate_with(
    settings: &GateSettings,
    names: &[&str],
    dir: &std::path::Path,
    log: &Log,
) -> Addr<GateActor<Gate>> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let discard = slog::Logger::root(slog::Discard, slog::o!());
    let gate = Gate::new(settings, &[], &names, &[], Some(dir), discard).unwrap();
    let channels = names
        .iter()
        .map(|n| (n.clone(), Recorder(Arc::clone(log)).start().recipient()))
        .collect();
    GateActor::new(gate, channels).start()
}

/// A flush at `at` (RFC 3339).
async fn flush(gate: &Addr<GateActor<Gate>>, at: &str) -> FlushSummary {
    gate.send(Flush { at: t(at) }).await.unwrap()
}

fn take(log: &Log) -> Vec<(String, NotifyReason, u64, Option<Lifecycle>)> {
    let mut v = std::mem::take(&mut *log.lock().unwrap());
    v.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    v
}

#[actix_rt::test]
async fn a_second_gate_on_the_same_state_does_not_renotify_and_remembers_silences_and_held_items() {
    let _turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    // A silence on database `batch`, written to the store the way `silence add` does.
    Store::open(dir.path())
        .unwrap()
        .add_silence(Silence {
            id: 0,
            fingerprint: None,
            matchers: vec![Matcher::parse("database=batch").unwrap()],
            starts_at: t("2026-03-02T00:00:00Z"),
            ends_at: t("2026-03-02T07:07:00Z"),
            reason: "nightly batch".into(),
            author: "test".into(),
            created_at: t("2026-03-02T00:00:00Z"),
        })
        .unwrap();

    // First gate, 01:00: `night` is in its quiet hours.
    let gate = start_gate(dir.path(), &log);
    gate.send(report(t("2026-03-02T01:00:00Z"))).await.unwrap();
    let summary = flush(&gate, "2026-03-02T01:00:30Z").await;
    assert!(summary.reports.iter().all(|r| r.outcome.is_ok()));
    use Lifecycle::New;
    use NotifyReason::{Immediate, Report};
    assert_eq!(
        take(&log),
        [
            ("day".into(), Report, 1, Some(New)),
            ("day".into(), Immediate, 2, Some(New)),
            // Critical bypasses the quiet hours; the warning waits; 3 is silenced.
            ("night".into(), Immediate, 2, Some(New)),
        ]
    );
    drop(gate);

    // Second gate on the same directory (a restart), five minutes later.
    let gate = start_gate(dir.path(), &log);
    gate.send(report(t("2026-03-02T01:05:00Z"))).await.unwrap();
    flush(&gate, "2026-03-02T01:05:30Z").await;
    assert_eq!(
        take(&log),
        [],
        "nothing is new, 3 is still silenced, night still quiet"
    );
    drop(gate);

    // Third start, after the window: what `night` missed arrives, once.
    let gate = start_gate(dir.path(), &log);
    flush(&gate, "2026-03-02T07:00:10Z").await;
    assert_eq!(take(&log), [("night".into(), Report, 1, Some(New))]);
    flush(&gate, "2026-03-02T07:01:00Z").await;
    assert_eq!(take(&log), []);

    // The silence ended at 07:07; 3 still fires, so it is announced now (as the `new`
    // nobody heard), and only 3.
    gate.send(report(t("2026-03-02T07:10:00Z"))).await.unwrap();
    flush(&gate, "2026-03-02T07:10:30Z").await;
    assert_eq!(
        take(&log),
        [
            ("day".into(), Report, 3, Some(New)),
            ("night".into(), Report, 3, Some(New)),
        ]
    );
}

#[actix_rt::test]
async fn held_items_are_released_by_the_timer_without_a_flush() {
    let _turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    // A quiet window that ends two seconds from now (wall clock: the timer uses it).
    let now = Utc::now();
    let end = now + chrono::Duration::seconds(2);
    let mut s = GateSettings {
        tick_interval: std::time::Duration::from_millis(1000),
        ..Default::default()
    };
    s.quiet_hours.insert(
        "night".into(),
        QuietHoursSettings {
            start: (now - chrono::Duration::minutes(2))
                .format("%H:%M")
                .to_string(),
            end: end.format("%H:%M:%S").to_string(),
            timezone: "UTC".into(),
            bypass_severity: "none".into(),
        },
    );
    let gate = start_gate_with(&s, &["night"], dir.path(), &log);
    let mut r = report(now);
    r.insights.truncate(2);
    gate.send(r).await.unwrap();
    assert!(take(&log).is_empty(), "held by quiet hours");
    // Poll until the timer released it (bounded: the window ends within seconds).
    for _ in 0..60 {
        if !log.lock().unwrap().is_empty() {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let got = take(&log);
    assert_eq!(
        got,
        [(
            "night".into(),
            NotifyReason::Immediate,
            2,
            Some(Lifecycle::New)
        )]
    );
}
