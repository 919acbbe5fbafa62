//! Our own wording, per language: headings, labels, part markers, severity and lifecycle
//! words. Text produced by the analyzers (insight titles, advice) and data (SQL, names)
//! is shown as it is.
//!
//! Every word is one `match` arm that holds both languages, so a missing translation is a
//! compile error rather than an English word in a Chinese message.

use sentinel_actors::message::Lifecycle;
use sentinel_actors::Severity;

/// The language of our own wording (titles, headings, labels, part markers, lifecycle
/// words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Zh,
}

/// The fixed words of a rendered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Word {
    Report,
    Alert,
    Window,
    Where,
    Query,
    /// A card's row of numbers.
    Numbers,
    Cause,
    /// What changed on the server since the baseline.
    Changed,
    /// The report's section of every server's changes.
    Changes,
    Fix,
    AlsoOn,
    QueryId,
    Repository,
    BySeverity,
    ByKind,
    /// "resolved" as a count's word ("1 resolved").
    ResolvedCount,
    /// Between the items of a list in prose.
    ListSep,
    /// Action links: "Acknowledge", "Snooze", and the header's "All that fires now".
    Acknowledge,
    Snooze,
    FullReport,
    /// The report page's link to what fires now, everywhere.
    FiringNow,
    /// A report page: a chart's description, and until when the page is kept.
    ChartOf,
    KeptUntil,
    /// A severity as counted in a header: "warning".
    Severity(Severity),
    /// A severity as an entry's marker: "WARNING".
    Marker(Severity),
    Lifecycle(Lifecycle),
}

impl Lang {
    /// The language's code, as HTML's `lang` attribute takes it.
    pub fn code(self) -> &'static str {
        self.pick("en", "zh")
    }

    /// `en` or `zh`, by this language.
    pub(crate) fn pick<'a>(self, en: &'a str, zh: &'a str) -> &'a str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }

    pub(crate) fn is_zh(self) -> bool {
        self == Lang::Zh
    }

    pub(crate) fn word(self, w: Word) -> &'static str {
        let (en, zh) = match w {
            Word::Report => ("PoWA Sentinel report", "PoWA Sentinel 报告"),
            Word::Alert => ("PoWA Sentinel alert", "PoWA Sentinel 告警"),
            Word::Window => ("Window", "时间窗口"),
            Word::Where => ("Where", "位置"),
            Word::Query => ("Query", "查询"),
            Word::Numbers => ("Numbers", "数据"),
            Word::Cause => ("Cause", "原因"),
            Word::Changed => ("What changed", "期间变更"),
            Word::Changes => ("Changes", "变更记录"),
            Word::Fix => ("Fix", "处理"),
            Word::Acknowledge => ("Acknowledge", "确认处理"),
            Word::Snooze => ("Snooze", "暂停提醒"),
            Word::FullReport => ("Full report", "完整报告"),
            Word::FiringNow => ("All that fires now", "当前全部问题"),
            Word::ChartOf => ("Chart of", "趋势图"),
            Word::KeptUntil => ("this page is kept until", "本页保留至"),
            Word::AlsoOn => ("Also on", "其他服务器"),
            Word::QueryId => ("queryid", "查询 ID"),
            Word::Repository => ("repository", "仓库"),
            Word::BySeverity => ("By severity", "按级别"),
            Word::ByKind => ("By kind", "按类型"),
            Word::ResolvedCount => ("resolved", "已恢复"),
            Word::ListSep => (", ", "，"),
            Word::Severity(Severity::Critical) => ("critical", "严重"),
            Word::Severity(Severity::Warning) => ("warning", "警告"),
            Word::Severity(Severity::Info) => ("info", "提示"),
            Word::Marker(Severity::Critical) => ("CRITICAL", "严重"),
            Word::Marker(Severity::Warning) => ("WARNING", "警告"),
            Word::Marker(Severity::Info) => ("INFO", "提示"),
            Word::Lifecycle(Lifecycle::New) => ("NEW", "新问题"),
            Word::Lifecycle(Lifecycle::Ongoing) => ("ONGOING", "持续"),
            Word::Lifecycle(Lifecycle::Escalated) => ("ESCALATED", "升级"),
            Word::Lifecycle(Lifecycle::Resolved) => ("RESOLVED", "已恢复"),
            Word::Lifecycle(Lifecycle::Reopened) => ("REOPENED", "再次出现"),
        };
        self.pick(en, zh)
    }

    /// " (part 2/5)" / "（第 2/5 部分）".
    pub(crate) fn part(self, i: usize, n: usize) -> String {
        match self {
            Lang::En => format!(" (part {i}/{n})"),
            Lang::Zh => format!("（第 {i}/{n} 部分）"),
        }
    }

    /// "3 warning" / "警告 3".
    pub(crate) fn count(self, word: &str, n: usize) -> String {
        match self {
            Lang::En => format!("{n} {word}"),
            Lang::Zh => format!("{word} {n}"),
        }
    }

    /// "Acknowledged by alice at 2026-12-02 08:10 UTC" / "alice 已于 … 确认处理".
    pub(crate) fn acknowledged(self, by: &str, at: &str) -> String {
        match self {
            Lang::En => format!("Acknowledged by {by} at {at}"),
            Lang::Zh => format!("{by} 已于 {at} 确认处理"),
        }
    }

    /// "+N more" / "另有 N 项".
    pub(crate) fn more(self, n: usize) -> String {
        match self {
            Lang::En => format!("+{n} more"),
            Lang::Zh => format!("另有 {n} 项"),
        }
    }

    /// "+N more kinds" / "另有 N 种类型".
    pub(crate) fn more_kinds(self, n: usize) -> String {
        match self {
            Lang::En => format!("+{n} more kinds"),
            Lang::Zh => format!("另有 {n} 种类型"),
        }
    }

    /// The digest's heading for insights not shown in full.
    pub(crate) fn not_shown(self, n: usize) -> String {
        match self {
            Lang::En => format!("+{n} more not shown in full"),
            Lang::Zh => format!("另有 {n} 条未完整显示"),
        }
    }

    /// A digest's line for the "Changes" section it leaves out.
    pub(crate) fn changes_not_shown(self, changes: usize, servers: usize) -> String {
        match self {
            Lang::En => format!(
                "Changes: {changes} change{} on {servers} server{} not shown",
                if changes == 1 { "" } else { "s" },
                if servers == 1 { "" } else { "s" }
            ),
            Lang::Zh => format!("变更记录：{servers} 台服务器的 {changes} 项变更未显示"),
        }
    }

    /// "warning" / "警告", as counted in a header.
    pub(crate) fn severity(self, s: Severity) -> &'static str {
        self.word(Word::Severity(s))
    }

    /// "WARNING" / "警告", as an entry's marker.
    pub(crate) fn severity_upper(self, s: Severity) -> &'static str {
        self.word(Word::Marker(s))
    }

    pub(crate) fn lifecycle(self, l: Lifecycle) -> &'static str {
        self.word(Word::Lifecycle(l))
    }

    /// The word for `key` in a table of (key, English, Chinese) rows.
    pub(crate) fn lookup(
        self,
        table: &[(&str, &'static str, &'static str)],
        key: &str,
    ) -> Option<&'static str> {
        table
            .iter()
            .find(|r| r.0 == key)
            .map(|&(_, en, zh)| self.pick(en, zh))
    }
}

#[cfg(test)]
mod tests {
    use sentinel_actors::Insight;

    use super::*;
    use crate::render::fixture::{all_styles, notification, slow_query};
    use crate::render::{render, RenderOptions};

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
}
