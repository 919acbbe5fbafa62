//! The `fake-wecom` binary as a process of its own, for tests that run `powa-sentinel` as
//! a process too (the in-process fake is `fake_wecom.rs`). Included with
//! `#[path = "support/robot.rs"] mod robot;` by the tests that use it: it needs the
//! binary's path, which only integration tests have (benches include `support`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running fake robot, killed when dropped.
pub struct Robot {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// Every accepted message, one JSON line each.
    pub record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Robot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fake-wecom` on a free loopback port accepting `key`, with `extra` options
/// (`--delay 400ms`, `--max-per-window 1000`, …).
pub fn start(key: &str, extra: &[&str]) -> Robot {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("wecom.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-wecom"))
        .args(["--listen", "127.0.0.1:0", "--keys", key])
        .args(extra)
        .arg("--record")
        .arg(&record)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fake-wecom");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from fake-wecom: {first:?}"))
        .to_string();
    // Only what the test's own run sends.
    std::fs::write(&record, "").unwrap();
    Robot {
        child,
        url,
        record,
        _dir: dir,
    }
}
