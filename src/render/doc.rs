//! The provider-neutral document: what a report says, before any dialect writes it.
//!
//! A report is a [`Header`] plus one [`Entry`] per story (and, in a digest, one
//! [`Digest`] block that counts the entries not shown in full). Everything here is worded
//! in the report's language but neither escaped nor marked up: the layout
//! ([`super::layout`]) escapes as it builds spans, the dialect marks them up.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Insight, Notification, NotifyReason, Severity};

use super::line::Color;
use super::link::{powa_web_link, MAX_URL_BYTES};
use super::words::{Lang, Word};
use super::RenderOptions;
use crate::story::{self, Story};

/// Entries per severity; resolved ones are counted apart.
struct Tally {
    open: [(Severity, usize); 3],
    resolved: usize,
}

impl Tally {
    fn of(stories: &[Story<'_>]) -> Tally {
        let mut t = Tally {
            open: [
                (Severity::Critical, 0),
                (Severity::Warning, 0),
                (Severity::Info, 0),
            ],
            resolved: 0,
        };
        for s in stories {
            if s.is_resolved() {
                t.resolved += 1;
                continue;
            }
            for c in t.open.iter_mut() {
                if c.0 == s.severity {
                    c.1 += 1;
                }
            }
        }
        t
    }

    /// "1 critical", "2 warning", "1 resolved" (the counts that are not zero), each with
    /// its tone.
    fn worded(&self, lang: Lang) -> Vec<(String, Color)> {
        let mut out: Vec<(String, Color)> = self
            .open
            .iter()
            .filter(|c| c.1 > 0)
            .map(|(s, c)| (lang.count(lang.severity(*s), *c), Color::of(*s)))
            .collect();
        if self.resolved > 0 {
            out.push((
                lang.count(lang.word(Word::ResolvedCount), self.resolved),
                Color::Info,
            ));
        }
        out
    }
}

/// What the header says: counts per severity, the covered window.
pub(crate) struct Summary {
    reason: NotifyReason,
    tally: Tally,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    /// How many repositories the insights come from (entries name theirs when several).
    pub(crate) repositories: usize,
}

impl Summary {
    /// Counts entries (what the reader sees), by their severity.
    pub(crate) fn of(n: &Notification, stories: &[Story<'_>]) -> Summary {
        let repos: BTreeSet<&str> = n
            .insights
            .iter()
            .filter_map(|i| i.label("repository"))
            .collect();
        Summary {
            reason: n.reason,
            tally: Tally::of(stories),
            start: n.insights.iter().map(|i| i.window.start).min(),
            end: n.insights.iter().map(|i| i.window.end).max(),
            repositories: repos.len(),
        }
    }

    fn window_text(&self) -> Option<String> {
        let (s, e) = (self.start?, self.end?);
        let fmt = "%Y-%m-%d %H:%M";
        Some(if s.date_naive() == e.date_naive() {
            format!("{}–{} UTC", s.format(fmt), e.format("%H:%M"))
        } else {
            format!("{} – {} UTC", s.format(fmt), e.format(fmt))
        })
    }
}

/// The header of one part.
pub(crate) struct Header {
    /// "PoWA Sentinel report (part 2/3)".
    pub(crate) title: String,
    /// Entries per severity, worded, each with its tone.
    pub(crate) counts: Vec<(String, Color)>,
    /// The window the insights cover.
    pub(crate) window: Option<String>,
    /// The page of everything that fires now (action links on).
    pub(crate) report_link: Option<(Word, String)>,
}

impl Header {
    pub(crate) fn of(sum: &Summary, part: Option<(usize, usize)>, lang: Lang) -> Header {
        let mut title = match sum.reason {
            NotifyReason::Report => lang.word(Word::Report),
            NotifyReason::Immediate => lang.word(Word::Alert),
        }
        .to_string();
        if let Some((i, n)) = part {
            title.push_str(&lang.part(i, n));
        }
        Header {
            title,
            counts: sum.tally.worded(lang),
            window: sum.window_text(),
            report_link: None,
        }
    }

    pub(crate) fn plain_counts(&self) -> Vec<&str> {
        self.counts.iter().map(|(t, _)| t.as_str()).collect()
    }
}

/// What an entry's first line marks: its severity and lifecycle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Marker {
    pub(crate) severity: Severity,
    pub(crate) status: Option<Lifecycle>,
}

impl Marker {
    /// "Resolved" replaces the severity.
    pub(crate) fn resolved(self) -> bool {
        self.status == Some(Lifecycle::Resolved)
    }

    /// The lifecycle word shown after the severity.
    pub(crate) fn lifecycle(self) -> Option<Lifecycle> {
        self.status.filter(|s| *s != Lifecycle::Resolved)
    }
}

/// What to do about an entry.
pub(crate) enum Action {
    /// A statement to run, with what it is expected to gain.
    Run { ddl: String, note: Option<String> },
    /// Advice in words.
    Advice(String),
}

/// One entry: what, where and how bad; what it costs, why, what to do; a few numbers,
/// the query, where else, a link. A resolved entry only has its title and place.
pub(crate) struct Entry {
    pub(crate) marker: Marker,
    pub(crate) title: String,
    /// Where, when the title does not say it.
    pub(crate) place: Option<String>,
    pub(crate) impact: Option<String>,
    pub(crate) cause: Option<String>,
    /// What changed on the server since the baseline (nearest first), or why that is
    /// not known.
    pub(crate) changed: Vec<String>,
    pub(crate) action: Option<Action>,
    pub(crate) numbers: Vec<String>,
    /// The SQL text, previewed by the layout.
    pub(crate) query: Option<String>,
    pub(crate) elsewhere: Vec<String>,
    /// The powa-web page, already checked to be safe in a markdown link.
    pub(crate) link: Option<String>,
    /// The queryid, when no link carries it.
    pub(crate) queryid: Option<String>,
    /// "Acknowledged by alice at …", when someone did.
    pub(crate) acknowledged: Option<String>,
    /// The links that acknowledge and snooze it (action links on, open entries).
    pub(crate) actions: Option<(String, String)>,
}

impl Entry {
    /// `s` told in `opts.lang`; places name their repository when the report spans
    /// `several_repositories`.
    pub(crate) fn of(s: &Story<'_>, opts: &RenderOptions, several_repositories: bool) -> Entry {
        let lang = opts.lang;
        let place_of = |x: &Insight| place_of(x, lang, several_repositories);
        let i = s.lead;
        let told = story::tell(s, lang, &place_of);
        let place = Some(place_of(i)).filter(|p| !p.is_empty());
        let mut e = Entry {
            marker: Marker {
                severity: s.severity,
                status: i.status,
            },
            title: told.title,
            place: None,
            impact: None,
            cause: None,
            changed: Vec::new(),
            action: None,
            numbers: Vec::new(),
            query: None,
            elsewhere: Vec::new(),
            link: None,
            queryid: None,
            acknowledged: acknowledged(i, lang),
            actions: None,
        };
        if s.is_resolved() {
            e.place = place;
            return e;
        }
        if told.own_title {
            e.place = place;
        }
        e.impact = told.impact;
        e.cause = told.cause;
        e.changed = told.changed;
        e.action = match (told.ddl, told.advice) {
            (Some(ddl), _) => Some(Action::Run {
                ddl,
                note: told.ddl_note,
            }),
            (None, advice) => advice.filter(|a| !a.trim().is_empty()).map(Action::Advice),
        };
        e.numbers = told.numbers;
        e.query = told.query;
        e.elsewhere = told.elsewhere;
        e.link = powa_web_link(i, opts).filter(|u| u.len() <= MAX_URL_BYTES);
        if e.link.is_none() {
            e.queryid = told.queryid;
        }
        e
    }
}

/// Who acknowledged `i` and when, in words (the gate's labels).
fn acknowledged(i: &Insight, lang: Lang) -> Option<String> {
    use crate::gate::ack::{AT_LABEL, BY_LABEL};
    let by = i.label(BY_LABEL)?;
    let at = i
        .label(AT_LABEL)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_default();
    Some(lang.acknowledged(by, &at))
}

/// Where an insight is: "remote1 / app", with its repository when the report spans
/// several.
fn place_of(i: &Insight, lang: Lang, several_repositories: bool) -> String {
    let mut p = story::place(i);
    if several_repositories {
        if let Some(r) = i.label("repository") {
            let word = lang.word(Word::Repository);
            p = if p.is_empty() {
                format!("{word} {r}")
            } else {
                format!("{p} ({word} {r})")
            };
        }
    }
    p
}

/// The report's "Changes" section: per server, what changed, nearest first (see
/// [`story::changes_section`] for what it holds and when it is left out).
pub(crate) struct ChangesSection {
    pub(crate) heading: &'static str,
    pub(crate) servers: Vec<story::ServerChanges>,
}

impl ChangesSection {
    /// The section of `stories`, None when there is nothing to list.
    pub(crate) fn of(
        stories: &[Story<'_>],
        sum: &Summary,
        lang: Lang,
        several_repositories: bool,
    ) -> Option<ChangesSection> {
        let end = sum.end?;
        let server_of = |i: &Insight| {
            let mut p = i.label("server").unwrap_or("").to_string();
            if several_repositories {
                if let Some(r) = i.label("repository") {
                    p = format!("{p} ({} {r})", lang.word(Word::Repository));
                }
            }
            p
        };
        let servers = story::changes_section(stories, end, lang, &server_of);
        (!servers.is_empty()).then(|| ChangesSection {
            heading: lang.word(Word::Changes),
            servers,
        })
    }

    /// How many changes it lists, on how many servers.
    pub(crate) fn count(&self) -> (usize, usize) {
        (
            self.servers.iter().map(|s| s.items.len()).sum(),
            self.servers.len(),
        )
    }
}

/// At most this many kinds are named in a digest's "+N more" block.
const MAX_DIGEST_KINDS: usize = 8;

/// A digest's "+N more" block for the entries not shown in full: how many, by severity,
/// by kind (most frequent first).
pub(crate) struct Digest {
    pub(crate) heading: String,
    pub(crate) by_severity: Vec<String>,
    /// The lead's kind and how many entries have it, at most [`MAX_DIGEST_KINDS`].
    pub(crate) kinds: Vec<(String, usize)>,
    /// "+N more kinds", when there are more.
    pub(crate) more_kinds: Option<String>,
    /// "7 changes on 2 servers not shown", when the "Changes" section is left out.
    pub(crate) changes: Option<String>,
}

impl Digest {
    /// The digest of `rest`, saying the "Changes" section is left out when
    /// `changes_left_out` ((changes, servers)) is given.
    pub(crate) fn of(
        rest: &[Story<'_>],
        lang: Lang,
        changes_left_out: Option<(usize, usize)>,
    ) -> Digest {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for s in rest {
            match kinds.iter_mut().find(|(k, _)| *k == s.lead.kind) {
                Some(k) => k.1 += 1,
                None => kinds.push((s.lead.kind.clone(), 1)),
            }
        }
        kinds.sort_by_key(|(k, c)| (Reverse(*c), k.clone()));
        let more_kinds = (kinds.len() > MAX_DIGEST_KINDS)
            .then(|| lang.more_kinds(kinds.len() - MAX_DIGEST_KINDS));
        kinds.truncate(MAX_DIGEST_KINDS);
        let changes = changes_left_out.map(|(c, s)| lang.changes_not_shown(c, s));
        Digest {
            heading: match (&changes, rest.is_empty()) {
                // Only the section is left out: that is the heading.
                (Some(c), true) => c.clone(),
                _ => lang.not_shown(rest.len()),
            },
            changes: changes.filter(|_| !rest.is_empty()),
            by_severity: Tally::of(rest)
                .worded(lang)
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            kinds,
            more_kinds,
        }
    }
}
