//! Restart policies for the pipeline's actors.
//!
//! actix's `Supervisor` restarts an actor that *stops*; an actor whose handler panics is
//! simply dropped (its mailbox closes). So supervision here works at two levels: handlers
//! that run domain code catch panics at their boundary and rebuild their state (see
//! [`crate::analyzer::AnalyzerActor`]), and owners of an actor notice a closed mailbox and
//! start a new one. Both ask a [`RestartTracker`] whether another restart is allowed: a
//! piece that keeps failing is marked failed (health and metrics say so) and the rest of
//! the pipeline runs on without it, instead of spinning.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How an actor is restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubled for each restart still inside `window`.
    pub initial_backoff: Duration,
    /// Longest wait between restarts.
    pub max_backoff: Duration,
    /// Most restarts allowed inside `window`; one more marks the actor failed.
    pub max_restarts: u32,
    /// The sliding window restarts are counted over.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_restarts: 5,
            window: Duration::from_secs(600),
        }
    }
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this wait.
    Restart { after: Duration },
    /// Too many restarts inside the window: leave the actor failed.
    GiveUp,
}

/// Counts the restarts of one actor over a sliding window. Pure (time is passed in), so
/// the policy is tested without actors or clocks.
#[derive(Clone, Debug)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    total: u64,
    failed: bool,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
            total: 0,
            failed: false,
        }
    }

    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, now: Instant) -> Decision {
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) > self.policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.failed || self.recent.len() as u32 >= self.policy.max_restarts {
            self.failed = true;
            return Decision::GiveUp;
        }
        let exp = self.recent.len().min(16) as u32;
        self.recent.push_back(now);
        self.total += 1;
        let after = self
            .policy
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.policy.max_backoff);
        Decision::Restart { after }
    }

    /// Restarts so far (not counting the one that gave up).
    pub fn restarts(&self) -> u64 {
        self.total
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Forget the failed mark (e.g. after a configuration reload rebuilt the actor).
    pub fn reset(&mut self) {
        self.recent.clear();
        self.failed = false;
    }
}

/// Where supervision events go (metrics, health). The crate stays domain-free: the
/// application implements this.
pub trait SupervisionEvents: Send + Sync + 'static {
    /// `actor` was restarted (`reason` says why: a panic message, a closed mailbox).
    fn restarted(&self, actor: &str, reason: &str);
    /// `actor` exceeded its restart budget and is left failed.
    fn failed(&self, actor: &str, reason: &str);
}

/// Ignores every event (tests, one-shot commands).
pub struct NoEvents;

impl SupervisionEvents for NoEvents {
    fn restarted(&self, _actor: &str, _reason: &str) {}
    fn failed(&self, _actor: &str, _reason: &str) {}
}

pub type Events = Arc<dyn SupervisionEvents>;

/// The text of a caught panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            max_restarts: 3,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_doubles_then_gives_up_inside_the_window() {
        let mut t = RestartTracker::new(policy());
        let t0 = Instant::now();
        let waits: Vec<Decision> = (0..4)
            .map(|i| t.on_failure(t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            waits,
            [
                Decision::Restart {
                    after: Duration::from_secs(1)
                },
                Decision::Restart {
                    after: Duration::from_secs(2)
                },
                Decision::Restart {
                    after: Duration::from_secs(4)
                },
                Decision::GiveUp,
            ]
        );
        assert!(t.is_failed());
        assert_eq!(t.restarts(), 3);
    }

    #[test]
    fn failures_spread_out_never_give_up() {
        let mut t = RestartTracker::new(policy());
        let t0 = Instant::now();
        for i in 0..20u64 {
            let d = t.on_failure(t0 + Duration::from_secs(61 * i));
            assert_eq!(
                d,
                Decision::Restart {
                    after: Duration::from_secs(1)
                }
            );
        }
        assert!(!t.is_failed());
    }

    #[test]
    fn backoff_is_capped() {
        let mut p = policy();
        p.max_restarts = 10;
        let mut t = RestartTracker::new(p);
        let t0 = Instant::now();
        let last = (0..6).map(|_| t.on_failure(t0)).last().unwrap();
        assert_eq!(
            last,
            Decision::Restart {
                after: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn panic_payloads_are_read() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "boom 1");
    }
}
