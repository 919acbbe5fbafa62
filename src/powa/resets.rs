//! Statistics resets, as PoWA's per-database statement totals show them: after
//! `pg_stat_statements_reset()` (or a crash, which loses the statistics) every database's
//! cumulated calls fall to a fraction of what they were. An eviction of a few statements
//! (`pg_stat_statements.max` reached) lowers a total a little; a fall below half is
//! told as a reset.
//!
//! Read incrementally like the statements (the rows after the newest one read), from
//! `powa_statements_history_db` and its `_current_db` companion, which every PoWA version
//! keeps; a server's resets at one snapshot are one change.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::changes::{Event, What};
use super::discovery::{PowaInfo, ServerInfo};
use super::session::{QueryError, Session};

/// A database's total calls falling below this share of the previous snapshot's is a reset.
const RESET_BELOW: f64 = 0.5;

/// Totals below this many calls are too small to tell a reset from an idle database.
const MIN_CALLS: f64 = 50.0;

/// The resets found for one server, and where its reading stands.
#[derive(Debug, Default)]
pub struct ResetReader {
    /// Newest snapshot read.
    cursor: Option<DateTime<Utc>>,
    /// Each database's total calls at the newest snapshot read.
    last: BTreeMap<u32, f64>,
    events: Vec<Event>,
}

impl ResetReader {
    /// Takes the per-database totals of the snapshots after the cursor (after `since` at
    /// first), oldest first, and keeps the resets they show.
    pub fn push(&mut self, rows: &[(DateTime<Utc>, u32, f64)], names: &BTreeMap<u32, String>) {
        let mut at: BTreeMap<DateTime<Utc>, Vec<u32>> = BTreeMap::new();
        let mut snapshots: BTreeMap<DateTime<Utc>, BTreeMap<u32, f64>> = BTreeMap::new();
        for &(ts, dbid, calls) in rows {
            snapshots.entry(ts).or_default().insert(dbid, calls);
        }
        for (ts, totals) in snapshots {
            // A database with no statement left has no row at all: its total is 0.
            let gone: Vec<u32> = self
                .last
                .keys()
                .filter(|d| !totals.contains_key(d))
                .copied()
                .collect();
            for (dbid, calls) in gone.into_iter().map(|d| (d, 0.0)).chain(totals) {
                if let Some(prev) = self.last.insert(dbid, calls) {
                    if prev >= MIN_CALLS && calls < RESET_BELOW * prev {
                        at.entry(ts).or_default().push(dbid);
                    }
                }
            }
            self.cursor = Some(self.cursor.map_or(ts, |c| c.max(ts)));
        }
        let all = self.last.len();
        for (ts, dbs) in at {
            let databases = if dbs.len() == all {
                Vec::new()
            } else {
                dbs.iter()
                    .map(|d| {
                        names
                            .get(d)
                            .cloned()
                            .unwrap_or_else(|| format!("with oid {d}"))
                    })
                    .collect()
            };
            self.events.push(Event {
                at: ts,
                what: What::StatsReset { databases },
            });
        }
    }

    /// The resets since `since`, oldest first (older ones are forgotten).
    pub fn events(&mut self, since: DateTime<Utc>) -> Vec<Event> {
        self.events.retain(|e| e.at >= since);
        self.events.clone()
    }

    /// Reads the totals recorded since the last cycle and keeps the resets.
    pub async fn cycle(
        &mut self,
        client: &Session,
        info: &PowaInfo,
        server: &ServerInfo,
        since: DateTime<Utc>,
    ) -> Result<(), QueryError> {
        let from = self.cursor.unwrap_or(since);
        let s = &info.schema;
        let multi = info.version.multi_server();
        let srv = |a: &str| {
            if multi {
                format!("{a}.srvid = $2 AND ")
            } else {
                String::new()
            }
        };
        let db_srv = if multi { " AND d.srvid = $2" } else { "" };
        let sql = format!(
            "SELECT x.ts, x.dbid, x.calls::float8, d.datname::text FROM ( \
               SELECT (r).ts AS ts, h.dbid, (r).calls AS calls \
                 FROM {s}.powa_statements_history_db h CROSS JOIN LATERAL unnest(h.records) r \
                WHERE {h}h.coalesce_range && tstzrange($1::timestamptz, NULL, '(]') \
                  AND (r).ts > $1::timestamptz \
               UNION ALL \
               SELECT (c.record).ts, c.dbid, (c.record).calls \
                 FROM {s}.powa_statements_history_current_db c \
                WHERE {c}(c.record).ts > $1::timestamptz) x \
             LEFT JOIN {s}.powa_databases d ON d.oid = x.dbid{db_srv} \
             ORDER BY x.ts, x.dbid",
            h = srv("h"),
            c = srv("c"),
        );
        let rows = if multi {
            client.query(&sql, &[&from, &server.srvid]).await?
        } else {
            client.query(&sql, &[&from]).await?
        };
        let mut names = BTreeMap::new();
        let points: Vec<(DateTime<Utc>, u32, f64)> = rows
            .iter()
            .map(|r| {
                let dbid: u32 = r.get(1);
                if let Some(n) = r.get::<_, Option<String>>(3) {
                    names.insert(dbid, n);
                }
                (r.get(0), dbid, r.get(2))
            })
            .collect();
        self.push(&points, &names);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    #[test]
    fn a_fall_below_half_is_a_reset_and_one_of_every_database_is_the_servers() {
        let names = BTreeMap::from([(1, "app".to_string()), (2, "etl".to_string())]);
        let mut r = ResetReader::default();
        r.push(
            &[
                (t(0), 1, 1000.0),
                (t(0), 2, 500.0),
                (t(5), 1, 900.0), // an eviction: a little less
                (t(5), 2, 600.0),
                (t(10), 1, 30.0), // everything: the server's reset
                (t(10), 2, 20.0),
            ],
            &names,
        );
        // Incremental: the next cycle goes on from the last totals.
        r.push(
            &[
                (t(15), 1, 800.0),
                (t(15), 2, 10.0), // below the floor before: not told
                (t(20), 1, 10.0), // app alone
                (t(20), 2, 12.0),
                (t(25), 1, 400.0),
                (t(25), 2, 300.0),
                (t(30), 2, 310.0), // app has no statement left: its row is gone
            ],
            &names,
        );
        let e = r.events(t(0));
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[2].at, t(30));
        assert_eq!(
            e[2].what,
            What::StatsReset {
                databases: vec!["app".into()]
            }
        );
        assert_eq!(e[0].at, t(10));
        assert_eq!(e[0].what, What::StatsReset { databases: vec![] });
        assert_eq!(
            e[1].what,
            What::StatsReset {
                databases: vec!["app".into()]
            }
        );
        assert_eq!(r.events(t(11)).len(), 2);
    }
}
