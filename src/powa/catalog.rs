//! PoWA 5's own records of a remote server's objects, read from the repository with no
//! connection to the server: which indexes existed when, and how a table was scanned.
//!
//! **Catalog snapshots.** powa-collector copies each remote database's `pg_class`,
//! `pg_namespace` … into `powa_catalog_class`, `powa_catalog_namespace` … (current state
//! only, keyed `(srvid, dbid, oid)`), and stamps `powa_catalog_databases.last_refresh`.
//! It refreshes a database at most once a year unless asked (powa-web's "refresh
//! catalog", or `NOTIFY powa_collector, 'REFRESH_DB_CAT - <srvid> 1 <datname>'`), so a
//! look is only as new as its refresh: the index tracker ([`super::indexes`]) compares
//! one refresh with the previous one, and [`catalog_note`] says how old the catalog is
//! when that is old. The catalog has no `pg_index`: an index's table comes from PoWA's
//! index statistics (below), and its definition is not known (no statement rebuilds it).
//!
//! **Relation statistics** (db modules `pg_stat_all_indexes`, `pg_stat_all_tables`,
//! remote servers only): `powa_all_indexes_history(_current)` has a record per index
//! per snapshot, so the last record of a dropped index says when it was last seen and
//! the table's next record when it was found gone; `powa_all_tables_history(_current)`
//! has `seq_scan` and `idx_scan` per table, read as scans per hour over a window
//! ([`table_scans`]).
//!
//! PoWA 4 keeps neither for local or remote servers in this form: there the index
//! tracker reads the monitored server itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::discovery::PowaInfo;
use super::indexes::IndexRow;
use super::session::{QueryError, Session};

/// A catalog refreshed longer ago than this is called old: index changes since are not
/// known from it.
pub const OLD: Duration = Duration::days(7);

/// One remote database's catalog as PoWA last refreshed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Refresh {
    pub database: String,
    pub dbid: u32,
    pub at: DateTime<Utc>,
}

/// Whether the repository keeps catalog snapshots at all (PoWA 5).
pub fn kept(info: &PowaInfo) -> bool {
    info.version.major >= 5
}

/// The server's refreshed database catalogs, PoWA's own database left out (its objects
/// are PoWA's, not the workload's). Empty for the local server (PoWA keeps no catalog
/// of it) or a server whose catalogs were never refreshed.
pub async fn refreshes(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
) -> Result<Vec<Refresh>, QueryError> {
    if !kept(info) {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT d.datname::text, d.oid, d.last_refresh FROM {}.powa_catalog_databases d \
          WHERE d.srvid = $1 AND d.last_refresh IS NOT NULL AND d.datname <> $2 \
            AND d.datname NOT IN ('template0', 'template1') ORDER BY 1",
        info.schema
    );
    let rows = client.query(&sql, &[&srvid, &info.database]).await?;
    Ok(rows
        .iter()
        .map(|r| Refresh {
            database: r.get(0),
            dbid: r.get(1),
            at: r.get(2),
        })
        .collect())
}

/// The indexes of one database's catalog, each with its table where PoWA's index
/// statistics name it (else an empty table), and no definition.
pub async fn indexes(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    dbid: u32,
) -> Result<Vec<IndexRow>, QueryError> {
    let p = &info.schema;
    // Which table each index belongs to: the catalog has no pg_index, PoWA's index
    // statistics have (relid, indexrelid). Read once per refresh, not per cycle.
    let sql = format!(
        "WITH owner AS ( \
           SELECT DISTINCT h.indexrelid, h.relid FROM {p}.powa_all_indexes_history h \
            WHERE h.srvid = $1 AND h.dbid = $2 \
           UNION SELECT c.indexrelid, c.relid FROM {p}.powa_all_indexes_history_current c \
            WHERE c.srvid = $1 AND c.dbid = $2) \
         SELECT quote_ident(n.nspname) || '.' || quote_ident(i.relname), \
                coalesce(quote_ident(tn.nspname) || '.' || quote_ident(t.relname), ''), \
                i.oid, t.oid \
           FROM {p}.powa_catalog_class i \
           JOIN {p}.powa_catalog_namespace n \
             ON n.srvid = i.srvid AND n.dbid = i.dbid AND n.oid = i.relnamespace \
           LEFT JOIN (SELECT DISTINCT ON (indexrelid) indexrelid, relid FROM owner) o \
             ON o.indexrelid = i.oid \
           LEFT JOIN {p}.powa_catalog_class t \
             ON t.srvid = i.srvid AND t.dbid = i.dbid AND t.oid = o.relid \
           LEFT JOIN {p}.powa_catalog_namespace tn \
             ON tn.srvid = t.srvid AND tn.dbid = t.dbid AND tn.oid = t.relnamespace \
          WHERE i.srvid = $1 AND i.dbid = $2 AND i.relkind IN ('i', 'I') \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
            AND n.nspname NOT LIKE 'pg\\_toast%'"
    );
    let rows = client.query(&sql, &[&srvid, &dbid]).await?;
    Ok(rows
        .iter()
        .map(|r| IndexRow {
            index: r.get(0),
            table: r.get(1),
            def: String::new(),
            oids: r
                .get::<_, Option<u32>>(3)
                .map(|table| (r.get::<_, u32>(2), table)),
        })
        .collect())
}

/// When a dropped index was last seen and found gone, from PoWA's statistics: its last
/// record, and its table's first record after that (None where PoWA has no record).
pub async fn last_seen(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    dbid: u32,
    (index, table): (u32, u32),
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), QueryError> {
    let p = &info.schema;
    // Both through the (srvid, relid, coalesce_range) index of the history tables.
    let seen = format!(
        "SELECT max(ts) FROM ( \
           SELECT max((r).ts) AS ts FROM {p}.powa_all_indexes_history h \
             CROSS JOIN LATERAL unnest(h.records) r \
            WHERE h.srvid = $1 AND h.relid = $3 AND h.dbid = $2 AND h.indexrelid = $4 \
           UNION ALL \
           SELECT max((c.record).ts) FROM {p}.powa_all_indexes_history_current c \
            WHERE c.srvid = $1 AND c.dbid = $2 AND c.indexrelid = $4) x"
    );
    let row = client
        .query(&seen, &[&srvid, &dbid, &table, &index])
        .await?;
    let Some(until) = row
        .first()
        .and_then(|r| r.get::<_, Option<DateTime<Utc>>>(0))
    else {
        return Ok((None, None));
    };
    let gone = format!(
        "SELECT min(ts) FROM ( \
           SELECT min((r).ts) AS ts FROM {p}.powa_all_tables_history h \
             CROSS JOIN LATERAL unnest(h.records) r \
            WHERE h.srvid = $1 AND h.relid = $3 AND h.dbid = $2 \
              AND h.coalesce_range && tstzrange($4, NULL, '()') AND (r).ts > $4 \
           UNION ALL \
           SELECT min((c.record).ts) FROM {p}.powa_all_tables_history_current c \
            WHERE c.srvid = $1 AND c.dbid = $2 AND c.relid = $3 AND (c.record).ts > $4) x"
    );
    let row = client
        .query(&gone, &[&srvid, &dbid, &table, &until])
        .await?;
    Ok((Some(until), row.first().and_then(|r| r.get(0))))
}

/// A table's scans per hour over a window.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scans {
    pub seq_per_hour: f64,
    pub idx_per_hour: f64,
}

/// Scans per hour from cumulative `(ts, seq_scan, idx_scan)` points, oldest first: the
/// growth between the first and the last point over the time between them (a counter
/// that went down, a statistics reset, counts from there). None with fewer than two
/// points or no time between them.
pub fn rates(points: &[(DateTime<Utc>, i64, i64)]) -> Option<Scans> {
    let (first, last) = (points.first()?, points.last()?);
    let hours = (last.0 - first.0).num_milliseconds() as f64 / 3_600_000.0;
    if hours <= 0.0 {
        return None;
    }
    let mut seq = 0i64;
    let mut idx = 0i64;
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        seq += if b.1 >= a.1 { b.1 - a.1 } else { b.1 };
        idx += if b.2 >= a.2 { b.2 - a.2 } else { b.2 };
    }
    Some(Scans {
        seq_per_hour: seq as f64 / hours,
        idx_per_hour: idx as f64 / hours,
    })
}

/// A table's scans in a window and in its baseline, as PoWA recorded them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableScans {
    pub database: String,
    /// `schema.table`, as the index changes name it.
    pub table: String,
    pub then: Option<Scans>,
    pub now: Option<Scans>,
}

/// The scans per hour of `table` (`schema.table`, quoted as `quote_ident` does) of
/// database `dbid` over `windows` (each [start, end]), found by name in the catalog.
/// Empty when the catalog does not know the table.
pub async fn table_scans(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    dbid: u32,
    table: &str,
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<Option<Scans>>, QueryError> {
    let p = &info.schema;
    let relid = format!(
        "SELECT t.oid FROM {p}.powa_catalog_class t \
           JOIN {p}.powa_catalog_namespace n \
             ON n.srvid = t.srvid AND n.dbid = t.dbid AND n.oid = t.relnamespace \
          WHERE t.srvid = $1 AND t.dbid = $2 AND t.relkind IN ('r', 'p', 'm') \
            AND quote_ident(n.nspname) || '.' || quote_ident(t.relname) = $3"
    );
    let rows = client.query(&relid, &[&srvid, &dbid, &table]).await?;
    let Some(relid) = rows.first().map(|r| r.get::<_, u32>(0)) else {
        return Ok(Vec::new());
    };
    // A table without any index has a NULL idx_scan: no index scans.
    let points = format!(
        "SELECT ts, coalesce(seq_scan, 0), coalesce(idx_scan, 0) FROM ( \
           SELECT (r).ts, (r).seq_scan, (r).idx_scan FROM {p}.powa_all_tables_history h \
             CROSS JOIN LATERAL unnest(h.records) r \
            WHERE h.srvid = $1 AND h.relid = $3 AND h.dbid = $2 \
              AND h.coalesce_range && tstzrange($4, $5, '[]') AND (r).ts BETWEEN $4 AND $5 \
           UNION ALL \
           SELECT (c.record).ts, (c.record).seq_scan, (c.record).idx_scan \
             FROM {p}.powa_all_tables_history_current c \
            WHERE c.srvid = $1 AND c.dbid = $2 AND c.relid = $3 \
              AND (c.record).ts BETWEEN $4 AND $5) x ORDER BY 1"
    );
    let mut out = Vec::new();
    for (start, end) in windows {
        // Read from a little before the window: the counters as they stood at its start.
        let from = *start - (*end - *start).max(Duration::minutes(10));
        let rows = client
            .query(&points, &[&srvid, &dbid, &relid, &from, end])
            .await?;
        let pts: Vec<(DateTime<Utc>, i64, i64)> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get::<_, Option<DateTime<Utc>>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .collect();
        out.push(rates(from_start(&pts, *start)));
    }
    Ok(out)
}

/// The points of a window starting at `start`, from the last one before it (the
/// counters as they stood when it began: scans right after the start are counted even
/// if the first point inside comes after them).
pub fn from_start(
    points: &[(DateTime<Utc>, i64, i64)],
    start: DateTime<Utc>,
) -> &[(DateTime<Utc>, i64, i64)] {
    let inside = points.partition_point(|p| p.0 < start);
    &points[inside.saturating_sub(1)..]
}

/// The scans of every table whose index changed in `tl` (dropped or created, table
/// known), in the baseline window `then` and the window `now` (each [start, end]): what
/// a regression on such a table is told with. Tables the catalog does not know are
/// left out; a database is found by name in the catalog.
pub async fn scans_of(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    tl: &super::changes::Timeline,
    then: (DateTime<Utc>, DateTime<Utc>),
    now: (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<TableScans>, QueryError> {
    use super::changes::What;
    if !kept(info) || srvid == 0 {
        return Ok(Vec::new());
    }
    let mut tables: Vec<(&str, &str)> = tl
        .events
        .iter()
        .filter_map(|e| match &e.what {
            What::IndexDropped {
                database, table, ..
            }
            | What::IndexCreated {
                database, table, ..
            } if !table.is_empty() => Some((database.as_str(), table.as_str())),
            _ => None,
        })
        .collect();
    tables.sort_unstable();
    tables.dedup();
    let dbid = format!(
        "SELECT d.oid FROM {}.powa_catalog_databases d WHERE d.srvid = $1 AND d.datname = $2",
        info.schema
    );
    let mut out = Vec::new();
    for (database, table) in tables {
        let rows = client.query(&dbid, &[&srvid, &database]).await?;
        let Some(dbid) = rows.first().map(|r| r.get::<_, u32>(0)) else {
            continue;
        };
        let got = table_scans(client, info, srvid, dbid, table, &[then, now]).await?;
        if let [a, b] = got[..] {
            out.push(TableScans {
                database: database.to_string(),
                table: table.to_string(),
                then: a,
                now: b,
            });
        }
    }
    Ok(out)
}

/// What `check` says of this source for a server: the catalog's refreshes and whether
/// PoWA collects the relation statistics, or why not and what enables it.
pub async fn describe(
    client: &Session,
    info: &PowaInfo,
    srvid: i32,
    now: DateTime<Utc>,
) -> Result<String, QueryError> {
    if !kept(info) {
        return Ok(
            "none from PoWA (PoWA 5 keeps catalog snapshots; this repository runs \
                   an older PoWA): a monitored connection lets powa-sentinel compare the \
                   server's indexes between cycles"
                .to_string(),
        );
    }
    if srvid == 0 {
        return Ok(
            "none from PoWA (PoWA 5 keeps no catalog of its local server): a \
                   monitored connection lets powa-sentinel compare its indexes between cycles"
                .to_string(),
        );
    }
    let refreshed = refreshes(client, info, srvid).await?;
    let sql = format!(
        "SELECT coalesce(array_agg(m.db_module::text ORDER BY 1) \
                FILTER (WHERE m.enabled), '{{}}') \
           FROM {}.powa_db_module_config m \
          WHERE m.srvid = $1 AND m.db_module IN ('pg_stat_all_indexes', 'pg_stat_all_tables')",
        info.schema
    );
    let modules: Vec<String> = client
        .query(&sql, &[&srvid])
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default();
    let stats = if modules.len() == 2 {
        "relation statistics (pg_stat_all_indexes, pg_stat_all_tables): when an index was last \
         seen, seq and index scans per table"
            .to_string()
    } else {
        format!(
            "no relation statistics (enable them: SELECT powa_activate_db_module({srvid}, \
             'pg_stat_all_indexes'), and 'pg_stat_all_tables', in the PoWA database): a \
             dropped index is dated by the catalog refresh only and its table is not known"
        )
    };
    if refreshed.is_empty() {
        return Ok(format!(
            "PoWA 5 catalog snapshots: never refreshed for this server's databases \
             (refresh them from powa-web, or NOTIFY powa_collector, 'REFRESH_DB_CAT - \
             {srvid} 1 <database>'); {stats}"
        ));
    }
    let looks: Vec<String> = refreshed
        .iter()
        .map(|r| {
            let age = now - r.at;
            let age = if age.num_days() >= 1 {
                format!("{} d", age.num_days())
            } else if age.num_hours() >= 1 {
                format!("{} h", age.num_hours())
            } else {
                format!("{} min", age.num_minutes().max(0))
            };
            format!(
                "{} refreshed {age} ago{}",
                r.database,
                if now - r.at > OLD { " (old)" } else { "" }
            )
        })
        .collect();
    Ok(format!(
        "PoWA 5 catalog snapshots ({}); {stats}",
        looks.join(", ")
    ))
}

/// What to say of a server's catalog when it is old at `now`: its oldest refresh and
/// how to refresh it; None when every refreshed database is recent (or there is none).
pub fn catalog_note(
    refreshed: &BTreeMap<String, DateTime<Utc>>,
    srvid: i32,
    now: DateTime<Utc>,
) -> Option<String> {
    let (db, at) = refreshed.iter().min_by_key(|(_, at)| **at)?;
    let age = now - *at;
    (age > OLD).then(|| {
        format!(
            "PoWA's catalog of database {db} was refreshed {} d ago ({}): index changes since \
             are not known; refresh it from powa-web, or NOTIFY powa_collector, \
             'REFRESH_DB_CAT - {srvid} 1 {db}'",
            age.num_days(),
            at.format("%Y-%m-%d %H:%M UTC")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    #[test]
    fn rates_per_hour_across_a_reset() {
        let r = rates(&[(t(0), 10, 900), (t(30), 16, 1800), (t(60), 22, 2700)]).unwrap();
        assert_eq!(r.seq_per_hour, 12.0);
        assert_eq!(r.idx_per_hour, 1800.0);
        // A reset at 30 min: counts from zero there.
        let r = rates(&[(t(0), 100, 0), (t(30), 5, 0), (t(60), 8, 0)]).unwrap();
        assert_eq!(r.seq_per_hour, 8.0);
        assert!(rates(&[(t(0), 1, 1)]).is_none());
        assert!(rates(&[(t(0), 1, 1), (t(0), 2, 2)]).is_none());
    }

    #[test]
    fn a_window_counts_from_the_last_point_before_it() {
        let pts = [(t(0), 0, 5), (t(10), 0, 9), (t(21), 60, 9), (t(30), 60, 9)];
        let w = from_start(&pts, t(20));
        assert_eq!(w[0].0, t(10));
        let r = rates(w).unwrap();
        assert_eq!(r.seq_per_hour, 60.0 * 60.0 / 20.0);
        assert_eq!(r.idx_per_hour, 0.0);
        assert_eq!(from_start(&pts, t(-5)).len(), 4);
        assert!(from_start(&[], t(0)).is_empty());
    }

    #[test]
    fn an_old_catalog_says_how_to_refresh_it() {
        let mut m = BTreeMap::new();
        m.insert("app".to_string(), t(0));
        assert_eq!(catalog_note(&m, 1, t(60)), None);
        let note = catalog_note(&m, 1, t(0) + Duration::days(40)).unwrap();
        assert!(
            note.starts_with("PoWA's catalog of database app was refreshed 40"),
            "{note}"
        );
        assert!(note.contains("'REFRESH_DB_CAT - 1 1 app'"), "{note}");
        assert_eq!(catalog_note(&BTreeMap::new(), 1, t(0)), None);
    }
}
