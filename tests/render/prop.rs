//! Property test of the rendering, on the exact payloads the WeCom channels send: arbitrary
//! query texts (CJK, emoji, markdown specials, escape-looking sequences, up to 1 MB),
//! arbitrary titles, advice and labels, every msgtype, both languages, with and without
//! mentions, full renderings and digests. Every payload is valid JSON whose content is
//! within WeCom's byte limit, never cut inside a character (the content is a `str`, and
//! JSON round-trips it), a code span, a `<font>` tag, a bold run or a table row; every
//! entry (one story per problem: insights about the same query series are told together,
//! see `powa_sentinel::story`) is shown or counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use powa_sentinel::actors::message::{Lifecycle, Mentions};
use powa_sentinel::actors::{Fingerprint, Insight, Notification, NotifyReason, Severity, Window};
use powa_sentinel::channels::wecom::{self, MsgType};
use powa_sentinel::channels::wecom_app::{APP_CONTENT_BUDGET, APP_CONTENT_LIMIT};
use powa_sentinel::render::{self, Lang, RenderOptions, Style};

const NASTY: &[&str] = &[
    "数据库",
    "慢查询",
    "🐘",
    "👩‍💻",
    "é",
    "`",
    "```",
    "**",
    "*",
    "_",
    "[",
    "]",
    "(",
    ")",
    "<",
    ">",
    "#",
    "> ",
    "|",
    "~",
    "\\",
    "\\n",
    "\\u0000",
    "\\x",
    "%s",
    "&amp;",
    "<font color=\"info\">",
    "</font>",
    "<@all>",
    "\n",
    "\r\n",
    "\t",
    "\u{200b}",
    "\u{202e}",
    "\u{0}",
    "\u{feff}",
    "SELECT ",
    " FROM t ",
    "$1",
    "'",
    "\"",
    "-- ",
    "/* */",
    "ʼ",
    "…",
    "| --- |",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(NASTY), 0..60).prop_map(|v| v.concat()),
    ]
}

/// Short or huge: a fragment repeated up to about 1 MB.
fn query_text() -> impl Strategy<Value = String> {
    (
        fragment(),
        prop_oneof![Just(1usize), 1usize..50, Just(1_000_000usize)],
    )
        .prop_map(|(f, times)| {
            if f.is_empty() {
                return f;
            }
            let n = times.min(1_000_000 / f.len().max(1)).max(1);
            f.repeat(n)
        })
}

fn insight(k: usize) -> impl Strategy<Value = Insight> {
    (
        fragment(),
        fragment(),
        fragment(),
        query_text(),
        0..3u8,
        prop::option::of(0..5u8),
        prop::collection::btree_map("[a-z_]{1,12}", any::<f64>(), 0..8),
        prop::collection::btree_map(fragment(), fragment(), 0..4),
    )
        .prop_map(
            move |(title, advice, server, sql, sev, status, metrics, extra)| {
                let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
                let mut labels: BTreeMap<String, String> = extra;
                labels.insert("server".into(), server);
                labels.insert("queryid".into(), "-42".into());
                Insight {
                    fingerprint: Fingerprint::of([k.to_string()]),
                    kind: ["slow_query", "regression", "种类 `x`"][k % 3].into(),
                    rule: "r".into(),
                    severity: [Severity::Info, Severity::Warning, Severity::Critical][sev as usize],
                    labels,
                    // A marker that survives escaping and cutting (cuts keep the head).
                    title: format!("T{k}X {title}"),
                    advice,
                    text: Some(sql),
                    metrics,
                    window: Window { start: t, end: t },
                    observed_at: t,
                    status: status.map(|s| {
                        [
                            Lifecycle::New,
                            Lifecycle::Ongoing,
                            Lifecycle::Escalated,
                            Lifecycle::Resolved,
                            Lifecycle::Reopened,
                        ][s as usize]
                    }),
                    changes: Vec::new(),
                    trend: None,
                }
            },
        )
}

fn notification() -> impl Strategy<Value = Notification> {
    (1usize..30)
        .prop_flat_map(|n| (0..n).map(insight).collect::<Vec<_>>())
        .prop_flat_map(|insights| {
            (
                Just(insights),
                prop::collection::vec(fragment(), 0..4),
                prop::collection::vec("[0-9+-]{3,22}", 0..3),
            )
        })
        .prop_map(|(insights, userids, mobiles)| Notification {
            id: 1,
            channel: "c".into(),
            reason: NotifyReason::Report,
            insights: Arc::new(insights),
            created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
            mentions: Mentions {
                userids: userids
                    .into_iter()
                    .chain(["zhangsan".to_string()])
                    .collect(),
                mobiles,
            },
        })
}

/// Checks one message's content; returns the insight markers it shows and the count in
/// its "+N more" block.
fn check_content(
    content: &str,
    style: Style,
    limit: usize,
) -> Result<(Vec<usize>, usize), TestCaseError> {
    prop_assert!(
        content.len() <= limit,
        "{style:?}: {} > {limit}",
        content.len()
    );
    prop_assert!(!content.is_empty());
    let lines: Vec<&str> = content.lines().collect();
    let markdown = matches!(style, Style::Markdown | Style::MarkdownV2);
    for (k, l) in lines.iter().enumerate() {
        // Text messages have no markup: user text stays as it is there.
        if markdown {
            prop_assert!(
                l.matches('`').count().is_multiple_of(2),
                "open code span: {l}"
            );
            // SQL keeps its `*` inside code spans; markup counts outside them.
            let outside: String = l.split('`').step_by(2).collect();
            prop_assert!(
                outside.matches("**").count().is_multiple_of(2),
                "open bold: {l}"
            );
            prop_assert_eq!(
                outside.matches("<font").count(),
                outside.matches("</font>").count(),
                "{}",
                l
            );
            // Nor can a tag or a mention hide in a code span.
            for code in l.split('`').skip(1).step_by(2) {
                prop_assert!(
                    !code.contains("<font") && !code.contains("</") && !code.contains("<@"),
                    "{code}"
                );
            }
        }
        match style {
            Style::MarkdownV2 => {
                prop_assert!(!l.contains("<font"));
                if l.starts_with('|') {
                    prop_assert!(l.ends_with('|') && l.len() > 1, "cut table row: {l}");
                }
                if *l == "| --- | --- |" {
                    prop_assert!(k > 0 && lines[k - 1].starts_with("| "), "no heading");
                    prop_assert!(
                        lines.get(k + 1).is_some_and(|n| n.starts_with("| ")),
                        "table without rows: {content}"
                    );
                }
            }
            Style::Text => prop_assert!(!l.contains('`')),
            _ => {}
        }
    }
    let mut shown = Vec::new();
    let mut rest = content;
    while let Some(p) = rest.find('T') {
        rest = &rest[p + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        // The title's trailing space goes when the rest of the title is empty.
        if !digits.is_empty() && rest[digits.len()..].starts_with('X') {
            shown.push(digits.parse().unwrap());
        }
    }
    let mut more = 0;
    for (pre, post) in [("+", " more not shown in full"), ("另有 ", " 条未完整显示")] {
        if let Some(e) = content.find(post) {
            let head = &content[..e];
            let s = head.rfind(pre).unwrap() + pre.len();
            more = head[s..].parse().unwrap();
        }
    }
    Ok((shown, more))
}

fn content_of(body: &str) -> Result<(String, serde_json::Value), TestCaseError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let t = v["msgtype"].as_str().unwrap_or_default().to_string();
    let c = v[&t]["content"].as_str().unwrap_or_default().to_string();
    Ok((c, v))
}

proptest! {
    // The regressions file stays beside this file (`prop.proptest-regressions`): by default
    // proptest would look in a `proptest-regressions` folder beside the crate's folder, since
    // this crate has a main.rs.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn payloads_are_always_within_limits(
        n in notification(),
        digest in prop::option::of(1usize..6),
        preview in 20usize..=2000,
    ) {
        for lang in [Lang::En, Lang::Zh] {
            let opts = RenderOptions { sql_preview_chars: preview, lang, ..RenderOptions::default() };
            // The robot: all three msgtypes, through the channel's own body builder.
            for msgtype in [MsgType::Markdown, MsgType::MarkdownV2, MsgType::Text] {
                let bodies = wecom::bodies(&n, msgtype, &opts, digest);
                prop_assert!(!bodies.is_empty());
                if let Some(m) = digest {
                    prop_assert!(bodies.len() <= m.max(2), "{} > {}", bodies.len(), m);
                }
                let mut shown = Vec::new();
                let mut more = 0;
                let mut report_parts = 0;
                for b in &bodies {
                    let (content, v) = content_of(b)?;
                    let is_extra = v["msgtype"] == "text" && msgtype != MsgType::Text;
                    if is_extra {
                        // The mention carrier: short text with the lists.
                        prop_assert!(content.len() <= render::WECOM_TEXT_LIMIT);
                        continue;
                    }
                    report_parts += 1;
                    prop_assert_eq!(v["msgtype"].as_str(), Some(msgtype.as_str()));
                    let (s, m) = check_content(&content, msgtype_style(msgtype), msgtype.budget())?;
                    shown.extend(s);
                    more += m;
                }
                if report_parts > 1 {
                    for b in &bodies[..report_parts] {
                        let (c, _) = content_of(b)?;
                        let marked = c.contains(&format!("/{report_parts})"))
                            || c.contains(&format!("/{report_parts} 部分）"));
                        prop_assert!(marked, "no part marker: {}", c);
                    }
                }
                shown.sort_unstable();
                shown.dedup();
                let entries = render::entries(&n);
                // Every insight is in exactly one entry.
                prop_assert_eq!(entries.iter().map(|e| e.insights).sum::<usize>(), n.insights.len());
                prop_assert_eq!(shown.len() + more, entries.len(), "{:?} {:?}", msgtype, lang);
            }
            // Application messages: 2048 bytes, markdown and text.
            for style in [Style::Markdown, Style::Text] {
                let parts = render::render_digest(&n, style, APP_CONTENT_BUDGET, &opts, digest.unwrap_or(usize::MAX));
                for p in &parts {
                    check_content(p, style, APP_CONTENT_LIMIT)?;
                }
            }
        }
    }

    /// Feishu cards and Slack Block Kit, through the channels' own body builders: every
    /// body within its budget, Slack's block, section and header limits kept, at most the
    /// digest's quota of messages, no PoWA text read as markup or a mention (only the
    /// route's mention element has a tag), every entry shown or counted.
    #[test]
    fn cards_and_blocks_keep_their_limits(
        n in notification(),
        digest in prop::option::of(1usize..4),
        preview in 20usize..=2000,
    ) {
        use powa_sentinel::channels::{feishu, slack};
        let entries = render::entries(&n).len();
        for lang in [Lang::En, Lang::Zh] {
            let opts = RenderOptions { sql_preview_chars: preview, lang, ..RenderOptions::default() };
            let mention = feishu::card_mention_line(&n);
            let cards = feishu::card_parts(&n, &opts, digest);
            prop_assert!(!cards.is_empty());
            prop_assert!(cards.len() <= digest.unwrap_or(usize::MAX));
            let mut all = String::new();
            for c in &cards {
                let signed = feishu::signed_body(c, Some(&powa_sentinel::secret::Secret::new("k")), 1_700_000_000);
                prop_assert!(signed.len() <= feishu::BODY_BUDGET, "{}", signed.len());
                for e in c.body["card"]["elements"].as_array().unwrap() {
                    let Some(t) = e["text"]["content"].as_str() else { continue };
                    if !mention.is_empty() && t == mention {
                        continue;
                    }
                    for never in ['<', '[', ']', '`', '&', '~'] {
                        prop_assert!(!t.contains(never), "{:?} in {}", never, t);
                    }
                    prop_assert_eq!(t.matches("**").count() % 2, 0, "{}", t);
                    all.push_str(t);
                    all.push('\n');
                }
            }
            let (mut shown, more) = check_content(&all, Style::LarkMd, usize::MAX)?;
            shown.sort_unstable();
            shown.dedup();
            prop_assert_eq!(shown.len() + more, entries, "Feishu {:?}", lang);

            let mention = slack::mention_line(&n);
            let messages = slack::block_parts(&n, &opts, digest);
            prop_assert!(!messages.is_empty());
            prop_assert!(messages.len() <= digest.unwrap_or(usize::MAX));
            let mut all = String::new();
            for m in &messages {
                prop_assert!(m.body.len() <= slack::BODY_BUDGET, "{}", m.body.len());
                let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
                let blocks = v["blocks"].as_array().unwrap();
                prop_assert!(blocks.len() <= slack::MAX_BLOCKS);
                for b in blocks {
                    let t = b["text"]["text"].as_str().unwrap_or_default();
                    match b["type"].as_str().unwrap() {
                        "header" => prop_assert!(t.chars().count() <= slack::HEADER_CHARS),
                        "section" => {
                            prop_assert!(t.chars().count() <= slack::SECTION_CHARS);
                            if !mention.is_empty() && t == mention {
                                continue;
                            }
                            prop_assert!(!t.contains('<') && !t.contains('>'), "{}", t);
                            all.push_str(t);
                            all.push('\n');
                        }
                        _ => {}
                    }
                }
            }
            let (mut shown, more) = check_content(&all, Style::Mrkdwn, usize::MAX)?;
            shown.sort_unstable();
            shown.dedup();
            prop_assert_eq!(shown.len() + more, entries, "Slack {:?}", lang);
        }
    }

    /// SQL previews: one line, bounded, no backtick, never cut inside a character.
    #[test]
    fn previews_are_bounded(sql in query_text(), max in 0usize..400) {
        let p = render::sql_preview(&sql, max);
        prop_assert!(p.chars().count() <= max);
        prop_assert!(!p.contains('`') && !p.contains('\n'));
    }
}

fn msgtype_style(m: MsgType) -> Style {
    match m {
        MsgType::Markdown => Style::Markdown,
        MsgType::MarkdownV2 => Style::MarkdownV2,
        MsgType::Text => Style::Text,
    }
}
