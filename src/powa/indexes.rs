//! Indexes that appeared or disappeared on a monitored server: PoWA 4 keeps no catalog,
//! so the collector reads `pg_index` on the server itself (the same direct, read-only
//! sessions as the index advisor's, [`super::monitored`]) for the databases its window's
//! queries run in, and compares each database with what it saw there before.
//!
//! The first look at a database only records what is there (nothing is "new" on the
//! first cycle). A dropped index keeps its definition, so the change can be undone with
//! the exact statement. The comparison is in [`diff`] (pure, time passed in); the shell
//! only reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::changes::{Event, What};
use super::monitored::MonitoredSettings;
use super::reader::StatementsWindow;

/// At most this many databases of a server are looked at per cycle (the ones with the
/// most execution time in the window).
pub const MAX_DATABASES: usize = 10;

/// An index as read from `pg_index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    /// `schema.index`.
    pub index: String,
    /// `schema.table`.
    pub table: String,
    /// `pg_get_indexdef`; empty where it is not known (PoWA 5's catalog).
    pub def: String,
    /// The index's and its table's oids, where PoWA's statistics know them (the
    /// catalog source, [`super::catalog`]): what tells when a dropped index was last
    /// seen.
    pub oids: Option<(u32, u32)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Seen {
    table: String,
    def: String,
    last: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oids: Option<(u32, u32)>,
}

/// What was seen per database of one server, and the changes found so far.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IndexTracker {
    /// Per database, per `schema.index`.
    known: BTreeMap<String, BTreeMap<String, Seen>>,
    events: Vec<Event>,
    /// Per database, the catalog refresh last compared (the catalog source): a refresh
    /// is compared once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    refreshed: BTreeMap<String, DateTime<Utc>>,
    /// Where the above is kept between runs (None: in memory only).
    #[serde(skip)]
    file: Option<PathBuf>,
    #[serde(skip)]
    loaded: bool,
    /// Read the file, never write it (a dry run changes no state).
    #[serde(skip)]
    read_only: bool,
}

/// The file under `[state] dir` that keeps a server's last look at its indexes.
pub fn state_file(dir: &Path, repository: &str, server: &super::discovery::ServerInfo) -> PathBuf {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    dir.join("indexes").join(format!(
        "{}-{}-{}.json",
        safe(repository),
        server.srvid,
        safe(&server.name)
    ))
}

impl IndexTracker {
    /// A tracker kept in `file`: read at its first cycle (a missing or unreadable file
    /// starts afresh: the first look only records), written after each cycle.
    pub fn persisted(file: PathBuf) -> Self {
        IndexTracker {
            file: Some(file),
            ..IndexTracker::default()
        }
    }

    /// This tracker reads its file but never writes it.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let Some(file) = &self.file else {
            return;
        };
        if let Some(kept) = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice::<IndexTracker>(&b).ok())
        {
            self.known = kept.known;
            self.events = kept.events;
            self.refreshed = kept.refreshed;
        }
    }

    /// Writes the tracker to its file (through a temporary file and a rename, so a crash
    /// leaves the old or the new one). A failure only costs the next run its comparison.
    fn save(&self) -> std::io::Result<()> {
        let Some(file) = self.file.as_ref().filter(|_| !self.read_only) else {
            return Ok(());
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, file)
    }

    /// Compares what `database` has now (`rows`, read at `now`) with what was seen there
    /// before, and keeps the changes.
    pub fn diff(&mut self, database: &str, rows: Vec<IndexRow>, now: DateTime<Utc>) {
        let first = !self.known.contains_key(database);
        let known = self.known.entry(database.to_string()).or_default();
        let mut current: BTreeMap<String, Seen> = BTreeMap::new();
        for r in rows {
            if !first && !known.contains_key(&r.index) {
                self.events.push(Event {
                    at: now,
                    what: What::IndexCreated {
                        database: database.to_string(),
                        table: r.table.clone(),
                        index: r.index.clone(),
                    },
                });
            }
            current.insert(
                r.index,
                Seen {
                    table: r.table,
                    def: r.def,
                    last: now,
                    oids: r.oids,
                },
            );
        }
        for (index, seen) in known.iter() {
            if !current.contains_key(index) {
                self.events.push(Event {
                    at: now,
                    what: What::IndexDropped {
                        database: database.to_string(),
                        table: seen.table.clone(),
                        index: index.clone(),
                        def: seen.def.clone(),
                        seen_until: seen.last,
                    },
                });
            }
        }
        *known = current;
    }

    /// The changes found since `since` (older ones are forgotten), oldest first.
    pub fn events(&mut self, since: DateTime<Utc>) -> Vec<Event> {
        self.events.retain(|e| e.at >= since);
        self.events.clone()
    }

    /// The catalog source (PoWA 5, [`super::catalog`]): compares each database's catalog
    /// refreshed since the last look with that look, as of its refresh time. A dropped
    /// index is dated by PoWA's statistics where they have it: last seen at its last
    /// record, found gone at its table's next one (else at the refresh that lacks it).
    /// Returns the refresh time of each database looked at (what [`super::catalog::catalog_note`]
    /// tells the age of); a refresh already compared costs one small query.
    pub async fn catalog_cycle(
        &mut self,
        client: &super::session::Session,
        info: &super::discovery::PowaInfo,
        srvid: i32,
    ) -> Result<BTreeMap<String, DateTime<Utc>>, super::session::QueryError> {
        use super::catalog;
        self.load();
        let refreshes = catalog::refreshes(client, info, srvid).await?;
        for r in &refreshes {
            if self
                .refreshed
                .get(&r.database)
                .is_some_and(|at| *at >= r.at)
            {
                continue;
            }
            let rows = catalog::indexes(client, info, srvid, r.dbid).await?;
            let before = self.events.len();
            let oids: BTreeMap<String, (u32, u32)> = self
                .known
                .get(&r.database)
                .map(|k| {
                    k.iter()
                        .filter_map(|(name, s)| Some((name.clone(), s.oids?)))
                        .collect()
                })
                .unwrap_or_default();
            self.diff(&r.database, rows, r.at);
            for e in &mut self.events[before..] {
                let What::IndexDropped {
                    index, seen_until, ..
                } = &mut e.what
                else {
                    continue;
                };
                let Some(pair) = oids.get(index) else {
                    continue;
                };
                let (last, gone) = catalog::last_seen(client, info, srvid, r.dbid, *pair).await?;
                if let Some(last) = last {
                    *seen_until = last;
                    e.at = gone.unwrap_or(e.at).max(last);
                }
            }
            self.refreshed.insert(r.database.clone(), r.at);
        }
        // A file that cannot be written costs the next run its comparison only.
        let _ = self.save();
        Ok(refreshes.into_iter().map(|r| (r.database, r.at)).collect())
    }

    /// Reads the indexes of the window's busiest databases through `m` and compares them
    /// with the last look. A database that cannot be read is left as it was (nothing is
    /// concluded from a failed read).
    pub async fn cycle(
        &mut self,
        m: &MonitoredSettings,
        label: &str,
        w: &StatementsWindow,
        powa_database: &str,
        now: DateTime<Utc>,
    ) -> std::io::Result<()> {
        self.load();
        for db in busiest_databases(w, powa_database) {
            let Ok(session) = m.connect(label, &db).await else {
                continue;
            };
            let Ok(rows) = session
                .query(
                    "/* powa-sentinel */ SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                            quote_ident(tn.nspname) || '.' || quote_ident(t.relname), \
                            pg_catalog.pg_get_indexdef(i.indexrelid) \
                       FROM pg_catalog.pg_index i \
                       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                       JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
                       JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace \
                      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                        AND n.nspname NOT LIKE 'pg\\_toast%' \
                        AND n.nspname NOT LIKE 'pg\\_temp%'",
                    &[],
                )
                .await
            else {
                continue;
            };
            let rows = rows
                .iter()
                .map(|r| IndexRow {
                    index: r.get(0),
                    table: r.get(1),
                    def: r.get(2),
                    oids: None,
                })
                .collect();
            self.diff(&db, rows, now);
        }
        self.save()
    }
}

/// The databases of the window's queries, most execution time first, PoWA's own left
/// out, at most [`MAX_DATABASES`].
pub fn busiest_databases(w: &StatementsWindow, powa_database: &str) -> Vec<String> {
    let mut time: BTreeMap<&str, f64> = BTreeMap::new();
    for q in &w.queries {
        if let Some(d) = q.database.as_deref().filter(|d| *d != powa_database) {
            *time.entry(d).or_default() += q.get(super::reader::EXEC_TIME);
        }
    }
    let mut v: Vec<(&str, f64)> = time.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .take(MAX_DATABASES)
        .map(|(d, _)| d.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn row(index: &str) -> IndexRow {
        IndexRow {
            index: format!("public.{index}"),
            table: "public.orders".into(),
            def: format!("CREATE INDEX {index} ON public.orders USING btree (x)"),
            oids: None,
        }
    }

    #[test]
    fn the_first_look_records_then_drops_and_creations_are_changes() {
        let mut k = IndexTracker::default();
        k.diff("app", vec![row("a"), row("b")], t(0));
        assert!(
            k.events(t(0)).is_empty(),
            "the first look is the starting state"
        );
        k.diff("app", vec![row("a"), row("b")], t(5));
        k.diff("app", vec![row("b"), row("c")], t(10));
        let e = k.events(t(0));
        assert_eq!(e.len(), 2);
        assert!(matches!(&e[0].what, What::IndexCreated { index, .. } if index == "public.c"));
        match &e[1].what {
            What::IndexDropped {
                index,
                def,
                seen_until,
                ..
            } => {
                assert_eq!(index, "public.a");
                assert_eq!(def, "CREATE INDEX a ON public.orders USING btree (x)");
                assert_eq!(*seen_until, t(5));
            }
            other => panic!("{other:?}"),
        }
        // Another database's first look says nothing; old changes are forgotten.
        k.diff("etl", vec![row("z")], t(20));
        assert_eq!(k.events(t(0)).len(), 2);
        assert!(k.events(t(11)).is_empty());
    }

    #[test]
    fn a_persisted_tracker_compares_with_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = state_file(
            dir.path(),
            "main",
            &super::super::discovery::ServerInfo::named(3, "db 1"),
        );
        assert!(file.ends_with("indexes/main-3-db_1.json"), "{file:?}");
        let mut a = IndexTracker::persisted(file.clone());
        a.load();
        a.diff("app", vec![row("a")], t(0));
        a.save().unwrap();
        let mut b = IndexTracker::persisted(file.clone());
        b.load();
        b.diff("app", vec![], t(5));
        assert!(
            matches!(&b.events(t(0))[0].what, What::IndexDropped { index, .. } if index == "public.a")
        );
        // A read-only tracker (a dry run) compares with the file and leaves it as it was.
        let before = std::fs::read(&file).unwrap();
        let mut dry = IndexTracker::persisted(file.clone()).read_only();
        dry.load();
        dry.diff("app", vec![], t(10));
        dry.save().unwrap();
        assert_eq!(dry.events(t(0)).len(), 1, "compared with the kept look");
        assert_eq!(std::fs::read(&file).unwrap(), before);
    }
}
