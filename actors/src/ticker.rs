//! A collector's own rhythm: every `period`, shifted by a per-collector offset (the
//! jitter) so that a fleet's collectors do not all read at the same instant.
//!
//! The ticks sit on a fixed grid (`offset + k * period` since the epoch), not "a period
//! after the last run": a collector keeps its place on the grid whatever its runs take,
//! and a run that overruns its period skips the ticks it covered instead of queueing
//! them (a slow repository is not read again at once, twice). The first run does not
//! wait for the grid nor for the offset: it is due at the start. The offset spreads the
//! steady rhythm; at start-up the repository's session pool already bounds how many
//! collectors read at once, and waiting out each one's offset only delayed a fleet's first
//! complete cycle by up to the largest offset (the offsets added to the reads, not the
//! reads alone).
//!
//! [`Ticker`] is the pure core (time passed in); [`Ticks`] the thin async shell that
//! waits for each tick on a [`Clock`], so that tests run it on virtual time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::task::Cancel;

/// Where the wall-clock time comes from.
pub trait Clock {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The tick grid of one collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticker {
    period: Duration,
    offset: Duration,
}

/// After a run: when the next one is due, and how many ticks the run covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub at: DateTime<Utc>,
    /// Ticks that fell inside the run: skipped, not queued.
    pub skipped: u64,
}

impl Ticker {
    /// Every `period` (at least 1 ms), at `offset` into it.
    pub fn new(period: Duration, offset: Duration) -> Self {
        Ticker {
            period: period.max(Duration::from_millis(1)),
            offset,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// When the first run is due, for a collector started at `now`: right away.
    pub fn first(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now
    }

    /// The grid index of the last tick at or before `t`.
    fn index(&self, t: DateTime<Utc>) -> i64 {
        (t.timestamp_millis() - self.offset.as_millis() as i64).div_euclid(self.period_ms())
    }

    fn period_ms(&self) -> i64 {
        self.period.as_millis() as i64
    }

    fn tick(&self, k: i64, fallback: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(k * self.period_ms() + self.offset.as_millis() as i64)
            .unwrap_or(fallback)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.tick(self.index(t) + 1, t)
    }

    /// After a run from `started` to `ended`: the first tick after `started` that the
    /// run did not cover, and how many it covered.
    pub fn after_run(&self, started: DateTime<Utc>, ended: DateTime<Utc>) -> Next {
        let first = self.index(started) + 1;
        let covered = (self.index(ended) + 1 - first).max(0);
        Next {
            at: self.tick(first + covered, ended),
            skipped: covered as u64,
        }
    }
}

/// A collector's ticks on a clock: wait for one, run, say how long the run took.
pub struct Ticks<C: Clock = SystemClock> {
    ticker: Ticker,
    clock: C,
    due: DateTime<Utc>,
}

impl<C: Clock> Ticks<C> {
    /// Starts the grid now: the first run is due at once, the later ones on the grid.
    pub fn start(ticker: Ticker, clock: C) -> Self {
        let due = ticker.first(clock.now());
        Ticks { ticker, clock, due }
    }

    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }

    /// The clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// When the next run is due.
    pub fn due(&self) -> DateTime<Utc> {
        self.due
    }

    /// Waits until the next run is due; false if `cancel` fired first.
    pub async fn wait(&mut self, cancel: &mut Cancel) -> bool {
        let wait = (self.due - self.clock.now()).to_std().unwrap_or_default();
        cancel.sleep(wait).await
    }

    /// A run from `started` to `ended` is over: the next one is due on the first tick it
    /// did not cover. Returns how many ticks it covered (skipped).
    pub fn ran(&mut self, started: DateTime<Utc>, ended: DateTime<Utc>) -> u64 {
        let next = self.ticker.after_run(started, ended);
        self.due = next.at;
        next.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, m, s).unwrap()
    }

    fn five_minutes_at_7s() -> Ticker {
        Ticker::new(Duration::from_secs(300), Duration::from_secs(7))
    }

    #[test]
    fn ticks_follow_the_grid_with_the_offset() {
        let t = five_minutes_at_7s();
        let first = t.next_after(at(0, 4, 59));
        assert_eq!(first, at(0, 5, 7));
        assert_eq!(t.next_after(first), at(0, 10, 7));
        // The first run is due at the start, off the grid and without the offset.
        assert_eq!(t.first(at(0, 1, 0)), at(0, 1, 0));
    }

    #[test]
    fn a_run_inside_its_period_skips_nothing() {
        let t = five_minutes_at_7s();
        let next = t.after_run(at(0, 5, 7), at(0, 6, 0));
        assert_eq!((next.at, next.skipped), (at(0, 10, 7), 0));
    }

    #[test]
    fn an_overrun_skips_the_ticks_it_covered() {
        let t = five_minutes_at_7s();
        // 00:05:07 to 00:16:00 covers the ticks of 00:10:07 and 00:15:07.
        let next = t.after_run(at(0, 5, 7), at(0, 16, 0));
        assert_eq!((next.at, next.skipped), (at(0, 20, 7), 2));
        // Ending exactly on a tick covers it.
        assert_eq!(t.after_run(at(0, 5, 7), at(0, 10, 7)).skipped, 1);
    }

    /// The wall clock of a test on tokio's paused time.
    struct Virtual {
        base: DateTime<Utc>,
        start: tokio::time::Instant,
    }

    impl Clock for Virtual {
        fn now(&self) -> DateTime<Utc> {
            self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_wait_on_the_clock_and_skip_after_an_overrun() {
        let clock = Virtual {
            base: at(0, 1, 0),
            start: tokio::time::Instant::now(),
        };
        let mut ticks = Ticks::start(five_minutes_at_7s(), clock);
        let mut cancel = Cancel::never();
        let mut runs = Vec::new();
        for took in [Duration::from_secs(10), Duration::from_secs(700)] {
            assert!(ticks.wait(&mut cancel).await);
            let started = ticks.now();
            tokio::time::sleep(took).await;
            let skipped = ticks.ran(started, ticks.now());
            runs.push((started, skipped));
        }
        assert!(ticks.wait(&mut cancel).await);
        // The first run at the start, the next ones on the grid (7 s into each period).
        assert_eq!(runs, [(at(0, 1, 0), 0), (at(0, 5, 7), 2)]);
        assert_eq!(ticks.now(), at(0, 20, 7));
    }
}
