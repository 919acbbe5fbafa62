//! "What changed?": the server's changes told with the findings they may explain, and
//! performance settings changes as findings of their own.
//!
//! A regression, a spike, a temp-spill growth or a new heavy query compares the window
//! with a baseline; what changed on the server between that baseline and now is the DBA's
//! next question. [`attach`] puts those changes on the finding, nearest first, from the
//! timeline the collector read ([`crate::powa::changes`]), and names the likely cause when
//! the evidence is direct: the query now writes temp blocks and `work_mem` went down; it
//! reads from disk and the server restarted (cold cache) or `shared_buffers` shrank; it
//! got slower with the same rows and a planner setting moved; it is new, among many new
//! queries (a release). A change scoped to another database or role is left out.
//!
//! [`SettingsChangeAnalyzer`] reports the performance settings (memory, planner,
//! parallelism, autovacuum, WAL) changed within the window, as an info finding per server,
//! told once: a change is an event, it never "resolves".

use serde::Deserialize;

use sentinel_actors::{Change, Insight, Severity};

use super::checks::Checks;
use super::per_server::AnalyzerSettings;
use super::{insight, server_fingerprint, WindowAnalyzer, WindowRules};
use crate::powa::changes::{Event, Timeline, What};
use crate::powa::discovery::quote_ident;
use crate::powa::reader::{
    QueryStats, StatementsWindow, CALLS, EXEC_TIME, ROWS, SHARED_READ, TEMP_WRITTEN,
};
use crate::render::format::count;

/// The label a finding carries when its server has no change history: the reason, with
/// what enables it.
pub const NO_HISTORY_LABEL: &str = "change_history";

/// The label a finding carries when its server's indexes are known from PoWA 5's
/// catalog and that catalog is old: how old, and how to refresh it.
pub const CATALOG_AGE_LABEL: &str = "catalog_age";

/// The label of findings that are events: told once, never resolved (see
/// [`crate::gate::lifecycle`]).
pub const EVENT_LABEL: &str = "event";

/// At most this many changes ride on one finding (the likely causes always among them).
const MAX_CHANGES: usize = 6;

/// This many queries new since the baseline (or more) read as a release.
const RELEASE_NEW_QUERIES: usize = 10;

/// The kinds of findings that compare with a past and get the changes since.
const COMPARING: [&str; 2] = ["regression", "workload_change"];

/// Settings whose lowering makes sorts and hashes spill to temporary files.
const SPILL: [&str; 2] = ["work_mem", "hash_mem_multiplier"];

/// Settings the planner's choices depend on.
fn is_planner(name: &str) -> bool {
    name.starts_with("enable_")
        || name.starts_with("jit")
        || name.starts_with("geqo")
        || name.ends_with("_cost")
        || name.ends_with("_collapse_limit")
        || name.starts_with("min_parallel_")
        || name.starts_with("max_parallel_workers")
        || matches!(
            name,
            "effective_cache_size"
                | "default_statistics_target"
                | "plan_cache_mode"
                | "constraint_exclusion"
                | "cursor_tuple_fraction"
                | "random_page_cost"
                | "seq_page_cost"
                | "effective_io_concurrency"
        )
}

/// The family of a performance setting, for the settings-change finding; None for the
/// others (logging, connections, locale …).
pub fn performance_family(name: &str) -> Option<&'static str> {
    if name.starts_with("autovacuum") || name.starts_with("vacuum_") {
        Some("autovacuum")
    } else if name.starts_with("wal_")
        || name.starts_with("checkpoint_")
        || matches!(
            name,
            "max_wal_size"
                | "min_wal_size"
                | "synchronous_commit"
                | "commit_delay"
                | "commit_siblings"
                | "full_page_writes"
                | "fsync"
        )
    {
        Some("WAL")
    } else if name.contains("parallel") || name == "max_worker_processes" {
        Some("parallelism")
    } else if is_planner(name) {
        Some("planner")
    } else if name.ends_with("_mem")
        || name.ends_with("_buffers")
        || matches!(
            name,
            "hash_mem_multiplier" | "huge_pages" | "temp_file_limit"
        )
    {
        Some("memory")
    } else {
        None
    }
}

/// A memory setting's value in kB ("64MB", "4096kB", "1GB", "8192" as kB), for telling
/// a lowering from a raise; None when it does not read as one.
fn kilobytes(v: &str) -> Option<f64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let k = match unit.trim() {
        "" | "kB" => 1.0,
        "B" => 1.0 / 1024.0,
        "MB" => 1024.0,
        "GB" => 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * k)
}

/// Whether a setting went down (true), up (false), or it cannot be told (None).
fn lowered(from: Option<&str>, to: Option<&str>) -> Option<bool> {
    let (f, t) = (from?, to?);
    match (kilobytes(f), kilobytes(t)) {
        (Some(a), Some(b)) if a != b => Some(b < a),
        _ => None,
    }
}

/// " on public.orders", or nothing when the table is not known (an index PoWA 5's
/// catalog lists and its statistics do not).
fn on_table(table: &str) -> String {
    if table.is_empty() {
        String::new()
    } else {
        format!(" on {table}")
    }
}

/// A change in words, without its time (the renderer says when).
pub fn describe(e: &Event) -> (String, &'static str) {
    match &e.what {
        What::Restart => ("the server restarted".to_string(), "restart"),
        What::IndexDropped {
            table,
            index,
            seen_until,
            ..
        } => (
            format!(
                "index {index}{}, there at {}, was dropped",
                on_table(table),
                seen_until.format("%H:%M UTC")
            ),
            "index_dropped",
        ),
        What::IndexCreated { table, index, .. } => (
            format!("index {index}{} was created", on_table(table)),
            "index_created",
        ),
        What::StatsReset { databases } if databases.is_empty() => (
            "pg_stat_statements' statistics were reset (pg_stat_statements_reset() or a crash)"
                .to_string(),
            "stats_reset",
        ),
        What::StatsReset { databases } => (
            format!(
                "the statistics of database {} were reset",
                databases.join(", ")
            ),
            "stats_reset",
        ),
        What::Setting {
            name,
            from,
            to,
            database,
            role,
        } => {
            let value = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".to_string());
            let mut s = format!("{name} {} → {}", value(from), value(to));
            match (database, role) {
                (Some(d), Some(r)) => s.push_str(&format!(" for role {r} on database {d}")),
                (Some(d), None) => s.push_str(&format!(" on database {d}")),
                (None, Some(r)) => s.push_str(&format!(" for role {r}")),
                (None, None) => {}
            }
            (s, "setting")
        }
    }
}

/// The statement that puts a setting back to its value before `e` (None for a restart,
/// or a server-wide setting that was not set before: nothing to put back).
pub fn undo(e: &Event) -> Option<String> {
    if let What::IndexDropped { def, .. } = &e.what {
        // PoWA 5's catalog knows no definition: nothing to run.
        return (!def.trim().is_empty()).then(|| concurrently(def));
    }
    let What::Setting {
        name,
        from,
        database,
        role,
        ..
    } = &e.what
    else {
        return None;
    };
    let name = quote_ident(name);
    let value = from
        .as_ref()
        .map(|v| format!("'{}'", v.replace('\'', "''")));
    let target = match (database, role) {
        (Some(d), Some(r)) => format!("ROLE {} IN DATABASE {}", quote_ident(r), quote_ident(d)),
        (Some(d), None) => format!("DATABASE {}", quote_ident(d)),
        (None, Some(r)) => format!("ROLE {}", quote_ident(r)),
        (None, None) => {
            return value
                .map(|v| format!("ALTER SYSTEM SET {name} = {v}; SELECT pg_reload_conf();"))
        }
    };
    Some(match value {
        Some(v) => format!("ALTER {target} SET {name} = {v};"),
        None => format!("ALTER {target} RESET {name};"),
    })
}

/// `CREATE [UNIQUE] INDEX …` as `CREATE [UNIQUE] INDEX CONCURRENTLY …;`: built again
/// without locking out writes.
fn concurrently(def: &str) -> String {
    let d = def.trim().trim_end_matches(';');
    for head in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = d.strip_prefix(head) {
            return format!("{head}CONCURRENTLY {rest};");
        }
    }
    format!("{d};")
}

/// Whether the query text names `table` (`schema.table`, quoted or not), as a word.
fn reads_table(text: &str, table: &str) -> bool {
    let bare = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
    if bare.is_empty() {
        return false;
    }
    let lower = text.to_lowercase();
    let needle = bare.to_lowercase();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    lower.match_indices(&needle).any(|(k, _)| {
        let before = lower[..k].chars().next_back();
        let after = lower[k + needle.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Per-call figures of a query, to compare now with the baseline.
#[derive(Clone, Copy, Debug, Default)]
struct PerCall {
    temp: f64,
    read: f64,
    mean_ms: f64,
    rows: f64,
}

impl PerCall {
    fn of(q: &QueryStats) -> Option<Self> {
        let calls = q.get(CALLS);
        (calls > 0.0).then(|| PerCall {
            temp: q.get(TEMP_WRITTEN) / calls,
            read: q.get(SHARED_READ) / calls,
            mean_ms: q.get(EXEC_TIME) / calls,
            rows: q.get(ROWS) / calls,
        })
    }
}

/// "12 → 53 k": a figure then and now.
fn then_now(then: f64, now: f64) -> String {
    format!("{} → {}", count(then), count(now))
}

/// Why `e` likely explains what the query shows now against its baseline, if the evidence
/// is direct.
fn evidence(
    e: &Event,
    i: &Insight,
    now: Option<PerCall>,
    then: Option<PerCall>,
    tl: &Timeline,
) -> Option<String> {
    let kind = i.kind.as_str();
    let (now, then) = (now?, then.unwrap_or_default());
    let grew = |a: f64, b: f64, floor: f64| b >= floor && b >= 2.0 * a;
    let text = i.text.as_deref().unwrap_or("");
    match &e.what {
        What::IndexDropped {
            table, database, ..
        } => {
            let scans = scans_shift(tl, database, table);
            (reads_table(text, table)
                && (now.mean_ms >= 2.0 * then.mean_ms
                    || grew(then.read, now.read, 10.0)
                    || scans.is_some()))
            .then(|| {
                let mut s = format!(
                    "the query reads {table}: mean {} → {} ms since",
                    fmt_ms(then.mean_ms),
                    fmt_ms(now.mean_ms)
                );
                if let Some(scans) = scans {
                    s.push_str("; ");
                    s.push_str(&scans);
                }
                s
            })
        }
        What::IndexCreated { table, .. } => {
            (kind == "regression" && reads_table(text, table) && now.mean_ms >= 2.0 * then.mean_ms)
                .then(|| {
                    format!(
                        "the query reads {table} and the planner may now choose the new index: \
                     mean {} → {} ms; EXPLAIN it",
                        fmt_ms(then.mean_ms),
                        fmt_ms(now.mean_ms)
                    )
                })
        }
        What::Restart => grew(then.read, now.read, 10.0).then(|| {
            format!(
                "blocks read from disk per call {}: the cache was cold after the restart",
                then_now(then.read, now.read)
            )
        }),
        // A reset explains nothing by itself; it is told as a change.
        What::StatsReset { .. } => None,
        What::Setting { name, from, to, .. } => {
            let down = lowered(from.as_deref(), to.as_deref());
            if SPILL.contains(&name.as_str()) && down == Some(true) {
                grew(then.temp, now.temp, 1.0).then(|| {
                    format!(
                        "temp blocks written per call {}",
                        then_now(then.temp, now.temp)
                    )
                })
            } else if name == "shared_buffers" && down == Some(true) {
                grew(then.read, now.read, 10.0).then(|| {
                    format!(
                        "blocks read from disk per call {}",
                        then_now(then.read, now.read)
                    )
                })
            } else if is_planner(name) && kind == "regression" {
                let same_rows = now.rows <= 1.5 * then.rows.max(1.0);
                (same_rows && now.mean_ms >= 2.0 * then.mean_ms).then(|| {
                    format!(
                        "a planner setting: the plan may have changed (mean {} → {} ms, same rows per call); EXPLAIN it",
                        fmt_ms(then.mean_ms),
                        fmt_ms(now.mean_ms)
                    )
                })
            } else {
                None
            }
        }
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.2}")
    }
}

/// "seq scans on public.orders 12 → 4,800 per hour, index scans 9,000 → 0", when PoWA
/// recorded the table's scans in the baseline and the window and they moved from index
/// to sequential scans: seq scans at least doubled (and at least one an hour), index
/// scans at least halved.
fn scans_shift(tl: &Timeline, database: &str, table: &str) -> Option<String> {
    let s = tl
        .scans
        .iter()
        .find(|s| s.table == table && s.database == database)?;
    let (a, b) = (s.then?, s.now?);
    let more_seq = b.seq_per_hour >= 1.0 && b.seq_per_hour >= 2.0 * a.seq_per_hour;
    let fewer_idx = a.idx_per_hour > 0.0 && b.idx_per_hour <= a.idx_per_hour / 2.0;
    (more_seq && fewer_idx).then(|| {
        format!(
            "seq scans on {table} {} per hour, index scans {}",
            then_now(a.seq_per_hour, b.seq_per_hour),
            then_now(a.idx_per_hour, b.idx_per_hour)
        )
    })
}

/// Settings that move by themselves (computed at start-up): true changes, told nowhere.
fn is_noise(e: &Event) -> bool {
    matches!(&e.what, What::Setting { name, .. } if name == "pg_stat_kcache.linux_hz")
}

/// Whether a change scoped to a database or role applies to the finding's.
fn applies(e: &Event, i: &Insight) -> bool {
    match &e.what {
        What::Setting { database, role, .. } => {
            database
                .as_deref()
                .is_none_or(|d| i.label("database") == Some(d))
                && role.as_deref().is_none_or(|r| i.label("user") == Some(r))
        }
        What::Restart => true,
        What::IndexDropped { database, .. } | What::IndexCreated { database, .. } => {
            i.label("database") == Some(database.as_str())
        }
        What::StatsReset { databases } => {
            databases.is_empty()
                || databases
                    .iter()
                    .any(|d| i.label("database") == Some(d.as_str()))
        }
    }
}

/// The query of a finding, now and in the nearest baseline.
fn query_of<'a>(
    i: &Insight,
    w: &'a StatementsWindow,
) -> (Option<&'a QueryStats>, Option<&'a QueryStats>) {
    let Some(qid) = i.label("queryid").and_then(|q| q.parse::<i64>().ok()) else {
        return (None, None);
    };
    let now = w.queries.iter().find(|q| {
        q.key.queryid == qid
            && i.label("database") == Some(super::database_name(q).as_str())
            && i.label("user").is_none_or(|u| {
                q.user.as_deref() == Some(u) || u == format!("oid {}", q.key.userid)
            })
    });
    let then = now.and_then(|n| {
        w.baselines
            .first()
            .and_then(|b| b.queries.iter().find(|q| q.key == n.key))
    });
    (now, then)
}

/// How many queries of the window no baseline has: many at once is a release.
fn new_queries(w: &StatementsWindow) -> usize {
    if w.baselines.iter().all(|b| b.queries.is_empty()) {
        return 0;
    }
    w.queries
        .iter()
        .filter(|q| {
            !w.baselines.iter().any(|b| {
                b.queries
                    .iter()
                    .any(|p| p.key.queryid == q.key.queryid && p.key.dbid == q.key.dbid)
            })
        })
        .count()
}

/// Puts on each comparing finding of `w` the changes between its baseline and now.
pub fn attach(insights: &mut [Insight], w: &StatementsWindow) {
    let Some(tl) = &w.changes else {
        return;
    };
    let mut fresh = None;
    for i in insights
        .iter_mut()
        .filter(|i| COMPARING.contains(&i.kind.as_str()))
    {
        if let crate::powa::changes::Availability::Missing(why) = &tl.availability {
            if !tl.indexes {
                i.labels.insert(NO_HISTORY_LABEL.to_string(), why.clone());
                continue;
            }
        }
        if let Some(note) = &tl.catalog_note {
            i.labels.insert(CATALOG_AGE_LABEL.to_string(), note.clone());
        }
        let from = w
            .baselines
            .first()
            .map_or(w.window.start, |b| b.window.start);
        let (q_now, q_then) = query_of(i, w);
        let (now, then) = (q_now.and_then(PerCall::of), q_then.and_then(PerCall::of));
        let mut changes: Vec<Change> = tl
            .between(from, w.window.end)
            .into_iter()
            .filter(|e| applies(e, i) && !is_noise(e))
            .map(|e| {
                let (what, kind) = describe(e);
                let evidence = evidence(e, i, now, then, tl);
                Change {
                    at: e.at,
                    kind: kind.to_string(),
                    what,
                    undo: evidence.as_ref().and_then(|_| undo(e)),
                    evidence,
                }
            })
            .collect();
        let n_new = *fresh.get_or_insert_with(|| new_queries(w));
        if n_new >= RELEASE_NEW_QUERIES || (i.rule.ends_with("new_heavy_query") && n_new > 1) {
            let new_here = i.rule.ends_with("new_heavy_query");
            changes.push(Change {
                at: w.window.start,
                kind: "new_queries".to_string(),
                what: format!("{n_new} queries not seen in the baseline"),
                evidence: new_here.then(|| {
                    format!("this query is one of {n_new} new since the baseline: a release")
                }),
                undo: None,
            });
        }
        // The likely causes first kept, then the nearest others; shown nearest first.
        if changes.len() > MAX_CHANGES {
            let mut keep: Vec<usize> = (0..changes.len())
                .filter(|&k| changes[k].evidence.is_some())
                .collect();
            keep.extend((0..changes.len()).filter(|&k| changes[k].evidence.is_none()));
            keep.truncate(MAX_CHANGES);
            keep.sort_unstable();
            changes = keep.into_iter().map(|k| changes[k].clone()).collect();
        }
        i.changes = changes;
    }
}

/// `[analyzers.settings_change]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsChangeSettings {
    pub enabled: bool,
}

impl Default for SettingsChangeSettings {
    fn default() -> Self {
        SettingsChangeSettings { enabled: true }
    }
}

impl AnalyzerSettings for SettingsChangeSettings {
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn check(&self, _c: &mut Checks<'_>) {}
}

/// Performance settings changed within the window, one info finding per server.
pub type SettingsChangeAnalyzer = WindowAnalyzer<SettingsChangeSettings>;
analyze_statements!(SettingsChangeAnalyzer, "settings_change");

impl WindowRules<SettingsChangeSettings> for SettingsChangeAnalyzer {
    fn findings(&self, _s: &SettingsChangeSettings, w: &StatementsWindow) -> Vec<Insight> {
        let Some(tl) = &w.changes else {
            return Vec::new();
        };
        let mut changed: Vec<(&Event, &'static str)> = tl
            .between(w.window.start, w.window.end)
            .into_iter()
            .filter_map(|e| match &e.what {
                What::Setting { name, .. } => performance_family(name).map(|f| (e, f)),
                _ => None,
            })
            .collect();
        if changed.is_empty() {
            return Vec::new();
        }
        changed.reverse(); // oldest first in the identity, nearest first when told
        let identity: Vec<String> = changed
            .iter()
            .map(|(e, _)| format!("{}@{}", describe(e).0, e.at.timestamp()))
            .collect();
        let tags: Vec<&str> = std::iter::once("settings_change")
            .chain(identity.iter().map(String::as_str))
            .collect();
        changed.reverse();
        let mut families: Vec<&str> = changed.iter().map(|(_, f)| *f).collect();
        families.sort_unstable();
        families.dedup();
        let names: Vec<String> = {
            let mut v: Vec<String> = changed
                .iter()
                .filter_map(|(e, _)| match &e.what {
                    What::Setting { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .collect();
            v.dedup();
            v
        };
        let n = changed.len();
        let mut i = insight(
            w,
            "settings_change",
            "performance",
            server_fingerprint(w, &tags),
        );
        i.severity = Severity::Info;
        i.title = format!(
            "{n} {} setting{} changed on {}: {}",
            families.join("/"),
            if n == 1 { "" } else { "s" },
            w.server.name,
            names.join(", ")
        );
        i.advice = "If a finding got worse since, these are the first suspects; pg_track_settings \
                    keeps the full history (SELECT * FROM pg_track_settings_log('<name>'))."
            .to_string();
        i.labels.insert(EVENT_LABEL.to_string(), "true".to_string());
        i.metrics.insert("settings_changed".to_string(), n as f64);
        // Its identity is the set of changes: another change is another finding, so the
        // size only says how many (the gate's convention, like every analyzer's).
        i.metrics.insert(super::MAGNITUDE.to_string(), n as f64);
        i.changes = changed
            .iter()
            .map(|(e, f)| Change {
                at: e.at,
                kind: "setting".to_string(),
                what: format!("{} ({f})", describe(e).0),
                evidence: None,
                undo: None,
            })
            .collect();
        vec![i]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use sentinel_actors::Window;

    use super::*;
    use crate::powa::changes::{Availability, Timeline};
    use crate::powa::discovery::ServerInfo;
    use crate::powa::reader::{Counters, QueryKey, COUNTERS};
    const N: usize = COUNTERS.len();

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn q(queryid: i64, calls: f64, time: f64, temp: f64, read: f64) -> QueryStats {
        let mut c: Counters = [0.0; N];
        c[CALLS] = calls;
        c[EXEC_TIME] = time;
        c[ROWS] = calls;
        c[TEMP_WRITTEN] = temp;
        c[SHARED_READ] = read;
        QueryStats {
            key: QueryKey {
                dbid: 5,
                userid: 10,
                queryid,
                toplevel: None,
            },
            database: Some(Arc::from("etl")),
            user: Some(Arc::from("app")),
            counters: c,
            kcache: None,
            query: Some(Arc::from("SELECT 1")),
        }
    }

    fn setting(at: i64, name: &str, from: &str, to: &str, db: Option<&str>) -> Event {
        Event {
            at: t(at),
            what: What::Setting {
                name: name.into(),
                from: Some(from.into()),
                to: Some(to.into()),
                database: db.map(str::to_string),
                role: None,
            },
        }
    }

    /// A window of the last hour over a baseline a day before, with `events` recorded.
    fn window(now: Vec<QueryStats>, then: Vec<QueryStats>, events: Vec<Event>) -> StatementsWindow {
        let server = ServerInfo::named(1, "db1");
        let w = Window {
            start: t(0),
            end: t(60),
        };
        let b = Window {
            start: t(-24 * 60),
            end: t(-23 * 60),
        };
        let mut sw = StatementsWindow::new("main", server.clone(), w, now);
        sw.baselines = vec![StatementsWindow::new("main", server, b, then)];
        sw.changes = Some(Arc::new(Timeline {
            availability: Availability::Available,
            events,
            since: t(-24 * 60),
            indexes: true,
            scans: Vec::new(),
            catalog_note: None,
        }));
        sw
    }

    fn finding(w: &StatementsWindow, kind: &str, rule: &str) -> Insight {
        super::super::query_insight(w, &w.queries[0], kind, rule, &[kind])
    }

    #[test]
    fn a_lowered_work_mem_explains_the_temp_spill_and_other_databases_stay_out() {
        let events = vec![
            setting(-600, "work_mem", "64MB", "64kB", Some("etl")),
            setting(-300, "work_mem", "4MB", "1MB", Some("other")),
            setting(-100, "log_min_duration_statement", "-1", "1s", None),
            Event {
                at: t(-50),
                what: What::Restart,
            },
        ];
        let w = window(
            vec![q(7, 100.0, 5000.0, 53_000.0, 0.0)],
            vec![q(7, 100.0, 500.0, 0.0, 0.0)],
            events,
        );
        let mut out = vec![finding(&w, "workload_change", "workload_change.temp_spill")];
        attach(&mut out, &w);
        let c = &out[0].changes;
        assert_eq!(c.len(), 3, "{c:?}");
        // Nearest first: the restart, the logging change, then work_mem on etl.
        assert_eq!(c[0].kind, "restart");
        assert_eq!(c[0].evidence, None, "no disk reads grew");
        assert!(c[1].what.contains("log_min_duration_statement"));
        assert_eq!(c[2].what, "work_mem 64MB → 64kB on database etl");
        assert_eq!(
            c[2].evidence.as_deref(),
            Some("temp blocks written per call 0 → 530")
        );
        assert_eq!(
            c[2].undo.as_deref(),
            Some("ALTER DATABASE etl SET work_mem = '64MB';")
        );
        assert_eq!(c[0].undo, None, "only a likely cause says how to undo it");
    }

    #[test]
    fn a_raised_work_mem_is_not_the_cause_and_a_restart_explains_disk_reads() {
        let events = vec![
            setting(-600, "work_mem", "4MB", "64MB", None),
            Event {
                at: t(-50),
                what: What::Restart,
            },
        ];
        let w = window(
            vec![q(7, 100.0, 5000.0, 53_000.0, 90_000.0)],
            vec![q(7, 100.0, 500.0, 0.0, 100.0)],
            events,
        );
        let mut out = vec![finding(&w, "regression", "regression.mean_time")];
        attach(&mut out, &w);
        let c = &out[0].changes;
        assert_eq!(c[1].evidence, None, "work_mem went up: {c:?}");
        assert!(c[0]
            .evidence
            .as_deref()
            .unwrap()
            .contains("cold after the restart"));
    }

    #[test]
    fn a_planner_setting_explains_a_slower_plan_with_the_same_rows() {
        let w = window(
            vec![q(7, 100.0, 9000.0, 0.0, 0.0)],
            vec![q(7, 100.0, 100.0, 0.0, 0.0)],
            vec![setting(-10, "random_page_cost", "1.1", "40", None)],
        );
        let mut out = vec![finding(&w, "regression", "regression.mean_time")];
        attach(&mut out, &w);
        let e = out[0].changes[0].evidence.as_deref().unwrap();
        assert!(e.contains("mean 1.00 → 90 ms"), "{e}");
    }

    #[test]
    fn changes_before_the_baseline_or_on_findings_that_compare_with_nothing_stay_out() {
        let w = window(
            vec![q(7, 100.0, 9000.0, 0.0, 0.0)],
            vec![q(7, 100.0, 100.0, 0.0, 0.0)],
            vec![setting(-2000, "random_page_cost", "1.1", "40", None)],
        );
        let mut out = vec![
            finding(&w, "regression", "regression.mean_time"),
            finding(&w, "slow_query", "slow_query.total_time"),
        ];
        attach(&mut out, &w);
        assert!(out.iter().all(|i| i.changes.is_empty()));
    }

    #[test]
    fn a_new_heavy_query_among_many_new_ones_is_a_release() {
        let now: Vec<QueryStats> = (0..12).map(|k| q(100 + k, 10.0, 10.0, 0.0, 0.0)).collect();
        let w = window(now, vec![q(1, 10.0, 10.0, 0.0, 0.0)], Vec::new());
        let mut out = vec![finding(
            &w,
            "workload_change",
            "workload_change.new_heavy_query",
        )];
        attach(&mut out, &w);
        let c = &out[0].changes[0];
        assert_eq!(c.kind, "new_queries");
        assert_eq!(
            c.evidence.as_deref(),
            Some("this query is one of 12 new since the baseline: a release")
        );
    }

    #[test]
    fn no_history_says_why() {
        let mut w = window(vec![q(7, 1.0, 1.0, 0.0, 0.0)], Vec::new(), Vec::new());
        w.changes = Some(Arc::new(Timeline::missing("install it", t(0))));
        let mut out = vec![finding(&w, "regression", "regression.mean_time")];
        attach(&mut out, &w);
        assert_eq!(out[0].label(NO_HISTORY_LABEL), Some("install it"));
        assert!(out[0].changes.is_empty());
    }

    #[test]
    fn performance_settings_changed_in_the_window_are_one_event_per_server() {
        let w = window(
            vec![q(7, 1.0, 1.0, 0.0, 0.0)],
            Vec::new(),
            vec![
                setting(-90, "work_mem", "4MB", "8MB", None),
                setting(10, "work_mem", "8MB", "64kB", None),
                setting(20, "log_line_prefix", "a", "b", None),
                setting(30, "random_page_cost", "4", "1.1", None),
            ],
        );
        let a = SettingsChangeAnalyzer::new(SettingsChangeSettings::default());
        let out = a.analyze_window(&w);
        assert_eq!(out.len(), 1);
        let i = &out[0];
        assert_eq!(
            i.title,
            "2 memory/planner settings changed on db1: random_page_cost, work_mem"
        );
        assert_eq!(i.label(EVENT_LABEL), Some("true"));
        assert_eq!(i.metric(super::super::MAGNITUDE), Some(2.0));
        assert_eq!(i.changes[0].what, "random_page_cost 4 → 1.1 (planner)");
        // Another change makes another finding.
        let mut w2 = window(vec![q(7, 1.0, 1.0, 0.0, 0.0)], Vec::new(), Vec::new());
        w2.changes = Some(Arc::new(Timeline {
            availability: Availability::Available,
            events: vec![setting(10, "work_mem", "8MB", "64kB", None)],
            since: t(-100),
            indexes: false,
            scans: Vec::new(),
            catalog_note: None,
        }));
        assert_ne!(a.analyze_window(&w2)[0].fingerprint, i.fingerprint);
    }

    #[test]
    fn a_dropped_index_on_the_table_the_query_reads_is_the_cause_and_is_built_again() {
        let dropped = |table: &str| Event {
            at: t(-5),
            what: What::IndexDropped {
                database: "etl".into(),
                table: table.into(),
                index: "public.orders_created_at_idx".into(),
                def: "CREATE INDEX orders_created_at_idx ON public.orders USING btree (created_at)"
                    .into(),
                seen_until: t(-10),
            },
        };
        let mut now = q(7, 100.0, 9000.0, 0.0, 50_000.0);
        now.query = Some(Arc::from("SELECT * FROM orders WHERE created_at > $1"));
        let w = window(
            vec![now],
            vec![q(7, 100.0, 100.0, 0.0, 10.0)],
            vec![dropped("public.orders"), dropped("public.orders_archive")],
        );
        let mut out = vec![finding(&w, "regression", "regression.mean_time")];
        attach(&mut out, &w);
        let c = &out[0].changes;
        assert_eq!(c.len(), 2, "{c:?}");
        let cause: Vec<_> = c.iter().filter(|c| c.evidence.is_some()).collect();
        assert_eq!(cause.len(), 1, "only the table the query reads: {c:?}");
        assert!(cause[0]
            .what
            .starts_with("index public.orders_created_at_idx on public.orders, there at "));
        assert_eq!(
            cause[0].undo.as_deref(),
            Some("CREATE INDEX CONCURRENTLY orders_created_at_idx ON public.orders USING btree (created_at);")
        );
        assert!(reads_table("select 1 from \"orders\" o", "public.orders"));
        assert!(!reads_table(
            "select 1 from orders_archive",
            "public.orders"
        ));
    }

    #[test]
    fn a_catalog_drop_with_scans_moved_names_them_and_has_no_statement() {
        use crate::powa::catalog::{Scans, TableScans};
        let mut now = q(7, 100.0, 900.0, 0.0, 0.0);
        now.query = Some(Arc::from(
            "SELECT count(*) FROM orders WHERE created_at > $1",
        ));
        let mut w = window(
            vec![now],
            vec![q(7, 100.0, 800.0, 0.0, 0.0)],
            vec![Event {
                at: t(-5),
                what: What::IndexDropped {
                    database: "etl".into(),
                    table: "public.orders".into(),
                    index: "public.orders_created_at_idx".into(),
                    def: String::new(),
                    seen_until: t(-10),
                },
            }],
        );
        let scans = |seq: f64, idx: f64| {
            Some(Scans {
                seq_per_hour: seq,
                idx_per_hour: idx,
            })
        };
        let base = (**w.changes.as_ref().unwrap()).clone();
        let with = |then, now| {
            let mut tl = base.clone();
            tl.scans = vec![TableScans {
                database: "etl".into(),
                table: "public.orders".into(),
                then,
                now,
            }];
            Arc::new(tl)
        };
        // Mean barely moved: the scans alone make the index the cause.
        w.changes = Some(with(scans(12.0, 9000.0), scans(4800.0, 0.0)));
        let mut out = vec![finding(&w, "regression", "regression.mean_time")];
        attach(&mut out, &w);
        let c = &out[0].changes[0];
        assert_eq!(
            c.evidence.as_deref(),
            Some("the query reads public.orders: mean 8.00 → 9.00 ms since; seq scans on public.orders 12 → 4,800 per hour, index scans 9,000 → 0")
        );
        assert_eq!(c.undo, None, "the catalog has no definition");
        // Index scans that did not fall are no evidence.
        w.changes = Some(with(scans(12.0, 9000.0), scans(4800.0, 8000.0)));
        let mut out = vec![finding(&w, "regression", "regression.mean_time")];
        attach(&mut out, &w);
        assert_eq!(out[0].changes[0].evidence, None);
    }

    #[test]
    fn undo_puts_each_scope_back() {
        let mut e = setting(0, "work_mem", "4MB", "64kB", None);
        assert_eq!(
            undo(&e).as_deref(),
            Some("ALTER SYSTEM SET work_mem = '4MB'; SELECT pg_reload_conf();")
        );
        if let What::Setting {
            from,
            role,
            database,
            ..
        } = &mut e.what
        {
            *from = None;
            *role = Some("App".into());
            *database = Some("etl".into());
        }
        assert_eq!(
            undo(&e).as_deref(),
            Some("ALTER ROLE \"App\" IN DATABASE etl RESET work_mem;")
        );
        assert_eq!(
            undo(&Event {
                at: t(0),
                what: What::Restart
            }),
            None
        );
    }

    #[test]
    fn memory_values_compare_across_units() {
        assert_eq!(lowered(Some("64MB"), Some("64kB")), Some(true));
        assert_eq!(lowered(Some("4096"), Some("8MB")), Some(false));
        assert_eq!(lowered(Some("on"), Some("off")), None);
        assert_eq!(performance_family("autovacuum_naptime"), Some("autovacuum"));
        assert_eq!(performance_family("max_wal_size"), Some("WAL"));
        assert_eq!(
            performance_family("max_parallel_workers_per_gather"),
            Some("parallelism")
        );
        assert_eq!(performance_family("shared_buffers"), Some("memory"));
        assert_eq!(performance_family("log_line_prefix"), None);
    }
}
