//! Messages that flow between the pipeline stages.
//!
//! Data flows one way — collector → analyzers → gate → channels — and only the
//! [`DeliveryOutcome`] flows back. Every message is cheap to clone: bodies sit behind `Arc`,
//! so fanning a snapshot out to several analyzers copies a pointer, not the rows.
//! Timestamps come from the data (PoWA's snapshot time, the window) or from the tick that
//! caused the work, never from `now()` deep inside a stage, so tests can replay time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How urgent an insight is. Ordered: `Info < Warning < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity `{other}`: use info, warning or critical"
            )),
        }
    }
}

/// Stable identity of a problem: the same problem seen in two cycles (or two processes, or
/// two versions of the program) has the same fingerprint. Computed with FNV-1a over the
/// identifying parts, because std's hashers make no stability promise across releases.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// Hashes the parts in order; each part is terminated so that `["ab","c"]` and
    /// `["a","bc"]` differ.
    pub fn of<I, S>(parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        for part in parts {
            for b in part.as_ref().bytes().chain(std::iter::once(0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(PRIME);
            }
        }
        Fingerprint(h)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        u64::from_str_radix(&s, 16)
            .map(Fingerprint)
            .map_err(|_| format!("`{s}` is not a 16-digit hexadecimal fingerprint"))
    }
}

/// The time span an insight speaks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A conclusion a person can act on: what is wrong, where, how bad, what to do.
///
/// `labels` say *where* (repository, server, database, user, queryid, …) and are what routes
/// match on; `metrics` are the numbers behind the conclusion, with the unit in the name
/// (`mean_time_ms`, `share_of_total_time`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    pub fingerprint: Fingerprint,
    /// Family of the finding, e.g. `slow_query`, `regression`.
    pub kind: String,
    /// The rule that produced it, e.g. `slow_query.total_time`.
    pub rule: String,
    pub severity: Severity,
    #[serde(flatten)]
    pub labels: BTreeMap<String, String>,
    pub title: String,
    pub advice: String,
    /// The query text or other subject text, untruncated; renderers cut it to fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub window: Window,
    pub observed_at: DateTime<Utc>,
    /// Where the gate's lifecycle puts this finding; analyzers leave it `None`, the gate
    /// sets it on the copies it routes so channels can say "new", "resolved", ….
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_status"
    )]
    pub status: Option<Lifecycle>,
    /// What changed on the server between the finding's baseline and now (settings,
    /// restarts, indexes, a release), nearest first; the ones that likely explain it carry
    /// their evidence. Empty for findings that do not compare with a past.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The query's numbers snapshot by snapshot over the window and its baselines, for a
    /// trend chart. Analyzers leave it `None`: a channel that draws charts has it read
    /// from PoWA just before it journals the notification, for the few insights it charts,
    /// so the collectors keep no per-snapshot history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
}

/// One query's per-snapshot numbers: the window's series first, then one per baseline
/// window (shifted back by `offset_secs`), nearest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub series: Vec<TrendSeries>,
}

/// The points of one window. `offset_secs` is 0 for the window itself, else how far back
/// the baseline window lies (its points keep their own times).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrendSeries {
    pub offset_secs: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub points: Vec<TrendPoint>,
}

/// What one snapshot added: calls and mean execution time per call (ms) since the one
/// before.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub at: DateTime<Utc>,
    pub calls: f64,
    pub mean_time_ms: f64,
}

/// One change on a monitored server, told with a finding it may explain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub at: DateTime<Utc>,
    /// `setting`, `restart`, `index_dropped`, `index_created`, `new_queries`.
    pub kind: String,
    /// What changed, in words: "`work_mem` 64MB → 64kB on database etl".
    pub what: String,
    /// Why it likely explains the finding, when the evidence is direct ("temp blocks per
    /// call 0 → 53 k"); None for a change that only happened meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The statement that puts a setting back as it was, for a change that is the likely
    /// cause ("ALTER DATABASE etl SET work_mem = '64MB'").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

/// The gate's view of one fingerprint over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// First seen (after flap damping).
    New,
    /// Still there; only notified again after the repeat interval.
    Ongoing,
    /// Severity or magnitude grew since the last notification.
    Escalated,
    /// Gone for enough clean cycles.
    Resolved,
    /// Back after having been resolved.
    Reopened,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::New => "new",
            Lifecycle::Ongoing => "ongoing",
            Lifecycle::Escalated => "escalated",
            Lifecycle::Resolved => "resolved",
            Lifecycle::Reopened => "reopened",
        }
    }
}

/// Reads `status` as a lifecycle, and anything else as none: labels share the insight's
/// JSON object (`flatten`), and states written when the health score had a `status`
/// label ("degraded") must still open; the gate sets the status again at its next cycle.
fn lenient_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Lifecycle>, D::Error> {
    let v = Option::<String>::deserialize(d)?;
    Ok(v.and_then(|s| {
        [
            Lifecycle::New,
            Lifecycle::Ongoing,
            Lifecycle::Escalated,
            Lifecycle::Resolved,
            Lifecycle::Reopened,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }))
}

impl Insight {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).copied()
    }
}

/// What a collector hands to the analyzers: one server's data for one collection.
#[derive(Debug)]
pub struct Snapshot<S> {
    /// Stable name of the source (repository/server).
    pub source: String,
    /// Increases by one per collection of this source; lets analyzers spot gaps.
    pub seq: u64,
    /// The newest data time covered (PoWA's snapshot timestamp), not the wall clock.
    pub taken_at: DateTime<Utc>,
    pub body: Arc<S>,
}

impl<S> Clone for Snapshot<S> {
    fn clone(&self) -> Self {
        Snapshot {
            source: self.source.clone(),
            seq: self.seq,
            taken_at: self.taken_at,
            body: Arc::clone(&self.body),
        }
    }
}

/// Why the gate is sending a notification now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyReason {
    /// A scheduled report (or `once`) flushed what was pending.
    Report,
    /// A critical insight that does not wait for the report.
    Immediate,
}

/// A batch of insights for one channel. The channel renders it within its own limits.
#[derive(Clone, Debug)]
pub struct Notification {
    /// Unique per notification; parts of a split message derive their ids from it.
    pub id: u64,
    pub channel: String,
    pub reason: NotifyReason,
    pub insights: Arc<Vec<Insight>>,
    /// Time the gate decided to send (the tick time).
    pub created_at: DateTime<Utc>,
    /// People to notify with this message (chosen by the route, per severity).
    pub mentions: Mentions,
}

/// Who a message must notify: provider user ids and mobile numbers. WeCom robots take
/// `@all` as a user id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mentions {
    #[serde(default)]
    pub userids: Vec<String>,
    #[serde(default)]
    pub mobiles: Vec<String>,
}

impl Mentions {
    pub fn is_empty(&self) -> bool {
        self.userids.is_empty() && self.mobiles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_with_a_status_label_still_reads() {
        // What a health-score finding looked like when its status word was a label.
        let old = r#"{"fingerprint":"00000000000000ff","kind":"health_score","rule":"health_score.score",
            "severity":"info","repository":"main","server":"db1","status":"degraded","title":"t",
            "advice":"a","metrics":{},"window":{"start":"2026-12-01T00:00:00Z","end":"2026-12-01T01:00:00Z"},
            "observed_at":"2026-12-01T01:00:00Z"}"#;
        let i: Insight = serde_json::from_str(old).unwrap();
        assert_eq!(i.status, None);
        assert_eq!(i.label("server"), Some("db1"));
        let new: Insight = serde_json::from_str(&old.replace("degraded", "ongoing")).unwrap();
        assert_eq!(new.status, Some(Lifecycle::Ongoing));
    }
}
