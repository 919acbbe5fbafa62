//! What the channel's unit tests share: notifications, a scripted channel, a quick policy.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use slog::Logger;

use super::{Channel, RetryPolicy};
use crate::error::ChannelError;
use crate::message::{
    Fingerprint, Insight, Mentions, Notification, NotifyReason, Severity, Window,
};
use crate::outbox::RenderedEntry;

pub fn insight(n: u64, severity: Severity) -> Insight {
    let t = Utc::now();
    Insight {
        fingerprint: Fingerprint(n),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity,
        labels: BTreeMap::from([("queryid".to_string(), n.to_string())]),
        title: format!("insight {n}"),
        advice: String::new(),
        text: None,
        metrics: BTreeMap::new(),
        window: Window { start: t, end: t },
        observed_at: t,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

pub fn notification(id: u64, insights: Vec<Insight>) -> Notification {
    Notification {
        id,
        channel: "t".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(insights),
        created_at: Utc::now(),
        mentions: Mentions::default(),
    }
}

/// A notification of one informational insight, both numbered `k`.
pub fn single(k: u64) -> Notification {
    notification(k, vec![insight(k, Severity::Info)])
}

/// A channel that renders one part per insight, records what it sends and fails as
/// scripted.
#[derive(Clone, Default)]
pub struct Script {
    pub sent: Rc<RefCell<Vec<String>>>,
    /// Errors returned by the next sends, in order.
    pub errors: Rc<RefCell<VecDeque<ChannelError>>>,
    pub digests: Rc<Cell<usize>>,
    /// Notifications (by id) whose rendering fails for good.
    pub unrenderable: Rc<RefCell<Vec<u64>>>,
}

impl Channel for Script {
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        if self.unrenderable.borrow().contains(&n.id) {
            return Err(ChannelError::Permanent {
                reason: format!("notification {} is too long", n.id),
            });
        }
        Ok(n.insights.iter().map(|i| i.title.clone()).collect())
    }

    fn render_digest(
        &self,
        n: &Notification,
        max_parts: usize,
    ) -> Result<Vec<String>, ChannelError> {
        self.digests.set(self.digests.get() + 1);
        let titles: Vec<String> = n.insights.iter().map(|i| i.title.clone()).collect();
        Ok(vec![format!("digest {}: {}", max_parts, titles.join(","))])
    }

    fn send(&self, part: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let next = self.errors.borrow_mut().pop_front();
        if next.is_none() {
            self.sent.borrow_mut().push(part);
        }
        Box::pin(futures_util::future::ready(next.map_or(Ok(()), Err)))
    }
}

pub fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        deadline: Duration::from_secs(10),
    }
}

pub fn discard() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

pub fn retryable(reason: &str) -> ChannelError {
    ChannelError::Retryable {
        reason: reason.into(),
    }
}

/// A rendered entry of notifications `ids`, one insight each, with these parts (JSON).
pub fn rendered(ids: Vec<u64>, parts: &[&str]) -> RenderedEntry {
    RenderedEntry {
        insights: ids.len(),
        notification_ids: ids,
        digest: false,
        parts: parts.iter().map(|s| s.as_bytes().to_vec()).collect(),
    }
}
