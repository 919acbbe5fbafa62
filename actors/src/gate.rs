//! The gate: every insight passes through it on its way to the channels. It holds what is
//! pending until a report is due (a `Flush`), routes each insight to its channels, and
//! collects the delivery reports. Deduplication, lifecycle and silences build on this
//! decision point.

use std::collections::BTreeMap;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::channel::{Deliver, DeliveryReport};
use crate::message::{Insight, Notification, NotifyReason};

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

/// Send everything pending now; answered when every channel has reported.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "FlushSummary")]
pub struct Flush {
    pub at: DateTime<Utc>,
}

/// What a flush did.
#[derive(Clone, Debug, Default)]
pub struct FlushSummary {
    pub insights: usize,
    pub reports: Vec<DeliveryReport>,
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

pub struct GateActor<R: Router> {
    router: R,
    channels: BTreeMap<String, Recipient<Deliver>>,
    pending: Vec<Insight>,
    next_id: u64,
}

impl<R: Router> GateActor<R> {
    pub fn new(router: R, channels: BTreeMap<String, Recipient<Deliver>>) -> Self {
        GateActor {
            router,
            channels,
            pending: Vec::new(),
            // Ids only need to be unique per process run; seeding with the start time keeps
            // them unique across runs too, for providers and logs that see several runs.
            next_id: (Utc::now().timestamp_micros() as u64) << 8,
        }
    }
}

impl<R: Router> Actor for GateActor<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
    }
}

impl<R: Router> Handler<Insights> for GateActor<R> {
    type Result = ();

    fn handle(&mut self, msg: Insights, _ctx: &mut Self::Context) {
        self.pending.extend(msg.insights);
    }
}

impl<R: Router> Handler<Flush> for GateActor<R> {
    type Result = ResponseFuture<FlushSummary>;

    fn handle(&mut self, msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        let pending = std::mem::take(&mut self.pending);
        let count = pending.len();
        let mut per_channel: BTreeMap<String, Vec<Insight>> = BTreeMap::new();
        for insight in pending {
            for ch in self.router.channels_for(&insight) {
                per_channel.entry(ch).or_default().push(insight.clone());
            }
        }
        let mut sends = Vec::new();
        for (channel, insights) in per_channel {
            let Some(addr) = self.channels.get(&channel).cloned() else {
                continue;
            };
            self.next_id += 1;
            let n = Notification {
                id: self.next_id,
                channel: channel.clone(),
                reason: NotifyReason::Report,
                insights: std::sync::Arc::new(insights),
                created_at: msg.at,
                mentions: Default::default(),
            };
            sends.push(async move {
                let id = n.id;
                match addr.send(Deliver(n)).await {
                    Ok(report) => report,
                    Err(e) => DeliveryReport {
                        channel,
                        notification_id: id,
                        parts_total: 0,
                        parts_delivered: 0,
                        attempts: 0,
                        outcome: Err(crate::error::ChannelError::Retryable {
                            reason: format!("channel actor unavailable: {e}"),
                        }),
                    },
                }
            });
        }
        Box::pin(async move {
            let reports = join_all(sends).await;
            FlushSummary {
                insights: count,
                reports,
            }
        })
    }
}
