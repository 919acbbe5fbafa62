//! The state database (`[state] dsn`): a writable PostgreSQL database of powa-sentinel's
//! own (never the PoWA repository, which stays read-only) that holds what `[state] dir`
//! holds otherwise, so that several processes can share it.
//!
//! One [`StateDb`] is one connection, owned by a thread of its own that runs a tokio
//! current-thread runtime and the tokio-postgres client, and serves calls sent over a
//! channel. The callers (the gate and the channels, inside actix actors; the `silence`
//! command; the HTTP pages) are synchronous and wait for the answer, as they wait for a
//! redb commit: the runtime they run on is never blocked on from inside, and a call
//! returns only after its COMMIT (or with the error that prevented it).
//!
//! Every call is one explicit transaction ([`StateDb::transact`]): the place where a
//! fencing check (a lease epoch compared on every write) will go when replicas share the
//! work. A lost connection is reopened at the next call: a transaction whose first
//! statement finds the connection closed is retried once on a new one (nothing had been
//! done), any other failure is the caller's error, in words that say what to check. A
//! connect that failed is not tried again for [`HOLD_OFF`]: calls fail at once meanwhile,
//! so that a server that does not answer does not hold every caller for the connect
//! deadline.
//!
//! The schema is created and migrated by the process itself ([`schema`]), under an
//! advisory transaction lock, so replicas starting together do not race.

pub mod lease;
pub mod outbox;
pub mod queue;
pub mod schema;

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use tokio_postgres::{Client, NoTls};

use crate::gate::Access;
use crate::powa::connect::{connect_deadline, describe_pg_error, pg_config, ConnectError};
use crate::powa::{tls, RepositorySettings};

/// The schema used when `[state] schema` is not set.
pub const DEFAULT_SCHEMA: &str = "powa_sentinel";

/// How to reach the state database: the connection keys of a repository (`dsn`,
/// `password`, `password_file`, `password_env`, `sslmode`, `sslrootcert`, the timeouts)
/// and the schema everything lives in.
#[derive(Clone, Debug)]
pub struct DbSettings {
    pub connection: RepositorySettings,
    pub schema: String,
    /// Every write transaction checks this lease first (a replica's delivery side):
    /// see [`lease::Fence`].
    pub fence: Option<Arc<lease::Fence>>,
}

/// Why the state database could not do what was asked. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDbError {
    /// The connection settings cannot work (an unreadable password file, a bad dsn).
    #[error("[state]: {0}")]
    Settings(String),
    /// No session: refused, authentication, TLS, or no answer in time.
    #[error("the state database {target} cannot be reached ({reason}); check [state] dsn, and that the server runs and accepts connections from here (the next operation tries again)")]
    Unreachable { target: String, reason: String },
    /// A statement failed; nothing of the transaction was kept.
    #[error("the state database {target}: {what} failed ({reason}); nothing of it was kept")]
    Query {
        target: String,
        what: &'static str,
        reason: String,
    },
    /// The schema was migrated by a newer powa-sentinel.
    #[error("the state database {target}: schema `{schema}` is at version {found}, newer than this powa-sentinel knows ({known}): a newer powa-sentinel migrated it; upgrade this one (or set [state] schema to another schema)")]
    Newer {
        target: String,
        schema: String,
        found: i32,
        known: i32,
    },
    /// A row that does not decode.
    #[error("the state database {target} holds a {what} that cannot be read ({reason}); delete that row to start without it")]
    Corrupt {
        target: String,
        what: &'static str,
        reason: String,
    },
    /// A preview's handle was asked to write.
    #[error(
        "the state database {target} was opened read-only (a preview): nothing may be written"
    )]
    ReadOnly { target: String },
    /// This process no longer holds the lease its writes depend on (it was paused or cut
    /// off past the lease, and another replica took over): nothing was written.
    #[error("the state database {target}: this replica no longer holds the `{lease}` lease (epoch {epoch}); another replica took over, so nothing was written")]
    Fenced {
        target: String,
        lease: String,
        epoch: i64,
    },
    /// The connection's thread is gone (it could not start its runtime).
    #[error("the state database {target}: the connection thread stopped ({reason})")]
    Stopped { target: String, reason: String },
}

impl From<StateDbError> for sentinel_actors::OutboxError {
    fn from(e: StateDbError) -> Self {
        sentinel_actors::OutboxError::new(e.to_string())
    }
}

/// What a transaction's body reports; [`StateDb::transact`] adds where.
#[derive(Debug)]
pub enum Fail {
    /// A statement failed: what it was doing, and the driver's error.
    Query(&'static str, tokio_postgres::Error),
    /// A value that does not decode (or encode): what it is, and why.
    Corrupt(&'static str, String),
    /// The schema is at this version, newer than [`schema::VERSION`].
    Newer(i32),
    /// An error that already says everything.
    Db(StateDbError),
}

/// Names what a statement was doing: `client.query(..).await.at("read scopes")?`.
pub trait At<T> {
    fn at(self, what: &'static str) -> Result<T, Fail>;
}

impl<T> At<T> for Result<T, tokio_postgres::Error> {
    fn at(self, what: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Query(what, e))
    }
}

/// A transaction's body: runs on the connection's thread with the client, inside the
/// transaction [`StateDb::transact`] opened.
type Job = Box<dyn for<'a> FnOnce(&'a mut Conn) -> LocalBoxFuture<'a, ()> + Send>;

/// One connection to the state database, served by its own thread.
pub struct StateDb {
    jobs: mpsc::Sender<Job>,
    target: String,
    schema: String,
    read_only: bool,
    version: i32,
    fence: Option<Arc<lease::Fence>>,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("target", &self.target)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// `name` as an SQL identifier (doubled quotes inside, quoted).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Can `name` be `[state] schema`? Lower-case letters, digits and `_`, not starting with
/// a digit, at most 63 bytes (PostgreSQL's limit), not `pg_` (reserved): a name that
/// reads the same quoted or not, so a person's `psql` finds it as written.
pub fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with("pg_")
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The words of a connection-settings error, without the repository wording of
/// [`ConnectError`].
fn settings_error(e: ConnectError) -> StateDbError {
    StateDbError::Settings(match e {
        ConnectError::Password { reason, .. } => format!("cannot read the password: {reason}"),
        ConnectError::Connect { reason, .. } | ConnectError::Denied { reason, .. } => reason,
        other => other.to_string(),
    })
}

impl StateDb {
    /// Opens a connection to the state database. Writing (`Access::ReadWrite`): creates
    /// or migrates the schema first ([`schema::migrate`]). Reading (a preview): checks
    /// the schema's version only, and refuses every write. Either way a schema newer than
    /// this binary knows is refused.
    pub fn open(db: &DbSettings, access: Access) -> Result<StateDb, StateDbError> {
        let mut cfg = pg_config("state", &db.connection).map_err(settings_error)?;
        // Who is who in pg_stat_activity: the processes sharing a database by schema.
        cfg.application_name(format!("powa-sentinel/{}", db.schema));
        let target = format!(
            "{}/{} (schema {})",
            crate::powa::session::address(&cfg),
            cfg.get_dbname().unwrap_or("?"),
            db.schema
        );
        // As for repositories (and libpq): no TLS over Unix-domain sockets.
        let unix_only = cfg
            .get_hosts()
            .iter()
            .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        let tls = if unix_only {
            None
        } else {
            tls::connector(
                db.connection.effective_sslmode(),
                db.connection.sslrootcert.as_deref(),
            )
            .map_err(|e| StateDbError::Settings(e.to_string()))?
        };
        let timeout_ms = db.connection.statement_timeout.as_millis();
        let conn = Conn {
            deadline: connect_deadline(&cfg, db.connection.connect_timeout),
            cfg,
            tls,
            // synchronous_commit off (a server default some set for speed) would let a
            // COMMIT return before it is on disk: raised for this session, so a call
            // that returned survives the server's crash, as a redb commit survives ours.
            setup: settings_sql(&db.schema, timeout_ms, false),
            // Again at each BEGIN, in the same round trip, for this transaction only: a
            // pooler in transaction mode (PgBouncer's `pool_mode = transaction`) hands
            // each transaction to any server session, where the session's settings are
            // not; and no session lock is ever used (leases are rows).
            local: settings_sql(&db.schema, timeout_ms, true),
            // A call's whole transaction: its statements, bounded by the server, and a
            // connect, bounded here, with room.
            limit: db.connection.statement_timeout * 3 + db.connection.connect_timeout,
            target: target.clone(),
            client: None,
            down: None,
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("state-db".into())
            .spawn(move || serve(rx, conn))
            .map_err(|e| StateDbError::Stopped {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        let mut out = StateDb {
            jobs,
            target,
            schema: db.schema.clone(),
            read_only: access == Access::ReadOnly,
            version: 0,
            // The schema's migration is not fenced (it precedes any lease).
            fence: None,
        };
        let schema = db.schema.clone();
        out.version = match access {
            Access::ReadWrite => out.transact(true, move |c| {
                Box::pin(async move { schema::migrate(c, &schema).await })
            })?,
            Access::ReadOnly => {
                let found = out.transact(false, move |c| {
                    Box::pin(async move { schema::version(c, &schema).await })
                })?;
                schema::refuse_newer(found).map_err(|e| out.fail(e))?;
                found
            }
        };
        out.fence = db.fence.clone();
        Ok(out)
    }

    /// The lease this handle's writes check, if any.
    pub fn fence(&self) -> Option<&Arc<lease::Fence>> {
        self.fence.as_ref()
    }

    /// Where it is: address, database and schema.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The schema version found (or reached) when it was opened; 0 when a read-only
    /// handle found no schema yet (nothing was ever written there).
    pub fn version(&self) -> i32 {
        self.version
    }

    fn fail(&self, f: Fail) -> StateDbError {
        let target = self.target.clone();
        match f {
            Fail::Query(what, e) if e.is_closed() => StateDbError::Unreachable {
                target,
                reason: format!(
                    "the connection was lost during {what}: {}",
                    describe_pg_error(&e)
                ),
            },
            Fail::Query(what, e) => StateDbError::Query {
                target,
                what,
                reason: describe_pg_error(&e),
            },
            Fail::Corrupt(what, reason) => StateDbError::Corrupt {
                target,
                what,
                reason,
            },
            Fail::Newer(found) => StateDbError::Newer {
                target,
                schema: self.schema.clone(),
                found,
                known: schema::VERSION,
            },
            Fail::Db(e) => e,
        }
    }

    /// One writing statement in a transaction of its own; returns the rows it touched.
    pub fn execute(
        &self,
        what: &'static str,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
    ) -> Result<u64, StateDbError> {
        self.transact(true, move |c| {
            Box::pin(async move {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p.as_ref() as _).collect();
                c.execute(sql, &refs).await.at(what)
            })
        })
    }

    /// Runs `body` in one transaction (`write`: read-write, else a READ ONLY snapshot) on this
    /// connection's thread and waits for it: COMMIT when it returns `Ok`, ROLLBACK when it
    /// fails. Refused on a read-only handle when `write`. With a fence, a write is
    /// refused at once past the lease's local deadline, and otherwise begins by checking
    /// the lease in the transaction ([`lease::Fence::check`]).
    pub fn transact<T, F>(&self, write: bool, body: F) -> Result<T, StateDbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c Client) -> LocalBoxFuture<'c, Result<T, Fail>> + Send + 'static,
    {
        if write && self.read_only {
            return Err(StateDbError::ReadOnly {
                target: self.target.clone(),
            });
        }
        let fence = self.fence.clone().filter(|_| write);
        if let Some(f) = &fence {
            if !f.valid(Instant::now()) {
                return Err(f.refused(&self.target));
            }
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn: &mut Conn| {
            Box::pin(async move {
                let r = conn.run(write, fence, body).await;
                let _ = tx.send(r);
            })
        });
        let stopped = |reason: String| StateDbError::Stopped {
            target: self.target.clone(),
            reason,
        };
        self.jobs
            .send(job)
            .map_err(|_| stopped("it no longer takes calls".into()))?;
        rx.recv()
            .map_err(|_| stopped("it ended without answering".into()))?
            .map_err(|f| self.fail(f))
    }
}

/// The connection thread: one current-thread runtime, one job at a time, in order.
fn serve(rx: mpsc::Receiver<Job>, mut conn: Conn) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        // Dropping `rx` answers every caller with `Stopped`.
        Err(_) => return,
    };
    while let Ok(job) = rx.recv() {
        rt.block_on(job(&mut conn));
        if conn.client.as_ref().is_some_and(|c| c.is_closed()) {
            conn.client = None;
        }
    }
}

/// The connection as its thread holds it: how to open it, and the client when open.
pub struct Conn {
    cfg: tokio_postgres::Config,
    tls: Option<tls::MakeRustls>,
    /// Connect, TLS, startup, authentication and the session setup, together.
    deadline: Duration,
    /// Run on every new session: the schema as search path, the timeouts.
    setup: String,
    /// The same for one transaction (`SET LOCAL`), sent with every BEGIN.
    local: String,
    /// The longest one transaction may take in all.
    limit: Duration,
    target: String,
    client: Option<Client>,
    /// After a failed connect, the last reason and until when calls fail with it at once
    /// instead of trying again: the callers are actors waiting for the answer, and a
    /// server that does not answer would hold each of them for the connect deadline.
    down: Option<(String, std::time::Instant)>,
}

/// The settings of a session (or with `local`, of one transaction): the schema as search
/// path, the statement and lock timeouts, the idle-in-transaction limit, and
/// synchronous_commit on where the server default turned it off (else a COMMIT could
/// return before it is on disk: a call that returned survives the server's crash, as a
/// redb commit survives ours).
fn settings_sql(schema: &str, timeout_ms: u128, local: bool) -> String {
    // Every transaction here is a few statements sent back to back: a session idle inside
    // one is a frozen or cut-off process, whose row locks (a lease's, checked by a fenced
    // write) must not outlive it for long.
    let idle = (timeout_ms * 2).min(IDLE_IN_TRANSACTION.as_millis());
    // One statement (it runs before every transaction): the schema name is checked by
    // `valid_schema`, so quoting it as an identifier inside a literal is enough.
    format!(
        "SELECT set_config('search_path', '{}', {local}), \
                set_config('statement_timeout', '{timeout_ms}', {local}), \
                set_config('lock_timeout', '{timeout_ms}', {local}), \
                set_config('idle_in_transaction_session_timeout', '{idle}', {local}), \
                CASE WHEN current_setting('synchronous_commit') = 'off' \
                     THEN set_config('synchronous_commit', 'on', {local}) END;",
        quote_ident(schema).replace('\'', "''"),
    )
}

/// The longest a session of this process may sit idle inside a transaction before the
/// server ends it.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(2);

/// How long a failed connect is not retried (at most the connect deadline).
const HOLD_OFF: Duration = Duration::from_secs(2);

impl Conn {
    async fn connect(&mut self) -> Result<(), Fail> {
        if let Some((reason, until)) = &self.down {
            if std::time::Instant::now() < *until {
                return Err(Fail::Db(StateDbError::Unreachable {
                    target: self.target.clone(),
                    reason: reason.clone(),
                }));
            }
        }
        let opening = async {
            let client = match &self.tls {
                None => {
                    let (client, connection) = self.cfg.connect(NoTls).await?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client
                }
                Some(tls) => {
                    let (client, connection) = self.cfg.connect(tls.clone()).await?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client
                }
            };
            client.batch_execute(&self.setup).await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        let reason = match tokio::time::timeout(self.deadline, opening).await {
            Ok(Ok(client)) => {
                self.client = Some(client);
                self.down = None;
                return Ok(());
            }
            Ok(Err(e)) => describe_pg_error(&e),
            Err(_) => format!(
                "no answer within {} (connect_timeout)",
                humantime::format_duration(self.deadline)
            ),
        };
        self.down = Some((
            reason.clone(),
            std::time::Instant::now() + HOLD_OFF.min(self.deadline),
        ));
        Err(Fail::Db(StateDbError::Unreachable {
            target: self.target.clone(),
            reason,
        }))
    }

    /// BEGINs a transaction, connecting first when there is no open session. A session
    /// found closed by this first statement (the server restarted, an idle connection
    /// was cut) is replaced once: nothing had been done on it.
    async fn begin(&mut self, write: bool) -> Result<&Client, Fail> {
        // Reads see one snapshot, as a redb read transaction does: a commit of another
        // process between two of their statements is not half seen.
        let sql = if write {
            format!("BEGIN; {}", self.local)
        } else {
            format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {}",
                self.local
            )
        };
        let sql = sql.as_str();
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        let fresh = self.client.is_none();
        if fresh {
            self.connect().await?;
        }
        let client = self.client.as_ref().expect("connected");
        match client.batch_execute(sql).await {
            Ok(()) => {}
            Err(e) if !fresh && (e.is_closed() || client.is_closed()) => {
                self.client = None;
                self.connect().await?;
                let client = self.client.as_ref().expect("connected");
                client.batch_execute(sql).await.at("BEGIN")?;
            }
            Err(e) => return Err(Fail::Query("BEGIN", e)),
        }
        Ok(self.client.as_ref().expect("connected"))
    }

    /// One transaction: BEGIN, the body, COMMIT (or ROLLBACK), bounded by `limit`; past
    /// it the session is dropped, which rolls back what was not committed.
    async fn run<T, F>(
        &mut self,
        write: bool,
        fence: Option<Arc<lease::Fence>>,
        body: F,
    ) -> Result<T, Fail>
    where
        F: for<'c> FnOnce(&'c Client) -> LocalBoxFuture<'c, Result<T, Fail>>,
    {
        let limit = self.limit;
        let target = self.target.clone();
        let outcome = tokio::time::timeout(limit, async {
            let client = self.begin(write).await?;
            let fenced = match &fence {
                Some(f) => f.check(client, &target).await,
                None => Ok(()),
            };
            let done = match fenced {
                Ok(()) => body(client).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(v) => {
                    client.batch_execute("COMMIT").await.at("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
        .await;
        match outcome {
            Ok(r) => r,
            Err(_) => {
                self.client = None;
                Err(Fail::Db(StateDbError::Unreachable {
                    target: self.target.clone(),
                    reason: format!(
                        "no answer within {}; the session was dropped, so nothing of the call was kept",
                        humantime::format_duration(limit)
                    ),
                }))
            }
        }
    }
}

/// What `check` says of the state database: reachable, writable, its schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub target: String,
    /// The schema's version (0: not created yet).
    pub version: i32,
    /// Why it cannot be written, if it cannot.
    pub not_writable: Option<String>,
    /// The live members and the leases held (schema 2 and later).
    pub members: Vec<lease::Member>,
    pub leases: Vec<lease::LeaseRow>,
}

impl Health {
    /// One line for `check`.
    pub fn line(&self) -> String {
        let version = match self.version {
            0 => "schema not created yet (the first `once` or `run` creates it)".to_string(),
            v if v == schema::VERSION => format!("schema version {v} (current)"),
            v => format!(
                "schema version {v}, this powa-sentinel migrates it to {} at its first write",
                schema::VERSION
            ),
        };
        match &self.not_writable {
            None => format!(
                "state: database {}: reachable, writable, {version}",
                self.target
            ),
            Some(why) => format!(
                "state: database {}: reachable, NOT WRITABLE ({why}), {version}",
                self.target
            ),
        }
    }
}

impl Health {
    /// What `check` says of the replicas sharing this database: who is alive, who
    /// delivers, how the servers are split. Every replica of one fleet must be listed
    /// here: one missing reaches another database (or a standby), and does not share.
    pub fn replica_lines(&self) -> Vec<String> {
        if self.version < 2 {
            return Vec::new();
        }
        if self.members.is_empty() {
            return vec![
                "replicas: none running on this database (each `run` on it joins; they share the servers and one delivers)".into(),
            ];
        }
        let delivery = self.leases.iter().find(|l| l.name == lease::DELIVERY);
        let mut out = vec![format!(
            "replicas: {} live on this database (every replica of the fleet must be listed; one that is not reaches another database or a standby)",
            self.members.len()
        )];
        for m in &self.members {
            let servers = self
                .leases
                .iter()
                .filter(|l| {
                    l.holder.as_deref() == Some(&m.id) && lease::server_of(&l.name).is_some()
                })
                .count();
            let delivers = match delivery {
                Some(d) if d.holder.as_deref() == Some(&m.id) => format!(
                    ", delivers since {} (epoch {})",
                    d.since.format("%Y-%m-%d %H:%M:%S UTC"),
                    d.epoch
                ),
                _ => String::new(),
            };
            out.push(format!(
                "  {} (version {}, since {}, last seen {}): {servers} servers{delivers}",
                m.id,
                m.version,
                m.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                m.seen_at.format("%H:%M:%S UTC"),
            ));
        }
        if delivery.is_none() {
            out.push(
                "  nobody delivers right now (a replica takes the delivery at its next beat)"
                    .into(),
            );
        }
        out
    }
}

/// Connects without writing anything and says whether the state database can be used:
/// reachable (else the error), the schema version (a newer one is refused, as at a
/// start), and whether this role can write there (a hot standby, a read-only
/// transaction default or missing privileges cannot).
pub fn health(db: &DbSettings) -> Result<Health, StateDbError> {
    let handle = StateDb::open(db, Access::ReadOnly)?;
    let schema = db.schema.clone();
    let not_writable = handle.transact(false, move |c| {
        Box::pin(async move { schema::writable(c, &schema).await })
    })?;
    let (members, leases) = if handle.version >= 2 {
        handle.transact(false, |c| Box::pin(async move { lease::overview(c).await }))?
    } else {
        Default::default()
    };
    Ok(Health {
        target: handle.target.clone(),
        version: handle.version,
        not_writable,
        members,
        leases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_read_the_same_quoted_or_not() {
        for good in ["powa_sentinel", "s1", "_x", "a_b_c"] {
            assert!(valid_schema(good), "{good}");
        }
        for bad in [
            "",
            "Powa",
            "1x",
            "pg_x",
            "a-b",
            "a b",
            "x\"y",
            &"a".repeat(64),
        ] {
            assert!(!valid_schema(bad), "{bad}");
        }
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn health_lines_say_what_to_do() {
        let h = |version, not_writable: Option<&str>| Health {
            target: "127.0.0.1:5432/state (schema s)".into(),
            version,
            not_writable: not_writable.map(String::from),
            members: Vec::new(),
            leases: Vec::new(),
        };
        assert_eq!(
            h(0, None).line(),
            "state: database 127.0.0.1:5432/state (schema s): reachable, writable, schema not created yet (the first `once` or `run` creates it)"
        );
        assert!(h(schema::VERSION, None).line().ends_with("(current)"));
        assert!(h(schema::VERSION, Some("a hot standby"))
            .line()
            .contains("NOT WRITABLE (a hot standby)"));
    }

    #[test]
    fn check_lists_the_replicas_and_who_delivers() {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let member = |id: &str| lease::Member {
            id: id.into(),
            host: "h".into(),
            pid: 1,
            version: "0.1.0".into(),
            started_at: t("2026-12-04T10:00:00Z"),
            seen_at: t("2026-12-04T10:05:00Z"),
        };
        let held = |name: &str, holder: &str| lease::LeaseRow {
            name: name.into(),
            holder: Some(holder.into()),
            epoch: 3,
            since: t("2026-12-04T10:01:00Z"),
            expires_at: t("2026-12-04T10:05:15Z"),
        };
        let mut h = Health {
            target: "db".into(),
            version: schema::VERSION,
            not_writable: None,
            members: Vec::new(),
            leases: Vec::new(),
        };
        assert!(h.replica_lines()[0].starts_with("replicas: none running"));
        h.members = vec![member("a:1:x"), member("b:2:y")];
        h.leases = vec![
            held(lease::DELIVERY, "a:1:x"),
            held("server:r/s1", "a:1:x"),
            held("server:r/s2", "b:2:y"),
            held("server:r/s3", "b:2:y"),
        ];
        let lines = h.replica_lines();
        assert!(lines[0].starts_with("replicas: 2 live"), "{lines:?}");
        assert_eq!(
            lines[1],
            "  a:1:x (version 0.1.0, since 2026-12-04 10:00:00 UTC, last seen 10:05:00 UTC): 1 servers, delivers since 2026-12-04 10:01:00 UTC (epoch 3)"
        );
        assert!(lines[2].ends_with(": 2 servers"), "{lines:?}");
        h.leases.remove(0);
        assert!(h
            .replica_lines()
            .last()
            .unwrap()
            .contains("nobody delivers"));
        h.version = 1;
        assert!(h.replica_lines().is_empty(), "no replicas before schema 2");
    }

    #[test]
    fn a_password_that_cannot_be_read_names_the_state_keys() {
        let e = settings_error(ConnectError::Password {
            repo: "state".into(),
            reason: "password_file /nowhere: not found".into(),
        });
        assert_eq!(
            e.to_string(),
            "[state]: cannot read the password: password_file /nowhere: not found"
        );
    }
}
