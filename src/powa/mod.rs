//! Everything that talks to a PoWA repository: settings and connection ([`connect`]),
//! discovery of the PoWA version, schema and servers ([`discovery`]), the window reader
//! ([`reader`]), the collector source that feeds the actors ([`source`]) and the
//! sessions the collections of a repository share ([`pool`]). What fails says in which
//! phase ([`PowaError`]): the runtime reconnects on a lost session, not on a failed read.
//!
//! Read-only, always: every session sets `default_transaction_read_only`, an
//! `application_name`, and statement and lock timeouts before running anything.

pub mod catalog;
pub mod changes;
pub mod cold;
pub mod connect;
pub mod discovery;
pub mod error;
pub mod hypopg;
pub mod indexes;
pub mod kcache;
pub mod layout;
pub mod live;
pub mod monitored;
pub mod pool;
pub mod qualstats;
pub mod reader;
pub mod resets;
pub mod session;
pub mod source;
pub mod tls;
pub mod trend;
pub mod waits;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::problem::Problem;
use crate::secret::Secret;

pub use connect::{connect, open_session, Repository};
pub use discovery::{PowaInfo, PowaVersion, ServerInfo};
pub use error::PowaError;
pub use reader::{QueryKey, QueryStats, StatementsWindow};
pub use session::{QueryError, Session};

/// How to reach one PoWA repository database (`[repositories.<name>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySettings {
    /// libpq-style connection string, key=value (`host=db1 port=5432 user=sentinel
    /// dbname=powa`) or URL (`postgresql://sentinel@db1/powa`). Keys below override it.
    /// A password inside the DSN is accepted but `password_file`/`password_env` are safer.
    #[serde(default)]
    pub dsn: Option<Secret>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub dbname: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Read the password from this file (first line, trailing newline removed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Read the password from this environment variable.
    #[serde(default)]
    pub password_env: Option<String>,
    /// disable, prefer, require, verify-ca or verify-full (libpq's meanings). Unset: what
    /// the dsn says (its sslmode may only be disable, prefer or require), else disable.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// CA certificate file (PEM) that verify-ca and verify-full check the server against.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Longest a single query may run on the repository. Default 30s. The server cancels
    /// it then; powa-sentinel gives up [`session::MARGIN`] later on its own (a frozen
    /// server enforces nothing) and drops the session.
    #[serde(with = "humantime_serde", default = "default_statement_timeout")]
    pub statement_timeout: Duration,
    /// Longest to wait for a connection, per host: TCP connect, TLS, startup,
    /// authentication and the session setup, plus [`connect::CONNECT_GRACE`]. Default 10s.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Analyse only these servers (by name as shown by `check`); empty means all.
    #[serde(default)]
    pub servers: Vec<String>,
    /// How to reach monitored servers directly (by server name as shown by `check`), for
    /// what PoWA does not keep: table and column names, existing indexes, hypothetical
    /// index checks.
    #[serde(default)]
    pub monitored: BTreeMap<String, monitored::MonitoredSettings>,
    /// For a remote server with no `monitored` table, open read-only sessions with the
    /// connection details PoWA keeps in `powa_servers` (as powa-web does), for names,
    /// existing indexes, hypopg checks and role names. Default true.
    #[serde(default = "default_reach_servers")]
    pub reach_servers: bool,
    /// Address of the powa-web that shows this repository (e.g.
    /// `https://powa.example.com`, with its url prefix if it has one): chat entries then
    /// link to its server, database and query pages.
    #[serde(default)]
    pub powa_web_url: Option<String>,
}

fn default_reach_servers() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
/// TLS for a PostgreSQL session; see [`tls`] for what each mode checks.
pub enum SslMode {
    #[default]
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

fn default_statement_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl RepositorySettings {
    /// Settings with every default and this connection string.
    pub fn from_dsn(dsn: &str) -> Self {
        RepositorySettings {
            dsn: Some(Secret::new(dsn)),
            host: None,
            port: None,
            user: None,
            dbname: None,
            password: None,
            password_file: None,
            password_env: None,
            sslmode: None,
            sslrootcert: None,
            statement_timeout: default_statement_timeout(),
            connect_timeout: default_connect_timeout(),
            servers: Vec::new(),
            monitored: BTreeMap::new(),
            reach_servers: default_reach_servers(),
            powa_web_url: None,
        }
    }

    /// The mode in force: the `sslmode` key, else the dsn's, else disable.
    pub fn effective_sslmode(&self) -> SslMode {
        if let Some(m) = self.sslmode {
            return m;
        }
        let from_dsn = self
            .dsn
            .as_ref()
            .and_then(|d| d.expose().parse::<tokio_postgres::Config>().ok())
            .map(|c| c.get_ssl_mode());
        match from_dsn {
            Some(tokio_postgres::config::SslMode::Prefer) => SslMode::Prefer,
            Some(tokio_postgres::config::SslMode::Require) => SslMode::Require,
            _ => SslMode::Disable,
        }
    }

    /// At most one of `password`, `password_file` and `password_env`; a monitored server's
    /// settings follow the same rule (through [`monitored::MonitoredSettings`]).
    pub(crate) fn validate_password_sources(&self, path: &str, problems: &mut Vec<Problem>) {
        let password_sources = [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_env.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if password_sources > 1 {
            problems.push(Problem::new(
                format!("{path}.password"),
                "set only one of password, password_file and password_env",
            ));
        }
    }

    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.dsn.is_none() && self.host.is_none() {
            problems.push(Problem::new(
                format!("{path}.dsn"),
                "say where the repository is: set dsn (e.g. \"host=db1 user=sentinel dbname=powa\") or host",
            ));
        }
        self.validate_password_sources(path, problems);
        if let Some(u) = &self.powa_web_url {
            if !crate::render::valid_base_url(u) {
                problems.push(Problem::new(
                    format!("{path}.powa_web_url"),
                    format!(
                        "{u:?} is not a usable address: give powa-web's http:// or https:// URL, without spaces, quotes or brackets (e.g. \"https://powa.example.com\")"
                    ),
                ));
            }
        }
        if let Some(dsn) = &self.dsn {
            if let Err(e) = dsn.expose().parse::<tokio_postgres::Config>() {
                problems.push(Problem::new(
                    format!("{path}.dsn"),
                    format!(
                        "not a valid connection string ({}); use key=value pairs or a postgresql:// URL, and put sslmode in its own key",
                        connect::describe_pg_error(&e)
                    ),
                ));
            }
        }
        validate_tls(
            path,
            self.effective_sslmode(),
            self.sslrootcert.as_deref(),
            problems,
        );
        for (server, m) in &self.monitored {
            m.validate(&format!("{path}.monitored.\"{server}\""), problems);
        }
        if self.statement_timeout < Duration::from_secs(1) {
            problems.push(Problem::new(
                format!("{path}.statement_timeout"),
                "must be at least 1s",
            ));
        }
    }
}

/// Checks that the TLS settings can work: verification needs a readable CA file.
pub fn validate_tls(
    path: &str,
    mode: SslMode,
    rootcert: Option<&std::path::Path>,
    problems: &mut Vec<Problem>,
) {
    if let Err(e) = tls::connector(mode, rootcert) {
        let key = if matches!(e, tls::TlsError::MissingRootCert { .. }) {
            "sslmode"
        } else {
            "sslrootcert"
        };
        problems.push(Problem::new(format!("{path}.{key}"), e.to_string()));
    } else if rootcert.is_some()
        && matches!(mode, SslMode::Disable | SslMode::Prefer | SslMode::Require)
    {
        problems.push(Problem::new(
            format!("{path}.sslrootcert"),
            format!(
                "is ignored with sslmode = {}: use verify-ca or verify-full to check the server against it",
                mode.as_str()
            ),
        ));
    }
}
