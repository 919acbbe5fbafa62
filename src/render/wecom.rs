//! WeCom's dialects and rules: `markdown` (v1) and `markdown_v2`, their byte limits, the
//! mention syntax and the user ids it accepts. (WeCom `text` is the plain text dialect;
//! DingTalk receives `markdown_v2`.)
//!
//! v1 has headings, bold, inline code, `>` quotes and `<font color>`, but shows lists,
//! rules and fenced code raw, so they are never used; v2 has lists and headings but no
//! colours. Both count UTF-8 bytes: markdown 4096, text 2048.

use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Notification, NotifyReason, Severity};

use super::dialect::Dialect;
use super::doc::{Header, Marker};
use super::line::{Color, Line, Span};
use super::words::{Lang, Word};

/// WeCom's hard limit for `markdown` and `markdown_v2` content, in UTF-8 bytes.
pub const WECOM_MARKDOWN_LIMIT: usize = 4096;
/// WeCom's hard limit for `text` content, in UTF-8 bytes.
pub const WECOM_TEXT_LIMIT: usize = 2048;
/// What we aim for in markdown messages: the limit less a safety margin.
pub const WECOM_MARKDOWN_BUDGET: usize = 4000;
/// What we aim for in text messages: the limit less a safety margin.
pub const WECOM_TEXT_BUDGET: usize = 2000;

/// WeCom's markdown dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeCom {
    /// `markdown` (v1): coloured markers, `>` details.
    Markdown,
    /// `markdown_v2`: `###` entries, `- ` details, no colours.
    MarkdownV2,
}

const RESOLVED_EMOJI: &str = "✅";

fn severity_emoji(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

/// "🟠 WARNING".
pub(crate) fn severity_marker(s: Severity, lang: Lang) -> String {
    format!("{} {}", severity_emoji(s), lang.severity_upper(s))
}

/// "✅ RESOLVED".
pub(crate) fn resolved_marker(lang: Lang) -> String {
    format!("{RESOLVED_EMOJI} {}", lang.lifecycle(Lifecycle::Resolved))
}

/// A title line in colour: the marker in its severity's tone, the lifecycle in grey, the
/// title in bold (WeCom markdown, HTML).
pub(crate) fn coloured_title(m: Marker, title: String, lang: Lang) -> Line {
    let l = if m.resolved() {
        Line::new("").span(Span::Font(Color::Info, resolved_marker(lang)))
    } else {
        let mut l = Line::new("").span(Span::Font(
            Color::of(m.severity),
            severity_marker(m.severity, lang),
        ));
        if let Some(st) = m.lifecycle() {
            l = l
                .fixed(" ")
                .span(Span::Font(Color::Comment, lang.lifecycle(st).to_string()));
        }
        l
    };
    l.fixed(" ").span(Span::Strong(title))
}

impl Dialect for WeCom {
    fn markup(&self) -> bool {
        true
    }

    fn strong(&self, s: &str, out: &mut String) {
        out.push_str("**");
        out.push_str(s);
        out.push_str("**");
    }

    fn code(&self, s: &str, out: &mut String) {
        out.push('`');
        out.push_str(s);
        out.push('`');
    }

    fn font(&self, color: Color, s: &str, out: &mut String) {
        if *self == WeCom::MarkdownV2 {
            out.push_str(s);
            return;
        }
        out.push_str("<font color=\"");
        out.push_str(color.name());
        out.push_str("\">");
        out.push_str(s);
        out.push_str("</font>");
    }

    fn link(&self, label: &str, url: &str, out: &mut String) {
        out.push('[');
        out.push_str(label);
        out.push_str("](");
        out.push_str(url);
        out.push(')');
    }

    fn detail_prefix(&self) -> &'static str {
        match self {
            WeCom::Markdown => ">",
            WeCom::MarkdownV2 => "- ",
        }
    }

    fn list_sep(&self) -> &'static str {
        " · "
    }

    fn header(&self, h: &Header, lang: Lang) -> Vec<Line> {
        let window = lang.word(Word::Window);
        let mut lines = vec![Line::new("## ").fixed(h.title.clone())];
        match self {
            WeCom::Markdown => {
                lines.push(Line::new("").list(&h.counts, " · ", |(text, color)| {
                    Span::Font(*color, text.clone())
                }));
                if let Some(win) = &h.window {
                    lines.push(Line::new(">").fixed(format!("{window}: {win}")));
                }
            }
            WeCom::MarkdownV2 => {
                let mut l = Line::new("").span(Span::Strong(h.plain_counts().join(" · ")));
                if let Some(win) = &h.window {
                    l = l.fixed(format!(" · {} {win}", window.to_lowercase()));
                }
                lines.push(l);
            }
        }
        lines
    }

    fn title_line(&self, m: Marker, title: String, lang: Lang) -> Line {
        match self {
            WeCom::Markdown => coloured_title(m, title, lang),
            WeCom::MarkdownV2 => {
                let marker = if m.resolved() {
                    resolved_marker(lang)
                } else {
                    let mut s = severity_marker(m.severity, lang);
                    if let Some(st) = m.lifecycle() {
                        s.push_str(" · ");
                        s.push_str(lang.lifecycle(st));
                    }
                    s
                };
                Line::new("### ")
                    .fixed(format!("{marker}: "))
                    .span(Span::Text(title))
            }
        }
    }

    fn digest_heading(&self, heading: String) -> Line {
        match self {
            WeCom::Markdown => Line::new("").span(Span::Font(Color::Comment, heading)),
            WeCom::MarkdownV2 => Line::new("### ").fixed(heading),
        }
    }
}

/// Mentions for WeCom markdown (v1): `<@userid>` for each valid user id, at most
/// `max_bytes` bytes in all (user ids that do not fit are left out). WeCom user ids are
/// 1 to 64 letters, digits and `_-.@`; anything else is dropped, since it could carry
/// markup.
pub fn markdown_mentions(userids: &[String], max_bytes: usize) -> String {
    let mut out = String::new();
    for id in userids.iter().filter(|id| valid_userid(id)) {
        let m = format!("<@{id}>");
        let need = m.len() + usize::from(!out.is_empty());
        if out.len() + need > max_bytes {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&m);
    }
    out
}

/// A WeCom user id (or `@all`) as the mention syntax accepts it.
pub fn valid_userid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// The short text that carries mentions where the message type cannot (WeCom
/// markdown_v2; mobiles with markdown v1): sent as its own `text` message after the
/// report.
pub fn mention_notice(n: &Notification, lang: Lang) -> String {
    let what = match n.reason {
        NotifyReason::Report => lang.word(Word::Report),
        NotifyReason::Immediate => lang.word(Word::Alert),
    };
    match lang {
        Lang::En => format!("{what}: {} insight(s), see above.", n.insights.len()),
        Lang::Zh => format!("{what}：共 {} 条，详见上文。", n.insights.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture::{notification, slow_query};
    use crate::render::{wecom_markdown_v2, MIN_BUDGET};

    #[test]
    fn markdown_v2_is_a_list_and_tight_budgets_keep_the_title() {
        let n = notification(vec![slow_query(1, "SELECT 1")]);
        let v2 = &wecom_markdown_v2(&n, 4000)[0];
        assert!(
            v2.contains(
                "\n- calls 52 · mean time 156.2 ms · share of total time 62% · total time 8.12 s\n"
            ),
            "{v2}"
        );
        assert!(!v2.contains("| Metric |"), "no table of metrics: {v2}");
        for budget in (MIN_BUDGET..900).step_by(7) {
            let p = &wecom_markdown_v2(&n, budget)[0];
            assert!(p.len() <= budget);
            assert!(p.contains("Top query #1"), "{budget}: {p}");
        }
    }

    #[test]
    fn markdown_mentions_are_valid_and_bounded() {
        let ids: Vec<String> = [
            "alice",
            "bob smith",
            "<font>",
            "@all",
            "x".repeat(65).as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(markdown_mentions(&ids, 100), "<@alice> <@@all>");
        assert_eq!(markdown_mentions(&ids, 10), "<@alice>");
        let many: Vec<String> = (0..1000).map(|k| format!("user{k}")).collect();
        assert!(markdown_mentions(&many, 1000).len() <= 1000);
    }
}
