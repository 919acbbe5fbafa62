//! A dialect: how one kind of message writes the provider-neutral document
//! ([`super::doc`]) — markers, headings, detail prefixes, marked-up spans, escaping.
//!
//! What each provider receives today:
//!
//! | channel | dialect |
//! | --- | --- |
//! | console | [`Style::Plain`] ([`super::text::Plain`]): one part, no budget |
//! | WeCom robot and application, `markdown` | [`Style::Markdown`] ([`WeCom::Markdown`]) |
//! | WeCom robot `markdown_v2` | [`Style::MarkdownV2`] ([`WeCom::MarkdownV2`]) |
//! | DingTalk `markdown` and `actionCard` (tables turned into lists, `@` defused) | [`Style::DingTalk`] ([`super::dingtalk::DingTalkMd`]) |
//! | WeCom robot and application `text`; Feishu `text`; Slack (`mrkdwn` off) | [`Style::Text`] ([`super::text::Text`]) |
//! | email, HTML part | [`Style::Html`] ([`super::html::Html`]); its plain-text part is [`Style::Plain`] |
//! | Feishu `card` (interactive cards, one text element per entry; see [`super::card`]) | [`Style::LarkMd`] ([`super::lark::LarkMd`]) |
//! | Slack `blocks` (one section per entry; see [`super::card`]) | [`Style::Mrkdwn`] ([`super::mrkdwn::Mrkdwn`]) |
//! | webhook, file | none: they send the insights as JSON |
//!
//! The provided methods are plain text's: no markup, two-space details, bracketed
//! markers. A dialect overrides what it marks up.

use sentinel_actors::message::Lifecycle;

use super::dingtalk::DingTalkMd;
use super::doc::{Header, Marker};
use super::html::Html;
use super::lark::LarkMd;
use super::line::{Color, Line, Span};
use super::mrkdwn::Mrkdwn;
use super::text::{Plain, Text};
use super::wecom::WeCom;
use super::words::{Lang, Word};

/// The output dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Console: plain text, one part, no budget.
    Plain,
    /// WeCom `markdown` (v1): headings, bold, inline code, `>` quotes, `<font color>`.
    /// Lists, rules and fenced code are shown raw by WeCom, so they are never used.
    Markdown,
    /// WeCom `markdown_v2`: lists and headings; no colours.
    MarkdownV2,
    /// WeCom `text`: no markup at all.
    Text,
    /// An HTML fragment (the email channel's HTML part): every text escaped, one part,
    /// no budget.
    Html,
    /// Feishu's `lark_md` (interactive cards): bold and links; code written as prose.
    LarkMd,
    /// Slack's `mrkdwn` (Block Kit sections): bold, code, `<url|label>` links.
    Mrkdwn,
    /// DingTalk's markdown: [`Style::MarkdownV2`] with every `@` of the text defused.
    DingTalk,
}

impl Style {
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Style::Plain => &Plain,
            Style::Markdown => &WeCom::Markdown,
            Style::MarkdownV2 => &WeCom::MarkdownV2,
            Style::Text => &Text,
            Style::Html => &Html,
            Style::LarkMd => &LarkMd,
            Style::Mrkdwn => &Mrkdwn,
            Style::DingTalk => &DingTalkMd,
        }
    }
}

pub(crate) trait Dialect: Sync {
    /// Whether prose has its markdown specials defused (and code its tag-like `<`).
    fn markup(&self) -> bool {
        false
    }

    /// Whether code spans show their text as is (else their text is escaped as prose:
    /// the dialect has no code span its provider promises to keep literal).
    fn literal_code(&self) -> bool {
        true
    }

    /// Whether parts are held to a byte budget (else: one part, however long).
    fn bounded(&self) -> bool {
        true
    }

    /// What ends every part.
    fn ending(&self) -> &'static str {
        ""
    }

    /// Writes text as it is shown: our wording, prefixes and (already cleaned) user
    /// text. HTML escapes it here.
    fn text(&self, s: &str, out: &mut String) {
        out.push_str(s);
    }

    fn strong(&self, s: &str, out: &mut String) {
        out.push_str(s);
    }

    fn code(&self, s: &str, out: &mut String) {
        out.push_str(s);
    }

    fn font(&self, _color: Color, s: &str, out: &mut String) {
        out.push_str(s);
    }

    fn link(&self, label: &str, url: &str, out: &mut String) {
        out.push_str(label);
        out.push_str(": ");
        out.push_str(url);
    }

    /// What starts each detail line of an entry.
    fn detail_prefix(&self) -> &'static str {
        "  "
    }

    /// Between the items of a list of numbers, servers or kinds.
    fn list_sep(&self) -> &'static str {
        ", "
    }

    /// The header: title (with its part marker), counts, window.
    fn header(&self, h: &Header, lang: Lang) -> Vec<Line> {
        let mut counts = Line::new("").fixed(h.plain_counts().join(lang.word(Word::ListSep)));
        if let Some(win) = &h.window {
            counts = counts.fixed(format!(
                " | {} {win}",
                lang.word(Word::Window).to_lowercase()
            ));
        }
        vec![Line::new("").fixed(h.title.clone()), counts]
    }

    /// An entry's first line: its marker, then its (escaped) title.
    fn title_line(&self, m: Marker, title: String, lang: Lang) -> Line {
        let marker = if m.resolved() {
            format!("[{}] ", lang.lifecycle(Lifecycle::Resolved))
        } else {
            match m.lifecycle() {
                Some(st) => format!(
                    "[{}][{}] ",
                    lang.severity_upper(m.severity),
                    lang.lifecycle(st)
                ),
                None => format!("[{}] ", lang.severity_upper(m.severity)),
            }
        };
        Line::new("").fixed(marker).span(Span::Text(title))
    }

    /// The first line of a digest's "+N more" block.
    fn digest_heading(&self, heading: String) -> Line {
        Line::new("").fixed(format!("[{heading}]"))
    }
}
