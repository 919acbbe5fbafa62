//! `powa-sentinel silence add|list|expire`: silences in the gate's store
//! (`<state.dir>/gate.redb`, or the state database of `[state] dsn`), which the running
//! gate reads before each decision.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{ArgGroup, Subcommand};

use sentinel_actors::Fingerprint;

use crate::config::Settings;
use crate::gate::silence::{Matcher, Silence};
use crate::gate::store::{GateStore, StoreError};

#[derive(Subcommand, Debug, Clone)]
pub enum SilenceCommand {
    /// Mute a fingerprint, or every insight matching all the --match conditions, until a time.
    #[command(group(ArgGroup::new("target").required(true).multiple(false).args(["fingerprint", "matchers"])))]
    Add {
        /// Settings file (.toml, .yaml or .yml); its [state] dir holds the silences.
        #[arg(long, short)]
        config: PathBuf,
        /// The 16 hex digits of a finding's fingerprint, as messages and --output json show it.
        #[arg(long, value_name = "HEX")]
        fingerprint: Option<String>,
        /// key=value (equality) or key=~regex (whole value); repeat for more (all must match).
        /// Keys: any label (repository, server, database, user, queryid), kind, rule,
        /// severity, text.
        #[arg(long = "match", value_name = "KEY=VALUE")]
        matchers: Vec<String>,
        /// When it ends: an RFC 3339 time (2026-05-01T08:00:00+08:00) or a duration from now (2h, 1d 12h).
        #[arg(long, value_name = "TIME|DURATION")]
        until: String,
        /// Why (shown by `silence list`).
        #[arg(long)]
        reason: String,
        /// Who; default the USER environment variable.
        #[arg(long)]
        author: Option<String>,
    },
    /// Show the silences: active ones first, each group by id.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// End a silence now.
    Expire {
        #[arg(long, short)]
        config: PathBuf,
        /// The id `silence list` shows.
        id: u64,
    },
}

impl SilenceCommand {
    pub fn config(&self) -> &Path {
        match self {
            SilenceCommand::Add { config, .. }
            | SilenceCommand::List { config }
            | SilenceCommand::Expire { config, .. } => config,
        }
    }
}

/// Why a silence command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or the settings are wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The store failed (exit code 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `--until`: an RFC 3339 time or a duration from `now`; must be in the future.
pub fn parse_until(v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    let t = match DateTime::parse_from_rfc3339(v.trim()) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => match humantime::parse_duration(v.trim()) {
            Ok(d) => {
                now + chrono::Duration::from_std(d).map_err(|_| {
                    CliError::Usage(format!("--until `{v}`: the duration is too long"))
                })?
            }
            Err(_) => {
                return Err(CliError::Usage(format!(
                    "--until `{v}`: write an RFC 3339 time such as 2026-05-01T08:00:00+08:00, or a duration from now such as 2h or 1d 12h"
                )))
            }
        },
    };
    if t <= now {
        return Err(CliError::Usage(format!(
            "--until `{v}` is not in the future ({}): give a later time or a positive duration",
            t.to_rfc3339_opts(SecondsFormat::Secs, true)
        )));
    }
    Ok(t)
}

fn store(settings: &Settings, config: &Path) -> Result<Box<dyn GateStore>, CliError> {
    crate::gate::store::open(&settings.state, crate::gate::Access::ReadWrite)?.ok_or_else(|| {
        CliError::Usage(format!(
            "{}: silences are kept in the state directory or database, and neither `state.dir` nor `state.dsn` is set: add [state] dir = \"/var/lib/powa-sentinel\"",
            config.display()
        ))
    })
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Runs a silence command at `now`; returns what to print on stdout.
pub fn run(
    cmd: &SilenceCommand,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<String, CliError> {
    match cmd {
        SilenceCommand::Add {
            config,
            fingerprint,
            matchers,
            until,
            reason,
            author,
        } => {
            let fingerprint = fingerprint
                .as_ref()
                .map(|f| {
                    Fingerprint::try_from(f.trim().to_ascii_lowercase()).map_err(|e| {
                        CliError::Usage(format!(
                            "--fingerprint: {e}; copy it from a message or from --output json"
                        ))
                    })
                })
                .transpose()?;
            let matchers = matchers
                .iter()
                .map(|m| Matcher::parse(m).map_err(|e| CliError::Usage(format!("--match: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            if fingerprint.is_none() && matchers.is_empty() {
                return Err(CliError::Usage(
                    "give --fingerprint HEX or at least one --match key=value".into(),
                ));
            }
            let ends_at = parse_until(until, now)?;
            if reason.trim().is_empty() {
                return Err(CliError::Usage(
                    "--reason is empty: say why, so others know (e.g. --reason \"index rebuild until 18:00\")".into(),
                ));
            }
            let author = author
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .unwrap_or_else(|| "unknown".into());
            let store = store(settings, config)?;
            let s = store.add_silence(Silence {
                id: 0,
                fingerprint,
                matchers,
                starts_at: now,
                ends_at,
                reason: reason.clone(),
                author,
                created_at: now,
            })?;
            Ok(format!(
                "silence {} added: {} until {}\n",
                s.id,
                s.scope(),
                fmt_time(s.ends_at)
            ))
        }
        SilenceCommand::List { config } => {
            let store = store(settings, config)?;
            let mut all = store.silences()?;
            all.sort_by_key(|s| (!s.active(now), s.id));
            let mut out = String::from("ID\tSTATE\tUNTIL\tMATCH\tAUTHOR\tREASON\n");
            for s in &all {
                let state = if s.active(now) {
                    "active"
                } else if s.starts_at > now {
                    "pending"
                } else {
                    "ended"
                };
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\n",
                    s.id,
                    state,
                    fmt_time(s.ends_at),
                    s.scope(),
                    s.author,
                    s.reason.replace(['\n', '\t'], " ")
                ));
            }
            // Acknowledgements (from the messages' links) end by themselves when the
            // finding escalates or resolves.
            let acks = store.acks()?;
            if !acks.is_empty() {
                out.push_str("\nFINGERPRINT\tACKNOWLEDGED\tBY\tFINDING\tNOTE\n");
                for a in &acks {
                    let clean = |t: &str| t.replace(['\n', '\t'], " ");
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        a.fingerprint,
                        fmt_time(a.at),
                        clean(&a.by),
                        clean(&a.title),
                        clean(a.note.as_deref().unwrap_or(""))
                    ));
                }
            }
            Ok(out)
        }
        SilenceCommand::Expire { config, id } => {
            let store = store(settings, config)?;
            match store.expire_silence(*id, now)? {
                Some(s) => Ok(format!("silence {} ended at {}\n", s.id, fmt_time(s.ends_at))),
                None => Err(CliError::Usage(format!(
                    "no silence has id {id}: `powa-sentinel silence list --config {}` shows the ids",
                    config.display()
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_until("2h", now).unwrap(),
            now + chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_until("2026-03-01T08:00:00+08:00", now).unwrap_err().to_string(),
            "--until `2026-03-01T08:00:00+08:00` is not in the future (2026-03-01T00:00:00Z): give a later time or a positive duration"
        );
        assert_eq!(
            parse_until("2026-03-02T08:00:00+08:00", now).unwrap(),
            now + chrono::Duration::hours(24)
        );
        assert!(parse_until("tomorrow", now)
            .unwrap_err()
            .to_string()
            .starts_with("--until `tomorrow`: write an RFC 3339 time"));
    }
}
