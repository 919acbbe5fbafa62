//! An ordered shutdown under one deadline.
//!
//! A pipeline stops from its head: first what produces (the collectors: a cycle in
//! progress is not waited for, the source keeps its data), then the gate hands over what
//! it holds, then the channels deliver it. Each step gets what the steps before it left
//! of a single deadline, so a step that hangs (a read stuck on a frozen database) cannot
//! take the time of the ones after it beyond that deadline, and the whole stop is bounded.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A step did not finish before the shutdown's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the shutdown deadline ran out")]
pub struct Overdue;

/// The deadline shared by the steps of one shutdown.
#[derive(Clone, Copy, Debug)]
pub struct Shutdown {
    deadline: Duration,
    until: Instant,
}

impl Shutdown {
    /// A shutdown starting now that must be over within `deadline`.
    pub fn within(deadline: Duration) -> Self {
        Shutdown {
            deadline,
            until: Instant::now() + deadline,
        }
    }

    /// The whole deadline, as configured.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// What is left of the deadline.
    pub fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }

    /// Runs one step, within what is left of the deadline.
    pub async fn step<F: Future>(&self, step: F) -> Result<F::Output, Overdue> {
        tokio::time::timeout_at(self.until, step)
            .await
            .map_err(|_| Overdue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_share_one_deadline() {
        let s = Shutdown::within(Duration::from_secs(10));
        let first = s
            .step(async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                "stopped"
            })
            .await;
        assert_eq!(first, Ok("stopped"));
        assert_eq!(s.left(), Duration::from_secs(6));
        // A step that hangs gets only what is left.
        let t0 = Instant::now();
        let hung = s.step(std::future::pending::<()>()).await;
        assert_eq!(hung, Err(Overdue));
        assert_eq!(t0.elapsed(), Duration::from_secs(6));
        assert_eq!(s.left(), Duration::ZERO);
        assert_eq!(s.deadline(), Duration::from_secs(10));
    }
}
