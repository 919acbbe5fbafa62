//! Checks that several channel kinds share: a secret given inline or in a file, the time
//! limit of a request, a rate within the provider's own limit, a robot's webhook URL.
//!
//! Problems are keyed relative to the channel's table (`timeout`, not
//! `channels.ops.timeout`): [`super::ChannelSettings::validate`] prefixes them. Messages
//! never quote a secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::registry::Rate;
use crate::problem::Problem;
use crate::secret::Secret;

/// Default time limit of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted `timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A secret given inline (`<field>`, or the environment) or in a file (`<field>_file`).
/// The file is read when the channel starts, so that checking a configuration needs no
/// access to it.
#[derive(Clone, Debug)]
pub enum SecretSource {
    Inline(Secret),
    File(PathBuf),
}

impl SecretSource {
    /// The source set by `inline` / `file`: `None` when neither is, or when both are (then
    /// a problem says to remove one).
    pub fn of(
        field: &str,
        inline: Option<Secret>,
        file: Option<PathBuf>,
        problems: &mut Vec<Problem>,
    ) -> Option<SecretSource> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                problems.push(Problem::new(
                    format!("{field}_file"),
                    format!("set either {field} or {field}_file, not both: remove one of them"),
                ));
                None
            }
            (Some(s), None) => Some(SecretSource::Inline(Secret::new(s.expose().trim()))),
            (None, Some(f)) => Some(SecretSource::File(f)),
            (None, None) => None,
        }
    }

    /// The value given inline, if that is how it was given.
    pub fn inline(&self) -> Option<&Secret> {
        match self {
            SecretSource::Inline(s) => Some(s),
            SecretSource::File(_) => None,
        }
    }

    /// The secret, read from its file if it is in one; `key` is the secret's key path
    /// (`channels.hook.hmac_key`). Errors name the key and the file, never the value.
    pub fn resolve(&self, key: &str) -> Result<Secret, String> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(f) => read_secret(key, f),
        }
    }
}

/// An optional signing secret (`secret` / `secret_file`): not both, not empty, and
/// starting with `prefix` when the provider's secrets do. `None`: messages go unsigned.
pub fn signing_secret(
    inline: Option<Secret>,
    file: Option<PathBuf>,
    prefix: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<SecretSource> {
    let source = SecretSource::of("secret", inline, file, problems);
    let Some(SecretSource::Inline(v)) = &source else {
        return source;
    };
    if v.is_empty() {
        problems.push(Problem::new(
            "secret",
            "is empty: set the bot's signing secret, or remove the key to send unsigned",
        ));
    } else if let Some(p) = prefix.filter(|p| !v.expose().starts_with(p)) {
        problems.push(Problem::new(
            "secret",
            format!(
                "does not start with \"{p}\": copy the signing secret shown in the robot's \
                 security settings"
            ),
        ));
    }
    source
}

fn read_secret(key: &str, f: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(f)
        .map_err(|e| format!("{key}_file: cannot read {}: {e}", f.display()))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{key}_file: {} is empty", f.display()));
    }
    Ok(Secret::new(t))
}

/// `timeout` between 1s and 5m.
pub fn timeout(t: Option<Duration>, problems: &mut Vec<Problem>) {
    if t.is_some_and(|t| t.is_zero() || t > MAX_TIMEOUT) {
        problems.push(Problem::new(
            "timeout",
            "must be between 1s and 5m, e.g. \"10s\" (the default)",
        ));
    }
}

/// `max_per_minute` between 1 and the provider's limit.
pub fn max_per_minute(n: Option<u32>, rate: Rate, problems: &mut Vec<Problem>) {
    if n.is_some_and(|n| n == 0 || n > rate.limit) {
        problems.push(Problem::new(
            "max_per_minute",
            format!("must be between 1 and {}: {}", rate.limit, rate.why),
        ));
    }
}

/// A required URL `field`: `missing` says what to set when it is not, `parse` checks it
/// (its error is the problem's message). The URL as parsed, a secret.
pub fn url_field(
    field: &str,
    value: Option<&Secret>,
    missing: &str,
    parse: impl FnOnce(&str) -> Result<url::Url, String>,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    let found = match value {
        None => Err(missing.to_string()),
        Some(v) => parse(v.expose()),
    };
    match found {
        Ok(u) => Some(Secret::new(u.as_str())),
        Err(e) => {
            problems.push(Problem::new(field, e));
            None
        }
    }
}

/// A robot's webhook URL as copied from its settings: `example` shows what it looks
/// like, `owner` is "bot" or "robot" (the provider's word).
pub fn webhook_url(u: &str, example: &str, owner: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(u.trim()).map_err(|_| {
        format!(
            "is not a valid URL: copy the whole webhook URL ({example}) from the {owner}'s settings"
        )
    })?;
    check_scheme(&parsed)?;
    Ok(parsed)
}

/// https, or http for a local test endpoint, with a host.
pub fn check_scheme(u: &url::Url) -> Result<(), String> {
    match u.scheme() {
        "https" | "http" if u.host().is_some() => Ok(()),
        _ => Err("must start with https:// (or http:// for a local test endpoint)".into()),
    }
}

/// An http(s) URL with a host (and a path, when `path` is true).
pub fn http_url(u: &str, path: bool) -> Option<url::Url> {
    let parsed = url::Url::parse(u.trim()).ok()?;
    let ok = matches!(parsed.scheme(), "http" | "https")
        && parsed.host().is_some()
        && (!path || parsed.path().len() > 1);
    ok.then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_one_place_and_files_are_read_at_start() {
        let mut p = Vec::new();
        let both = SecretSource::of(
            "hmac_key",
            Some(Secret::new("x")),
            Some("/f".into()),
            &mut p,
        );
        assert!(both.is_none());
        assert_eq!(p[0].key, "hmac_key_file");
        let inline = SecretSource::of("k", Some(Secret::new("  v \n")), None, &mut p).unwrap();
        assert_eq!(inline.resolve("channels.c.k").unwrap().expose(), "v");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "\n from-file \n").unwrap();
        let file = SecretSource::of("k", None, Some(f.clone()), &mut p).unwrap();
        assert_eq!(file.resolve("channels.c.k").unwrap().expose(), "from-file");
        std::fs::write(&f, " \n").unwrap();
        let e = file.resolve("channels.c.k").unwrap_err();
        assert!(
            e.starts_with("channels.c.k_file: ") && e.ends_with("is empty"),
            "{e}"
        );
        let e = SecretSource::File(dir.path().join("nope"))
            .resolve("channels.c.k")
            .unwrap_err();
        assert!(e.contains("cannot read") && e.contains("nope"), "{e}");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn timeouts_and_rates_are_bounded() {
        let mut p = Vec::new();
        let rate = Rate {
            limit: 20,
            default: 7,
            why: "Slack accepts at most 20 messages per minute per bot",
        };
        timeout(None, &mut p);
        timeout(Some(Duration::from_secs(3)), &mut p);
        max_per_minute(None, rate, &mut p);
        max_per_minute(Some(20), rate, &mut p);
        assert!(p.is_empty(), "{p:?}");
        timeout(Some(Duration::ZERO), &mut p);
        timeout(Some(Duration::from_secs(301)), &mut p);
        max_per_minute(Some(21), rate, &mut p);
        max_per_minute(Some(0), rate, &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["timeout", "timeout", "max_per_minute", "max_per_minute"]
        );
        assert_eq!(
            p[2].message,
            "must be between 1 and 20: Slack accepts at most 20 messages per minute per bot"
        );
    }
}
