//! The retry rule: how long to wait after a failed attempt, by what the provider said.

use std::time::Duration;

use crate::error::ChannelError;

/// How to retry, and how long a caller waits for an answer.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// First wait after a temporary failure; doubled after each further one.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Longest a `Deliver` waits for its answer. Past it the caller hears "not delivered
    /// yet" while the notification stays in the outbox and is still retried.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        }
    }
}

/// What to do with a part after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Not worth trying again: the part's entry fails for good.
    GiveUp,
    /// Try the part again after this wait.
    RetryIn(Duration),
    /// Hold every sender of the destination (its shared pacer) this long, then try the
    /// part again as soon as the pacer lets it go.
    PauseDestination(Duration),
}

impl RetryPolicy {
    /// The wait before attempt `failures + 1` of a part that failed `failures` times
    /// (≥ 1): `initial_backoff · 2^(failures-1)`, capped at `max_backoff`, times a jitter
    /// factor in [0.5, 1.0) drawn from `seed`, so that retries of many channels and parts
    /// do not line up.
    pub fn backoff(&self, failures: u32, seed: u64) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        jittered(base, seed)
    }

    /// What follows the `failures`-th failed attempt of a part (the backoff's jitter drawn
    /// from `seed`), on a channel paced in windows of `window` (`None`: not paced).
    ///
    /// `Unconfirmed` waits for the destination's window and the longest backoff, whichever
    /// is longer: the provider may have delivered the part, so a slow provider sees it at
    /// most once per window instead of once per backoff. `RateLimited` pauses a paced
    /// destination (every channel sending to it must wait, not only this one) and simply
    /// waits on an unpaced one.
    pub fn after(
        &self,
        error: &ChannelError,
        failures: u32,
        seed: u64,
        window: Option<Duration>,
    ) -> AfterFailure {
        match error {
            ChannelError::Permanent { .. } => AfterFailure::GiveUp,
            ChannelError::Unconfirmed { .. } => AfterFailure::RetryIn(
                window
                    .unwrap_or(Duration::ZERO)
                    .max(self.max_backoff)
                    .max(self.backoff(failures, seed)),
            ),
            ChannelError::RateLimited { retry_after, .. } => match window {
                Some(_) => AfterFailure::PauseDestination(*retry_after),
                None => AfterFailure::RetryIn(*retry_after),
            },
            ChannelError::Retryable { .. } => AfterFailure::RetryIn(self.backoff(failures, seed)),
        }
    }
}

/// Jitter in [0.5, 1.0) of `d`, from a seed (SplitMix64 finaliser of it).
fn jittered(d: Duration, seed: u64) -> Duration {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let x = z >> 53; // 11 bits
    d.mul_f64(0.5 + (x as f64) / 4096.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let r = RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
        };
        for seed in 0..200u64 {
            for (failures, base) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
                let w = r.backoff(failures, seed);
                let base = Duration::from_secs(base);
                assert!(w >= base / 2 && w < base, "{failures}: {w:?}");
            }
        }
        let waits: std::collections::BTreeSet<Duration> =
            (0..50u64).map(|s| r.backoff(3, s)).collect();
        assert!(waits.len() > 40, "jitter spreads retries: {waits:?}");
    }

    #[test]
    fn each_kind_of_failure_has_its_wait() {
        let r = RetryPolicy::default();
        let minute = Some(Duration::from_secs(60));
        let retryable = ChannelError::Retryable {
            reason: "502".into(),
        };
        let unconfirmed = ChannelError::Unconfirmed {
            reason: "timeout".into(),
        };
        let limited = ChannelError::RateLimited {
            reason: "45009".into(),
            retry_after: Duration::from_secs(7),
        };
        let permanent = ChannelError::Permanent {
            reason: "93000".into(),
        };
        assert_eq!(
            r.after(&retryable, 2, 9, minute),
            AfterFailure::RetryIn(r.backoff(2, 9))
        );
        assert_eq!(r.after(&permanent, 1, 9, minute), AfterFailure::GiveUp);
        assert_eq!(
            r.after(&limited, 1, 9, minute),
            AfterFailure::PauseDestination(Duration::from_secs(7))
        );
        assert_eq!(
            r.after(&limited, 1, 9, None),
            AfterFailure::RetryIn(Duration::from_secs(7))
        );
        // The longest of the window, the longest backoff, and this failure's backoff.
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            r.after(&unconfirmed, 1, 9, hour),
            AfterFailure::RetryIn(Duration::from_secs(3600))
        );
        assert_eq!(
            r.after(&unconfirmed, 1, 9, None),
            AfterFailure::RetryIn(r.max_backoff)
        );
    }
}
