//! Telling a story: what its entry says, in plain words of the report's language (the
//! renderer escapes and marks it up).
//!
//! The lead's kind says the title, the impact and its own numbers, one module per kind
//! ([`query`]: regressions, slow queries, resource hogs; [`workload`]; [`health`]: PoWA's
//! own health; [`index`]: missing indexes). A kind without the figures it needs, or one
//! this module does not know, keeps the analyzer's own title. Then, whatever leads: the
//! supporting findings add the cause ([`cause`]), a missing index the fix, the other
//! servers their key figure.

mod cause;
mod changes;

pub use changes::{section as changes_section, ServerChanges};
mod health;
mod index;
mod query;
mod workload;

use sentinel_actors::Insight;

use super::impact::Per;
use super::numbers::{generic_numbers, key_figure};
use super::{is_blind, label, metric, Story};
use crate::render::format::count;
use crate::render::Lang;

/// At most this many other servers are named in an entry; the rest are counted.
const MAX_ELSEWHERE: usize = 8;

/// What an entry says, in plain text (the renderer escapes and marks it up).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Told {
    /// Where, what and how bad.
    pub title: String,
    /// What it costs, in units a person uses.
    pub impact: Option<String>,
    /// Why, when the evidence says.
    pub cause: Option<String>,
    /// What changed on the server since the baseline that is not the cause, nearest
    /// first ("14:02 UTC the server restarted"), or why that is not known.
    pub changed: Vec<String>,
    /// What to do: a statement to run …
    pub ddl: Option<String>,
    /// … with what it is expected to gain …
    pub ddl_note: Option<String>,
    /// … or advice in words.
    pub advice: Option<String>,
    /// Two to four supporting numbers with their units.
    pub numbers: Vec<String>,
    /// The query text (cut by the renderer).
    pub query: Option<String>,
    /// Where else the same finding is: "remote2 / app (×95)".
    pub elsewhere: Vec<String>,
    /// The queryid, when no link carries it.
    pub queryid: Option<String>,
    /// Whether the title is the analyzer's own (a kind told as it is): the renderer then
    /// says where on a line of its own.
    pub own_title: bool,
}

/// A story's lead, as the tellers of each kind see it.
struct Lead<'a> {
    i: &'a Insight,
    /// Where it is, as the renderer names places.
    at: String,
    server: String,
    lang: Lang,
    per: Per,
    /// How many servers the finding is on.
    n_servers: usize,
}

impl Lead<'_> {
    fn m(&self, k: &str) -> Option<f64> {
        metric(self.i, k)
    }

    /// A kind's title with what the story adds: the missing index it found (`index`),
    /// the number of servers.
    fn headline(&self, mut title: String, index: bool) -> String {
        let (lang, n) = (self.lang, self.n_servers);
        let index_missing = index && self.i.kind != "missing_index";
        if index_missing {
            title.push_str(lang.pick(" — an index is missing", "——缺少索引"));
        }
        if index_missing && n > 1 {
            title.push_str(&if lang.is_zh() {
                format!("，共 {n} 台服务器")
            } else {
                format!(", on {n} servers")
            });
        } else if n > 1 && self.i.kind != "missing_index" {
            title.push_str(&if lang.is_zh() {
                format!("——共 {n} 台服务器")
            } else {
                format!(" — on {n} servers")
            });
        }
        title
    }
}

/// "remote1 / app".
pub fn place(i: &Insight) -> String {
    let parts: Vec<&str> = ["server", "database"]
        .iter()
        .filter_map(|k| i.label(k).filter(|v| !v.trim().is_empty()))
        .collect();
    parts.join(" / ")
}

/// Tells `s` in `lang`; `place_of` names where an insight is (the renderer adds the
/// repository when a report spans several).
pub fn tell(s: &Story<'_>, lang: Lang, place_of: &dyn Fn(&Insight) -> String) -> Told {
    let i = s.lead;
    let mut t = Told {
        title: i.title.clone(),
        query: i.text.clone(),
        queryid: i.label("queryid").map(str::to_string),
        ..Told::default()
    };
    if s.is_resolved() {
        return t;
    }
    let lead = Lead {
        i,
        at: place_of(i),
        server: label(i, "server").to_string(),
        lang,
        per: Per::of(i, lang),
        n_servers: 1 + s.elsewhere.len(),
    };
    let mi = s.find("missing_index");

    // Title, impact and the lead's own numbers, per kind.
    let title = match i.kind.as_str() {
        "regression" => query::regression(&lead, &mut t),
        "slow_query" => query::slow_query(&lead, &mut t),
        "resource_hog" => query::resource_hog(&lead, &mut t),
        "workload_change" => workload::tell(&lead, &mut t),
        "settings_change" => Some(changes::settings_change(&lead, &mut t)),
        "powa_health" => health::tell(&lead, &mut t),
        "missing_index" if !is_blind(i) => Some(index::tell(&lead, &mut t)),
        _ => None,
    };
    match title {
        Some(title) => t.title = lead.headline(title, mi.is_some()),
        None => {
            t.own_title = true;
            generic_numbers(i, &mut t.numbers);
        }
    }

    // Cause: from the supporting findings (and a missing index, whoever leads).
    t.cause = cause::of(s, mi, t.cause.take(), lang);
    // What changed since the baseline: a likely cause leads the cause, the rest follow.
    changes::tell(s, lang, &mut t);

    // Numbers the lead does not carry: the slow-query rank, when another finding leads.
    if i.kind != "slow_query" {
        if let Some(r) = s.find("slow_query").and_then(|sq| sq.metric("rank")) {
            t.numbers.push(if lang.is_zh() {
                format!("总耗时排名第 {}", count(r))
            } else {
                format!("#{} by total time", count(r))
            });
        }
    }

    // Action: the index statement when there is one, else the lead's advice.
    match mi.and_then(index::ddl_of) {
        Some(ddl) => {
            t.ddl = Some(ddl);
            t.ddl_note = mi.and_then(|x| index::hypopg_note(x, lang));
        }
        None => {
            let advice = mi
                .filter(|_| i.kind == "missing_index")
                .map_or(&i.advice, |x| &x.advice);
            if t.advice.is_none() && !advice.trim().is_empty() {
                t.advice = Some(advice.clone());
            }
        }
    }

    // A likely cause that is a setting change: the statement that undoes it.
    changes::fix(s, lang, &mut t);

    if let Some(u) = i.label("user").filter(|u| !u.is_empty()) {
        if t.numbers.len() < 4 {
            t.numbers.push(if lang.is_zh() {
                format!("用户 {u}")
            } else {
                format!("user {u}")
            });
        }
    }
    t.numbers.truncate(4);

    t.elsewhere = elsewhere(s, lang, place_of);
    if i.kind == "missing_index" && t.query.is_none() {
        // The first helped query's text, from the index finding's own notes.
        t.query = i.text.as_deref().and_then(index::first_helped_text);
    }
    t
}

/// The other servers with their key figure, at most [`MAX_ELSEWHERE`] and a count.
fn elsewhere(s: &Story<'_>, lang: Lang, place_of: &dyn Fn(&Insight) -> String) -> Vec<String> {
    let mut out: Vec<String> = s
        .elsewhere
        .iter()
        .take(MAX_ELSEWHERE)
        .map(|x| match key_figure(x, lang) {
            Some(f) => format!("{} ({f})", place_of(x)),
            None => place_of(x),
        })
        .collect();
    if s.elsewhere.len() > MAX_ELSEWHERE {
        let more = s.elsewhere.len() - MAX_ELSEWHERE;
        out.push(if lang.is_zh() {
            format!("另有 {more} 台")
        } else {
            format!("+{more} more")
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use sentinel_actors::Severity;

    use super::*;
    use crate::story::fixture::{insight, with};
    use crate::story::stories;

    #[test]
    fn a_regression_with_its_index_is_told_conclusion_first() {
        let reg = with(
            insight("regression.mean_time", "db1", "7", Severity::Critical),
            &[
                ("factor", 110.0),
                ("mean_time_ms", 32.0),
                ("baseline_mean_time_ms", 0.29),
                ("extra_time_ms", 6400.0),
                ("share_of_total_time", 0.32),
                ("calls", 200.0),
                ("baseline_calls", 190.0),
                ("rows_per_call", 1.0),
                ("baseline_rows_per_call", 1.0),
                ("magnitude", 110.0),
            ],
        );
        let mut mi = with(
            insight(
                "missing_index.btree_validated",
                "db1",
                "7",
                Severity::Warning,
            ),
            &[
                ("filter_ratio", 0.9997),
                ("rows_filtered_per_execution", 299_900.0),
                ("cost_before", 9939.0),
                ("cost_after", 81.0),
                ("estimated_gain", 0.99),
            ],
        );
        mi.text = Some(
            "CREATE INDEX CONCURRENTLY ON public.orders USING btree (created_at);\n-- helps queryid 7: SELECT 7\n"
                .into(),
        );
        let v = vec![reg, mi];
        let s = stories(&v);
        assert_eq!(s.len(), 1);
        let t = tell(&s[0], Lang::En, &place);
        assert_eq!(
            (
                t.title.as_str(),
                t.impact.as_deref(),
                t.cause.as_deref(),
                t.ddl.as_deref(),
                t.ddl_note.as_deref(),
            ),
            (
                "db1 / app: a query got 110× slower (0.290 ms → 32.00 ms per call) — an index is missing",
                Some("+6.40 s per day, 32% of db1's time"),
                Some("public.orders is read without a usable index: 99.97% of the rows read are thrown away (299,900 per execution)"),
                Some("CREATE INDEX CONCURRENTLY ON public.orders USING btree (created_at);"),
                Some("hypopg: cost 9,939 → 81, 99% less"),
            )
        );
        assert_eq!(t.numbers, ["200 calls (was 190)", "1 row per call"]);
        let zh = tell(&s[0], Lang::Zh, &place);
        assert_eq!(
            (zh.title.as_str(), zh.impact.as_deref()),
            (
                "db1 / app：查询变慢 110 倍（每次 0.290 ms → 32.00 ms）——缺少索引",
                Some("每天多耗 6.40 s，占 db1 时间的 32%"),
            )
        );
    }
    /// A slow query whose filter pg_qualstats saw, with no missing-index finding (the
    /// table known by its oid only, or under the advisor's guards): the cause says what
    /// is read for nothing, as an index finding would, not the class's bare name.
    #[test]
    fn a_selective_filter_without_an_index_finding_is_the_cause() {
        let mut sq = with(
            insight("slow_query.total_time", "db1", "7", Severity::Info),
            &[
                ("rank", 1.0),
                ("total_time_ms", 36_970.0),
                ("calls", 400.0),
                ("filter_ratio", 0.9946),
                ("filter_rows_per_execution", 22_333.0),
            ],
        );
        sq.labels.insert("class".into(), "selective_filter".into());
        sq.labels
            .insert("filter".into(), "relation oid 19262 (database app)".into());
        let v = vec![sq];
        let s = stories(&v);
        let t = tell(&s[0], Lang::En, &place);
        assert_eq!(
            t.cause.as_deref(),
            Some("relation oid 19262 (database app) is read without a usable index: 99.46% of the rows read are thrown away (22,212 per execution)")
        );
    }
}
