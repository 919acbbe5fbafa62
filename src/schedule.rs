//! When things happen in the daemon: when reports are sent (`[schedule]`) and how often
//! each server is collected (`[collection]`).
//!
//! Collection follows PoWA: each server is read once per its snapshot frequency (reading
//! more often finds nothing new), offset by a per-server jitter so that a fleet does not hit
//! the repository in the same second. Reports follow the people: a cron (with seconds, in
//! an IANA timezone, read by `croner`, which takes weekday 1 as Monday like the seed's
//! robfig/cron did — the `cron` crate would read it as Sunday) or a plain interval.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::Deserialize;

use crate::problem::Problem;

/// `[schedule]`: when the gate's pending insights are sent as a report. Critical insights
/// do not wait for it (the gate sends them at once).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Cron with seconds: `sec min hour day-of-month month day-of-week` (five fields are
    /// accepted too, seconds = 0). Weekdays: 0 or 7 = Sunday, 1 = Monday. Default
    /// `0 0 9 * * *` (every day at 09:00). Set `interval` instead for a plain period.
    #[serde(default)]
    pub cron: Option<String>,
    /// A plain period between reports, e.g. "1h"; exclusive with `cron`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// IANA timezone the cron is read in and times in messages and `/status` are shown
    /// in. Default UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Send a report right after start-up (what the first cycles found) too.
    #[serde(default)]
    pub report_at_start: bool,
}

/// The daily default, used when neither `cron` nor `interval` is set.
pub const DEFAULT_CRON: &str = "0 0 9 * * *";

fn default_timezone() -> String {
    "UTC".to_string()
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            cron: None,
            interval: None,
            timezone: default_timezone(),
            report_at_start: false,
        }
    }
}

/// `[collection]`: how the daemon reads the servers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CollectionSettings {
    /// Collect every server this often, whatever PoWA's frequency. Unset (default): follow
    /// each server's PoWA snapshot frequency.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Period used when PoWA does not say a server's frequency. Default 5m.
    #[serde(default = "default_fallback", with = "humantime_serde")]
    pub fallback_interval: Duration,
    /// Shortest period, whatever PoWA says. Default 30s.
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
    /// Largest per-server offset from the period's start (at most half the period).
    /// Default 30s.
    #[serde(default = "default_jitter", with = "humantime_serde")]
    pub max_jitter: Duration,
    /// Re-read each repository's server list this often: servers added to or removed from
    /// `powa_servers` gain or lose their collector. Default 10m.
    #[serde(default = "default_rediscover", with = "humantime_serde")]
    pub rediscover_every: Duration,
    /// Collections running at once against one repository, each on a session of its
    /// own (plus one session for discovery): the bound on connections. Default 4.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_per_repository: usize,
    /// Longest wait between reconnection attempts to a repository that is down (the wait
    /// doubles from 1s). Default 5m.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub repository_retry_max: Duration,
    /// How long shutdown waits for running cycles and for the channels to deliver what
    /// is pending. Default 30s.
    #[serde(default = "default_shutdown", with = "humantime_serde")]
    pub shutdown_deadline: Duration,
}

fn default_fallback() -> Duration {
    Duration::from_secs(300)
}
fn default_min_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_jitter() -> Duration {
    Duration::from_secs(30)
}
fn default_rediscover() -> Duration {
    Duration::from_secs(600)
}
fn default_concurrency() -> usize {
    4
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
fn default_shutdown() -> Duration {
    Duration::from_secs(30)
}

impl Default for CollectionSettings {
    fn default() -> Self {
        CollectionSettings {
            interval: None,
            fallback_interval: default_fallback(),
            min_interval: default_min_interval(),
            max_jitter: default_jitter(),
            rediscover_every: default_rediscover(),
            max_concurrent_per_repository: default_concurrency(),
            repository_retry_max: default_retry_max(),
            shutdown_deadline: default_shutdown(),
        }
    }
}

impl CollectionSettings {
    /// The period for a server whose PoWA frequency is `powa` (if known).
    pub fn period_for(&self, powa: Option<Duration>) -> Duration {
        self.interval
            .or(powa)
            .unwrap_or(self.fallback_interval)
            .max(self.min_interval)
            .max(Duration::from_secs(1))
    }

    /// The stable offset of `server` inside its period: the same server always lands at
    /// the same point, different servers spread out.
    pub fn jitter_for(&self, server: &str, period: Duration) -> Duration {
        let cap = self.max_jitter.min(period / 2);
        if cap.is_zero() {
            return Duration::ZERO;
        }
        let h = sentinel_actors::Fingerprint::of([server]).0;
        Duration::from_millis(h % (cap.as_millis() as u64 + 1))
    }

    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.max_concurrent_per_repository == 0 {
            problems.push(Problem::new(
                format!("{path}.max_concurrent_per_repository"),
                "must be at least 1 (0 would never collect anything)",
            ));
        }
        if self.rediscover_every < Duration::from_secs(1) {
            problems.push(Problem::new(
                format!("{path}.rediscover_every"),
                "must be at least 1s",
            ));
        }
        if self.interval.is_some_and(|d| d < Duration::from_secs(1)) {
            problems.push(Problem::new(
                format!("{path}.interval"),
                "must be at least 1s",
            ));
        }
    }
}

/// A parsed report schedule.
#[derive(Debug, Clone)]
pub enum ReportSchedule {
    Cron { cron: Box<Cron>, tz: Tz },
    Interval { every: Duration, tz: Tz },
}

impl ScheduleSettings {
    pub fn timezone(&self) -> Result<Tz, String> {
        self.timezone.parse::<Tz>().map_err(|_| {
            format!(
                "unknown timezone `{}`: use an IANA name such as UTC, Europe/Paris or Asia/Shanghai",
                self.timezone
            )
        })
    }

    /// Parses the schedule; the error says what to write instead.
    pub fn parse(&self) -> Result<ReportSchedule, Problem> {
        let tz = self
            .timezone()
            .map_err(|m| Problem::new("schedule.timezone", m))?;
        match (&self.cron, self.interval) {
            (Some(_), Some(_)) => Err(Problem::new(
                "schedule.interval",
                "set either cron or interval, not both",
            )),
            (None, Some(every)) if every < Duration::from_secs(1) => {
                Err(Problem::new("schedule.interval", "must be at least 1s"))
            }
            (None, Some(every)) => Ok(ReportSchedule::Interval { every, tz }),
            (cron, None) => {
                let text = cron.as_deref().unwrap_or(DEFAULT_CRON);
                let cron = parse_cron(text).map_err(|m| Problem::new("schedule.cron", m))?;
                Ok(ReportSchedule::Cron {
                    cron: Box::new(cron),
                    tz,
                })
            }
        }
    }

    pub fn validate(&self, problems: &mut Vec<Problem>) {
        if let Err(p) = self.parse() {
            problems.push(p);
        }
    }
}

/// Reads a 6-field (with seconds) or 5-field cron.
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(text)
        .map_err(|e| {
            format!(
                "`{text}` is not a valid cron ({e}); write `sec min hour day month weekday`, e.g. \"0 0 9 * * 1\" for Mondays at 09:00"
            )
        })
}

impl ReportSchedule {
    /// The first report time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            ReportSchedule::Cron { cron, tz } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            ReportSchedule::Interval { every, .. } => {
                chrono::Duration::from_std(*every).ok().map(|d| after + d)
            }
        }
    }

    pub fn tz(&self) -> Tz {
        match self {
            ReportSchedule::Cron { tz, .. } | ReportSchedule::Interval { tz, .. } => *tz,
        }
    }

    /// `t` shown in the schedule's timezone.
    pub fn show(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz()).to_rfc3339()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn sched(cron: &str, tz: &str) -> ReportSchedule {
        ScheduleSettings {
            cron: Some(cron.into()),
            timezone: tz.into(),
            ..Default::default()
        }
        .parse()
        .unwrap()
    }

    #[test]
    fn the_seed_cron_means_monday_nine() {
        let s = sched("0 0 9 * * 1", "UTC");
        // 2026-11-24 is a Tuesday.
        let from = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let next = s.next_after(from).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!((next.hour(), next.minute(), next.second()), (9, 0, 0));
        assert_eq!(next.day(), 30);
    }

    #[test]
    fn the_cron_is_read_in_its_timezone() {
        let s = sched("0 0 9 * * 1", "Asia/Shanghai");
        let from = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let next = s.next_after(from).unwrap();
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 30, 1, 0, 0).unwrap());
        assert_eq!(s.show(next), "2026-11-30T09:00:00+08:00");
    }

    #[test]
    fn bad_cron_and_timezone_name_the_key() {
        let e = ScheduleSettings {
            cron: Some("every monday".into()),
            ..Default::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(e.key, "schedule.cron");
        assert!(e.message.contains("every monday"), "{}", e.message);
        let e = ScheduleSettings {
            timezone: "Mars/Olympus".into(),
            ..Default::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(e.key, "schedule.timezone");
    }

    #[test]
    fn interval_and_cron_are_exclusive() {
        let e = ScheduleSettings {
            cron: Some("0 * * * * *".into()),
            interval: Some(Duration::from_secs(60)),
            ..Default::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(e.key, "schedule.interval");
    }

    #[test]
    fn periods_follow_powa_within_bounds_and_jitter_is_stable() {
        let c = CollectionSettings::default();
        assert_eq!(
            c.period_for(Some(Duration::from_secs(300))),
            Duration::from_secs(300)
        );
        assert_eq!(
            c.period_for(Some(Duration::from_secs(5))),
            Duration::from_secs(30)
        );
        assert_eq!(c.period_for(None), Duration::from_secs(300));
        let p = Duration::from_secs(300);
        assert_eq!(c.jitter_for("a/b", p), c.jitter_for("a/b", p));
        assert!(c.jitter_for("a/b", p) <= Duration::from_secs(30));
        let spread: std::collections::BTreeSet<_> = (0..20)
            .map(|i| c.jitter_for(&format!("r/s{i}"), p))
            .collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
