//! The console: a plain-text report per notification, on stdout (or stderr when stdout
//! carries `--output json`). Each report is written under the stream's lock in one go, so
//! reports of several channels or threads never interleave.

use std::io::Write;

use futures_util::future::{self, LocalBoxFuture};

use sentinel_actors::channel::Channel;
use sentinel_actors::{ChannelError, Notification};

use crate::render::{self, RenderOptions};

pub struct ConsoleChannel {
    to_stderr: bool,
    opts: RenderOptions,
}

impl ConsoleChannel {
    pub fn new(to_stderr: bool, opts: RenderOptions) -> Self {
        ConsoleChannel { to_stderr, opts }
    }
}

/// Writes `report` whole, then flushes.
pub fn write_report(out: &mut dyn Write, report: &str) -> std::io::Result<()> {
    out.write_all(report.as_bytes())?;
    out.flush()
}

impl Channel for ConsoleChannel {
    /// The whole report.
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        let report = render::plain_report_with(n, &self.opts);
        Ok(if report.is_empty() {
            Vec::new()
        } else {
            vec![report]
        })
    }

    fn send(&self, report: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let result = if self.to_stderr {
            write_report(&mut std::io::stderr().lock(), &report)
        } else {
            write_report(&mut std::io::stdout().lock(), &report)
        };
        let stream = if self.to_stderr { "stderr" } else { "stdout" };
        Box::pin(future::ready(result.map_err(|e| ChannelError::Permanent {
            reason: format!("cannot write the report to {stream}: {e}"),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use chrono::Utc;
    use sentinel_actors::NotifyReason;

    #[test]
    fn empty_notification_writes_nothing() {
        let ch = ConsoleChannel::new(true, RenderOptions::default());
        let n = Notification {
            id: 1,
            channel: "console".into(),
            reason: NotifyReason::Report,
            insights: Arc::new(Vec::new()),
            created_at: Utc::now(),
            mentions: Default::default(),
        };
        assert!(ch.render(&n).unwrap().is_empty());
    }

    #[test]
    fn report_is_written_whole() {
        let mut buf = Vec::new();
        write_report(&mut buf, "a\nb\n").unwrap();
        assert_eq!(buf, b"a\nb\n");
    }
}
