//! Fault suite, connection side: a repository host that accepts connections and never
//! answers (a black hole), a repository that freezes (a proxy in front of the lab's
//! repository stops forwarding bytes and keeps the sockets open, as a stopped PostgreSQL
//! does), and SIGTERM during `once`. Real binary, real PoWA lab; the shared lab itself
//! is never stopped.
//!
//! Waits are liveness bounds ("this must happen eventually"); the times measured are
//! printed (`cargo test --test fault_connect -- --nocapture`) for the fault table in
//! docs/operations.md.

#[path = "support/faults.rs"]
mod faults;
#[path = "support/robot.rs"]
mod robot;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faults::{BlackHole, Proxy};
use serde_json::Value;
use support::lab;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration collecting every second, reporting once a year (what is found stays
/// in the gate until a flush) to a file channel in `dir`; `repos` are (name, dsn, extra
/// keys).
fn config(http_port: u16, dir: &Path, repos: &[(&str, String, &str)], extra: &str) -> String {
    let mut s = format!(
        r#"
[log]
level = "debug"
format = "json"
[schedule]
cron = "0 0 0 1 1 *"
[collection]
interval = "1s"
min_interval = "1s"
max_jitter = "200ms"
rediscover_every = "60s"
repository_retry_max = "2s"
shutdown_deadline = "60s"
[http]
listen = "127.0.0.1:{http_port}"
[channels.archive]
type = "file"
path = "{archive}"
{extra}
"#,
        archive = dir.join(ARCHIVE).display()
    );
    for (name, dsn, keys) in repos {
        s.push_str(&format!("[repositories.{name}]\ndsn = \"{dsn}\"\n{keys}\n"));
    }
    s
}

/// A `powa-sentinel` process; its JSON log goes to a file.
struct Proc {
    child: Child,
    http_port: u16,
    stderr: PathBuf,
    stdout: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `powa-sentinel <command>` on the configuration `body(http port, its directory)`.
fn spawn(command: &str, body: impl Fn(u16, &Path) -> String) -> Proc {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let config = dir.path().join("sentinel.toml");
    std::fs::write(&config, body(http_port, dir.path())).unwrap();
    let stderr = dir.path().join("stderr.log");
    let stdout = dir.path().join("stdout.log");
    let child = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .arg(command)
        .arg("--config")
        .arg(&config)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start powa-sentinel");
    Proc {
        child,
        http_port,
        stderr,
        stdout,
        _dir: dir,
    }
}

impl Proc {
    /// The insights the file channel received.
    fn archived(&self) -> usize {
        std::fs::read_to_string(self._dir.path().join(ARCHIVE))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    }

    fn ready(&self) -> Option<bool> {
        self.get("/readyz").map(|(c, _)| c == 200)
    }

    fn repository_up(&self, name: &str) -> Option<bool> {
        let (_, body) = self.get("/metrics")?;
        let key = format!("repository_up{{repository=\"{name}\"}} ");
        let line = body.lines().find(|l| l.contains(&key))?;
        Some(line.trim_end().ends_with(" 1"))
    }

    fn status(&self) -> Option<Value> {
        let (code, body) = self.get("/status")?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Everything it wrote (log on stderr, `check`'s report on stdout).
    fn output(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        format!("{out}{err}")
    }

    /// The JSON log records with this message.
    fn records(&self, msg: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["msg"] == msg)
            .collect()
    }

    /// Polls until `cond` holds; returns how long it took; panics with the log after `limit`.
    fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut(&Proc) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            if cond(self) {
                return t0.elapsed();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("exited ({st}) while waiting for {what}:\n{}", self.output());
            }
            if t0.elapsed() > limit {
                panic!(
                    "never saw {what}; status: {:?}\n{}",
                    self.status(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit code (-1 for a signal) and how long the exit took.
    fn wait_exit(&mut self, limit: Duration) -> (i32, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), t0.elapsed());
            }
            if t0.elapsed() > limit {
                panic!("did not exit within {limit:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `connect_timeout` of the black-hole tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn black_hole_config(hole: &BlackHole, http_port: u16, dir: &Path) -> String {
    config(
        http_port,
        dir,
        &[(
            "hole",
            dsn_via(hole.port),
            "connect_timeout = \"2s\"\nstatement_timeout = \"2s\"",
        )],
        "",
    )
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
    assert_eq!(d.repository_up("hole"), Some(false));
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
    d.ready() == Some(true) && d.repository_up(name) == Some(true)
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
    let proxy = Proxy::start(repo_addr(), None);
    let mut d = spawn("run", |port, dir| {
        config(
            port,
            dir,
            &[(
                "frozen",
                dsn_via(proxy.port),
                "connect_timeout = \"2s\"\nstatement_timeout = \"2s\"",
            )],
            "",
        )
    });
    d.wait_for("the repository up and a cycle done", LIMIT, |d| {
        up(d, "frozen") && cycles_ok(d, "frozen").is_some()
    });
    proxy.freeze();
    let detected = d.wait_for("the frozen repository marked down", LIMIT, |d| {
        d.ready() == Some(false)
            && d.repository_up("frozen") == Some(false)
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
    let proxy = Proxy::start(repo_addr(), None);
    let mut d = spawn("run", |port, dir| {
        config(
            port,
            dir,
            &[(
                "frozen",
                dsn_via(proxy.port),
                "connect_timeout = \"2s\"\nstatement_timeout = \"120s\"",
            )],
            "",
        )
    });
    d.wait_for("cycles with insights", LIMIT, |d| {
        d.status().is_some_and(|s| {
            s["servers"].as_object().is_some_and(|m| {
                m.values()
                    .any(|v| v["last_cycle"]["insights"].as_u64() > Some(0))
            })
        })
    });
    assert_eq!(d.archived(), 0, "nothing is sent before the report");
    proxy.freeze();
    // Cycles start every second: some are now stuck on the frozen sessions.
    std::thread::sleep(Duration::from_secs(3));
    d.signal("TERM");
    let (code, took) = d.wait_exit(LIMIT);
    println!("frozen repository: `run` stopped {took:?} after SIGTERM (shutdown_deadline 60s)");
    assert_eq!(code, 0, "{}", d.output());
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(
        d.archived() > 0,
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
    // Frozen as soon as a collection's first read is sent: discovery went through.
    let proxy = Proxy::start(repo_addr(), Some(b"powa_statements_history_db "));
    let mut p = spawn("once", |port, dir| {
        config(
            port,
            dir,
            &[
                ("main", lab().repo_dsn(), ""),
                (
                    "frozen",
                    dsn_via(proxy.port),
                    "connect_timeout = \"2s\"\nstatement_timeout = \"120s\"",
                ),
            ],
            "[analysis]\nwindow = \"10m\"",
        )
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
    println!("once: {} insight(s) reached the file channel", p.archived());
}

/// SIGTERM while `once` is delivering (a robot that takes 2s to answer): the delivery goes
/// on within the shutdown deadline, everything reaches the robot, and the exit is 0 since
/// nothing was left undone. It used to die of the signal (143) mid-delivery.
#[test]
fn once_on_sigterm_during_the_delivery_finishes_it() {
    let fake = robot::start("once-term-key", &["--delay", "2s"]);
    let channel = format!(
        "[channels.robot]\ntype = \"wecom\"\nbase_url = \"{}\"\nkey = \"once-term-key\"\n[analysis]\nwindow = \"10m\"",
        fake.url
    );
    let mut p = spawn("once", |port, dir| {
        config(port, dir, &[("main", lab().repo_dsn(), "")], &channel)
    });
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
