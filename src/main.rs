//! The powa-sentinel command line.
//!
//! Exit codes: 0 success (for `run`: stopped cleanly by SIGTERM/SIGINT); 1 the run failed
//! (a repository, server or channel failed; for `run`: the shutdown deadline ran out; for
//! `once`: stopped by SIGTERM/SIGINT before everything was analysed and delivered);
//! 2 the command line or the configuration is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use slog::{error, info, o, warn, Logger};

use powa_sentinel::cli::init as init_cli;
use powa_sentinel::cli::outbox::{self as outbox_cli, OutboxCommand};
use powa_sentinel::cli::silence::{self as silence_cli, SilenceCommand};
use powa_sentinel::config::{Origin, Settings};
use powa_sentinel::topology::{self, RunOptions, Telling};
use powa_sentinel::{daemon, logging};
use sentinel_actors::collector::Collect;
use sentinel_actors::shutdown::Shutdown;
use sentinel_actors::Window;

/// `--version`: the version, the commit it was built from and the build date (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("POWA_SENTINEL_COMMIT"),
    ", built ",
    env!("POWA_SENTINEL_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "powa-sentinel",
    version = VERSION,
    long_version = VERSION,
    about = "Watches PostgreSQL fleets through PoWA and tells people what is going wrong."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as a daemon: collect every server on PoWA's rhythm, send reports on the
    /// schedule, serve /healthz, /readyz, /metrics and /status. SIGHUP reloads the
    /// settings, SIGTERM/SIGINT stop cleanly.
    Run {
        /// Settings file (.toml, .yaml or .yml; a seed-format config.yaml works too).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run one analysis cycle over the configured window, deliver, and exit.
    Once {
        /// Settings file (.toml, .yaml or .yml).
        #[arg(long, short)]
        config: PathBuf,
        /// text: channels only; json: also print every insight as a JSON line on stdout
        /// (the console channel then writes to stderr).
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Print what each channel would send, rendered as it would be, without sending.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the settings, connect to every repository and show what is there.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also send a test message to every channel and report per channel.
        #[arg(long)]
        channels: bool,
    },
    /// Replay the analyzers over past windows still in PoWA, stepping by analysis.window,
    /// and print what would have been sent (nothing is sent) and how many messages per
    /// channel.
    Backtest {
        #[arg(long, short)]
        config: PathBuf,
        /// Start: RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01, UTC) or a duration
        /// ago (7d).
        #[arg(long)]
        from: String,
        /// End, same forms. Default now.
        #[arg(long, default_value = "0s")]
        to: String,
    },
    /// Mute findings for a while: add, list or expire silences (kept in the state directory).
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// What the channels' outbox holds: list it, re-queue or drop what failed for good.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Write a starter configuration from what a PoWA repository holds: connects read-only,
    /// finds PoWA's version, servers, modules and retention, and chooses analysis windows
    /// the retention can serve. Prints it, or writes a new file with --output (never
    /// overwrites). Unset flags are taken from PGHOST, PGPORT, PGUSER, PGDATABASE,
    /// PGPASSWORD and PGSSLMODE, as psql does.
    Init(InitArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (one per command) into a directory; used by the package build.
    #[command(hide = true)]
    Manpages {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct InitArgs {
    /// The repository as a libpq string or URL ("host=db1 user=powa_readonly dbname=powa");
    /// a password in it is used to connect but never written.
    #[arg(long)]
    dsn: Option<String>,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    user: Option<String>,
    /// The database holding PoWA (default powa).
    #[arg(long)]
    dbname: Option<String>,
    /// A file holding the repository's password (its first line); written into the file.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// disable, prefer, require, verify-ca or verify-full.
    #[arg(long, value_parser = init_cli::parse_sslmode)]
    sslmode: Option<powa_sentinel::powa::SslMode>,
    /// CA certificate (PEM) for verify-ca and verify-full.
    #[arg(long)]
    sslrootcert: Option<PathBuf>,
    /// The repository's name in the file ([repositories.<name>]).
    #[arg(long, default_value = "main")]
    name: String,
    /// The state directory written into the file.
    #[arg(long, default_value = "/var/lib/powa-sentinel")]
    state_dir: PathBuf,
    /// Write the configuration to this new file instead of printing it.
    #[arg(long, short)]
    output: Option<PathBuf>,
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
        Command::Init(args) => return run_system(init(args)),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "powa-sentinel", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Manpages { dir } => return manpages(dir),
        Command::Run { config }
        | Command::Once { config, .. }
        | Command::Check { config, .. }
        | Command::Backtest { config, .. } => config.clone(),
        Command::Silence { command } => command.config().to_path_buf(),
        Command::Outbox { command } => command.config().to_path_buf(),
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
    logging::register_secrets(settings.secrets());
    let (log, guard) = logging::init(&settings.log);
    let code = match cli.command {
        Command::Run { config } => run_system(daemon::run(config, settings, log.clone())),
        Command::Once {
            output, dry_run, ..
        } => {
            let opts = RunOptions {
                json_output: output == Output::Json,
                dry_run,
            };
            run_system(once(settings, opts, log.clone()))
        }
        Command::Check { channels, .. } => run_system(check(settings, channels, log.clone())),
        Command::Backtest { from, to, .. } => {
            let now = Utc::now();
            match (parse_time(&from, now), parse_time(&to, now)) {
                (Ok(from), Ok(to)) if from < to => {
                    run_system(backtest(settings, from, to, log.clone()))
                }
                (Ok(_), Ok(_)) => {
                    eprintln!("powa-sentinel: --from must be before --to");
                    ExitCode::from(2)
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("powa-sentinel: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Silence { command } => silence(&command, &settings),
        Command::Outbox { command } => outbox(&command, &settings),
        Command::Init(_) | Command::Completions { .. } | Command::Manpages { .. } => {
            unreachable!("handled before the configuration is read")
        }
    };
    drop(log);
    drop(guard);
    code
}

/// `init`: discover the repository, then print or write the starter configuration.
async fn init(args: &InitArgs) -> ExitCode {
    let conn = init_cli::Connection {
        dsn: args.dsn.clone(),
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        dbname: args.dbname.clone(),
        password_file: args.password_file.clone(),
        password_env: None,
        sslmode: args.sslmode,
        sslrootcert: args.sslrootcert.clone(),
    };
    let conn = match conn.with_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("powa-sentinel init: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(out) = &args.output {
        if out.exists() {
            eprintln!(
                "powa-sentinel init: {}",
                init_cli::WriteError::Exists(out.clone())
            );
            return ExitCode::from(2);
        }
    }
    let found = match init_cli::discover(&args.name, &conn).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("powa-sentinel init: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = init_cli::Options {
        name: args.name.clone(),
        state_dir: args.state_dir.clone(),
    };
    let text = init_cli::render(&found, &conn, &opts, Utc::now());
    match &args.output {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match init_cli::write_new(path, &text) {
            Ok(()) => {
                eprintln!(
                    "Wrote {} (PoWA {}, {} server(s)). Next: powa-sentinel check --config {}",
                    path.display(),
                    found.info.version,
                    found.info.servers.len(),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("powa-sentinel init: {e}");
                ExitCode::from(if matches!(e, init_cli::WriteError::Exists(_)) {
                    2
                } else {
                    1
                })
            }
        },
    }
}

/// `manpages --dir`: powa-sentinel.1 and one page per command (powa-sentinel-run.1, …).
fn manpages(dir: &std::path::Path) -> ExitCode {
    let cmd = Cli::command();
    match std::fs::create_dir_all(dir).and_then(|_| clap_mangen::generate_to(cmd, dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "powa-sentinel: cannot write man pages into {}: {e}",
                dir.display()
            );
            ExitCode::from(1)
        }
    }
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

fn outbox(command: &OutboxCommand, settings: &Settings) -> ExitCode {
    match outbox_cli::run(command, settings, Utc::now()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("powa-sentinel: {e}");
            ExitCode::from(match e {
                outbox_cli::CliError::Usage(_) => 2,
                outbox_cli::CliError::Outbox(_) => 1,
            })
        }
    }
}

fn run_system<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    actix::System::new().block_on(f)
}

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
async fn once(settings: Settings, opts: RunOptions, log: Logger) -> ExitCode {
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

async fn check(settings: Settings, channels: bool, log: Logger) -> ExitCode {
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
                match powa_sentinel::powa::catalog::describe(
                    &r.client,
                    &r.info,
                    s.srvid,
                    Utc::now()
                )
                .await
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
                let reach = powa_sentinel::powa::monitored::Reach::new(&r.name, rs, log.clone());
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
        let h = powa_sentinel::statedb::health(&db).map_err(|e| e.to_string())?;
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
    client: &powa_sentinel::powa::session::Session,
    info: &powa_sentinel::powa::discovery::PowaInfo,
    server: &powa_sentinel::powa::discovery::ServerInfo,
    reach: std::time::Duration,
) -> String {
    use powa_sentinel::powa::changes::{Availability, ChangeReader, What};
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
        Err(e) => format!("none ({})", powa_sentinel::powa::changes::unreadable(&e)),
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

/// `--from`/`--to`: RFC 3339, a date (UTC midnight) or a duration ago.
fn parse_time(s: &str, now: chrono::DateTime<Utc>) -> Result<chrono::DateTime<Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = humantime::parse_duration(s) {
        if let Ok(d) = chrono::Duration::from_std(d) {
            return Ok(now - d);
        }
    }
    Err(format!(
        "`{s}` is not a time: write 2026-11-01T00:00:00Z, 2026-11-01 or a duration ago such as 7d"
    ))
}

/// Replays the analyzers over past windows; channels print instead of sending.
async fn backtest(
    settings: Settings,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    log: Logger,
) -> ExitCode {
    let log = log.new(o!("command" => "backtest"));
    let opts = RunOptions {
        json_output: false,
        dry_run: true,
    };
    let topo = match topology::build(&settings, opts, &log).await {
        Ok(t) => t,
        Err(e) => {
            error!(log, "Cannot start."; "error" => format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    if topo.collectors.is_empty() {
        error!(
            log,
            "No server to analyse: every repository failed or none has a server."
        );
        return ExitCode::from(1);
    }
    let step =
        chrono::Duration::from_std(settings.analysis.window).unwrap_or(chrono::Duration::hours(24));
    let mut failed = !topo.failures.is_empty();
    let mut per_channel: std::collections::BTreeMap<String, usize> =
        topo.channels.keys().map(|k| (k.clone(), 0)).collect();
    let mut windows = 0;
    let mut insights = 0;
    let mut start = from;
    while start + step <= to {
        let window = Window {
            start,
            end: start + step,
        };
        windows += 1;
        let results =
            topology::per_session(&topo.collectors, |c| c.addr.send(Collect { window })).await;
        for (c, r) in topo.collectors.iter().zip(results) {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    failed = true;
                    warn!(log, "Window could not be read."; "server" => &c.name, "window_start" => %window.start, "error" => %e)
                }
                Err(e) => {
                    failed = true;
                    error!(log, "Collector unavailable."; "server" => &c.name, "error" => %e)
                }
            }
        }
        if let Some(summary) = topology::report(&topo.gate, window.end, Telling::Quiet, &log).await
        {
            insights += summary.insights;
            for r in &summary.reports {
                *per_channel.entry(r.channel.clone()).or_default() += r.parts_delivered;
            }
        }
        start += step;
    }
    if windows == 0 {
        eprintln!(
            "powa-sentinel: the range is shorter than one analysis window ({}); widen --from/--to",
            humantime::format_duration(settings.analysis.window)
        );
        return ExitCode::from(2);
    }
    println!(
        "backtest: {windows} window(s) of {} from {} to {}, {insights} insight(s)",
        humantime::format_duration(settings.analysis.window),
        from.to_rfc3339(),
        (from + step * windows).to_rfc3339()
    );
    for (ch, n) in &per_channel {
        println!("channel {ch}: {n} message(s) would have been sent");
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
