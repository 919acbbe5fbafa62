//! Domain-free pipeline machinery for powa-sentinel.
//!
//! ```text
//!  Source ──Collect──▶ CollectorActor ──Snapshot──▶ AnalyzerActor(s) ──Insights──▶ GateActor
//!                                                                                   │ Flush
//!                                        DeliveryReport ◀── ChannelActor(s) ◀─Deliver┘
//! ```
//!
//! Data flows one way; only the delivery report flows back. Every hand-off uses
//! `send().await`, so a slow stage pushes back on the stage before it instead of growing an
//! unbounded queue. The crate knows nothing about PostgreSQL, HTTP or WeCom: the domain
//! implements [`collector::Source`], [`analyzer::Analyze`], [`gate::Decide`] (every
//! decision of the gate: lifecycle, routing, silences) and [`channel::Channel`].
//!
//! The runtime around the actors lives here too: supervised tasks and restarts
//! ([`task`], over the policy of [`supervise`]), each collector's tick grid with jitter
//! and overrun skipping ([`ticker`]), and the ordered shutdown under one deadline
//! ([`shutdown`]).

pub mod analyzer;
pub mod channel;
pub mod collector;
pub mod error;
pub mod failpoint;
pub mod gate;
pub mod message;
pub mod outbox;
pub mod shutdown;
pub mod supervise;
pub mod task;
pub mod throttle;
pub mod ticker;

pub use error::{ChannelError, OutboxError, SourceError};
pub use message::{
    Change, Fingerprint, Insight, Notification, NotifyReason, Severity, Snapshot, Trend,
    TrendPoint, TrendSeries, Window,
};
