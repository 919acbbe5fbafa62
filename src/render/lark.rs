//! Feishu's `lark_md`, the markdown of an interactive card's text elements: `**bold**`,
//! `*italic*`, `~~strike~~`, `[label](url)`, `<at id=…></at>` and `<font>` tags. No
//! inline code is promised there, so code spans are written as escaped prose: every
//! special of a query text is replaced by its look-alike (see [`super::escape`]), and
//! `&` by `＆` as well, so that an entity such as `&lt;at id=all&gt;` can never be read
//! back as a tag. The card's header carries the severity's colour; the text has none.

use super::dialect::Dialect;
use super::doc::{Header, Marker};
use super::line::{Color, Line, Span};
use super::wecom::coloured_title;
use super::words::{Lang, Word};

/// What `&` becomes in a card's text.
pub const AMPERSAND: char = '\u{FF06}';

pub(crate) struct LarkMd;

/// `s` with `&` replaced (the other specials were replaced when the span was built).
fn push(s: &str, out: &mut String) {
    out.extend(s.chars().map(|c| if c == '&' { AMPERSAND } else { c }));
}

impl Dialect for LarkMd {
    fn markup(&self) -> bool {
        true
    }

    fn literal_code(&self) -> bool {
        false
    }

    fn text(&self, s: &str, out: &mut String) {
        push(s, out);
    }

    fn strong(&self, s: &str, out: &mut String) {
        out.push_str("**");
        push(s, out);
        out.push_str("**");
    }

    fn code(&self, s: &str, out: &mut String) {
        push(s, out);
    }

    fn font(&self, _color: Color, s: &str, out: &mut String) {
        push(s, out);
    }

    fn link(&self, label: &str, url: &str, out: &mut String) {
        out.push('[');
        out.push_str(label);
        out.push_str("](");
        out.push_str(url);
        out.push(')');
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
