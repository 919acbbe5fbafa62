//! Pacing per destination: a limiter that holds "at most N messages in ANY rolling window".
//!
//! governor's `Quota::per_minute(20)` is a GCRA bucket with burst 20 that refills one cell
//! every 3 s, so a greedy sender gets 39 messages through in its worst rolling minute. The
//! worst rolling window of a GCRA quota is `burst + ceil(window / period) - 1`; [`Pacer::new`]
//! picks a burst and a period that keep that number at or below the provider's limit.
//! A provider can still say "too many" (another process shares the key): [`Pacer::pause`]
//! then holds every sender of that destination until the provider's window has passed.
//!
//! The pacer also remembers when it let each message through in the last window, so the
//! channel actor can ask how many more the quota allows soon ([`Pacer::capacity`]) and
//! render a digest of that size instead of queueing more than the quota can carry.
//!
//! Every decision is [`Pacer::try_ready`]: "go now" or "ask again in this long", read off
//! the pacer's clock. [`Pacer::ready`] only sleeps for what it says. The clock is a
//! type parameter (governor's [`Clock`]; [`MonotonicClock`] by default) so that tests
//! drive the decisions on a [`FakeRelativeClock`](governor::clock::FakeRelativeClock)
//! instead of sleeping.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock, ReasonablyRealtime, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The shortest sleep [`Pacer::ready`] takes between two decisions, so that a wait that
/// rounds to zero cannot spin.
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// Shared by every channel that sends to the same destination (e.g. one WeCom robot key).
pub struct Pacer<C: Clock = MonotonicClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    paused_until: Mutex<Option<C::Instant>>,
    burst: u32,
    period: Duration,
    /// The window the quota counts in.
    window: Duration,
    /// When messages were let through, within the last `window`.
    granted: Mutex<VecDeque<C::Instant>>,
}

impl<C: Clock> std::fmt::Debug for Pacer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("burst", &self.burst)
            .field("period", &self.period)
            .finish()
    }
}

impl Pacer {
    /// At most `max` messages in any rolling `window`, on the monotonic clock. The burst
    /// is a quarter of `max` (at least 1), the rest is spread evenly.
    pub fn new(max: u32, window: Duration) -> Pacer {
        Pacer::with_clock(max, window, MonotonicClock)
    }
}

impl<C: Clock> Pacer<C> {
    /// [`Pacer::new`] on another clock.
    pub fn with_clock(max: u32, window: Duration, clock: C) -> Self {
        let max = max.max(1);
        let burst = (max / 4).max(1);
        // worst = burst + ceil(window / period) - 1 <= max  <=>  ceil(window/period) <= max - burst + 1.
        // Using `max - burst` steps (not +1) keeps one message of margin for clock jitter.
        let steps = (max - burst).max(1);
        let period = (window / steps).max(Duration::from_millis(1));
        let quota = Quota::with_period(period)
            .expect("period is non-zero")
            .allow_burst(NonZeroU32::new(burst).expect("burst is non-zero"));
        Pacer {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            paused_until: Mutex::new(None),
            burst,
            period,
            window,
            granted: Mutex::new(VecDeque::new()),
        }
    }

    fn now(&self) -> C::Instant {
        self.limiter.clock().now()
    }

    /// Worst number of messages this pacer lets through in any rolling `window`.
    pub fn worst_case_in(&self, window: Duration) -> u32 {
        let steps = window.as_nanos().div_ceil(self.period.as_nanos()) as u32;
        self.burst + steps - 1
    }

    /// How long the destination is still paused, if it is.
    fn paused_for(&self) -> Option<Duration> {
        let now = self.now();
        let guard = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .map(|until| Duration::from(until.duration_since(now)))
            .filter(|d| !d.is_zero())
    }

    /// One message may be sent now (`Ok`, counted as sent), or not before the wait in
    /// `Err`: ask again then.
    ///
    /// A pause comes first: no sender goes out during one, whatever cells the limiter has.
    /// Then a limiter cell, then the rolling count against what was let through (or
    /// [seeded](Pacer::seed)) in the last window: the limiter alone bounds the worst
    /// window only for a pacer that has seen every message since it was created. A cell
    /// taken when the rolling count is full is forfeited, which only slows the sender.
    pub fn try_ready(&self) -> Result<(), Duration> {
        if let Some(d) = self.paused_for() {
            return Err(d);
        }
        if let Err(not_until) = self.limiter.check() {
            return Err(not_until.wait_time_from(self.now()));
        }
        let limit = self.worst_case_in(self.window) as usize;
        let now = self.now();
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_old(&mut granted, now);
        if granted.len() < limit {
            granted.push_back(now);
            return Ok(());
        }
        let oldest = *granted.front().expect("a full window holds a message");
        Err(Duration::from(
            (oldest + self.window.into()).duration_since(now),
        ))
    }

    fn forget_old(&self, granted: &mut VecDeque<C::Instant>, now: C::Instant) {
        while granted
            .front()
            .is_some_and(|t| Duration::from(now.duration_since(*t)) >= self.window)
        {
            granted.pop_front();
        }
    }

    /// How many more messages the quota allows within the coming window, given what this
    /// pacer let through in the last one: the worst case it admits in a window, less what
    /// it admitted recently. Zero when the window is used up.
    pub fn capacity(&self) -> usize {
        let now = self.now();
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_old(&mut granted, now);
        (self.worst_case_in(self.window) as usize).saturating_sub(granted.len())
    }

    /// Counts messages sent `ages` ago (by an earlier process, say) as if this pacer had
    /// let them through: those within the window lower [`Pacer::capacity`] and use up
    /// limiter cells, so a restart does not start from a full budget. An age the clock
    /// cannot go back to (before its origin) is left out.
    pub fn seed(&self, ages: impl IntoIterator<Item = Duration>) {
        let now = self.now();
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        for age in ages {
            if age >= self.window {
                continue;
            }
            let t = now.saturating_sub(age.into());
            if Duration::from(now.duration_since(t)) < age {
                continue;
            }
            granted.push_back(t);
            // Conservative: the cell is taken now, not when the message went out.
            let _ = self.limiter.check();
        }
        granted.make_contiguous().sort_unstable();
    }

    /// The window the quota counts in.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Holds every sender of this destination for `d` (e.g. after WeCom's errcode 45009).
    /// A shorter pause does not cut a longer one short.
    pub fn pause(&self, d: Duration) {
        let until = self.now() + d.into();
        let mut guard = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none_or(|cur| cur < until) {
            *guard = Some(until);
        }
    }
}

impl<C: ReasonablyRealtime> Pacer<C> {
    /// Waits until one message may be sent, honouring any pause: sleeps on the runtime's
    /// timer for each wait [`Pacer::try_ready`] names (so only on a clock that runs in real
    /// time). A sender already sleeping when another sender of the destination got "too
    /// many" meets the pause when it wakes up.
    pub async fn ready(&self) {
        while let Err(wait) = self.try_ready() {
            actix_rt::time::sleep(wait.max(MIN_SLEEP)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Instant;

    /// A pacer on a fake clock that has run for an hour (so ages can be seeded).
    fn virtual_pacer(max: u32, window: Duration) -> (Pacer<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        clock.advance(Duration::from_secs(3600));
        (Pacer::with_clock(max, window, clock.clone()), clock)
    }

    /// [`Pacer::ready`] on virtual time: each wait advances the clock instead of sleeping.
    /// Returns how long it waited.
    fn ready_virtually(p: &Pacer<FakeRelativeClock>, clock: &FakeRelativeClock) -> Duration {
        let mut waited = Duration::ZERO;
        while let Err(wait) = p.try_ready() {
            let wait = wait.max(MIN_SLEEP);
            clock.advance(wait);
            waited += wait;
        }
        waited
    }

    fn elapsed(clock: &FakeRelativeClock, since: governor::nanos::Nanos) -> Duration {
        clock.now().duration_since(since).into()
    }

    #[test]
    fn wecom_quota_holds_in_every_rolling_minute() {
        let p = Pacer::new(20, Duration::from_secs(60));
        assert!(p.worst_case_in(Duration::from_secs(60)) <= 20, "{p:?}");
        assert_eq!(p.burst, 5);
    }

    #[actix_rt::test]
    async fn capacity_counts_what_was_let_through_in_the_window() {
        let p = Pacer::new(20, Duration::from_secs(60));
        let full = p.capacity();
        assert_eq!(full, p.worst_case_in(Duration::from_secs(60)) as usize);
        for _ in 0..3 {
            p.ready().await;
        }
        assert_eq!(p.capacity(), full - 3);
    }

    #[test]
    fn seeded_sends_count_against_the_window() {
        let p = Pacer::new(20, Duration::from_secs(60));
        let full = p.capacity();
        p.seed([
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(61),
        ]);
        assert_eq!(
            p.capacity(),
            full - 2,
            "the one older than the window is ignored"
        );
    }

    /// After a restart the pacer is new, but the sends of the last window (from the
    /// outbox) are seeded: the rolling count holds across the two processes.
    #[test]
    fn seeded_history_holds_the_rolling_count() {
        let window = Duration::from_millis(600);
        let (p, clock) = virtual_pacer(20, window);
        let limit = p.worst_case_in(window) as usize;
        let started = clock.now();
        // The previous process sent `limit - 2` in the last 100 ms.
        p.seed((0..limit - 2).map(|_| Duration::from_millis(100)));
        for _ in 0..3 {
            ready_virtually(&p, &clock);
        }
        // The third one had to wait for the seeded ones to leave the window.
        assert!(
            elapsed(&clock, started) >= window - Duration::from_millis(100),
            "{:?}",
            elapsed(&clock, started)
        );
    }

    #[test]
    fn capacity_recovers_after_the_window() {
        let window = Duration::from_millis(300);
        let (p, clock) = virtual_pacer(8, window);
        ready_virtually(&p, &clock);
        ready_virtually(&p, &clock);
        assert_eq!(p.capacity(), p.worst_case_in(window) as usize - 2);
        clock.advance(window);
        assert_eq!(p.capacity(), p.worst_case_in(window) as usize);
    }

    /// A pause holds every sender of the destination, including one that was already
    /// waiting for a cell when the pause began, for at least the pause.
    #[actix_rt::test]
    async fn pause_holds_every_sender_for_its_length() {
        let p = std::sync::Arc::new(Pacer::new(2, Duration::from_millis(400)));
        // Burst 1, one cell per 400 ms: after this, the next sender waits in the limiter.
        assert_eq!(p.burst, 1);
        p.ready().await;
        let waiting = {
            let p = std::sync::Arc::clone(&p);
            actix_rt::spawn(async move {
                p.ready().await;
                Instant::now()
            })
        };
        actix_rt::task::yield_now().await;
        let paused_at = Instant::now();
        let pause = Duration::from_millis(700);
        p.pause(pause);
        let second = {
            let p = std::sync::Arc::clone(&p);
            actix_rt::spawn(async move {
                p.ready().await;
                Instant::now()
            })
        };
        for t in [waiting.await.unwrap(), second.await.unwrap()] {
            assert!(
                t.duration_since(paused_at) >= pause,
                "a sender went out {:?} into a {pause:?} pause",
                t.duration_since(paused_at)
            );
        }
        // A shorter pause does not cut a longer one short.
        p.pause(Duration::from_secs(5));
        p.pause(Duration::from_millis(1));
        assert!(p.paused_for().unwrap() > Duration::from_secs(4));
    }

    /// The same on virtual time: a sender told to wait for a cell, or arriving during the
    /// pause, is told to wait again until the pause is over, and goes right after it.
    #[test]
    fn a_pause_holds_the_decision_until_its_end() {
        let (p, clock) = virtual_pacer(2, Duration::from_millis(400));
        assert_eq!(p.try_ready(), Ok(()));
        let cell_in = p.try_ready().unwrap_err();
        assert!(cell_in <= Duration::from_millis(400), "{cell_in:?}");
        let paused_at = clock.now();
        p.pause(Duration::from_millis(700));
        clock.advance(cell_in);
        assert_eq!(
            p.try_ready(),
            Err(Duration::from_millis(700) - cell_in),
            "the cell is there, the pause is not over"
        );
        let waited = ready_virtually(&p, &clock);
        assert_eq!(
            elapsed(&clock, paused_at),
            Duration::from_millis(700),
            "goes at the end of the pause ({waited:?} after the cell)"
        );
        p.pause(Duration::from_secs(5));
        p.pause(Duration::from_millis(1));
        assert_eq!(p.paused_for(), Some(Duration::from_secs(5)));
        clock.advance(Duration::from_secs(5));
        assert_eq!(p.paused_for(), None);
    }

    /// The rolling count holds where the limiter alone would not: with the window full
    /// of seeded messages, a sender that gets a cell still waits for the oldest one to
    /// leave the window, exactly that long.
    #[test]
    fn a_full_window_waits_for_its_oldest_message() {
        let window = Duration::from_secs(60);
        let (p, clock) = virtual_pacer(20, window);
        let limit = p.worst_case_in(window) as usize;
        let oldest = Duration::from_secs(10);
        p.seed((0..limit as u32).map(|k| oldest - Duration::from_millis(100) * k));
        assert_eq!(p.capacity(), 0);
        clock.advance(p.period);
        assert_eq!(p.try_ready(), Err(window - oldest - p.period));
        clock.advance(window - oldest - p.period);
        assert_eq!(p.try_ready(), Ok(()));
    }

    #[test]
    fn seeded_ages_before_the_clock_began_are_left_out() {
        let p = Pacer::with_clock(20, Duration::from_secs(60), FakeRelativeClock::default());
        let full = p.capacity();
        p.seed([Duration::from_secs(5)]);
        assert_eq!(p.capacity(), full);
    }

    #[test]
    fn greedy_sender_never_exceeds_the_limit() {
        // On a fake clock: a sender that tries every 100 ms for 10 min.
        let clock = FakeRelativeClock::default();
        let p = Pacer::with_clock(20, Duration::from_secs(60), clock.clone());
        let mut sent: Vec<u64> = Vec::new();
        for _ in 0..6000u64 {
            if p.try_ready().is_ok() {
                sent.push(clock.now().duration_since(Default::default()).as_u64() / 1_000_000);
            }
            clock.advance(Duration::from_millis(100));
        }
        let mut worst = 0;
        for (i, &t) in sent.iter().enumerate() {
            let n = sent[i..].iter().take_while(|&&u| u < t + 60_000).count();
            worst = worst.max(n);
        }
        assert!(worst <= 20, "worst rolling minute had {worst} messages");
        assert!(
            sent.len() > 140,
            "pacer is too strict: only {} in 10 min",
            sent.len()
        );
    }
}
