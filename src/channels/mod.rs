//! Where insights go: one `[channels.<name>]` table per destination.
//!
//! A channel is a [`sentinel_actors::channel::Channel`] (render + send) run by its own
//! [`ChannelActor`](sentinel_actors::channel::ChannelActor), so one slow or broken
//! destination never delays another. Each kind is one file (its settings struct, its
//! checks, its provider rules) and one line in [`KINDS`]; the HTTP providers share one
//! delivery layer ([`robot`]).
//!
//! The table is not an internally tagged enum: the `config` crate loses key paths inside
//! them, and every error must name its key (`channels.ops.webhook_url`). It is read
//! value-then-typed instead ([`settings`]); a key of another type is reported as such
//! ("it belongs to type = \"file\""), an unknown one with the keys this type takes.
//!
//! ```toml
//! [channels.console]
//! type = "console"
//!
//! [channels.ops]
//! type = "wecom"
//! webhook_url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"  # or: key = "…"
//! msgtype = "markdown"       # markdown | markdown_v2 | text
//! timeout = "10s"
//! max_per_minute = 20
//!
//! [channels.archive]
//! type = "file"
//! path = "/var/lib/powa-sentinel/insights.jsonl"
//!
//! [channels.dba]
//! type = "wecom_app"          # WeCom application messages
//! corpid = "ww…"
//! corpsecret_file = "/etc/powa-sentinel/corpsecret"
//! agentid = 1000002
//! touser = ["zhangsan"]
//!
//! [channels.hook]
//! type = "webhook"            # generic JSON webhook, HMAC-signed (docs/webhook.md)
//! url = "https://example.org/hooks/powa"
//! hmac_key_file = "/etc/powa-sentinel/hmac"
//!
//! [channels.lark]
//! type = "feishu"             # Feishu / Lark custom bot; also "dingtalk", "slack"
//! webhook_url = "https://open.feishu.cn/open-apis/bot/v2/hook/…"
//! secret_file = "/etc/powa-sentinel/feishu-secret"   # optional signing secret
//! format = "card"            # interactive cards (Slack: "blocks"), or "text"
//!
//! [channels.mail]
//! type = "email"              # SMTP, STARTTLS by default; HTML and plain-text parts
//! smtp_host = "smtp.example.org"
//! username = "powa-sentinel"
//! password_file = "/etc/powa-sentinel/smtp-password"
//! from = "PoWA Sentinel <powa-sentinel@example.org>"
//! to = ["dba@example.org"]
//! ```

pub mod check;
pub mod hook;
pub mod registry;
pub mod robot;
pub mod settings;
pub mod start;

pub mod console;
pub mod dingtalk;
pub mod email;
pub mod feishu;
pub mod file;
pub mod front;
pub mod slack;
pub mod webhook;
pub mod wecom;
pub mod wecom_app;
pub mod wecom_callback;

use actix::Recipient;
use slog::Logger;

use sentinel_actors::channel::Deliver;

pub use console::ConsoleChannel;
pub use dingtalk::DingTalkChannel;
pub use feishu::FeishuChannel;
pub use file::FileChannel;
pub use registry::{ChannelType, Kind, Rate, Takes};
pub use settings::{ChannelSettings, CommonSettings, SQL_PREVIEW_RANGE};
pub use slack::SlackChannel;
pub use start::{ChannelControl, ChannelEnv, Pacing, Starter};
pub use webhook::WebhookChannel;
pub use wecom::{MsgType, WeComChannel, WeComTarget};
pub use wecom_app::WeComAppChannel;

/// The registry: every channel kind, in the order error messages list them. A new kind
/// is its file (its `pub mod` line above) and one line here.
pub const KINDS: &[Kind] = &[
    Kind::of::<console::Console>(),
    Kind::of::<wecom::WeCom>(),
    Kind::of::<wecom_app::WeComApp>(),
    Kind::of::<webhook::Webhook>(),
    Kind::of::<file::File>(),
    Kind::of::<feishu::Feishu>(),
    Kind::of::<dingtalk::DingTalk>(),
    Kind::of::<slack::Slack>(),
    Kind::of::<email::Email>(),
];

/// Starts the channel actor of channel `name` on the current arbiter. Must be called
/// inside a running actix System. Fails (without quoting secrets) if the settings are
/// invalid or a secret file cannot be read.
pub fn start(
    name: &str,
    settings: &ChannelSettings,
    env: &mut ChannelEnv,
) -> anyhow::Result<Recipient<Deliver>> {
    let checked = settings.checked(name)?;
    let mut starter = Starter::deliver(name, settings, env);
    let started = checked
        .start(&mut starter)
        .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
    Ok(starter.archived(started))
}

/// Starts a printing actor for channel `name` that renders as the channel does and sends
/// nothing (`--dry-run`, `backtest`).
pub fn start_dry_run(
    name: &str,
    settings: &ChannelSettings,
    log: &Logger,
) -> anyhow::Result<Recipient<Deliver>> {
    let checked = settings.checked(name)?;
    let started = checked.dry_run(&mut Starter::dry_run(name, settings, log));
    started.map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))
}
