//! Cost of the slow-query analyzer on one server's 10,000-query window, next to a
//! pass-through baseline (cloning the window's rows) measured in the same run. Report the
//! ratio of the two, not the absolute times: the machine varies, the ratio much less.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use powa_sentinel::analyze::{SlowQueryAnalyzer, SlowQuerySettings};
use powa_sentinel::powa::discovery::ServerInfo;
use powa_sentinel::powa::reader::{
    QueryKey, QueryStats, StatementsWindow, CALLS, COUNTERS, EXEC_TIME,
};
use sentinel_actors::Window;

fn window(n: usize) -> StatementsWindow {
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let queries = (0..n)
        .map(|i| {
            let mut c = [0.0; COUNTERS.len()];
            // A skewed workload: a few heavy queries, a long tail of cheap ones.
            c[CALLS] = 1.0 + (i % 97) as f64 * 13.0;
            c[EXEC_TIME] = 50_000.0 / (1.0 + i as f64) + (i % 7) as f64;
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
                kcache: None,
                query: Some(format!("SELECT * FROM t{i} WHERE id = $1")),
            }
        })
        .collect();
    StatementsWindow {
        repository: "bench".into(),
        server: ServerInfo::named(1, "db1"),
        window: Window {
            start: t0,
            end: t0 + chrono::Duration::hours(24),
        },
        anchor: Some(t0),
        last_ts: None,
        points: 0,
        queries,
        baseline: None,
        quals: None,
    }
}

fn bench(c: &mut Criterion) {
    let w = window(10_000);
    let analyzer = SlowQueryAnalyzer::new(SlowQuerySettings::default());
    let mut g = c.benchmark_group("analyze_10k_queries");
    g.bench_function("baseline_clone_rows", |b| {
        b.iter(|| black_box(w.queries.clone()))
    });
    g.bench_function("slow_queries", |b| {
        b.iter(|| black_box(analyzer.analyze_window(black_box(&w))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
