//! Missing indexes: told as an entry of their own, or as the fix of the query they help.

use sentinel_actors::Insight;

use super::{label, Lead, Told};
use crate::render::format::{count, pct};
use crate::render::Lang;

/// "db1 / app: missing index on public.orders (created_at)"; the rows it reads for
/// nothing, the table's size, how many queries it helps. The query it helps is shown,
/// not the DDL: the DDL is the fix line.
pub(super) fn tell(l: &Lead<'_>, t: &mut Told) -> String {
    let (lang, at, n) = (l.lang, &l.at, l.n_servers);
    let zh = lang.is_zh();
    let table = label(l.i, "table");
    let cols = label(l.i, "columns");
    let title = match (n > 1, zh) {
        (false, false) => format!("{at}: missing index on {table} ({cols})"),
        (true, false) => format!("Missing index on {table} ({cols}) — on {n} servers"),
        (false, true) => format!("{at}：{table} ({cols}) 缺少索引"),
        (true, true) => format!("{table} ({cols}) 缺少索引——共 {n} 台服务器"),
    };
    let per = &l.per;
    if let Some(r) = l.m("rows_filtered") {
        let ex = l.m("executions").unwrap_or(0.0);
        t.impact = Some(if zh {
            format!(
                "{}读取后丢弃 {} 行（{} 次执行）",
                per.prefix(),
                count(r * per.factor),
                count(ex * per.factor)
            )
        } else {
            format!(
                "{} rows read and thrown away {} over {} executions",
                count(r * per.factor),
                per.suffix(),
                count(ex * per.factor)
            )
        });
    }
    if let Some(tr) = l.m("table_rows") {
        t.numbers.push(if zh {
            format!("表 {} 行", count(tr))
        } else {
            format!("table of {} rows", count(tr))
        });
    }
    if let Some(q) = l.m("queries") {
        t.numbers.push(if zh {
            format!("受益查询 {} 条", count(q))
        } else if q == 1.0 {
            "helps 1 query".to_string()
        } else {
            format!("helps {} queries", count(q))
        });
    }
    t.query = None;
    t.queryid = None;
    title
}

/// The index statement of a missing-index finding (the first line of its text, when it is
/// a statement and not a note).
pub(super) fn ddl_of(mi: &Insight) -> Option<String> {
    let first = mi.text.as_deref()?.lines().next()?.trim();
    first
        .to_ascii_uppercase()
        .starts_with("CREATE ")
        .then(|| first.to_string())
}

/// The first helped query's text, from the finding's notes ("-- helps queryid 7: …").
pub(super) fn first_helped_text(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("-- helps queryid "))
        .and_then(|l| l.split_once(": ").map(|(_, t)| t.to_string()))
}

/// What hypopg expects the index to gain: "hypopg: cost 9,939 → 81, 99% less".
pub(super) fn hypopg_note(mi: &Insight, lang: Lang) -> Option<String> {
    let (b, a) = (mi.metric("cost_before")?, mi.metric("cost_after")?);
    let gain = mi.metric("estimated_gain").unwrap_or(0.0);
    Some(if lang.is_zh() {
        format!(
            "hypopg：代价 {} → {}，降低 {}",
            count(b),
            count(a),
            pct(gain)
        )
    } else {
        format!(
            "hypopg: cost {} → {}, {} less",
            count(b),
            count(a),
            pct(gain)
        )
    })
}
