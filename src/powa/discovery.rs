//! What a repository holds: the PoWA version and its schema (looked up in `pg_extension`,
//! never assumed to be `public`), the record fields of this version, and the servers.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::connect::describe_pg_error;
use super::error::PowaError;
use super::session::{QueryError, Session};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PowaVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl PowaVersion {
    pub fn parse(s: &str) -> Option<PowaVersion> {
        let mut it = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        let major = it.next()?.parse().ok()?;
        let minor = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let patch = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        Some(PowaVersion {
            major,
            minor,
            patch,
        })
    }

    /// PoWA 4.0 introduced `srvid` and remote servers.
    pub fn multi_server(self) -> bool {
        self.major >= 4
    }
}

impl fmt::Display for PowaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One monitored server as registered in the repository.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// 0 is the repository's own instance (local mode).
    pub srvid: i32,
    /// Alias, else host:port; `local` for srvid 0.
    pub name: String,
    /// Snapshot period (None when PoWA does not say, e.g. a disabled local worker).
    pub frequency: Option<Duration>,
    pub retention: Option<Duration>,
    /// Last successful snapshot (`powa_snapshot_metas.snapts`).
    pub last_snapshot: Option<DateTime<Utc>>,
    /// Functions that failed in the last snapshot run.
    pub errors: Vec<String>,
    /// Enabled snapshot modules (pg_stat_statements, pg_stat_kcache, …).
    pub modules: Vec<String>,
    /// Modules registered for the server whose snapshots are all disabled.
    pub disabled_modules: Vec<String>,
}

impl ServerInfo {
    /// A server known only by id and name (nothing read from PoWA yet); for fixtures and
    /// synthetic data.
    pub fn named(srvid: i32, name: &str) -> Self {
        ServerInfo {
            srvid,
            name: name.to_string(),
            frequency: None,
            retention: None,
            last_snapshot: None,
            errors: Vec::new(),
            modules: Vec::new(),
            disabled_modules: Vec::new(),
        }
    }
}

/// What discovery learnt about a repository.
#[derive(Clone, Debug)]
pub struct PowaInfo {
    pub version: PowaVersion,
    /// Schema of the powa extension, already quoted for use in SQL.
    pub schema: String,
    /// Fields of `powa_statements_history_record` in this version.
    pub statement_fields: Vec<String>,
    /// PoWA 4.2+/5.x key statements history by `toplevel` too.
    pub has_toplevel: bool,
    pub servers: Vec<ServerInfo>,
    /// The database holding PoWA. On every server, the statements of a database by this
    /// name are PoWA's own work (its snapshot functions and, with `track = all`, every
    /// statement inside them), not the workload.
    pub database: String,
}

impl PowaInfo {
    pub fn has_field(&self, f: &str) -> bool {
        self.statement_fields.iter().any(|x| x == f)
    }

    /// Name of the execution-time counter: `total_exec_time` since 4.1, before `total_time`.
    pub fn exec_time_field(&self) -> &'static str {
        if self.has_field("total_exec_time") {
            "total_exec_time"
        } else {
            "total_time"
        }
    }
}

/// Quotes an identifier the way PostgreSQL's `quote_ident` does.
pub fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_lowercase() || (i > 0 && c.is_ascii_digit()));
    if plain && !s.is_empty() {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// A discovery query failed: its reason, with what to grant when the role may not read.
fn permission_hint(client: &Session, e: QueryError, what: &str) -> PowaError {
    let reason = describe_pg_error(&e);
    let text = if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
        format!("{reason}; the role needs SELECT on the PoWA tables ({what}): GRANT SELECT ON ALL TABLES IN SCHEMA <powa schema> TO <role>")
    } else {
        format!("{reason} (while reading {what})")
    };
    PowaError::discovering(client, &e, text)
}

/// A catalog query of discovery failed: the driver's reason.
fn failed(client: &Session, e: QueryError) -> PowaError {
    let text = describe_pg_error(&e);
    PowaError::discovering(client, &e, text)
}

/// What the repository behind `client` holds. A session lost on the way is
/// [`PowaError::Closed`]; anything else that stops discovery is [`PowaError::Discover`].
pub async fn discover(client: &Session) -> Result<PowaInfo, PowaError> {
    let db: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(|e| failed(client, e))?
        .get(0);
    let row = client
        .query_opt(
            "SELECT e.extversion::text, n.nspname::text FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'powa'",
            &[],
        )
        .await
        .map_err(|e| failed(client, e))?;
    let Some(row) = row else {
        return Err(PowaError::Discover(format!(
            "PoWA is not installed in database `{db}`: point dsn/dbname at the database that holds the powa extension (usually `powa`)"
        )));
    };
    let version_text: String = row.get(0);
    let schema = quote_ident(&row.get::<_, String>(1));
    let version = PowaVersion::parse(&version_text)
        .filter(|v| (3..=5).contains(&v.major))
        .ok_or_else(|| {
            PowaError::Discover(format!("PoWA version {version_text} is not supported: powa-sentinel reads PoWA 3.x, 4.x and 5.x"))
        })?;

    let statement_fields: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid \
             WHERE t.typname = 'powa_statements_history_record' AND n.nspname = $1 \
               AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&row.get::<_, String>(1)],
        )
        .await
        .map_err(|e| failed(client, e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !statement_fields.iter().any(|f| f == "calls") {
        return Err(PowaError::Discover(format!(
            "PoWA {version} in schema {schema} has no statements history record type; is the extension complete?"
        )));
    }
    let has_toplevel = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'powa_statements_history' AND a.attname = 'toplevel'",
            &[&row.get::<_, String>(1)],
        )
        .await
        .map_err(|e| failed(client, e))?
        .is_some();

    let mut info = PowaInfo {
        version,
        schema,
        statement_fields,
        has_toplevel,
        servers: Vec::new(),
        database: db.clone(),
    };
    info.servers = if version.multi_server() {
        servers_v4(client, &info).await?
    } else {
        vec![local_v3(client, &info).await?]
    };
    Ok(info)
}

fn guc_duration(v: Option<String>, unit: Duration) -> Option<Duration> {
    let v = v?;
    let v = v.trim();
    if let Ok(n) = v.parse::<i64>() {
        return (n > 0).then(|| unit * n as u32);
    }
    humantime::parse_duration(v.replace(' ', "").as_str()).ok()
}

async fn local_settings(client: &Session) -> (Option<Duration>, Option<Duration>) {
    // powa.frequency is in seconds (-1 = worker disabled), powa.retention in minutes.
    let row = client
        .query_one(
            "SELECT current_setting('powa.frequency', true), current_setting('powa.retention', true)",
            &[],
        )
        .await;
    match row {
        Ok(r) => (
            guc_duration(r.get(0), Duration::from_secs(1)),
            guc_duration(r.get(1), Duration::from_secs(60)),
        ),
        Err(_) => (None, None),
    }
}

async fn servers_v4(client: &Session, info: &PowaInfo) -> Result<Vec<ServerInfo>, PowaError> {
    let s = &info.schema;
    let module_col = if info.version.major >= 5 {
        "name"
    } else {
        "module"
    };
    let rows = client
        .query(
            &format!(
                "SELECT s.id, s.hostname, s.alias, s.port, s.frequency, \
                        extract(epoch FROM s.retention)::float8, \
                        CASE WHEN isfinite(m.snapts) THEN m.snapts END, m.errors, \
                        ARRAY(SELECT DISTINCT f.{module_col}::text FROM {s}.powa_functions f \
                              WHERE f.srvid = s.id AND f.operation = 'snapshot' AND f.enabled \
                              ORDER BY 1), \
                        ARRAY(SELECT f.{module_col}::text FROM {s}.powa_functions f \
                              WHERE f.srvid = s.id AND f.operation = 'snapshot' \
                              GROUP BY 1 HAVING NOT bool_or(f.enabled) ORDER BY 1) \
                 FROM {s}.powa_servers s LEFT JOIN {s}.powa_snapshot_metas m ON m.srvid = s.id \
                 ORDER BY s.id"
            ),
            &[],
        )
        .await
        .map_err(|e| {
            permission_hint(
                client,
                e,
                "powa_servers, powa_snapshot_metas, powa_functions",
            )
        })?;
    let (local_freq, local_ret) = local_settings(client).await;
    let mut out = Vec::new();
    for r in rows {
        let srvid: i32 = r.get(0);
        let hostname: String = r.get(1);
        let alias: Option<String> = r.get(2);
        let port: i32 = r.get(3);
        let freq: i32 = r.get(4);
        let retention: Option<f64> = r.get(5);
        let snapts: Option<DateTime<Utc>> = r.get(6);
        let name = match (srvid, alias) {
            (0, Some(a)) if a != "<local>" => a,
            (0, _) => "local".to_string(),
            (_, Some(a)) if !a.is_empty() => a,
            _ => format!("{hostname}:{port}"),
        };
        let (frequency, retention) = if srvid == 0 {
            (local_freq, local_ret)
        } else {
            (
                (freq > 0).then(|| Duration::from_secs(freq as u64)),
                retention.filter(|r| *r > 0.0).map(Duration::from_secs_f64),
            )
        };
        out.push(ServerInfo {
            srvid,
            name,
            frequency,
            retention,
            // -infinity means "never".
            last_snapshot: snapts.filter(|t| t.timestamp() > 0),
            errors: r.get::<_, Option<Vec<String>>>(7).unwrap_or_default(),
            modules: r.get(8),
            disabled_modules: r.get(9),
        });
    }
    Ok(out)
}

async fn local_v3(client: &Session, info: &PowaInfo) -> Result<ServerInfo, PowaError> {
    let s = &info.schema;
    let row = client
        .query_one(
            &format!(
                "SELECT ARRAY(SELECT DISTINCT module FROM {s}.powa_functions \
                 WHERE operation = 'snapshot' AND enabled ORDER BY 1), \
                 ARRAY(SELECT module FROM {s}.powa_functions WHERE operation = 'snapshot' \
                 GROUP BY 1 HAVING NOT bool_or(enabled) ORDER BY 1)"
            ),
            &[],
        )
        .await
        .map_err(|e| permission_hint(client, e, "powa_functions"))?;
    let modules: Vec<String> = row.get(0);
    let disabled_modules: Vec<String> = row.get(1);
    let last: Option<DateTime<Utc>> = client
        .query_one(
            &format!("SELECT max((record).ts) FROM {s}.powa_statements_history_current_db"),
            &[],
        )
        .await
        .map_err(|e| permission_hint(client, e, "powa_statements_history_current_db"))?
        .get(0);
    let (frequency, retention) = local_settings(client).await;
    Ok(ServerInfo {
        srvid: 0,
        name: "local".to_string(),
        frequency,
        retention,
        last_snapshot: last,
        errors: Vec::new(),
        modules,
        disabled_modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let v = PowaVersion::parse("4.1.4").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (4, 1, 4));
        assert!(v.multi_server());
        assert!(!PowaVersion::parse("3.2.0").unwrap().multi_server());
        assert_eq!(PowaVersion::parse("5.0dev").unwrap().major, 5);
        assert!(PowaVersion::parse("").is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("public"), "public");
        assert_eq!(quote_ident("Powa"), "\"Powa\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn guc_units() {
        assert_eq!(
            guc_duration(Some("300".into()), Duration::from_secs(1)),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            guc_duration(Some("-1".into()), Duration::from_secs(1)),
            None
        );
        assert_eq!(
            guc_duration(Some("1d".into()), Duration::from_secs(60)),
            Some(Duration::from_secs(86400))
        );
    }
}
