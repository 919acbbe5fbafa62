//! WeCom group robot ("群机器人" / message push) over its webhook.
//!
//! `POST <base>/cgi-bin/webhook/send?key=<KEY>` with a JSON body. The key is the robot's
//! only credential, so it lives in a [`Secret`] and every text that could carry it (awc
//! errors echo URLs) goes through [`WeComTarget::redact`].
//!
//! WeCom answers errors with HTTP 200 and a non-zero `errcode`; [`classify`] decides on
//! the status and `errcode` only, never on `errmsg` (it carries a hint id and our egress
//! IP). Limits are UTF-8 bytes (markdown 4096, text 2048): the renderers aim at 4000/2000.
//! The rate limit (20 messages per minute per robot, every attempt counts) is enforced by
//! the [`Pacer`](sentinel_actors::throttle::Pacer) the channel actor waits on before each
//! attempt, shared by all channels with the same key.

use std::time::Duration;

use actix::{Actor, Recipient};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use sentinel_actors::channel::Deliver;
use sentinel_actors::message::Mentions;
use sentinel_actors::{ChannelError, Notification, Severity};

use super::robot::{Answer, HttpChannel, Rendered, Request, Robot, JSON};
use super::{check, ChannelType, Starter, Takes};
use crate::problem::Problem;
use crate::render::{self, RenderOptions, Style};
use crate::secret::Secret;

/// Where WeCom's API lives unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://qyapi.weixin.qq.com";
/// The path of the robot webhook below `base_url`.
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";
/// WeCom accepts at most this many messages per robot per minute.
pub const MAX_PER_MINUTE: u32 = 20;
/// Default `max_per_minute`.
pub const DEFAULT_MAX_PER_MINUTE: u32 = MAX_PER_MINUTE;
/// What the limit of `max_per_minute` is, in words.
const LIMIT: &str = "WeCom accepts at most 20 messages per minute per robot";

/// `[channels.<name>] type = "wecom"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeComSettings {
    /// The robot's full webhook URL, as shown when the robot was added to the group:
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<KEY>`. A secret (the key is
    /// the robot's only credential). Set this or `key`, not both.
    pub webhook_url: Option<Secret>,
    /// The robot key alone (the `key=` value of the webhook URL); a secret. Handy to pass
    /// from the environment: `POWA_SENTINEL__CHANNELS__<NAME>__KEY`.
    pub key: Option<Secret>,
    /// With `key` only: where the WeCom API lives. Default `https://qyapi.weixin.qq.com`.
    pub base_url: Option<String>,
    /// Message type, `markdown` (default), `markdown_v2` (lists, headings, tables, no
    /// colours, no mentions; needs WeCom ≥ 4.1.36) or `text`.
    pub msgtype: Option<MsgType>,
    /// Trend charts (PNG `image` messages) after the regressions, workload changes and
    /// worst slow queries they show, read from PoWA when the message is sent. Each is a
    /// message of the robot's 20 per minute; a digest drops them first. Default true;
    /// `false` sends text only.
    pub charts: Option<bool>,
}

/// A checked WeCom robot channel.
#[derive(Debug)]
pub struct WeCom {
    target: WeComTarget,
    msgtype: MsgType,
    charts: bool,
}

impl ChannelType for WeCom {
    const TYPE: &'static str = "wecom";
    const SECRET_KEYS: &'static [&'static str] = &["webhook_url", "key"];
    /// Channels that share a key share this budget.
    const TAKES: Takes = Takes::robot(MAX_PER_MINUTE, DEFAULT_MAX_PER_MINUTE, LIMIT);
    type Settings = WeComSettings;

    fn check(s: WeComSettings) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        match target(&s, &mut problems) {
            Some(target) if problems.is_empty() => Ok(WeCom {
                target,
                msgtype: s.msgtype.unwrap_or_default(),
                charts: s.charts.unwrap_or(true),
            }),
            _ => Err(problems),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.target.secrets().to_vec()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let pacing = start.pacing(self.target.destination());
        let mut trends = self.charts.then(|| start.trends()).flatten();
        if trends.is_some() {
            if let Err(e) = crate::chart::fonts_available(start.render_options().lang) {
                slog::warn!(start.log(), "Trend charts are off for this channel."; "error" => %e);
                trends = None;
            }
        }
        let ch = WeComChannel::with_charts(
            self.target.clone(),
            self.msgtype,
            start.timeout(),
            start.render_options(),
            start.rate_window(),
            trends.is_some(),
        );
        let channel = start.spawn(ch, Some(pacing));
        Ok(match trends {
            Some(t) => crate::chart::enrich::ChartEnricher::new(start.name(), channel, t)
                .start()
                .recipient(),
            None => channel,
        })
    }
}

/// The robot the settings name: `webhook_url`, or `key` (with `base_url`).
fn target(s: &WeComSettings, problems: &mut Vec<Problem>) -> Option<WeComTarget> {
    let (key, found) = match (&s.webhook_url, &s.key) {
        (None, None) => (
            "webhook_url",
            Err(
                "required when type = \"wecom\": set the robot's webhook URL \
                 (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…), or use key = \"…\" with \
                 the robot key alone (the part after key= in that URL)"
                    .to_string(),
            ),
        ),
        (Some(_), Some(_)) => (
            "key",
            Err("set either webhook_url or key, not both: remove one of them".to_string()),
        ),
        (Some(url), None) => {
            let t = WeComTarget::from_webhook_url(url.expose());
            if let Err(e) = &t {
                problems.push(Problem::new("webhook_url", e.clone()));
            }
            if s.base_url.is_some() {
                problems.push(Problem::new(
                    "base_url",
                    "only used with key =: remove it, webhook_url already names the host",
                ));
            }
            return t.ok();
        }
        (None, Some(k)) => match check_key(k.expose()) {
            Err(e) => ("key", Err(e)),
            Ok(()) => (
                "base_url",
                WeComTarget::from_key(
                    s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
                    k.expose(),
                ),
            ),
        },
    };
    found.map_err(|e| problems.push(Problem::new(key, e))).ok()
}

/// The `msgtype` of the messages sent.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    /// Markdown v1: headings, bold, inline code, quotes, `<font color>`. Every client shows
    /// it.
    #[default]
    Markdown,
    /// Markdown v2: lists, tables, no colours; older clients show it as plain text.
    MarkdownV2,
    /// Plain text, 2048 bytes per message.
    Text,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Markdown => "markdown",
            MsgType::MarkdownV2 => "markdown_v2",
            MsgType::Text => "text",
        }
    }

    /// WeCom's byte limit for the content of this type.
    pub fn limit(self) -> usize {
        match self {
            MsgType::Markdown | MsgType::MarkdownV2 => render::WECOM_MARKDOWN_LIMIT,
            MsgType::Text => render::WECOM_TEXT_LIMIT,
        }
    }

    /// What the renderers aim for: the limit less a safety margin.
    pub fn budget(self) -> usize {
        match self {
            MsgType::Markdown | MsgType::MarkdownV2 => render::WECOM_MARKDOWN_BUDGET,
            MsgType::Text => render::WECOM_TEXT_BUDGET,
        }
    }

    pub(crate) fn style(self) -> Style {
        match self {
            MsgType::Markdown => Style::Markdown,
            MsgType::MarkdownV2 => Style::MarkdownV2,
            MsgType::Text => Style::Text,
        }
    }
}

/// The request body for one message.
pub fn message_body(msgtype: MsgType, content: &str) -> String {
    message_body_with(msgtype, content, &[], &[])
}

/// The request body for one message, with `mentioned_list` / `mentioned_mobile_list`
/// (only `text` has them; ignored for the markdown types).
pub fn message_body_with(
    msgtype: MsgType,
    content: &str,
    userids: &[String],
    mobiles: &[String],
) -> String {
    let mut inner = serde_json::Map::new();
    inner.insert("content".into(), content.into());
    if msgtype == MsgType::Text {
        if !userids.is_empty() {
            inner.insert("mentioned_list".into(), userids.into());
        }
        if !mobiles.is_empty() {
            inner.insert("mentioned_mobile_list".into(), mobiles.into());
        }
    }
    let mut body = serde_json::Map::new();
    body.insert("msgtype".into(), msgtype.as_str().into());
    body.insert(msgtype.as_str().into(), serde_json::Value::Object(inner));
    serde_json::Value::Object(body).to_string()
}

/// At most this many user ids and as many mobiles are mentioned per message.
pub const MAX_MENTIONS: usize = 50;
/// Bytes of a markdown (v1) message kept for its `<@userid>` line.
pub const MENTION_LINE_BYTES: usize = 1000;

/// The mentions of a notification that WeCom can act on: valid user ids and mobile
/// numbers (digits, `+`, `-`, 5 to 20 characters), at most [`MAX_MENTIONS`] each, in
/// order, without duplicates.
pub fn valid_mentions(m: &Mentions) -> (Vec<String>, Vec<String>) {
    fn keep(v: &[String], ok: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for x in v.iter().map(|x| x.trim()) {
            if ok(x) && !out.iter().any(|y| y == x) && out.len() < MAX_MENTIONS {
                out.push(x.to_string());
            }
        }
        out
    }
    let users = keep(&m.userids, render::valid_userid);
    let mobiles = keep(&m.mobiles, |x| {
        (5..=20).contains(&x.len())
            && x.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-'))
    });
    (users, mobiles)
}

/// The bodies for notification `n`: the report in `msgtype` within its byte budget (a
/// digest in at most `max_parts` messages when given), with the mentions placed where the
/// message type allows:
///
/// - `markdown`: user ids as `<@userid>` on the last line of the first message; mobiles
///   cannot be mentioned in markdown, so they go in one extra short `text` message;
/// - `markdown_v2`: no mentions at all in the format, so all of them go in one extra short
///   `text` message (`mentioned_list` + `mentioned_mobile_list`) after the report;
/// - `text`: `mentioned_list` / `mentioned_mobile_list` on the first message.
///
/// The extra message counts against `max_parts` and is paced like every other.
pub fn bodies(
    n: &Notification,
    msgtype: MsgType,
    opts: &RenderOptions,
    max_parts: Option<usize>,
) -> Vec<String> {
    bodies_with_charts(n, msgtype, opts, max_parts, &[])
}

/// WeCom takes at most this many bytes of image (before base64), JPG or PNG.
pub const IMAGE_LIMIT: usize = 2 * 1024 * 1024;

/// The body of an `image` message: the image in base64 and the md5 of its bytes.
pub fn image_body(image: &[u8]) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    let md5 = hex::encode(md5::Md5::digest(image));
    serde_json::json!({
        "msgtype": "image",
        "image": {
            "base64": base64::engine::general_purpose::STANDARD.encode(image),
            "md5": md5,
        }
    })
    .to_string()
}

/// The charts of notification `n` as PNG, each with the index of its insight (see
/// [`crate::chart::charted`]); those that cannot be drawn are left out (logged once by
/// the caller's channel, the text says everything anyway).
pub fn charts_of(n: &Notification, opts: &RenderOptions) -> Vec<(usize, Vec<u8>)> {
    crate::chart::charted(&n.insights)
        .into_iter()
        .filter_map(|k| {
            let png = crate::chart::png(&n.insights[k], opts.lang).ok()?;
            (png.len() <= IMAGE_LIMIT).then_some((k, png))
        })
        .collect()
}

/// The line a digest adds when it left `n` charts out.
pub fn charts_left_out(n: usize, lang: render::Lang) -> String {
    match lang {
        render::Lang::En => format!(
            "Charts: {n} left out to stay within the robot's {MAX_PER_MINUTE} messages per minute."
        ),
        render::Lang::Zh => {
            format!("趋势图：为不超过机器人每分钟 {MAX_PER_MINUTE} 条的限制，省略了 {n} 张。")
        }
    }
}

/// [`bodies`], with `charts` (PNG images of insights, by index, as [`charts_of`] gives
/// them) as `image` messages, each right after the message that tells its insight — but
/// never before a message that tells a critical insight: the charts of earlier messages
/// wait until after the last such message, so a chart never delays a critical text. A
/// digest (`max_parts`) drops charts first, the least important ones first, as many as
/// needed to stay within `max_parts`, and says so in its first message.
pub fn bodies_with_charts(
    n: &Notification,
    msgtype: MsgType,
    opts: &RenderOptions,
    max_parts: Option<usize>,
    charts: &[(usize, Vec<u8>)],
) -> Vec<String> {
    let (users, mobiles) = valid_mentions(&n.mentions);
    let md_line = if msgtype == MsgType::Markdown {
        render::markdown_mentions(&users, MENTION_LINE_BYTES)
    } else {
        String::new()
    };
    let extra = match msgtype {
        MsgType::Markdown => !mobiles.is_empty(),
        MsgType::MarkdownV2 => !users.is_empty() || !mobiles.is_empty(),
        MsgType::Text => false,
    };
    let mut budget = if md_line.is_empty() {
        msgtype.budget()
    } else {
        msgtype.budget() - md_line.len() - 1
    };
    // Room for the line saying charts were left out, in a digest that has charts.
    let note_room = charts_left_out(charts.len(), opts.lang).len() + 1;
    if max_parts.is_some() && !charts.is_empty() {
        budget = budget.saturating_sub(note_room);
    }
    let style = msgtype.style();
    let placed = match max_parts {
        None => render::render_placed(n, style, budget, opts, usize::MAX),
        Some(m) => {
            render::render_placed(n, style, budget, opts, m.saturating_sub(usize::from(extra)))
        }
    };
    if placed.is_empty() {
        return Vec::new();
    }
    let mut contents: Vec<String> = placed.iter().map(|p| p.text.clone()).collect();
    // Charts kept: all of them, or in a digest as many as the parts left allow (the
    // first ones are the most important, see crate::chart::charted).
    let room = max_parts.map_or(usize::MAX, |m| {
        m.saturating_sub(contents.len() + usize::from(extra))
    });
    let kept = &charts[..charts.len().min(room)];
    if kept.len() < charts.len() {
        contents[0].push('\n');
        contents[0].push_str(&charts_left_out(charts.len() - kept.len(), opts.lang));
    }
    if !md_line.is_empty() {
        contents[0].push('\n');
        contents[0].push_str(&md_line);
    }
    // After which message each kept chart goes: the one telling its insight (the last
    // one for an insight told only in a "+N more" block), and not before the last message
    // telling a critical insight.
    let last_critical = placed
        .iter()
        .rposition(|p| {
            p.insights.iter().any(|&k| {
                n.insights
                    .get(k)
                    .is_some_and(|i| i.severity == Severity::Critical)
            })
        })
        .unwrap_or(0);
    let mut after: Vec<Vec<&[u8]>> = vec![Vec::new(); contents.len()];
    for (k, png) in kept {
        let part = placed
            .iter()
            .position(|p| p.insights.contains(k))
            .unwrap_or(contents.len() - 1)
            .max(last_critical);
        after[part].push(png);
    }
    let mut out: Vec<String> = Vec::new();
    for (k, c) in contents.iter().enumerate() {
        out.push(if k == 0 && msgtype == MsgType::Text {
            message_body_with(msgtype, c, &users, &mobiles)
        } else {
            message_body(msgtype, c)
        });
        out.extend(after[k].iter().map(|png| image_body(png)));
    }
    if extra {
        let users: &[String] = if msgtype == MsgType::MarkdownV2 {
            &users
        } else {
            &[]
        };
        let notice = render::mention_notice(n, opts.lang);
        out.push(message_body_with(MsgType::Text, &notice, users, &mobiles));
    }
    out
}

fn check_key(k: &str) -> Result<(), String> {
    if k.trim().is_empty() {
        return Err("is empty: set the robot key (the key= part of its webhook URL)".into());
    }
    if k.contains("://") {
        return Err("looks like a URL: put the whole URL in webhook_url instead".into());
    }
    if k.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '&' | '?' | '/' | '=' | '#'))
    {
        return Err(
            "contains characters a robot key never has (spaces, &, ?, /, =, #): set only the \
             key= value of the webhook URL"
                .into(),
        );
    }
    Ok(())
}

/// One robot: the URL to post to and the secrets to keep out of every text.
#[derive(Clone, Debug)]
pub struct WeComTarget {
    url: Secret,
    /// The key as configured and as it appears in the URL (percent-encoded).
    key: Secret,
    key_in_url: Secret,
}

impl WeComTarget {
    /// From a full webhook URL with a `key=` parameter. Error texts never quote the URL.
    pub fn from_webhook_url(url: &str) -> Result<Self, String> {
        let parsed = check::webhook_url(
            url,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…",
            "robot",
        )?;
        let key = parsed
            .query_pairs()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                "has no key= parameter: copy the whole webhook URL from the robot's settings"
                    .to_string()
            })?;
        Ok(WeComTarget::of(&parsed, key))
    }

    /// From a base URL (e.g. [`DEFAULT_BASE_URL`]) and a robot key.
    pub fn from_key(base_url: &str, key: &str) -> Result<Self, String> {
        let base = url::Url::parse(base_url.trim()).map_err(|_| {
            format!("is not a valid URL: use e.g. \"{DEFAULT_BASE_URL}\" (the default)")
        })?;
        check::check_scheme(&base)?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(
                "must not have a ?query or #fragment: give only scheme, host and optional path prefix"
                    .into(),
            );
        }
        let mut url = url::Url::parse(&format!(
            "{}{SEND_PATH}",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| "is not a valid URL prefix".to_string())?;
        url.query_pairs_mut().append_pair("key", key);
        Ok(WeComTarget::of(&url, key.to_string()))
    }

    /// The robot at `url`, whose `key=` parameter is `key`.
    fn of(url: &url::Url, key: String) -> Self {
        let key_in_url = url
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .unwrap_or_default();
        WeComTarget {
            url: Secret::new(url.as_str()),
            key: Secret::new(key),
            key_in_url: Secret::new(key_in_url),
        }
    }

    /// The URL, the key, and the key as it appears in the URL.
    pub fn secrets(&self) -> [&Secret; 3] {
        [&self.url, &self.key, &self.key_in_url]
    }

    /// `text` with the URL and the key masked.
    pub fn redact(&self, text: &str) -> String {
        self.secrets()
            .iter()
            .fold(text.to_string(), |t, s| s.redact_in(&t))
    }

    /// Identity of the robot for pacing: its key (WeCom counts messages per robot,
    /// whatever URL reaches it). A secret; never print it.
    pub(crate) fn destination(&self) -> &str {
        self.key.expose()
    }
}

/// The `errcode` of an answer of WeCom's API (`api` names the call in texts: "WeCom",
/// "WeCom gettoken"). Decides on the HTTP status and `errcode` only, never on `errmsg` (it
/// carries a hint id and our egress IP): 429 and 5xx are retried, another status outside
/// 2xx is permanent (`hint` says what to check), an answer without an errcode is retried.
pub(super) fn errcode(a: &Answer, api: &str, hint: &str) -> Result<i64, ChannelError> {
    let status = a.status;
    if status == 429 || status >= 500 {
        return Err(ChannelError::Retryable {
            reason: format!("{api} answered HTTP {status}"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(ChannelError::Permanent {
            reason: format!("{api} answered HTTP {status}: {hint}"),
        });
    }
    #[derive(Deserialize)]
    struct Body {
        errcode: Option<i64>,
    }
    match serde_json::from_slice::<Body>(&a.body) {
        Ok(Body { errcode: Some(c) }) => Ok(c),
        _ => Err(ChannelError::Retryable {
            reason: format!(
                "{api} answered HTTP {status} without an errcode (a proxy in the way?)"
            ),
        }),
    }
}

/// What the robot's answer means. `rate_retry_after` is how long to hold the key after
/// errcode 45009 (WeCom's window plus a margin).
pub fn classify(a: &Answer, rate_retry_after: Duration) -> Result<(), ChannelError> {
    let errcode = errcode(a, "WeCom", "check the webhook URL (or base_url)")?;
    let permanent = |what: &str| {
        Err(ChannelError::Permanent {
            reason: format!("errcode {errcode}: {what}"),
        })
    };
    match errcode {
        0 => Ok(()),
        45009 => Err(ChannelError::RateLimited {
            reason: "errcode 45009: more messages than the robot's per-minute limit".into(),
            retry_after: rate_retry_after,
        }),
        -1 => Err(ChannelError::Retryable {
            reason: "errcode -1: WeCom is busy".into(),
        }),
        93000 => permanent(
            "the webhook key is invalid or the robot was removed from its group; \
             check webhook_url / key",
        ),
        other => Err(refused(other)),
    }
}

/// The permanent refusals both WeCom APIs share: the message itself.
pub(super) fn refused(errcode: i64) -> ChannelError {
    let what = match errcode {
        40058 => "WeCom refused the message as invalid or too long",
        40008 => "WeCom refused the message type",
        44004 => "WeCom refused an empty message",
        40009 => "WeCom refused the image as larger than 2 MB",
        40005 => "WeCom refused the image as neither PNG nor JPEG",
        301019 => "WeCom refused the image: its md5 does not match its bytes",
        _ => "WeCom refused the message",
    };
    ChannelError::Permanent {
        reason: format!("errcode {errcode}: {what}"),
    }
}

/// One group robot: its rules, for [`HttpChannel`].
pub struct WeComRobot {
    target: WeComTarget,
    msgtype: MsgType,
    opts: RenderOptions,
    rate_retry_after: Duration,
    /// Whether the insights' trends are drawn as `image` messages.
    charts: bool,
    /// The charts drawn lately: the channel actor renders a notification again to count
    /// its parts (and as part of a digest), and drawing is the costly part.
    drawn: std::cell::RefCell<ChartCache>,
}

/// The PNGs of the last [`ChartCache::KEPT`] charts drawn, by insight (fingerprint and
/// newest data time: the same finding seen again has a new trend).
#[derive(Default)]
pub struct ChartCache {
    entries: std::collections::VecDeque<(ChartKey, std::rc::Rc<Vec<u8>>)>,
}

/// Which insight a cached chart shows: its fingerprint and newest data time (ms).
type ChartKey = (sentinel_actors::Fingerprint, i64);

impl ChartCache {
    /// About 2 MB of PNGs at most.
    pub const KEPT: usize = 32;

    /// The chart of `i`, drawn now or earlier; None when it cannot be drawn.
    pub fn png(
        &mut self,
        i: &sentinel_actors::Insight,
        lang: render::Lang,
    ) -> Option<std::rc::Rc<Vec<u8>>> {
        let key = (i.fingerprint, i.observed_at.timestamp_millis());
        if let Some((_, png)) = self.entries.iter().find(|(k, _)| *k == key) {
            return Some(std::rc::Rc::clone(png));
        }
        let png = std::rc::Rc::new(crate::chart::png(i, lang).ok()?);
        if png.len() > IMAGE_LIMIT {
            return None;
        }
        if self.entries.len() == Self::KEPT {
            self.entries.pop_front();
        }
        self.entries.push_back((key, std::rc::Rc::clone(&png)));
        Some(png)
    }
}

/// Posts notifications to one robot. Holds an awc client, which is `!Send`: build it on
/// the thread that runs the channel actor.
pub type WeComChannel = HttpChannel<WeComRobot>;

impl WeComChannel {
    /// `rate_window` is the window WeCom counts messages in (one minute); after errcode
    /// 45009 the key is held for that long plus a second.
    pub fn new(
        target: WeComTarget,
        msgtype: MsgType,
        timeout: Duration,
        opts: RenderOptions,
        rate_window: Duration,
    ) -> Self {
        Self::with_charts(target, msgtype, timeout, opts, rate_window, false)
    }

    /// [`WeComChannel::new`], sending the insights' trend charts as `image` messages when
    /// `charts` (see [`bodies_with_charts`]).
    pub fn with_charts(
        target: WeComTarget,
        msgtype: MsgType,
        timeout: Duration,
        opts: RenderOptions,
        rate_window: Duration,
        charts: bool,
    ) -> Self {
        let robot = WeComRobot {
            target,
            msgtype,
            opts,
            rate_retry_after: rate_window + Duration::from_secs(1),
            charts,
            drawn: Default::default(),
        };
        HttpChannel::with_robot(robot, timeout)
    }
}

impl Robot for WeComRobot {
    /// The JSON body of one message.
    type Part = String;

    const PROVIDER: &'static str = "WeCom";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<String> {
        let charts: Vec<(usize, Vec<u8>)> = match self.charts {
            true => {
                let mut drawn = self.drawn.borrow_mut();
                crate::chart::charted(&n.insights)
                    .into_iter()
                    .filter_map(|k| Some((k, drawn.png(&n.insights[k], self.opts.lang)?.to_vec())))
                    .collect()
            }
            false => Vec::new(),
        };
        Ok(bodies_with_charts(
            n,
            self.msgtype,
            &self.opts,
            max_parts,
            &charts,
        ))
    }

    fn request(&self, body: &String, _now: DateTime<Utc>, _token: Option<&Secret>) -> Request {
        Request::post(self.target.url.expose(), JSON, body.clone())
    }

    fn classify(&self, answer: &Answer) -> Result<(), ChannelError> {
        classify(answer, self.rate_retry_after)
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.target.secrets().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::robot::verdict::*;

    const RA: Duration = Duration::from_secs(61);

    use crate::channels::settings::testing::{problems_at, settings};

    fn problems(v: serde_json::Value) -> Vec<Problem> {
        problems_at("channels.ops", v)
    }

    #[test]
    fn errcodes_are_classified() {
        let c = |s: u16, b: &str| classify(&Answer::of(s, b, None), RA);
        assert_eq!(c(200, r#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        let limited = c(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#);
        assert!(paused_for(&limited, RA));
        assert!(retryable(&c(
            200,
            r#"{"errcode":-1,"errmsg":"system busy"}"#
        )));
        for code in [93000, 40058, 40008, 44004, 40009, 40005, 301019, 12345] {
            let body = format!(r#"{{"errcode":{code},"errmsg":"from ip: 1.2.3.4"}}"#);
            permanent_naming(c(200, &body), &code.to_string(), "1.2.3.4");
        }
        for s in [500, 502, 503, 429] {
            assert!(retryable(&c(s, "")), "{s}");
        }
        for s in [400, 403, 404] {
            assert!(permanent(&c(s, "")), "{s}");
        }
        assert!(retryable(&c(200, "<html>")));
    }

    #[test]
    fn webhook_url_is_parsed_and_redacted() {
        let t = WeComTarget::from_webhook_url(
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
        )
        .unwrap();
        assert_eq!(
            t.url.expose(),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"
        );
        assert_eq!(t.destination(), "693a91f6-7xxx");
        let text = t.redact("error for https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx and 693a91f6-7xxx");
        assert!(!text.contains("693a91f6"), "{text}");
        assert!(!format!("{t:?}").contains("693a91f6"));
    }

    #[test]
    fn key_and_base_url_build_the_endpoint() {
        let t = WeComTarget::from_key("http://127.0.0.1:8080/", "k 1+2").unwrap();
        assert_eq!(
            t.url.expose(),
            "http://127.0.0.1:8080/cgi-bin/webhook/send?key=k+1%2B2"
        );
        assert_eq!(t.destination(), "k 1+2");
        assert!(!t.redact(t.url.expose()).contains("k+1%2B2"));
        let t = WeComTarget::from_key(DEFAULT_BASE_URL, "abc").unwrap();
        assert_eq!(
            t.url.expose(),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"
        );
    }

    #[test]
    fn message_bodies_match_the_api() {
        let v: serde_json::Value =
            serde_json::from_str(&message_body(MsgType::MarkdownV2, "# hi")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"msgtype": "markdown_v2", "markdown_v2": {"content": "# hi"}})
        );
        let v: serde_json::Value =
            serde_json::from_str(&message_body(MsgType::Text, "hi")).unwrap();
        assert_eq!(v["text"]["content"], "hi");
    }

    #[test]
    fn missing_destination_is_explained() {
        let p = problems(serde_json::json!({"type": "wecom"}));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "channels.ops.webhook_url");
        assert!(p[0].message.starts_with("required when type = \"wecom\""));
        assert!(p[0].message.contains("key ="));
    }

    #[test]
    fn bad_values_are_reported_without_quoting_secrets() {
        let secret = "s3cr3t-value";
        let cases = [
            (
                serde_json::json!({"type": "wecom", "webhook_url": format!("not a url {secret}")}),
                "channels.ops.webhook_url",
            ),
            (
                serde_json::json!({"type": "wecom", "webhook_url": format!("ftp://h/x?key={secret}")}),
                "channels.ops.webhook_url",
            ),
            (
                serde_json::json!({"type": "wecom", "webhook_url": format!("https://h/x?k={secret}")}),
                "channels.ops.webhook_url",
            ),
            (
                serde_json::json!({"type": "wecom", "key": format!("https://h/?key={secret}")}),
                "channels.ops.key",
            ),
            (
                serde_json::json!({"type": "wecom", "key": format!("{secret} x")}),
                "channels.ops.key",
            ),
            (
                serde_json::json!({"type": "wecom", "key": secret, "webhook_url": format!("https://h/?key={secret}")}),
                "channels.ops.key",
            ),
            (
                serde_json::json!({"type": "wecom", "key": secret, "base_url": "h:/x"}),
                "channels.ops.base_url",
            ),
            (
                serde_json::json!({"type": "wecom", "webhook_url": format!("https://h/?key={secret}"), "base_url": "https://h"}),
                "channels.ops.base_url",
            ),
            (
                serde_json::json!({"type": "wecom", "key": secret, "max_per_minute": 21}),
                "channels.ops.max_per_minute",
            ),
            (
                serde_json::json!({"type": "wecom", "key": secret, "timeout": "0s"}),
                "channels.ops.timeout",
            ),
            (
                serde_json::json!({"type": "wecom", "key": secret, "path": "x"}),
                "channels.ops.path",
            ),
        ];
        for (v, want) in cases {
            let p = problems(v.clone());
            assert_eq!(p.len(), 1, "{v}: {p:?}");
            assert_eq!(p[0].key, want, "{v}");
            assert!(!p[0].message.contains(secret), "{p:?}");
            let s = settings(v);
            assert!(!format!("{s:?}").contains(secret));
        }
    }

    #[test]
    fn charts_must_be_true_or_false() {
        let e = serde_json::from_value::<crate::channels::ChannelSettings>(
            serde_json::json!({"type": "wecom", "key": "k", "charts": "sometimes"}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("key `charts`: invalid type: string \"sometimes\", expected a boolean"),
            "{e}"
        );
    }

    #[test]
    fn good_settings_pass() {
        for v in [
            serde_json::json!({"type": "wecom", "key": "abc-123"}),
            serde_json::json!({"type": "wecom", "webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc",
                               "msgtype": "markdown_v2", "timeout": "3s", "max_per_minute": 10}),
            serde_json::json!({"type": "wecom", "key": "abc", "base_url": "http://127.0.0.1:9/", "msgtype": "text"}),
            serde_json::json!({"type": "wecom", "key": "abc", "charts": false}),
        ] {
            let p = problems(v.clone());
            assert!(p.is_empty(), "{v}: {p:?}");
        }
        let s = settings(serde_json::json!({"type": "wecom", "key": "k", "timeout": "1m 30s"}));
        assert_eq!(s.common().timeout, Some(Duration::from_secs(90)));
    }
}
