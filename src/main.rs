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

use powa_sentinel::cli::backtest::{backtest, parse_time};
use powa_sentinel::cli::check::check;
use powa_sentinel::cli::init as init_cli;
use powa_sentinel::cli::once::once;
use powa_sentinel::cli::outbox::{self as outbox_cli, OutboxCommand};
use powa_sentinel::cli::silence::{self as silence_cli, SilenceCommand};
use powa_sentinel::config::Settings;
use powa_sentinel::topology::RunOptions;
use powa_sentinel::{daemon, logging};

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
