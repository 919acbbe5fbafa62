//! The engine's decisions, driven directly with data time.
use super::super::lifecycle::LifecycleSettings;
use super::super::quiet_hours::QuietHoursSettings;
use super::super::routes::RouteSettings;
use super::super::silence::Matcher;
use super::*;
use sentinel_actors::Fingerprint;

fn t(min: i64) -> DateTime<Utc> {
    // 2026-03-02T00:00:00Z, a Monday.
    DateTime::<Utc>::from_timestamp(1_772_409_600 + min * 60, 0).unwrap()
}

fn insight(fp: u64, severity: Severity, db: &str) -> Insight {
    let mut i = crate::gate::test_insight(fp, severity);
    i.labels = [("database", db), ("server", "db1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    i
}

fn report(at: DateTime<Utc>, insights: Vec<Insight>) -> Insights {
    Insights {
        analyzer: "slow_queries".into(),
        source: "main/db1".into(),
        seq: 1,
        at,
        insights,
    }
}

fn engine(routes: Vec<RouteSettings>, quiet: Option<(&str, &str, &str)>) -> Engine {
    let chans = ["console", "ops", "pay"].map(String::from).to_vec();
    let routes = Routes::compile(&routes, &[], &chans, &[]).unwrap();
    let mut q = BTreeMap::new();
    if let Some((ch, start, end)) = quiet {
        let mut p = Vec::new();
        q.insert(
            ch.to_string(),
            QuietHours::compile(
                &QuietHoursSettings {
                    start: start.into(),
                    end: end.into(),
                    timezone: "UTC".into(),
                    bypass_severity: "none".into(),
                },
                "q",
                &mut p,
            )
            .unwrap(),
        );
    }
    Engine::new(
        Rules::new(&LifecycleSettings::default()),
        routes,
        q,
        Some(Severity::Critical),
    )
}

type Summary = Vec<(String, NotifyReason, Vec<(u64, Option<Lifecycle>)>)>;

fn summary(out: &[Outgoing]) -> Summary {
    out.iter()
        .map(|o| {
            (
                o.channel.clone(),
                o.reason,
                o.insights
                    .iter()
                    .map(|i| (i.fingerprint.0, i.status))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn critical_new_goes_at_once_the_rest_waits_for_the_report() {
    let routes = vec![RouteSettings {
        channels: vec!["ops".into()],
        ..Default::default()
    }];
    let mut e = engine(routes, None);
    let now = e.observe(report(
        t(0),
        vec![
            insight(1, Severity::Critical, "a"),
            insight(2, Severity::Warning, "a"),
        ],
    ));
    assert_eq!(
        summary(&now),
        [(
            "ops".into(),
            NotifyReason::Immediate,
            vec![(1, Some(Lifecycle::New))]
        )]
    );
    let rep = e.flush(t(1));
    assert_eq!(
        summary(&rep),
        [(
            "ops".into(),
            NotifyReason::Report,
            vec![(2, Some(Lifecycle::New))]
        )]
    );
    assert!(e.flush(t(2)).is_empty(), "nothing twice");
    // Ongoing: quiet. Resolved (critical): waits for the report.
    assert!(e
        .observe(report(t(5), vec![insight(1, Severity::Critical, "a")]))
        .is_empty());
    for m in [10, 15, 20] {
        assert!(e.observe(report(t(m), vec![])).is_empty());
    }
    let rep = e.flush(t(21));
    assert_eq!(
        summary(&rep),
        [(
            "ops".into(),
            NotifyReason::Report,
            vec![
                (1, Some(Lifecycle::Resolved)),
                (2, Some(Lifecycle::Resolved))
            ]
        )]
    );
}

#[test]
fn immediate_can_be_disabled() {
    let mut e = engine(vec![], None);
    e.immediate = None;
    assert!(e
        .observe(report(t(0), vec![insight(1, Severity::Critical, "a")]))
        .is_empty());
    assert_eq!(e.flush(t(1)).len(), 3, "one report per channel");
}

#[test]
fn routes_pick_channels_and_mentions_reach_the_notification() {
    let routes = vec![
        RouteSettings {
            channels: vec!["pay".into()],
            database: Some("payments".into()),
            mention_userids: vec!["zhangsan".into()],
            mention_severity: Some("warning".into()),
            continue_matching: true,
            ..Default::default()
        },
        RouteSettings {
            channels: vec!["ops".into()],
            ..Default::default()
        },
    ];
    let mut e = engine(routes, None);
    e.observe(report(
        t(0),
        vec![
            insight(1, Severity::Warning, "payments"),
            insight(2, Severity::Info, "payments"),
            insight(3, Severity::Info, "x"),
        ],
    ));
    let out = e.flush(t(1));
    assert_eq!(
        summary(&out),
        [
            (
                "ops".into(),
                NotifyReason::Report,
                vec![
                    (1, Some(Lifecycle::New)),
                    (2, Some(Lifecycle::New)),
                    (3, Some(Lifecycle::New))
                ]
            ),
            (
                "pay".into(),
                NotifyReason::Report,
                vec![(1, Some(Lifecycle::New)), (2, Some(Lifecycle::New))]
            ),
        ]
    );
    assert!(out[0].mentions.is_empty());
    assert_eq!(out[1].mentions.userids, ["zhangsan"]);
}

fn silence(matchers: &[&str], until: DateTime<Utc>) -> Silence {
    Silence {
        id: 1,
        fingerprint: None,
        matchers: matchers
            .iter()
            .map(|m| Matcher::parse(m).unwrap())
            .collect(),
        starts_at: t(0),
        ends_at: until,
        reason: "deploy".into(),
        author: "me".into(),
        created_at: t(0),
    }
}

#[test]
fn silenced_findings_keep_their_lifecycle_and_notify_after_expiry() {
    let mut e = engine(vec![], None);
    e.set_silences(vec![silence(&["database=a"], t(12))]);
    let i = || {
        vec![
            insight(1, Severity::Critical, "a"),
            insight(2, Severity::Info, "b"),
        ]
    };
    assert!(
        e.observe(report(t(0), i())).is_empty(),
        "critical but silenced"
    );
    let out = e.flush(t(1));
    assert!(out
        .iter()
        .all(|o| o.insights.iter().all(|i| i.fingerprint.0 == 2)));
    let scope = e.scope(&scope_key("slow_queries", "main/db1")).unwrap();
    assert!(scope.findings[&Fingerprint(1)].firing, "lifecycle goes on");
    assert!(e.observe(report(t(5), i())).is_empty());
    assert!(e.observe(report(t(10), i())).is_empty());
    // Expired at 12: the still-firing finding is announced as the `new` it was.
    let now = e.observe(report(t(15), i()));
    assert_eq!(now.len(), 3);
    assert_eq!(summary(&now)[0].2, [(1, Some(Lifecycle::New))]);
    assert!(e.observe(report(t(20), i())).is_empty());
    assert!(e.flush(t(21)).is_empty());
}

#[test]
fn a_finding_resolved_while_silenced_is_never_announced() {
    let mut e = engine(vec![], None);
    e.set_silences(vec![silence(&["database=a"], t(60))]);
    e.observe(report(t(0), vec![insight(1, Severity::Warning, "a")]));
    for m in [5, 10, 15] {
        e.observe(report(t(m), vec![]));
    }
    assert!(e.flush(t(16)).is_empty());
    for m in [65, 70] {
        assert!(e.observe(report(t(m), vec![])).is_empty());
    }
    assert!(e.flush(t(71)).is_empty());
}

#[test]
fn quiet_hours_hold_until_the_window_ends_then_release_on_tick() {
    // `ops` is quiet 00:00–07:00 UTC; t(0) is midnight.
    let mut e = engine(vec![], Some(("ops", "00:00", "07:00")));
    let now = e.observe(report(t(30), vec![insight(1, Severity::Critical, "a")]));
    let chans: Vec<_> = now.iter().map(|o| o.channel.as_str()).collect();
    assert_eq!(
        chans,
        ["console", "pay"],
        "critical goes at once, except to ops"
    );
    let rep = e.flush(t(60));
    assert!(rep.is_empty(), "ops still quiet: {rep:?}");
    assert!(e.tick(t(7 * 60 - 1)).is_empty());
    let released = e.tick(t(7 * 60));
    assert_eq!(
        summary(&released),
        [(
            "ops".into(),
            NotifyReason::Immediate,
            vec![(1, Some(Lifecycle::New))]
        )]
    );
    assert_eq!(e.counts().held, 0);
}

#[test]
fn report_items_flushed_in_quiet_hours_wait_then_go_with_a_later_flush() {
    let mut e = engine(vec![], Some(("ops", "00:00", "07:00")));
    e.observe(report(t(-60), vec![insight(1, Severity::Warning, "a")]));
    let rep = e.flush(t(60));
    let chans: Vec<_> = rep.iter().map(|o| o.channel.as_str()).collect();
    assert_eq!(chans, ["console", "pay"]);
    assert_eq!(e.counts().held, 1);
    let later = e.flush(t(8 * 60));
    assert_eq!(summary(&later)[0].0, "ops");
    assert_eq!(e.counts().held, 0);
}

#[test]
fn changes_track_what_to_persist() {
    let mut e = engine(vec![], None);
    e.observe(report(t(0), vec![insight(1, Severity::Warning, "a")]));
    let c = e.take_changes();
    assert_eq!(c.scopes.len(), 1);
    assert_eq!(c.held_put.len(), 3);
    e.flush(t(1));
    let c = e.take_changes();
    assert!(c.held_put.is_empty());
    assert_eq!(c.held_del.len(), 3);
}

/// Immediate findings held for their collection cycle ([`super::super::cycle`]).
mod cycles {

    use super::super::Engine;
    use crate::gate::lifecycle::{LifecycleSettings, Rules};
    use crate::gate::routes::Routes;
    use chrono::{DateTime, Utc};
    use sentinel_actors::gate::Insights;
    use sentinel_actors::Insight;
    use sentinel_actors::{NotifyReason, Severity};
    use std::collections::BTreeMap;

    const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

    /// Seconds from the outer tests' epoch.
    fn t(secs: i64) -> DateTime<Utc> {
        super::t(0) + chrono::Duration::seconds(secs)
    }

    /// The outer tests' insight, of `kind`, on repository main, with `labels` too.
    fn finding(fp: u64, kind: &str, severity: Severity, labels: &[(&str, &str)]) -> Insight {
        let mut i = super::insight(fp, severity, "shop");
        i.kind = kind.into();
        i.rule = format!("{kind}.rule");
        for (k, v) in [("repository", "main")].iter().chain(labels) {
            i.labels.insert(k.to_string(), v.to_string());
        }
        i
    }

    /// A regression of query 42 (critical) and the missing index that explains it.
    fn regression() -> Insight {
        finding(1, "regression", Severity::Critical, &[("queryid", "42")])
    }
    fn index() -> Insight {
        finding(2, "missing_index", Severity::Warning, &[("queryids", "42")])
    }
    /// A finding about another query: not part of the regression's story.
    fn unrelated() -> Insight {
        finding(3, "slow_query", Severity::Warning, &[("queryid", "77")])
    }

    fn report(analyzer: &str, seq: u64, at: DateTime<Utc>, insights: Vec<Insight>) -> Insights {
        Insights {
            analyzer: analyzer.into(),
            source: "main/db1".into(),
            seq,
            at,
            insights,
        }
    }

    /// One channel, `ops`; critical findings immediate.
    fn plain_engine() -> Engine {
        let chans = vec!["ops".to_string()];
        let routes = Routes::compile(&[], &[], &chans, &[]).unwrap();
        Engine::new(
            Rules::new(&LifecycleSettings::default()),
            routes,
            BTreeMap::new(),
            Some(Severity::Critical),
        )
    }

    fn held_engine() -> Engine {
        let mut e = plain_engine();
        e.hold_for_cycles(
            ["regression", "missing_index", "slow_queries"]
                .map(String::from)
                .to_vec(),
            WAIT,
        );
        e
    }

    fn fingerprints(out: &[sentinel_actors::gate::Outgoing]) -> Vec<u64> {
        let mut v: Vec<u64> = out
            .iter()
            .flat_map(|o| o.insights.iter().map(|i| i.fingerprint.0))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_critical_regression_goes_with_its_cause_once_the_cycle_is_over() {
        let mut e = held_engine();
        assert!(e.wants_ticks());
        // The regression analyzer reports first: nothing goes yet.
        assert!(e
            .observe(report("regression", 1, t(0), vec![regression()]))
            .is_empty());
        assert!(e
            .observe(report("slow_queries", 1, t(1), vec![unrelated()]))
            .is_empty());
        // The last analyzer of the cycle: the alarm goes now, with the missing index that
        // explains it, and without the unrelated finding.
        let out = e.observe(report("missing_index", 1, t(2), vec![index()]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, NotifyReason::Immediate);
        assert_eq!(fingerprints(&out), [1, 2]);
        // The report has the rest, and not the cause a second time.
        let report = e.flush(t(60));
        assert_eq!(fingerprints(&report), [3]);
        assert_eq!(report[0].reason, NotifyReason::Report);
    }

    #[test]
    fn the_wait_is_bounded_when_an_analyzer_never_reports() {
        let mut e = held_engine();
        assert!(e
            .observe(report("regression", 1, t(0), vec![regression()]))
            .is_empty());
        assert!(e.tick(t(59)).is_empty(), "waits up to immediate_wait");
        let out = e.tick(t(60));
        assert_eq!(fingerprints(&out), [1]);
        assert_eq!(out[0].reason, NotifyReason::Immediate);
    }

    #[test]
    fn a_newer_snapshot_or_a_flush_ends_the_wait() {
        let mut e = held_engine();
        e.observe(report("regression", 1, t(0), vec![regression()]));
        e.observe(report("missing_index", 1, t(1), vec![index()]));
        // The slow-query analyzer died on seq 1; its report on seq 2 ends cycle 1.
        let out = e.observe(report("slow_queries", 2, t(300), vec![]));
        assert_eq!(fingerprints(&out), [1, 2]);

        let mut e = held_engine();
        e.observe(report("regression", 1, t(0), vec![regression()]));
        let out = e.flush(t(10));
        assert_eq!(fingerprints(&out), [1]);
        assert!(out.iter().all(|o| o.reason == NotifyReason::Immediate));
        assert_eq!(e.counts().held, 0);
    }

    #[test]
    fn without_cycles_an_immediate_finding_goes_at_once() {
        let mut e = plain_engine();
        assert!(!e.wants_ticks());
        let out = e.observe(report("regression", 1, t(0), vec![regression()]));
        assert_eq!(fingerprints(&out), [1]);
    }
}

#[test]
fn an_acknowledged_finding_is_not_repeated_and_its_escalation_says_who() {
    use crate::gate::ack::{Ack, BY_LABEL};
    let mut e = engine(vec![], None);
    let day = 24 * 60;
    assert!(e
        .observe(report(t(0), vec![insight(5, Severity::Warning, "a")]))
        .is_empty());
    let first = e.flush(t(1));
    assert_eq!(summary(&first)[0].2, [(5, Some(Lifecycle::New))]);
    e.set_acks(vec![Ack {
        fingerprint: Fingerprint(5),
        by: "alice".into(),
        at: t(2),
        note: None,
        title: "t".into(),
    }]);
    // A day later the repeat is due, and is quiet.
    e.observe(report(
        t(day + 10),
        vec![insight(5, Severity::Warning, "a")],
    ));
    assert!(e.flush(t(day + 11)).is_empty(), "acknowledged: no repeat");
    assert!(e.take_changes().acks_del.is_empty());
    // Worse: told at once, saying who acknowledged it; the acknowledgement ends.
    let now = e.observe(report(
        t(day + 80),
        vec![insight(5, Severity::Critical, "a")],
    ));
    assert_eq!(summary(&now)[0].2, [(5, Some(Lifecycle::Escalated))]);
    assert_eq!(now[0].insights[0].label(BY_LABEL), Some("alice"));
    assert!(e.take_changes().acks_del.contains(&Fingerprint(5)));
}

#[test]
fn the_report_tells_each_findings_latest_numbers_and_window() {
    let mut e = engine(vec![], None);
    let seen = |at: DateTime<Utc>, calls: f64| {
        let mut i = insight(2, Severity::Warning, "a");
        i.metrics.insert("calls".into(), calls);
        i.window = sentinel_actors::Window {
            start: at - chrono::Duration::hours(24),
            end: at,
        };
        i.observed_at = at;
        i
    };
    // New at t(0), held for the report; seen again with more calls, then again.
    assert!(e.observe(report(t(0), vec![seen(t(0), 10.0)])).is_empty());
    assert!(e.observe(report(t(5), vec![seen(t(5), 40.0)])).is_empty());
    assert!(e.observe(report(t(10), vec![seen(t(10), 70.0)])).is_empty());
    assert!(
        !e.take_changes().held_put.is_empty(),
        "the refreshed items are stored"
    );
    let rep = e.flush(t(11));
    assert_eq!(rep.len(), 3, "one report per channel");
    for o in &rep {
        let i = &o.insights[0];
        assert_eq!(i.status, Some(Lifecycle::New), "still announced as new");
        assert_eq!(
            i.metric("calls"),
            Some(70.0),
            "{}: the latest numbers",
            o.channel
        );
        assert_eq!(i.window.end, t(10), "the latest window");
        assert_eq!(i.observed_at, t(10));
    }
}

#[test]
fn a_held_resolution_keeps_the_numbers_it_resolved_with() {
    let routes = vec![RouteSettings {
        channels: vec!["ops".into()],
        ..Default::default()
    }];
    let mut e = engine(routes, None);
    let seen = |calls: f64| {
        let mut i = insight(2, Severity::Warning, "a");
        i.metrics.insert("calls".into(), calls);
        i
    };
    e.observe(report(t(0), vec![seen(10.0)]));
    e.flush(t(1));
    for m in [5, 10, 15] {
        e.observe(report(t(m), vec![]));
    }
    // Seen once more before the report: not firing again yet.
    e.observe(report(t(20), vec![seen(99.0)]));
    let rep = e.flush(t(21));
    assert_eq!(
        summary(&rep),
        [(
            "ops".into(),
            NotifyReason::Report,
            vec![(2, Some(Lifecycle::Resolved))]
        )]
    );
    assert_eq!(rep[0].insights[0].metric("calls"), Some(10.0));
}
