//! Feishu / Lark custom bot ("自定义机器人") over its webhook.
//!
//! `POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>` (Lark:
//! `open.larksuite.com`) with `{"msg_type":"text","content":{"text":…}}`. Plain text
//! because Feishu's `text` shows every character as sent, while its markdown flavours
//! differ from WeCom's (colours, headings) and would show stray markup.
//!
//! Signing (optional, when the bot has "signature verification" on): `timestamp` is Unix
//! time in **seconds**, `sign` = base64(HMAC-SHA256 with key `"<timestamp>\n<secret>"`
//! over an empty message); both go in the JSON body. Feishu refuses a timestamp more than
//! an hour off (code 19021), so they are computed at each attempt, not when rendering.
//!
//! Limits: the request body must stay within 20 KB; we aim every body at
//! [`BODY_BUDGET`] bytes, signature fields included. Rate: 100 per minute and 5 per second
//! per bot; the pacer counts in sixths of a minute so that no second sees more than 5
//! (see [`Pacing::in_sixths`]). Feishu signals errors with a JSON `code` (older answers:
//! `StatusCode`); 0 is success.

use std::time::Duration;

use actix::Recipient;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use sentinel_actors::channel::Deliver;
use sentinel_actors::{ChannelError, Notification};

use super::check;
use super::hook::{Signed, SignedHook, SignedHookSettings};
use super::robot::{self, Answer, HttpChannel, Rendered, Request, Robot, JSON_UTF8};
use super::{ChannelType, Starter, Takes};
use crate::problem::Problem;
use crate::render::{self, RenderOptions, Style};
use crate::secret::Secret;

/// Feishu's documented limit for a request body, in bytes.
pub const BODY_LIMIT: usize = 20 * 1024;
/// What every body is aimed at: the limit less a margin.
pub const BODY_BUDGET: usize = 19 * 1024;
/// What the text renderer is first asked for; JSON escaping and the envelope must fit in
/// the rest ([`robot::fit_bodies`] shrinks it if they do not).
pub const TEXT_BUDGET: usize = 12 * 1024;
/// Feishu's per-bot limit per minute (it also allows at most 5 per second).
pub const MAX_PER_MINUTE: u32 = 100;
pub const DEFAULT_MAX_PER_MINUTE: u32 = MAX_PER_MINUTE;
/// What the limit of `max_per_minute` is, in words.
const LIMIT: &str = "Feishu accepts at most 100 messages per minute per bot";
/// Feishu's per-second limit.
pub const MAX_PER_SECOND: u32 = 5;
/// Rate-limit codes: 11232 (platform under load, "frequency limited") and 9499 ("too
/// many requests").
pub const RATE_LIMIT_CODES: [i64; 2] = [11232, 9499];
/// Sign check failed or timestamp more than one hour off.
pub const SIGN_FAIL: i64 = 19021;

/// A checked `[channels.<name>] type = "feishu"` (Feishu or Lark); its table is a
/// [`SignedHookSettings`] (`webhook_url`:
/// `https://open.feishu.cn/open-apis/bot/v2/hook/<token>`, or `open.larksuite.com`).
#[derive(Debug)]
pub struct Feishu(SignedHook);

impl ChannelType for Feishu {
    const TYPE: &'static str = "feishu";
    const SECRET_KEYS: &'static [&'static str] = &["webhook_url", "secret"];
    /// Also kept under 5 per second (see [`Pacing::in_sixths`]).
    const TAKES: Takes = Takes::robot(MAX_PER_MINUTE, DEFAULT_MAX_PER_MINUTE, LIMIT);
    type Settings = SignedHookSettings;

    fn check(s: SignedHookSettings) -> Result<Self, Vec<Problem>> {
        let missing = "required when type = \"feishu\": set the bot's webhook URL \
                       (https://open.feishu.cn/open-apis/bot/v2/hook/…)";
        SignedHook::check(s, missing, check_url, None).map(Feishu)
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.0.secrets()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let pacing = start.pacing(self.0.url.expose()).in_sixths();
        self.0.start(start, pacing, FeishuRobot)
    }
}

fn check_url(u: &str) -> Result<url::Url, String> {
    let parsed = check::webhook_url(u, "https://open.feishu.cn/open-apis/bot/v2/hook/…", "bot")?;
    let token = parsed.path_segments().and_then(|mut s| s.next_back());
    if !parsed.path().contains("/bot/v2/hook/") || token.is_none_or(str::is_empty) {
        return Err("has no /bot/v2/hook/<token> path: copy the whole webhook URL".into());
    }
    Ok(parsed)
}

/// `sign` for `timestamp` (seconds): base64(HMAC-SHA256(key = "<ts>\n<secret>", "")).
pub fn sign(secret: &str, timestamp: i64) -> String {
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(format!("{timestamp}\n{secret}").as_bytes())
        .expect("HMAC accepts any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One message: the JSON body without the signature fields (added at each attempt).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeishuPart {
    pub body: serde_json::Value,
}

impl std::fmt::Display for FeishuPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.body)
    }
}

/// Bytes the signature fields add: `,"timestamp":"<10 digits>","sign":"<44 base64>"`.
const SIGN_FIELDS_BYTES: usize = 80;

fn text_body(content: &str) -> serde_json::Value {
    serde_json::json!({"msg_type": "text", "content": {"text": content}})
}

/// The parts for `n`: text messages whose bodies, signature included, stay within
/// [`BODY_BUDGET`]; a digest of at most `max_parts` when given.
pub fn parts(n: &Notification, opts: &RenderOptions, max_parts: Option<usize>) -> Vec<FeishuPart> {
    let render = |budget: usize| match max_parts {
        None => render::render(n, Style::Text, budget, opts),
        Some(m) => render::render_digest(n, Style::Text, budget, opts, m),
    };
    robot::fit_bodies(
        TEXT_BUDGET,
        BODY_BUDGET - SIGN_FIELDS_BYTES,
        render,
        |c, _, _| text_body(c).to_string(),
    )
    .into_iter()
    .map(|b| FeishuPart {
        body: serde_json::from_str(&b).expect("we just serialized it"),
    })
    .collect()
}

/// The body as sent: the part plus `timestamp` and `sign` when a secret is set.
pub fn signed_body(part: &FeishuPart, secret: Option<&Secret>, timestamp: i64) -> String {
    let mut body = part.body.clone();
    if let (Some(s), Some(map)) = (secret, body.as_object_mut()) {
        map.insert("timestamp".into(), timestamp.to_string().into());
        map.insert("sign".into(), sign(s.expose(), timestamp).into());
    }
    body.to_string()
}

/// What Feishu's answer means: transient statuses first, then the JSON `code`.
pub fn classify(a: &Answer, rate_retry_after: Duration) -> Result<(), ChannelError> {
    if let Some(e) = robot::transient_status("Feishu", a) {
        return Err(e);
    }
    #[derive(Deserialize)]
    struct Body {
        code: Option<i64>,
        #[serde(rename = "StatusCode")]
        status_code: Option<i64>,
    }
    let code = serde_json::from_slice::<Body>(&a.body)
        .ok()
        .and_then(|b| b.code.or(b.status_code));
    let permanent = |what: &str| {
        Err(ChannelError::Permanent {
            reason: format!("Feishu code {}: {what}", code.unwrap_or_default()),
        })
    };
    match code {
        None if (200..300).contains(&a.status) => Err(ChannelError::Retryable {
            reason: format!(
                "Feishu answered HTTP {} without a code (a proxy in the way?)",
                a.status
            ),
        }),
        None => Err(ChannelError::Permanent {
            reason: format!(
                "Feishu answered HTTP {}: check webhook_url (the bot may have been removed)",
                a.status
            ),
        }),
        Some(0) => Ok(()),
        Some(c) if RATE_LIMIT_CODES.contains(&c) => Err(ChannelError::RateLimited {
            reason: format!("Feishu code {c}: too many messages for this bot"),
            retry_after: rate_retry_after,
        }),
        Some(SIGN_FAIL) => permanent(
            "signature check failed or the clock is more than an hour off: check secret \
             and the host's clock",
        ),
        Some(19024) => permanent("the message lacks the bot's keyword (security settings)"),
        Some(19022) => permanent("this host's IP is not in the bot's allow-list"),
        Some(19001) => permanent("Feishu refused the message as invalid"),
        Some(_) => permanent("Feishu refused the message; check webhook_url and the bot"),
    }
}

/// One bot: its URL, signing secret and rules, for [`HttpChannel`].
///
/// After a rate-limit code the bot is held for the rate window (Feishu counts per
/// minute).
pub struct FeishuRobot(Signed);

/// Posts notifications to one Feishu bot. Holds an awc client (`!Send`).
pub type FeishuChannel = HttpChannel<FeishuRobot>;

impl Robot for FeishuRobot {
    type Part = FeishuPart;

    const PROVIDER: &'static str = "Feishu";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<FeishuPart> {
        Ok(parts(n, &self.0.opts, max_parts))
    }

    /// Signed at each attempt: Feishu refuses a timestamp more than an hour off.
    fn request(&self, part: &FeishuPart, now: DateTime<Utc>, _token: Option<&Secret>) -> Request {
        let body = signed_body(part, self.0.secret.as_ref(), now.timestamp());
        Request::post(self.0.url.expose(), JSON_UTF8, body)
    }

    fn classify(&self, answer: &Answer) -> Result<(), ChannelError> {
        classify(answer, self.0.rate_window)
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.0.secrets()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::robot::verdict::*;

    #[test]
    fn sign_matches_feishus_scheme() {
        // Recomputed the documented way: key = "<ts>\n<secret>", empty message.
        let s = sign("demo-secret", 1_700_000_000);
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(b"1700000000\ndemo-secret").unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(s, want);
        assert_eq!(s.len(), 44);
        assert_ne!(s, sign("demo-secret", 1_700_000_001));
        assert_ne!(s, sign("other", 1_700_000_000));
        // Known vector computed independently (python: hmac.new(b"1700000000\ndemo-secret",
        // b"", hashlib.sha256), base64).
        assert_eq!(s, "mYHw2R2SOm8Rw/sne3lQdmz4sOfntKR+1P/8RKKTwmA=");
    }

    #[test]
    fn signed_body_carries_timestamp_and_sign() {
        let p = FeishuPart {
            body: text_body("hi"),
        };
        let v: serde_json::Value =
            serde_json::from_str(&signed_body(&p, Some(&Secret::new("k")), 1_700_000_000)).unwrap();
        assert_eq!(v["timestamp"], "1700000000");
        assert_eq!(v["sign"], sign("k", 1_700_000_000));
        assert_eq!(v["content"]["text"], "hi");
        let v: serde_json::Value =
            serde_json::from_str(&signed_body(&p, None, 1_700_000_000)).unwrap();
        assert!(v.get("sign").is_none());
    }

    #[test]
    fn codes_are_classified() {
        let ra = Duration::from_secs(60);
        let c = |s: u16, b: &str| classify(&Answer::of(s, b, None), ra);
        assert_eq!(c(200, r#"{"code":0,"msg":"success"}"#), Ok(()));
        assert_eq!(c(200, r#"{"StatusCode":0}"#), Ok(()));
        for code in RATE_LIMIT_CODES {
            assert!(paused_for(
                &c(200, &format!(r#"{{"code":{code},"msg":"x"}}"#)),
                ra
            ));
        }
        for code in [19021, 19024, 19001, 19036, 12345] {
            let b = format!(r#"{{"code":{code},"msg":"from 1.2.3.4"}}"#);
            permanent_naming(c(400, &b), &code.to_string(), "1.2.3.4");
        }
        assert!(retryable(&c(200, "<html>")));
        assert!(permanent(&c(404, "")));
        assert!(retryable(&c(502, "")));
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://open.feishu.cn/open-apis/bot/v2/hook/abc-123").is_ok());
        assert!(check_url("https://open.larksuite.com/open-apis/bot/v2/hook/x").is_ok());
        for bad in [
            "open.feishu.cn/x",
            "ftp://h/open-apis/bot/v2/hook/x",
            "https://open.feishu.cn/open-apis/bot/v2/hook/",
            "https://open.feishu.cn/other/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
