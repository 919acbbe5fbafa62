//! Notification → text, within each message type's byte limit.
//!
//! Every renderer works on the same small document model: a report is a header plus one
//! *block* per insight, a block is a list of *lines*, a line is a list of *spans* (plain
//! text, bold, inline code, coloured text). Every construct opens and closes inside one
//! span, so cutting a message between lines can never leave a backtick, a `**` or a
//! `<font>` open, and shrinking a span (cutting its text, adding "…") can never break one.
//!
//! Escaping happens when a span is built: user-controlled text (titles, labels, advice,
//! SQL) has markdown specials replaced by look-alike characters, one character for one
//! character, so a span's byte length is known exactly and cuts fall on character
//! boundaries. Whitespace and control characters collapse to single spaces: every span is
//! one line.
//!
//! Budgets are **UTF-8 bytes** (WeCom counts bytes: markdown 4096, text 2048). A message is
//! split between insights; when one insight alone is too big, its SQL preview is shortened,
//! then dropped, then its longest lines are cut. No part ever exceeds the budget.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Insight, Notification, NotifyReason, Severity};

use crate::story::{self, Story};

/// WeCom's hard limit for `markdown` and `markdown_v2` content, in UTF-8 bytes.
pub const WECOM_MARKDOWN_LIMIT: usize = 4096;
/// WeCom's hard limit for `text` content, in UTF-8 bytes.
pub const WECOM_TEXT_LIMIT: usize = 2048;
/// What we aim for in markdown messages: the limit less a safety margin.
pub const WECOM_MARKDOWN_BUDGET: usize = 4000;
/// What we aim for in text messages: the limit less a safety margin.
pub const WECOM_TEXT_BUDGET: usize = 2000;
/// Smallest budget the splitter works with; smaller budgets are raised to this.
pub const MIN_BUDGET: usize = 512;
/// Default length of SQL previews, in characters.
pub const DEFAULT_SQL_PREVIEW_CHARS: usize = 200;

/// Longest title, label value and advice kept, in characters (the rest is cut with "…").
const TITLE_CHARS: usize = 200;
const LABEL_CHARS: usize = 100;
const ADVICE_CHARS: usize = 500;
const NAME_CHARS: usize = 60;
/// SQL previews shorter than this are not worth showing: drop the line instead.
const MIN_PREVIEW_CHARS: usize = 24;

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
}

/// The language of our own wording (titles, headings, labels, part markers, lifecycle
/// words). Text produced by the analyzers (insight titles, advice) and data (SQL, names)
/// is shown as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Zh,
}

/// Knobs of the renderers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Longest SQL preview, in characters, "…" included.
    pub sql_preview_chars: usize,
    /// Language of the fixed wording.
    pub lang: Lang,
    /// powa-web's address per repository name (`[repositories.<name>] powa_web_url`):
    /// entries link to its server, database or query page.
    pub powa_web: BTreeMap<String, String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            sql_preview_chars: DEFAULT_SQL_PREVIEW_CHARS,
            lang: Lang::En,
            powa_web: BTreeMap::new(),
        }
    }
}

/// Every fixed string of a rendered message, per language. One table, so a missing
/// translation is a compile error rather than an English word in a Chinese message.
struct Words {
    report: &'static str,
    alert: &'static str,
    window: &'static str,
    where_: &'static str,
    query: &'static str,
    cause: &'static str,
    fix: &'static str,
    also_on: &'static str,
    queryid: &'static str,
    repository: &'static str,
    by_severity: &'static str,
    by_kind: &'static str,
    severity: [&'static str; 3],
    severity_upper: [&'static str; 3],
    lifecycle: [&'static str; 5],
    resolved_count: &'static str,
    list_sep: &'static str,
}

const EN: Words = Words {
    report: "PoWA Sentinel report",
    alert: "PoWA Sentinel alert",
    window: "Window",
    where_: "Where",
    query: "Query",
    cause: "Cause",
    fix: "Fix",
    also_on: "Also on",
    queryid: "queryid",
    repository: "repository",
    by_severity: "By severity",
    by_kind: "By kind",
    severity: ["critical", "warning", "info"],
    severity_upper: ["CRITICAL", "WARNING", "INFO"],
    lifecycle: ["NEW", "ONGOING", "ESCALATED", "RESOLVED", "REOPENED"],
    resolved_count: "resolved",
    list_sep: ", ",
};

const ZH: Words = Words {
    report: "PoWA Sentinel 报告",
    alert: "PoWA Sentinel 告警",
    window: "时间窗口",
    where_: "位置",
    query: "查询",
    cause: "原因",
    fix: "处理",
    also_on: "其他服务器",
    queryid: "查询 ID",
    repository: "仓库",
    by_severity: "按级别",
    by_kind: "按类型",
    severity: ["严重", "警告", "提示"],
    severity_upper: ["严重", "警告", "提示"],
    lifecycle: ["新问题", "持续", "升级", "已恢复", "再次出现"],
    resolved_count: "已恢复",
    list_sep: "，",
};

impl Lang {
    fn words(self) -> &'static Words {
        match self {
            Lang::En => &EN,
            Lang::Zh => &ZH,
        }
    }

    /// " (part 2/5)" / "（第 2/5 部分）".
    fn part(self, i: usize, n: usize) -> String {
        match self {
            Lang::En => format!(" (part {i}/{n})"),
            Lang::Zh => format!("（第 {i}/{n} 部分）"),
        }
    }

    /// "3 warning" / "警告 3".
    fn count(self, word: &str, n: usize) -> String {
        match self {
            Lang::En => format!("{n} {word}"),
            Lang::Zh => format!("{word} {n}"),
        }
    }

    /// "+N more kinds" / "另有 N 种类型".
    fn more_kinds(self, n: usize) -> String {
        match self {
            Lang::En => format!("+{n} more kinds"),
            Lang::Zh => format!("另有 {n} 种类型"),
        }
    }

    /// The digest's heading for insights not shown in full.
    fn not_shown(self, n: usize) -> String {
        match self {
            Lang::En => format!("+{n} more not shown in full"),
            Lang::Zh => format!("另有 {n} 条未完整显示"),
        }
    }

    fn severity(self, s: Severity) -> &'static str {
        self.words().severity[sev_index(s)]
    }

    fn severity_upper(self, s: Severity) -> &'static str {
        self.words().severity_upper[sev_index(s)]
    }

    fn lifecycle(self, l: Lifecycle) -> &'static str {
        let i = match l {
            Lifecycle::New => 0,
            Lifecycle::Ongoing => 1,
            Lifecycle::Escalated => 2,
            Lifecycle::Resolved => 3,
            Lifecycle::Reopened => 4,
        };
        self.words().lifecycle[i]
    }
}

fn sev_index(s: Severity) -> usize {
    match s {
        Severity::Critical => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    }
}

fn is_resolved(i: &Insight) -> bool {
    i.status == Some(Lifecycle::Resolved)
}

/// The console report: one plain-text string, empty for an empty notification.
pub fn plain_report(n: &Notification) -> String {
    plain_report_with(n, &RenderOptions::default())
}

/// [`plain_report`] with explicit options.
pub fn plain_report_with(n: &Notification, opts: &RenderOptions) -> String {
    render(n, Style::Plain, usize::MAX, opts)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// WeCom markdown (v1) messages, each at most `budget` bytes.
pub fn wecom_markdown(n: &Notification, budget: usize) -> Vec<String> {
    render(n, Style::Markdown, budget, &RenderOptions::default())
}

/// WeCom markdown_v2 messages, each at most `budget` bytes.
pub fn wecom_markdown_v2(n: &Notification, budget: usize) -> Vec<String> {
    render(n, Style::MarkdownV2, budget, &RenderOptions::default())
}

/// WeCom text messages, each at most `budget` bytes.
pub fn wecom_text(n: &Notification, budget: usize) -> Vec<String> {
    render(n, Style::Text, budget, &RenderOptions::default())
}

/// Renders `n` in `style` as messages of at most `budget` UTF-8 bytes each (budgets below
/// [`MIN_BUDGET`] are raised to it; [`Style::Plain`] ignores the budget and gives one part).
/// Insights appear most severe first (resolved ones last), then in input order; all of
/// them appear. An empty notification gives no parts. Parts carry "(part i/n)" when there
/// are several.
pub fn render(n: &Notification, style: Style, budget: usize, opts: &RenderOptions) -> Vec<String> {
    render_digest(n, style, budget, opts, usize::MAX)
}

/// Like [`render`], in at most `max_parts` messages (at least one): most severe first, as
/// many insights in full as fit, then one "+N more" block that counts the others by
/// severity and by kind, so every insight is still represented. When everything fits,
/// this is exactly [`render`].
pub fn render_digest(
    n: &Notification,
    style: Style,
    budget: usize,
    opts: &RenderOptions,
    max_parts: usize,
) -> Vec<String> {
    if n.insights.is_empty() {
        return Vec::new();
    }
    let max_parts = max_parts.max(1);
    let budget = if style == Style::Plain {
        usize::MAX
    } else {
        budget.max(MIN_BUDGET)
    };
    let order = story::stories(&n.insights);
    let summary = Summary::of(n, &order);

    // The header of any part is at most as long as the one with the widest part numbers.
    let widest = order.len() + 1;
    let reserve = header(style, &summary, Some((widest, widest)), opts.lang).len() + 2;
    let avail = budget.saturating_sub(reserve);

    let ctx = Ctx {
        style,
        opts,
        several_repositories: summary.repositories > 1,
    };
    let blocks: Vec<String> = order
        .iter()
        .map(|i| fit_block(i, &ctx, avail).unwrap_or_default())
        .collect();

    let mut groups = Packer::new(avail);
    for b in &blocks {
        groups.push(b.len());
    }
    let chosen: Vec<String> = if groups.count() <= max_parts {
        blocks
    } else {
        // The most insights in full such that they and the "+N more" block of the rest
        // fit in max_parts messages. k = 0 (the block alone) always fits.
        let mut best: (usize, String) = (0, String::new());
        let mut packer = Packer::new(avail);
        for k in 0..order.len() {
            let rest = digest_block(&order[k..], &ctx, avail);
            if packer.count_with(rest.len()) <= max_parts {
                best = (k, rest);
            } else {
                break;
            }
            packer.push(blocks[k].len());
        }
        let (k, rest) = best;
        let mut v: Vec<String> = blocks.into_iter().take(k).collect();
        v.push(rest);
        v
    };

    let mut grouped: Vec<Vec<String>> = Vec::new();
    let mut used = 0usize;
    for b in chosen {
        if b.is_empty() {
            continue;
        }
        match grouped.last_mut() {
            Some(g) if used + 2 + b.len() <= avail => {
                used += 2 + b.len();
                g.push(b);
            }
            _ => {
                used = b.len();
                grouped.push(vec![b]);
            }
        }
    }
    let total = grouped.len();
    grouped
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let part = (total > 1).then_some((i + 1, total));
            let mut out = header(style, &summary, part, opts.lang);
            for b in g {
                out.push_str("\n\n");
                out.push_str(&b);
            }
            if style == Style::Plain {
                out.push('\n');
            }
            debug_assert!(
                out.len() <= budget,
                "part of {} bytes > {budget}",
                out.len()
            );
            out
        })
        .collect()
}

/// The entries of `n` as the renderers tell them: insights grouped into one story per
/// problem, most severe and most impactful first (see [`crate::story`]).
pub fn entries(n: &Notification) -> Vec<Story<'_>> {
    story::stories(&n.insights)
}

/// Counts the messages that blocks of the given lengths take when packed greedily, in
/// order, two bytes ("\n\n") between blocks, `avail` bytes per message.
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

    fn push(&mut self, len: usize) {
        if len == 0 {
            return;
        }
        if self.groups > 0 && self.used + 2 + len <= self.avail {
            self.used += 2 + len;
        } else {
            self.groups += 1;
            self.used = len;
        }
    }

    fn count(&self) -> usize {
        self.groups
    }

    /// The count if one more block of `len` bytes were pushed.
    fn count_with(&self, len: usize) -> usize {
        let mut p = Packer { ..*self };
        p.push(len);
        p.groups
    }
}

/// Mentions for WeCom markdown (v1): `<@userid>` for each valid user id, at most
/// `max_bytes` bytes in all (user ids that do not fit are left out). WeCom user ids are
/// 1 to 64 letters, digits and `_-.@`; anything else is dropped, since it could carry
/// markup.
pub fn markdown_mentions(userids: &[String], max_bytes: usize) -> String {
    let mut out = String::new();
    for id in userids.iter().filter(|id| valid_userid(id)) {
        let m = format!("<@{id}>");
        let need = m.len() + usize::from(!out.is_empty());
        if out.len() + need > max_bytes {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&m);
    }
    out
}

/// A WeCom user id (or `@all`) as the mention syntax accepts it.
pub fn valid_userid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// The short text that carries mentions where the message type cannot (WeCom
/// markdown_v2; mobiles with markdown v1): sent as its own `text` message after the
/// report.
pub fn mention_notice(n: &Notification, lang: Lang) -> String {
    let what = match n.reason {
        NotifyReason::Report => lang.words().report,
        NotifyReason::Immediate => lang.words().alert,
    };
    match lang {
        Lang::En => format!("{what}: {} insight(s), see above.", n.insights.len()),
        Lang::Zh => format!("{what}：共 {} 条，详见上文。", n.insights.len()),
    }
}

/// A SQL text as one line: whitespace collapsed to single spaces, at most `max_chars`
/// characters ("…" included when cut), backticks replaced by `ʼ` so the result is safe
/// inside inline code. Reads only as much of `text` as it needs.
pub fn sql_preview(text: &str, max_chars: usize) -> String {
    clean(text, Style::Plain, Escape::Code, max_chars)
}

/// A metric value formatted by the unit in its name: `*_ms` as ms or s, `share_*` as a
/// percentage, `calls`/`rows` as integers with thousands separators.
pub fn format_metric(name: &str, value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    if name.ends_with("_ms") {
        format_ms(value)
    } else if name.ends_with("_bytes") {
        format_bytes(value)
    } else if name.starts_with("share_") || name.ends_with("_share") {
        let pct = value * 100.0;
        if pct.abs() >= 10.0 || pct == 0.0 {
            format!("{pct:.0}%")
        } else {
            format!("{pct:.1}%")
        }
    } else if is_count(name) || (value.fract() == 0.0 && value.abs() < 1e15) {
        thousands(value.round())
    } else {
        let s = if value.abs() >= 100.0 {
            format!("{value:.1}")
        } else {
            format!("{value:.2}")
        };
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Bytes with a binary unit: `512 B`, `12.0 KiB`, `3.4 GiB`.
fn format_bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = value;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The human name of a metric: its unit suffix dropped, underscores as spaces.
pub fn metric_label(name: &str) -> String {
    let base = name.strip_suffix("_ms").unwrap_or(name);
    base.strip_suffix("_bytes")
        .unwrap_or(base)
        .replace('_', " ")
}

fn is_count(name: &str) -> bool {
    matches!(name, "calls" | "rows") || name.ends_with("_calls") || name.ends_with("_rows")
}

fn format_ms(ms: f64) -> String {
    let a = ms.abs();
    if a < 1.0 {
        format!("{ms:.3} ms")
    } else if a < 100.0 {
        format!("{ms:.2} ms")
    } else if a < 1000.0 {
        format!("{ms:.1} ms")
    } else if a < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if a < 3_600_000.0 {
        let s = (ms / 1000.0).round() as i64;
        format!("{} min {} s", s / 60, (s % 60).abs())
    } else {
        let m = (ms / 60_000.0).round() as i64;
        format!("{} h {} min", m / 60, (m % 60).abs())
    }
}

fn thousands(v: f64) -> String {
    let neg = v < 0.0;
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Escaping

/// Where a piece of text goes: prose (escaped for markdown) or inline code (only backticks
/// matter there).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    Prose,
    Code,
}

/// Characters that are invisible but reorder or hide text (zero-width, bidi controls).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// One character for one character, so that byte lengths stay predictable. `next` is the
/// character that follows `c` in the source.
fn map_char(c: char, next: Option<char>, style: Style, ctx: Escape) -> char {
    if c == '`' {
        return 'ʼ';
    }
    let markdown = matches!(style, Style::Markdown | Style::MarkdownV2);
    if !markdown {
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
fn clean(s: &str, style: Style, ctx: Escape, max_chars: usize) -> String {
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
        out.push(map_char(c, next, style, ctx));
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
fn cut_bytes(s: &str, max: usize) -> String {
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

// ---------------------------------------------------------------------------------------
// Document model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Color {
    Warning,
    Comment,
    Info,
}

impl Color {
    fn name(self) -> &'static str {
        match self {
            Color::Warning => "warning",
            Color::Comment => "comment",
            Color::Info => "info",
        }
    }
}

#[derive(Clone, Debug)]
enum Span {
    /// Our own wording; never cut.
    Fixed(String),
    /// A separator, shown only between two non-empty spans.
    Sep(&'static str),
    /// Escaped text.
    Text(String),
    Strong(String),
    Code(String),
    Font(Color, String),
    /// A link: its label (our wording) and an address already checked to be safe in a
    /// markdown link ([`valid_base_url`], percent-encoded segments). Never cut.
    Link(&'static str, String),
}

impl Span {
    fn content(&self) -> &str {
        match self {
            Span::Fixed(s) | Span::Text(s) | Span::Strong(s) | Span::Code(s) | Span::Font(_, s) => {
                s
            }
            Span::Sep(s) => s,
            Span::Link(_, u) => u,
        }
    }

    fn render(&self, style: Style, out: &mut String) {
        let md = matches!(style, Style::Markdown | Style::MarkdownV2);
        match self {
            Span::Fixed(s) | Span::Text(s) => out.push_str(s),
            Span::Sep(s) => out.push_str(s),
            Span::Link(label, url) if md => {
                out.push('[');
                out.push_str(label);
                out.push_str("](");
                out.push_str(url);
                out.push(')');
            }
            Span::Link(label, url) => {
                out.push_str(label);
                out.push_str(": ");
                out.push_str(url);
            }
            _ if self.content().is_empty() => {}
            Span::Strong(s) if md => {
                out.push_str("**");
                out.push_str(s);
                out.push_str("**");
            }
            Span::Code(s) if md => {
                out.push('`');
                out.push_str(s);
                out.push('`');
            }
            Span::Font(c, s) if style == Style::Markdown => {
                out.push_str("<font color=\"");
                out.push_str(c.name());
                out.push_str("\">");
                out.push_str(s);
                out.push_str("</font>");
            }
            Span::Strong(s) | Span::Code(s) | Span::Font(_, s) => out.push_str(s),
        }
    }

    /// User text that may be cut; our own wording (fixed text, markers) is never cut.
    fn shrinkable(&self) -> bool {
        matches!(self, Span::Text(_) | Span::Strong(_) | Span::Code(_))
            && !self.content().is_empty()
    }

    fn cut_to(&mut self, max: usize) {
        match self {
            Span::Text(s) | Span::Strong(s) | Span::Code(s) => *s = cut_bytes(s, max),
            Span::Fixed(_) | Span::Sep(_) | Span::Font(..) | Span::Link(..) => {}
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Line {
    prefix: String,
    spans: Vec<Span>,
    /// A table's heading or delimiter row: meaningless without a body row after it, so
    /// it goes when the last body row goes.
    table_head: bool,
}

impl Line {
    fn new(prefix: impl Into<String>) -> Self {
        Line {
            prefix: prefix.into(),
            spans: Vec::new(),
            table_head: false,
        }
    }

    fn sep(mut self, s: &'static str) -> Self {
        self.spans.push(Span::Sep(s));
        self
    }

    fn has_content(&self) -> bool {
        self.spans
            .iter()
            .any(|s| !matches!(s, Span::Sep(_)) && !s.content().is_empty())
    }

    fn fixed(mut self, s: impl Into<String>) -> Self {
        self.spans.push(Span::Fixed(s.into()));
        self
    }

    fn span(mut self, s: Span) -> Self {
        self.spans.push(s);
        self
    }

    fn render(&self, style: Style) -> String {
        let mut out = self.prefix.clone();
        let mut seen = false;
        for (k, s) in self.spans.iter().enumerate() {
            if let Span::Sep(sep) = s {
                let next = self.spans[k + 1..]
                    .iter()
                    .find(|s| !matches!(s, Span::Sep(_)));
                if seen && next.is_some_and(|n| !n.content().is_empty()) {
                    out.push_str(sep);
                }
                continue;
            }
            seen |= !s.content().is_empty();
            s.render(style, &mut out);
        }
        out
    }
}

struct Ctx<'a> {
    style: Style,
    opts: &'a RenderOptions,
    several_repositories: bool,
}

impl Ctx<'_> {
    fn prose(&self, s: &str, max_chars: usize) -> String {
        clean(s, self.style, Escape::Prose, max_chars)
    }

    fn code(&self, s: &str, max_chars: usize) -> String {
        clean(s, self.style, Escape::Code, max_chars)
    }
}

/// What the header says: counts per severity, the covered window.
struct Summary {
    reason: NotifyReason,
    /// Open insights per severity (resolved ones are counted apart).
    counts: [(Severity, usize); 3],
    resolved: usize,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    repositories: usize,
}

impl Summary {
    /// Counts entries (what the reader sees), by their severity.
    fn of(n: &Notification, stories: &[Story<'_>]) -> Summary {
        let mut counts = [
            (Severity::Critical, 0),
            (Severity::Warning, 0),
            (Severity::Info, 0),
        ];
        let mut repos = BTreeSet::new();
        let mut resolved = 0;
        for i in n.insights.iter() {
            if let Some(r) = i.label("repository") {
                repos.insert(r);
            }
        }
        for s in stories {
            if s.is_resolved() {
                resolved += 1;
                continue;
            }
            for c in counts.iter_mut() {
                if c.0 == s.severity {
                    c.1 += 1;
                }
            }
        }
        Summary {
            reason: n.reason,
            counts,
            resolved,
            start: n.insights.iter().map(|i| i.window.start).min(),
            end: n.insights.iter().map(|i| i.window.end).max(),
            repositories: repos.len(),
        }
    }

    fn window_text(&self) -> Option<String> {
        let (s, e) = (self.start?, self.end?);
        let fmt = "%Y-%m-%d %H:%M";
        Some(if s.date_naive() == e.date_naive() {
            format!("{}–{} UTC", s.format(fmt), e.format("%H:%M"))
        } else {
            format!("{} – {} UTC", s.format(fmt), e.format(fmt))
        })
    }
}

fn severity_emoji(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🔴",
        Severity::Warning => "🟠",
        Severity::Info => "🔵",
    }
}

fn severity_color(s: Severity) -> Color {
    match s {
        Severity::Critical | Severity::Warning => Color::Warning,
        Severity::Info => Color::Comment,
    }
}

const RESOLVED_EMOJI: &str = "✅";

fn header(style: Style, sum: &Summary, part: Option<(usize, usize)>, lang: Lang) -> String {
    let w = lang.words();
    let mut title = match sum.reason {
        NotifyReason::Report => w.report.to_string(),
        NotifyReason::Immediate => w.alert.to_string(),
    };
    if let Some((i, n)) = part {
        title.push_str(&lang.part(i, n));
    }
    let mut present: Vec<(String, Color)> = sum
        .counts
        .iter()
        .filter(|c| c.1 > 0)
        .map(|(s, c)| (lang.count(lang.severity(*s), *c), severity_color(*s)))
        .collect();
    if sum.resolved > 0 {
        present.push((lang.count(w.resolved_count, sum.resolved), Color::Info));
    }
    let plain_counts: Vec<&str> = present.iter().map(|(t, _)| t.as_str()).collect();
    let mut lines: Vec<Line> = Vec::new();
    match style {
        Style::Markdown => {
            lines.push(Line::new("## ").fixed(title));
            let mut l = Line::new("");
            for (k, (text, color)) in present.iter().enumerate() {
                if k > 0 {
                    l = l.sep(" · ");
                }
                l = l.span(Span::Font(*color, text.clone()));
            }
            lines.push(l);
            if let Some(win) = sum.window_text() {
                lines.push(Line::new(">").fixed(format!("{}: {win}", w.window)));
            }
        }
        Style::MarkdownV2 => {
            lines.push(Line::new("## ").fixed(title));
            let mut l = Line::new("").span(Span::Strong(plain_counts.join(" · ")));
            if let Some(win) = sum.window_text() {
                l = l.fixed(format!(" · {} {win}", w.window.to_lowercase()));
            }
            lines.push(l);
        }
        Style::Text | Style::Plain => {
            lines.push(Line::new("").fixed(title));
            let mut l = Line::new("").fixed(plain_counts.join(w.list_sep));
            if let Some(win) = sum.window_text() {
                l = l.fixed(format!(" | {} {win}", w.window.to_lowercase()));
            }
            lines.push(l);
        }
    }
    lines
        .iter()
        .map(|l| l.render(style))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first line of an entry: severity (or "resolved") marker, lifecycle word, title.
fn title_line(i: &Insight, severity: Severity, title: &str, ctx: &Ctx<'_>) -> Line {
    let lang = ctx.opts.lang;
    let resolved = is_resolved(i);
    // The lifecycle word after the severity; "resolved" replaces the severity instead.
    let status = i
        .status
        .filter(|s| *s != Lifecycle::Resolved)
        .map(|s| lang.lifecycle(s));
    let title = ctx.prose(title, TITLE_CHARS);
    match ctx.style {
        Style::Markdown => {
            let mut l = Line::new("");
            if resolved {
                l = l.span(Span::Font(
                    Color::Info,
                    format!("{RESOLVED_EMOJI} {}", lang.lifecycle(Lifecycle::Resolved)),
                ));
            } else {
                l = l.span(Span::Font(
                    severity_color(severity),
                    format!(
                        "{} {}",
                        severity_emoji(severity),
                        lang.severity_upper(severity)
                    ),
                ));
                if let Some(st) = status {
                    l = l
                        .fixed(" ")
                        .span(Span::Font(Color::Comment, st.to_string()));
                }
            }
            l.fixed(" ").span(Span::Strong(title))
        }
        Style::MarkdownV2 => {
            let marker = if resolved {
                format!("{RESOLVED_EMOJI} {}", lang.lifecycle(Lifecycle::Resolved))
            } else {
                let mut m = format!(
                    "{} {}",
                    severity_emoji(severity),
                    lang.severity_upper(severity)
                );
                if let Some(st) = status {
                    m.push_str(" · ");
                    m.push_str(st);
                }
                m
            };
            Line::new("### ")
                .fixed(format!("{marker}: "))
                .span(Span::Text(title))
        }
        Style::Text | Style::Plain => {
            let marker = if resolved {
                format!("[{}] ", lang.lifecycle(Lifecycle::Resolved))
            } else {
                match status {
                    Some(st) => format!("[{}][{st}] ", lang.severity_upper(severity)),
                    None => format!("[{}] ", lang.severity_upper(severity)),
                }
            };
            Line::new("").fixed(marker).span(Span::Text(title))
        }
    }
}

fn detail_prefix(style: Style) -> &'static str {
    match style {
        Style::Markdown => ">",
        Style::MarkdownV2 => "- ",
        Style::Text | Style::Plain => "  ",
    }
}

fn list_sep(style: Style) -> &'static str {
    if matches!(style, Style::Text | Style::Plain) {
        ", "
    } else {
        " · "
    }
}

/// Where an insight is: "remote1 / app", with its repository when the report spans
/// several.
fn place_of(i: &Insight, ctx: &Ctx<'_>) -> String {
    let mut p = story::place(i);
    if ctx.several_repositories {
        if let Some(r) = i.label("repository") {
            let w = ctx.opts.lang.words();
            p = if p.is_empty() {
                format!("{} {r}", w.repository)
            } else {
                format!("{p} ({} {r})", w.repository)
            };
        }
    }
    p
}

/// The powa-web page of an insight: its query's page when it is about one query, else
/// its database's, else its server's. None without a `powa_web_url` for its repository
/// or without the server's id.
///
/// URL shapes from powa-web's own routes (`QueryOverview`, `DatabaseOverview`,
/// `ServerOverview`): `/server/<srvid>/database/<dbname>/query/<queryid>/overview`,
/// `/server/<srvid>/database/<dbname>/overview`, `/server/<srvid>/overview/`.
pub fn powa_web_link(i: &Insight, opts: &RenderOptions) -> Option<String> {
    let base = opts.powa_web.get(i.label("repository")?)?;
    let base = base.trim_end_matches('/');
    let srvid: i64 = i.label("srvid")?.parse().ok()?;
    let db = i
        .label("database")
        .filter(|d| !d.is_empty() && !d.starts_with("oid "));
    let queryid = i
        .label("queryid")
        .or_else(|| {
            i.label("queryids")
                .and_then(|q| q.split(',').next())
                .filter(|q| !q.starts_with('+'))
        })
        .and_then(|q| q.trim().parse::<i64>().ok());
    Some(match (db, queryid) {
        (Some(d), Some(q)) => format!(
            "{base}/server/{srvid}/database/{}/query/{q}/overview",
            url_segment(d)
        ),
        (Some(d), None) => format!("{base}/server/{srvid}/database/{}/overview", url_segment(d)),
        (None, _) => format!("{base}/server/{srvid}/overview/"),
    })
}

/// A path segment, percent-encoded: only unreserved characters stay, so a database name
/// can neither leave the segment nor end a markdown link.
fn url_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a configured base URL is one a link may carry: http(s), no whitespace, nothing
/// that could end a markdown link or start markup.
pub fn valid_base_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.len() > "https://".len()
        && !u
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "()<>[]`\"'*|{}^".contains(c))
}

/// The lines of one entry, with a SQL preview of at most `preview` characters (none when
/// 0): title (what, where, how bad), impact, cause, fix, a few numbers, the query, a link,
/// the other servers. A resolved entry is short: its title and where it was.
fn story_lines(s: &Story<'_>, ctx: &Ctx<'_>, preview: usize) -> Vec<Line> {
    let style = ctx.style;
    let w = ctx.opts.lang.words();
    let detail = detail_prefix(style);
    let sep = list_sep(style);
    let i = s.lead;
    let told = story::tell(s, ctx.opts.lang, &|x| place_of(x, ctx));
    let mut lines = vec![title_line(i, s.severity, &told.title, ctx)];
    if s.is_resolved() {
        let p = place_of(i, ctx);
        if !p.is_empty() {
            lines.push(
                Line::new(format!("{detail}{}: ", w.where_))
                    .span(Span::Text(ctx.prose(&p, LABEL_CHARS))),
            );
        }
        return lines;
    }
    if told.own_title {
        let p = place_of(i, ctx);
        if !p.is_empty() {
            lines.push(
                Line::new(format!("{detail}{}: ", w.where_))
                    .span(Span::Text(ctx.prose(&p, LABEL_CHARS))),
            );
        }
    }
    if let Some(x) = &told.impact {
        lines.push(Line::new(detail).span(Span::Text(ctx.prose(x, ADVICE_CHARS))));
    }
    if let Some(x) = &told.cause {
        lines.push(
            Line::new(format!("{detail}{}: ", w.cause))
                .span(Span::Text(ctx.prose(x, ADVICE_CHARS))),
        );
    }
    if let Some(ddl) = &told.ddl {
        let mut l =
            Line::new(format!("{detail}{}: ", w.fix)).span(Span::Code(ctx.code(ddl, ADVICE_CHARS)));
        if let Some(note) = &told.ddl_note {
            l = l
                .fixed(" (")
                .span(Span::Text(ctx.prose(note, LABEL_CHARS)))
                .fixed(")");
        }
        lines.push(l);
    } else if let Some(a) = &told.advice {
        lines.push(
            Line::new(format!("{detail}{}: ", w.fix)).span(Span::Text(ctx.prose(a, ADVICE_CHARS))),
        );
    }
    if !told.numbers.is_empty() {
        let mut l = Line::new(detail);
        for (k, n) in told.numbers.iter().enumerate() {
            if k > 0 {
                l = l.sep(sep);
            }
            l = l.span(Span::Text(ctx.prose(n, LABEL_CHARS)));
        }
        lines.push(l);
    }
    if preview > 0 {
        if let Some(sql) = told.query.as_deref() {
            let p = ctx.code(sql, preview);
            if !p.is_empty() {
                lines.push(Line::new(format!("{detail}{}: ", w.query)).span(Span::Code(p)));
            }
        }
    }
    if !told.elsewhere.is_empty() {
        let mut l = Line::new(format!("{detail}{}: ", w.also_on));
        for (k, e) in told.elsewhere.iter().enumerate() {
            if k > 0 {
                l = l.sep(sep);
            }
            l = l.span(Span::Text(ctx.prose(e, LABEL_CHARS)));
        }
        lines.push(l);
    }
    match powa_web_link(i, ctx.opts).filter(|u| u.len() <= MAX_URL_BYTES) {
        Some(url) => lines.push(Line::new(detail).span(Span::Link("powa-web", url))),
        None => {
            if let Some(q) = told.queryid.as_deref() {
                let q = ctx.code(q, LABEL_CHARS);
                if !q.is_empty() {
                    lines.push(Line::new(format!("{detail}{} ", w.queryid)).span(Span::Code(q)));
                }
            }
        }
    }
    lines
}

/// Longest link kept (longer ones are left out rather than cut).
const MAX_URL_BYTES: usize = 400;

/// The digest's "+N more" block for the insights not shown in full: how many, by
/// severity, by kind (most frequent first).
fn digest_block(rest: &[Story<'_>], ctx: &Ctx<'_>, avail: usize) -> String {
    let style = ctx.style;
    let lang = ctx.opts.lang;
    let w = lang.words();
    let detail = detail_prefix(style);
    let sep = list_sep(style);
    let heading = lang.not_shown(rest.len());
    let first = match style {
        Style::Markdown => Line::new("").span(Span::Font(Color::Comment, heading)),
        Style::MarkdownV2 => Line::new("### ").fixed(heading),
        Style::Text | Style::Plain => Line::new("").fixed(format!("[{heading}]")),
    };
    let mut sev = [0usize; 3];
    let mut resolved = 0usize;
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for s in rest {
        if s.is_resolved() {
            resolved += 1;
        } else {
            sev[sev_index(s.severity)] += 1;
        }
        match kinds.iter_mut().find(|(k, _)| *k == s.lead.kind) {
            Some(k) => k.1 += 1,
            None => kinds.push((s.lead.kind.clone(), 1)),
        }
    }
    kinds.sort_by_key(|(k, c)| (Reverse(*c), k.clone()));
    let mut counts: Vec<String> = [Severity::Critical, Severity::Warning, Severity::Info]
        .into_iter()
        .filter(|s| sev[sev_index(*s)] > 0)
        .map(|s| lang.count(lang.severity(s), sev[sev_index(s)]))
        .collect();
    if resolved > 0 {
        counts.push(lang.count(w.resolved_count, resolved));
    }
    let mut lines = vec![
        first,
        Line::new(format!("{detail}{}: ", w.by_severity)).fixed(counts.join(sep)),
    ];
    let mut kl = Line::new(format!("{detail}{}: ", w.by_kind));
    for (k, (kind, c)) in kinds.iter().take(MAX_DIGEST_KINDS).enumerate() {
        if k > 0 {
            kl = kl.sep(sep);
        }
        kl = kl.span(Span::Text(format!("{} {c}", ctx.prose(kind, NAME_CHARS))));
    }
    if kinds.len() > MAX_DIGEST_KINDS {
        kl = kl
            .sep(sep)
            .fixed(lang.more_kinds(kinds.len() - MAX_DIGEST_KINDS));
    }
    if !kinds.is_empty() {
        lines.push(kl);
    }
    fit_lines(lines, style, avail).unwrap_or_default()
}

/// At most this many kinds are named in a digest's "+N more" block.
const MAX_DIGEST_KINDS: usize = 8;

fn block_len(lines: &[Line], style: Style) -> usize {
    let bytes: usize = lines.iter().map(|l| l.render(style).len()).sum();
    bytes + lines.len().saturating_sub(1)
}

/// One entry as text of at most `avail` bytes: shorter SQL preview first, then no
/// preview, then the longest lines cut, then the last lines dropped.
fn fit_block(i: &Story<'_>, ctx: &Ctx<'_>, avail: usize) -> Option<String> {
    let style = ctx.style;
    let mut preview = ctx.opts.sql_preview_chars;
    let lines = loop {
        let lines = story_lines(i, ctx, preview);
        if block_len(&lines, style) <= avail || preview == 0 {
            break lines;
        }
        preview = if preview / 2 >= MIN_PREVIEW_CHARS {
            preview / 2
        } else {
            0
        };
    };
    fit_lines(lines, style, avail)
}

/// Removes table heading rows left without a body row under them. Tables only ever end
/// a block, so an orphan heading is a run of heading rows at the end.
fn drop_orphan_heads(lines: &mut Vec<Line>, lens: &mut Vec<usize>) {
    let mut end = lines.len();
    while end > 0 && lines[end - 1].table_head {
        end -= 1;
    }
    lines.truncate(end);
    lens.truncate(end);
}

/// Lines as text of at most `avail` bytes: the longest pieces of user text cut first,
/// then the last lines dropped. Never cuts inside a span, so no construct is left open;
/// never leaves a table heading without rows.
fn fit_lines(mut lines: Vec<Line>, style: Style, avail: usize) -> Option<String> {
    // Rendered length per line, updated only where something changed.
    let mut lens: Vec<usize> = lines.iter().map(|l| l.render(style).len()).collect();
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
                    drop_orphan_heads(&mut lines, &mut lens);
                } else {
                    lens[li] = lines[li].render(style).len();
                }
            }
            None if lines.len() > 1 => {
                lines.pop();
                lens.pop();
                drop_orphan_heads(&mut lines, &mut lens);
            }
            None => return None,
        }
    }
    if lines.is_empty() {
        return None;
    }
    let rendered: Vec<String> = lines.iter().map(|l| l.render(style)).collect();
    Some(rendered.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::TimeZone;
    use sentinel_actors::{Fingerprint, Window};

    fn slow_query(n: usize, sql: &str) -> Insight {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        let labels: BTreeMap<String, String> = [
            ("repository", "main"),
            ("server", "remote1"),
            ("database", "app"),
            ("user", "bob"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("queryid".to_string(), format!("-12345{n}"))])
        .collect();
        let metrics: BTreeMap<String, f64> = [
            ("calls", 52.0),
            ("total_time_ms", 8123.4),
            ("mean_time_ms", 156.2),
            ("share_of_total_time", 0.62),
            ("rows", 52.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // A kind the stories do not know: told with its own title and advice, never
        // grouped, so that these tests see one entry per insight.
        Insight {
            fingerprint: Fingerprint::of([n.to_string()]),
            kind: "custom".into(),
            rule: "custom.total_time".into(),
            severity: Severity::Warning,
            labels,
            title: format!("Top query #{n} by total time on remote1 (62% of its time)"),
            advice: "Check its plan with EXPLAIN (ANALYZE, BUFFERS).".into(),
            text: Some(sql.to_string()),
            metrics,
            window: Window { start: t0, end: t1 },
            observed_at: t1,
            status: None,
        }
    }

    fn notification(insights: Vec<Insight>) -> Notification {
        Notification {
            id: 7,
            channel: "ops".into(),
            reason: NotifyReason::Report,
            insights: Arc::new(insights),
            created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
            mentions: Default::default(),
        }
    }

    fn backticks_balanced(s: &str) -> bool {
        s.lines().all(|l| l.matches('`').count() % 2 == 0)
    }

    #[test]
    fn metrics_are_formatted_by_unit() {
        assert_eq!(format_metric("total_time_ms", 8123.4), "8.12 s");
        assert_eq!(format_metric("mean_time_ms", 156.2), "156.2 ms");
        assert_eq!(format_metric("mean_time_ms", 0.4213), "0.421 ms");
        assert_eq!(format_metric("mean_time_ms", 12.345), "12.35 ms");
        assert_eq!(format_metric("total_time_ms", 125_000.0), "2 min 5 s");
        assert_eq!(format_metric("total_time_ms", 7_500_000.0), "2 h 5 min");
        assert_eq!(format_metric("share_of_total_time", 0.62), "62%");
        assert_eq!(format_metric("share_of_total_time", 0.0123), "1.2%");
        assert_eq!(format_metric("calls", 1_234_567.0), "1,234,567");
        assert_eq!(format_metric("rows", 52.0), "52");
        assert_eq!(format_metric("rows", -1000.0), "-1,000");
        assert_eq!(format_metric("ratio", 1.5), "1.5");
        assert_eq!(format_metric("ratio", 2.0), "2");
        assert_eq!(format_metric("ratio", f64::NAN), "n/a");
        assert_eq!(metric_label("mean_time_ms"), "mean time");
    }

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
    fn slow_query_report_shows_everything() {
        let n = notification(vec![slow_query(1, "SELECT *\n  FROM t WHERE id = $1")]);
        let md = &wecom_markdown(&n, WECOM_MARKDOWN_BUDGET)[0];
        for want in [
            "PoWA Sentinel report",
            "<font color=\"warning\">1 warning</font>",
            "2026-11-23 10:00 – 2026-11-24 10:00 UTC",
            "<font color=\"warning\">🟠 WARNING</font> **Top query #1",
            ">Where: remote1 / app",
            // No dump of every metric: a few with units (a kind the stories do not know
            // gets those whose name carries a unit).
            ">calls 52 · mean time 156.2 ms · share of total time 62% · total time 8.12 s",
            ">Query: `SELECT * FROM t WHERE id = $1`",
            ">Fix: Check its plan",
            ">queryid `-123451`",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
        assert!(!md.contains("(part"), "{md}");
        assert!(
            !md.contains("repository main"),
            "one repository is not named: {md}"
        );
        // v1 shows lists, rules and fences raw: never use them.
        for l in md.lines() {
            assert!(!l.starts_with("- ") && !l.starts_with("---") && !l.starts_with("```"));
        }

        let v2 = &wecom_markdown_v2(&n, WECOM_MARKDOWN_BUDGET)[0];
        assert!(v2.contains("### 🟠 WARNING: Top query #1"), "{v2}");
        assert!(
            v2.contains("- Query: `SELECT * FROM t WHERE id = $1`"),
            "{v2}"
        );
        assert!(!v2.contains("<font"), "{v2}");

        let text = &wecom_text(&n, WECOM_TEXT_BUDGET)[0];
        assert!(text.contains("[WARNING] Top query #1"), "{text}");
        assert!(
            text.contains("  Query: SELECT * FROM t WHERE id = $1"),
            "{text}"
        );
        assert!(!text.contains('`') && !text.contains("**"), "{text}");

        let plain = plain_report(&n);
        assert!(plain.contains("  queryid -123451"), "{plain}");
        assert!(plain.ends_with('\n'));
    }

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
    fn most_severe_first_then_input_order() {
        let mut v = Vec::new();
        for (k, s) in [
            Severity::Info,
            Severity::Warning,
            Severity::Critical,
            Severity::Warning,
        ]
        .into_iter()
        .enumerate()
        {
            let mut i = slow_query(k, "SELECT 1");
            i.severity = s;
            v.push(i);
        }
        let p = plain_report(&notification(v));
        let pos = |needle: &str| p.find(needle).unwrap();
        assert!(pos("Top query #2 ") < pos("Top query #1 "));
        assert!(pos("Top query #1 ") < pos("Top query #3 "));
        assert!(pos("Top query #3 ") < pos("Top query #0 "));
        assert!(
            p.starts_with("PoWA Sentinel report\n1 critical, 2 warning, 1 info"),
            "{p}"
        );
    }

    #[test]
    fn empty_notification_has_no_parts() {
        let n = notification(vec![]);
        assert!(wecom_markdown(&n, 4000).is_empty());
        assert!(wecom_markdown_v2(&n, 4000).is_empty());
        assert!(wecom_text(&n, 2000).is_empty());
        assert_eq!(plain_report(&n), "");
    }

    #[test]
    fn many_insights_split_into_numbered_self_contained_parts() {
        let sql = "SELECT a, b, c FROM some_table WHERE x = $1 AND y = `z` ".repeat(40);
        let v: Vec<Insight> = (0..60).map(|k| slow_query(k, &sql)).collect();
        let n = notification(v);
        for (style, budget) in [
            (Style::Markdown, WECOM_MARKDOWN_BUDGET),
            (Style::MarkdownV2, WECOM_MARKDOWN_BUDGET),
            (Style::Text, WECOM_TEXT_BUDGET),
        ] {
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

    fn all_styles() -> [(Style, usize); 3] {
        [
            (Style::Markdown, WECOM_MARKDOWN_BUDGET),
            (Style::MarkdownV2, WECOM_MARKDOWN_BUDGET),
            (Style::Text, WECOM_TEXT_BUDGET),
        ]
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

    #[test]
    fn chinese_wording_everywhere() {
        let zh = RenderOptions {
            lang: Lang::Zh,
            ..Default::default()
        };
        let sql = "SELECT 数据 FROM 表 ".repeat(100);
        let v: Vec<Insight> = (0..40).map(|k| slow_query(k, &sql)).collect();
        let n = notification(v);
        for (style, budget) in all_styles() {
            let parts = render(&n, style, budget, &zh);
            assert!(parts.len() > 1);
            for (k, p) in parts.iter().enumerate() {
                assert!(p.len() <= budget);
                assert!(
                    p.contains(&format!("（第 {}/{} 部分）", k + 1, parts.len())),
                    "{p}"
                );
                let words = p
                    .replace("<font color=\"warning\">", "")
                    .replace("<font color=\"comment\">", "");
                for en in [
                    "Where", "Metrics", "Query:", "Advice", "report", "WARNING", "warning", "part",
                ] {
                    assert!(!words.contains(en), "{style:?}: {en} in\n{p}");
                }
                assert!(p.contains("位置: ") && p.contains("处理: "), "{p}");
            }
        }
    }

    #[test]
    fn markdown_v2_is_a_list_and_tight_budgets_keep_the_title() {
        let n = notification(vec![slow_query(1, "SELECT 1")]);
        let v2 = &wecom_markdown_v2(&n, 4000)[0];
        assert!(
            v2.contains(
                "\n- calls 52 · mean time 156.2 ms · share of total time 62% · total time 8.12 s\n"
            ),
            "{v2}"
        );
        assert!(!v2.contains("| Metric |"), "no table of metrics: {v2}");
        for budget in (MIN_BUDGET..900).step_by(7) {
            let p = &wecom_markdown_v2(&n, budget)[0];
            assert!(p.len() <= budget);
            assert!(p.contains("Top query #1"), "{budget}: {p}");
        }
    }

    #[test]
    fn markdown_mentions_are_valid_and_bounded() {
        let ids: Vec<String> = [
            "alice",
            "bob smith",
            "<font>",
            "@all",
            "x".repeat(65).as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(markdown_mentions(&ids, 100), "<@alice> <@@all>");
        assert_eq!(markdown_mentions(&ids, 10), "<@alice>");
        let many: Vec<String> = (0..1000).map(|k| format!("user{k}")).collect();
        assert!(markdown_mentions(&many, 1000).len() <= 1000);
    }

    #[test]
    fn entries_link_to_powa_web_pages_with_safe_segments() {
        let mut opts = RenderOptions::default();
        let mut i = slow_query(1, "SELECT 1");
        i.labels.insert("srvid".into(), "3".into());
        assert_eq!(powa_web_link(&i, &opts), None, "no powa_web_url");
        opts.powa_web
            .insert("main".into(), "https://powa.example.com/p/".into());
        assert_eq!(
            powa_web_link(&i, &opts).as_deref(),
            Some("https://powa.example.com/p/server/3/database/app/query/-123451/overview")
        );
        i.labels.insert("database".into(), "a b)](x".into());
        i.labels.remove("queryid");
        assert_eq!(
            powa_web_link(&i, &opts).as_deref(),
            Some("https://powa.example.com/p/server/3/database/a%20b%29%5D%28x/overview")
        );
        i.labels.remove("database");
        assert_eq!(
            powa_web_link(&i, &opts).as_deref(),
            Some("https://powa.example.com/p/server/3/overview/")
        );
        // In markdown a link, in text the address; the queryid line goes (the link has it).
        i.labels.insert("database".into(), "app".into());
        i.labels.insert("queryid".into(), "42".into());
        let n = notification(vec![i]);
        let md = &render(&n, Style::Markdown, 4000, &opts)[0];
        assert!(
            md.contains(
                ">[powa-web](https://powa.example.com/p/server/3/database/app/query/42/overview)"
            ),
            "{md}"
        );
        assert!(!md.contains("queryid"), "{md}");
        let text = &render(&n, Style::Text, 2000, &opts)[0];
        assert!(
            text.contains(
                "  powa-web: https://powa.example.com/p/server/3/database/app/query/42/overview"
            ),
            "{text}"
        );
        assert!(!valid_base_url("powa.example.com"));
        assert!(!valid_base_url("https://x/(y)"));
        assert!(valid_base_url("http://127.0.0.1:8888/powa"));
    }

    #[test]
    fn cut_bytes_respects_char_boundaries() {
        assert_eq!(cut_bytes("héllo", 10), "héllo");
        assert_eq!(cut_bytes("ééééé", 7), "éé…"); // 2 + 2 + 3
        assert_eq!(cut_bytes("ééééé", 3), "");
        assert_eq!(cut_bytes("数据库", 8), "数…");
    }
}
