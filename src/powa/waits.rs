//! What queries waited on, from pg_wait_sampling as PoWA recorded it: samples per
//! (database, query, wait event) over a window. A sample is one observation of a backend
//! in that wait (every `pg_wait_sampling.profile_period`, 10 ms by default), so samples are
//! proportional to time spent waiting. Background activity has queryid 0 and dbid 0.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::discovery::PowaInfo;
use super::layout::{Layout, SeriesKey};

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
    client: &Client,
    info: &PowaInfo,
    srvid: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<EventNames, tokio_postgres::Error> {
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
    }
}
