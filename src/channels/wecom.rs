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

use std::rc::Rc;
use std::time::Duration;

use awc::http::header::CONTENT_TYPE;
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;

use sentinel_actors::channel::Channel;
use sentinel_actors::message::Mentions;
use sentinel_actors::{ChannelError, Notification};

use super::ChannelSettings;
use crate::problem::Problem;
use crate::render::{self, RenderOptions, Style};
use crate::secret::Secret;

/// Where WeCom's API lives unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://qyapi.weixin.qq.com";
/// The path of the robot webhook below `base_url`.
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";
/// Default time limit of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// WeCom accepts at most this many messages per robot per minute.
pub const MAX_PER_MINUTE: u32 = 20;
/// Default `max_per_minute`.
pub const DEFAULT_MAX_PER_MINUTE: u32 = MAX_PER_MINUTE;
/// The window WeCom counts messages in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Longest accepted `timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest answer body read; WeCom's answers are a few dozen bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

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
    let budget = if md_line.is_empty() {
        msgtype.budget()
    } else {
        msgtype.budget() - md_line.len() - 1
    };
    let style = msgtype.style();
    let mut contents = match max_parts {
        None => render::render(n, style, budget, opts),
        Some(m) => {
            render::render_digest(n, style, budget, opts, m.saturating_sub(usize::from(extra)))
        }
    };
    if contents.is_empty() {
        return Vec::new();
    }
    if !md_line.is_empty() {
        contents[0].push('\n');
        contents[0].push_str(&md_line);
    }
    let mut out: Vec<String> = contents
        .iter()
        .enumerate()
        .map(|(k, c)| {
            if k == 0 && msgtype == MsgType::Text {
                message_body_with(msgtype, c, &users, &mobiles)
            } else {
                message_body(msgtype, c)
            }
        })
        .collect();
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

/// Checks the wecom fields of `s` (called by [`ChannelSettings::validate`]).
pub(super) fn validate(s: &ChannelSettings, path: &str, problems: &mut Vec<Problem>) {
    let key = |field: &str| format!("{path}.{field}");
    match (&s.webhook_url, &s.key) {
        (None, None) => problems.push(Problem::new(
            key("webhook_url"),
            "required when type = \"wecom\": set the robot's webhook URL \
             (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…), or use key = \"…\" with the \
             robot key alone (the part after key= in that URL)",
        )),
        (Some(_), Some(_)) => problems.push(Problem::new(
            key("key"),
            "set either webhook_url or key, not both: remove one of them",
        )),
        (Some(url), None) => {
            if let Err(e) = WeComTarget::from_webhook_url(url.expose()) {
                problems.push(Problem::new(key("webhook_url"), e));
            }
            if s.base_url.is_some() {
                problems.push(Problem::new(
                    key("base_url"),
                    "only used with key =: remove it, webhook_url already names the host",
                ));
            }
        }
        (None, Some(k)) => {
            let base = s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
            if let Err(e) = check_key(k.expose()) {
                problems.push(Problem::new(key("key"), e));
            } else if let Err(e) = WeComTarget::from_key(base, k.expose()) {
                problems.push(Problem::new(key("base_url"), e));
            }
        }
    }
    super::validate_timeout(s, path, problems);
    if let Some(n) = s.max_per_minute {
        if n == 0 || n > MAX_PER_MINUTE {
            problems.push(Problem::new(
                key("max_per_minute"),
                format!(
                    "must be between 1 and {MAX_PER_MINUTE}: WeCom accepts at most \
                     {MAX_PER_MINUTE} messages per minute per robot"
                ),
            ));
        }
    }
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
        let parsed = url::Url::parse(url.trim()).map_err(|_| {
            "is not a valid URL: copy the whole webhook URL \
             (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…) from the robot's settings"
                .to_string()
        })?;
        check_scheme(&parsed)?;
        let key = parsed
            .query_pairs()
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                "has no key= parameter: copy the whole webhook URL from the robot's settings"
                    .to_string()
            })?;
        let key_in_url = parsed
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .unwrap_or_default()
            .to_string();
        Ok(WeComTarget {
            url: Secret::new(parsed.as_str()),
            key: Secret::new(key),
            key_in_url: Secret::new(key_in_url),
        })
    }

    /// From a base URL (e.g. [`DEFAULT_BASE_URL`]) and a robot key.
    pub fn from_key(base_url: &str, key: &str) -> Result<Self, String> {
        let base = url::Url::parse(base_url.trim()).map_err(|_| {
            format!("is not a valid URL: use e.g. \"{DEFAULT_BASE_URL}\" (the default)")
        })?;
        check_scheme(&base)?;
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
        let key_in_url = url
            .query()
            .and_then(|q| q.strip_prefix("key="))
            .unwrap_or_default()
            .to_string();
        Ok(WeComTarget {
            url: Secret::new(url.as_str()),
            key: Secret::new(key),
            key_in_url: Secret::new(key_in_url),
        })
    }

    /// From validated settings (either `webhook_url`, or `key` with `base_url`).
    pub fn from_settings(s: &ChannelSettings) -> Result<Self, String> {
        match (&s.webhook_url, &s.key) {
            (Some(url), None) => {
                Self::from_webhook_url(url.expose()).map_err(|e| format!("webhook_url {e}"))
            }
            (None, Some(k)) => {
                check_key(k.expose()).map_err(|e| format!("key {e}"))?;
                Self::from_key(
                    s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
                    k.expose(),
                )
                .map_err(|e| format!("base_url {e}"))
            }
            _ => Err("set exactly one of webhook_url and key".into()),
        }
    }

    /// `text` with the URL and the key masked.
    pub fn redact(&self, text: &str) -> String {
        let t = self.url.redact_in(text);
        let t = self.key.redact_in(&t);
        self.key_in_url.redact_in(&t)
    }

    /// Identity of the robot for pacing: its key (WeCom counts messages per robot,
    /// whatever URL reaches it). A secret; never print it.
    pub(crate) fn destination(&self) -> &str {
        self.key.expose()
    }
}

fn check_scheme(u: &url::Url) -> Result<(), String> {
    match u.scheme() {
        "https" | "http" if u.host().is_some() => Ok(()),
        _ => Err("must start with https:// (or http:// for a local test endpoint)".into()),
    }
}

/// What WeCom's answer means. Decides on the HTTP status and `errcode` only.
/// `rate_retry_after` is how long to hold the key after errcode 45009 (WeCom's window
/// plus a margin).
pub fn classify(status: u16, body: &[u8], rate_retry_after: Duration) -> Result<(), ChannelError> {
    if status == 429 || status >= 500 {
        return Err(ChannelError::Retryable {
            reason: format!("WeCom answered HTTP {status}"),
        });
    }
    if !(200..300).contains(&status) {
        return Err(ChannelError::Permanent {
            reason: format!("WeCom answered HTTP {status}: check the webhook URL (or base_url)"),
        });
    }
    #[derive(Deserialize)]
    struct Answer {
        errcode: Option<i64>,
    }
    let errcode = match serde_json::from_slice::<Answer>(body) {
        Ok(Answer { errcode: Some(c) }) => c,
        _ => {
            return Err(ChannelError::Retryable {
                reason: format!(
                    "WeCom answered HTTP {status} without an errcode (a proxy in the way?)"
                ),
            })
        }
    };
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
        40058 => permanent("WeCom refused the message as invalid or too long"),
        40008 => permanent("WeCom refused the message type"),
        44004 => permanent("WeCom refused an empty message"),
        _ => permanent("WeCom refused the message"),
    }
}

/// Posts notifications to one robot. Holds an awc client, which is `!Send`: build it on
/// the thread that runs the channel actor.
pub struct WeComChannel {
    client: awc::Client,
    target: Rc<WeComTarget>,
    msgtype: MsgType,
    timeout: Duration,
    opts: RenderOptions,
    rate_retry_after: Duration,
}

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
        // rustls panics when building a TLS client if it cannot tell which crypto provider
        // to use (none, or both ring and aws-lc-rs compiled in). Pick ring explicitly; an
        // Err only means a provider was installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = awc::Client::builder()
            .timeout(timeout)
            .add_default_header((
                awc::http::header::USER_AGENT,
                concat!("powa-sentinel/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        WeComChannel {
            client,
            target: Rc::new(target),
            msgtype,
            timeout,
            opts,
            rate_retry_after: rate_window + Duration::from_secs(1),
        }
    }
}

impl Channel for WeComChannel {
    /// The JSON body of one message.
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        Ok(bodies(n, self.msgtype, &self.opts, None))
    }

    fn render_digest(
        &self,
        n: &Notification,
        max_parts: usize,
    ) -> Result<Vec<String>, ChannelError> {
        Ok(bodies(n, self.msgtype, &self.opts, Some(max_parts)))
    }

    fn send(&self, body: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let client = self.client.clone();
        let target = Rc::clone(&self.target);
        let timeout = self.timeout;
        let retry_after = self.rate_retry_after;
        Box::pin(async move {
            let exchange = async {
                let mut resp = client
                    .post(target.url.expose())
                    .insert_header((CONTENT_TYPE, "application/json"))
                    .send_body(body)
                    .await
                    .map_err(|e| {
                        super::post::send_error(
                            &e,
                            target.redact(&format!("request to WeCom failed: {e}")),
                        )
                    })?;
                let status = resp.status().as_u16();
                if status != 200 {
                    return Ok((status, Default::default()));
                }
                let bytes = resp.body().limit(MAX_ANSWER_BYTES).await.map_err(|e| {
                    ChannelError::Retryable {
                        reason: target.redact(&format!("reading WeCom's answer failed: {e}")),
                    }
                })?;
                Ok((status, bytes))
            };
            match actix_rt::time::timeout(timeout, exchange).await {
                Err(_) => Err(ChannelError::Unconfirmed {
                    reason: format!(
                        "WeCom did not answer within {}",
                        humantime::format_duration(timeout)
                    ),
                }),
                Ok(Err(e)) => Err(e),
                Ok(Ok((status, bytes))) => classify(status, &bytes, retry_after),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RA: Duration = Duration::from_secs(61);

    fn settings(v: serde_json::Value) -> ChannelSettings {
        serde_json::from_value(v).expect("parse")
    }

    fn problems(v: serde_json::Value) -> Vec<Problem> {
        let mut p = Vec::new();
        settings(v).validate("channels.ops", &mut p);
        p
    }

    #[test]
    fn errcodes_are_classified() {
        let c = |s: u16, b: &str| classify(s, b.as_bytes(), RA);
        assert_eq!(c(200, r#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        assert!(matches!(
            c(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            Err(ChannelError::RateLimited { retry_after, .. }) if retry_after == RA
        ));
        assert!(matches!(
            c(200, r#"{"errcode":-1,"errmsg":"system busy"}"#),
            Err(ChannelError::Retryable { .. })
        ));
        for code in [93000, 40058, 40008, 44004, 12345] {
            let body = format!(r#"{{"errcode":{code},"errmsg":"from ip: 1.2.3.4"}}"#);
            match c(200, &body) {
                Err(ChannelError::Permanent { reason }) => {
                    assert!(reason.contains(&code.to_string()), "{reason}");
                    assert!(!reason.contains("1.2.3.4"), "errmsg must not be quoted");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        for s in [500, 502, 503, 429] {
            assert!(
                matches!(c(s, ""), Err(ChannelError::Retryable { .. })),
                "{s}"
            );
        }
        for s in [400, 403, 404] {
            assert!(
                matches!(c(s, ""), Err(ChannelError::Permanent { .. })),
                "{s}"
            );
        }
        assert!(matches!(
            c(200, "<html>"),
            Err(ChannelError::Retryable { .. })
        ));
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
    fn good_settings_pass() {
        for v in [
            serde_json::json!({"type": "wecom", "key": "abc-123"}),
            serde_json::json!({"type": "wecom", "webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc",
                               "msgtype": "markdown_v2", "timeout": "3s", "max_per_minute": 10}),
            serde_json::json!({"type": "wecom", "key": "abc", "base_url": "http://127.0.0.1:9/", "msgtype": "text"}),
        ] {
            let p = problems(v.clone());
            assert!(p.is_empty(), "{v}: {p:?}");
        }
        let s = settings(serde_json::json!({"type": "wecom", "key": "k", "timeout": "1m 30s"}));
        assert_eq!(s.timeout, Some(Duration::from_secs(90)));
    }
}
