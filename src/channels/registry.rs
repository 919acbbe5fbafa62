//! What a channel kind is to the rest of the crate, and the `type` key that picks one.
//!
//! A kind is a [`ChannelType`]: its settings struct (beside its code, every key documented,
//! unknown keys refused), how it checks them into a validated form, its secrets, and how it
//! starts (for real or for a dry run). Adding a kind is its file (and its `pub mod`
//! line) plus one line in [`KINDS`], both in `channels/mod.rs`.
//!
//! How a table is read into a kind's settings is [`super::settings`]'s.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use actix::Recipient;
use config::{Map, Value, ValueKind};
use serde::de::{self, DeserializeOwned, DeserializeSeed, EnumAccess, VariantAccess, Visitor};
use serde::Deserialize;

use sentinel_actors::channel::Deliver;

use super::start::Starter;
use super::KINDS;
use crate::problem::Problem;
use crate::secret::Secret;

/// One kind of channel.
pub trait ChannelType: fmt::Debug + Send + Sync + Sized + 'static {
    /// The `type` value that selects it.
    const TYPE: &'static str;
    /// The keys of its table whose values are secrets (their names must be in
    /// [`crate::secret::SECRET_KEYS`], so that configuration errors never quote them).
    const SECRET_KEYS: &'static [&'static str];
    /// Which of the keys several kinds share it takes ([`super::CommonSettings`]; all
    /// take `sql_preview_chars`).
    const TAKES: Takes = Takes::NOTHING;
    /// Its own keys as written (`deny_unknown_fields`; every field optional, so that a
    /// missing key is reported by [`ChannelType::check`] in words, with the others).
    type Settings: DeserializeOwned;
    /// Checks the table once: the validated form, or every problem, keyed relative to
    /// the table (`webhook_url`).
    fn check(settings: Self::Settings) -> Result<Self, Vec<Problem>>;
    /// The secret values it holds, for the log's redaction (secrets kept in files are
    /// read when the channel starts, and masked by the channel itself).
    fn secrets(&self) -> Vec<&Secret>;
    /// Starts its channel actor.
    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>>;
    /// Starts what `--dry-run` prints for it: by default the channel itself, whose parts
    /// [`Starter::spawn`] prints instead of sending.
    fn dry_run(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        self.start(start)
    }
}

/// A provider's quota on messages, for `max_per_minute`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// The provider's own limit per minute, and the default.
    pub limit: u32,
    pub default: u32,
    /// What the limit is, in words: "WeCom accepts at most 20 messages per minute per
    /// robot".
    pub why: &'static str,
}

/// Which of the shared keys a kind takes.
#[derive(Clone, Copy, Debug)]
pub struct Takes {
    /// `timeout` (it sends over HTTP).
    pub timeout: bool,
    /// `max_per_minute`, within its provider's quota.
    pub rate: Option<Rate>,
    /// `language` (it writes words).
    pub language: bool,
}

impl Takes {
    /// `sql_preview_chars` only.
    pub const NOTHING: Takes = Takes {
        timeout: false,
        rate: None,
        language: false,
    };

    /// A chat robot behind HTTP, with its provider's quota: `limit` per minute (`why`
    /// says so in words), `default` unless set.
    pub const fn robot(limit: u32, default: u32, why: &'static str) -> Takes {
        Takes {
            timeout: true,
            rate: Some(Rate {
                limit,
                default,
                why,
            }),
            language: true,
        }
    }
}

/// A registered kind: its name, the keys it takes and how to read its table.
pub struct Kind {
    pub name: &'static str,
    pub takes: Takes,
    pub(super) read: fn(Value) -> Result<Checked, config::ConfigError>,
    keys: fn() -> Vec<String>,
    secret_keys: &'static [&'static str],
}

/// A table checked by its kind: the validated form, or what is wrong with it.
pub(super) type Checked = Result<Arc<dyn Configured>, Vec<Problem>>;

impl Kind {
    pub const fn of<T: ChannelType>() -> Kind {
        Kind {
            name: T::TYPE,
            takes: T::TAKES,
            read: read::<T>,
            keys: keys::<T::Settings>,
            secret_keys: T::SECRET_KEYS,
        }
    }

    /// The keys of its table whose values are secrets.
    pub fn secret_keys(&self) -> &'static [&'static str] {
        self.secret_keys
    }

    /// The keys its table takes besides `type` and its own: those of
    /// [`super::settings::CommonSettings`] it takes.
    pub fn common_keys(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.takes.timeout, "timeout"),
            (self.takes.rate.is_some(), "max_per_minute"),
            (self.takes.language, "language"),
            (true, "sql_preview_chars"),
        ]
        .into_iter()
        .filter_map(|(takes, key)| takes.then_some(key))
    }

    /// True when its table takes `key`.
    pub fn takes(&self, key: &str) -> bool {
        self.keys().iter().any(|k| k == key) || self.common_keys().any(|k| k == key)
    }

    /// The keys of its own settings struct (those it shares with other kinds aside), in
    /// order.
    pub fn keys(&self) -> &'static [String] {
        static KEYS: OnceLock<Vec<Vec<String>>> = OnceLock::new();
        let all = KEYS.get_or_init(|| KINDS.iter().map(|k| (k.keys)()).collect());
        let at = KINDS
            .iter()
            .position(|k| k.name == self.name)
            .expect("a registered kind");
        &all[at]
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What the rest of the crate asks of a validated channel, whatever its kind.
pub(super) trait Configured: fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn secrets(&self) -> Vec<&Secret>;
    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>>;
    fn dry_run(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>>;
}

impl<T: ChannelType> Configured for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn secrets(&self) -> Vec<&Secret> {
        ChannelType::secrets(self)
    }
    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        ChannelType::start(self, start)
    }
    fn dry_run(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        ChannelType::dry_run(self, start)
    }
}

fn read<T: ChannelType>(table: Value) -> Result<Checked, config::ConfigError> {
    let settings = T::Settings::deserialize(table)?;
    Ok(T::check(settings).map(|t| Arc::new(t) as Arc<dyn Configured>))
}

/// The fields of a settings struct, from serde itself (so the list cannot drift): its
/// answer to an unknown field lists them.
fn keys<S: DeserializeOwned>() -> Vec<String> {
    let probe = Map::from_iter([("\u{1}".to_string(), Value::new(None, ValueKind::Nil))]);
    match S::deserialize(Value::new(None, ValueKind::Table(probe))) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let text = e.to_string();
            let list = text.split_once("expected").map_or("", |(_, l)| l);
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        }
    }
}

/// The name of the `type` enum in error texts, as the `config` crate reports an unknown
/// variant ("enum ChannelKind does not have variant constructor wechat");
/// [`crate::config`]'s error description turns it into "unknown channel type".
pub const TYPE_ENUM: &str = "ChannelKind";

/// The `type` values, as serde lists the variants of an enum.
pub static NAMES: [&str; KINDS.len()] = names();

const fn names() -> [&'static str; KINDS.len()] {
    let mut out = [""; KINDS.len()];
    let mut i = 0;
    while i < KINDS.len() {
        out[i] = KINDS[i].name;
        i += 1;
    }
    out
}

/// The `type` values.
pub fn type_names() -> Vec<String> {
    NAMES.iter().map(|n| n.to_string()).collect()
}

/// Reads `type` as an enum of the registered names, so that each deserializer reports an
/// unknown one in its own way, with the key (`channels.x.type`).
pub(super) struct TypeSeed;

impl<'de> DeserializeSeed<'de> for TypeSeed {
    type Value = &'static Kind;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'static Kind, D::Error> {
        d.deserialize_enum(TYPE_ENUM, &NAMES, TypeVisitor)
    }
}

struct TypeVisitor;

impl<'de> Visitor<'de> for TypeVisitor {
    type Value = &'static Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a channel type")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<&'static Kind, A::Error> {
        let (kind, variant) = a.variant_seed(NameSeed)?;
        variant.unit_variant()?;
        Ok(kind)
    }
}

struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = &'static Kind;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'static Kind, D::Error> {
        d.deserialize_identifier(NameSeed)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = &'static Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a channel type")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<&'static Kind, E> {
        KINDS
            .iter()
            .find(|k| k.name == v)
            .ok_or_else(|| E::unknown_variant(v, &NAMES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_with_documented_keys() {
        for (i, k) in KINDS.iter().enumerate() {
            assert!(
                KINDS[..i].iter().all(|o| o.name != k.name),
                "{} twice",
                k.name
            );
            // Its own keys are found, and shared ones are left to the common table.
            assert!(
                k.keys()
                    .iter()
                    .all(|f| f != "type" && !k.common_keys().any(|c| c == f)),
                "{}: {:?}",
                k.name,
                k.keys()
            );
        }
        assert_eq!(
            type_names(),
            [
                "console",
                "wecom",
                "wecom_app",
                "webhook",
                "file",
                "feishu",
                "dingtalk",
                "slack",
                "email"
            ]
        );
        assert_eq!(
            KINDS[1].keys(),
            ["webhook_url", "key", "base_url", "msgtype", "charts"]
        );
        assert!(KINDS[0].keys().is_empty(), "console has only common keys");
    }

    /// A key that holds a secret is redacted from configuration errors by its name: every
    /// kind's secret keys are real keys of its table, and named in `SECRET_KEYS`.
    #[test]
    fn every_secret_key_is_known_to_the_redaction() {
        for k in KINDS {
            for key in k.secret_keys() {
                assert!(k.takes(key), "{}: {key}", k.name);
                assert!(
                    crate::secret::SECRET_KEYS.contains(key),
                    "{}: {key}",
                    k.name
                );
            }
        }
    }
}
