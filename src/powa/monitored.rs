//! Direct, read-only sessions on a monitored server, for what PoWA does not keep: the
//! names behind the relation oids and attnums of pg_qualstats, existing indexes, and
//! hypothetical-index checks (hypopg). Opened per database, used, and closed within one
//! collection cycle.
//!
//! `[repositories.<name>.monitored."<server name>"]` says how to reach a server (the
//! server name as `powa-sentinel check` prints it; `local` for the repository's own
//! instance). The database is the one the quals belong to, so `dbname` is not a key.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::connect::{self, describe_pg_error};
use super::discovery::ServerInfo;
use super::hypopg::{Explainer, Validation};
use super::qualstats::{read_catalog, read_operators, QualsWindow};
use super::session::Session;
use super::{validate_tls, RepositorySettings, SslMode};
use crate::analyze::missing_index::{candidates, ddl, worth_a_look, MissingIndexSettings};
use crate::config::Problem;
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
        if [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_env.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count()
            > 1
        {
            problems.push(Problem::new(
                format!("{path}.password"),
                "set only one of password, password_file and password_env",
            ));
        }
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
    pub async fn connect(&self, label: &str, database: &str) -> Result<Session, String> {
        let r = self.as_repository();
        let mut cfg = connect::pg_config(label, &r).map_err(|e| e.to_string())?;
        cfg.dbname(database);
        let what = format!("{} database `{database}`", super::session::address(&cfg));
        let deadline = connect::connect_deadline(&cfg, self.connect_timeout);
        let until = tokio::time::Instant::now() + deadline;
        let timeout = || {
            format!(
                "{what}: the server accepted the connection but did not answer within {}: is it overloaded? (connect_timeout)",
                humantime::format_duration(deadline)
            )
        };
        let opening = connect::open(
            &cfg,
            r.effective_sslmode(),
            r.sslrootcert.as_deref(),
            self.statement_timeout,
            what.clone(),
        );
        let client = tokio::time::timeout_at(until, opening)
            .await
            .map_err(|_| timeout())?
            .map_err(|e| format!("cannot connect to database `{database}` ({e})"))?;
        match tokio::time::timeout_at(
            until,
            connect::make_read_only(&client, self.statement_timeout),
        )
        .await
        {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(format!(
                "cannot make the session on `{database}` read-only ({})",
                describe_pg_error(&e)
            )),
            Err(_) => {
                client.close("the session setup did not finish in time".into());
                Err(timeout())
            }
        }
    }
}

/// At most this many databases of one server are visited per cycle.
const MAX_DATABASES: usize = 20;

/// Reads names and indexes for the quals worth a look, from each of their databases on
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
        if !worth_a_look(w, q, settings) {
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
            Err(_) if m.implicit => continue,
            Err(e) => {
                w.notes.push(format!("server `{}`: {e}", server.name));
                continue;
            }
        };
        let relids: Vec<i64> = relids_by_db[&dbid].iter().copied().collect();
        match read_catalog(&client, &relids).await {
            Ok(cat) => {
                w.catalogs.insert(dbid, cat);
            }
            Err(e) => {
                w.notes.push(format!(
                    "database `{datname}`: cannot read the catalog ({})",
                    describe_pg_error(&e)
                ));
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
                    match ex.try_index(&create, &queries).await {
                        Ok(q) => v.queries = q,
                        Err(e) => v.error = Some(e),
                    }
                }
                (None, _) => v.error = Some("hypopg unavailable".to_string()),
                (_, None) => v.error = Some("names unknown".to_string()),
            }
            w.validations.push(v);
        }
    }
}
