//! Settings: one TOML or YAML file, overridable by `POWA_SENTINEL__SECTION__KEY` environment
//! variables, read with the `config` crate.
//!
//! Every component owns its settings struct (beside its code); this module only composes
//! them and turns every failure into a [`ConfigError`] that names the file, the key, what is
//! wrong and what to do. Structs use `deny_unknown_fields`, so a typo is an error, not a
//! silently ignored key. Named collections (`repositories.<name>`, `channels.<name>`) are
//! maps rather than arrays so that each of their keys can be overridden from the environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::analyze::AnalyzersSettings;
use crate::channels::ChannelSettings;
use crate::http::HttpSettings;
use crate::logging::LogSettings;
use crate::powa::RepositorySettings;
pub use crate::problem::Problem;
use crate::schedule::{CollectionSettings, ScheduleSettings};
use crate::secret::Secret;

pub(crate) mod describe;

/// The prefix of environment overrides: `POWA_SENTINEL__REPOSITORIES__MAIN__DSN`.
pub const ENV_PREFIX: &str = "POWA_SENTINEL";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub analysis: AnalysisSettings,
    /// PoWA repositories to read, by name.
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositorySettings>,
    #[serde(default)]
    pub analyzers: AnalyzersSettings,
    /// Where insights go, by name.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSettings>,
    #[serde(default)]
    pub state: StateSettings,
    /// The gate: lifecycle, immediate vs report, quiet hours.
    #[serde(default)]
    pub gate: crate::gate::GateSettings,
    /// Ordered routes from insights to channels (first match wins unless `continue`).
    #[serde(default)]
    pub routes: Vec<crate::gate::routes::RouteSettings>,
    /// When reports are sent (`run`).
    #[serde(default)]
    pub schedule: ScheduleSettings,
    /// How the daemon collects the servers (`run`).
    #[serde(default)]
    pub collection: CollectionSettings,
    /// Health, readiness, metrics and status endpoints (`run`).
    #[serde(default)]
    pub http: HttpSettings,
    /// Where these settings came from; not a key.
    #[serde(skip)]
    pub origin: Origin,
    /// Every key as it was set, for a reload to name what changed; not a key.
    #[serde(skip)]
    pub keys: Keys,
}

/// How the file was read.
#[derive(Debug, Clone, Default)]
pub enum Origin {
    #[default]
    Native,
    /// A seed-format file, translated ([`crate::seed_compat`]).
    Seed(crate::seed_compat::Translation),
}

/// Where the state that must survive a restart lives (the gate's lifecycle and silences,
/// the channels' outbox). Each component keeps its own file in this directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Data directory, created if missing. Unset (and no `dsn`): state is kept in memory
    /// only (fine for `once`; `run` warns, since a restart then forgets what was pending).
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// A writable PostgreSQL database of powa-sentinel's own (never the PoWA repository)
    /// that keeps what `dir` keeps, for processes that share it. An alternative to `dir`:
    /// set one of the two. Same format as a repository's `dsn`; it must name the
    /// database (`dbname=`).
    #[serde(default)]
    pub dsn: Option<Secret>,
    /// The state database's password, or where to read it (at most one of the three), as
    /// for a repository.
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS to the state database, as for a repository.
    #[serde(default)]
    pub sslmode: Option<crate::powa::SslMode>,
    #[serde(default)]
    pub sslrootcert: Option<std::path::PathBuf>,
    /// Longest to wait for a connection to the state database. Default 10s.
    #[serde(with = "humantime_serde", default = "default_state_connect_timeout")]
    pub connect_timeout: Duration,
    /// Longest one statement on the state database may run. Default 30s.
    #[serde(with = "humantime_serde", default = "default_state_statement_timeout")]
    pub statement_timeout: Duration,
    /// The schema (created if missing) that holds powa-sentinel's tables in that
    /// database. Default `powa_sentinel`.
    #[serde(default = "default_state_schema")]
    pub schema: String,
    /// How long the report page of each notification is kept (`reports/` in `dir`; the
    /// "Full report" link of messages, with `[http] public_url`). Default 30d; "0s" writes
    /// none. With `dsn` and no `dir`, report pages are kept in a directory of this process
    /// under the system's temporary directory: after a restart (a new directory) their
    /// links show what fires now.
    #[serde(with = "humantime_serde", default = "default_keep_reports")]
    pub keep_reports: Duration,
    /// With `dsn`, `run` processes on the same database share the work (see
    /// `docs/replicas.md`): how long a replica's leases (a server to collect, the
    /// delivery) last without renewal. A replica that dies is replaced after at most
    /// this much (plus a third of it); one cut off from the state database stops before
    /// it. Default 15s; between 3s and 10min.
    #[serde(with = "humantime_serde", default = "default_lease")]
    pub lease: Duration,
}

fn default_lease() -> Duration {
    Duration::from_secs(15)
}

fn default_keep_reports() -> Duration {
    crate::archive::DEFAULT_KEEP
}

fn default_state_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_state_statement_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_state_schema() -> String {
    crate::statedb::DEFAULT_SCHEMA.to_string()
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: None,
            dsn: None,
            password: None,
            password_file: None,
            password_env: None,
            sslmode: None,
            sslrootcert: None,
            connect_timeout: default_state_connect_timeout(),
            statement_timeout: default_state_statement_timeout(),
            schema: default_state_schema(),
            keep_reports: default_keep_reports(),
            lease: default_lease(),
        }
    }
}

impl StateSettings {
    /// The state database's settings, when `dsn` is set: the connection keys as a
    /// repository's, so that the same code (password sources, TLS, timeouts) opens it.
    pub fn database(&self) -> Option<crate::statedb::DbSettings> {
        let dsn = self.dsn.clone()?;
        Some(crate::statedb::DbSettings {
            connection: crate::powa::RepositorySettings {
                dsn: Some(dsn),
                host: None,
                port: None,
                user: None,
                dbname: None,
                password: self.password.clone(),
                password_file: self.password_file.clone(),
                password_env: self.password_env.clone(),
                sslmode: self.sslmode,
                sslrootcert: self.sslrootcert.clone(),
                statement_timeout: self.statement_timeout,
                connect_timeout: self.connect_timeout,
                servers: Vec::new(),
                monitored: BTreeMap::new(),
                reach_servers: false,
                powa_web_url: None,
            },
            schema: self.schema.clone(),
            fence: None,
        })
    }

    /// Is anything kept beyond this process (a directory or a database)?
    pub fn is_durable(&self) -> bool {
        self.dir.is_some() || self.dsn.is_some()
    }

    /// Where the files that stay local to a host go (report pages): `dir`, or with `dsn`
    /// alone a directory of this process under the system's temporary directory (which
    /// the caller says in its log). `None` when state is in memory.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        if let Some(d) = &self.dir {
            return Some(d.clone());
        }
        self.dsn.as_ref()?;
        Some(std::env::temp_dir().join(format!(
            "powa-sentinel-{}-{}",
            self.schema,
            std::process::id()
        )))
    }

    /// The `[state]` problems: `dir` and `dsn` are alternatives; the database's keys.
    fn validate(&self, problems: &mut Vec<Problem>) {
        if let Some(dir) = &self.dir {
            if let Some(p) = state_dir_problem(dir) {
                problems.push(p);
            }
        }
        let connection_keys = [
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("password_env", self.password_env.is_some()),
            ("sslmode", self.sslmode.is_some()),
            ("sslrootcert", self.sslrootcert.is_some()),
        ];
        let Some(db) = self.database() else {
            for (key, set) in connection_keys {
                if set {
                    problems.push(Problem::new(
                        format!("state.{key}"),
                        "is a key of the state database, and `state.dsn` is not set: set dsn, or remove it",
                    ));
                }
            }
            return;
        };
        if self.dir.is_some() {
            problems.push(Problem::new(
                "state.dsn",
                "`state.dir` and `state.dsn` are alternatives (a directory for one process, a                  database that processes share): remove one of them",
            ));
        }
        if !(Duration::from_secs(3)..=Duration::from_secs(600)).contains(&self.lease) {
            problems.push(Problem::new(
                "state.lease",
                format!(
                    "{} is out of range: between 3s (a beat every second) and 10min (a dead replica replaced that late); e.g. \"15s\"",
                    humantime::format_duration(self.lease)
                ),
            ));
        }
        if !crate::statedb::valid_schema(&self.schema) {
            problems.push(Problem::new(
                "state.schema",
                format!(
                    "{:?} is not a usable schema name: lower-case letters, digits and '_', not starting with a digit or pg_, at most 63 characters (e.g. \"powa_sentinel\")",
                    self.schema
                ),
            ));
        }
        match db
            .connection
            .dsn
            .as_ref()
            .map(|d| d.expose().parse::<tokio_postgres::Config>())
        {
            Some(Err(e)) => problems.push(Problem::new(
                "state.dsn",
                format!(
                    "not a valid connection string ({}); use key=value pairs or a postgresql:// URL",
                    crate::powa::connect::describe_pg_error(&e)
                ),
            )),
            Some(Ok(cfg)) if cfg.get_dbname().is_none() => problems.push(Problem::new(
                "state.dsn",
                "names no database: add dbname=... (a database powa-sentinel may write, not the PoWA repository)",
            )),
            _ => {}
        }
        db.connection.validate_password_sources("state", problems);
        crate::powa::validate_tls(
            "state",
            db.connection.effective_sslmode(),
            db.connection.sslrootcert.as_deref(),
            problems,
        );
        if self.statement_timeout < Duration::from_secs(1) {
            problems.push(Problem::new(
                "state.statement_timeout",
                "must be at least 1s",
            ));
        }
    }
}

/// What window the analyzers look at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSettings {
    /// Length of the analysed window, ending now. Default 24h.
    #[serde(with = "humantime_serde", default = "default_window")]
    pub window: Duration,
    /// The baseline is the same window shifted back by this much. Default 7d (the same
    /// hours a week earlier); PoWA's retention must cover window + offset.
    #[serde(with = "humantime_serde", default = "default_baseline_offset")]
    pub baseline_offset: Duration,
    /// How many past windows make the baseline: the window shifted back by 1, 2, …, n
    /// times `baseline_offset`, as far as the server's retention reaches. With several,
    /// analyzers compare with their median, so one odd week neither makes nor hides a
    /// regression. Default 3.
    #[serde(default = "default_baseline_periods")]
    pub baseline_periods: u32,
}

fn default_baseline_periods() -> u32 {
    3
}

fn default_baseline_offset() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

fn default_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        AnalysisSettings {
            window: default_window(),
            baseline_offset: default_baseline_offset(),
            baseline_periods: default_baseline_periods(),
        }
    }
}

/// Why the settings could not be used. Displays as one line per problem, each naming the
/// file and the key.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.key.is_empty() {
                write!(f, "{}: {}", self.file.display(), p.message)?;
            } else {
                write!(f, "{}: key `{}`: {}", self.file.display(), p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Reads `path` (format from its extension: .toml, .yaml or .yml) and the environment.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    ///
    /// Every problem's text goes through [`crate::secret::redact_config_text`] with the
    /// file's text, so an error never quotes a secret of the file (a syntax error on the
    /// line of a robot key, a type error on a password), wherever it is shown: the
    /// command line, the log, `/status` after a refused reload.
    pub fn load_with_env(
        path: &Path,
        env: Option<BTreeMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let fail = |problems: Vec<Problem>, sources: &[&str]| ConfigError {
            file: path.to_path_buf(),
            problems: problems
                .into_iter()
                .map(|p| {
                    let message = sources.iter().fold(p.message, |m, source| {
                        crate::secret::redact_config_text(&m, source)
                    });
                    Problem::new(p.key, message)
                })
                .collect(),
        };
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => config::FileFormat::Toml,
            Some("yaml") | Some("yml") => config::FileFormat::Yaml,
            _ => {
                return Err(fail(
                    vec![Problem::new(
                        "",
                        "unknown file type: name the file *.toml, *.yaml or *.yml",
                    )],
                    &[],
                ))
            }
        };
        let file_text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                vec![Problem::new(
                    "",
                    format!(
                        "cannot read the configuration file ({e}); check the path given with --config"
                    ),
                )],
                &[],
            )
        })?;
        let mut format = format;
        let mut text = file_text.clone();
        let mut origin = Origin::Native;
        if format == config::FileFormat::Yaml && crate::seed_compat::is_seed(&text) {
            let lookup = |k: &str| match &env {
                Some(m) => m.get(k).cloned(),
                None => std::env::var(k).ok(),
            };
            let expanded = crate::seed_compat::expand_env(&text, &lookup);
            let t = crate::seed_compat::translate(&expanded)
                .map_err(|problems| fail(problems, &[&file_text, &expanded]))?;
            text = t.native.clone();
            format = config::FileFormat::Toml;
            origin = Origin::Seed(t);
        }
        let (mut settings, keys) =
            parse(&text, format, env.as_ref()).map_err(|p| fail(p, &[&file_text, &text]))?;
        settings.origin = origin;
        settings.keys = keys;
        let problems = settings.validate();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError {
                file: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Checks what serde cannot: ranges, references, required combinations.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.repositories.is_empty() {
            problems.push(Problem::new(
                "repositories",
                "no PoWA repository is configured: add a [repositories.<name>] table with a dsn",
            ));
        }
        for (name, repo) in &self.repositories {
            repo.validate(&format!("repositories.{name}"), &mut problems);
        }
        if self.channels.is_empty() {
            problems.push(Problem::new(
                "channels",
                "no channel is configured: add a [channels.<name>] table, e.g. type = \"console\"",
            ));
        }
        for (name, ch) in &self.channels {
            if !valid_name(name) {
                problems.push(Problem::new(
                    format!("channels.{name}"),
                    "channel names may contain only letters, digits, '-' and '_'",
                ));
            }
            ch.validate(&format!("channels.{name}"), &mut problems);
        }
        if self.analysis.window < Duration::from_secs(60) {
            problems.push(Problem::new(
                "analysis.window",
                "the window must be at least 1m (PoWA snapshots are minutes apart)",
            ));
        }
        if self.analysis.baseline_offset < self.analysis.window {
            problems.push(Problem::new(
                "analysis.baseline_offset",
                "must be at least the window, or the baseline overlaps the window it is compared with",
            ));
        }
        if !(1..=12).contains(&self.analysis.baseline_periods) {
            problems.push(Problem::new(
                "analysis.baseline_periods",
                format!(
                    "{} is out of range: use 1 to 12 (past windows compared with)",
                    self.analysis.baseline_periods
                ),
            ));
        }
        self.state.validate(&mut problems);
        self.analyzers.validate("analyzers", &mut problems);
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        crate::gate::validate(&self.gate, &self.routes, &channels, &mut problems);
        self.schedule.validate(&mut problems);
        self.collection.validate("collection", &mut problems);
        self.http.validate(&mut problems);
        if self.http.public_url.is_some() && !self.state.is_durable() {
            problems.push(Problem::new(
                "http.public_url",
                "needs [state] dir or dsn: acknowledgements and snoozes made from the links are \
                 kept there (set state.dir, or remove public_url)",
            ));
        }
        if self.http.public_url.is_some()
            && self.state.dir.is_none()
            && self.state.dsn.is_some()
            && self.http.link_key_file.is_none()
        {
            problems.push(Problem::new(
                "http.link_key_file",
                "is needed with [state] dsn and http.public_url: there is no state directory to \
                 keep the key in, and every process sharing the database must sign links with \
                 the same key (write one with `openssl rand -hex 32`)",
            ));
        }
        problems
    }
}

/// `[state] dir` must be a directory, or a path where one can be created: a file there
/// (or in the way of creating it) would make every command fail later, at its first write,
/// with a less helpful message.
fn state_dir_problem(dir: &Path) -> Option<Problem> {
    let problem = |m: String| Some(Problem::new("state.dir", m));
    if dir.as_os_str().is_empty() {
        return problem(
            "is empty: set the directory where state is kept, or remove the key".into(),
        );
    }
    // The nearest part of the path that exists must be a directory.
    let existing = dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())?;
    if existing.is_dir() {
        return None;
    }
    if existing == dir {
        problem(format!(
            "`{}` is a file, not a directory: set [state] dir to a directory (it is created if missing)",
            dir.display()
        ))
    } else {
        problem(format!(
            "`{}` cannot be created: `{}` is a file, not a directory",
            dir.display(),
            existing.display()
        ))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The settings in `text` (and the environment), or what is wrong with them as the
/// parsers and serde see it (ranges and references are [`Settings::validate`]'s).
fn parse(
    text: &str,
    format: config::FileFormat,
    env: Option<&BTreeMap<String, String>>,
) -> Result<(Settings, Keys), Vec<Problem>> {
    let mut envsrc = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true);
    if let Some(map) = env {
        envsrc = envsrc.source(Some(map.clone().into_iter().collect()));
    }
    let problem = |e: &config::ConfigError| {
        let mut p = describe::describe(e, text, format);
        if p.key.is_empty() && e.to_string().contains("number too ") {
            p = oversized(text, format, env).unwrap_or(p);
        }
        // Say so when the value came from the environment: the file may well be right.
        let var = format!(
            "{ENV_PREFIX}__{}",
            p.key.replace('.', "__").to_ascii_uppercase()
        );
        let from_env = match env {
            Some(m) => m.contains_key(&var),
            None => std::env::var_os(&var).is_some(),
        };
        if !p.key.is_empty() && from_env {
            p.message = format!("{} (set in the environment by {var})", p.message);
        }
        p
    };
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, format))
        .add_source(envsrc)
        .build()
        .map_err(|e| vec![problem(&e)])?;
    let keys = Keys::of(&built);
    let settings: Settings = built.try_deserialize().map_err(|e| vec![problem(&e)])?;
    Ok((settings, keys))
}

/// A number too large for the parser (TOML integers are 64-bit), which reports it with
/// neither line nor key: find the literal, and ask the key itself what it accepts by
/// reading the text again with the largest number the parser takes in its place.
fn oversized(
    text: &str,
    format: config::FileFormat,
    env: Option<&BTreeMap<String, String>>,
) -> Option<Problem> {
    let (line, literal) = describe::oversized_integer(text)?;
    let key = match format {
        config::FileFormat::Yaml => describe::yaml_key_at(text, line),
        _ => describe::toml_key_at(text, line),
    };
    let stand_in = if literal.starts_with('-') {
        i64::MIN.to_string()
    } else {
        i64::MAX.to_string()
    };
    let replaced: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                format!("{}\n", l.replacen(&literal, &stand_in, 1))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let again = match parse(&replaced, format, env) {
        Err(problems) => problems,
        Ok((settings, _)) => settings.validate(),
    };
    let message = match again.into_iter().find(|p| p.key == key) {
        Some(p) => p.message.replace(&stand_in, &literal),
        None => format!(
            "expected a whole number, got {literal}, which is too large for any setting (at most {})",
            i64::MAX
        ),
    };
    Some(Problem::new(key, message))
}

/// What every key of a loaded file was set to (file and environment), flattened to dotted
/// keys, values kept as [`Secret`]s: a reload compares two of them to name every key that
/// changed without ever showing a value. Debug prints the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keys(BTreeMap<String, crate::secret::Secret>);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// `key` under the table at `prefix` (`""` for the top), written the way the file's
/// dotted keys are (`channels.ops.url`); shared by every walk over a loaded file.
pub(crate) fn dotted_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Keys {
    fn of(built: &config::Config) -> Keys {
        fn walk(
            prefix: &str,
            v: &config::Value,
            out: &mut BTreeMap<String, crate::secret::Secret>,
        ) {
            match &v.kind {
                config::ValueKind::Table(t) => {
                    for (k, v) in t {
                        walk(&dotted_key(prefix, k), v, out);
                    }
                }
                config::ValueKind::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        walk(&format!("{prefix}[{i}]"), v, out);
                    }
                }
                _ => {
                    let path = v.to_string();
                    let mut value = path.clone();
                    // A secret kept in a file (`hmac_key_file`, `password_file`, …) changes
                    // when the file does.
                    if prefix.ends_with("_file") {
                        value.push('\0');
                        value.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                    }
                    out.insert(prefix.to_string(), crate::secret::Secret::new(value));
                }
            }
        }
        let mut out = BTreeMap::new();
        if let Ok(root) = built.clone().try_deserialize::<config::Value>() {
            walk("", &root, &mut out);
        }
        Keys(out)
    }

    /// The keys set differently in `self` and `other` (added, removed or changed), in
    /// order, under `section` (a top-level key such as `channels`).
    pub fn changed_under<'a>(&'a self, other: &'a Keys, section: &str) -> Vec<&'a str> {
        let under = |k: &str| {
            k == section
                || k.strip_prefix(section)
                    .is_some_and(|r| r.starts_with('.') || r.starts_with('['))
        };
        let mut out: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, v)| under(k) && other.0.get(*k) != Some(*v))
            .map(|(k, _)| k.as_str())
            .chain(
                other
                    .0
                    .keys()
                    .filter(|k| under(k) && !self.0.contains_key(*k))
                    .map(String::as_str),
            )
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The top-level sections present in either.
    pub fn sections<'a>(&'a self, other: &'a Keys) -> std::collections::BTreeSet<&'a str> {
        self.0
            .keys()
            .chain(other.0.keys())
            .map(|k| k.split(['.', '[']).next().unwrap_or(k))
            .collect()
    }
}

impl Settings {
    /// Every secret a settings file holds: repository and monitored-server passwords (also
    /// inside DSNs), and every secret of the channels (webhook URLs and the robot key inside,
    /// keys, HMAC keys, signing and application secrets).
    pub fn secrets(&self) -> Vec<String> {
        let settings = self;
        let mut out = Vec::new();
        let mut connection =
            |dsn: Option<&crate::secret::Secret>, password: Option<&crate::secret::Secret>| {
                if let Some(p) = password {
                    out.push(p.expose().to_string());
                }
                if let Some(d) = dsn {
                    out.push(d.expose().to_string());
                    if let Ok(cfg) = d.expose().parse::<tokio_postgres::Config>() {
                        if let Some(p) = cfg.get_password() {
                            out.push(String::from_utf8_lossy(p).into_owned());
                        }
                    }
                }
            };
        for r in settings.repositories.values() {
            connection(r.dsn.as_ref(), r.password.as_ref());
            for m in r.monitored.values() {
                connection(m.dsn.as_ref(), m.password.as_ref());
            }
        }
        for c in settings.channels.values() {
            for s in c.secrets() {
                out.push(s.expose().to_string());
                if let Some((_, key)) = s.expose().split_once("key=") {
                    out.push(key.split('&').next().unwrap_or("").to_string());
                }
            }
        }
        if let Some(t) = &settings.http.token {
            out.push(t.expose().to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` loaded as a file named `name` (its ending says the format), with no
    /// environment.
    fn load_text(name: &str, text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        Settings::load_with_env(&p, Some(BTreeMap::new()))
    }

    #[test]
    fn bad_duration_names_file_and_key() {
        let e = load_text("s.toml", "[analysis]\nwindow = \"five minutes\"\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("s.toml"), "{text}");
        assert!(text.contains("analysis.window"), "{text}");
    }

    #[test]
    fn the_documented_defaults_load() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let s =
            Settings::load_with_env(&p, Some(BTreeMap::new())).unwrap_or_else(|e| panic!("{e}"));
        // The documented values are the defaults.
        assert_eq!(s.analysis.window, default_window());
        assert_eq!(s.analysis.baseline_offset, default_baseline_offset());
        assert_eq!(s.analyzers.slow_queries.top_n, 5);
        assert_eq!(s.analyzers.regression.min_calls, 10);
        assert_eq!(s.schedule, ScheduleSettings::default());
        assert_eq!(s.collection, CollectionSettings::default());
        assert_eq!(s.http, HttpSettings::default());
    }

    #[test]
    fn the_documented_powa_web_url_loads_and_a_bad_one_is_named() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let line = "# powa_web_url = \"https://powa.example.com\"";
        assert!(text.contains(line), "powa_web_url is documented");
        let dir = tempfile::tempdir().unwrap();
        let on = dir.path().join("on.toml");
        std::fs::write(&on, text.replace(line, &line[2..])).unwrap();
        let s =
            Settings::load_with_env(&on, Some(BTreeMap::new())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.repositories["main"].powa_web_url.as_deref(),
            Some("https://powa.example.com")
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            text.replace(line, "powa_web_url = \"powa.example.com/(x)\""),
        )
        .unwrap();
        let e = Settings::load_with_env(&bad, Some(BTreeMap::new())).unwrap_err();
        assert!(
            e.to_string().contains("repositories.main.powa_web_url"),
            "{e}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let env = BTreeMap::from([(
            "POWA_SENTINEL__ANALYZERS__SLOW_QUERIES__TOP_N".to_string(),
            "9".to_string(),
        )]);
        let s = Settings::load_with_env(&p, Some(env)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.analyzers.slow_queries.top_n, 9);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = load_text("s.toml", "[analysis]\nwindw = \"1h\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `windw`"), "{e}");
        assert!(e.to_string().contains("did you mean `window`?"), "{e}");
    }

    #[test]
    fn unknown_section_gets_a_suggestion() {
        let e = load_text("s.toml", "[shedule]\ncron = \"0 0 9 * * *\"\n").unwrap_err();
        assert!(e.to_string().contains("did you mean `schedule`?"), "{e}");
    }

    #[test]
    fn the_seed_example_config_loads_with_the_seed_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed/config.yaml");
        let env = BTreeMap::from([
            ("POWA_DB_PASSWORD".to_string(), "pw with space".to_string()),
            ("POWA_DB_HOST".to_string(), "db1".to_string()),
        ]);
        let s = Settings::load_with_env(&p, Some(env)).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(s.origin, Origin::Seed(_)));
        let repo = &s.repositories["main"];
        assert_eq!(repo.host.as_deref(), Some("db1"));
        assert_eq!(repo.port, Some(5432));
        assert_eq!(
            repo.password.as_ref().map(|p| p.expose()),
            Some("pw with space")
        );
        assert_eq!(s.schedule.cron.as_deref(), Some("0 0 9 * * 1"));
        assert_eq!(s.schedule.timezone, "UTC");
        assert_eq!(s.analysis.window, Duration::from_secs(24 * 3600));
        assert_eq!(s.analysis.baseline_offset, Duration::from_secs(168 * 3600));
        assert_eq!(s.analyzers.slow_queries.top_n, 10);
        assert!((s.analyzers.regression.min_factor - 1.5).abs() < 1e-9);
        // The seed promised workload changes (issue 13): on, as in a native file.
        assert!(s.analyzers.workload_change.enabled);
        assert_eq!(s.http.listen, "0.0.0.0:8080");
        assert!(s.channels.contains_key("console"));
    }

    #[test]
    fn keys_name_every_change_and_show_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let p = dir.path().join("s.toml");
            std::fs::write(&p, text).unwrap();
            Settings::load_with_env(&p, Some(BTreeMap::new())).unwrap_or_else(|e| panic!("{e}"))
        };
        let base = "[repositories.main]\ndsn = \"host=x\"\n[[routes]]\nchannels = [\"h\"]\n[channels.h]\ntype = \"webhook\"\nurl = \"https://h/x\"\n";
        let a = load(&format!("{base}hmac_key = \"0123456789abcdef-OLD\"\n"));
        let b = load(&format!(
            "{base}hmac_key = \"0123456789abcdef-NEW\"\ntimeout = \"5s\"\n[analysis]\nwindow = \"2h\"\n"
        ));
        assert_eq!(
            a.keys.changed_under(&b.keys, "channels"),
            ["channels.h.hmac_key", "channels.h.timeout"]
        );
        assert_eq!(
            a.keys.changed_under(&b.keys, "analysis"),
            ["analysis.window"]
        );
        assert!(a.keys.changed_under(&b.keys, "routes").is_empty());
        assert!(a.keys.changed_under(&a.keys, "channels").is_empty());
        let sections: Vec<&str> = a.keys.sections(&b.keys).into_iter().collect();
        assert_eq!(sections, ["analysis", "channels", "repositories", "routes"]);
        let shown = format!("{:?} {:?}", b.keys, b);
        assert!(
            !shown.contains("NEW") && !shown.contains("host=x"),
            "{shown}"
        );
        // A secret kept in a file changes when the file's content does.
        let secret = dir.path().join("hmac");
        std::fs::write(&secret, "0123456789abcdef-OLD").unwrap();
        let with_file = format!("{base}hmac_key_file = \"{}\"\n", secret.display());
        let c = load(&with_file);
        std::fs::write(&secret, "0123456789abcdef-NEW").unwrap();
        let d = load(&with_file);
        assert_eq!(
            c.keys.changed_under(&d.keys, "channels"),
            ["channels.h.hmac_key_file"]
        );
        assert!(!format!("{:?}", d.keys).contains("NEW"));
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        std::fs::write(&file, "").unwrap();
        let p = state_dir_problem(&file).expect("a file is not a directory");
        assert_eq!(p.key, "state.dir");
        assert!(p.message.contains("is a file, not a directory"), "{p:?}");
        let p = state_dir_problem(&file.join("sub")).expect("cannot be created under a file");
        assert!(p.message.contains("cannot be created"), "{p:?}");
        assert_eq!(state_dir_problem(dir.path()), None);
        assert_eq!(state_dir_problem(&dir.path().join("new/sub")), None);
    }

    #[test]
    fn state_dir_and_dsn_are_alternatives_and_the_database_keys_are_checked() {
        let base = "[repositories.main]\ndsn = \"host=x\"\n[channels.c]\ntype = \"console\"\n";
        let problems = |state: &str| -> Vec<(String, String)> {
            match load_text("s.toml", &format!("{base}[state]\n{state}")) {
                Ok(_) => Vec::new(),
                Err(e) => e.problems.into_iter().map(|p| (p.key, p.message)).collect(),
            }
        };
        let both = problems("dir = \"/tmp/x\"\ndsn = \"host=db dbname=s\"\n");
        assert_eq!(both.len(), 1, "{both:?}");
        assert_eq!(both[0].0, "state.dsn");
        assert!(
            both[0]
                .1
                .contains("`state.dir` and `state.dsn` are alternatives"),
            "{both:?}"
        );
        assert!(problems("dsn = \"host=db dbname=s user=u\"\n").is_empty());
        let no_db = problems("dsn = \"host=db user=u\"\n");
        assert!(no_db[0].1.contains("names no database"), "{no_db:?}");
        let lone = problems("password_file = \"/p\"\n");
        assert_eq!(lone[0].0, "state.password_file", "{lone:?}");
        assert!(lone[0].1.contains("`state.dsn` is not set"), "{lone:?}");
        let two = problems("dsn = \"host=db dbname=s\"\npassword = \"a\"\npassword_env = \"P\"\n");
        assert_eq!(two[0].0, "state.password", "{two:?}");
        let schema = problems("dsn = \"host=db dbname=s\"\nschema = \"Bad-Name\"\n");
        assert_eq!(schema[0].0, "state.schema", "{schema:?}");
        let typo = problems("dsn = \"host=db dbname=s\"\nshema = \"x\"\n");
        assert!(typo[0].1.contains("schema"), "did-you-mean: {typo:?}");
        // Links with a database and no directory need a key file of their own.
        let links = load_text(
            "s.toml",
            &format!("{base}[http]\npublic_url = \"https://s.example\"\n[state]\ndsn = \"host=db dbname=s\"\n"),
        )
        .unwrap_err();
        assert_eq!(links.problems[0].key, "http.link_key_file", "{links}");
        let s = load_text(
            "s.toml",
            &format!("{base}[state]\ndsn = \"host=db dbname=s\"\n"),
        )
        .unwrap();
        let db = s.state.database().unwrap();
        assert_eq!(db.schema, crate::statedb::DEFAULT_SCHEMA);
        assert!(s.state.is_durable());
        assert!(
            s.state.local_dir().is_some(),
            "report pages have a directory"
        );
    }

    #[test]
    fn missing_sections_are_reported_together() {
        let e = load_text("s.yaml", "analysis:\n  window: 2h\n").unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["repositories", "channels"], "{e}");
    }
}
