//! The gate's decision core: lifecycle → silences → routes → immediate or report → quiet
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
use sentinel_actors::{Insight, NotifyReason, Severity};

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
}

/// What changed since the last commit to the store.
#[derive(Debug, Default)]
pub struct Changes {
    pub scopes: HashSet<String>,
    pub held_put: BTreeSet<u64>,
    pub held_del: BTreeSet<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.held_put.is_empty() && self.held_del.is_empty()
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
    scopes: HashMap<String, ScopeState>,
    held: BTreeMap<u64, Held>,
    next_held: u64,
    changes: Changes,
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
    silences: &'a [Silence],
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
            },
        );
        self.changes.held_put.insert(id);
    }

    fn decide(&mut self, f: &mut Finding, status: Lifecycle, at: DateTime<Utc>) {
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
                None => self.now.push((hit.channel, insight.clone(), mentions)),
            }
        }
        self.hits = hits;
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
            scopes: HashMap::new(),
            held: BTreeMap::new(),
            next_held: 1,
            changes: Changes::default(),
        }
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
            silences: &self.silences,
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
        self.changes.scopes.insert(key);
        if now.is_empty() {
            return Vec::new();
        }
        group(
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
        )
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
            };
            if !due {
                continue;
            }
            let quiet = (0..self.routes.channel_count())
                .find(|&c| self.routes.channel(c) == h.channel)
                .and_then(|c| self.quiet[c].as_ref());
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

    /// A report is due: everything waiting for it, and everything whose quiet hours ended.
    pub fn flush(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
        self.release(at, true)
    }

    /// The timer: what quiet hours held and may now go.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Outgoing> {
        self.release(now, false)
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
mod tests {
    use super::super::lifecycle::LifecycleSettings;
    use super::super::quiet_hours::QuietHoursSettings;
    use super::super::routes::RouteSettings;
    use super::super::silence::Matcher;
    use super::*;
    use sentinel_actors::{Fingerprint, Window};

    fn t(min: i64) -> DateTime<Utc> {
        // 2026-03-02T00:00:00Z, a Monday.
        DateTime::<Utc>::from_timestamp(1_772_409_600 + min * 60, 0).unwrap()
    }

    fn insight(fp: u64, severity: Severity, db: &str) -> Insight {
        Insight {
            fingerprint: Fingerprint(fp),
            kind: "slow_query".into(),
            rule: "slow_query.total_time".into(),
            severity,
            labels: [("database", db), ("server", "db1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            title: format!("finding {fp}"),
            advice: "a".into(),
            text: None,
            metrics: Default::default(),
            window: Window {
                start: t(0),
                end: t(0),
            },
            observed_at: t(0),
            status: None,
        }
    }

    fn report(at: DateTime<Utc>, insights: Vec<Insight>) -> Insights {
        Insights {
            analyzer: "slow_queries".into(),
            source: "main/db1".into(),
            seq: 1,
            at,
            insights,
        }
    }

    fn engine(routes: Vec<RouteSettings>, quiet: Option<(&str, &str, &str)>) -> Engine {
        let chans = ["console", "ops", "pay"].map(String::from).to_vec();
        let routes = Routes::compile(&routes, &[], &chans, &[]).unwrap();
        let mut q = BTreeMap::new();
        if let Some((ch, start, end)) = quiet {
            let mut p = Vec::new();
            q.insert(
                ch.to_string(),
                QuietHours::compile(
                    &QuietHoursSettings {
                        start: start.into(),
                        end: end.into(),
                        timezone: "UTC".into(),
                        bypass_severity: "none".into(),
                    },
                    "q",
                    &mut p,
                )
                .unwrap(),
            );
        }
        Engine::new(
            Rules::new(&LifecycleSettings::default()),
            routes,
            q,
            Some(Severity::Critical),
        )
    }

    type Summary = Vec<(String, NotifyReason, Vec<(u64, Option<Lifecycle>)>)>;

    fn summary(out: &[Outgoing]) -> Summary {
        out.iter()
            .map(|o| {
                (
                    o.channel.clone(),
                    o.reason,
                    o.insights
                        .iter()
                        .map(|i| (i.fingerprint.0, i.status))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn critical_new_goes_at_once_the_rest_waits_for_the_report() {
        let routes = vec![RouteSettings {
            channels: vec!["ops".into()],
            ..Default::default()
        }];
        let mut e = engine(routes, None);
        let now = e.observe(report(
            t(0),
            vec![
                insight(1, Severity::Critical, "a"),
                insight(2, Severity::Warning, "a"),
            ],
        ));
        assert_eq!(
            summary(&now),
            [(
                "ops".into(),
                NotifyReason::Immediate,
                vec![(1, Some(Lifecycle::New))]
            )]
        );
        let rep = e.flush(t(1));
        assert_eq!(
            summary(&rep),
            [(
                "ops".into(),
                NotifyReason::Report,
                vec![(2, Some(Lifecycle::New))]
            )]
        );
        assert!(e.flush(t(2)).is_empty(), "nothing twice");
        // Ongoing: quiet. Resolved (critical): waits for the report.
        assert!(e
            .observe(report(t(5), vec![insight(1, Severity::Critical, "a")]))
            .is_empty());
        for m in [10, 15, 20] {
            assert!(e.observe(report(t(m), vec![])).is_empty());
        }
        let rep = e.flush(t(21));
        assert_eq!(
            summary(&rep),
            [(
                "ops".into(),
                NotifyReason::Report,
                vec![
                    (1, Some(Lifecycle::Resolved)),
                    (2, Some(Lifecycle::Resolved))
                ]
            )]
        );
    }

    #[test]
    fn immediate_can_be_disabled() {
        let mut e = engine(vec![], None);
        e.immediate = None;
        assert!(e
            .observe(report(t(0), vec![insight(1, Severity::Critical, "a")]))
            .is_empty());
        assert_eq!(e.flush(t(1)).len(), 3, "one report per channel");
    }

    #[test]
    fn routes_pick_channels_and_mentions_reach_the_notification() {
        let routes = vec![
            RouteSettings {
                channels: vec!["pay".into()],
                database: Some("payments".into()),
                mention_userids: vec!["zhangsan".into()],
                mention_severity: Some("warning".into()),
                continue_matching: true,
                ..Default::default()
            },
            RouteSettings {
                channels: vec!["ops".into()],
                ..Default::default()
            },
        ];
        let mut e = engine(routes, None);
        e.observe(report(
            t(0),
            vec![
                insight(1, Severity::Warning, "payments"),
                insight(2, Severity::Info, "payments"),
                insight(3, Severity::Info, "x"),
            ],
        ));
        let out = e.flush(t(1));
        assert_eq!(
            summary(&out),
            [
                (
                    "ops".into(),
                    NotifyReason::Report,
                    vec![
                        (1, Some(Lifecycle::New)),
                        (2, Some(Lifecycle::New)),
                        (3, Some(Lifecycle::New))
                    ]
                ),
                (
                    "pay".into(),
                    NotifyReason::Report,
                    vec![(1, Some(Lifecycle::New)), (2, Some(Lifecycle::New))]
                ),
            ]
        );
        assert!(out[0].mentions.is_empty());
        assert_eq!(out[1].mentions.userids, ["zhangsan"]);
    }

    fn silence(matchers: &[&str], until: DateTime<Utc>) -> Silence {
        Silence {
            id: 1,
            fingerprint: None,
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            starts_at: t(0),
            ends_at: until,
            reason: "deploy".into(),
            author: "me".into(),
            created_at: t(0),
        }
    }

    #[test]
    fn silenced_findings_keep_their_lifecycle_and_notify_after_expiry() {
        let mut e = engine(vec![], None);
        e.set_silences(vec![silence(&["database=a"], t(12))]);
        let i = || {
            vec![
                insight(1, Severity::Critical, "a"),
                insight(2, Severity::Info, "b"),
            ]
        };
        assert!(
            e.observe(report(t(0), i())).is_empty(),
            "critical but silenced"
        );
        let out = e.flush(t(1));
        assert!(out
            .iter()
            .all(|o| o.insights.iter().all(|i| i.fingerprint.0 == 2)));
        let scope = e.scope(&scope_key("slow_queries", "main/db1")).unwrap();
        assert!(scope.findings[&Fingerprint(1)].firing, "lifecycle goes on");
        assert!(e.observe(report(t(5), i())).is_empty());
        assert!(e.observe(report(t(10), i())).is_empty());
        // Expired at 12: the still-firing finding is announced as the `new` it was.
        let now = e.observe(report(t(15), i()));
        assert_eq!(now.len(), 3);
        assert_eq!(summary(&now)[0].2, [(1, Some(Lifecycle::New))]);
        assert!(e.observe(report(t(20), i())).is_empty());
        assert!(e.flush(t(21)).is_empty());
    }

    #[test]
    fn a_finding_resolved_while_silenced_is_never_announced() {
        let mut e = engine(vec![], None);
        e.set_silences(vec![silence(&["database=a"], t(60))]);
        e.observe(report(t(0), vec![insight(1, Severity::Warning, "a")]));
        for m in [5, 10, 15] {
            e.observe(report(t(m), vec![]));
        }
        assert!(e.flush(t(16)).is_empty());
        for m in [65, 70] {
            assert!(e.observe(report(t(m), vec![])).is_empty());
        }
        assert!(e.flush(t(71)).is_empty());
    }

    #[test]
    fn quiet_hours_hold_until_the_window_ends_then_release_on_tick() {
        // `ops` is quiet 00:00–07:00 UTC; t(0) is midnight.
        let mut e = engine(vec![], Some(("ops", "00:00", "07:00")));
        let now = e.observe(report(t(30), vec![insight(1, Severity::Critical, "a")]));
        let chans: Vec<_> = now.iter().map(|o| o.channel.as_str()).collect();
        assert_eq!(
            chans,
            ["console", "pay"],
            "critical goes at once, except to ops"
        );
        let rep = e.flush(t(60));
        assert!(rep.is_empty(), "ops still quiet: {rep:?}");
        assert!(e.tick(t(7 * 60 - 1)).is_empty());
        let released = e.tick(t(7 * 60));
        assert_eq!(
            summary(&released),
            [(
                "ops".into(),
                NotifyReason::Immediate,
                vec![(1, Some(Lifecycle::New))]
            )]
        );
        assert_eq!(e.counts().held, 0);
    }

    #[test]
    fn report_items_flushed_in_quiet_hours_wait_then_go_with_a_later_flush() {
        let mut e = engine(vec![], Some(("ops", "00:00", "07:00")));
        e.observe(report(t(-60), vec![insight(1, Severity::Warning, "a")]));
        let rep = e.flush(t(60));
        let chans: Vec<_> = rep.iter().map(|o| o.channel.as_str()).collect();
        assert_eq!(chans, ["console", "pay"]);
        assert_eq!(e.counts().held, 1);
        let later = e.flush(t(8 * 60));
        assert_eq!(summary(&later)[0].0, "ops");
        assert_eq!(e.counts().held, 0);
    }

    #[test]
    fn changes_track_what_to_persist() {
        let mut e = engine(vec![], None);
        e.observe(report(t(0), vec![insight(1, Severity::Warning, "a")]));
        let c = e.take_changes();
        assert_eq!(c.scopes.len(), 1);
        assert_eq!(c.held_put.len(), 3);
        e.flush(t(1));
        let c = e.take_changes();
        assert!(c.held_put.is_empty());
        assert_eq!(c.held_del.len(), 3);
    }
}
