//! The gate's decisions (lifecycle + silences + routes + immediate/report + quiet hours) on
//! a fleet's cycle: 200 scopes × 10 findings = 2,000 insights per cycle, with churn (5% of
//! the findings change every cycle, so there are new, resolved and reopened ones), growing
//! magnitudes (escalations), 10 silences, 4 routes with regexes, `continue` and mentions,
//! and quiet hours on one channel. One iteration = every scope's report, then the flush.
//!
//! The baseline is a pass-through gate (buffer, route to one channel, flush) fed the same
//! reports in the same run. Report the ratio of the two and the gate's decisions per
//! second; the summary printed at the end gives both.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput};

use powa_sentinel::gate::engine::Engine;
use powa_sentinel::gate::quiet_hours::QuietHoursSettings;
use powa_sentinel::gate::routes::RouteSettings;
use powa_sentinel::gate::silence::{Matcher, Silence};
use powa_sentinel::gate::{compile, GateSettings};
use sentinel_actors::gate::{Broadcast, Decide, Insights, PassThrough};
use sentinel_actors::{Fingerprint, Insight, Severity, Window};

const SCOPES: usize = 200;
const FINDINGS: usize = 10;
const PER_CYCLE: usize = SCOPES * FINDINGS;
/// The churn pattern repeats after this many cycles (old fingerprints come back: reopened).
const PATTERN: usize = 12;

fn t0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_772_409_600, 0).unwrap()
}

fn insight(scope: usize, fp: u64, cycle: usize) -> Insight {
    let severity = match fp % 10 {
        0 => Severity::Critical,
        1..=3 => Severity::Warning,
        _ => Severity::Info,
    };
    // Some magnitudes grow along the pattern: escalations.
    let magnitude = 100.0 * (1.0 + ((cycle % PATTERN) * (fp % 3) as usize) as f64);
    Insight {
        fingerprint: Fingerprint(fp),
        kind: if fp.is_multiple_of(2) {
            "slow_query"
        } else {
            "regression"
        }
        .into(),
        rule: "slow_query.total_time".into(),
        severity,
        labels: BTreeMap::from([
            ("repository".to_string(), "main".to_string()),
            ("server".to_string(), format!("db{}", scope % 20)),
            ("database".to_string(), format!("app{}", fp % 7)),
            ("queryid".to_string(), (fp * 7919).to_string()),
        ]),
        title: format!("Query {fp} is slow"),
        advice: "Look at its plan.".into(),
        text: Some(format!("SELECT * FROM orders_{} WHERE id = $1", fp % 13)),
        metrics: BTreeMap::from([
            ("magnitude".to_string(), magnitude),
            ("calls".to_string(), 1000.0),
        ]),
        window: Window {
            start: t0(),
            end: t0(),
        },
        observed_at: t0(),
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

/// The reports of one cycle (the `at` is set when used).
fn cycle(c: usize) -> Vec<Insights> {
    (0..SCOPES)
        .map(|s| {
            let insights = (0..FINDINGS)
                .map(|f| {
                    let base = (s * 1000) as u64;
                    // Findings 0..9 stay; finding 0 churns through PATTERN variants.
                    let fp = if f == 0 {
                        base + 500 + (c % PATTERN) as u64
                    } else {
                        base + f as u64
                    };
                    insight(s, fp, c)
                })
                .collect();
            Insights {
                analyzer: "slow_queries".into(),
                source: format!("main/db{s}"),
                seq: c as u64,
                at: t0(),
                insights,
            }
        })
        .collect()
}

fn engine() -> Engine {
    let channels: Vec<String> = ["ops", "dba", "payments", "night"]
        .map(String::from)
        .to_vec();
    let routes = vec![
        RouteSettings {
            channels: vec!["payments".into()],
            labels_regex: BTreeMap::from([("database".into(), "app[0-2]".into())]),
            continue_matching: true,
            mention_userids: vec!["zhangsan".into()],
            ..Default::default()
        },
        RouteSettings {
            channels: vec!["dba".into(), "night".into()],
            kind: Some("regression".into()),
            severity: Some("warning".into()),
            ..Default::default()
        },
        RouteSettings {
            channels: vec!["dba".into()],
            text_regex: Some("orders_1[0-2]".into()),
            ..Default::default()
        },
        RouteSettings {
            channels: vec!["ops".into()],
            repository: Some("main".into()),
            ..Default::default()
        },
    ];
    let mut gate = GateSettings::default();
    gate.quiet_hours.insert(
        "night".into(),
        QuietHoursSettings {
            start: "22:00".into(),
            end: "07:00".into(),
            timezone: "Asia/Shanghai".into(),
            bypass_severity: "critical".into(),
        },
    );
    let mut e = compile(&gate, &routes, &channels, &[]).unwrap_or_else(|p| panic!("{p:?}"));
    let silences = (0..10)
        .map(|i| Silence {
            id: i,
            fingerprint: (i > 0).then_some(Fingerprint(i * 1000 + 3)),
            matchers: if i == 0 {
                vec![Matcher::parse("server=~db1[0-4]").unwrap()]
            } else {
                vec![]
            },
            starts_at: t0(),
            ends_at: t0() + chrono::Duration::days(365),
            reason: "bench".into(),
            author: "bench".into(),
            created_at: t0(),
        })
        .collect();
    e.set_silences(silences);
    e
}

/// Something that takes a cycle's reports and a flush.
trait Run {
    fn run(&mut self, reports: Vec<Insights>, at: DateTime<Utc>) -> usize;
}

struct Gate {
    engine: Engine,
}

impl Run for Gate {
    fn run(&mut self, reports: Vec<Insights>, at: DateTime<Utc>) -> usize {
        let mut sent = 0;
        for mut r in reports {
            r.at = at;
            sent += self.engine.observe(r).len();
        }
        sent += self.engine.flush(at).len();
        // What a store would write; dropped here (the bench has no store).
        self.engine.take_changes();
        sent
    }
}

struct Baseline(PassThrough<Broadcast>);

impl Run for Baseline {
    fn run(&mut self, reports: Vec<Insights>, at: DateTime<Utc>) -> usize {
        for r in reports {
            self.0.observe(r);
        }
        self.0.flush(at).len()
    }
}

/// Runs `cycles` cycles, 5 minutes apart, continuing from cycle `start`.
fn drive(r: &mut impl Run, pattern: &[Vec<Insights>], start: usize, cycles: usize) -> Duration {
    let mut spent = Duration::ZERO;
    for c in start..start + cycles {
        let reports = pattern[c % PATTERN].clone();
        let at = t0() + chrono::Duration::minutes(5 * c as i64);
        let began = Instant::now();
        black_box(r.run(reports, at));
        spent += began.elapsed();
    }
    spent
}

fn bench(c: &mut Criterion, pattern: &[Vec<Insights>]) {
    let mut g = c.benchmark_group("gate_cycle_2000_insights");
    g.throughput(Throughput::Elements(PER_CYCLE as u64));
    let mut baseline = Baseline(PassThrough::new(Broadcast(vec!["ops".into()])));
    let mut n = 0usize;
    g.bench_function("baseline_pass_through", |b| {
        b.iter_batched(
            || {
                n += 1;
                pattern[n % PATTERN].clone()
            },
            |reports| black_box(baseline.run(reports, t0())),
            BatchSize::LargeInput,
        )
    });
    let mut gate = Gate { engine: engine() };
    drive(&mut gate, pattern, 0, 2 * PATTERN);
    let mut n = 2 * PATTERN;
    g.bench_function("gate_decisions", |b| {
        b.iter_batched(
            || {
                n += 1;
                (
                    pattern[n % PATTERN].clone(),
                    t0() + chrono::Duration::minutes(5 * n as i64),
                )
            },
            |(reports, at)| black_box(gate.run(reports, at)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// The same work timed by hand, best of three rounds, so that the ratio and the rate are
/// printed side by side from one run. A round is a whole day of cycles, so that the
/// night channel's quiet hours (holding, then releasing at their end) are in it.
fn summary(pattern: &[Vec<Insights>]) {
    let rounds = 3;
    let cycles = 24 * 60 / 5;
    let mut best_base = Duration::MAX;
    let mut best_gate = Duration::MAX;
    for _ in 0..rounds {
        let mut baseline = Baseline(PassThrough::new(Broadcast(vec!["ops".into()])));
        best_base = best_base.min(drive(&mut baseline, pattern, 0, cycles));
        let mut gate = Gate { engine: engine() };
        drive(&mut gate, pattern, 0, 2 * PATTERN);
        best_gate = best_gate.min(drive(&mut gate, pattern, 2 * PATTERN, cycles));
    }
    let n = (cycles * PER_CYCLE) as f64;
    let rate = |d: Duration| n / d.as_secs_f64();
    println!(
        "gate summary: baseline pass-through {:.2} M insights/s; gate {:.2} M decisions/s; gate time / baseline time = {:.2}",
        rate(best_base) / 1e6,
        rate(best_gate) / 1e6,
        best_gate.as_secs_f64() / best_base.as_secs_f64()
    );
}

fn main() {
    let pattern: Vec<Vec<Insights>> = (0..PATTERN).map(cycle).collect();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &pattern);
    summary(&pattern);
    c.final_summary();
}
