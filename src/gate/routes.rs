//! Routing: which channels an insight goes to, and whom to mention.
//!
//! Routes are tried in order (`[[routes]]` tables). An insight matches a route when every
//! matcher the route sets matches; the first match wins unless it says `continue = true`,
//! in which case later routes are tried too. An insight that matches no route goes to
//! `gate.default_channels` (every channel when that is empty). With no routes at all, every
//! insight goes to every channel.
//!
//! ```toml
//! [[routes]]
//! name = "payments"
//! channels = ["payments-oncall"]
//! repository = "main"              # equality on the label
//! server = "db1"
//! database = "payments"
//! kind = "regression"              # equality on the insight's kind
//! severity = "warning"             # a minimum: warning and critical
//! labels = { user = "app" }        # equality on any label
//! labels_regex = { server = "db[12]" }  # whole-value regex on any label
//! text_regex = "(?i)\\border_items\\b" # regex searched in the query text
//! continue = true
//! mention_userids = ["zhangsan", "@all"]
//! mention_mobiles = ["13800000000"]
//! mention_severity = "critical"    # mentions only for critical insights
//! ```

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use sentinel_actors::message::Mentions;
use sentinel_actors::{Insight, Severity};

use crate::problem::Problem;

/// One `[[routes]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// A name for logs and messages; default `routes[<index>]`.
    #[serde(default)]
    pub name: Option<String>,
    /// Where matching insights go (names of `[channels.<name>]` tables). Required.
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// Minimum severity: info, warning or critical.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub labels_regex: BTreeMap<String, String>,
    #[serde(default)]
    pub text_regex: Option<String>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    #[serde(default)]
    pub mention_userids: Vec<String>,
    #[serde(default)]
    pub mention_mobiles: Vec<String>,
    /// Minimum severity that gets the mentions; default critical.
    #[serde(default)]
    pub mention_severity: Option<String>,
}

fn severity(value: &str, key: String, problems: &mut Vec<Problem>) -> Option<Severity> {
    match value.parse::<Severity>() {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Problem::new(key, e));
            None
        }
    }
}

fn regex(value: &str, anchored: bool, key: String, problems: &mut Vec<Problem>) -> Option<Regex> {
    let pattern = if anchored {
        format!("^(?:{value})$")
    } else {
        value.to_string()
    };
    match Regex::new(&pattern) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(Problem::new(
                key,
                format!("`{value}` is not a valid regular expression ({e}); fix the pattern"),
            ));
            None
        }
    }
}

/// A compiled route.
#[derive(Debug, Clone)]
struct Route {
    label_eq: Vec<(String, String)>,
    kind: Option<String>,
    min_severity: Option<Severity>,
    label_re: Vec<(String, Regex)>,
    text_re: Option<Regex>,
    channels: Vec<usize>,
    continue_matching: bool,
    mentions: Mentions,
    mention_severity: Severity,
}

impl Route {
    fn matches(&self, i: &Insight) -> bool {
        if self.min_severity.is_some_and(|m| i.severity < m) {
            return false;
        }
        if self.kind.as_ref().is_some_and(|k| *k != i.kind) {
            return false;
        }
        if !self
            .label_eq
            .iter()
            .all(|(k, v)| i.label(k) == Some(v.as_str()))
        {
            return false;
        }
        if !self
            .label_re
            .iter()
            .all(|(k, re)| i.label(k).is_some_and(|v| re.is_match(v)))
        {
            return false;
        }
        match &self.text_re {
            Some(re) => i.text.as_deref().is_some_and(|t| re.is_match(t)),
            None => true,
        }
    }
}

/// One channel an insight goes to, and the mentions that go with it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'a> {
    pub channel: usize,
    pub mentions: Option<&'a Mentions>,
}

/// The compiled routing table. Channels are referred to by index into [`Routes::channel`].
#[derive(Debug, Clone)]
pub struct Routes {
    channels: Vec<String>,
    routes: Vec<Route>,
    default: Vec<usize>,
    /// Channels that see every routed insight (internal sinks such as `--output json`).
    always: Vec<usize>,
}

impl Routes {
    /// Compiles the routes. `channels` are the configured channel names, `always` internal
    /// sinks that see everything. Every problem is reported with its key.
    pub fn compile(
        routes: &[RouteSettings],
        default_channels: &[String],
        channels: &[String],
        always: &[String],
    ) -> Result<Routes, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut names: Vec<String> = channels.to_vec();
        for a in always {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        let index = |name: &str, key: String, problems: &mut Vec<Problem>| -> Option<usize> {
            match channels.iter().position(|c| c == name) {
                Some(i) => Some(i),
                None => {
                    problems.push(Problem::new(
                        key,
                        format!(
                            "no channel is named `{name}`: use one of the [channels.<name>] tables ({})",
                            if channels.is_empty() { "none configured".to_string() } else { channels.join(", ") }
                        ),
                    ));
                    None
                }
            }
        };
        let mut compiled = Vec::new();
        for (n, r) in routes.iter().enumerate() {
            let key = |f: &str| format!("routes[{n}].{f}");
            if r.channels.is_empty() {
                problems.push(Problem::new(
                    key("channels"),
                    "a route needs at least one channel, e.g. channels = [\"console\"]",
                ));
            }
            let chans: Vec<usize> = r
                .channels
                .iter()
                .filter_map(|c| index(c, key("channels"), &mut problems))
                .collect();
            let mut label_eq = Vec::new();
            for (label, value) in [
                ("repository", &r.repository),
                ("server", &r.server),
                ("database", &r.database),
            ] {
                if let Some(v) = value {
                    label_eq.push((label.to_string(), v.clone()));
                }
            }
            label_eq.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let label_re = r
                .labels_regex
                .iter()
                .filter_map(|(k, v)| {
                    regex(
                        v,
                        true,
                        format!("routes[{n}].labels_regex.{k}"),
                        &mut problems,
                    )
                    .map(|re| (k.clone(), re))
                })
                .collect();
            let text_re = r
                .text_regex
                .as_ref()
                .and_then(|v| regex(v, false, key("text_regex"), &mut problems));
            let min_severity = r
                .severity
                .as_ref()
                .and_then(|s| severity(s, key("severity"), &mut problems));
            let mention_severity = match &r.mention_severity {
                Some(s) => severity(s, key("mention_severity"), &mut problems),
                None => Some(Severity::Critical),
            };
            for (field, list) in [
                ("mention_userids", &r.mention_userids),
                ("mention_mobiles", &r.mention_mobiles),
            ] {
                if list.iter().any(|v| v.trim().is_empty()) {
                    problems.push(Problem::new(key(field), "contains an empty entry"));
                }
            }
            compiled.push(Route {
                label_eq,
                kind: r.kind.clone(),
                min_severity,
                label_re,
                text_re,
                channels: chans,
                continue_matching: r.continue_matching,
                mentions: Mentions {
                    userids: r.mention_userids.clone(),
                    mobiles: r.mention_mobiles.clone(),
                },
                mention_severity: mention_severity.unwrap_or(Severity::Critical),
            });
        }
        let default = if default_channels.is_empty() {
            (0..channels.len()).collect()
        } else {
            default_channels
                .iter()
                .filter_map(|c| index(c, "gate.default_channels".to_string(), &mut problems))
                .collect()
        };
        let always = always
            .iter()
            .filter_map(|a| names.iter().position(|c| c == a))
            .collect();
        if problems.is_empty() {
            Ok(Routes {
                channels: names,
                routes: compiled,
                default,
                always,
            })
        } else {
            Err(problems)
        }
    }

    pub fn channel(&self, index: usize) -> &str {
        &self.channels[index]
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The channels of `insight` (into `out`, cleared first). A channel reached by several
    /// routes appears once per route, each with that route's mentions.
    pub fn route<'a>(&'a self, insight: &Insight, out: &mut Vec<Hit<'a>>) {
        out.clear();
        let mut matched = false;
        for r in &self.routes {
            if !r.matches(insight) {
                continue;
            }
            matched = true;
            let mentions = (insight.severity >= r.mention_severity && !r.mentions.is_empty())
                .then_some(&r.mentions);
            out.extend(r.channels.iter().map(|&channel| Hit { channel, mentions }));
            if !r.continue_matching {
                break;
            }
        }
        if !matched {
            out.extend(self.default.iter().map(|&channel| Hit {
                channel,
                mentions: None,
            }));
        }
        for &channel in &self.always {
            if !out.iter().any(|h| h.channel == channel) {
                out.push(Hit {
                    channel,
                    mentions: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::{Fingerprint, Window};

    fn insight(severity: Severity, labels: &[(&str, &str)], text: Option<&str>) -> Insight {
        let t = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        Insight {
            fingerprint: Fingerprint(1),
            kind: "slow_query".into(),
            rule: "slow_query.total_time".into(),
            severity,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            title: "t".into(),
            advice: "a".into(),
            text: text.map(String::from),
            metrics: Default::default(),
            window: Window { start: t, end: t },
            observed_at: t,
            status: None,
            changes: Vec::new(),
            trend: None,
        }
    }

    fn chans() -> Vec<String> {
        ["console", "ops", "dba", "pay"].map(String::from).to_vec()
    }

    fn names(r: &Routes, i: &Insight) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        r.route(i, &mut out);
        out.iter()
            .map(|h| {
                (
                    r.channel(h.channel).to_string(),
                    h.mentions.map(|m| m.userids.clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn no_routes_means_every_channel() {
        let r = Routes::compile(&[], &[], &chans(), &["output:json".into()]).unwrap();
        let got = names(&r, &insight(Severity::Info, &[], None));
        let got: Vec<_> = got.into_iter().map(|(c, _)| c).collect();
        assert_eq!(got, ["console", "ops", "dba", "pay", "output:json"]);
    }

    #[test]
    fn first_match_wins_continue_goes_on_default_catches_the_rest() {
        let routes = vec![
            RouteSettings {
                channels: vec!["pay".into()],
                database: Some("payments".into()),
                continue_matching: true,
                mention_userids: vec!["zhangsan".into()],
                ..Default::default()
            },
            RouteSettings {
                channels: vec!["dba".into()],
                severity: Some("warning".into()),
                ..Default::default()
            },
            RouteSettings {
                channels: vec!["ops".into()],
                ..Default::default()
            },
        ];
        let r = Routes::compile(&routes, &["console".into()], &chans(), &[]).unwrap();
        // payments + warning: route 1 (continue) then route 2 (stops).
        assert_eq!(
            names(
                &r,
                &insight(Severity::Warning, &[("database", "payments")], None)
            ),
            [("pay".into(), vec![]), ("dba".into(), vec![])],
            "mentions only from critical by default"
        );
        assert_eq!(
            names(
                &r,
                &insight(Severity::Critical, &[("database", "payments")], None)
            ),
            [
                ("pay".into(), vec!["zhangsan".to_string()]),
                ("dba".into(), vec![])
            ]
        );
        // info elsewhere: skips the severity route, caught by the catch-all route 3.
        assert_eq!(
            names(&r, &insight(Severity::Info, &[("database", "x")], None)),
            [("ops".into(), vec![])]
        );
        // With no catch-all route, the default channels.
        let r = Routes::compile(&routes[..2], &["console".into()], &chans(), &[]).unwrap();
        assert_eq!(
            names(&r, &insight(Severity::Info, &[("database", "x")], None)),
            [("console".into(), vec![])]
        );
    }

    #[test]
    fn label_regex_is_whole_value_text_regex_searches() {
        let routes = vec![RouteSettings {
            channels: vec!["dba".into()],
            labels_regex: BTreeMap::from([("server".into(), "db[12]".into())]),
            text_regex: Some("(?i)order_items".into()),
            kind: Some("slow_query".into()),
            ..Default::default()
        }];
        let r = Routes::compile(&routes, &["console".into()], &chans(), &[]).unwrap();
        let hit = |server: &str, text: Option<&str>| {
            names(&r, &insight(Severity::Info, &[("server", server)], text))[0]
                .0
                .clone()
        };
        assert_eq!(hit("db1", Some("select * from ORDER_ITEMS")), "dba");
        assert_eq!(hit("db12", Some("select * from order_items")), "console");
        assert_eq!(hit("db2", None), "console", "no text: no text match");
    }

    #[test]
    fn mention_severity_is_a_minimum() {
        let routes = vec![RouteSettings {
            channels: vec!["ops".into()],
            mention_mobiles: vec!["13800000000".into()],
            mention_severity: Some("warning".into()),
            ..Default::default()
        }];
        let r = Routes::compile(&routes, &[], &chans(), &[]).unwrap();
        let mut out = Vec::new();
        r.route(&insight(Severity::Warning, &[], None), &mut out);
        assert_eq!(out[0].mentions.unwrap().mobiles, ["13800000000"]);
        r.route(&insight(Severity::Info, &[], None), &mut out);
        assert_eq!(out[0].mentions, None);
    }

    #[test]
    fn bad_routes_name_the_key() {
        let routes = vec![
            RouteSettings {
                channels: vec!["nope".into()],
                severity: Some("urgent".into()),
                ..Default::default()
            },
            RouteSettings {
                channels: vec![],
                labels_regex: BTreeMap::from([("server".into(), "db[".into())]),
                text_regex: Some("(".into()),
                mention_severity: Some("high".into()),
                ..Default::default()
            },
        ];
        let e = Routes::compile(&routes, &["gone".into()], &chans(), &[]).unwrap_err();
        let keys: Vec<_> = e.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "routes[0].channels",
                "routes[0].severity",
                "routes[1].channels",
                "routes[1].labels_regex.server",
                "routes[1].text_regex",
                "routes[1].mention_severity",
                "gate.default_channels",
            ]
        );
        assert!(e[0].message.contains("`nope`"), "{}", e[0].message);
        assert!(e[1].message.contains("urgent"), "{}", e[1].message);
    }
}
