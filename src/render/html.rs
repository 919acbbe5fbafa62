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
use super::RenderOptions;
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
    html_report_with(n, opts, &[])
}

/// An image of an email's HTML part, shown by reference to its MIME part: the insight it
/// shows (an index into the notification's insights) and its `Content-ID` (without the
/// angle brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineChart {
    pub insight: usize,
    pub cid: String,
}

/// [`html_report`] with `charts` shown right after the entry that tells their insight
/// (`<img src="cid:…">`, the image a MIME part of the same message). A chart whose
/// insight no entry tells is left out.
pub fn html_report_with(n: &Notification, opts: &RenderOptions, charts: &[InlineChart]) -> String {
    let Some((header, entries)) = super::message_entries(n, Style::Html, opts) else {
        return String::new();
    };
    let size: usize = entries.iter().map(|(b, _)| b.len()).sum();
    let mut out = String::with_capacity((header.len() + size) * 5 / 4 + 300);
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n");
    out.push_str(
        "<body><div style=\"font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,\
         sans-serif;font-size:14px;line-height:1.5\">\n",
    );
    push_lines(&header, &mut out);
    let mut shown: Vec<usize> = Vec::new();
    for (block, told) in entries.iter().filter(|(b, _)| !b.is_empty()) {
        out.push_str("<br>\n");
        push_lines(block, &mut out);
        for c in charts.iter().filter(|c| told.contains(&c.insight)) {
            if shown.contains(&c.insight) {
                continue;
            }
            shown.push(c.insight);
            let src = format!("cid:{}", c.cid);
            push_chart(
                n,
                c.insight,
                opts.lang,
                "style=\"max-width:100%;height:auto\"",
                &src,
                &mut out,
            );
            out.push_str("<br>\n");
        }
    }
    out.push_str("</div></body></html>\n");
    out
}

/// `<img width="720" {attrs} alt="Chart of: <title>" src="{src}">`: the chart of insight
/// `k` of `n`, in the email's HTML part and on the report page alike (`src` is escaped).
fn push_chart(n: &Notification, k: usize, lang: Lang, attrs: &str, src: &str, out: &mut String) {
    let alt = n.insights.get(k).map(|i| i.title.as_str()).unwrap_or("");
    out.push_str("<img width=\"720\" ");
    out.push_str(attrs);
    out.push_str(" alt=\"");
    escape(lang.word(Word::ChartOf), out);
    out.push_str(": ");
    escape(alt, out);
    out.push_str("\" src=\"");
    escape(src, out);
    out.push_str("\">");
}

/// A chart of a report page: the insight it shows (an index into the notification's
/// insights) and its PNG.
pub struct PageChart {
    pub insight: usize,
    pub png: Vec<u8>,
}

/// The page's style: one `<style>` block (the page is served by us, not mailed), light
/// and dark, narrow enough to read on a phone.
const PAGE_STYLE: &str = "body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,\
sans-serif;font-size:15px;line-height:1.55;margin:0;background:#f6f7f9;color:#111827}\
main{max-width:60em;margin:0 auto;padding:1em}\
header,section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:.8em 1em;\
margin:0 0 1em;overflow-wrap:anywhere}\
figure{margin:.8em 0 0}img{max-width:100%;height:auto;border:1px solid #e5e7eb}\
footer{color:#6b7280;font-size:13px;margin:1em 0}a{color:#1d4ed8}\
@media (prefers-color-scheme:dark){body{background:#111827;color:#e5e7eb}\
header,section{background:#1f2937;border-color:#374151}a{color:#93c5fd}\
code{background:#374151!important}}";

/// The longest SQL text a page shows: all of it in practice, bounded so that a
/// pathological 1 MB statement does not make a 1 MB page.
pub const PAGE_SQL_CHARS: usize = 20_000;

/// Lines of a block as HTML: each line ends with `<br>`.
fn push_lines(block: &str, out: &mut String) {
    for line in block.split('\n') {
        out.push_str(line);
        out.push_str("<br>\n");
    }
}

/// One notification as a whole web page, for the report archive ([`crate::archive`]):
/// the header, every entry in full, each followed by the charts of the insights it tells
/// (inline PNG, so the page needs nothing else), and when the page is kept until.
/// Everything is escaped as in [`html_report`]; the page has no script. Empty for an
/// empty notification.
pub fn html_page(
    n: &Notification,
    opts: &RenderOptions,
    charts: &[PageChart],
    kept_until: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    use base64::Engine as _;
    let opts = &RenderOptions {
        sql_preview_chars: opts.sql_preview_chars.max(PAGE_SQL_CHARS),
        ..opts.clone()
    };
    let Some((header, entries)) = super::page_entries(n, opts) else {
        return String::new();
    };
    let lang = opts.lang;
    let mut out = String::with_capacity(
        8 * 1024
            + entries.iter().map(|(b, _)| b.len()).sum::<usize>()
            + charts
                .iter()
                .map(|c| c.png.len() * 4 / 3 + 200)
                .sum::<usize>(),
    );
    out.push_str("<!DOCTYPE html>\n<html lang=\"");
    out.push_str(lang.code());
    out.push_str("\"><head><meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n");
    out.push_str("<meta name=\"robots\" content=\"noindex\">\n<title>");
    escape(&subject(n, opts), &mut out);
    out.push_str("</title>\n<style>");
    out.push_str(PAGE_STYLE);
    out.push_str("</style></head>\n<body><main>\n<header>\n");
    push_lines(&header, &mut out);
    out.push_str("</header>\n");
    for (block, told) in &entries {
        out.push_str("<section>\n");
        push_lines(block, &mut out);
        for c in charts.iter().filter(|c| told.contains(&c.insight)) {
            let src = format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&c.png)
            );
            out.push_str("<figure>");
            push_chart(n, c.insight, lang, "height=\"820\"", &src, &mut out);
            out.push_str("</figure>\n");
        }
        out.push_str("</section>\n");
    }
    out.push_str("<footer>");
    escape(
        &format!(
            "powa-sentinel {} · {}",
            env!("CARGO_PKG_VERSION"),
            n.created_at.format("%Y-%m-%d %H:%M UTC")
        ),
        &mut out,
    );
    if let Some(until) = kept_until {
        out.push_str(" · ");
        escape(
            &format!(
                "{} {}",
                lang.word(Word::KeptUntil),
                until.format("%Y-%m-%d")
            ),
            &mut out,
        );
    }
    out.push_str("</footer>\n</main></body></html>\n");
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
    fn a_page_tells_every_entry_in_full_with_its_charts_and_no_script() {
        use base64::Engine as _;
        let long = format!("SELECT '<script>x</script>' {}", "a, ".repeat(400));
        let mut first = slow_query(1, &long);
        first.title = "first <i>".into();
        let second = slow_query(2, "SELECT 2");
        let n = notification(vec![first, second]);
        let png = vec![0x89, b'P', b'N', b'G', 1, 2, 3];
        let charts = [PageChart {
            insight: 1,
            png: png.clone(),
        }];
        let until = chrono::DateTime::parse_from_rfc3339("2026-12-31T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let page = html_page(&n, &RenderOptions::default(), &charts, Some(until));
        assert!(
            page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
            "{page}"
        );
        assert!(
            !page.contains("<script") && page.contains("&lt;script&gt;"),
            "{page}"
        );
        // Unlike a chat message, the whole SQL text is there (past the default preview)…
        assert!(page.matches("a, ").count() >= 399, "{page}");
        // …and one section per entry, the chart after the second one's text.
        assert_eq!(page.matches("<section>").count(), 2, "{page}");
        let sections: Vec<&str> = page.split("<section>").collect();
        let img = sections
            .iter()
            .position(|s| s.contains("<img "))
            .expect("a chart");
        assert!(sections[img].contains("SELECT 2"), "{}", sections[img]);
        let b64 = page
            .split("base64,")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            png
        );
        assert!(
            page.contains("this page is kept until 2026-12-31"),
            "{page}"
        );
        assert_eq!(
            html_page(&notification(vec![]), &RenderOptions::default(), &[], None),
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
