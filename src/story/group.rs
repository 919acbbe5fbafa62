//! Grouping a cycle's insights into stories, and their order.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use sentinel_actors::message::Lifecycle;
use sentinel_actors::Insight;

use super::{is_blind, label, Impact, Story, QUERY_KINDS};

/// The query series an insight is about, when it is about one.
fn series(i: &Insight) -> Option<(&str, &str, &str, &str)> {
    if !QUERY_KINDS.contains(&i.kind.as_str()) {
        return None;
    }
    let q = i.label("queryid")?;
    Some((
        label(i, "repository"),
        label(i, "server"),
        label(i, "database"),
        q,
    ))
}

fn kind_rank(kind: &str) -> usize {
    QUERY_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(QUERY_KINDS.len())
}

/// The queryids a missing index would help (its `queryids` label; "+N" counts are not ids).
fn helped(i: &Insight) -> impl Iterator<Item = &str> {
    label(i, "queryids")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('+'))
}

/// The insights as stories, in [`order`].
pub fn stories(insights: &[Insight]) -> Vec<Story<'_>> {
    // 1. Query series: one story per (repository, server, database, queryid).
    let mut out: Vec<Story<'_>> = Vec::new();
    let mut by_series: BTreeMap<(&str, &str, &str, &str), usize> = BTreeMap::new();
    let mut rest: Vec<(usize, &Insight)> = Vec::new();
    for (k, i) in insights.iter().enumerate() {
        let resolved = i.status == Some(Lifecycle::Resolved);
        match series(i).filter(|_| !resolved) {
            Some(key) => match by_series.get(&key) {
                Some(&s) => out[s].support.push(i),
                None => {
                    by_series.insert(key, out.len());
                    out.push(single(k, i));
                }
            },
            None => rest.push((k, i)),
        }
    }
    for s in out.iter_mut() {
        // The lead: most severe, then the preferred kind, then the first seen.
        let mut all: Vec<&Insight> = std::iter::once(s.lead).chain(s.support.drain(..)).collect();
        all.sort_by_key(|i| (Reverse(i.severity), kind_rank(&i.kind)));
        s.lead = all[0];
        s.support = all[1..].to_vec();
    }
    for s in out.iter_mut() {
        s.refresh();
    }

    // 2. Missing indexes: told in the most impactful story of a query they help.
    let mut alone: Vec<(usize, &Insight)> = Vec::new();
    for (k, i) in rest {
        let resolved = i.status == Some(Lifecycle::Resolved);
        if i.kind != "missing_index" || is_blind(i) || resolved {
            alone.push((k, i));
            continue;
        }
        let (repo, server, db) = (
            label(i, "repository"),
            label(i, "server"),
            label(i, "database"),
        );
        let target = helped(i)
            .filter_map(|q| by_series.get(&(repo, server, db, q)).copied())
            .max_by(|a, b| out[*a].impact.cmp(&out[*b].impact).then(b.cmp(a)));
        match target {
            Some(t) if out[t].find("missing_index").is_none() => {
                out[t].support.push(i);
                out[t].refresh();
            }
            _ => alone.push((k, i)),
        }
    }
    alone.sort_by_key(|(k, _)| *k);
    out.extend(alone.into_iter().map(|(k, i)| single(k, i)));

    // 3. The same finding on several servers: one entry.
    let mut merged: Vec<Story<'_>> = Vec::new();
    let mut by_finding: BTreeMap<String, usize> = BTreeMap::new();
    order(&mut out);
    for s in out {
        match finding_key(&s) {
            Some(key) => match by_finding.get(&key) {
                Some(&m) => {
                    let t = &mut merged[m];
                    t.elsewhere.push(s.lead);
                    t.elsewhere.extend(s.elsewhere);
                    t.insights += s.insights;
                    t.severity = t.severity.max(s.severity);
                    t.first = t.first.min(s.first);
                }
                None => {
                    by_finding.insert(key, merged.len());
                    merged.push(s);
                }
            },
            None => merged.push(s),
        }
    }
    order(&mut merged);
    merged
}

fn single(k: usize, i: &Insight) -> Story<'_> {
    Story {
        lead: i,
        support: Vec::new(),
        elsewhere: Vec::new(),
        severity: i.severity,
        insights: 1,
        impact: Impact::of(i),
        first: k,
    }
}

impl Story<'_> {
    fn refresh(&mut self) {
        self.severity = self
            .findings()
            .map(|i| i.severity)
            .max()
            .unwrap_or(self.lead.severity);
        self.insights = 1 + self.support.len();
        self.impact = self
            .support
            .iter()
            .fold(Impact::of(self.lead), |a, i| a.max(Impact::of(i)));
    }
}

/// What makes two stories on different servers the same finding (None: never merged).
fn finding_key(s: &Story<'_>) -> Option<String> {
    if s.is_resolved() {
        return None;
    }
    let i = s.lead;
    let repo = label(i, "repository");
    let status = i.status.map(|l| l.as_str()).unwrap_or("");
    match i.kind.as_str() {
        // The same statement: the same normalised text (queryids differ between servers
        // whose tables have different oids), else the same queryid.
        k if QUERY_KINDS.contains(&k) && i.label("queryid").is_some() => Some(format!(
            "q\u{0}{repo}\u{0}{}\u{0}{}\u{0}{status}\u{0}{}",
            i.rule,
            i.text
                .as_deref()
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| label(i, "queryid").to_string()),
            // Same supporting kinds, so that the entry tells the same story for each.
            support_kinds(s)
        )),
        "missing_index" if !is_blind(i) && i.label("table").is_some() => Some(format!(
            "i\u{0}{repo}\u{0}{}\u{0}{}\u{0}{status}",
            label(i, "table"),
            label(i, "columns")
        )),
        "powa_health" => Some(format!("h\u{0}{repo}\u{0}{}\u{0}{status}", i.rule)),
        _ => None,
    }
}

fn support_kinds(s: &Story<'_>) -> String {
    let mut k: Vec<&str> = s.support.iter().map(|i| i.rule.as_str()).collect();
    k.sort_unstable();
    k.join(",")
}

/// Severity first (resolved last), then impact, then input order.
pub fn order(v: &mut [Story<'_>]) {
    v.sort_by(|a, b| {
        a.is_resolved()
            .cmp(&b.is_resolved())
            .then(b.severity.cmp(&a.severity))
            .then(b.impact.cmp(&a.impact))
            .then(a.first.cmp(&b.first))
    });
}

#[cfg(test)]
mod tests {
    use sentinel_actors::Severity::{Critical, Info, Warning};

    use super::*;
    use crate::render::Lang;
    use crate::story::fixture::{insight, with};
    use crate::story::{place, tell};

    #[test]
    fn one_story_per_query_series_with_its_missing_index() {
        let v = vec![
            insight("slow_query.total_time", "db1", "7", Info),
            insight("missing_index.btree", "db1", "7", Warning),
            insight("regression.mean_time", "db1", "7", Critical),
            insight("slow_query.total_time", "db1", "8", Info),
            // Another server, another statement: its own entry.
            insight("regression.mean_time", "db2", "9", Warning),
        ];
        let s = stories(&v);
        assert_eq!(s.len(), 3, "{s:#?}");
        assert_eq!(s[0].lead.kind, "regression");
        assert_eq!(s[0].lead.label("server"), Some("db1"));
        assert_eq!(s[0].severity, Critical);
        let kinds: Vec<&str> = s[0].support.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, ["slow_query", "missing_index"]);
        assert_eq!(s[0].insights, 3);
        assert_eq!(s.iter().map(|x| x.insights).sum::<usize>(), v.len());
    }

    #[test]
    fn the_same_finding_on_several_servers_is_one_entry() {
        let v: Vec<Insight> = ["db1", "db2", "db3"]
            .iter()
            .enumerate()
            .map(|(k, srv)| {
                let i = insight("missing_index.btree", srv, &k.to_string(), Warning);
                with(i, &[("rows_filtered", 1000.0 * (k + 1) as f64)])
            })
            .collect();
        let s = stories(&v);
        assert_eq!(s.len(), 1, "{s:#?}");
        // The most impactful server leads.
        assert_eq!(s[0].lead.label("server"), Some("db3"));
        assert_eq!(s[0].elsewhere.len(), 2);
        let t = tell(&s[0], Lang::En, &place);
        assert!(t.title.contains("— on 3 servers"), "{t:?}");
        assert_eq!(t.elsewhere.len(), 2);
    }

    #[test]
    fn resolved_insights_are_never_grouped() {
        let mut a = insight("regression.mean_time", "db1", "7", Warning);
        a.status = Some(Lifecycle::Resolved);
        let b = insight("slow_query.total_time", "db1", "7", Warning);
        let v = vec![a, b];
        let s = stories(&v);
        assert_eq!(s.len(), 2);
        assert!(s[1].is_resolved(), "resolved last");
    }

    #[test]
    fn severity_first_then_time_per_day_whatever_the_analyzer() {
        let v: Vec<Insight> = [
            (
                "slow_query.total_time",
                "1",
                Warning,
                "total_time_ms",
                1000.0,
            ),
            (
                "regression.mean_time",
                "2",
                Warning,
                "extra_time_ms",
                60_000.0,
            ),
            ("missing_index.btree", "3", Warning, "rows_filtered", 1e9),
            (
                "slow_query.total_time",
                "4",
                Critical,
                "total_time_ms",
                10.0,
            ),
        ]
        .into_iter()
        .map(|(rule, q, sev, m, x)| with(insight(rule, "db1", q, sev), &[(m, x)]))
        .collect();
        let s = stories(&v);
        let q: Vec<&str> = s
            .iter()
            .map(|x| {
                x.lead
                    .label("queryid")
                    .or(x.lead.label("queryids"))
                    .unwrap()
            })
            .collect();
        assert_eq!(q, ["4", "2", "1", "3,+2"]);
    }
}
