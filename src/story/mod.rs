//! One story per problem: the insights of a notification grouped, ordered by impact and
//! told conclusion first, for the renderers ([`crate::render`]).
//!
//! The analyzers each see one angle of a problem: a query that reads a table it filters is
//! a `slow_query`, a `missing_index` and, once it got slower, a `regression`. Told apart,
//! they are three entries that do not refer to each other. Here they become one entry:
//!
//! - **Same query series** (repository, server, database, queryid): the most telling
//!   finding leads (a regression, else a slow query, a resource hog, a workload change),
//!   the others support it with their cause (CPU-bound, temp spill, a wait event) and
//!   numbers (rank, share of the server).
//! - **Same table**: a missing index whose helped queries include a story's queryid, on
//!   the same server and database, is told in that story as its cause, with its DDL and
//!   hypopg estimate (in the most impactful such story only).
//! - **Same finding on several servers** (same kind, rule and queryid; or the same index
//!   suggestion: table and columns; or the same PoWA health rule): one entry, led by the
//!   most impactful server, listing the others.
//!
//! Fingerprints and lifecycles are untouched: this only decides how the insights the gate
//! routed are told. Resolved insights are never grouped (each is a short line of its own).
//!
//! **Order** ([`order`]): severity first (critical, warning, info; resolved last), then the
//! time the problem costs per day (a regression's extra time, a query's total time), then
//! its share of the server, then rows read for nothing, then input order. Severity stays
//! first because it is what the analyzers' thresholds (and the user's routes) already
//! decided; impact orders what is equally urgent, whatever analyzer found it.
//!
//! Here: `group` makes the stories and orders them, `impact` says what a problem costs,
//! `tell` what an entry says (one module per kind of lead), `numbers` the supporting
//! figures with their units.

use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Insight, Severity};

mod group;
mod impact;
mod numbers;
mod tell;

#[cfg(test)]
pub(crate) mod fixture;

pub use group::{order, stories};
pub use impact::{per_day_factor, Impact};
pub use tell::{changes_section, place, tell, ServerChanges, Told};

/// Findings about one query series, in the order a story prefers as its lead.
const QUERY_KINDS: [&str; 4] = [
    "regression",
    "slow_query",
    "resource_hog",
    "workload_change",
];

/// One entry of a rendered report.
#[derive(Clone, Debug)]
pub struct Story<'a> {
    /// The finding the entry is about (its title, place, lifecycle).
    pub lead: &'a Insight,
    /// Other findings about the same query series or table, told as cause and numbers.
    pub support: Vec<&'a Insight>,
    /// The same finding on other servers (their leads), most impactful first.
    pub elsewhere: Vec<&'a Insight>,
    /// The most severe of all its insights.
    pub severity: Severity,
    /// How many insights it tells (lead, support, elsewhere and their support).
    pub insights: usize,
    impact: Impact,
    first: usize,
}

impl Story<'_> {
    pub fn is_resolved(&self) -> bool {
        self.lead.status == Some(Lifecycle::Resolved)
    }

    /// The insight of `kind` among the lead and its support.
    pub fn find(&self, kind: &str) -> Option<&Insight> {
        self.findings().find(|i| i.kind == kind && !is_blind(i))
    }

    /// The lead, then its support.
    fn findings(&self) -> impl Iterator<Item = &Insight> {
        std::iter::once(self.lead).chain(self.support.iter().copied())
    }
}

/// A missing-index finding that could not see the columns (nothing to suggest).
fn is_blind(i: &Insight) -> bool {
    i.rule == "missing_index.blind"
}

fn label<'a>(i: &'a Insight, k: &str) -> &'a str {
    i.label(k).unwrap_or("")
}

/// A metric of `i` when it is a number.
fn metric(i: &Insight, k: &str) -> Option<f64> {
    i.metric(k).filter(|v| v.is_finite())
}
