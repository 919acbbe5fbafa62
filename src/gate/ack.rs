//! Acknowledgements: "someone is on it". An acknowledged finding is not repeated; its
//! escalation and its resolution are still told, saying who acknowledged it and when, and
//! end the acknowledgement (a worse problem, or a new one later, is news again).
//!
//! They are made from a notification's link (the HTTP endpoint) and kept in the gate's
//! store, which the gate reads before each decision, as it reads silences.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Fingerprint, Insight};

/// The labels an acknowledged finding's notification carries (chat shows them as
/// "Acknowledged by … at …"; the webhook and JSON outputs pass them on).
pub const BY_LABEL: &str = "acknowledged_by";
pub const AT_LABEL: &str = "acknowledged_at";

/// One acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub fingerprint: Fingerprint,
    /// Who, as they wrote it on the page (or "a notification link").
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The finding's title when it was acknowledged, for listings.
    #[serde(default)]
    pub title: String,
}

/// What an acknowledgement does to a notification the lifecycle wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not sent: a repeat of an acknowledged finding.
    Quiet,
    /// Sent, saying who acknowledged it; the acknowledgement ends.
    TellAndEnd,
    /// A new firing of the finding: the old acknowledgement is stale and ends; sent as is.
    End,
}

impl Ack {
    /// What this acknowledgement does to a notification with `status`.
    pub fn verdict(&self, status: Lifecycle) -> Verdict {
        match status {
            Lifecycle::Ongoing => Verdict::Quiet,
            Lifecycle::Escalated | Lifecycle::Resolved => Verdict::TellAndEnd,
            Lifecycle::New | Lifecycle::Reopened => Verdict::End,
        }
    }

    /// Marks `i` as acknowledged by this.
    pub fn label(&self, i: &mut Insight) {
        i.labels.insert(BY_LABEL.into(), self.by.clone());
        i.labels.insert(
            AT_LABEL.into(),
            self.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::Severity;

    #[test]
    fn repeats_are_quiet_changes_are_told() {
        let a = Ack {
            fingerprint: Fingerprint(7),
            by: "alice".into(),
            at: DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap(),
            note: None,
            title: "t".into(),
        };
        assert_eq!(a.verdict(Lifecycle::Ongoing), Verdict::Quiet);
        assert_eq!(a.verdict(Lifecycle::Escalated), Verdict::TellAndEnd);
        assert_eq!(a.verdict(Lifecycle::Resolved), Verdict::TellAndEnd);
        assert_eq!(a.verdict(Lifecycle::Reopened), Verdict::End);
        let mut i = crate::gate::test_insight(7, Severity::Warning);
        a.label(&mut i);
        assert_eq!(i.label(BY_LABEL), Some("alice"));
        assert_eq!(i.label(AT_LABEL), Some("2026-05-28T20:26:40Z"));
    }
}
