//! Loading a configuration file written for the seed system (the Go powa-sentinel) as it
//! is: its YAML keys, its defaults, and its `${VAR}` / `${VAR:-default}` substitution over
//! the raw text. The file is translated into our native settings (TOML text, which then
//! goes through the normal loader and validation), and the caller logs a line suggesting
//! the native form.
//!
//! What maps to what (seed key → native key):
//!
//! | seed | native |
//! |---|---|
//! | database.host/port/user/password/dbname/sslmode | repositories.main.* (seed defaults: 127.0.0.1, 5432, powa_readonly, powa, disable) |
//! | schedule.cron, schedule.timezone | schedule.cron, schedule.timezone (default `0 0 9 * * 1`, UTC) |
//! | analysis.window_duration, analysis.comparison_offset | analysis.window, analysis.baseline_offset (24h, 168h) |
//! | rules.slow_sql.top_n, rank_by | analyzers.slow_queries.top_n, rank_by (0 means 10, as in the seed) |
//! | rules.regression.threshold_percent | analyzers.regression.min_factor = 1 + p/100 (0 means 50) |
//! | rules.index_suggestion.min_improvement_percent | analyzers.missing_index.min_gain = p/100 (0 means 30) |
//! | notifier.type, webhook_url | channels.console or channels.wecom |
//! | server.port | http.listen = "0.0.0.0:<port>" (the seed listened on every interface) |
//!
//! Keys with no counterpart (`database.expected_extensions`: extensions are detected per
//! server; `notifier.retries`/`retry_delay`: deliveries retry within a deadline and
//! classify errors; `server.deep_check`: `/readyz` always checks the repository) are
//! accepted and reported as notes. The seed's README promised "abnormal workload
//! changes" (its code never had them): a seed file gets them, as every native file does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::problem::{did_you_mean, Problem};

/// Every key the seed understood, for "did you mean" and to reject typos.
const SEED_KEYS: &[&str] = &[
    "database.host",
    "database.port",
    "database.user",
    "database.password",
    "database.dbname",
    "database.sslmode",
    "database.expected_extensions",
    "schedule.cron",
    "schedule.timezone",
    "analysis.window_duration",
    "analysis.comparison_offset",
    "rules.slow_sql.top_n",
    "rules.slow_sql.rank_by",
    "rules.regression.threshold_percent",
    "rules.index_suggestion.min_improvement_percent",
    "notifier.type",
    "notifier.webhook_url",
    "notifier.retries",
    "notifier.retry_delay",
    "server.port",
    "server.deep_check",
];

const SEED_SECTIONS: &[&str] = &["database", "notifier", "rules", "server"];
const NATIVE_SECTIONS: &[&str] = &[
    "repositories",
    "channels",
    "analyzers",
    "collection",
    "http",
];

/// The result of a translation.
#[derive(Debug, Clone)]
pub struct Translation {
    /// Native TOML, secrets included: what is loaded.
    pub native: String,
    /// The same with secrets replaced by advice: what may be shown or logged.
    pub shown: String,
    /// Seed keys that have no counterpart, and behaviour differences worth knowing.
    pub notes: Vec<String>,
}

/// `${VAR}` and `${VAR:-default}` expanded over the whole text, comments included, as the
/// seed did. An unset variable without a default becomes the empty string (as in the seed;
/// a later "missing value" error names the key). A variable set to the empty string counts
/// as unset for `:-`, like the shell.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            out.push_str("${");
            rest = after;
            continue;
        }
        let value = env(name).filter(|v| !(default.is_some() && v.is_empty()));
        out.push_str(&value.unwrap_or_else(|| default.unwrap_or("").to_string()));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Is this YAML text a seed configuration? (It has a seed section and no native one.)
pub fn is_seed(yaml: &str) -> bool {
    let top: Vec<&str> = yaml
        .lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']) && !l.trim().is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
        })
        .collect();
    top.iter().any(|k| SEED_SECTIONS.contains(k))
        && !top.iter().any(|k| NATIVE_SECTIONS.contains(k))
}

fn flatten(prefix: &str, v: &config::Value, out: &mut BTreeMap<String, config::Value>) {
    match &v.kind {
        config::ValueKind::Table(t) => {
            for (k, v) in t {
                flatten(&crate::config::dotted_key(prefix, k), v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Go's `time.ParseDuration` subset the seed's YAML used: "24h", "1h30m", "90s", "1.5h",
/// "500ms". Returns whole seconds (at least 1 when the value is positive).
fn go_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[u_end..];
    }
    Some(if total > 0.0 {
        (total.round() as u64).max(1)
    } else {
        0
    })
}

fn q(s: &str) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Translates the seed's YAML (after substitution) into native settings.
pub fn translate(yaml: &str) -> Result<Translation, Vec<Problem>> {
    let describe = |e: config::ConfigError| {
        vec![crate::config::describe::describe(
            &e,
            yaml,
            config::FileFormat::Yaml,
        )]
    };
    let built = config::Config::builder()
        .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
        .build()
        .map_err(describe)?;
    let root: config::Value = built.try_deserialize().map_err(describe)?;
    let mut keys = BTreeMap::new();
    flatten("", &root, &mut keys);
    let mut problems = Vec::new();
    for k in keys.keys() {
        if !SEED_KEYS.contains(&k.as_str()) {
            let hint = did_you_mean(k, SEED_KEYS.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_else(|| {
                    "; the seed format has no such key (see docs/upgrading-from-seed.md)"
                        .to_string()
                });
            problems.push(Problem::new(
                k.clone(),
                format!("unknown key in a seed-format file{hint}"),
            ));
        }
    }
    let get = |k: &str| keys.get(k).map(|v| v.to_string()).filter(|s| !s.is_empty());
    let num = |k: &str, problems: &mut Vec<Problem>| -> Option<u64> {
        let s = get(k)?;
        match s.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(Problem::new(k, format!("`{s}` is not a whole number")));
                None
            }
        }
    };
    let dur = |k: &str, default: u64, problems: &mut Vec<Problem>| -> u64 {
        match get(k) {
            None => default,
            Some(s) => go_duration_secs(&s).unwrap_or_else(|| {
                problems.push(Problem::new(
                    k,
                    format!("`{s}` is not a duration; write e.g. \"24h\" or \"1h30m\""),
                ));
                default
            }),
        }
    };
    let mut notes = Vec::new();
    let mut native = String::new();
    let mut shown = String::new();
    let mut both = |s: &str| {
        native.push_str(s);
        shown.push_str(s);
    };

    // [analysis]
    let window = dur("analysis.window_duration", 24 * 3600, &mut problems);
    let offset = dur("analysis.comparison_offset", 168 * 3600, &mut problems);
    both(&format!(
        "[analysis]\nwindow = \"{window}s\"\nbaseline_offset = \"{offset}s\"\n\n"
    ));

    // [schedule]
    let cron = get("schedule.cron").unwrap_or_else(|| "0 0 9 * * 1".to_string());
    let tz = get("schedule.timezone").unwrap_or_else(|| "UTC".to_string());
    both(&format!(
        "[schedule]\ncron = {}\ntimezone = {}\n\n",
        q(&cron),
        q(&tz)
    ));

    // [http]
    let port = num("server.port", &mut problems).unwrap_or(8080);
    both(&format!("[http]\nlisten = \"0.0.0.0:{port}\"\n\n"));
    if keys.contains_key("server.deep_check") {
        notes.push("server.deep_check is not needed: /readyz always checks the repositories, and /healthz never fails on a database outage".into());
    }

    // [repositories.main]
    both("[repositories.main]\n");
    both(&format!(
        "host = {}\n",
        q(&get("database.host").unwrap_or_else(|| "127.0.0.1".into()))
    ));
    both(&format!(
        "port = {}\n",
        num("database.port", &mut problems).unwrap_or(5432)
    ));
    both(&format!(
        "user = {}\n",
        q(&get("database.user").unwrap_or_else(|| "powa_readonly".into()))
    ));
    both(&format!(
        "dbname = {}\n",
        q(&get("database.dbname").unwrap_or_else(|| "powa".into()))
    ));
    both(&format!(
        "sslmode = {}\n",
        q(&get("database.sslmode").unwrap_or_else(|| "disable".into()))
    ));
    if let Some(p) = get("database.password") {
        native.push_str(&format!("password = {}\n", q(&p)));
        shown.push_str("password_env = \"POWA_REPOSITORY_PASSWORD\"   # or password_file; keep passwords out of the file\n");
    }
    native.push('\n');
    shown.push('\n');
    if keys.contains_key("database.expected_extensions") {
        notes.push("database.expected_extensions is not needed: the modules enabled for each server are read from PoWA (`powa-sentinel check` lists them)".into());
    }

    // [analyzers]
    let top_n = num("rules.slow_sql.top_n", &mut problems)
        .filter(|n| *n > 0)
        .unwrap_or(10);
    let rank_by = get("rules.slow_sql.rank_by").unwrap_or_else(|| "total_time".into());
    let mut b = |s: String| {
        native.push_str(&s);
        shown.push_str(&s);
    };
    b(format!(
        "[analyzers.slow_queries]\ntop_n = {top_n}\nrank_by = {}\n\n",
        q(&rank_by)
    ));
    let pct = num("rules.regression.threshold_percent", &mut problems)
        .filter(|n| *n > 0)
        .unwrap_or(50);
    let factor = 1.0 + pct as f64 / 100.0;
    // Our severities start at warning_factor (3) and critical_factor (10); a seed
    // threshold above them moves them up so the three stay ordered.
    b(format!(
        "[analyzers.regression]\nmin_factor = {factor}\nwarning_factor = {}\ncritical_factor = {}\n\n",
        factor.max(3.0),
        factor.max(10.0)
    ));
    // The seed's minimum improvement of a suggested index is exactly the share of the
    // helped queries' estimated cost hypopg must remove (0 means 30, as in the seed).
    let gain = num(
        "rules.index_suggestion.min_improvement_percent",
        &mut problems,
    )
    .filter(|n| *n > 0)
    .unwrap_or(30);
    if gain > 100 {
        problems.push(Problem::new(
            "rules.index_suggestion.min_improvement_percent",
            format!("{gain} is not a percentage between 0 and 100"),
        ));
    }
    b(format!(
        "[analyzers.missing_index]\nmin_gain = {}\n\n",
        gain.min(100) as f64 / 100.0
    ));

    // [channels]
    let kind = get("notifier.type").unwrap_or_else(|| "console".into());
    match kind.as_str() {
        "console" => b("[channels.console]\ntype = \"console\"\n".to_string()),
        "wecom" => {
            let Some(url) = get("notifier.webhook_url") else {
                problems.push(Problem::new(
                    "notifier.webhook_url",
                    "required when notifier.type is wecom: the robot's webhook URL",
                ));
                return Err(problems);
            };
            native.push_str(&format!(
                "[channels.wecom]\ntype = \"wecom\"\nwebhook_url = {}\n",
                q(&url)
            ));
            shown.push_str("[channels.wecom]\ntype = \"wecom\"\n# key from the environment: POWA_SENTINEL__CHANNELS__WECOM__KEY=<robot key>\n");
        }
        other => problems.push(Problem::new(
            "notifier.type",
            format!(
                "unknown notifier `{other}`: the seed supports console and wecom{}",
                did_you_mean(other, ["console", "wecom"])
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default()
            ),
        )),
    }
    if keys.contains_key("notifier.retries") || keys.contains_key("notifier.retry_delay") {
        notes.push("notifier.retries and retry_delay are not needed: deliveries retry what is temporary (with backoff and WeCom's rate limit) until a deadline and never retry permanent errors".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut shown_final = String::new();
    let _ = writeln!(
        shown_final,
        "# Native form of a seed configuration (powa-sentinel.toml)."
    );
    shown_final.push_str(&shown);
    Ok(Translation {
        native,
        shown: shown_final,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_allow_swapped_letters_and_a_shared_start() {
        assert_eq!(did_you_mean("dns", ["dsn", "host"]), Some("dsn"));
        assert_eq!(
            did_you_mean("wechat", ["console", "wecom", "wecom_app"]),
            Some("wecom")
        );
        assert_eq!(
            did_you_mean("windw", ["window", "baseline_offset"]),
            Some("window")
        );
        assert_eq!(did_you_mean("teams", ["console", "wecom", "slack"]), None);
        assert_eq!(did_you_mean("window", ["window"]), None);
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn substitution_follows_the_seed() {
        let e = env(&[("A", "x"), ("EMPTY", "")]);
        assert_eq!(
            expand_env("${A} ${B:-d} ${B} ${EMPTY:-e} $A ${", &e),
            "x d  e $A ${"
        );
        assert_eq!(expand_env("# ${A:-z}\nk: ${A}", &e), "# x\nk: x");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_secs("24h"), Some(86400));
        assert_eq!(go_duration_secs("1h30m"), Some(5400));
        assert_eq!(go_duration_secs("1.5h"), Some(5400));
        assert_eq!(go_duration_secs("500ms"), Some(1));
        assert_eq!(go_duration_secs("two days"), None);
    }

    #[test]
    fn seed_files_are_recognised() {
        assert!(is_seed(
            "database:\n  host: x\nnotifier:\n  type: console\n"
        ));
        assert!(!is_seed("repositories:\n  main:\n    dsn: x\n"));
        assert!(!is_seed("analysis:\n  window: 2h\n"));
    }

    #[test]
    fn typos_get_a_suggestion() {
        let e = translate("database:\n  hots: db1\nnotifier:\n  type: consol\n").unwrap_err();
        let texts: Vec<String> = e
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        assert!(
            texts[0].contains("database.hots") && texts[0].contains("`database.host`"),
            "{texts:?}"
        );
        assert!(texts[1].contains("did you mean `console`"), "{texts:?}");
    }

    fn load_seed(yaml: &str) -> crate::config::Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        crate::config::Settings::load_with_env(&path, Some(BTreeMap::new()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The seed promised "abnormal workload changes" and a minimum improvement for index
    /// suggestions: a seed file gets both, from the example file as it is.
    #[test]
    fn a_seed_file_gets_what_the_seed_promised() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/seed/config.yaml");
        let example = std::fs::read_to_string(fixture).unwrap();
        let s = load_seed(&example);
        assert!(s.analyzers.workload_change.enabled);
        assert!(s.analyzers.missing_index.enabled);
        assert_eq!(s.analyzers.missing_index.min_gain, 0.3);
        let strict = example.replace("min_improvement_percent: 30", "min_improvement_percent: 55");
        assert_eq!(load_seed(&strict).analyzers.missing_index.min_gain, 0.55);
        // Zero means the seed's default, as for its other numbers.
        let zero = example.replace("min_improvement_percent: 30", "min_improvement_percent: 0");
        assert_eq!(load_seed(&zero).analyzers.missing_index.min_gain, 0.3);
        let t = translate("notifier:\n  type: console\nrules:\n  index_suggestion:\n    min_improvement_percent: 130\n").unwrap_err();
        assert_eq!(t[0].key, "rules.index_suggestion.min_improvement_percent");
        assert!(
            !translate("rules:\n  index_suggestion:\n    min_improvement_percent: 40\n")
                .unwrap()
                .notes
                .iter()
                .any(|n| n.contains("index_suggestion")),
            "the key is mapped, not ignored"
        );
    }

    #[test]
    fn the_password_is_never_shown() {
        let t = translate("database:\n  password: s3cret\nnotifier:\n  type: wecom\n  webhook_url: https://h/x?key=abc\n").unwrap();
        assert!(t.native.contains("s3cret") && t.native.contains("key=abc"));
        assert!(
            !t.shown.contains("s3cret") && !t.shown.contains("key=abc"),
            "{}",
            t.shown
        );
    }
}
