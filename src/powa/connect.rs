//! Opening read-only sessions on a PoWA repository.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;

use super::session::{self, Session};
use super::tls;

use super::discovery::{self, PowaInfo};
use super::error::PowaError;
use super::{RepositorySettings, SslMode};

/// An open, read-only session on one repository, with what discovery found there.
pub struct Repository {
    pub name: String,
    pub client: Arc<Session>,
    pub info: PowaInfo,
}

/// Added to `connect_timeout` (per host) for the whole of connect, TLS, startup,
/// authentication and session setup: the driver's own `connect_timeout` covers only the
/// socket connect and reports first when the host does not accept the connection at all.
pub const CONNECT_GRACE: Duration = Duration::from_secs(1);

/// What a session is opened on, for the words of its errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A repository, by its name in the settings.
    Repository(String),
    /// A database of a monitored server, by name.
    Database(String),
}

impl Target {
    /// What the session's own errors call it, at `addr`.
    fn session_name(&self, addr: &str) -> String {
        match self {
            Target::Repository(_) => addr.to_string(),
            Target::Database(db) => format!("{addr} database `{db}`"),
        }
    }

    fn cannot_connect(&self, reason: &str) -> String {
        match self {
            Target::Repository(repo) => format!("repository `{repo}`: cannot connect ({reason}); check host, port, user and password, and that the server accepts connections from here"),
            Target::Database(db) => format!("cannot connect to database `{db}` ({reason})"),
        }
    }

    fn cannot_set_up(&self, reason: &str) -> String {
        match self {
            Target::Repository(repo) => {
                format!("repository `{repo}`: cannot set up a read-only session ({reason})")
            }
            Target::Database(db) => {
                format!("cannot make the session on `{db}` read-only ({reason})")
            }
        }
    }

    fn no_answer(&self, addr: &str, after: Duration) -> String {
        let after = humantime::format_duration(after);
        match self {
            Target::Repository(repo) => format!("repository `{repo}` ({addr}): the server accepted the connection but did not answer within {after}: is it a PostgreSQL server, is it overloaded? (connect_timeout; check host and port)"),
            Target::Database(_) => format!("{}: the server accepted the connection but did not answer within {after}: is it overloaded? (connect_timeout)", self.session_name(addr)),
        }
    }
}

/// Why a session could not be opened, on a repository or a monitored server's database.
/// Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("repository `{repo}`: cannot read the password: {reason}")]
    Password { repo: String, reason: String },
    /// The driver could not open the session (refused, authentication, TLS, a DSN it
    /// cannot read).
    #[error("{}", .target.cannot_connect(.reason))]
    Connect { target: Target, reason: String },
    /// The server refused the role this database (no CONNECT privilege there): a GRANT
    /// opens it.
    #[error("{}", .target.cannot_connect(.reason))]
    Denied { target: Target, reason: String },
    /// The session opened but could not be made read-only with its timeouts.
    #[error("{}", .target.cannot_set_up(.reason))]
    Session { target: Target, reason: String },
    /// Connected (or still connecting) to `addr` but no answer in time: startup,
    /// authentication or the session setup never finished.
    #[error("{}", .target.no_answer(.addr, *.after))]
    Timeout {
        target: Target,
        addr: String,
        after: Duration,
    },
}

/// Why the driver could not open a session (before any setup), in one line.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The TLS settings cannot work (see [`tls::connector`]).
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The server's certificate did not pass the check `sslmode` asks for.
    #[error("TLS: the server's certificate was refused ({0}); check sslrootcert and sslmode")]
    Certificate(String),
    /// The server refused the role the database (SQLSTATE 42501 at startup).
    #[error("{0}")]
    Denied(String),
    /// Anything else the driver said (refused, authentication failed, …).
    #[error("{0}")]
    Driver(String),
}

/// The first meaningful reason in a tokio-postgres error chain: its own `Display` is often
/// just "db error" or "error connecting to server". Never contains the password (the
/// driver does not echo it).
pub fn describe_pg_error(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(q) = e.downcast_ref::<session::QueryError>() {
        return match q {
            session::QueryError::Db(inner) => describe_pg_error(inner),
            other => other.to_string(),
        };
    }
    if let Some(db) = e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
    {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !parts.contains(&t) {
            parts.push(t);
        }
        cur = src.source();
    }
    parts.join(": ")
}

fn resolve_password(name: &str, s: &RepositorySettings) -> Result<Option<String>, ConnectError> {
    let err = |reason: String| ConnectError::Password {
        repo: name.to_string(),
        reason,
    };
    if let Some(p) = &s.password {
        return Ok(Some(p.expose().to_string()));
    }
    if let Some(path) = &s.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("password_file {}: {e}", path.display())))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_string()));
    }
    if let Some(var) = &s.password_env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| err(format!("password_env names `{var}`, which is not set")));
    }
    Ok(None)
}

/// Builds the driver configuration: the DSN first, then the explicit keys on top.
pub fn pg_config(
    name: &str,
    s: &RepositorySettings,
) -> Result<tokio_postgres::Config, ConnectError> {
    let mut cfg = match &s.dsn {
        Some(dsn) => dsn
            .expose()
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConnectError::Connect {
                target: Target::Repository(name.to_string()),
                reason: format!("invalid dsn: {}", describe_pg_error(&e)),
            })?,
        None => tokio_postgres::Config::new(),
    };
    if let Some(h) = &s.host {
        cfg.host(h);
    }
    if let Some(p) = s.port {
        cfg.port(p);
    }
    if let Some(u) = &s.user {
        cfg.user(u);
    }
    if let Some(d) = &s.dbname {
        cfg.dbname(d);
    }
    if let Some(p) = resolve_password(name, s)? {
        cfg.password(p);
    }
    if cfg.get_hosts().is_empty() {
        cfg.host("localhost");
    }
    if cfg.get_dbname().is_none() {
        cfg.dbname("powa");
    }
    cfg.application_name("powa-sentinel");
    cfg.connect_timeout(s.connect_timeout);
    cfg.ssl_mode(s.effective_sslmode().protocol_mode());
    Ok(cfg)
}

/// Opens a TCP (or TLS, per `sslmode`) session and spawns its connection driver; its
/// queries get `statement_timeout` plus [`session::MARGIN`] on the client side. The
/// error is one line: TLS problems (unknown CA, wrong host name) come out of the driver's
/// error chain as rustls words, prefixed with what to check. Not bounded in time: see
/// [`connect_deadline`].
pub async fn open(
    cfg: &tokio_postgres::Config,
    sslmode: SslMode,
    sslrootcert: Option<&std::path::Path>,
    statement_timeout: Duration,
    what: String,
) -> Result<Session, OpenError> {
    // Like libpq, no TLS over Unix-domain sockets (there is no server name to verify and
    // PostgreSQL refuses SSL on them): sslmode only applies to TCP hosts.
    let unix_only = !cfg.get_hosts().is_empty()
        && cfg
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
    let connector = if unix_only {
        None
    } else {
        tls::connector(sslmode, sslrootcert)?
    };
    let tls_hint = |e: tokio_postgres::Error| {
        let reason = describe_pg_error(&e);
        if reason.contains("certificate") || reason.contains("UnknownIssuer") {
            OpenError::Certificate(reason)
        } else if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
            OpenError::Denied(reason)
        } else {
            OpenError::Driver(reason)
        }
    };
    // The connection future drives the socket; it ends when the client is dropped (or is
    // aborted when a query times out).
    let (client, driver) = match connector {
        None => {
            let (client, connection) = cfg.connect(NoTls).await.map_err(tls_hint)?;
            (
                client,
                actix_rt::spawn(async move {
                    let _ = connection.await;
                }),
            )
        }
        Some(tls) => {
            let (client, connection) = cfg.connect(tls).await.map_err(tls_hint)?;
            (
                client,
                actix_rt::spawn(async move {
                    let _ = connection.await;
                }),
            )
        }
    };
    Ok(Session::new(
        client,
        driver.abort_handle(),
        statement_timeout,
        what,
    ))
}

/// How long connecting may take in all: `connect_timeout` per host tried, plus
/// [`CONNECT_GRACE`].
pub fn connect_deadline(cfg: &tokio_postgres::Config, connect_timeout: Duration) -> Duration {
    connect_timeout * cfg.get_hosts().len().max(1) as u32 + CONNECT_GRACE
}

/// Makes a session read-only, with statement, lock and idle timeouts.
pub async fn make_read_only(
    client: &Session,
    statement_timeout: std::time::Duration,
) -> Result<(), session::QueryError> {
    let timeout_ms = statement_timeout.as_millis();
    client
        .batch_execute(&format!(
            "SET default_transaction_read_only = on; \
             SET statement_timeout = {timeout_ms}; \
             SET lock_timeout = {lock}; \
             SET idle_in_transaction_session_timeout = {idle};",
            lock = timeout_ms.min(5000),
            idle = timeout_ms * 2,
        ))
        .await
}

/// Opens a session on `target` per `cfg` with the TLS settings and timeouts of `s`, then
/// runs `setup` on it. Connect, TLS, startup, authentication and the setup are bounded
/// together by [`connect_deadline`]: a server that accepts the connection and then says
/// nothing (not PostgreSQL, frozen, overloaded) is given up on, and a session half set
/// up is dropped.
pub(crate) async fn open_within(
    cfg: &tokio_postgres::Config,
    s: &RepositorySettings,
    target: Target,
    setup: impl AsyncFnOnce(&Session) -> Result<(), session::QueryError>,
) -> Result<Session, ConnectError> {
    let addr = session::address(cfg);
    let after = connect_deadline(cfg, s.connect_timeout);
    let until = tokio::time::Instant::now() + after;
    let opening = open(
        cfg,
        s.effective_sslmode(),
        s.sslrootcert.as_deref(),
        s.statement_timeout,
        target.session_name(&addr),
    );
    let client = match tokio::time::timeout_at(until, opening).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let reason = e.to_string();
            return Err(match e {
                OpenError::Denied(_) => ConnectError::Denied { target, reason },
                _ => ConnectError::Connect { target, reason },
            });
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                target,
                addr,
                after,
            })
        }
    };
    match tokio::time::timeout_at(until, setup(&client)).await {
        Ok(Ok(())) => Ok(client),
        Ok(Err(e)) => {
            let reason = describe_pg_error(&e);
            Err(ConnectError::Session { target, reason })
        }
        Err(_) => {
            client.close("the session setup did not finish in time".into());
            Err(ConnectError::Timeout {
                target,
                addr,
                after,
            })
        }
    }
}

/// Opens a session on a repository, read-only with timeouts (no discovery): for extra
/// sessions of a repository already discovered. Bounded in time (see [`open_within`]).
pub async fn open_session(name: &str, s: &RepositorySettings) -> Result<Session, ConnectError> {
    let cfg = pg_config(name, s)?;
    let setup = async |client: &Session| {
        make_read_only(client, s.statement_timeout).await?;
        client.batch_execute("SET work_mem = '64MB'").await
    };
    open_within(&cfg, s, Target::Repository(name.to_string()), setup).await
}

/// Connects, makes the session read-only with timeouts, and discovers PoWA.
pub async fn connect(name: &str, s: &RepositorySettings) -> Result<Repository, PowaError> {
    let client = open_session(name, s).await?;
    let info = discovery::discover(&client)
        .await
        .map_err(|e| e.prefixed(&format!("repository `{name}`: ")))?;
    Ok(Repository {
        name: name.to_string(),
        client: Arc::new(client),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_deadline_is_per_host_plus_the_grace() {
        let one: tokio_postgres::Config = "host=db1 user=u".parse().unwrap();
        let two: tokio_postgres::Config = "host=db1,db2 user=u".parse().unwrap();
        let t = Duration::from_secs(10);
        assert_eq!(connect_deadline(&one, t), Duration::from_secs(11));
        assert_eq!(connect_deadline(&two, t), Duration::from_secs(21));
    }

    #[test]
    fn errors_say_what_was_being_opened_and_what_to_check() {
        let repo = || Target::Repository("main".into());
        let db = || Target::Database("app".into());
        let texts = [
            ConnectError::Connect {
                target: repo(),
                reason: "refused".into(),
            },
            ConnectError::Connect {
                target: db(),
                reason: "refused".into(),
            },
            ConnectError::Session {
                target: repo(),
                reason: "denied".into(),
            },
            ConnectError::Session {
                target: db(),
                reason: "denied".into(),
            },
            ConnectError::Timeout {
                target: repo(),
                addr: "db1:5432".into(),
                after: Duration::from_secs(11),
            },
            ConnectError::Timeout {
                target: db(),
                addr: "db1:5432".into(),
                after: Duration::from_secs(6),
            },
        ]
        .map(|e| e.to_string());
        assert_eq!(
            texts,
            [
                "repository `main`: cannot connect (refused); check host, port, user and password, and that the server accepts connections from here",
                "cannot connect to database `app` (refused)",
                "repository `main`: cannot set up a read-only session (denied)",
                "cannot make the session on `app` read-only (denied)",
                "repository `main` (db1:5432): the server accepted the connection but did not answer within 11s: is it a PostgreSQL server, is it overloaded? (connect_timeout; check host and port)",
                "db1:5432 database `app`: the server accepted the connection but did not answer within 6s: is it overloaded? (connect_timeout)",
            ]
        );
    }
}
