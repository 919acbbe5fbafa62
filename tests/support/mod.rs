//! What the tests share, included by each test crate (`#[path = "../support/mod.rs"] mod
//! support;`) and by the benches: the throwaway real-PoWA environment built by
//! `tests/support/powa-lab` (this file), the workloads run on it ([`workload`]), reading
//! it in process ([`repo`], [`windows`]), sample insights ([`sample`]), `powa-sentinel`
//! run as a command with its settings file ([`cli`]) or as a daemon ([`daemon`]), and
//! network faults ([`faults`]). The fake WeCom robot (`fake_wecom.rs` in process,
//! `robot.rs` as a process) is included by the crates that use it.
//!
//! `tests/run-tests` starts one environment for the whole run and exports `POWA_LAB_ENV`
//! (the path of its `lab.env`). A test binary started alone (`cargo test --test powa`)
//! starts its own environment; the lab's watchdog removes it when this process exits,
//! since `cargo test` has no global teardown.
//!
//! The tests of one crate run in one process, several at a time, where they used to be
//! processes of their own: what they share there is guarded, the lab's statistics by
//! [`exclusive`] and its server list by [`same_servers`] / [`new_server`]. Nothing here
//! sets environment variables or the current directory: a child process gets its own
//! (`Command::env`).
#![allow(dead_code)]

pub mod cli;
pub mod daemon;
pub mod faults;
pub mod repo;
pub mod sample;
pub mod windows;
pub mod workload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub struct Lab {
    pub dir: PathBuf,
    vars: HashMap<String, String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/powa-lab")
}

/// `powa-lab <args>`; its stdout. Panics with its stderr when it fails.
fn powa_lab(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("run tests/support/powa-lab");
    assert!(
        out.status.success(),
        "powa-lab {:?} failed:\n{}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn parse_env(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read lab env {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The shared environment, started on first use.
pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let envfile = match std::env::var("POWA_LAB_ENV") {
            Ok(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let base = std::env::temp_dir().join(format!(
                    "powa-sentinel-test-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                ));
                let pid = std::process::id().to_string();
                let stdout = powa_lab(&[
                    "up".as_ref(),
                    base.as_ref(),
                    "--watch-pid".as_ref(),
                    pid.as_ref(),
                ]);
                PathBuf::from(stdout.lines().last().expect("lab.env path").trim())
            }
        };
        let vars = parse_env(&envfile);
        let dir = PathBuf::from(vars.get("POWA_LAB_DIR").expect("POWA_LAB_DIR in lab.env"));
        Lab { dir, vars }
    })
}

/// A test's turn among the modules of its crate ([`turn`]).
pub struct Turn;

/// The module whose tests run, how many of them, and the wake-up of those waiting.
type Turns = (Mutex<(Option<&'static str>, usize)>, std::sync::Condvar);

fn turns() -> &'static Turns {
    static TURNS: OnceLock<Turns> = OnceLock::new();
    TURNS.get_or_init(|| (Mutex::new((None, 0)), std::sync::Condvar::new()))
}

/// Waits until no test of another module of this crate runs, then runs beside the tests of
/// `module` (pass `module_path!()`). The modules of a crate were separate test binaries,
/// which cargo runs one after another: their workloads on the same clusters (resets,
/// coalesces, sleeps, the collector's snapshots) were never interleaved, and the reads
/// that compare a window with its reference rely on that.
pub fn turn(module: &'static str) -> Turn {
    let (lock, cv) = turns();
    let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
    while g.1 > 0 && g.0 != Some(module) {
        g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    g.0 = Some(module);
    g.1 += 1;
    Turn
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (lock, cv) = turns();
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        g.1 -= 1;
        if g.1 == 0 {
            g.0 = None;
        }
        cv.notify_all();
    }
}

/// Tests that take snapshots or reset statistics hold this, so that their windows do not
/// interleave with another test's in the same binary.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

static SERVERS: RwLock<()> = RwLock::new(());

/// Tests whose findings count on the lab's servers being the lab's own (every server of
/// the PoWA 4 repository analysed, nothing stale) hold this while they run.
pub fn same_servers() -> RwLockReadGuard<'static, ()> {
    SERVERS.read().unwrap_or_else(|e| e.into_inner())
}

/// A test that registers a server of its own in a repository's `powa_servers` holds this
/// until it is gone again.
pub fn new_server() -> RwLockWriteGuard<'static, ()> {
    SERVERS.write().unwrap_or_else(|e| e.into_inner())
}

impl Lab {
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from lab.env"))
    }

    /// DSN of the PoWA 4.1.4 repository for the read-only role.
    pub fn repo_dsn(&self) -> String {
        self.var("POWA_LAB_REPO_DSN").to_string()
    }

    /// DSN of the writable state database (`[state] dsn`): database `sentinel_state`
    /// on the repo cluster, owned by the role of the same name.
    pub fn state_dsn(&self) -> String {
        self.var("POWA_LAB_STATE_DSN").to_string()
    }

    /// Runs `sql` on the state database as its owner (setup and inspection only): the
    /// first column of each row.
    pub fn state_sql(&self, sql: &str) -> Vec<String> {
        let dsn = self.state_dsn();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .expect("connect to the lab's state database");
            tokio::spawn(conn);
            let mut out = Vec::new();
            for m in client.simple_query(sql).await.expect(sql) {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    out.push(r.get(0).unwrap_or("").to_string());
                }
            }
            out
        })
    }

    /// DSN of the PoWA 3.2.0 repository for the read-only role.
    pub fn repo3_dsn(&self) -> String {
        self.var("POWA_LAB_REPO3_DSN").to_string()
    }

    /// DSN of the PoWA 5 repository (PostgreSQL 17; local server and remote5) for the
    /// read-only role. `tests/run-tests` always starts it; a lab started with
    /// `--no-powa5` has none, and the tests that need it say so.
    pub fn repo5_dsn(&self) -> String {
        self.vars
            .get("POWA_LAB_REPO5_DSN")
            .unwrap_or_else(|| {
                panic!("this lab has no PoWA 5 repository (started with --no-powa5?)")
            })
            .to_string()
    }

    /// The PoWA 5 version the lab runs (e.g. `5.0.2`).
    pub fn powa5_version(&self) -> &str {
        self.var("POWA_LAB_POWA5_VERSION")
    }

    /// Runs psql as the superuser on `cluster` (repo, repo3, remote1, remote2) in `db`
    /// with `args` after the common options; panics with psql's error on failure.
    fn run_psql(&self, cluster: &str, db: &str, args: &[&str]) -> String {
        let out = self
            .psql_command(cluster, db, args)
            .output()
            .expect("run powa-lab psql");
        assert!(
            out.status.success(),
            "psql on {cluster}/{db} failed for {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn psql_command(&self, cluster: &str, db: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(script());
        cmd.arg("psql")
            .arg(&self.dir)
            .arg(cluster)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db])
            .args(args);
        cmd
    }

    /// Runs SQL in the background (to hold a lock while the test goes on).
    pub fn psql_background(&self, cluster: &str, db: &str, sql: &str) -> Child {
        self.psql_command(cluster, db, &["-c", sql])
            .stdout(Stdio::null())
            .spawn()
            .expect("run powa-lab psql")
    }

    /// Runs SQL; returns psql's unaligned, tuples-only output.
    pub fn psql(&self, cluster: &str, db: &str, sql: &str) -> String {
        self.run_psql(cluster, db, &["-A", "-t", "-c", sql])
    }

    /// Runs the same statement `n` times in one session (each one is a separate
    /// pg_stat_statements call).
    pub fn repeat(&self, cluster: &str, db: &str, sql: &str, n: usize) {
        let text = format!("{sql};\n").repeat(n);
        let path = std::env::temp_dir().join(format!("powa-sentinel-sql-{}.sql", unique()));
        std::fs::write(&path, text).unwrap();
        // The lab may run psql as another OS user.
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let file = path.to_str().expect("temp path is UTF-8");
        self.run_psql(cluster, db, &["-o", "/dev/null", "-f", file]);
        let _ = std::fs::remove_file(&path);
    }

    /// `powa-lab snapshot DIR which` (repo, repo3, remote or all).
    pub fn snapshot(&self, which: &str) {
        powa_lab(&["snapshot".as_ref(), self.dir.as_ref(), which.as_ref()]);
    }

    /// A snapshot of `which`, then the time from which every call run is in its later
    /// records: the start of a phase. powa-collector stamps a remote's record with the
    /// time its read began, which under load is seconds before the read itself, so a
    /// periodic snapshot begun before that time could still take in a phase's first calls
    /// and put them before it. For a remote, one more snapshot, done after the time, lets
    /// every read begun before it end first.
    pub fn mark(&self, which: &str) -> chrono::DateTime<chrono::Utc> {
        self.snapshot(which);
        let at = chrono::Utc::now();
        if which.starts_with("remote") || which == "all" {
            self.snapshot(which);
        }
        at
    }

    /// `powa-lab tls DIR`: TLS on for the repository cluster (idempotent); its
    /// `POWA_LAB_TLS_*` lines.
    pub fn tls(&self) -> HashMap<String, String> {
        powa_lab(&["tls".as_ref(), self.dir.as_ref()])
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect()
    }
}

/// A short unique suffix for table names, so that each test has its own queries.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Lab {
    /// Stops (`stop`: `-m fast`; `crash`: `-m immediate`, as a power cut leaves it, WAL
    /// replayed at the next start) or starts one cluster of the lab with pg_ctl, on the
    /// same port (the port lives in the cluster's own configuration). For fault tests.
    pub fn pg_ctl(&self, cluster: &str, action: &str) {
        let pg_ctl = Path::new(self.var("POWA_LAB_PG_BIN")).join("pg_ctl");
        let data = self.dir.join(cluster);
        let log = self.dir.join(format!("{cluster}-pg_ctl.log"));
        let mut args: Vec<String> = vec![
            pg_ctl.display().to_string(),
            "-D".into(),
            data.display().to_string(),
            "-w".into(),
            "-t".into(),
            "60".into(),
        ];
        match action {
            "stop" => args.extend(["-m".into(), "fast".into(), "stop".into()]),
            "crash" => args.extend(["-m".into(), "immediate".into(), "stop".into()]),
            "start" => args.extend(["-l".into(), log.display().to_string(), "start".into()]),
            other => panic!("pg_ctl action {other}"),
        }
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut cmd = if is_root {
            let mut c = Command::new("runuser");
            c.args(["-u", self.var("POWA_LAB_OS_USER"), "--"]);
            c.args(&args);
            c
        } else {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        };
        let out = cmd.current_dir("/").output().expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {action} {cluster} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
