//! A string that must never be shown: passwords, webhook keys, app secrets, HMAC keys.
//! Debug, Display and Serialize all print a fixed mask, so a secret cannot leak through a
//! log line, an error message, `--output json` or a metrics label by accident.
//! Read the value only where it is used on the wire, with [`Secret::expose`].

use std::fmt;
use std::sync::OnceLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The settings keys whose values are secrets, in whatever table they appear: repository
/// and monitored-server `dsn` and `password`, channel `webhook_url`, `key`, `url`,
/// `hmac_key`, `secret` and `corpsecret` (and the seed format's `database.password` and
/// `notifier.webhook_url`). Every field of type [`Secret`] in the settings is named here
/// (a unit test checks that each one is a real field).
pub const SECRET_KEYS: &[&str] = &[
    "dsn",
    "password",
    "webhook_url",
    "key",
    "url",
    "hmac_key",
    "secret",
    "corpsecret",
    "callback_token",
    "callback_aes_key",
    "token",
];

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub const MASK: &'static str = "<redacted>";

    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of this secret in `text` by the mask; for error texts
    /// produced by libraries that echo URLs or connection strings.
    pub fn redact_in(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, Self::MASK)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A value as a settings line writes it: a double-quoted string (up to its closing quote,
/// or to the end of the line when it is never closed: the typical syntax error), a
/// single-quoted one, or a bare value up to a comma, a brace or a comment.
const VALUE: &str = r#"("(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s,}#'"][^,}#]*)"#;

/// `key = value` / `key: value` for a secret key, anywhere in a line (after a space, a
/// brace, a comma or a dot: inline tables and dotted keys). Group 1 is the value.
fn secret_assignment() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        let keys = SECRET_KEYS.join("|");
        Regex::new(&format!(
            r#"(?:^|[\s{{,.])["']?(?:{keys})["']?[ \t]*[=:][ \t]*{VALUE}"#
        ))
        .expect("a valid regex")
    })
}

/// A settings line that starts with a secret key, also when the separator is missing
/// (`hmac_key "…"`, a syntax error). Group 1 is the value.
fn secret_line() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        let keys = SECRET_KEYS.join("|");
        Regex::new(&format!(
            r#"^[ \t]*(?:-[ \t]*)?(?:[\w"'-]+\.)*["']?(?:{keys})["']?(?:[ \t]*[=:][ \t]*|[ \t]+){VALUE}"#
        ))
        .expect("a valid regex")
    })
}

/// Credentials inside a value whatever its key: the password of a URL
/// (`scheme://user:password@host`, group 1) and a `key=`, `token=`, `access_token=`,
/// `password=`, `secret=` or `sign=` parameter of a URL or a libpq connection string
/// (group 2).
fn credentials() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r#"://[^/@\s:"']*:([^@\s/"']+)@|(?i:\b(?:key|token|access_token|password|secret|sign)=)('[^']*'?|[^&\s"',;}]+)"#,
        )
        .expect("a valid regex")
    })
}

/// The secret values a settings text holds: the values of [`SECRET_KEYS`] (quoted and
/// bare forms) and every credential inside a value (see [`credentials`]). Values shorter
/// than 3 characters are left out: masking them would mangle the message around them.
fn secret_values(source: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: &str| {
        let v = v.trim();
        if v.chars().count() >= 3 && !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    };
    for line in source.lines() {
        let assigned = secret_line()
            .captures_iter(line)
            .chain(secret_assignment().captures_iter(line));
        for c in assigned {
            if let Some(v) = c.get(1) {
                add(v.as_str());
                add(v.as_str().trim().trim_matches(['"', '\'']));
            }
        }
        for c in credentials().captures_iter(line) {
            if let Some(v) = c.get(1).or_else(|| c.get(2)) {
                add(v.as_str());
                add(v.as_str().trim_matches('\''));
            }
        }
    }
    // Longest first, so a URL is masked before the key inside it.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

/// `c`'s whole match with its value group replaced by the mask.
fn mask_group(c: &Captures, group: usize) -> String {
    let (Some(all), Some(v)) = (c.get(0), c.get(group)) else {
        return c
            .get(0)
            .map_or_else(String::new, |m| m.as_str().to_string());
    };
    let text = all.as_str();
    if v.as_str().trim().is_empty() || v.as_str().contains(Secret::MASK) {
        return text.to_string();
    }
    let (start, end) = (v.start() - all.start(), v.end() - all.start());
    format!("{}{}{}", &text[..start], Secret::MASK, &text[end..])
}

/// An error text produced while reading a settings file (a TOML syntax error quotes the
/// line, a type error quotes the value), made safe to print, log or serve on `/status`:
/// every secret value found in `source` (the settings text the error is about) is masked,
/// and so is, in every line of the text, the value of a secret key (also when the line is
/// too broken to parse) and any credential inside a URL or a connection string. The one
/// place such texts are redacted: [`crate::config::Settings::load`] passes every problem
/// through it.
pub fn redact_config_text(text: &str, source: &str) -> String {
    let mut out = text.to_string();
    for v in secret_values(source) {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), Secret::MASK);
        }
    }
    let lines: Vec<String> = out
        .split('\n')
        .map(|line| {
            let line = secret_assignment().replace_all(line, |c: &Captures| mask_group(c, 1));
            credentials()
                .replace_all(&line, |c: &Captures| {
                    mask_group(c, if c.get(1).is_some() { 1 } else { 2 })
                })
                .into_owned()
        })
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.redact_in("key=hunter2&x=1"), "key=<redacted>&x=1");
        assert_eq!(s.expose(), "hunter2");
    }
}

#[cfg(test)]
mod config_text_tests {
    use super::*;

    /// The error the `config` crate gives for `text` (a syntax error from the TOML or YAML
    /// parser, or a type error from deserialising the settings), as it displays.
    fn parser_error(text: &str, format: config::FileFormat) -> String {
        config::Config::builder()
            .add_source(config::File::from_str(text, format))
            .build()
            .and_then(|c| c.try_deserialize::<crate::config::Settings>())
            .map(|_| ())
            .expect_err("the text is invalid")
            .to_string()
    }

    /// The raw error quotes `secret`; the redacted one does not, and still says where.
    fn redacts(text: &str, format: config::FileFormat, secret: &str, kept: &str) {
        let raw = parser_error(text, format);
        let red = redact_config_text(&raw, text);
        assert!(!red.contains(secret), "{secret} leaked:\n{red}");
        assert!(red.contains(kept), "{kept} lost:\n{red}");
        assert!(red.contains(Secret::MASK) || !raw.contains(secret), "{red}");
    }

    const TOML: config::FileFormat = config::FileFormat::Toml;
    const YAML: config::FileFormat = config::FileFormat::Yaml;

    #[test]
    fn toml_syntax_errors_on_a_secret_line_do_not_quote_it() {
        // Trailing garbage after the value: the parser quotes the whole line.
        let text = "[channels.w]\ntype = \"wecom\"\nkey = \"WECOMKEY-0123456789\" x\n";
        assert!(parser_error(text, TOML).contains("WECOMKEY-0123456789"));
        // (file, the secret, what the message still says).
        let cases = [
            (text, "WECOMKEY-0123456789", "line 3"),
            // A string never closed: the value runs to the end of the line.
            (
                "[channels.h]\ntype = \"webhook\"\nhmac_key = \"HMACSECRET0123456789\n",
                "HMACSECRET0123456789",
                "line 3",
            ),
            // No `=` at all.
            (
                "[channels.h]\ntype = \"webhook\"\nhmac_key \"HMACSECRET0123456789\"\n",
                "HMACSECRET0123456789",
                "line 3",
            ),
            // A dotted key, and an inline table.
            (
                "channels.h.hmac_key = \"HMACSECRET0123456789\" x\n",
                "HMACSECRET0123456789",
                "line 1",
            ),
            (
                "[channels]\nh = { type = \"webhook\", hmac_key = \"HMACSECRET0123456789\" x }\n",
                "HMACSECRET0123456789",
                "line 2",
            ),
            // A password inside a DSN, a webhook URL's key under a misspelt key name.
            (
                "[repositories.main]\ndsn = \"host=db password=PGSECRET99 user=x\" oops\n",
                "PGSECRET99",
                "line 2",
            ),
            (
                "[channels.w]\nwebhok_url = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=ROBOTKEY42\" x\n",
                "ROBOTKEY42",
                "qyapi.weixin.qq.com",
            ),
            // A URL with a password, as a webhook URL or a repository URL.
            (
                "[channels.h]\nbase_url = \"https://hook:URLPASS77@example.org/x\" x\n",
                "URLPASS77",
                "example.org",
            ),
            (
                "[repositories.main]\ndsn = postgresql://ro:URLPASS77@db/powa\n",
                "URLPASS77",
                "line 2",
            ),
        ];
        for (text, secret, context) in cases {
            redacts(text, TOML, secret, context);
        }
    }

    #[test]
    fn yaml_errors_keep_their_position_and_lose_the_secrets() {
        let text = "channels:\n  w:\n    type: wecom\n    key: \"YAMLKEY12345\" bad\n";
        redacts(text, YAML, "YAMLKEY12345", "line 4");
        let text = "repositories:\n  main:\n    dsn: host=x password=YAMLPW99\n   channels:\n";
        redacts(text, YAML, "YAMLPW99", "line 4");
    }

    #[test]
    fn what_is_not_secret_is_left_as_it_is() {
        let text = "[analysis]\nwindow = \"soon\"\n";
        let raw = parser_error(text, TOML);
        assert_eq!(redact_config_text(&raw, text), raw);
        let text = "[analysis]\nwindow = \"1h\" x\n";
        let raw = parser_error(text, TOML);
        assert_eq!(redact_config_text(&raw, text), raw);
    }

    /// Every key named secret is a real settings field (of a channel, a repository or a
    /// monitored server, or `[http]`), so the list cannot name something that does not exist.
    #[test]
    fn every_secret_key_is_a_settings_field() {
        for key in SECRET_KEYS {
            let channel = serde_json::from_value::<crate::channels::ChannelSettings>(
                serde_json::json!({"type": "console", *key: "x"}),
            );
            let repo = serde_json::from_value::<crate::powa::RepositorySettings>(
                serde_json::json!({*key: "x"}),
            );
            let http =
                serde_json::from_value::<crate::http::HttpSettings>(serde_json::json!({*key: "x"}));
            assert!(
                channel.is_ok() || repo.is_ok() || http.is_ok(),
                "{key} is not a field"
            );
        }
    }
}
