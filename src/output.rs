//! `--output json`: the insights of a run as JSON lines on stdout, and nothing else there.
//! Implemented as a channel so that it sees exactly what the channels see.

use std::io::Write;

use futures_util::future::LocalBoxFuture;
use sentinel_actors::channel::Channel;
use sentinel_actors::{ChannelError, Notification};

/// Name of the internal channel; not a valid name for configured channels (they cannot
/// contain `:`), so it never collides.
pub const JSON_OUTPUT_CHANNEL: &str = "output:json";

pub struct JsonLinesOutput;

impl Channel for JsonLinesOutput {
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        let mut out = String::new();
        for insight in n.insights.iter() {
            let line = serde_json::to_string(insight).map_err(|e| ChannelError::Permanent {
                reason: format!("cannot encode an insight as JSON: {e}"),
            })?;
            out.push_str(&line);
            out.push('\n');
        }
        Ok(vec![out])
    }

    fn send(&self, part: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            lock.write_all(part.as_bytes())
                .and_then(|_| lock.flush())
                .map_err(|e| ChannelError::Permanent {
                    reason: format!("cannot write to stdout: {e}"),
                })
        })
    }
}
