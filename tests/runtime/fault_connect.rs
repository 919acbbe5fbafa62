//! Fault suite, connection side: a repository host that accepts connections and never
//! answers (a black hole), a repository that freezes (a proxy in front of the lab's
//! repository stops forwarding bytes and keeps the sockets open, as a stopped PostgreSQL
//! does), and SIGTERM during `once`. Real binary, real PoWA lab; the shared lab itself
//! is never stopped.
//!
//! Waits are liveness bounds ("this must happen eventually"); the times measured are
//! printed (`cargo test --test runtime fault_connect -- --nocapture`) for the fault table in
//! docs/operations.md.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::RwLockReadGuard;
use std::time::Duration;

use serde_json::Value;

use crate::robot;
use crate::support::daemon::{fast_daemon, has_insights, Proc};
use crate::support::faults::{BlackHole, Proxy};
use crate::support::{lab, same_servers};

const LIMIT: Duration = Duration::from_secs(90);

/// The file channel's output, in the process's directory.
const ARCHIVE: &str = "insights.jsonl";

/// The lab's PoWA 4 repository, for the proxy.
fn repo_addr() -> SocketAddr {
    let port: u16 = lab().var("POWA_LAB_REPO_PORT").parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The lab repository's DSN, sent through `port` on loopback instead; in clear (the lab's
/// repository may have TLS on), so that the proxy can see a query's text.
fn dsn_via(port: u16) -> String {
    let l = lab();
    format!(
        "host=127.0.0.1 port={port} dbname=powa sslmode=disable user={} password={}",
        l.var("POWA_LAB_RO_USER"),
        l.var("POWA_LAB_RO_PASSWORD")
    )
}

/// A configuration collecting every second, reporting once a year (what is found stays
/// in the gate until a flush) to a file channel in `dir`; `repos` are (name, dsn, extra
/// keys).
fn config(http_port: u16, dir: &Path, repos: &[(&str, String, String)], extra: &str) -> String {
    let settings = fast_daemon(http_port, "60s", "60s")
        .file("archive", &dir.join(ARCHIVE))
        .toml(extra);
    repos
        .iter()
        .fold(settings, |s, (name, dsn, keys)| {
            s.repository(name, dsn).toml(keys)
        })
        .into_text()
}

/// The insights the file channel of a process started on [`config`] received.
fn archived(p: &Proc) -> usize {
    std::fs::read_to_string(p.dir().join(ARCHIVE))
        .unwrap_or_default()
        .lines()
        .count()
}

/// `repository_up` of the repository `name`, from `/metrics`.
fn repository_up(p: &Proc, name: &str) -> Option<bool> {
    let (_, body) = p.get("/metrics")?;
    let key = format!("repository_up{{repository=\"{name}\"}} ");
    let line = body.lines().find(|l| l.contains(&key))?;
    Some(line.trim_end().ends_with(" 1"))
}

/// `/readyz` says ready.
fn ready(p: &Proc) -> Option<bool> {
    p.get("/readyz").map(|(c, _)| c == 200)
}

/// Starts `powa-sentinel <command>` on the configuration `body(http port, its directory)`.
fn spawn(command: &str, body: impl FnOnce(u16, &Path) -> String) -> Proc {
    Proc::start(command, body, &[])
}

/// The repository `name` at `dsn`, with a 2 s connect timeout and `statement_timeout`.
fn guarded(
    name: &'static str,
    dsn: String,
    statement_timeout: &str,
) -> (&'static str, String, String) {
    let keys = format!("connect_timeout = \"2s\"\nstatement_timeout = \"{statement_timeout}\"");
    (name, dsn, keys)
}

/// `run` on the lab's repository (as `frozen`) behind a proxy the test can freeze, with
/// `statement_timeout`; the lab's servers stay its own while the guard is held.
fn run_behind_a_proxy(statement_timeout: &str) -> (Proxy, Proc, RwLockReadGuard<'static, ()>) {
    // A server registered by another test would be collected too.
    let servers = same_servers();
    let proxy = Proxy::start(repo_addr(), None);
    let repos = [guarded("frozen", dsn_via(proxy.port), statement_timeout)];
    let d = spawn("run", |port, dir| config(port, dir, &repos, ""));
    (proxy, d, servers)
}

/// `connect_timeout` of the black-hole tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn black_hole_config(hole: &BlackHole, http_port: u16, dir: &Path) -> String {
    let repos = [guarded("hole", dsn_via(hole.port), "2s")];
    config(http_port, dir, &repos, "")
}

/// What an operator must read: what timed out, on which repository and address, what to
/// check.
fn assert_names_the_black_hole(text: &str, hole: &BlackHole) {
    for part in [
        "repository `hole`",
        &format!("127.0.0.1:{}", hole.port),
        "accepted the connection but did not answer within",
        "is it a PostgreSQL server",
    ] {
        assert!(text.contains(part), "`{part}` missing from:\n{text}");
    }
}

/// `check` and `once` against a host that accepts and never answers give up after
/// connect_timeout (+1s of grace) with exit 1 and a message naming the repository. They
/// used to hang until killed.
#[test]
fn black_hole_check_and_once_give_up_after_connect_timeout() {
    let _turn = crate::support::turn(module_path!());
    let hole = BlackHole::start();
    for command in ["check", "once"] {
        let mut p = spawn(command, |port, dir| black_hole_config(&hole, port, dir));
        // Liveness bound, far above connect_timeout: the old binary never exits.
        let (code, took) = p.wait_exit(CONNECT_TIMEOUT * 10);
        println!("black hole: `{command}` exited {code} after {took:?} (connect_timeout {CONNECT_TIMEOUT:?})");
        assert_eq!(code, 1, "{}", p.output());
        assert!(
            took >= CONNECT_TIMEOUT,
            "it waited for connect_timeout: {took:?}"
        );
        assert_names_the_black_hole(&p.output(), &hole);
    }
}

/// `run` against a black hole: the repository is down (readyz 503, repository_up 0,
/// /status says why), the log says so, connecting is retried, and SIGTERM stops the
/// daemon at once and cleanly (it used to wait for the whole shutdown deadline).
#[test]
fn black_hole_run_is_down_retries_and_stops_on_sigterm() {
    let _turn = crate::support::turn(module_path!());
    let hole = BlackHole::start();
    let mut d = spawn("run", |port, dir| black_hole_config(&hole, port, dir));
    let took = d.wait_for("two failed attempts logged", LIMIT, |d| {
        d.records("Repository unavailable; retrying.").len() >= 2
    });
    println!("black hole: `run` logged two failed attempts after {took:?}");
    let logged = d.records("Repository unavailable; retrying.");
    assert_names_the_black_hole(logged[0]["error"].as_str().unwrap(), &hole);
    let (code, body) = d.get("/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("did not answer"), "{body}");
    assert_eq!(repository_up(&d, "hole"), Some(false));
    let st = d.status().unwrap();
    assert_eq!(st["repositories"]["hole"]["reachable"], false, "{st}");
    d.signal("TERM");
    let (code, took) = d.wait_exit(LIMIT);
    println!("black hole: `run` stopped {took:?} after SIGTERM (shutdown_deadline 60s)");
    // Exit 0: stopped within the deadline, not by running it out.
    assert_eq!(code, 0, "{}", d.output());
    assert!(took < Duration::from_secs(60), "{took:?}");
}

/// `repository_up` and `/readyz` say the repository `name` is up.
fn up(d: &Proc, name: &str) -> bool {
    ready(d) == Some(true) && repository_up(d, name) == Some(true)
}

/// A server of repository `repo` whose last cycle worked, and how many cycles it ran.
fn cycles_ok(d: &Proc, repo: &str) -> Option<u64> {
    let st = d.status()?;
    st["servers"]
        .as_object()?
        .iter()
        .filter(|(k, v)| k.starts_with(&format!("{repo}/")) && v["last_cycle"]["ok"] == true)
        .map(|(_, v)| v["cycles"].as_u64().unwrap_or(0))
        .max()
}

/// The repository freezes (the proxy stops forwarding, sockets stay open): within the
/// query deadline (statement_timeout 2s + 5s) plus the probe period it is marked down
/// (readyz 503, repository_up 0, /status unreachable) and the log says why; connecting
/// is retried meanwhile; thawed, it comes back by itself. It used to look healthy for
/// ever.
#[test]
fn frozen_repository_is_marked_down_and_recovers_when_thawed() {
    let _turn = crate::support::turn(module_path!());
    let (proxy, mut d, _servers) = run_behind_a_proxy("2s");
    d.wait_for("the repository up and a cycle done", LIMIT, |d| {
        up(d, "frozen") && cycles_ok(d, "frozen").is_some()
    });
    proxy.freeze();
    let detected = d.wait_for("the frozen repository marked down", LIMIT, |d| {
        ready(d) == Some(false)
            && repository_up(d, "frozen") == Some(false)
            && !d
                .records("Repository session lost; reconnecting. Its servers pause until then.")
                .is_empty()
    });
    println!("frozen repository: marked down {detected:?} after the freeze (statement_timeout 2s)");
    let lost = d.records("Repository session lost; reconnecting. Its servers pause until then.");
    let why = lost[0]["error"].as_str().unwrap();
    assert!(
        why.contains(&format!("no answer from 127.0.0.1:{}", proxy.port)),
        "{why}"
    );
    // The query deadline (7s), the probe period (5s), the check tick (2s), and slack.
    assert!(detected < Duration::from_secs(30), "{detected:?}");
    let st = d.status().unwrap();
    assert_eq!(st["repositories"]["frozen"]["reachable"], false, "{st}");
    // Still frozen: reconnecting is tried (and times out) with backoff.
    d.wait_for("a reconnection attempt timed out", LIMIT, |d| {
        d.records("Repository unavailable; retrying.")
            .iter()
            .any(|r| {
                r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("did not answer"))
            })
    });
    let before = cycles_ok(&d, "frozen").unwrap_or(0);
    proxy.thaw();
    let recovered = d.wait_for("readyz 200 after the thaw", LIMIT, |d| up(d, "frozen"));
    let cycled = d.wait_for("a cycle after the thaw", LIMIT, |d| {
        cycles_ok(d, "frozen").is_some_and(|n| n > before)
    });
    println!(
        "frozen repository: ready {recovered:?} after the thaw, a cycle done {:?} after",
        recovered + cycled
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0, "{}", d.output());
}

/// SIGTERM while cycles are stuck on a frozen repository (statement_timeout 120s, far
/// beyond the 60s shutdown deadline): the stuck reads are not waited for, the gate's
/// report reaches the channel, and the daemon exits 0 within the deadline. It used to
/// spend the whole deadline waiting and give the channels nothing.
#[test]
fn sigterm_while_frozen_is_prompt_and_the_channels_flush() {
    let _turn = crate::support::turn(module_path!());
    let (proxy, mut d, _servers) = run_behind_a_proxy("120s");
    d.wait_for("cycles with insights", LIMIT, |d| {
        d.status().is_some_and(|s| has_insights(&s))
    });
    assert_eq!(archived(&d), 0, "nothing is sent before the report");
    proxy.freeze();
    // Cycles start every second: some are now stuck on the frozen sessions.
    std::thread::sleep(Duration::from_secs(3));
    d.signal("TERM");
    let (code, took) = d.wait_exit(LIMIT);
    println!("frozen repository: `run` stopped {took:?} after SIGTERM (shutdown_deadline 60s)");
    assert_eq!(code, 0, "{}", d.output());
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(
        archived(&d) > 0,
        "the shutdown flush delivered nothing:\n{}",
        d.output()
    );
    assert!(!d.records("Report sent.").is_empty(), "{}", d.output());
}

/// SIGTERM while `once` is stuck reading a frozen repository: it says so, reports what
/// the other repository gave, and exits 1 (the run was cut short), as the README says.
/// It used to die of the signal (143) without a word.
#[test]
fn once_on_sigterm_logs_reports_what_it_has_and_exits_1() {
    let _turn = crate::support::turn(module_path!());
    // Frozen as soon as a collection's first read is sent: discovery went through.
    let proxy = Proxy::start(repo_addr(), Some(b"powa_statements_history_db "));
    // A server registered by another test would be analysed too.
    let _servers = same_servers();
    let repos = [
        ("main", lab().repo_dsn(), String::new()),
        guarded("frozen", dsn_via(proxy.port), "120s"),
    ];
    let mut p = spawn("once", |port, dir| {
        config(port, dir, &repos, "[analysis]\nwindow = \"10m\"")
    });
    let of_main = |records: Vec<Value>| {
        records
            .iter()
            .filter(|r| {
                r["repository"] == "main"
                    || r["server"].as_str().is_some_and(|s| s.starts_with("main/"))
            })
            .count()
    };
    p.wait_for(
        "a read stuck on the frozen repository, the other one analysed",
        LIMIT,
        |p| {
            let ready = of_main(p.records("Collector ready."));
            proxy.is_frozen() && ready > 0 && of_main(p.records("Server analysed.")) == ready
        },
    );
    p.signal("TERM");
    let (code, took) = p.wait_exit(LIMIT);
    println!("once: exited {code} {took:?} after SIGTERM");
    assert_eq!(code, 1, "{}", p.output());
    let stopping = p.records(
        "Stopping: the analysis is cut short; what was analysed so far is reported, within collection.shutdown_deadline.",
    );
    assert_eq!(stopping.len(), 1, "{}", p.output());
    assert_eq!(stopping[0]["signal"], "SIGTERM");
    let left = stopping[0]["not_analysed"].as_str().unwrap();
    assert!(
        left.contains("frozen/") && !left.contains("main/"),
        "{left}\n{}",
        p.output()
    );
    // The gate was flushed: what `main` gave went out (or there was nothing to say).
    let flushed = !p.records("Delivered.").is_empty()
        || !p
            .records("Nothing worth reporting in this window.")
            .is_empty();
    assert!(flushed, "{}", p.output());
    println!("once: {} insight(s) reached the file channel", archived(&p));
}

/// SIGTERM while `once` is delivering (a robot that takes 2s to answer): the delivery goes
/// on within the shutdown deadline, everything reaches the robot, and the exit is 0 since
/// nothing was left undone. It used to die of the signal (143) mid-delivery.
#[test]
fn once_on_sigterm_during_the_delivery_finishes_it() {
    let _turn = crate::support::turn(module_path!());
    let fake = robot::start("once-term-key", &["--delay", "2s"]);
    let channel = format!(
        "[channels.robot]\ntype = \"wecom\"\nbase_url = \"{}\"\nkey = \"once-term-key\"\n[analysis]\nwindow = \"10m\"",
        fake.url
    );
    let _servers = same_servers();
    let repos = [("main", lab().repo_dsn(), String::new())];
    let mut p = spawn("once", |port, dir| config(port, dir, &repos, &channel));
    p.wait_for("every server analysed", LIMIT, |p| {
        let ready = p.records("Collector ready.").len();
        ready > 0 && p.records("Server analysed.").len() == ready
    });
    let insights: u64 = p
        .records("Server analysed.")
        .iter()
        .map(|r| r["insights"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        insights > 0,
        "the lab gave nothing to deliver: {}",
        p.output()
    );
    p.signal("TERM");
    let (code, took) = p.wait_exit(LIMIT);
    println!("once: SIGTERM during the delivery, exited {code} {took:?} after");
    assert_eq!(code, 0, "{}", p.output());
    let stopping = p.records("Stopping: the delivery goes on within collection.shutdown_deadline.");
    assert_eq!(stopping.len(), 1, "{}", p.output());
    let delivered: Vec<Value> = p
        .records("Delivered.")
        .into_iter()
        .filter(|r| r["channel"] == "robot" && r["level"] == "INFO")
        .collect();
    assert_eq!(delivered.len(), 1, "{}", p.output());
    let received = std::fs::read_to_string(&fake.record)
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(
        Some(received),
        delivered[0]["parts"].as_u64(),
        "{}",
        p.output()
    );
}
