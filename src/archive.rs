//! The report archive: every notification a channel is given is also written as one
//! self-contained HTML page, `<[state] dir>/reports/<id>.html`, kept for
//! `[state] keep_reports` (default 30 days) and served behind the "Full report" link of
//! the message (`/a/<token>`, signed like the action links; see [`crate::actions`]).
//!
//! Why: a chat message has a byte budget (4096 for WeCom markdown, 2048 for its text) and
//! leaves things out — the rest of a long SQL text, the entries a digest only counts, the
//! charts a channel cannot show inline. The page has no budget: the full text of every
//! entry, the whole query, the index DDL, the trend charts as inline PNG, the links into
//! powa-web and the acknowledge/snooze links. It is written *before* the channel is
//! handed the notification, so the link works when the message arrives.
//!
//! The writer ([`ArchiveWriter`]) stands in front of each channel, like the chart
//! enricher: it reads the trends of the charted insights (bounded, see
//! [`crate::chart::enrich`]), draws them, writes the page (atomically: a reader never sees
//! half a page) and hands the notification on unchanged. A page that cannot be written
//! costs a warning, never the message: its link then shows what fires now.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use slog::{debug, warn, Logger};

use crate::chart::enrich::TrendSource;
use crate::render::{self, PageChart, RenderOptions};
use sentinel_actors::channel::{Deliver, DeliveryReport};
use sentinel_actors::Notification;

/// The archive's directory under `[state] dir`.
pub const DIR: &str = "reports";

/// How long pages are kept by default.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Pruning runs at most this often (and at the first page written).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where the pages are, and for how long they are kept.
#[derive(Clone, Debug)]
pub struct Archive {
    dir: PathBuf,
    keep: Duration,
}

impl Archive {
    /// The archive under `state_dir`; None when `keep` is zero (pages off).
    pub fn new(state_dir: &Path, keep: Duration) -> Option<Archive> {
        (!keep.is_zero()).then(|| Archive {
            dir: state_dir.join(DIR),
            keep,
        })
    }

    /// How long a page is kept.
    pub fn keep(&self) -> Duration {
        self.keep
    }

    fn path(dir: &Path, id: u64) -> PathBuf {
        dir.join(format!("{id}.html"))
    }

    /// Writes the page of notification `id`: to a temporary file, then renamed, so that a
    /// reader sees the whole page or none.
    pub fn write(&self, id: u64, html: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = Self::path(&self.dir, id);
        let tmp = self.dir.join(format!(".{id}.html.tmp"));
        std::fs::write(&tmp, html)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// The page of notification `id` under `state_dir`, None when there is none (never
    /// written, or pruned).
    pub fn read(state_dir: &Path, id: u64) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(Self::path(&state_dir.join(DIR), id)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the pages (and left-over temporary files) last written more than `keep`
    /// before `now`; returns how many.
    pub fn prune(&self, now: SystemTime) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.ends_with(".html") || name.ends_with(".html.tmp")) {
                continue;
            }
            let written = entry.metadata()?.modified()?;
            if now.duration_since(written).unwrap_or_default() > self.keep {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The page of `n` with the charts of its charted insights that have a trend (drawn
/// here: a chart that cannot be drawn is left out, and said in the log).
pub fn page(
    n: &Notification,
    opts: &RenderOptions,
    kept_until: DateTime<Utc>,
    log: &Logger,
) -> String {
    let mut charts = Vec::new();
    for k in crate::chart::charted(&n.insights) {
        let i = &n.insights[k];
        if i.trend.is_none() {
            continue;
        }
        match crate::chart::png(i, opts.lang) {
            Ok(png) => charts.push(PageChart { insight: k, png }),
            Err(e) => debug!(log, "A chart of the report page could not be drawn."; "error" => %e),
        }
    }
    render::html_page(n, opts, &charts, Some(kept_until))
}

/// Stands in front of a channel: writes the page of what it is asked to deliver, then
/// hands the notification on unchanged (see the module's documentation).
pub struct ArchiveWriter {
    inner: Recipient<Deliver>,
    archive: Arc<Archive>,
    trends: Option<Arc<TrendSource>>,
    opts: RenderOptions,
    channel: String,
    last_prune: Option<std::time::Instant>,
    log: Logger,
}

impl ArchiveWriter {
    /// `opts` are the channel's own (its language, powa-web links and action links):
    /// the page reads like the message that links to it (with the whole SQL texts).
    pub fn new(
        channel: &str,
        inner: Recipient<Deliver>,
        archive: Arc<Archive>,
        trends: Option<Arc<TrendSource>>,
        opts: RenderOptions,
        log: Logger,
    ) -> Self {
        ArchiveWriter {
            inner,
            archive,
            trends,
            opts,
            channel: channel.to_string(),
            last_prune: None,
            log,
        }
    }
}

impl Actor for ArchiveWriter {
    type Context = Context<Self>;
}

/// Reads the trends, draws and writes the page; the drawing and the file system off the
/// actor's thread.
async fn write_page(
    n: Notification,
    archive: Arc<Archive>,
    trends: Option<Arc<TrendSource>>,
    opts: RenderOptions,
    prune: bool,
    log: Logger,
) {
    let with_trends = match &trends {
        Some(t) => t.attach(n).await,
        None => n,
    };
    let id = with_trends.id;
    let outer = log.clone();
    let done = tokio::task::spawn_blocking(move || {
        let kept_until = with_trends.created_at
            + chrono::Duration::from_std(archive.keep()).unwrap_or(chrono::Duration::days(30));
        let html = page(&with_trends, &opts, kept_until, &log);
        let written = archive.write(with_trends.id, &html);
        if prune {
            match archive.prune(SystemTime::now()) {
                Ok(0) => {}
                Ok(k) => debug!(log, "Old report pages removed."; "count" => k),
                Err(e) => warn!(log, "Old report pages could not be removed."; "error" => %e),
            }
        }
        written
    })
    .await;
    match done {
        Ok(Ok(path)) => {
            debug!(outer, "Report page written."; "notification" => id, "path" => %path.display())
        }
        Ok(Err(e)) => {
            warn!(outer, "The report page could not be written; its link will show what fires now instead."; "notification" => id, "error" => %e)
        }
        Err(e) => {
            warn!(outer, "Writing the report page failed; its link will show what fires now instead."; "notification" => id, "error" => %e)
        }
    }
}

impl Handler<Deliver> for ArchiveWriter {
    type Result = ResponseFuture<DeliveryReport>;

    /// The page is written (`wait`: in order) before the channel is handed the
    /// notification, so that its link works when the message arrives.
    fn handle(&mut self, Deliver(n): Deliver, ctx: &mut Context<Self>) -> Self::Result {
        let id = n.id;
        let prune = self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
        if prune {
            self.last_prune = Some(std::time::Instant::now());
        }
        let write = write_page(
            n.clone(),
            Arc::clone(&self.archive),
            self.trends.clone(),
            self.opts.clone(),
            prune,
            self.log.clone(),
        );
        let prepare = async move {
            write.await;
            n
        };
        crate::channels::front::hand_on(ctx, self.inner.clone(), self.channel.clone(), id, prepare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_written_whole_read_back_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Archive::new(dir.path(), Duration::ZERO).is_none(),
            "0 turns pages off"
        );
        let a = Archive::new(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(Archive::read(dir.path(), 7).unwrap(), None);
        assert_eq!(a.prune(SystemTime::now()).unwrap(), 0, "no directory yet");
        let path = a.write(7, "<p>seven</p>").unwrap();
        assert_eq!(path, dir.path().join("reports/7.html"));
        assert_eq!(
            Archive::read(dir.path(), 7).unwrap().as_deref(),
            Some("<p>seven</p>")
        );
        a.write(8, "<p>eight</p>").unwrap();
        std::fs::write(dir.path().join("reports/notes.txt"), "mine").unwrap();
        // Nothing old yet; two hours later both pages go, the foreign file stays.
        assert_eq!(a.prune(SystemTime::now()).unwrap(), 0);
        let later = SystemTime::now() + Duration::from_secs(7200);
        assert_eq!(a.prune(later).unwrap(), 2);
        assert_eq!(Archive::read(dir.path(), 7).unwrap(), None);
        assert!(dir.path().join("reports/notes.txt").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join(DIR)).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
