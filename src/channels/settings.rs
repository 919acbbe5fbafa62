//! One `[channels.<name>]` table, read value-then-typed (as [`crate::analyze::per_server`]
//! reads analyzer tables): first as a generic value; `type` picks the kind in the
//! [registry](super::registry); the keys several kinds share ([`CommonSettings`]) are read
//! apart, those the kind takes; a key of another kind is set aside ([`ChannelSettings::
//! validate`] says which type it belongs to); the rest is deserialised into the kind's own
//! struct and checked once.
//!
//! The generic value is a `config::Value` read with the `config` crate's own deserializer,
//! so values convert exactly as in every other table (an environment override
//! `…__KEY=12345` is still a robot key, not a number), and its errors, which name the key
//! within the table, are handed on in the words [`crate::config`]'s error description
//! reads (`key `msgtype`: …`): it prefixes them with `channels.<name>`, as for any other
//! table.

use std::fmt;
use std::time::Duration;

use config::{Map, Value, ValueKind};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::registry::{self, ChannelType, Checked, Configured, Kind};
use super::{check, KINDS};
use crate::problem::Problem;
use crate::render::{Lang, DEFAULT_SQL_PREVIEW_CHARS};
use crate::secret::Secret;

/// Shortest and longest accepted `sql_preview_chars`.
pub const SQL_PREVIEW_RANGE: std::ops::RangeInclusive<usize> = 20..=2000;

/// The keys several kinds take, each kind those it says it takes
/// ([`ChannelType::TAKES`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommonSettings {
    /// Every kind: longest SQL preview, in characters (20 to 2000). Default 200.
    pub sql_preview_chars: Option<usize>,
    /// Kinds that send over HTTP: time limit of one request, e.g. `"10s"` (the default),
    /// 1s to 5m.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Kinds whose provider has a quota: most messages per rolling minute to one
    /// destination, from 1 to the provider's limit (also its default, see each kind).
    /// Channels that share a destination (a robot key) share its budget.
    pub max_per_minute: Option<u32>,
    /// Kinds that write words: language of the fixed wording, `en` (default) or `zh`.
    pub language: Option<Lang>,
}

/// One `[channels.<name>]` table, read and checked by its kind.
///
/// `type` picks the kind; the keys of [`CommonSettings`] are taken by the kinds that say
/// so; every other key belongs to one or more kinds, documented on their settings structs.
/// Debug shows no secret.
#[derive(Clone)]
pub struct ChannelSettings {
    kind: &'static Kind,
    common: CommonSettings,
    /// Keys set here that belong to other types, with those types.
    misplaced: Vec<(String, Vec<&'static str>)>,
    checked: Checked,
}

impl fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ChannelSettings");
        d.field("type", &self.kind.name)
            .field("common", &self.common);
        match &self.checked {
            Ok(c) => d.field("settings", c),
            Err(p) => d.field("problems", &p.len()),
        };
        d.finish()
    }
}

impl<'de> Deserialize<'de> for ChannelSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TableVisitor)
    }
}

struct TableVisitor;

impl<'de> Visitor<'de> for TableVisitor {
    type Value = ChannelSettings;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of channel settings")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<ChannelSettings, M::Error> {
        let mut kind = None;
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "type" {
                kind = Some(map.next_value_seed(registry::TypeSeed)?);
            } else {
                let value: Value = map.next_value()?;
                rest.insert(key, value);
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        read_table(kind, rest).map_err(de::Error::custom)
    }
}

/// A table of `kind` (without `type`), read. Errors are the text of one problem (see the
/// module's documentation).
fn read_table(
    kind: &'static Kind,
    mut table: Map<String, Value>,
) -> Result<ChannelSettings, String> {
    let shared: Map<String, Value> = kind
        .common_keys()
        .filter_map(|k| Some((k.to_string(), table.remove(k)?)))
        .collect();
    let common = CommonSettings::deserialize(Value::new(None, ValueKind::Table(shared)))
        .map_err(error_text)?;
    let mut foreign: Vec<String> = table.keys().filter(|k| !kind.takes(k)).cloned().collect();
    foreign.sort();
    let mut misplaced = Vec::new();
    for key in foreign {
        let owners: Vec<&'static str> = KINDS
            .iter()
            .filter(|k| k.takes(&key))
            .map(|k| k.name)
            .collect();
        if owners.is_empty() {
            // serde's own words for an unknown field, with every key this table takes.
            let known: Vec<String> = std::iter::once("type")
                .chain(kind.keys().iter().map(String::as_str))
                .chain(kind.common_keys())
                .map(|k| format!("`{k}`"))
                .collect();
            return Err(format!(
                "unknown field `{key}`, expected one of {}",
                known.join(", ")
            ));
        }
        table.remove(&key);
        misplaced.push((key, owners));
    }
    let checked = (kind.read)(Value::new(None, ValueKind::Table(table))).map_err(error_text)?;
    Ok(ChannelSettings {
        kind,
        common,
        misplaced,
        checked,
    })
}

/// `e`, raised while deserialising part of a table, in the words the `config` crate uses
/// when the error is raised in place (`key `<key>`: <what>`), so that the configuration's
/// error description reads it as it reads any other.
fn error_text(e: config::ConfigError) -> String {
    use config::ConfigError as E;
    let at = |key: Option<String>, text: String| match key {
        Some(k) if !k.is_empty() => format!("key `{k}`: {text}"),
        _ => text,
    };
    match e {
        E::Type {
            unexpected,
            expected,
            key,
            ..
        } => at(
            key,
            format!("invalid type: {unexpected}, expected {expected}"),
        ),
        E::At { error, key, .. } => at(key, error_text(*error)),
        E::NotFound(k) => format!("missing field `{k}`"),
        E::Message(m) => m,
        other => other.to_string(),
    }
}

impl ChannelSettings {
    /// The `type` of the channel.
    pub fn kind(&self) -> &'static str {
        self.kind.name
    }

    /// The keys every kind shares, as set.
    pub fn common(&self) -> &CommonSettings {
        &self.common
    }

    /// The validated form of a valid table of kind `T`.
    pub fn typed<T: ChannelType>(&self) -> Option<&T> {
        self.checked.as_ref().ok()?.as_any().downcast_ref()
    }

    /// What is wrong with the table; `path` is its key path, e.g. `channels.ops`.
    /// Messages never quote secret values.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let mut found = Vec::new();
        for (field, owners) in &self.misplaced {
            let names: Vec<String> = owners.iter().map(|o| format!("\"{o}\"")).collect();
            found.push(Problem::new(
                field.as_str(),
                format!(
                    "not used by type = \"{}\" (it belongs to type = {}): remove it or change the type",
                    self.kind.name,
                    names.join(" or ")
                ),
            ));
        }
        if let Some(n) = self.common.sql_preview_chars {
            if !SQL_PREVIEW_RANGE.contains(&n) {
                found.push(Problem::new(
                    "sql_preview_chars",
                    format!(
                        "must be between {} and {} characters (default {DEFAULT_SQL_PREVIEW_CHARS})",
                        SQL_PREVIEW_RANGE.start(),
                        SQL_PREVIEW_RANGE.end()
                    ),
                ));
            }
        }
        if let Err(p) = &self.checked {
            found.extend(p.iter().cloned());
        }
        check::timeout(self.common.timeout, &mut found);
        if let Some(rate) = self.kind.takes.rate {
            check::max_per_minute(self.common.max_per_minute, rate, &mut found);
        }
        problems.extend(
            found
                .into_iter()
                .map(|p| Problem::new(format!("{path}.{}", p.key), p.message)),
        );
    }

    /// The secret values of the table (webhook URLs, keys, HMAC keys, signing and
    /// application secrets), for the log's redaction.
    pub fn secrets(&self) -> Vec<&Secret> {
        match &self.checked {
            Ok(c) => c.secrets(),
            Err(_) => Vec::new(),
        }
    }

    /// The validated form, or (when the table has problems) an error that names them.
    pub(super) fn checked(&self, name: &str) -> anyhow::Result<&dyn Configured> {
        let mut problems = Vec::new();
        self.validate(&format!("channels.{name}"), &mut problems);
        match (&self.checked, problems.is_empty()) {
            (Ok(c), true) => Ok(c.as_ref()),
            _ => {
                let text: Vec<String> = problems
                    .iter()
                    .map(|p| format!("key `{}`: {}", p.key, p.message))
                    .collect();
                anyhow::bail!("channel `{name}` is misconfigured: {}", text.join("; "))
            }
        }
    }

    /// `sql_preview_chars`, or its default.
    pub(super) fn preview_chars(&self) -> usize {
        self.common
            .sql_preview_chars
            .unwrap_or(DEFAULT_SQL_PREVIEW_CHARS)
    }

    /// `timeout`, or its default.
    pub(super) fn timeout(&self) -> Duration {
        self.common.timeout.unwrap_or(check::DEFAULT_TIMEOUT)
    }

    /// `max_per_minute`, or the provider's default (0 for kinds without a quota).
    pub(super) fn max_per_minute(&self) -> u32 {
        let default = self.kind.takes.rate.map_or(0, |r| r.default);
        self.common.max_per_minute.unwrap_or(default)
    }

    pub(super) fn language(&self) -> Lang {
        self.common.language.unwrap_or_default()
    }
}

/// What the settings tests of every kind use: a table written as JSON (the shape the
/// `config` crate hands over), and its problems.
#[cfg(test)]
pub(crate) mod testing {
    use super::ChannelSettings;
    use crate::problem::Problem;

    pub fn settings(v: serde_json::Value) -> ChannelSettings {
        serde_json::from_value(v).expect("settings parse")
    }

    /// The problems of the table `v` at `path`.
    pub fn problems_at(path: &str, v: serde_json::Value) -> Vec<Problem> {
        let mut p = Vec::new();
        settings(v).validate(path, &mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testing::settings as parse;

    fn problems(s: &ChannelSettings) -> Vec<Problem> {
        let mut p = Vec::new();
        s.validate("channels.ops", &mut p);
        p
    }

    #[test]
    fn console_needs_nothing() {
        let s = parse(serde_json::json!({"type": "console"}));
        assert_eq!(s.kind(), "console");
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn fields_of_another_type_are_problems() {
        let s = parse(serde_json::json!({"type": "console", "key": "k", "path": "/tmp/x"}));
        let p = problems(&s);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["channels.ops.key", "channels.ops.path"]);
        assert!(p[0].message.contains("type = \"wecom\""), "{p:?}");
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        let e = serde_json::from_value::<ChannelSettings>(
            serde_json::json!({"type": "console", "colour": "red"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = serde_json::from_value::<ChannelSettings>(serde_json::json!({"type": "teams"}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown variant `teams`"), "{e}");
    }

    #[test]
    fn file_requires_a_path() {
        let p = problems(&parse(serde_json::json!({"type": "file"})));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "channels.ops.path");
        assert!(p[0].message.starts_with("required when type = \"file\""));
        assert!(problems(&parse(
            serde_json::json!({"type": "file", "path": "x.jsonl"})
        ))
        .is_empty());
    }

    /// Through the `config` crate, as a file is read: the errors the configuration's
    /// description turns into words keep their key within the table.
    #[test]
    fn errors_read_through_the_config_crate_name_their_key() {
        let read = |toml: &str| {
            config::Config::builder()
                .add_source(config::File::from_str(toml, config::FileFormat::Toml))
                .build()
                .and_then(|c| c.try_deserialize::<ChannelSettings>())
        };
        let e = read("type = \"wechat\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "enum ChannelKind does not have variant constructor wechat for key `type`"
        );
        let e = read("type = \"wecom\"\nkey = \"k\"\nmsgtype = \"markdwn\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "key `msgtype`: enum MsgType does not have variant constructor markdwn"
        );
        let e = read("type = \"slack\"\nwebhok_url = \"x\"").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "unknown field `webhok_url`, expected one of `type`, `webhook_url`, `format`, `timeout`"
            ),
            "{e}"
        );
        let s = read("type = \"console\"\nlanguage = \"zh\"\nsql_preview_chars = 30").unwrap();
        assert_eq!(s.common().language, Some(crate::render::Lang::Zh));
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn shared_keys_are_checked_for_the_kinds_that_take_them() {
        let p = problems(&parse(serde_json::json!({
            "type": "slack", "webhook_url": "https://h/x", "timeout": "0s", "max_per_minute": 61
        })));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["channels.ops.timeout", "channels.ops.max_per_minute"]
        );
        assert!(p[1].message.contains("at most 60"), "{p:?}");
        let p = problems(&parse(serde_json::json!({
            "type": "file", "path": "x", "timeout": "1s", "language": "zh"
        })));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["channels.ops.language", "channels.ops.timeout"]);
        assert!(p[1].message.contains("\"webhook\""), "{p:?}");
    }

    #[test]
    fn preview_length_is_bounded() {
        let p = problems(&parse(
            serde_json::json!({"type": "console", "sql_preview_chars": 5}),
        ));
        assert_eq!(p[0].key, "channels.ops.sql_preview_chars");
    }

    /// The commented chat-robot examples of the shipped configuration parse and validate
    /// once uncommented, so the documentation cannot drift from the keys.
    #[test]
    fn documented_chat_robot_examples_are_valid() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let text = std::fs::read_to_string(p).unwrap();
        let (_, tail) = text.split_once("# Chat robots").expect("section present");
        let example: String = tail
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with("[channels.")
                    || l.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        #[derive(Deserialize)]
        struct Doc {
            channels: std::collections::BTreeMap<String, ChannelSettings>,
        }
        let doc: Doc = config::Config::builder()
            .add_source(config::File::from_str(&example, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap_or_else(|e| panic!("{e}\n{example}"));
        let kinds: Vec<&str> = doc.channels.values().map(|s| s.kind()).collect();
        for k in ["wecom", "wecom_app", "feishu", "dingtalk", "slack", "email"] {
            assert!(kinds.contains(&k), "{k} has no example");
        }
        for (name, s) in &doc.channels {
            let mut p = Vec::new();
            s.validate(&format!("channels.{name}"), &mut p);
            assert!(p.is_empty(), "{name}: {p:?}");
        }
    }

    #[test]
    fn errors_keep_their_key_within_the_table() {
        let table = Map::from_iter([
            (
                "key".to_string(),
                Value::new(None, ValueKind::String("k".into())),
            ),
            (
                "max_per_minute".to_string(),
                Value::new(None, ValueKind::I64(99_999_999_999)),
            ),
        ]);
        let e = read_table(&KINDS[1], table).err().unwrap();
        assert_eq!(
            e,
            "key `max_per_minute`: invalid type: 64-bit unsigned integer `99999999999`, \
             expected an unsigned 32 bit integer"
        );
    }
}
