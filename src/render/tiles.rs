//! Entries as tiles: one finding per tile, the same stories as every message told in short
//! fields, for the providers whose cards hold one thing each — a title, a line of text, a
//! few key/value rows and buttons (WeCom application `template_card`). Feishu's and
//! Slack's cards, which list many entries each, are [`super::card`]'s. Cards show plain text: no markup to escape, but
//! every field is one line, cut to what a phone shows, with the whole entry one tap away
//! (the report page, or powa-web).

use sentinel_actors::{Fingerprint, Notification, Severity};

use super::doc::{Action, Entry, Summary};
use super::escape::{clean, Escape};
use super::words::Word;
use super::{told_by, RenderOptions};
use crate::story;

/// One entry as a tile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub severity: Severity,
    pub resolved: bool,
    /// "🟠 WARNING NEW", in the channel's language.
    pub marker: String,
    pub title: String,
    pub place: Option<String>,
    /// What it costs, why, what to do: one line.
    pub summary: String,
    /// A few (label, value) rows: the numbers, the query.
    pub fields: Vec<(String, String)>,
    /// The finding the buttons act on.
    pub fingerprint: Fingerprint,
    /// Open, and not a heartbeat: something to acknowledge or snooze.
    pub actionable: bool,
    /// powa-web's page of it, when `powa_web_url` is set.
    pub link: Option<String>,
    /// The insights of the notification this card tells, as indexes.
    pub insights: Vec<usize>,
}

/// Longest field of a tile: each is one line, cut further by the provider's shell.
const FIELD_CHARS: usize = 2000;

/// `s` as one line of at most `chars` characters ("…" when cut).
pub fn line(s: &str, chars: usize) -> String {
    clean(s, false, Escape::Prose, chars)
}

/// The entries of `n` as tiles, most severe first (the order of every message).
pub fn tiles(n: &Notification, opts: &RenderOptions) -> Vec<Tile> {
    let lang = opts.lang;
    let order = story::stories(&n.insights);
    let summary = Summary::of(n, &order);
    order
        .iter()
        .map(|s| {
            let e = Entry::of(s, opts, summary.repositories > 1);
            let resolved = e.marker.resolved();
            let marker = if resolved {
                super::wecom::resolved_marker(lang)
            } else {
                let mut m = super::wecom::severity_marker(e.marker.severity, lang);
                if let Some(st) = e.marker.lifecycle() {
                    m.push(' ');
                    m.push_str(lang.lifecycle(st));
                }
                m
            };
            let action = match &e.action {
                Some(Action::Run { ddl, .. }) => Some(ddl.clone()),
                Some(Action::Advice(a)) => Some(a.clone()),
                None => None,
            };
            let one = |s: &str| line(s, FIELD_CHARS);
            let said: Vec<String> = [e.impact.clone(), e.cause.clone(), action]
                .into_iter()
                .flatten()
                .collect();
            let mut fields = Vec::new();
            if !e.numbers.is_empty() {
                fields.push((
                    lang.word(Word::Numbers).to_string(),
                    one(&e.numbers.join(" · ")),
                ));
            }
            if let Some(q) = &e.query {
                fields.push((lang.word(Word::Query).to_string(), one(q)));
            }
            if let Some(ch) = e.changed.first() {
                fields.push((lang.word(Word::Changed).to_string(), one(ch)));
            }
            Tile {
                severity: e.marker.severity,
                resolved,
                marker,
                title: one(&e.title),
                place: e.place.as_deref().map(one),
                summary: one(&said.join(" · ")),
                fields,
                fingerprint: s.lead.fingerprint,
                actionable: !s.is_resolved() && s.lead.kind != crate::gate::heartbeat::KIND,
                link: e.link.clone(),
                insights: told_by(n, s),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture::{notification, slow_query};

    #[test]
    fn every_entry_is_a_tile_with_one_line_fields() {
        let mut i = slow_query(1, "SELECT *\n  FROM t\tWHERE id = $1");
        i.title = "Top query\n#1".into();
        let n = notification(vec![i, slow_query(2, "SELECT 2")]);
        let tiles = tiles(&n, &RenderOptions::default());
        assert_eq!(tiles.len(), 2);
        let c = &tiles[0];
        assert!(c.marker.starts_with("🟠 WARNING"), "{c:?}");
        assert_eq!(c.title, "Top query #1");
        assert!(c.actionable && !c.resolved);
        assert!(c.summary.contains("EXPLAIN"), "{c:?}");
        assert!(
            c.fields
                .iter()
                .any(|(k, v)| k == "Query" && v.contains("SELECT * FROM t WHERE id = $1")),
            "{c:?}"
        );
        assert_eq!(c.insights.len(), 1);
        assert_eq!(line("a\nb  c", 100), "a b c");
        assert_eq!(line("abcdef", 4).chars().count(), 4);
    }
}
