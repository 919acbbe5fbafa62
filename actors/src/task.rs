//! Supervised tasks: the long-running loops of a runtime (a repository's connection, a
//! server's collection schedule) and the way they are stopped and restarted.
//!
//! [`crate::supervise`] decides *whether* to restart (pure, time passed in); this module
//! does it: a [`Task`] is a spawned loop with a stop signal ([`Cancel`]), [`Restarts`]
//! reports a failure and waits out the backoff (or gives up), and [`supervise`] runs a
//! loop again each time it panics. Owners of an actor use [`Restarts`] too when they find
//! its mailbox closed (a handler panicked, actix dropped the actor): they build a new one
//! after the same backoff, under the same budget.
//!
//! Everything here runs on the actix System's thread (`actix_rt::spawn`), so the loops
//! may hold `Rc`s.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::supervise::{panic_message, Decision, Events, RestartPolicy, RestartTracker};

/// The stop signal a [`Task`]'s loop watches. Cloned into every future of the loop that
/// must give up when the task is stopped.
#[derive(Clone, Debug)]
pub struct Cancel(Option<watch::Receiver<bool>>);

impl Cancel {
    /// A signal that never fires (one-shot commands, tests).
    pub fn never() -> Cancel {
        Cancel(None)
    }

    /// Resolves when the task is told to stop, or when its [`Task`] is gone (nobody can
    /// stop it any more, so nobody waits for it either).
    pub async fn cancelled(&mut self) {
        let Some(rx) = &mut self.0 else {
            return std::future::pending().await;
        };
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// True once the stop was asked.
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Sleeps for `d`; false if the task was stopped meanwhile.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.cancelled() => false,
        }
    }
}

/// A running loop and the way to stop it.
pub struct Task {
    cancel: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Task {
    /// Spawns `f` on the current actix System, handing it its stop signal.
    pub fn spawn<F, Fut>(f: F) -> Task
    where
        F: FnOnce(Cancel) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (cancel, rx) = watch::channel(false);
        let join = actix_rt::spawn(f(Cancel(Some(rx))));
        Task { cancel, join }
    }

    /// Tells the loop to stop and waits until it has.
    pub async fn stop(self) {
        let _ = self.cancel.send(true);
        let _ = self.join.await;
    }
}

/// Stops `tasks` one after the other, in their order.
pub async fn stop_all(tasks: impl IntoIterator<Item = Task>) {
    for t in tasks {
        t.stop().await;
    }
}

/// The restart budget of one supervised piece and what its failures are reported as.
pub struct Restarts {
    name: String,
    tracker: RestartTracker,
    events: Events,
}

impl Restarts {
    /// `name` is what restarts and failures are reported under (metrics, health).
    pub fn new(name: impl Into<String>, policy: RestartPolicy, events: Events) -> Self {
        Restarts {
            name: name.into(),
            tracker: RestartTracker::new(policy),
            events,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records a failure for `reason` at `now`: reports the restart and waits out its
    /// backoff (true: restart now), or reports the piece failed (false). False too when
    /// `cancel` fires during the wait.
    pub async fn after_failure(&mut self, reason: &str, now: Instant, cancel: &mut Cancel) -> bool {
        match self.tracker.on_failure(now) {
            Decision::Restart { after } => {
                self.events.restarted(&self.name, reason);
                cancel.sleep(after).await
            }
            Decision::GiveUp => {
                self.events.failed(&self.name, reason);
                false
            }
        }
    }

    /// An actor's mailbox was found closed (a panic dropped it): as
    /// [`Restarts::after_failure`], with the reason said the same way for every actor.
    /// Returns the reason and whether to start a new actor now.
    pub async fn mailbox_closed(
        &mut self,
        actor: &str,
        error: &actix::MailboxError,
        cancel: &mut Cancel,
    ) -> (String, bool) {
        let reason = format!("{actor} mailbox closed: {error}");
        let restart = self.after_failure(&reason, Instant::now(), cancel).await;
        (reason, restart)
    }
}

/// Runs the loop `make` builds until it returns, building it again each time it panics,
/// under `restarts`' budget. `on_panic` hears each panic's text first (to mark the piece
/// down meanwhile). Returns when the loop returns, when the budget is spent, or when
/// `cancel` fires during a backoff.
pub async fn supervise<F, Fut>(
    restarts: &mut Restarts,
    mut cancel: Cancel,
    mut make: F,
    mut on_panic: impl FnMut(&str),
) where
    F: FnMut(Cancel) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let run = make(cancel.clone());
        let Err(panic) = AssertUnwindSafe(run).catch_unwind().await else {
            return;
        };
        let reason = panic_message(panic.as_ref());
        on_panic(&reason);
        if !restarts
            .after_failure(&reason, Instant::now(), &mut cancel)
            .await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    use crate::supervise::SupervisionEvents;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);
    impl SupervisionEvents for Recorded {
        fn restarted(&self, actor: &str, reason: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("restarted {actor}: {reason}"));
        }
        fn failed(&self, actor: &str, reason: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("failed {actor}: {reason}"));
        }
    }

    fn no_wait(max_restarts: u32) -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            max_restarts,
            window: Duration::from_secs(3600),
        }
    }

    #[actix_rt::test]
    async fn a_panicking_loop_is_restarted_until_the_budget_is_spent() {
        let events = Arc::new(Recorded::default());
        let mut restarts = Restarts::new("repository main", no_wait(2), events.clone());
        let runs = Rc::new(Cell::new(0));
        let marked = Rc::new(Cell::new(0));
        let (r, m) = (Rc::clone(&runs), Rc::clone(&marked));
        supervise(
            &mut restarts,
            Cancel::never(),
            move |_| {
                let r = Rc::clone(&r);
                async move {
                    r.set(r.get() + 1);
                    panic!("run {}", r.get());
                }
            },
            move |_| m.set(m.get() + 1),
        )
        .await;
        assert_eq!(runs.get(), 3, "the first run and two restarts");
        assert_eq!(marked.get(), 3, "every panic is heard");
        assert_eq!(
            *events.0.lock().unwrap(),
            [
                "restarted repository main: run 1",
                "restarted repository main: run 2",
                "failed repository main: run 3",
            ]
        );
    }

    #[actix_rt::test]
    async fn a_loop_that_returns_is_not_restarted() {
        let events = Arc::new(Recorded::default());
        let mut restarts = Restarts::new("x", no_wait(2), events.clone());
        let runs = Rc::new(Cell::new(0));
        let r = Rc::clone(&runs);
        supervise(
            &mut restarts,
            Cancel::never(),
            move |_| {
                r.set(r.get() + 1);
                async {}
            },
            |_| {},
        )
        .await;
        assert_eq!(runs.get(), 1);
        assert!(events.0.lock().unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn a_stop_during_the_backoff_ends_the_supervision() {
        let events = Arc::new(Recorded::default());
        let policy = RestartPolicy {
            // Both: the cap would otherwise cut the hour down to no wait at all, and the
            // loop would race the stop through its whole budget.
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..no_wait(5)
        };
        let mut restarts = Restarts::new("x", policy, events.clone());
        let (tx, rx) = watch::channel(false);
        let cancel = Cancel(Some(rx));
        let stopper = async {
            tokio::task::yield_now().await;
            let _ = tx.send(true);
        };
        let supervised = supervise(&mut restarts, cancel, |_| async { panic!("boom") }, |_| {});
        futures_util::future::join(supervised, stopper).await;
        assert_eq!(*events.0.lock().unwrap(), ["restarted x: boom"]);
    }

    #[actix_rt::test]
    async fn a_stopped_task_has_returned() {
        let done = Rc::new(Cell::new(false));
        let d = Rc::clone(&done);
        let task = Task::spawn(move |mut cancel| async move {
            cancel.cancelled().await;
            d.set(true);
        });
        task.stop().await;
        assert!(done.get());
    }

    #[actix_rt::test]
    async fn a_closed_mailbox_is_reported_with_the_actor_named() {
        let events = Arc::new(Recorded::default());
        let mut restarts = Restarts::new("main/local", no_wait(1), events.clone());
        let mut cancel = Cancel::never();
        let (reason, restart) = restarts
            .mailbox_closed("collector", &actix::MailboxError::Closed, &mut cancel)
            .await;
        assert!(restart);
        assert_eq!(reason, "collector mailbox closed: Mailbox has closed");
        let (_, again) = restarts
            .mailbox_closed("collector", &actix::MailboxError::Closed, &mut cancel)
            .await;
        assert!(!again, "the budget of one restart is spent");
        assert_eq!(
            events.0.lock().unwrap()[1],
            "failed main/local: collector mailbox closed: Mailbox has closed"
        );
    }
}
