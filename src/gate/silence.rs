//! Silences: mute one fingerprint, or every insight that matches a set of matchers, until
//! a time. A silenced finding keeps its lifecycle (it still fires, escalates, resolves);
//! only its notifications are swallowed. When the silence ends and the finding still fires,
//! the notification it missed is sent (see [`super::lifecycle::Finding::mark_muted`]).
//!
//! Matchers are `key=value` (equality) or `key=~regex` (whole value). Keys: any label
//! (`repository`, `server`, `database`, `user`, `queryid`, …), `kind`, `rule`, `severity`,
//! and `text` (the query text). Silences are created with `powa-sentinel silence add` and
//! live in the gate's store, so the running gate sees them at its next decision.

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use sentinel_actors::{Fingerprint, Insight};

/// How a matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    Equal,
    Regex,
}

/// One `key=value` or `key=~regex` condition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Matcher {
    pub key: String,
    pub op: MatchOp,
    pub value: String,
    #[serde(skip)]
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    /// Parses `key=value` or `key=~regex`; the error says what is wrong and what to write.
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let Some((key, rest)) = s.split_once('=') else {
            return Err(format!(
                "`{s}` is not a matcher: write key=value (equality) or key=~regex, e.g. server=db1"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "`{s}` has no key before `=`: write key=value, e.g. database=payments"
            ));
        }
        let (op, value) = match rest.strip_prefix('~') {
            Some(v) => (MatchOp::Regex, v),
            None => (MatchOp::Equal, rest),
        };
        let mut m = Matcher {
            key: key.to_string(),
            op,
            value: value.to_string(),
            re: None,
        };
        m.compile()?;
        Ok(m)
    }

    /// Compiles the regex (after loading from the store).
    pub fn compile(&mut self) -> Result<(), String> {
        if self.op == MatchOp::Regex {
            let re = Regex::new(&format!("^(?:{})$", self.value)).map_err(|e| {
                format!(
                    "`{}` is not a valid regular expression ({e}); fix the pattern",
                    self.value
                )
            })?;
            self.re = Some(re);
        }
        Ok(())
    }

    fn subject<'a>(&self, i: &'a Insight) -> Option<&'a str> {
        match self.key.as_str() {
            "kind" => Some(&i.kind),
            "rule" => Some(&i.rule),
            "severity" => Some(i.severity.as_str()),
            "text" => i.text.as_deref(),
            k => i.label(k),
        }
    }

    pub fn matches(&self, i: &Insight) -> bool {
        let Some(v) = self.subject(i) else {
            return false;
        };
        match (&self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            // Not compiled: fail closed (do not mute).
            (MatchOp::Regex, None) => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op {
            MatchOp::Equal => write!(f, "{}={}", self.key, self.value),
            MatchOp::Regex => write!(f, "{}=~{}", self.key, self.value),
        }
    }
}

/// One silence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

impl Silence {
    pub fn active(&self, at: DateTime<Utc>) -> bool {
        self.starts_at <= at && at < self.ends_at
    }

    /// Active at `at` and matching `i`. A silence with neither a fingerprint nor matchers
    /// matches nothing (the CLI refuses to create one).
    pub fn mutes(&self, i: &Insight, at: DateTime<Utc>) -> bool {
        if !self.active(at) {
            return false;
        }
        if self.fingerprint.is_none() && self.matchers.is_empty() {
            return false;
        }
        self.fingerprint.is_none_or(|f| f == i.fingerprint)
            && self.matchers.iter().all(|m| m.matches(i))
    }

    /// What the silence applies to, for listings.
    pub fn scope(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(f) = self.fingerprint {
            parts.push(format!("fingerprint={f}"));
        }
        parts.extend(self.matchers.iter().map(|m| m.to_string()));
        parts.join(" ")
    }

    /// Compiles the matchers' regexes (after loading from the store).
    pub fn compile(&mut self) {
        for m in &mut self.matchers {
            // A pattern that no longer compiles fails closed (matches nothing).
            let _ = m.compile();
        }
    }
}

/// True when an active silence mutes `i` at `at`.
pub fn muted(silences: &[Silence], i: &Insight, at: DateTime<Utc>) -> bool {
    silences.iter().any(|s| s.mutes(i, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::Severity;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn insight() -> Insight {
        let mut i = crate::gate::test_insight(0xabc, Severity::Warning);
        i.labels = [("server", "db1"), ("database", "payments")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        i.title = "t".into();
        i.text = Some("SELECT 1".into());
        i
    }

    fn silence(fp: Option<u64>, matchers: &[&str]) -> Silence {
        Silence {
            id: 1,
            fingerprint: fp.map(Fingerprint),
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).unwrap())
                .collect(),
            starts_at: t(0),
            ends_at: t(60),
            reason: "maintenance".into(),
            author: "me".into(),
            created_at: t(0),
        }
    }

    #[test]
    fn fingerprint_and_matchers_until_expiry() {
        let i = insight();
        assert!(silence(Some(0xabc), &[]).mutes(&i, t(10)));
        assert!(!silence(Some(0xabd), &[]).mutes(&i, t(10)));
        assert!(silence(None, &["server=db1", "severity=warning"]).mutes(&i, t(10)));
        assert!(!silence(None, &["server=db1", "severity=critical"]).mutes(&i, t(10)));
        assert!(silence(None, &["database=~pay.*", "text=~(?i)select.*"]).mutes(&i, t(10)));
        assert!(
            !silence(None, &["database=~pay"]).mutes(&i, t(10)),
            "whole value"
        );
        assert!(!silence(None, &["missing=x"]).mutes(&i, t(10)));
        // Ends are exclusive; before the start nothing is muted either.
        assert!(!silence(Some(0xabc), &[]).mutes(&i, t(60)));
        assert!(!silence(Some(0xabc), &[]).mutes(&i, t(-1)));
        assert!(
            !silence(None, &[]).mutes(&i, t(10)),
            "an empty silence mutes nothing"
        );
    }

    #[test]
    fn parse_errors_say_what_to_write() {
        assert!(Matcher::parse("server").unwrap_err().contains("key=value"));
        assert!(Matcher::parse("=x").unwrap_err().contains("no key"));
        assert!(Matcher::parse("server=~db[")
            .unwrap_err()
            .contains("not a valid regular expression"));
    }

    #[test]
    fn round_trips_and_recompiles() {
        let s = silence(Some(1), &["server=~db[0-9]"]);
        let text = serde_json::to_string(&s).unwrap();
        let mut back: Silence = serde_json::from_str(&text).unwrap();
        back.compile();
        assert_eq!(back, s);
        let mut i = insight();
        i.fingerprint = Fingerprint(1);
        assert!(back.mutes(&i, t(1)));
        assert_eq!(back.scope(), "fingerprint=0000000000000001 server=~db[0-9]");
    }
}
