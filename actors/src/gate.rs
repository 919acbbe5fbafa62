//! The gate: every insight passes through it on its way to the channels.
//!
//! The actor is a thin shell around a [`Decide`] implementation, which owns every decision
//! (lifecycle, routing, silences, quiet hours, what waits for the report): the decisions are
//! plain, synchronous code that tests and benches drive without actors or clocks. The shell
//! only turns the decisions into [`Deliver`] messages, runs a timer for what waits on the
//! wall clock (quiet hours), and collects the delivery reports.
//!
//! Immediate notifications (sent while a scope's report is handled) do not make the analyzer
//! wait for the channel: they are spawned, and the next [`Flush`] waits for them and returns
//! their reports with its own, so `once` exits only when everything it sent is settled.
//!
//! Nothing decided is lost between the decision and the channel's journal: a [`Decide`]
//! that keeps state commits each decision together with the notifications it wants sent
//! (its *intents*, numbered by itself, unique across runs), hears every channel's answer
//! ([`Decide::settled`]) and forgets an intent only then; when the actor starts it offers
//! the intents left by an earlier process again ([`Decide::pending`]), with the same ids.
//! The channels' outboxes accept an id once, so a replay of what was already journaled is
//! not sent twice.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::channel::{Deliver, DeliveryReport};
use crate::message::{Insight, Mentions, Notification, NotifyReason};

/// What one analyzer concluded about one source in one collection. Sent even when
/// `insights` is empty: a clean pass is what lets the gate resolve what it saw before
/// (a fingerprint belongs to the (analyzer, source) scope that produced it).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Insights {
    /// Analyzer name, e.g. `slow_queries`.
    pub analyzer: String,
    /// The snapshot's source (repository/server).
    pub source: String,
    /// The snapshot's sequence number for that source.
    pub seq: u64,
    /// The snapshot's data time.
    pub at: DateTime<Utc>,
    pub insights: Vec<Insight>,
}

/// Reports that came through a durable queue, each at its position: the decider records
/// the positions with the decisions it takes on them ([`Decide::observe_queued`]), so
/// that whoever consumes the queue next resumes after them, and each report is decided
/// once. Several at a time, so that a decider that commits may commit once for all.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Queued(pub Vec<(u64, Insights)>);

/// The analyzers that will report on every snapshot of every source: sent by whoever
/// starts them (at the start, and again at each reload, which may change the set), before
/// any snapshot is collected. A decider may use it to know when a collection cycle is over.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ExpectAnalyzers(pub Vec<String>);

/// Send everything pending now; answered when every channel has reported.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "FlushSummary")]
pub struct Flush {
    pub at: DateTime<Utc>,
}

/// What a flush did.
#[derive(Clone, Debug, Default)]
pub struct FlushSummary {
    /// Distinct insights sent since the previous flush (immediate ones included).
    pub insights: usize,
    pub reports: Vec<DeliveryReport>,
}

/// One notification the decision core wants sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// The notification's id; 0 lets the actor number it (deciders that keep no intents).
    pub id: u64,
    pub channel: String,
    pub reason: NotifyReason,
    pub insights: Vec<Insight>,
    pub mentions: Mentions,
    /// When it was decided (the data time of the decision).
    pub created_at: DateTime<Utc>,
}

/// The gate's decisions. Implementations are synchronous and own their state (and its
/// persistence); time is always passed in, never read inside.
pub trait Decide: Unpin + 'static {
    /// One scope's report. Returns what must go out now (immediate notifications).
    fn observe(&mut self, report: Insights) -> Vec<Outgoing>;
    /// Reports from a durable queue, each at its position (see [`Queued`]); a decider
    /// that keeps state commits the positions with the decisions. By default, one
    /// [`Decide::observe`] each.
    fn observe_queued(&mut self, reports: Vec<(u64, Insights)>) -> Vec<Outgoing> {
        reports
            .into_iter()
            .flat_map(|(_, r)| self.observe(r))
            .collect()
    }
    /// A report is due at `at`: returns everything that is due.
    fn flush(&mut self, at: DateTime<Utc>) -> Vec<Outgoing>;
    /// Timer: what became deliverable by `now` (e.g. held by quiet hours that ended).
    fn tick(&mut self, now: DateTime<Utc>) -> Vec<Outgoing> {
        let _ = now;
        Vec::new()
    }
    /// How often the actor calls [`Decide::tick`]; `None`: never. Asked at the start and
    /// after each [`ExpectAnalyzers`].
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// The analyzers that report on every snapshot, from now on (see [`ExpectAnalyzers`]).
    fn expect_analyzers(&mut self, analyzers: &[String]) {
        let _ = analyzers;
    }
    /// What an earlier process decided and no channel confirmed having journaled: sent
    /// again, with the same ids, when the actor starts.
    fn pending(&mut self) -> Vec<Outgoing> {
        Vec::new()
    }
    /// A channel answered for a notification: it is in the channel's outbox (delivered,
    /// pending or failed there), so the decider may forget its intent.
    fn settled(&mut self, report: &DeliveryReport) {
        let _ = report;
    }
}

/// Picks the channels of one insight. The gate is domain-free: routing rules come from
/// the caller.
pub trait Router: Unpin + 'static {
    fn channels_for(&self, insight: &Insight) -> Vec<String>;
}

/// Every insight goes to every channel.
pub struct Broadcast(pub Vec<String>);

impl Router for Broadcast {
    fn channels_for(&self, _insight: &Insight) -> Vec<String> {
        self.0.clone()
    }
}

/// No lifecycle: every insight waits for the next flush and goes to the channels its
/// router picks. The baseline the gate bench compares against, and a gate for tests.
pub struct PassThrough<R: Router> {
    router: R,
    pending: Vec<Insight>,
}

impl<R: Router> PassThrough<R> {
    pub fn new(router: R) -> Self {
        PassThrough {
            router,
            pending: Vec::new(),
        }
    }
}

impl<R: Router> Decide for PassThrough<R> {
    fn observe(&mut self, report: Insights) -> Vec<Outgoing> {
        self.pending.extend(report.insights);
        Vec::new()
    }

    fn flush(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
        let mut per_channel: BTreeMap<String, Vec<Insight>> = BTreeMap::new();
        for insight in std::mem::take(&mut self.pending) {
            for ch in self.router.channels_for(&insight) {
                per_channel.entry(ch).or_default().push(insight.clone());
            }
        }
        per_channel
            .into_iter()
            .map(|(channel, insights)| Outgoing {
                id: 0,
                channel,
                reason: NotifyReason::Report,
                insights,
                mentions: Mentions::default(),
                created_at: at,
            })
            .collect()
    }
}

pub struct GateActor<D: Decide> {
    decide: D,
    channels: BTreeMap<String, Recipient<Deliver>>,
    /// Deliveries started outside a flush (immediate, released by the timer).
    in_flight: Vec<tokio::task::JoinHandle<DeliveryReport>>,
    /// Fingerprints sent since the last flush, for the flush summary.
    sent: HashSet<crate::message::Fingerprint>,
    next_id: u64,
    /// Whether the tick timer runs (it starts when the decider first asks for it).
    ticking: bool,
}

impl<D: Decide> GateActor<D> {
    pub fn new(decide: D, channels: BTreeMap<String, Recipient<Deliver>>) -> Self {
        GateActor {
            decide,
            channels,
            in_flight: Vec::new(),
            sent: HashSet::new(),
            // Ids only need to be unique per process run; seeding with the start time keeps
            // them unique across runs too, for providers and logs that see several runs.
            next_id: (Utc::now().timestamp_micros() as u64) << 8,
            ticking: false,
        }
    }

    /// Starts the tick timer if the decider wants one and it does not run yet.
    fn start_ticking(&mut self, ctx: &mut Context<Self>) {
        if self.ticking {
            return;
        }
        if let Some(every) = self.decide.tick_every() {
            self.ticking = true;
            ctx.run_interval(every, |act, ctx| {
                let out = act.decide.tick(Utc::now());
                act.spawn_deliveries(out, ctx);
            });
        }
    }

    /// Turns decisions into deliveries: futures that resolve to the channel's report, and
    /// whether the channel itself answered (then it journaled the notification).
    fn deliveries(
        &mut self,
        outgoing: Vec<Outgoing>,
    ) -> Vec<impl std::future::Future<Output = (DeliveryReport, bool)> + 'static> {
        let mut sends = Vec::new();
        for out in outgoing {
            let Some(addr) = self.channels.get(&out.channel).cloned() else {
                continue;
            };
            if out.insights.is_empty() {
                continue;
            }
            self.sent.extend(out.insights.iter().map(|i| i.fingerprint));
            let id = if out.id == 0 {
                self.next_id += 1;
                self.next_id
            } else {
                out.id
            };
            let channel = out.channel;
            let n = Notification {
                id,
                channel: channel.clone(),
                reason: out.reason,
                insights: std::sync::Arc::new(out.insights),
                created_at: out.created_at,
                mentions: out.mentions,
            };
            sends.push(async move {
                match addr.send(Deliver(n)).await {
                    Ok(report) => (report, true),
                    Err(e) => (
                        DeliveryReport {
                            channel,
                            notification_id: id,
                            parts_total: 0,
                            parts_delivered: 0,
                            attempts: 0,
                            outcome: Err(crate::error::ChannelError::Retryable {
                                reason: format!("channel actor unavailable: {e}"),
                            }),
                        },
                        false,
                    ),
                }
            });
        }
        sends
    }

    /// Starts deliveries now, without waiting for them; the next flush collects them. Each
    /// channel's answer is handed to the decider as soon as it comes.
    fn spawn_deliveries(&mut self, outgoing: Vec<Outgoing>, ctx: &mut Context<Self>) {
        if outgoing.is_empty() {
            return;
        }
        let me = ctx.address();
        for fut in self.deliveries(outgoing) {
            let me = me.clone();
            self.in_flight.push(actix_rt::spawn(async move {
                let (report, answered) = fut.await;
                if answered {
                    me.do_send(Settled(report.clone()));
                }
                report
            }));
        }
    }
}

/// A channel's answer for a delivery the actor spawned (internal).
#[derive(Message)]
#[rtype(result = "()")]
struct Settled(DeliveryReport);

impl<D: Decide> Handler<Settled> for GateActor<D> {
    type Result = ();

    fn handle(&mut self, msg: Settled, _ctx: &mut Self::Context) {
        self.decide.settled(&msg.0);
    }
}

impl<D: Decide> Actor for GateActor<D> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        // What an earlier process decided but never saw journaled goes first.
        let replay = self.decide.pending();
        self.spawn_deliveries(replay, ctx);
        self.start_ticking(ctx);
    }
}

impl<D: Decide> Handler<ExpectAnalyzers> for GateActor<D> {
    type Result = ();

    fn handle(&mut self, msg: ExpectAnalyzers, ctx: &mut Self::Context) {
        self.decide.expect_analyzers(&msg.0);
        self.start_ticking(ctx);
    }
}

impl<D: Decide> Handler<Insights> for GateActor<D> {
    type Result = ();

    fn handle(&mut self, msg: Insights, ctx: &mut Self::Context) {
        let out = self.decide.observe(msg);
        self.spawn_deliveries(out, ctx);
    }
}

impl<D: Decide> Handler<Queued> for GateActor<D> {
    type Result = ();

    fn handle(&mut self, msg: Queued, ctx: &mut Self::Context) {
        let out = self.decide.observe_queued(msg.0);
        self.spawn_deliveries(out, ctx);
    }
}

impl<D: Decide> Handler<Flush> for GateActor<D> {
    type Result = ResponseActFuture<Self, FlushSummary>;

    fn handle(&mut self, msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        let out = self.decide.flush(msg.at);
        let sends = self.deliveries(out);
        let earlier = std::mem::take(&mut self.in_flight);
        let count = std::mem::take(&mut self.sent).len();
        let work = async move {
            let mut reports = Vec::new();
            for r in join_all(earlier).await {
                match r {
                    Ok(report) => reports.push(report),
                    Err(e) => reports.push(DeliveryReport {
                        channel: String::new(),
                        notification_id: 0,
                        parts_total: 0,
                        parts_delivered: 0,
                        attempts: 0,
                        outcome: Err(crate::error::ChannelError::Retryable {
                            reason: format!("delivery task failed: {e}"),
                        }),
                    }),
                }
            }
            let mut answered = Vec::new();
            for (report, from_channel) in join_all(sends).await {
                if from_channel {
                    answered.push(reports.len());
                }
                reports.push(report);
            }
            (reports, answered)
        };
        Box::pin(
            work.into_actor(self)
                .map(move |(reports, answered), act, _ctx| {
                    for i in answered {
                        act.decide.settled(&reports[i]);
                    }
                    FlushSummary {
                        insights: count,
                        reports,
                    }
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Fingerprint, Severity, Window};
    use std::sync::{Arc, Mutex};

    /// Records what reaches it; answers delivered.
    struct Recorder(Arc<Mutex<Vec<Notification>>>);
    impl Actor for Recorder {
        type Context = Context<Self>;
    }
    impl Handler<Deliver> for Recorder {
        type Result = MessageResult<Deliver>;
        fn handle(&mut self, msg: Deliver, _: &mut Self::Context) -> Self::Result {
            let n = msg.0;
            let report = DeliveryReport::delivered(&n.channel, n.id);
            self.0.lock().unwrap().push(n);
            MessageResult(report)
        }
    }

    fn insight(fp: u64) -> Insight {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        Insight {
            fingerprint: Fingerprint(fp),
            kind: "k".into(),
            rule: "k.r".into(),
            severity: Severity::Critical,
            labels: Default::default(),
            title: "t".into(),
            advice: "a".into(),
            text: None,
            metrics: Default::default(),
            window: Window { start: t, end: t },
            observed_at: t,
            status: None,
            changes: Vec::new(),
            trend: None,
        }
    }

    /// Sends fingerprint 1 at once and everything at the flush.
    struct Split;
    impl Decide for Split {
        fn observe(&mut self, report: Insights) -> Vec<Outgoing> {
            report
                .insights
                .into_iter()
                .filter(|i| i.fingerprint.0 == 1)
                .map(|i| Outgoing {
                    id: 0,
                    channel: "a".into(),
                    reason: NotifyReason::Immediate,
                    insights: vec![i],
                    mentions: Mentions::default(),
                    created_at: report.at,
                })
                .collect()
        }
        fn flush(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
            vec![Outgoing {
                id: 0,
                created_at: at,
                channel: "a".into(),
                reason: NotifyReason::Report,
                insights: vec![insight(2)],
                mentions: Mentions {
                    userids: vec!["@all".into()],
                    mobiles: vec![],
                },
            }]
        }
    }

    #[actix_rt::test]
    async fn flush_waits_for_immediate_deliveries_and_reports_them() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = Recorder(Arc::clone(&seen)).start();
        let gate =
            GateActor::new(Split, BTreeMap::from([("a".to_string(), rec.recipient())])).start();
        gate.send(Insights {
            analyzer: "x".into(),
            source: "s".into(),
            seq: 1,
            at: Utc::now(),
            insights: vec![insight(1), insight(3)],
        })
        .await
        .unwrap();
        let summary = gate.send(Flush { at: Utc::now() }).await.unwrap();
        assert_eq!(summary.reports.len(), 2);
        assert_eq!(summary.insights, 2);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].reason, NotifyReason::Immediate);
        assert_eq!(seen[0].insights[0].fingerprint, Fingerprint(1));
        assert_eq!(seen[1].reason, NotifyReason::Report);
        assert_eq!(seen[1].mentions.userids, ["@all"]);
    }

    #[actix_rt::test]
    async fn pass_through_routes_everything_at_the_flush() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = Recorder(Arc::clone(&seen)).start();
        let gate = GateActor::new(
            PassThrough::new(Broadcast(vec!["a".into(), "missing".into()])),
            BTreeMap::from([("a".to_string(), rec.recipient())]),
        )
        .start();
        gate.send(Insights {
            analyzer: "x".into(),
            source: "s".into(),
            seq: 1,
            at: Utc::now(),
            insights: vec![insight(5), insight(6)],
        })
        .await
        .unwrap();
        assert!(seen.lock().unwrap().is_empty(), "nothing before the flush");
        let summary = gate.send(Flush { at: Utc::now() }).await.unwrap();
        assert_eq!(summary.insights, 2);
        assert_eq!(summary.reports.len(), 1, "unknown channels are skipped");
        assert_eq!(seen.lock().unwrap()[0].insights.len(), 2);
    }
}
