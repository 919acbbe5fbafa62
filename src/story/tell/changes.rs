//! What changed on the server since a story's baseline ([`crate::analyze::changes`]): the
//! change that likely explains it leads the cause line ("work_mem 64MB → 64kB on database
//! etl at 14:02 UTC: temp blocks written per call 0 → 530"), the others are listed on a
//! line of their own, nearest first; a server without a change history says so.

use chrono::{DateTime, Utc};
use sentinel_actors::Change;

use super::{Story, Told};
use crate::analyze::changes::{CATALOG_AGE_LABEL, NO_HISTORY_LABEL};
use crate::render::Lang;

/// At most this many changes are listed besides the causes; the rest are counted.
const MAX_LISTED: usize = 3;

/// "14:02 UTC", with the day when it is not the report's.
fn when(at: DateTime<Utc>, end: DateTime<Utc>) -> String {
    if at.date_naive() == end.date_naive() {
        at.format("%H:%M UTC").to_string()
    } else {
        at.format("%m-%d %H:%M UTC").to_string()
    }
}

/// One change in words, with its time where it has one.
pub(super) fn said(c: &Change, end: DateTime<Utc>, lang: Lang) -> String {
    if c.kind == "new_queries" {
        return c.what.clone();
    }
    let at = when(c.at, end);
    if lang.is_zh() {
        format!("{at} {}", c.what)
    } else if c.kind == "index_dropped" {
        // Found gone at the look at `at`: dropped by then.
        format!("{} by {at}", c.what)
    } else {
        format!("{} at {at}", c.what)
    }
}

/// Adds the story's changes to `t`: likely causes before its cause, the others listed.
pub(super) fn tell(s: &Story<'_>, lang: Lang, t: &mut Told) {
    let end = s.lead.window.end;
    let mut all: Vec<&Change> = Vec::new();
    for c in s.findings().flat_map(|i| i.changes.iter()) {
        match all.iter_mut().find(|x| x.at == c.at && x.what == c.what) {
            // The same change on two findings of the story: keep the one with evidence.
            Some(x) if x.evidence.is_none() && c.evidence.is_some() => *x = c,
            Some(_) => {}
            None => all.push(c),
        }
    }
    all.sort_by_key(|c| std::cmp::Reverse(c.at));
    let causes: Vec<String> = all
        .iter()
        .filter_map(|c| {
            let e = c.evidence.as_deref()?;
            Some(format!("{}: {e}", said(c, end, lang)))
        })
        .collect();
    if !causes.is_empty() {
        let sep = lang.pick("; ", "；");
        let mut cause = causes.join(sep);
        if let Some(own) = t.cause.take() {
            cause = format!("{cause}{sep}{own}");
        }
        t.cause = Some(cause);
    }
    let others: Vec<&&Change> = all.iter().filter(|c| c.evidence.is_none()).collect();
    t.changed = others
        .iter()
        .take(MAX_LISTED)
        .map(|c| said(c, end, lang))
        .collect();
    if others.len() > MAX_LISTED {
        let more = others.len() - MAX_LISTED;
        t.changed.push(if lang.is_zh() {
            format!("另有 {more} 项")
        } else {
            format!("+{more} more")
        });
    }
    if let Some(note) = s.findings().find_map(|i| i.label(CATALOG_AGE_LABEL)) {
        t.changed.push(note.to_string());
    }
    if all.is_empty() && s.findings().any(|i| i.label(NO_HISTORY_LABEL).is_some()) {
        t.changed.push(
            lang.pick(
                "no change history for this server (powa-sentinel check says how to enable it)",
                "此服务器没有变更历史（powa-sentinel check 说明如何启用）",
            )
            .to_string(),
        );
    }
}

/// The changes of one server in a report's "Changes" section, nearest first.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerChanges {
    /// The server's name (with its repository when the report spans several).
    pub server: String,
    /// Each change in words with its time: compact, without its evidence or the
    /// statement that undoes it (those stay in the story it explains).
    pub items: Vec<String>,
}

/// The families a settings-change finding adds to a change's words ("(memory)"): the
/// same change told by a regression has none, and the section tells it once.
const FAMILIES: [&str; 5] = ["memory", "planner", "parallelism", "autovacuum", "WAL"];

fn without_family(what: &str) -> &str {
    FAMILIES
        .iter()
        .find_map(|f| {
            what.strip_suffix(')')
                .and_then(|w| w.strip_suffix(f))
                .and_then(|w| w.strip_suffix(" ("))
        })
        .unwrap_or(what)
}

/// The report's "Changes" section: per server (in the order the stories first name
/// them), the distinct changes the open stories hold, nearest first; `place_of` names a
/// server. A "new queries" note is about one query, not the server: it stays in its
/// story.
///
/// Why a change already told in a story is listed again: the section is the server's
/// timeline, which a reader scans to see everything that moved; each item is short (what
/// and when, at most one line's worth), while the evidence and the undo statement are
/// told once, in the story. The section is left out (None) only when it would say
/// nothing new: no changes at all, or a single story whose own lines already list every
/// one of them.
pub fn section(
    stories: &[Story<'_>],
    end: DateTime<Utc>,
    lang: Lang,
    server_of: &dyn Fn(&sentinel_actors::Insight) -> String,
) -> Vec<ServerChanges> {
    let open: Vec<&Story<'_>> = stories.iter().filter(|s| !s.is_resolved()).collect();
    let mut by_server: Vec<(String, Vec<&Change>)> = Vec::new();
    for s in &open {
        for i in s.findings().chain(s.elsewhere.iter().copied()) {
            let server = server_of(i);
            let k = match by_server.iter().position(|(n, _)| *n == server) {
                Some(k) => k,
                None => {
                    by_server.push((server, Vec::new()));
                    by_server.len() - 1
                }
            };
            let list = &mut by_server[k].1;
            for c in i.changes.iter().filter(|c| c.kind != "new_queries") {
                let same = |x: &&Change| {
                    x.at == c.at
                        && x.kind == c.kind
                        && without_family(&x.what) == without_family(&c.what)
                };
                if !list.iter().any(same) {
                    list.push(c);
                }
            }
        }
    }
    by_server.retain(|(_, l)| !l.is_empty());
    if by_server.is_empty() || (open.len() == 1 && all_told(open[0])) {
        return Vec::new();
    }
    by_server
        .into_iter()
        .map(|(server, mut l)| {
            l.sort_by_key(|c| std::cmp::Reverse(c.at));
            let items = l
                .into_iter()
                .map(|c| {
                    let c = Change {
                        what: without_family(&c.what).to_string(),
                        ..c.clone()
                    };
                    said(&c, end, lang)
                })
                .collect();
            ServerChanges { server, items }
        })
        .collect()
}

/// Whether the story's own lines list every change it holds (the causes on the cause
/// line, the others within [`MAX_LISTED`]; a settings change lists all of its own).
fn all_told(s: &Story<'_>) -> bool {
    if s.lead.kind == "settings_change" && s.support.is_empty() && s.elsewhere.is_empty() {
        return true;
    }
    if !s.elsewhere.is_empty() {
        return false;
    }
    let mut seen: Vec<(&DateTime<Utc>, &str)> = Vec::new();
    let mut others = 0;
    for c in s.findings().flat_map(|i| i.changes.iter()) {
        if seen.contains(&(&c.at, c.what.as_str())) {
            continue;
        }
        seen.push((&c.at, &c.what));
        if c.evidence.is_none() {
            others += 1;
        }
    }
    others <= MAX_LISTED
}

/// A settings-change finding: its title, what it means as the impact line (not a fix:
/// nothing is wrong yet), and the changes listed with their times.
pub(super) fn settings_change(lead: &super::Lead<'_>, t: &mut Told) -> String {
    let i = lead.i;
    let end = i.window.end;
    if !i.advice.trim().is_empty() {
        t.impact = Some(i.advice.clone());
    }
    // The renderer takes the lead's advice as the fix when nothing else is: this one is
    // said as the impact already.
    t.advice = Some(String::new());
    t.changed = i.changes.iter().map(|c| said(c, end, lead.lang)).collect();
    i.title.clone()
}

/// When no index statement is the fix, the statement that undoes the likely cause is:
/// "ALTER DATABASE etl SET work_mem = '64MB';" (if the change was not meant).
pub(super) fn fix(s: &Story<'_>, lang: Lang, t: &mut Told) {
    if t.ddl.is_some() {
        return;
    }
    let end = s.lead.window.end;
    let Some(c) = s
        .findings()
        .flat_map(|i| i.changes.iter())
        .filter(|c| c.undo.is_some())
        .max_by_key(|c| c.at)
    else {
        return;
    };
    t.ddl = c.undo.clone();
    t.ddl_note = Some(if lang.is_zh() {
        format!("撤销 {} 的变更（如非有意为之）", when(c.at, end))
    } else {
        format!(
            "undoes the change at {}, if it was not meant",
            when(c.at, end)
        )
    });
    t.advice = None;
}

#[cfg(test)]
mod tests {
    use sentinel_actors::Severity;

    use super::*;
    use crate::story::fixture::insight;
    use crate::story::stories;

    fn change(min: i64, what: &str, evidence: Option<&str>) -> Change {
        Change {
            at: DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap(),
            kind: "setting".into(),
            what: what.into(),
            evidence: evidence.map(str::to_string),
            undo: None,
        }
    }

    #[test]
    fn the_likely_cause_leads_and_the_rest_are_listed_nearest_first() {
        let mut i = insight("regression.mean_time", "db1", "7", Severity::Warning);
        i.window.end = DateTime::<Utc>::from_timestamp(1_700_000_000 + 90 * 60, 0).unwrap();
        i.changes = vec![
            change(60, "the server restarted", None),
            change(
                30,
                "work_mem 64MB → 64kB",
                Some("temp blocks written per call 0 → 530"),
            ),
            change(10, "jit off → on", None),
        ];
        let all = [i];
        let s = &stories(&all)[0];
        let mut t = Told {
            cause: Some("it spills to temp files".into()),
            ..Told::default()
        };
        tell(s, Lang::En, &mut t);
        assert_eq!(
            t.cause.as_deref(),
            Some("work_mem 64MB → 64kB at 22:43 UTC: temp blocks written per call 0 → 530; it spills to temp files")
        );
        assert_eq!(
            t.changed,
            [
                "the server restarted at 23:13 UTC",
                "jit off → on at 22:23 UTC"
            ]
        );
    }

    #[test]
    fn a_server_without_history_says_so() {
        let mut i = insight("regression.mean_time", "db1", "7", Severity::Warning);
        i.labels
            .insert(NO_HISTORY_LABEL.to_string(), "install it".to_string());
        let all = [i];
        let mut t = Told::default();
        tell(&stories(&all)[0], Lang::En, &mut t);
        assert_eq!(t.changed.len(), 1);
        assert!(t.changed[0].starts_with("no change history for this server"));
    }
}
