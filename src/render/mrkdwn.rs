//! Slack's `mrkdwn`, the markup of Block Kit `section` texts: `*bold*`, `_italic_`,
//! `~strike~`, `` `code` ``, `>` quotes and `<url|label>` links, mentions and channel
//! alerts (`<@U…>`, `<!channel>`).
//!
//! Slack reads `&`, `<` and `>` as the start of an entity, a link or a mention: every
//! text is written with them escaped as Slack documents (`&amp;`, `&lt;`, `&gt;`), our own
//! links alone are written raw. Prose had its `*`, `~`, `` ` ``, `<`, `>` replaced by
//! look-alikes when its span was built ([`super::escape`]); here an `_` at a word's edge
//! (which could open or close italics; `order_items` cannot) becomes `＿`, and `@` becomes
//! `＠`, so that not even a workspace that links bare names (`@here`) reads one. Inside
//! code spans Slack formats nothing: only the entities are escaped there.

use super::dialect::Dialect;
use super::doc::{Header, Marker};
use super::line::{Color, Line, Span};
use super::wecom::coloured_title;
use super::words::{Lang, Word};

pub(crate) struct Mrkdwn;

/// `s` with Slack's three entities escaped.
fn entities(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Prose: the entities, `_` at a word's edge and `@` defused.
fn prose(s: &str, out: &mut String) {
    let chars: Vec<char> = s.chars().collect();
    let word = |k: Option<usize>| {
        k.and_then(|k| chars.get(k))
            .is_some_and(|c| c.is_alphanumeric())
    };
    let mut buf = String::with_capacity(s.len());
    for (k, &c) in chars.iter().enumerate() {
        match c {
            '_' if !word(k.checked_sub(1)) || !word(Some(k + 1)) => buf.push('\u{FF3F}'),
            '@' => buf.push('\u{FF20}'),
            c => buf.push(c),
        }
    }
    entities(&buf, out);
}

impl Dialect for Mrkdwn {
    fn markup(&self) -> bool {
        true
    }

    fn text(&self, s: &str, out: &mut String) {
        prose(s, out);
    }

    fn strong(&self, s: &str, out: &mut String) {
        out.push('*');
        prose(s, out);
        out.push('*');
    }

    fn code(&self, s: &str, out: &mut String) {
        out.push('`');
        entities(s, out);
        out.push('`');
    }

    fn font(&self, _color: Color, s: &str, out: &mut String) {
        prose(s, out);
    }

    /// `url` was checked to hold none of `<>|` ([`super::valid_base_url`], percent-encoded
    /// segments, base64url tokens).
    fn link(&self, label: &str, url: &str, out: &mut String) {
        out.push('<');
        out.push_str(url);
        out.push('|');
        entities(label, out);
        out.push('>');
    }

    fn detail_prefix(&self) -> &'static str {
        ""
    }

    fn list_sep(&self) -> &'static str {
        " · "
    }

    fn header(&self, h: &Header, lang: Lang) -> Vec<Line> {
        let mut l = Line::new("").fixed(h.plain_counts().join(" · "));
        if let Some(win) = &h.window {
            l = l.fixed(format!(
                " · {} {win}",
                lang.word(Word::Window).to_lowercase()
            ));
        }
        vec![Line::new("").fixed(h.title.clone()), l]
    }

    fn title_line(&self, m: Marker, title: String, lang: Lang) -> Line {
        coloured_title(m, title, lang)
    }

    fn digest_heading(&self, heading: String) -> Line {
        Line::new("").span(Span::Strong(heading))
    }
}
