//! DingTalk custom robot ("自定义机器人") over its webhook.
//!
//! `POST https://oapi.dingtalk.com/robot/send?access_token=<token>` with
//! `{"msgtype":"markdown","markdown":{"title":…,"text":…}}`. DingTalk's markdown has
//! headings, bold, lists and quotes but no colours and no tables: the renderer's
//! `markdown_v2` dialect with its tables turned into lists ([`without_tables`]).
//! The title is what the conversation list and the notification show.
//!
//! With action links on (`[http] public_url`), a message is an `actionCard` with the same
//! markdown text (its inline links kept) and buttons ([`action_card_body`]): a message
//! that tells one entry in full gets "Acknowledge", "Snooze" and "Full report" buttons
//! (`btns`, side by side); a message of several entries gets one "Full report" button
//! (`singleTitle` / `singleURL`), since three buttons per entry would bury the text and
//! the report page has every entry's links. DingTalk reads `at` on `text` and `markdown`
//! messages only, so the first message stays `markdown` when it mentions someone.
//!
//! Mentions: DingTalk notifies whoever is listed in `at` and named by `@<mobile>` or
//! `@<userid>` in the text. Every `@` of the rendered text is written `＠`
//! (`render`'s DingTalk dialect), so only the "@…" line a route's mentions make
//! ([`mentions`]) can name anyone.
//!
//! Signing ("加签", optional; the secret starts with `SEC`): `timestamp` is Unix time in
//! **milliseconds**, `sign` = URL-encode(base64(HMAC-SHA256 with key = secret over
//! `"<timestamp>\n<secret>"`)), both appended to the URL's query. DingTalk refuses a
//! timestamp more than an hour off, so they are computed at each attempt.
//!
//! Answers: HTTP 200 with a JSON `errcode`, 0 for success. Rate: 20 messages per minute
//! per robot; exceeding it throttles the robot for **10 minutes** (errcode 130101), so the
//! pacer keeps to 20 per minute and a 130101 pauses the robot for ten windows. DingTalk
//! does not document a size limit: we keep texts at [`TEXT_BUDGET`] bytes and bodies
//! within [`BODY_BUDGET`].

use std::time::Duration;

use actix::Recipient;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use sentinel_actors::channel::Deliver;
use sentinel_actors::{ChannelError, Notification};

use super::check;
use super::hook::{Signed, SignedHook, SignedHookSettings};
use super::robot::{self, Answer, HttpChannel, Rendered, Request, Robot, JSON_UTF8};
use super::{ChannelType, Starter, Takes};
use crate::problem::Problem;
use crate::render::card;
use crate::render::{self, Lang, RenderOptions, Style};
use crate::secret::Secret;

/// What the markdown text of one message is aimed at, in bytes.
pub const TEXT_BUDGET: usize = 4000;
/// Largest request body sent (text, title and JSON escaping included).
pub const BODY_BUDGET: usize = 6000;
/// DingTalk's per-robot limit per minute.
pub const MAX_PER_MINUTE: u32 = 20;
pub const DEFAULT_MAX_PER_MINUTE: u32 = MAX_PER_MINUTE;
/// What the limit of `max_per_minute` is, in words.
const LIMIT: &str = "DingTalk accepts at most 20 messages per minute per bot";
/// Exceeding the rate throttles the robot for this many rate windows (10 minutes).
pub const THROTTLE_WINDOWS: u32 = 10;
/// "send too fast, exceed 20 times per minute".
pub const RATE_LIMITED: i64 = 130101;
/// Longest title kept, in characters.
const TITLE_CHARS: usize = 64;

/// A checked `[channels.<name>] type = "dingtalk"`; its table is a [`SignedHookSettings`]
/// (`webhook_url`: `https://oapi.dingtalk.com/robot/send?access_token=…`; the signing
/// secret starts with `SEC`).
#[derive(Debug)]
pub struct DingTalk(SignedHook);

impl ChannelType for DingTalk {
    const TYPE: &'static str = "dingtalk";
    const SECRET_KEYS: &'static [&'static str] = &["webhook_url", "secret"];
    /// Exceeding DingTalk's limit blocks the robot for 10 minutes.
    const TAKES: Takes = Takes::robot(MAX_PER_MINUTE, DEFAULT_MAX_PER_MINUTE, LIMIT);
    type Settings = SignedHookSettings;

    fn check(s: SignedHookSettings) -> Result<Self, Vec<Problem>> {
        let missing = "required when type = \"dingtalk\": set the robot's webhook URL \
                       (https://oapi.dingtalk.com/robot/send?access_token=…)";
        SignedHook::check(s, missing, check_url, Some("SEC")).map(DingTalk)
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.0.secrets()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let pacing = start.pacing(&destination(&self.0.url));
        self.0.start(start, pacing, DingTalkRobot)
    }
}

fn check_url(u: &str) -> Result<url::Url, String> {
    let parsed = check::webhook_url(
        u,
        "https://oapi.dingtalk.com/robot/send?access_token=…",
        "robot",
    )?;
    let has_token = parsed
        .query_pairs()
        .any(|(k, v)| k == "access_token" && !v.is_empty());
    if !has_token {
        return Err(
            "has no access_token= parameter: copy the whole webhook URL from the robot's settings"
                .into(),
        );
    }
    if parsed
        .query_pairs()
        .any(|(k, _)| k == "timestamp" || k == "sign")
    {
        return Err(
            "already has timestamp= or sign=: remove them and set secret = \"SEC…\"; they are \
             computed for each message"
                .into(),
        );
    }
    Ok(parsed)
}

/// Identity of the robot for pacing: its access token (DingTalk counts per robot). A
/// secret.
fn destination(url: &Secret) -> String {
    url::Url::parse(url.expose())
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| url.expose().to_string())
}

/// `sign` for `timestamp_ms`, before URL-encoding:
/// base64(HMAC-SHA256(key = secret, "<timestamp_ms>\n<secret>")).
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The URL to post to: `url`, plus `timestamp` and the URL-encoded `sign` when signing.
pub fn signed_url(url: &str, secret: Option<&Secret>, timestamp_ms: i64) -> String {
    let Some(secret) = secret else {
        return url.to_string();
    };
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    u.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign(secret.expose(), timestamp_ms));
    u.into()
}

/// One message: the JSON body (the signature goes in the URL, at each attempt).
pub type DingTalkPart = robot::Body;

/// The title of a message: its first line without markup, at most [`TITLE_CHARS`]
/// characters, "powa-sentinel" when that leaves nothing.
pub fn title(content: &str) -> String {
    let first = content.lines().next().unwrap_or_default();
    let t: String = first
        .trim_start_matches(['#', '>', ' '])
        .replace("**", "")
        .replace('`', "")
        .trim()
        .chars()
        .take(TITLE_CHARS)
        .collect();
    if t.is_empty() {
        "powa-sentinel".into()
    } else {
        t
    }
}

/// `content` (the renderer's `markdown_v2`) in the markdown DingTalk shows: DingTalk has no
/// tables, so a table's header and separator lines are dropped and each row becomes a
/// list item ("- calls: 52"). Every line only gets shorter, so the byte budget holds.
pub fn without_tables(content: &str) -> String {
    fn is_row(l: &str) -> bool {
        l.len() >= 2 && l.starts_with('|') && l.ends_with('|')
    }
    fn is_separator(l: &str) -> bool {
        is_row(l) && l.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
    }
    let lines: Vec<&str> = content.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for (k, l) in lines.iter().enumerate() {
        if is_separator(l)
            || lines
                .get(k + 1)
                .is_some_and(|n| is_row(l) && is_separator(n))
        {
            continue;
        }
        if is_row(l) {
            let cells: Vec<&str> = l[1..l.len() - 1].split('|').map(str::trim).collect();
            let item = match cells.as_slice() {
                [name, value] => format!("- {name}: {value}"),
                more => format!("- {}", more.join(" · ")),
            };
            out.push(item);
        } else {
            out.push((*l).to_string());
        }
    }
    out.join("\n")
}

/// The request body of one markdown message.
pub fn message_body(content: &str) -> String {
    serde_json::json!({
        "msgtype": "markdown",
        "markdown": {"title": title(content), "text": content},
    })
    .to_string()
}

/// Bytes of the first message kept for its "@…" mention line.
pub const MENTION_LINE_BYTES: usize = 1000;

/// Who the first message mentions: the notification's valid user ids and mobiles (as
/// for WeCom), as long as their "@…" line fits in [`MENTION_LINE_BYTES`]. DingTalk only
/// notifies someone listed in `at` whose "@…" also appears in the markdown text.
pub fn mentions(n: &Notification) -> (Vec<String>, Vec<String>, String) {
    let (users, mobiles) = super::wecom::valid_mentions(&n.mentions);
    let (mut u, mut m, mut line) = (Vec::new(), Vec::new(), String::new());
    for (is_user, x) in users
        .into_iter()
        .map(|x| (true, x))
        .chain(mobiles.into_iter().map(|x| (false, x)))
    {
        let word = format!("@{x}");
        if line.len() + word.len() + 1 > MENTION_LINE_BYTES {
            break;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
        if is_user {
            u.push(x);
        } else {
            m.push(x);
        }
    }
    (u, m, line)
}

/// The request body of the first message, with its mentions: the "@…" line at the end of
/// the text and `at.atUserIds` / `at.atMobiles`.
pub fn message_body_with(
    content: &str,
    users: &[String],
    mobiles: &[String],
    line: &str,
) -> String {
    if line.is_empty() {
        return message_body(content);
    }
    let text = format!("{content}\n\n{line}");
    serde_json::json!({
        "msgtype": "markdown",
        "markdown": {"title": title(content), "text": text},
        "at": {"atUserIds": users, "atMobiles": mobiles, "isAtAll": false},
    })
    .to_string()
}

/// The request body of an `actionCard` message of `p` (whose text is already DingTalk's
/// markdown), linking to `report`: buttons of its one entry's links when it tells one
/// entry in full and has them, else one button to the report (see the module's
/// documentation).
pub fn action_card_body(p: &render::Placed, report: &str, lang: Lang) -> String {
    let b = card::buttons(lang);
    let mut action_card = serde_json::json!({"title": title(&p.text), "text": p.text});
    match p.actions.as_slice() {
        [(ack, snooze)] if p.entries == 1 => {
            // "1": side by side (three short labels fit a phone's width).
            action_card["btnOrientation"] = "1".into();
            action_card["btns"] = serde_json::json!([
                {"title": b.acknowledge, "actionURL": ack},
                {"title": b.snooze, "actionURL": snooze},
                {"title": b.full_report, "actionURL": report},
            ]);
        }
        _ => {
            action_card["singleTitle"] = b.full_report.into();
            action_card["singleURL"] = report.into();
        }
    }
    serde_json::json!({"msgtype": "actionCard", "actionCard": action_card}).to_string()
}

/// The parts for `n`: markdown messages within [`TEXT_BUDGET`] and [`BODY_BUDGET`], as
/// action cards when action links are on (see [`action_card_body`]); a digest of at
/// most `max_parts` when given. The first one carries the mentions (as `markdown`).
pub fn parts(
    n: &Notification,
    opts: &RenderOptions,
    max_parts: Option<usize>,
) -> Vec<DingTalkPart> {
    let render = |budget: usize| {
        let max = max_parts.unwrap_or(usize::MAX);
        render::render_placed(n, Style::DingTalk, budget, opts, max)
            .into_iter()
            .map(|mut p| {
                p.text = without_tables(&p.text);
                p
            })
            .collect::<Vec<_>>()
    };
    let (users, mobiles, line) = mentions(n);
    let budget = if line.is_empty() {
        TEXT_BUDGET
    } else {
        TEXT_BUDGET - line.len() - 2
    };
    robot::fit_bodies(budget, BODY_BUDGET, render, |p, k, _| match &p.report {
        _ if k == 0 && !line.is_empty() => message_body_with(&p.text, &users, &mobiles, &line),
        Some(report) => action_card_body(p, report, opts.lang),
        None => message_body(&p.text),
    })
    .into_iter()
    .map(|body| DingTalkPart { body })
    .collect()
}

/// What DingTalk's answer means: transient statuses first, then `errcode`.
/// `throttle` is how long the robot is held after errcode 130101.
pub fn classify(a: &Answer, throttle: Duration) -> Result<(), ChannelError> {
    if let Some(e) = robot::transient_status("DingTalk", a) {
        return Err(e);
    }
    if !(200..300).contains(&a.status) {
        return Err(ChannelError::Permanent {
            reason: format!("DingTalk answered HTTP {}: check webhook_url", a.status),
        });
    }
    #[derive(Deserialize)]
    struct Body {
        errcode: Option<i64>,
    }
    let Some(code) = serde_json::from_slice::<Body>(&a.body)
        .ok()
        .and_then(|b| b.errcode)
    else {
        return Err(ChannelError::Retryable {
            reason: format!(
                "DingTalk answered HTTP {} without an errcode (a proxy in the way?)",
                a.status
            ),
        });
    };
    let permanent = |what: &str| {
        Err(ChannelError::Permanent {
            reason: format!("DingTalk errcode {code}: {what}"),
        })
    };
    match code {
        0 => Ok(()),
        RATE_LIMITED => Err(ChannelError::RateLimited {
            reason: format!(
                "DingTalk errcode {code}: more than {MAX_PER_MINUTE} messages per minute; \
                 the robot is throttled for 10 minutes"
            ),
            retry_after: throttle,
        }),
        -1 => Err(ChannelError::Retryable {
            reason: "DingTalk errcode -1: system busy".into(),
        }),
        310000 => permanent(
            "the keyword, signature or IP check failed: check secret, the robot's keywords \
             and the host's clock",
        ),
        300001 => permanent("the access_token does not exist: check webhook_url"),
        _ => permanent("DingTalk refused the message"),
    }
}

/// One robot: its URL, signing secret and rules, for [`HttpChannel`].
///
/// After errcode 130101 the robot is held for [`THROTTLE_WINDOWS`] rate windows.
pub struct DingTalkRobot(Signed);

/// Posts notifications to one DingTalk robot. Holds an awc client (`!Send`).
pub type DingTalkChannel = HttpChannel<DingTalkRobot>;

impl Robot for DingTalkRobot {
    type Part = DingTalkPart;

    const PROVIDER: &'static str = "DingTalk";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<DingTalkPart> {
        Ok(parts(n, &self.0.opts, max_parts))
    }

    /// Signed at each attempt: DingTalk refuses a timestamp more than an hour off.
    fn request(&self, part: &DingTalkPart, now: DateTime<Utc>, _token: Option<&Secret>) -> Request {
        let url = signed_url(
            self.0.url.expose(),
            self.0.secret.as_ref(),
            now.timestamp_millis(),
        );
        Request::post(url, JSON_UTF8, part.body.clone())
    }

    fn classify(&self, answer: &Answer) -> Result<(), ChannelError> {
        classify(answer, self.0.rate_window * THROTTLE_WINDOWS)
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
    fn sign_matches_a_known_vector() {
        // python: base64(hmac.new(s, b"1700000000000\n" + s, sha256)), then quote_plus.
        let s = "SECdemo0123456789";
        assert_eq!(
            sign(s, 1_700_000_000_000),
            "ww0uYz9hgC//la1LzHCxhiH8ja6t5XU0VlJXBRQKVAA="
        );
        let u = signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            Some(&Secret::new(s)),
            1_700_000_000_000,
        );
        assert_eq!(
            u,
            "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000\
             &sign=ww0uYz9hgC%2F%2Fla1LzHCxhiH8ja6t5XU0VlJXBRQKVAA%3D"
        );
        let plain = "https://oapi.dingtalk.com/robot/send?access_token=abc";
        assert_eq!(signed_url(plain, None, 1), plain);
    }

    #[test]
    fn first_message_carries_the_mentions() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .unwrap();
        let insight = |k: usize| sentinel_actors::Insight {
            fingerprint: sentinel_actors::Fingerprint::of(["k", &k.to_string()]),
            kind: "slow_query".into(),
            rule: "r".into(),
            severity: sentinel_actors::Severity::Warning,
            labels: Default::default(),
            title: format!("T{k}"),
            advice: "a".repeat(900),
            text: None,
            metrics: Default::default(),
            window: sentinel_actors::Window { start: t, end: t },
            observed_at: t,
            status: None,
            changes: Vec::new(),
            trend: None,
        };
        let n = Notification {
            id: 1,
            channel: "d".into(),
            reason: sentinel_actors::NotifyReason::Immediate,
            insights: std::sync::Arc::new((0..30).map(insight).collect()),
            created_at: t,
            mentions: sentinel_actors::message::Mentions {
                userids: vec!["zhangsan".into(), "bad id!".into()],
                mobiles: vec!["13800000000".into()],
            },
        };
        let ps = parts(&n, &RenderOptions::default(), None);
        assert!(ps.len() > 1);
        let first: serde_json::Value = serde_json::from_str(&ps[0].body).unwrap();
        assert_eq!(first["at"]["atUserIds"], serde_json::json!(["zhangsan"]));
        assert_eq!(first["at"]["atMobiles"], serde_json::json!(["13800000000"]));
        let text = first["markdown"]["text"].as_str().unwrap();
        assert!(text.ends_with("@zhangsan @13800000000"), "{text}");
        assert!(text.len() <= TEXT_BUDGET);
        for p in &ps[1..] {
            let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
            assert!(v.get("at").is_none());
            assert!(p.body.len() <= BODY_BUDGET);
        }
    }

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

    fn body(p: &DingTalkPart) -> serde_json::Value {
        serde_json::from_str(&p.body).unwrap()
    }

    #[test]
    fn action_cards_have_buttons_for_one_entry_and_the_report_for_several() {
        use crate::render::fixture;
        let one = fixture::notification(vec![fixture::slow_query(1, "SELECT 1")]);
        let v = body(&parts(&one, &links(), None)[0]);
        assert_eq!(v["msgtype"], "actionCard");
        let card = &v["actionCard"];
        let titles: Vec<&str> = card["btns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["Acknowledge", "Snooze", "Full report"]);
        for b in card["btns"].as_array().unwrap() {
            assert!(b["actionURL"]
                .as_str()
                .unwrap()
                .starts_with("https://sentinel.example.org/a/"));
        }
        assert!(card["text"].as_str().unwrap().contains("Top query #1"));
        assert!(!card["title"].as_str().unwrap().is_empty());

        let several = fixture::notification(
            (0..40)
                .map(|k| fixture::slow_query(k, &"SELECT 1 ".repeat(100)))
                .collect(),
        );
        let ps = parts(&several, &links(), None);
        assert!(ps.len() > 1);
        for p in &ps {
            let v = body(p);
            assert_eq!(v["msgtype"], "actionCard");
            assert_eq!(v["actionCard"]["singleTitle"], "Full report");
            assert!(v["actionCard"].get("btns").is_none());
            assert!(p.body.len() <= BODY_BUDGET);
        }
        // Without links: markdown, as before.
        let v = body(&parts(&one, &RenderOptions::default(), None)[0]);
        assert_eq!(v["msgtype"], "markdown");
        // With mentions: the first message stays markdown (DingTalk reads `at` there only).
        let mut m = several.clone();
        m.mentions.mobiles = vec!["13800000000".into()];
        let ps = parts(&m, &links(), None);
        assert_eq!(body(&ps[0])["msgtype"], "markdown");
        assert_eq!(
            body(&ps[0])["at"]["atMobiles"],
            serde_json::json!(["13800000000"])
        );
        assert!(ps[1..].iter().all(|p| body(p)["msgtype"] == "actionCard"));
    }

    #[test]
    fn query_texts_cannot_mention_a_listed_mobile_again() {
        use crate::render::fixture;
        let mut i = fixture::slow_query(1, "SELECT '@13800000000', '@all' FROM t");
        i.title = "Ping @13800000000 and @zhangsan".into();
        let mut n = fixture::notification(vec![i]);
        n.mentions = sentinel_actors::message::Mentions {
            userids: vec!["zhangsan".into()],
            mobiles: vec!["13800000000".into()],
        };
        let v = body(&parts(&n, &RenderOptions::default(), None)[0]);
        let text = v["markdown"]["text"].as_str().unwrap();
        assert_eq!(text.matches("@13800000000").count(), 1, "{text}");
        assert_eq!(text.matches("@zhangsan").count(), 1, "{text}");
        assert!(text.ends_with("\n\n@zhangsan @13800000000"), "{text}");
        assert!(
            text.contains("SELECT '＠13800000000', '＠all' FROM t"),
            "{text}"
        );
        assert!(text.contains("Ping ＠13800000000 and ＠zhangsan"), "{text}");
        assert_eq!(v["at"]["isAtAll"], false);
    }

    #[test]
    fn tables_become_lists() {
        let md = "### A\n- Where: x\n\n| Metric | Value |\n| --- | --- |\n| calls | 52 |\n| mean | 3 ms |\n\n| a | b | c |\n|:-|-|-|\n| 1 | 2 | 3 |";
        assert_eq!(
            without_tables(md),
            "### A\n- Where: x\n\n- calls: 52\n- mean: 3 ms\n\n- 1 · 2 · 3"
        );
        assert_eq!(without_tables("no table | here"), "no table | here");
    }

    #[test]
    fn titles_are_short_and_plain() {
        assert_eq!(title("## **Alert** `x`\nrest"), "Alert x");
        assert_eq!(title(""), "powa-sentinel");
        assert_eq!(title(&"数".repeat(100)).chars().count(), TITLE_CHARS);
    }

    #[test]
    fn errcodes_are_classified() {
        let th = Duration::from_secs(600);
        let c = |s: u16, b: &str| classify(&Answer::of(s, b, None), th);
        assert_eq!(c(200, r#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        let limited = c(200, r#"{"errcode":130101,"errmsg":"send too fast"}"#);
        assert!(paused_for(&limited, th));
        assert!(retryable(&c(200, r#"{"errcode":-1}"#)));
        for code in [310000, 300001, 400013, 12345] {
            let b = format!(r#"{{"errcode":{code},"errmsg":"ip 1.2.3.4"}}"#);
            permanent_naming(c(200, &b), &code.to_string(), "1.2.3.4");
        }
        assert!(retryable(&c(503, "")));
        assert!(permanent(&c(404, "")));
    }

    #[test]
    fn pacing_matches_the_robot_limit() {
        let p = sentinel_actors::throttle::Pacer::new(MAX_PER_MINUTE, Duration::from_secs(60));
        assert!(p.worst_case_in(Duration::from_secs(60)) <= MAX_PER_MINUTE);
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://oapi.dingtalk.com/robot/send?access_token=abc").is_ok());
        for bad in [
            "oapi.dingtalk.com/robot/send?access_token=abc",
            "https://oapi.dingtalk.com/robot/send",
            "https://oapi.dingtalk.com/robot/send?access_token=",
            "https://oapi.dingtalk.com/robot/send?access_token=a&sign=x&timestamp=1",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
