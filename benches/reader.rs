//! What reading PoWA costs, at the scale of issue 15, on a synthetic PoWA 4.1 repository
//! that PoWA itself coalesced, in the real lab.
//!
//! **What it builds** (once; reused by later runs): by default 10 remote servers (srvid
//! 100…) × 1,500 query keys × 2,340 snapshots of 5 minutes (8 days and 3 hours), with
//! pg_stat_statements and pg_stat_kcache. `synthetic_powa.sql` registers a server;
//! `synthetic_powa_snapshots.sql` takes its snapshots the way PoWA does: each
//! snapshot's rows into `powa_statements_history_current(_db)` and
//! `powa_kcache_metrics_current(_db)`, `powa_snapshot_metas` advanced, and every 100
//! snapshots PoWA's own `powa_statements_aggregate` / `powa_kcache_aggregate` coalesce
//! them (history rows, `records` order and mins/maxs are PoWA's). The workload has
//! late-born keys, a counter reset of every 101st key, a regression (×5 mean time over
//! the last day) and a one-hour spike; server 101 also has a server-wide reset inside
//! the last day. Server 100 and 101 are generated, the others are copies of 100. The
//! table `bench_synthetic` (in the repository) records each server's model and whether
//! it is complete: a complete build of the same size is reused (a build takes about 8
//! minutes on 2 cores; one stopped half-way goes on where it stopped). Each run then adds 13
//! snapshots to every server (and one coalesce), so the history grows a little per run.
//!
//! **Run**: `POWA_LAB_ENV=…/lab.env BENCH_REPEAT=1 nice cargo bench --all-features
//! --bench reader` (without POWA_LAB_ENV it starts a lab of its own). Sizes:
//! BENCH_SERVERS, BENCH_KEYS, BENCH_SNAPSHOTS (servers from srvid BENCH_FIRST_SRVID, default
//! 100, on); repetitions of the cold reads:
//! BENCH_REPEAT (default 3). `benches/once_sessions.sh` then times `once` over the same
//! repository with 1 and 4 sessions.
//!
//! **What it reports**, as ratios within one run (no timed assertion):
//! - cold analysis (24 h window, statements and kcache, plus the baseline the same day a
//!   week back), per server and for the fleet read one server after another, through the
//!   crate's reader (`read_window` + `read_baseline`), against (a) the naive read (every
//!   point unnested), (b) a one-shot reference SQL (the S3 shape of the PoWA notes,
//!   generated for every field) and (c) the seed system's query (statements only, unnest
//!   and first/last; wrong on resets, timed only). The crate's result and the reference
//!   SQL's are both checked number by number against the naive read;
//! - the live window (`LiveWindow::cycle`): start-up, the steady cycle per new
//!   snapshot, the cycle right after a coalesce, the hourly cycle (the window start passes
//!   a checkpoint: the start-up lump and the baseline move by an hour), its windows and
//!   baselines checked against the naive read;
//! - memory: the process's RSS (now and peak) and the live windows' heap (a counting
//!   allocator).

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use powa_sentinel::powa::live::LiveWindow;
use powa_sentinel::powa::reader::{
    read_baseline, read_window, read_window_with, ReadMode, StatementsWindow, CALLS, COUNTERS,
};
use powa_sentinel::powa::{connect, QueryKey, RepositorySettings, Session};
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

/// srvid of the first bench server (BENCH_FIRST_SRVID, at least 100; default 100): the
/// others follow it.
fn first_srvid() -> usize {
    env_usize("BENCH_FIRST_SRVID", 100).max(100)
}
/// Version of the workload model in the SQL files: a build by another version is redone.
const GENERATOR: u32 = 2;

fn repo_psql(sql: &str) -> String {
    support::lab().psql("repo", "powa", sql)
}

const SETUP_SQL: &str = include_str!("synthetic_powa.sql");
const SNAPSHOTS_SQL: &str = include_str!("synthetic_powa_snapshots.sql");

/// Runs an SQL script with psql variables, as the lab's superuser, `psql -f` (each
/// statement in its own transaction), niced, its backend reniced too.
fn psql_script(text: &str, vars: &[(&str, String)]) {
    let tag = format!("bench-gen-{}", support::unique());
    // psql runs as the lab's OS user, which may not read this tree.
    let path = std::env::temp_dir().join(format!("{tag}.sql"));
    std::fs::write(&path, text).unwrap();
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let lab = support::lab();
    let mut cmd = Command::new("nice");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/powa-lab"))
        .arg("psql")
        .arg(&lab.dir)
        .arg("repo")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"])
        .arg("-d")
        .arg(format!("dbname=powa application_name={tag}"));
    for (k, v) in vars {
        cmd.arg("-v").arg(format!("{k}={v}"));
    }
    cmd.arg("-f").arg(&path);
    let mut child = cmd.spawn().expect("run powa-lab psql");
    // The work is the server's: lower its backend's priority as well.
    let pid = (0..50).find_map(|_| {
        if child.try_wait().ok().flatten().is_some() {
            return Some(String::new());
        }
        let pid = repo_psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name = '{tag}'"
        ));
        if pid.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            None
        } else {
            Some(pid)
        }
    });
    if let Some(pid) = pid.filter(|p| !p.is_empty()) {
        let _ = Command::new("renice")
            .args(["-n", "10", "-p", &pid])
            .output();
    }
    let out = child.wait_with_output().expect("wait for psql");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "psql -f {} failed",
        text.lines().next().unwrap_or("")
    );
}

/// Builds the synthetic repository unless a complete one of this size is there; returns
/// how long the build took (None: reused).
fn build_data(servers: usize, keys: usize, snapshots: usize) -> Option<Duration> {
    let last = first_srvid() + servers - 1;
    let spec = format!("generator = {GENERATOR} AND keys = {keys} AND snapshots = {snapshots}");
    let have_table = repo_psql("SELECT to_regclass('public.bench_synthetic') IS NOT NULL") == "t";
    let complete = |a: usize, b: usize| -> usize {
        if !have_table {
            return 0;
        }
        repo_psql(&format!(
            "SELECT count(*) FROM bench_synthetic WHERE srvid BETWEEN {a} AND {b} AND complete AND {spec}"
        ))
        .parse()
        .unwrap()
    };
    if complete(first_srvid(), last) == servers {
        eprintln!("reusing the synthetic repository already in the lab");
        return None;
    }
    let started = Instant::now();
    // All servers share one timeline: the one already begun, else ending now.
    let t_end = if have_table {
        repo_psql(&format!(
            "SELECT t_end FROM bench_synthetic WHERE srvid = {f} AND {spec}",
            f = first_srvid()
        ))
    } else {
        String::new()
    };
    let t_end = if t_end.is_empty() {
        repo_psql("SELECT date_trunc('minute', now())")
    } else {
        t_end
    };
    // Server 100: no server-wide reset; server 101: one inside the last day.
    let generated: Vec<(usize, i64)> = [
        (first_srvid(), -1),
        (first_srvid() + 1, snapshots as i64 - 150),
    ]
    .into_iter()
    .take(servers)
    .collect();
    for (srvid, global_reset) in generated {
        if complete(srvid, srvid) == 1 {
            continue;
        }
        let t = Instant::now();
        // A build begun with this model goes on where it stopped (each batch commits).
        let begun = repo_psql("SELECT to_regclass('public.bench_synthetic') IS NOT NULL") == "t"
            && repo_psql(&format!(
                "SELECT count(*) FROM bench_synthetic WHERE srvid = {srvid} AND {spec} AND t_end = '{t_end}'"
            )) == "1";
        if !begun {
            psql_script(
                SETUP_SQL,
                &[
                    ("srvid", srvid.to_string()),
                    ("keys", keys.to_string()),
                    ("snapshots", snapshots.to_string()),
                    ("global_reset", global_reset.max(-1).to_string()),
                    ("t_end", t_end.clone()),
                    ("generator", GENERATOR.to_string()),
                ],
            );
        }
        psql_script(
            SNAPSHOTS_SQL,
            &[
                ("srvids", srvid.to_string()),
                ("add", "-1".to_string()),
                ("force_coalesce", "false".to_string()),
            ],
        );
        repo_psql(&format!(
            "UPDATE bench_synthetic SET complete = true WHERE srvid = {srvid}"
        ));
        eprintln!("generated server {srvid} in {:.0?}", t.elapsed());
    }
    let f = first_srvid();
    for s in first_srvid() + 2..=last {
        if complete(s, s) == 1 {
            continue;
        }
        let t = Instant::now();
        let copy = |table: &str, cols: &str| {
            format!("INSERT INTO {table} (srvid, {cols}) SELECT {s}, {cols} FROM {table} WHERE srvid = {f};")
        };
        let history = "coalesce_range, mins_in_range, maxs_in_range";
        let sql = [
            "BEGIN;".to_string(),
            format!("DELETE FROM powa_servers WHERE id = {s};"),
            format!(
                "INSERT INTO powa_servers (id, hostname, alias, port, username, dbname, frequency, powa_coalesce, retention) \
                 SELECT {s}, 'bench-{s}', 'bench-{s}', {port}, username, dbname, frequency, powa_coalesce, retention \
                 FROM powa_servers WHERE id = {f};",
                port = 10000 + s
            ),
            copy("powa_extensions", "extname, version"),
            copy(
                "powa_functions",
                "module, operation, function_name, query_source, query_cleanup, added_manually, enabled, priority, extname",
            ),
            copy("powa_databases", "oid, datname, dropped"),
            copy("powa_statements", "queryid, dbid, userid, query, last_present_ts"),
            copy("powa_statements_history", &format!("queryid, dbid, userid, records, {history}")),
            copy("powa_statements_history_current", "queryid, dbid, userid, record"),
            copy("powa_statements_history_db", &format!("dbid, records, {history}")),
            copy("powa_statements_history_current_db", "dbid, record"),
            copy("powa_kcache_metrics", &format!("queryid, dbid, userid, top, metrics, {history}")),
            copy("powa_kcache_metrics_current", "queryid, dbid, userid, top, metrics"),
            copy("powa_kcache_metrics_db", &format!("dbid, top, metrics, {history}")),
            copy("powa_kcache_metrics_current_db", "dbid, top, metrics"),
            copy("powa_snapshot_metas", "coalesce_seq, snapts, aggts, purgets"),
            copy("bench_synthetic", "generator, keys, snapshots, t_end, global_reset, complete"),
            "COMMIT;".to_string(),
        ]
        .join("\n");
        psql_script(&sql, &[]);
        eprintln!("copied server {f} to {s} in {:.0?}", t.elapsed());
    }
    let t = Instant::now();
    psql_script(
        &[
            "powa_statements_history",
            "powa_statements_history_current",
            "powa_statements_history_db",
            "powa_statements_history_current_db",
            "powa_kcache_metrics",
            "powa_kcache_metrics_current",
            "powa_kcache_metrics_db",
            "powa_kcache_metrics_current_db",
            "powa_statements",
        ]
        .map(|t| format!("VACUUM ANALYZE {t};\n"))
        .concat(),
        &[],
    );
    eprintln!("vacuumed in {:.0?}", t.elapsed());
    Some(started.elapsed())
}

/// One more snapshot of every bench server, 5 minutes after its last, by the same model;
/// then PoWA's aggregates when `coalesce` or when coalesce_seq reaches a multiple of 100
/// (returns whether they ran).
fn add_snapshot(servers: usize, coalesce: bool) -> bool {
    let ids: Vec<String> = (first_srvid()..first_srvid() + servers)
        .map(|s| s.to_string())
        .collect();
    psql_script(
        SNAPSHOTS_SQL,
        &[
            ("srvids", ids.join(",")),
            ("add", "1".to_string()),
            ("force_coalesce", coalesce.to_string()),
        ],
    );
    let seq: u64 = repo_psql(&format!(
        "SELECT coalesce_seq FROM powa_snapshot_metas WHERE srvid = {}",
        first_srvid()
    ))
    .parse()
    .unwrap();
    coalesce || seq.is_multiple_of(100)
}

/// A source's tables and counters for the reference SQL (PoWA 4.1 names).
struct Shape {
    history: &'static str,
    current: &'static str,
    array: &'static str,
    record: &'static str,
    keys: &'static [&'static str],
    /// Counter expressions over a record `{r}`; the first two detect resets.
    fields: Vec<String>,
}

fn statements_shape() -> Shape {
    let names = [
        "calls",
        "total_exec_time",
        "rows",
        "shared_blks_hit",
        "shared_blks_read",
        "shared_blks_dirtied",
        "shared_blks_written",
        "local_blks_hit",
        "local_blks_read",
        "temp_blks_read",
        "temp_blks_written",
        "blk_read_time",
        "blk_write_time",
        "plans",
        "total_plan_time",
        "wal_bytes",
    ];
    assert_eq!(names.len(), COUNTERS.len());
    Shape {
        history: "powa_statements_history",
        current: "powa_statements_history_current",
        array: "records",
        record: "record",
        keys: &["queryid", "dbid", "userid"],
        fields: names
            .iter()
            .map(|f| format!("coalesce(({{r}}).{f}, 0)::float8"))
            .collect(),
    }
}

fn kcache_shape() -> Shape {
    Shape {
        history: "powa_kcache_metrics",
        current: "powa_kcache_metrics_current",
        array: "metrics",
        record: "metrics",
        keys: &["queryid", "dbid", "userid", "top"],
        fields: ["user_time", "system_time", "reads", "writes"]
            .iter()
            .map(|f| {
                format!("(coalesce(({{r}}).plan_{f}, 0)::float8 + coalesce(({{r}}).exec_{f}, 0)::float8)")
            })
            .collect(),
    }
}

/// The one-shot reference: S3 (anchored, reset-aware) deltas per key over [$1, $2] of
/// srvid $3, $1 being the anchor. Whole coalesce ranges inside the window are pieces from
/// mins/maxs, trusted only after a piece of the same key they do not start below;
/// boundary ranges, untrusted ranges and current rows are unnested and collapsed per key
/// (first, last, values before each reset). Columns: dbid, userid, queryid, [top], one
/// delta per field.
fn s3_sql(s: &Shape) -> String {
    let n = s.fields.len();
    let f = |i: usize, r: &str| s.fields[i].replace("{r}", r);
    let rst = |cur: &str, prev: &str| {
        format!(
            "({} < {} OR {} < {})",
            f(0, cur),
            f(0, prev),
            f(1, cur),
            f(1, prev)
        )
    };
    let list = |p: &str| {
        s.keys
            .iter()
            .map(|k| format!("{p}{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cols = |g: &dyn Fn(usize) -> String| (0..n).map(g).collect::<Vec<_>>().join(", ");
    let sums = cols(&|i| format!("coalesce(sum({}) FILTER (WHERE rst), 0) AS c{i}", f(i, "p")));
    let collapse = |from: &str| {
        format!(
            "SELECT min((x).ts) AS t0, (array_agg(x ORDER BY (x).ts))[1] AS vf, \
                    (array_agg(x ORDER BY (x).ts DESC))[1] AS vl, {sums} \
             FROM (SELECT x, p, (p).ts IS NOT NULL AND {r} AS rst \
                   FROM (SELECT x, lag(x) OVER (ORDER BY (x).ts) AS p FROM {from}) s1) s2",
            r = rst("x", "p")
        )
    };
    let keys = list("");
    // Read back by position: dbid, userid, queryid, then the deltas (extra keys ignored).
    let out_keys = "dbid::int8, userid::int8, queryid";
    let join_on = s
        .keys
        .iter()
        .map(|k| format!("h.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let deltas = cols(&|i| {
        format!(
            "min({l}) - min({fst}) + sum(c{i}) \
             + coalesce(sum({pv}) FILTER (WHERE (pv).ts IS NOT NULL AND {r}), 0) \
             + CASE WHEN min(t0) > $1 THEN min({fst}) ELSE 0 END",
            l = f(i, "last_v"),
            fst = f(i, "first_v"),
            pv = f(i, "pv"),
            r = rst("vf", "pv"),
        )
    });
    format!(
        "WITH w AS (SELECT tstzrange($1::timestamptz, $2::timestamptz, '[]') AS r), \
         pieces AS ( \
           SELECT {hk}, lower(h.coalesce_range) AS t0, h.mins_in_range AS vf, h.maxs_in_range AS vl, \
                  {zeros}, h.coalesce_range AS inside \
           FROM {H} h, w WHERE h.srvid = $3 AND h.coalesce_range <@ w.r \
           UNION ALL \
           SELECT {hk}, b.t0, b.vf, b.vl, {bc}, NULL::tstzrange \
           FROM {H} h CROSS JOIN w CROSS JOIN LATERAL ({boundary}) b \
           WHERE h.srvid = $3 AND h.coalesce_range && w.r AND NOT h.coalesce_range <@ w.r \
             AND b.t0 IS NOT NULL \
           UNION ALL \
           SELECT {keys}, min((x).ts), (array_agg(x ORDER BY (x).ts))[1], \
                  (array_agg(x ORDER BY (x).ts DESC))[1], {sums}, NULL::tstzrange \
           FROM (SELECT s1.*, (p).ts IS NOT NULL AND {rxp} AS rst \
                 FROM (SELECT {ck}, c.{R} AS x, \
                              lag(c.{R}) OVER (PARTITION BY {ck} ORDER BY (c.{R}).ts) AS p \
                       FROM {C} c, w WHERE c.srvid = $3 AND (c.{R}).ts <@ w.r) s1) s2 \
           GROUP BY {keys}), \
         seq AS (SELECT p.*, lag(vl) OVER (PARTITION BY {keys} ORDER BY t0) AS pv FROM pieces p), \
         resolved AS ( \
           SELECT {keys}, t0, vf, vl, {cc} FROM seq \
           WHERE inside IS NULL OR ((pv).ts IS NOT NULL AND NOT {rvp}) \
           UNION ALL \
           SELECT {sk}, b.t0, b.vf, b.vl, {bc} \
           FROM seq s JOIN {H} h ON h.srvid = $3 AND {join_on} AND h.coalesce_range = s.inside \
           CROSS JOIN LATERAL ({whole}) b \
           WHERE s.inside IS NOT NULL AND ((s.pv).ts IS NULL OR {rsvp})), \
         seq2 AS ( \
           SELECT r.*, lag(vl) OVER k AS pv, first_value(vf) OVER k AS first_v, \
                  first_value(vl) OVER (PARTITION BY {keys} ORDER BY t0 DESC) AS last_v \
           FROM resolved r WINDOW k AS (PARTITION BY {keys} ORDER BY t0)) \
         SELECT {out_keys}, {deltas} FROM seq2 GROUP BY {keys}",
        hk = list("h."),
        ck = list("c."),
        sk = list("s."),
        H = s.history,
        C = s.current,
        R = s.record,
        zeros = cols(&|i| format!("0::float8 AS c{i}")),
        bc = cols(&|i| format!("b.c{i}")),
        cc = cols(&|i| format!("c{i}")),
        boundary = collapse(&format!("unnest(h.{}) x WHERE (x).ts <@ w.r", s.array)),
        whole = collapse(&format!("unnest(h.{}) x", s.array)),
        rxp = rst("x", "p"),
        rvp = rst("vf", "pv"),
        rsvp = rst("s.vf", "s.pv"),
    )
}

/// The seed system's PoWA ≥ 4 query, statements only (what it reads and gets wrong: see
/// the file); srvids $3..$4.
const SEED_SQL: &str = include_str!("seed_query.sql");

/// Reference deltas per query: statements counters, and kcache (top variants summed).
type Reference = HashMap<QueryKey, Vec<f64>>;

async fn reference(
    client: &Session,
    sql: &str,
    width: usize,
    srvid: i32,
    anchor: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Reference {
    let rows = client
        .query(sql, &[&anchor, &end, &srvid])
        .await
        .unwrap_or_else(|e| panic!("reference SQL: {e}"));
    let mut out = Reference::new();
    for r in rows {
        let key = QueryKey {
            dbid: r.get::<_, i64>(0) as u32,
            userid: r.get::<_, i64>(1) as u32,
            queryid: r.get(2),
            toplevel: None,
        };
        let skip = 3;
        let v = out.entry(key).or_insert_with(|| vec![0.0; width]);
        for (i, x) in v.iter_mut().enumerate() {
            *x += r.get::<_, f64>(skip + i);
        }
    }
    out
}

fn close(a: f64, b: f64, floor: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(floor)
}

/// The reference's numbers equal the naive read's: same queries (with calls), same
/// counters, same kcache. Returns how many numbers were compared.
fn assert_reference(
    statements: &Reference,
    kcache: Option<&Reference>,
    naive: &StatementsWindow,
    what: &str,
) -> usize {
    let mut keys: Vec<QueryKey> = statements
        .iter()
        .filter(|(_, v)| v[CALLS] > 0.0)
        .map(|(k, _)| *k)
        .collect();
    keys.sort();
    let mut naive_keys: Vec<QueryKey> = naive.queries.iter().map(|q| q.key).collect();
    naive_keys.sort();
    if keys != naive_keys {
        let only = |a: &[QueryKey], b: &[QueryKey]| -> Vec<i64> {
            a.iter()
                .filter(|k| !b.contains(k))
                .map(|k| k.queryid)
                .take(10)
                .collect()
        };
        panic!(
            "{what}: not the same queries: {} in the reference, {} in the naive read; only in the reference {:?}, only in the naive read {:?}",
            keys.len(),
            naive_keys.len(),
            only(&keys, &naive_keys),
            only(&naive_keys, &keys)
        );
    }
    let mut compared = 0;
    for q in &naive.queries {
        let r = &statements[&q.key];
        for (i, name) in COUNTERS.iter().enumerate() {
            assert!(
                close(r[i], q.counters[i], 1.0),
                "{what}: {:?} {name}: reference {} vs naive {}",
                q.key,
                r[i],
                q.counters[i]
            );
            compared += 1;
        }
        if let Some(k) = kcache {
            let n = q.kcache.unwrap_or_default();
            let r = k.get(&q.key).cloned().unwrap_or_else(|| vec![0.0; 4]);
            for (i, v) in [
                n.user_time_s,
                n.system_time_s,
                n.reads_bytes,
                n.writes_bytes,
            ]
            .into_iter()
            .enumerate()
            {
                assert!(
                    close(r[i], v, 1e-3),
                    "{what}: {:?} kcache field {i}: reference {} vs naive {v}",
                    q.key,
                    r[i]
                );
                compared += 1;
            }
        }
    }
    compared
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sum(v: &[Duration]) -> Duration {
    v.iter().sum()
}

/// min / median / max in ms.
fn spread(v: &[Duration]) -> String {
    if v.is_empty() {
        return "none".to_string();
    }
    let mut v = v.to_vec();
    v.sort();
    format!(
        "{:.1} ms (min {:.1}, max {:.1}, n {})",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

/// VmRSS and VmHWM of this process, in MB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    let servers = env_usize("BENCH_SERVERS", 10).max(1);
    let keys = env_usize("BENCH_KEYS", 1500);
    let snapshots = env_usize("BENCH_SNAPSHOTS", 8 * 288 + 36);
    let repeat = env_usize("BENCH_REPEAT", 3).max(1);
    let built = build_data(servers, keys, snapshots);
    let size = repo_psql("SELECT pg_size_pretty(pg_database_size('powa'))");
    let now_snapshots = repo_psql(&format!(
        "SELECT min(coalesce_seq) FROM powa_snapshot_metas WHERE srvid = {}",
        first_srvid()
    ));
    println!(
        "synthetic PoWA 4.1 repository: {servers} servers x {keys} query keys, {now_snapshots} snapshots \
         of 5 min each (built with {snapshots}; {}); repository database {size}",
        match built {
            Some(d) => format!("generated in {:.0} s", d.as_secs_f64()),
            None => "reused".to_string(),
        }
    );

    // The connection drivers are spawned on the actix (local) runtime, as in the daemon.
    actix_rt::System::new().block_on(async move {
        let mut settings = RepositorySettings::from_dsn(&support::lab().repo_dsn());
        // The naive reads and the seed's query over the fleet outlast the default 30 s.
        settings.statement_timeout = Duration::from_secs(600);
        let repo = connect("bench", &settings)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let last_srvid = (first_srvid() + servers - 1) as i32;
        let targets: Vec<_> = repo
            .info
            .servers
            .iter()
            .filter(|s| (first_srvid() as i32..=last_srvid).contains(&s.srvid))
            .cloned()
            .collect();
        assert_eq!(targets.len(), servers, "bench servers discovered");
        assert!(
            targets
                .iter()
                .all(|s| s.modules.iter().any(|m| m == "pg_stat_kcache")),
            "bench servers record pg_stat_kcache"
        );
        let end = targets
            .iter()
            .filter_map(|s| s.last_snapshot)
            .max()
            .unwrap_or_else(Utc::now);
        let day = chrono::Duration::days(1);
        let week = chrono::Duration::days(7);
        let window = Window {
            start: end - day,
            end,
        };
        let baseline = Window {
            start: window.start - week,
            end: window.end - week,
        };
        let (client, info) = (&repo.client, &repo.info);
        let st_sql = s3_sql(&statements_shape());
        let kc_sql = s3_sql(&kcache_shape());

        // Cold analysis, server by server: the crate, the naive read, the reference SQL,
        // the seed's query; the first two and the last checked against the naive read.
        let (mut fast, mut naive, mut refsql, mut seed) = (vec![], vec![], vec![], vec![]);
        let (mut checked_fast, mut checked_ref, mut queries_seen) = (0usize, 0usize, 0usize);
        for r in 0..repeat {
            let (mut f_round, mut n_round, mut r_round, mut s_round) = (vec![], vec![], vec![], vec![]);
            for server in &targets {
                let t = Instant::now();
                let fw = read_window(client, "bench", info, server, window)
                    .await
                    .expect("read_window");
                let fb = read_baseline(client, "bench", info, server, baseline)
                    .await
                    .expect("read_baseline");
                f_round.push(t.elapsed());

                let t = Instant::now();
                let nw = read_window_with(client, "bench", info, server, window, true, ReadMode::Naive)
                    .await
                    .expect("naive window");
                let nb = read_window_with(client, "bench", info, server, baseline, false, ReadMode::Naive)
                    .await
                    .expect("naive baseline");
                n_round.push(t.elapsed());
                let label = |w: &str| format!("{w}, {}", server.name);
                assert_same_windows(&fw, &nw, &label("24h window"));
                assert_same_windows(&fb, &nb, &label("baseline"));
                if r == 0 {
                    checked_fast += (nw.queries.len() * (COUNTERS.len() + 4)) + nb.queries.len() * COUNTERS.len();
                    queries_seen += nw.queries.len();
                }

                let (wa, ba) = (
                    nw.anchor.expect("PoWA has a snapshot before the window"),
                    nb.anchor.expect("PoWA has a snapshot before the baseline"),
                );
                let t = Instant::now();
                let rs = reference(client, &st_sql, COUNTERS.len(), server.srvid, wa, window.end).await;
                let rk = reference(client, &kc_sql, 4, server.srvid, wa, window.end).await;
                let rb = reference(client, &st_sql, COUNTERS.len(), server.srvid, ba, baseline.end).await;
                r_round.push(t.elapsed());
                let n1 = assert_reference(&rs, Some(&rk), &nw, &label("reference SQL, 24h window"));
                let n2 = assert_reference(&rb, None, &nb, &label("reference SQL, baseline"));
                if r == 0 {
                    checked_ref += n1 + n2;
                }

                let t = Instant::now();
                for w in [window, baseline] {
                    client
                        .query(SEED_SQL, &[&w.start, &w.end, &server.srvid, &server.srvid])
                        .await
                        .expect("seed query");
                }
                s_round.push(t.elapsed());
            }
            fast.push(f_round);
            naive.push(n_round);
            refsql.push(r_round);
            seed.push(s_round);
        }
        // The seed reads the whole fleet in one query per window.
        let mut seed_fleet = Vec::new();
        for _ in 0..repeat {
            let t = Instant::now();
            for w in [window, baseline] {
                client
                    .query(SEED_SQL, &[&w.start, &w.end, &(first_srvid() as i32), &last_srvid])
                    .await
                    .expect("seed query, fleet");
            }
            seed_fleet.push(t.elapsed());
        }
        let per_server = |v: &[Vec<Duration>]| median(v.iter().flatten().copied().collect());
        let fleet = |v: &[Vec<Duration>]| median(v.iter().map(|r| sum(r)).collect());
        let (f1, n1, r1, s1) = (per_server(&fast), per_server(&naive), per_server(&refsql), per_server(&seed));
        let (fa, na, ra, sa) = (fleet(&fast), fleet(&naive), fleet(&refsql), fleet(&seed));
        let sf = median(seed_fleet);
        let x = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "cold analysis (24h window with kcache + baseline 7 days back), per server, median of {} reads:",
            servers * repeat
        );
        println!(
            "  crate {:.0} ms | naive {:.0} ms (naive/crate {:.2}) | reference S3 SQL {:.0} ms (reference/crate {:.2}) | \
             seed query, statements only {:.0} ms (seed/crate {:.2})",
            ms(f1), ms(n1), x(n1, f1), ms(r1), x(r1, f1), ms(s1), x(s1, f1)
        );
        println!(
            "cold analysis, whole fleet ({servers} servers one after another on one session), median of {repeat}:"
        );
        println!(
            "  crate {:.2} s | naive {:.2} s (naive/crate {:.2}) | reference S3 SQL {:.2} s (reference/crate {:.2}) | \
             seed query per server {:.2} s (seed/crate {:.2}), seed query for all servers at once {:.2} s (seed/crate {:.2})",
            fa.as_secs_f64(), na.as_secs_f64(), x(na, fa), ra.as_secs_f64(), x(ra, fa),
            sa.as_secs_f64(), x(sa, fa), sf.as_secs_f64(), x(sf, fa)
        );
        println!(
            "  checked equal to the naive read: crate {checked_fast} numbers, reference SQL {checked_ref} numbers \
             ({queries_seen} queries in the 24h windows)"
        );
        let (rss_cold, _) = rss();

        // Live windows: start-up, steady cycles (one new snapshot each), a cycle right
        // after a coalesce, and the cycles whose window start passes a checkpoint.
        let offsets = [week];
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let mut lives: Vec<LiveWindow> = targets
            .iter()
            .map(|s| LiveWindow::new("bench", Arc::new(repo.info.clone()), s.clone()))
            .collect();
        let live_window = |end| Window { start: end - day, end };
        let mut startup = Vec::new();
        for l in lives.iter_mut() {
            let t = Instant::now();
            l.cycle(client, live_window(end), &offsets)
                .await
                .expect("start-up");
            startup.push(t.elapsed());
        }
        let (rss_started, _) = rss();
        let (mut steady, mut hourly, mut coalesced, mut fills) = (vec![], vec![], vec![], vec![]);
        let (mut steady_rows, mut hourly_rows, mut coalesced_rows, mut fill_rows) = (0u64, 0u64, 0u64, 0u64);
        let mut last: Vec<StatementsWindow> = Vec::new();
        // 12 cycles of 5 minutes cross one hour; the 13th follows a coalesce.
        let cycles = 13;
        for c in 1..=cycles {
            let coalesce = add_snapshot(servers, c == cycles);
            let now = end + chrono::Duration::minutes(5 * c as i64);
            last.clear();
            for l in lives.iter_mut() {
                let t = Instant::now();
                let (w, cost) = l
                    .cycle(client, live_window(now), &offsets)
                    .await
                    .expect("cycle");
                let took = t.elapsed();
                if cost.window_reads + cost.slides + cost.cached_slides == 0 && cost.boundary_fills > 0 {
                    // The second cycle fills the caches the start-up left due.
                    fills.push(took);
                    fill_rows += cost.rows;
                } else if cost.window_reads + cost.slides + cost.cached_slides + cost.boundary_fills > 0 {
                    hourly.push(took);
                    hourly_rows += cost.rows;
                } else if coalesce {
                    coalesced.push(took);
                    coalesced_rows += cost.rows;
                } else {
                    steady.push(took);
                    steady_rows += cost.rows;
                }
                last.push(w);
            }
        }
        let mut checked_live = 0;
        for (i, w) in last.iter().enumerate() {
            let naive = read_window_with(
                client,
                "bench",
                info,
                &targets[i],
                Window {
                    start: w.window.start,
                    end: w.last_ts.expect("data"),
                },
                true,
                ReadMode::Naive,
            )
            .await
            .expect("naive");
            assert_same_windows(w, &naive, &format!("live window, {}", targets[i].name));
            checked_live += naive.queries.len() * (COUNTERS.len() + 4);
            for b in &w.baselines {
                let nb = read_window_with(client, "bench", info, &targets[i], b.window, false, ReadMode::Naive)
                    .await
                    .expect("naive baseline");
                assert_same_windows(b, &nb, &format!("live baseline, {}", targets[i].name));
                checked_live += nb.queries.len() * COUNTERS.len();
            }
        }
        let keys_live: usize = last.iter().map(|w| w.queries.len()).sum();
        drop(last);
        let held = LIVE_BYTES.load(Ordering::Relaxed) - before;
        let estimated: usize = lives.iter().map(|l| l.heap_bytes()).sum();
        let per = |rows: u64, v: &[Duration]| rows / v.len().max(1) as u64;
        println!(
            "live start-up per server (24h window with kcache + baseline): {}; whole fleet {:.2} s",
            spread(&startup),
            sum(&startup).as_secs_f64()
        );
        println!(
            "live steady cycle per new snapshot, per server: {}, {} rows read; fleet {:.1} ms per snapshot",
            spread(&steady),
            per(steady_rows, &steady),
            ms(sum(&steady)) / (steady.len() as f64 / servers as f64).max(1.0)
        );
        println!(
            "live cycle that fills the boundary caches the start-up left due (the second), per server: {}, {} rows read",
            spread(&fills),
            per(fill_rows, &fills)
        );
        println!(
            "live cycle right after a coalesce (powa_*_aggregate), per server: {}, {} rows read",
            spread(&coalesced),
            per(coalesced_rows, &coalesced)
        );
        println!(
            "live hourly cycle (the window start passes a checkpoint: the hour left behind is taken off the start-up lump, from the boundary cache while the start lies in the ranges it holds, the baseline moves by the hour it lost and gained), per server: {}, {} rows read",
            spread(&hourly),
            per(hourly_rows, &hourly)
        );
        let st = median(steady.clone()).as_secs_f64();
        println!(
            "  per server, cold analysis / steady cycle {:.0}, cold analysis / hourly cycle {:.2}",
            f1.as_secs_f64() / st,
            f1.as_secs_f64() / median(hourly.clone()).as_secs_f64()
        );
        println!(
            "  live windows checked equal to the naive read: {checked_live} numbers ({keys_live} queries in the windows)"
        );
        let (rss_end, peak) = rss();
        println!(
            "memory: live state of {servers} servers {:.1} MB held (allocator), {:.1} MB estimated; \
             process RSS {rss_cold:.0} MB after the cold reads, {rss_started:.0} MB after the live start-up, \
             {rss_end:.0} MB at the end, peak {peak:.0} MB",
            held as f64 / 1e6,
            estimated as f64 / 1e6
        );
        drop(lives);
    });
}
