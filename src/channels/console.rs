//! The console: a plain-text report per notification, on stdout (or stderr when stdout
//! carries `--output json`). Each report is written under the stream's lock in one go, so
//! reports of several channels or threads never interleave.

use std::io::Write;

use actix::Recipient;
use futures_util::future::{self, LocalBoxFuture};
use serde::Deserialize;

use sentinel_actors::channel::{Channel, Deliver};
use sentinel_actors::{ChannelError, Notification};

use super::{ChannelType, Starter, Takes};
use crate::problem::Problem;
use crate::render::{self, RenderOptions};
use crate::secret::Secret;

/// `[channels.<name>] type = "console"`: only the keys every kind shares (`language`,
/// `sql_preview_chars`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {}

/// A checked console channel.
#[derive(Debug)]
pub struct Console;

impl ChannelType for Console {
    const TYPE: &'static str = "console";
    const SECRET_KEYS: &'static [&'static str] = &[];
    const TAKES: Takes = Takes {
        language: true,
        ..Takes::NOTHING
    };
    type Settings = ConsoleSettings;

    fn check(_: ConsoleSettings) -> Result<Self, Vec<Problem>> {
        Ok(Console)
    }

    fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let ch = ConsoleChannel::new(start.console_to_stderr(), start.render_options());
        Ok(start.spawn(ch, None))
    }
}

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
