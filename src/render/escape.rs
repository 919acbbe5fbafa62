//! User-controlled text (titles, labels, advice, SQL) made safe for a dialect when a span
//! is built.
//!
//! Markdown specials are replaced by look-alike characters, one character for one
//! character, so a span's byte length is known exactly and cuts fall on character
//! boundaries. Whitespace and control characters collapse to single spaces: every span is
//! one line. Invisible characters (zero-width, bidi controls) are dropped, so they can
//! neither reorder the text nor hide a tag from the escaping.

/// Where a piece of text goes: prose (escaped for markdown) or inline code (only backticks
/// matter there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escape {
    Prose,
    Code,
}

/// A SQL text as one line: whitespace collapsed to single spaces, at most `max_chars`
/// characters ("…" included when cut), backticks replaced by `ʼ` so the result is safe
/// inside inline code. Reads only as much of `text` as it needs.
pub fn sql_preview(text: &str, max_chars: usize) -> String {
    clean(text, false, Escape::Code, max_chars)
}

/// Characters that are invisible but reorder or hide text (zero-width, bidi controls).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// One character for one character, so that byte lengths stay predictable. `next` is the
/// character that follows `c` in the source; `markup` says whether the dialect reads
/// markdown.
fn map_char(c: char, next: Option<char>, markup: bool, ctx: Escape) -> char {
    if c == '`' {
        return 'ʼ';
    }
    if !markup {
        return c;
    }
    if ctx == Escape::Code {
        // SQL keeps its `<` and `>`, except where WeCom could see a tag or a mention
        // (`<font`, `</font>`, `<@all>`): its renderer is not CommonMark and the docs do not
        // promise that code spans are literal.
        let tag_like =
            next.is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '@' | '!'));
        return if c == '<' && tag_like { '‹' } else { c };
    }
    match c {
        '*' => '∗',
        '<' => '‹',
        '>' => '›',
        '[' => '［',
        ']' => '］',
        '\\' => '⧵',
        '~' => '∼',
        '|' => '│',
        c => c,
    }
}

/// `s` as one escaped line of at most `max_chars` characters ("…" included when cut).
/// Stops reading once the limit is passed, so a 1 MB query costs no more than a short one.
pub(crate) fn clean(s: &str, markup: bool, ctx: Escape, max_chars: usize) -> String {
    let mut out = String::new();
    if max_chars == 0 {
        return out;
    }
    let mut count = 0usize;
    let mut space = false;
    let mut cut = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() || c.is_control() {
            space = count > 0;
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        let need = if space { 2 } else { 1 };
        if count + need > max_chars {
            cut = true;
            break;
        }
        if space {
            out.push(' ');
            space = false;
        }
        // The character that will follow in the output: invisible ones are dropped, so
        // `<` + U+200B + `/font>` must be read as `</font>`.
        let next = chars.clone().find(|n| !is_invisible(*n));
        out.push(map_char(c, next, markup, ctx));
        count += need;
    }
    if cut {
        // Make room for the ellipsis.
        while count >= max_chars {
            out.pop();
            count -= 1;
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('…');
    }
    out
}

/// Longest prefix of already-escaped `s` that fits `max` bytes with a trailing "…", cut at
/// a character boundary; empty when not even one character fits.
pub(crate) fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    if max < 4 {
        return String::new();
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = s[..end].trim_end();
    if head.is_empty() {
        return String::new();
    }
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixture::{backticks_balanced, notification, slow_query};
    use crate::render::{wecom_markdown, WECOM_MARKDOWN_BUDGET};

    #[test]
    fn sql_preview_collapses_cuts_and_defuses_backticks() {
        assert_eq!(
            sql_preview("SELECT  *\n\tFROM `t`", 200),
            "SELECT * FROM ʼtʼ"
        );
        let p = sql_preview(&"é".repeat(500), 200);
        assert_eq!(p.chars().count(), 200);
        assert!(p.ends_with('…'));
        assert_eq!(sql_preview("abc", 3), "abc");
        assert_eq!(sql_preview("abcd", 3), "ab…");
        assert_eq!(sql_preview("ab    cd", 4), "ab…");
        assert_eq!(sql_preview("   ", 10), "");
        assert_eq!(sql_preview("x", 0), "");
    }

    #[test]
    fn markdown_specials_are_defused() {
        let mut i = slow_query(1, "SELECT 1");
        i.title = "**bold** `code` <font color=\"info\">x</font> [a](b) \\".into();
        let parts = wecom_markdown(&notification(vec![i]), WECOM_MARKDOWN_BUDGET);
        assert_eq!(parts.len(), 1);
        let p = &parts[0];
        assert!(!p.contains("**bold**"), "{p}");
        assert!(!p.contains("<font color=\"info\">x"), "{p}");
        assert!(!p.contains("[a](b)"), "{p}");
        assert!(backticks_balanced(p), "{p}");

        let mut i = slow_query(
            1,
            "SELECT '<font color=\"info\">', '<@all>' WHERE a<b AND c < d",
        );
        i.labels.insert("queryid".into(), "</font>".into());
        let p = &wecom_markdown(&notification(vec![i]), WECOM_MARKDOWN_BUDGET)[0];
        assert!(
            p.contains("`SELECT '‹font color=\"info\">', '‹@all>' WHERE a‹b AND c < d`"),
            "{p}"
        );
        assert!(p.contains("`‹/font>`"), "{p}");
        assert_eq!(
            p.matches("<font").count(),
            p.matches("</font>").count(),
            "{p}"
        );

        // Invisible characters are dropped, so they cannot hide a tag from the escaping.
        let mut i = slow_query(1, "SELECT '<\u{200b}/font>', '<\u{feff}\u{202e}@all>'");
        i.labels.insert("queryid".into(), "<\u{200b}font".into());
        let p = &wecom_markdown(&notification(vec![i]), WECOM_MARKDOWN_BUDGET)[0];
        assert!(p.contains("`SELECT '‹/font>', '‹@all>'`"), "{p}");
        assert!(p.contains("`‹font`"), "{p}");
    }

    #[test]
    fn cut_bytes_respects_char_boundaries() {
        assert_eq!(cut_bytes("héllo", 10), "héllo");
        assert_eq!(cut_bytes("ééééé", 7), "éé…"); // 2 + 2 + 3
        assert_eq!(cut_bytes("ééééé", 3), "");
        assert_eq!(cut_bytes("数据库", 8), "数…");
    }
}
