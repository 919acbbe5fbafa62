//! Feishu / Lark custom bot ("自定义机器人") over its webhook.
//!
//! `POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>` (Lark:
//! `open.larksuite.com`), by default with an interactive card (`format = "card"`):
//! `{"msg_type":"interactive","card":{"config":…,"header":…,"elements":[…]}}`. The card's
//! header is the report's title in the colour of its most severe entry (`template` red,
//! orange, blue; green when all are resolved); then one `div` element with `lark_md`
//! text for the counts and one per entry, each open entry followed by an `action`
//! element whose buttons open its Acknowledge and Snooze links, and a "Full report"
//! button last, when action links are on (`[http] public_url`). `format = "text"` sends
//! `{"msg_type":"text","content":{"text":…}}` instead: Feishu's `text` shows every
//! character as sent.
//!
//! Mentions: Feishu reads `<at user_id="…">…</at>` inside a `text` message and
//! `<at id=…></at>` inside `lark_md`, `all` being the whole group. A query text, table name
//! or any other PoWA-sourced string must never mention anyone: in text every `<` of the
//! rendered text is replaced by a look-alike ([`defang`]); in a card every special of
//! `lark_md` (`<`, `*`, `~`, `[`, `]`, `` ` ``, `&`, …) is (see `render::lark`). Only a
//! route's `mention_userids` become tags, on the first message ([`mention_line`],
//! [`card_mention_line`]). A custom bot cannot mention by mobile number:
//! `mention_mobiles` are left out.
//!
//! Signing (optional, when the bot has "signature verification" on): `timestamp` is Unix
//! time in **seconds**, `sign` = base64(HMAC-SHA256 with key `"<timestamp>\n<secret>"`
//! over an empty message); both go in the JSON body. Feishu refuses a timestamp more than
//! an hour off (code 19021), so they are computed at each attempt, not when rendering.
//!
//! Limits: the request body must stay within 20 KB (the custom bot's limit; a card sent
//! through the application API may be 30 KB, but a webhook's body is the smaller
//! bound); we aim every body, card or text, at [`BODY_BUDGET`] bytes, signature fields
//! included. Rate: 100 per minute and 5 per second
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

use std::path::PathBuf;

use super::check;
use super::hook::{Signed, SignedHook, SignedHookSettings};
use super::robot::{self, Answer, HttpChannel, Rendered, Request, Robot, JSON_UTF8};
use super::{ChannelType, Starter, Takes};
use crate::problem::Problem;
use crate::render::card::{self, Card, CardLimits};
use crate::render::{self, Lang, RenderOptions, Style};
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

/// `[channels.<name>] type = "feishu"` (Feishu or Lark).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeishuSettings {
    /// The bot's webhook URL, copied whole from its settings
    /// (`https://open.feishu.cn/open-apis/bot/v2/hook/<token>`, or `open.larksuite.com`);
    /// required, a secret (its token is the bot's credential).
    pub webhook_url: Option<Secret>,
    /// The bot's signing secret ("signature verification"); a secret. Optional: without
    /// it messages are not signed. Or `secret_file`, or
    /// `POWA_SENTINEL__CHANNELS__<NAME>__SECRET`.
    pub secret: Option<Secret>,
    /// A file holding the signing secret (surrounding whitespace is ignored), read when
    /// the channel starts.
    pub secret_file: Option<PathBuf>,
    /// `"card"` (default: an interactive card, one element per entry, buttons for the
    /// action links) or `"text"` (a plain text message).
    pub format: Option<String>,
}

/// What a Feishu message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `msg_type: "interactive"`.
    Card,
    /// `msg_type: "text"`.
    Text,
}

/// A checked `[channels.<name>] type = "feishu"` (Feishu or Lark).
#[derive(Debug)]
pub struct Feishu {
    hook: SignedHook,
    format: Format,
}

impl ChannelType for Feishu {
    const TYPE: &'static str = "feishu";
    const SECRET_KEYS: &'static [&'static str] = &["webhook_url", "secret"];
    /// Also kept under 5 per second (see [`Pacing::in_sixths`]).
    const TAKES: Takes = Takes::robot(MAX_PER_MINUTE, DEFAULT_MAX_PER_MINUTE, LIMIT);
    type Settings = FeishuSettings;

    fn check(s: FeishuSettings) -> Result<Self, Vec<Problem>> {
        let missing = "required when type = \"feishu\": set the bot's webhook URL \
                       (https://open.feishu.cn/open-apis/bot/v2/hook/…)";
        let format = match s.format.as_deref() {
            None | Some("card") => Ok(Format::Card),
            Some("text") => Ok(Format::Text),
            Some(other) => Err(Problem::new(
                "format",
                format!(
                    "{other:?} is not a Feishu format: use \"card\" (an interactive card, \
                     the default) or \"text\" (a plain text message)"
                ),
            )),
        };
        let hook = SignedHook::check(
            SignedHookSettings {
                webhook_url: s.webhook_url,
                secret: s.secret,
                secret_file: s.secret_file,
            },
            missing,
            check_url,
            None,
        );
        match (hook, format) {
            (Ok(hook), Ok(format)) => Ok(Feishu { hook, format }),
            (hook, format) => {
                let mut problems = hook.err().unwrap_or_default();
                problems.extend(format.err());
                Err(problems)
            }
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.hook.secrets()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let pacing = start.pacing(self.hook.url.expose()).in_sixths();
        match self.format {
            Format::Card => self
                .hook
                .start(start, pacing, |s| FeishuRobot(s, Format::Card)),
            Format::Text => self
                .hook
                .start(start, pacing, |s| FeishuRobot(s, Format::Text)),
        }
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

/// What every `<` of the rendered text becomes: the fullwidth `＜`, which reads the same
/// and opens no tag.
pub const LESS_THAN: char = '\u{FF1C}';

/// `text` with every `<` replaced by [`LESS_THAN`], so no PoWA-sourced string (a query
/// text `SELECT '<at user_id="all"></at>'`) can become a mention. Our own wording has no
/// tags, so nothing meant as markup is lost. Each `<` grows by 2 bytes: applied before
/// the bodies are measured.
pub fn defang(text: &str) -> String {
    text.chars()
        .map(|c| if c == '<' { LESS_THAN } else { c })
        .collect()
}

/// At most this many people are mentioned per notification.
pub const MAX_MENTIONS: usize = 50;

/// A user id as Feishu's `<at user_id="…">` takes it (an `open_id` such as `ou_…`, a
/// `user_id`, or `all`): ASCII letters, digits, `_` and `-`, 1 to 64 bytes. Anything else
/// could close the attribute and is skipped.
pub fn valid_userid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The `<at>` tags of a notification's mentions, space-separated: its valid user ids, in
/// order, without duplicates, at most [`MAX_MENTIONS`]. WeCom's `@all` (a route may serve
/// both robots) is read as `all`, the whole group. Empty when there is no one to mention;
/// mobiles are skipped (a custom bot cannot mention by mobile number).
pub fn mention_line(n: &Notification) -> String {
    mention_ids(n)
        .iter()
        .map(|id| format!("<at user_id=\"{id}\"></at>"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The valid user ids of a notification's mentions (see [`mention_line`]).
fn mention_ids(n: &Notification) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    for id in n.mentions.userids.iter().map(|x| x.trim()) {
        let id = if id == "@all" { "all" } else { id };
        if valid_userid(id) && !ids.contains(&id) && ids.len() < MAX_MENTIONS {
            ids.push(id);
        }
    }
    ids
}

/// The parts for `n`: text messages whose bodies, signature included, stay within
/// [`BODY_BUDGET`]; a digest of at most `max_parts` when given. The text is defanged
/// before it is measured; the first message then gets the route's mentions on its last
/// line, for which its text budget keeps room.
pub fn parts(n: &Notification, opts: &RenderOptions, max_parts: Option<usize>) -> Vec<FeishuPart> {
    let render = |budget: usize| {
        let contents = match max_parts {
            None => render::render(n, Style::Text, budget, opts),
            Some(m) => render::render_digest(n, Style::Text, budget, opts, m),
        };
        contents.iter().map(|c| defang(c)).collect()
    };
    let line = mention_line(n);
    let budget = if line.is_empty() {
        TEXT_BUDGET
    } else {
        TEXT_BUDGET - line.len() - 1
    };
    robot::fit_bodies(
        budget,
        BODY_BUDGET - SIGN_FIELDS_BYTES,
        render,
        |c, k, _| {
            if k == 0 && !line.is_empty() {
                text_body(&format!("{c}\n{line}")).to_string()
            } else {
                text_body(c).to_string()
            }
        },
    )
    .into_iter()
    .map(|b| FeishuPart {
        body: serde_json::from_str(&b).expect("we just serialized it"),
    })
    .collect()
}

/// What the card renderer is first asked for per card (the envelope of each element,
/// its buttons and JSON escaping must fit in the rest of [`BODY_BUDGET`]).
pub const CARD_TEXT_BUDGET: usize = 12 * 1024;
/// Entries per card: each is one or two elements, and a card of more than a few dozen
/// elements is long to scroll on a phone.
pub const CARD_ENTRIES: usize = 20;
/// What one entry costs besides its text: its `div` element and its `action` element
/// with two buttons (their URLs are counted apart).
const CARD_ENTRY_OVERHEAD: usize = 320;

/// The header's colour (`template`) of a card whose most severe open entry is `s`
/// (None: all resolved).
pub fn template(s: Option<sentinel_actors::Severity>) -> &'static str {
    use sentinel_actors::Severity;
    match s {
        Some(Severity::Critical) => "red",
        Some(Severity::Warning) => "orange",
        Some(Severity::Info) => "blue",
        None => "green",
    }
}

/// The `<at>` tags of a notification's mentions as `lark_md` writes them
/// (`<at id=ou_…></at>`, `<at id=all></at>`): the same ids as [`mention_line`].
pub fn card_mention_line(n: &Notification) -> String {
    mention_ids(n)
        .iter()
        .map(|id| format!("<at id={id}></at>"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn div(content: &str) -> serde_json::Value {
    serde_json::json!({"tag": "div", "text": {"tag": "lark_md", "content": content}})
}

fn button(label: &str, url: &str, primary: bool) -> serde_json::Value {
    serde_json::json!({
        "tag": "button",
        "text": {"tag": "plain_text", "content": label},
        "type": if primary { "primary" } else { "default" },
        "url": url,
    })
}

/// The body of card `c`; `mentions` (a [`card_mention_line`]) ends it when not empty.
pub fn card_body(c: &Card, lang: Lang, mentions: &str) -> serde_json::Value {
    let b = card::buttons(lang);
    let mut elements = Vec::new();
    if !c.summary.is_empty() {
        elements.push(div(&c.summary));
    }
    for e in &c.entries {
        elements.push(div(&e.text));
        if let Some((ack, snooze)) = &e.actions {
            elements.push(serde_json::json!({"tag": "action", "actions": [
                button(b.acknowledge, ack, true),
                button(b.snooze, snooze, false),
            ]}));
        }
    }
    if let Some(more) = &c.more {
        elements.push(div(more));
    }
    if let Some(url) = &c.report {
        elements.push(serde_json::json!({"tag": "action", "actions": [
            button(b.full_report, url, false),
        ]}));
    }
    if !mentions.is_empty() {
        elements.push(div(mentions));
    }
    serde_json::json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": c.title},
                "template": template(c.severity),
            },
            "elements": elements,
        },
    })
}

/// The parts for `n` as interactive cards whose bodies, signature included, stay within
/// [`BODY_BUDGET`]; a digest of at most `max_parts` when given. The first card ends with
/// the route's mentions.
pub fn card_parts(
    n: &Notification,
    opts: &RenderOptions,
    max_parts: Option<usize>,
) -> Vec<FeishuPart> {
    let line = card_mention_line(n);
    let render = |budget: usize| {
        let limits = CardLimits {
            part: budget,
            entry: budget,
            entries: CARD_ENTRIES,
            overhead: CARD_ENTRY_OVERHEAD,
        };
        card::cards(n, Style::LarkMd, limits, opts, max_parts)
    };
    let budget = CARD_TEXT_BUDGET - line.len();
    robot::fit_bodies(
        budget,
        BODY_BUDGET - SIGN_FIELDS_BYTES,
        render,
        |c, k, _| {
            let mentions = if k == 0 { line.as_str() } else { "" };
            card_body(c, opts.lang, mentions).to_string()
        },
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
pub struct FeishuRobot(Signed, Format);

/// Posts notifications to one Feishu bot. Holds an awc client (`!Send`).
pub type FeishuChannel = HttpChannel<FeishuRobot>;

impl Robot for FeishuRobot {
    type Part = FeishuPart;

    const PROVIDER: &'static str = "Feishu";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<FeishuPart> {
        Ok(match self.1 {
            Format::Card => card_parts(n, &self.0.opts, max_parts),
            Format::Text => parts(n, &self.0.opts, max_parts),
        })
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

    /// What a query text could try, in every test of what PoWA text can do.
    const HOSTILE_SQL: &str =
        r#"SELECT '<at user_id="all"></at>' , '<!channel>' , '<@U123>' , 'a & b'"#;

    /// Enough insights carrying [`HOSTILE_SQL`] to be split, with `userids` to mention.
    fn hostile(userids: &[&str]) -> Notification {
        use crate::render::fixture;
        let mut n = fixture::notification(
            (0..80)
                .map(|k| fixture::slow_query(k, HOSTILE_SQL))
                .collect(),
        );
        n.mentions = sentinel_actors::message::Mentions {
            userids: userids.iter().map(|s| s.to_string()).collect(),
            mobiles: vec!["13800000000".into()],
        };
        n
    }

    fn text_of(p: &FeishuPart) -> &str {
        p.body["content"]["text"].as_str().unwrap()
    }

    #[test]
    fn query_texts_cannot_mention_anyone() {
        let ps = parts(&hostile(&[]), &RenderOptions::default(), None);
        assert!(ps.len() > 1);
        for p in &ps {
            let text = text_of(p);
            assert!(!text.contains("<at"), "{text}");
            assert!(!text.contains('<'), "{text}");
        }
        // Still readable: the query shows, with a look-alike bracket.
        assert!(text_of(&ps[0]).contains(r#"'＜at user_id="all">＜/at>' , '＜!channel>'"#));
        assert_eq!(
            defang(r#"a<at user_id="all"></at>b"#),
            r#"a＜at user_id="all">＜/at>b"#
        );
    }

    #[test]
    fn route_mentions_go_in_the_first_part_only() {
        let ids = [
            "ou_7d8a6e6df7621556ce0d21922b676706",
            "bad id!",
            r#"x" user_id="all"#,
            "@all",
            &"x".repeat(65),
            "ou_7d8a6e6df7621556ce0d21922b676706",
            "all",
        ];
        let ps = parts(&hostile(&ids), &RenderOptions::default(), None);
        assert!(ps.len() > 1);
        let first = text_of(&ps[0]);
        let line =
            r#"<at user_id="ou_7d8a6e6df7621556ce0d21922b676706"></at> <at user_id="all"></at>"#;
        assert!(first.ends_with(&format!("\n{line}")), "{first}");
        assert_eq!(first.matches("<at").count(), 2, "{first}");
        for p in &ps[1..] {
            assert!(!text_of(p).contains("<at"));
        }
        for p in &ps {
            let signed = signed_body(p, Some(&Secret::new("k")), 1_700_000_000);
            assert!(signed.len() <= BODY_BUDGET, "{}", signed.len());
        }
        // A digest too.
        let ds = parts(&hostile(&ids), &RenderOptions::default(), Some(2));
        assert!(text_of(&ds[0]).ends_with(line));
        assert!(ds[1..].iter().all(|p| !text_of(p).contains("<at")));
    }

    #[test]
    fn bodies_are_measured_as_sent() {
        // A query of nothing but '<' grows the most when made safe: the budget must see it.
        let sql = "<".repeat(3000);
        let mut n = hostile(&["all"]);
        n.insights = std::sync::Arc::new(
            (0..40)
                .map(|k| crate::render::fixture::slow_query(k, &sql))
                .collect(),
        );
        let opts = RenderOptions {
            sql_preview_chars: 2000,
            ..RenderOptions::default()
        };
        let ps = parts(&n, &opts, None);
        assert!(ps.len() > 2);
        for p in &ps {
            let signed = signed_body(p, Some(&Secret::new("k")), 1_700_000_000);
            assert!(signed.len() <= BODY_BUDGET, "{}", signed.len());
        }
    }

    #[test]
    fn at_most_fifty_valid_ids_are_mentioned() {
        let ids: Vec<String> = (0..80).map(|k| format!("ou_{k:0>61}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ps = parts(&hostile(&ids), &RenderOptions::default(), None);
        assert_eq!(text_of(&ps[0]).matches("<at").count(), MAX_MENTIONS);
        for p in &ps {
            let signed = signed_body(p, Some(&Secret::new("k")), 1_700_000_000);
            assert!(signed.len() <= BODY_BUDGET, "{}", signed.len());
        }
        assert!(valid_userid("ou_a-b_C9") && valid_userid("all"));
        assert!(!valid_userid("") && !valid_userid("a\"b") && !valid_userid("a.b"));
        assert!(!valid_userid(&"a".repeat(65)));
    }

    /// What a query text could try in `lark_md`: mentions, font and link tags, emphasis,
    /// strike-through, a markdown link, an entity that decodes to a tag.
    const HOSTILE_MD: &str = r#"SELECT '<at id=all></at>', '<font color=red>x</font>', '<link url="https://e.vil">x</link>', '**b** *i* ~~s~~ [l](https://e.vil) `c`', '&lt;at id=all&gt;' FROM t"#;

    fn links() -> RenderOptions {
        RenderOptions {
            actions: Some(std::sync::Arc::new(crate::actions::Links::new(
                "https://sentinel.example.org",
                b"k".repeat(32),
                crate::actions::DEFAULT_TTL,
            ))),
            ..RenderOptions::default()
        }
    }

    fn elements(p: &FeishuPart) -> &Vec<serde_json::Value> {
        p.body["card"]["elements"].as_array().unwrap()
    }

    /// Every `lark_md` content of a card.
    fn contents(p: &FeishuPart) -> Vec<String> {
        elements(p)
            .iter()
            .filter_map(|e| e["text"]["content"].as_str())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn cards_keep_powa_text_inert_in_lark_md() {
        use crate::render::fixture;
        let mut i = fixture::slow_query(1, HOSTILE_MD);
        i.title = "<at id=all></at> **x** [y](https://e.vil) ~~z~~ & <font color=red>".into();
        let n = fixture::notification(vec![i]);
        let p = &card_parts(&n, &RenderOptions::default(), None)[0];
        assert_eq!(p.body["msg_type"], "interactive");
        for c in contents(p) {
            for never in ["<", "[", "~", "`", "&", "*x", "x*"] {
                assert!(!c.contains(never), "{never:?} in {c}");
            }
            // Our own bold stays balanced.
            assert_eq!(c.matches("**").count() % 2, 0, "{c}");
        }
        let all = contents(p).join("\n");
        assert!(all.contains("‹at id=all›‹/at›"), "{all}");
        assert!(all.contains("SELECT '‹at id=all›‹/at›'"), "{all}");
        assert!(all.contains("＆lt;at id=all＆gt;"), "{all}");
    }

    #[test]
    fn cards_carry_the_colour_the_buttons_and_the_mentions() {
        use crate::render::fixture;
        let mut v: Vec<_> = (0..60)
            .map(|k| fixture::slow_query(k, &"SELECT x FROM t WHERE y = $1 ".repeat(30)))
            .collect();
        v[0].severity = sentinel_actors::Severity::Critical;
        let mut n = fixture::notification(v);
        n.mentions.userids = vec!["ou_7d8a6e6df7621556ce0d21922b676706".into(), "@all".into()];
        let ps = card_parts(&n, &links(), None);
        assert!(ps.len() > 1);
        assert_eq!(ps[0].body["card"]["header"]["template"], "red");
        assert_eq!(ps[1].body["card"]["header"]["template"], "orange");
        let title = ps[0].body["card"]["header"]["title"]["content"]
            .as_str()
            .unwrap();
        assert!(
            title.ends_with(&format!("(part 1/{})", ps.len())),
            "{title}"
        );
        let mut acks = 0;
        for (k, p) in ps.iter().enumerate() {
            let signed = signed_body(p, Some(&Secret::new("k")), 1_700_000_000);
            assert!(signed.len() <= BODY_BUDGET, "{}", signed.len());
            let els = elements(p);
            assert!(els.len() <= 2 * CARD_ENTRIES + 4);
            for e in els.iter().filter(|e| e["tag"] == "action") {
                for b in e["actions"].as_array().unwrap() {
                    assert_eq!(b["tag"], "button");
                    assert!(b["url"]
                        .as_str()
                        .unwrap()
                        .starts_with("https://sentinel.example.org/a/"));
                    acks += usize::from(b["text"]["content"] == "Acknowledge");
                }
            }
            // The Full report button ends the card, before the first card's mentions.
            let last = &els[els.len() - 1 - usize::from(k == 0)];
            assert_eq!(last["tag"], "action");
            assert_eq!(last["actions"][0]["text"]["content"], "Full report");
            let mentions = contents(p).iter().filter(|c| c.contains("<at")).count();
            assert_eq!(mentions, usize::from(k == 0));
        }
        assert_eq!(acks, 60, "one Acknowledge button per entry");
        let m = &ps[0].body["card"]["elements"];
        let m = m.as_array().unwrap();
        let line = m[m.len() - 1]["text"]["content"].as_str().unwrap();
        assert_eq!(
            line,
            "<at id=ou_7d8a6e6df7621556ce0d21922b676706></at> <at id=all></at>"
        );
        // A digest of two cards still says how many are left out.
        let ds = card_parts(&n, &links(), Some(2));
        assert_eq!(ds.len(), 2);
        assert!(contents(&ds[1])
            .iter()
            .any(|c| c.contains("more not shown in full")));
    }

    #[test]
    fn card_bodies_are_measured_as_sent() {
        // Every '<' grows when made safe, and quotes grow in JSON: the budget sees both.
        let sql = "<\"".repeat(3000);
        let n = crate::render::fixture::notification(
            (0..40)
                .map(|k| crate::render::fixture::slow_query(k, &sql))
                .collect(),
        );
        let opts = RenderOptions {
            sql_preview_chars: 2000,
            ..links()
        };
        let ps = card_parts(&n, &opts, None);
        assert!(ps.len() > 2);
        for p in &ps {
            let signed = signed_body(p, Some(&Secret::new("k")), 1_700_000_000);
            assert!(signed.len() <= BODY_BUDGET, "{}", signed.len());
        }
    }

    #[test]
    fn the_format_is_card_or_text() {
        use crate::channels::settings::testing::problems_at;
        let t = |f: &str| {
            serde_json::json!({"type": "feishu", "format": f,
                "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/x"})
        };
        assert!(problems_at("channels.lark", t("card")).is_empty());
        assert!(problems_at("channels.lark", t("text")).is_empty());
        let p = problems_at("channels.lark", t("post"));
        assert!(p.iter().any(|p| p.key == "channels.lark.format"), "{p:?}");
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
