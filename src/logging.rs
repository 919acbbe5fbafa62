//! Logging with slog: human-readable lines on a terminal, JSON lines otherwise (or as
//! configured), always on stderr so that stdout stays free for `--output json`.
//!
//! Records go through slog-async; the returned [`LogGuard`] must live until the end of
//! `main`, because slog-async drops queued records when the process exits without it.
//!
//! Secrets: settings hold them as `Secret` (redacted in Debug and Display), but an error
//! from a driver or a parser may still quote a value. As a last line of defence every
//! secret of the settings is registered ([`register_secrets`]) and scrubbed from each log
//! line before it reaches stderr ([`Redacting`]). Components log with a child logger that
//! carries `component` and, where it applies, `server`, `repository` or `channel`.

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
            slog_json::Json::new(Redacting::new(std::io::stderr()))
                .add_default_keys()
                .build()
                .fuse(),
        )
    } else {
        if std::io::stderr().is_terminal() {
            let deco = slog_term::TermDecorator::new().stderr().build();
            Box::new(slog_term::FullFormat::new(deco).build().fuse())
        } else {
            let deco = slog_term::PlainDecorator::new(Redacting::new(std::io::stderr()));
            Box::new(slog_term::FullFormat::new(deco).build().fuse())
        }
    };
    let (drain, guard) = slog_async::Async::new(base)
        .chan_size(4096)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build_with_guard();
    let log = Logger::root(drain.filter_level(level).fuse(), o!());
    (log, LogGuard(Some(guard)))
}

fn secrets() -> &'static std::sync::RwLock<Vec<String>> {
    static S: std::sync::OnceLock<std::sync::RwLock<Vec<String>>> = std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

/// Adds values that must never appear in the logs (passwords, robot keys, webhook URLs).
/// Values shorter than 4 characters are ignored: scrubbing them would mangle the logs.
pub fn register_secrets<I: IntoIterator<Item = String>>(values: I) {
    if let Ok(mut s) = secrets().write() {
        for v in values {
            if v.len() >= 4 && !s.contains(&v) {
                s.push(v);
            }
        }
        // Longest first, so a URL is replaced before the key inside it.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered secret replaced (for text shown outside the logs, such
/// as `/status`).
pub fn redact(text: &str) -> String {
    let mut text = text.to_string();
    if let Ok(s) = secrets().read() {
        for v in s.iter() {
            if text.contains(v.as_str()) {
                text = text.replace(v.as_str(), "[REDACTED]");
            }
        }
    }
    text
}

/// Scrubs registered secrets from what it writes, one line at a time (a secret split
/// across two writes is still found).
pub struct Redacting<W: std::io::Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: std::io::Write> Redacting<W> {
    pub fn new(inner: W) -> Self {
        Redacting {
            inner,
            buf: Vec::new(),
        }
    }

    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let line: Vec<u8> = self.buf.drain(..upto).collect();
        let text = redact(&String::from_utf8_lossy(&line));
        self.inner.write_all(text.as_bytes())
    }
}

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            self.emit(i + 1)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let n = self.buf.len();
            self.emit(n)?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn registered_secrets_never_reach_the_output() {
        register_secrets(["hunter2-secret".to_string(), "ab".to_string()]);
        let mut out = Vec::new();
        {
            let mut w = Redacting::new(&mut out);
            // Split across writes, as a formatter may do.
            w.write_all(b"connect failed: password=hunter2-se").unwrap();
            w.write_all(b"cret host=ab\nnext").unwrap();
            w.flush().unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "connect failed: password=[REDACTED] host=ab\nnext");
    }
}
