//! The analyzer actor: a thin shell around a pure, synchronous [`Analyze`] implementation.
//! Snapshots in, insights out to the gate. Keeping the logic pure means it is unit-tested
//! on hand-built snapshots, without actors, databases or clocks.
//!
//! Supervision: a panic inside `analyze` would drop the actor (actix does not restart a
//! panicking actor), so the call is wrapped in `catch_unwind`. A supervised analyzer then
//! rebuilds its state from its factory, waits out the policy's backoff (snapshots that
//! arrive meanwhile are skipped), and after too many panics inside the policy's window
//! stays failed: it answers every snapshot with zero insights, and the supervision events
//! (metrics, health) say so. The other analyzers never notice.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::failpoint::AnalyzerPanics;
use crate::gate::Insights;
use crate::message::{Insight, Snapshot};
use crate::supervise::{panic_message, Decision, Events, NoEvents, RestartPolicy, RestartTracker};

/// Turns one snapshot into zero or more insights. May keep state between snapshots
/// (baselines, rolling windows), but must bound it.
pub trait Analyze: Unpin + 'static {
    type Input: Send + Sync + 'static;
    fn name(&self) -> &str;
    fn analyze(&mut self, snapshot: &Snapshot<Self::Input>) -> Vec<Insight>;
}

/// A snapshot for an analyzer; answered with the number of insights produced, once the
/// gate has accepted them.
pub struct AnalyzeSnapshot<S>(pub Snapshot<S>);

impl<S: Send + Sync + 'static> Message for AnalyzeSnapshot<S> {
    type Result = Result<usize, MailboxError>;
}

/// Called with every analyzer's insights (metrics).
pub type InsightObserver = Arc<dyn Fn(&str, &[Insight]) + Send + Sync>;

type Factory<A> = Box<dyn Fn() -> A>;

pub struct AnalyzerActor<A: Analyze> {
    analyzer: A,
    name: String,
    gate: Recipient<Insights>,
    factory: Option<Factory<A>>,
    tracker: RestartTracker,
    events: Events,
    observer: Option<InsightObserver>,
    /// Skip snapshots until then (restart backoff).
    resume_at: Option<Instant>,
    /// Test builds only (the `failpoints` feature): panics to inject.
    inject: AnalyzerPanics,
}

impl<A: Analyze> AnalyzerActor<A> {
    /// An unsupervised analyzer: a panic is caught and the snapshot skipped, the state is
    /// kept as it is.
    pub fn new(analyzer: A, gate: Recipient<Insights>) -> Self {
        let name = analyzer.name().to_string();
        AnalyzerActor {
            inject: AnalyzerPanics::for_analyzer(&name),
            analyzer,
            name,
            gate,
            factory: None,
            tracker: RestartTracker::new(RestartPolicy::default()),
            events: Arc::new(NoEvents),
            observer: None,
            resume_at: None,
        }
    }

    /// A supervised analyzer: on a panic its state is rebuilt with `factory`, under
    /// `policy`; restarts and failure are reported to `events`.
    pub fn supervised(
        factory: impl Fn() -> A + 'static,
        gate: Recipient<Insights>,
        policy: RestartPolicy,
        events: Events,
    ) -> Self {
        let mut a = Self::new(factory(), gate);
        a.factory = Some(Box::new(factory));
        a.tracker = RestartTracker::new(policy);
        a.events = events;
        a
    }

    /// The analyzer's name: what restarts and failures are reported under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reports every batch of insights to `observer` (metrics).
    pub fn with_observer(mut self, observer: InsightObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn run(&mut self, snapshot: &Snapshot<A::Input>) -> Result<Vec<Insight>, String> {
        let (analyzer, inject) = (&mut self.analyzer, &mut self.inject);
        catch_unwind(AssertUnwindSafe(|| {
            inject.hit();
            analyzer.analyze(snapshot)
        }))
        .map_err(|p| panic_message(p.as_ref()))
    }

    fn on_panic(&mut self, reason: &str) {
        match self.tracker.on_failure(Instant::now()) {
            Decision::Restart { after } => {
                if let Some(f) = &self.factory {
                    self.analyzer = f();
                }
                self.resume_at = Some(Instant::now() + after);
                self.events.restarted(&self.name, reason);
            }
            Decision::GiveUp => self.events.failed(&self.name, reason),
        }
    }
}

impl<A: Analyze> Actor for AnalyzerActor<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

impl<A: Analyze> Handler<AnalyzeSnapshot<A::Input>> for AnalyzerActor<A> {
    type Result = ResponseFuture<Result<usize, MailboxError>>;

    fn handle(&mut self, msg: AnalyzeSnapshot<A::Input>, _ctx: &mut Self::Context) -> Self::Result {
        let skip = self.tracker.is_failed() || self.resume_at.is_some_and(|t| Instant::now() < t);
        if skip {
            return Box::pin(async { Ok(0) });
        }
        self.resume_at = None;
        let insights = match self.run(&msg.0) {
            Ok(i) => i,
            Err(reason) => {
                self.on_panic(&reason);
                // No report for this snapshot: an empty one would tell the gate the scope
                // is clean and resolve findings that are still there.
                return Box::pin(async { Ok(0) });
            }
        };
        if let Some(o) = &self.observer {
            o(&self.name, &insights);
        }
        let n = insights.len();
        let gate = self.gate.clone();
        let report = Insights {
            analyzer: self.name.clone(),
            source: msg.0.source.clone(),
            seq: msg.0.seq,
            at: msg.0.taken_at,
            insights,
        };
        Box::pin(async move {
            // Sent even when empty (a clean pass resolves earlier findings); `send`, not
            // `do_send`, so a full gate mailbox pushes back on us.
            gate.send(report).await?;
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use chrono::Utc;

    /// Panics on a snapshot whose seq is odd (its factory counts the constructions).
    struct Flaky;

    impl Analyze for Flaky {
        type Input = ();
        fn name(&self) -> &str {
            "flaky"
        }
        fn analyze(&mut self, s: &Snapshot<()>) -> Vec<Insight> {
            if s.seq % 2 == 1 {
                panic!("odd snapshot {}", s.seq);
            }
            Vec::new()
        }
    }

    struct Sink(Arc<AtomicUsize>);
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Insights> for Sink {
        type Result = ();
        fn handle(&mut self, _m: Insights, _c: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);
    impl crate::supervise::SupervisionEvents for Recorded {
        fn restarted(&self, actor: &str, _r: &str) {
            self.0.lock().unwrap().push(format!("restarted {actor}"));
        }
        fn failed(&self, actor: &str, _r: &str) {
            self.0.lock().unwrap().push(format!("failed {actor}"));
        }
    }

    fn snap(seq: u64) -> AnalyzeSnapshot<()> {
        AnalyzeSnapshot(Snapshot {
            source: "s".into(),
            seq,
            taken_at: Utc::now(),
            body: Arc::new(()),
        })
    }

    #[actix_rt::test]
    async fn a_panic_rebuilds_the_state_and_gives_up_after_the_budget() {
        let builds = Arc::new(AtomicUsize::new(0));
        let reports = Arc::new(AtomicUsize::new(0));
        let events = Arc::new(Recorded::default());
        let sink = Sink(Arc::clone(&reports)).start();
        let b = Arc::clone(&builds);
        let policy = RestartPolicy {
            initial_backoff: std::time::Duration::ZERO,
            max_backoff: std::time::Duration::ZERO,
            max_restarts: 2,
            window: std::time::Duration::from_secs(3600),
        };
        let addr = AnalyzerActor::supervised(
            move || {
                b.fetch_add(1, Ordering::SeqCst);
                Flaky
            },
            sink.recipient(),
            policy,
            events.clone(),
        )
        .start();
        for seq in 0..8 {
            // The actor survives every panic: the mailbox never closes.
            assert!(addr.send(snap(seq)).await.unwrap().is_ok());
        }
        let log = events.0.lock().unwrap().clone();
        assert_eq!(log, ["restarted flaky", "restarted flaky", "failed flaky"]);
        // First build + one per restart.
        assert_eq!(builds.load(Ordering::SeqCst), 3);
        // Snapshots 0, 2, 4 were reported; after giving up nothing is.
        assert_eq!(reports.load(Ordering::SeqCst), 3);
    }
}
