//! HTML, for the email channel's HTML part: the same document as every other dialect,
//! with bold titles, coloured markers, code spans and real links.
//!
//! Every text is escaped when it is written ([`Dialect::text`]): our wording and user
//! text alike, so a query text or a table name can never open a tag or an attribute.
//! Lines end with `<br>`; the layout's indentation is kept with non-breaking spaces,
//! since mail clients collapse spaces and many ignore CSS `white-space`. Only inline
//! styles are used: most mail clients drop `<style>` blocks.

use sentinel_actors::Notification;

use super::dialect::{Dialect, Style};
use super::doc::{Entry, Header, Marker, Summary};
use super::line::{Color, Line, Span};
use super::wecom::coloured_title;
use super::words::{Lang, Word};
use super::{render, RenderOptions};
use crate::story;

/// The HTML dialect.
pub(crate) struct Html;

/// A detail line's indentation, which HTML would otherwise collapse.
const INDENT: &str = "\u{a0}\u{a0}\u{a0}\u{a0}";

/// Longest subject kept, in characters (mail clients cut long subjects anyway).
const SUBJECT_CHARS: usize = 160;

/// Writes `s` with `&`, `<`, `>`, `"` and `'` escaped: safe in text and in a quoted
/// attribute.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for HTML text and quoted attributes (the pages of the action links).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape(s, &mut out);
    out
}

/// A tone as a colour that reads on white and on dark backgrounds.
fn css_color(c: Color) -> &'static str {
    match c {
        Color::Warning => "#c2410c",
        Color::Comment => "#6b7280",
        Color::Info => "#15803d",
    }
}

impl Dialect for Html {
    fn bounded(&self) -> bool {
        false
    }

    fn text(&self, s: &str, out: &mut String) {
        escape(s, out);
    }

    fn strong(&self, s: &str, out: &mut String) {
        out.push_str("<b>");
        escape(s, out);
        out.push_str("</b>");
    }

    fn code(&self, s: &str, out: &mut String) {
        out.push_str("<code style=\"background:#f3f4f6;padding:0 2px\">");
        escape(s, out);
        out.push_str("</code>");
    }

    fn font(&self, color: Color, s: &str, out: &mut String) {
        out.push_str("<span style=\"color:");
        out.push_str(css_color(color));
        out.push_str("\">");
        escape(s, out);
        out.push_str("</span>");
    }

    /// `url` was checked to be an http(s) address with percent-encoded segments; it is
    /// escaped all the same.
    fn link(&self, label: &str, url: &str, out: &mut String) {
        out.push_str("<a href=\"");
        escape(url, out);
        out.push_str("\">");
        escape(label, out);
        out.push_str("</a>");
    }

    fn detail_prefix(&self) -> &'static str {
        INDENT
    }

    fn list_sep(&self) -> &'static str {
        " · "
    }

    fn header(&self, h: &Header, lang: Lang) -> Vec<Line> {
        let mut lines = vec![
            Line::new("").span(Span::Strong(h.title.clone())),
            Line::new("").list(&h.counts, " · ", |(text, color)| {
                Span::Font(*color, text.clone())
            }),
        ];
        if let Some(win) = &h.window {
            lines.push(Line::new("").span(Span::Font(
                Color::Comment,
                format!("{}: {win}", lang.word(Word::Window)),
            )));
        }
        lines
    }

    fn title_line(&self, m: Marker, title: String, lang: Lang) -> Line {
        coloured_title(m, title, lang)
    }

    fn digest_heading(&self, heading: String) -> Line {
        Line::new("").span(Span::Strong(heading))
    }
}

/// The report as an HTML document (the email's HTML part); empty for an empty
/// notification.
pub fn html_report(n: &Notification, opts: &RenderOptions) -> String {
    let Some(body) = render(n, Style::Html, usize::MAX, opts).into_iter().next() else {
        return String::new();
    };
    let mut out = String::with_capacity(body.len() * 5 / 4 + 300);
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n");
    out.push_str(
        "<body><div style=\"font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,\
         sans-serif;font-size:14px;line-height:1.5\">\n",
    );
    for line in body.split('\n') {
        out.push_str(line);
        out.push_str("<br>\n");
    }
    out.push_str("</div></body></html>\n");
    out
}

/// A subject that says what matters before the message is opened: the counts and the
/// first entry's title, "PoWA Sentinel alert: 1 critical — Top query #1 … (+2 more)".
pub fn subject(n: &Notification, opts: &RenderOptions) -> String {
    let lang = opts.lang;
    let stories = story::stories(&n.insights);
    let summary = Summary::of(n, &stories);
    let header = Header::of(&summary, None, lang);
    let mut out = header.title.clone();
    let counts = header.plain_counts();
    if !counts.is_empty() {
        out.push_str(": ");
        out.push_str(&counts.join(lang.word(Word::ListSep)));
    }
    if let Some(first) = stories.first() {
        out.push_str(" — ");
        let told = Entry::of(first, opts, summary.repositories > 1).title;
        let title = told.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&title);
        if stories.len() > 1 {
            out.push_str(&format!(" (+{})", stories.len() - 1));
        }
    }
    match out.char_indices().nth(SUBJECT_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture::{notification, slow_query};

    #[test]
    fn html_escapes_every_text_and_marks_up_ours() {
        let mut i = slow_query(1, "SELECT '<script>alert(1)</script>' FROM \"t&u\"");
        i.title = "Top query #1 <b>on</b> \"x\"".into();
        let n = notification(vec![i]);
        let html = html_report(&n, &RenderOptions::default());
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("<b>on</b>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            html.contains("<b>Top query #1 &lt;b&gt;on&lt;/b&gt; &quot;x&quot;</b>"),
            "{html}"
        );
        assert!(
            html.contains("<span style=\"color:#c2410c\">🟠 WARNING</span>"),
            "{html}"
        );
        assert!(html.contains("<code style="), "{html}");
        // Every tag we open is closed on its line.
        for line in html.lines() {
            for tag in ["b", "span", "code", "a"] {
                let opens = line.matches(&format!("<{tag}>")).count()
                    + line.matches(&format!("<{tag} ")).count();
                assert_eq!(opens, line.matches(&format!("</{tag}>")).count(), "{line}");
            }
        }
        assert_eq!(
            html_report(&notification(vec![]), &RenderOptions::default()),
            ""
        );
    }

    #[test]
    fn subject_counts_and_names_the_first_entry() {
        let n = notification(vec![slow_query(1, "SELECT 1"), slow_query(2, "SELECT 2")]);
        let s = subject(&n, &RenderOptions::default());
        assert!(
            s.starts_with("PoWA Sentinel report: 2 warning — Top query #"),
            "{s}"
        );
        assert!(s.ends_with("(+1)"), "{s}");
        let mut long = slow_query(1, "SELECT 1");
        long.title = "x\n".repeat(500);
        let s = subject(&notification(vec![long]), &RenderOptions::default());
        assert!(
            s.chars().count() <= SUBJECT_CHARS + 1 && !s.contains('\n'),
            "{s}"
        );
    }
}
