//! The channels' outbox on disk: `<state.dir>/outbox.redb`, one [redb] database.
//!
//! Implements [`Outbox`] (see `sentinel_actors::outbox` for what is journaled when). Every
//! call is one write transaction committed with redb's default durability (fsync before
//! the call returns), so an entry written before a kill -9 — or a power loss — is there
//! after the restart. Tables:
//!
//! - `entries`: seq → CBOR of `(channel, body)`: the notification as accepted, or its
//!   rendered parts. CBOR rather than JSON because metrics may be NaN or infinite, which
//!   JSON cannot carry;
//! - `progress`: seq → parts confirmed (kept apart so that a confirmed part rewrites 8
//!   bytes, not the parts);
//! - `failed`: seq → why it failed for good;
//! - `sent`: channel → when its recent messages were confirmed (the last hour), so a
//!   restarted process knows how much of the rolling quota is used;
//! - `accepted`: (channel, notification id) → when it was accepted (the last 7 days, at
//!   most 10,000), so that a notification offered again is not sent twice;
//! - `meta`: `next_seq`.
//!
//! The file is locked by the process that opened it: a second powa-sentinel on the same
//! state directory gets a clear error instead of delivering the same entries twice.
//! [`RedbOutbox::open_read_only`] reads it without writing (previews, `check`), and is
//! refused while a process holds it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{
    Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableError, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use sentinel_actors::outbox::{
    accepted_to_forget, backlog_of, earliest, remember_sent, Backlog, EntryBody, Outbox,
    OutboxEntry, RenderedEntry, Seq, StoredNotification, ACCEPTED_KEEP_MAX,
};
use sentinel_actors::OutboxError;

/// The file name inside the state directory.
pub const FILE_NAME: &str = "outbox.redb";

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const PROGRESS: TableDefinition<u64, u64> = TableDefinition::new("progress");
const FAILED: TableDefinition<u64, &str> = TableDefinition::new("failed");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SENT: TableDefinition<&str, &[u8]> = TableDefinition::new("sent");
const ACCEPTED: TableDefinition<(&str, u64), i64> = TableDefinition::new("accepted");
const NEXT_SEQ: &str = "next_seq";

#[derive(Serialize, Deserialize)]
struct Stored {
    channel: String,
    body: EntryBody,
    /// When it was accepted (absent in files of older versions).
    #[serde(default)]
    accepted_at: Option<DateTime<Utc>>,
}

/// A handle that writes, or one that only reads.
enum Handle {
    Rw(Database),
    Ro(ReadOnlyDatabase),
}

impl Handle {
    fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Handle::Rw(db) => db.begin_read(),
            Handle::Ro(db) => db.begin_read(),
        }
    }
}

/// The durable outbox.
pub struct RedbOutbox {
    db: Handle,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for RedbOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbOutbox")
            .field("path", &self.path)
            .finish()
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> OutboxError {
    OutboxError::new(format!("{what}: {e}"))
}

/// Why the outbox file could not be opened, in words: who holds it (`in_use`), or what
/// failed, as `(verb, advice)`.
fn open_error(
    e: redb::DatabaseError,
    path: &Path,
    in_use: &str,
    (verb, advice): (&str, &str),
) -> anyhow::Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            anyhow::anyhow!("the outbox {} is in use by {in_use}", path.display())
        }
        other => anyhow::anyhow!(
            "cannot {verb} the outbox {} ({other}); {advice}",
            path.display()
        ),
    }
}

impl RedbOutbox {
    /// Opens (or creates) `<dir>/outbox.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> anyhow::Result<RedbOutbox> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the state directory {} ({e}); set [state] dir to a writable directory",
                dir.display()
            )
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| {
            open_error(
                e,
                &path,
                "another powa-sentinel process; stop it, or give this one its own [state] dir",
                ("open", "move the file aside to start with an empty outbox"),
            )
        })?;
        let outbox = RedbOutbox {
            db: Handle::Rw(db),
            path: Some(path),
        };
        outbox.init()?;
        Ok(outbox)
    }

    /// Opens `<dir>/outbox.redb` to read it without writing anything (`once --dry-run`,
    /// `backtest`, `check`, `outbox list`). `Ok(None)` when there is no outbox yet.
    /// Refused while another process (a running daemon) has it open.
    pub fn open_read_only(dir: &Path) -> anyhow::Result<Option<RedbOutbox>> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let db = ReadOnlyDatabase::open(&path).map_err(|e| {
            open_error(
                e,
                &path,
                "a running powa-sentinel; stop it to read or change the outbox",
                (
                    "read",
                    "the next `once` or `run` repairs it if it needs repair",
                ),
            )
        })?;
        Ok(Some(RedbOutbox {
            db: Handle::Ro(db),
            path: Some(path),
        }))
    }

    /// An outbox in memory (no `[state] dir`): survives nothing but a channel actor's
    /// restart.
    pub fn in_memory() -> anyhow::Result<RedbOutbox> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| anyhow::anyhow!("cannot create the in-memory outbox: {e}"))?;
        let outbox = RedbOutbox {
            db: Handle::Rw(db),
            path: None,
        };
        outbox.init()?;
        Ok(outbox)
    }

    /// Where the file is (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn init(&self) -> Result<(), OutboxError> {
        self.write(|tx| {
            tx.open_table(ENTRIES).map_err(|e| err("open entries", e))?;
            tx.open_table(PROGRESS)
                .map_err(|e| err("open progress", e))?;
            tx.open_table(FAILED).map_err(|e| err("open failed", e))?;
            tx.open_table(META).map_err(|e| err("open meta", e))?;
            tx.open_table(SENT).map_err(|e| err("open sent", e))?;
            Self::forget_accepted(tx, Utc::now(), true)?;
            Ok(())
        })
    }

    /// Runs `f` in one write transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let Handle::Rw(db) = &self.db else {
            return Err(OutboxError::new("opened read-only: nothing may be written"));
        };
        let tx = db.begin_write().map_err(|e| err("begin", e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| err("commit", e))?;
        Ok(out)
    }

    fn next_seq(tx: &WriteTransaction) -> Result<Seq, OutboxError> {
        let mut meta = tx.open_table(META).map_err(|e| err("open meta", e))?;
        let next = meta
            .get(NEXT_SEQ)
            .map_err(|e| err("read next_seq", e))?
            .map_or(1, |v| v.value());
        meta.insert(NEXT_SEQ, next + 1)
            .map_err(|e| err("write next_seq", e))?;
        Ok(next)
    }

    /// A new entry under the next sequence number.
    fn append(
        tx: &WriteTransaction,
        channel: &str,
        body: EntryBody,
        accepted_at: Option<DateTime<Utc>>,
    ) -> Result<Seq, OutboxError> {
        let seq = Self::next_seq(tx)?;
        let stored = Stored {
            channel: channel.to_string(),
            body,
            accepted_at,
        };
        Self::put(tx, seq, &stored)?;
        Ok(seq)
    }

    fn put(tx: &WriteTransaction, seq: Seq, stored: &Stored) -> Result<(), OutboxError> {
        let mut bytes = Vec::new();
        ciborium::into_writer(stored, &mut bytes).map_err(|e| err("encode entry", e))?;
        let mut t = tx.open_table(ENTRIES).map_err(|e| err("open entries", e))?;
        t.insert(seq, bytes.as_slice())
            .map_err(|e| err("write entry", e))?;
        Ok(())
    }

    fn remove(tx: &WriteTransaction, seq: Seq) -> Result<(), OutboxError> {
        tx.open_table(ENTRIES)
            .map_err(|e| err("open entries", e))?
            .remove(seq)
            .map_err(|e| err("remove entry", e))?;
        tx.open_table(PROGRESS)
            .map_err(|e| err("open progress", e))?
            .remove(seq)
            .map_err(|e| err("remove progress", e))?;
        tx.open_table(FAILED)
            .map_err(|e| err("open failed", e))?
            .remove(seq)
            .map_err(|e| err("remove failed", e))?;
        Ok(())
    }

    /// Forgets the accepted ids that are too old or too many. Scans only when `always`
    /// (at open) or when the table grew past its bound.
    fn forget_accepted(
        tx: &WriteTransaction,
        now: DateTime<Utc>,
        always: bool,
    ) -> Result<(), OutboxError> {
        let mut t = tx
            .open_table(ACCEPTED)
            .map_err(|e| err("open accepted", e))?;
        let len = t.len().map_err(|e| err("count accepted", e))? as usize;
        if !always && len <= ACCEPTED_KEEP_MAX {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(len);
        for row in t.iter().map_err(|e| err("scan accepted", e))? {
            let (k, v) = row.map_err(|e| err("read accepted", e))?;
            let (channel, id) = k.value();
            let at = DateTime::<Utc>::from_timestamp_micros(v.value()).unwrap_or_default();
            ids.push(((channel.to_string(), id), at));
        }
        for (channel, id) in accepted_to_forget(ids, now) {
            t.remove((channel.as_str(), id))
                .map_err(|e| err("forget accepted", e))?;
        }
        Ok(())
    }

    /// Every entry, oldest first (the `outbox` command lists them all).
    pub fn all(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        let tx = self.db.begin_read().map_err(|e| err("begin read", e))?;
        let entries = match tx.open_table(ENTRIES) {
            Ok(t) => t,
            // A read-only handle on a file no process initialised yet.
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err("open entries", e)),
        };
        let progress = tx
            .open_table(PROGRESS)
            .map_err(|e| err("open progress", e))?;
        let failed = tx.open_table(FAILED).map_err(|e| err("open failed", e))?;
        let mut out = Vec::with_capacity(entries.len().unwrap_or(0) as usize);
        for row in entries.iter().map_err(|e| err("scan entries", e))? {
            let (k, v) = row.map_err(|e| err("read entry", e))?;
            let seq = k.value();
            let stored: Stored = ciborium::from_reader(v.value())
                .map_err(|e| err(&format!("decode entry {seq}"), e))?;
            let next_part = progress
                .get(seq)
                .map_err(|e| err("read progress", e))?
                .map_or(0, |p| p.value() as usize);
            let why = failed
                .get(seq)
                .map_err(|e| err("read failed", e))?
                .map(|f| f.value().to_string());
            out.push(OutboxEntry {
                seq,
                channel: stored.channel,
                body: stored.body,
                accepted_at: stored.accepted_at,
                next_part,
                failed: why,
            });
        }
        Ok(out)
    }
}

impl Outbox for RedbOutbox {
    fn accept(&self, channel: &str, n: &StoredNotification) -> Result<Option<Seq>, OutboxError> {
        let now = Utc::now();
        self.write(|tx| {
            {
                let mut ids = tx
                    .open_table(ACCEPTED)
                    .map_err(|e| err("open accepted", e))?;
                if ids
                    .get((channel, n.id))
                    .map_err(|e| err("read accepted", e))?
                    .is_some()
                {
                    return Ok(None);
                }
                ids.insert((channel, n.id), now.timestamp_micros())
                    .map_err(|e| err("write accepted", e))?;
            }
            Self::forget_accepted(tx, now, false)?;
            Self::append(tx, channel, EntryBody::Queued(n.clone()), Some(now)).map(Some)
        })
    }

    fn render(
        &self,
        channel: &str,
        replaces: &[Seq],
        entry: &RenderedEntry,
    ) -> Result<Seq, OutboxError> {
        self.write(|tx| {
            let mut accepted_at = None;
            {
                let t = tx.open_table(ENTRIES).map_err(|e| err("open entries", e))?;
                for s in replaces {
                    if let Some(v) = t.get(*s).map_err(|e| err("read entry", e))? {
                        let old: Stored = ciborium::from_reader(v.value())
                            .map_err(|e| err(&format!("decode entry {s}"), e))?;
                        accepted_at = earliest(accepted_at, old.accepted_at);
                    }
                }
            }
            for s in replaces {
                Self::remove(tx, *s)?;
            }
            Self::append(
                tx,
                channel,
                EntryBody::Rendered(entry.clone()),
                accepted_at.or(Some(Utc::now())),
            )
        })
    }

    fn progress(&self, seq: Seq, next_part: usize) -> Result<(), OutboxError> {
        self.write(|tx| {
            tx.open_table(PROGRESS)
                .map_err(|e| err("open progress", e))?
                .insert(seq, next_part as u64)
                .map_err(|e| err("write progress", e))?;
            Ok(())
        })
    }

    fn fail(&self, seq: Seq, error: &str) -> Result<(), OutboxError> {
        self.write(|tx| {
            let exists = tx
                .open_table(ENTRIES)
                .map_err(|e| err("open entries", e))?
                .get(seq)
                .map_err(|e| err("read entry", e))?
                .is_some();
            if exists {
                tx.open_table(FAILED)
                    .map_err(|e| err("open failed", e))?
                    .insert(seq, error)
                    .map_err(|e| err("write failed", e))?;
            }
            Ok(())
        })
    }

    fn requeue(&self, seq: Seq) -> Result<bool, OutboxError> {
        self.write(|tx| {
            Ok(tx
                .open_table(FAILED)
                .map_err(|e| err("open failed", e))?
                .remove(seq)
                .map_err(|e| err("remove failed", e))?
                .is_some())
        })
    }

    fn done(&self, seq: Seq) -> Result<(), OutboxError> {
        self.write(|tx| Self::remove(tx, seq))
    }

    fn entries(&self, channel: &str) -> Result<Vec<OutboxEntry>, OutboxError> {
        let mut all = self.all()?;
        all.retain(|e| e.channel == channel);
        Ok(all)
    }

    fn backlog(&self) -> Result<Vec<Backlog>, OutboxError> {
        let all = self.all()?;
        Ok(backlog_of(
            all.iter().map(|e| (e.channel.as_str(), e.failed.is_some())),
        ))
    }

    fn record_sent(&self, channel: &str, at: DateTime<Utc>) -> Result<(), OutboxError> {
        self.write(|tx| {
            let mut t = tx.open_table(SENT).map_err(|e| err("open sent", e))?;
            let mut times: Vec<DateTime<Utc>> = match t
                .get(channel)
                .map_err(|e| err("read sent", e))?
            {
                Some(v) => ciborium::from_reader(v.value()).map_err(|e| err("decode sent", e))?,
                None => Vec::new(),
            };
            remember_sent(&mut times, at);
            let mut bytes = Vec::new();
            ciborium::into_writer(&times, &mut bytes).map_err(|e| err("encode sent", e))?;
            t.insert(channel, bytes.as_slice())
                .map_err(|e| err("write sent", e))?;
            Ok(())
        })
    }

    fn sent_since(
        &self,
        channel: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, OutboxError> {
        let tx = self.db.begin_read().map_err(|e| err("begin read", e))?;
        let t = match tx.open_table(SENT) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err("open sent", e)),
        };
        let times: Vec<DateTime<Utc>> = match t.get(channel).map_err(|e| err("read sent", e))? {
            Some(v) => ciborium::from_reader(v.value()).map_err(|e| err("decode sent", e))?,
            None => Vec::new(),
        };
        Ok(times.into_iter().filter(|t| *t >= since).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use sentinel_actors::message::Mentions;
    use sentinel_actors::{Fingerprint, Insight, NotifyReason, Severity, Window};

    fn insight() -> Insight {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        Insight {
            fingerprint: Fingerprint(42),
            kind: "slow_query".into(),
            rule: "slow_query.total_time".into(),
            severity: Severity::Critical,
            labels: BTreeMap::from([
                ("server".to_string(), "数据库 🐘".to_string()),
                ("queryid".to_string(), "-12".to_string()),
            ]),
            title: "t".into(),
            advice: "a".into(),
            text: Some("SELECT 1".into()),
            metrics: BTreeMap::from([
                ("ratio".to_string(), f64::INFINITY),
                ("mean_time_ms".to_string(), 1.5),
            ]),
            window: Window { start: t, end: t },
            observed_at: t,
            status: None,
            changes: Vec::new(),
            trend: None,
        }
    }

    fn stored(id: u64) -> StoredNotification {
        StoredNotification {
            id,
            channel: "ops".into(),
            reason: NotifyReason::Immediate,
            insights: vec![insight()],
            created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
            mentions: Mentions {
                userids: vec!["alice".into()],
                mobiles: vec![],
            },
        }
    }

    #[test]
    fn entries_survive_reopening_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (a, r) = {
            let o = RedbOutbox::open(dir.path()).unwrap();
            let a = o.accept("ops", &stored(1)).unwrap().unwrap();
            let b = o.accept("ops", &stored(2)).unwrap().unwrap();
            let r = o
                .render(
                    "ops",
                    &[b],
                    &RenderedEntry {
                        notification_ids: vec![2],
                        insights: 1,
                        digest: false,
                        parts: vec![b"\"one\"".to_vec(), b"\"two\"".to_vec()],
                    },
                )
                .unwrap();
            o.progress(r, 1).unwrap();
            let f = o.accept("bad", &stored(3)).unwrap().unwrap();
            o.fail(f, "errcode 93000").unwrap();
            (a, r)
        };
        let o = RedbOutbox::open(dir.path()).unwrap();
        let e = o.entries("ops").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].seq, a);
        // NaN-free comparison: infinity and CJK round-trip.
        assert_eq!(e[0].body, EntryBody::Queued(stored(1)));
        assert_eq!(e[1].seq, r);
        assert_eq!(e[1].next_part, 1);
        match &e[1].body {
            EntryBody::Rendered(x) => assert_eq!(x.parts[1], b"\"two\""),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            o.backlog().unwrap(),
            vec![
                Backlog {
                    channel: "bad".into(),
                    pending: 0,
                    failed: 1
                },
                Backlog {
                    channel: "ops".into(),
                    pending: 2,
                    failed: 0
                },
            ]
        );
        o.done(r).unwrap();
        o.done(a).unwrap();
        assert!(o.entries("ops").unwrap().is_empty());
        o.record_sent("ops", Utc::now()).unwrap();
        drop(o);
        let o = RedbOutbox::open(dir.path()).unwrap();
        let recent = o
            .sent_since("ops", Utc::now() - chrono::TimeDelta::minutes(1))
            .unwrap();
        assert_eq!(recent.len(), 1, "send times survive reopening");
        // Sequence numbers keep growing across reopenings.
        let n = o.accept("ops", &stored(4)).unwrap().unwrap();
        assert!(n > r);
        // Ids accepted before the reopening are remembered, delivered or not.
        assert_eq!(o.accept("ops", &stored(1)).unwrap(), None);
        assert_eq!(o.accept("ops", &stored(2)).unwrap(), None);
        assert!(o.accept("bad", &stored(1)).unwrap().is_some());
    }

    #[test]
    fn a_second_process_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbOutbox::open(dir.path()).unwrap();
        let e = RedbOutbox::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another powa-sentinel"), "{e}");
        assert!(e.contains(FILE_NAME), "{e}");
    }

    #[test]
    fn nan_metrics_round_trip() {
        let o = RedbOutbox::in_memory().unwrap();
        let mut s = stored(1);
        s.insights[0].metrics.insert("x".into(), f64::NAN);
        o.accept("ops", &s).unwrap();
        match &o.entries("ops").unwrap()[0].body {
            EntryBody::Queued(n) => assert!(n.insights[0].metrics["x"].is_nan()),
            other => panic!("{other:?}"),
        }
        let _ = Arc::new(o);
    }
}
