//! Notification → text, within each message type's byte limit.
//!
//! Rendering is a pipeline of pure steps, one module each:
//!
//! 1. [`crate::story`] groups the insights into one story per problem and tells each in
//!    words;
//! 2. `doc` turns stories into the provider-neutral document: a header, one entry per
//!    story (title, impact, cause, action, numbers, query, other servers, link), and in a
//!    digest a block counting the rest;
//! 3. `layout` writes the document as lines of spans (`line`) in a `dialect`, one per
//!    kind of message: `wecom`'s markdown and markdown_v2, `text`'s text and the
//!    console's plain text. User text is escaped as spans are built (`escape`); `words`
//!    holds our own wording in each language, `format` numbers and units, `link` the
//!    powa-web links;
//! 4. `fit` holds each part to its byte budget and packs entries into parts.
//!
//! A line is a list of spans, and every construct opens and closes inside one span, so
//! cutting a message between lines can never leave a backtick, a `**` or a `<font>` open,
//! and shrinking a span (cutting its text, adding "…") can never break one.
//!
//! Budgets are **UTF-8 bytes** (WeCom counts bytes: markdown 4096, text 2048). A message is
//! split between insights; when one insight alone is too big, its SQL preview is shortened,
//! then dropped, then its longest lines are cut. No part ever exceeds the budget.

use std::collections::BTreeMap;
use std::sync::Arc;

use sentinel_actors::{Fingerprint, Notification};

use crate::actions::{Action, Links};
use crate::story::{self, Story};
use words::Word;

pub mod card;
mod dialect;
mod dingtalk;
mod doc;
mod escape;
mod fit;
pub(crate) mod format;
mod html;
mod lark;
mod layout;
mod line;
mod link;
mod mrkdwn;
mod text;
pub mod tiles;
pub mod wecom;
mod words;

/// Also what the channels' unit tests render.
#[cfg(test)]
pub(crate) mod fixture;

pub use dialect::Style;
pub use escape::sql_preview;
pub use fit::MIN_BUDGET;
pub use format::{format_metric, metric_label};
pub use html::{
    escape_html, html_page, html_report, html_report_with, subject, InlineChart, PageChart,
};
pub use link::{powa_web_link, valid_base_url};
pub use wecom::{
    markdown_mentions, mention_notice, valid_userid, WECOM_MARKDOWN_BUDGET, WECOM_MARKDOWN_LIMIT,
    WECOM_TEXT_BUDGET, WECOM_TEXT_LIMIT,
};
pub use words::Lang;

use doc::{ChangesSection, Digest, Entry, Header, Summary};

/// Default length of SQL previews, in characters.
pub const DEFAULT_SQL_PREVIEW_CHARS: usize = 200;

/// Knobs of the renderers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Longest SQL preview, in characters, "…" included.
    pub sql_preview_chars: usize,
    /// Language of the fixed wording.
    pub lang: Lang,
    /// powa-web's address per repository name (`[repositories.<name>] powa_web_url`):
    /// entries link to its server, database or query page.
    pub powa_web: BTreeMap<String, String>,
    /// Action links (`[http] public_url`): every open entry links to acknowledge and
    /// snooze it, the header to everything that fires now.
    pub actions: Option<Arc<Links>>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            sql_preview_chars: DEFAULT_SQL_PREVIEW_CHARS,
            lang: Lang::En,
            powa_web: BTreeMap::new(),
            actions: None,
        }
    }
}

/// The console report: one plain-text string, empty for an empty notification.
pub fn plain_report(n: &Notification) -> String {
    plain_report_with(n, &RenderOptions::default())
}

/// [`plain_report`] with explicit options.
pub fn plain_report_with(n: &Notification, opts: &RenderOptions) -> String {
    render(n, Style::Plain, usize::MAX, opts)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// WeCom markdown (v1) messages, each at most `budget` bytes.
pub fn wecom_markdown(n: &Notification, budget: usize) -> Vec<String> {
    render(n, Style::Markdown, budget, &RenderOptions::default())
}

/// WeCom markdown_v2 messages, each at most `budget` bytes.
pub fn wecom_markdown_v2(n: &Notification, budget: usize) -> Vec<String> {
    render(n, Style::MarkdownV2, budget, &RenderOptions::default())
}

/// WeCom text messages, each at most `budget` bytes.
pub fn wecom_text(n: &Notification, budget: usize) -> Vec<String> {
    render(n, Style::Text, budget, &RenderOptions::default())
}

/// Renders `n` in `style` as messages of at most `budget` UTF-8 bytes each (budgets below
/// [`MIN_BUDGET`] are raised to it; [`Style::Plain`] ignores the budget and gives one part).
/// Insights appear most severe first (resolved ones last), then in input order; all of
/// them appear. An empty notification gives no parts. Parts carry "(part i/n)" when there
/// are several.
pub fn render(n: &Notification, style: Style, budget: usize, opts: &RenderOptions) -> Vec<String> {
    render_digest(n, style, budget, opts, usize::MAX)
}

/// Like [`render`], in at most `max_parts` messages (at least one): most severe first, as
/// many insights in full as fit, then one "+N more" block that counts the others by
/// severity and by kind, so every insight is still represented. When everything fits,
/// this is exactly [`render`].
pub fn render_digest(
    n: &Notification,
    style: Style,
    budget: usize,
    opts: &RenderOptions,
    max_parts: usize,
) -> Vec<String> {
    render_placed(n, style, budget, opts, max_parts)
        .into_iter()
        .map(|p| p.text)
        .collect()
}

/// One message of a rendered notification, and the insights it tells in full (the
/// leads, support and other servers of its entries), as indexes into the notification's
/// insights: what a chart sent after it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub text: String,
    pub insights: Vec<usize>,
    /// How many entries it tells in full.
    pub entries: usize,
    /// The acknowledge and snooze links of those entries that have them (action links
    /// on), in order: what a provider's buttons may open.
    pub actions: Vec<(String, String)>,
    /// The notification's report page (action links on).
    pub report: Option<String>,
}

/// [`render_digest`], saying which message tells which insight.
pub fn render_placed(
    n: &Notification,
    style: Style,
    budget: usize,
    opts: &RenderOptions,
    max_parts: usize,
) -> Vec<Placed> {
    if n.insights.is_empty() {
        return Vec::new();
    }
    let d = style.dialect();
    let lang = opts.lang;
    let max_parts = max_parts.max(1);
    let budget = if d.bounded() {
        budget.max(MIN_BUDGET)
    } else {
        usize::MAX
    };
    let order = story::stories(&n.insights);
    let summary = Summary::of(n, &order);
    let report_link = full_report_link(n, opts);
    let header = |part| header_of(&summary, part, report_link.clone(), d, lang);

    // The header of any part is at most as long as the one with the widest part numbers.
    let widest = order.len() + 1;
    let reserve = header(Some((widest, widest))).len() + 2;
    let avail = budget.saturating_sub(reserve);

    let several_repositories = summary.repositories > 1;
    let mut actions: Vec<Option<(String, String)>> = Vec::with_capacity(order.len());
    let mut blocks: Vec<String> = order
        .iter()
        .map(|s| {
            let e = entry_of(n, s, opts, several_repositories);
            actions.push(e.actions.clone());
            fit::entry(&e, d, opts, avail).unwrap_or_default()
        })
        .collect();
    // The "Changes" section comes after the entries: a digest leaves it out before any
    // entry, and says so.
    let changes = ChangesSection::of(&order, &summary, lang, several_repositories);
    let left_out = changes
        .as_ref()
        .and_then(|c| fit::changes(c, d, lang, avail).map(|b| (c.count(), b)))
        .map(|(count, b)| {
            blocks.push(b);
            count
        });
    let (chosen, full) = fit::within(blocks, avail, max_parts, |k| {
        let digest = Digest::of(&order[k.min(order.len())..], lang, left_out);
        let lines = layout::digest_lines(&digest, d, lang);
        fit::fit_lines(lines, d, avail).unwrap_or_default()
    });
    let grouped = fit::pack(chosen, avail);
    let total = grouped.len();
    grouped
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let mut out = header((total > 1).then_some((i + 1, total)));
            let mut told = Vec::new();
            let (mut entries, mut links) = (0, Vec::new());
            for (k, b) in g {
                out.push_str("\n\n");
                out.push_str(&b);
                if k < full && k < order.len() {
                    told.extend(told_by(n, &order[k]));
                    entries += 1;
                    links.extend(actions[k].clone());
                }
            }
            out.push_str(d.ending());
            debug_assert!(
                out.len() <= budget,
                "part of {} bytes > {budget}",
                out.len()
            );
            Placed {
                text: out,
                insights: told,
                entries,
                actions: links,
                report: report_link.as_ref().map(|(_, url)| url.clone()),
            }
        })
        .collect()
}

/// The link of a message's header to the whole report: the page of this notification
/// (see [`crate::archive`]), when action links are on.
fn full_report_link(n: &Notification, opts: &RenderOptions) -> Option<(Word, String)> {
    opts.actions.as_ref().map(|l| {
        (
            Word::FullReport,
            l.url(Action::Page, Fingerprint(n.id), n.created_at),
        )
    })
}

/// The header of a message (of `part` (i, n) when split), as text of dialect `d`.
fn header_of(
    summary: &Summary,
    part: Option<(usize, usize)>,
    report_link: Option<(Word, String)>,
    d: &dyn dialect::Dialect,
    lang: Lang,
) -> String {
    let mut h = Header::of(summary, part, lang);
    h.report_link = report_link;
    layout::header(&h, d, lang)
}

/// The entry of story `s`, with the links that acknowledge and snooze it when action
/// links are on (heartbeats and resolved entries have nothing to acknowledge).
fn entry_of<'a>(
    n: &Notification,
    s: &'a Story<'a>,
    opts: &RenderOptions,
    several_repositories: bool,
) -> Entry {
    let mut e = Entry::of(s, opts, several_repositories);
    let actionable = !s.is_resolved() && s.lead.kind != crate::gate::heartbeat::KIND;
    if let (Some(l), true) = (&opts.actions, actionable) {
        let fp = s.lead.fingerprint;
        e.actions = Some((
            l.url(Action::Ack, fp, n.created_at),
            l.url(Action::Snooze, fp, n.created_at),
        ));
    }
    e
}

/// The insights story `s` tells in full (its lead, support and other servers), as
/// indexes into `n`'s insights, found by address: a story holds references into them.
fn told_by(n: &Notification, s: &Story<'_>) -> Vec<usize> {
    std::iter::once(s.lead)
        .chain(s.support.iter().copied())
        .chain(s.elsewhere.iter().copied())
        .map(|i| {
            n.insights
                .iter()
                .position(|x| std::ptr::eq(x, i))
                .unwrap_or(usize::MAX)
        })
        .collect()
}

/// One message in `style`, unbounded, entry by entry: its header (with the "Full report"
/// link when action links are on), then each entry with the insights it tells (where
/// its charts go). Joined with blank lines, this is [`render`]'s one part. None for an
/// empty notification.
pub(crate) fn message_entries(
    n: &Notification,
    style: Style,
    opts: &RenderOptions,
) -> Option<PageEntries> {
    unbounded_entries(n, style, opts, full_report_link(n, opts))
}

/// A report page's header, and each entry's HTML with the insights it tells.
pub(crate) type PageEntries = (String, Vec<(String, Vec<usize>)>);

/// The report page of `n` in HTML, entry by entry: the header, then each entry with the
/// insights it tells (where its charts go). None for an empty notification.
pub(crate) fn page_entries(n: &Notification, opts: &RenderOptions) -> Option<PageEntries> {
    // The page is what the link leads to: its own header links to what fires now.
    let live = opts.actions.as_ref().map(|l| {
        (
            Word::FiringNow,
            l.url(Action::Report, Fingerprint(0), n.created_at),
        )
    });
    unbounded_entries(n, Style::Html, opts, live)
}

/// The header (linking to `header_link`) and every entry of `n` in `style` without a
/// budget, each with the insights it tells, then the "Changes" section in full.
fn unbounded_entries(
    n: &Notification,
    style: Style,
    opts: &RenderOptions,
    header_link: Option<(Word, String)>,
) -> Option<PageEntries> {
    if n.insights.is_empty() {
        return None;
    }
    let d = style.dialect();
    let order = story::stories(&n.insights);
    let summary = Summary::of(n, &order);
    let header = header_of(&summary, None, header_link, d, opts.lang);
    let several_repositories = summary.repositories > 1;
    let mut entries: Vec<(String, Vec<usize>)> = order
        .iter()
        .map(|s| {
            let e = entry_of(n, s, opts, several_repositories);
            let block = fit::entry(&e, d, opts, usize::MAX).unwrap_or_default();
            (block, told_by(n, s))
        })
        .collect();
    if let Some(c) = ChangesSection::of(&order, &summary, opts.lang, several_repositories) {
        // Every change of every server: there is no budget.
        let lines = layout::changes_lines(&c, d, opts.lang, usize::MAX);
        entries.push((line::render_lines(&lines, d), Vec::new()));
    }
    Some((header, entries))
}

/// The title a message gives `i` when told alone ("local / app: top query #2, 10% of
/// local's time"), for the pages that name one finding.
pub fn told_title(i: &sentinel_actors::Insight, opts: &RenderOptions) -> String {
    let one = [i.clone()];
    story::stories(&one)
        .first()
        .map(|s| Entry::of(s, opts, false).title)
        .unwrap_or_else(|| i.title.clone())
}

/// The entries of `n` as the renderers tell them: insights grouped into one story per
/// problem, most severe and most impactful first (see [`crate::story`]).
pub fn entries(n: &Notification) -> Vec<Story<'_>> {
    story::stories(&n.insights)
}

#[cfg(test)]
mod tests {
    use sentinel_actors::Severity;

    use super::fixture::{notification, slow_query};
    use super::*;

    #[test]
    fn slow_query_report_shows_everything() {
        let n = notification(vec![slow_query(1, "SELECT *\n  FROM t WHERE id = $1")]);
        let md = &wecom_markdown(&n, WECOM_MARKDOWN_BUDGET)[0];
        for want in [
            "PoWA Sentinel report",
            "<font color=\"warning\">1 warning</font>",
            "2026-11-23 10:00 – 2026-11-24 10:00 UTC",
            "<font color=\"warning\">🟠 WARNING</font> **Top query #1",
            ">Where: remote1 / app",
            // No dump of every metric: a few with units (a kind the stories do not know
            // gets those whose name carries a unit).
            ">calls 52 · mean time 156.2 ms · share of total time 62% · total time 8.12 s",
            ">Query: `SELECT * FROM t WHERE id = $1`",
            ">Fix: Check its plan",
            ">queryid `-123451`",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
        assert!(!md.contains("(part"), "{md}");
        assert!(
            !md.contains("repository main"),
            "one repository is not named: {md}"
        );
        // v1 shows lists, rules and fences raw: never use them.
        for l in md.lines() {
            assert!(!l.starts_with("- ") && !l.starts_with("---") && !l.starts_with("```"));
        }

        let v2 = &wecom_markdown_v2(&n, WECOM_MARKDOWN_BUDGET)[0];
        assert!(v2.contains("### 🟠 WARNING: Top query #1"), "{v2}");
        assert!(
            v2.contains("- Query: `SELECT * FROM t WHERE id = $1`"),
            "{v2}"
        );
        assert!(!v2.contains("<font"), "{v2}");

        let text = &wecom_text(&n, WECOM_TEXT_BUDGET)[0];
        assert!(text.contains("[WARNING] Top query #1"), "{text}");
        assert!(
            text.contains("  Query: SELECT * FROM t WHERE id = $1"),
            "{text}"
        );
        assert!(!text.contains('`') && !text.contains("**"), "{text}");

        let plain = plain_report(&n);
        assert!(plain.contains("  queryid -123451"), "{plain}");
        assert!(plain.ends_with('\n'));
    }

    #[test]
    fn most_severe_first_then_input_order() {
        let mut v = Vec::new();
        for (k, s) in [
            Severity::Info,
            Severity::Warning,
            Severity::Critical,
            Severity::Warning,
        ]
        .into_iter()
        .enumerate()
        {
            let mut i = slow_query(k, "SELECT 1");
            i.severity = s;
            v.push(i);
        }
        let p = plain_report(&notification(v));
        let pos = |needle: &str| p.find(needle).unwrap();
        assert!(pos("Top query #2 ") < pos("Top query #1 "));
        assert!(pos("Top query #1 ") < pos("Top query #3 "));
        assert!(pos("Top query #3 ") < pos("Top query #0 "));
        assert!(
            p.starts_with("PoWA Sentinel report\n1 critical, 2 warning, 1 info"),
            "{p}"
        );
    }

    #[test]
    fn action_links_fit_the_budget_and_every_open_entry_has_them() {
        let links = crate::actions::Links::new(
            "https://sentinel.example.org",
            b"k".repeat(32),
            crate::actions::DEFAULT_TTL,
        );
        let opts = RenderOptions {
            actions: Some(std::sync::Arc::new(links)),
            ..RenderOptions::default()
        };
        let v: Vec<_> = (0..40)
            .map(|k| slow_query(k, &"SELECT x FROM t WHERE y = $1 ".repeat(20)))
            .collect();
        let n = notification(v);
        for (style, budget) in [
            (Style::Markdown, WECOM_MARKDOWN_BUDGET),
            (Style::MarkdownV2, WECOM_MARKDOWN_BUDGET),
            (Style::Text, WECOM_TEXT_BUDGET),
        ] {
            let parts = render(&n, style, budget, &opts);
            let mut acks = 0;
            for p in &parts {
                assert!(p.len() <= budget, "{style:?}: {} > {budget}", p.len());
                assert!(p.contains("Full report"), "{style:?}: {p}");
                acks += p.matches("/a/").count();
            }
            // Two per entry, one per part header.
            assert_eq!(acks, 2 * 40 + parts.len(), "{style:?}");
        }
        let md = &render(&n, Style::Markdown, WECOM_MARKDOWN_BUDGET, &opts)[0];
        assert!(
            md.contains(">[Acknowledge](https://sentinel.example.org/a/"),
            "{md}"
        );
        assert!(
            md.contains(") · [Snooze](https://sentinel.example.org/a/"),
            "{md}"
        );
    }

    #[test]
    fn empty_notification_has_no_parts() {
        let n = notification(vec![]);
        assert!(wecom_markdown(&n, 4000).is_empty());
        assert!(wecom_markdown_v2(&n, 4000).is_empty());
        assert!(wecom_text(&n, 2000).is_empty());
        assert_eq!(plain_report(&n), "");
    }
}
