//! Leases in the state database: who holds what (a server to collect, the delivery), until
//! when, with an epoch that grows at each change of holder — the fencing token.
//!
//! Why a table and not PostgreSQL's advisory locks: a session lock lives and dies with
//! one connection (a pooler in transaction mode hands it to someone else, a lock taken
//! twice on one session stacks and must be released twice, a killed backend frees it
//! while the process still believes it holds it), and it says nothing to the writes made
//! on *other* connections. A row with an expiry set by the database's own clock, renewed
//! in ordinary transactions, works through any pooler, cannot stack (acquiring what one
//! holds is a no-op), and its epoch can be checked inside every write transaction: a
//! replica that was paused past its lease (a GC pause, `SIGSTOP`, a VM migration) finds
//! its epoch stale at its next write and writes nothing ([`Fence`]).
//!
//! Time: expiries are the database's `now()` plus the lease, so replicas' clocks never
//! disagree about them. A replica also keeps a local deadline (its monotonic clock,
//! from *before* the renewal was sent, plus the lease, minus a margin): before each send,
//! a check that needs no round trip ([`Fence::valid`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::{At, Fail, StateDbError};

/// The lease of the delivery (the gate, its reports and every channel): one holder at a
/// time, so that a provider's quota holds for the whole fleet.
pub const DELIVERY: &str = "delivery";

/// The lease name of a server to collect.
pub fn server_lease(key: &str) -> String {
    format!("server:{key}")
}

/// The server key of a server lease name.
pub fn server_of(lease: &str) -> Option<&str> {
    lease.strip_prefix("server:")
}

/// A lease this process holds, as every write made under it checks it.
#[derive(Debug)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub epoch: i64,
    /// The local deadline: past it, the lease may have been taken over.
    until: Mutex<Instant>,
    lost: AtomicBool,
}

impl Fence {
    pub fn new(lease: &str, holder: &str, epoch: i64, until: Instant) -> Fence {
        Fence {
            lease: lease.to_string(),
            holder: holder.to_string(),
            epoch,
            until: Mutex::new(until),
            lost: AtomicBool::new(false),
        }
    }

    /// Does this process still hold the lease at `now`, by its own clock?
    pub fn valid(&self, now: Instant) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.until.lock().map(|u| now < *u).unwrap_or(false)
    }

    /// A renewal succeeded: held until `until` (never moved back).
    pub fn extend(&self, until: Instant) {
        if let Ok(mut u) = self.until.lock() {
            *u = (*u).max(until);
        }
    }

    /// The lease is gone: every later check fails.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// The error a write refused by this fence returns.
    pub fn refused(&self, target: &str) -> StateDbError {
        StateDbError::Fenced {
            target: target.to_string(),
            lease: self.lease.clone(),
            epoch: self.epoch,
        }
    }

    /// Inside a write transaction: holds the lease row (`FOR SHARE`, so that a takeover
    /// waits for this transaction's COMMIT) if it is still this holder's, at this epoch,
    /// unexpired by the database's clock. Else the transaction writes nothing.
    pub async fn check(&self, c: &Client, target: &str) -> Result<(), Fail> {
        let held = c
            .query_opt(
                "SELECT 1 FROM leases
                 WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                 FOR SHARE",
                &[&self.lease, &self.holder, &self.epoch],
            )
            .await
            .at("check the lease")?
            .is_some();
        if held {
            Ok(())
        } else {
            self.lose();
            Err(Fail::Db(self.refused(target)))
        }
    }
}

/// A live member as the state database knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
}

/// A lease row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub name: String,
    pub holder: Option<String>,
    pub epoch: i64,
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Who this process is, as it writes itself in `members`.
#[derive(Debug, Clone)]
pub struct Me {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
}

/// What one beat asks: the servers this process wants (and does not hold yet), those it
/// gives back, whether it wants the delivery.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub acquire: Vec<String>,
    pub release: Vec<String>,
    pub delivery: bool,
    /// Give the delivery back (a clean stop).
    pub release_delivery: bool,
}

/// What one beat found: the leases this process holds after it (name → epoch), those it
/// acquired in it (a hand-over when their epoch is above 1), the live members, every
/// lease, and the findings queue.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    pub held: Vec<(String, i64)>,
    pub acquired: Vec<(String, i64)>,
    pub members: Vec<Member>,
    pub leases: Vec<LeaseRow>,
    pub queue_depth: i64,
    pub queue_oldest: Option<DateTime<Utc>>,
}

/// One beat, in one transaction: this member's heartbeat, the renewal of every lease it
/// holds, what it gives back, what it takes (only leases that are free or expired: one
/// it holds is not taken again, one another holds is left to it), then what everyone
/// holds. `ttl` is the lease.
pub async fn beat(c: &Client, me: &Me, ttl: Duration, ask: &Ask) -> Result<Beat, Fail> {
    let ttl_ms = ttl.as_millis() as f64;
    c.execute(
        "INSERT INTO members (id, host, pid, version, started_at, seen_at, expires_at)
         VALUES ($1, $2, $3, $4, now(), now(), now() + $5 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET seen_at = now(), expires_at = excluded.expires_at",
        &[&me.id, &me.host, &me.pid, &me.version, &ttl_ms],
    )
    .await
    .at("record the heartbeat")?;
    // Members gone for a while leave the table (the live ones are those unexpired).
    c.execute(
        "DELETE FROM members WHERE expires_at < now() - interval '10 minutes'",
        &[],
    )
    .await
    .at("forget old members")?;
    let mut release = ask.release.clone();
    if ask.release_delivery {
        release.push(DELIVERY.to_string());
    }
    if !release.is_empty() {
        c.execute(
            "UPDATE leases SET holder = NULL, expires_at = now()
             WHERE holder = $1 AND name = ANY($2)",
            &[&me.id, &release],
        )
        .await
        .at("give leases back")?;
    }
    c.execute(
        "UPDATE leases SET expires_at = now() + $2 * interval '1 millisecond'
         WHERE holder = $1 AND expires_at > now()",
        &[&me.id, &ttl_ms],
    )
    .await
    .at("renew the leases")?;
    let mut wanted = ask.acquire.clone();
    if ask.delivery {
        wanted.push(DELIVERY.to_string());
    }
    let mut acquired = Vec::new();
    if !wanted.is_empty() {
        // New names first (no row to lock), then the free or expired ones. SKIP LOCKED:
        // a row another transaction holds (a delivering replica's write checking its
        // fence) is not waited for; it is taken at a later beat, so a holder frozen in
        // the middle of a write never stalls everyone's beat.
        let fresh = c
            .query(
                "INSERT INTO leases (name, holder, epoch, since, expires_at)
                 SELECT n, $1, 1, now(), now() + $3 * interval '1 millisecond'
                 FROM unnest($2::text[]) n
                 ON CONFLICT (name) DO NOTHING
                 RETURNING name, epoch",
                &[&me.id, &wanted, &ttl_ms],
            )
            .await
            .at("take new leases")?;
        let free = c
            .query(
                "WITH free AS (
                     SELECT name FROM leases
                     WHERE name = ANY($2) AND (holder IS NULL OR expires_at <= now())
                     FOR UPDATE SKIP LOCKED)
                 UPDATE leases l
                 SET holder = $1, epoch = l.epoch + 1, since = now(),
                     expires_at = now() + $3 * interval '1 millisecond'
                 FROM free WHERE l.name = free.name
                 RETURNING l.name, l.epoch",
                &[&me.id, &wanted, &ttl_ms],
            )
            .await
            .at("take leases")?;
        for r in fresh.iter().chain(&free) {
            acquired.push((r.get(0), r.get(1)));
        }
    }
    let leases = read_leases(c).await?;
    let held = leases
        .iter()
        .filter(|l| l.holder.as_deref() == Some(me.id.as_str()))
        .map(|l| (l.name.clone(), l.epoch))
        .collect();
    let members = live_members(c).await?;
    let q = c
        .query_one("SELECT count(*), min(queued_at) FROM findings", &[])
        .await
        .at("measure the findings queue")?;
    Ok(Beat {
        held,
        acquired,
        members,
        leases,
        queue_depth: q.get(0),
        queue_oldest: q.get(1),
    })
}

/// Every lease, by name; the holder of an expired one reads as none.
async fn read_leases(c: &Client) -> Result<Vec<LeaseRow>, Fail> {
    Ok(c.query(
        "SELECT name, CASE WHEN expires_at > now() THEN holder END, epoch, since, expires_at
             FROM leases ORDER BY name",
        &[],
    )
    .await
    .at("read the leases")?
    .iter()
    .map(|r| LeaseRow {
        name: r.get(0),
        holder: r.get(1),
        epoch: r.get(2),
        since: r.get(3),
        expires_at: r.get(4),
    })
    .collect())
}

/// The members whose heartbeat has not expired, oldest first.
pub async fn live_members(c: &Client) -> Result<Vec<Member>, Fail> {
    Ok(c.query(
        "SELECT id, host, pid, version, started_at, seen_at FROM members
             WHERE expires_at > now() ORDER BY started_at, id",
        &[],
    )
    .await
    .at("read the members")?
    .iter()
    .map(|r| Member {
        id: r.get(0),
        host: r.get(1),
        pid: r.get(2),
        version: r.get(3),
        started_at: r.get(4),
        seen_at: r.get(5),
    })
    .collect())
}

/// A clean stop: every lease given back and the member gone, so that the others take
/// over at their next beat instead of after the lease.
pub async fn leave(c: &Client, me: &str) -> Result<(), Fail> {
    c.execute(
        "UPDATE leases SET holder = NULL, expires_at = now() WHERE holder = $1",
        &[&me],
    )
    .await
    .at("give the leases back")?;
    c.execute("DELETE FROM members WHERE id = $1", &[&me])
        .await
        .at("leave the members")?;
    Ok(())
}

/// What `check` and `/status` show: the live members, and every lease held.
pub async fn overview(c: &Client) -> Result<(Vec<Member>, Vec<LeaseRow>), Fail> {
    let members = live_members(c).await?;
    let leases = read_leases(c)
        .await?
        .into_iter()
        .filter(|l| l.holder.is_some())
        .collect();
    Ok((members, leases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_fails_past_its_deadline_and_once_lost() {
        let t0 = Instant::now();
        let f = Fence::new(DELIVERY, "a", 3, t0 + Duration::from_secs(10));
        assert!(f.valid(t0));
        assert!(
            !f.valid(t0 + Duration::from_secs(10)),
            "the deadline is exclusive"
        );
        f.extend(t0 + Duration::from_secs(20));
        assert!(f.valid(t0 + Duration::from_secs(15)));
        f.extend(t0 + Duration::from_secs(5));
        assert!(f.valid(t0 + Duration::from_secs(15)), "never moved back");
        f.lose();
        assert!(!f.valid(t0));
        assert!(f.refused("db").to_string().contains("epoch 3"));
    }

    #[test]
    fn server_leases_name_their_server() {
        let l = server_lease("main/local");
        assert_eq!(l, "server:main/local");
        assert_eq!(server_of(&l), Some("main/local"));
        assert_eq!(server_of(DELIVERY), None);
    }
}
