//! `powa-sentinel init`: a starter configuration written from what the repository holds.
//!
//! A new user should not have to read the 400-line reference to get a first report. `init`
//! connects to the repository the way the daemon will (read-only, with its timeouts),
//! discovers PoWA's version, servers, modules and retention, and writes a short file: that
//! repository, analysis windows that the retention it found can actually serve, a state
//! directory, the console channel on and every chat channel as a commented example (taken
//! from the reference configuration, so the two never drift). It never writes a password
//! and never overwrites a file.
//!
//! The decisions are pure ([`windows_for`], [`render`]); [`discover`] is the thin shell
//! that reads the repository.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::powa::connect::connect;
use crate::powa::discovery::{PowaInfo, ServerInfo};
use crate::powa::{RepositorySettings, SslMode};

/// The reference configuration; its commented chat-channel examples end the starter file.
const REFERENCE: &str = include_str!("../../config/powa-sentinel.toml");
/// Where the reference's channel examples start.
const CHANNEL_EXAMPLES: &str = "# Chat robots";
/// Where the package installs the reference (every key with its default).
pub const REFERENCE_PATH: &str = "/usr/share/doc/powa-sentinel/examples/powa-sentinel.toml";
/// PoWA's own default retention, assumed when the repository does not say.
const POWA_DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// How to reach the repository, from flags, else libpq's environment variables.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// A libpq key=value string or URL; the other fields override it.
    pub dsn: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub dbname: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The name of a variable holding the password (PGPASSWORD when only that is set).
    pub password_env: Option<String>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
}

impl Connection {
    /// Fills what the flags left unset from PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD
    /// and PGSSLMODE, as psql would (`var` reads one variable). A dsn given on the command
    /// line wins over the environment.
    pub fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let from_dsn = self.dsn.is_some();
        if !from_dsn {
            self.host = self.host.or_else(|| var("PGHOST"));
            self.user = self.user.or_else(|| var("PGUSER"));
            self.dbname = self.dbname.or_else(|| var("PGDATABASE"));
            if self.port.is_none() {
                if let Some(p) = var("PGPORT") {
                    self.port = Some(p.parse().map_err(|_| {
                        format!("PGPORT is `{p}`, which is not a port number (1 to 65535)")
                    })?);
                }
            }
        }
        if self.sslmode.is_none() {
            if let Some(m) = var("PGSSLMODE") {
                self.sslmode = Some(parse_sslmode(&m).map_err(|e| format!("PGSSLMODE: {e}"))?);
            }
        }
        if self.password_file.is_none()
            && self.password_env.is_none()
            && var("PGPASSWORD").is_some()
        {
            self.password_env = Some("PGPASSWORD".into());
        }
        if self.dsn.is_none() && self.host.is_none() {
            return Err(
                "say where the repository is: --dsn, --host, or PGHOST in the environment \
                        (for example: powa-sentinel init --host 127.0.0.1 --user powa_readonly)"
                    .into(),
            );
        }
        Ok(self)
    }

    /// Where `init` connects, in libpq's words, without the password.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.dsn.iter().map(|d| strip_password(d)).collect();
        for (k, v) in [
            ("host", self.host.clone()),
            ("port", self.port.map(|p| p.to_string())),
            ("user", self.user.clone()),
            ("dbname", self.dbname.clone()),
            ("sslmode", self.sslmode.map(|m| m.as_str().to_string())),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(" ")
    }

    /// The settings `init` connects with, which are also those it writes.
    pub fn settings(&self) -> RepositorySettings {
        let mut s = RepositorySettings::from_dsn(self.dsn.as_deref().unwrap_or(""));
        if self.dsn.is_none() {
            s.dsn = None;
        }
        s.host = self.host.clone();
        s.port = self.port;
        s.user = self.user.clone();
        s.dbname = self.dbname.clone();
        s.password_file = self.password_file.clone();
        s.password_env = self.password_env.clone();
        s.sslmode = self.sslmode;
        s.sslrootcert = self.sslrootcert.clone();
        s
    }
}

/// libpq's sslmode names.
pub fn parse_sslmode(m: &str) -> Result<SslMode, String> {
    use SslMode::*;
    [Disable, Prefer, Require, VerifyCa, VerifyFull]
        .into_iter()
        .find(|mode| mode.as_str() == m)
        .ok_or_else(|| {
            format!(
                "`{m}` is not an sslmode: use disable, prefer, require, verify-ca or verify-full"
            )
        })
}

/// The analysis windows chosen for a retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub window: Duration,
    pub baseline_offset: Duration,
    pub baseline_periods: u32,
}

/// Windows the retention can serve: the oldest baseline (`window + periods × offset`
/// back) must still be in PoWA, or regressions would never be found.
///
/// - 8 days or more: the last 24 h against the same hours 1, 2 and 3 weeks before (as far
///   as the retention reaches), which a weekly business rhythm needs.
/// - 2 to 8 days: the last 24 h against the days before it.
/// - Less (PoWA's default is 1 day): the last hour against the three hours before it,
///   which still catches a query that got slower tonight.
pub fn windows_for(retention: Duration) -> Windows {
    let periods = |window: Duration, offset: Duration| {
        let room = retention.saturating_sub(window).as_secs() / offset.as_secs();
        room.clamp(1, 3) as u32
    };
    if retention >= DAY + WEEK {
        Windows {
            window: DAY,
            baseline_offset: WEEK,
            baseline_periods: periods(DAY, WEEK),
        }
    } else if retention >= 2 * DAY {
        Windows {
            window: DAY,
            baseline_offset: DAY,
            baseline_periods: periods(DAY, DAY),
        }
    } else {
        Windows {
            window: HOUR,
            baseline_offset: HOUR,
            baseline_periods: 3,
        }
    }
}

/// What `init` asks for besides the connection.
#[derive(Clone, Debug)]
pub struct Options {
    /// The repository's name in the file (`[repositories.<name>]`).
    pub name: String,
    pub state_dir: PathBuf,
}

/// Everything `init` learnt from the repository.
pub struct Found {
    pub info: PowaInfo,
}

/// Connects read-only and discovers the repository.
pub async fn discover(name: &str, conn: &Connection) -> Result<Found, String> {
    let settings = conn.settings();
    let repo = connect(name, &settings)
        .await
        .map_err(|e| format!("{e}\n  tried: {}", conn.describe()))?;
    Ok(Found { info: repo.info })
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A window as people write it in the file: "24h", "7d", "1h".
fn window_value(d: Duration) -> String {
    match d.as_secs() {
        s if s >= WEEK.as_secs() && s % DAY.as_secs() == 0 => format!("{}d", s / DAY.as_secs()),
        s if s % HOUR.as_secs() == 0 => format!("{}h", s / HOUR.as_secs()),
        _ => human(d),
    }
}

/// The retention the windows must fit, and the server that has it: the shortest of the
/// servers PoWA snapshots on a schedule (the analysis windows are shared by every server).
/// A server without a snapshot frequency — typically the repository's own instance when
/// only remote servers are collected — counts only when no server has one.
fn shortest_retention(servers: &[ServerInfo]) -> Option<(Duration, &str)> {
    let scheduled = servers
        .iter()
        .any(|s| s.frequency.is_some() && s.retention.is_some());
    servers
        .iter()
        .filter(|s| !scheduled || s.frequency.is_some())
        .filter_map(|s| s.retention.map(|r| (r, s.name.as_str())))
        .min_by_key(|(r, _)| *r)
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Writes the connection keys: never a password, whatever the dsn held.
fn connection_keys(out: &mut String, conn: &Connection) {
    if let Some(dsn) = &conn.dsn {
        let _ = writeln!(out, "dsn = {}", toml_str(&strip_password(dsn)));
    }
    for (k, v) in [
        ("host", conn.host.clone()),
        ("port", conn.port.map(|p| p.to_string())),
        ("user", conn.user.clone()),
        ("dbname", conn.dbname.clone()),
    ] {
        if let Some(v) = v {
            if k == "port" {
                let _ = writeln!(out, "{k} = {v}");
            } else {
                let _ = writeln!(out, "{k} = {}", toml_str(&v));
            }
        }
    }
    match (&conn.password_file, conn.password_env.as_deref()) {
        (Some(f), _) => {
            let _ = writeln!(
                out,
                "password_file = {}",
                toml_str(&f.display().to_string())
            );
        }
        (None, Some("PGPASSWORD")) => out.push_str(
            "# init used PGPASSWORD. The daemon does not see your shell's environment: put the\n\
             # password in a file (mode 0640, group powa-sentinel) and name it here, or set\n\
             # POWA_SENTINEL__REPOSITORIES__<NAME>__PASSWORD in /etc/powa-sentinel/environment.\n\
             # password_file = \"/etc/powa-sentinel/repository.password\"\n",
        ),
        (None, Some(var)) => {
            let _ = writeln!(out, "password_env = {}", toml_str(var));
        }
        (None, None) => out.push_str(
            "# No password was needed (peer, trust or .pgpass). Otherwise:\n\
             # password_file = \"/etc/powa-sentinel/repository.password\"\n",
        ),
    }
    if let Some(m) = conn.sslmode {
        let _ = writeln!(out, "sslmode = \"{}\"", m.as_str());
    }
    if let Some(ca) = &conn.sslrootcert {
        let _ = writeln!(out, "sslrootcert = {}", toml_str(&ca.display().to_string()));
    }
}

/// A dsn without its password (key=value or URL form).
fn strip_password(dsn: &str) -> String {
    if let Ok(mut u) = url::Url::parse(dsn) {
        if matches!(u.scheme(), "postgres" | "postgresql") {
            let _ = u.set_password(None);
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| k != "password")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            u.set_query(None);
            if !pairs.is_empty() {
                u.query_pairs_mut().extend_pairs(pairs);
            }
            return u.to_string();
        }
    }
    dsn.split_whitespace()
        .filter(|kv| !kv.starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One comment line per server: what PoWA collects there and what that means for the
/// analyzers.
fn server_lines(out: &mut String, servers: &[ServerInfo], needed: Duration, now: DateTime<Utc>) {
    for s in servers {
        let every = s.frequency.map_or(
            "no snapshot frequency (snapshots only on demand)".to_string(),
            |f| format!("snapshots every {}", human(f)),
        );
        let kept = s.retention.map_or("retention unknown".to_string(), |r| {
            format!("kept {}", human(r))
        });
        let last = match s.last_snapshot {
            Some(t) => {
                let ago = (now - t).to_std().unwrap_or_default();
                let ago = Duration::from_secs(ago.as_secs() / 60 * 60);
                if ago < Duration::from_secs(60) {
                    "last snapshot just now".to_string()
                } else {
                    format!("last snapshot {} ago", human(ago))
                }
            }
            None => "no snapshot yet".to_string(),
        };
        let _ = writeln!(
            out,
            "#   {} (srvid {}): {every}, {kept}, {last}",
            s.name, s.srvid
        );
        let modules = if s.modules.is_empty() {
            "none".to_string()
        } else {
            s.modules.join(", ")
        };
        let _ = writeln!(out, "#     modules: {modules}");
        let has = |m: &str| s.modules.iter().any(|x| x == m);
        if !has("pg_qualstats") {
            out.push_str("#     no pg_qualstats: no missing-index advice for this server\n");
        }
        if !has("pg_stat_kcache") {
            out.push_str("#     no pg_stat_kcache: CPU hogs are not measured, only block I/O\n");
        }
        if s.retention.is_some_and(|r| r < needed) {
            let _ = writeln!(
                out,
                "#     keeps less than the window and its baseline ({}): no regressions here \
                 until its retention is raised",
                human(needed)
            );
        }
        if !s.errors.is_empty() {
            let _ = writeln!(
                out,
                "#     PoWA's last snapshot failed in: {}",
                s.errors.join(", ")
            );
        }
    }
}

/// The starter configuration for what was found.
pub fn render(found: &Found, conn: &Connection, opts: &Options, now: DateTime<Utc>) -> String {
    let info = &found.info;
    let retention = shortest_retention(&info.servers);
    let w = windows_for(retention.map_or(POWA_DEFAULT_RETENTION, |(r, _)| r));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# powa-sentinel configuration, written by `powa-sentinel init` on {} UTC.\n\
         # Every key, with its default and what it does: {REFERENCE_PATH}\n\
         # (config/powa-sentinel.toml in the sources). Check it with\n\
         #   powa-sentinel check --config <this file>\n\
         # and see what a report would say, without sending it, with\n\
         #   powa-sentinel once --config <this file> --dry-run\n",
        now.format("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(
        out,
        "# Found: PoWA {} in database {} (schema {}), {} server(s):",
        info.version,
        toml_str(&info.database),
        info.schema,
        info.servers.len()
    );
    server_lines(&mut out, &info.servers, w.window + w.baseline_offset, now);
    out.push('\n');

    out.push_str("[log]\n# trace, debug, info, warning, error or critical.\nlevel = \"info\"\n\n");

    out.push_str("[analysis]\n");
    match retention {
        Some((r, server)) => {
            let _ = writeln!(
                out,
                "# Chosen for the shortest retention found, {} ({server}): the oldest baseline\n\
                 # window must still be in PoWA.",
                human(r)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "# The repository does not say how long PoWA keeps its history; chosen for PoWA's\n\
                 # default, {}.",
                human(POWA_DEFAULT_RETENTION)
            );
        }
    }
    if w.baseline_offset < WEEK {
        out.push_str(
            "# To compare with the same hours a week earlier, keep PoWA's history 8 days or more\n\
             # (powa_servers.retention, or powa.retention in PoWA 3), then use\n\
             # window = \"24h\", baseline_offset = \"7d\", baseline_periods = 1 (3 from 22 days).\n",
        );
    }
    let _ = writeln!(
        out,
        "window = \"{}\"\nbaseline_offset = \"{}\"\nbaseline_periods = {}\n",
        window_value(w.window),
        window_value(w.baseline_offset),
        w.baseline_periods
    );

    let _ = writeln!(
        out,
        "[state]\n\
         # What must survive a restart: each finding's lifecycle, silences, the outbox.\n\
         # The package's systemd unit makes this directory (StateDirectory).\n\
         dir = {}\n",
        toml_str(&opts.state_dir.display().to_string())
    );

    let _ = writeln!(out, "[repositories.{}]", opts.name);
    connection_keys(&mut out, conn);
    out.push_str(
        "# Analyse only some servers (names as above); empty = all, and new ones as PoWA adds them.\n\
         servers = []\n\
         # The address of the powa-web showing this repository: messages then link to it.\n\
         # powa_web_url = \"https://powa.example.com\"\n\n",
    );

    out.push_str(
        "# Where insights go. The console writes to standard output (the journal under systemd).\n\
         [channels.console]\ntype = \"console\"\n\n",
    );
    let examples = REFERENCE
        .split_once(CHANNEL_EXAMPLES)
        .map(|(_, tail)| format!("{CHANNEL_EXAMPLES}{tail}"))
        .unwrap_or_default();
    out.push_str(&examples);
    out.push_str(
        "#\n# Channels receive everything unless [[routes]] say otherwise (see the reference).\n",
    );
    out
}

/// Why `init` could not write its file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{0} already exists; init never overwrites a file. Write to another path (--output), \
         compare, then move it into place yourself"
    )]
    Exists(PathBuf),
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Writes `text` to a new file (mode 0640: the file may come to hold secrets).
pub fn write_new(path: &Path, text: &str) -> Result<(), WriteError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => WriteError::Exists(path.to_path_buf()),
            _ => WriteError::Io(path.to_path_buf(), e),
        })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| WriteError::Io(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::powa::discovery::PowaVersion;

    fn found(retentions: &[Option<u64>]) -> Found {
        let servers = retentions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut s = ServerInfo::named(i as i32, if i == 0 { "local" } else { "db1" });
                s.retention = r.map(|h| Duration::from_secs(h * 3600));
                s.frequency = Some(Duration::from_secs(300));
                s.modules = vec!["pg_stat_statements".into()];
                s
            })
            .collect();
        Found {
            info: PowaInfo {
                version: PowaVersion::parse("4.1.4").unwrap(),
                schema: "public".into(),
                statement_fields: vec![],
                has_toplevel: false,
                servers,
                database: "powa".into(),
            },
        }
    }

    fn opts() -> Options {
        Options {
            name: "main".into(),
            state_dir: "/var/lib/powa-sentinel".into(),
        }
    }

    #[test]
    fn windows_fit_the_retention() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(
            windows_for(h(24)),
            Windows {
                window: HOUR,
                baseline_offset: HOUR,
                baseline_periods: 3
            }
        );
        assert_eq!(
            windows_for(h(48)),
            Windows {
                window: DAY,
                baseline_offset: DAY,
                baseline_periods: 1
            }
        );
        assert_eq!(
            windows_for(h(96)),
            Windows {
                window: DAY,
                baseline_offset: DAY,
                baseline_periods: 3
            }
        );
        assert_eq!(
            windows_for(h(8 * 24)),
            Windows {
                window: DAY,
                baseline_offset: WEEK,
                baseline_periods: 1
            }
        );
        assert_eq!(
            windows_for(h(30 * 24)),
            Windows {
                window: DAY,
                baseline_offset: WEEK,
                baseline_periods: 3
            }
        );
        // Whatever the retention, the oldest baseline is still kept.
        for hours in [1, 12, 24, 47, 48, 100, 191, 192, 400, 10_000] {
            let w = windows_for(h(hours));
            let oldest = w.window + w.baseline_offset * w.baseline_periods;
            assert!(oldest <= h(hours).max(4 * HOUR), "{hours} h: {w:?}");
        }
    }

    #[test]
    fn the_starter_file_is_a_valid_configuration() {
        let conn = Connection {
            host: Some("127.0.0.1".into()),
            port: Some(5433),
            user: Some("powa_readonly".into()),
            ..Connection::default()
        };
        let text = render(
            &found(&[Some(7 * 24), Some(24)]),
            &conn,
            &opts(),
            Utc::now(),
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        write_new(&p, &text).unwrap();
        let s = crate::config::Settings::load(&p).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // The shortest retention (1 day) decides.
        assert_eq!(s.analysis.window, HOUR);
        assert_eq!(s.analysis.baseline_periods, 3);
        assert!(
            text.contains("db1 (srvid 1): snapshots every 5m, kept 1day"),
            "{text}"
        );
        assert!(text.contains("1day (db1)"), "{text}");
        assert!(text.contains("# [channels.wecom]"), "{text}");
        assert!(text.contains("no pg_qualstats"), "{text}");
        // Never overwritten.
        assert!(matches!(write_new(&p, "x"), Err(WriteError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }

    /// In remote mode the repository's own instance is usually not snapshotted: its
    /// (default, short) retention must not shrink every server's windows.
    #[test]
    fn an_unscheduled_server_does_not_decide_the_windows() {
        let mut f = found(&[Some(24), Some(30 * 24)]);
        f.info.servers[0].frequency = None;
        let text = render(&f, &Connection::default(), &opts(), Utc::now());
        assert!(
            text.contains("window = \"24h\"\nbaseline_offset = \"7d\"\nbaseline_periods = 3"),
            "{text}"
        );
        assert!(text.contains("(db1)"), "{text}");
        assert!(
            text.contains("#     keeps less than the window and its baseline (8days)"),
            "{text}"
        );
        // Nobody on a schedule: the retentions there are still better than a guess.
        f.info.servers[1].frequency = None;
        let text = render(&f, &Connection::default(), &opts(), Utc::now());
        assert!(text.contains("window = \"1h\""), "{text}");
    }

    #[test]
    fn no_password_is_ever_written() {
        for dsn in [
            "host=db1 user=ro password=hunter2 dbname=powa",
            "postgresql://ro:hunter2@db1:5432/powa?password=hunter2&sslmode=require",
        ] {
            let conn = Connection {
                dsn: Some(dsn.into()),
                ..Connection::default()
            };
            let text = render(&found(&[None]), &conn, &opts(), Utc::now());
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("db1"), "{text}");
        }
    }

    #[test]
    fn the_environment_fills_what_flags_leave() {
        let env = |k: &str| match k {
            "PGHOST" => Some("db9".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGPASSWORD" => Some("x".to_string()),
            "PGSSLMODE" => Some("require".to_string()),
            _ => None,
        };
        let c = Connection {
            user: Some("me".into()),
            ..Connection::default()
        }
        .with_env(env)
        .unwrap();
        assert_eq!(c.host.as_deref(), Some("db9"));
        assert_eq!(c.port, Some(6543));
        assert_eq!(c.user.as_deref(), Some("me"));
        assert_eq!(c.password_env.as_deref(), Some("PGPASSWORD"));
        assert_eq!(c.sslmode, Some(SslMode::Require));
        let e = Connection::default().with_env(|_| None).unwrap_err();
        assert!(e.contains("--host"), "{e}");
        let e = Connection::default()
            .with_env(|k| (k == "PGPORT").then(|| "x".into()))
            .unwrap_err();
        assert!(e.contains("PGPORT"), "{e}");
    }
}
