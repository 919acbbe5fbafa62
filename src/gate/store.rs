//! The gate's store: `<state.dir>/gate.redb` (redb: one file, ACID, crash-safe).
//!
//! Tables: `scopes` (one JSON value per (analyzer, source) scope: its cycles and its
//! findings), `held` (insights waiting for a report or for quiet hours to end), `silences`
//! and `meta` (the next silence id). Values are JSON so that a newer version can read an
//! older file and a person can inspect one.
//!
//! The file is opened for each operation and closed right after, rather than held open:
//! redb allows one process per file, and the `silence` command must be able to write while
//! a daemon runs. An open that finds the file busy retries for a few seconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use super::engine::Held;
use super::lifecycle::ScopeState;
use super::silence::Silence;

const SCOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("scopes");
const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held");
const SILENCES: TableDefinition<u64, &[u8]> = TableDefinition::new("silences");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The store file's name inside `state.dir`.
pub const FILE: &str = "gate.redb";

/// How long an operation waits for another process to close the file.
const BUSY_WAIT: Duration = Duration::from_secs(10);

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
}

/// Everything the gate keeps.
#[derive(Debug, Default)]
pub struct Loaded {
    pub scopes: HashMap<String, ScopeState>,
    pub held: Vec<Held>,
    pub silences: Vec<Silence>,
}

pub struct Store {
    path: PathBuf,
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
        };
        let db = store.db()?;
        let tx = db.begin_write().map_err(|e| store.err(e))?;
        {
            tx.open_table(SCOPES).map_err(|e| store.err(e))?;
            tx.open_table(HELD).map_err(|e| store.err(e))?;
            tx.open_table(SILENCES).map_err(|e| store.err(e))?;
            tx.open_table(META).map_err(|e| store.err(e))?;
        }
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
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

    fn db(&self) -> Result<Database, StoreError> {
        let started = Instant::now();
        loop {
            match Database::create(&self.path) {
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

    /// Reads everything.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        let mut out = Loaded::default();
        let t = tx.open_table(SCOPES).map_err(|e| self.err(e))?;
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let scope: ScopeState =
                serde_json::from_slice(v.value()).map_err(|e| self.corrupt("scope", e))?;
            out.scopes.insert(k.value().to_string(), scope);
        }
        let t = tx.open_table(HELD).map_err(|e| self.err(e))?;
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.held
                .push(serde_json::from_slice(v.value()).map_err(|e| self.corrupt("held item", e))?);
        }
        drop(tx);
        drop(db);
        out.silences = self.silences()?;
        Ok(out)
    }

    /// Every silence, active or not, by id.
    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SILENCES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            let mut s: Silence =
                serde_json::from_slice(v.value()).map_err(|e| self.corrupt("silence", e))?;
            s.compile();
            out.push(s);
        }
        Ok(out)
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

    /// Writes changed scopes and held items in one transaction.
    pub fn write(
        &self,
        scopes: &[(&str, &ScopeState)],
        held_put: &[&Held],
        held_del: impl IntoIterator<Item = u64>,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(SCOPES).map_err(|e| self.err(e))?;
            for (k, s) in scopes {
                let bytes = serde_json::to_vec(s).map_err(|e| self.corrupt("scope", e))?;
                t.insert(*k, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            let mut t = tx.open_table(HELD).map_err(|e| self.err(e))?;
            for id in held_del {
                t.remove(id).map_err(|e| self.err(e))?;
            }
            for h in held_put {
                let bytes = serde_json::to_vec(h).map_err(|e| self.corrupt("held item", e))?;
                t.insert(h.id, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
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
