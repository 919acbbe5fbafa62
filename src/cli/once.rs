//! `once`: one analysis cycle over the configured window, every repository at once (up to
//! `max_concurrent_per_repository` servers of each), then one report, delivered; what the
//! outbox held from an earlier run goes out first. A stop signal cuts the analysis short
//! and lets the delivery finish within `collection.shutdown_deadline`.

use std::process::ExitCode;

use chrono::Utc;
use slog::{error, info, o, warn, Logger};

use crate::config::Settings;
use crate::topology::{self, RunOptions, Telling};
use sentinel_actors::collector::Collect;
use sentinel_actors::shutdown::Shutdown;
use sentinel_actors::Window;

/// Resolves with the signal's name at the first SIGTERM or SIGINT received after the
/// call (the handlers are installed at once); never, if they cannot be installed.
fn stop_signal(log: &Logger) -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals =
        signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
    if let Err(e) = &signals {
        warn!(log, "Cannot watch SIGTERM and SIGINT; a signal stops powa-sentinel without a word."; "error" => %e);
    }
    async move {
        match signals {
            Ok((mut term, mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            Err(_) => std::future::pending().await,
        }
    }
}

/// SIGTERM/SIGINT: before the analysis ends, stop reading (a read is not waited for) and
/// report what was analysed; during the delivery, let it go on. Either way the channels
/// get `collection.shutdown_deadline`, and what they did not send is named in the log.
/// Exit 1 unless every server was analysed and everything delivered.
pub async fn once(settings: Settings, opts: RunOptions, log: Logger) -> ExitCode {
    let log = log.new(o!("command" => "once"));
    let mut stop = std::pin::pin!(stop_signal(&log));
    let deadline = settings.collection.shutdown_deadline;
    let built = tokio::select! {
        t = topology::build(&settings, opts, &log) => t,
        sig = &mut stop => {
            warn!(log, "Stopped before anything was analysed; nothing was sent."; "signal" => sig);
            return ExitCode::from(1);
        }
    };
    let topo = match built {
        Ok(t) => t,
        Err(e) => {
            error!(log, "Cannot start."; "error" => format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    let mut failed = !topo.failures.is_empty();
    // What the outbox held from an earlier run goes out first (each channel's queue is in
    // order); once waits for it before exiting.
    let drain = topo.drain(topology::drain_deadline());
    if topo.collectors.is_empty() {
        error!(
            log,
            "No server to analyse: every repository failed or none has a server."
        );
        drained(drain.await, &log);
        return ExitCode::from(1);
    }
    let end = Utc::now();
    let baseline = settings
        .analyzers
        .regression
        .enabled
        .then_some(settings.analysis.baseline_offset);
    warn_about_servers(&topo, settings.analysis.window, baseline, end, &log);
    let window = Window {
        start: end
            - chrono::Duration::from_std(settings.analysis.window)
                .unwrap_or(chrono::Duration::hours(24)),
        end,
    };
    // Each server is logged as soon as it is done, so that a stop can say which were not.
    let done = std::cell::RefCell::new(std::collections::BTreeSet::new());
    // Every repository at once, up to `max_concurrent_per_repository` servers of each.
    let collecting = topology::per_session(&topo.collectors, |c| {
        let (done, log) = (&done, &log);
        async move {
            let ok = match c.addr.send(Collect { window }).await {
                Ok(Ok(summary)) => {
                    info!(log, "Server analysed."; "server" => &c.name, "insights" => summary.insights);
                    true
                }
                Ok(Err(e)) => {
                    error!(log, "Server could not be analysed; the others were."; "server" => &c.name, "error" => %e);
                    false
                }
                Err(e) => {
                    error!(log, "Collector unavailable."; "server" => &c.name, "error" => %e);
                    false
                }
            };
            done.borrow_mut().insert(c.name.clone());
            ok
        }
    });
    let mut interrupted = false;
    tokio::select! {
        oks = collecting => if oks.contains(&false) {
            failed = true;
        },
        sig = &mut stop => {
            interrupted = true;
            failed = true;
            let done = done.borrow();
            let left: Vec<&str> = topo
                .collectors
                .iter()
                .map(|c| c.name.as_str())
                .filter(|n| !done.contains(*n))
                .collect();
            warn!(log, "Stopping: the analysis is cut short; what was analysed so far is reported, within collection.shutdown_deadline.";
                "signal" => sig, "not_analysed" => left.join(", "),
                "deadline" => %humantime::format_duration(deadline));
        }
    }
    let delivering = async {
        let telling = Telling::Once {
            dry_run: opts.dry_run,
        };
        let ok = topology::report(&topo.gate, Utc::now(), telling, &log)
            .await
            .is_some_and(|summary| summary.reports.iter().all(|r| r.outcome.is_ok()));
        drained(drain.await, &log) && ok
    };
    let mut delivering = std::pin::pin!(delivering);
    let delivered = if interrupted {
        Shutdown::within(deadline).step(&mut delivering).await.ok()
    } else {
        tokio::select! {
            ok = &mut delivering => Some(ok),
            sig = &mut stop => {
                warn!(log, "Stopping: the delivery goes on within collection.shutdown_deadline.";
                    "signal" => sig, "deadline" => %humantime::format_duration(deadline));
                Shutdown::within(deadline).step(&mut delivering).await.ok()
            }
        }
    };
    match delivered {
        Some(true) => {}
        Some(false) => failed = true,
        None => {
            failed = true;
            error!(log, "The channels did not finish delivering before collection.shutdown_deadline; what was not sent stays in the outbox for the next run (it is lost when no [state] dir is set).";
                "deadline" => %humantime::format_duration(deadline));
        }
    }
    if interrupted {
        info!(
            log,
            "Stopped early; the servers not analysed are read again by the next run."
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Logs what the channels did with their backlog; false when something is left pending
/// or failed for good.
fn drained(
    reports: Vec<(String, Option<sentinel_actors::channel::DrainReport>)>,
    log: &Logger,
) -> bool {
    let mut ok = true;
    for (channel, r) in reports {
        match r {
            Some(r) => {
                if r.recovered > 0 {
                    info!(log, "Resumed what the outbox held from an earlier run."; "channel" => &channel,
                        "recovered" => r.recovered);
                }
                if r.pending > 0 {
                    ok = false;
                    warn!(log, "Not delivered yet: kept in the outbox for the next start."; "channel" => &channel,
                        "pending" => r.pending);
                }
                if r.failed > 0 || r.failed_in_outbox > 0 {
                    ok = false;
                }
                if r.failed_in_outbox > 0 {
                    error!(log, "Notifications that failed for good are kept in the outbox, not retried: fix the channel, then `powa-sentinel outbox retry --config FILE --channel NAME` (or `outbox drop`).";
                        "channel" => &channel, "failed" => r.failed_in_outbox);
                }
            }
            None => {
                ok = false;
                error!(log, "Channel unavailable."; "channel" => &channel);
            }
        }
    }
    ok
}

/// What makes a window's numbers incomplete: a server PoWA stopped snapshotting, snapshot
/// errors, a retention shorter than the window.
fn warn_about_servers(
    topo: &topology::Topology,
    window: std::time::Duration,
    baseline_offset: Option<std::time::Duration>,
    now: chrono::DateTime<Utc>,
    log: &Logger,
) {
    for repo in &topo.repositories {
        for s in &repo.info.servers {
            let server = format!("{}/{}", repo.name, s.name);
            if let (Some(freq), Some(last)) = (s.frequency, s.last_snapshot) {
                let age = (now - last).to_std().unwrap_or_default();
                if age > freq * 3 {
                    warn!(log, "PoWA has not snapshotted this server recently; its newest data is missing.";
                        "server" => &server, "last_snapshot" => %last.to_rfc3339(),
                        "frequency" => %humantime::format_duration(freq));
                }
            }
            if !s.errors.is_empty() {
                warn!(log, "PoWA's last snapshot of this server had errors.";
                    "server" => &server, "errors" => s.errors.join("; "));
            }
            if let Some(ret) = s.retention {
                if ret < window {
                    warn!(log, "Retention is shorter than the analysis window: the start of the window is gone.";
                        "server" => &server, "retention" => %humantime::format_duration(ret));
                } else if let Some(off) = baseline_offset.filter(|off| ret < window + *off) {
                    warn!(log, "Retention is shorter than window + baseline_offset: PoWA has already purged the baseline, so no regression can be found. Raise the server's retention or lower analysis.baseline_offset.";
                        "server" => &server, "retention" => %humantime::format_duration(ret),
                        "needed" => %humantime::format_duration(window + off));
                }
            }
        }
    }
}
