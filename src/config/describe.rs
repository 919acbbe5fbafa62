//! What the `config` crate, the TOML and YAML parsers and serde report, turned into one
//! [`Problem`] a DBA can act on: the key (found from the line for a syntax error), what
//! was expected in words ("a whole number between 0 and 65535", "a duration such as
//! \"90s\""), what was found, and the closest valid name for a typo.
//!
//! The messages of those libraries speak Rust ("expected usize", "enum ChannelKind does
//! not have variant constructor wechat") and name the table rather than the key; they are
//! recognised here by their shape, and anything not recognised is passed on as it is, so a
//! new message of a library degrades to its own words, never to nothing. Secrets are not
//! this module's business: [`crate::secret::redact_config_text`] runs over the result.

use std::sync::OnceLock;

use regex::Regex;
use serde::de::DeserializeOwned;

use super::Problem;
use crate::problem::did_you_mean;

/// Where the parser's error points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem for `e`, raised while reading `source` (the text given to the parser).
pub(crate) fn describe(
    e: &config::ConfigError,
    source: &str,
    format: config::FileFormat,
) -> Problem {
    use config::ConfigError as E;
    match e {
        E::FileParse { cause, .. } => syntax(&cause.to_string(), source, format),
        E::Type {
            unexpected,
            expected,
            key,
            ..
        } => Problem::new(
            normalise_key(key.as_deref().unwrap_or("")),
            type_message(&unexpected.to_string(), expected),
        ),
        E::At { error, key, .. } => {
            let outer = normalise_key(key.as_deref().unwrap_or(""));
            let inner = match error.as_ref() {
                E::Message(m) => message(m),
                E::NotFound(k) => (Some(k.clone()), "is required: set it".to_string()),
                other => {
                    let p = describe(other, source, format);
                    (Some(p.key).filter(|k| !k.is_empty()), p.message)
                }
            };
            let (sub, text) = inner;
            Problem::new(join_key(&outer, sub.as_deref()), text)
        }
        E::NotFound(k) => Problem::new(normalise_key(k), "is required: set it"),
        E::Message(m) => {
            let (sub, text) = message(m);
            Problem::new(sub.unwrap_or_default(), text)
        }
        other => Problem::new("", other.to_string()),
    }
}

/// `routes[0]channels` (how the `config` crate joins an array index and a field) reads
/// `routes[0].channels`.
fn normalise_key(key: &str) -> String {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = R.get_or_init(|| Regex::new(r"\]([A-Za-z_])").expect("a valid regex"));
    r.replace_all(key, "].$1").into_owned()
}

fn join_key(outer: &str, sub: Option<&str>) -> String {
    match sub {
        None | Some("") => outer.to_string(),
        Some(s) if outer.is_empty() => normalise_key(s),
        Some(s) => normalise_key(&format!("{outer}.{s}")),
    }
}

/// A serde or `config` message, with the sub-key it is about when it names one.
fn message(m: &str) -> (Option<String>, String) {
    static SUB: OnceLock<Regex> = OnceLock::new();
    static INVALID: OnceLock<Regex> = OnceLock::new();
    static FIELD: OnceLock<Regex> = OnceLock::new();
    static VARIANT: OnceLock<Regex> = OnceLock::new();
    static ENUM: OnceLock<Regex> = OnceLock::new();
    static MISSING: OnceLock<Regex> = OnceLock::new();
    let re = |cell: &'static OnceLock<Regex>, pattern: &str| -> &'static Regex {
        cell.get_or_init(|| Regex::new(pattern).expect("a valid regex"))
    };
    // A nested deserialiser (per-server analyzer settings) names the field it failed on.
    if let Some(c) = re(&SUB, r"(?s)^key `([^`]+)`: (.*)$").captures(m) {
        let (sub, rest) = (c[1].to_string(), c[2].to_string());
        let (deeper, text) = message(&rest);
        return (Some(join_key(&sub, deeper.as_deref())), text);
    }
    if let Some(c) = re(
        &INVALID,
        r"(?s)^invalid (?:type|value): (.+), expected (.+)$",
    )
    .captures(m)
    {
        return (None, type_message(&c[1], &c[2]));
    }
    if let Some(c) = re(
        &FIELD,
        r"^unknown field `([^`]*)`, (?:expected (?:one of )?(.*)|there are no fields)$",
    )
    .captures(m)
    {
        let field = c[1].to_string();
        let known = backticked(c.get(2).map_or("", |m| m.as_str()));
        let hint = did_you_mean(&field, known.iter().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .or_else(|| elsewhere(&field))
            .unwrap_or_default();
        let list = if known.is_empty() {
            "this table takes no keys".to_string()
        } else {
            format!("the keys here are {}", known.join(", "))
        };
        return (
            Some(field.clone()),
            format!("unknown field `{field}`{hint} ({list})"),
        );
    }
    if let Some(c) = re(
        &VARIANT,
        r"^unknown variant `([^`]*)`, expected (?:one of )?(.*)$",
    )
    .captures(m)
    {
        let known = backticked(&c[2]);
        return (None, unknown_value("value", &c[1], &known));
    }
    if let Some(c) = re(
        &ENUM,
        r"^enum (\w+) does not have variant constructor (.*)$",
    )
    .captures(m)
    {
        let (noun, known) = enum_info(&c[1]).unwrap_or(("value", Vec::new()));
        return (None, unknown_value(noun, &c[2], &known));
    }
    if let Some(c) = re(&MISSING, r"^missing field `([^`]*)`$").captures(m) {
        return (Some(c[1].to_string()), "is required: set it".to_string());
    }
    (None, m.to_string())
}

/// The documented configuration (every key with its default), to tell where a key that
/// is unknown in one table belongs.
const DOCUMENTED: &str = include_str!("../../config/powa-sentinel.toml");

/// "; `repeat_interval` is a key of [gate.lifecycle]" when the documented configuration
/// has this key in other tables.
fn elsewhere(field: &str) -> Option<String> {
    let mut tables: Vec<String> = Vec::new();
    for (i, line) in DOCUMENTED.lines().enumerate() {
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if line.trim_start().starts_with('#') || k.trim() != field {
            continue;
        }
        let key = toml_key_at(DOCUMENTED, i + 1);
        if let Some(table) = key.strip_suffix(&format!(".{field}")) {
            if !tables.iter().any(|t| t == table) {
                tables.push(table.to_string());
            }
        }
    }
    if tables.is_empty() {
        return None;
    }
    let tables: Vec<String> = tables.iter().take(3).map(|t| format!("[{t}]")).collect();
    Some(format!("; `{field}` is a key of {}", tables.join(", ")))
}

/// The names between backticks of "`a`, `b` or `c`".
fn backticked(list: &str) -> Vec<String> {
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn unknown_value(noun: &str, value: &str, known: &[String]) -> String {
    let hint = did_you_mean(value, known.iter().map(String::as_str))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    if known.is_empty() {
        format!("unknown {noun} `{value}`")
    } else {
        format!(
            "unknown {noun} `{value}`; expected one of {}{hint}",
            known.join(", ")
        )
    }
}

/// The values a settings enum accepts, from serde itself (so the list cannot drift).
fn variants<T: DeserializeOwned>() -> Vec<String> {
    match serde_json::from_value::<T>(serde_json::Value::String("\u{1}".into())) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let text = e.to_string();
            let list = text.split("expected").nth(1).unwrap_or("");
            backticked(list)
        }
    }
}

fn short_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// What a settings enum is called in words, and its values, by its Rust name (which is
/// all the `config` crate's message gives).
fn enum_info(rust_name: &str) -> Option<(&'static str, Vec<String>)> {
    type Entry = (&'static str, &'static str, fn() -> Vec<String>);
    let table: [Entry; 6] = [
        (
            crate::channels::registry::TYPE_ENUM,
            "channel type",
            crate::channels::registry::type_names,
        ),
        (
            short_name::<crate::channels::MsgType>(),
            "message type",
            variants::<crate::channels::MsgType>,
        ),
        (
            short_name::<crate::powa::SslMode>(),
            "sslmode",
            variants::<crate::powa::SslMode>,
        ),
        (
            short_name::<crate::logging::LogFormat>(),
            "log format",
            variants::<crate::logging::LogFormat>,
        ),
        (
            short_name::<crate::render::Lang>(),
            "language",
            variants::<crate::render::Lang>,
        ),
        (
            short_name::<crate::analyze::slow_query::RankBy>(),
            "ranking",
            variants::<crate::analyze::slow_query::RankBy>,
        ),
    ];
    table
        .iter()
        .find(|(name, _, _)| *name == rust_name)
        .map(|(_, noun, list)| (*noun, list()))
}

/// "expected <what, in words>, got <value>", from serde's or `config`'s names of the
/// expected type and its description of the value found.
fn type_message(unexpected: &str, expected: &str) -> String {
    let got = found(unexpected);
    let expected = expected.trim();
    let words = match expected {
        "usize" | "u64" | "an unsigned 64 bit or less integer" | "an unsigned 64 bit integer" => {
            "a whole number of 0 or more".to_string()
        }
        "u32" | "an unsigned 32 bit integer" => whole_between(0, u32::MAX.into()),
        "u16" | "an unsigned 16 bit integer" => whole_between(0, u16::MAX.into()),
        "u8" | "an unsigned 8 bit integer" => whole_between(0, u8::MAX.into()),
        "i64" | "i32" | "a signed 64 bit integer" | "a signed 32 bit integer" | "an integer" => {
            "a whole number".to_string()
        }
        "f64" | "f32" | "a floating point" => "a number, e.g. 1.5".to_string(),
        "a boolean" | "bool" => "true or false".to_string(),
        "a string" | "string" => "a text value in quotes".to_string(),
        "a duration" => "a duration such as \"90s\", \"5m\", \"1h30m\" or \"7d\"".to_string(),
        "a sequence" | "an array" => "a list, e.g. [\"a\", \"b\"]".to_string(),
        e if e.starts_with("struct ") || e == "a map" || e == "map" => {
            "a table of settings".to_string()
        }
        other => other.to_string(),
    };
    let mut text = format!("expected {words}, got {got}");
    let bare = got.trim_matches('"');
    if expected == "a duration" {
        if bare.starts_with('-') {
            text.push_str(": a duration cannot be negative");
        } else if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_digit() || c == '.') {
            text.push_str(&format!(
                ": a number needs a unit, e.g. \"{bare}s\" or \"{bare}m\""
            ));
        }
    } else if words.starts_with("a whole number") && bare.starts_with('-') {
        text.push_str(": negative numbers are not accepted here");
    }
    text
}

fn whole_between(lo: u64, hi: u64) -> String {
    format!("a whole number between {lo} and {hi}")
}

/// The value in serde's or `config`'s description of it: `string "ten"` → `"ten"`,
/// ``64-bit integer `-1` `` → `-1`, `sequence` → `a list`.
fn found(unexpected: &str) -> String {
    let u = unexpected.trim();
    if let Some(s) = u.strip_prefix("string ") {
        return s.to_string();
    }
    if let Some(start) = u.find('`') {
        if let Some(len) = u[start + 1..].find('`') {
            return u[start + 1..start + 1 + len].to_string();
        }
    }
    match u {
        "sequence" => "a list".to_string(),
        "map" => "a table".to_string(),
        "unit value" | "null" | "unit" => "nothing".to_string(),
        other => other.to_string(),
    }
}

/// A syntax error: where, what, and the key of that line.
fn syntax(cause: &str, source: &str, format: config::FileFormat) -> Problem {
    let (lang, at, what) = match format {
        config::FileFormat::Yaml => {
            let (at, what) = yaml_position(cause);
            ("YAML", at, what)
        }
        _ => {
            let (at, what) = toml_position(cause);
            ("TOML", at, what)
        }
    };
    let Some(at) = at else {
        return Problem::new("", format!("not valid {lang}: {what}"));
    };
    let key = match format {
        config::FileFormat::Yaml => yaml_key_at(source, at.line),
        _ => toml_key_at(source, at.line),
    };
    let line = source
        .lines()
        .nth(at.line.saturating_sub(1))
        .unwrap_or("")
        .trim();
    let reads = if line.is_empty() {
        String::new()
    } else {
        format!("; the line reads `{line}`")
    };
    Problem::new(
        key,
        format!(
            "not valid {lang} at line {}, column {}: {what}{reads}",
            at.line, at.column
        ),
    )
}

/// toml: "TOML parse error at line 8, column 25\n  |\n8 | …\n  |  ^\nunexpected key or
/// value, expected newline, `#`\n".
fn toml_position(cause: &str) -> (Option<Position>, String) {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = R.get_or_init(|| Regex::new(r"at line (\d+), column (\d+)").expect("a valid regex"));
    let at = r.captures(cause).and_then(|c| {
        Some(Position {
            line: c[1].parse().ok()?,
            column: c[2].parse().ok()?,
        })
    });
    // The explanation follows the snippet (lines of the form `N | …` and `  | ^`).
    let what: Vec<&str> = cause
        .lines()
        .skip(1)
        .filter(|l| !l.trim_start().starts_with('|') && !l.contains(" | ") && !l.trim().is_empty())
        .collect();
    let what = if at.is_some() && !what.is_empty() {
        what.join(" ")
    } else {
        cause.lines().next().unwrap_or(cause).to_string()
    };
    (at, what.trim().to_string())
}

/// yaml-rust2: "invalid trailing content after double-quoted scalar at byte 116 line 7
/// column 25".
fn yaml_position(cause: &str) -> (Option<Position>, String) {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = R.get_or_init(|| {
        Regex::new(r"^(.*?)\s*at (?:byte \d+ )?line (\d+),? column (\d+)").expect("a valid regex")
    });
    match r.captures(cause) {
        Some(c) => (
            c[2].parse()
                .ok()
                .zip(c[3].parse().ok())
                .map(|(line, column)| Position { line, column }),
            c[1].to_string(),
        ),
        None => (None, cause.to_string()),
    }
}

/// The segments of a dotted TOML key, quotes respected (`servers."main/db1.x"` is two),
/// each shown bare when it can be and quoted when it must (as `[analyzers.<name>.servers]`
/// keys are written).
fn key_path(k: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in k.trim().chars() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => parts.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| {
            let p = p.trim();
            if !p.is_empty()
                && p.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                p.to_string()
            } else {
                format!("\"{p}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn unquote(k: &str) -> String {
    k.trim().trim_matches(['"', '\'']).to_string()
}

/// The dotted key a line of a TOML text sets (or the table it opens), following the
/// `[table]` and `[[array]]` headers before it. Empty when the line is before any.
pub(super) fn toml_key_at(source: &str, line: usize) -> String {
    let mut table = String::new();
    let mut arrays: std::collections::BTreeMap<String, usize> = Default::default();
    for (i, l) in source.lines().enumerate() {
        let t = l.trim();
        let header = if let Some(h) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = key_path(h);
            let n = arrays.entry(name.clone()).or_insert(0);
            *n += 1;
            Some(format!("{name}[{}]", *n - 1))
        } else {
            t.strip_prefix('[')
                .and_then(|r| r.split(']').next())
                .map(key_path)
        };
        if let Some(h) = header {
            table = h;
            if i + 1 == line {
                return table;
            }
            continue;
        }
        if i + 1 == line {
            let key = t
                .split_once('=')
                .map(|(k, _)| k)
                .unwrap_or_else(|| t.split_whitespace().next().unwrap_or(""));
            let bare = key.trim();
            let valid = !bare.is_empty()
                && bare.chars().all(|c| {
                    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | '/' | ' ')
                });
            let key = key_path(bare);
            return match (valid, table.is_empty()) {
                (false, _) => table,
                (true, true) => key,
                (true, false) => format!("{table}.{key}"),
            };
        }
    }
    table
}

/// The dotted key a line of a YAML text sets, from the indentation of the mapping keys
/// before it.
pub(super) fn yaml_key_at(source: &str, line: usize) -> String {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = R.get_or_init(|| {
        Regex::new(r#"^(\s*)(?:-\s+)?("[^"]*"|'[^']*'|[^\s:#'"][^:#]*?)\s*:(?:\s|$)"#)
            .expect("a valid regex")
    });
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, l) in source.lines().enumerate().take(line) {
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        while stack.last().is_some_and(|(n, _)| *n >= indent) {
            stack.pop();
        }
        if let Some(c) = r.captures(l) {
            stack.push((indent, unquote(&c[2])));
        } else if i + 1 == line {
            break;
        }
    }
    stack
        .iter()
        .map(|(_, k)| k.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// An integer literal too large for any settings number (TOML integers are 64-bit; the
/// parser then says only "number too large to fit in target type", with no position):
/// its line and text, so that the caller can name the key.
pub(super) fn oversized_integer(source: &str) -> Option<(usize, String)> {
    static R: OnceLock<Regex> = OnceLock::new();
    let r = R.get_or_init(|| {
        Regex::new(r"(?:=|:)\s*([+-]?\d[\d_]*)\s*(?:#.*)?$").expect("a valid regex")
    });
    source.lines().enumerate().find_map(|(i, l)| {
        let c = r.captures(l)?;
        let digits = c[1].replace('_', "");
        digits
            .parse::<i64>()
            .is_err()
            .then(|| (i + 1, c[1].to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_from_the_line() {
        let toml = "a = 1\n[channels.ops]\ntype = \"x\"\n[[routes]]\nchannels = []\n[[routes]]\n\"continue\" = true\n[analyzers.slow_queries.servers.\"main/db1\"]\ntop_n = 3\n";
        assert_eq!(toml_key_at(toml, 1), "a");
        assert_eq!(toml_key_at(toml, 2), "channels.ops");
        assert_eq!(toml_key_at(toml, 3), "channels.ops.type");
        assert_eq!(toml_key_at(toml, 5), "routes[0].channels");
        assert_eq!(toml_key_at(toml, 7), "routes[1].continue");
        assert_eq!(
            toml_key_at(toml, 9),
            "analyzers.slow_queries.servers.\"main/db1\".top_n"
        );
        let yaml =
            "database:\n  host: db\n  # note\n  password: \"x\" y\nnotifier:\n  type: wecom\n";
        assert_eq!(yaml_key_at(yaml, 2), "database.host");
        assert_eq!(yaml_key_at(yaml, 4), "database.password");
        assert_eq!(yaml_key_at(yaml, 6), "notifier.type");
    }

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            type_message("string \"ten\"", "usize"),
            "expected a whole number of 0 or more, got \"ten\""
        );
        assert_eq!(
            type_message(
                "64-bit unsigned integer `99999`",
                "an unsigned 16 bit integer"
            ),
            "expected a whole number between 0 and 65535, got 99999"
        );
        assert_eq!(
            type_message("string \"-5m\"", "a duration"),
            "expected a duration such as \"90s\", \"5m\", \"1h30m\" or \"7d\", got \"-5m\": a duration cannot be negative"
        );
        assert_eq!(
            type_message("sequence", "a boolean"),
            "expected true or false, got a list"
        );
    }

    #[test]
    fn enum_messages_list_the_values_and_suggest_one() {
        let (sub, text) = message("enum ChannelKind does not have variant constructor wechat");
        assert_eq!(sub, None);
        assert_eq!(
            text,
            "unknown channel type `wechat`; expected one of console, wecom, wecom_app, webhook, file, feishu, dingtalk, slack, email (did you mean `wecom`?)"
        );
        let (_, text) =
            message("unknown variant `totl_time`, expected one of `total_time`, `calls`");
        assert_eq!(
            text,
            "unknown value `totl_time`; expected one of total_time, calls (did you mean `total_time`?)"
        );
    }

    #[test]
    fn a_key_in_the_wrong_table_is_pointed_to_its_table() {
        let (sub, text) = message(
            "unknown field `repeat_interval`, expected one of `lifecycle`, `immediate`, `tick_interval`",
        );
        assert_eq!(sub.as_deref(), Some("repeat_interval"));
        assert_eq!(
            text,
            "unknown field `repeat_interval`; `repeat_interval` is a key of [gate.lifecycle] (the keys here are lifecycle, immediate, tick_interval)"
        );
    }

    #[test]
    fn oversized_integers_are_found() {
        assert_eq!(
            oversized_integer("[a]\nb = 3\nc = 99999999999999999999\n"),
            Some((3, "99999999999999999999".to_string()))
        );
        assert_eq!(oversized_integer("b = 9223372036854775807\n"), None);
    }
}
