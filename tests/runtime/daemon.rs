//! `powa-sentinel run` as a process: endpoints, signals, reload, supervision and a
//! repository cluster that goes away and comes back. Real binary, real PoWA lab.
//!
//! Waits are liveness bounds ("this must happen eventually"), never speed assertions.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::robot;
use crate::support::cli::{command, succeeded};
use crate::support::daemon::{fast_daemon, has_insights, Proc};
use crate::support::{lab, new_server, unique, Lab};

/// A fast-paced configuration: collect every second, rediscover every second; `extra`
/// (channels), then the repositories.
fn config(port: u16, repos: &[(&str, String)], extra: &str) -> String {
    let settings = fast_daemon(port, "1s", "20s").toml(extra);
    repos
        .iter()
        .fold(settings, |s, (name, dsn)| s.repository(name, dsn))
        .into_text()
}

const CONSOLE: &str = "[channels.console]\ntype = \"console\"\n";

/// `run` on `repos` with a console channel, `env` added to its environment.
fn start(repos: &[(&str, String)], env: &[(&str, &str)]) -> Proc {
    Proc::start("run", |port, _| config(port, repos, CONSOLE), env)
}

/// [`start`] on the lab's PoWA 4 repository, as `main`.
fn start_on_main(env: &[(&str, &str)]) -> Proc {
    start(&[("main", lab().repo_dsn())], env)
}

fn server_cycles(st: &Value, server: &str) -> u64 {
    st["servers"][server]["cycles"].as_u64().unwrap_or(0)
}

fn server_ok(st: &Value, server: &str) -> bool {
    st["servers"][server]["last_cycle"]["ok"].as_bool() == Some(true)
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn endpoints_answer_and_sigterm_stops_cleanly() {
    let _turn = crate::support::turn(module_path!());
    let mut d = start_on_main(&[]);
    d.wait_for("ready", LIMIT, |d| {
        d.get("/readyz").is_some_and(|(c, _)| c == 200)
    });
    d.wait_for("a successful cycle of main/local", LIMIT, |d| {
        d.status().is_some_and(|s| server_ok(&s, "main/local"))
    });
    let (code, body) = d.get("/healthz").unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, metrics) = d.get("/metrics").unwrap();
    assert_eq!(code, 200);
    for needle in [
        r#"powa_sentinel_cycles_total{server="main/local",outcome="ok"}"#,
        r#"powa_sentinel_rows_read_total{server="main/local"}"#,
        r#"powa_sentinel_seconds_since_last_success{server="main/local"}"#,
        r#"powa_sentinel_repository_up{repository="main"} 1"#,
        "powa_sentinel_cycle_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let st = d.status().unwrap();
    assert_eq!(st["repositories"]["main"]["reachable"], true);
    assert_eq!(st["timezone"], "UTC");
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0, "{}", d.logs());
    assert!(d.logs().contains("Stopped cleanly."), "{}", d.logs());
}

#[test]
fn sigterm_flushes_what_the_gate_holds() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let dsn = lab.repo_dsn();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("insights.jsonl");
    let channel = format!(
        "[channels.archive]\ntype = \"file\"\npath = \"{}\"\n",
        out.display()
    );
    // The report cron is once a year: everything found stays in the gate until SIGTERM.
    let mut d = Proc::start(
        "run",
        |port, _| config(port, &[("main", dsn)], &channel),
        &[],
    );
    d.wait_for("cycles with insights", LIMIT, |d| {
        d.status().is_some_and(|s| has_insights(&s))
    });
    let before = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        before.is_empty(),
        "nothing is sent before the report: {before}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0, "{}", d.logs());
    let after = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = after
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        !lines.is_empty(),
        "the shutdown flush delivered nothing:\n{}",
        d.logs()
    );
}

/// Reports every second to a WeCom robot and a file while SIGTERM arrives: every insight
/// the gate flushed (the log's "Report sent." counts) is in the file, every report with
/// insights reached the robot, the last one after the signal.
#[test]
fn sigterm_during_a_delivery_burst_loses_nothing() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let dsn = lab.repo_dsn();
    // A slow robot: a report of several messages takes seconds to go out.
    let fake = robot::start("burst-key", &["--delay", "400ms"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("insights.jsonl");
    let channels = format!(
        "[channels.archive]\ntype = \"file\"\npath = \"{}\"\n[channels.robot]\ntype = \"wecom\"\nbase_url = \"{}\"\nkey = \"burst-key\"\n",
        out.display(),
        fake.url
    );
    let mut d = Proc::start(
        "run",
        |port, _| {
            config(port, &[("main", dsn)], &channels)
                .replace("cron = \"0 0 0 1 1 *\"", "interval = \"1s\"")
                // Paced at WeCom's rate, a report of many messages takes a while.
                .replace(
                    "shutdown_deadline = \"20s\"",
                    "shutdown_deadline = \"150s\"",
                )
        },
        &[],
    );
    // SIGTERM as soon as the robot has the first message of a report: the rest of the
    // report is still to be sent.
    d.wait_for("the robot's first message", LIMIT, |_| {
        std::fs::read_to_string(&fake.record)
            .unwrap_or_default()
            .lines()
            .count()
            >= 1
    });
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(170)).0, 0, "{}", d.logs());
    let logs = d.logs();
    let records: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let flushed: u64 = records
        .iter()
        .filter(|v| v["msg"] == "Report sent.")
        .map(|v| v["insights"].as_u64().unwrap())
        .sum();
    assert!(flushed > 0, "the gate reported something: {logs}");
    // Everything the gate let through is in the file channel...
    let in_file = std::fs::read_to_string(&out).unwrap().lines().count() as u64;
    assert_eq!(in_file, flushed, "{logs}");
    // ...and every message of every robot report reached the robot, none twice.
    let robot_parts: u64 = records
        .iter()
        .filter(|v| v["msg"] == "Report delivered." && v["channel"] == "robot")
        .map(|v| v["parts"].as_u64().unwrap())
        .sum();
    let robot = std::fs::read_to_string(&fake.record)
        .unwrap()
        .lines()
        .count() as u64;
    assert!(robot_parts >= 2, "a report of several messages: {logs}");
    assert_eq!(robot, robot_parts, "{logs}");
    let sigterm_at = logs.find("SIGTERM: shutting down.").unwrap();
    assert!(
        logs[sigterm_at..].contains("\"msg\":\"Part delivered.\""),
        "messages were still going out after SIGTERM: {logs}"
    );
    assert!(
        logs[sigterm_at..].contains("Report sent."),
        "the shutdown flush ran: {logs}"
    );
    assert!(!logs.contains("Report delivery failed."), "{logs}");
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let dsn = lab.repo_dsn();
    let good = |port: u16| config(port, &[("main", dsn.clone())], CONSOLE);
    let mut d = Proc::start("run", |port, _| good(port), &[]);
    d.wait_for("remote servers collected", LIMIT, |d| {
        d.status()
            .is_some_and(|s| server_ok(&s, "main/local") && server_ok(&s, "main/remote1"))
    });
    let port = d.port;
    std::fs::write(
        &d.config,
        good(port).replace("[collection]", "[collection]\nrediscover_evry = \"1s\""),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the reload error", LIMIT, |d| {
        d.status()
            .is_some_and(|s| s["last_reload_error"].is_string())
    });
    let st = d.status().unwrap();
    let err = st["last_reload_error"].as_str().unwrap();
    assert!(
        err.contains("rediscover_evry") && err.contains("did you mean `rediscover_every`?"),
        "{err}"
    );
    assert!(err.contains("sentinel.toml"), "{err}");
    assert_eq!(st["config_reloads"], 0);
    // Still collecting with the old settings.
    let n = server_cycles(&st, "main/remote1");
    d.wait_for("more cycles after the refused reload", LIMIT, |d| {
        d.status()
            .is_some_and(|s| server_cycles(&s, "main/remote1") >= n + 2)
    });
    // A valid change is applied: only the local server is analysed now.
    let narrowed = good(port).replace(
        &format!("dsn = \"{dsn}\"\n"),
        &format!("dsn = \"{dsn}\"\nservers = [\"local\"]\n"),
    );
    std::fs::write(&d.config, narrowed).unwrap();
    d.signal("HUP");
    d.wait_for("the reload", LIMIT, |d| {
        d.status()
            .is_some_and(|s| s["config_reloads"] == 1 && s["last_reload_error"].is_null())
    });
    d.wait_for("remote1 dropped", LIMIT, |d| {
        d.status()
            .is_some_and(|s| s["servers"]["main/remote1"].is_null() && server_ok(&s, "main/local"))
    });
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0, "{}", d.logs());
}

#[test]
fn a_panicking_analyzer_is_restarted() {
    let _turn = crate::support::turn(module_path!());
    // Test-only hook: the analyzer panics on its first two snapshots.
    let mut d = start_on_main(&[("POWA_SENTINEL_TEST_PANIC_ANALYZER", "slow_queries:2")]);
    d.wait_for("two restarts of slow_queries", LIMIT, |d| {
        d.get("/metrics").is_some_and(|(_, m)| {
            m.contains(r#"powa_sentinel_actor_restarts_total{actor="slow_queries"} 2"#)
        })
    });
    let n = d
        .status()
        .map(|s| server_cycles(&s, "main/local"))
        .unwrap_or(0);
    d.wait_for("cycles go on", LIMIT, |d| {
        d.status().is_some_and(|s| {
            server_cycles(&s, "main/local") >= n + 2 && server_ok(&s, "main/local")
        })
    });
    let (_, m) = d.get("/metrics").unwrap();
    assert!(
        !m.contains(r#"powa_sentinel_actor_failed{actor="slow_queries"} 1"#),
        "{m}"
    );
    let st = d.status().unwrap();
    assert_eq!(st["failed_actors"], serde_json::json!([]));
    assert!(
        d.logs().contains("Actor failed and was restarted."),
        "{}",
        d.logs()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0);
}

#[test]
fn a_stopped_repository_recovers_and_the_others_never_stop() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let mut d = start(&[("main", lab.repo_dsn()), ("old", lab.repo3_dsn())], &[]);
    d.wait_for("both repositories collected", LIMIT, |d| {
        d.status()
            .is_some_and(|s| server_ok(&s, "main/local") && server_ok(&s, "old/local"))
    });
    lab.pg_ctl("repo3", "stop");
    let restart = Restart(lab);
    d.wait_for("old marked unreachable", LIMIT, |d| {
        d.status()
            .is_some_and(|s| s["repositories"]["old"]["reachable"] == false)
    });
    let (code, body) = d.get("/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("repository `old` is unreachable"), "{body}");
    // The other repository's servers keep their rhythm meanwhile.
    let n = d.status().map(|s| server_cycles(&s, "main/local")).unwrap();
    d.wait_for("main cycles while old is down", LIMIT, |d| {
        d.status().is_some_and(|s| {
            server_cycles(&s, "main/local") >= n + 3
                && server_ok(&s, "main/local")
                && s["repositories"]["old"]["reachable"] == false
        })
    });
    drop(restart);
    d.wait_for("old back", LIMIT, |d| {
        d.status().is_some_and(|s| {
            s["repositories"]["old"]["reachable"] == true && server_ok(&s, "old/local")
        })
    });
    d.wait_for("ready again", LIMIT, |d| {
        d.get("/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert!(d.logs().contains("Repository connected."));
    // Every session came back: discovery's plus one per concurrent collection (default 4).
    d.wait_for("all five sessions of old reopened", LIMIT, |_| {
        sessions(lab, "repo3").len() == 5
    });
    // Losing any one session (here the newest, a collection one) reopens them all.
    let before = sessions(lab, "repo3");
    lab.psql(
        "repo3",
        "powa",
        &format!("SELECT pg_terminate_backend({})", before.last().unwrap()),
    );
    d.wait_for("old reconnected after losing one session", LIMIT, |d| {
        let now = sessions(lab, "repo3");
        now.len() == 5
            && now.iter().all(|p| !before.contains(p))
            && d.status().is_some_and(|s| server_ok(&s, "old/local"))
    });
    assert!(d.logs().contains("Repository session lost; reconnecting."));
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0);
}

/// The backend pids of powa-sentinel's sessions on a cluster, oldest first.
fn sessions(lab: &Lab, cluster: &str) -> Vec<String> {
    lab.psql(
        cluster,
        "powa",
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'powa-sentinel' \
         ORDER BY backend_start, pid",
    )
    .lines()
    .map(|l| l.trim().to_string())
    .filter(|l| !l.is_empty())
    .collect()
}

/// Starts the cluster again even when the test fails half-way.
struct Restart(&'static Lab);

impl Drop for Restart {
    fn drop(&mut self) {
        self.0.pg_ctl("repo3", "start");
    }
}

#[test]
fn the_seed_example_config_loads_and_checks() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed/config.yaml");
    let out = command(&["check", "--config"])
        .arg(&fixture)
        .env("POWA_DB_HOST", "127.0.0.1")
        .env("POWA_DB_PORT", lab.var("POWA_LAB_REPO_PORT"))
        .env("POWA_DB_USER", lab.var("POWA_LAB_RO_USER"))
        .env("POWA_DB_PASSWORD", lab.var("POWA_LAB_RO_PASSWORD"))
        .output()
        .unwrap();
    let (stdout, _) = succeeded(&out);
    assert!(stdout.contains("seed format"), "{stdout}");
    assert!(stdout.contains("cron = \"0 0 9 * * 1\""), "{stdout}");
    assert!(stdout.contains("repository main: PoWA 4.1.4"), "{stdout}");
    assert!(
        !stdout.contains(lab.var("POWA_LAB_RO_PASSWORD")),
        "the password is never shown"
    );
}

#[test]
fn servers_added_to_and_removed_from_powa_servers_follow() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    // Other tests see every server of the repository while this one is registered.
    let _servers = new_server();
    let alias = format!("rt_added_{}", unique());
    let mut d = start_on_main(&[]);
    d.wait_for("main/local collected", LIMIT, |d| {
        d.status().is_some_and(|s| server_ok(&s, "main/local"))
    });
    // Registered by the lab's admin, as powa_register_server would (no snapshot yet).
    let id = lab.psql(
        "repo",
        "powa",
        &format!(
            "INSERT INTO powa_servers (hostname, alias, port, username, dbname, frequency) \
             VALUES ('192.0.2.1', '{alias}', 5432, 'powa', 'powa', 300) RETURNING id"
        ),
    );
    let id = id.lines().next().unwrap().trim().to_string();
    let key = format!("main/{alias}");
    d.wait_for("the new server's collector", LIMIT, |d| {
        d.status()
            .is_some_and(|s| s["servers"][&key]["cycles"].as_u64() >= Some(1))
    });
    lab.psql(
        "repo",
        "powa",
        &format!("DELETE FROM powa_servers WHERE id = {id}"),
    );
    d.wait_for("the removed server's collector gone", LIMIT, |d| {
        d.status()
            .is_some_and(|s| s["servers"][&key].is_null() && server_ok(&s, "main/local"))
    });
    let (_, m) = d.get("/metrics").unwrap();
    assert!(!m.contains(&key), "its series are dropped too: {m}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(LIMIT).0, 0);
}
