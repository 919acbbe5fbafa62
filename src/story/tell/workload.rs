//! Workload changes: a new heavy query, calls up or down, temp files or disk reads up.

use super::{Lead, Told};
use crate::render::format::{bytes, count, factor, ms, pct};
use crate::story::numbers::{calls, ratio, share_of};

pub(super) fn tell(l: &Lead<'_>, t: &mut Told) -> Option<String> {
    let rule = l.i.rule.as_str();
    let (lang, at, server) = (l.lang, &l.at, &l.server);
    let zh = lang.is_zh();
    let title = match rule {
        "workload_change.new_heavy_query" => {
            let sh = l.m("share_of_total_time")?;
            if let Some(total) = l.m("total_time_ms") {
                t.impact = Some(l.per.time(total, false));
            }
            if zh {
                format!("{at}：新出现的查询占 {server} 时间 {}", pct(sh))
            } else {
                format!("{at}: a new query takes {} of {server}'s time", pct(sh))
            }
        }
        "workload_change.calls_up" | "workload_change.calls_down" => {
            let (c, c0) = (l.m("calls")?, l.m("baseline_calls")?);
            let f = ratio(c, c0);
            if let (Some(a), Some(b)) = (l.m("total_time_ms"), l.m("baseline_total_time_ms")) {
                t.impact = Some(format!(
                    "{}{}",
                    l.per.time(a, false),
                    if zh {
                        format!("（之前 {}）", ms(b))
                    } else {
                        format!(" (was {})", ms(b))
                    }
                ));
            }
            if let Some(sh) = l.m("share_of_total_time") {
                t.numbers
                    .push(share_of(lang, sh, server, lang.pick("time", "时间")));
            }
            match (rule == "workload_change.calls_up", zh) {
                (true, false) => {
                    format!("{at}: calls ×{} ({} → {})", factor(f), count(c0), count(c))
                }
                (true, true) => format!(
                    "{at}：调用次数 ×{}（{} → {}）",
                    factor(f),
                    count(c0),
                    count(c)
                ),
                (false, false) => format!("{at}: calls fell to {} (was {})", count(c), count(c0)),
                (false, true) => format!("{at}：调用次数降到 {}（之前 {}）", count(c), count(c0)),
            }
        }
        "workload_change.temp_up" => {
            let (now, then) = (
                l.m("temp_blks_written")?,
                l.m("baseline_temp_blks_written")?,
            );
            let f = ratio(now, then);
            let (a, b) = (bytes(now * 8192.0), bytes(then * 8192.0));
            if zh {
                format!("{at}：临时文件写入 ×{}（{b} → {a}）", factor(f))
            } else {
                format!("{at}: temp files ×{} ({b} → {a} written)", factor(f))
            }
        }
        "workload_change.reads_up" => {
            let (now, then) = (l.m("read_bytes")?, l.m("baseline_read_bytes")?);
            let f = ratio(now, then);
            let (a, b) = (bytes(now), bytes(then));
            if zh {
                format!("{at}：磁盘读取 ×{}（{b} → {a}）", factor(f))
            } else {
                format!("{at}: disk reads ×{} ({b} → {a})", factor(f))
            }
        }
        _ => return None,
    };
    if let Some(c) = l
        .m("calls")
        .filter(|_| !rule.starts_with("workload_change.calls"))
    {
        t.numbers.push(calls(lang, c));
    }
    Some(title)
}
