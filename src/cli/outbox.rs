//! `powa-sentinel outbox list|retry|drop`: what the channels' outbox
//! (`<state.dir>/outbox.redb`) holds, and what to do with notifications that failed for
//! good (a bad key, a refused message).
//!
//! A failed entry is kept, not retried: once the cause is fixed, `retry` re-queues it and
//! the next `once` (or the daemon at its next start) sends it — from its first
//! unconfirmed part, with the bytes rendered the first time; `drop` removes it for good.
//! The outbox belongs to one process at a time: while a daemon runs on the same state
//! directory these commands are refused with a clear message (stop it first).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Subcommand};

use sentinel_actors::outbox::{EntryBody, Outbox, OutboxEntry, Seq};

use crate::config::Settings;
use crate::outbox::RedbOutbox;
use crate::statedb::outbox::PgOutbox;
use sentinel_actors::OutboxError;

/// Which entries a command acts on.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("which").required(true).multiple(false).args(["seq", "channel", "all"])))]
pub struct Selection {
    /// One entry, by the seq `outbox list` shows.
    pub seq: Option<Seq>,
    /// Every failed entry of this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Every failed entry.
    #[arg(long)]
    pub all: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum OutboxCommand {
    /// Show every entry: channel, seq, state, failure, age, insights.
    List {
        /// Settings file (.toml, .yaml or .yml); its [state] dir holds the outbox.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Re-queue failed entries: the next `once` or daemon start sends them.
    Retry {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        which: Selection,
    },
    /// Remove failed entries for good, saying what is removed.
    Drop {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        which: Selection,
    },
}

impl OutboxCommand {
    pub fn config(&self) -> &Path {
        match self {
            OutboxCommand::List { config }
            | OutboxCommand::Retry { config, .. }
            | OutboxCommand::Drop { config, .. } => config,
        }
    }
}

/// Why an outbox command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or the settings are wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The outbox cannot be used now (in use, unreadable; exit code 1).
    #[error("{0}")]
    Outbox(String),
}

/// The outbox the settings name, file or database.
enum Opened {
    File(RedbOutbox),
    Db(PgOutbox),
}

impl Opened {
    /// Opens it (`write`: to change it); `None` when there is no outbox file yet.
    fn open(settings: &Settings, config: &Path, write: bool) -> Result<Option<Opened>, CliError> {
        let access = if write {
            crate::gate::Access::ReadWrite
        } else {
            crate::gate::Access::ReadOnly
        };
        if let Some(db) = settings.state.database() {
            return Ok(Some(Opened::Db(
                PgOutbox::open(&db, access).map_err(outbox_err)?,
            )));
        }
        let Some(dir) = settings.state.dir.as_deref() else {
            return Err(CliError::Usage(format!(
                "{}: the outbox is kept in the state directory or database, and neither `state.dir` nor `state.dsn` is set: without them nothing outlives a run, so there is nothing to list",
                config.display()
            )));
        };
        if write {
            return RedbOutbox::open(dir)
                .map(|o| Some(Opened::File(o)))
                .map_err(|e| CliError::Outbox(format!("{e:#}")));
        }
        Ok(RedbOutbox::open_read_only(dir)
            .map_err(outbox_err)?
            .map(Opened::File))
    }

    fn all(&self) -> Result<Vec<OutboxEntry>, OutboxError> {
        match self {
            Opened::File(o) => o.all(),
            Opened::Db(o) => o.all(),
        }
    }

    fn outbox(&self) -> &dyn Outbox {
        match self {
            Opened::File(o) => o,
            Opened::Db(o) => o,
        }
    }
}

fn outbox_err(e: impl std::fmt::Display) -> CliError {
    CliError::Outbox(e.to_string())
}

/// "3 h 12 min", "45 s", or "?" for entries of older versions.
fn age(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else {
        return "?".into();
    };
    let secs = (now - at).num_seconds().max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

fn state(e: &OutboxEntry) -> &'static str {
    match (&e.failed, &e.body) {
        (Some(_), _) => "failed",
        (None, EntryBody::Queued(_)) => "queued",
        (None, EntryBody::Rendered(_)) => "rendered",
    }
}

fn insights(e: &OutboxEntry) -> usize {
    match &e.body {
        EntryBody::Queued(n) => n.insights.len(),
        EntryBody::Rendered(r) => r.insights,
    }
}

/// One line per entry.
fn line(e: &OutboxEntry, now: DateTime<Utc>) -> String {
    let parts = match &e.body {
        EntryBody::Rendered(r) => format!(", parts {}/{} sent", e.next_part, r.parts.len()),
        EntryBody::Queued(_) => String::new(),
    };
    let failure = e
        .failed
        .as_deref()
        .map(|f| format!(", failure: {f}"))
        .unwrap_or_default();
    format!(
        "channel {} seq {}: {}, age {}, {} insight(s){parts}{failure}\n",
        e.channel,
        e.seq,
        state(e),
        age(e.accepted_at, now),
        insights(e)
    )
}

/// The failed entries `which` names; an explicit seq must exist and be failed.
fn select<'a>(
    entries: &'a [OutboxEntry],
    which: &Selection,
) -> Result<Vec<&'a OutboxEntry>, CliError> {
    if let Some(seq) = which.seq {
        let Some(e) = entries.iter().find(|e| e.seq == seq) else {
            return Err(CliError::Usage(format!(
                "no outbox entry has seq {seq}: `powa-sentinel outbox list` shows them"
            )));
        };
        if e.failed.is_none() {
            return Err(CliError::Usage(format!(
                "outbox entry {seq} has not failed (it is {}): it is still being delivered",
                state(e)
            )));
        }
        return Ok(vec![e]);
    }
    Ok(entries
        .iter()
        .filter(|e| e.failed.is_some())
        .filter(|e| which.channel.as_deref().is_none_or(|c| e.channel == c))
        .collect())
}

/// Runs an outbox command at `now`; returns what to print on stdout.
pub fn run(
    cmd: &OutboxCommand,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<String, CliError> {
    let config = cmd.config();
    let mut out = String::new();
    match cmd {
        OutboxCommand::List { .. } => {
            let Some(outbox) = Opened::open(settings, config, false)? else {
                return Ok("outbox: empty (no outbox file yet)\n".into());
            };
            let entries = outbox.all().map_err(outbox_err)?;
            if entries.is_empty() {
                out.push_str("outbox: empty\n");
            }
            for e in &entries {
                out.push_str(&line(e, now));
            }
            let failed = entries.iter().filter(|e| e.failed.is_some()).count();
            if failed > 0 {
                out.push_str(&format!(
                    "{failed} failed entr{} kept: fix the channel, then `powa-sentinel outbox retry --config {} --all` (or `drop`)\n",
                    if failed == 1 { "y is" } else { "ies are" },
                    config.display()
                ));
            }
        }
        OutboxCommand::Retry { which, .. } | OutboxCommand::Drop { which, .. } => {
            let retry = matches!(cmd, OutboxCommand::Retry { .. });
            let Some(opened) = Opened::open(settings, config, true)? else {
                return Err(CliError::Outbox("the outbox could not be opened".into()));
            };
            let entries = opened.all().map_err(outbox_err)?;
            let outbox = opened.outbox();
            let chosen = select(&entries, which)?;
            if chosen.is_empty() {
                out.push_str("no failed entry matches: nothing to do\n");
            }
            for e in chosen {
                if retry {
                    outbox.requeue(e.seq).map_err(outbox_err)?;
                    out.push_str(&format!("re-queued: {}", line(e, now)));
                } else {
                    outbox.done(e.seq).map_err(outbox_err)?;
                    out.push_str(&format!("dropped: {}", line(e, now)));
                }
            }
            if retry && !out.starts_with("no failed") {
                out.push_str("the next `powa-sentinel once` or daemon start sends them\n");
            }
        }
    }
    Ok(out)
}

/// Pending and failed counts per channel for `check`, or why the outbox cannot be read.
pub fn summary(settings: &Settings) -> Vec<String> {
    let outbox = match Opened::open(settings, Path::new(""), false) {
        Ok(Some(o)) => o,
        Ok(None) => return Vec::new(),
        Err(CliError::Usage(_)) => return Vec::new(),
        Err(e) => return vec![format!("outbox: not read: {e}")],
    };
    let outbox = outbox.outbox();
    match outbox.backlog() {
        Ok(backlog) => backlog
            .into_iter()
            .map(|b| {
                let mut l = format!(
                    "outbox: channel {}: {} pending, {} failed",
                    b.channel, b.pending, b.failed
                );
                if b.failed > 0 {
                    l.push_str(&format!(
                        " (kept, not retried: `powa-sentinel outbox list`, then `outbox retry --channel {}` once the channel is fixed)",
                        b.channel
                    ));
                }
                l
            })
            .collect(),
        Err(e) => vec![format!("outbox: not read: {e}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_actors::outbox::{RenderedEntry, StoredNotification};
    use sentinel_actors::NotifyReason;

    fn stored(id: u64) -> StoredNotification {
        StoredNotification {
            id,
            channel: "robot".into(),
            reason: NotifyReason::Report,
            insights: Vec::new(),
            created_at: Utc::now(),
            mentions: Default::default(),
        }
    }

    #[test]
    fn only_failed_entries_are_selected() {
        let o = RedbOutbox::in_memory().unwrap();
        let a = o.accept("robot", &stored(1)).unwrap().unwrap();
        let b = o.accept("robot", &stored(2)).unwrap().unwrap();
        let r = o
            .render(
                "other",
                &[],
                &RenderedEntry {
                    notification_ids: vec![3],
                    insights: 4,
                    digest: false,
                    parts: vec![b"\"p\"".to_vec()],
                },
            )
            .unwrap();
        o.fail(b, "permanent failure: errcode 93000").unwrap();
        o.fail(r, "permanent failure: errcode 93000").unwrap();
        let all = o.all().unwrap();
        let pick = |seq, channel: Option<&str>, all_: bool| Selection {
            seq,
            channel: channel.map(str::to_string),
            all: all_,
        };
        let seqs = |v: Vec<&OutboxEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(select(&all, &pick(None, None, true)).unwrap()), [b, r]);
        assert_eq!(
            seqs(select(&all, &pick(None, Some("other"), false)).unwrap()),
            [r]
        );
        let e = select(&all, &pick(Some(a), None, false)).unwrap_err();
        assert!(e.to_string().contains("has not failed"), "{e}");
        let e = select(&all, &pick(Some(99), None, false)).unwrap_err();
        assert!(e.to_string().contains("no outbox entry has seq 99"), "{e}");
        let l = line(&all[2], Utc::now());
        assert!(
            l.starts_with("channel other seq 3: failed, age 0s, 4 insight(s), parts 0/1 sent, failure: permanent failure: errcode 93000"),
            "{l}"
        );
    }
}
