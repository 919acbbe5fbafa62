//! The gate's embedded store: `<state.dir>/gate.redb` (redb: one file, ACID, crash-safe),
//! one implementation of [`GateStore`] (the other is the state database, [`super::pg`]).
//!
//! Tables: `scopes` (one JSON value per (analyzer, source) scope: its cycles and its
//! findings), `held` (insights waiting for a report or for quiet hours to end), `silences`,
//! `acks` (acknowledgements, by fingerprint), `beats` (heartbeat state by channel, and when
//! the gate was last alive),
//! `intents` (notifications decided and not yet confirmed journaled by their channel,
//! CBOR because their metrics may be NaN or infinite) and `meta` (the next silence id, the
//! next notification id). Values are JSON where they can be, so that a newer version can
//! read an older file and a person can inspect one.
//!
//! A decision is one transaction: the lifecycle change, the held items and the intents it
//! produced commit together, so a kill at any instant either keeps the decision with the
//! notifications it wants sent (replayed at the next start) or loses both (decided again).
//!
//! The file is opened for each operation and closed right after, rather than held open:
//! redb allows one process per file, and the `silence` command must be able to write while
//! a daemon runs. An open that finds the file busy retries for a few seconds. A store
//! opened with [`Store::open_read_only`] (previews) never writes, nor creates the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, TableError,
};

use super::{Commit, GateStore, Loaded, StoreError, BUSY_WAIT};
use crate::gate::ack::Ack;
use crate::gate::lifecycle::ScopeState;
use crate::gate::silence::Silence;

const SCOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("scopes");
const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held");
const SILENCES: TableDefinition<u64, &[u8]> = TableDefinition::new("silences");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents");
const ACKS: TableDefinition<u64, &[u8]> = TableDefinition::new("acks");
const BEATS: TableDefinition<&str, &[u8]> = TableDefinition::new("beats");
const NEXT_NOTIFICATION_ID: &str = "next_notification_id";

/// The store file's name inside `state.dir`.
pub const FILE: &str = "gate.redb";

pub struct Store {
    path: PathBuf,
    read_only: bool,
}

/// A handle that writes, or one that only reads.
enum Handle {
    Rw(Database),
    Ro(ReadOnlyDatabase),
}

impl Handle {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Handle::Rw(db) => db.begin_read(),
            Handle::Ro(db) => db.begin_read(),
        }
    }
}

impl Store {
    /// Opens (creating if needed) `<dir>/gate.redb`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let store = Store {
            path: dir.join(FILE),
            read_only: false,
        };
        let db = store.db()?;
        let tx = db.begin_write().map_err(|e| store.err(e))?;
        {
            tx.open_table(SCOPES).map_err(|e| store.err(e))?;
            tx.open_table(HELD).map_err(|e| store.err(e))?;
            tx.open_table(SILENCES).map_err(|e| store.err(e))?;
            tx.open_table(META).map_err(|e| store.err(e))?;
            tx.open_table(INTENTS).map_err(|e| store.err(e))?;
            tx.open_table(ACKS).map_err(|e| store.err(e))?;
            tx.open_table(BEATS).map_err(|e| store.err(e))?;
        }
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// A store that only reads `<dir>/gate.redb` (`once --dry-run`, `backtest`): nothing
    /// is created or written; a missing file reads as an empty state.
    pub fn open_read_only(dir: &Path) -> Store {
        Store {
            path: dir.join(FILE),
            read_only: true,
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            reason: e.into().to_string(),
        }
    }

    fn corrupt(&self, what: &'static str, e: serde_json::Error) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            reason: e.to_string(),
        }
    }

    /// A handle to read with: read-only stores open the file without writing (`None`:
    /// there is no file yet).
    fn reader(&self) -> Result<Option<Handle>, StoreError> {
        if !self.read_only {
            return self.db().map(|db| Some(Handle::Rw(db)));
        }
        if !self.path.exists() {
            return Ok(None);
        }
        self.when_free(|p| ReadOnlyDatabase::open(p))
            .map(|db| Some(Handle::Ro(db)))
    }

    /// Opens the file with `open`, waiting up to [`BUSY_WAIT`] while another process has it
    /// open (a daemon writing it this instant closes it right after); then it is busy.
    fn when_free<D>(
        &self,
        open: impl Fn(&Path) -> Result<D, DatabaseError>,
    ) -> Result<D, StoreError> {
        let started = Instant::now();
        loop {
            match open(&self.path) {
                Ok(db) => return Ok(db),
                Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < BUSY_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Busy {
                        path: self.path.clone(),
                    })
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    fn db(&self) -> Result<Database, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.when_free(|p| Database::create(p))
    }

    /// Reads everything.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let Some(db) = self.reader()? else {
            return Ok(Loaded::default());
        };
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        let mut out = Loaded::default();
        if let Some(t) = self.table(&tx, SCOPES)? {
            for row in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let scope: ScopeState =
                    serde_json::from_slice(v.value()).map_err(|e| self.corrupt("scope", e))?;
                out.scopes.insert(k.value().to_string(), scope);
            }
        }
        if let Some(t) = self.table(&tx, HELD)? {
            for row in t.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                out.held.push(
                    serde_json::from_slice(v.value()).map_err(|e| self.corrupt("held item", e))?,
                );
            }
        }
        if let Some(t) = self.table(&tx, BEATS)? {
            for row in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                let b = serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt("heartbeat state", e))?;
                out.beats.insert(k.value().to_string(), b);
            }
        }
        if let Some(t) = self.table(&tx, INTENTS)? {
            for row in t.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                out.intents
                    .push(
                        ciborium::from_reader(v.value()).map_err(|e| StoreError::Corrupt {
                            path: self.path.clone(),
                            what: "notification to send",
                            reason: e.to_string(),
                        })?,
                    );
            }
        }
        if let Some(t) = self.table(&tx, META)? {
            out.next_notification_id = t
                .get(NEXT_NOTIFICATION_ID)
                .map_err(|e| self.err(e))?
                .map_or(0, |v| v.value());
        }
        drop(tx);
        drop(db);
        out.silences = self.silences()?;
        out.acks = self.acks()?;
        Ok(out)
    }

    /// Opens a table to read; `None` when a file written by an older version (read
    /// without writing) does not have it yet.
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        tx: &ReadTransaction,
        def: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
        match tx.open_table(def) {
            Ok(t) => Ok(Some(t)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every row of a JSON table, in key order (none when the file or the table does not
    /// exist yet).
    fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<u64, &[u8]>,
        what: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let Some(db) = self.reader()? else {
            return Ok(Vec::new());
        };
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        let Some(t) = self.table(&tx, def)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.corrupt(what, e))?);
        }
        Ok(out)
    }

    /// Every silence, active or not, by id.
    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let mut all: Vec<Silence> = self.json_rows(SILENCES, "silence")?;
        all.iter_mut().for_each(Silence::compile);
        Ok(all)
    }

    /// Every acknowledgement in force.
    pub fn acks(&self) -> Result<Vec<Ack>, StoreError> {
        self.json_rows(ACKS, "acknowledgement")
    }

    /// Records an acknowledgement (replacing an earlier one of the same finding).
    pub fn add_ack(&self, a: &Ack) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        {
            let bytes = serde_json::to_vec(a).map_err(|e| self.corrupt("acknowledgement", e))?;
            let mut t = tx.open_table(ACKS).map_err(|e| self.err(e))?;
            t.insert(a.fingerprint.0, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores a new silence, giving it the next id.
    pub fn add_silence(&self, mut s: Silence) -> Result<Silence, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let id = meta
                .get("next_silence_id")
                .map_err(|e| self.err(e))?
                .map(|v| v.value())
                .unwrap_or(1);
            meta.insert("next_silence_id", id + 1)
                .map_err(|e| self.err(e))?;
            s.id = id;
            let bytes = serde_json::to_vec(&s).map_err(|e| self.corrupt("silence", e))?;
            let mut t = tx.open_table(SILENCES).map_err(|e| self.err(e))?;
            t.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(s)
    }

    /// Ends a silence at `at` (kept, for the record). `None` when no silence has that id.
    pub fn expire_silence(
        &self,
        id: u64,
        at: DateTime<Utc>,
    ) -> Result<Option<Silence>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        let found = {
            let mut t = tx.open_table(SILENCES).map_err(|e| self.err(e))?;
            let current = match t.get(id).map_err(|e| self.err(e))? {
                Some(v) => Some(
                    serde_json::from_slice::<Silence>(v.value())
                        .map_err(|e| self.corrupt("silence", e))?,
                ),
                None => None,
            };
            match current {
                Some(mut s) => {
                    if s.ends_at > at {
                        s.ends_at = at;
                    }
                    let bytes = serde_json::to_vec(&s).map_err(|e| self.corrupt("silence", e))?;
                    t.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
                    Some(s)
                }
                None => None,
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(found)
    }

    /// Writes one decision's changes in one transaction.
    pub fn write(&self, c: &Commit<'_>) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(SCOPES).map_err(|e| self.err(e))?;
            for (k, s) in &c.scopes {
                let bytes = serde_json::to_vec(s).map_err(|e| self.corrupt("scope", e))?;
                t.insert(*k, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(HELD).map_err(|e| self.err(e))?;
            for id in &c.held_del {
                t.remove(*id).map_err(|e| self.err(e))?;
            }
            for h in &c.held_put {
                let bytes = serde_json::to_vec(h).map_err(|e| self.corrupt("held item", e))?;
                t.insert(h.id, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(BEATS).map_err(|e| self.err(e))?;
            for (k, b) in &c.beats_put {
                let bytes =
                    serde_json::to_vec(b).map_err(|e| self.corrupt("heartbeat state", e))?;
                t.insert(*k, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(ACKS).map_err(|e| self.err(e))?;
            for fp in &c.acks_del {
                t.remove(fp.0).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(INTENTS).map_err(|e| self.err(e))?;
            for id in &c.intents_del {
                t.remove(*id).map_err(|e| self.err(e))?;
            }
            for n in &c.intents_put {
                let mut bytes = Vec::new();
                ciborium::into_writer(n, &mut bytes).map_err(|e| StoreError::Db {
                    path: self.path.clone(),
                    reason: format!("cannot encode a notification: {e}"),
                })?;
                t.insert(n.id, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            if let Some(next) = c.next_notification_id {
                tx.open_table(META)
                    .map_err(|e| self.err(e))?
                    .insert(NEXT_NOTIFICATION_ID, next)
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// The embedded store behind the trait: the same operations, one redb transaction each.
impl GateStore for Store {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        Store::load(self)
    }

    fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        Store::silences(self)
    }

    fn acks(&self) -> Result<Vec<Ack>, StoreError> {
        Store::acks(self)
    }

    fn add_ack(&self, a: &Ack) -> Result<(), StoreError> {
        Store::add_ack(self, a)
    }

    fn add_silence(&self, s: Silence) -> Result<Silence, StoreError> {
        Store::add_silence(self, s)
    }

    fn expire_silence(&self, id: u64, at: DateTime<Utc>) -> Result<Option<Silence>, StoreError> {
        Store::expire_silence(self, id, at)
    }

    fn write(&self, c: &Commit<'_>) -> Result<(), StoreError> {
        Store::write(self, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::silence::Matcher;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_772_409_600 + min * 60, 0).unwrap()
    }

    #[test]
    fn silences_get_ids_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = Silence {
            id: 0,
            fingerprint: None,
            matchers: vec![Matcher::parse("server=~db.*").unwrap()],
            starts_at: t(0),
            ends_at: t(60),
            reason: "r".into(),
            author: "a".into(),
            created_at: t(0),
        };
        assert_eq!(store.add_silence(s.clone()).unwrap().id, 1);
        assert_eq!(store.add_silence(s).unwrap().id, 2);
        let e = store.expire_silence(1, t(10)).unwrap().unwrap();
        assert_eq!(e.ends_at, t(10));
        assert!(store.expire_silence(9, t(10)).unwrap().is_none());
        // Reopened: a second handle on the same directory sees the same data.
        let again = Store::open(dir.path()).unwrap();
        let all = again.silences().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ends_at, t(10));
        assert_eq!(all[1].ends_at, t(60));
        assert!(all[1].matchers[0].matches(&{
            let mut i = crate::gate::test_insight(1, sentinel_actors::Severity::Info);
            i.labels.insert("server".into(), "db7".into());
            i
        }));
    }
}
