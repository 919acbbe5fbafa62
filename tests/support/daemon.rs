//! `powa-sentinel` as a process of its own, for the tests of `run` (and of a `once` to
//! interrupt): its settings, its HTTP endpoints, signals, its JSON log, its exit.
//!
//! Waits are liveness bounds ("this must happen eventually"), never speed assertions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::{command, Settings};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon that collects every second, rediscovers its servers every `rediscover_every`,
/// reports once a year (what it finds stays in the gate until a flush), logs JSON at debug
/// level and serves its endpoints on `port`. Repositories and channels follow.
pub fn fast_daemon(port: u16, rediscover_every: &str, shutdown_deadline: &str) -> Settings {
    Settings::default().toml(&format!(
        r#"# Collects every second, reports once a year.
[log]
level = "debug"
format = "json"
[schedule]
cron = "0 0 0 1 1 *"
[collection]
interval = "1s"
min_interval = "1s"
max_jitter = "200ms"
rediscover_every = "{rediscover_every}"
repository_retry_max = "2s"
shutdown_deadline = "{shutdown_deadline}"
[http]
listen = "127.0.0.1:{port}""#
    ))
}

/// Whether a server's last cycle found something, in `/status`.
pub fn has_insights(status: &Value) -> bool {
    status["servers"].as_object().is_some_and(|m| {
        m.values()
            .any(|v| v["last_cycle"]["insights"].as_u64() > Some(0))
    })
}

/// A running `powa-sentinel`, killed when dropped. Its stdout and stderr (the log) go to
/// files in a directory of its own.
pub struct Proc {
    child: Child,
    /// The HTTP port its settings were given.
    pub port: u16,
    /// Its settings file.
    pub config: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `powa-sentinel <command>` on the settings `settings(a free port, the process's
    /// directory)`, with `env` added to its environment.
    pub fn start(
        command: &str,
        settings: impl FnOnce(u16, &Path) -> String,
        env: &[(&str, &str)],
    ) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("sentinel.toml");
        std::fs::write(&config, settings(port, dir.path())).unwrap();
        Proc::spawn(command, config, env, port, dir)
    }

    /// Starts `powa-sentinel <command>` on a settings file the test wrote.
    pub fn start_on(command: &str, config: &Path, env: &[(&str, &str)]) -> Proc {
        Proc::spawn(
            command,
            config.to_path_buf(),
            env,
            0,
            tempfile::tempdir().unwrap(),
        )
    }

    fn spawn(
        cmd: &str,
        config: PathBuf,
        env: &[(&str, &str)],
        port: u16,
        dir: tempfile::TempDir,
    ) -> Proc {
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let child = command(&[cmd])
            .arg("--config")
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start powa-sentinel");
        Proc {
            child,
            port,
            config,
            stdout,
            stderr,
            dir,
        }
    }

    /// Its own directory (where its settings may point a file channel).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET path`: the status code and the body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    }

    /// The body of `GET path` when it answered 200.
    pub fn page(&self, path: &str) -> Option<String> {
        self.get(path)
            .and_then(|(code, body)| (code == 200).then_some(body))
    }

    pub fn status(&self) -> Option<Value> {
        serde_json::from_str(&self.page("/status")?).ok()
    }

    pub fn metrics(&self) -> Option<String> {
        self.page("/metrics")
    }

    /// `kill -<sig>` to the process.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Its log (stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Everything it wrote: stdout (`check`'s report, `once`'s output), then the log.
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        format!("{out}{}", self.logs())
    }

    /// The JSON log records with this message.
    pub fn records(&self, msg: &str) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["msg"] == msg)
            .collect()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Polls until `cond` holds; returns how long it took; panics with the log (and
    /// `/status`) when the process exits first or after `limit`.
    pub fn wait_for(
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

    /// The exit code (-1 for a signal) and how long the exit took; panics after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> (i32, Duration) {
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

    /// SIGTERM (whether or not it is still running), then the exit within `limit`.
    pub fn stop(mut self, limit: Duration) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(limit);
    }

    /// SIGKILL, and the process reaped.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
