//! The channels' outbox in the state database: [`Outbox`] on the `outbox_*` tables of
//! [`super::schema`] (see `sentinel_actors::outbox` for what is journaled when, and
//! `crate::outbox` for the embedded file it mirrors).
//!
//! - `outbox_entries`: seq (from the `outbox_seq` sequence) → channel, the CBOR of the
//!   body (queued notification or rendered parts; CBOR because metrics may be NaN),
//!   when it was accepted, the parts confirmed (`next_part`) and why it failed for good;
//! - `outbox_sent`: when each channel's recent messages were confirmed (the last hour, at
//!   most [`SENT_KEEP_MAX`] per channel);
//! - `outbox_accepted`: (channel, notification id) → when, the last 7 days and at most
//!   [`ACCEPTED_KEEP_MAX`], so that a notification offered twice is refused.
//!
//! Each call is one transaction on the handle's own connection, committed before it
//! returns.

use chrono::{DateTime, Utc};
use sentinel_actors::outbox::{
    Backlog, EntryBody, Outbox, OutboxEntry, RenderedEntry, Seq, StoredNotification, ACCEPTED_KEEP,
    ACCEPTED_KEEP_MAX, SENT_KEEP, SENT_KEEP_MAX,
};
use sentinel_actors::OutboxError;
use tokio_postgres::{Client, Row};

use super::{At, DbSettings, Fail, StateDb};
use crate::gate::Access;

/// The durable outbox of `[state] dsn`.
pub struct PgOutbox {
    db: StateDb,
}

impl std::fmt::Debug for PgOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutbox").field("db", &self.db).finish()
    }
}

fn encode(body: &EntryBody) -> Result<Vec<u8>, Fail> {
    let mut bytes = Vec::new();
    ciborium::into_writer(body, &mut bytes)
        .map_err(|e| Fail::Corrupt("outbox entry", e.to_string()))?;
    Ok(bytes)
}

fn entry(r: &Row) -> Result<OutboxEntry, Fail> {
    let seq: i64 = r.get(0);
    let bytes: &[u8] = r.get(2);
    Ok(OutboxEntry {
        seq: seq as Seq,
        channel: r.get(1),
        body: ciborium::from_reader(bytes)
            .map_err(|e| Fail::Corrupt("outbox entry", format!("entry {seq}: {e}")))?,
        accepted_at: r.get(3),
        next_part: r.get::<_, i32>(4).max(0) as usize,
        failed: r.get(5),
    })
}

const COLUMNS: &str = "seq, channel, body, accepted_at, next_part, failed";

async fn append(
    c: &Client,
    channel: &str,
    body: &[u8],
    accepted_at: DateTime<Utc>,
) -> Result<Seq, Fail> {
    let seq: i64 = c
        .query_one(
            "INSERT INTO outbox_entries (seq, channel, body, accepted_at)
             VALUES (nextval('outbox_seq'), $1, $2, $3) RETURNING seq",
            &[&channel, &body, &accepted_at],
        )
        .await
        .at("write an outbox entry")?
        .get(0);
    Ok(seq as Seq)
}

/// Forgets accepted ids older than [`ACCEPTED_KEEP`], then the oldest past
/// [`ACCEPTED_KEEP_MAX`] down to nine tenths of it (as `accepted_to_forget`).
async fn forget_accepted(c: &Client, now: DateTime<Utc>) -> Result<(), Fail> {
    c.execute(
        "DELETE FROM outbox_accepted WHERE at < $1",
        &[&(now - ACCEPTED_KEEP)],
    )
    .await
    .at("forget old accepted ids")?;
    let n: i64 = c
        .query_one("SELECT count(*) FROM outbox_accepted", &[])
        .await
        .at("count accepted ids")?
        .get(0);
    if n as usize > ACCEPTED_KEEP_MAX {
        let excess = n - (ACCEPTED_KEEP_MAX - ACCEPTED_KEEP_MAX / 10) as i64;
        c.execute(
            "DELETE FROM outbox_accepted WHERE (channel, notification_id) IN (
                 SELECT channel, notification_id FROM outbox_accepted
                 ORDER BY at LIMIT $1)",
            &[&excess],
        )
        .await
        .at("forget accepted ids")?;
    }
    Ok(())
}

impl PgOutbox {
    /// Connects (and with `Access::ReadWrite` creates or migrates the schema, and
    /// forgets the accepted ids that are too old).
    pub fn open(db: &DbSettings, access: Access) -> Result<PgOutbox, OutboxError> {
        let outbox = PgOutbox {
            db: StateDb::open(db, access)?,
        };
        if access == Access::ReadWrite {
            outbox.db.transact(true, |c| {
                Box::pin(async move { forget_accepted(c, Utc::now()).await })
            })?;
        }
        Ok(outbox)
    }

    /// Where it is, for messages.
    pub fn target(&self) -> &str {
        self.db.target()
    }

    /// Every entry, oldest first (the `outbox` command lists them all).
    pub fn all(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        if self.db.version() == 0 {
            return Ok(Vec::new());
        }
        Ok(self.db.transact(false, |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!("SELECT {COLUMNS} FROM outbox_entries ORDER BY seq"),
                        &[],
                    )
                    .await
                    .at("read the outbox")?;
                rows.iter().map(entry).collect()
            })
        })?)
    }
}

impl Outbox for PgOutbox {
    /// A replica's outbox: only while its delivery lease holds by the local clock (no
    /// round trip before each send; the writes around it check the lease in the
    /// database).
    fn may_send(&self) -> Result<(), OutboxError> {
        match self.db.fence() {
            Some(f) if !f.valid(std::time::Instant::now()) => {
                Err(f.refused(self.db.target()).into())
            }
            _ => Ok(()),
        }
    }

    fn accept(&self, channel: &str, n: &StoredNotification) -> Result<Option<Seq>, OutboxError> {
        let channel = channel.to_string();
        let id = n.id as i64;
        let body = EntryBody::Queued(n.clone());
        Ok(self.db.transact(true, move |c| {
            Box::pin(async move {
                let body = encode(&body)?;
                let now = Utc::now();
                let fresh = c
                    .query_opt(
                        "INSERT INTO outbox_accepted (channel, notification_id, at)
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                        &[&channel, &id, &now],
                    )
                    .await
                    .at("remember an accepted id")?
                    .is_some();
                if !fresh {
                    return Ok(None);
                }
                forget_accepted(c, now).await?;
                append(c, &channel, &body, now).await.map(Some)
            })
        })?)
    }

    fn render(
        &self,
        channel: &str,
        replaces: &[Seq],
        entry: &RenderedEntry,
    ) -> Result<Seq, OutboxError> {
        let channel = channel.to_string();
        let replaces: Vec<i64> = replaces.iter().map(|s| *s as i64).collect();
        let body = EntryBody::Rendered(entry.clone());
        Ok(self.db.transact(true, move |c| {
            Box::pin(async move {
                let body = encode(&body)?;
                let oldest: Option<DateTime<Utc>> = c
                    .query_one(
                        "WITH gone AS (DELETE FROM outbox_entries WHERE seq = ANY($1)
                                       RETURNING accepted_at)
                         SELECT min(accepted_at) FROM gone",
                        &[&replaces],
                    )
                    .await
                    .at("replace queued entries")?
                    .get(0);
                append(c, &channel, &body, oldest.unwrap_or_else(Utc::now)).await
            })
        })?)
    }

    fn progress(&self, seq: Seq, next_part: usize) -> Result<(), OutboxError> {
        let part = next_part.min(i32::MAX as usize) as i32;
        self.db.execute(
            "record progress",
            "UPDATE outbox_entries SET next_part = $2 WHERE seq = $1",
            vec![Box::new(seq as i64), Box::new(part)],
        )?;
        Ok(())
    }

    fn fail(&self, seq: Seq, error: &str) -> Result<(), OutboxError> {
        self.db.execute(
            "mark an entry failed",
            "UPDATE outbox_entries SET failed = $2 WHERE seq = $1",
            vec![Box::new(seq as i64), Box::new(error.to_string())],
        )?;
        Ok(())
    }

    fn requeue(&self, seq: Seq) -> Result<bool, OutboxError> {
        let n = self.db.execute(
            "re-queue an entry",
            "UPDATE outbox_entries SET failed = NULL WHERE seq = $1 AND failed IS NOT NULL",
            vec![Box::new(seq as i64)],
        )?;
        Ok(n > 0)
    }

    fn done(&self, seq: Seq) -> Result<(), OutboxError> {
        self.db.execute(
            "remove a delivered entry",
            "DELETE FROM outbox_entries WHERE seq = $1",
            vec![Box::new(seq as i64)],
        )?;
        Ok(())
    }

    fn entries(&self, channel: &str) -> Result<Vec<OutboxEntry>, OutboxError> {
        if self.db.version() == 0 {
            return Ok(Vec::new());
        }
        let channel = channel.to_string();
        Ok(self.db.transact(false, move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM outbox_entries WHERE channel = $1 ORDER BY seq"
                        ),
                        &[&channel],
                    )
                    .await
                    .at("read the outbox")?;
                rows.iter().map(entry).collect()
            })
        })?)
    }

    fn backlog(&self) -> Result<Vec<Backlog>, OutboxError> {
        if self.db.version() == 0 {
            return Ok(Vec::new());
        }
        Ok(self.db.transact(false, |c| {
            Box::pin(async move {
                // Byte order of names, as the embedded outbox (and its BTreeMap) gives.
                let rows = c
                    .query(
                        "SELECT channel, count(*) FILTER (WHERE failed IS NULL),
                                count(*) FILTER (WHERE failed IS NOT NULL)
                         FROM outbox_entries GROUP BY channel ORDER BY channel COLLATE \"C\"",
                        &[],
                    )
                    .await
                    .at("count the outbox")?;
                Ok(rows
                    .iter()
                    .map(|r| Backlog {
                        channel: r.get(0),
                        pending: r.get::<_, i64>(1) as usize,
                        failed: r.get::<_, i64>(2) as usize,
                    })
                    .collect())
            })
        })?)
    }

    fn record_sent(&self, channel: &str, at: DateTime<Utc>) -> Result<(), OutboxError> {
        let channel = channel.to_string();
        Ok(self.db.transact(true, move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO outbox_sent (channel, at) VALUES ($1, $2)",
                    &[&channel, &at],
                )
                .await
                .at("record a send")?;
                // As `remember_sent`: the last hour before this one, at most SENT_KEEP_MAX.
                c.execute(
                    "DELETE FROM outbox_sent WHERE channel = $1 AND at < $2",
                    &[&channel, &(at - SENT_KEEP)],
                )
                .await
                .at("forget old sends")?;
                c.execute(
                    "DELETE FROM outbox_sent WHERE channel = $1 AND ctid NOT IN (
                         SELECT ctid FROM outbox_sent WHERE channel = $1
                         ORDER BY at DESC LIMIT $2)",
                    &[&channel, &(SENT_KEEP_MAX as i64)],
                )
                .await
                .at("forget old sends")?;
                Ok(())
            })
        })?)
    }

    fn sent_since(
        &self,
        channel: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>, OutboxError> {
        if self.db.version() == 0 {
            return Ok(Vec::new());
        }
        let channel = channel.to_string();
        Ok(self.db.transact(false, move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT at FROM outbox_sent WHERE channel = $1 AND at >= $2 ORDER BY at",
                        &[&channel, &since],
                    )
                    .await
                    .at("read sends")?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })
        })?)
    }
}
