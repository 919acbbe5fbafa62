//! Opening read-only sessions on a PoWA repository.

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use super::tls;

use super::discovery::{self, PowaInfo};
use super::{RepositorySettings, SslMode};

/// An open, read-only session on one repository, with what discovery found there.
pub struct Repository {
    pub name: String,
    pub client: Arc<Client>,
    pub info: PowaInfo,
}

/// Why a repository could not be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("repository `{repo}`: cannot read the password: {reason}")]
    Password { repo: String, reason: String },
    #[error("repository `{repo}`: cannot connect ({reason}); check host, port, user and password, and that the server accepts connections from here")]
    Connect { repo: String, reason: String },
    #[error("repository `{repo}`: cannot set up a read-only session ({reason})")]
    Session { repo: String, reason: String },
    #[error("repository `{repo}`: {reason}")]
    Discovery { repo: String, reason: String },
}

/// The first meaningful reason in a tokio-postgres error chain: its own `Display` is often
/// just "db error" or "error connecting to server". Never contains the password (the
/// driver does not echo it).
pub fn describe_pg_error(e: &(dyn std::error::Error + 'static)) -> String {
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
                repo: name.to_string(),
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

/// Opens a TCP (or TLS, per `sslmode`) session and spawns its connection driver. The
/// error is one line: TLS problems (unknown CA, wrong host name) come out of the driver's
/// error chain as rustls words, prefixed with what to check.
pub async fn open(
    cfg: &tokio_postgres::Config,
    sslmode: SslMode,
    sslrootcert: Option<&std::path::Path>,
) -> Result<Client, String> {
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
        tls::connector(sslmode, sslrootcert).map_err(|e| e.to_string())?
    };
    let tls_hint = |e: tokio_postgres::Error| {
        let reason = describe_pg_error(&e);
        if reason.contains("certificate") || reason.contains("UnknownIssuer") {
            format!("TLS: the server's certificate was refused ({reason}); check sslrootcert and sslmode")
        } else {
            reason
        }
    };
    match connector {
        None => {
            let (client, connection) = cfg.connect(NoTls).await.map_err(tls_hint)?;
            // The connection future drives the socket; it ends when the client is dropped.
            actix_rt::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Some(tls) => {
            let (client, connection) = cfg.connect(tls).await.map_err(tls_hint)?;
            actix_rt::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
    }
}

/// Makes a session read-only, with statement, lock and idle timeouts.
pub async fn make_read_only(
    client: &Client,
    statement_timeout: std::time::Duration,
) -> Result<(), tokio_postgres::Error> {
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

/// Opens a session on a repository, read-only with timeouts (no discovery): for extra
/// sessions of a repository already discovered.
pub async fn open_session(name: &str, s: &RepositorySettings) -> Result<Client, ConnectError> {
    let cfg = pg_config(name, s)?;
    let client = open(&cfg, s.effective_sslmode(), s.sslrootcert.as_deref())
        .await
        .map_err(|reason| ConnectError::Connect {
            repo: name.to_string(),
            reason,
        })?;
    make_read_only(&client, s.statement_timeout)
        .await
        .map_err(|e| ConnectError::Session {
            repo: name.to_string(),
            reason: describe_pg_error(&e),
        })?;
    client
        .batch_execute("SET work_mem = '64MB'")
        .await
        .map_err(|e| ConnectError::Session {
            repo: name.to_string(),
            reason: describe_pg_error(&e),
        })?;
    Ok(client)
}

/// Connects, makes the session read-only with timeouts, and discovers PoWA.
pub async fn connect(name: &str, s: &RepositorySettings) -> Result<Repository, ConnectError> {
    let client = open_session(name, s).await?;
    let info = discovery::discover(&client)
        .await
        .map_err(|reason| ConnectError::Discovery {
            repo: name.to_string(),
            reason,
        })?;
    Ok(Repository {
        name: name.to_string(),
        client: Arc::new(client),
        info,
    })
}
