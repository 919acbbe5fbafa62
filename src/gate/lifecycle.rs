//! The lifecycle of one finding (one fingerprint within its (analyzer, source) scope):
//! pending → new → ongoing → escalated → resolved → reopened.
//!
//! **Flap damping.** A finding fires once it was seen in `fire_after` (K) of the last
//! `fire_window` (N) cycles of its scope, and resolves after `resolve_after` (M) clean
//! cycles in a row. A "cycle" is one report of the scope (one collection). A daemon cycles
//! every few minutes over a sliding window, so one sighting near a threshold is noise: K=2
//! of N=3 and M=3 mean about 10 minutes to fire and 15 to resolve at 5-minute cycles. A
//! daily `once` cycles once a day, and making a finding wait for a second day would be
//! wrong, so a cycle that comes `settled_gap` (default 1h) or more after the scope's
//! previous one — or is the scope's first — **stands alone**: a finding seen in it fires at
//! once, and one clean such cycle resolves it. Hourly and daily schedules thus need no
//! tuning; successive `once` runs with a persistent state behave like a slow daemon.
//!
//! **Escalation.** A firing finding escalates when its severity is above the severity of
//! its last notification, or when its `magnitude` metric (a convention: an analyzer that
//! wants growth to count puts its main number under that name) reached `escalate_ratio`
//! times the magnitude of the last notification. Without a `magnitude`, severity alone.
//!
//! **Repeat.** A firing finding that stays the same is announced again `repeat_interval`
//! after its last notification, as `ongoing`; otherwise it stays quiet. The repeat is due
//! from 95% of the interval on, so that a daily schedule whose runs drift by a few minutes
//! repeats daily, not every other day.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Fingerprint, Insight, Severity};

use crate::problem::Problem;

/// The metric compared for magnitude escalation.
pub const MAGNITUDE_METRIC: &str = "magnitude";

/// `[gate.lifecycle]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// K: fire after being seen in this many of the last `fire_window` cycles.
    #[serde(default = "default_fire_after")]
    pub fire_after: u32,
    /// N: how many recent cycles `fire_after` counts over (at most 32).
    #[serde(default = "default_fire_window")]
    pub fire_window: u32,
    /// M: resolve after this many clean cycles in a row.
    #[serde(default = "default_resolve_after")]
    pub resolve_after: u32,
    /// A cycle this long after its scope's previous one stands alone (K and M count as met).
    #[serde(with = "humantime_serde", default = "default_settled_gap")]
    pub settled_gap: Duration,
    /// Announce a firing finding again after this long without a notification.
    #[serde(with = "humantime_serde", default = "default_repeat_interval")]
    pub repeat_interval: Duration,
    /// Announce resolutions (of findings that were announced).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Magnitude growth factor that counts as an escalation.
    #[serde(default = "default_escalate_ratio")]
    pub escalate_ratio: f64,
    /// How long a resolved finding is remembered (so that its return is `reopened`).
    #[serde(with = "humantime_serde", default = "default_forget_after")]
    pub forget_after: Duration,
}

fn default_fire_after() -> u32 {
    2
}
fn default_fire_window() -> u32 {
    3
}
fn default_resolve_after() -> u32 {
    3
}
fn default_settled_gap() -> Duration {
    Duration::from_secs(3600)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_true() -> bool {
    true
}
fn default_escalate_ratio() -> f64 {
    2.0
}
fn default_forget_after() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            fire_after: default_fire_after(),
            fire_window: default_fire_window(),
            resolve_after: default_resolve_after(),
            settled_gap: default_settled_gap(),
            repeat_interval: default_repeat_interval(),
            send_resolved: true,
            escalate_ratio: default_escalate_ratio(),
            forget_after: default_forget_after(),
        }
    }
}

impl LifecycleSettings {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let key = |f: &str| format!("{path}.{f}");
        if !(1..=32).contains(&self.fire_window) {
            problems.push(Problem::new(
                key("fire_window"),
                format!("{} is out of range: use 1 to 32 cycles", self.fire_window),
            ));
        }
        if self.fire_after == 0 || self.fire_after > self.fire_window {
            problems.push(Problem::new(
                key("fire_after"),
                format!(
                    "{} is out of range: use 1 to fire_window ({}) cycles",
                    self.fire_after, self.fire_window
                ),
            ));
        }
        if self.resolve_after == 0 {
            problems.push(Problem::new(
                key("resolve_after"),
                "must be at least 1 cycle",
            ));
        }
        if self.settled_gap.is_zero() {
            problems.push(Problem::new(
                key("settled_gap"),
                "must be more than 0s, e.g. \"1h\"",
            ));
        }
        if self.repeat_interval < Duration::from_secs(60) {
            problems.push(Problem::new(
                key("repeat_interval"),
                "must be at least 1m, or every cycle repeats every finding",
            ));
        }
        if !(self.escalate_ratio > 1.0 && self.escalate_ratio.is_finite()) {
            problems.push(Problem::new(
                key("escalate_ratio"),
                format!(
                    "{} is out of range: use a factor above 1, e.g. 2.0 (magnitude doubled)",
                    self.escalate_ratio
                ),
            ));
        }
    }
}

/// The last notification of a finding: what escalation compares with, when repeats count from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notified {
    pub at: DateTime<Utc>,
    pub severity: Severity,
    pub magnitude: Option<f64>,
}

/// What the gate remembers about one fingerprint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Bit i set: seen i cycles ago (bit 0: the latest cycle of the scope).
    pub history: u32,
    /// Consecutive clean cycles while firing.
    pub clean: u32,
    pub firing: bool,
    /// Fired at least once (a later firing is `reopened`, not `new`).
    pub ever_fired: bool,
    pub notified: Option<Notified>,
    /// A notification a silence swallowed: announced when the silence is gone and the
    /// finding still fires.
    pub muted: Option<Lifecycle>,
    pub last_seen: DateTime<Utc>,
    /// The scope cycle it was last seen in.
    pub seen_cycle: u64,
    /// The latest copy, with its lifecycle status (used for `resolved` messages).
    pub last: Insight,
}

impl Finding {
    fn new(insight: Insight, at: DateTime<Utc>) -> Self {
        Finding {
            history: 0,
            clean: 0,
            firing: false,
            ever_fired: false,
            notified: None,
            muted: None,
            last_seen: at,
            seen_cycle: 0,
            last: insight,
        }
    }

    /// Records that the current copy was announced at `at`.
    pub fn mark_notified(&mut self, at: DateTime<Utc>) {
        self.notified = Some(Notified {
            at,
            severity: self.last.severity,
            magnitude: self.last.metric(MAGNITUDE_METRIC),
        });
        self.muted = None;
    }

    /// Records that a silence swallowed a notification with `status`. A `new` or
    /// `reopened` that was never heard stays the thing to announce later.
    pub fn mark_muted(&mut self, status: Lifecycle) {
        match self.muted {
            Some(Lifecycle::New | Lifecycle::Reopened) => {}
            _ => self.muted = Some(status),
        }
    }
}

/// One (analyzer, source) scope: its findings and its cycles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeState {
    pub cycle: u64,
    pub last_at: Option<DateTime<Utc>>,
    pub findings: HashMap<Fingerprint, Finding>,
}

/// The compiled rules.
#[derive(Clone, Debug)]
pub struct Rules {
    k: u32,
    mask: u32,
    m: u32,
    settled_gap: chrono::Duration,
    /// 95% of the repeat interval: runs of a daily schedule drift by minutes, and a
    /// reminder due at 24h must not slip to every other day because one run came early.
    repeat_due: chrono::Duration,
    send_resolved: bool,
    escalate_ratio: f64,
    forget_after: chrono::Duration,
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Rules {
    pub fn new(s: &LifecycleSettings) -> Rules {
        let n = s.fire_window.clamp(1, 32);
        Rules {
            k: s.fire_after.clamp(1, n),
            mask: if n == 32 { u32::MAX } else { (1u32 << n) - 1 },
            m: s.resolve_after.max(1),
            settled_gap: chrono_dur(s.settled_gap),
            repeat_due: chrono_dur(s.repeat_interval.mul_f64(0.95)),
            send_resolved: s.send_resolved,
            escalate_ratio: s.escalate_ratio,
            forget_after: chrono_dur(s.forget_after),
        }
    }

    fn escalated(&self, f: &Finding) -> bool {
        let Some(n) = f.notified else {
            return false;
        };
        if f.last.severity > n.severity {
            return true;
        }
        match (f.last.metric(MAGNITUDE_METRIC), n.magnitude) {
            (Some(now), Some(then)) if then > 0.0 => now >= then * self.escalate_ratio,
            _ => false,
        }
    }

    /// Applies one cycle of a scope: `insights` is everything the scope reported at `at`.
    /// `notify` is called for each finding that wants a notification, with its status;
    /// it must call [`Finding::mark_notified`] or [`Finding::mark_muted`]. Every present
    /// finding's `last.status` is set (`None` while damping holds it back).
    pub fn observe<F>(
        &self,
        scope: &mut ScopeState,
        at: DateTime<Utc>,
        insights: Vec<Insight>,
        mut notify: F,
    ) where
        F: FnMut(&mut Finding, Lifecycle),
    {
        let settled = match scope.last_at {
            None => true,
            Some(prev) => at - prev >= self.settled_gap,
        };
        scope.last_at = Some(at);
        scope.cycle += 1;
        let cycle = scope.cycle;
        for insight in insights {
            let fp = insight.fingerprint;
            let f = match scope.findings.entry(fp) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let f = e.into_mut();
                    f.last = insight;
                    f
                }
                std::collections::hash_map::Entry::Vacant(e) => e.insert(Finding::new(insight, at)),
            };
            if f.seen_cycle == cycle {
                // The same fingerprint twice in one report: the later copy wins, the
                // cycle counts once.
                f.last.status = f.last.status.or(Some(Lifecycle::Ongoing));
                continue;
            }
            f.history = if settled {
                self.mask
            } else {
                (f.history << 1 | 1) & self.mask
            };
            f.seen_cycle = cycle;
            f.last_seen = at;
            f.clean = 0;
            let status = if !f.firing {
                if (f.history & self.mask).count_ones() >= self.k {
                    f.firing = true;
                    let s = if f.ever_fired {
                        Lifecycle::Reopened
                    } else {
                        Lifecycle::New
                    };
                    f.ever_fired = true;
                    f.notified = None;
                    f.muted = None;
                    f.last.status = Some(s);
                    notify(f, s);
                    Some(s)
                } else {
                    None
                }
            } else if self.escalated(f) {
                f.last.status = Some(Lifecycle::Escalated);
                notify(f, Lifecycle::Escalated);
                Some(Lifecycle::Escalated)
            } else if let Some(s) = f.muted {
                f.last.status = Some(s);
                notify(f, s);
                Some(s)
            } else {
                f.last.status = Some(Lifecycle::Ongoing);
                let due = match f.notified {
                    Some(n) => at - n.at >= self.repeat_due,
                    // Fired but never announced (e.g. routed nowhere): announce now.
                    None => true,
                };
                if due {
                    notify(f, Lifecycle::Ongoing);
                }
                Some(Lifecycle::Ongoing)
            };
            f.last.status = status;
        }
        let (mask, m, forget) = (self.mask, self.m, self.forget_after);
        scope.findings.retain(|_, f| {
            if f.seen_cycle == cycle {
                return true;
            }
            f.history = if settled { 0 } else { (f.history << 1) & mask };
            if f.firing {
                f.clean = if settled { m } else { f.clean + 1 };
                if f.clean >= m {
                    f.firing = false;
                    f.last.status = Some(Lifecycle::Resolved);
                    // An event (a settings change) is told once: it does not "resolve".
                    let event = f.last.label(crate::analyze::changes::EVENT_LABEL).is_some();
                    if self.send_resolved && f.notified.is_some() && !event {
                        notify(f, Lifecycle::Resolved);
                    }
                    f.notified = None;
                    f.muted = None;
                }
                return true;
            }
            f.history != 0 || (f.ever_fired && at - f.last_seen < forget)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::Window;
    use std::collections::BTreeMap;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn insight(fp: u64, severity: Severity, magnitude: Option<f64>) -> Insight {
        Insight {
            fingerprint: Fingerprint(fp),
            kind: "slow_query".into(),
            rule: "slow_query.total_time".into(),
            severity,
            labels: BTreeMap::new(),
            title: "t".into(),
            advice: "a".into(),
            text: None,
            metrics: magnitude
                .map(|m| BTreeMap::from([(MAGNITUDE_METRIC.to_string(), m)]))
                .unwrap_or_default(),
            window: Window {
                start: t(0),
                end: t(0),
            },
            observed_at: t(0),
            status: None,
            changes: Vec::new(),
            trend: None,
        }
    }

    /// Runs one cycle, announcing everything (no silence), returning the statuses.
    fn cycle(
        rules: &Rules,
        scope: &mut ScopeState,
        at: DateTime<Utc>,
        insights: Vec<Insight>,
    ) -> Vec<(u64, Lifecycle)> {
        let mut out = Vec::new();
        rules.observe(scope, at, insights, |f, s| {
            out.push((f.last.fingerprint.0, s));
            f.mark_notified(at);
        });
        out.sort_by_key(|(fp, _)| *fp);
        out
    }

    fn rules() -> Rules {
        Rules::new(&LifecycleSettings::default())
    }

    /// A daemon scope: first (settled) cycle at minute 0 with nothing, then 5-minute cycles.
    fn daemon_scope(rules: &Rules) -> ScopeState {
        let mut s = ScopeState::default();
        assert!(cycle(rules, &mut s, t(0), vec![]).is_empty());
        s
    }

    #[test]
    fn first_cycle_stands_alone_and_fires_new() {
        let r = rules();
        let mut s = ScopeState::default();
        let out = cycle(&r, &mut s, t(0), vec![insight(1, Severity::Warning, None)]);
        assert_eq!(out, [(1, Lifecycle::New)]);
        assert_eq!(
            s.findings[&Fingerprint(1)].last.status,
            Some(Lifecycle::New)
        );
    }

    #[test]
    fn damping_fires_after_k_of_n_and_stays_quiet_while_ongoing() {
        let r = rules();
        let mut s = daemon_scope(&r);
        let i = || vec![insight(1, Severity::Warning, None)];
        assert!(
            cycle(&r, &mut s, t(5), i()).is_empty(),
            "one sighting is noise"
        );
        assert_eq!(s.findings[&Fingerprint(1)].last.status, None);
        assert!(cycle(&r, &mut s, t(10), vec![]).is_empty());
        assert_eq!(
            cycle(&r, &mut s, t(15), i()),
            [(1, Lifecycle::New)],
            "2 of 3"
        );
        assert!(cycle(&r, &mut s, t(20), i()).is_empty());
        assert_eq!(
            s.findings[&Fingerprint(1)].last.status,
            Some(Lifecycle::Ongoing)
        );
    }

    #[test]
    fn isolated_sightings_never_fire() {
        let r = rules();
        let mut s = daemon_scope(&r);
        for c in 1..20 {
            let present = if c % 3 == 0 {
                vec![insight(1, Severity::Critical, None)]
            } else {
                vec![]
            };
            assert!(cycle(&r, &mut s, t(c * 5), present).is_empty(), "cycle {c}");
        }
        // A pending finding that stopped showing up is forgotten.
        cycle(&r, &mut s, t(200), vec![]);
        cycle(&r, &mut s, t(205), vec![]);
        cycle(&r, &mut s, t(210), vec![]);
        assert!(s.findings.is_empty());
    }

    #[test]
    fn resolves_after_m_clean_cycles_then_reopens() {
        let r = rules();
        let mut s = ScopeState::default();
        let i = || vec![insight(1, Severity::Warning, None)];
        cycle(&r, &mut s, t(0), i());
        // Two clean cycles, then back: a flap, not a resolution.
        assert!(cycle(&r, &mut s, t(5), vec![]).is_empty());
        assert!(cycle(&r, &mut s, t(10), vec![]).is_empty());
        assert!(cycle(&r, &mut s, t(15), i()).is_empty());
        assert!(cycle(&r, &mut s, t(20), vec![]).is_empty());
        assert!(cycle(&r, &mut s, t(25), vec![]).is_empty());
        assert_eq!(cycle(&r, &mut s, t(30), vec![]), [(1, Lifecycle::Resolved)]);
        assert_eq!(
            s.findings[&Fingerprint(1)].last.status,
            Some(Lifecycle::Resolved)
        );
        assert!(cycle(&r, &mut s, t(35), i()).is_empty(), "damped again");
        assert_eq!(cycle(&r, &mut s, t(40), i()), [(1, Lifecycle::Reopened)]);
    }

    #[test]
    fn slow_cycles_resolve_and_reopen_at_once() {
        let r = rules();
        let mut s = ScopeState::default();
        let day = 24 * 60;
        let i = || vec![insight(1, Severity::Warning, None)];
        assert_eq!(cycle(&r, &mut s, t(0), i()), [(1, Lifecycle::New)]);
        // A day later: the repeat interval (24h) has passed.
        assert_eq!(
            cycle(&r, &mut s, t(day - 5), i()),
            [(1, Lifecycle::Ongoing)]
        );
        assert_eq!(
            cycle(&r, &mut s, t(2 * day), vec![]),
            [(1, Lifecycle::Resolved)]
        );
        assert_eq!(
            cycle(&r, &mut s, t(3 * day), i()),
            [(1, Lifecycle::Reopened)]
        );
    }

    #[test]
    fn resolved_is_not_sent_when_disabled_and_forgotten_later() {
        let r = Rules::new(&LifecycleSettings {
            send_resolved: false,
            ..Default::default()
        });
        let mut s = ScopeState::default();
        cycle(&r, &mut s, t(0), vec![insight(1, Severity::Info, None)]);
        assert!(cycle(&r, &mut s, t(120), vec![]).is_empty());
        assert!(!s.findings[&Fingerprint(1)].firing);
        // Remembered for forget_after (7d), then dropped.
        cycle(&r, &mut s, t(6 * 24 * 60), vec![]);
        assert!(s.findings.contains_key(&Fingerprint(1)));
        cycle(&r, &mut s, t(8 * 24 * 60), vec![]);
        assert!(s.findings.is_empty());
    }

    #[test]
    fn escalates_on_severity_and_magnitude_growth_only() {
        let r = rules();
        let mut s = ScopeState::default();
        // (minute, severity, magnitude, what it announces).
        type Step<'a> = (i64, Severity, Option<f64>, &'a [(u64, Lifecycle)]);
        let escalated = [(1, Lifecycle::Escalated)];
        let steps: [Step; 6] = [
            (5, Severity::Warning, Some(19.0), &[]),
            (10, Severity::Warning, Some(20.0), &escalated),
            // Compared with the last notification (20): a dip and a return is not new.
            (15, Severity::Info, Some(5.0), &[]),
            (20, Severity::Warning, Some(30.0), &[]),
            (25, Severity::Critical, Some(30.0), &escalated),
            (30, Severity::Critical, None, &[]),
        ];
        cycle(
            &r,
            &mut s,
            t(0),
            vec![insight(1, Severity::Warning, Some(10.0))],
        );
        for (min, severity, magnitude, want) in steps {
            let got = cycle(&r, &mut s, t(min), vec![insight(1, severity, magnitude)]);
            assert_eq!(got, want, "minute {min}");
        }
    }

    #[test]
    fn repeats_after_the_interval() {
        let r = rules();
        let mut s = ScopeState::default();
        let i = || vec![insight(1, Severity::Warning, None)];
        cycle(&r, &mut s, t(0), i());
        // Due from 95% of 24h = 1368 minutes on.
        for c in 1..=273 {
            assert!(cycle(&r, &mut s, t(c * 5), i()).is_empty(), "cycle {c}");
        }
        assert_eq!(
            cycle(&r, &mut s, t(274 * 5), i()),
            [(1, Lifecycle::Ongoing)]
        );
        assert!(cycle(&r, &mut s, t(275 * 5), i()).is_empty());
    }

    #[test]
    fn muted_notification_is_announced_when_no_longer_muted() {
        let r = rules();
        let mut s = ScopeState::default();
        let i = || vec![insight(1, Severity::Warning, None)];
        let mut muted = true;
        let mut seen = Vec::new();
        for c in 0..4 {
            if c == 3 {
                muted = false;
            }
            r.observe(&mut s, t(c * 5), i(), |f, st| {
                if muted {
                    f.mark_muted(st);
                } else {
                    seen.push(st);
                    f.mark_notified(t(c * 5));
                }
            });
        }
        assert_eq!(seen, [Lifecycle::New], "the unheard `new` is announced");
        assert!(cycle(&r, &mut s, t(30), i()).is_empty());
    }

    #[test]
    fn state_round_trips_through_json() {
        let r = rules();
        let mut s = ScopeState::default();
        cycle(
            &r,
            &mut s,
            t(0),
            vec![insight(7, Severity::Critical, Some(3.0))],
        );
        let text = serde_json::to_string(&s).unwrap();
        let back: ScopeState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn validation_names_keys() {
        let mut p = Vec::new();
        LifecycleSettings {
            fire_after: 4,
            fire_window: 3,
            escalate_ratio: 1.0,
            ..Default::default()
        }
        .validate("gate.lifecycle", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["gate.lifecycle.fire_after", "gate.lifecycle.escalate_ratio"]
        );
    }
}
