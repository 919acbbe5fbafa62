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

use std::collections::{BTreeSet, HashMap};

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
}
