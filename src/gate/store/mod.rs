//! The gate's store: what the gate keeps between runs (lifecycle scopes, held insights,
//! silences, acknowledgements, heartbeat state, notifications decided and not yet
//! journaled, the next ids), behind one trait, [`GateStore`], with two implementations:
//!
//! - [`Store`] ([`file`]): `<state.dir>/gate.redb`, embedded, for one process;
//! - [`pg::PgStore`]: the schema of `[state] dsn` (see [`crate::statedb`]), a PostgreSQL
//!   database that several processes can share.
//!
//! The contract both keep: every call is one transaction, committed before it returns, so
//! a decision ([`GateStore::write`] of one [`Commit`]) and the notifications it wants sent
//! are kept together or lost together, whatever instant the process dies at.

mod file;
pub mod pg;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sentinel_actors::outbox::StoredNotification;

pub use file::{Store, FILE};

use super::ack::Ack;
use super::engine::Held;
use super::heartbeat::BeatState;
use super::lifecycle::ScopeState;
use super::silence::Silence;
use super::Access;
use crate::config::StateSettings;
use crate::statedb::StateDbError;

/// How long an operation on the file waits for another process to close it.
pub(crate) const BUSY_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create the state directory {path}: {source}; check `state.dir` and its permissions"
    )]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the gate store {path} is in use by another process for more than {}s; try again", BUSY_WAIT.as_secs())]
    Busy { path: PathBuf },
    #[error("the gate store {path} failed: {reason}")]
    Db { path: PathBuf, reason: String },
    #[error("the gate store {path} holds a {what} that cannot be read ({reason}); move the file away to start with an empty state")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("the gate store {path} was opened read-only (a preview): nothing may be written")]
    ReadOnly { path: PathBuf },
    /// The state database (`[state] dsn`) failed: unreachable, refused, a newer schema.
    #[error(transparent)]
    Database(#[from] StateDbError),
}

/// Everything the gate keeps.
#[derive(Debug, Default)]
pub struct Loaded {
    pub scopes: HashMap<String, ScopeState>,
    pub held: Vec<Held>,
    pub silences: Vec<Silence>,
    pub acks: Vec<Ack>,
    /// Heartbeat state by channel ([`super::heartbeat::ALIVE`]: when the gate was last
    /// alive).
    pub beats: HashMap<String, BeatState>,
    /// Notifications decided and not confirmed journaled by their channel, by id.
    pub intents: Vec<StoredNotification>,
    /// The next notification id to use (0: none recorded yet).
    pub next_notification_id: u64,
}

/// One commit: what a decision changed, written in one transaction.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    pub scopes: Vec<(&'a str, &'a ScopeState)>,
    pub held_put: Vec<&'a Held>,
    pub held_del: Vec<u64>,
    pub intents_put: Vec<&'a StoredNotification>,
    pub intents_del: Vec<u64>,
    /// Acknowledgements that ended.
    pub acks_del: Vec<sentinel_actors::Fingerprint>,
    /// Heartbeat states that changed.
    pub beats_put: Vec<(&'a str, BeatState)>,
    /// The next notification id, when it moved.
    pub next_notification_id: Option<u64>,
    /// The findings queue's positions this decision consumed (the state database
    /// removes them in the same transaction; the file store has no queue).
    pub consumed: Vec<u64>,
}

/// What the gate, the `silence` command, the status page and the action pages need of a
/// store. Every method is one transaction, durable when it returns; deletions of a commit
/// apply before its puts (an id deleted and put again in one commit is kept).
///
/// Synchronous on purpose: the gate decides inside an actor and must not decide again
/// before its decision is kept. An implementation that talks to a server does so on a
/// thread of its own ([`crate::statedb`]), never by blocking on the caller's runtime.
pub trait GateStore: Send + Sync {
    /// Where it is, for logs and messages (a path, or the database and schema).
    fn describe(&self) -> String;
    /// Opened for a preview: reads only, every write is refused.
    fn is_read_only(&self) -> bool;
    /// Reads everything.
    fn load(&self) -> Result<Loaded, StoreError>;
    /// Every silence, active or not, by id.
    fn silences(&self) -> Result<Vec<Silence>, StoreError>;
    /// Every acknowledgement in force.
    fn acks(&self) -> Result<Vec<Ack>, StoreError>;
    /// How long the gate may use the silences and acknowledgements it last read before
    /// reading them again: a file is read in microseconds, a database answers over the
    /// network, and its gate decides on every report of every server.
    fn refresh_every(&self) -> Duration {
        Duration::ZERO
    }
    /// Records an acknowledgement (replacing an earlier one of the same finding).
    fn add_ack(&self, a: &Ack) -> Result<(), StoreError>;
    /// Stores a new silence, giving it the next id (ids start at 1 and never repeat).
    fn add_silence(&self, s: Silence) -> Result<Silence, StoreError>;
    /// Ends a silence at `at` (kept, for the record). `None` when no silence has that id.
    fn expire_silence(&self, id: u64, at: DateTime<Utc>) -> Result<Option<Silence>, StoreError>;
    /// Writes one decision's changes in one transaction.
    fn write(&self, c: &Commit<'_>) -> Result<(), StoreError>;
}

/// Opens the store `[state]` names with `access`: `<dir>/gate.redb`, or the state
/// database of `dsn` (its schema created or migrated first when writing). `None` when
/// neither is set: the gate then keeps its state in memory.
pub fn open(
    state: &StateSettings,
    access: Access,
) -> Result<Option<Box<dyn GateStore>>, StoreError> {
    open_fenced(state, access, None)
}

/// [`open`] for a replica's delivery: every write of the state database checks `fence`.
pub fn open_fenced(
    state: &StateSettings,
    access: Access,
    fence: Option<Arc<crate::statedb::lease::Fence>>,
) -> Result<Option<Box<dyn GateStore>>, StoreError> {
    if let Some(mut db) = state.database() {
        db.fence = fence;
        return Ok(Some(Box::new(pg::PgStore::open(&db, access)?)));
    }
    let Some(dir) = &state.dir else {
        return Ok(None);
    };
    Ok(Some(match access {
        Access::ReadWrite => Box::new(Store::open(dir)?),
        Access::ReadOnly => Box::new(Store::open_read_only(dir)),
    }))
}

/// Where the gate's state is, for the parts of a process that read or write it now and
/// then (the status page, the action pages, WeCom card buttons): the directory, whose
/// file is opened per use and closed right after (the gate and the `silence` command
/// share it), or one open handle on the state database, shared by those parts (one
/// connection, apart from the gate's own).
#[derive(Clone)]
pub enum Location {
    Dir(PathBuf),
    Database(Arc<pg::PgStore>),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            Location::Database(s) => f.debug_tuple("Database").field(&s.describe()).finish(),
        }
    }
}

impl Location {
    /// From `[state]` (`None` when neither `dir` nor `dsn` is set). With `dsn`, connects
    /// and migrates the schema now, so that a database that cannot be used stops the
    /// start with its reason.
    pub fn from_settings(state: &StateSettings) -> Result<Option<Location>, StoreError> {
        if let Some(db) = state.database() {
            let store = pg::PgStore::open(&db, Access::ReadWrite)?;
            return Ok(Some(Location::Database(Arc::new(store))));
        }
        Ok(state.dir.clone().map(Location::Dir))
    }

    /// A directory's location (tests and callers that have only a path).
    pub fn dir(path: &Path) -> Location {
        Location::Dir(path.to_path_buf())
    }

    /// A store to write with.
    pub fn store(&self) -> Result<Arc<dyn GateStore>, StoreError> {
        Ok(match self {
            Location::Dir(d) => Arc::new(Store::open(d)?),
            Location::Database(s) => Arc::clone(s) as Arc<dyn GateStore>,
        })
    }

    /// A store to read with: never creates nor writes anything for a directory.
    pub fn reader(&self) -> Arc<dyn GateStore> {
        match self {
            Location::Dir(d) => Arc::new(Store::open_read_only(d)),
            Location::Database(s) => Arc::clone(s) as Arc<dyn GateStore>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_choose_the_store() {
        let none = StateSettings::default();
        assert!(
            open(&none, Access::ReadWrite).unwrap().is_none(),
            "in memory"
        );
        assert!(Location::from_settings(&none).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let state = StateSettings {
            dir: Some(dir.path().join("state")),
            ..StateSettings::default()
        };
        // A preview opens nothing on disk.
        let preview = open(&state, Access::ReadOnly).unwrap().unwrap();
        assert!(preview.is_read_only());
        assert!(preview.load().unwrap().scopes.is_empty());
        assert!(!dir.path().join("state").exists());
        let store = open(&state, Access::ReadWrite).unwrap().unwrap();
        assert!(!store.is_read_only());
        assert!(store.describe().ends_with(FILE), "{}", store.describe());
        drop(store);
        let at = Location::from_settings(&state).unwrap().unwrap();
        assert_eq!(at.store().unwrap().add_silence(silence()).unwrap().id, 1);
        assert_eq!(at.reader().silences().unwrap().len(), 1);
    }

    fn silence() -> Silence {
        let t = chrono::DateTime::<Utc>::from_timestamp(1_772_409_600, 0).unwrap();
        Silence {
            id: 0,
            fingerprint: Some(sentinel_actors::Fingerprint(1)),
            matchers: Vec::new(),
            starts_at: t,
            ends_at: t,
            reason: "r".into(),
            author: "a".into(),
            created_at: t,
        }
    }
}
