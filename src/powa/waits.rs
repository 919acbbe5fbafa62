//! What queries waited on, from pg_wait_sampling as PoWA recorded it: samples per
//! (database, query, wait event) over a window. A sample is one observation of a backend
//! in that wait (every `pg_wait_sampling.profile_period`, 10 ms by default), so samples are
//! proportional to time spent waiting. Background activity has queryid 0 and dbid 0.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::discovery::PowaInfo;
use super::layout::{Layout, SeriesKey};
use super::session::{QueryError, Session};

/// Samples of one wait event for one query over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitStat {
    pub dbid: u32,
    pub queryid: i64,
    pub event_type: Arc<str>,
    pub event: Arc<str>,
    pub samples: f64,
}

/// Event names by the id the layout puts in the key.
pub type EventNames = HashMap<u32, (Arc<str>, Arc<str>)>;

/// The names of the events recorded for a server in [from, to] or later.
pub async fn read_event_names(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<EventNames, QueryError> {
    let layout = Layout::wait_sampling(info);
    let params: Vec<&(dyn ToSql + Sync)> = if info.version.multi_server() {
        vec![&from, &to, &srvid]
    } else {
        vec![&from, &to]
    };
    Ok(client
        .query(&layout.wait_events_sql(), &params)
        .await?
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0) as u32,
                (
                    Arc::from(r.get::<_, &str>(1)),
                    Arc::from(r.get::<_, &str>(2)),
                ),
            )
        })
        .collect())
}

/// Turns per-series sample counts into named wait statistics, most samples first.
pub fn wait_stats(
    totals: impl IntoIterator<Item = (SeriesKey, f64)>,
    names: &EventNames,
) -> Vec<WaitStat> {
    let unknown: Arc<str> = Arc::from("?");
    let mut out: Vec<WaitStat> = totals
        .into_iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(k, samples)| {
            let (event_type, event) = names
                .get(&k.userid)
                .cloned()
                .unwrap_or_else(|| (unknown.clone(), unknown.clone()));
            WaitStat {
                dbid: k.dbid,
                queryid: k.queryid,
                event_type,
                event,
                samples,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.samples
            .total_cmp(&a.samples)
            .then(a.queryid.cmp(&b.queryid))
            .then(a.event.cmp(&b.event))
    });
    out
}

/// What one query waited on most over the window: the event with most samples, its
/// share of the query's samples, and the query's total samples.
pub struct TopWait<'a> {
    pub top: &'a WaitStat,
    pub share: f64,
    pub samples: f64,
}

/// The most sampled wait event of a query, if it was sampled at all. By queryid alone:
/// PoWA's database attribution of samples is not stable (see `Layout::wait_sampling`).
pub fn top_wait(waits: &[WaitStat], queryid: i64) -> Option<TopWait<'_>> {
    let mine = waits.iter().filter(|w| w.queryid == queryid);
    let samples: f64 = mine.clone().map(|w| w.samples).sum();
    let top = mine.max_by(|a, b| a.samples.total_cmp(&b.samples))?;
    (samples > 0.0).then(|| TopWait {
        top,
        share: top.samples / samples,
        samples,
    })
}

/// A hint per wait event type: what a query mostly waiting there is waiting for.
pub fn hint(event_type: &str) -> &'static str {
    match event_type {
        "Lock" => "blocked by other sessions' locks: look for long transactions holding them",
        "LWLock" => "contention inside PostgreSQL (buffers, WAL, lock manager)",
        "IO" => "waiting on disk I/O: reads that do not fit in memory, or slow storage",
        "Client" => {
            "waiting on the client: the application reads results slowly or idles in transaction"
        }
        "IPC" => "waiting on other processes (parallel workers, replication)",
        "Timeout" => "sleeping on purpose (pg_sleep, vacuum delay, lock timeouts)",
        "BufferPin" => "waiting for a buffer pin another session holds",
        "Activity" | "Extension" => "waiting in a background process",
        _ => "CPU or an unnamed wait",
    }
}

/// Whether PoWA samples waits for this server.
pub fn enabled(modules: &[String]) -> bool {
    modules.iter().any(|m| m == "pg_wait_sampling")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_sorted() {
        let key = |q: i64, e: u32| SeriesKey {
            dbid: 5,
            userid: e,
            queryid: q,
            sub: -1,
        };
        let mut names = EventNames::new();
        names.insert(7, ("IO".into(), "DataFileRead".into()));
        let s = wait_stats(
            [
                (key(1, 7), 3.0),
                (key(2, 7), 30.0),
                (key(3, 9), 5.0),
                (key(4, 7), 0.0),
            ],
            &names,
        );
        assert_eq!(s.len(), 3, "zero counts are dropped");
        assert_eq!((s[0].queryid, &*s[0].event), (2, "DataFileRead"));
        assert_eq!(&*s[1].event, "?", "an event PoWA no longer names");

        let t = top_wait(&s, 2).expect("query 2 was sampled");
        assert_eq!(
            (&*t.top.event, t.samples, t.share),
            ("DataFileRead", 30.0, 1.0)
        );
        assert!(top_wait(&s, 4).is_none(), "zero counts were dropped");
    }
}
