//! What reading PoWA costs: the naive window read (every point unnested) against the fast
//! window read (whole coalesce ranges from mins/maxs) and against the live window (only
//! what PoWA added), on a large synthetic, schema-correct PoWA 4.1 history in the real
//! lab: by default 10 servers × 1,500 queries × 8 days of 5-minute snapshots, coalesced
//! every 100 snapshots. Every fast or live result is checked against the naive one.
//!
//! Run: `cargo bench --bench reader` (starts its own lab unless POWA_LAB_ENV is set; a
//! lab that already holds the data is reused). Sizes: BENCH_SERVERS, BENCH_KEYS,
//! BENCH_SNAPSHOTS; repetitions: BENCH_REPEAT.
//!
//! Reported as ratios against the naive read in the same run, plus the live windows'
//! heap (measured by a counting allocator, not estimated).

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use powa_sentinel::powa::live::LiveWindow;
use powa_sentinel::powa::reader::{read_window_with, ReadMode, StatementsWindow};
use powa_sentinel::powa::{connect, RepositorySettings};
use sentinel_actors::Window;
use support::windows::assert_same_windows;

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const FIRST_SRVID: usize = 100;

/// Generates the first server, then copies it to the others (generation is the slow part).
fn build_data(servers: usize, keys: usize, snapshots: usize) {
    let lab = support::lab();
    let have = lab.psql(
        "repo",
        "powa",
        &format!(
            "SELECT count(DISTINCT srvid) FROM powa_statements_history_current \
             WHERE srvid BETWEEN {FIRST_SRVID} AND {}",
            FIRST_SRVID + servers - 1
        ),
    );
    if have.trim() == servers.to_string() {
        eprintln!("reusing the synthetic history already in the lab");
        return;
    }
    let t = Instant::now();
    let sql = include_str!("synthetic_powa.sql")
        .replace(":srvid", &FIRST_SRVID.to_string())
        .replace(":keys", &keys.to_string())
        .replace(":snapshots", &snapshots.to_string());
    lab.psql("repo", "powa", &sql);
    eprintln!("generated server {FIRST_SRVID} in {:?}", t.elapsed());
    for s in FIRST_SRVID + 1..FIRST_SRVID + servers {
        let t = Instant::now();
        let f = FIRST_SRVID;
        lab.psql(
            "repo",
            "powa",
            &format!(
                "BEGIN; \
                 DELETE FROM powa_servers WHERE id = {s}; \
                 INSERT INTO powa_servers (id, hostname, alias, port, username, dbname, frequency, powa_coalesce, retention) \
                   VALUES ({s}, 'bench-{s}', 'bench-{s}', {port}, 'powa', 'powa', 300, 100, '30 days'); \
                 INSERT INTO powa_databases (srvid, oid, datname) VALUES ({s}, 16384, 'app'); \
                 INSERT INTO powa_statements SELECT {s}, queryid, dbid, userid, query, last_present_ts FROM powa_statements WHERE srvid = {f}; \
                 INSERT INTO powa_statements_history SELECT {s}, queryid, dbid, userid, coalesce_range, records, mins_in_range, maxs_in_range FROM powa_statements_history WHERE srvid = {f}; \
                 INSERT INTO powa_statements_history_current SELECT {s}, queryid, dbid, userid, record FROM powa_statements_history_current WHERE srvid = {f}; \
                 INSERT INTO powa_statements_history_db SELECT {s}, dbid, coalesce_range, records, mins_in_range, maxs_in_range FROM powa_statements_history_db WHERE srvid = {f}; \
                 INSERT INTO powa_statements_history_current_db SELECT {s}, dbid, record FROM powa_statements_history_current_db WHERE srvid = {f}; \
                 INSERT INTO powa_snapshot_metas (srvid, coalesce_seq, snapts, aggts) SELECT {s}, coalesce_seq, snapts, aggts FROM powa_snapshot_metas WHERE srvid = {f} \
                   ON CONFLICT (srvid) DO UPDATE SET snapts = EXCLUDED.snapts, aggts = EXCLUDED.aggts; \
                 COMMIT;",
                port = 10000 + s
            ),
        );
        eprintln!("copied server {s} in {:?}", t.elapsed());
    }
    lab.psql("repo", "powa", "VACUUM ANALYZE");
}

/// One more snapshot for every bench server, 5 minutes after its last one.
fn add_snapshot(servers: usize) {
    support::lab().psql(
        "repo",
        "powa",
        &format!(
            "BEGIN; \
             INSERT INTO powa_statements_history_current (srvid, queryid, dbid, userid, record) \
             SELECT c.srvid, c.queryid, c.dbid, c.userid, \
                    ROW((c.record).ts + interval '5 minutes', (c.record).calls + 1 + c.queryid % 20, \
                        (c.record).total_exec_time + (1 + c.queryid % 20) * (0.1 + (c.queryid % 50) * 0.7), \
                        (c.record).rows, (c.record).shared_blks_hit, (c.record).shared_blks_read, 0, 0, 0, 0, 0, 0, \
                        (c.record).temp_blks_read, (c.record).temp_blks_written, (c.record).blk_read_time, 0, 0, 0, 0, 0, 0 \
                       )::powa_statements_history_record \
             FROM powa_statements_history_current c \
             JOIN powa_snapshot_metas m ON m.srvid = c.srvid AND (c.record).ts = m.snapts \
             WHERE c.srvid BETWEEN {a} AND {b}; \
             INSERT INTO powa_statements_history_current_db (srvid, dbid, record) \
             SELECT c.srvid, c.dbid, ROW(m.snapts + interval '5 minutes', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)::powa_statements_history_record \
             FROM powa_statements_history_current_db c JOIN powa_snapshot_metas m ON m.srvid = c.srvid AND (c.record).ts = m.snapts \
             WHERE c.srvid BETWEEN {a} AND {b}; \
             UPDATE powa_snapshot_metas SET snapts = snapts + interval '5 minutes', coalesce_seq = coalesce_seq + 1 \
             WHERE srvid BETWEEN {a} AND {b}; \
             COMMIT;",
            a = FIRST_SRVID,
            b = FIRST_SRVID + servers - 1
        ),
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    let servers = env_usize("BENCH_SERVERS", 10);
    let keys = env_usize("BENCH_KEYS", 1500);
    let snapshots = env_usize("BENCH_SNAPSHOTS", 8 * 288 + 36);
    let repeat = env_usize("BENCH_REPEAT", 3).max(1);
    build_data(servers, keys, snapshots);

    // The connection drivers are spawned on the actix (local) runtime, as in the daemon.
    actix_rt::System::new().block_on(async move {
        let repo = connect(
            "bench",
            &RepositorySettings::from_dsn(&support::lab().repo_dsn()),
        )
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
        let targets: Vec<_> = repo
            .info
            .servers
            .iter()
            .filter(|s| s.name.starts_with("bench-"))
            .cloned()
            .collect();
        assert_eq!(targets.len(), servers, "bench servers discovered");
        let end = targets
            .iter()
            .filter_map(|s| s.last_snapshot)
            .max()
            .unwrap_or_else(Utc::now);
        let read = |w: Window, mode: ReadMode, i: usize| {
            let (client, info, server) = (&repo.client, &repo.info, &targets[i]);
            async move {
                let t = Instant::now();
                let r = read_window_with(client, "bench", info, server, w, false, mode)
                    .await
                    .expect("window read");
                (t.elapsed(), r)
            }
        };

        // Cold window reads, per server, naive vs fast, same numbers: the last day, the
        // last week, and the day a week ago (the baseline).
        let mut cold = Vec::new();
        for (label, days, back) in [("1d", 1i64, 0i64), ("7d", 7, 0), ("1d a week ago", 1, 7)] {
            let w = Window {
                start: end - chrono::Duration::days(days + back),
                end: end - chrono::Duration::days(back),
            };
            let (mut naive, mut fast) = (Vec::new(), Vec::new());
            for _ in 0..repeat {
                for i in 0..targets.len() {
                    let (tn, rn) = read(w, ReadMode::Naive, i).await;
                    let (tf, rf) = read(w, ReadMode::Fast, i).await;
                    assert_same_windows(&rf, &rn, &format!("{label} window, server {i}"));
                    naive.push(tn);
                    fast.push(tf);
                }
            }
            let (n, f) = (median(naive), median(fast));
            cold.push((n, f));
            println!(
                "cold {label} window, per server: naive {:.1} ms, fast {:.1} ms: {:.2}x",
                ms(n),
                ms(f),
                n.as_secs_f64() / f.as_secs_f64()
            );
        }
        let (naive_day, fast_day) = cold[0];
        let (naive_base, fast_base) = cold[2];

        // Live windows: start-up, then steady cycles, one new snapshot each.
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let mut lives: Vec<LiveWindow> = targets
            .iter()
            .map(|s| LiveWindow::new("bench", Arc::new(repo.info.clone()), s.clone()))
            .collect();
        let window = |end| Window {
            start: end - chrono::Duration::days(1),
            end,
        };
        let mut startup = Vec::new();
        for l in lives.iter_mut() {
            let t = Instant::now();
            l.cycle(&repo.client, window(end), &[]).await.expect("start-up");
            startup.push(t.elapsed());
        }
        let cycles = 6.max(repeat);
        let mut steady = Vec::new();
        let mut refreshes = Vec::new();
        let mut rows = 0;
        let mut last: Vec<StatementsWindow> = Vec::new();
        for c in 1..=cycles {
            add_snapshot(servers);
            let now = end + chrono::Duration::minutes(5 * c as i64);
            last.clear();
            for l in lives.iter_mut() {
                let t = Instant::now();
                let (w, cost) = l.cycle(&repo.client, window(now), &[]).await.expect("cycle");
                // Crossing an hour re-reads the start-up lump (first day only).
                if cost.window_reads == 0 {
                    steady.push(t.elapsed());
                    rows += cost.rows;
                } else {
                    refreshes.push(t.elapsed());
                }
                last.push(w);
            }
        }
        for (i, w) in last.iter().enumerate() {
            let naive = read_window_with(
                &repo.client,
                "bench",
                &repo.info,
                &targets[i],
                Window {
                    start: w.window.start,
                    end: w.last_ts.expect("data"),
                },
                false,
                ReadMode::Naive,
            )
            .await
            .expect("naive");
            assert_same_windows(w, &naive, &format!("live server {i}"));
        }
        let keys_live: usize = last.iter().map(|w| w.queries.len()).sum();
        drop(last);
        let held = LIVE_BYTES.load(Ordering::Relaxed) - before;
        let estimated: usize = lives.iter().map(|l| l.heap_bytes()).sum();
        let inc = median(steady.clone());
        let start = median(startup);
        let per_cycle = |d: Duration| d.as_secs_f64() * 1000.0;
        // A cycle every 5 minutes; the baseline (the same day a week ago) is re-read once
        // per checkpoint (1 h = 12 cycles), where the naive reader read the window and its
        // baseline every cycle. During the first day the start-up lump is re-read each hour
        // too.
        let live_steady = per_cycle(inc) + per_cycle(fast_base) / 12.0;
        let live_first_day = live_steady + per_cycle(fast_day) / 12.0;
        let naive_cycle = per_cycle(naive_day) + per_cycle(naive_base);
        println!(
            "live start-up per server: {:.1} ms (a fast 1d read, names and texts)",
            ms(start)
        );
        println!(
            "live cycle per server: {:.2} ms, {} rows read per cycle and server ({} cycles; {} crossed an hour)",
            ms(inc),
            rows / steady.len().max(1) as u64,
            steady.len() + refreshes.len(),
            refreshes.len()
        );
        println!(
            "steady state, 24h window + baseline a week back: live {live_steady:.2} ms per cycle vs naive \
             {naive_cycle:.1} ms: {:.0}x (first day: {live_first_day:.2} ms, {:.0}x)",
            naive_cycle / live_steady,
            naive_cycle / live_first_day
        );
        println!(
            "live state for {servers} servers, {keys_live} queries in the window: {:.1} MB held (allocator), {:.1} MB estimated",
            held as f64 / 1e6,
            estimated as f64 / 1e6
        );
        drop(lives);
    });
}
