//! Where insights go: one `[channels.<name>]` table per destination.
//!
//! A channel is a [`sentinel_actors::channel::Channel`] (render + send) run by its own
//! [`ChannelActor`], so one slow or broken destination never delays another. The settings
//! are one flat struct with a `type` field rather than an internally tagged enum: the
//! `config` crate loses key paths inside tagged enums, and we want every error to name its
//! key (`channels.ops.webhook_url`). [`ChannelSettings::validate`] reports fields that do
//! not belong to the chosen type.
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
//! ```

pub mod console;
pub mod dingtalk;
pub mod feishu;
pub mod file;
pub mod post;
pub mod slack;
pub mod webhook;
pub mod wecom;
pub mod wecom_app;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Recipient};
use sentinel_actors::channel::{Channel, Drain, GetHealth};
use sentinel_actors::outbox::{MemoryOutbox, Outbox};
use serde::Deserialize;
use slog::{o, warn, Logger};

use sentinel_actors::channel::{ChannelActor, Deliver, RetryPolicy};
use sentinel_actors::throttle::Pacer;

use crate::problem::Problem;
use crate::render::{Lang, RenderOptions, DEFAULT_SQL_PREVIEW_CHARS};
use crate::secret::Secret;

pub use console::ConsoleChannel;
pub use dingtalk::DingTalkChannel;
pub use feishu::FeishuChannel;
pub use file::FileChannel;
pub use slack::SlackChannel;
pub use webhook::WebhookChannel;
pub use wecom::{MsgType, WeComChannel, WeComTarget};
pub use wecom_app::WeComAppChannel;

/// Shortest and longest accepted `sql_preview_chars`.
pub const SQL_PREVIEW_RANGE: std::ops::RangeInclusive<usize> = 20..=2000;

/// One `[channels.<name>]` table.
///
/// Only `type` is always required; each other field belongs to one type (or to all, as
/// noted) and setting it for another type is an error, so a misplaced key is not silently
/// ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// `console`, `wecom`, `wecom_app`, `webhook`, `feishu`, `dingtalk`, `slack` or `file`.
    #[serde(rename = "type")]
    pub kind: ChannelKind,

    /// wecom: the robot's full webhook URL, as shown when the robot was added to the group:
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<KEY>`. It is a secret (the key
    /// is the robot's only credential). Set this or `key`, not both.
    /// feishu, dingtalk, slack: the bot's webhook URL (required), also a secret.
    #[serde(default)]
    pub webhook_url: Option<Secret>,

    /// wecom: the robot key alone (the `key=` value of the webhook URL); a secret. Handy to
    /// pass from the environment: `POWA_SENTINEL__CHANNELS__<NAME>__KEY`.
    #[serde(default)]
    pub key: Option<Secret>,

    /// wecom (with `key` only) and wecom_app: where the WeCom API lives. Default
    /// `https://qyapi.weixin.qq.com`.
    #[serde(default)]
    pub base_url: Option<String>,

    /// wecom: message type, `markdown` (default), `markdown_v2` (lists, headings, tables,
    /// no colours, no mentions; needs WeCom ≥ 4.1.36) or `text`. wecom_app: `markdown`
    /// (default) or `text`.
    #[serde(default)]
    pub msgtype: Option<MsgType>,

    /// wecom, wecom_app, webhook, feishu, dingtalk, slack: time limit of one HTTP request,
    /// e.g. `"10s"`. Default 10s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,

    /// wecom: most messages sent per rolling minute with this robot key, 1 to 20 (WeCom's
    /// own limit is 20). Default 20. Channels that share a key share this budget.
    /// wecom_app: per application (corpid + agentid), 1 to 30; default 20.
    /// feishu: 1 to 100 (default 100; also kept under 5 per second). dingtalk: 1 to 20
    /// (default 20; exceeding it blocks the robot for 10 minutes). slack: 1 to 60 (default
    /// 60, about one per second).
    #[serde(default)]
    pub max_per_minute: Option<u32>,

    /// file: the JSON-lines file to append insights to (one JSON object per line). Parent
    /// directories are created. Required for type = "file".
    #[serde(default)]
    pub path: Option<PathBuf>,

    /// all types: longest SQL preview, in characters (20 to 2000). Default 200.
    #[serde(default)]
    pub sql_preview_chars: Option<usize>,

    /// console, wecom, wecom_app, feishu, dingtalk, slack: language of the fixed wording,
    /// `en` (default) or `zh`.
    #[serde(default)]
    pub language: Option<Lang>,

    /// wecom_app: the company id (`corpid`, "ww…").
    #[serde(default)]
    pub corpid: Option<String>,

    /// wecom_app: the application's secret; a secret. Or `corpsecret_file`, or the
    /// environment: `POWA_SENTINEL__CHANNELS__<NAME>__CORPSECRET`.
    #[serde(default)]
    pub corpsecret: Option<Secret>,

    /// wecom_app: a file holding the application's secret (surrounding whitespace is
    /// ignored).
    #[serde(default)]
    pub corpsecret_file: Option<PathBuf>,

    /// wecom_app: the application's `agentid`.
    #[serde(default)]
    pub agentid: Option<i64>,

    /// wecom_app: recipients: user ids (`["@all"]` for everyone), department ids, tag ids.
    /// At least one of the three.
    #[serde(default)]
    pub touser: Option<Vec<String>>,
    #[serde(default)]
    pub toparty: Option<Vec<String>>,
    #[serde(default)]
    pub totag: Option<Vec<String>>,

    /// webhook: where to POST the JSON payload; a secret (such URLs often carry a token).
    #[serde(default)]
    pub url: Option<Secret>,

    /// webhook: the HMAC-SHA256 key that signs each payload; a secret. Or
    /// `hmac_key_file`, or `POWA_SENTINEL__CHANNELS__<NAME>__HMAC_KEY`.
    #[serde(default)]
    pub hmac_key: Option<Secret>,

    /// webhook: a file holding the HMAC key (surrounding whitespace is ignored).
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,

    /// feishu, dingtalk: the bot's signing secret ("signature verification" / "加签";
    /// DingTalk's starts with `SEC`); a secret. Optional: without it messages are not
    /// signed. Or `secret_file`, or `POWA_SENTINEL__CHANNELS__<NAME>__SECRET`.
    #[serde(default)]
    pub secret: Option<Secret>,

    /// feishu, dingtalk: a file holding the signing secret (surrounding whitespace is
    /// ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// The kind of destination.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A plain-text report on stdout (stderr with `--output json`).
    Console,
    /// A WeCom group robot (webhook).
    Wecom,
    /// WeCom application messages (corpid + corpsecret → access token).
    WecomApp,
    /// A generic JSON webhook with an HMAC-SHA256 signature.
    Webhook,
    /// A JSON-lines file.
    File,
    /// A Feishu / Lark custom bot (webhook, optional signature).
    Feishu,
    /// A DingTalk custom robot (webhook with access_token, optional "SEC…" signature).
    Dingtalk,
    /// A Slack incoming webhook.
    Slack,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Console => "console",
            ChannelKind::Wecom => "wecom",
            ChannelKind::WecomApp => "wecom_app",
            ChannelKind::Webhook => "webhook",
            ChannelKind::File => "file",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Slack => "slack",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ChannelSettings {
    /// Checks what serde cannot; `path` is this table's key path, e.g. `channels.ops`.
    /// Messages never quote secret values.
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        let key = |field: &str| format!("{path}.{field}");
        // Which types each optional field belongs to, and whether it is set.
        use ChannelKind::{Console, Dingtalk, Feishu, File, Slack, Webhook, Wecom, WecomApp};
        let owned: [(&str, &[ChannelKind], bool); 20] = [
            (
                "webhook_url",
                &[Wecom, Feishu, Dingtalk, Slack],
                self.webhook_url.is_some(),
            ),
            ("key", &[Wecom], self.key.is_some()),
            ("base_url", &[Wecom, WecomApp], self.base_url.is_some()),
            ("msgtype", &[Wecom, WecomApp], self.msgtype.is_some()),
            (
                "timeout",
                &[Wecom, WecomApp, Webhook, Feishu, Dingtalk, Slack],
                self.timeout.is_some(),
            ),
            (
                "max_per_minute",
                &[Wecom, WecomApp, Feishu, Dingtalk, Slack],
                self.max_per_minute.is_some(),
            ),
            ("path", &[File], self.path.is_some()),
            (
                "language",
                &[Console, Wecom, WecomApp, Feishu, Dingtalk, Slack],
                self.language.is_some(),
            ),
            ("corpid", &[WecomApp], self.corpid.is_some()),
            ("corpsecret", &[WecomApp], self.corpsecret.is_some()),
            (
                "corpsecret_file",
                &[WecomApp],
                self.corpsecret_file.is_some(),
            ),
            ("agentid", &[WecomApp], self.agentid.is_some()),
            ("touser", &[WecomApp], self.touser.is_some()),
            ("toparty", &[WecomApp], self.toparty.is_some()),
            ("totag", &[WecomApp], self.totag.is_some()),
            ("url", &[Webhook], self.url.is_some()),
            ("hmac_key", &[Webhook], self.hmac_key.is_some()),
            ("hmac_key_file", &[Webhook], self.hmac_key_file.is_some()),
            ("secret", &[Feishu, Dingtalk], self.secret.is_some()),
            (
                "secret_file",
                &[Feishu, Dingtalk],
                self.secret_file.is_some(),
            ),
        ];
        for (field, owners, set) in owned {
            if set && !owners.contains(&self.kind) {
                let names: Vec<String> = owners.iter().map(|o| format!("\"{o}\"")).collect();
                problems.push(Problem::new(
                    key(field),
                    format!(
                        "not used by type = \"{}\" (it belongs to type = {}): remove it or change the type",
                        self.kind,
                        names.join(" or ")
                    ),
                ));
            }
        }
        if let Some(n) = self.sql_preview_chars {
            if !SQL_PREVIEW_RANGE.contains(&n) {
                problems.push(Problem::new(
                    key("sql_preview_chars"),
                    format!(
                        "must be between {} and {} characters (default {DEFAULT_SQL_PREVIEW_CHARS})",
                        SQL_PREVIEW_RANGE.start(),
                        SQL_PREVIEW_RANGE.end()
                    ),
                ));
            }
        }
        match self.kind {
            ChannelKind::Console => {}
            ChannelKind::Wecom => wecom::validate(self, path, problems),
            ChannelKind::WecomApp => wecom_app::validate(self, path, problems),
            ChannelKind::Webhook => webhook::validate(self, path, problems),
            ChannelKind::Feishu => feishu::validate(self, path, problems),
            ChannelKind::Dingtalk => dingtalk::validate(self, path, problems),
            ChannelKind::Slack => slack::validate(self, path, problems),
            ChannelKind::File => match &self.path {
                None => problems.push(Problem::new(
                    key("path"),
                    "required when type = \"file\": set the JSON-lines file to append insights to",
                )),
                Some(p) if p.as_os_str().is_empty() => problems.push(Problem::new(
                    key("path"),
                    "is empty: set the JSON-lines file to append insights to",
                )),
                Some(_) => {}
            },
        }
    }

    pub(crate) fn render_options(&self) -> RenderOptions {
        RenderOptions {
            sql_preview_chars: self.sql_preview_chars.unwrap_or(DEFAULT_SQL_PREVIEW_CHARS),
            lang: self.language.unwrap_or_default(),
            powa_web: Default::default(),
        }
    }
}

/// Shared while starting all channels of one run: the logger, where the console writes,
/// and one [`Pacer`] per destination (WeCom counts messages per robot key, so every
/// channel that posts with the same key must draw from the same budget).
pub struct ChannelEnv {
    pub log: Logger,
    pub console_to_stderr: bool,
    /// Pacer per destination, keyed by the robot key (a secret: never printed).
    pacers: HashMap<String, (u32, Arc<Pacer>)>,
    rate_window: Duration,
    retry: RetryPolicy,
    /// Where channel actors journal what they accept (see [`crate::outbox`]).
    outbox: Arc<dyn Outbox>,
    /// Health and drain handles of every channel started, by name.
    controls: BTreeMap<String, ChannelControl>,
    /// powa-web's address per repository name (`powa_web_url`).
    powa_web: BTreeMap<String, String>,
}

/// What the runtime can ask a running channel besides `Deliver`.
#[derive(Clone)]
pub struct ChannelControl {
    pub health: Recipient<GetHealth>,
    pub drain: Recipient<Drain>,
}

impl fmt::Debug for ChannelEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelEnv")
            .field("console_to_stderr", &self.console_to_stderr)
            .field("destinations", &self.pacers.len())
            .field("rate_window", &self.rate_window)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ChannelEnv {
    pub fn new(log: Logger, console_to_stderr: bool) -> Self {
        ChannelEnv {
            log,
            console_to_stderr,
            pacers: HashMap::new(),
            rate_window: wecom::RATE_WINDOW,
            retry: RetryPolicy::default(),
            outbox: Arc::new(MemoryOutbox::new()),
            controls: BTreeMap::new(),
            powa_web: BTreeMap::new(),
        }
    }

    /// The outbox channels journal into (default: in memory).
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    /// powa-web's address per repository, for the links in every channel's messages.
    pub fn with_powa_web(mut self, powa_web: BTreeMap<String, String>) -> Self {
        self.powa_web = powa_web;
        self
    }

    /// Health and drain handles of the channels started so far, by name.
    pub fn controls(&self) -> &BTreeMap<String, ChannelControl> {
        &self.controls
    }

    /// Starts `actor` with this run's outbox and keeps its control handles.
    fn spawn<C: Channel>(&mut self, name: &str, actor: ChannelActor<C>) -> Recipient<Deliver> {
        let addr = actor.with_outbox(Arc::clone(&self.outbox)).start();
        self.controls.insert(
            name.to_string(),
            ChannelControl {
                health: addr.clone().recipient(),
                drain: addr.clone().recipient(),
            },
        );
        addr.recipient()
    }

    /// The window that `max_per_minute` counts in. One minute (WeCom's rule); tests against
    /// a fake robot with a scaled-down window shorten it.
    pub fn with_rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// How channels retry (default: [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn rate_window(&self) -> Duration {
        self.rate_window
    }

    /// The pacer of `destination`, created on first use with `max` per window.
    fn pacer_for(&mut self, destination: &str, max: u32, log: &Logger) -> Arc<Pacer> {
        self.pacer_in(destination, max, self.rate_window, log)
    }

    /// Like [`ChannelEnv::pacer_for`], counting in `window` rather than the rate window
    /// (for providers with a per-second limit too: Feishu, Slack).
    fn pacer_in(
        &mut self,
        destination: &str,
        max: u32,
        window: Duration,
        log: &Logger,
    ) -> Arc<Pacer> {
        if let Some((first, pacer)) = self.pacers.get(destination) {
            if *first != max {
                warn!(log, "Channels sharing one robot key ask for different max_per_minute; the first one applies.";
                    "max_per_minute" => max, "applied" => *first);
            }
            return Arc::clone(pacer);
        }
        let pacer = Arc::new(Pacer::new(max, window));
        self.pacers
            .insert(destination.to_string(), (max, Arc::clone(&pacer)));
        pacer
    }
}

/// A secret given inline or in a file (`<field>_file`): exactly one of them. Error texts
/// name the key and the file, never the value.
pub(crate) fn resolve_secret(
    path: &str,
    field: &str,
    inline: Option<&Secret>,
    file: Option<&std::path::Path>,
) -> Result<Secret, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "{path}.{field}: set either {field} or {field}_file, not both"
        )),
        (Some(s), None) if s.expose().trim().is_empty() => Err(format!("{path}.{field}: is empty")),
        (Some(s), None) => Ok(Secret::new(s.expose().trim())),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("{path}.{field}_file: cannot read {}: {e}", f.display()))?;
            let t = text.trim();
            if t.is_empty() {
                return Err(format!("{path}.{field}_file: {} is empty", f.display()));
            }
            Ok(Secret::new(t))
        }
        (None, None) => Err(format!(
            "{path}.{field}: required: set {field} (or {field}_file, or the environment variable)"
        )),
    }
}

/// Checks an optional signing secret pair (`secret` / `secret_file`): not both, not
/// empty, and starting with `prefix` when the provider's secrets do. Never quotes it.
pub(crate) fn validate_secret_pair(
    s: &ChannelSettings,
    path: &str,
    prefix: Option<&str>,
    problems: &mut Vec<Problem>,
) {
    let key = |field: &str| format!("{path}.{field}");
    match (&s.secret, &s.secret_file) {
        (Some(_), Some(_)) => problems.push(Problem::new(
            key("secret_file"),
            "set either secret or secret_file, not both: remove one of them",
        )),
        (Some(v), None) if v.expose().trim().is_empty() => problems.push(Problem::new(
            key("secret"),
            "is empty: set the bot's signing secret, or remove the key to send unsigned",
        )),
        (Some(v), None) => {
            if let Some(p) = prefix {
                if !v.expose().trim().starts_with(p) {
                    problems.push(Problem::new(
                        key("secret"),
                        format!(
                            "does not start with \"{p}\": copy the signing secret shown in the \
                             robot's security settings"
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// The optional signing secret (`secret` or `secret_file`, read now).
pub(crate) fn optional_secret(s: &ChannelSettings) -> Result<Option<Secret>, String> {
    if s.secret.is_none() && s.secret_file.is_none() {
        return Ok(None);
    }
    resolve_secret(
        "channel",
        "secret",
        s.secret.as_ref(),
        s.secret_file.as_deref(),
    )
    .map(Some)
}

/// `timeout` between 1s and 5m.
pub(crate) fn validate_timeout(s: &ChannelSettings, path: &str, problems: &mut Vec<Problem>) {
    if let Some(t) = s.timeout {
        if t.is_zero() || t > wecom::MAX_TIMEOUT {
            problems.push(Problem::new(
                format!("{path}.timeout"),
                "must be between 1s and 5m, e.g. \"10s\" (the default)",
            ));
        }
    }
}

/// `max_per_minute` between 1 and the provider's own limit.
pub(crate) fn validate_max(
    s: &ChannelSettings,
    path: &str,
    limit: u32,
    provider: &str,
    problems: &mut Vec<Problem>,
) {
    if let Some(n) = s.max_per_minute {
        if n == 0 || n > limit {
            problems.push(Problem::new(
                format!("{path}.max_per_minute"),
                format!(
                    "must be between 1 and {limit}: {provider} accepts at most {limit} messages \
                     per minute per bot"
                ),
            ));
        }
    }
}

/// Starts the [`ChannelActor`] of channel `name` on the current arbiter. Must be called
/// inside a running actix System. Fails (without quoting secrets) if the settings are
/// invalid.
pub fn start(
    name: &str,
    settings: &ChannelSettings,
    env: &mut ChannelEnv,
) -> anyhow::Result<Recipient<Deliver>> {
    let mut problems = Vec::new();
    settings.validate(&format!("channels.{name}"), &mut problems);
    if !problems.is_empty() {
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("key `{}`: {}", p.key, p.message))
            .collect();
        anyhow::bail!("channel `{name}` is misconfigured: {}", text.join("; "));
    }
    let log = env
        .log
        .new(o!("channel" => name.to_string(), "type" => settings.kind.as_str()));
    let mut opts = settings.render_options();
    opts.powa_web = env.powa_web.clone();
    let retry = env.retry.clone();
    let recipient = match settings.kind {
        ChannelKind::Console => {
            let ch = ConsoleChannel::new(env.console_to_stderr, opts);
            env.spawn(name, ChannelActor::new(name, ch, None, retry, log))
        }
        ChannelKind::File => {
            let path = settings
                .path
                .clone()
                .ok_or_else(|| anyhow::anyhow!("channel `{name}`: path is required"))?;
            let ch = FileChannel::new(path);
            env.spawn(name, ChannelActor::new(name, ch, None, retry, log))
        }
        ChannelKind::Wecom => {
            let target = WeComTarget::from_settings(settings)
                .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
            let max = settings
                .max_per_minute
                .unwrap_or(wecom::DEFAULT_MAX_PER_MINUTE);
            let pacer = env.pacer_for(target.destination(), max, &log);
            let ch = WeComChannel::new(
                target,
                settings.msgtype.unwrap_or_default(),
                settings.timeout.unwrap_or(wecom::DEFAULT_TIMEOUT),
                opts,
                env.rate_window,
            );
            env.spawn(name, ChannelActor::new(name, ch, Some(pacer), retry, log))
        }
        ChannelKind::WecomApp => {
            let app = wecom_app::AppSettings::from_settings(settings)
                .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
            let max = settings
                .max_per_minute
                .unwrap_or(wecom_app::DEFAULT_MAX_PER_MINUTE);
            let pacer = env.pacer_for(&app.destination(), max, &log);
            let ch = WeComAppChannel::new(app, opts, env.rate_window);
            env.spawn(name, ChannelActor::new(name, ch, Some(pacer), retry, log))
        }
        ChannelKind::Webhook => {
            let hook = webhook::WebhookSettings::from_settings(settings)
                .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
            let ch = WebhookChannel::new(hook, opts);
            env.spawn(name, ChannelActor::new(name, ch, None, retry, log))
        }
        ChannelKind::Feishu => {
            let hook = feishu::FeishuSettings::from_settings(settings)
                .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
            let max = settings
                .max_per_minute
                .unwrap_or(feishu::DEFAULT_MAX_PER_MINUTE);
            let (max, window) = feishu::pacer_quota(max, env.rate_window);
            let pacer = env.pacer_in(hook.destination(), max, window, &log);
            let ch = FeishuChannel::new(hook, opts, env.rate_window);
            env.spawn(name, ChannelActor::new(name, ch, Some(pacer), retry, log))
        }
        ChannelKind::Dingtalk => {
            let hook = dingtalk::DingTalkSettings::from_settings(settings)
                .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
            let max = settings
                .max_per_minute
                .unwrap_or(dingtalk::DEFAULT_MAX_PER_MINUTE);
            let pacer = env.pacer_for(&hook.destination(), max, &log);
            let ch = DingTalkChannel::new(hook, opts, env.rate_window);
            env.spawn(name, ChannelActor::new(name, ch, Some(pacer), retry, log))
        }
        ChannelKind::Slack => {
            let hook = slack::SlackSettings::from_settings(settings)
                .map_err(|e| anyhow::anyhow!("channel `{name}`: {e}"))?;
            let max = settings
                .max_per_minute
                .unwrap_or(slack::DEFAULT_MAX_PER_MINUTE);
            let (max, window) = slack::pacer_quota(max, env.rate_window);
            let pacer = env.pacer_in(hook.destination(), max, window, &log);
            let ch = SlackChannel::new(hook, opts);
            env.spawn(name, ChannelActor::new(name, ch, Some(pacer), retry, log))
        }
    };
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> ChannelSettings {
        serde_json::from_value(v).expect("settings parse")
    }

    fn problems(s: &ChannelSettings) -> Vec<Problem> {
        let mut p = Vec::new();
        s.validate("channels.ops", &mut p);
        p
    }

    #[test]
    fn console_needs_nothing() {
        let s = parse(serde_json::json!({"type": "console"}));
        assert_eq!(s.kind, ChannelKind::Console);
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn fields_of_another_type_are_problems() {
        let s = parse(serde_json::json!({"type": "console", "key": "k", "path": "/tmp/x"}));
        let p = problems(&s);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["channels.ops.key", "channels.ops.path"]);
        assert!(p[0].message.contains("type = \"wecom\""), "{p:?}");
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        let e = serde_json::from_value::<ChannelSettings>(
            serde_json::json!({"type": "console", "colour": "red"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let e = serde_json::from_value::<ChannelSettings>(serde_json::json!({"type": "teams"}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown variant `teams`"), "{e}");
    }

    #[test]
    fn file_requires_a_path() {
        let p = problems(&parse(serde_json::json!({"type": "file"})));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "channels.ops.path");
        assert!(p[0].message.starts_with("required when type = \"file\""));
        assert!(problems(&parse(
            serde_json::json!({"type": "file", "path": "x.jsonl"})
        ))
        .is_empty());
    }

    #[test]
    fn preview_length_is_bounded() {
        let p = problems(&parse(
            serde_json::json!({"type": "console", "sql_preview_chars": 5}),
        ));
        assert_eq!(p[0].key, "channels.ops.sql_preview_chars");
    }

    /// The commented chat-robot examples of the shipped configuration parse and validate
    /// once uncommented, so the documentation cannot drift from the keys.
    #[test]
    fn documented_chat_robot_examples_are_valid() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml");
        let text = std::fs::read_to_string(p).unwrap();
        let (_, tail) = text.split_once("# Chat robots").expect("section present");
        let example: String = tail
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with("[channels.")
                    || l.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    })
            })
            .map(|l| format!("{l}\n"))
            .collect();
        #[derive(Deserialize)]
        struct Doc {
            channels: BTreeMap<String, ChannelSettings>,
        }
        let doc: Doc = config::Config::builder()
            .add_source(config::File::from_str(&example, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap_or_else(|e| panic!("{e}\n{example}"));
        let kinds: Vec<ChannelKind> = doc.channels.values().map(|s| s.kind).collect();
        for k in [
            ChannelKind::Feishu,
            ChannelKind::Dingtalk,
            ChannelKind::Slack,
        ] {
            assert!(kinds.contains(&k), "{k} has no example");
        }
        for (name, s) in &doc.channels {
            let mut p = Vec::new();
            s.validate(&format!("channels.{name}"), &mut p);
            assert!(p.is_empty(), "{name}: {p:?}");
        }
    }

    #[test]
    fn env_debug_hides_destinations() {
        let log = Logger::root(slog::Discard, o!());
        let mut env = ChannelEnv::new(log.clone(), false);
        let a = env.pacer_for("http://h/send?key=SECRET1", 20, &log);
        let b = env.pacer_for("http://h/send?key=SECRET1", 20, &log);
        assert!(Arc::ptr_eq(&a, &b), "one pacer per destination");
        let c = env.pacer_for("http://h/send?key=SECRET2", 20, &log);
        assert!(!Arc::ptr_eq(&a, &c));
        let d = format!("{env:?}");
        assert!(!d.contains("SECRET"), "{d}");
    }
}
