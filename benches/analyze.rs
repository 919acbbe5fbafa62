//! Cost of every analyzer on one server's 10,000-query window with three baselines and
//! pg_stat_kcache data, next to a pass-through baseline (cloning the window's rows)
//! measured in the same run. Report the ratios, not the absolute times: the machine varies,
//! the ratio much less. After criterion's own output, a summary prints each analyzer's
//! median time as a multiple of the pass-through's.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use powa_sentinel::analyze::health_score::HealthInputs;
use powa_sentinel::analyze::{
    HealthScoreAnalyzer, HealthScoreSettings, PowaHealthAnalyzer, PowaHealthSettings,
    RegressionAnalyzer, RegressionSettings, ResourceHogAnalyzer, ResourceHogSettings,
    SlowQueryAnalyzer, SlowQuerySettings, WorkloadChangeAnalyzer, WorkloadChangeSettings,
};
use powa_sentinel::powa::discovery::ServerInfo;
use powa_sentinel::powa::kcache::Kcache;
use powa_sentinel::powa::reader::{
    QueryKey, QueryStats, StatementsWindow, CALLS, COUNTERS, EXEC_TIME, ROWS, SHARED_HIT,
    SHARED_READ, TEMP_WRITTEN,
};
use sentinel_actors::Window;

const N: usize = 10_000;

/// A skewed workload: a few heavy queries, a long tail of cheap ones. `week` varies the
/// numbers a little between windows; in the current window (`week` 0) every 500th query
/// is slower, so the regression path runs too.
fn queries(n: usize, week: usize, kcache: bool) -> Vec<QueryStats> {
    (0..n)
        .map(|i| {
            let mut c = [0.0; COUNTERS.len()];
            let jitter = 1.0 + ((i + week * 31) % 11) as f64 / 100.0;
            c[CALLS] = 1.0 + (i % 97) as f64 * 13.0;
            c[EXEC_TIME] = (50_000_000.0 / (1.0 + i as f64) + (i % 7) as f64) * jitter;
            if week == 0 && i % 500 == 7 {
                c[EXEC_TIME] *= 5.0;
            }
            c[ROWS] = c[CALLS] * 3.0;
            c[SHARED_HIT] = c[CALLS] * 40.0;
            c[SHARED_READ] = c[CALLS] * (i % 13) as f64;
            c[TEMP_WRITTEN] = if i % 101 == 0 { 20_000.0 } else { 0.0 };
            QueryStats {
                key: QueryKey {
                    dbid: 1 + (i % 5) as u32,
                    userid: 10,
                    queryid: i as i64 * 7919,
                    toplevel: None,
                },
                database: Some("app".into()),
                user: Some("app".into()),
                counters: c,
                kcache: kcache.then(|| Kcache {
                    user_time_s: c[EXEC_TIME] / 2000.0,
                    system_time_s: c[EXEC_TIME] / 20_000.0,
                    reads_bytes: c[SHARED_READ] * 4096.0,
                    writes_bytes: c[TEMP_WRITTEN] * 8192.0,
                }),
                query: Some(format!("SELECT * FROM t{i} WHERE id = $1").into()),
            }
        })
        .collect()
}

fn window(n: usize) -> StatementsWindow {
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let at = |week: usize, queries: Vec<QueryStats>| {
        let start = t0 - chrono::Duration::days(7 * week as i64);
        StatementsWindow::new(
            "bench",
            ServerInfo::named(1, "db1"),
            Window {
                start,
                end: start + chrono::Duration::hours(24),
            },
            queries,
        )
    };
    let mut w = at(0, queries(n, 0, true));
    // Baselines carry counters only, as the reader gives them.
    w.baselines = (1..=3).map(|k| at(k, queries(n, k, false))).collect();
    w
}

fn score_analyzer() -> HealthScoreAnalyzer {
    HealthScoreAnalyzer::new(
        HealthScoreSettings::default(),
        HealthInputs {
            powa: PowaHealthAnalyzer::new(PowaHealthSettings::default()),
            regression: RegressionAnalyzer::new(RegressionSettings::default()),
            workload: WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default()),
            hogs: ResourceHogAnalyzer::new(ResourceHogSettings::default()),
        },
    )
}

/// Every analyzer as a closure over the window, by name.
#[allow(clippy::type_complexity)]
fn analyzers() -> Vec<(&'static str, Box<dyn FnMut(&StatementsWindow) -> usize>)> {
    let slow = SlowQueryAnalyzer::new(SlowQuerySettings::default());
    let reg = RegressionAnalyzer::new(RegressionSettings::default());
    let wl = WorkloadChangeAnalyzer::new(WorkloadChangeSettings::default());
    let hogs = ResourceHogAnalyzer::new(ResourceHogSettings::default());
    let health = PowaHealthAnalyzer::new(PowaHealthSettings::default());
    let mut score = score_analyzer();
    vec![
        (
            "baseline_clone_rows",
            Box::new(|w: &StatementsWindow| black_box(w.queries.clone()).len()),
        ),
        (
            "slow_queries",
            Box::new(move |w| slow.analyze_window(w).len()),
        ),
        ("regression", Box::new(move |w| reg.analyze_window(w).len())),
        (
            "workload_change",
            Box::new(move |w| wl.analyze_window(w).len()),
        ),
        (
            "resource_hogs",
            Box::new(move |w| hogs.analyze_window(w).len()),
        ),
        (
            "powa_health",
            Box::new(move |w| health.analyze_window(w).len()),
        ),
        (
            "health_score",
            Box::new(move |w| score.analyze_window(w).len()),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let w = window(N);
    let mut g = c.benchmark_group("analyze_10k_queries_3_baselines");
    for (name, mut f) in analyzers() {
        g.bench_function(name, |b| b.iter(|| black_box(f(black_box(&w)))));
    }
    g.finish();
    summary(&w);
}

/// Median wall time of `f` over `runs` runs.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

/// Each analyzer's median time as a multiple of the pass-through's, interleaved so that
/// both see the same machine load.
fn summary(w: &StatementsWindow) {
    let mut all = analyzers();
    let (base_name, mut base) = all.remove(0);
    println!("\nratio to {base_name} (10,000 queries, 3 baselines, kcache):");
    let mut total = 0.0;
    for (name, mut f) in all {
        let b = median_time(21, || {
            black_box(base(w));
        });
        let t = median_time(21, || {
            black_box(f(w));
        });
        let ratio = t.as_secs_f64() / b.as_secs_f64();
        total += ratio;
        println!("  {name:<16} {ratio:>7.2}×  ({} insights)", f(w));
    }
    println!("  {:<16} {total:>7.2}×", "all analyzers");
}

criterion_group!(benches, bench);
criterion_main!(benches);
