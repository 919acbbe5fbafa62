//! `powa-sentinel silence add|list|expire` end to end: the real binary, a state directory,
//! and a gate built on that directory that honours what the command wrote.

use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::Utc;

use powa_sentinel::gate::{Gate, GateSettings};
use sentinel_actors::gate::{Decide, Insights};
use sentinel_actors::Insight;

use crate::support::cli::{command, Settings};
use crate::support::sample;

fn config(dir: &Path, state: bool) -> PathBuf {
    let settings = Settings::log("warning");
    let settings = if state {
        settings.state(&dir.join("state"))
    } else {
        settings
    };
    settings
        .repository("main", "host=127.0.0.1 port=1")
        .console()
        .write(dir)
}

/// `powa-sentinel silence <line>`, the line as a person types it: words, or 'quoted
/// words'; `--config` right after the subcommand.
fn silence(config: &Path, line: &str) -> Output {
    let args = argv(line);
    command(&["silence", &args[0]])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .output()
        .unwrap()
}

fn argv(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (arg, tail) = match rest.strip_prefix('\'') {
            Some(quoted) => quoted.split_once('\'').expect("a closing quote"),
            None => rest.split_once(' ').unwrap_or((rest, "")),
        };
        args.push(arg.to_string());
        rest = tail.trim_start();
    }
    args
}

/// [`silence`], which must succeed: its stdout.
fn succeeds(config: &Path, line: &str) -> String {
    let o = silence(config, line);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    out
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn insight(fp: u64, server: &str) -> Insight {
    sample::slow_query(fp, Utc::now(), &[("server", server)])
}

#[test]
fn add_list_expire_and_the_gate_honours_them() {
    let _turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);

    let out = succeeds(
        &cfg,
        "add --match server=db1 --until 2h --reason 'index rebuild' --author alice",
    );
    assert!(
        out.starts_with("silence 1 added: server=db1 until "),
        "{out}"
    );

    let out = succeeds(
        &cfg,
        "add --fingerprint 00000000000000AB --until 2099-01-01T00:00:00+08:00 --reason 'known, ticket 42'",
    );
    assert_eq!(
        out,
        "silence 2 added: fingerprint=00000000000000ab until 2098-12-31T16:00:00Z\n"
    );

    // A gate on the same state directory honours both.
    let state = dir.path().join("state");
    let sent = sent_by_a_gate_on(&state, 1);
    assert_eq!(sent, [2], "the silenced fingerprint and server are muted");

    let out = succeeds(&cfg, "list");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ID\tSTATE\tUNTIL\tMATCH\tAUTHOR\tREASON");
    assert!(
        lines[1].starts_with("1\tactive\t")
            && lines[1].ends_with("\tserver=db1\talice\tindex rebuild"),
        "{out}"
    );
    assert!(lines[2].starts_with("2\tactive\t2098-12-31T16:00:00Z\tfingerprint=00000000000000ab\t"));

    let out = succeeds(&cfg, "expire 1");
    assert!(out.starts_with("silence 1 ended at "), "{out}");
    let (out, _) = text(&silence(&cfg, "list"));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("2\tactive\t"), "{out}");
    assert!(lines[2].starts_with("1\tended\t"), "{out}");

    // After the expiry a restarted gate lets db1 through again (its finding still fires).
    let sent = sent_by_a_gate_on(&state, 2);
    assert_eq!(sent, [1]);
}

/// What a gate started on `state` sends of a cycle (`seq`) that finds 0xab and 2 on db2,
/// 1 on db1: the fingerprints.
fn sent_by_a_gate_on(state: &Path, seq: u64) -> Vec<u64> {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let names = ["console".to_string()];
    let settings = GateSettings::default();
    let mut gate = Gate::new(&settings, &[], &names, &[], Some(state), log).unwrap();
    gate.observe(Insights {
        analyzer: "slow_queries".into(),
        source: "main/db1".into(),
        seq,
        at: Utc::now(),
        insights: vec![insight(0xab, "db2"), insight(1, "db1"), insight(2, "db2")],
    });
    gate.flush(Utc::now())
        .iter()
        .flat_map(|o| o.insights.iter().map(|i| i.fingerprint.0))
        .collect()
}

/// Exit code 2 and a message that names the flag and says what to do.
fn rejects(cfg: &Path, line: &str, expected: &[&str]) {
    let o = silence(cfg, line);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{line}: {out}\n{err}");
    for e in expected {
        assert!(err.contains(e), "{line}: `{e}` not in:\n{err}");
    }
}

#[test]
fn bad_input_names_the_flag_and_the_fix() {
    let _turn = crate::support::turn(module_path!());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    rejects(
        &cfg,
        "add --match server=db1 --until soon --reason r",
        &["--until `soon`", "RFC 3339", "2h"],
    );
    rejects(
        &cfg,
        "add --match server=db1 --until 2001-01-01T00:00:00Z --reason r",
        &["--until", "not in the future"],
    );
    rejects(
        &cfg,
        "add --match server --until 2h --reason r",
        &["--match", "key=value"],
    );
    rejects(
        &cfg,
        "add --match server=~db[ --until 2h --reason r",
        &["--match", "not a valid regular expression"],
    );
    rejects(
        &cfg,
        "add --fingerprint xyz --until 2h --reason r",
        &["--fingerprint", "16-digit hexadecimal"],
    );
    rejects(
        &cfg,
        "add --until 2h --reason r",
        &["--fingerprint", "--match"],
    );
    rejects(
        &cfg,
        "add --match a=b --until 2h --reason ' '",
        &["--reason"],
    );
    rejects(&cfg, "expire 99", &["no silence has id 99", "silence list"]);
    let no_state = tempfile::tempdir().unwrap();
    let cfg = config(no_state.path(), false);
    rejects(&cfg, "list", &["state.dir", "[state]"]);
}
