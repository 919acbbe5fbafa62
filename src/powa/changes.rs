//! What changed on a monitored server, as PoWA's repository records it: the change
//! timeline the analyzers tell with a regression, a spike or a new heavy query
//! ([`crate::analyze::changes`]).
//!
//! The source is **pg_track_settings**, a PoWA stat extension. Each PoWA snapshot of a
//! server stores, in the repository, every `pg_settings` value that differs from the last
//! one it stored (`pg_track_settings_history`), the same for the per-database and per-role
//! settings of `pg_db_role_setting` (`pg_track_db_role_settings_history`), and the
//! postmaster start time when it moved (`pg_reboot`). Its first snapshot of a server stores
//! every setting: those rows are the starting state, not changes, and are told apart by
//! having no earlier row of the same setting.
//!
//! Read incrementally like the statements: each cycle reads the rows newer than the newest
//! one already kept, and the timeline keeps what lies within the baseline's reach (the
//! nearest baseline window's start, as far back as the findings look), so a cycle costs
//! three index lookups of a few rows.
//!
//! Without pg_track_settings (not installed in the repository, or not snapshotted for
//! this server), the timeline says so with what to do ([`Availability`]), and the findings
//! say "no change history for this server".

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::discovery::{quote_ident, PowaInfo, ServerInfo};
use super::session::{QueryError, Session};

/// PoWA's name for the module.
pub const MODULE: &str = "pg_track_settings";

/// One change, oldest first in a [`Timeline`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum What {
    /// A setting took a new value: server-wide (`database` and `role` None), or for one
    /// database and/or role (`ALTER DATABASE … SET`, `ALTER ROLE … SET`). `from` None: it
    /// was not set before; `to` None: it was removed.
    Setting {
        name: String,
        from: Option<String>,
        to: Option<String>,
        database: Option<String>,
        role: Option<String>,
    },
    /// The postmaster started at `at` (a restart, or a crash and recovery).
    Restart,
    /// An index seen until `seen_until` was gone at `at` ([`super::indexes`]).
    IndexDropped {
        database: String,
        table: String,
        index: String,
        /// Its `CREATE INDEX` statement, as it was.
        def: String,
        seen_until: DateTime<Utc>,
    },
    /// pg_stat_statements' statistics were reset (empty `databases`: every database, the
    /// server's reset or a crash), [`super::resets`].
    StatsReset { databases: Vec<String> },
    /// An index that was not there at the previous look was there at `at`.
    IndexCreated {
        database: String,
        table: String,
        index: String,
    },
}

/// Whether the change history can be read for a server, and if not, what to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Availability {
    Available,
    /// Why not, and what enables it (one sentence each).
    Missing(String),
}

/// A server's changes within the baseline's reach, and whether there is a history at all.
#[derive(Clone, Debug)]
pub struct Timeline {
    pub availability: Availability,
    /// Oldest first.
    pub events: Vec<Event>,
    /// The oldest time the timeline covers (older changes are forgotten).
    pub since: DateTime<Utc>,
    /// Whether the server's indexes are compared between cycles ([`super::indexes`]).
    pub indexes: bool,
    /// The scans of the tables whose indexes changed, in the nearest baseline and in the
    /// window, where PoWA records them ([`super::catalog::table_scans`]).
    pub scans: Vec<super::catalog::TableScans>,
    /// Said when the indexes are known from PoWA 5's catalog and it is old
    /// ([`super::catalog::catalog_note`]).
    pub catalog_note: Option<String>,
}

impl Timeline {
    /// Adds the index changes of [`super::indexes`], keeping the order by time.
    pub fn with_indexes(mut self, events: Vec<Event>) -> Self {
        self.indexes = true;
        self.with(events)
    }

    /// Adds changes of another source (statistics resets), keeping the order by time.
    pub fn with(mut self, events: Vec<Event>) -> Self {
        self.events.extend(events);
        self.events.sort_by_key(|e| e.at);
        self
    }
}

impl Timeline {
    /// A timeline that could not be read: findings say why.
    pub fn missing(why: impl Into<String>, since: DateTime<Utc>) -> Self {
        Timeline {
            availability: Availability::Missing(why.into()),
            events: Vec::new(),
            since,
            indexes: false,
            scans: Vec::new(),
            catalog_note: None,
        }
    }

    pub fn is_available(&self) -> bool {
        self.availability == Availability::Available
    }

    /// The events in [from, to], nearest to `to` first.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<&Event> {
        let mut v: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.at >= from && e.at <= to)
            .collect();
        v.reverse();
        v
    }
}

/// Where pg_track_settings keeps its tables in the repository, and how it keys them.
#[derive(Clone, Debug)]
struct Tables {
    /// The extension's schema, quoted.
    schema: String,
    /// pg_track_settings 2.x keys every row by server; 1.x (PoWA 3) has no `srvid`.
    keyed: bool,
}

/// The change timeline of one server, kept between cycles.
#[derive(Debug, Default)]
pub struct ChangeReader {
    tables: Option<Tables>,
    events: Vec<Event>,
    /// Newest row time read, per history table: the next cycle reads past it.
    cursor: Option<DateTime<Utc>>,
}

impl ChangeReader {
    /// Reads the changes recorded since the last cycle (since `since` on the first), drops
    /// the ones older than `since`, and returns the timeline. `roles` names role oids
    /// (the users of the window's queries); others are told by oid.
    pub async fn cycle(
        &mut self,
        client: &Session,
        info: &PowaInfo,
        server: &ServerInfo,
        since: DateTime<Utc>,
        roles: &HashMap<u32, Arc<str>>,
    ) -> Result<Timeline, QueryError> {
        if let Some(why) = why_unavailable(server) {
            self.events.clear();
            self.cursor = None;
            return Ok(Timeline::missing(why, since));
        }
        let tables = match &self.tables {
            Some(t) => t.clone(),
            None => match find_tables(client).await? {
                Some(t) => {
                    self.tables = Some(t.clone());
                    t
                }
                None => {
                    return Ok(Timeline::missing(
                        format!(
                            "PoWA lists {MODULE} for this server but the extension is not in \
                             the repository database: CREATE EXTENSION {MODULE} there"
                        ),
                        since,
                    ))
                }
            },
        };
        let from = match self.cursor {
            Some(c) if c >= since => c,
            _ => {
                self.events.clear();
                since
            }
        };
        let srvid = server.srvid;
        let mut new = read_settings(client, &tables, srvid, from).await?;
        new.extend(read_db_role_settings(client, info, &tables, srvid, from, roles).await?);
        new.extend(read_restarts(client, &tables, srvid, from).await?);
        if let Some(newest) = new.iter().map(|e| e.at).max() {
            self.cursor = Some(self.cursor.map_or(newest, |c| c.max(newest)));
        } else if self.cursor.is_none() {
            self.cursor = Some(since);
        }
        self.events.extend(new);
        self.events.retain(|e| e.at >= since);
        self.events.sort_by_key(|e| e.at);
        self.events.dedup();
        Ok(Timeline {
            availability: Availability::Available,
            events: self.events.clone(),
            since,
            indexes: false,
            scans: Vec::new(),
            catalog_note: None,
        })
    }
}

/// Why the history could not be read (a query failed on a live session), with what to
/// do: most often the role lacks SELECT on pg_track_settings' tables, which are not
/// PoWA's own (a role granted PoWA's tables does not get them).
pub fn unreadable(e: &QueryError) -> String {
    if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
        format!(
            "this role may not read the {MODULE} history: GRANT SELECT ON pg_track_settings_history, \
             pg_track_db_role_settings_history, pg_reboot TO it in the PoWA database ({e})"
        )
    } else {
        format!("the change history could not be read: {e}")
    }
}

/// Why a server has no change history, from what PoWA says it snapshots for it.
pub fn why_unavailable(server: &ServerInfo) -> Option<String> {
    if server.modules.iter().any(|m| m == MODULE) {
        return None;
    }
    let activate = format!(
        "SELECT powa_activate_extension({}, '{MODULE}') in the PoWA database",
        server.srvid
    );
    Some(if server.disabled_modules.iter().any(|m| m == MODULE) {
        format!("PoWA's {MODULE} snapshots are disabled for this server: {activate}")
    } else if server.srvid == 0 {
        format!(
            "{MODULE} is not installed: install it (Debian: postgresql-<version>-pg-track-settings), \
             CREATE EXTENSION {MODULE} in the PoWA database, then {activate}"
        )
    } else {
        format!(
            "{MODULE} is not snapshotted for this server: install it (Debian: \
             postgresql-<version>-pg-track-settings), CREATE EXTENSION {MODULE} on the server \
             and in the repository's PoWA database, then {activate}"
        )
    })
}

async fn find_tables(client: &Session) -> Result<Option<Tables>, QueryError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
              WHERE c.relnamespace = n.oid AND c.relname = 'pg_track_settings_history' \
                AND a.attname = 'srvid' AND NOT a.attisdropped) \
             FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'pg_track_settings'",
            &[],
        )
        .await?;
    Ok(rows.first().map(|r| Tables {
        schema: quote_ident(r.get::<_, &str>(0)),
        keyed: r.get(1),
    }))
}

impl Tables {
    /// Runs `sql` with `$1` = `from`, and `$2` = `srvid` when the tables are keyed by
    /// server (the SQL then says `… srvid = $2`, see [`by_server`]).
    async fn query(
        &self,
        client: &Session,
        sql: &str,
        from: DateTime<Utc>,
        srvid: i32,
    ) -> Result<Vec<tokio_postgres::Row>, QueryError> {
        if self.keyed {
            client.query(sql, &[&from, &srvid]).await
        } else {
            client.query(sql, &[&from]).await
        }
    }
}

/// A history row's values before and after: columns `to`, `dropped`, `from` and
/// `from_dropped`. A removed setting has no value after it; one that was removed before
/// has none before.
fn before_after(r: &tokio_postgres::Row, cols: [usize; 4]) -> (Option<String>, Option<String>) {
    let [to, dropped, from, from_dropped] = cols;
    let from = if r.get::<_, Option<bool>>(from_dropped) == Some(true) {
        None
    } else {
        r.get(from)
    };
    let to = if r.get::<_, bool>(dropped) {
        None
    } else {
        r.get(to)
    };
    (from, to)
}

/// `AND x.srvid = $n` when the tables are keyed by server.
fn by_server(t: &Tables, alias: &str, n: usize) -> String {
    if t.keyed {
        format!(" AND {alias}.srvid = ${n}")
    } else {
        String::new()
    }
}

/// Server-wide settings that took a new value after `from`. A row with no earlier row of
/// the same setting is the starting state (the first snapshot) unless it came after the
/// first snapshot (a setting that appeared: an extension's, say).
async fn read_settings(
    client: &Session,
    t: &Tables,
    srvid: i32,
    from: DateTime<Utc>,
) -> Result<Vec<Event>, QueryError> {
    let s = &t.schema;
    let sql = format!(
        "WITH first AS (SELECT min(f.ts) AS ts FROM {s}.pg_track_settings_history f \
                        WHERE true{f_srv}) \
         SELECT h.ts, h.name, coalesce(h.setting_pretty, h.setting), h.is_dropped, \
                p.val, p.is_dropped \
           FROM {s}.pg_track_settings_history h \
           CROSS JOIN first \
           LEFT JOIN LATERAL ( \
                SELECT coalesce(q.setting_pretty, q.setting) AS val, q.is_dropped \
                  FROM {s}.pg_track_settings_history q \
                 WHERE q.name = h.name AND q.ts < h.ts{q_srv} \
                 ORDER BY q.ts DESC LIMIT 1) p ON true \
          WHERE h.ts > $1 AND h.ts > first.ts{h_srv} \
          ORDER BY h.ts, h.name",
        f_srv = by_server(t, "f", 2),
        q_srv = by_server(t, "q", 2),
        h_srv = by_server(t, "h", 2),
    );
    let rows = t.query(client, &sql, from, srvid).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (from, to) = before_after(r, [2, 3, 4, 5]);
            Event {
                at: r.get(0),
                what: What::Setting {
                    name: r.get(1),
                    from,
                    to,
                    database: None,
                    role: None,
                },
            }
        })
        .collect())
}

/// Per-database and per-role settings changed after `from` (here every row counts: the
/// first snapshot's rows are the starting state only when they came with it).
async fn read_db_role_settings(
    client: &Session,
    info: &PowaInfo,
    t: &Tables,
    srvid: i32,
    from: DateTime<Utc>,
    roles: &HashMap<u32, Arc<str>>,
) -> Result<Vec<Event>, QueryError> {
    let s = &t.schema;
    let p = &info.schema;
    // Database names as PoWA keeps them (powa_databases, per server since 4.0).
    let db_srv = if info.version.multi_server() {
        " AND d.srvid = h.srvid"
    } else {
        ""
    };
    let sql = format!(
        "WITH first AS (SELECT min(f.ts) AS ts FROM {s}.pg_track_settings_history f \
                        WHERE true{f_srv}) \
         SELECT h.ts, h.name, h.setting, h.is_dropped, p.setting, p.is_dropped, \
                h.setdatabase, h.setrole, d.datname::text \
           FROM {s}.pg_track_db_role_settings_history h \
           CROSS JOIN first \
           LEFT JOIN LATERAL ( \
                SELECT q.setting, q.is_dropped \
                  FROM {s}.pg_track_db_role_settings_history q \
                 WHERE q.name = h.name AND q.setdatabase = h.setdatabase \
                   AND q.setrole = h.setrole AND q.ts < h.ts{q_srv} \
                 ORDER BY q.ts DESC LIMIT 1) p ON true \
           LEFT JOIN {p}.powa_databases d ON d.oid = h.setdatabase{db_srv} \
          WHERE h.ts > $1 AND h.ts > first.ts{h_srv} \
          ORDER BY h.ts, h.name",
        f_srv = by_server(t, "f", 2),
        q_srv = by_server(t, "q", 2),
        h_srv = by_server(t, "h", 2),
    );
    let rows = t.query(client, &sql, from, srvid).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (from, to) = before_after(r, [2, 3, 4, 5]);
            let dbid: u32 = r.get(6);
            let roleid: u32 = r.get(7);
            let datname: Option<String> = r.get(8);
            Event {
                at: r.get(0),
                what: What::Setting {
                    name: r.get(1),
                    from,
                    to,
                    database: (dbid != 0)
                        .then(|| datname.unwrap_or_else(|| format!("with oid {dbid}"))),
                    role: (roleid != 0).then(|| {
                        roles
                            .get(&roleid)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| format!("with oid {roleid}"))
                    }),
                },
            }
        })
        .collect())
}

/// Postmaster starts after `from`.
async fn read_restarts(
    client: &Session,
    t: &Tables,
    srvid: i32,
    from: DateTime<Utc>,
) -> Result<Vec<Event>, QueryError> {
    let sql = format!(
        "SELECT r.ts FROM {}.pg_reboot r WHERE r.ts > $1{} ORDER BY r.ts",
        t.schema,
        by_server(t, "r", 2)
    );
    let rows = t.query(client, &sql, from, srvid).await?;
    Ok(rows
        .iter()
        .map(|r| Event {
            at: r.get(0),
            what: What::Restart,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(modules: &[&str], disabled: &[&str], srvid: i32) -> ServerInfo {
        let mut s = ServerInfo::named(srvid, "s");
        s.modules = modules.iter().map(|m| m.to_string()).collect();
        s.disabled_modules = disabled.iter().map(|m| m.to_string()).collect();
        s
    }

    #[test]
    fn availability_says_what_to_do() {
        assert!(why_unavailable(&server(&["pg_stat_statements", MODULE], &[], 0)).is_none());
        let local = why_unavailable(&server(&["pg_stat_statements"], &[], 0)).unwrap();
        assert!(local.contains("CREATE EXTENSION pg_track_settings in the PoWA database"));
        assert!(local.contains("powa_activate_extension(0, 'pg_track_settings')"));
        let remote = why_unavailable(&server(&[], &[], 3)).unwrap();
        assert!(
            remote.contains("on the server and in the repository"),
            "{remote}"
        );
        assert!(remote.contains("powa_activate_extension(3,"), "{remote}");
        let off = why_unavailable(&server(&[], &[MODULE], 1)).unwrap();
        assert!(off.contains("disabled"), "{off}");
    }

    #[test]
    fn between_is_nearest_first_and_bounded() {
        let t = |m: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + m * 60, 0).unwrap();
        let tl = Timeline {
            availability: Availability::Available,
            events: (0..5)
                .map(|m| Event {
                    at: t(m * 10),
                    what: What::Restart,
                })
                .collect(),
            since: t(0),
            indexes: false,
            scans: Vec::new(),
            catalog_note: None,
        };
        let got: Vec<_> = tl.between(t(5), t(30)).iter().map(|e| e.at).collect();
        assert_eq!(got, [t(30), t(20), t(10)]);
    }
}
