//! Replicas: several `run` processes on the same configuration and the same state database
//! (`[state] dsn`) share the work, and never send twice.
//!
//! ```text
//!  every replica                                   the replica holding `delivery`
//!  beat (lease/3): heartbeat, renew, take, give ─┐  gate + channels + reports, fenced
//!  collect the servers it holds ─▶ analyzers ─▶ findings queue ─▶ consumer ─▶ gate
//! ```
//!
//! - **Who collects what**: each server goes to the live member that ranks first for it
//!   by rendezvous hashing with bounded loads ([`assign`]): every member computes the same answer from the
//!   same member list, a member joining or leaving moves only its share. A member
//!   collects a server only while it holds the server's lease ([`crate::statedb::lease`]),
//!   takes it only when free, and gives it back only after its collector stopped: never
//!   two collectors on one server.
//! - **Who delivers**: the one holding the `delivery` lease (the first to find it free
//!   keeps it until it stops or dies). The gate's decisions and every outbox write check
//!   that lease's epoch in their transaction; each send checks its local deadline first.
//! - **What travels**: the analyzers' reports, through the findings queue
//!   ([`crate::statedb::queue`]), written under the server's lease, consumed by the
//!   delivering replica and removed in the gate's commit of their decision.
//!
//! This module is the pure core (who should hold what, what to ask for) and the shared
//! view the collection reads ([`Owned`]); [`coordinator`] is the task that beats,
//! [`forward`] the analyzers' side of the queue, [`consume`] the delivery's side.

pub mod consume;
pub mod coordinator;
pub mod forward;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use sentinel_actors::Fingerprint;
use tokio::sync::watch;

use crate::statedb::lease::{server_lease, Ask};

/// Who collects which of `candidates` among `members`: rendezvous hashing with bounded
/// loads. Keys are taken in the order of their own hash; each goes to the member that
/// ranks it highest among those not yet at the cap, `ceil(1.05 × keys / members)`. Every
/// member computes the same map from the same inputs; one joining or leaving moves its
/// own share and few others (the cap), and no member holds more than 5 % above an even
/// share, so none less than 10 % below it with three members.
///
/// Plain rendezvous hashing leaves the shares to chance: about 4.5 % of deviation per
/// member for 1,000 servers on three, 13 % in one trial of thirty.
pub fn assign<'a>(
    members: &'a [String],
    candidates: &BTreeSet<String>,
) -> BTreeMap<String, &'a str> {
    let mut out = BTreeMap::new();
    if members.is_empty() {
        return out;
    }
    let n = candidates.len();
    let cap = (n * 105).div_ceil(members.len() * 100).max(1);
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    let mut keys: Vec<&String> = candidates.iter().collect();
    keys.sort_by_key(|k| (rank("", k), k.as_str()));
    for key in keys {
        let mut ranked: Vec<&'a String> = members.iter().collect();
        ranked.sort_by_key(|m| std::cmp::Reverse((rank(m, key), m.as_str())));
        let chosen = ranked
            .iter()
            .find(|m| load.get(m.as_str()).copied().unwrap_or(0) < cap)
            .unwrap_or(&ranked[0]);
        *load.entry(chosen.as_str()).or_default() += 1;
        out.insert(key.clone(), chosen.as_str());
    }
    out
}

/// A member's rank for a key. FNV alone spreads strings that differ in a few characters
/// (`fleet-1`, `fleet-2`, member ids that share their host) unevenly — 409/242/350 of
/// 1,001 servers on three members were measured — so its value goes through a
/// finalizer (MurmurHash3's fmix64) that makes every input bit move every output bit.
fn rank(member: &str, key: &str) -> u64 {
    let mut h = Fingerprint::of([member, key]).0;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What a member should ask at its next beat, from what it knows now.
///
/// - `members`: the live members (itself included) of the last beat;
/// - `candidates`: every server its repositories found;
/// - `held`: the servers it holds leases on; `running`: those its collection runs.
///
/// It takes the servers it should own and does not hold, and gives back those it holds
/// and should not own, once their collector stopped (until then it keeps the lease, so
/// nobody else starts collecting them).
pub fn plan(
    me: &str,
    members: &[String],
    candidates: &BTreeSet<String>,
    held: &BTreeSet<String>,
    running: &BTreeSet<String>,
) -> Ask {
    let owners = assign(members, candidates);
    let mine = |k: &String| owners.get(k).copied() == Some(me);
    // Kept: still this member's, or its collector has not stopped yet.
    let keep = |k: &String| (candidates.contains(k) && mine(k)) || running.contains(k);
    Ask {
        acquire: candidates
            .iter()
            .filter(|k| mine(k) && !held.contains(*k))
            .map(|k| server_lease(k))
            .collect(),
        release: held
            .iter()
            .filter(|k| !keep(k))
            .map(|k| server_lease(k))
            .collect(),
        delivery: false,
        release_delivery: false,
    }
}

/// What collection may run: held and still this member's.
pub fn to_collect(
    me: &str,
    members: &[String],
    candidates: &BTreeSet<String>,
    held: &BTreeSet<String>,
) -> BTreeSet<String> {
    let owners = assign(members, candidates);
    held.iter()
        .filter(|k| owners.get(*k).copied() == Some(me))
        .cloned()
        .collect()
}

/// The shared view between the coordinator (which writes what may be collected) and
/// the repository tasks (which offer the servers they found, say which collectors run,
/// and start or stop them when the generation moves). On the actix thread only.
pub struct Owned {
    pub me: String,
    /// Found by each repository's discovery: `repository/server` keys.
    candidates: RefCell<BTreeMap<String, BTreeSet<String>>>,
    /// What collection may run now.
    collect: RefCell<BTreeSet<String>>,
    /// What collection runs now.
    running: RefCell<BTreeSet<String>>,
    generation: watch::Sender<u64>,
}

impl Owned {
    pub fn new(me: &str) -> Owned {
        Owned {
            me: me.to_string(),
            candidates: RefCell::default(),
            collect: RefCell::default(),
            running: RefCell::default(),
            generation: watch::channel(0).0,
        }
    }

    /// A repository's discovery found these servers (all it would collect alone).
    pub fn offer(&self, repository: &str, keys: BTreeSet<String>) {
        self.candidates
            .borrow_mut()
            .insert(repository.to_string(), keys);
    }

    /// Forgets what repositories no longer configured offered (a reload dropped them).
    pub fn keep_repositories(&self, configured: &BTreeSet<String>) {
        self.candidates
            .borrow_mut()
            .retain(|r, _| configured.contains(r));
    }

    /// Every server offered.
    pub fn candidates(&self) -> BTreeSet<String> {
        self.candidates
            .borrow()
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// May this member collect `key` now?
    pub fn may_collect(&self, key: &str) -> bool {
        self.collect.borrow().contains(key)
    }

    /// The coordinator's decision; the repository tasks are told when it changed.
    pub fn set_collect(&self, keys: BTreeSet<String>) {
        if *self.collect.borrow() != keys {
            *self.collect.borrow_mut() = keys;
            self.generation.send_modify(|g| *g += 1);
        }
    }

    pub fn collecting(&self) -> BTreeSet<String> {
        self.collect.borrow().clone()
    }

    /// A collector started (`true`) or stopped.
    pub fn set_running(&self, key: &str, running: bool) {
        let mut r = self.running.borrow_mut();
        if running {
            r.insert(key.to_string());
        } else {
            r.remove(key);
        }
    }

    pub fn running(&self) -> BTreeSet<String> {
        self.running.borrow().clone()
    }

    /// Changes whenever [`Owned::set_collect`] changes what may be collected.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    /// Ids as `coordinator::me` makes them: one host, nearby pids, a short salt.
    fn members(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("vm:{}:{:04x}", 11213 + 40 * i, 0x6417 + 997 * i))
            .collect()
    }

    fn fleet(n: usize) -> BTreeSet<String> {
        (1..=n).map(|i| format!("fleet/fleet-{i}")).collect()
    }

    #[test]
    fn every_server_has_one_owner_and_the_split_is_even() {
        let keys = fleet(1000);
        // Many member sets: the bound holds for each, not on average.
        for trial in 0..30 {
            let m: Vec<String> = (0..3)
                .map(|i| {
                    format!(
                        "vm:{}:{:04x}",
                        1000 + 97 * trial + 13 * i,
                        0x1f3 * (trial + 1) * (i + 7)
                    )
                })
                .collect();
            let owners = assign(&m, &keys);
            assert_eq!(owners.len(), keys.len(), "every server has an owner");
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for o in owners.values() {
                *counts.entry(o).or_default() += 1;
            }
            assert_eq!(counts.len(), 3);
            for (member, n) in &counts {
                assert!(
                    (300..=367).contains(n),
                    "trial {trial}: {member} has {n} of 1000 (±10 %)"
                );
            }
            // The order of the member list does not matter.
            let mut reversed = m.clone();
            reversed.reverse();
            assert_eq!(assign(&reversed, &keys), owners);
        }
        assert!(assign(&[], &keys).is_empty());
    }

    #[test]
    fn a_member_leaving_moves_its_share_and_few_others() {
        let keys = fleet(500);
        let three = members(3);
        let two = three[..2].to_vec();
        let before = assign(&three, &keys);
        let after = assign(&two, &keys);
        let moved_needlessly = keys
            .iter()
            .filter(|k| before[*k] != three[2] && before[*k] != after[*k])
            .count();
        let kept = keys.iter().filter(|k| before[*k] != three[2]).count();
        assert!(
            moved_needlessly * 10 <= kept,
            "{moved_needlessly} of {kept} servers of the staying members moved"
        );
    }

    #[test]
    fn a_server_is_given_back_only_once_its_collector_stopped() {
        let m = members(2);
        let keys: BTreeSet<String> = (0..40).map(|i| format!("r/s{i}")).collect();
        let me = m[0].as_str();
        let owners = assign(&m, &keys);
        let mine: BTreeSet<String> = keys.iter().filter(|k| owners[*k] == me).cloned().collect();
        let theirs: BTreeSet<String> = keys.difference(&mine).cloned().collect();
        // Alone at first, it held everything and runs everything.
        let ask = plan(me, &m, &keys, &keys, &keys);
        assert!(ask.acquire.is_empty());
        assert!(ask.release.is_empty(), "their collectors still run");
        assert_eq!(to_collect(me, &m, &keys, &keys), mine, "theirs stop");
        // Once stopped, given back.
        let ask = plan(me, &m, &keys, &keys, &mine);
        assert_eq!(ask.release.len(), theirs.len());
        assert!(ask.release.iter().all(|l| theirs.contains(&l[7..])));
        // The other one takes what is free and its own.
        let other = m[1].as_str();
        let ask = plan(other, &m, &keys, &set(&[]), &set(&[]));
        assert_eq!(ask.acquire.len(), theirs.len());
        // A server gone from the repositories is given back too.
        let gone = mine.iter().next().unwrap().clone();
        let mut fewer = keys.clone();
        fewer.remove(&gone);
        let ask = plan(me, &m, &fewer, &mine, &set(&[]));
        assert_eq!(ask.release, [server_lease(&gone)]);
    }

    #[test]
    fn the_collection_is_told_when_its_share_changes() {
        let o = Owned::new("me");
        let mut rx = o.subscribe();
        o.set_collect(set(&["a/b"]));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        o.set_collect(set(&["a/b"]));
        assert!(!rx.has_changed().unwrap(), "same share, no news");
        assert!(o.may_collect("a/b") && !o.may_collect("a/c"));
        o.offer("a", set(&["a/b", "a/c"]));
        o.offer("z", set(&["z/x"]));
        assert_eq!(o.candidates().len(), 3);
        o.keep_repositories(&set(&["a"]));
        assert_eq!(o.candidates(), set(&["a/b", "a/c"]), "a reload dropped z");
    }
}
