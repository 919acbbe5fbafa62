//! `--dry-run` and `backtest`: every configured channel renders exactly as it would, and the
//! rendered messages are printed on stdout instead of being sent. Nothing leaves the host.

use std::collections::BTreeMap;
use std::io::Write as _;

use actix::{Actor, Recipient};
use futures_util::future::LocalBoxFuture;
use slog::{o, Logger};

use crate::channels::{
    dingtalk, feishu, slack, webhook, wecom, wecom_app, ChannelKind, ChannelSettings,
    ConsoleChannel, DingTalkChannel, FeishuChannel, SlackChannel, WeComAppChannel, WeComChannel,
    WeComTarget, WebhookChannel,
};
use sentinel_actors::channel::{Channel, ChannelActor, Deliver, RetryPolicy};
use sentinel_actors::{ChannelError, Notification};

/// A channel's renderer with a printing `send`.
pub struct DryRun<C> {
    name: String,
    inner: C,
}

impl<C: Channel> Channel for DryRun<C>
where
    C::Part: std::fmt::Display,
{
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        let parts = self.inner.render(n)?;
        let total = parts.len();
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "----- channel {} · message {}/{} -----\n{p}\n",
                    self.name,
                    i + 1,
                    total
                )
            })
            .collect())
    }

    fn send(&self, part: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            out.write_all(part.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| ChannelError::Permanent {
                    reason: format!("stdout: {e}"),
                })
        })
    }
}

fn start<C: Channel>(name: &str, inner: C, log: &Logger) -> Recipient<Deliver>
where
    C::Part: std::fmt::Display,
{
    ChannelActor::new(
        name,
        DryRun {
            name: name.to_string(),
            inner,
        },
        None,
        RetryPolicy::default(),
        log.new(o!("channel" => name.to_string(), "dry_run" => true)),
    )
    .start()
    .recipient()
}

/// One printing actor per configured channel, rendering as that channel does.
pub fn start_all(
    channels: &BTreeMap<String, ChannelSettings>,
    log: &Logger,
) -> anyhow::Result<BTreeMap<String, Recipient<Deliver>>> {
    let mut out = BTreeMap::new();
    for (name, s) in channels {
        let opts = s.render_options();
        let r = match s.kind {
            // Console and file channels print what the console shows.
            ChannelKind::Console | ChannelKind::File => {
                start(name, ConsoleChannel::new(false, opts), log)
            }
            ChannelKind::Wecom => {
                let target = WeComTarget::from_settings(s)
                    .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
                let ch = WeComChannel::new(
                    target,
                    s.msgtype.unwrap_or_default(),
                    s.timeout.unwrap_or(wecom::DEFAULT_TIMEOUT),
                    opts,
                    wecom::RATE_WINDOW,
                );
                start(name, ch, log)
            }
            ChannelKind::WecomApp => {
                let app = wecom_app::AppSettings::from_settings(s)
                    .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
                start(
                    name,
                    WeComAppChannel::new(app, opts, wecom::RATE_WINDOW),
                    log,
                )
            }
            ChannelKind::Webhook => {
                let hook = webhook::WebhookSettings::from_settings(s)
                    .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
                start(name, WebhookChannel::new(hook, opts), log)
            }
            ChannelKind::Feishu => {
                let hook = feishu::FeishuSettings::from_settings(s)
                    .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
                let ch = FeishuChannel::new(hook, opts, wecom::RATE_WINDOW);
                start(name, ch, log)
            }
            ChannelKind::Dingtalk => {
                let hook = dingtalk::DingTalkSettings::from_settings(s)
                    .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
                let ch = DingTalkChannel::new(hook, opts, wecom::RATE_WINDOW);
                start(name, ch, log)
            }
            ChannelKind::Slack => {
                let hook = slack::SlackSettings::from_settings(s)
                    .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
                start(name, SlackChannel::new(hook, opts), log)
            }
        };
        out.insert(name.clone(), r);
    }
    Ok(out)
}
