//! The beat: every `lease / 3`, one transaction on the state database that records this
//! member's heartbeat, renews its leases, gives back and takes what [`super::plan`] says,
//! and reads who holds what. Then it tells the collection what it may collect
//! ([`super::Owned`]) and the delivery side whether it delivers (a [`Fence`] to write
//! under, or none).
//!
//! When the state database does not answer, nothing is renewed: at the local deadline
//! (the last successful beat's start plus the lease, minus a margin) this member stops
//! collecting and delivering, before any other member can take over — never two at
//! once. It carries on when the database answers again.
//!
//! The first beat only joins (heartbeat, no lease taken): members started together see
//! each other at their second beat, so the servers are not all taken by the first one
//! and handed over right after.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use slog::{info, warn, Logger};
use tokio::sync::watch;

use sentinel_actors::task::{Cancel, Task};

use super::{plan, to_collect, Owned};
use crate::collection::{show, update};
use crate::http::StatusBoard;
use crate::metrics::metrics;
use crate::statedb::lease::{self, server_of, Beat, Fence, Me, DELIVERY};
use crate::statedb::StateDb;

/// `/status` → `replicas`: this member, the live members and what each holds, the
/// delivery, the findings queue.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaStatus {
    pub me: String,
    pub lease_seconds: f64,
    pub members: Vec<MemberStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<HolderStatus>,
    /// The servers this member collects.
    pub collecting: Vec<String>,
    pub queue_depth: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_oldest_age_seconds: Option<f64>,
    /// Leases this member took over from another holder since it started.
    pub handovers: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_beat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemberStatus {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: String,
    pub last_seen: String,
    /// Server leases it holds.
    pub servers: usize,
    pub delivers: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HolderStatus {
    pub holder: String,
    pub epoch: i64,
    pub since: String,
}

/// This process as a member: `host:pid:random`, unique per start.
pub fn me() -> Me {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let pid = std::process::id() as i32;
    let salt = Utc::now().timestamp_subsec_nanos() ^ (pid as u32).rotate_left(16);
    Me {
        id: format!("{host}:{pid}:{:04x}", salt & 0xffff),
        host,
        pid,
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// The running beat, what it shares, and how to leave.
pub struct Handle {
    pub owned: Rc<Owned>,
    pub delivery: watch::Receiver<Option<Arc<Fence>>>,
    pub me: Me,
    pub db: Arc<StateDb>,
    task: Task,
}

impl Handle {
    /// A clean stop: the beat ends, then every lease is given back and the member
    /// leaves, so the others take over at their next beat.
    pub async fn leave(self, log: &Logger) {
        self.task.stop().await;
        let db = Arc::clone(&self.db);
        let id = self.me.id.clone();
        let left = tokio::task::spawn_blocking(move || {
            db.transact(true, move |c| {
                Box::pin(async move { lease::leave(c, &id).await })
            })
        })
        .await;
        match left {
            Ok(Ok(())) => info!(
                log,
                "Left the replicas; the others take over at their next beat."
            ),
            Ok(Err(e)) => {
                warn!(log, "Could not give the leases back; the others take over when they expire."; "error" => %e)
            }
            Err(e) => warn!(log, "Could not give the leases back."; "error" => %e),
        }
    }
}

/// Starts the beat on `db` with lease `ttl`.
pub fn start(
    db: Arc<StateDb>,
    ttl: Duration,
    board: StatusBoard,
    tz: chrono_tz::Tz,
    log: Logger,
) -> Handle {
    let me = me();
    let owned = Rc::new(Owned::new(&me.id));
    let (tx, rx) = watch::channel(None);
    info!(log, "Joining the replicas."; "member" => &me.id, "lease" => %humantime::format_duration(ttl));
    let task = Task::spawn({
        let beat = Beating {
            db: Arc::clone(&db),
            me: me.clone(),
            ttl,
            owned: Rc::clone(&owned),
            delivery: tx,
            board,
            tz,
            log,
        };
        move |cancel| beat.run(cancel)
    });
    Handle {
        owned,
        delivery: rx,
        me,
        db,
        task,
    }
}

struct Beating {
    db: Arc<StateDb>,
    me: Me,
    ttl: Duration,
    owned: Rc<Owned>,
    delivery: watch::Sender<Option<Arc<Fence>>>,
    board: StatusBoard,
    tz: chrono_tz::Tz,
    log: Logger,
}

/// How much earlier than the lease a member stops by its own clock: room for the clocks'
/// rates to differ and for the send in flight.
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(500)).min(ttl / 3)
}

impl Beating {
    async fn run(self, mut cancel: Cancel) {
        let every = self.ttl / 3;
        let mut first = true;
        let mut members: Vec<String> = Vec::new();
        let mut held: BTreeSet<String> = BTreeSet::new();
        let mut until: Option<Instant> = None;
        let mut handovers = 0u64;
        loop {
            let candidates = self.owned.candidates();
            let mut ask = if first {
                Default::default()
            } else {
                plan(
                    &self.me.id,
                    &members,
                    &candidates,
                    &held,
                    &self.owned.running(),
                )
            };
            ask.delivery = !first && self.delivery.borrow().is_none();
            let started = Instant::now();
            let mut call = {
                let (db, me, ttl) = (Arc::clone(&self.db), self.me.clone(), self.ttl);
                tokio::task::spawn_blocking(move || {
                    db.transact(true, move |c| {
                        Box::pin(async move { lease::beat(c, &me, ttl, &ask).await })
                    })
                })
            };
            let result = loop {
                let deadline = until.map(tokio::time::Instant::from_std);
                tokio::select! {
                    r = &mut call => break r,
                    _ = sleep_until(deadline) => {
                        self.lose_all("the state database did not renew the leases in time");
                        until = None;
                        held.clear();
                    }
                    _ = cancel.cancelled() => return,
                }
            };
            match result {
                Ok(Ok(beat)) => {
                    let deadline = started + self.ttl - margin(self.ttl);
                    until = Some(deadline);
                    members = beat.members.iter().map(|m| m.id.clone()).collect();
                    held = beat
                        .held
                        .iter()
                        .filter_map(|(n, _)| server_of(n).map(str::to_string))
                        .collect();
                    handovers += beat.acquired.iter().filter(|(_, e)| *e > 1).count() as u64;
                    for (name, epoch) in beat.acquired.iter().filter(|(_, e)| *e > 1) {
                        metrics().handover(if name == DELIVERY {
                            "delivery"
                        } else {
                            "server"
                        });
                        if name == DELIVERY {
                            info!(self.log, "Took the delivery over."; "epoch" => epoch);
                        }
                    }
                    self.owned
                        .set_collect(to_collect(&self.me.id, &members, &candidates, &held));
                    self.deliver(&beat, deadline);
                    self.show(&beat, handovers, None);
                }
                Ok(Err(e)) => {
                    warn!(self.log, "The beat failed; the leases run until their deadline."; "error" => %e);
                    self.show_error(&e.to_string());
                    if until.is_some_and(|u| Instant::now() >= u) {
                        self.lose_all("the state database did not renew the leases in time");
                        until = None;
                        held.clear();
                    }
                }
                Err(e) => {
                    warn!(self.log, "The beat failed."; "error" => %e);
                }
            }
            first = false;
            if !cancel.sleep(every).await {
                return;
            }
        }
    }

    /// Starts, extends or ends the delivery from what the beat found.
    fn deliver(&self, beat: &Beat, deadline: Instant) {
        let epoch = beat
            .held
            .iter()
            .find(|(n, _)| n == DELIVERY)
            .map(|(_, e)| *e);
        let current = self.delivery.borrow().clone();
        match (current, epoch) {
            (Some(f), Some(e)) if f.epoch == e => f.extend(deadline),
            (current, Some(e)) => {
                if let Some(f) = current {
                    f.lose();
                }
                info!(self.log, "This replica delivers now."; "epoch" => e);
                let fence = Arc::new(Fence::new(DELIVERY, &self.me.id, e, deadline));
                let _ = self.delivery.send(Some(fence));
            }
            (Some(f), None) => {
                warn!(self.log, "The delivery lease is gone; this replica stops delivering."; "epoch" => f.epoch);
                f.lose();
                let _ = self.delivery.send(None);
            }
            (None, None) => {}
        }
        metrics().leases_held("delivery", i64::from(epoch.is_some()));
    }

    fn lose_all(&self, why: &str) {
        warn!(self.log, "Lost the leases: collection and delivery stop here until the state database answers (another replica may take over)."; "reason" => why);
        self.owned.set_collect(BTreeSet::new());
        // Not inside `if let` on the borrow: its read guard would outlive the send.
        let current = self.delivery.borrow().clone();
        if let Some(f) = current {
            f.lose();
            let _ = self.delivery.send(None);
        }
        metrics().leases_held("delivery", 0);
        metrics().leases_held("server", 0);
        self.show_error(why);
        update(&self.board, |s| {
            if let Some(r) = s.replicas.as_mut() {
                r.collecting.clear();
            }
        });
    }

    fn show(&self, beat: &Beat, handovers: u64, error: Option<String>) {
        let now = Utc::now();
        let held_by = |id: &str| {
            beat.leases
                .iter()
                .filter(|l| l.holder.as_deref() == Some(id) && server_of(&l.name).is_some())
                .count()
        };
        let delivery = beat
            .leases
            .iter()
            .find(|l| l.name == DELIVERY && l.holder.is_some());
        let collecting: Vec<String> = self.owned.collecting().into_iter().collect();
        metrics().leases_held("server", collecting.len() as i64);
        metrics().set_queue_depth("findings", beat.queue_depth);
        let oldest = beat
            .queue_oldest
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics().queue_age("findings", oldest.unwrap_or(0.0));
        let status = ReplicaStatus {
            me: self.me.id.clone(),
            lease_seconds: self.ttl.as_secs_f64(),
            members: beat
                .members
                .iter()
                .map(|m| MemberStatus {
                    id: m.id.clone(),
                    host: m.host.clone(),
                    pid: m.pid,
                    version: m.version.clone(),
                    started_at: show(self.tz, m.started_at),
                    last_seen: show(self.tz, m.seen_at),
                    servers: held_by(&m.id),
                    delivers: delivery.is_some_and(|d| d.holder.as_deref() == Some(&m.id)),
                })
                .collect(),
            delivery: delivery.map(|d| HolderStatus {
                holder: d.holder.clone().unwrap_or_default(),
                epoch: d.epoch,
                since: show(self.tz, d.since),
            }),
            collecting,
            queue_depth: beat.queue_depth,
            queue_oldest_age_seconds: oldest,
            handovers,
            last_beat: Some(show(self.tz, now)),
            error,
        };
        update(&self.board, |s| s.replicas = Some(status));
    }

    fn show_error(&self, e: &str) {
        update(&self.board, |s| {
            let r = s.replicas.get_or_insert_with(Default::default);
            r.me.clone_from(&self.me.id);
            r.error = Some(crate::logging::redact(e));
        });
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_stops_well_before_its_lease_ends() {
        assert_eq!(margin(Duration::from_secs(15)), Duration::from_millis(1500));
        assert_eq!(margin(Duration::from_secs(3)), Duration::from_millis(500));
        assert_eq!(margin(Duration::from_secs(1)), Duration::from_secs(1) / 3);
    }

    #[test]
    fn a_member_names_its_host_and_process() {
        let m = me();
        assert!(
            m.id.starts_with(&format!("{}:{}:", m.host, m.pid)),
            "{}",
            m.id
        );
    }
}
