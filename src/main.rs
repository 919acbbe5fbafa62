//! The powa-sentinel command line.
//!
//! Exit codes: 0 success; 1 the run failed (a repository, server or channel failed);
//! 2 the command line or the configuration is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::future::join_all;
use slog::{error, info, o, warn, Logger};

use powa_sentinel::config::Settings;
use powa_sentinel::gate::cli::{self as silence_cli, SilenceCommand};
use powa_sentinel::logging;
use powa_sentinel::topology::{self, RunOptions};
use sentinel_actors::collector::Collect;
use sentinel_actors::gate::Flush;
use sentinel_actors::Window;

#[derive(Parser)]
#[command(
    name = "powa-sentinel",
    version,
    about = "Watches PostgreSQL fleets through PoWA and tells people what is going wrong."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one analysis cycle over the configured window, deliver, and exit.
    Once {
        /// Settings file (.toml, .yaml or .yml).
        #[arg(long, short)]
        config: PathBuf,
        /// text: channels only; json: also print every insight as a JSON line on stdout
        /// (the console channel then writes to stderr).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Validate the settings, connect to every repository and show what is there.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Mute findings for a while: add, list or expire silences (kept in the state directory).
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the whole process (rustls panics if it has to guess).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match &cli.command {
        Command::Once { config, .. } | Command::Check { config } => config.clone(),
        Command::Silence { command } => command.config().to_path_buf(),
    };
    let settings = match Settings::load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("powa-sentinel: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = settings.log.level() {
        eprintln!(
            "powa-sentinel: invalid configuration:\n{}: key `log.level`: {e}",
            config.display()
        );
        return ExitCode::from(2);
    }
    let (log, guard) = logging::init(&settings.log);
    let code = match cli.command {
        Command::Once { output, .. } => {
            let opts = RunOptions {
                json_output: output == Output::Json,
            };
            run_system(once(settings, opts, log.clone()))
        }
        Command::Check { .. } => run_system(check(settings, log.clone())),
        Command::Silence { command } => silence(&command, &settings),
    };
    drop(log);
    drop(guard);
    code
}

fn silence(command: &SilenceCommand, settings: &Settings) -> ExitCode {
    match silence_cli::run(command, settings, Utc::now()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e @ silence_cli::CliError::Usage(_)) => {
            eprintln!("powa-sentinel: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("powa-sentinel: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_system<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    actix::System::new().block_on(f)
}

async fn once(settings: Settings, opts: RunOptions, log: Logger) -> ExitCode {
    let log = log.new(o!("command" => "once"));
    let topo = match topology::build(&settings, opts, &log).await {
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
    let results = join_all(
        topo.collectors
            .iter()
            .map(|c| c.addr.send(Collect { window })),
    )
    .await;
    for (c, r) in topo.collectors.iter().zip(results) {
        match r {
            Ok(Ok(summary)) => {
                info!(log, "Server analysed."; "server" => &c.name, "insights" => summary.insights)
            }
            Ok(Err(e)) => {
                failed = true;
                error!(log, "Server could not be analysed; the others were."; "server" => &c.name, "error" => %e)
            }
            Err(e) => {
                failed = true;
                error!(log, "Collector unavailable."; "server" => &c.name, "error" => %e)
            }
        }
    }
    match topo.gate.send(Flush { at: Utc::now() }).await {
        Ok(summary) => {
            for r in &summary.reports {
                match &r.outcome {
                    Ok(()) => info!(log, "Delivered."; "channel" => &r.channel,
                        "parts" => r.parts_total, "attempts" => r.attempts),
                    Err(e) => {
                        failed = true;
                        error!(log, "Delivery failed."; "channel" => &r.channel,
                            "parts_delivered" => r.parts_delivered, "parts" => r.parts_total, "error" => %e)
                    }
                }
            }
            if summary.insights == 0 {
                info!(log, "Nothing worth reporting in this window.");
            }
        }
        Err(e) => {
            failed = true;
            error!(log, "Gate unavailable."; "error" => %e);
        }
    }
    if !drained(drain.await, &log) {
        failed = true;
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
                if r.failed > 0 {
                    ok = false;
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

async fn check(settings: Settings, log: Logger) -> ExitCode {
    let (repos, failures) = topology::connect_all(&settings).await;
    for r in &repos {
        println!(
            "repository {}: PoWA {} in schema {}, {} server(s)",
            r.name,
            r.info.version,
            r.info.schema,
            r.info.servers.len()
        );
        for s in &r.info.servers {
            let fmt_d = |d: Option<std::time::Duration>| {
                d.map(|d| humantime::format_duration(d).to_string())
                    .unwrap_or_else(|| "unknown".into())
            };
            println!(
                "  server {} (srvid {}): snapshot every {}, retention {}, last snapshot {}, modules: {}",
                s.name,
                s.srvid,
                fmt_d(s.frequency),
                fmt_d(s.retention),
                s.last_snapshot
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into()),
                if s.modules.is_empty() { "none".to_string() } else { s.modules.join(", ") }
            );
            if let Some(ret) = s.retention {
                if ret < settings.analysis.window {
                    warn!(log, "Retention is shorter than the analysis window."; "server" => &s.name);
                }
            }
        }
    }
    for f in &failures {
        println!("error: {f}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
