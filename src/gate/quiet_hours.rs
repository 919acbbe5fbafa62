//! Quiet hours: a daily window, per channel, during which that channel receives only
//! insights of the bypass severity and above. What the window holds back is kept (in the
//! gate's store) and delivered when the window ends — nothing is dropped.
//!
//! ```toml
//! [gate.quiet_hours.ops]          # the channel `ops`
//! start = "22:00"                  # local time in `timezone`; may wrap past midnight
//! end = "07:00"
//! timezone = "Asia/Shanghai"       # IANA name; default UTC
//! bypass_severity = "critical"     # this and above still go through; "none": nothing does
//! ```
//!
//! Daylight saving: the window is in local wall-clock time. When the end time does not
//! exist on a day (a spring-forward gap), the window ends at the first instant after the gap.

use chrono::{DateTime, Duration, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use sentinel_actors::Severity;

use crate::problem::Problem;

/// One `[gate.quiet_hours.<channel>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSettings {
    /// Start of the window, `HH:MM` (or `HH:MM:SS`) local time.
    pub start: String,
    /// End of the window (exclusive), `HH:MM` local time.
    pub end: String,
    /// IANA timezone, e.g. `Asia/Shanghai`. Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Severity that goes through anyway: info, warning, critical (default) or none.
    #[serde(default = "default_bypass")]
    pub bypass_severity: String,
}

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_bypass() -> String {
    "critical".to_string()
}

/// A compiled window.
#[derive(Debug, Clone)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
    tz: Tz,
    bypass: Option<Severity>,
}

pub(super) fn parse_time(v: &str, key: String, problems: &mut Vec<Problem>) -> Option<NaiveTime> {
    let v = v.trim();
    match NaiveTime::parse_from_str(v, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M:%S"))
    {
        Ok(t) => Some(t),
        Err(_) => {
            problems.push(Problem::new(
                key,
                format!("`{v}` is not a time of day: write HH:MM, e.g. \"22:00\""),
            ));
            None
        }
    }
}

/// An IANA timezone name, or a problem at `key`.
pub(super) fn parse_tz(v: &str, key: String, problems: &mut Vec<Problem>) -> Option<Tz> {
    match v.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            problems.push(Problem::new(
                key,
                format!("`{v}` is not an IANA timezone: use a name such as \"Asia/Shanghai\" or \"UTC\""),
            ));
            None
        }
    }
}

impl QuietHours {
    pub fn compile(
        s: &QuietHoursSettings,
        path: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Self> {
        let key = |f: &str| format!("{path}.{f}");
        let start = parse_time(&s.start, key("start"), problems);
        let end = parse_time(&s.end, key("end"), problems);
        let tz = parse_tz(&s.timezone, key("timezone"), problems);
        let bypass = match s.bypass_severity.as_str() {
            "none" => Some(None),
            v => match v.parse::<Severity>() {
                Ok(sev) => Some(Some(sev)),
                Err(e) => {
                    problems.push(Problem::new(
                        key("bypass_severity"),
                        format!("{e} (or none)"),
                    ));
                    None
                }
            },
        };
        if let (Some(a), Some(b)) = (start, end) {
            if a == b {
                problems.push(Problem::new(
                    key("end"),
                    "equals start: the window would be empty; remove the table to disable quiet hours",
                ));
                return None;
            }
        }
        Some(QuietHours {
            start: start?,
            end: end?,
            tz: tz?,
            bypass: bypass?,
        })
    }

    /// If `at` falls inside the window, the instant the window ends.
    pub fn window_end(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        let t = local.time();
        let inside = if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        };
        if !inside {
            return None;
        }
        let mut date = local.date_naive();
        if t >= self.end {
            date = date.succ_opt()?;
        }
        let naive = date.and_time(self.end);
        let end = match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(d) => d,
            LocalResult::Ambiguous(first, _) => first,
            // A spring-forward gap: the first valid minute after it.
            LocalResult::None => {
                let mut probe = naive;
                loop {
                    probe += Duration::minutes(1);
                    if let LocalResult::Single(d) = self.tz.from_local_datetime(&probe) {
                        break d;
                    }
                    if probe - naive > Duration::hours(3) {
                        return Some(at + Duration::hours(1));
                    }
                }
            }
        };
        Some(end.with_timezone(&Utc))
    }

    /// If an insight of `severity` must wait at `at`, until when.
    pub fn holds(&self, severity: Severity, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.bypass.is_some_and(|b| severity >= b) {
            return None;
        }
        self.window_end(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qh(start: &str, end: &str, tz: &str, bypass: &str) -> QuietHours {
        let mut p = Vec::new();
        let q = QuietHours::compile(
            &QuietHoursSettings {
                start: start.into(),
                end: end.into(),
                timezone: tz.into(),
                bypass_severity: bypass.into(),
            },
            "gate.quiet_hours.ops",
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
        q.unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn overnight_window_in_a_timezone() {
        // 22:00–07:00 Shanghai (UTC+8) = 14:00–23:00 UTC.
        let q = qh("22:00", "07:00", "Asia/Shanghai", "critical");
        assert_eq!(q.window_end(utc("2026-03-01T13:59:00Z")), None);
        assert_eq!(
            q.window_end(utc("2026-03-01T14:00:00Z")),
            Some(utc("2026-03-01T23:00:00Z"))
        );
        // 03:00 local, after midnight: ends the same local morning.
        assert_eq!(
            q.window_end(utc("2026-03-01T19:00:00Z")),
            Some(utc("2026-03-01T23:00:00Z"))
        );
        assert_eq!(
            q.window_end(utc("2026-03-01T23:00:00Z")),
            None,
            "end is exclusive"
        );
    }

    #[test]
    fn daytime_window_and_bypass() {
        let q = qh("12:00", "13:30", "UTC", "warning");
        let at = utc("2026-03-01T12:10:00Z");
        assert_eq!(
            q.holds(Severity::Info, at),
            Some(utc("2026-03-01T13:30:00Z"))
        );
        assert_eq!(q.holds(Severity::Warning, at), None);
        assert_eq!(q.holds(Severity::Critical, at), None);
        assert_eq!(q.holds(Severity::Info, utc("2026-03-01T11:59:59Z")), None);
        let strict = qh("12:00", "13:30", "UTC", "none");
        assert!(strict.holds(Severity::Critical, at).is_some());
    }

    #[test]
    fn dst_gap_end_moves_after_the_gap() {
        // New York springs forward 2026-03-08 02:00 -> 03:00; a window ending at 02:30.
        let q = qh("01:00", "02:30", "America/New_York", "critical");
        let end = q.window_end(utc("2026-03-08T06:30:00Z")).unwrap(); // 01:30 EST
        assert_eq!(end, utc("2026-03-08T07:00:00Z")); // 03:00 EDT
    }

    #[test]
    fn bad_settings_name_the_key() {
        let mut p = Vec::new();
        let q = QuietHours::compile(
            &QuietHoursSettings {
                start: "10pm".into(),
                end: "07:00".into(),
                timezone: "Mars/Olympus".into(),
                bypass_severity: "loud".into(),
            },
            "gate.quiet_hours.ops",
            &mut p,
        );
        assert!(q.is_none());
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gate.quiet_hours.ops.start",
                "gate.quiet_hours.ops.timezone",
                "gate.quiet_hours.ops.bypass_severity"
            ]
        );
    }
}
