//! When a collection cycle is over for a source, so that what it found can be told together.
//!
//! Every analyzer reports on every snapshot of every source, in its own actor and its own
//! time. A critical regression sent the moment its analyzer reports would go before the
//! missing-index analyzer has told why the query got slower: the DBA would get the alarm
//! alone, and its cause minutes later in the report. So an immediate finding waits (is
//! *held for its cycle*) until the cycle is over, and then goes with the findings of the
//! same cycle that tell the same story (see [`crate::story`]).
//!
//! A cycle (source, seq) is over when every expected analyzer has reported on it, when a
//! newer snapshot of the same source is reported (an analyzer that died or was restarted
//! never reports on the old one), or, as a bound on the wait, when the gate's timer finds it
//! older than the configured wait ([`super::GateSettings::immediate_wait`]). A report flush
//! ends every cycle. Time is passed in; nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sentinel_actors::Insight;

use super::engine::{Held, Release};

/// The open cycle of each source and the analyzers that reported on it.
#[derive(Debug, Default)]
pub struct Cycles {
    expected: BTreeSet<String>,
    open: HashMap<String, Open>,
}

#[derive(Debug)]
struct Open {
    seq: u64,
    reported: BTreeSet<String>,
}

/// What a report ended, for its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// Nothing: the cycle waits for more analyzers.
    Nothing,
    /// Every cycle of the source up to and including this seq is over.
    Through(u64),
    /// The cycles before this seq are over (a newer snapshot began); this one is open.
    Before(u64),
}

impl Over {
    /// Does it end the cycle `seq`?
    pub fn ends(self, seq: u64) -> bool {
        match self {
            Over::Nothing => false,
            Over::Through(s) => seq <= s,
            Over::Before(s) => seq < s,
        }
    }
}

impl Cycles {
    /// `expected`: the analyzers that report on every snapshot. Empty: cycles are not
    /// tracked, and immediate findings are never held for one.
    pub fn new(expected: impl IntoIterator<Item = String>) -> Cycles {
        Cycles {
            expected: expected.into_iter().collect(),
            open: HashMap::new(),
        }
    }

    /// Are immediate findings held for their cycle?
    pub fn enabled(&self) -> bool {
        !self.expected.is_empty()
    }

    /// `analyzer` reported on snapshot `seq` of `source`.
    pub fn report(&mut self, analyzer: &str, source: &str, seq: u64) -> Over {
        if !self.enabled() {
            return Over::Through(seq);
        }
        let mut over = Over::Nothing;
        let open = self.open.entry(source.to_string()).or_insert_with(|| Open {
            seq,
            reported: BTreeSet::new(),
        });
        if seq < open.seq {
            // A late report on a cycle already superseded: that cycle is over.
            return Over::Through(seq);
        }
        if seq > open.seq {
            *open = Open {
                seq,
                reported: BTreeSet::new(),
            };
            over = Over::Before(seq);
        }
        open.reported.insert(analyzer.to_string());
        if self.expected.is_subset(&open.reported) {
            self.open.remove(source);
            return Over::Through(seq);
        }
        over
    }

    /// Forgets every open cycle (a report flush ends them all).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

/// The items held for the report that tell the same story as one of `leads` (immediate
/// items about to go): same channel and source, grouped with a lead by
/// [`crate::story::stories`], the grouping the message itself will use.
pub(super) fn companions(held: &BTreeMap<u64, Held>, leads: &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut places: BTreeSet<(&str, &str)> = BTreeSet::new();
    for h in leads.iter().filter_map(|id| held.get(id)) {
        if let Some(source) = h.source.as_deref() {
            places.insert((h.channel.as_str(), source));
        }
    }
    for (channel, source) in places {
        let lead_fps: HashSet<_> = leads
            .iter()
            .filter_map(|id| held.get(id))
            .filter(|h| h.channel == channel && h.source.as_deref() == Some(source))
            .map(|h| h.insight.fingerprint)
            .collect();
        let pool: Vec<&Held> = held
            .values()
            .filter(|h| {
                h.release == Release::Report
                    && h.channel == channel
                    && h.source.as_deref() == Some(source)
            })
            .collect();
        if pool.is_empty() {
            continue;
        }
        let insights: Vec<Insight> = leads
            .iter()
            .filter_map(|id| held.get(id))
            .filter(|h| lead_fps.contains(&h.insight.fingerprint))
            .chain(pool.iter().copied())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cycles() -> Cycles {
        Cycles::new(["slow", "regression", "index"].map(String::from))
    }

    #[test]
    fn a_cycle_is_over_when_every_analyzer_reported() {
        let mut c = cycles();
        assert_eq!(c.report("regression", "main/db1", 1), Over::Nothing);
        assert_eq!(c.report("slow", "main/db1", 1), Over::Nothing);
        // Another source's reports do not count for this one.
        assert_eq!(c.report("index", "main/db2", 1), Over::Nothing);
        assert_eq!(c.report("index", "main/db1", 1), Over::Through(1));
        assert!(Over::Through(1).ends(1));
        assert!(!Over::Through(1).ends(2));
    }

    #[test]
    fn a_newer_snapshot_ends_the_older_cycle() {
        let mut c = cycles();
        c.report("regression", "main/db1", 1);
        // The index analyzer died on seq 1; seq 2 begins.
        let over = c.report("regression", "main/db1", 2);
        assert_eq!(over, Over::Before(2));
        assert!(over.ends(1));
        assert!(!over.ends(2));
        // A late report on seq 1 does not reopen it.
        assert_eq!(c.report("index", "main/db1", 1), Over::Through(1));
        c.report("slow", "main/db1", 2);
        assert_eq!(c.report("index", "main/db1", 2), Over::Through(2));
    }

    #[test]
    fn without_expected_analyzers_every_report_ends_its_cycle() {
        let mut c = Cycles::new(Vec::new());
        assert!(!c.enabled());
        assert_eq!(c.report("regression", "main/db1", 7), Over::Through(7));
    }

    #[test]
    fn a_flush_forgets_open_cycles() {
        let mut c = cycles();
        c.report("regression", "main/db1", 1);
        c.clear();
        // The next cycle starts from nothing: the old reports are not counted.
        c.report("slow", "main/db1", 2);
        c.report("index", "main/db1", 2);
        assert_eq!(c.report("regression", "main/db1", 2), Over::Through(2));
    }

    // The engine holding immediate findings for their cycle.

    use super::super::engine::Engine;
    use super::super::lifecycle::{LifecycleSettings, Rules};
    use super::super::routes::Routes;
    use chrono::{DateTime, Utc};
    use sentinel_actors::gate::Insights;
    use sentinel_actors::{Fingerprint, NotifyReason, Severity, Window};

    const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_772_409_600 + secs, 0).unwrap()
    }

    fn finding(fp: u64, kind: &str, severity: Severity, labels: &[(&str, &str)]) -> Insight {
        let mut all = vec![
            ("repository", "main"),
            ("server", "db1"),
            ("database", "shop"),
        ];
        all.extend_from_slice(labels);
        Insight {
            fingerprint: Fingerprint(fp),
            kind: kind.into(),
            rule: format!("{kind}.rule"),
            severity,
            labels: all
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            title: format!("finding {fp}"),
            advice: "a".into(),
            text: None,
            metrics: Default::default(),
            window: Window {
                start: t(-3600),
                end: t(0),
            },
            observed_at: t(0),
            status: None,
        }
    }

    /// A regression of query 42 (critical) and the missing index that explains it.
    fn regression() -> Insight {
        finding(1, "regression", Severity::Critical, &[("queryid", "42")])
    }
    fn index() -> Insight {
        finding(2, "missing_index", Severity::Warning, &[("queryids", "42")])
    }
    /// A finding about another query: not part of the regression's story.
    fn unrelated() -> Insight {
        finding(3, "slow_query", Severity::Warning, &[("queryid", "77")])
    }

    fn report(analyzer: &str, seq: u64, at: DateTime<Utc>, insights: Vec<Insight>) -> Insights {
        Insights {
            analyzer: analyzer.into(),
            source: "main/db1".into(),
            seq,
            at,
            insights,
        }
    }

    fn held_engine() -> Engine {
        let chans = vec!["ops".to_string()];
        let routes = Routes::compile(&[], &[], &chans, &[]).unwrap();
        let mut e = Engine::new(
            Rules::new(&LifecycleSettings::default()),
            routes,
            BTreeMap::new(),
            Some(Severity::Critical),
        );
        e.hold_for_cycles(
            ["regression", "missing_index", "slow_queries"]
                .map(String::from)
                .to_vec(),
            WAIT,
        );
        e
    }

    fn fingerprints(out: &[sentinel_actors::gate::Outgoing]) -> Vec<u64> {
        let mut v: Vec<u64> = out
            .iter()
            .flat_map(|o| o.insights.iter().map(|i| i.fingerprint.0))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_critical_regression_goes_with_its_cause_once_the_cycle_is_over() {
        let mut e = held_engine();
        assert!(e.wants_ticks());
        // The regression analyzer reports first: nothing goes yet.
        assert!(e
            .observe(report("regression", 1, t(0), vec![regression()]))
            .is_empty());
        assert!(e
            .observe(report("slow_queries", 1, t(1), vec![unrelated()]))
            .is_empty());
        // The last analyzer of the cycle: the alarm goes now, with the missing index that
        // explains it, and without the unrelated finding.
        let out = e.observe(report("missing_index", 1, t(2), vec![index()]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, NotifyReason::Immediate);
        assert_eq!(fingerprints(&out), [1, 2]);
        // The report has the rest, and not the cause a second time.
        let report = e.flush(t(60));
        assert_eq!(fingerprints(&report), [3]);
        assert_eq!(report[0].reason, NotifyReason::Report);
    }

    #[test]
    fn the_wait_is_bounded_when_an_analyzer_never_reports() {
        let mut e = held_engine();
        assert!(e
            .observe(report("regression", 1, t(0), vec![regression()]))
            .is_empty());
        assert!(e.tick(t(59)).is_empty(), "waits up to immediate_wait");
        let out = e.tick(t(60));
        assert_eq!(fingerprints(&out), [1]);
        assert_eq!(out[0].reason, NotifyReason::Immediate);
    }

    #[test]
    fn a_newer_snapshot_or_a_flush_ends_the_wait() {
        let mut e = held_engine();
        e.observe(report("regression", 1, t(0), vec![regression()]));
        e.observe(report("missing_index", 1, t(1), vec![index()]));
        // The slow-query analyzer died on seq 1; its report on seq 2 ends cycle 1.
        let out = e.observe(report("slow_queries", 2, t(300), vec![]));
        assert_eq!(fingerprints(&out), [1, 2]);

        let mut e = held_engine();
        e.observe(report("regression", 1, t(0), vec![regression()]));
        let out = e.flush(t(10));
        assert_eq!(fingerprints(&out), [1]);
        assert!(out.iter().all(|o| o.reason == NotifyReason::Immediate));
        assert_eq!(e.counts().held, 0);
    }

    #[test]
    fn without_cycles_an_immediate_finding_goes_at_once() {
        let chans = vec!["ops".to_string()];
        let routes = Routes::compile(&[], &[], &chans, &[]).unwrap();
        let mut e = Engine::new(
            Rules::new(&LifecycleSettings::default()),
            routes,
            BTreeMap::new(),
            Some(Severity::Critical),
        );
        assert!(!e.wants_ticks());
        let out = e.observe(report("regression", 1, t(0), vec![regression()]));
        assert_eq!(fingerprints(&out), [1]);
    }
}
