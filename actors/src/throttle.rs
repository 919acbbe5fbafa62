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

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Shared by every channel that sends to the same destination (e.g. one WeCom robot key).
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
    burst: u32,
    period: Duration,
    /// The window the quota counts in.
    window: Duration,
    /// When messages were let through, within the last `window`.
    granted: Mutex<VecDeque<Instant>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("burst", &self.burst)
            .field("period", &self.period)
            .finish()
    }
}

impl Pacer {
    /// At most `max` messages in any rolling `window`. The burst is a quarter of `max`
    /// (at least 1), the rest is spread evenly.
    pub fn new(max: u32, window: Duration) -> Pacer {
        let max = max.max(1);
        let burst = (max / 4).max(1);
        // worst = burst + ceil(window / period) - 1 <= max  <=>  ceil(window/period) <= max - burst + 1.
        // Using `max - burst` steps (not +1) keeps one message of margin for clock jitter.
        let steps = (max - burst).max(1);
        let period = window / steps;
        Self::with_quota(burst, period, window)
    }

    fn with_quota(burst: u32, period: Duration, window: Duration) -> Pacer {
        let period = period.max(Duration::from_millis(1));
        let quota = Quota::with_period(period)
            .expect("period is non-zero")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("burst is non-zero"));
        Pacer {
            limiter: RateLimiter::direct(quota),
            paused_until: Mutex::new(None),
            burst,
            period,
            window,
            granted: Mutex::new(VecDeque::new()),
        }
    }

    /// Worst number of messages this pacer lets through in any rolling `window`.
    pub fn worst_case_in(&self, window: Duration) -> u32 {
        let steps = window.as_nanos().div_ceil(self.period.as_nanos()) as u32;
        self.burst + steps - 1
    }

    /// How long the destination is still paused, if it is.
    fn paused_for(&self) -> Option<Duration> {
        let guard = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Waits until one message may be sent, honouring any pause.
    ///
    /// The pause is checked again after the limiter granted a cell: a sender already
    /// waiting in the limiter when another sender of the same destination got "too many"
    /// must not go out during the pause (its cell is forfeited, which only slows it down).
    /// Then the rolling count is checked against what was let through (or
    /// [seeded](Pacer::seed)) in the last window: the limiter alone bounds the worst
    /// window only for a pacer that has seen every message since it was created.
    pub async fn ready(&self) {
        let limit = self.worst_case_in(self.window) as usize;
        loop {
            while let Some(d) = self.paused_for() {
                actix_rt::time::sleep(d).await;
            }
            self.limiter.until_ready().await;
            if self.paused_for().is_some() {
                continue;
            }
            let full_until = {
                let now = Instant::now();
                let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
                Self::forget_old(&mut granted, now, self.window);
                if granted.len() < limit {
                    granted.push_back(now);
                    None
                } else {
                    granted.front().map(|oldest| *oldest + self.window)
                }
            };
            match full_until {
                None => break,
                Some(until) => {
                    actix_rt::time::sleep(until.saturating_duration_since(Instant::now())).await
                }
            }
        }
    }

    fn forget_old(granted: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while granted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            granted.pop_front();
        }
    }

    /// How many more messages the quota allows within the coming window, given what this
    /// pacer let through in the last one: the worst case it admits in a window, less what
    /// it admitted recently. Zero when the window is used up.
    pub fn capacity(&self) -> usize {
        let now = Instant::now();
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        Self::forget_old(&mut granted, now, self.window);
        (self.worst_case_in(self.window) as usize).saturating_sub(granted.len())
    }

    /// Counts messages sent `ages` ago (by an earlier process, say) as if this pacer had
    /// let them through: those within the window lower [`Pacer::capacity`] and use up
    /// limiter cells, so a restart does not start from a full budget.
    pub fn seed(&self, ages: impl IntoIterator<Item = Duration>) {
        let now = Instant::now();
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        for age in ages {
            if age >= self.window {
                continue;
            }
            if let Some(t) = now.checked_sub(age) {
                granted.push_back(t);
                // Conservative: the cell is taken now, not when the message went out.
                let _ = self.limiter.check();
            }
        }
        granted.make_contiguous().sort_unstable();
    }

    /// The window the quota counts in.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Holds every sender of this destination for `d` (e.g. after WeCom's errcode 45009).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut guard = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none_or(|cur| cur < until) {
            *guard = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    #[actix_rt::test]
    async fn seeded_history_holds_the_rolling_count() {
        let window = Duration::from_millis(600);
        let p = Pacer::new(20, window);
        let limit = p.worst_case_in(window) as usize;
        // Taken before seeding: the seeded sends leave the window 500 ms after `started`
        // at the earliest, whatever the machine's speed.
        let started = Instant::now();
        // The previous process sent `limit - 2` in the last 100 ms.
        p.seed((0..limit - 2).map(|_| Duration::from_millis(100)));
        for _ in 0..3 {
            p.ready().await;
        }
        // The third one had to wait for the seeded ones to leave the window.
        assert!(
            started.elapsed() >= window - Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }

    #[actix_rt::test]
    async fn capacity_recovers_after_the_window() {
        let window = Duration::from_millis(300);
        let p = Pacer::new(8, window);
        p.ready().await;
        p.ready().await;
        assert_eq!(p.capacity(), p.worst_case_in(window) as usize - 2);
        actix_rt::time::sleep(window).await;
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

    #[test]
    fn greedy_sender_never_exceeds_the_limit() {
        // Simulate with governor's fake clock: a sender that tries every 100 ms for 10 min.
        use governor::clock::{Clock, FakeRelativeClock, Reference};
        let p = Pacer::new(20, Duration::from_secs(60));
        let clock = FakeRelativeClock::default();
        let quota = Quota::with_period(p.period)
            .unwrap()
            .allow_burst(NonZeroU32::new(p.burst).unwrap());
        let lim = RateLimiter::direct_with_clock(quota, clock.clone());
        let mut sent: Vec<u64> = Vec::new();
        for step in 0..6000u64 {
            if lim.check().is_ok() {
                sent.push(clock.now().duration_since(Default::default()).as_u64() / 1_000_000);
            }
            clock.advance(Duration::from_millis(100));
            let _ = step;
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
