//! Logging with slog: human-readable lines on a terminal, JSON lines otherwise (or as
//! configured), always on stderr so that stdout stays free for `--output json`.
//!
//! Records go through slog-async; the returned [`LogGuard`] must live until the end of
//! `main`, because slog-async drops queued records when the process exits without it.

use std::io::IsTerminal;

use serde::Deserialize;
use slog::{o, Drain, Level, Logger};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    #[default]
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// trace, debug, info, warning, error or critical. Default info.
    #[serde(default = "default_level")]
    pub level: String,
    /// auto, text or json. Default auto.
    #[serde(default)]
    pub format: LogFormat,
}

fn default_level() -> String {
    "info".to_string()
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: default_level(),
            format: LogFormat::Auto,
        }
    }
}

impl LogSettings {
    pub fn level(&self) -> Result<Level, String> {
        let l = self.level.to_ascii_lowercase();
        let l = if l == "warn" {
            "warning".to_string()
        } else {
            l
        };
        l.parse::<Level>().map_err(|_| {
            format!(
                "unknown log level `{}`: use trace, debug, info, warning, error or critical",
                self.level
            )
        })
    }
}

/// Keeps the async drain alive; drop it last to flush every record.
pub struct LogGuard(#[allow(dead_code)] Option<slog_async::AsyncGuard>);

/// Builds the root logger. Falls back to `info` for an invalid level (config validation
/// reports that separately).
pub fn init(settings: &LogSettings) -> (Logger, LogGuard) {
    let level = settings.level().unwrap_or(Level::Info);
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let base: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = if json {
        Box::new(
            slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse(),
        )
    } else {
        let deco = slog_term::TermDecorator::new().stderr().build();
        Box::new(slog_term::FullFormat::new(deco).build().fuse())
    };
    let (drain, guard) = slog_async::Async::new(base)
        .chan_size(4096)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build_with_guard();
    let log = Logger::root(drain.filter_level(level).fuse(), o!());
    (log, LogGuard(Some(guard)))
}
