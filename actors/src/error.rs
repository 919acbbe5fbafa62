//! Errors of the pipeline machinery. Callers branch on them, so they are typed.

use std::time::Duration;

use thiserror::Error;

/// How a delivery attempt failed, classified so that the channel actor knows what to do.
/// The texts must never contain secrets (webhook keys, tokens): implementations redact.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ChannelError {
    /// Worth trying again soon (timeouts, 5xx, provider "system busy").
    #[error("temporary failure: {reason}")]
    Retryable { reason: String },
    /// The provider said "too many": wait at least `retry_after` before the next attempt on
    /// this destination.
    #[error("rate limited: {reason}")]
    RateLimited {
        reason: String,
        retry_after: Duration,
    },
    /// Will fail the same way every time (bad key, invalid payload): do not retry.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// The provider did not answer in time: the request may have reached it and the
    /// message been delivered. Retried, but only after a longer wait (at least the
    /// destination's rate window and the longest backoff), since the retry may be a
    /// duplicate.
    #[error("no answer in time (the message may have been delivered): {reason}")]
    Unconfirmed { reason: String },
}

impl ChannelError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, ChannelError::Permanent { .. })
    }
}

/// A source could not produce a snapshot.
#[derive(Clone, Debug, Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
}

impl SourceError {
    pub fn new(message: impl Into<String>) -> Self {
        SourceError {
            message: message.into(),
        }
    }
}

/// The outbox could not read or write its journal (disk full, file damaged, …). The
/// channel keeps delivering from memory; what it could not journal would be lost by a
/// restart, so this is logged as an error.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("outbox: {message}")]
pub struct OutboxError {
    pub message: String,
}

impl OutboxError {
    pub fn new(message: impl Into<String>) -> Self {
        OutboxError {
            message: message.into(),
        }
    }
}
