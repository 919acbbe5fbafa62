//! What the renderers' unit tests render.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use sentinel_actors::{Insight, Notification, NotifyReason, Severity, Window};

use super::{Style, WECOM_MARKDOWN_BUDGET, WECOM_TEXT_BUDGET};
use crate::story::fixture::{insight, with};

/// Insight `n` of a report: a kind the stories do not know, told with its own title and
/// advice and never grouped, so that these tests see one entry per insight.
pub(crate) fn slow_query(n: usize, sql: &str) -> Insight {
    let metrics = [
        ("calls", 52.0),
        ("total_time_ms", 8123.4),
        ("mean_time_ms", 156.2),
        ("share_of_total_time", 0.62),
        ("rows", 52.0),
    ];
    let queryid = format!("-12345{n}");
    let mut i = with(
        insight("custom.total_time", "remote1", &queryid, Severity::Warning),
        &metrics,
    );
    i.labels.insert("user".into(), "bob".into());
    i.title = format!("Top query #{n} by total time on remote1 (62% of its time)");
    i.advice = "Check its plan with EXPLAIN (ANALYZE, BUFFERS).".into();
    i.text = Some(sql.to_string());
    i.window = Window {
        start: Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
    };
    i
}

pub(crate) fn notification(insights: Vec<Insight>) -> Notification {
    Notification {
        id: 7,
        channel: "ops".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(insights),
        created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
        mentions: Default::default(),
    }
}

pub(crate) fn backticks_balanced(s: &str) -> bool {
    s.lines().all(|l| l.matches('`').count() % 2 == 0)
}

/// The budgeted styles with WeCom's budgets.
pub(crate) fn all_styles() -> [(Style, usize); 3] {
    [
        (Style::Markdown, WECOM_MARKDOWN_BUDGET),
        (Style::MarkdownV2, WECOM_MARKDOWN_BUDGET),
        (Style::Text, WECOM_TEXT_BUDGET),
    ]
}
