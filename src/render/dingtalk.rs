//! DingTalk's markdown: WeCom's `markdown_v2` as written (headings, lists, bold, links;
//! the channel turns tables into lists), with every `@` of the text written as `＠`.
//!
//! Why: DingTalk notifies a person listed in the message's `at.atMobiles` /
//! `at.atUserIds` wherever `@<mobile>` or `@<userid>` appears in the text, code spans
//! included. A query text holding `@13800000000` would otherwise mention that person
//! again (or, in a message that lists them, wherever the query says). Our own wording
//! has no `@`; link addresses are written as they are.

use super::dialect::Dialect;
use super::doc::{Header, Marker};
use super::line::{Color, Line};
use super::wecom::WeCom;
use super::words::Lang;

/// What `@` becomes in DingTalk's text.
pub const AT: char = '\u{FF20}';

pub(crate) struct DingTalkMd;

const INNER: WeCom = WeCom::MarkdownV2;

/// `s` with every `@` replaced.
fn defang(s: &str) -> String {
    s.chars().map(|c| if c == '@' { AT } else { c }).collect()
}

impl Dialect for DingTalkMd {
    fn markup(&self) -> bool {
        INNER.markup()
    }

    fn literal_code(&self) -> bool {
        INNER.literal_code()
    }

    fn text(&self, s: &str, out: &mut String) {
        INNER.text(&defang(s), out);
    }

    fn strong(&self, s: &str, out: &mut String) {
        INNER.strong(&defang(s), out);
    }

    fn code(&self, s: &str, out: &mut String) {
        INNER.code(&defang(s), out);
    }

    fn font(&self, color: Color, s: &str, out: &mut String) {
        INNER.font(color, &defang(s), out);
    }

    fn link(&self, label: &str, url: &str, out: &mut String) {
        INNER.link(&defang(label), url, out);
    }

    fn detail_prefix(&self) -> &'static str {
        INNER.detail_prefix()
    }

    fn list_sep(&self) -> &'static str {
        INNER.list_sep()
    }

    fn header(&self, h: &Header, lang: Lang) -> Vec<Line> {
        INNER.header(h, lang)
    }

    fn title_line(&self, m: Marker, title: String, lang: Lang) -> Line {
        INNER.title_line(m, title, lang)
    }

    fn digest_heading(&self, heading: String) -> Line {
        INNER.digest_heading(heading)
    }
}
