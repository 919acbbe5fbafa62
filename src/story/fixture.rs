//! Insights for the stories' and the renderers' unit tests.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use sentinel_actors::{Fingerprint, Insight, Severity, Window};

/// A finding of `rule` (its kind is the rule's first word) on `server`'s database `app`
/// in repository `main`, about `queryid` (a missing index: helping it and two more, on
/// `public.orders (created_at)`), over one day.
pub(crate) fn insight(rule: &str, server: &str, queryid: &str, sev: Severity) -> Insight {
    let kind = rule.split('.').next().unwrap_or(rule);
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
    let mut labels: BTreeMap<String, String> = [
        ("repository", "main"),
        ("server", server),
        ("database", "app"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if kind == "missing_index" {
        labels.insert("queryids".into(), format!("{queryid},+2"));
        labels.insert("table".into(), "public.orders".into());
        labels.insert("columns".into(), "created_at".into());
    } else {
        labels.insert("queryid".into(), queryid.into());
    }
    Insight {
        fingerprint: Fingerprint::of([kind, rule, server, queryid]),
        kind: kind.into(),
        rule: rule.into(),
        severity: sev,
        labels,
        title: format!("{kind} on {server}"),
        advice: "advice".into(),
        text: Some(format!("SELECT {queryid}")),
        metrics: BTreeMap::new(),
        window: Window { start: t0, end: t1 },
        observed_at: t1,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

/// `i` with the metrics `m` added.
pub(crate) fn with(mut i: Insight, m: &[(&str, f64)]) -> Insight {
    i.metrics.extend(m.iter().map(|(k, v)| (k.to_string(), *v)));
    i
}
