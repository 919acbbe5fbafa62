//! Heartbeats: silence that is never ambiguous. A channel with a heartbeat gets, at a set
//! time of day, a short "all quiet" when nothing was sent to it in the day before, so
//! "nothing came" always means "nothing happened", never "the monitor is dead". After the
//! daemon was down, the same channels get one "I was not running from … to …" instead
//! of nothing.
//!
//! ```toml
//! [gate.heartbeat.ops]        # the channel `ops`
//! at = "09:00"                 # local time in `timezone`
//! timezone = "Asia/Shanghai"   # IANA name; default UTC
//! ```
//!
//! The decisions are pure ([`Heartbeats::due`], time passed in); the gate keeps their
//! state in its store (`beats` table), so a restart neither repeats nor skips a day.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use sentinel_actors::gate::Outgoing;
use sentinel_actors::{Fingerprint, Insight, NotifyReason, Severity, Window};

use super::quiet_hours::{parse_time, parse_tz};
use crate::problem::Problem;

/// The kind of the notices this module makes; they carry no action links.
pub const KIND: &str = "sentinel.heartbeat";

/// A gap longer than this between two runs of the gate is told as downtime.
pub const DOWN_AFTER: Duration = Duration::minutes(15);

/// One `[gate.heartbeat.<channel>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// When, `HH:MM` local time in `timezone`. Required.
    pub at: String,
    /// IANA timezone, e.g. `Asia/Shanghai`. Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".to_string()
}

/// A channel's compiled heartbeat.
#[derive(Debug, Clone)]
pub struct Beat {
    at: NaiveTime,
    tz: Tz,
}

/// What the store keeps per channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatState {
    /// When the gate last sent this channel anything.
    pub last_sent: Option<DateTime<Utc>>,
    /// The local day of the last heartbeat decision (sent or not needed).
    pub last_day: Option<NaiveDate>,
}

impl Beat {
    pub fn compile(s: &HeartbeatSettings, path: &str, problems: &mut Vec<Problem>) -> Option<Beat> {
        let at = parse_time(&s.at, format!("{path}.at"), problems);
        let tz = parse_tz(&s.timezone, format!("{path}.timezone"), problems);
        Some(Beat { at: at?, tz: tz? })
    }

    /// Today's (local) heartbeat instant at `now`, and the local day.
    fn today(&self, now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
        let day = now.with_timezone(&self.tz).date_naive();
        let local = day.and_time(self.at);
        // A time in a spring-forward gap: the first instant after it.
        let at = self
            .tz
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                self.tz
                    .from_local_datetime(&(local + Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        (day, at)
    }

    /// Whether the heartbeat goes at `now`: its time of day has come, today's was not
    /// decided yet, and nothing was sent in the day before. Updates `state` with the
    /// decision (a heartbeat that is not needed today is not tried again today).
    pub fn due(&self, state: &mut BeatState, now: DateTime<Utc>) -> bool {
        let (day, at) = self.today(now);
        if now < at || state.last_day == Some(day) {
            return false;
        }
        state.last_day = Some(day);
        state
            .last_sent
            .is_none_or(|t| t <= at - Duration::hours(24))
    }
}

/// Every channel's heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Heartbeats {
    pub beats: BTreeMap<String, Beat>,
}

impl Heartbeats {
    pub fn compile(
        settings: &BTreeMap<String, HeartbeatSettings>,
        channels: &[String],
        problems: &mut Vec<Problem>,
    ) -> Heartbeats {
        let mut beats = BTreeMap::new();
        for (name, s) in settings {
            let path = format!("gate.heartbeat.{name}");
            if !channels.contains(name) {
                problems.push(Problem::new(
                    path.clone(),
                    format!("no channel is named `{name}`: name a [channels.<name>] table"),
                ));
            }
            if let Some(b) = Beat::compile(s, &path, problems) {
                beats.insert(name.clone(), b);
            }
        }
        Heartbeats { beats }
    }

    pub fn is_empty(&self) -> bool {
        self.beats.is_empty()
    }
}

/// How often the gate records that it is alive: a downtime shorter than [`DOWN_AFTER`] is
/// not told, so a coarse stamp is enough.
const ALIVE_EVERY: Duration = Duration::minutes(5);

/// The key of the stored state that says when the gate was last alive (not a channel
/// name: those cannot hold control characters).
pub const ALIVE: &str = "\u{1f}alive";

/// The heartbeats of a gate with their state: what was sent when, which day was decided,
/// a downtime to tell. The gate commits [`Pulse::to_commit`] with its decisions.
#[derive(Debug, Default)]
pub struct Pulse {
    heartbeats: Heartbeats,
    state: HashMap<String, BeatState>,
    changed: BTreeSet<String>,
    /// A downtime found at the start, told at the first tick.
    down: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Pulse {
    /// The heartbeats with the state the store kept, started at `now`: a gap since the
    /// gate was last alive longer than [`DOWN_AFTER`] is a downtime to tell.
    pub fn new(
        heartbeats: Heartbeats,
        state: HashMap<String, BeatState>,
        now: DateTime<Utc>,
    ) -> Pulse {
        let down = match state.get(ALIVE).and_then(|b| b.last_sent) {
            Some(alive) if !heartbeats.is_empty() && now - alive > DOWN_AFTER => Some((alive, now)),
            _ => None,
        };
        Pulse {
            heartbeats,
            state,
            changed: BTreeSet::new(),
            down,
        }
    }

    /// Any heartbeat configured?
    pub fn on(&self) -> bool {
        !self.heartbeats.is_empty()
    }

    /// Records what `out` sends; and, at most every few minutes, that the gate is alive at
    /// `now`.
    pub fn note_sent(&mut self, out: &[Outgoing], now: DateTime<Utc>) {
        if !self.on() {
            return;
        }
        for o in out {
            if self.heartbeats.beats.contains_key(&o.channel) {
                self.state.entry(o.channel.clone()).or_default().last_sent = Some(now);
                self.changed.insert(o.channel.clone());
            }
        }
        let alive = self.state.entry(ALIVE.to_string()).or_default();
        if alive.last_sent.is_none_or(|t| now - t >= ALIVE_EVERY) {
            alive.last_sent = Some(now);
            self.changed.insert(ALIVE.to_string());
        }
    }

    /// The notices due at `now`: after a downtime, one per heartbeat channel (instead of
    /// that day's "all quiet"); else each channel's "all quiet" when its time came after a
    /// silent day.
    pub fn beat(&mut self, now: DateTime<Utc>, watch: &Watch) -> Vec<Outgoing> {
        let down = self.down.take();
        let mut out = Vec::new();
        for (channel, b) in &self.heartbeats.beats {
            let state = self.state.entry(channel.clone()).or_default();
            let before = *state;
            let quiet = b.due(state, now);
            if *state != before {
                self.changed.insert(channel.clone());
            }
            let notice = match down {
                Some((from, to)) => was_down(channel, from, to, watch),
                None if quiet => all_quiet(channel, watch, now),
                None => continue,
            };
            out.push(Outgoing {
                id: 0,
                channel: channel.clone(),
                reason: NotifyReason::Report,
                insights: vec![notice],
                mentions: Default::default(),
                created_at: now,
            });
        }
        out
    }

    /// Whether state changed since the last commit.
    pub fn changed(&self) -> bool {
        !self.changed.is_empty()
    }

    /// The changed state, for the commit.
    pub fn to_commit(&self) -> Vec<(&str, BeatState)> {
        self.changed
            .iter()
            .filter_map(|k| Some((k.as_str(), *self.state.get(k)?)))
            .collect()
    }

    /// The commit went through.
    pub fn committed(&mut self) {
        self.changed.clear();
    }
}

/// What a heartbeat says about the watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// Servers (sources) the gate has heard from.
    pub servers: usize,
    /// The latest collection cycle.
    pub last_cycle: Option<DateTime<Utc>>,
    /// Findings firing now, and how many of them are acknowledged.
    pub firing: usize,
    pub acknowledged: usize,
}

fn hm(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn how_long(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    match (m / (24 * 60), m / 60 % 24, m % 60) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The state of the watch in words: "3 servers watched, last cycle at …; 2 findings still
/// firing (1 acknowledged)."
fn state_words(w: &Watch) -> String {
    let mut s = format!(
        "{} server{} watched",
        w.servers,
        if w.servers == 1 { "" } else { "s" }
    );
    match w.last_cycle {
        Some(t) => s.push_str(&format!(", last collection cycle at {}", hm(t))),
        None => s.push_str(", no collection cycle yet"),
    }
    match (w.firing, w.acknowledged) {
        (0, _) => s.push_str("; nothing fires."),
        (n, 0) => s.push_str(&format!("; {n} finding(s) still firing, told before.")),
        (n, a) => s.push_str(&format!(
            "; {n} finding(s) still firing, told before ({a} acknowledged)."
        )),
    }
    s
}

fn notice(channel: &str, what: &str, title: String, advice: String, at: DateTime<Utc>) -> Insight {
    Insight {
        fingerprint: Fingerprint::of([KIND, what, channel]),
        kind: KIND.into(),
        rule: format!("{KIND}.{what}"),
        severity: Severity::Info,
        labels: BTreeMap::new(),
        title,
        advice,
        text: None,
        metrics: BTreeMap::new(),
        window: Window { start: at, end: at },
        observed_at: at,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

/// The "all quiet" of `channel` at `at`.
pub fn all_quiet(channel: &str, w: &Watch, at: DateTime<Utc>) -> Insight {
    notice(
        channel,
        "quiet",
        "All quiet: nothing to report in the last 24 h".into(),
        format!(
            "{} This message comes once a day when nothing else was sent, so that silence \
             always means the watch is running.",
            state_words(w)
        ),
        at,
    )
}

/// The notice of a downtime from `from` to `to`.
pub fn was_down(channel: &str, from: DateTime<Utc>, to: DateTime<Utc>, w: &Watch) -> Insight {
    notice(
        channel,
        "down",
        format!(
            "powa-sentinel was not running from {} to {} ({})",
            hm(from),
            hm(to),
            how_long(to - from)
        ),
        format!(
            "PoWA kept its snapshots meanwhile: what they show is analysed again and comes \
             with the next report. {} The service's logs tell why it stopped.",
            state_words(w)
        ),
        to,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn beat(at: &str, tz: &str) -> Beat {
        let mut p = Vec::new();
        let b = Beat::compile(
            &HeartbeatSettings {
                at: at.into(),
                timezone: tz.into(),
            },
            "gate.heartbeat.ops",
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
        b.unwrap()
    }

    #[test]
    fn once_a_day_at_its_time_and_only_after_a_silent_day() {
        let b = beat("09:00", "Asia/Shanghai"); // 01:00 UTC
        let mut s = BeatState::default();
        assert!(!b.due(&mut s, t("2026-12-02T00:59:00Z")), "not yet");
        assert!(b.due(&mut s, t("2026-12-02T01:00:30Z")));
        assert!(!b.due(&mut s, t("2026-12-02T05:00:00Z")), "once a day");
        // Something was sent at 10:00 local that day: the next day needs no heartbeat.
        s.last_sent = Some(t("2026-12-02T02:00:00Z"));
        assert!(!b.due(&mut s, t("2026-12-03T01:00:00Z")));
        assert_eq!(s.last_day, NaiveDate::from_ymd_opt(2026, 12, 3));
        // The day after, silence again: it goes (late too, e.g. after a restart).
        assert!(b.due(&mut s, t("2026-12-04T07:00:00Z")));
    }

    #[test]
    fn bad_values_name_their_keys() {
        let mut p = Vec::new();
        let mut settings = BTreeMap::new();
        settings.insert(
            "nope".to_string(),
            HeartbeatSettings {
                at: "9h".into(),
                timezone: "Mars/Olympus".into(),
            },
        );
        Heartbeats::compile(&settings, &["ops".to_string()], &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gate.heartbeat.nope",
                "gate.heartbeat.nope.at",
                "gate.heartbeat.nope.timezone"
            ]
        );
    }

    #[test]
    fn notices_say_what_is_watched() {
        let w = Watch {
            servers: 3,
            last_cycle: Some(t("2026-12-02T08:55:00Z")),
            firing: 2,
            acknowledged: 1,
        };
        let q = all_quiet("ops", &w, t("2026-12-02T09:00:00Z"));
        assert_eq!(q.kind, KIND);
        assert!(q.advice.starts_with("3 servers watched, last collection cycle at 2026-12-02 08:55 UTC; 2 finding(s) still firing, told before (1 acknowledged)."), "{}", q.advice);
        let d = was_down(
            "ops",
            t("2026-12-02T06:10:00Z"),
            t("2026-12-02T08:15:00Z"),
            &Watch::default(),
        );
        assert_eq!(
            d.title,
            "powa-sentinel was not running from 2026-12-02 06:10 UTC to 2026-12-02 08:15 UTC (2 h 5 min)"
        );
        assert_ne!(q.fingerprint, d.fingerprint);
    }
}
