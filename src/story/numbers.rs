//! The supporting numbers of an entry, with their units, in the report's language.

use sentinel_actors::Insight;

use super::metric;
use crate::render::format::{bytes, count, duration_ms, factor, ms, pct};
use crate::render::{format_metric, metric_label, Lang};

/// A slow query's supporting numbers: calls, rows per call, CPU, blocks read.
pub(super) fn query_numbers(i: &Insight, lang: Lang, out: &mut Vec<String>) {
    let m = |k: &str| metric(i, k);
    let c = m("calls");
    if let Some(c) = c {
        out.push(calls(lang, c));
    }
    if let (Some(r), Some(c)) = (m("rows"), c.filter(|c| *c > 0.0)) {
        out.push(rows_per_call(lang, r / c));
    }
    if let Some(cpu) = m("cpu_time_ms").filter(|v| *v > 0.0) {
        out.push(cpu_time(lang, cpu));
    }
    if let Some(r) = m("shared_blks_read").filter(|v| *v > 0.0) {
        out.push(if lang.is_zh() {
            format!("读盘 {}", bytes(r * 8192.0))
        } else {
            format!("{} read from disk or OS cache", bytes(r * 8192.0))
        });
    }
    // Temp files are the cause line's (see `cause::support`).
}

/// A resource hog's supporting numbers: CPU, bytes read and written.
pub(super) fn resource_numbers(i: &Insight, lang: Lang, out: &mut Vec<String>) {
    let m = |k: &str| metric(i, k).filter(|v| *v > 0.0);
    if let Some(cpu) = m("cpu_time_ms") {
        out.push(cpu_time(lang, cpu));
    }
    if let Some(r) = m("read_bytes") {
        out.push(if lang.is_zh() {
            format!("磁盘读 {}", bytes(r))
        } else {
            format!("{} read from disk", bytes(r))
        });
    }
    if let Some(r) = m("write_bytes") {
        out.push(if lang.is_zh() {
            format!("磁盘写 {}", bytes(r))
        } else {
            format!("{} written to disk", bytes(r))
        });
    }
}

/// For findings this module does not know: up to four metrics that carry a unit, never
/// the internal ones (magnitude, baselines, flags).
pub(super) fn generic_numbers(i: &Insight, out: &mut Vec<String>) {
    for (k, v) in &i.metrics {
        if out.len() >= 4 {
            break;
        }
        let internal = k == crate::analyze::MAGNITUDE
            || k.starts_with("baselines_")
            || k.starts_with("penalty_")
            || matches!(
                k.as_str(),
                "kcache" | "physical_reads" | "rank" | "problems"
            );
        let unit = k.ends_with("_ms")
            || k.ends_with("_bytes")
            || k.starts_with("share")
            || k.ends_with("_share")
            || k == "calls"
            || k.ends_with("_rows");
        if internal || !unit || !v.is_finite() {
            continue;
        }
        let value = if k.ends_with("_ms") {
            duration_ms(*v)
        } else {
            format_metric(k, *v)
        };
        out.push(format!("{} {value}", metric_label(k)));
    }
}

/// The one number that tells servers apart in an "also on" list.
pub(super) fn key_figure(i: &Insight, lang: Lang) -> Option<String> {
    let m = |k: &str| metric(i, k);
    match i.kind.as_str() {
        "regression" => m("factor").map(|f| {
            if lang.is_zh() {
                format!("{} 倍", factor(f))
            } else {
                format!("{}×", factor(f))
            }
        }),
        "slow_query" | "workload_change" => m("share_of_total_time").map(pct),
        "resource_hog" => m("share").map(pct),
        "missing_index" => m("rows_filtered_per_execution").map(|r| {
            if lang.is_zh() {
                format!("每次执行丢弃 {} 行", count(r))
            } else {
                format!("{} rows thrown away per execution", count(r))
            }
        }),
        _ => None,
    }
}

/// What a resource hog takes the most of, by its rule.
const RESOURCES: [(&str, &str, &str); 5] = [
    ("resource_hog.cpu", "CPU", "CPU "),
    ("resource_hog.reads", "disk reads", "磁盘读"),
    ("resource_hog.writes", "disk writes", "磁盘写"),
    ("resource_hog.io_time", "block I/O time", "块 I/O 时间"),
    ("resource_hog.blocks_read", "blocks read", "读取块数"),
];

/// What a resource hog takes the most of.
pub(super) fn resource(lang: Lang, rule: &str) -> &'static str {
    lang.lookup(&RESOURCES, rule)
        .unwrap_or(lang.pick("resources", "资源"))
}

/// "32% of db1's time" / "占 db1 时间的 32%".
pub(super) fn share_of(lang: Lang, sh: f64, server: &str, what: &str) -> String {
    if lang.is_zh() {
        format!("占 {server} {what}的 {}", pct(sh))
    } else {
        format!("{} of {server}'s {what}", pct(sh))
    }
}

pub(super) fn calls(lang: Lang, c: f64) -> String {
    if lang.is_zh() {
        format!("{} 次调用", count(c))
    } else if c == 1.0 {
        "1 call".to_string()
    } else {
        format!("{} calls", count(c))
    }
}

pub(super) fn rows_per_call(lang: Lang, r: f64) -> String {
    let n = if r >= 10.0 || r == r.round() {
        count(r)
    } else {
        format!("{r:.1}")
    };
    if lang.is_zh() {
        format!("每次 {n} 行")
    } else if n == "1" {
        "1 row per call".to_string()
    } else {
        format!("{n} rows per call")
    }
}

fn cpu_time(lang: Lang, cpu: f64) -> String {
    if lang.is_zh() {
        format!("CPU {}", ms(cpu))
    } else {
        format!("{} of CPU", ms(cpu))
    }
}

/// `now` against `then` as a factor (∞ from nothing).
pub(super) fn ratio(now: f64, then: f64) -> f64 {
    if then > 0.0 {
        now / then
    } else {
        f64::INFINITY
    }
}
