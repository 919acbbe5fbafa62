//! What a problem costs: the figures [`super::order`] compares, and how to say an amount
//! per day.

use std::cmp::Ordering;

use sentinel_actors::Insight;

use super::metric;
use crate::render::format::{human_secs, ms};
use crate::render::Lang;

/// What a problem costs, in the units [`super::order`] compares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impact {
    /// Time per day it costs the server (a regression: the extra time), in ms.
    pub time_per_day_ms: Option<f64>,
    /// Its share of the server's execution time (or of the resource it hogs).
    pub share: Option<f64>,
    /// Rows read and thrown away per day.
    pub rows_per_day: Option<f64>,
}

impl Impact {
    /// What one insight costs, from its own metrics.
    pub fn of(i: &Insight) -> Impact {
        let m = |k: &str| metric(i, k);
        let day = |v: f64| v * per_day_factor(i);
        let time = match (i.kind.as_str(), i.rule.as_str()) {
            ("regression", _) => m("extra_time_ms"),
            ("workload_change", "workload_change.calls_up") => {
                match (m("total_time_ms"), m("baseline_total_time_ms")) {
                    (Some(a), Some(b)) => Some((a - b).max(0.0)),
                    (a, _) => a,
                }
            }
            ("slow_query" | "resource_hog", _)
            | ("workload_change", "workload_change.new_heavy_query") => m("total_time_ms"),
            _ => None,
        };
        let share = m("share_of_total_time").or_else(|| match i.kind.as_str() {
            "resource_hog" => m("share"),
            _ => None,
        });
        Impact {
            time_per_day_ms: time.map(day),
            share,
            rows_per_day: m("rows_filtered").map(day),
        }
    }

    pub(super) fn max(self, o: Impact) -> Impact {
        let mx = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        Impact {
            time_per_day_ms: mx(self.time_per_day_ms, o.time_per_day_ms),
            share: mx(self.share, o.share),
            rows_per_day: mx(self.rows_per_day, o.rows_per_day),
        }
    }

    /// Bigger is more impactful; a known amount beats an unknown one.
    pub(super) fn cmp(&self, o: &Impact) -> Ordering {
        let c = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Greater,
            (None, Some(_)) => Ordering::Less,
            (None, None) => Ordering::Equal,
        };
        c(self.time_per_day_ms, o.time_per_day_ms)
            .then(c(self.share, o.share))
            .then(c(self.rows_per_day, o.rows_per_day))
    }
}

/// What scales an amount over the insight's window to one day (1 for an empty window).
pub fn per_day_factor(i: &Insight) -> f64 {
    let secs = (i.window.end - i.window.start).num_seconds();
    if secs <= 0 {
        1.0
    } else {
        86_400.0 / secs as f64
    }
}

/// How to say "per day" for an insight's window: scaled when the window is about a day,
/// else the window's amount with the daily rate beside it.
pub(super) struct Per {
    pub(super) factor: f64,
    window: String,
    day: bool,
    lang: Lang,
}

impl Per {
    pub(super) fn of(i: &Insight, lang: Lang) -> Per {
        let secs = (i.window.end - i.window.start).num_seconds().max(0);
        let day = (82_800..=90_000).contains(&secs) || secs == 0;
        Per {
            factor: if day { 1.0 } else { per_day_factor(i) },
            window: human_secs(secs as f64),
            day,
            lang,
        }
    }

    /// "+6.4 s per day" / "+6.4 s in 1 h (≈ 2 min 34 s per day)".
    pub(super) fn time(&self, v: f64, plus: bool) -> String {
        let sign = if plus { "+" } else { "" };
        match (self.day, self.lang.is_zh()) {
            (true, false) => format!("{sign}{} per day", ms(v)),
            (true, true) => format!("每天{}{}", if plus { "多耗 " } else { "耗时 " }, ms(v)),
            (false, false) => format!(
                "{sign}{} in {} (≈ {} per day)",
                ms(v),
                self.window,
                ms(v * self.factor)
            ),
            (false, true) => format!(
                "{} 内{}{}（约每天 {}）",
                self.window,
                if plus { "多耗 " } else { "耗时 " },
                ms(v),
                ms(v * self.factor)
            ),
        }
    }

    /// "per day" / "in 1 h", after an amount.
    pub(super) fn suffix(&self) -> String {
        if self.day {
            "per day".to_string()
        } else {
            format!("in {}", self.window)
        }
    }

    /// "每天" / "1 h 内", before an amount.
    pub(super) fn prefix(&self) -> String {
        if self.day {
            "每天".to_string()
        } else {
            format!("{} 内", self.window)
        }
    }
}
