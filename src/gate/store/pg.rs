//! The gate's store in the state database (`[state] dsn`): the tables of
//! [`crate::statedb::schema`], one transaction per call on one connection
//! ([`StateDb`]).
//!
//! A decision ([`GateStore::write`]) is one transaction of a few statements, one per
//! table it touches, each carrying all its rows as arrays (`unnest`): the cost of a
//! commit does not grow with round trips per scope. Ids (silences, notifications) come
//! from `meta`, updated in the same transaction as what uses them, so two processes never
//! give one id twice.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::{Commit, GateStore, Loaded, StoreError};
use crate::gate::ack::Ack;
use crate::gate::silence::Silence;
use crate::gate::Access;
use crate::statedb::{At, DbSettings, Fail, StateDb};

const NEXT_NOTIFICATION_ID: &str = "next_notification_id";
const NEXT_SILENCE_ID: &str = "next_silence_id";

/// The gate's tables in the state database.
pub struct PgStore {
    db: StateDb,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("db", &self.db).finish()
    }
}

/// A commit as owned rows, encoded by the caller, sent to the connection's thread.
#[derive(Default)]
struct Rows {
    scope_keys: Vec<String>,
    scope_bodies: Vec<String>,
    held_ids: Vec<i64>,
    held_bodies: Vec<String>,
    held_del: Vec<i64>,
    beat_keys: Vec<String>,
    beat_bodies: Vec<String>,
    acks_del: Vec<i64>,
    intent_ids: Vec<i64>,
    intent_bodies: Vec<Vec<u8>>,
    intents_del: Vec<i64>,
    next_notification_id: Option<i64>,
    consumed: Vec<i64>,
}

/// Ids and fingerprints are u64; PostgreSQL has signed bigints: the same 64 bits.
fn sql_id(v: u64) -> i64 {
    v as i64
}

fn json<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Db {
        path: "state database".into(),
        reason: format!("cannot encode a {what}: {e}"),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, Fail> {
    serde_json::from_str(text).map_err(|e| Fail::Corrupt(what, e.to_string()))
}

impl Rows {
    fn of(c: &Commit<'_>) -> Result<Rows, StoreError> {
        let mut r = Rows::default();
        for (k, s) in &c.scopes {
            r.scope_keys.push(k.to_string());
            r.scope_bodies.push(json("scope", s)?);
        }
        for h in &c.held_put {
            r.held_ids.push(sql_id(h.id));
            r.held_bodies.push(json("held item", h)?);
        }
        r.held_del = c.held_del.iter().map(|id| sql_id(*id)).collect();
        for (k, b) in &c.beats_put {
            r.beat_keys.push(k.to_string());
            r.beat_bodies.push(json("heartbeat state", b)?);
        }
        r.acks_del = c.acks_del.iter().map(|fp| sql_id(fp.0)).collect();
        for n in &c.intents_put {
            let mut bytes = Vec::new();
            ciborium::into_writer(n, &mut bytes).map_err(|e| StoreError::Db {
                path: "state database".into(),
                reason: format!("cannot encode a notification: {e}"),
            })?;
            r.intent_ids.push(sql_id(n.id));
            r.intent_bodies.push(bytes);
        }
        r.intents_del = c.intents_del.iter().map(|id| sql_id(*id)).collect();
        r.next_notification_id = c.next_notification_id.map(sql_id);
        r.consumed = c.consumed.iter().map(|p| sql_id(*p)).collect();
        Ok(r)
    }

    async fn write(self, c: &Client) -> Result<(), Fail> {
        // The queued reports this decision consumed leave the queue with it.
        crate::statedb::queue::remove(c, &self.consumed).await?;
        if !self.scope_keys.is_empty() {
            c.execute(
                "INSERT INTO scopes (key, body)
                 SELECT k, b::jsonb FROM unnest($1::text[], $2::text[]) AS t(k, b)
                 ON CONFLICT (key) DO UPDATE SET body = excluded.body",
                &[&self.scope_keys, &self.scope_bodies],
            )
            .await
            .at("write scopes")?;
        }
        if !self.held_del.is_empty() {
            c.execute("DELETE FROM held WHERE id = ANY($1)", &[&self.held_del])
                .await
                .at("remove held items")?;
        }
        if !self.held_ids.is_empty() {
            c.execute(
                "INSERT INTO held (id, body)
                 SELECT i, b::jsonb FROM unnest($1::bigint[], $2::text[]) AS t(i, b)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&self.held_ids, &self.held_bodies],
            )
            .await
            .at("write held items")?;
        }
        if !self.beat_keys.is_empty() {
            c.execute(
                "INSERT INTO beats (channel, body)
                 SELECT k, b::jsonb FROM unnest($1::text[], $2::text[]) AS t(k, b)
                 ON CONFLICT (channel) DO UPDATE SET body = excluded.body",
                &[&self.beat_keys, &self.beat_bodies],
            )
            .await
            .at("write heartbeat states")?;
        }
        if !self.acks_del.is_empty() {
            c.execute(
                "DELETE FROM acks WHERE fingerprint = ANY($1)",
                &[&self.acks_del],
            )
            .await
            .at("remove acknowledgements")?;
        }
        if !self.intents_del.is_empty() {
            c.execute(
                "DELETE FROM intents WHERE id = ANY($1)",
                &[&self.intents_del],
            )
            .await
            .at("remove notifications to send")?;
        }
        if !self.intent_ids.is_empty() {
            c.execute(
                "INSERT INTO intents (id, body)
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&self.intent_ids, &self.intent_bodies],
            )
            .await
            .at("write notifications to send")?;
        }
        if let Some(next) = self.next_notification_id {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&NEXT_NOTIFICATION_ID, &next],
            )
            .await
            .at("write the next notification id")?;
        }
        Ok(())
    }
}

async fn read_silences(c: &Client) -> Result<Vec<Silence>, Fail> {
    let rows = c
        .query("SELECT body::text FROM silences ORDER BY id", &[])
        .await
        .at("read silences")?;
    let mut all = Vec::with_capacity(rows.len());
    for r in rows {
        let mut s: Silence = from_json("silence", r.get(0))?;
        s.compile();
        all.push(s);
    }
    Ok(all)
}

async fn read_acks(c: &Client) -> Result<Vec<Ack>, Fail> {
    let rows = c
        .query("SELECT body::text FROM acks ORDER BY fingerprint", &[])
        .await
        .at("read acknowledgements")?;
    rows.iter()
        .map(|r| from_json("acknowledgement", r.get(0)))
        .collect()
}

async fn read_all(c: &Client) -> Result<Loaded, Fail> {
    let mut out = Loaded::default();
    for r in c
        .query("SELECT key, body::text FROM scopes", &[])
        .await
        .at("read scopes")?
    {
        out.scopes.insert(r.get(0), from_json("scope", r.get(1))?);
    }
    for r in c
        .query("SELECT body::text FROM held ORDER BY id", &[])
        .await
        .at("read held items")?
    {
        out.held.push(from_json("held item", r.get(0))?);
    }
    for r in c
        .query("SELECT channel, body::text FROM beats", &[])
        .await
        .at("read heartbeat states")?
    {
        out.beats
            .insert(r.get(0), from_json("heartbeat state", r.get(1))?);
    }
    for r in c
        .query("SELECT body FROM intents ORDER BY id", &[])
        .await
        .at("read notifications to send")?
    {
        let bytes: &[u8] = r.get(0);
        out.intents.push(
            ciborium::from_reader(bytes)
                .map_err(|e| Fail::Corrupt("notification to send", e.to_string()))?,
        );
    }
    out.next_notification_id = c
        .query_opt(
            "SELECT value FROM meta WHERE key = $1",
            &[&NEXT_NOTIFICATION_ID],
        )
        .await
        .at("read the next notification id")?
        .map_or(0, |r| r.get::<_, i64>(0) as u64);
    out.silences = read_silences(c).await?;
    out.acks = read_acks(c).await?;
    Ok(out)
}

impl PgStore {
    /// Connects (and with `Access::ReadWrite` creates or migrates the schema).
    pub fn open(db: &DbSettings, access: Access) -> Result<PgStore, StoreError> {
        Ok(PgStore {
            db: StateDb::open(db, access)?,
        })
    }

    /// The schema version found or reached at open (0: a preview found none yet).
    pub fn version(&self) -> i32 {
        self.db.version()
    }

    /// A preview that found no schema reads an empty state (nothing was ever kept).
    fn empty(&self) -> bool {
        self.db.version() == 0
    }
}

impl GateStore for PgStore {
    fn describe(&self) -> String {
        format!("state database {}", self.db.target())
    }

    fn is_read_only(&self) -> bool {
        self.db.is_read_only()
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        if self.empty() {
            return Ok(Loaded::default());
        }
        Ok(self
            .db
            .transact(false, |c| Box::pin(async move { read_all(c).await }))?)
    }

    /// A silence typed by a person takes effect within a second.
    fn refresh_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        if self.empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .db
            .transact(false, |c| Box::pin(async move { read_silences(c).await }))?)
    }

    fn acks(&self) -> Result<Vec<Ack>, StoreError> {
        if self.empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .db
            .transact(false, |c| Box::pin(async move { read_acks(c).await }))?)
    }

    fn add_ack(&self, a: &Ack) -> Result<(), StoreError> {
        let fp = sql_id(a.fingerprint.0);
        let body = json("acknowledgement", a)?;
        Ok(self.db.transact(true, move |c| {
            Box::pin(async move {
                c.execute(
                    "INSERT INTO acks (fingerprint, body) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (fingerprint) DO UPDATE SET body = excluded.body",
                    &[&fp, &body],
                )
                .await
                .at("write an acknowledgement")?;
                Ok(())
            })
        })?)
    }

    fn add_silence(&self, s: Silence) -> Result<Silence, StoreError> {
        Ok(self.db.transact(true, move |c| {
            Box::pin(async move {
                let mut s = s;
                // The row is locked by the update until COMMIT: two processes adding at
                // once get consecutive ids.
                let id: i64 = c
                    .query_one(
                        "INSERT INTO meta (key, value) VALUES ($1, 2)
                         ON CONFLICT (key) DO UPDATE SET value = meta.value + 1
                         RETURNING value - 1",
                        &[&NEXT_SILENCE_ID],
                    )
                    .await
                    .at("take the next silence id")?
                    .get(0);
                s.id = id as u64;
                let body = serde_json::to_string(&s)
                    .map_err(|e| Fail::Corrupt("silence", e.to_string()))?;
                c.execute(
                    "INSERT INTO silences (id, body) VALUES ($1, $2::text::jsonb)",
                    &[&id, &body],
                )
                .await
                .at("write a silence")?;
                Ok(s)
            })
        })?)
    }

    fn expire_silence(&self, id: u64, at: DateTime<Utc>) -> Result<Option<Silence>, StoreError> {
        let key = sql_id(id);
        Ok(self.db.transact(true, move |c| {
            Box::pin(async move {
                let Some(row) = c
                    .query_opt(
                        "SELECT body::text FROM silences WHERE id = $1 FOR UPDATE",
                        &[&key],
                    )
                    .await
                    .at("read a silence")?
                else {
                    return Ok(None);
                };
                let mut s: Silence = from_json("silence", row.get(0))?;
                if s.ends_at > at {
                    s.ends_at = at;
                }
                let body = serde_json::to_string(&s)
                    .map_err(|e| Fail::Corrupt("silence", e.to_string()))?;
                c.execute(
                    "UPDATE silences SET body = $2::text::jsonb WHERE id = $1",
                    &[&key, &body],
                )
                .await
                .at("write a silence")?;
                s.compile();
                Ok(Some(s))
            })
        })?)
    }

    fn write(&self, c: &Commit<'_>) -> Result<(), StoreError> {
        let rows = Rows::of(c)?;
        Ok(self
            .db
            .transact(true, move |client| Box::pin(rows.write(client)))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_64_bits() {
        for v in [0, 1, u64::MAX, 1 << 63, (1_772_409_600_000_000u64) << 8] {
            assert_eq!(sql_id(v) as u64, v);
        }
    }

    #[test]
    fn a_commit_becomes_rows_deletions_apart() {
        let fp = sentinel_actors::Fingerprint(u64::MAX);
        let c = Commit {
            held_del: vec![3],
            intents_del: vec![u64::MAX],
            acks_del: vec![fp],
            next_notification_id: Some(9),
            ..Commit::default()
        };
        let r = Rows::of(&c).unwrap();
        assert_eq!(r.held_del, [3]);
        assert_eq!(r.intents_del, [-1]);
        assert_eq!(r.acks_del, [-1]);
        assert_eq!(r.next_notification_id, Some(9));
        assert!(r.scope_keys.is_empty() && r.held_ids.is_empty());
    }
}
