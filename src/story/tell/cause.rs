//! The cause line: what the evidence of a story's findings says about why.

use sentinel_actors::Insight;

use super::{label, metric, Story};
use crate::render::format::{bytes, count, factor, pct, pct_fine};
use crate::render::Lang;
use crate::story::numbers::{ratio, resource};

/// The cause of `s`: `own` (what its lead's kind found), after the missing index `mi`'s,
/// then what each finding adds; the advice class's name when there is nothing concrete.
pub(super) fn of(
    s: &Story<'_>,
    mi: Option<&Insight>,
    own: Option<String>,
    lang: Lang,
) -> Option<String> {
    let mut causes: Vec<String> = own.into_iter().collect();
    let unindexed = match mi {
        Some(mi) => index(mi, lang),
        None => s.findings().find_map(|x| filtered(x, lang)),
    };
    if let Some(c) = unindexed {
        causes.insert(0, c);
    }
    causes.extend(s.findings().filter_map(|x| support(x, s.lead, lang)));
    let class = s
        .findings()
        .find_map(|x| x.label("class"))
        .map(|c| class_name(c, lang));
    if causes.is_empty() && class.is_none() {
        return None;
    }
    let body = causes.join(lang.pick("; ", "；"));
    // The concrete causes say more than the class's name (and say it again: "spills to
    // temp files: it spills to temp files (20 MiB written)"); the name stands alone.
    Some(match class {
        Some(c) if body.is_empty() => c,
        _ => body,
    })
}

/// "public.orders is read without a usable index: 99.97% of the rows read are thrown away".
fn index(mi: &Insight, lang: Lang) -> Option<String> {
    let ratio = metric(mi, "filter_ratio")?;
    let per_exec = metric(mi, "rows_filtered_per_execution").unwrap_or(0.0);
    Some(unindexed(label(mi, "table"), ratio, per_exec, lang))
}

/// The same, from the selective filter a query's own finding saw (`class`
/// selective_filter) when no missing-index finding names the index: the table may be
/// known by its oid only, or the filter be under the advisor's guards.
fn filtered(x: &Insight, lang: Lang) -> Option<String> {
    if x.label("class") != Some("selective_filter") {
        return None;
    }
    let on = x.label("filter")?;
    let ratio = metric(x, "filter_ratio")?;
    let read = metric(x, "filter_rows_per_execution").unwrap_or(0.0);
    Some(unindexed(on, ratio, ratio * read, lang))
}

fn unindexed(table: &str, ratio: f64, per_exec: f64, lang: Lang) -> String {
    if lang.is_zh() {
        format!(
            "{table} 没有可用的索引：读取的行中 {} 被过滤掉（每次执行 {} 行）",
            pct_fine(ratio),
            count(per_exec)
        )
    } else {
        format!(
            "{table} is read without a usable index: {} of the rows read are thrown away ({} per execution)",
            pct_fine(ratio),
            count(per_exec)
        )
    }
}

/// How much of a query's run time is CPU. Above 100 %, pg_stat_kcache counted CPU the run
/// time does not hold (its planning, parallel workers beside the leader, the coarse
/// resolution of the kernel's counters on sub-millisecond calls): said as a multiple with
/// those reasons, which a reader believes, rather than "113 % of its time".
fn cpu_share(ratio: f64, zh: bool) -> String {
    match (ratio > 1.0, zh) {
        (false, false) => format!("{} of its time is CPU", pct(ratio)),
        (false, true) => format!("{} 的执行时间花在 CPU 上", pct(ratio)),
        (true, false) => format!(
            "it is CPU-bound: pg_stat_kcache counts {ratio:.1}× its run time in CPU (its planning and any parallel workers count there too)"
        ),
        (true, true) => format!("CPU 密集：pg_stat_kcache 统计的 CPU 时间是执行时间的 {ratio:.1} 倍（规划和并行工作进程也计入其中）"),
    }
}

/// The cause a finding adds (`x` may be the lead itself, for its wait event).
fn support(x: &Insight, lead: &Insight, lang: Lang) -> Option<String> {
    let m = |k: &str| metric(x, k);
    let zh = lang.is_zh();
    let server = label(x, "server");
    let is_lead = std::ptr::eq(x, lead);
    match (x.kind.as_str(), x.rule.as_str()) {
        ("slow_query", _) => {
            let mut c = Vec::new();
            if let Some(tmp) = m("temp_blks_written").filter(|v| *v > 0.0) {
                c.push(if zh {
                    format!("溢出到临时文件（写入 {}）", bytes(tmp * 8192.0))
                } else {
                    format!("it spills to temp files ({} written)", bytes(tmp * 8192.0))
                });
            }
            if let (Some(cpu), Some(total)) = (m("cpu_time_ms"), m("total_time_ms")) {
                if total > 0.0 && cpu / total >= 0.6 {
                    c.push(cpu_share(cpu / total, zh));
                }
            }
            if let Some(ev) = x.label("top_wait") {
                let sh = m("top_wait_share").unwrap_or(0.0);
                c.push(if zh {
                    format!("主要等待事件 {ev}（采样的 {}）", pct(sh))
                } else {
                    format!("most sampled wait: {ev} ({} of samples)", pct(sh))
                });
            }
            (!c.is_empty()).then(|| c.join(lang.pick("; ", "；")))
        }
        ("resource_hog", rule) if !is_lead => {
            let sh = m("share")?;
            let what = resource(lang, rule);
            Some(if zh {
                format!("占 {server} {what}的 {}", pct(sh))
            } else {
                format!("it takes {} of {server}'s {what}", pct(sh))
            })
        }
        ("workload_change", "workload_change.temp_up") if !is_lead => {
            let now = m("temp_blks_written")?;
            let then = m("baseline_temp_blks_written").unwrap_or(0.0);
            Some(if zh {
                format!(
                    "溢出到临时文件：写入 {}（之前 {}），可考虑调大 work_mem",
                    bytes(now * 8192.0),
                    bytes(then * 8192.0)
                )
            } else {
                format!(
                    "it spills to temp files: {} written (was {}), see work_mem",
                    bytes(now * 8192.0),
                    bytes(then * 8192.0)
                )
            })
        }
        ("workload_change", "workload_change.calls_up") if !is_lead => {
            let (c, c0) = (m("calls")?, m("baseline_calls")?);
            let f = ratio(c, c0);
            Some(if zh {
                format!("调用次数 ×{}（{} → {}）", factor(f), count(c0), count(c))
            } else {
                format!(
                    "it is called {}× more often ({} → {})",
                    factor(f),
                    count(c0),
                    count(c)
                )
            })
        }
        ("workload_change", "workload_change.reads_up") if !is_lead => {
            let (a, b) = (m("read_bytes")?, m("baseline_read_bytes")?);
            Some(if zh {
                format!("磁盘读取 {} → {}", bytes(b), bytes(a))
            } else {
                format!("disk reads {} → {}", bytes(b), bytes(a))
            })
        }
        _ => None,
    }
}

/// The advice classes the analyzers may label a query with (`class`).
const CLASSES: [(&str, &str, &str); 10] = [
    (
        "selective_filter",
        "selective filter without an index",
        "选择性过滤缺少索引",
    ),
    (
        "whole_table_aggregate",
        "aggregate over a whole table",
        "全表聚合",
    ),
    ("cpu_bound", "CPU-bound", "CPU 密集"),
    ("io_bound", "I/O-bound", "I/O 密集"),
    ("temp_spill", "spills to temp files", "溢出到临时文件"),
    ("lock_wait", "waits on locks", "锁等待"),
    (
        "large_scan",
        "reads many blocks per call",
        "每次调用读取大量数据块",
    ),
    ("many_calls", "called very often", "调用次数很多"),
    (
        "dominant",
        "takes most of the server's time",
        "占用服务器的大部分时间",
    ),
    (
        "general",
        "no single cause stands out",
        "没有突出的单一原因",
    ),
];

/// An advice class's name in words (every [`crate::analyze::classify::Class`] has one:
/// a test checks it); a class this module does not know is shown as it is.
fn class_name(c: &str, lang: Lang) -> String {
    lang.lookup(&CLASSES, c).unwrap_or(c).to_string()
}

#[cfg(test)]
mod class_words {
    use super::*;
    use crate::analyze::classify::Class;

    /// An identifier such as `large_scan` in chat would be an internal name.
    #[test]
    fn every_advice_class_has_words_in_every_language() {
        for c in Class::ALL {
            for lang in [Lang::En, Lang::Zh] {
                assert!(
                    lang.lookup(&CLASSES, c.as_str()).is_some(),
                    "{} has no words in {lang:?}",
                    c.as_str()
                );
            }
        }
    }
}

#[cfg(test)]
mod cpu_words {
    /// Parallel workers' CPU counts beside the leader's run time: never "113% of its time".
    #[test]
    fn cpu_above_the_run_time_is_a_multiple_not_a_share() {
        assert_eq!(super::cpu_share(0.8, false), "80% of its time is CPU");
        let over = super::cpu_share(1.13, false);
        assert!(over.contains("1.1× its run time in CPU"), "{over}");
        assert!(!over.contains('%'), "{over}");
        assert!(super::cpu_share(1.5, true).contains("1.5 倍"));
    }
}
