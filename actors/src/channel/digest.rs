//! The digest rule: when what is queued does not fit in what the destination's quota
//! allows soon, everything queued goes out as one digest instead of one by one.
//!
//! Nothing is dropped to keep the pace: the merged notification holds every insight, and
//! [`Channel::render_digest`](super::Channel::render_digest) represents each one, in full
//! or counted.

use std::sync::Arc;

use chrono::Utc;

use crate::error::ChannelError;
use crate::message::{Mentions, Notification, NotifyReason};

/// Whether the oldest queued notification goes alone: when its parts (`head`) and those
/// of the notifications queued after it (`rest`, as part counts) fit in `capacity`.
///
/// `rest` is consumed only as far as needed to know, so a lazy iterator renders no more
/// than that. Without a quota (`capacity` is `usize::MAX`) everything fits and `rest` is
/// not looked at. A head that could not be rendered counts no parts: it fails on its own
/// unless the others alone exceed the capacity.
pub fn oldest_goes_alone<P>(
    head: &Result<Vec<P>, ChannelError>,
    rest: impl IntoIterator<Item = usize>,
    capacity: usize,
) -> bool {
    let head = head.as_ref().map_or(0, Vec::len);
    if head > capacity {
        return false;
    }
    if capacity == usize::MAX {
        return true;
    }
    let mut total = head;
    rest.into_iter().all(|parts| {
        total += parts;
        total <= capacity
    })
}

/// Merges notifications into one: all insights in order, the most urgent reason, every
/// mention once, the latest creation time, the first id.
pub fn merge<'a>(ns: impl IntoIterator<Item = &'a Notification>) -> Notification {
    let mut it = ns.into_iter();
    let Some(first) = it.next() else {
        return Notification {
            id: 0,
            channel: String::new(),
            reason: NotifyReason::Report,
            insights: Arc::new(Vec::new()),
            created_at: Utc::now(),
            mentions: Mentions::default(),
        };
    };
    let mut out = first.clone();
    let mut insights = first.insights.as_ref().clone();
    for n in it {
        insights.extend(n.insights.iter().cloned());
        if n.reason == NotifyReason::Immediate {
            out.reason = NotifyReason::Immediate;
        }
        out.created_at = out.created_at.max(n.created_at);
        for u in &n.mentions.userids {
            if !out.mentions.userids.contains(u) {
                out.mentions.userids.push(u.clone());
            }
        }
        for m in &n.mentions.mobiles {
            if !out.mentions.mobiles.contains(m) {
                out.mentions.mobiles.push(m.clone());
            }
        }
    }
    out.insights = Arc::new(insights);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::testing::{insight, notification};
    use crate::message::Severity;

    #[test]
    fn merge_keeps_every_insight_and_the_most_urgent_reason() {
        let a = notification(1, vec![insight(1, Severity::Info)]);
        let mut b = notification(
            2,
            vec![
                insight(2, Severity::Critical),
                insight(3, Severity::Warning),
            ],
        );
        b.reason = NotifyReason::Immediate;
        b.mentions.userids = vec!["alice".into()];
        let m = merge([&a, &b]);
        assert_eq!(m.id, 1);
        assert_eq!(m.reason, NotifyReason::Immediate);
        assert_eq!(m.insights.len(), 3);
        assert_eq!(m.mentions.userids, ["alice"]);
    }

    #[test]
    fn merge_keeps_each_mention_once_and_the_latest_time() {
        let mut a = notification(1, vec![]);
        let mut b = notification(2, vec![]);
        a.mentions.mobiles = vec!["138".into()];
        b.mentions.mobiles = vec!["138".into(), "139".into()];
        b.created_at = a.created_at + chrono::TimeDelta::minutes(5);
        let m = merge([&a, &b]);
        assert_eq!(m.mentions.mobiles, ["138", "139"]);
        assert_eq!(m.created_at, b.created_at);
        assert_eq!(merge([]).insights.len(), 0);
    }

    fn parts(n: usize) -> Result<Vec<()>, ChannelError> {
        Ok(vec![(); n])
    }

    #[test]
    fn the_oldest_goes_alone_while_the_queue_fits() {
        assert!(oldest_goes_alone(&parts(2), [1, 1], 4));
        assert!(!oldest_goes_alone(&parts(2), [1, 2], 4));
        assert!(!oldest_goes_alone(&parts(5), [], 4), "alone, still too big");
        assert!(oldest_goes_alone(&parts(5), [9, 9], usize::MAX));
    }

    #[test]
    fn the_rest_is_looked_at_only_as_far_as_needed() {
        let mut looked = 0;
        let rest = (0..10).inspect(|_| looked += 1).map(|_| 2);
        assert!(!oldest_goes_alone(&parts(1), rest, 4));
        assert_eq!(
            looked, 2,
            "1 + 2 fits, 1 + 2 + 2 does not: the third is not rendered"
        );
        let mut looked = 0;
        let rest = (0..10).inspect(|_| looked += 1).map(|_| 2);
        assert!(oldest_goes_alone(&parts(1), rest, usize::MAX));
        assert_eq!(looked, 0, "no quota: nothing else rendered");
    }

    #[test]
    fn a_head_that_cannot_be_rendered_counts_no_parts() {
        let failed: Result<Vec<()>, ChannelError> = Err(ChannelError::Permanent {
            reason: "too long".into(),
        });
        assert!(oldest_goes_alone(&failed, [4], 4));
        assert!(!oldest_goes_alone(&failed, [3, 2], 4));
    }
}
