//! A JSON-lines file: every insight of a notification becomes one line (the serde JSON of
//! [`Insight`](sentinel_actors::Insight)), appended with one write and a flush per
//! notification, so a reader never sees half a notification from a healthy run.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use actix::Recipient;
use futures_util::future::{self, LocalBoxFuture};
use serde::Deserialize;

use sentinel_actors::channel::{Channel, Deliver};
use sentinel_actors::{ChannelError, Notification};

use super::{ChannelType, ConsoleChannel, Starter};
use crate::problem::Problem;
use crate::secret::Secret;

/// `[channels.<name>] type = "file"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSettings {
    /// The JSON-lines file to append insights to (one JSON object per line). Parent
    /// directories are created. Required.
    pub path: Option<PathBuf>,
}

/// A checked file channel.
#[derive(Debug)]
pub struct File {
    path: PathBuf,
}

impl ChannelType for File {
    const TYPE: &'static str = "file";
    const SECRET_KEYS: &'static [&'static str] = &[];
    type Settings = FileSettings;

    fn check(s: FileSettings) -> Result<Self, Vec<Problem>> {
        match s.path {
            None => Err(vec![Problem::new(
                "path",
                "required when type = \"file\": set the JSON-lines file to append insights to",
            )]),
            Some(p) if p.as_os_str().is_empty() => Err(vec![Problem::new(
                "path",
                "is empty: set the JSON-lines file to append insights to",
            )]),
            Some(path) => Ok(File { path }),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        Ok(start.spawn(FileChannel::new(self.path.clone()), None))
    }

    /// A dry run prints what the console shows: the JSON lines are for machines.
    fn dry_run(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let console = ConsoleChannel::new(false, start.render_options());
        Ok(start.spawn(console, None))
    }
}

pub struct FileChannel {
    path: PathBuf,
}

impl FileChannel {
    pub fn new(path: PathBuf) -> Self {
        FileChannel { path }
    }
}

/// The lines for `n`, each ending with a newline; empty for an empty notification.
pub fn json_lines(n: &Notification) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for i in n.insights.iter() {
        out.push_str(&serde_json::to_string(i)?);
        out.push('\n');
    }
    Ok(out)
}

/// Appends `text` to `path` in one write, creating the file and its parent directories.
pub fn append(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    f.flush()
}

impl Channel for FileChannel {
    /// All lines of one notification.
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        let lines = json_lines(n).map_err(|e| ChannelError::Permanent {
            reason: format!("cannot encode the insights as JSON: {e}"),
        })?;
        Ok(if lines.is_empty() {
            Vec::new()
        } else {
            vec![lines]
        })
    }

    fn send(&self, lines: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let result = append(&self.path, &lines).map_err(|e| {
            let reason = format!("cannot append to {}: {e}", self.path.display());
            match e.kind() {
                ErrorKind::PermissionDenied
                | ErrorKind::NotFound
                | ErrorKind::InvalidInput
                | ErrorKind::IsADirectory
                | ErrorKind::NotADirectory
                | ErrorKind::ReadOnlyFilesystem => ChannelError::Permanent { reason },
                _ => ChannelError::Retryable { reason },
            }
        });
        Box::pin(future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use sentinel_actors::{Fingerprint, Insight, NotifyReason, Severity, Window};

    fn insight(k: u32) -> Insight {
        let t = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        Insight {
            fingerprint: Fingerprint::of([k.to_string()]),
            kind: "slow_query".into(),
            rule: "slow_query.total_time".into(),
            severity: Severity::Warning,
            labels: BTreeMap::from([("server".to_string(), "remote1".to_string())]),
            title: format!("t{k}\nsecond line"),
            advice: "a".into(),
            text: Some("SELECT 1".into()),
            metrics: BTreeMap::from([("calls".to_string(), 3.0)]),
            window: Window { start: t, end: t },
            observed_at: t,
            status: None,
            changes: Vec::new(),
            trend: None,
        }
    }

    #[actix_rt::test]
    async fn appends_one_line_per_insight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/insights.jsonl");
        let ch = FileChannel::new(path.clone());
        for id in 0..2 {
            let n = Notification {
                id,
                channel: "f".into(),
                reason: NotifyReason::Report,
                insights: Arc::new(vec![insight(1), insight(2)]),
                created_at: Utc::now(),
                mentions: Default::default(),
            };
            for part in ch.render(&n).unwrap() {
                ch.send(part).await.unwrap();
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let back: Insight = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(back, insight(2));
    }

    #[actix_rt::test]
    async fn a_directory_in_the_way_is_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let ch = FileChannel::new(dir.path().to_path_buf());
        let e = ch.send("x\n".into()).await.unwrap_err();
        assert!(e.is_permanent(), "{e}");
    }
}
