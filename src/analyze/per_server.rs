//! Per-server overrides of an analyzer's settings:
//! `[analyzers.<name>.servers."<repository>/<server>"]` takes the same keys as
//! `[analyzers.<name>]`, and any key it sets replaces the analyzer-wide value for that server
//! only. A fleet mixes OLTP primaries (where 50 ms is slow) with reporting replicas (where a
//! minute is normal); one set of thresholds is either noisy on one or blind on the other.
//!
//! Implemented once for every analyzer: the table is read as a generic value, the `servers`
//! sub-table is taken out, and each override is merged key by key over the analyzer-wide
//! table before being deserialised into the same settings struct. So an override is checked
//! by exactly the same rules (types, `deny_unknown_fields`, `validate`) as the base table.

use std::collections::BTreeMap;
use std::ops::Deref;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::checks::Checks;
use crate::problem::Problem;

/// Settings an analyzer can have per server: deserialisable, and checked after parsing.
pub trait AnalyzerSettings: DeserializeOwned + Clone + Default {
    /// Its `enabled` key: false where the analyzer is switched off.
    fn enabled(&self) -> bool;

    /// Its rules, beyond what its types already say (ranges, orderings between keys).
    fn check(&self, c: &mut Checks<'_>);

    /// The problems of these settings, found in the table at `path`.
    fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        self.check(&mut Checks::new(path, problems));
    }
}

/// An analyzer's settings, with optional per-server overrides. Dereferences to the
/// analyzer-wide settings.
#[derive(Debug, Clone, Default)]
pub struct PerServer<S> {
    base: S,
    /// Keyed by `"<repository>/<server>"`, each already merged over `base`.
    servers: BTreeMap<String, S>,
}

impl<S> From<S> for PerServer<S> {
    fn from(base: S) -> Self {
        PerServer {
            base,
            servers: BTreeMap::new(),
        }
    }
}

impl<S> Deref for PerServer<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.base
    }
}

impl<S> PerServer<S> {
    /// The settings for one server: its override if there is one, else the analyzer-wide
    /// settings.
    pub fn get(&self, repository: &str, server: &str) -> &S {
        if self.servers.is_empty() {
            return &self.base;
        }
        self.servers
            .get(&format!("{repository}/{server}"))
            .unwrap_or(&self.base)
    }

    /// Adds a complete override for one server (tests, programmatic use).
    pub fn with_server(mut self, key: &str, settings: S) -> Self {
        self.servers.insert(key.to_string(), settings);
        self
    }

    /// Applies `f` to the analyzer-wide settings and to every override (for values set by
    /// the topology rather than by the file).
    pub fn update_all(&mut self, f: impl Fn(&mut S)) {
        f(&mut self.base);
        self.servers.values_mut().for_each(f);
    }

    /// True when `f` holds for the analyzer-wide settings or for any server.
    pub fn any(&self, f: impl Fn(&S) -> bool) -> bool {
        f(&self.base) || self.servers.values().any(f)
    }

    /// The servers that have an override.
    pub fn overridden(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }
}

impl<S: AnalyzerSettings> PerServer<S> {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        self.base.validate(path, problems);
        for (key, s) in &self.servers {
            s.validate(&format!("{path}.servers.\"{key}\""), problems);
        }
    }
}

impl<'de, S: DeserializeOwned> Deserialize<'de> for PerServer<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = match Value::deserialize(d)? {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                return Err(D::Error::custom(format!(
                    "expected a table of settings, found {other}"
                )))
            }
        };
        let overrides = match table.remove("servers") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`servers` must be a table of \"<repository>/<server>\" tables, found {other}"
                )))
            }
        };
        let base = S::deserialize(Value::Object(table.clone()))
            .map_err(|e| D::Error::custom(locate::<S>("", &table, e)))?;
        let mut servers = BTreeMap::new();
        for (key, over) in overrides {
            let Some((repo, server)) = key.split_once('/') else {
                return Err(D::Error::custom(format!(
                    "servers.\"{key}\": name the server as \"<repository>/<server>\", e.g. \"main/db1\""
                )));
            };
            if repo.is_empty() || server.is_empty() {
                return Err(D::Error::custom(format!(
                    "servers.\"{key}\": name the server as \"<repository>/<server>\", e.g. \"main/db1\""
                )));
            }
            let Value::Object(over) = over else {
                return Err(D::Error::custom(format!(
                    "servers.\"{key}\": expected a table with the analyzer's keys, found {over}"
                )));
            };
            let mut merged = table.clone();
            merged.extend(over.clone());
            let s = S::deserialize(Value::Object(merged)).map_err(|e| {
                D::Error::custom(locate::<S>(&format!("servers.\"{key}\""), &over, e))
            })?;
            servers.insert(key, s);
        }
        Ok(PerServer { base, servers })
    }
}

/// `e` (from deserialising a whole table) as "key `<field>`: …", naming the field that
/// fails: serde's messages for a table read as a generic value name the type expected but
/// not the field. Each field of `table` is tried alone (every analyzer setting has a
/// default); `prefix` is the sub-table, for a server's override.
fn locate<S: DeserializeOwned>(
    prefix: &str,
    table: &Map<String, Value>,
    e: serde_json::Error,
) -> String {
    let at = |field: &str| match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{field}"),
    };
    let text = e.to_string();
    // An unknown field's message names it already.
    if text.starts_with("unknown field") {
        return if prefix.is_empty() {
            text
        } else {
            format!("key `{prefix}`: {text}")
        };
    }
    let culprit = table.iter().find_map(|(k, v)| {
        let alone = Map::from_iter([(k.clone(), v.clone())]);
        S::deserialize(Value::Object(alone)).err().map(|e| (k, e))
    });
    match culprit {
        Some((field, e)) => format!("key `{}`: {e}", at(field)),
        None if prefix.is_empty() => text,
        None => format!("key `{prefix}`: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::RegressionSettings;

    /// The tests write the table as JSON: the same shape the `config` crate hands over for
    /// a TOML table.
    fn parse(text: &str) -> Result<PerServer<RegressionSettings>, String> {
        let v: Value = serde_json::from_str(text).unwrap();
        PerServer::<RegressionSettings>::deserialize(v).map_err(|e| e.to_string())
    }

    #[test]
    fn overrides_are_partial_and_per_server() {
        let p = parse(
            r#"{"min_calls": 20, "min_factor": 2,
                "servers": {"main/reporting": {"min_mean_increase": "1s"}}}"#,
        )
        .unwrap();
        assert_eq!(p.min_calls, 20);
        let r = p.get("main", "reporting");
        assert_eq!(r.min_calls, 20, "inherited from the analyzer-wide table");
        assert_eq!(r.min_factor, 2.0);
        assert_eq!(r.min_mean_increase, std::time::Duration::from_secs(1));
        let other = p.get("main", "db1");
        assert_eq!(other.min_mean_increase, std::time::Duration::from_millis(2));
        assert_eq!(p.overridden().collect::<Vec<_>>(), ["main/reporting"]);
    }

    #[test]
    fn bad_overrides_are_errors_that_name_the_server() {
        let e = parse(r#"{"servers": {"main/db1": {"min_calss": 3}}}"#).unwrap_err();
        assert!(e.contains("servers.\"main/db1\""), "{e}");
        assert!(e.contains("unknown field `min_calss`"), "{e}");
        let e = parse(r#"{"servers": {"db1": {"min_calls": 3}}}"#).unwrap_err();
        assert!(e.contains("<repository>/<server>"), "{e}");
        // Out-of-range values are caught by the same validation as the base table.
        let p = parse(r#"{"servers": {"main/db1": {"min_factor": 0.5}}}"#).unwrap();
        let mut problems = Vec::new();
        p.validate("analyzers.regression", &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].key,
            "analyzers.regression.servers.\"main/db1\".min_factor"
        );
    }

    #[test]
    fn a_toml_file_with_overrides_loads_through_the_config_crate() {
        let text = r#"
[regression]
min_calls = 20

[regression.servers."Main/db1.example.com"]
min_factor = 3

[slow_queries.servers."main/reporting"]
top_n = 2
min_total_time = "10s"
"#;
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .unwrap();
        let a: crate::analyze::AnalyzersSettings = built.try_deserialize().unwrap();
        let r = a.regression.get("Main", "db1.example.com");
        assert_eq!((r.min_calls, r.min_factor), (20, 3.0));
        assert_eq!(a.regression.get("main", "other").min_factor, 1.5);
        let s = a.slow_queries.get("main", "reporting");
        assert_eq!(s.top_n, 2);
        assert_eq!(s.min_total_time, std::time::Duration::from_secs(10));
        assert_eq!(a.slow_queries.top_n, 5);

        let bad = "[workload_change.servers.\"main/db1\"]\ncalls_factr = 2\n";
        let built = config::Config::builder()
            .add_source(config::File::from_str(bad, config::FileFormat::Toml))
            .build()
            .unwrap();
        let e = built
            .try_deserialize::<crate::analyze::AnalyzersSettings>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("main/db1") && e.contains("calls_factr"), "{e}");
    }
}
