//! The document as lines in a dialect: one line per part of an entry (title, where,
//! impact, cause, fix, numbers, query, other servers, link), labelled in the report's
//! language, with user text escaped for the dialect and cut to its longest length.

use super::dialect::Dialect;
use super::doc::{Action, Digest, Entry, Header};
use super::escape::{clean, Escape};
use super::line::{render_lines, Line, Span};
use super::words::{Lang, Word};

/// Longest title, label value and advice kept, in characters (the rest is cut with "…").
const TITLE_CHARS: usize = 200;
const LABEL_CHARS: usize = 100;
const ADVICE_CHARS: usize = 500;
const NAME_CHARS: usize = 60;

/// User text escaped for one dialect.
struct Esc<'a>(&'a dyn Dialect);

impl Esc<'_> {
    fn prose(&self, s: &str, max_chars: usize) -> String {
        clean(s, self.0.markup(), Escape::Prose, max_chars)
    }

    fn code(&self, s: &str, max_chars: usize) -> String {
        let ctx = if self.0.literal_code() {
            Escape::Code
        } else {
            Escape::Prose
        };
        clean(s, self.0.markup(), ctx, max_chars)
    }
}

/// The header as text.
pub(crate) fn header(h: &Header, d: &dyn Dialect, lang: Lang) -> String {
    let mut lines = d.header(h, lang);
    if let Some((label, url)) = &h.report_link {
        lines.push(Line::new("").span(Span::Link(lang.word(*label), url.clone())));
    }
    render_lines(&lines, d)
}

/// The lines of one entry, with a SQL preview of at most `preview` characters (none when
/// 0).
pub(crate) fn entry_lines(e: &Entry, d: &dyn Dialect, lang: Lang, preview: usize) -> Vec<Line> {
    let esc = Esc(d);
    let detail = d.detail_prefix();
    let sep = d.list_sep();
    let labelled = |w: Word| Line::new(format!("{detail}{}: ", lang.word(w)));
    let text = |s: &str, max: usize| Span::Text(esc.prose(s, max));
    let mut lines = vec![d.title_line(e.marker, esc.prose(&e.title, TITLE_CHARS), lang)];
    if let Some(p) = &e.place {
        lines.push(labelled(Word::Where).span(text(p, LABEL_CHARS)));
    }
    if let Some(a) = &e.acknowledged {
        lines.push(Line::new(detail).span(text(a, LABEL_CHARS)));
    }
    if let Some(x) = &e.impact {
        lines.push(Line::new(detail).span(text(x, ADVICE_CHARS)));
    }
    if let Some(x) = &e.cause {
        lines.push(labelled(Word::Cause).span(text(x, ADVICE_CHARS)));
    }
    if !e.changed.is_empty() {
        lines.push(labelled(Word::Changed).list(&e.changed, sep, |x| text(x, LABEL_CHARS)));
    }
    match &e.action {
        Some(Action::Run { ddl, note }) => {
            let mut l = labelled(Word::Fix).span(Span::Code(esc.code(ddl, ADVICE_CHARS)));
            if let Some(note) = note {
                l = l.fixed(" (").span(text(note, LABEL_CHARS)).fixed(")");
            }
            lines.push(l);
        }
        Some(Action::Advice(a)) => lines.push(labelled(Word::Fix).span(text(a, ADVICE_CHARS))),
        None => {}
    }
    if !e.numbers.is_empty() {
        lines.push(Line::new(detail).list(&e.numbers, sep, |n| text(n, LABEL_CHARS)));
    }
    if preview > 0 {
        if let Some(sql) = &e.query {
            let p = esc.code(sql, preview);
            if !p.is_empty() {
                lines.push(labelled(Word::Query).span(Span::Code(p)));
            }
        }
    }
    if !e.elsewhere.is_empty() {
        lines.push(labelled(Word::AlsoOn).list(&e.elsewhere, sep, |x| text(x, LABEL_CHARS)));
    }
    if let Some(url) = &e.link {
        lines.push(Line::new(detail).span(Span::Link("powa-web", url.clone())));
    }
    if let Some(q) = &e.queryid {
        let q = esc.code(q, LABEL_CHARS);
        if !q.is_empty() {
            let l = Line::new(format!("{detail}{} ", lang.word(Word::QueryId)));
            lines.push(l.span(Span::Code(q)));
        }
    }
    if let Some((ack, snooze)) = &e.actions {
        lines.push(
            Line::new(detail)
                .span(Span::Link(lang.word(Word::Acknowledge), ack.clone()))
                .sep(sep)
                .span(Span::Link(lang.word(Word::Snooze), snooze.clone())),
        );
    }
    lines
}

/// The lines of a digest's "+N more" block.
pub(crate) fn digest_lines(g: &Digest, d: &dyn Dialect, lang: Lang) -> Vec<Line> {
    let esc = Esc(d);
    let detail = d.detail_prefix();
    let sep = d.list_sep();
    let mut lines = vec![
        d.digest_heading(g.heading.clone()),
        Line::new(format!("{detail}{}: ", lang.word(Word::BySeverity)))
            .fixed(g.by_severity.join(sep)),
    ];
    if !g.kinds.is_empty() {
        let mut l = Line::new(format!("{detail}{}: ", lang.word(Word::ByKind))).list(
            &g.kinds,
            sep,
            |(kind, c)| Span::Text(format!("{} {c}", esc.prose(kind, NAME_CHARS))),
        );
        if let Some(more) = &g.more_kinds {
            l = l.sep(sep).fixed(more.clone());
        }
        lines.push(l);
    }
    lines
}

#[cfg(test)]
mod tests {
    use sentinel_actors::message::Lifecycle;
    use sentinel_actors::Severity;

    use crate::render::fixture::{notification, slow_query};
    use crate::render::*;

    #[test]
    fn several_repositories_are_named() {
        let a = slow_query(1, "SELECT 1");
        let mut b = slow_query(2, "SELECT 2");
        b.labels.insert("repository".into(), "other".into());
        let md = &wecom_markdown(&notification(vec![a, b]), WECOM_MARKDOWN_BUDGET)[0];
        assert!(md.contains("remote1 / app (repository main)"), "{md}");
        assert!(md.contains("remote1 / app (repository other)"), "{md}");
    }

    #[test]
    fn lifecycle_is_shown_and_resolved_is_short() {
        let mut a = slow_query(1, "SELECT 1");
        a.status = Some(Lifecycle::Escalated);
        a.severity = Severity::Critical;
        let mut b = slow_query(2, "SELECT 2");
        b.status = Some(Lifecycle::Resolved);
        let n = notification(vec![b, a]);
        let md = &wecom_markdown(&n, 4000)[0];
        assert!(
            md.contains(
                "🔴 CRITICAL</font> <font color=\"comment\">ESCALATED</font> **Top query #1"
            ),
            "{md}"
        );
        assert!(
            md.contains("<font color=\"info\">✅ RESOLVED</font> **Top query #2"),
            "{md}"
        );
        assert!(
            md.contains("<font color=\"info\">1 resolved</font>"),
            "{md}"
        );
        // Resolved: title and place only, after the open ones.
        let tail = &md[md.find("RESOLVED</font>").unwrap()..];
        assert!(
            !tail.contains("Metrics") && !tail.contains("Query"),
            "{tail}"
        );
        let v2 = &wecom_markdown_v2(&n, 4000)[0];
        assert!(
            v2.contains("### 🔴 CRITICAL · ESCALATED: Top query #1"),
            "{v2}"
        );
        assert!(v2.contains("### ✅ RESOLVED: Top query #2"), "{v2}");
        let text = &wecom_text(&n, 2000)[0];
        assert!(
            text.contains("[CRITICAL][ESCALATED] Top query #1"),
            "{text}"
        );
        assert!(text.contains("[RESOLVED] Top query #2"), "{text}");
        let zh = RenderOptions {
            lang: Lang::Zh,
            ..Default::default()
        };
        let t = &render(&n, Style::Text, 2000, &zh)[0];
        assert!(t.contains("[严重][升级] Top query #1"), "{t}");
        assert!(t.contains("[已恢复] Top query #2"), "{t}");
        assert!(t.starts_with("PoWA Sentinel 报告\n严重 1，已恢复 1"), "{t}");
    }
}
