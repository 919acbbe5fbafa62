//! Direct, read-only sessions on a monitored server, for what PoWA does not keep: the
//! names behind the relation oids and attnums of pg_qualstats, existing indexes, and
//! hypothetical-index checks (hypopg). Opened per database, used, and closed within one
//! collection cycle.
//!
//! `[repositories.<name>.monitored."<server name>"]` says how to reach a server (the
//! server name as `powa-sentinel check` prints it; `local` for the repository's own
//! instance). The database is the one the quals belong to, so `dbname` is not a key.
//!
//! Without such a table ([`Reach`]): the `local` server is reached through the
//! repository's own connection, and a remote server (PoWA 4+) the way powa-web reaches it,
//! with the host, port, user, password and database PoWA keeps in `powa_servers`, read
//! each cycle (a password changed there is picked up), unless `reach_servers = false`.
//! Those sessions get the repository's TLS settings and connect timeout, and are
//! read-only with a statement timeout like every other session. The password is never
//! logged nor shown.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use slog::{info, Logger};

use super::connect::{self, describe_pg_error, ConnectError, Target};
use super::discovery::{quote_ident, PowaInfo, ServerInfo};
use super::error::PowaError;
use super::hypopg::{Explainer, Validation};
use super::qualstats::{read_catalog, read_operators, QualsWindow};
use super::reader::StatementsWindow;
use super::session::{QueryError, Session};
use super::{validate_tls, RepositorySettings, SslMode};
use crate::analyze::missing_index::{candidates, ddl, worth_naming, MissingIndexSettings};
use crate::problem::Problem;
use crate::secret::Secret;

/// How to reach one monitored server directly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoredSettings {
    /// libpq key=value or URL; its dbname, if any, is replaced by each qual's database.
    #[serde(default)]
    pub dsn: Option<Secret>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Longest one statement (a catalog read, an EXPLAIN) may run. Default 5s.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub statement_timeout: Duration,
    /// Default 5s.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub connect_timeout: Duration,
    /// Not configured but derived from the repository's own connection (the `local`
    /// server of a repository is the repository's instance): what cannot be done with it
    /// (a database the role cannot enter, no hypopg) is skipped quietly, not reported.
    #[serde(skip)]
    pub implicit: bool,
    /// The database of the `powa_servers` entry this was built from, if any: where role
    /// names are read (pg_roles is the same in every database of a server).
    #[serde(skip)]
    pub home_database: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl MonitoredSettings {
    /// Settings with every default and this connection string.
    pub fn from_dsn(dsn: &str) -> Self {
        MonitoredSettings {
            dsn: Some(Secret::new(dsn)),
            host: None,
            port: None,
            user: None,
            password: None,
            password_file: None,
            password_env: None,
            sslmode: None,
            sslrootcert: None,
            statement_timeout: default_timeout(),
            connect_timeout: default_timeout(),
            implicit: false,
            home_database: None,
        }
    }

    /// The repository's own connection, for its `local` server when nothing is
    /// configured for it (the database is replaced per qual, as always).
    pub fn implicit_from(r: &RepositorySettings) -> Self {
        MonitoredSettings {
            dsn: r.dsn.clone(),
            host: r.host.clone(),
            port: r.port,
            user: r.user.clone(),
            password: r.password.clone(),
            password_file: r.password_file.clone(),
            password_env: r.password_env.clone(),
            sslmode: r.sslmode,
            sslrootcert: r.sslrootcert.clone(),
            statement_timeout: default_timeout(),
            connect_timeout: r.connect_timeout,
            implicit: true,
            home_database: None,
        }
    }

    /// A remote server's entry in `powa_servers`, with the repository's TLS settings and
    /// connect timeout (the same rules as every other session).
    pub fn from_powa_servers(r: &RepositorySettings, e: &PowaServerEntry) -> Self {
        MonitoredSettings {
            dsn: None,
            host: Some(e.hostname.clone()),
            port: Some(e.port),
            user: Some(e.username.clone()),
            password: e.password.clone(),
            password_file: None,
            password_env: None,
            sslmode: Some(r.effective_sslmode()),
            sslrootcert: r.sslrootcert.clone(),
            statement_timeout: default_timeout(),
            connect_timeout: r.connect_timeout,
            implicit: false,
            home_database: Some(e.dbname.clone()),
        }
    }

    /// The same connection keys as a repository's, to share their handling.
    fn as_repository(&self) -> RepositorySettings {
        let mut r = RepositorySettings::from_dsn("");
        r.dsn = self.dsn.clone();
        r.host = self.host.clone();
        r.port = self.port;
        r.user = self.user.clone();
        r.password = self.password.clone();
        r.password_file = self.password_file.clone();
        r.password_env = self.password_env.clone();
        r.sslmode = self.sslmode;
        r.sslrootcert = self.sslrootcert.clone();
        r.statement_timeout = self.statement_timeout;
        r.connect_timeout = self.connect_timeout;
        r
    }

    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let r = self.as_repository();
        if self.dsn.is_none() && self.host.is_none() {
            problems.push(Problem::new(
                format!("{path}.dsn"),
                "say where the server is: set dsn (e.g. \"host=db1 user=sentinel\") or host",
            ));
        }
        r.validate_password_sources(path, problems);
        if let Some(dsn) = &self.dsn {
            if let Err(e) = dsn.expose().parse::<tokio_postgres::Config>() {
                problems.push(Problem::new(
                    format!("{path}.dsn"),
                    format!(
                        "not a valid connection string ({}); use key=value pairs or a postgresql:// URL",
                        describe_pg_error(&e)
                    ),
                ));
            }
        }
        validate_tls(
            path,
            r.effective_sslmode(),
            self.sslrootcert.as_deref(),
            problems,
        );
        if self.statement_timeout < Duration::from_millis(100) {
            problems.push(Problem::new(
                format!("{path}.statement_timeout"),
                "must be at least 100ms",
            ));
        }
    }

    /// A read-only session on `database`, set up within `connect_timeout` (plus
    /// [`connect::CONNECT_GRACE`]); its queries run under `statement_timeout` plus
    /// [`super::session::MARGIN`].
    pub async fn connect(&self, label: &str, database: &str) -> Result<Session, ConnectError> {
        let r = self.as_repository();
        let mut cfg = connect::pg_config(label, &r)?;
        cfg.dbname(database);
        let setup =
            async |client: &Session| connect::make_read_only(client, self.statement_timeout).await;
        connect::open_within(&cfg, &r, Target::Database(database.to_string()), setup).await
    }
}

/// A remote server's connection details as PoWA keeps them in `powa_servers`.
#[derive(Clone, Debug)]
pub struct PowaServerEntry {
    pub hostname: String,
    pub port: u16,
    pub username: String,
    pub password: Option<Secret>,
    pub dbname: String,
}

/// Reads the `powa_servers` entry of a remote server (None when it is not there).
pub async fn read_powa_server(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
) -> Result<Option<PowaServerEntry>, PowaError> {
    let s = &info.schema;
    let row = client
        .query_opt(
            &format!(
                "SELECT hostname::text, port::int4, username::text, password::text, dbname::text \
                 FROM {s}.powa_servers WHERE id = $1"
            ),
            &[&srvid],
        )
        .await
        .map_err(|e| {
            let denied = e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
            PowaError::read_failed(client, e, |reason| {
                if denied {
                    format!("the repository role may not read powa_servers ({reason}): GRANT SELECT ON {s}.powa_servers TO it")
                } else {
                    format!("cannot read powa_servers ({reason})")
                }
            })
        })?;
    let Some(r) = row else {
        return Ok(None);
    };
    let port: i32 = r.get(1);
    Ok(Some(PowaServerEntry {
        hostname: r.get(0),
        port: u16::try_from(port).map_err(|_| {
            PowaError::Read(format!(
                "powa_servers gives port {port}, which is not a TCP port"
            ))
        })?,
        username: r.get(2),
        password: r.get::<_, Option<String>>(3).map(Secret::new),
        dbname: r.get(4),
    }))
}

/// The way to one monitored server, or why there is none.
#[derive(Clone, Debug)]
pub struct Route {
    pub settings: Option<MonitoredSettings>,
    /// Where the connection details came from, for `check`.
    pub via: &'static str,
    /// Why there is no way (what to do about it included).
    pub why_not: Option<String>,
}

/// How one repository's collectors reach their servers for what PoWA does not keep:
/// `[repositories.<name>.monitored."<server>"]` first, then the repository's own
/// connection for `local`, then `powa_servers` for remote servers (unless
/// `reach_servers = false`).
pub struct Reach {
    repository: String,
    settings: RepositorySettings,
    log: Logger,
    /// Errors already logged (hypopg skips, role names): each is logged once.
    logged: std::sync::Mutex<BTreeSet<String>>,
}

/// Role names of one remote server, read from its pg_roles.
#[derive(Default)]
pub struct RoleCache {
    names: HashMap<u32, Arc<str>>,
    read_at: Option<std::time::Instant>,
}

/// Role names are read again for an unknown role at most this often.
const ROLES_REFRESH: Duration = Duration::from_secs(600);

impl Reach {
    pub fn new(repository: &str, settings: &RepositorySettings, log: Logger) -> Self {
        Reach {
            repository: repository.to_string(),
            settings: settings.clone(),
            log,
            logged: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// How to reach `server` now (the `powa_servers` entry is read each time: a new
    /// password there is used at once).
    pub async fn route(&self, client: &Session, info: &PowaInfo, server: &ServerInfo) -> Route {
        if let Some(m) = self.settings.monitored.get(&server.name) {
            return Route {
                settings: Some(m.clone()),
                via: "its [monitored] table",
                why_not: None,
            };
        }
        if server.srvid == 0 {
            return Route {
                settings: Some(MonitoredSettings::implicit_from(&self.settings)),
                via: "the repository's connection",
                why_not: None,
            };
        }
        let none = |why: String| Route {
            settings: None,
            via: "powa_servers",
            why_not: Some(why),
        };
        if !self.settings.reach_servers {
            return none(format!(
                "reach_servers = false in [repositories.{}]",
                self.repository
            ));
        }
        match read_powa_server(client, info, server.srvid).await {
            Ok(Some(e)) => Route {
                settings: Some(MonitoredSettings::from_powa_servers(&self.settings, &e)),
                via: "powa_servers",
                why_not: None,
            },
            Ok(None) => none("it is no longer in powa_servers".to_string()),
            Err(e) => none(e.to_string()),
        }
    }

    /// Logs `message` with `error` once per distinct pair.
    fn log_once(&self, server: &str, message: &str, error: &str) {
        let key = format!("{server}\u{0}{message}\u{0}{error}");
        let fresh = match self.logged.lock() {
            Ok(mut seen) => {
                if seen.len() > 1000 {
                    seen.clear();
                }
                seen.insert(key)
            }
            Err(_) => true,
        };
        if fresh {
            info!(self.log, "{}", message; "repository" => &self.repository,
                  "server" => server, "error" => error);
        }
    }

    /// Logs, once each, the queries the hypopg checks had to leave out and why (the
    /// chat only says that some were left out).
    pub fn log_skipped(&self, server: &ServerInfo, quals: &QualsWindow) {
        for v in &quals.validations {
            for d in &v.details {
                self.log_once(
                    &server.name,
                    "A helped query was left out of the hypopg check.",
                    d,
                );
            }
        }
    }

    /// Gives a remote server's queries the role names the reader could not give them
    /// (PoWA 4 keeps only oids; PoWA 5's catalog snapshot may predate a role, see
    /// `reader::read_names`): from pg_roles on the server itself through `route`; re-read
    /// when an unknown role shows up, at most every ten minutes. Failures are logged once
    /// and leave oids.
    pub async fn name_roles(&self, route: &Route, w: &mut StatementsWindow, cache: &mut RoleCache) {
        if w.server.srvid == 0 {
            return;
        }
        let unknown = w
            .queries
            .iter()
            .any(|q| q.user.is_none() && !cache.names.contains_key(&q.key.userid));
        let due = cache.read_at.is_none_or(|t| t.elapsed() >= ROLES_REFRESH);
        if unknown && due {
            cache.read_at = Some(std::time::Instant::now());
            if let Some(m) = &route.settings {
                let db = m.home_database.clone().or_else(|| {
                    w.queries
                        .iter()
                        .find_map(|q| q.database.as_deref().map(str::to_string))
                });
                if let Some(db) = db {
                    let label = format!("{}/{}", self.repository, w.server.name);
                    match read_roles(m, &label, &db).await {
                        Ok(names) => cache.names.extend(names),
                        Err(e) => self.log_once(
                            &w.server.name,
                            "Role names of the server are unavailable; roles are shown by oid.",
                            &e.to_string(),
                        ),
                    }
                }
            }
        }
        for q in w.queries.iter_mut().filter(|q| q.user.is_none()) {
            q.user = cache.names.get(&q.key.userid).cloned();
        }
    }

    /// What `check` says about a server: how it is reached and, per database PoWA knows
    /// there, whether names and hypopg checks are available, or why not.
    pub async fn describe(
        &self,
        client: &Session,
        info: &PowaInfo,
        server: &ServerInfo,
    ) -> Vec<String> {
        let route = self.route(client, info, server).await;
        let Some(m) = &route.settings else {
            return vec![format!(
                "names: not available ({}): index advice keeps relation oids and is not checked with hypopg, roles show as oids; set [repositories.{}.monitored.\"{}\"] to reach it",
                route.why_not.as_deref().unwrap_or("no way to reach it"),
                self.repository,
                server.name
            )];
        };
        let whom = match (&m.user, &m.host) {
            (Some(u), Some(h)) => format!(" as {u} at {h}:{}", m.port.unwrap_or(5432)),
            _ => String::new(),
        };
        let mut out = vec![format!(
            "names, existing indexes and hypopg: through {}{whom}",
            route.via
        )];
        let databases = match known_databases(client, info, server).await {
            Ok(d) => d,
            Err(e) => {
                out.push(format!("  cannot list its databases in PoWA ({e})"));
                return out;
            }
        };
        let label = format!("{}/{}", self.repository, server.name);
        if server.srvid > 0 {
            if let Some(db) = m
                .home_database
                .clone()
                .or_else(|| databases.first().cloned())
            {
                out.push(match read_roles(m, &label, &db).await {
                    Ok(r) => format!("  roles: by name ({} roles)", r.len()),
                    Err(e) => format!("  roles: by oid ({e})"),
                });
            }
        }
        if databases.is_empty() {
            out.push("  no database with workload known to PoWA yet".to_string());
        }
        for db in databases.iter().take(MAX_DATABASES) {
            out.push(match probe(m, &label, db).await {
                Ok(line) => format!("  database {db}: {line}"),
                Err(e) => format!("  database {db}: names unavailable, {e}"),
            });
        }
        if out.iter().any(|l| l.contains("names unavailable")) {
            out.push(format!(
                "  where names are unavailable, index advice keeps oids: give the role CONNECT and SELECT there (e.g. pg_read_all_data), or set [repositories.{}.monitored.\"{}\"]",
                self.repository, server.name
            ));
        }
        if databases.len() > MAX_DATABASES {
            out.push(format!(
                "  … and {} more databases (at most {MAX_DATABASES} are visited per cycle)",
                databases.len() - MAX_DATABASES
            ));
        }
        out
    }
}

/// The databases PoWA knows for a server, PoWA's own left out (its statements are never
/// analysed).
async fn known_databases(
    client: &Session,
    info: &PowaInfo,
    server: &ServerInfo,
) -> Result<Vec<String>, PowaError> {
    let s = &info.schema;
    let rows = if info.version.multi_server() {
        client
            .query(
                &format!(
                    "SELECT datname::text FROM {s}.powa_databases \
                     WHERE srvid = $1 AND dropped IS NULL ORDER BY 1"
                ),
                &[&server.srvid],
            )
            .await
    } else {
        client
            .query(
                &format!(
                    "SELECT datname::text FROM {s}.powa_databases WHERE dropped IS NULL ORDER BY 1"
                ),
                &[],
            )
            .await
    }
    .map_err(|e| PowaError::read_failed(client, e, |reason| reason))?;
    Ok(rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|d| *d != info.database && d != "template0" && d != "template1")
        .collect())
}

/// "cannot read `what` (reason)", for a query on a monitored server's session.
fn cannot_read<'a>(
    client: &'a Session,
    what: &'a str,
) -> impl FnOnce(QueryError) -> PowaError + 'a {
    move |e| PowaError::read_failed(client, e, |reason| format!("cannot read {what} ({reason})"))
}

/// Names, hypopg and readable tables in one database, as a line for `check`.
async fn probe(m: &MonitoredSettings, label: &str, database: &str) -> Result<String, PowaError> {
    let client = m.connect(label, database).await?;
    let r = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'hypopg'), \
                    count(*) FILTER (WHERE has_table_privilege(c.oid, 'SELECT'))::int8, count(*)::int8 \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'",
            &[],
        )
        .await
        .map_err(cannot_read(&client, "the catalog"))?;
    let (hypopg, readable, tables): (bool, i64, i64) = (r.get(0), r.get(1), r.get(2));
    Ok(if !hypopg {
        "names ok; hypopg not installed (CREATE EXTENSION hypopg there to check suggestions)"
            .to_string()
    } else if readable < tables {
        format!(
            "names ok; hypopg checks on {readable} of {tables} tables (the role may not SELECT the others)"
        )
    } else {
        format!("names ok; hypopg checks ok ({tables} tables)")
    })
}

/// Role names by oid, from the server's pg_roles.
async fn read_roles(
    m: &MonitoredSettings,
    label: &str,
    database: &str,
) -> Result<HashMap<u32, Arc<str>>, PowaError> {
    let client = m.connect(label, database).await?;
    let rows = client
        .query(
            "SELECT oid::int8, rolname::text FROM pg_catalog.pg_roles",
            &[],
        )
        .await
        .map_err(cannot_read(&client, "pg_roles"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u32, Arc::from(r.get::<_, &str>(1))))
        .collect())
}

/// Why the names of `datname` are unknown and what gives them, for a finding that shows
/// oids: a role without CONNECT there gets the GRANT, anything else the setting.
fn unreachable(
    m: &MonitoredSettings,
    repository: &str,
    server: &ServerInfo,
    datname: &str,
    e: &ConnectError,
) -> String {
    let setting = format!("[repositories.{repository}.monitored.\"{}\"]", server.name);
    // The role as the session used it: set as `user`, or inside a DSN.
    let role = m.user.clone().or_else(|| {
        connect::pg_config("", &m.as_repository())
            .ok()
            .and_then(|c| c.get_user().map(str::to_string))
    });
    match e {
        ConnectError::Denied { .. } => {
            format!(
                "{} may not connect to database {datname}: GRANT CONNECT ON DATABASE {} TO {}, or set {setting}",
                role.as_deref().unwrap_or("the role"),
                quote_ident(datname),
                role.as_deref().map(quote_ident).unwrap_or_else(|| "<role>".to_string())
            )
        }
        _ if m.implicit => format!("{e}: set {setting} to reach database {datname}"),
        _ => format!("{e}: check {setting}"),
    }
}

/// At most this many databases of one server are visited per cycle.
const MAX_DATABASES: usize = 20;

/// Reads names and indexes for the selective quals, from each of their databases on
/// the monitored server, then (with `settings.hypopg`) tries the candidates with hypopg.
/// Failures become notes: the advisor still works on what could be read.
pub async fn enrich(
    w: &mut QualsWindow,
    repository: &str,
    server: &ServerInfo,
    m: &MonitoredSettings,
    settings: &MissingIndexSettings,
) {
    let label = format!("{repository}/{}", server.name);
    let mut relids_by_db: HashMap<u32, BTreeSet<i64>> = HashMap::new();
    let mut opnos_by_db: HashMap<u32, BTreeSet<i64>> = HashMap::new();
    for q in &w.quals {
        if !worth_naming(w, q, settings) {
            continue;
        }
        for p in &q.predicates {
            relids_by_db
                .entry(q.key.dbid)
                .or_default()
                .insert(p.relid as i64);
            if !w.operators.contains_key(&p.opno) {
                opnos_by_db
                    .entry(q.key.dbid)
                    .or_default()
                    .insert(p.opno as i64);
            }
        }
    }
    let mut dbids: Vec<u32> = relids_by_db.keys().copied().collect();
    dbids.sort();
    let mut budget = settings.max_validations;
    for dbid in dbids.into_iter().take(MAX_DATABASES) {
        let Some(datname) = w.databases.get(&dbid).cloned() else {
            w.notes
                .push(format!("database oid {dbid}: PoWA does not know its name"));
            continue;
        };
        let client = match m.connect(&label, &datname).await {
            Ok(c) => c,
            Err(e) => {
                w.unnamed
                    .insert(dbid, unreachable(m, repository, server, &datname, &e));
                // The repository's own connection is a guess, not a setting: what it cannot
                // do is said where oids are shown, not as a problem to fix.
                if !m.implicit {
                    w.notes.push(format!("server `{}`: {e}", server.name));
                }
                continue;
            }
        };
        let relids: Vec<i64> = relids_by_db[&dbid].iter().copied().collect();
        match read_catalog(&client, &relids).await {
            Ok(cat) => {
                w.catalogs.insert(dbid, cat);
            }
            Err(e) => {
                let why = format!(
                    "database `{datname}`: cannot read the catalog ({})",
                    describe_pg_error(&e)
                );
                w.unnamed.insert(dbid, why.clone());
                w.notes.push(why);
                continue;
            }
        }
        if let Some(opnos) = opnos_by_db.get(&dbid) {
            let opnos: Vec<i64> = opnos.iter().copied().collect();
            if let Ok(ops) = read_operators(&client, &opnos).await {
                w.operators.extend(ops);
            }
        }
        if !settings.hypopg || budget == 0 {
            continue;
        }
        let todo: Vec<_> = candidates(w, settings)
            .into_iter()
            .filter(|c| c.dbid == dbid)
            .take(budget)
            .collect();
        if todo.is_empty() {
            continue;
        }
        budget -= todo.len();
        let mut explainer = match Explainer::new(&client, &datname).await {
            Ok(e) => Some(e),
            Err(_) if m.implicit => None,
            Err(e) => {
                w.notes.push(format!("database `{datname}`: {e}"));
                None
            }
        };
        for c in todo {
            let mut v = Validation {
                dbid,
                relid: c.relid,
                columns: c.columns.clone(),
                queries: Vec::new(),
                error: None,
                details: Vec::new(),
            };
            let create = ddl(w, &c).map(|d| d.replacen(" CONCURRENTLY", "", 1));
            match (explainer.as_mut(), create) {
                (Some(ex), Some(create)) => {
                    let mut seen = BTreeSet::new();
                    let queries: Vec<(i64, String)> = c
                        .queries
                        .iter()
                        .filter(|(id, _)| seen.insert(*id))
                        .filter_map(|(id, user)| {
                            w.texts.get(&(*id, dbid, *user)).map(|t| (*id, t.clone()))
                        })
                        .collect();
                    let tried = ex.try_index(&create, &queries).await;
                    v.queries = tried.queries;
                    v.error = tried.error;
                    v.details = tried.details;
                }
                (None, _) => v.error = Some("hypopg unavailable".to_string()),
                (_, None) => v.error = Some("names unknown".to_string()),
            }
            w.validations.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config/powa-sentinel.toml shows `reach_servers` with its default.
    #[test]
    fn the_shipped_config_reaches_servers_by_default() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\nreach_servers = true\n"), "documented");
        let s = crate::config::Settings::load_with_env(&p, Some(Default::default()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.repositories["main"].reach_servers,
            RepositorySettings::from_dsn("").reach_servers
        );
        assert!(RepositorySettings::from_dsn("").reach_servers);
    }

    #[test]
    fn a_powa_servers_entry_gets_the_repository_tls_and_keeps_its_password() {
        let mut r = RepositorySettings::from_dsn("host=repo user=ro");
        r.sslmode = Some(SslMode::Require);
        r.connect_timeout = Duration::from_secs(3);
        let e = PowaServerEntry {
            hostname: "db2".into(),
            port: 5433,
            username: "powa".into(),
            password: Some(Secret::new("p w'd")),
            dbname: "powa".into(),
        };
        let m = MonitoredSettings::from_powa_servers(&r, &e);
        let cfg = connect::pg_config("x", &m.as_repository()).unwrap();
        assert_eq!(cfg.get_user(), Some("powa"));
        assert_eq!(cfg.get_ports(), [5433]);
        assert_eq!(cfg.get_password(), Some(&b"p w'd"[..]));
        assert_eq!(cfg.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(m.as_repository().effective_sslmode(), SslMode::Require);
        assert_eq!(m.home_database.as_deref(), Some("powa"));
        assert!(
            !format!("{m:?}").contains("p w'd"),
            "the password is redacted"
        );
    }

    /// What a finding showing oids says about a database the role could not enter: the
    /// GRANT when PostgreSQL refused CONNECT, the setting otherwise.
    #[test]
    fn an_unreachable_database_says_what_opens_it() {
        // The role inside a DSN, as a seed configuration gives it.
        let m = MonitoredSettings::implicit_from(&RepositorySettings::from_dsn(
            "host=repo user=sentinel_ro",
        ));
        let server = ServerInfo::named(0, "local");
        let target = || Target::Database("Sales DB".into());
        let denied = unreachable(
            &m,
            "main",
            &server,
            "Sales DB",
            &ConnectError::Denied {
                target: target(),
                reason: "FATAL: permission denied for database \"Sales DB\"".into(),
            },
        );
        assert_eq!(
            denied,
            "sentinel_ro may not connect to database Sales DB: GRANT CONNECT ON DATABASE \"Sales DB\" TO sentinel_ro, or set [repositories.main.monitored.\"local\"]"
        );
        let refused = ConnectError::Connect {
            target: target(),
            reason: "connection refused".into(),
        };
        let other = unreachable(&m, "main", &server, "app", &refused);
        assert!(
            other.ends_with("set [repositories.main.monitored.\"local\"] to reach database app"),
            "{other}"
        );
    }
}
