//! `powa-sentinel` run to its end, as an operator runs it: the command, its settings file,
//! and what `once --output json` prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use powa_sentinel::actors::failpoint::ENV as FAILPOINT;
use serde_json::Value;

/// The real binary with `args`. Never under a failpoint inherited from the caller's
/// environment: a test that aborts on purpose sets one on its own command.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"));
    cmd.args(args).env_remove(FAILPOINT);
    cmd
}

/// `powa-sentinel <args> --config <config>`, run to its end.
pub fn run(args: &[&str], config: &Path) -> Output {
    run_env(args, config, &[])
}

/// [`run`] with `env` added to the environment.
pub fn run_env(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Output {
    command(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("run powa-sentinel")
}

/// stdout and stderr of a run that must have succeeded.
pub fn succeeded(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// `once --output json`: the insights printed, one JSON object a line (stdout carries
/// nothing else), and stderr. The run must succeed.
pub fn once_json(config: &Path) -> (Vec<Value>, String) {
    let (stdout, stderr) = succeeded(&run(&["once", "--output", "json"], config));
    (json_lines(&stdout), stderr)
}

/// `once --output json` over the last hour on the repository `name` at `dsn`, the index
/// advisor reaching its local server through `monitored` (a DSN): the insights and stderr.
pub fn once_advised(name: &str, dsn: &str, monitored: &str) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::once("1h")
        .repository(name, dsn)
        .monitored(name, "local", monitored)
        .console()
        .write(dir.path());
    once_json(&config)
}

/// The insights whose text (a query's, a statement's) names `marker`, e.g. a test's table.
pub fn about<'a>(insights: &'a [Value], marker: &str) -> Vec<&'a Value> {
    insights
        .iter()
        .filter(|i| i["text"].as_str().is_some_and(|x| x.contains(marker)))
        .collect()
}

/// The missing-index insights about `table` (schema-qualified).
pub fn index_advice<'a>(insights: &'a [Value], table: &str) -> Vec<&'a Value> {
    insights
        .iter()
        .filter(|i| i["kind"] == "missing_index" && i["table"] == table)
        .collect()
}

/// Every line of `text` as JSON.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A settings file, written as a person would: each method adds a table (or keys to the
/// table before it) in the order called, so that a test shows the file it runs with.
#[derive(Clone, Debug, Default)]
pub struct Settings(String);

impl Settings {
    /// `[log]` at `level`, as text.
    pub fn log(level: &str) -> Settings {
        Settings(format!("[log]\nlevel = \"{level}\"\n"))
    }

    /// Where a `once --output json` test starts: the log at warning level, as JSON lines
    /// (stderr stays quiet), and the analysis window.
    pub fn once(window: &str) -> Settings {
        Settings::log("warning").json().window(window)
    }

    /// Where a delivery test starts: `once` on the lab's PoWA 4 repository over the last
    /// hour, its state (gate, outbox) in `<dir>/state`, its log as JSON lines at info level
    /// (the test reads its records).
    pub fn delivery(dir: &Path) -> Settings {
        Settings::log("info")
            .json()
            .window("1h")
            .state(&dir.join("state"))
            .repository("lab", &super::lab().repo_dsn())
    }

    /// The log as JSON lines (right after [`Settings::log`]).
    pub fn json(self) -> Settings {
        self.toml("format = \"json\"")
    }

    /// `[analysis] window`.
    pub fn window(self, window: &str) -> Settings {
        self.toml(&format!("[analysis]\nwindow = \"{window}\""))
    }

    /// `[state] dir`.
    pub fn state(self, dir: &Path) -> Settings {
        self.toml(&format!("[state]\ndir = \"{}\"", dir.display()))
    }

    /// `[state] dsn` (the lab's state database) with `schema`.
    pub fn state_db(self, schema: &str) -> Settings {
        self.toml(&format!(
            "[state]\ndsn = \"{}\"\nschema = \"{schema}\"",
            super::lab().state_dsn()
        ))
    }

    /// `[repositories.<name>]` read through `dsn`.
    pub fn repository(self, name: &str, dsn: &str) -> Settings {
        self.toml(&format!("[repositories.{name}]\ndsn = \"{dsn}\""))
    }

    /// The direct session of `repository`'s `server`, for the index advisor.
    pub fn monitored(self, repository: &str, server: &str, dsn: &str) -> Settings {
        self.toml(&format!(
            "[repositories.{repository}.monitored.\"{server}\"]\ndsn = \"{dsn}\""
        ))
    }

    /// `[channels.console]`.
    pub fn console(self) -> Settings {
        self.toml("[channels.console]\ntype = \"console\"")
    }

    /// A WeCom robot channel `name` posting to `base_url` with `key`.
    pub fn wecom(self, name: &str, base_url: &str, key: &str) -> Settings {
        self.toml(&format!(
            "[channels.{name}]\ntype = \"wecom\"\nbase_url = \"{base_url}\"\nkey = \"{key}\""
        ))
    }

    /// A file channel `name` appending to `path`.
    pub fn file(self, name: &str, path: &Path) -> Settings {
        self.toml(&format!(
            "[channels.{name}]\ntype = \"file\"\npath = \"{}\"",
            path.display()
        ))
    }

    /// Anything else, as written.
    pub fn toml(mut self, text: &str) -> Settings {
        self.0.push_str(text);
        if !text.ends_with('\n') {
            self.0.push('\n');
        }
        self
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    pub fn into_text(self) -> String {
        self.0
    }

    /// Writes `<dir>/sentinel.toml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        self.write_to(dir.join("sentinel.toml"))
    }

    /// Writes the file at `path`; returns it.
    pub fn write_to(&self, path: PathBuf) -> PathBuf {
        std::fs::write(&path, &self.0).unwrap();
        path
    }
}
