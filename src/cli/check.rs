//! `check`: what a new user runs first — is the configuration right, what is in each
//! repository, what will and will not work there, and what to do about it.

use std::process::ExitCode;

use chrono::Utc;
use slog::{warn, Logger};

use super::outbox as outbox_cli;
use crate::config::{Origin, Settings};
use crate::topology::{self, RunOptions};
use sentinel_actors::Window;

/// `check`: the settings (a seed file shown in its native form), then per repository and
/// server what PoWA holds and what the analysis can use, the state backend, the outbox
/// and, with `channels`, one test message per channel. Exit 1 when something cannot work.
pub async fn check(settings: Settings, channels: bool, log: Logger) -> ExitCode {
    if let Origin::Seed(t) = &settings.origin {
        println!("configuration: seed format, translated; the native form is:\n");
        println!("{}", t.shown);
        for n in &t.notes {
            println!("note: {n}");
        }
        println!();
    }
    let needed = settings.analysis.window
        + if settings.analyzers.regression.enabled || settings.analyzers.workload_change.enabled {
            settings.analysis.baseline_offset
        } else {
            std::time::Duration::ZERO
        };
    let fmt_d = |d: Option<std::time::Duration>| {
        d.map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let (repos, failures) = topology::connect_all(&settings).await;
    let mut failed = !failures.is_empty();
    for r in &repos {
        println!(
            "repository {}: PoWA {} in schema {}, {} server(s)",
            r.name,
            r.info.version,
            r.info.schema,
            r.info.servers.len()
        );
        for s in &r.info.servers {
            let analysed = topology::wanted(&settings, &r.name, &s.name);
            println!(
                "  server {} (srvid {}){}: {}, last snapshot {}, modules: {}",
                s.name,
                s.srvid,
                if analysed {
                    ""
                } else {
                    " [not analysed: not in servers]"
                },
                s.frequency.map_or_else(
                    || "no snapshot frequency set (snapshots only on demand)".to_string(),
                    |d| format!("snapshot every {}", humantime::format_duration(d))
                ),
                s.last_snapshot
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
                if s.modules.is_empty() {
                    "none".to_string()
                } else {
                    s.modules.join(", ")
                }
            );
            let verdict = match s.retention {
                None => "unknown".to_string(),
                Some(ret) if ret >= needed => "ok".to_string(),
                Some(_) => format!(
                    "TOO SHORT: PoWA purges data the analysis needs; raise the server's retention to at least {} or lower analysis.window/baseline_offset",
                    humantime::format_duration(needed)
                ),
            };
            println!(
                "    retention {} vs window + baseline {}: {verdict}",
                fmt_d(s.retention),
                humantime::format_duration(needed)
            );
            println!(
                "    change history: {}",
                change_history(&r.client, &r.info, s, needed).await
            );
            println!(
                "    index changes from PoWA: {}",
                match crate::powa::catalog::describe(&r.client, &r.info, s.srvid, Utc::now()).await
                {
                    Ok(d) => d,
                    Err(e) => format!("unknown (PoWA's catalog could not be read: {e})"),
                }
            );
            if s.retention
                .is_some_and(|ret| ret < settings.analysis.window)
            {
                warn!(log, "Retention is shorter than the analysis window."; "server" => &s.name);
            }
            if let (true, Some(rs)) = (analysed, settings.repositories.get(&r.name)) {
                let reach = crate::powa::monitored::Reach::new(&r.name, rs, log.clone());
                for line in reach.describe(&r.client, &r.info, s).await {
                    println!("    {line}");
                }
            }
        }
    }
    // Errors go to stderr; stdout is the report.
    for f in &failures {
        eprintln!("error: {f}");
    }
    match state_line(&settings) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    for line in outbox_cli::summary(&settings) {
        println!("{line}");
    }
    if channels && !check_channels(&settings, &log).await {
        failed = true;
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What `check` says of the state backend: where it is and, for the state database,
/// whether it is reachable and writable and its schema version (an error when it cannot
/// be used: `run` would not start).
fn state_line(settings: &Settings) -> Result<String, String> {
    if let Some(db) = settings.state.database() {
        let h = crate::statedb::health(&db).map_err(|e| e.to_string())?;
        let text = std::iter::once(h.line())
            .chain(h.replica_lines())
            .collect::<Vec<_>>()
            .join("\n");
        return match h.not_writable {
            Some(_) => Err(text),
            None => Ok(text),
        };
    }
    Ok(match &settings.state.dir {
        Some(dir) => format!(
            "state: directory {} (embedded files, one process)",
            dir.display()
        ),
        None => {
            "state: in memory (no [state] dir or dsn): a restart forgets what was pending".into()
        }
    })
}

/// What `check` says of a server's change history: its sources and how much it holds
/// over the analysis' reach, or why there is none and how to enable it.
async fn change_history(
    client: &crate::powa::session::Session,
    info: &crate::powa::discovery::PowaInfo,
    server: &crate::powa::discovery::ServerInfo,
    reach: std::time::Duration,
) -> String {
    use crate::powa::changes::{Availability, ChangeReader, What};
    let since = chrono::Utc::now() - chrono::Duration::from_std(reach).unwrap_or_default();
    let mut reader = ChangeReader::default();
    match reader
        .cycle(client, info, server, since, &Default::default())
        .await
    {
        Ok(t) => match t.availability {
            Availability::Available => {
                let restarts = t.events.iter().filter(|e| e.what == What::Restart).count();
                format!(
                    "pg_track_settings (settings, per-database and per-role settings, restarts): \
                     {} setting change(s) and {restarts} restart(s) in the last {}",
                    t.events.len() - restarts,
                    humantime::format_duration(reach)
                )
            }
            Availability::Missing(why) => format!("none ({why})"),
        },
        Err(e) => format!("none ({})", crate::powa::changes::unreadable(&e)),
    }
}

/// Sends one test message to every channel; prints one line per channel.
async fn check_channels(settings: &Settings, log: &Logger) -> bool {
    use sentinel_actors::channel::Deliver;
    use sentinel_actors::{Fingerprint, Insight, Notification, NotifyReason, Severity};
    let outputs = match topology::build_outputs(settings, RunOptions::default(), log) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: channels cannot start: {e:#}");
            return false;
        }
    };
    let now = Utc::now();
    let insight = Insight {
        fingerprint: Fingerprint::of(["powa-sentinel", "check"]),
        kind: "test".into(),
        rule: "check.channels".into(),
        severity: Severity::Info,
        labels: [("repository".to_string(), "check".to_string())].into(),
        title: "powa-sentinel test message".into(),
        advice: "This channel works. Nothing to do.".into(),
        text: None,
        metrics: Default::default(),
        window: Window {
            start: now,
            end: now,
        },
        observed_at: now,
        status: None,
        changes: Vec::new(),
        trend: None,
    };
    let mut ok = true;
    for (i, (name, addr)) in outputs.channels.iter().enumerate() {
        let n = Notification {
            id: (now.timestamp_micros() as u64) << 8 | i as u64,
            channel: name.clone(),
            reason: NotifyReason::Immediate,
            insights: std::sync::Arc::new(vec![insight.clone()]),
            created_at: now,
            mentions: Default::default(),
        };
        match addr.send(Deliver(n)).await {
            Ok(r) => match r.outcome {
                Ok(()) => println!("channel {name}: ok ({} message(s))", r.parts_delivered),
                Err(e) => {
                    ok = false;
                    println!("channel {name}: FAILED: {e}");
                }
            },
            Err(e) => {
                ok = false;
                println!("channel {name}: FAILED: channel actor unavailable: {e}");
            }
        }
    }
    ok
}
