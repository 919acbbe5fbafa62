//! Insights as an analyzer makes them, for the tests that feed the gate directly.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sentinel_actors::{Fingerprint, Insight, Severity, Window};

/// A slow-query warning with `fingerprint`, observed at `at` over an instant's window,
/// labelled `labels`.
pub fn slow_query(fingerprint: u64, at: DateTime<Utc>, labels: &[(&str, &str)]) -> Insight {
    Insight {
        fingerprint: Fingerprint(fingerprint),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity: Severity::Warning,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        title: format!("finding {fingerprint}"),
        advice: "add an index".into(),
        text: None,
        metrics: BTreeMap::new(),
        window: Window { start: at, end: at },
        observed_at: at,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}
