//! The findings queue: how an analyser's report travels from the replica that collected
//! the server to the replica that holds the delivery (the gate and the channels).
//!
//! - A row per (source, analyzer, snapshot): the report's CBOR (metrics may be NaN). The
//!   snapshot number is unique per server across replicas (a collector numbers from the
//!   time it started), so the same report written twice (a retry after a lost COMMIT
//!   reply) is kept once, and two cycles never collide.
//! - Written only under the server's lease, checked in the INSERT itself: a replica that
//!   lost the server (paused past its lease) adds nothing.
//! - Consumed by the delivering replica in `seq` order; a row leaves the queue in the
//!   gate's commit of the decision it fed (`crate::gate::store::pg`), so a report is
//!   decided once, whichever replica dies when.

use chrono::{DateTime, Utc};
use sentinel_actors::gate::Insights;
use sentinel_actors::Insight;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{At, Fail};

/// A report as the queue keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    analyzer: String,
    source: String,
    seq: u64,
    at: DateTime<Utc>,
    insights: Vec<Insight>,
}

/// The report's bytes.
pub fn encode(r: &Insights) -> Result<Vec<u8>, Fail> {
    let body = Body {
        analyzer: r.analyzer.clone(),
        source: r.source.clone(),
        seq: r.seq,
        at: r.at,
        insights: r.insights.clone(),
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&body, &mut bytes)
        .map_err(|e| Fail::Corrupt("queued report", e.to_string()))?;
    Ok(bytes)
}

/// The report of `bytes`.
pub fn decode(seq: i64, bytes: &[u8]) -> Result<Insights, Fail> {
    let b: Body = ciborium::from_reader(bytes)
        .map_err(|e| Fail::Corrupt("queued report", format!("row {seq}: {e}")))?;
    Ok(Insights {
        analyzer: b.analyzer,
        source: b.source,
        seq: b.seq,
        at: b.at,
        insights: b.insights,
    })
}

/// Queues `report` if `member` still holds the lease `lease` (the server's). True when
/// it was queued; false when that lease is not this member's any more, or the same
/// report was queued before.
pub async fn push(
    c: &Client,
    member: &str,
    lease: &str,
    report: &Insights,
    bytes: &[u8],
) -> Result<bool, Fail> {
    let snapshot = report.seq as i64;
    let n = c
        .execute(
            "INSERT INTO findings (source, analyzer, snapshot, body, by_member)
             SELECT $1, $2, $3, $4, $5
             WHERE EXISTS (SELECT 1 FROM leases
                           WHERE name = $6 AND holder = $5 AND expires_at > now())
             ON CONFLICT (source, analyzer, snapshot) DO NOTHING",
            &[
                &report.source,
                &report.analyzer,
                &snapshot,
                &bytes,
                &member,
                &lease,
            ],
        )
        .await
        .at("queue a report")?;
    Ok(n == 1)
}

/// The oldest `limit` reports in the queue, by position.
pub async fn oldest(c: &Client, limit: i64) -> Result<Vec<(i64, Insights)>, Fail> {
    let rows = c
        .query(
            "SELECT seq, body FROM findings ORDER BY seq LIMIT $1",
            &[&limit],
        )
        .await
        .at("read the findings queue")?;
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            Ok((seq, decode(seq, r.get(1))?))
        })
        .collect()
}

/// Removes the reports at `positions` (inside the gate's commit).
pub async fn remove(c: &Client, positions: &[i64]) -> Result<(), Fail> {
    if positions.is_empty() {
        return Ok(());
    }
    c.execute("DELETE FROM findings WHERE seq = ANY($1)", &[&positions])
        .await
        .at("take reports off the queue")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_survives_the_queue_nan_included() {
        let mut i = crate::gate::test_insight(7, sentinel_actors::Severity::Critical);
        i.metrics.insert("ratio".into(), f64::NAN);
        let r = Insights {
            analyzer: "slow_queries".into(),
            source: "main/local".into(),
            seq: 1_772_409_600_000_000,
            at: DateTime::<Utc>::from_timestamp(1_772_409_600, 0).unwrap(),
            insights: vec![i],
        };
        let back = decode(1, &encode(&r).unwrap()).unwrap();
        assert_eq!(back.seq, r.seq);
        assert_eq!(back.source, r.source);
        assert_eq!(back.insights.len(), 1);
        assert!(back.insights[0].metrics["ratio"].is_nan());
        assert!(matches!(decode(9, b"x"), Err(Fail::Corrupt(_, m)) if m.contains("row 9")));
    }
}
