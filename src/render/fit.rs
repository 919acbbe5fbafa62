//! Byte budgets: fitting an entry into what a message leaves, packing entries into
//! messages, and choosing what a digest shows in full.
//!
//! Budgets are **UTF-8 bytes** (WeCom counts bytes). A message is split between entries;
//! when one entry alone is too big, its SQL preview is shortened, then dropped, then its
//! longest pieces of user text are cut, then its last lines dropped. No part ever exceeds
//! the budget, and no cut falls inside a span.

use super::dialect::Dialect;
use super::doc::{ChangesSection, Entry};
use super::layout::{changes_lines, entry_lines};
use super::line::{render_lines, Line};
use super::words::Lang;
use super::RenderOptions;

/// Smallest budget the splitter works with; smaller budgets are raised to this.
pub const MIN_BUDGET: usize = 512;
/// SQL previews shorter than this are not worth showing: drop the line instead.
const MIN_PREVIEW_CHARS: usize = 24;

/// One entry as text of at most `avail` bytes: shorter SQL preview first, then no
/// preview, then the longest lines cut, then the last lines dropped.
pub(crate) fn entry(
    e: &Entry,
    d: &dyn Dialect,
    opts: &RenderOptions,
    avail: usize,
) -> Option<String> {
    let mut preview = opts.sql_preview_chars;
    let lines = loop {
        let lines = entry_lines(e, d, opts.lang, preview);
        if block_len(&lines, d) <= avail || preview == 0 {
            break lines;
        }
        preview = if preview / 2 >= MIN_PREVIEW_CHARS {
            preview / 2
        } else {
            0
        };
    };
    fit_lines(lines, d, avail)
}

/// At most this many changes per server in the "Changes" section; the rest are counted.
pub(crate) const MAX_SECTION_ITEMS: usize = 8;

/// The "Changes" section as text of at most `avail` bytes: fewer changes per server
/// first (nearest kept, the rest counted), then cut like any lines.
pub(crate) fn changes(
    c: &ChangesSection,
    d: &dyn Dialect,
    lang: Lang,
    avail: usize,
) -> Option<String> {
    for cap in [MAX_SECTION_ITEMS, 4, 2, 1] {
        let lines = changes_lines(c, d, lang, cap);
        if block_len(&lines, d) <= avail {
            return Some(render_lines(&lines, d));
        }
    }
    fit_lines(changes_lines(c, d, lang, 1), d, avail)
}

fn block_len(lines: &[Line], d: &dyn Dialect) -> usize {
    let bytes: usize = lines.iter().map(|l| l.render(d).len()).sum();
    bytes + lines.len().saturating_sub(1)
}

/// Lines as text of at most `avail` bytes: the longest pieces of user text cut first,
/// then the last lines dropped. Never cuts inside a span, so no construct is left open.
pub(crate) fn fit_lines(mut lines: Vec<Line>, d: &dyn Dialect, avail: usize) -> Option<String> {
    // Rendered length per line, updated only where something changed.
    let mut lens: Vec<usize> = lines.iter().map(|l| l.render(d).len()).collect();
    loop {
        let len = lens.iter().sum::<usize>() + lens.len().saturating_sub(1);
        if len <= avail {
            break;
        }
        let excess = len - avail;
        // Halve the longest piece of user text (or cut just the excess), so that cuts
        // spread over the pieces instead of wiping out the first one.
        let longest = lines
            .iter()
            .enumerate()
            .flat_map(|(li, l)| {
                l.spans
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.shrinkable())
                    .map(move |(si, s)| (s.content().len(), li, si))
            })
            .max();
        match longest {
            Some((size, li, si)) => {
                let cut = excess.min(size.div_ceil(2)).max(1);
                lines[li].spans[si].cut_to(size - cut);
                if li > 0 && !lines[li].has_content() {
                    lines.remove(li);
                    lens.remove(li);
                } else {
                    lens[li] = lines[li].render(d).len();
                }
            }
            None if lines.len() > 1 => {
                lines.pop();
                lens.pop();
            }
            None => return None,
        }
    }
    if lines.is_empty() {
        return None;
    }
    Some(render_lines(&lines, d))
}

/// Packs blocks greedily into messages, in order, two bytes ("\n\n") between blocks,
/// `avail` bytes per message; empty blocks take no room.
#[derive(Clone, Copy)]
struct Packer {
    avail: usize,
    groups: usize,
    used: usize,
}

impl Packer {
    fn new(avail: usize) -> Self {
        Packer {
            avail,
            groups: 0,
            used: 0,
        }
    }

    /// Adds a block of `len` bytes; true when it starts a new message.
    fn push(&mut self, len: usize) -> bool {
        if len == 0 {
            return false;
        }
        if self.groups > 0 && self.used + 2 + len <= self.avail {
            self.used += 2 + len;
            false
        } else {
            self.groups += 1;
            self.used = len;
            true
        }
    }

    /// The count if one more block of `len` bytes were pushed.
    fn count_with(mut self, len: usize) -> usize {
        self.push(len);
        self.groups
    }
}

/// The blocks to send in at most `max_parts` messages: all of them when they fit, else
/// the most blocks in full such that they and `rest(k)` (the "+N more" block for the
/// blocks from `k` on) fit. `rest(0)`, the block alone, always fits. Also returns how
/// many blocks are kept in full (the "+N more" block, when there is one, is the last one
/// returned and is not counted).
pub(crate) fn within(
    blocks: Vec<String>,
    avail: usize,
    max_parts: usize,
    rest: impl Fn(usize) -> String,
) -> (Vec<String>, usize) {
    let mut all = Packer::new(avail);
    for b in &blocks {
        all.push(b.len());
    }
    if all.groups <= max_parts {
        let n = blocks.len();
        return (blocks, n);
    }
    let mut best: (usize, String) = (0, String::new());
    let mut packer = Packer::new(avail);
    for (k, b) in blocks.iter().enumerate() {
        let r = rest(k);
        if packer.count_with(r.len()) <= max_parts {
            best = (k, r);
        } else {
            break;
        }
        packer.push(b.len());
    }
    let (k, r) = best;
    let mut v: Vec<String> = blocks.into_iter().take(k).collect();
    v.push(r);
    (v, k)
}

/// The blocks grouped into messages as [`Packer`] counts them, each with its index in
/// `blocks`: which message carries which entry.
pub(crate) fn pack(blocks: Vec<String>, avail: usize) -> Vec<Vec<(usize, String)>> {
    let mut packer = Packer::new(avail);
    let mut grouped: Vec<Vec<(usize, String)>> = Vec::new();
    for (k, b) in blocks.into_iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let starts = packer.push(b.len());
        match grouped.last_mut() {
            Some(g) if !starts => g.push((k, b)),
            _ => grouped.push(vec![(k, b)]),
        }
    }
    grouped
}

#[cfg(test)]
mod tests {
    use sentinel_actors::{Insight, Severity};

    use super::*;
    use crate::render::fixture::{all_styles, backticks_balanced, notification, slow_query};
    use crate::render::*;

    #[test]
    fn many_insights_split_into_numbered_self_contained_parts() {
        let sql = "SELECT a, b, c FROM some_table WHERE x = $1 AND y = `z` ".repeat(40);
        let v: Vec<Insight> = (0..60).map(|k| slow_query(k, &sql)).collect();
        let n = notification(v);
        for (style, budget) in all_styles() {
            let parts = render(&n, style, budget, &RenderOptions::default());
            assert!(parts.len() > 1);
            let total = parts.len();
            for (k, p) in parts.iter().enumerate() {
                assert!(p.len() <= budget, "{style:?} part {k}: {} bytes", p.len());
                assert!(p.contains(&format!("(part {}/{total})", k + 1)), "{p}");
                assert!(backticks_balanced(p));
                assert_eq!(p.matches("<font").count(), p.matches("</font>").count());
                assert_eq!(p.matches("**").count() % 2, 0);
            }
            let all = parts.join("\n");
            for k in 0..60 {
                assert!(
                    all.contains(&format!("Top query #{k} ")),
                    "{style:?} lost #{k}"
                );
            }
        }
    }

    #[test]
    fn a_huge_insight_is_shortened_never_split() {
        let mut i = slow_query(1, &"SELECT 数据库 🐘 ".repeat(100_000));
        i.title = "标题".repeat(5000);
        i.advice = "`".repeat(10_000);
        for k in 0..100 {
            i.labels.insert(format!("label_{k}"), "值".repeat(1000));
            i.metrics.insert(format!("m_{k}_ms"), k as f64);
        }
        let n = notification(vec![i]);
        for budget in [MIN_BUDGET, 600, 1000, 2000, 4000] {
            for style in [Style::Markdown, Style::MarkdownV2, Style::Text] {
                let parts = render(&n, style, budget, &RenderOptions::default());
                assert_eq!(parts.len(), 1, "{style:?} {budget}");
                assert!(
                    parts[0].len() <= budget,
                    "{style:?} {budget}: {}",
                    parts[0].len()
                );
                assert!(backticks_balanced(&parts[0]));
                assert!(
                    parts[0].contains("标题"),
                    "{style:?} {budget}:\n{}",
                    parts[0]
                );
            }
        }
    }

    #[test]
    fn tiny_budgets_are_raised_to_the_minimum() {
        let n = notification(vec![slow_query(1, "SELECT 1")]);
        let parts = wecom_text(&n, 10);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].len() <= MIN_BUDGET);
    }

    #[test]
    fn configurable_preview_length() {
        let n = notification(vec![slow_query(1, &"x ".repeat(1000))]);
        let opts = RenderOptions {
            sql_preview_chars: 30,
            ..Default::default()
        };
        let p = render(&n, Style::Text, 2000, &opts).remove(0);
        let q = p.lines().find(|l| l.contains("Query: ")).unwrap();
        assert_eq!(
            q.trim_start().trim_start_matches("Query: ").chars().count(),
            30
        );
    }

    #[test]
    fn digest_keeps_the_most_severe_and_counts_the_rest() {
        let sql = "SELECT a, b, c FROM some_table WHERE x = $1 ".repeat(30);
        let mut v: Vec<Insight> = (0..200).map(|k| slow_query(k, &sql)).collect();
        v[150].severity = Severity::Critical;
        v[7].kind = "regression".into();
        v[7].severity = Severity::Info;
        let n = notification(v);
        for lang in [Lang::En, Lang::Zh] {
            let opts = RenderOptions {
                lang,
                ..Default::default()
            };
            for (style, budget) in all_styles() {
                for max in [1, 2, 3, 5] {
                    let parts = render_digest(&n, style, budget, &opts, max);
                    assert!(!parts.is_empty() && parts.len() <= max, "{style:?} {max}");
                    let all = parts.join("\n");
                    for p in &parts {
                        assert!(p.len() <= budget);
                        assert!(backticks_balanced(p));
                    }
                    // The critical one comes first, in full.
                    assert!(all.contains("Top query #150 "), "{style:?} {max}\n{all}");
                    let shown = (0..200)
                        .filter(|k| all.contains(&format!("Top query #{k} ")))
                        .count();
                    let more = match lang {
                        Lang::En => format!("+{} more not shown in full", 200 - shown),
                        Lang::Zh => format!("另有 {} 条未完整显示", 200 - shown),
                    };
                    assert!(all.contains(&more), "{style:?} {max} {lang:?}\n{all}");
                    let kinds = match lang {
                        Lang::En => "By kind: ",
                        Lang::Zh => "按类型: ",
                    };
                    assert!(all.contains(kinds), "{all}");
                    assert!(all.contains("regression 1"), "{all}");
                }
            }
        }
        // Everything fits: the digest is the full rendering.
        let small = notification(vec![slow_query(1, "SELECT 1")]);
        assert_eq!(
            render_digest(&small, Style::Markdown, 4000, &RenderOptions::default(), 1),
            wecom_markdown(&small, 4000)
        );
    }
}
