//! The state database's schema, created and migrated by powa-sentinel itself.
//!
//! `sentinel_schema` holds one row, the version the schema is at. [`migrate`] runs inside
//! the opening transaction under `pg_advisory_xact_lock(LOCK_CLASS, hashtext(schema))`:
//! two processes that start together take turns, the second finds the work done. Each
//! migration is applied in order, all of them in that one transaction, so a schema is
//! never left half migrated. A schema at a version newer than [`VERSION`] was written by
//! a newer powa-sentinel: refused (its tables may mean something this binary does not
//! know), with the versions in the message.
//!
//! The tables mirror the embedded files: the gate's (`scopes`, `held`, `silences`, `acks`,
//! `beats` as JSON in `jsonb`; `intents` as CBOR in `bytea`, since their metrics may be
//! NaN; `meta`: the next ids) and the outbox's (`outbox_entries` with its progress and
//! failure in columns, `outbox_sent`, `outbox_accepted`, the `outbox_seq` sequence).
//! Version 2 adds what replicas share ([`super::lease`], [`super::queue`]): `members`
//! (who is alive, until when), `leases` (who holds what, since when, with an epoch that
//! grows at each change of holder: the fencing token), `findings` (the durable queue from
//! the replicas that analyse to the one that delivers).

use tokio_postgres::Client;

use super::{quote_ident, At, Fail};

/// The schema version this binary writes and reads.
pub const VERSION: i32 = 2;

/// The first key of the migration's advisory lock ("PSNT"); the second is the schema's
/// hash, so that databases holding several schemas migrate them independently.
pub const LOCK_CLASS: i32 = 0x5053_4e54;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`. `@s` stands
/// for the quoted schema name. Never edit one that was released: add the next.
const MIGRATIONS: [&str; 2] = [
    r#"
CREATE TABLE @s.scopes (key text PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE @s.held (id bigint PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE @s.silences (id bigint PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE @s.acks (fingerprint bigint PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE @s.beats (channel text PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE @s.intents (id bigint PRIMARY KEY, body bytea NOT NULL);
CREATE TABLE @s.meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE SEQUENCE @s.outbox_seq;
CREATE TABLE @s.outbox_entries (
    seq bigint PRIMARY KEY,
    channel text NOT NULL,
    body bytea NOT NULL,
    accepted_at timestamptz,
    next_part integer NOT NULL DEFAULT 0,
    failed text
);
CREATE INDEX outbox_entries_channel ON @s.outbox_entries (channel, seq);
CREATE TABLE @s.outbox_sent (channel text NOT NULL, at timestamptz NOT NULL);
CREATE INDEX outbox_sent_channel ON @s.outbox_sent (channel, at);
CREATE TABLE @s.outbox_accepted (
    channel text NOT NULL,
    notification_id bigint NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (channel, notification_id)
);
CREATE INDEX outbox_accepted_at ON @s.outbox_accepted (at);
"#,
    r#"
CREATE TABLE @s.members (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE @s.leases (
    name text PRIMARY KEY,
    holder text,
    epoch bigint NOT NULL,
    since timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX leases_holder ON @s.leases (holder);
CREATE TABLE @s.findings (
    seq bigserial PRIMARY KEY,
    source text NOT NULL,
    analyzer text NOT NULL,
    snapshot bigint NOT NULL,
    body bytea NOT NULL,
    by_member text NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, analyzer, snapshot)
);
"#,
];

fn sql(template: &str, schema: &str) -> String {
    template.replace("@s", &quote_ident(schema))
}

/// The version `schema` is at; 0 when it (or its version table) does not exist.
pub async fn version(c: &Client, schema: &str) -> Result<i32, Fail> {
    let table = format!("{}.sentinel_schema", quote_ident(schema));
    let exists: bool = c
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
        .await
        .at("look for the schema")?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = c
        .query_opt(&format!("SELECT version FROM {table}"), &[])
        .await
        .at("read the schema version")?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// A schema newer than this binary is refused.
pub fn refuse_newer(found: i32) -> Result<(), Fail> {
    if found > VERSION {
        return Err(Fail::Newer(found));
    }
    Ok(())
}

/// Creates or migrates `schema` to [`VERSION`] inside the caller's transaction; the
/// version reached. Serialised with every other process doing the same by the advisory
/// transaction lock, released at COMMIT.
pub async fn migrate(c: &Client, schema: &str) -> Result<i32, Fail> {
    c.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_CLASS, &schema],
    )
    .await
    .at("take the migration lock")?;
    let exists = c
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .at("look for the schema")?
        .is_some();
    let q = quote_ident(schema);
    if !exists {
        c.batch_execute(&format!("CREATE SCHEMA {q}"))
            .await
            .at("create the schema")?;
    }
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {q}.sentinel_schema (
             version integer NOT NULL,
             one boolean PRIMARY KEY DEFAULT true CHECK (one)
         )"
    ))
    .await
    .at("create the version table")?;
    let found = version(c, schema).await?;
    refuse_newer(found)?;
    for m in MIGRATIONS.iter().skip(found.max(0) as usize) {
        c.batch_execute(&sql(m, schema))
            .await
            .at("migrate the schema")?;
    }
    if found < VERSION {
        c.execute(
            &format!(
                "INSERT INTO {q}.sentinel_schema (version) VALUES ($1)
                 ON CONFLICT (one) DO UPDATE SET version = excluded.version"
            ),
            &[&VERSION],
        )
        .await
        .at("record the schema version")?;
    }
    Ok(VERSION)
}

/// Why this session cannot write `schema`, if it cannot: a standby, read-only
/// transactions by default, or missing privileges (creating the schema, or writing its
/// tables). Writes nothing.
pub async fn writable(c: &Client, schema: &str) -> Result<Option<String>, Fail> {
    let row = c
        .query_one(
            "SELECT pg_is_in_recovery(),
                    current_setting('default_transaction_read_only') = 'on',
                    (SELECT oid FROM pg_namespace WHERE nspname = $1) IS NOT NULL,
                    has_database_privilege(current_database(), 'CREATE'),
                    current_user::text",
            &[&schema],
        )
        .await
        .at("check the session")?;
    let (standby, read_only, exists, create_db, user): (bool, bool, bool, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    if standby {
        return Ok(Some(
            "it is a hot standby: point [state] dsn at the primary".into(),
        ));
    }
    if read_only {
        return Ok(Some(format!(
            "role {user} has default_transaction_read_only on: give powa-sentinel a role that writes"
        )));
    }
    if !exists {
        return Ok((!create_db).then(|| {
            format!("role {user} may not create schema {schema} in this database: GRANT CREATE ON DATABASE, or create the schema for it")
        }));
    }
    let usage: bool = c
        .query_one("SELECT has_schema_privilege($1::text, 'USAGE')", &[&schema])
        .await
        .at("check the privileges")?
        .get(0);
    let table = format!("{}.meta", quote_ident(schema));
    // Zero rows when the tables are not created yet (then creating them is the question).
    let tables = c
        .query(
            "SELECT has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE')
             FROM pg_class c WHERE c.oid = to_regclass($1::text)",
            &[&table],
        )
        .await
        .at("check the privileges")?;
    let ok = usage && tables.iter().all(|r| r.get::<_, bool>(0));
    Ok((!ok).then(|| {
        format!("role {user} may not write the tables of schema {schema}: make it their owner")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_migration_per_version() {
        assert_eq!(MIGRATIONS.len(), VERSION as usize);
    }

    #[test]
    fn migrations_qualify_every_table_with_the_schema() {
        for m in MIGRATIONS {
            let s = sql(m, "my_state");
            for line in s.lines().filter(|l| l.starts_with("CREATE")) {
                assert!(line.contains("\"my_state\"."), "{line}");
            }
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        assert!(refuse_newer(VERSION).is_ok());
        assert!(refuse_newer(0).is_ok());
        assert!(matches!(refuse_newer(VERSION + 1), Err(Fail::Newer(v)) if v == VERSION + 1));
    }
}
