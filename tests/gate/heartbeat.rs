//! Heartbeats through the gate and its store: "all quiet" once a day at its time when
//! nothing else was sent, not when something was; after a restart that followed a
//! downtime, one "not running from … to …"; the state survives the restart.

use chrono::{DateTime, Utc};

use powa_sentinel::gate::heartbeat::{HeartbeatSettings, KIND};
use powa_sentinel::gate::{Gate, GateSettings};
use powa_sentinel::render;
use sentinel_actors::gate::{Decide, Insights, Outgoing};
use sentinel_actors::{Notification, Severity};

use crate::support::sample;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn gate(dir: &std::path::Path) -> Gate {
    let mut s = GateSettings::default();
    s.heartbeat.insert(
        "ops".into(),
        HeartbeatSettings {
            at: "17:00".into(),
            timezone: "Asia/Shanghai".into(), // 09:00 UTC
        },
    );
    let chans = ["ops", "archive"].map(String::from).to_vec();
    let discard = slog::Logger::root(slog::Discard, slog::o!());
    Gate::new(&s, &[], &chans, &[], Some(dir), discard).unwrap()
}

/// The titles of what `out` sends, by channel.
fn told(out: &[Outgoing]) -> Vec<(String, String)> {
    out.iter()
        .flat_map(|o| {
            o.insights
                .iter()
                .map(|i| (o.channel.clone(), i.title.clone()))
        })
        .collect()
}

#[actix_rt::test]
async fn all_quiet_once_a_day_unless_something_was_sent_and_after_a_downtime() {
    let _turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let mut g = gate(dir.path());
    assert!(g.tick_every().is_some(), "heartbeats need the timer");

    // A finding is watched on db1 (reported and told on day 1 at 01:00).
    let labels = [
        ("repository", "main"),
        ("server", "db1"),
        ("database", "app"),
    ];
    let mut i = sample::slow_query(1, t("2026-03-02T01:00:00Z"), &labels);
    i.severity = Severity::Warning;
    g.observe(Insights {
        analyzer: "slow_queries".into(),
        source: "main/db1".into(),
        seq: 1,
        at: t("2026-03-02T01:00:00Z"),
        insights: vec![i],
    });
    let first = g.flush(t("2026-03-02T01:01:00Z"));
    assert_eq!(first.len(), 2, "ops and archive: {first:?}");

    // Day 2 at 09:00 UTC: ops got the report less than a day before — no heartbeat.
    assert!(told(&g.tick(t("2026-03-02T08:59:00Z"))).is_empty());
    assert!(told(&g.tick(t("2026-03-02T09:00:30Z"))).is_empty());

    // Day 3: a silent day for ops; exactly one heartbeat, at its time, to ops only.
    assert!(told(&g.tick(t("2026-03-03T08:59:00Z"))).is_empty());
    let beat = g.tick(t("2026-03-03T09:00:30Z"));
    let titles = told(&beat);
    assert_eq!(
        titles,
        [(
            "ops".to_string(),
            "All quiet: nothing to report in the last 24 h".to_string()
        )]
    );
    assert_eq!(beat[0].insights[0].kind, KIND);
    let n = Notification {
        id: beat[0].id,
        channel: "ops".into(),
        reason: beat[0].reason,
        insights: std::sync::Arc::new(beat[0].insights.clone()),
        created_at: beat[0].created_at,
        mentions: Default::default(),
    };
    let text = render::plain_report(&n);
    assert!(
        text.contains("1 server watched, last collection cycle at 2026-03-02 01:00 UTC; 1 finding(s) still firing"),
        "{text}"
    );
    assert!(
        told(&g.tick(t("2026-03-03T12:00:00Z"))).is_empty(),
        "once a day"
    );

    // The process stops here; a new one on the same state much later tells the downtime
    // once, at its first tick, and does not repeat today's heartbeat.
    drop(g);
    let mut again = gate(dir.path());
    let after = told(&again.tick(t("2026-03-03T12:05:00Z")));
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].0, "ops");
    assert!(
        after[0]
            .1
            .starts_with("powa-sentinel was not running from 2026-03-03 12:00 UTC to "),
        "{after:?}"
    );
    assert!(told(&again.tick(t("2026-03-03T12:06:00Z"))).is_empty());
    assert!(told(&again.tick(t("2026-03-03T18:00:00Z"))).is_empty());
}
