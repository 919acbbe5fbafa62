//! The state backends against one contract: the embedded files of `[state] dir` (redb)
//! and the state database of `[state] dsn` (the lab's `sentinel_state` database on the
//! repo cluster, real PostgreSQL). Each check runs on both; each PostgreSQL test has a
//! schema of its own (dropped at the end), so they run in parallel. Then what only the
//! database has: two processes migrating at once, a newer schema refused, a lost session
//! replaced, an unreachable server said in words.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, TimeZone, Utc};
use powa_sentinel::gate::ack::Ack;
use powa_sentinel::gate::quiet_hours::QuietHoursSettings;
use powa_sentinel::gate::silence::{Matcher, Silence};
use powa_sentinel::gate::store::pg::PgStore;
use powa_sentinel::gate::store::{Commit, GateStore, Store};
use powa_sentinel::gate::{Access, Gate, GateSettings};
use powa_sentinel::outbox::RedbOutbox;
use powa_sentinel::statedb::outbox::PgOutbox;
use powa_sentinel::statedb::{schema, DbSettings, StateDbError};
use sentinel_actors::gate::{Decide, Insights};
use sentinel_actors::message::Mentions;
use sentinel_actors::outbox::{Backlog, EntryBody, Outbox, RenderedEntry, StoredNotification};
use sentinel_actors::{Fingerprint, Insight, NotifyReason, Severity};

use support::sample;

/// Runs `sql` on the state database as its owner (setup and inspection only).
fn admin(sql: &str) -> Vec<String> {
    support::lab().state_sql(sql)
}

/// The settings of a schema of this test's own in the lab's state database.
fn pg_settings(test: &str) -> DbSettings {
    let schema = format!("t_{test}_{}", std::process::id());
    admin(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    let mut state = powa_sentinel::config::StateSettings {
        dsn: Some(powa_sentinel::secret::Secret::new(
            support::lab().state_dsn(),
        )),
        ..Default::default()
    };
    state.schema = schema;
    state.database().expect("a dsn is set")
}

/// Where one test keeps its state: a directory, or a schema of the state database.
enum Backend {
    File(tempfile::TempDir),
    Pg(Box<DbSettings>),
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Pg(db) = self {
            if !std::thread::panicking() {
                admin(&format!("DROP SCHEMA IF EXISTS {} CASCADE", db.schema));
            }
        }
    }
}

impl Backend {
    /// Both backends, fresh, for `test`.
    fn both(test: &str) -> [Backend; 2] {
        [
            Backend::File(tempfile::tempdir().unwrap()),
            Backend::Pg(Box::new(pg_settings(test))),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::File(_) => "redb",
            Backend::Pg(_) => "postgresql",
        }
    }

    /// A new handle that writes (each call: a new file open, or a new connection).
    fn store(&self) -> Box<dyn GateStore> {
        match self {
            Backend::File(d) => Box::new(Store::open(d.path()).unwrap()),
            Backend::Pg(db) => Box::new(PgStore::open(db, Access::ReadWrite).unwrap()),
        }
    }

    /// A new handle that only reads (a preview).
    fn preview(&self) -> Box<dyn GateStore> {
        match self {
            Backend::File(d) => Box::new(Store::open_read_only(d.path())),
            Backend::Pg(db) => Box::new(PgStore::open(db, Access::ReadOnly).unwrap()),
        }
    }

    /// A new outbox handle (the embedded one allows one at a time: drop the last first).
    fn outbox(&self) -> Box<dyn Outbox> {
        match self {
            Backend::File(d) => Box::new(RedbOutbox::open(d.path()).unwrap()),
            Backend::Pg(db) => Box::new(PgOutbox::open(db, Access::ReadWrite).unwrap()),
        }
    }
}

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap() + chrono::TimeDelta::minutes(min)
}

/// Finite metrics: the gate's scopes are JSON, which has no infinity (the embedded store
/// refuses to read one back as well); notifications are CBOR ([`stored`] has one).
fn insight(fp: u64, severity: Severity) -> Insight {
    Insight {
        severity,
        metrics: BTreeMap::from([("ratio".to_string(), 2.5)]),
        ..sample::slow_query(fp, t(0), &[("server", "数据库 🐘"), ("database", "app")])
    }
}

fn report(at: DateTime<Utc>) -> Insights {
    Insights {
        analyzer: "slow_queries".into(),
        source: "main/db1".into(),
        seq: 1,
        at,
        insights: vec![
            insight(1, Severity::Critical),
            insight(2, Severity::Warning),
        ],
    }
}

/// Quiet 00:00–07:00 UTC below critical: a night report gives an immediate notification
/// (the critical) and a held item (the warning).
fn gate_settings() -> GateSettings {
    let mut s = GateSettings::default();
    s.quiet_hours.insert(
        "ops".into(),
        QuietHoursSettings {
            start: "00:00".into(),
            end: "07:00".into(),
            timezone: "UTC".into(),
            bypass_severity: "critical".into(),
        },
    );
    s
}

fn gate(store: Box<dyn GateStore>) -> Gate {
    let discard = slog::Logger::root(slog::Discard, slog::o!());
    Gate::with_store(
        &gate_settings(),
        &[],
        &["ops".to_string()],
        &[],
        Some(store),
        discard,
    )
    .unwrap()
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn the_gate_state_round_trips_and_a_second_gate_does_not_renotify() {
    for b in Backend::both("gate") {
        let name = b.name();
        let mut first = gate(b.store());
        let out = first.observe(report(t(0)));
        let sent: Vec<u64> = out
            .iter()
            .flat_map(|o| o.insights.iter().map(|i| i.fingerprint.0))
            .collect();
        assert_eq!(
            sent,
            [1],
            "{name}: the critical goes out, the warning is held"
        );
        drop(first);

        let loaded = b.store().load().unwrap();
        assert_eq!(loaded.scopes.len(), 1, "{name}");
        assert_eq!(loaded.held.len(), 1, "{name}: the held warning");
        assert_eq!(loaded.held[0].insight.fingerprint, Fingerprint(2), "{name}");
        assert_eq!(
            loaded.intents.len(),
            1,
            "{name}: decided, not yet journaled"
        );
        let intent = &loaded.intents[0];
        assert_eq!(intent.channel, "ops", "{name}");
        assert_eq!(intent.insights[0].metrics["ratio"], 2.5, "{name}");
        assert_eq!(intent.insights[0].labels["server"], "数据库 🐘", "{name}");
        assert!(
            loaded.next_notification_id >= intent.id,
            "{name}: ids never go back"
        );

        // A preview sees the same, and may not write.
        let preview = b.preview();
        assert!(preview.is_read_only());
        let seen = preview.load().unwrap();
        assert_eq!(json(&seen.scopes), json(&loaded.scopes), "{name}");
        assert_eq!(json(&seen.held), json(&loaded.held), "{name}");
        assert!(preview.write(&Commit::default()).is_err(), "{name}");

        // A second gate on a new handle remembers: the same report notifies nothing.
        let mut second = gate(b.store());
        let again = second.observe(report(t(5)));
        assert!(
            again.iter().all(|o| o.insights.is_empty()),
            "{name}: re-notified {again:?}"
        );
        drop(second);

        // A commit's deletions apply before its puts, in one transaction.
        let store = b.store();
        let keep = StoredNotification {
            id: u64::MAX - 1,
            ..intent.clone()
        };
        store
            .write(&Commit {
                held_del: vec![loaded.held[0].id],
                intents_del: vec![intent.id, keep.id],
                intents_put: vec![&keep],
                next_notification_id: Some(u64::MAX - 1),
                ..Commit::default()
            })
            .unwrap();
        let after = b.store().load().unwrap();
        assert!(after.held.is_empty(), "{name}");
        assert_eq!(after.intents, [keep], "{name}: ids keep 64 bits");
        assert_eq!(after.next_notification_id, u64::MAX - 1, "{name}");
    }
}

fn silence(fp: Option<u64>, ends: i64) -> Silence {
    Silence {
        id: 0,
        fingerprint: fp.map(Fingerprint),
        matchers: vec![Matcher::parse("server=~数据.*").unwrap()],
        starts_at: t(0),
        ends_at: t(ends),
        reason: "maintenance".into(),
        author: "alice".into(),
        created_at: t(0),
    }
}

#[test]
fn silences_get_ids_expire_and_acks_replace_and_end() {
    for b in Backend::both("silences") {
        let name = b.name();
        let store = b.store();
        assert_eq!(
            store.add_silence(silence(None, 60)).unwrap().id,
            1,
            "{name}"
        );
        assert_eq!(
            store.add_silence(silence(Some(7), 90)).unwrap().id,
            2,
            "{name}"
        );
        let e = store.expire_silence(1, t(10)).unwrap().unwrap();
        assert_eq!(e.ends_at, t(10), "{name}");
        // Expiring later than it ends changes nothing.
        let e = store.expire_silence(2, t(500)).unwrap().unwrap();
        assert_eq!(e.ends_at, t(90), "{name}");
        assert!(store.expire_silence(9, t(10)).unwrap().is_none(), "{name}");

        let ack = |by: &str, fp: u64| Ack {
            fingerprint: Fingerprint(fp),
            by: by.into(),
            at: t(3),
            note: Some("known".into()),
            title: "finding".into(),
        };
        store.add_ack(&ack("bob", 1)).unwrap();
        store.add_ack(&ack("carol", 1)).unwrap();
        store.add_ack(&ack("dave", u64::MAX)).unwrap();
        drop(store);

        // Another handle (another process) sees it all; silences come compiled.
        let other = b.store();
        let all = other.silences().unwrap();
        assert_eq!(all.len(), 2, "{name}");
        assert_eq!((all[0].id, all[0].ends_at), (1, t(10)), "{name}");
        assert_eq!(all[1].fingerprint, Some(Fingerprint(7)), "{name}");
        let mut i = insight(3, Severity::Info);
        i.labels.insert("server".into(), "数据库7".into());
        assert!(all[0].matchers[0].matches(&i), "{name}: compiled on load");
        let mut acks = other.acks().unwrap();
        acks.sort_by_key(|a| a.by.clone());
        assert_eq!(
            acks.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
            ["carol", "dave"],
            "{name}: one per finding, the latest"
        );
        other
            .write(&Commit {
                acks_del: vec![Fingerprint(1)],
                ..Commit::default()
            })
            .unwrap();
        let left = b.preview().acks().unwrap();
        assert_eq!(left.len(), 1, "{name}");
        assert_eq!(left[0].fingerprint, Fingerprint(u64::MAX), "{name}");
        // A silence added next does not reuse an id.
        assert_eq!(other.add_silence(silence(None, 5)).unwrap().id, 3, "{name}");
    }
}

fn stored(id: u64) -> StoredNotification {
    let mut i = insight(id, Severity::Critical);
    i.metrics.insert("growth".into(), f64::INFINITY);
    StoredNotification {
        id,
        channel: "ops".into(),
        reason: NotifyReason::Immediate,
        insights: vec![i],
        created_at: t(0),
        mentions: Mentions {
            userids: vec!["alice".into()],
            mobiles: vec![],
        },
    }
}

#[test]
fn an_outbox_entry_lives_through_accept_render_progress_fail_requeue_and_done() {
    for b in Backend::both("outbox") {
        let name = b.name();
        let o = b.outbox();
        let a = o.accept("ops", &stored(1)).unwrap().unwrap();
        let q = o.accept("ops", &stored(2)).unwrap().unwrap();
        let f = o.accept("other", &stored(3)).unwrap().unwrap();
        assert!(a < q && q < f, "{name}: sequence numbers grow");
        assert_eq!(
            o.accept("ops", &stored(1)).unwrap(),
            None,
            "{name}: offered twice"
        );
        assert!(
            o.accept("other", &stored(1)).unwrap().is_some(),
            "{name}: ids are per channel"
        );
        let accepted_at = o.entries("ops").unwrap()[0].accepted_at.unwrap();
        let r = o
            .render(
                "ops",
                &[a, q],
                &RenderedEntry {
                    notification_ids: vec![1, 2],
                    insights: 2,
                    digest: true,
                    parts: vec![b"part one".to_vec(), "第二".as_bytes().to_vec()],
                },
            )
            .unwrap();
        assert!(r > f, "{name}");
        let e = o.entries("ops").unwrap();
        assert_eq!(e.len(), 1, "{name}: the queued entries were replaced");
        assert_eq!(e[0].seq, r, "{name}");
        assert_eq!(
            e[0].accepted_at.map(|t| t.timestamp_micros()),
            Some(accepted_at.timestamp_micros()),
            "{name}: the rendered entry is as old as its oldest notification"
        );
        o.progress(r, 1).unwrap();
        assert_eq!(o.entries("ops").unwrap()[0].next_part, 1, "{name}");
        o.fail(f, "errcode 93000").unwrap();
        assert!(!o.requeue(r).unwrap(), "{name}: not failed");
        assert_eq!(
            o.backlog().unwrap(),
            [
                Backlog {
                    channel: "ops".into(),
                    pending: 1,
                    failed: 0
                },
                Backlog {
                    channel: "other".into(),
                    pending: 1,
                    failed: 1
                }
            ],
            "{name}"
        );
        let other = o.entries("other").unwrap();
        assert_eq!(other[0].failed.as_deref(), Some("errcode 93000"), "{name}");
        assert_eq!(other[0].body, EntryBody::Queued(stored(3)), "{name}");
        assert!(o.requeue(f).unwrap(), "{name}");
        assert_eq!(o.entries("other").unwrap()[0].failed, None, "{name}");
        o.done(r).unwrap();
        assert!(o.entries("ops").unwrap().is_empty(), "{name}");

        // Send times: whole seconds (the database keeps microseconds).
        let now = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
        o.record_sent("ops", now - chrono::TimeDelta::hours(2))
            .unwrap();
        o.record_sent("ops", now - chrono::TimeDelta::seconds(90))
            .unwrap();
        o.record_sent("ops", now).unwrap();
        o.record_sent("other", now).unwrap();
        let minute = now - chrono::TimeDelta::minutes(1);
        assert_eq!(o.sent_since("ops", minute).unwrap(), [now], "{name}");
        assert_eq!(
            o.sent_since("ops", now - chrono::TimeDelta::hours(3))
                .unwrap()
                .len(),
            2,
            "{name}: older than an hour is forgotten"
        );
        drop(o);

        // Reopened: pending entries, send times, accepted ids and the sequence survive.
        let o = b.outbox();
        assert_eq!(o.entries("other").unwrap().len(), 2, "{name}");
        assert_eq!(o.sent_since("ops", minute).unwrap(), [now], "{name}");
        assert_eq!(
            o.accept("ops", &stored(1)).unwrap(),
            None,
            "{name}: delivered long ago"
        );
        assert_eq!(o.accept("ops", &stored(2)).unwrap(), None, "{name}");
        let n = o.accept("ops", &stored(4)).unwrap().unwrap();
        assert!(n > r, "{name}: sequence numbers keep growing");
    }
}

#[test]
fn a_reopened_state_holds_everything_written_before() {
    for b in Backend::both("reopen") {
        let name = b.name();
        let (seq, silence_id) = {
            let mut g = gate(b.store());
            g.observe(report(t(0)));
            let s = b.store().add_silence(silence(Some(2), 600)).unwrap();
            let o = b.outbox();
            let seq = o.accept("ops", &stored(11)).unwrap().unwrap();
            o.progress(seq, 0).unwrap();
            o.record_sent("ops", Utc::now()).unwrap();
            (seq, s.id)
        };
        // Every handle is closed now; a new process opens the same state.
        let loaded = b.store().load().unwrap();
        assert_eq!(loaded.scopes.len(), 1, "{name}");
        assert_eq!(loaded.held.len(), 1, "{name}");
        assert_eq!(loaded.intents.len(), 1, "{name}");
        assert_eq!(loaded.silences.len(), 1, "{name}");
        assert_eq!(loaded.silences[0].id, silence_id, "{name}");
        assert!(loaded.next_notification_id > 0, "{name}");
        let o = b.outbox();
        let e = o.entries("ops").unwrap();
        assert_eq!(e.len(), 1, "{name}");
        assert_eq!(
            (e[0].seq, &e[0].body),
            (seq, &EntryBody::Queued(stored(11))),
            "{name}"
        );
        let recent = o
            .sent_since("ops", Utc::now() - chrono::TimeDelta::minutes(1))
            .unwrap();
        assert_eq!(recent.len(), 1, "{name}");
    }
}

fn versions(schema: &str) -> Vec<String> {
    admin(&format!(
        "SELECT version::text FROM {schema}.sentinel_schema"
    ))
}

#[test]
fn processes_starting_together_migrate_once() {
    let db = pg_settings("migrate");
    let schema_name = db.schema.clone();
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let opened: Vec<_> = (0..n)
        .map(|i| {
            let (db, barrier) = (db.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                if i % 2 == 0 {
                    PgStore::open(&db, Access::ReadWrite)
                        .map(|s| s.version())
                        .map_err(|e| e.to_string())
                } else {
                    PgOutbox::open(&db, Access::ReadWrite)
                        .map(|_| schema::VERSION)
                        .map_err(|e| e.to_string())
                }
            })
        })
        .collect();
    for h in opened {
        let v = h.join().unwrap().unwrap();
        assert_eq!(v, schema::VERSION);
    }
    assert_eq!(versions(&schema_name), [schema::VERSION.to_string()]);
    // Everything is usable by all.
    let s = PgStore::open(&db, Access::ReadWrite).unwrap();
    assert_eq!(s.add_silence(silence(None, 5)).unwrap().id, 1);
    admin(&format!("DROP SCHEMA {schema_name} CASCADE"));
}

#[test]
fn a_schema_newer_than_the_binary_is_refused_with_its_version() {
    let db = pg_settings("newer");
    drop(PgStore::open(&db, Access::ReadWrite).unwrap());
    let newer = schema::VERSION + 1;
    admin(&format!(
        "UPDATE {}.sentinel_schema SET version = {newer}",
        db.schema
    ));
    for access in [Access::ReadWrite, Access::ReadOnly] {
        let e = PgStore::open(&db, access).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(&e, powa_sentinel::gate::store::StoreError::Database(StateDbError::Newer { found, known, .. }) if *found == newer && *known == schema::VERSION),
            "{text}"
        );
        assert!(text.contains(&format!("version {newer}")), "{text}");
        assert!(text.contains("upgrade this one"), "{text}");
    }
    let e = PgOutbox::open(&db, Access::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer than this powa-sentinel knows"), "{e}");
    // Nothing was migrated down.
    assert_eq!(versions(&db.schema), [newer.to_string()]);
    admin(&format!("DROP SCHEMA {} CASCADE", db.schema));
}

#[test]
fn a_preview_of_a_database_never_written_reads_empty_and_creates_nothing() {
    let db = pg_settings("preview");
    let p = PgStore::open(&db, Access::ReadOnly).unwrap();
    assert_eq!(p.version(), 0);
    assert!(p.load().unwrap().scopes.is_empty());
    assert!(p.silences().unwrap().is_empty());
    assert!(p.add_silence(silence(None, 5)).is_err());
    let exists = admin(&format!(
        "SELECT count(*)::text FROM pg_namespace WHERE nspname = '{}'",
        db.schema
    ));
    assert_eq!(exists, ["0"], "a preview creates no schema");
    let h = powa_sentinel::statedb::health(&db).unwrap();
    assert_eq!((h.version, h.not_writable.as_deref()), (0, None), "{h:?}");
    assert!(h.line().contains("schema not created yet"), "{}", h.line());
}

#[test]
fn a_lost_session_is_replaced_at_the_next_call() {
    let db = pg_settings("reconnect");
    let store = PgStore::open(&db, Access::ReadWrite).unwrap();
    store.add_silence(silence(None, 5)).unwrap();
    let killed = admin(&format!(
        "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity
         WHERE application_name = 'powa-sentinel/{}'",
        db.schema
    ));
    assert_eq!(killed, ["1"]);
    // Give the server a moment to close it: the next call finds it closed at BEGIN.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(store.add_silence(silence(None, 5)).unwrap().id, 2);
    assert_eq!(store.silences().unwrap().len(), 2);
    let h = powa_sentinel::statedb::health(&db).unwrap();
    assert_eq!(h.version, schema::VERSION);
    assert!(h.line().contains("reachable, writable"), "{}", h.line());
    admin(&format!("DROP SCHEMA {} CASCADE", db.schema));
}

#[test]
fn an_unreachable_database_is_said_in_words() {
    // A port nothing listens on (taken free, then let go).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = powa_sentinel::config::StateSettings {
        dsn: Some(powa_sentinel::secret::Secret::new(format!(
            "host=127.0.0.1 port={port} dbname=x user=x password=secret-word"
        ))),
        connect_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let e = PgStore::open(&state.database().unwrap(), Access::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be reached"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{port}/x")), "{e}");
    assert!(e.contains("check [state] dsn"), "{e}");
    assert!(!e.contains("secret-word"), "{e}");
}

#[test]
fn check_once_and_silence_run_on_the_state_database() {
    let db = pg_settings("cli");
    let dir = tempfile::tempdir().unwrap();
    let config = support::cli::Settings::once("1h")
        .repository("lab", &support::lab().repo_dsn())
        .console()
        .state_db(&db.schema)
        .write(dir.path());
    let (out, _) = support::cli::succeeded(&support::cli::run(&["check"], &config));
    assert!(
        out.contains("reachable, writable, schema not created yet"),
        "{out}"
    );
    support::cli::once_json(&config);
    support::cli::once_json(&config);
    assert_eq!(versions(&db.schema), [schema::VERSION.to_string()]);
    let (out, _) = support::cli::succeeded(&support::cli::run(&["check"], &config));
    assert!(
        out.contains(&format!("schema version {} (current)", schema::VERSION)),
        "{out}"
    );
    // `once` kept its notification ids there, as it would in gate.redb.
    let ids = admin(&format!(
        "SELECT count(*)::text FROM {}.meta WHERE key = 'next_notification_id'",
        db.schema
    ));
    assert_eq!(ids, ["1"]);
    let add = support::cli::run(
        &[
            "silence", "add", "--match", "server=x", "--until", "1h", "--reason", "test",
        ],
        &config,
    );
    support::cli::succeeded(&add);
    let (list, _) = support::cli::succeeded(&support::cli::run(&["silence", "list"], &config));
    assert!(list.contains("server=x"), "{list}");
    let (out, _) = support::cli::succeeded(&support::cli::run(&["outbox", "list"], &config));
    assert!(out.contains("outbox: empty"), "{out}");
    // An entry that failed for good, listed and re-queued by the `outbox` command.
    let seq = {
        let o = PgOutbox::open(&db, Access::ReadWrite).unwrap();
        let seq = o.accept("console", &stored(21)).unwrap().unwrap();
        o.fail(seq, "errcode 93000").unwrap();
        seq
    };
    let (out, _) = support::cli::succeeded(&support::cli::run(&["outbox", "list"], &config));
    assert!(
        out.contains(&format!("channel console seq {seq}: failed")),
        "{out}"
    );
    let (out, _) =
        support::cli::succeeded(&support::cli::run(&["outbox", "retry", "--all"], &config));
    assert!(out.contains("re-queued: channel console"), "{out}");
    let o = PgOutbox::open(&db, Access::ReadOnly).unwrap();
    assert_eq!(o.entries("console").unwrap()[0].failed, None);
    // Both keys at once: refused, naming both.
    let both = support::cli::Settings::once("1h")
        .repository("lab", &support::lab().repo_dsn())
        .console()
        .state_db(&db.schema)
        .toml(&format!("dir = \"{}\"", dir.path().join("state").display()))
        .write(dir.path());
    let out = support::cli::run(&["check"], &both);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("state.dsn") && err.contains("`state.dir` and `state.dsn` are alternatives"),
        "{err}"
    );
    drop(o);
    admin(&format!("DROP SCHEMA {} CASCADE", db.schema));
}

#[test]
fn the_action_pages_and_the_status_page_use_the_database() {
    use powa_sentinel::actions::page::{self, Form};
    use powa_sentinel::actions::{Action, Token};
    use powa_sentinel::gate::store::Location;
    use powa_sentinel::status_page::GateView;

    let db = pg_settings("pages");
    // The one handle the daemon gives its pages and card buttons.
    let state = Location::Database(Arc::new(PgStore::open(&db, Access::ReadWrite).unwrap()));
    let now = Utc::now();
    let tap = |action| Token {
        action,
        fingerprint: Fingerprint(5),
        expires: now,
    };
    let form = |duration: &str| Form {
        who: "erin".into(),
        why: "known".into(),
        duration: duration.into(),
    };
    let said = page::perform(&state, &tap(Action::Ack), &form(""), None, now).unwrap();
    assert!(said.starts_with("Acknowledged by erin."), "{said}");
    let said = page::perform(&state, &tap(Action::Snooze), &form("1h"), None, now).unwrap();
    assert!(said.contains("(silence 1)"), "{said}");
    let view = GateView::read(Some(&state));
    assert_eq!(view.error, None);
    assert_eq!(view.acks.len(), 1);
    assert_eq!(view.acks[0].by, "erin");
    assert_eq!(view.silences.len(), 1);
    assert_eq!(view.silences[0].fingerprint, Some(Fingerprint(5)));
    // What the gate reads before its next decision (its own connection).
    let gate_side = PgStore::open(&db, Access::ReadWrite).unwrap();
    assert_eq!(gate_side.acks().unwrap().len(), 1);
    assert_eq!(gate_side.silences().unwrap()[0].author, "erin");
    drop((state, gate_side));
    admin(&format!("DROP SCHEMA {} CASCADE", db.schema));
}

#[test]
fn a_server_that_stops_answering_is_given_up_on_then_left_alone_until_retried() {
    use std::time::{Duration, Instant};
    let lab = support::lab();
    let port = lab.var("POWA_LAB_REPO_PORT");
    let upstream = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = support::faults::Proxy::start(upstream, None);
    let mut db = pg_settings("frozen");
    db.connection.dsn = Some(powa_sentinel::secret::Secret::new(
        lab.state_dsn()
            .replace(&format!("port={port}"), &format!("port={}", proxy.port)),
    ));
    db.connection.connect_timeout = Duration::from_secs(1);
    db.connection.statement_timeout = Duration::from_secs(1);
    let store = PgStore::open(&db, Access::ReadWrite).unwrap();
    assert_eq!(store.add_silence(silence(None, 5)).unwrap().id, 1);

    proxy.freeze();
    // A call on the frozen session: given up on at its limit, the session dropped.
    let started = Instant::now();
    let e = store.add_silence(silence(None, 5)).unwrap_err().to_string();
    assert!(e.contains("no answer within"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The next one tries a new session, which does not answer either...
    let e = store.silences().unwrap_err().to_string();
    assert!(e.contains("cannot be reached"), "{e}");
    // ...and the one right after fails at once with the same reason.
    let started = Instant::now();
    let again = store.silences().unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(again, e);

    proxy.thaw();
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(store.add_silence(silence(None, 5)).unwrap().id, 2);
    assert_eq!(store.silences().unwrap().len(), 2);
    drop(store);
    admin(&format!("DROP SCHEMA {} CASCADE", db.schema));
}
