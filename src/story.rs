//! One story per problem: the insights of a notification grouped, ordered by impact and
//! told conclusion first, for the renderers ([`crate::render`]).
//!
//! The analyzers each see one angle of a problem: a query that reads a table it filters is
//! a `slow_query`, a `missing_index` and, once it got slower, a `regression`. Told apart,
//! they are three entries that do not refer to each other. Here they become one entry:
//!
//! - **Same query series** (repository, server, database, queryid): the most telling
//!   finding leads (a regression, else a slow query, a resource hog, a workload change),
//!   the others support it with their cause (CPU-bound, temp spill, a wait event) and
//!   numbers (rank, share of the server).
//! - **Same table**: a missing index whose helped queries include a story's queryid, on
//!   the same server and database, is told in that story as its cause, with its DDL and
//!   hypopg estimate (in the most impactful such story only).
//! - **Same finding on several servers** (same kind, rule and queryid; or the same index
//!   suggestion: table and columns; or the same PoWA health rule): one entry, led by the
//!   most impactful server, listing the others.
//!
//! Fingerprints and lifecycles are untouched: this only decides how the insights the gate
//! routed are told. Resolved insights are never grouped (each is a short line of its own).
//!
//! **Order** ([`order`]): severity first (critical, warning, info; resolved last), then the
//! time the problem costs per day (a regression's extra time, a query's total time), then
//! its share of the server, then rows read for nothing, then input order. Severity stays
//! first because it is what the analyzers' thresholds (and the user's routes) already
//! decided; impact orders what is equally urgent, whatever analyzer found it.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Insight, Severity};

use crate::render::Lang;

/// Findings about one query series, in the order a story prefers as its lead.
const QUERY_KINDS: [&str; 4] = [
    "regression",
    "slow_query",
    "resource_hog",
    "workload_change",
];

/// One entry of a rendered report.
#[derive(Clone, Debug)]
pub struct Story<'a> {
    /// The finding the entry is about (its title, place, lifecycle).
    pub lead: &'a Insight,
    /// Other findings about the same query series or table, told as cause and numbers.
    pub support: Vec<&'a Insight>,
    /// The same finding on other servers (their leads), most impactful first.
    pub elsewhere: Vec<&'a Insight>,
    /// The most severe of all its insights.
    pub severity: Severity,
    /// How many insights it tells (lead, support, elsewhere and their support).
    pub insights: usize,
    impact: Impact,
    first: usize,
}

impl Story<'_> {
    pub fn is_resolved(&self) -> bool {
        self.lead.status == Some(Lifecycle::Resolved)
    }

    /// The insight of `kind` among the lead and its support.
    pub fn find(&self, kind: &str) -> Option<&Insight> {
        std::iter::once(self.lead)
            .chain(self.support.iter().copied())
            .find(|i| i.kind == kind && !is_blind(i))
    }
}

/// What a problem costs, in the units [`order`] compares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impact {
    /// Time per day it costs the server (a regression: the extra time), in ms.
    pub time_per_day_ms: Option<f64>,
    /// Its share of the server's execution time (or of the resource it hogs).
    pub share: Option<f64>,
    /// Rows read and thrown away per day.
    pub rows_per_day: Option<f64>,
}

impl Impact {
    /// What one insight costs, from its own metrics.
    pub fn of(i: &Insight) -> Impact {
        let m = |k: &str| i.metric(k).filter(|v| v.is_finite());
        let day = |v: f64| v * per_day_factor(i);
        let time = match (i.kind.as_str(), i.rule.as_str()) {
            ("regression", _) => m("extra_time_ms"),
            ("workload_change", "workload_change.calls_up") => {
                match (m("total_time_ms"), m("baseline_total_time_ms")) {
                    (Some(a), Some(b)) => Some((a - b).max(0.0)),
                    (a, _) => a,
                }
            }
            ("slow_query" | "resource_hog", _)
            | ("workload_change", "workload_change.new_heavy_query") => m("total_time_ms"),
            _ => None,
        };
        let share = m("share_of_total_time").or_else(|| match i.kind.as_str() {
            "resource_hog" => m("share"),
            _ => None,
        });
        Impact {
            time_per_day_ms: time.map(day),
            share,
            rows_per_day: m("rows_filtered").map(day),
        }
    }

    fn max(self, o: Impact) -> Impact {
        let mx = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        Impact {
            time_per_day_ms: mx(self.time_per_day_ms, o.time_per_day_ms),
            share: mx(self.share, o.share),
            rows_per_day: mx(self.rows_per_day, o.rows_per_day),
        }
    }

    /// Bigger is more impactful; a known amount beats an unknown one.
    fn cmp(&self, o: &Impact) -> Ordering {
        let c = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        c(self.time_per_day_ms, o.time_per_day_ms)
            .then(c(self.share, o.share))
            .then(c(self.rows_per_day, o.rows_per_day))
    }
}

/// What scales an amount over the insight's window to one day (1 for an empty window).
pub fn per_day_factor(i: &Insight) -> f64 {
    let secs = (i.window.end - i.window.start).num_seconds();
    if secs <= 0 {
        1.0
    } else {
        86_400.0 / secs as f64
    }
}

fn is_blind(i: &Insight) -> bool {
    i.rule == "missing_index.blind"
}

fn label<'a>(i: &'a Insight, k: &str) -> &'a str {
    i.label(k).unwrap_or("")
}

/// The query series an insight is about, when it is about one.
fn series(i: &Insight) -> Option<(&str, &str, &str, &str)> {
    if !QUERY_KINDS.contains(&i.kind.as_str()) {
        return None;
    }
    let q = i.label("queryid")?;
    Some((
        label(i, "repository"),
        label(i, "server"),
        label(i, "database"),
        q,
    ))
}

fn kind_rank(kind: &str) -> usize {
    QUERY_KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(QUERY_KINDS.len())
}

/// The queryids a missing index would help (its `queryids` label; "+N" counts are not ids).
fn helped(i: &Insight) -> impl Iterator<Item = &str> {
    label(i, "queryids")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('+'))
}

/// The insights as stories, in [`order`].
pub fn stories(insights: &[Insight]) -> Vec<Story<'_>> {
    // 1. Query series: one story per (repository, server, database, queryid).
    let mut out: Vec<Story<'_>> = Vec::new();
    let mut by_series: BTreeMap<(&str, &str, &str, &str), usize> = BTreeMap::new();
    let mut rest: Vec<(usize, &Insight)> = Vec::new();
    for (k, i) in insights.iter().enumerate() {
        let resolved = i.status == Some(Lifecycle::Resolved);
        match series(i).filter(|_| !resolved) {
            Some(key) => match by_series.get(&key) {
                Some(&s) => out[s].support.push(i),
                None => {
                    by_series.insert(key, out.len());
                    out.push(single(k, i));
                }
            },
            None => rest.push((k, i)),
        }
    }
    for s in out.iter_mut() {
        // The lead: most severe, then the preferred kind, then the first seen.
        let mut all: Vec<&Insight> = std::iter::once(s.lead).chain(s.support.drain(..)).collect();
        all.sort_by_key(|i| (Reverse(i.severity), kind_rank(&i.kind)));
        s.lead = all[0];
        s.support = all[1..].to_vec();
    }
    for s in out.iter_mut() {
        s.refresh();
    }

    // 2. Missing indexes: told in the most impactful story of a query they help.
    let mut alone: Vec<(usize, &Insight)> = Vec::new();
    for (k, i) in rest {
        let resolved = i.status == Some(Lifecycle::Resolved);
        if i.kind != "missing_index" || is_blind(i) || resolved {
            alone.push((k, i));
            continue;
        }
        let (repo, server, db) = (
            label(i, "repository"),
            label(i, "server"),
            label(i, "database"),
        );
        let target = helped(i)
            .filter_map(|q| by_series.get(&(repo, server, db, q)).copied())
            .max_by(|a, b| out[*a].impact.cmp(&out[*b].impact).then(b.cmp(a)));
        match target {
            Some(t) if out[t].find("missing_index").is_none() => {
                out[t].support.push(i);
                out[t].refresh();
            }
            _ => alone.push((k, i)),
        }
    }
    alone.sort_by_key(|(k, _)| *k);
    out.extend(alone.into_iter().map(|(k, i)| single(k, i)));

    // 3. The same finding on several servers: one entry.
    let mut merged: Vec<Story<'_>> = Vec::new();
    let mut by_finding: BTreeMap<String, usize> = BTreeMap::new();
    order(&mut out);
    for s in out {
        match finding_key(&s) {
            Some(key) => match by_finding.get(&key) {
                Some(&m) => {
                    let t = &mut merged[m];
                    t.elsewhere.push(s.lead);
                    t.elsewhere.extend(s.elsewhere);
                    t.insights += s.insights;
                    t.severity = t.severity.max(s.severity);
                    t.first = t.first.min(s.first);
                }
                None => {
                    by_finding.insert(key, merged.len());
                    merged.push(s);
                }
            },
            None => merged.push(s),
        }
    }
    order(&mut merged);
    merged
}

fn single(k: usize, i: &Insight) -> Story<'_> {
    Story {
        lead: i,
        support: Vec::new(),
        elsewhere: Vec::new(),
        severity: i.severity,
        insights: 1,
        impact: Impact::of(i),
        first: k,
    }
}

impl Story<'_> {
    fn refresh(&mut self) {
        self.severity = std::iter::once(self.lead)
            .chain(self.support.iter().copied())
            .map(|i| i.severity)
            .max()
            .unwrap_or(self.lead.severity);
        self.insights = 1 + self.support.len();
        self.impact = self
            .support
            .iter()
            .fold(Impact::of(self.lead), |a, i| a.max(Impact::of(i)));
    }
}

/// What makes two stories on different servers the same finding (None: never merged).
fn finding_key(s: &Story<'_>) -> Option<String> {
    if s.is_resolved() {
        return None;
    }
    let i = s.lead;
    let repo = label(i, "repository");
    let status = i.status.map(|l| l.as_str()).unwrap_or("");
    match i.kind.as_str() {
        // The same statement: the same normalised text (queryids differ between servers
        // whose tables have different oids), else the same queryid.
        k if QUERY_KINDS.contains(&k) && i.label("queryid").is_some() => Some(format!(
            "q\u{0}{repo}\u{0}{}\u{0}{}\u{0}{status}\u{0}{}",
            i.rule,
            i.text
                .as_deref()
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| label(i, "queryid").to_string()),
            // Same supporting kinds, so that the entry tells the same story for each.
            support_kinds(s)
        )),
        "missing_index" if !is_blind(i) && i.label("table").is_some() => Some(format!(
            "i\u{0}{repo}\u{0}{}\u{0}{}\u{0}{status}",
            label(i, "table"),
            label(i, "columns")
        )),
        "powa_health" => Some(format!("h\u{0}{repo}\u{0}{}\u{0}{status}", i.rule)),
        _ => None,
    }
}

fn support_kinds(s: &Story<'_>) -> String {
    let mut k: Vec<&str> = s.support.iter().map(|i| i.rule.as_str()).collect();
    k.sort_unstable();
    k.join(",")
}

/// Severity first (resolved last), then impact, then input order.
pub fn order(v: &mut [Story<'_>]) {
    v.sort_by(|a, b| {
        a.is_resolved()
            .cmp(&b.is_resolved())
            .then(b.severity.cmp(&a.severity))
            .then(b.impact.cmp(&a.impact))
            .then(a.first.cmp(&b.first))
    });
}

// ---------------------------------------------------------------------------------------
// Telling a story

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

/// Wording per language.
struct W {
    lang: Lang,
}

impl W {
    fn zh(&self) -> bool {
        self.lang == Lang::Zh
    }
    fn pick<'a>(&self, en: &'a str, zh: &'a str) -> &'a str {
        if self.zh() {
            zh
        } else {
            en
        }
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
    let w = W { lang };
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
    let at = place_of(i);
    let server = label(i, "server").to_string();
    let mi = s.find("missing_index");
    let n_servers = 1 + s.elsewhere.len();

    // Title, impact and the lead's own numbers, per kind.
    let m = |k: &str| i.metric(k).filter(|v| v.is_finite());
    let per = Per::of(i, &w);
    let index_missing = mi.is_some() && i.kind != "missing_index";
    let mut title = None;
    match (i.kind.as_str(), i.rule.as_str()) {
        ("regression", _) => {
            if let (Some(f), Some(now), Some(then)) =
                (m("factor"), m("mean_time_ms"), m("baseline_mean_time_ms"))
            {
                title = Some(if w.zh() {
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
                });
                let mut parts = Vec::new();
                if let Some(x) = m("extra_time_ms") {
                    parts.push(per.time(x, true));
                }
                if let Some(sh) = m("share_of_total_time") {
                    parts.push(share_of(&w, sh, &server, w.pick("time", "时间")));
                }
                t.impact = Some(parts.join(w.pick(", ", "，")));
                if let Some(c) = m("calls") {
                    t.numbers.push(match m("baseline_calls") {
                        Some(b) => {
                            if w.zh() {
                                format!("{} 次调用（之前 {}）", count(c), count(b))
                            } else {
                                format!("{} calls (was {})", count(c), count(b))
                            }
                        }
                        None => calls(&w, c),
                    });
                }
                if let (Some(r), Some(b)) = (m("rows_per_call"), m("baseline_rows_per_call")) {
                    if b > 0.0 && r / b >= 2.0 {
                        t.cause = Some(if w.zh() {
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
                        t.numbers.push(rows_per_call(&w, r));
                    }
                }
            }
        }
        ("slow_query", _) => {
            if let (Some(total), Some(sh)) = (m("total_time_ms"), m("share_of_total_time")) {
                let rank = m("rank").map(|r| format!("#{}", count(r)));
                title = Some(match (&rank, w.zh()) {
                    (Some(r), false) => {
                        format!("{at}: top query {r}, {} of {server}'s time", pct(sh))
                    }
                    (None, false) => format!("{at}: a query takes {} of {server}'s time", pct(sh)),
                    (Some(r), true) => format!(
                        "{at}：耗时第 {} 的查询，占 {server} 时间 {}",
                        &r[1..],
                        pct(sh)
                    ),
                    (None, true) => format!("{at}：一条查询占 {server} 时间 {}", pct(sh)),
                });
                let mut parts = vec![per.time(total, false)];
                if let Some(mean) = m("mean_time_ms") {
                    parts.push(if w.zh() {
                        format!("每次 {}", ms(mean))
                    } else {
                        format!("{} per call", ms(mean))
                    });
                }
                t.impact = Some(parts.join(w.pick(", ", "，")));
                query_numbers(i, &w, &mut t.numbers);
            }
        }
        ("resource_hog", rule) => {
            if let Some(sh) = m("share") {
                let what = resource(&w, rule);
                title = Some(if w.zh() {
                    format!("{at}：一条查询占 {server} {what}的 {}", pct(sh))
                } else {
                    format!("{at}: a query takes {} of {server}'s {what}", pct(sh))
                });
                if let Some(total) = m("total_time_ms") {
                    t.impact = Some(per.time(total, false));
                }
                if let Some(c) = m("calls") {
                    t.numbers.push(calls(&w, c));
                }
                resource_numbers(i, &w, &mut t.numbers);
            }
        }
        ("workload_change", rule) => {
            title = workload_title(i, rule, &at, &server, &w, &per, &mut t);
        }
        ("powa_health", "powa_health.retention") => {
            if let (Some(ret), Some(need)) = (m("retention_ms"), m("needed_retention_ms")) {
                let (ret, need) = (duration_ms(ret), duration_ms(need));
                title = Some(if w.zh() {
                    format!("{server}：PoWA 只保留 {ret} 的历史，回归检测的基线需要 {need}")
                } else {
                    format!("{server}: PoWA keeps {ret} of history, the regression baseline needs {need}")
                });
                if w.zh() {
                    t.advice = Some(
                        "这台服务器无法发现回归：调大它的保留时间（powa_configure_server / powa.retention），或调小 analysis.baseline_offset。"
                            .to_string(),
                    );
                }
            }
        }
        ("powa_health", "powa_health.stale") => {
            if let Some(age) = m("snapshot_age_ms").filter(|a| *a < 1e15) {
                title = Some(if w.zh() {
                    format!("{server}：PoWA 已有 {} 没有采集快照", duration_ms(age))
                } else {
                    format!(
                        "{server}: PoWA has not snapshotted it for {}",
                        duration_ms(age)
                    )
                });
                if let Some(f) = m("frequency_ms") {
                    t.numbers.push(if w.zh() {
                        format!("快照间隔 {}", duration_ms(f))
                    } else {
                        format!("snapshots every {}", duration_ms(f))
                    });
                }
                if w.zh() {
                    t.advice = Some(
                        "检查 powa-collector（远程服务器）或 powa 后台进程（本地）是否在运行、能否连上该服务器；其日志和 powa_snapshot_metas.errors 会说明原因。在此之前，这台服务器的其他结论都不可信。"
                            .to_string(),
                    );
                }
            }
        }
        ("missing_index", _) if !is_blind(i) => {
            let table = label(i, "table");
            let cols = label(i, "columns");
            title = Some(match (n_servers > 1, w.zh()) {
                (false, false) => format!("{at}: missing index on {table} ({cols})"),
                (true, false) => {
                    format!("Missing index on {table} ({cols}) — on {n_servers} servers")
                }
                (false, true) => format!("{at}：{table} ({cols}) 缺少索引"),
                (true, true) => format!("{table} ({cols}) 缺少索引——共 {n_servers} 台服务器"),
            });
            if let Some(r) = m("rows_filtered") {
                let ex = m("executions").unwrap_or(0.0);
                t.impact = Some(if w.zh() {
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
            if let Some(tr) = m("table_rows") {
                t.numbers.push(if w.zh() {
                    format!("表 {} 行", count(tr))
                } else {
                    format!("table of {} rows", count(tr))
                });
            }
            if let Some(q) = m("queries") {
                t.numbers.push(if w.zh() {
                    format!("受益查询 {} 条", count(q))
                } else if q == 1.0 {
                    "helps 1 query".to_string()
                } else {
                    format!("helps {} queries", count(q))
                });
            }
            // The query it helps, not the DDL: the DDL is the fix line.
            t.query = None;
            t.queryid = None;
        }
        _ => {}
    }
    if let Some(mut tt) = title {
        if index_missing {
            tt.push_str(w.pick(" — an index is missing", "——缺少索引"));
        }
        if index_missing && n_servers > 1 {
            tt.push_str(&if w.zh() {
                format!("，共 {n_servers} 台服务器")
            } else {
                format!(", on {n_servers} servers")
            });
        } else if n_servers > 1 && i.kind != "missing_index" {
            tt.push_str(&if w.zh() {
                format!("——共 {n_servers} 台服务器")
            } else {
                format!(" — on {n_servers} servers")
            });
        }
        t.title = tt;
    } else {
        t.own_title = true;
        generic_numbers(i, &mut t.numbers);
    }

    // Cause: from the supporting findings (and a missing index, whoever leads).
    let mut causes: Vec<String> = t.cause.take().into_iter().collect();
    if let Some(mi) = mi {
        if let Some(c) = index_cause(mi, &w) {
            causes.insert(0, c);
        }
    }
    for x in std::iter::once(i).chain(s.support.iter().copied()) {
        if let Some(c) = support_cause(x, i, &w) {
            causes.push(c);
        }
    }
    let class = std::iter::once(i)
        .chain(s.support.iter().copied())
        .find_map(|x| x.label("class"))
        .map(|c| class_name(c, &w));
    if !causes.is_empty() || class.is_some() {
        let body = causes.join(w.pick("; ", "；"));
        // The concrete causes say more than the class's name (and say it again: "spills to
        // temp files: it spills to temp files (20 MiB written)"); the name stands alone.
        t.cause = Some(match class {
            Some(c) if body.is_empty() => c,
            _ => body,
        });
    }

    // Numbers the lead does not carry: the slow-query rank, when another finding leads.
    if i.kind != "slow_query" {
        if let Some(sq) = s.find("slow_query") {
            if let Some(r) = sq.metric("rank") {
                t.numbers.push(if w.zh() {
                    format!("总耗时排名第 {}", count(r))
                } else {
                    format!("#{} by total time", count(r))
                });
            }
        }
    }

    // Action: the index statement when there is one, else the lead's advice.
    match mi.and_then(ddl_of) {
        Some(ddl) => {
            t.ddl = Some(ddl);
            t.ddl_note = mi.and_then(|x| hypopg_note(x, &w));
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

    if let Some(u) = i.label("user").filter(|u| !u.is_empty()) {
        if t.numbers.len() < 4 {
            t.numbers.push(if w.zh() {
                format!("用户 {u}")
            } else {
                format!("user {u}")
            });
        }
    }
    t.numbers.truncate(4);

    t.elsewhere = s
        .elsewhere
        .iter()
        .take(MAX_ELSEWHERE)
        .map(|x| match key_figure(x, &w) {
            Some(f) => format!("{} ({f})", place_of(x)),
            None => place_of(x),
        })
        .collect();
    if s.elsewhere.len() > MAX_ELSEWHERE {
        let more = s.elsewhere.len() - MAX_ELSEWHERE;
        t.elsewhere.push(if w.zh() {
            format!("另有 {more} 台")
        } else {
            format!("+{more} more")
        });
    }
    if i.kind == "missing_index" && t.query.is_none() {
        // The first helped query's text, from the index finding's own notes.
        t.query = i.text.as_deref().and_then(first_helped_text);
    }
    t
}

/// How to say "per day" for an insight's window: scaled when the window is about a day,
/// else the window's amount with the daily rate beside it.
struct Per<'a> {
    factor: f64,
    window: String,
    day: bool,
    w: &'a W,
}

impl<'a> Per<'a> {
    fn of(i: &Insight, w: &'a W) -> Per<'a> {
        let secs = (i.window.end - i.window.start).num_seconds().max(0);
        let day = (82_800..=90_000).contains(&secs) || secs == 0;
        Per {
            factor: if day { 1.0 } else { per_day_factor(i) },
            window: human_secs(secs as f64),
            day,
            w,
        }
    }

    /// "+6.4 s per day" / "+6.4 s in 1 h (≈ 2 min 34 s per day)".
    fn time(&self, v: f64, plus: bool) -> String {
        let sign = if plus { "+" } else { "" };
        let zh = self.w.zh();
        match (self.day, zh) {
            (true, false) => format!("{sign}{} per day", ms(v)),
            (true, true) => format!("每天{}{}", if plus { "多耗 " } else { "耗时 " }, ms(v)),
            (false, false) => format!(
                "{sign}{} in {} (≈ {} per day)",
                ms(v),
                self.window,
                ms(v * self.factor)
            ),
            (false, true) => format!(
                "{} 内{}{}（约每天 {}）",
                self.window,
                if plus { "多耗 " } else { "耗时 " },
                ms(v),
                ms(v * self.factor)
            ),
        }
    }

    fn suffix(&self) -> String {
        if self.day {
            "per day".to_string()
        } else {
            format!("in {}", self.window)
        }
    }

    fn prefix(&self) -> String {
        if self.day {
            "每天".to_string()
        } else {
            format!("{} 内", self.window)
        }
    }
}

fn workload_title(
    i: &Insight,
    rule: &str,
    at: &str,
    server: &str,
    w: &W,
    per: &Per<'_>,
    t: &mut Told,
) -> Option<String> {
    let m = |k: &str| i.metric(k).filter(|v| v.is_finite());
    let zh = w.zh();
    let title = match rule {
        "workload_change.new_heavy_query" => {
            let sh = m("share_of_total_time")?;
            if let Some(total) = m("total_time_ms") {
                t.impact = Some(per.time(total, false));
            }
            if zh {
                format!("{at}：新出现的查询占 {server} 时间 {}", pct(sh))
            } else {
                format!("{at}: a new query takes {} of {server}'s time", pct(sh))
            }
        }
        "workload_change.calls_up" | "workload_change.calls_down" => {
            let (c, c0) = (m("calls")?, m("baseline_calls")?);
            let f = if c0 > 0.0 { c / c0 } else { f64::INFINITY };
            if let (Some(a), Some(b)) = (m("total_time_ms"), m("baseline_total_time_ms")) {
                t.impact = Some(format!(
                    "{}{}",
                    per.time(a, false),
                    if zh {
                        format!("（之前 {}）", ms(b))
                    } else {
                        format!(" (was {})", ms(b))
                    }
                ));
            }
            if let Some(sh) = m("share_of_total_time") {
                t.numbers
                    .push(share_of(w, sh, server, w.pick("time", "时间")));
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
            let (now, then) = (m("temp_blks_written")?, m("baseline_temp_blks_written")?);
            let f = if then > 0.0 {
                now / then
            } else {
                f64::INFINITY
            };
            let (a, b) = (bytes(now * 8192.0), bytes(then * 8192.0));
            if zh {
                format!("{at}：临时文件写入 ×{}（{b} → {a}）", factor(f))
            } else {
                format!("{at}: temp files ×{} ({b} → {a} written)", factor(f))
            }
        }
        "workload_change.reads_up" => {
            let (now, then) = (m("read_bytes")?, m("baseline_read_bytes")?);
            let f = if then > 0.0 {
                now / then
            } else {
                f64::INFINITY
            };
            let (a, b) = (bytes(now), bytes(then));
            if zh {
                format!("{at}：磁盘读取 ×{}（{b} → {a}）", factor(f))
            } else {
                format!("{at}: disk reads ×{} ({b} → {a})", factor(f))
            }
        }
        _ => return None,
    };
    if let Some(c) = m("calls").filter(|_| !rule.starts_with("workload_change.calls")) {
        t.numbers.push(calls(w, c));
    }
    Some(title)
}

/// A slow query's supporting numbers: calls, rows per call, blocks read, temp written.
fn query_numbers(i: &Insight, w: &W, out: &mut Vec<String>) {
    let m = |k: &str| i.metric(k).filter(|v| v.is_finite());
    let c = m("calls");
    if let Some(c) = c {
        out.push(calls(w, c));
    }
    if let (Some(r), Some(c)) = (m("rows"), c.filter(|c| *c > 0.0)) {
        out.push(rows_per_call(w, r / c));
    }
    if let Some(cpu) = m("cpu_time_ms").filter(|v| *v > 0.0) {
        out.push(if w.zh() {
            format!("CPU {}", ms(cpu))
        } else {
            format!("{} of CPU", ms(cpu))
        });
    }
    if let Some(r) = m("shared_blks_read").filter(|v| *v > 0.0) {
        out.push(if w.zh() {
            format!("读盘 {}", bytes(r * 8192.0))
        } else {
            format!("{} read from disk or OS cache", bytes(r * 8192.0))
        });
    }
    // Temp files are the cause line's (see `support_cause`).
}

fn resource_numbers(i: &Insight, w: &W, out: &mut Vec<String>) {
    let m = |k: &str| i.metric(k).filter(|v| v.is_finite() && *v > 0.0);
    if let Some(cpu) = m("cpu_time_ms") {
        out.push(if w.zh() {
            format!("CPU {}", ms(cpu))
        } else {
            format!("{} of CPU", ms(cpu))
        });
    }
    if let Some(r) = m("read_bytes") {
        out.push(if w.zh() {
            format!("磁盘读 {}", bytes(r))
        } else {
            format!("{} read from disk", bytes(r))
        });
    }
    if let Some(r) = m("write_bytes") {
        out.push(if w.zh() {
            format!("磁盘写 {}", bytes(r))
        } else {
            format!("{} written to disk", bytes(r))
        });
    }
}

/// For findings this module does not know: up to four metrics that carry a unit, never
/// the internal ones (magnitude, baselines, flags).
fn generic_numbers(i: &Insight, out: &mut Vec<String>) {
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
            crate::render::format_metric(k, *v)
        };
        out.push(format!("{} {value}", crate::render::metric_label(k)));
    }
}

/// "public.orders is read without a usable index: 99.97% of the rows read are thrown away".
fn index_cause(mi: &Insight, w: &W) -> Option<String> {
    let m = |k: &str| mi.metric(k).filter(|v| v.is_finite());
    let table = label(mi, "table");
    let ratio = m("filter_ratio")?;
    let per_exec = m("rows_filtered_per_execution").unwrap_or(0.0);
    Some(if w.zh() {
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
    })
}

/// The cause a supporting finding adds (`x` may be the lead itself, for its wait event).
fn support_cause(x: &Insight, lead: &Insight, w: &W) -> Option<String> {
    let m = |k: &str| x.metric(k).filter(|v| v.is_finite());
    let server = label(x, "server");
    match (x.kind.as_str(), x.rule.as_str()) {
        ("slow_query", _) => {
            let mut c = Vec::new();
            if let Some(tmp) = m("temp_blks_written").filter(|v| *v > 0.0) {
                c.push(if w.zh() {
                    format!("溢出到临时文件（写入 {}）", bytes(tmp * 8192.0))
                } else {
                    format!("it spills to temp files ({} written)", bytes(tmp * 8192.0))
                });
            }
            if let (Some(cpu), Some(total)) = (m("cpu_time_ms"), m("total_time_ms")) {
                if total > 0.0 && cpu / total >= 0.6 {
                    c.push(if w.zh() {
                        format!("{} 的执行时间花在 CPU 上", pct(cpu / total))
                    } else {
                        format!("{} of its time is CPU", pct(cpu / total))
                    });
                }
            }
            if let Some(ev) = x.label("top_wait") {
                let sh = m("top_wait_share").unwrap_or(0.0);
                c.push(if w.zh() {
                    format!("主要等待事件 {ev}（采样的 {}）", pct(sh))
                } else {
                    format!("most sampled wait: {ev} ({} of samples)", pct(sh))
                });
            }
            (!c.is_empty()).then(|| c.join(w.pick("; ", "；")))
        }
        ("resource_hog", rule) if !std::ptr::eq(x, lead) => {
            let sh = m("share")?;
            let what = resource(w, rule);
            Some(if w.zh() {
                format!("占 {server} {what}的 {}", pct(sh))
            } else {
                format!("it takes {} of {server}'s {what}", pct(sh))
            })
        }
        ("workload_change", "workload_change.temp_up") if !std::ptr::eq(x, lead) => {
            let now = m("temp_blks_written")?;
            let then = m("baseline_temp_blks_written").unwrap_or(0.0);
            Some(if w.zh() {
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
        ("workload_change", "workload_change.calls_up") if !std::ptr::eq(x, lead) => {
            let (c, c0) = (m("calls")?, m("baseline_calls")?);
            let f = if c0 > 0.0 { c / c0 } else { f64::INFINITY };
            Some(if w.zh() {
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
        ("workload_change", "workload_change.reads_up") if !std::ptr::eq(x, lead) => {
            let (a, b) = (m("read_bytes")?, m("baseline_read_bytes")?);
            Some(if w.zh() {
                format!("磁盘读取 {} → {}", bytes(b), bytes(a))
            } else {
                format!("disk reads {} → {}", bytes(b), bytes(a))
            })
        }
        _ => None,
    }
}

/// The advice classes the analyzers may label a query with (`class`).
fn class_name(c: &str, w: &W) -> String {
    let (en, zh) = match c {
        "selective_filter" => ("selective filter without an index", "选择性过滤缺少索引"),
        "whole_table_aggregate" => ("aggregate over a whole table", "全表聚合"),
        "cpu_bound" => ("CPU-bound", "CPU 密集"),
        "io_bound" => ("I/O-bound", "I/O 密集"),
        "temp_spill" => ("spills to temp files", "溢出到临时文件"),
        "lock_wait" => ("waits on locks", "锁等待"),
        other => (other, other),
    };
    w.pick(en, zh).to_string()
}

/// The index statement of a missing-index finding (the first line of its text, when it is
/// a statement and not a note).
fn ddl_of(mi: &Insight) -> Option<String> {
    let first = mi.text.as_deref()?.lines().next()?.trim();
    first
        .to_ascii_uppercase()
        .starts_with("CREATE ")
        .then(|| first.to_string())
}

fn first_helped_text(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("-- helps queryid "))
        .and_then(|l| l.split_once(": ").map(|(_, t)| t.to_string()))
}

fn hypopg_note(mi: &Insight, w: &W) -> Option<String> {
    let (b, a) = (mi.metric("cost_before")?, mi.metric("cost_after")?);
    let gain = mi.metric("estimated_gain").unwrap_or(0.0);
    Some(if w.zh() {
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

/// The one number that tells servers apart in an "also on" list.
fn key_figure(i: &Insight, w: &W) -> Option<String> {
    let m = |k: &str| i.metric(k).filter(|v| v.is_finite());
    match i.kind.as_str() {
        "regression" => m("factor").map(|f| {
            if w.zh() {
                format!("{} 倍", factor(f))
            } else {
                format!("{}×", factor(f))
            }
        }),
        "slow_query" | "workload_change" => m("share_of_total_time").map(pct),
        "resource_hog" => m("share").map(pct),
        "missing_index" => m("rows_filtered_per_execution").map(|r| {
            if w.zh() {
                format!("每次执行丢弃 {} 行", count(r))
            } else {
                format!("{} rows thrown away per execution", count(r))
            }
        }),
        _ => None,
    }
}

fn resource(w: &W, rule: &str) -> &'static str {
    let (en, zh) = match rule {
        "resource_hog.cpu" => ("CPU", "CPU "),
        "resource_hog.reads" => ("disk reads", "磁盘读"),
        "resource_hog.writes" => ("disk writes", "磁盘写"),
        "resource_hog.io_time" => ("block I/O time", "块 I/O 时间"),
        "resource_hog.blocks_read" => ("blocks read", "读取块数"),
        _ => ("resources", "资源"),
    };
    if w.zh() {
        zh
    } else {
        en
    }
}

fn share_of(w: &W, sh: f64, server: &str, what: &str) -> String {
    if w.zh() {
        format!("占 {server} {what}的 {}", pct(sh))
    } else {
        format!("{} of {server}'s {what}", pct(sh))
    }
}

fn calls(w: &W, c: f64) -> String {
    if w.zh() {
        format!("{} 次调用", count(c))
    } else if c == 1.0 {
        "1 call".to_string()
    } else {
        format!("{} calls", count(c))
    }
}

fn rows_per_call(w: &W, r: f64) -> String {
    let n = if r >= 10.0 || r == r.round() {
        count(r)
    } else {
        format!("{r:.1}")
    };
    if w.zh() {
        format!("每次 {n} 行")
    } else if n == "1" {
        "1 row per call".to_string()
    } else {
        format!("{n} rows per call")
    }
}

// ---------------------------------------------------------------------------------------
// Units

fn ms(v: f64) -> String {
    crate::render::format_metric("x_ms", v)
}

fn count(v: f64) -> String {
    crate::render::format_metric("calls", v)
}

fn bytes(v: f64) -> String {
    crate::render::format_metric("x_bytes", v)
}

fn pct(share: f64) -> String {
    crate::render::format_metric("share_of", share)
}

/// A share close to 100 % keeps its decimals: 99.97 % is not 100 %.
fn pct_fine(share: f64) -> String {
    let p = share * 100.0;
    if (99.0..100.0).contains(&p) {
        format!("{:.2}%", (p * 100.0).floor() / 100.0)
    } else {
        pct(share)
    }
}

/// "110", "2.5", "1.3".
fn factor(f: f64) -> String {
    if !f.is_finite() {
        "∞".to_string()
    } else if f >= 10.0 {
        format!("{f:.0}")
    } else {
        format!("{f:.1}")
    }
}

/// A duration that may be days long: "7 d", "2 d 3 h", else as [`ms`].
pub fn duration_ms(v: f64) -> String {
    let h = v / 3_600_000.0;
    if h >= 48.0 {
        let hours = h.round() as i64;
        let (d, r) = (hours / 24, hours % 24);
        if r == 0 {
            format!("{d} d")
        } else {
            format!("{d} d {r} h")
        }
    } else if h >= 1.0 && (v / 60_000.0).round() % 60.0 == 0.0 {
        format!("{:.0} h", h.round())
    } else {
        ms(v)
    }
}

/// A window length: "1 h", "24 h", "30 min", "7 d".
fn human_secs(s: f64) -> String {
    if s >= 172_800.0 && s % 86_400.0 == 0.0 {
        format!("{:.0} d", s / 86_400.0)
    } else if s >= 3600.0 && s % 3600.0 == 0.0 {
        format!("{:.0} h", s / 3600.0)
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        ms(s * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use sentinel_actors::{Fingerprint, Window};

    fn insight(kind: &str, rule: &str, server: &str, queryid: &str, sev: Severity) -> Insight {
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap();
        let mut labels: BTreeMap<String, String> = [
            ("repository", "main"),
            ("server", server),
            ("database", "app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if kind == "missing_index" {
            labels.insert("queryids".into(), format!("{queryid},+2"));
            labels.insert("table".into(), "public.orders".into());
            labels.insert("columns".into(), "created_at".into());
        } else {
            labels.insert("queryid".into(), queryid.into());
        }
        Insight {
            fingerprint: Fingerprint::of([kind, rule, server, queryid]),
            kind: kind.into(),
            rule: rule.into(),
            severity: sev,
            labels,
            title: format!("{kind} on {server}"),
            advice: "advice".into(),
            text: Some(format!("SELECT {queryid}")),
            metrics: BTreeMap::new(),
            window: Window { start: t0, end: t1 },
            observed_at: t1,
            status: None,
        }
    }

    fn with(mut i: Insight, m: &[(&str, f64)]) -> Insight {
        i.metrics.extend(m.iter().map(|(k, v)| (k.to_string(), *v)));
        i
    }

    #[test]
    fn one_story_per_query_series_with_its_missing_index() {
        let v = vec![
            insight(
                "slow_query",
                "slow_query.total_time",
                "db1",
                "7",
                Severity::Info,
            ),
            insight(
                "missing_index",
                "missing_index.btree",
                "db1",
                "7",
                Severity::Warning,
            ),
            insight(
                "regression",
                "regression.mean_time",
                "db1",
                "7",
                Severity::Critical,
            ),
            insight(
                "slow_query",
                "slow_query.total_time",
                "db1",
                "8",
                Severity::Info,
            ),
            // Another server, another statement: its own entry.
            insight(
                "regression",
                "regression.mean_time",
                "db2",
                "9",
                Severity::Warning,
            ),
        ];
        let s = stories(&v);
        assert_eq!(s.len(), 3, "{s:#?}");
        assert_eq!(s[0].lead.kind, "regression");
        assert_eq!(s[0].lead.label("server"), Some("db1"));
        assert_eq!(s[0].severity, Severity::Critical);
        let kinds: Vec<&str> = s[0].support.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, ["slow_query", "missing_index"]);
        assert_eq!(s[0].insights, 3);
        assert_eq!(s.iter().map(|x| x.insights).sum::<usize>(), v.len());
    }

    #[test]
    fn the_same_finding_on_several_servers_is_one_entry() {
        let v: Vec<Insight> = ["db1", "db2", "db3"]
            .iter()
            .enumerate()
            .map(|(k, srv)| {
                with(
                    insight(
                        "missing_index",
                        "missing_index.btree",
                        srv,
                        &k.to_string(),
                        Severity::Warning,
                    ),
                    &[("rows_filtered", 1000.0 * (k + 1) as f64)],
                )
            })
            .collect();
        let s = stories(&v);
        assert_eq!(s.len(), 1, "{s:#?}");
        // The most impactful server leads.
        assert_eq!(s[0].lead.label("server"), Some("db3"));
        assert_eq!(s[0].elsewhere.len(), 2);
        let t = tell(&s[0], Lang::En, &place);
        assert!(t.title.contains("— on 3 servers"), "{t:?}");
        assert_eq!(t.elsewhere.len(), 2);
    }

    #[test]
    fn resolved_insights_are_never_grouped() {
        let mut a = insight(
            "regression",
            "regression.mean_time",
            "db1",
            "7",
            Severity::Warning,
        );
        a.status = Some(Lifecycle::Resolved);
        let b = insight(
            "slow_query",
            "slow_query.total_time",
            "db1",
            "7",
            Severity::Warning,
        );
        let v = vec![a, b];
        let s = stories(&v);
        assert_eq!(s.len(), 2);
        assert!(s[1].is_resolved(), "resolved last");
    }

    #[test]
    fn severity_first_then_time_per_day_whatever_the_analyzer() {
        let v = vec![
            with(
                insight(
                    "slow_query",
                    "slow_query.total_time",
                    "db1",
                    "1",
                    Severity::Warning,
                ),
                &[("total_time_ms", 1000.0)],
            ),
            with(
                insight(
                    "regression",
                    "regression.mean_time",
                    "db1",
                    "2",
                    Severity::Warning,
                ),
                &[("extra_time_ms", 60_000.0)],
            ),
            with(
                insight(
                    "missing_index",
                    "missing_index.btree",
                    "db1",
                    "3",
                    Severity::Warning,
                ),
                &[("rows_filtered", 1e9)],
            ),
            with(
                insight(
                    "slow_query",
                    "slow_query.total_time",
                    "db1",
                    "4",
                    Severity::Critical,
                ),
                &[("total_time_ms", 10.0)],
            ),
        ];
        let s = stories(&v);
        let q: Vec<&str> = s
            .iter()
            .map(|x| {
                x.lead
                    .label("queryid")
                    .or(x.lead.label("queryids"))
                    .unwrap()
            })
            .collect();
        assert_eq!(q, ["4", "2", "1", "3,+2"]);
    }

    #[test]
    fn a_regression_with_its_index_is_told_conclusion_first() {
        let reg = with(
            insight(
                "regression",
                "regression.mean_time",
                "db1",
                "7",
                Severity::Critical,
            ),
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
                "missing_index",
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
            t.title,
            "db1 / app: a query got 110× slower (0.290 ms → 32.00 ms per call) — an index is missing"
        );
        assert_eq!(
            t.impact.as_deref(),
            Some("+6.40 s per day, 32% of db1's time")
        );
        assert_eq!(
            t.cause.as_deref(),
            Some("public.orders is read without a usable index: 99.97% of the rows read are thrown away (299,900 per execution)")
        );
        assert_eq!(
            t.ddl.as_deref(),
            Some("CREATE INDEX CONCURRENTLY ON public.orders USING btree (created_at);")
        );
        assert_eq!(
            t.ddl_note.as_deref(),
            Some("hypopg: cost 9,939 → 81, 99% less")
        );
        assert_eq!(t.numbers, ["200 calls (was 190)", "1 row per call"]);
        let zh = tell(&s[0], Lang::Zh, &place);
        assert_eq!(
            zh.title,
            "db1 / app：查询变慢 110 倍（每次 0.290 ms → 32.00 ms）——缺少索引"
        );
        assert_eq!(
            zh.impact.as_deref(),
            Some("每天多耗 6.40 s，占 db1 时间的 32%")
        );
    }

    #[test]
    fn durations_and_windows_read_as_people_say_them() {
        assert_eq!(duration_ms(7.0 * 86_400_000.0 + 3_600_000.0), "7 d 1 h");
        assert_eq!(duration_ms(86_400_000.0), "24 h");
        assert_eq!(duration_ms(90_000.0), "1 min 30 s");
        assert_eq!(human_secs(3600.0), "1 h");
        assert_eq!(human_secs(60.0), "1 min");
        assert_eq!(pct_fine(0.9997), "99.97%");
        assert_eq!(pct_fine(0.5), "50%");
    }
}
