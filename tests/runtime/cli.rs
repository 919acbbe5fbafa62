//! The operator commands around the daemon: `once --dry-run`, `check --channels`,
//! `backtest`. Real binary, real PoWA lab, WeCom faked on loopback.

use std::path::{Path, PathBuf};

use crate::robot;
use crate::support::cli::{run, succeeded, Settings};
use crate::support::{lab, Turn};

fn received(f: &robot::Robot) -> usize {
    std::fs::read_to_string(&f.record)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// What every test here starts with, kept while it runs: this module's turn on the lab, a
/// fake robot accepting `robot-key-1`, and a directory for the configuration.
fn rig() -> (Turn, robot::Robot, tempfile::TempDir) {
    let turn = crate::support::turn(module_path!());
    let fake = robot::start("robot-key-1", &[]);
    (turn, fake, tempfile::tempdir().unwrap())
}

/// A 1h window and a 7d baseline: PoWA's 1-day retention on the lab's local server is
/// always worth an info insight, so every window has something to say.
fn config(dir: &Path, fake: &robot::Robot, extra_channel: &str) -> PathBuf {
    Settings::once("1h")
        .toml("baseline_offset = \"7d\"")
        .repository("lab", &lab().repo_dsn())
        .toml("servers = [\"local\"]")
        .console()
        .wecom("robot", &fake.url, "robot-key-1")
        .toml(extra_channel)
        .write(dir)
}

#[test]
fn once_dry_run_renders_every_channel_and_sends_nothing() {
    let (_turn, fake, dir) = rig();
    let cfg = config(dir.path(), &fake, "");
    let (stdout, _) = succeeded(&run(&["once", "--dry-run"], &cfg));
    assert!(
        stdout.contains("----- channel console · message 1/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("----- channel robot · message 1/"),
        "{stdout}"
    );
    // The WeCom body, as it would have been posted.
    assert!(stdout.contains(r#""msgtype":"markdown""#), "{stdout}");
    assert_eq!(received(&fake), 0, "a dry run must not post");
}

#[test]
fn check_channels_reports_each_channel() {
    let (_turn, fake, dir) = rig();
    let bad = format!(
        "[channels.wrongkey]\ntype = \"wecom\"\nbase_url = \"{}\"\nkey = \"not-a-key\"\n",
        fake.url
    );
    let cfg = config(dir.path(), &fake, &bad);
    let out = run(&["check", "--channels"], &cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("repository lab: PoWA 4.1.4"), "{stdout}");
    assert!(
        stdout.contains("retention 1day vs window + baseline 7days 1h: TOO SHORT"),
        "{stdout}"
    );
    assert!(stdout.contains("channel console: ok"), "{stdout}");
    assert!(stdout.contains("channel robot: ok"), "{stdout}");
    assert!(
        stdout.contains("channel wrongkey: FAILED: permanent failure"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("not-a-key"),
        "the key is a secret: {stdout}"
    );
    assert_eq!(
        received(&fake),
        1,
        "one test message reached the good robot"
    );
}

#[test]
fn backtest_replays_windows_and_counts_messages() {
    let (_turn, fake, dir) = rig();
    let cfg = config(dir.path(), &fake, "");
    let (stdout, _) = succeeded(&run(&["backtest", "--from", "3h", "--to", "0s"], &cfg));
    assert!(stdout.contains("backtest: 3 window(s) of 1h"), "{stdout}");
    let count = |ch: &str| -> usize {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("channel {ch}: ")))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count for {ch}: {stdout}"))
    };
    // Every window has something to say; the count is what was printed (the gate may
    // hold back repeats of the same finding, so not necessarily one per window).
    assert!(count("robot") >= 1, "{stdout}");
    assert_eq!(
        count("robot"),
        stdout.matches("----- channel robot · message").count(),
        "{stdout}"
    );
    assert_eq!(
        count("console"),
        stdout.matches("----- channel console · message").count(),
        "{stdout}"
    );
    assert_eq!(received(&fake), 0, "a backtest must not post");
    let bad = run(&["backtest", "--from", "yesterday-ish"], &cfg);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`yesterday-ish` is not a time"));
}
