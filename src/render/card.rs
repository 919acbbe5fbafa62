//! A notification as cards: the shape of Feishu's interactive cards and Slack's Block Kit
//! messages, where each entry is an element of its own and the action links are buttons.
//!
//! Same document, same order, same fitting as [`super::render`]: each entry is held to
//! [`CardLimits::entry`] bytes (Slack: 3000 characters per section), entries are packed
//! into cards of [`CardLimits::part`] bytes and at most [`CardLimits::entries`] entries
//! (Slack: 50 blocks per message), and a digest ([`cards`] with `max_parts`) keeps the
//! most severe entries in full and counts the rest in one "+N more" block. An entry's
//! text has no acknowledge/snooze line: its links go with it as buttons.

use sentinel_actors::Severity;

use super::dialect::Style;
use super::doc::{ChangesSection, Digest, Header, Summary};
use super::words::{Lang, Word};
use super::{entry_of, fit, full_report_link, layout, story, told_by, RenderOptions};

/// What one card may hold, in bytes of text as the dialect writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardLimits {
    /// The text of one card: its summary, entries and digest block together, plus
    /// [`CardLimits::overhead`] per entry.
    pub part: usize,
    /// The text of one entry.
    pub entry: usize,
    /// Entries per card.
    pub entries: usize,
    /// What each entry costs besides its text (the provider's wrapping, its buttons).
    pub overhead: usize,
}

/// One entry of a card: its text, the links that acknowledge and snooze it (action links
/// on, open entries), and the insights it tells (indexes into the notification's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardEntry {
    pub text: String,
    pub actions: Option<(String, String)>,
    pub insights: Vec<usize>,
}

/// One message as a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    /// "PoWA Sentinel alert (part 1/2)": our wording, plain text.
    pub title: String,
    /// The counts and the window, in the dialect.
    pub summary: String,
    /// The most severe open entry of this card; None when all of them are resolved.
    pub severity: Option<Severity>,
    pub entries: Vec<CardEntry>,
    /// The "+N more" block of a digest (last card only).
    pub more: Option<String>,
    /// The notification's report page (action links on).
    pub report: Option<String>,
}

/// The labels of a card's buttons, in the report's language.
#[derive(Clone, Copy, Debug)]
pub struct Buttons {
    pub acknowledge: &'static str,
    pub snooze: &'static str,
    pub full_report: &'static str,
}

/// The labels of the buttons in `lang`: the words the text dialects use for the links.
pub fn buttons(lang: Lang) -> Buttons {
    Buttons {
        acknowledge: lang.word(Word::Acknowledge),
        snooze: lang.word(Word::Snooze),
        full_report: lang.word(Word::FullReport),
    }
}

/// Entries grouped greedily into cards: each card's costs within `avail`, at most
/// `max_entries` entries (an entry alone always makes a card).
fn group(costs: &[usize], avail: usize, max_entries: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (k, &c) in costs.iter().enumerate() {
        match out.last_mut() {
            Some(g) if g.len() < max_entries && used + c <= avail => {
                g.push(k);
                used += c;
            }
            _ => {
                out.push(vec![k]);
                used = c;
            }
        }
    }
    out
}

/// `n` as cards in `style` (a bounded dialect: [`Style::LarkMd`], [`Style::Mrkdwn`]),
/// each within `limits`; in at most `max_parts` cards when given (a digest). Empty for
/// an empty notification. All entries appear, in full or counted.
pub fn cards(
    n: &sentinel_actors::Notification,
    style: Style,
    limits: CardLimits,
    opts: &RenderOptions,
    max_parts: Option<usize>,
) -> Vec<Card> {
    if n.insights.is_empty() {
        return Vec::new();
    }
    let d = style.dialect();
    let lang = opts.lang;
    let order = story::stories(&n.insights);
    let summary = Summary::of(n, &order);
    let report = full_report_link(n, opts).map(|(_, url)| url);
    let several = summary.repositories > 1;
    let max_entries = limits.entries.max(1);
    let entry_budget = limits.entry.max(fit::MIN_BUDGET);
    let summary_of = |part| {
        let h = Header::of(&summary, part, lang);
        let text = layout::header(&h, d, lang);
        let rest = text.split_once('\n').map(|(_, r)| r.to_string());
        (h.title, rest.unwrap_or_default())
    };
    let widest = order.len() + 1;
    let avail = limits
        .part
        .max(fit::MIN_BUDGET)
        .saturating_sub(summary_of(Some((widest, widest))).1.len());

    let entries: Vec<(CardEntry, usize)> = order
        .iter()
        .map(|s| {
            let mut e = entry_of(n, s, opts, several);
            let actions = e.actions.take();
            let text = fit::entry(&e, d, opts, entry_budget.min(avail)).unwrap_or_default();
            let links: usize = actions.iter().map(|(a, b)| a.len() + b.len()).sum();
            let cost = text.len() + links + limits.overhead;
            let entry = CardEntry {
                text,
                actions,
                insights: told_by(n, s),
            };
            (entry, cost)
        })
        .collect();
    let mut entries = entries;
    // The "Changes" section is one more element after the entries; a digest leaves it
    // out before any entry, and counts it.
    let changes = ChangesSection::of(&order, &summary, lang, several)
        .and_then(|c| fit::changes(&c, d, lang, entry_budget.min(avail)).map(|b| (c.count(), b)));
    let mut left_out = None;
    if let Some((count, text)) = changes {
        let cost = text.len() + limits.overhead;
        let with: Vec<usize> = entries.iter().map(|(_, c)| *c).chain([cost]).collect();
        let fits = max_parts.is_none_or(|m| group(&with, avail, max_entries).len() <= m.max(1));
        if fits {
            let entry = CardEntry {
                text,
                actions: None,
                insights: Vec::new(),
            };
            entries.push((entry, cost));
        } else {
            left_out = Some(count);
        }
    }
    let costs: Vec<usize> = entries.iter().map(|(_, c)| *c).collect();
    let rest = |k: usize| {
        let digest = Digest::of(&order[k.min(order.len())..], lang, left_out);
        let lines = layout::digest_lines(&digest, d, lang);
        fit::fit_lines(lines, d, entry_budget.min(avail)).unwrap_or_default()
    };

    // How many entries are shown in full: all, or in a digest the most such that they and
    // the "+N more" block fit in `max_parts` cards.
    let mut shown = entries.len();
    let mut more = None;
    if let Some(max) = max_parts.map(|m| m.max(1)) {
        if group(&costs, avail, max_entries).len() > max {
            let mut best = (0, rest(0));
            for k in 1..entries.len() {
                let r = rest(k);
                let mut c = costs[..k].to_vec();
                c.push(r.len() + limits.overhead);
                if group(&c, avail, max_entries).len() > max {
                    break;
                }
                best = (k, r);
            }
            shown = best.0;
            more = Some(best.1);
        }
    }
    let mut costs = costs[..shown].to_vec();
    if let Some(m) = &more {
        costs.push(m.len() + limits.overhead);
    }
    let groups = group(&costs, avail, max_entries);
    let total = groups.len();
    let severities: Vec<Option<Severity>> = order
        .iter()
        .map(|s| (!s.is_resolved()).then_some(s.severity))
        .collect();
    let mut entries: Vec<Option<CardEntry>> = entries.into_iter().map(|(e, _)| Some(e)).collect();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let (title, summary) = summary_of((total > 1).then_some((i + 1, total)));
            let mut card = Card {
                title,
                summary,
                severity: None,
                entries: Vec::new(),
                more: None,
                report: report.clone(),
            };
            for k in g {
                if k == shown {
                    card.more = more.take();
                    continue;
                }
                card.severity = card.severity.max(severities.get(k).copied().flatten());
                if let Some(e) = entries[k].take() {
                    card.entries.push(e);
                }
            }
            card
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture::{notification, slow_query};

    const LIMITS: CardLimits = CardLimits {
        part: 4000,
        entry: 1500,
        entries: 5,
        overhead: 100,
    };

    #[test]
    fn cards_hold_every_entry_within_their_limits() {
        let sql = "SELECT a, b FROM t WHERE x = $1 ".repeat(30);
        let n = notification((0..23).map(|k| slow_query(k, &sql)).collect());
        for style in [Style::LarkMd, Style::Mrkdwn] {
            let cs = cards(&n, style, LIMITS, &RenderOptions::default(), None);
            assert!(cs.len() >= 5, "{style:?}: {}", cs.len());
            let mut seen = 0;
            for (k, c) in cs.iter().enumerate() {
                assert!(c.entries.len() <= LIMITS.entries);
                assert!(c.title.ends_with(&format!("(part {}/{})", k + 1, cs.len())));
                let used: usize = c.entries.iter().map(|e| e.text.len() + 100).sum();
                assert!(used + c.summary.len() <= LIMITS.part, "{style:?}");
                for e in &c.entries {
                    assert!(e.text.len() <= LIMITS.entry);
                    assert!(e.actions.is_none());
                    assert!(!e.text.contains("Acknowledge"));
                }
                seen += c.entries.len();
                assert_eq!(c.severity, Some(Severity::Warning));
            }
            assert_eq!(seen, 23);
        }
    }

    #[test]
    fn a_digest_keeps_the_first_entries_and_counts_the_rest() {
        let sql = "SELECT a, b FROM t WHERE x = $1 ".repeat(30);
        let mut v: Vec<_> = (0..40).map(|k| slow_query(k, &sql)).collect();
        v[30].severity = Severity::Critical;
        let n = notification(v);
        let cs = cards(
            &n,
            Style::Mrkdwn,
            LIMITS,
            &RenderOptions::default(),
            Some(2),
        );
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].severity, Some(Severity::Critical));
        assert!(cs[0].entries[0].text.contains("Top query #30 "));
        let more = cs[1].more.as_deref().unwrap();
        let shown: usize = cs.iter().map(|c| c.entries.len()).sum();
        assert!(more.contains(&format!("+{} more", 40 - shown)), "{more}");
        assert!(cs[0].more.is_none());
    }

    #[test]
    fn action_links_leave_the_text_for_the_buttons() {
        let links = crate::actions::Links::new(
            "https://sentinel.example.org",
            b"k".repeat(32),
            crate::actions::DEFAULT_TTL,
        );
        let opts = RenderOptions {
            actions: Some(std::sync::Arc::new(links)),
            ..RenderOptions::default()
        };
        let n = notification(vec![slow_query(1, "SELECT 1")]);
        let c = &cards(&n, Style::LarkMd, LIMITS, &opts, None)[0];
        let (ack, snooze) = c.entries[0].actions.clone().unwrap();
        assert!(ack.starts_with("https://sentinel.example.org/a/"));
        assert_ne!(ack, snooze);
        assert!(c
            .report
            .as_deref()
            .unwrap()
            .starts_with("https://sentinel.example.org/a/"));
        assert!(!c.entries[0].text.contains("/a/"), "{}", c.entries[0].text);
        assert_eq!(c.entries[0].insights, vec![0]);
    }
}
