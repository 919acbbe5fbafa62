//! The document as lines in a dialect: one line per part of an entry (title, where,
//! impact, cause, fix, numbers, query, other servers, link), labelled in the report's
//! language, with user text escaped for the dialect and cut to its longest length.

use super::dialect::Dialect;
use super::doc::{Action, ChangesSection, Digest, Entry, Header};
use super::escape::{clean, Escape};
use super::line::{render_lines, Line, Span};
use super::words::{Lang, Word};

/// Longest title, label value and advice kept, in characters (the rest is cut with "…").
const TITLE_CHARS: usize = 200;
const LABEL_CHARS: usize = 100;
const ADVICE_CHARS: usize = 500;
const NAME_CHARS: usize = 60;

/// User text escaped for one dialect.
struct Esc<'a>(&'a dyn Dialect);

impl Esc<'_> {
    fn prose(&self, s: &str, max_chars: usize) -> String {
        clean(s, self.0.markup(), Escape::Prose, max_chars)
    }

    fn code(&self, s: &str, max_chars: usize) -> String {
        let ctx = if self.0.literal_code() {
            Escape::Code
        } else {
            Escape::Prose
        };
        clean(s, self.0.markup(), ctx, max_chars)
    }
}

/// The header as text.
pub(crate) fn header(h: &Header, d: &dyn Dialect, lang: Lang) -> String {
    let mut lines = d.header(h, lang);
    if let Some((label, url)) = &h.report_link {
        lines.push(Line::new("").span(Span::Link(lang.word(*label), url.clone())));
    }
    render_lines(&lines, d)
}

/// The lines of one entry, with a SQL preview of at most `preview` characters (none when
/// 0).
pub(crate) fn entry_lines(e: &Entry, d: &dyn Dialect, lang: Lang, preview: usize) -> Vec<Line> {
    let esc = Esc(d);
    let detail = d.detail_prefix();
    let sep = d.list_sep();
    let labelled = |w: Word| Line::new(format!("{detail}{}: ", lang.word(w)));
    let text = |s: &str, max: usize| Span::Text(esc.prose(s, max));
    let mut lines = vec![d.title_line(e.marker, esc.prose(&e.title, TITLE_CHARS), lang)];
    if let Some(p) = &e.place {
        lines.push(labelled(Word::Where).span(text(p, LABEL_CHARS)));
    }
    if let Some(a) = &e.acknowledged {
        lines.push(Line::new(detail).span(text(a, LABEL_CHARS)));
    }
    if let Some(x) = &e.impact {
        lines.push(Line::new(detail).span(text(x, ADVICE_CHARS)));
    }
    if let Some(x) = &e.cause {
        lines.push(labelled(Word::Cause).span(text(x, ADVICE_CHARS)));
    }
    if !e.changed.is_empty() {
        lines.push(labelled(Word::Changed).list(&e.changed, sep, |x| text(x, LABEL_CHARS)));
    }
    match &e.action {
        Some(Action::Run { ddl, note }) => {
            let mut l = labelled(Word::Fix).span(Span::Code(esc.code(ddl, ADVICE_CHARS)));
            if let Some(note) = note {
                l = l.fixed(" (").span(text(note, LABEL_CHARS)).fixed(")");
            }
            lines.push(l);
        }
        Some(Action::Advice(a)) => lines.push(labelled(Word::Fix).span(text(a, ADVICE_CHARS))),
        None => {}
    }
    if !e.numbers.is_empty() {
        lines.push(Line::new(detail).list(&e.numbers, sep, |n| text(n, LABEL_CHARS)));
    }
    if preview > 0 {
        if let Some(sql) = &e.query {
            let p = esc.code(sql, preview);
            if !p.is_empty() {
                lines.push(labelled(Word::Query).span(Span::Code(p)));
            }
        }
    }
    if !e.elsewhere.is_empty() {
        lines.push(labelled(Word::AlsoOn).list(&e.elsewhere, sep, |x| text(x, LABEL_CHARS)));
    }
    if let Some(url) = &e.link {
        lines.push(Line::new(detail).span(Span::Link("powa-web", url.clone())));
    }
    if let Some(q) = &e.queryid {
        let q = esc.code(q, LABEL_CHARS);
        if !q.is_empty() {
            let l = Line::new(format!("{detail}{} ", lang.word(Word::QueryId)));
            lines.push(l.span(Span::Code(q)));
        }
    }
    if let Some((ack, snooze)) = &e.actions {
        lines.push(
            Line::new(detail)
                .span(Span::Link(lang.word(Word::Acknowledge), ack.clone()))
                .sep(sep)
                .span(Span::Link(lang.word(Word::Snooze), snooze.clone())),
        );
    }
    lines
}

/// The lines of the "Changes" section: its heading, then one line per server ("remote1:
/// work_mem 4MB → 64kB at 14:02 UTC · the server restarted at 03:12 UTC"), at most `cap`
/// changes each and the rest counted. Names and values come from PoWA: escaped as any
/// user text.
pub(crate) fn changes_lines(
    c: &ChangesSection,
    d: &dyn Dialect,
    lang: Lang,
    cap: usize,
) -> Vec<Line> {
    let esc = Esc(d);
    let detail = d.detail_prefix();
    // Not the dialect's ", ": a change's own words may hold commas.
    let sep = " · ";
    let mut lines = vec![d.digest_heading(c.heading.to_string())];
    for s in &c.servers {
        let l = Line::new(detail)
            .span(Span::Text(esc.prose(&s.server, NAME_CHARS)))
            .fixed(": ")
            .list(s.items.iter().take(cap), sep, |x| {
                Span::Text(esc.prose(x, LABEL_CHARS))
            });
        let more = s.items.len().saturating_sub(cap);
        lines.push(if more > 0 {
            l.sep(sep).fixed(lang.more(more))
        } else {
            l
        });
    }
    lines
}

/// The lines of a digest's "+N more" block.
pub(crate) fn digest_lines(g: &Digest, d: &dyn Dialect, lang: Lang) -> Vec<Line> {
    let esc = Esc(d);
    let detail = d.detail_prefix();
    let sep = d.list_sep();
    let mut lines = vec![d.digest_heading(g.heading.clone())];
    if !g.by_severity.is_empty() {
        lines.push(
            Line::new(format!("{detail}{}: ", lang.word(Word::BySeverity)))
                .fixed(g.by_severity.join(sep)),
        );
    }
    if !g.kinds.is_empty() {
        let mut l = Line::new(format!("{detail}{}: ", lang.word(Word::ByKind))).list(
            &g.kinds,
            sep,
            |(kind, c)| Span::Text(format!("{} {c}", esc.prose(kind, NAME_CHARS))),
        );
        if let Some(more) = &g.more_kinds {
            l = l.sep(sep).fixed(more.clone());
        }
        lines.push(l);
    }
    if let Some(c) = &g.changes {
        lines.push(Line::new(detail).fixed(c.clone()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use sentinel_actors::message::Lifecycle;
    use sentinel_actors::Severity;

    use crate::render::fixture::{notification, slow_query};
    use crate::render::*;

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

    mod changes_section {
        use chrono::{DateTime, TimeZone, Utc};
        use sentinel_actors::{Change, Insight, Severity};

        use crate::render::fixture::{all_styles, backticks_balanced, notification, slow_query};
        use crate::render::*;

        fn at(h: u32, m: u32) -> DateTime<Utc> {
            Utc.with_ymd_and_hms(2026, 11, 24, h, m, 0).unwrap()
        }

        fn change(at: DateTime<Utc>, kind: &str, what: &str) -> Change {
            Change {
                at,
                kind: kind.into(),
                what: what.into(),
                evidence: None,
                undo: None,
            }
        }

        /// A finding on `server` holding `changes`.
        fn on(n: usize, server: &str, changes: Vec<Change>) -> Insight {
            let mut i = slow_query(n, "SELECT 1");
            i.labels.insert("server".into(), server.into());
            i.changes = changes;
            i
        }

        fn two_servers() -> Vec<Insight> {
            let mut cause = change(at(9, 2), "setting", "work_mem 4MB → 64kB on database etl");
            cause.evidence = Some("temp blocks written per call 0 → 530".into());
            cause.undo = Some("ALTER DATABASE etl SET work_mem = '4MB';".into());
            let mut settings = on(
                3,
                "remote1",
                vec![change(
                    at(9, 2),
                    "setting",
                    "work_mem 4MB → 64kB on database etl (memory)",
                )],
            );
            settings.kind = "settings_change".into();
            settings.severity = Severity::Info;
            vec![
                on(
                    1,
                    "remote1",
                    vec![cause, change(at(3, 12), "restart", "the server restarted")],
                ),
                settings,
                on(
                    2,
                    "remote2",
                    vec![change(
                        at(8, 0),
                        "index_dropped",
                        "index public.orders_customer_idx on public.orders, there at 07:40 UTC, was dropped",
                    )],
                ),
            ]
        }

        #[test]
        fn one_line_per_server_nearest_first_told_once_in_every_dialect() {
            let n = notification(two_servers());
            let plain = plain_report(&n);
            let section = &plain[plain.find("[Changes]").expect(&plain)..];
            let lines: Vec<&str> = section.lines().collect();
            assert_eq!(
                lines[1],
                "  remote1: work_mem 4MB → 64kB on database etl at 09:02 UTC · the server restarted at 03:12 UTC",
                "the settings change and the regression's cause are one change: {plain}"
            );
            assert_eq!(
                lines[2],
                "  remote2: index public.orders_customer_idx on public.orders, there at 07:40 UTC, was dropped by 08:00 UTC"
            );
            // The evidence and the undo statement stay in the story.
            assert_eq!(section.matches("temp blocks").count(), 0, "{section}");
            for lang in [Lang::En, Lang::Zh] {
                let opts = RenderOptions {
                    lang,
                    ..Default::default()
                };
                let heading = lang.pick("Changes", "变更记录");
                for (style, budget) in all_styles() {
                    let p = render(&n, style, budget, &opts).join("\n");
                    assert!(p.contains(heading), "{style:?}\n{p}");
                    assert!(p.contains("remote2: "), "{style:?}\n{p}");
                }
                let html = html_report(&n, &opts);
                assert!(
                    html.contains(heading) && html.contains("remote1: "),
                    "{html}"
                );
            }
        }

        #[test]
        fn names_and_values_from_powa_are_escaped() {
            let evil = "idx_`*_<font color=\"warning\">x</font>_**";
            let n = notification(vec![
                on(1, "remote1", vec![change(at(9, 0), "index_created", evil)]),
                on(
                    2,
                    "remote2",
                    vec![change(at(9, 0), "setting", "search_path a → <b>&'\"")],
                ),
            ]);
            for (style, budget) in all_styles() {
                for p in render(&n, style, budget, &RenderOptions::default()) {
                    assert!(backticks_balanced(&p), "{style:?}\n{p}");
                    assert_eq!(
                        p.matches("<font").count(),
                        p.matches("</font>").count(),
                        "{p}"
                    );
                    assert_eq!(p.matches("**").count() % 2, 0, "{style:?}\n{p}");
                }
            }
            let html = html_report(&n, &RenderOptions::default());
            assert!(!html.contains("<b>&"), "{html}");
            assert!(html.contains("&lt;b&gt;&amp;&#39;&quot;"), "{html}");
            assert!(!html.contains("<font color=\"warning\">x"), "{html}");
        }

        #[test]
        fn a_single_story_that_tells_its_changes_gets_no_section() {
            let n = notification(vec![on(
                1,
                "remote1",
                vec![change(at(3, 12), "restart", "the server restarted")],
            )]);
            let p = plain_report(&n);
            assert!(
                p.contains("What changed: the server restarted at 03:12 UTC"),
                "{p}"
            );
            assert!(!p.contains("[Changes]"), "{p}");
            // No changes, no section.
            assert!(
                !plain_report(&notification(vec![slow_query(1, "SELECT 1")])).contains("[Changes]")
            );
        }

        #[test]
        fn within_the_budget_and_a_digest_counts_what_it_leaves_out() {
            // 40 servers with 30 long changes each: far more than a message.
            let v: Vec<Insight> = (0..40)
                .map(|k| {
                    let changes = (0..30)
                        .map(|m| {
                            change(
                                at(1 + (m % 20) as u32, m as u32),
                                "setting",
                                &format!(
                                    "some_setting_{m} {} → {}",
                                    "x".repeat(60),
                                    "y".repeat(60)
                                ),
                            )
                        })
                        .collect();
                    on(k, &format!("server{k}"), changes)
                })
                .collect();
            let n = notification(v);
            for lang in [Lang::En, Lang::Zh] {
                let opts = RenderOptions {
                    lang,
                    ..Default::default()
                };
                for (style, budget) in all_styles() {
                    let parts = render(&n, style, budget, &opts);
                    for p in &parts {
                        assert!(p.len() <= budget, "{style:?}: {} > {budget}", p.len());
                        assert!(backticks_balanced(p));
                    }
                    let all = parts.join("\n");
                    let more = lang.pick("+29 more", "另有 29 项");
                    assert!(
                        all.contains(more),
                        "{style:?}: changes beyond the cap are counted\n{all}"
                    );
                    // In one message, the section is left out and counted.
                    let one = render_digest(&n, style, budget, &opts, 1);
                    assert_eq!(one.len(), 1);
                    assert!(one[0].len() <= budget);
                    let counted = lang.pick(
                        "Changes: 1200 changes on 40 servers not shown",
                        "变更记录：40 台服务器的 1200 项变更未显示",
                    );
                    assert!(one[0].contains(counted), "{style:?}\n{}", one[0]);
                }
            }
        }
    }
}
