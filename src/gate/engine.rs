//! The gate's decision core: lifecycle → acknowledgements → silences → routes → immediate or report → quiet
//! hours. Plain data and synchronous code, time passed in: the [`super::Gate`] wraps it
//! with the store and a logger, the bench and the unit tests drive it directly.
//!
//! What is not sent at once is *held*: until the next report (`Release::Report`) or until a
//! channel's quiet hours end (`Release::At`). Held items are what the store keeps so that a
//! restart loses nothing. Immediate means: a critical (by default) finding that is new,
//! escalated or reopened; everything else waits for the report.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sentinel_actors::gate::{Insights, Outgoing};
use sentinel_actors::message::{Lifecycle, Mentions};
use sentinel_actors::{Fingerprint, Insight, NotifyReason, Severity};

use super::ack::{Ack, Verdict};
use super::cycle::Cycles;
use super::lifecycle::{Finding, Rules, ScopeState};
use super::quiet_hours::QuietHours;
use super::routes::{Hit, Routes};
use super::silence::{self, Silence};

/// When a held item may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    /// With the next report (flush).
    Report,
    /// Once this time has passed (the end of a channel's quiet hours).
    At(DateTime<Utc>),
    /// An immediate finding, once its collection cycle is over (see [`super::cycle`]), or
    /// its wait since `since` (data time) has passed.
    Cycle { seq: u64, since: DateTime<Utc> },
}

/// One insight waiting for one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub id: u64,
    pub channel: String,
    pub reason: NotifyReason,
    pub release: Release,
    pub mentions: Mentions,
    pub insight: Insight,
    /// The source whose report held it (absent in items an older version kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What changed since the last commit to the store.
#[derive(Debug, Default)]
pub struct Changes {
    pub scopes: HashSet<String>,
    pub held_put: BTreeSet<u64>,
    pub held_del: BTreeSet<u64>,
    /// Acknowledgements that ended (the finding escalated, resolved or fired anew).
    pub acks_del: BTreeSet<Fingerprint>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
            && self.held_put.is_empty()
            && self.held_del.is_empty()
            && self.acks_del.is_empty()
    }
}

/// The key of a scope in maps and in the store.
pub fn scope_key(analyzer: &str, source: &str) -> String {
    format!("{analyzer}\u{1f}{source}")
}

pub struct Engine {
    rules: Rules,
    routes: Routes,
    /// By channel index.
    quiet: Vec<Option<QuietHours>>,
    /// Minimum severity sent at once (when new, escalated or reopened); `None`: never.
    immediate: Option<Severity>,
    silences: Vec<Silence>,
    acks: HashMap<Fingerprint, Ack>,
    scopes: HashMap<String, ScopeState>,
    held: BTreeMap<u64, Held>,
    next_held: u64,
    changes: Changes,
    /// Collection cycles, for holding immediate findings until theirs is over.
    cycles: Cycles,
    /// The longest an immediate finding waits for its cycle.
    cycle_wait: chrono::Duration,
}

/// Counters for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub scopes: usize,
    pub findings: usize,
    pub firing: usize,
    pub held: usize,
}

fn merge_mentions(into: &mut Mentions, from: &Mentions) {
    for u in &from.userids {
        if !into.userids.contains(u) {
            into.userids.push(u.clone());
        }
    }
    for m in &from.mobiles {
        if !into.mobiles.contains(m) {
            into.mobiles.push(m.clone());
        }
    }
}

/// Everything a dispatch needs, borrowed apart from the scopes so the lifecycle callback
/// can use it while a scope is borrowed.
struct Dispatch<'a> {
    routes: &'a Routes,
    quiet: &'a [Option<QuietHours>],
    immediate: Option<Severity>,
    /// The report's source, and its seq when immediate findings wait for their cycle.
    source: &'a str,
    cycle: Option<u64>,
    silences: &'a [Silence],
    acks: &'a HashMap<Fingerprint, Ack>,
    held: &'a mut BTreeMap<u64, Held>,
    next_held: &'a mut u64,
    changes: &'a mut Changes,
    now: Vec<(usize, Insight, Mentions)>,
    hits: Vec<Hit<'a>>,
}

impl<'a> Dispatch<'a> {
    fn hold(
        &mut self,
        channel: usize,
        reason: NotifyReason,
        release: Release,
        mentions: Mentions,
        insight: Insight,
    ) {
        let id = *self.next_held;
        *self.next_held += 1;
        self.held.insert(
            id,
            Held {
                id,
                channel: self.routes.channel(channel).to_string(),
                reason,
                release,
                mentions,
                insight,
                source: Some(self.source.to_string()),
            },
        );
        self.changes.held_put.insert(id);
    }

    fn decide(&mut self, f: &mut Finding, status: Lifecycle, at: DateTime<Utc>) {
        let fp = f.last.fingerprint;
        let ack = self
            .acks
            .get(&fp)
            .filter(|_| !self.changes.acks_del.contains(&fp));
        if let Some(a) = ack {
            match a.verdict(status) {
                // Neither announced nor muted: the next cycle asks again, and is quiet
                // again while the acknowledgement lasts.
                Verdict::Quiet => return,
                Verdict::TellAndEnd => {
                    a.label(&mut f.last);
                    self.changes.acks_del.insert(fp);
                }
                Verdict::End => {
                    self.changes.acks_del.insert(fp);
                }
            }
        }
        if silence::muted(self.silences, &f.last, at) {
            f.mark_muted(status);
            return;
        }
        f.mark_notified(at);
        let insight = &f.last;
        let immediate = self.immediate.is_some_and(|s| insight.severity >= s)
            && matches!(
                status,
                Lifecycle::New | Lifecycle::Escalated | Lifecycle::Reopened
            );
        let mut hits = std::mem::take(&mut self.hits);
        self.routes.route(insight, &mut hits);
        for (n, hit) in hits.iter().enumerate() {
            if hits[..n].iter().any(|h| h.channel == hit.channel) {
                continue;
            }
            let mut mentions = Mentions::default();
            for h in hits[n..].iter().filter(|h| h.channel == hit.channel) {
                if let Some(m) = h.mentions {
                    merge_mentions(&mut mentions, m);
                }
            }
            if !immediate {
                self.hold(
                    hit.channel,
                    NotifyReason::Report,
                    Release::Report,
                    mentions,
                    insight.clone(),
                );
                continue;
            }
            let quiet = self.quiet.get(hit.channel).and_then(Option::as_ref);
            match quiet.and_then(|q| q.holds(insight.severity, at)) {
                Some(until) => self.hold(
                    hit.channel,
                    NotifyReason::Immediate,
                    Release::At(until),
                    mentions,
                    insight.clone(),
                ),
                None => match self.cycle {
                    Some(seq) => self.hold(
                        hit.channel,
                        NotifyReason::Immediate,
                        Release::Cycle { seq, since: at },
                        mentions,
                        insight.clone(),
                    ),
                    None => self.now.push((hit.channel, insight.clone(), mentions)),
                },
            }
        }
        self.hits = hits;
    }
}

/// What a held copy of a finding becomes when its scope sees the finding again: the
/// latest numbers, texts and window, keeping what the notification announces (its
/// lifecycle status) and who acknowledged it. A report that waits hours for its flush (or
/// the flush at shutdown) must not tell the numbers of the first cycle the finding came
/// in.
fn refreshed(held: &Insight, latest: &Insight) -> Insight {
    let mut i = latest.clone();
    i.status = held.status;
    for k in [super::ack::BY_LABEL, super::ack::AT_LABEL] {
        if let Some(v) = held.labels.get(k) {
            i.labels.entry(k.to_string()).or_insert_with(|| v.clone());
        }
    }
    i
}

/// Brings the items held for `source` up to date with the findings its report just saw
/// (`scope` after the lifecycle ran). A held resolution keeps the numbers it resolved
/// with: a sighting after it is a new story, told when it fires again.
fn refresh_held(
    held: &mut BTreeMap<u64, Held>,
    changes: &mut Changes,
    source: &str,
    scope: &ScopeState,
) {
    for (id, h) in held.iter_mut() {
        if h.source.as_deref() != Some(source) || h.insight.status == Some(Lifecycle::Resolved) {
            continue;
        }
        let Some(f) = scope.findings.get(&h.insight.fingerprint) else {
            continue;
        };
        if f.seen_cycle != scope.cycle {
            continue;
        }
        let fresh = refreshed(&h.insight, &f.last);
        if fresh != h.insight {
            h.insight = fresh;
            changes.held_put.insert(*id);
        }
    }
}

fn reason_key(r: NotifyReason) -> u8 {
    match r {
        NotifyReason::Immediate => 0,
        NotifyReason::Report => 1,
    }
}

/// Groups (channel, reason) → one notification each, in channel-name order, most severe
/// insight first.
fn group(
    items: Vec<(String, NotifyReason, Insight, Mentions)>,
    at: DateTime<Utc>,
) -> Vec<Outgoing> {
    let mut by: BTreeMap<(String, u8), Outgoing> = BTreeMap::new();
    for (channel, reason, insight, mentions) in items {
        let o = by
            .entry((channel.clone(), reason_key(reason)))
            .or_insert_with(|| Outgoing {
                // Numbered by the gate when it commits the decision.
                id: 0,
                channel,
                reason,
                insights: Vec::new(),
                mentions: Mentions::default(),
                created_at: at,
            });
        merge_mentions(&mut o.mentions, &mentions);
        o.insights.push(insight);
    }
    let mut out: Vec<Outgoing> = by.into_values().collect();
    // Most severe first; a stable order for equal severities (scopes are hash maps).
    for o in &mut out {
        o.insights
            .sort_by_key(|i| (std::cmp::Reverse(i.severity), i.fingerprint));
    }
    out
}

/// The quiet hours of `channel`, if it has some.
fn quiet_of<'a>(
    routes: &Routes,
    quiet: &'a [Option<QuietHours>],
    channel: &str,
) -> Option<&'a QuietHours> {
    (0..routes.channel_count())
        .find(|&c| routes.channel(c) == channel)
        .and_then(|c| quiet[c].as_ref())
}

/// The items held for the report that tell the same story as one of `leads` (immediate
/// items about to go): same channel and source, grouped with a lead by
/// [`crate::story::stories`], the grouping the message itself will use.
fn companions(held: &BTreeMap<u64, Held>, leads: &[u64]) -> Vec<u64> {
    let leads: Vec<&Held> = leads.iter().filter_map(|id| held.get(id)).collect();
    let places: BTreeSet<(&str, &str)> = leads
        .iter()
        .filter_map(|h| Some((h.channel.as_str(), h.source.as_deref()?)))
        .collect();
    let mut out = Vec::new();
    for (channel, source) in places {
        let at_place = |h: &&Held| h.channel == channel && h.source.as_deref() == Some(source);
        let here: Vec<&Held> = leads.iter().copied().filter(at_place).collect();
        let pool: Vec<&Held> = held
            .values()
            .filter(|h| h.release == Release::Report && at_place(h))
            .collect();
        if pool.is_empty() {
            continue;
        }
        let lead_fps: HashSet<_> = here.iter().map(|h| h.insight.fingerprint).collect();
        let insights: Vec<Insight> = here
            .iter()
            .chain(&pool)
            .map(|h| h.insight.clone())
            .collect();
        let mut joined: HashSet<_> = HashSet::new();
        for story in crate::story::stories(&insights) {
            let members: Vec<_> = std::iter::once(story.lead)
                .chain(story.support.iter().copied())
                .chain(story.elsewhere.iter().copied())
                .map(|i| i.fingerprint)
                .collect();
            if members.iter().any(|f| lead_fps.contains(f)) {
                joined.extend(members);
            }
        }
        out.extend(
            pool.iter()
                .filter(|h| joined.contains(&h.insight.fingerprint))
                .map(|h| h.id),
        );
    }
    out
}

impl Engine {
    pub fn new(
        rules: Rules,
        routes: Routes,
        quiet: BTreeMap<String, QuietHours>,
        immediate: Option<Severity>,
    ) -> Engine {
        let quiet = (0..routes.channel_count())
            .map(|i| quiet.get(routes.channel(i)).cloned())
            .collect();
        Engine {
            rules,
            routes,
            quiet,
            immediate,
            silences: Vec::new(),
            acks: HashMap::new(),
            scopes: HashMap::new(),
            held: BTreeMap::new(),
            next_held: 1,
            changes: Changes::default(),
            cycles: Cycles::default(),
            cycle_wait: chrono::Duration::zero(),
        }
    }

    /// Holds immediate findings until their collection cycle is over: every analyzer of
    /// `expected` reported on the snapshot, a newer one came, a flush, or `wait` passed.
    /// `expected` empty: immediate findings go at once (the default).
    pub fn hold_for_cycles(&mut self, expected: Vec<String>, wait: std::time::Duration) {
        self.cycles = Cycles::new(expected);
        self.cycle_wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
    }

    /// Does the engine need its timer (quiet hours, or cycles that may outwait their
    /// analyzers)?
    pub fn wants_ticks(&self) -> bool {
        self.quiet.iter().any(Option::is_some)
            || (self.immediate.is_some() && self.cycles.enabled())
    }

    /// Replaces the state (after loading it from the store).
    pub fn restore(&mut self, scopes: HashMap<String, ScopeState>, held: Vec<Held>) {
        self.scopes = scopes;
        self.next_held = held.iter().map(|h| h.id + 1).max().unwrap_or(1);
        self.held = held.into_iter().map(|h| (h.id, h)).collect();
    }

    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    /// Replaces the acknowledgements (read from the store before each decision).
    pub fn set_acks(&mut self, acks: Vec<Ack>) {
        self.acks = acks.into_iter().map(|a| (a.fingerprint, a)).collect();
    }

    pub fn counts(&self) -> Counts {
        Counts {
            scopes: self.scopes.len(),
            findings: self.scopes.values().map(|s| s.findings.len()).sum(),
            firing: self
                .scopes
                .values()
                .flat_map(|s| s.findings.values())
                .filter(|f| f.firing)
                .count(),
            held: self.held.len(),
        }
    }

    pub fn scope(&self, key: &str) -> Option<&ScopeState> {
        self.scopes.get(key)
    }

    pub fn held(&self) -> impl Iterator<Item = &Held> {
        self.held.values()
    }

    /// The changes since the last [`Engine::take_changes`].
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Puts back changes that could not be committed, so the next commit retries them.
    pub fn return_changes(&mut self, c: Changes) {
        self.changes.scopes.extend(c.scopes);
        for id in c.held_put {
            if !self.changes.held_del.contains(&id) {
                self.changes.held_put.insert(id);
            }
        }
        self.changes.held_del.extend(c.held_del);
        self.changes.acks_del.extend(c.acks_del);
    }

    /// One scope's report: lifecycle, then a decision for each finding that wants a
    /// notification. Returns the immediate notifications.
    pub fn observe(&mut self, report: Insights) -> Vec<Outgoing> {
        let at = report.at;
        let key = scope_key(&report.analyzer, &report.source);
        let scope = match self.scopes.get_mut(&key) {
            Some(s) => s,
            None => self.scopes.entry(key.clone()).or_default(),
        };
        let mut d = Dispatch {
            routes: &self.routes,
            quiet: &self.quiet,
            immediate: self.immediate,
            source: &report.source,
            cycle: self.cycles.enabled().then_some(report.seq),
            silences: &self.silences,
            acks: &self.acks,
            held: &mut self.held,
            next_held: &mut self.next_held,
            changes: &mut self.changes,
            now: Vec::new(),
            hits: Vec::new(),
        };
        self.rules.observe(scope, at, report.insights, |f, status| {
            d.decide(f, status, at)
        });
        let now = std::mem::take(&mut d.now);
        if let Some(scope) = self.scopes.get(&key) {
            refresh_held(&mut self.held, &mut self.changes, &report.source, scope);
        }
        self.changes.scopes.insert(key);
        let mut out = Vec::new();
        if self.cycles.enabled() {
            let over = self
                .cycles
                .report(&report.analyzer, &report.source, report.seq);
            out = self.release_cycles(at, |source, seq, _| {
                source == Some(report.source.as_str()) && over.ends(seq)
            });
        }
        if now.is_empty() {
            return out;
        }
        out.extend(group(
            now.into_iter()
                .map(|(c, i, m)| {
                    (
                        self.routes.channel(c).to_string(),
                        NotifyReason::Immediate,
                        i,
                        m,
                    )
                })
                .collect(),
            at,
        ));
        out
    }

    /// Releases what may go at `at`: held items whose condition is met, unless the
    /// channel is (again) in quiet hours, in which case they wait for its end.
    fn release(&mut self, at: DateTime<Utc>, with_report: bool) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (id, h) in self.held.iter_mut() {
            let due = match h.release {
                Release::Report => with_report,
                Release::At(t) => t <= at,
                // Released by `release_cycles`, with their companions.
                Release::Cycle { .. } => false,
            };
            if !due {
                continue;
            }
            let quiet = quiet_of(&self.routes, &self.quiet, &h.channel);
            if let Some(until) = quiet.and_then(|q| q.holds(h.insight.severity, at)) {
                if h.release != Release::At(until) {
                    h.release = Release::At(until);
                    self.changes.held_put.insert(*id);
                }
                continue;
            }
            done.push(*id);
        }
        for id in done {
            if let Some(h) = self.held.remove(&id) {
                self.changes.held_put.remove(&id);
                self.changes.held_del.insert(id);
                out.push((h.channel, h.reason, h.insight, h.mentions));
            }
        }
        group(out, at)
    }

    /// Releases the immediate findings held for their cycle that `due(source, seq,
    /// since)` lets go, each with the findings held for the report that tell the same
    /// story (same source and channel: its cause, its rank, its share), so the alarm
    /// arrives with its explanation. What a channel's quiet hours now hold waits for
    /// their end instead.
    fn release_cycles(
        &mut self,
        at: DateTime<Utc>,
        due: impl Fn(Option<&str>, u64, DateTime<Utc>) -> bool,
    ) -> Vec<Outgoing> {
        let leads: Vec<u64> = self
            .held
            .values()
            .filter(|h| match h.release {
                Release::Cycle { seq, since } => due(h.source.as_deref(), seq, since),
                _ => false,
            })
            .map(|h| h.id)
            .collect();
        if leads.is_empty() {
            return Vec::new();
        }
        let mut take: Vec<u64> = Vec::new();
        for id in &leads {
            let Some(h) = self.held.get_mut(id) else {
                continue;
            };
            let quiet = quiet_of(&self.routes, &self.quiet, &h.channel);
            match quiet.and_then(|q| q.holds(h.insight.severity, at)) {
                Some(until) => {
                    h.release = Release::At(until);
                    self.changes.held_put.insert(*id);
                }
                None => take.push(*id),
            }
        }
        take.extend(companions(&self.held, &take));
        let mut out = Vec::new();
        for id in take {
            if let Some(h) = self.held.remove(&id) {
                self.changes.held_put.remove(&id);
                self.changes.held_del.insert(id);
                out.push((h.channel, NotifyReason::Immediate, h.insight, h.mentions));
            }
        }
        group(out, at)
    }

    /// A report is due: every cycle is over, so the immediate findings still waiting for
    /// theirs go first, then everything waiting for the report, and everything whose
    /// quiet hours ended.
    pub fn flush(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
        let mut out = self.release_cycles(at, |_, _, _| true);
        self.cycles.clear();
        out.extend(self.release(at, true));
        out
    }

    /// The timer: immediate findings that waited long enough for their cycle, and what
    /// quiet hours held and may now go.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Outgoing> {
        let wait = self.cycle_wait;
        let mut out = self.release_cycles(now, |_, _, since| since + wait <= now);
        out.extend(self.release(now, false));
        out
    }

    /// What a heartbeat says: the servers the gate has heard from, the latest cycle, what
    /// fires and how much of it is acknowledged.
    pub fn watch(&self) -> super::heartbeat::Watch {
        let mut servers = BTreeSet::new();
        let mut w = super::heartbeat::Watch::default();
        for (key, scope) in &self.scopes {
            let Some(last) = scope.last_at else { continue };
            servers.insert(key.split('\u{1f}').nth(1).unwrap_or(key));
            w.last_cycle = w.last_cycle.max(Some(last));
            for f in scope.findings.values().filter(|f| f.firing) {
                w.firing += 1;
                w.acknowledged += usize::from(self.acks.contains_key(&f.last.fingerprint));
            }
        }
        w.servers = servers.len();
        w
    }

    /// The scopes a commit must write.
    pub fn scopes_for(&self, keys: &HashSet<String>) -> Vec<(&str, &ScopeState)> {
        keys.iter()
            .filter_map(|k| self.scopes.get_key_value(k))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }

    pub fn held_for(&self, ids: &BTreeSet<u64>) -> Vec<&Held> {
        ids.iter().filter_map(|id| self.held.get(id)).collect()
    }
}

#[cfg(test)]
mod tests;
