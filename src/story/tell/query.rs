//! Findings about one query's cost: a regression, a slow query, a resource hog.

use super::{Lead, Told};
use crate::render::format::{count, factor, ms, pct};
use crate::story::numbers::{
    calls, query_numbers, resource, resource_numbers, rows_per_call, share_of,
};

/// "db1 / app: a query got 110× slower (0.290 ms → 32.00 ms per call)"; its extra time
/// and share, its calls against the baseline; rows per call, or the cause when they grew.
pub(super) fn regression(l: &Lead<'_>, t: &mut Told) -> Option<String> {
    let (f, now, then) = (
        l.m("factor")?,
        l.m("mean_time_ms")?,
        l.m("baseline_mean_time_ms")?,
    );
    let (lang, at) = (l.lang, &l.at);
    let title = if lang.is_zh() {
        format!(
            "{at}：查询变慢 {} 倍（每次 {} → {}）",
            factor(f),
            ms(then),
            ms(now)
        )
    } else {
        format!(
            "{at}: a query got {}× slower ({} → {} per call)",
            factor(f),
            ms(then),
            ms(now)
        )
    };
    let mut parts = Vec::new();
    if let Some(x) = l.m("extra_time_ms") {
        parts.push(l.per.time(x, true));
    }
    if let Some(sh) = l.m("share_of_total_time") {
        parts.push(share_of(lang, sh, &l.server, lang.pick("time", "时间")));
    }
    t.impact = Some(parts.join(lang.pick(", ", "，")));
    if let Some(c) = l.m("calls") {
        t.numbers.push(match l.m("baseline_calls") {
            Some(b) => {
                if lang.is_zh() {
                    format!("{} 次调用（之前 {}）", count(c), count(b))
                } else {
                    format!("{} calls (was {})", count(c), count(b))
                }
            }
            None => calls(lang, c),
        });
    }
    if let (Some(r), Some(b)) = (l.m("rows_per_call"), l.m("baseline_rows_per_call")) {
        if b > 0.0 && r / b >= 2.0 {
            t.cause = Some(if lang.is_zh() {
                format!(
                    "每次返回 {} 行，之前 {} 行：数据或参数变了",
                    count(r),
                    count(b)
                )
            } else {
                format!(
                    "it now returns {} rows per call instead of {}: the data or the parameters changed",
                    count(r),
                    count(b)
                )
            });
        } else {
            t.numbers.push(rows_per_call(lang, r));
        }
    }
    Some(title)
}

/// "db1 / app: top query #3, 32% of db1's time"; its time per day and per call.
pub(super) fn slow_query(l: &Lead<'_>, t: &mut Told) -> Option<String> {
    let (total, sh) = (l.m("total_time_ms")?, l.m("share_of_total_time")?);
    let (lang, at, server) = (l.lang, &l.at, &l.server);
    let rank = l.m("rank").map(|r| format!("#{}", count(r)));
    let title = match (&rank, lang.is_zh()) {
        (Some(r), false) => format!("{at}: top query {r}, {} of {server}'s time", pct(sh)),
        (None, false) => format!("{at}: a query takes {} of {server}'s time", pct(sh)),
        (Some(r), true) => format!(
            "{at}：耗时第 {} 的查询，占 {server} 时间 {}",
            &r[1..],
            pct(sh)
        ),
        (None, true) => format!("{at}：一条查询占 {server} 时间 {}", pct(sh)),
    };
    let mut parts = vec![l.per.time(total, false)];
    if let Some(mean) = l.m("mean_time_ms") {
        parts.push(if lang.is_zh() {
            format!("每次 {}", ms(mean))
        } else {
            format!("{} per call", ms(mean))
        });
    }
    t.impact = Some(parts.join(lang.pick(", ", "，")));
    query_numbers(l.i, lang, &mut t.numbers);
    Some(title)
}

/// "db1 / app: a query takes 40% of db1's CPU"; its time, calls and resources.
pub(super) fn resource_hog(l: &Lead<'_>, t: &mut Told) -> Option<String> {
    let sh = l.m("share")?;
    let (lang, at, server) = (l.lang, &l.at, &l.server);
    let what = resource(lang, &l.i.rule);
    let title = if lang.is_zh() {
        format!("{at}：一条查询占 {server} {what}的 {}", pct(sh))
    } else {
        format!("{at}: a query takes {} of {server}'s {what}", pct(sh))
    };
    if let Some(total) = l.m("total_time_ms") {
        t.impact = Some(l.per.time(total, false));
    }
    if let Some(c) = l.m("calls") {
        t.numbers.push(calls(lang, c));
    }
    resource_numbers(l.i, lang, &mut t.numbers);
    Some(title)
}
