//! WeCom application messages ("应用消息"): an enterprise app pushes to users,
//! departments or tags, rather than a robot posting to a group.
//!
//! Two calls: `GET <base>/cgi-bin/gettoken?corpid=…&corpsecret=…` gives an access token
//! valid `expires_in` seconds (normally 7200), and `POST
//! <base>/cgi-bin/message/send?access_token=…` sends. The token is cached per channel and
//! fetched again shortly before it expires, and at once when WeCom says it is invalid
//! (40014), expired (42001) or invalidated (42007) or missing (41001): then the send is
//! retried once with the new token. WeCom asks callers not to call gettoken often, and the
//! channel actor sends one part at a time, so one fetch is in flight at most.
//!
//! Limits differ from the robot's: markdown **and** text content at most 2048 UTF-8
//! bytes (text beyond is silently truncated by WeCom, markdown refused); per member at
//! most 30 messages a minute, and messages beyond are silently dropped — hence a pacer per
//! application (corpid + agentid), default 20 a minute. Mentions do not exist in
//! application messages (the recipients *are* the people notified), so
//! `Notification::mentions` is not used here.
//!
//! The corpsecret and the token are [`Secret`]s; every text that could carry them (awc
//! errors echo URLs) is redacted.

use std::time::Duration;

use actix::Recipient;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::form_urlencoded;

use sentinel_actors::channel::Deliver;
use sentinel_actors::{ChannelError, Notification};

use super::check::{self, SecretSource};
use super::robot::{Answer, Authorize, HttpChannel, Rendered, Request, Robot, Token, JSON};
use super::wecom::{self, MsgType, DEFAULT_BASE_URL};
use super::{ChannelSettings, ChannelType, Starter, Takes};
use crate::problem::Problem;
use crate::render::{self, RenderOptions};
use crate::secret::Secret;

pub const GETTOKEN_PATH: &str = "/cgi-bin/gettoken";
pub const SEND_PATH: &str = "/cgi-bin/message/send";
/// WeCom drops (silently) messages beyond 30 a minute to one member.
pub const MAX_PER_MINUTE: u32 = 30;
pub const DEFAULT_MAX_PER_MINUTE: u32 = 20;
/// What the limit of `max_per_minute` is, in words.
const LIMIT: &str = "WeCom silently drops messages beyond 30 a minute to one member";
/// Content limit of application messages, markdown and text alike, in UTF-8 bytes.
pub const APP_CONTENT_LIMIT: usize = 2048;
/// What the renderers aim for: the limit less a safety margin.
pub const APP_CONTENT_BUDGET: usize = 2000;
/// A token is fetched again this long before WeCom says it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Most recipients per list (WeCom: 1000 users, 100 departments, 100 tags).
const MAX_USERS: usize = 1000;
const MAX_PARTIES: usize = 100;

/// The errcodes that mean "fetch a new token".
fn token_invalid(errcode: i64) -> bool {
    matches!(errcode, 40014 | 41001 | 42001 | 42007)
}

/// `[channels.<name>] type = "wecom_app"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeComAppSettings {
    /// The company id (`corpid`, "ww…", My Company → Company Information).
    pub corpid: Option<String>,
    /// The application's secret; a secret. Or `corpsecret_file`, or the environment:
    /// `POWA_SENTINEL__CHANNELS__<NAME>__CORPSECRET`.
    pub corpsecret: Option<Secret>,
    /// A file holding the application's secret (surrounding whitespace is ignored), read
    /// when the channel starts.
    pub corpsecret_file: Option<std::path::PathBuf>,
    /// The application's `agentid`.
    pub agentid: Option<i64>,
    /// Recipients: user ids (`["@all"]` for everyone). At least one of `touser`,
    /// `toparty`, `totag`.
    pub touser: Option<Vec<String>>,
    /// Recipients: department ids.
    pub toparty: Option<Vec<String>>,
    /// Recipients: tag ids.
    pub totag: Option<Vec<String>>,
    /// `markdown` (default) or `text`.
    pub msgtype: Option<MsgType>,
    /// Where the WeCom API lives. Default `https://qyapi.weixin.qq.com`.
    pub base_url: Option<String>,
    /// `card`: one `template_card` per open finding with Acknowledge / Snooze buttons
    /// (needs the callback below; the rest of a report goes as one message); `message`:
    /// `msgtype` messages only. Default: `card` when the callback is set, else `message`.
    pub format: Option<AppFormat>,
    /// The application's callback ("接收消息" → API 接收): its Token, a secret. WeCom
    /// posts the taps on card buttons to `<[http] public_url>/wecom/<channel name>`.
    pub callback_token: Option<Secret>,
    /// The callback's EncodingAESKey (43 characters), a secret.
    pub callback_aes_key: Option<Secret>,
}

/// How findings go to a WeCom application.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppFormat {
    /// `template_card` (button_interaction) per open finding.
    Card,
    /// `markdown` or `text` messages (`msgtype`).
    #[default]
    Message,
}

/// At most this many cards per notification (each is a message of the member's 30 a
/// minute); the rest of the notification goes as one message after them.
pub const MAX_CARDS: usize = 5;

/// A checked application channel; its secret may still be in a file.
#[derive(Debug)]
pub struct WeComApp {
    base_url: String,
    corpid: String,
    corpsecret: SecretSource,
    agentid: i64,
    touser: Vec<String>,
    toparty: Vec<String>,
    totag: Vec<String>,
    msgtype: MsgType,
    format: AppFormat,
    /// The callback's token and AES key, when set.
    callback: Option<(Secret, [u8; 32])>,
}

impl ChannelType for WeComApp {
    const TYPE: &'static str = "wecom_app";
    const SECRET_KEYS: &'static [&'static str] =
        &["corpsecret", "callback_token", "callback_aes_key"];
    /// Per application (corpid + agentid); default 20.
    const TAKES: Takes = Takes::robot(MAX_PER_MINUTE, DEFAULT_MAX_PER_MINUTE, LIMIT);
    type Settings = WeComAppSettings;

    fn check(s: WeComAppSettings) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: &str| problems.push(Problem::new(key, message));
        let corpid = s.corpid.as_deref().map(str::trim).unwrap_or_default();
        if corpid.is_empty() {
            problem(
                "corpid",
                "required when type = \"wecom_app\": set the company id (\"ww…\", My Company → Company Information)",
            );
        } else if !corpid.chars().all(|c| c.is_ascii_alphanumeric()) {
            problem(
                "corpid",
                "must be letters and digits only, e.g. \"ww0123456789abcdef\"",
            );
        }
        let both = s.corpsecret.is_some() && s.corpsecret_file.is_some();
        let corpsecret =
            SecretSource::of("corpsecret", s.corpsecret, s.corpsecret_file, &mut problems);
        let mut problem = |key: &str, message: &str| problems.push(Problem::new(key, message));
        match &corpsecret {
            None if !both => problem(
                "corpsecret",
                "required when type = \"wecom_app\": set corpsecret, corpsecret_file or \
                 POWA_SENTINEL__CHANNELS__<NAME>__CORPSECRET (the application's Secret)",
            ),
            Some(SecretSource::Inline(v)) if v.is_empty() => problem("corpsecret", "is empty"),
            _ => {}
        }
        match s.agentid {
            None => problem(
                "agentid",
                "required when type = \"wecom_app\": set the application's AgentId (a number)",
            ),
            Some(a) if a <= 0 => problem(
                "agentid",
                "must be a positive number (the application's AgentId)",
            ),
            Some(_) => {}
        }
        let lists = [
            ("touser", &s.touser, MAX_USERS),
            ("toparty", &s.toparty, MAX_PARTIES),
            ("totag", &s.totag, MAX_PARTIES),
        ];
        let mut any = false;
        for (field, list, max) in lists {
            let Some(list) = list else { continue };
            any |= !list.is_empty();
            if list.len() > max {
                problem(field, &format!("at most {max} entries (WeCom's limit)"));
            }
            if list.iter().any(|x| {
                x.trim().is_empty() || x.contains('|') || x.chars().any(char::is_whitespace)
            }) {
                problem(
                    field,
                    "entries must be non-empty ids without spaces or '|' (give a list: [\"a\", \"b\"])",
                );
            }
        }
        if !any {
            problem(
                "touser",
                "set at least one recipient: touser (user ids, or [\"@all\"]), toparty or totag",
            );
        }
        if s.msgtype == Some(MsgType::MarkdownV2) {
            problem(
                "msgtype",
                "application messages take \"markdown\" or \"text\", not \"markdown_v2\"",
            );
        }
        let base_url = base_url(s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL));
        if base_url.is_none() {
            problem(
                "base_url",
                &format!("is not an http(s) URL: use e.g. \"{DEFAULT_BASE_URL}\" (the default)"),
            );
        }
        let callback = match (&s.callback_token, &s.callback_aes_key) {
            (None, None) => None,
            (Some(t), Some(k)) => {
                if t.expose().trim().is_empty() {
                    problem(
                        "callback_token",
                        "is empty: copy the Token of the application's callback settings",
                    );
                }
                match crate::channels::wecom_callback::aes_key(k.expose()) {
                    Ok(key) => Some((Secret::new(t.expose().trim()), key)),
                    Err(e) => {
                        problem("callback_aes_key", &e);
                        None
                    }
                }
            }
            (Some(_), None) => {
                problem("callback_aes_key", "required with callback_token: copy the EncodingAESKey of the application's callback settings");
                None
            }
            (None, Some(_)) => {
                problem("callback_token", "required with callback_aes_key: copy the Token of the application's callback settings");
                None
            }
        };
        let format = s.format.unwrap_or(if callback.is_some() {
            AppFormat::Card
        } else {
            AppFormat::Message
        });
        if format == AppFormat::Card && callback.is_none() && s.callback_token.is_none() {
            problem(
                "format",
                "\"card\" needs the application's callback: set callback_token and \
                 callback_aes_key (its buttons report to <[http] public_url>/wecom/<channel>), \
                 or use format = \"message\"",
            );
        }
        match (base_url, corpsecret, s.agentid) {
            (Some(base_url), Some(corpsecret), Some(agentid)) if problems.is_empty() => {
                Ok(WeComApp {
                    base_url,
                    corpid: corpid.to_string(),
                    corpsecret,
                    agentid,
                    touser: s.touser.unwrap_or_default(),
                    toparty: s.toparty.unwrap_or_default(),
                    totag: s.totag.unwrap_or_default(),
                    msgtype: s.msgtype.unwrap_or_default(),
                    format,
                    callback,
                })
            }
            _ => Err(problems),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        let mut out: Vec<&Secret> = self.corpsecret.inline().into_iter().collect();
        out.extend(self.callback.as_ref().map(|(t, _)| t));
        out
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let app = self
            .resolve(&start.key("corpsecret"), start.timeout())
            .map_err(anyhow::Error::msg)?;
        let pacing = start.pacing(&app.destination());
        let ch = WeComAppChannel::new(app, start.render_options(), start.rate_window());
        Ok(start.spawn(ch, Some(pacing)))
    }
}

impl WeComApp {
    /// The callback that receives the taps on this application's cards, when set.
    pub fn callback(&self) -> Option<crate::channels::wecom_callback::Callback> {
        self.callback.as_ref().map(|(token, key)| {
            crate::channels::wecom_callback::Callback::new(token.clone(), *key, &self.corpid)
        })
    }

    /// Everything the channel needs, its secret read (`corpsecret` is the secret's key
    /// path, for errors).
    fn resolve(&self, corpsecret: &str, timeout: Duration) -> Result<AppSettings, String> {
        Ok(AppSettings {
            base_url: self.base_url.clone(),
            corpid: self.corpid.clone(),
            corpsecret: self.corpsecret.resolve(corpsecret)?,
            agentid: self.agentid,
            touser: self.touser.clone(),
            toparty: self.toparty.clone(),
            totag: self.totag.clone(),
            msgtype: self.msgtype,
            cards: self.format == AppFormat::Card,
            timeout,
        })
    }
}

/// `s` as a base URL without a trailing slash, if it is an http(s) URL without a query.
fn base_url(s: &str) -> Option<String> {
    let u = check::http_url(s, false)?;
    (u.query().is_none()).then(|| u.as_str().trim_end_matches('/').to_string())
}

/// Everything the channel needs, resolved (secret read from its file).
#[derive(Clone, Debug)]
pub struct AppSettings {
    pub base_url: String,
    pub corpid: String,
    pub corpsecret: Secret,
    pub agentid: i64,
    pub touser: Vec<String>,
    pub toparty: Vec<String>,
    pub totag: Vec<String>,
    pub msgtype: MsgType,
    /// Open findings as `template_card`s with buttons.
    pub cards: bool,
    pub timeout: Duration,
}

impl AppSettings {
    /// From valid settings of type `wecom_app`; reads `corpsecret_file`. Errors never
    /// quote the secret.
    pub fn from_settings(s: &ChannelSettings) -> Result<Self, String> {
        s.typed::<WeComApp>()
            .ok_or("not valid settings of type = \"wecom_app\"")?
            .resolve("wecom_app.corpsecret", s.timeout())
    }

    /// Identity for pacing: one budget per application. Not secret.
    pub fn destination(&self) -> String {
        format!("wecom_app:{}:{}", self.corpid, self.agentid)
    }
}

/// The recipients and the application, common to every body.
fn envelope(a: &AppSettings, msgtype: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut body = serde_json::Map::new();
    for (k, v) in [
        ("touser", &a.touser),
        ("toparty", &a.toparty),
        ("totag", &a.totag),
    ] {
        if !v.is_empty() {
            body.insert(k.into(), v.join("|").into());
        }
    }
    body.insert("msgtype".into(), msgtype.into());
    body.insert("agentid".into(), a.agentid.into());
    body
}

/// The request body of one application message (the token goes in the URL).
pub fn app_message_body(a: &AppSettings, content: &str) -> String {
    let msgtype = match a.msgtype {
        MsgType::Text => "text",
        _ => "markdown",
    };
    let mut body = envelope(a, msgtype);
    body.insert(msgtype.into(), serde_json::json!({ "content": content }));
    serde_json::Value::Object(body).to_string()
}

/// What WeCom shows of a card's texts (its documented recommendations, in characters):
/// longer texts are cut here, with "…", and the whole entry is one tap away.
const TITLE_CHARS: usize = 36;
const DESC_CHARS: usize = 44;
const SUB_TITLE_CHARS: usize = 160;
const KEYNAME_CHARS: usize = 8;
const VALUE_CHARS: usize = 60;

/// The `template_card` (button_interaction) body of `card`, the `k`-th of notification
/// `id`: Acknowledge, Snooze 1 d and Snooze 7 d buttons whose keys name the finding (see
/// [`crate::channels::wecom_callback`]); a tap on the card opens `open` (the report page,
/// or powa-web) when there is one.
pub fn card_body(
    a: &AppSettings,
    card: &render::tiles::Tile,
    id: u64,
    k: usize,
    open: Option<&str>,
    lang: render::Lang,
) -> String {
    use crate::channels::wecom_callback::{button_key, Tap};
    use render::tiles::line;
    let colour = match (card.resolved, card.severity) {
        (true, _) => 3,
        (false, sentinel_actors::Severity::Critical) => 2,
        (false, sentinel_actors::Severity::Warning) => 1,
        (false, sentinel_actors::Severity::Info) => 0,
    };
    let mut rows: Vec<serde_json::Value> = card
        .fields
        .iter()
        .take(5)
        .map(|(k, v)| {
            serde_json::json!({"keyname": line(k, KEYNAME_CHARS), "value": line(v, VALUE_CHARS)})
        })
        .collect();
    if let Some(url) = &card.link {
        rows.push(serde_json::json!({"type": 1, "keyname": "powa-web", "value": line(&card.title, VALUE_CHARS), "url": url}));
    }
    let fp = card.fingerprint.0;
    let (ack, snooze) = match lang {
        render::Lang::En => ("Acknowledge", "Snooze"),
        render::Lang::Zh => ("确认处理", "暂停提醒"),
    };
    let mut tc = serde_json::json!({
        "card_type": "button_interaction",
        "source": {"desc": line(&format!("powa-sentinel · {}", card.marker), DESC_CHARS), "desc_color": colour},
        "main_title": {
            "title": line(&card.title, TITLE_CHARS),
            "desc": line(card.place.as_deref().unwrap_or(""), DESC_CHARS),
        },
        "sub_title_text": line(&card.summary, SUB_TITLE_CHARS),
        "horizontal_content_list": rows,
        "task_id": format!("ps-{id}-{k}-{fp:016x}"),
        "button_list": [
            {"text": ack, "style": 1, "key": button_key(Tap::Ack, fp)},
            {"text": format!("{snooze} 1d"), "style": 2, "key": button_key(Tap::Snooze(24), fp)},
            {"text": format!("{snooze} 7d"), "style": 2, "key": button_key(Tap::Snooze(168), fp)},
        ],
    });
    if let Some(url) = open {
        tc["card_action"] = serde_json::json!({"type": 1, "url": url});
    }
    let mut body = envelope(a, "template_card");
    body.insert("template_card".into(), tc);
    serde_json::Value::Object(body).to_string()
}

/// The parts of `n` as cards: one per open finding, at most [`MAX_CARDS`], then one
/// message (within `max_parts` when given) with everything else — resolved entries,
/// heartbeats, findings past the cards' cap — so that every insight is told.
pub fn card_parts(
    a: &AppSettings,
    n: &Notification,
    opts: &RenderOptions,
    max_parts: usize,
) -> Vec<String> {
    let cards = render::tiles::tiles(n, opts);
    let page = opts.actions.as_ref().map(|l| {
        l.url(
            crate::actions::Action::Page,
            sentinel_actors::Fingerprint(n.id),
            n.created_at,
        )
    });
    // A digest of one part has room for one card at most: the rest goes in its message.
    let room = max_parts.saturating_sub(1).min(MAX_CARDS);
    let mut out = Vec::new();
    let mut carded = std::collections::HashSet::new();
    for (k, c) in cards.iter().filter(|c| c.actionable).take(room).enumerate() {
        let open = page.as_deref().or(c.link.as_deref());
        out.push(card_body(a, c, n.id, k, open, opts.lang));
        carded.extend(c.insights.iter().copied());
    }
    let rest: Vec<sentinel_actors::Insight> = n
        .insights
        .iter()
        .enumerate()
        .filter(|(k, _)| !carded.contains(k))
        .map(|(_, i)| i.clone())
        .collect();
    if !rest.is_empty() {
        let rest_n = Notification {
            insights: std::sync::Arc::new(rest),
            ..n.clone()
        };
        let left = max_parts.saturating_sub(out.len()).max(1);
        out.extend(
            render::render_digest(&rest_n, a.msgtype.style(), APP_CONTENT_BUDGET, opts, left)
                .iter()
                .map(|c| app_message_body(a, c)),
        );
    }
    out
}

/// What WeCom's answer to message/send means, once token errors are handled (a token
/// refused even after a fresh fetch is retried later).
pub fn classify_send(errcode: i64, rate_retry_after: Duration) -> Result<(), ChannelError> {
    let permanent = |what: &str| {
        Err(ChannelError::Permanent {
            reason: format!("errcode {errcode}: {what}"),
        })
    };
    match errcode {
        0 => Ok(()),
        -1 => Err(ChannelError::Retryable {
            reason: "errcode -1: WeCom is busy".into(),
        }),
        45009 | 45033 => Err(ChannelError::RateLimited {
            reason: format!("errcode {errcode}: more messages than the application may send"),
            retry_after: rate_retry_after,
        }),
        c if token_invalid(c) => Err(ChannelError::Retryable {
            reason: format!("errcode {errcode}: the access token was refused again"),
        }),
        81013 => permanent(
            "no recipient is valid or reachable by the application; check touser/toparty/totag \
             and the application's visibility",
        ),
        40056 | 301002 => permanent("invalid agentid; check agentid"),
        60020 => permanent("this server's IP is not trusted by the application"),
        other => Err(wecom::refused(other)),
    }
}

/// What WeCom's answer to gettoken means: the token, kept until [`TOKEN_MARGIN`] before
/// it expires (or half its life, for short-lived tokens).
pub fn read_token(a: &Answer, rate_retry_after: Duration) -> Result<Token, ChannelError> {
    let code = wecom::errcode(a, "WeCom gettoken", "check base_url")?;
    let refused = |what: &str| ChannelError::Permanent {
        reason: format!("gettoken errcode {code}: {what}"),
    };
    match code {
        0 => {}
        -1 => {
            return Err(ChannelError::Retryable {
                reason: "gettoken errcode -1: WeCom is busy".into(),
            })
        }
        45009 => {
            return Err(ChannelError::RateLimited {
                reason: "gettoken errcode 45009: too many token requests".into(),
                retry_after: rate_retry_after,
            })
        }
        40001 | 40013 | 40091 => {
            return Err(refused(
                "WeCom refused corpid/corpsecret; check corpid and the application's Secret",
            ))
        }
        _ => return Err(refused("WeCom refused the token request")),
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let body: Option<Body> = serde_json::from_slice(&a.body).ok();
    let (token, expires_in) = body
        .map(|b| (b.access_token, b.expires_in))
        .unwrap_or_default();
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ChannelError::Permanent {
            reason: "gettoken answered errcode 0 without an access_token".into(),
        })?;
    let ttl = Duration::from_secs(expires_in.unwrap_or(7200));
    Ok(Token {
        value: Secret::new(token),
        keep: ttl.saturating_sub(TOKEN_MARGIN.min(ttl / 2)),
    })
}

/// One application: its rules, for [`HttpChannel`].
pub struct WeComAppRobot {
    app: AppSettings,
    opts: RenderOptions,
    rate_retry_after: Duration,
    /// The gettoken URL, with the corpsecret in it.
    gettoken: Secret,
}

/// Sends notifications as application messages. Holds an awc client (`!Send`): build it
/// on the thread that runs the channel actor.
pub type WeComAppChannel = HttpChannel<WeComAppRobot>;

impl WeComAppChannel {
    /// `rate_window` is the window the pacing counts in (one minute); after 45009 the
    /// application is held for that long plus a second.
    pub fn new(app: AppSettings, opts: RenderOptions, rate_window: Duration) -> Self {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("corpid", &app.corpid)
            .append_pair("corpsecret", app.corpsecret.expose())
            .finish();
        let gettoken = Secret::new(format!("{}{GETTOKEN_PATH}?{query}", app.base_url));
        let timeout = app.timeout;
        let robot = WeComAppRobot {
            app,
            opts,
            rate_retry_after: rate_window + Duration::from_secs(1),
            gettoken,
        };
        HttpChannel::with_robot(robot, timeout)
    }
}

impl Robot for WeComAppRobot {
    /// The JSON body of one message (without the token).
    type Part = String;

    const PROVIDER: &'static str = "WeCom";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<String> {
        let app = &self.app;
        let max_parts = max_parts.unwrap_or(usize::MAX);
        if app.cards {
            return Ok(card_parts(app, n, &self.opts, max_parts));
        }
        Ok(render::render_digest(
            n,
            app.msgtype.style(),
            APP_CONTENT_BUDGET,
            &self.opts,
            max_parts,
        )
        .iter()
        .map(|c| app_message_body(app, c))
        .collect())
    }

    fn request(&self, body: &String, _now: DateTime<Utc>, token: Option<&Secret>) -> Request {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("access_token", token.map_or("", Secret::expose))
            .finish();
        let url = format!("{}{SEND_PATH}?{query}", self.app.base_url);
        Request::post(url, JSON, body.clone())
    }

    fn classify(&self, answer: &Answer) -> Result<(), ChannelError> {
        let code = wecom::errcode(answer, "WeCom", "check base_url")?;
        classify_send(code, self.rate_retry_after)
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.app.corpsecret, &self.gettoken]
    }

    fn authorize(&self) -> Option<&dyn Authorize> {
        Some(self)
    }
}

impl Authorize for WeComAppRobot {
    fn request(&self) -> Request {
        Request::get(self.gettoken.expose())
    }

    fn token(&self, answer: &Answer) -> Result<Token, ChannelError> {
        read_token(answer, self.rate_retry_after)
    }

    fn refused(&self, answer: &Answer) -> bool {
        (200..300).contains(&answer.status)
            && wecom::errcode(answer, "WeCom", "").is_ok_and(token_invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::robot::verdict::*;

    use crate::channels::settings::testing::{problems_at, settings};

    fn problems(v: serde_json::Value) -> Vec<Problem> {
        problems_at("channels.app", v)
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"type": "wecom_app", "corpid": "ww12ab", "corpsecret": "s3cr3t",
                           "agentid": 1000002, "touser": ["zhangsan", "lisi"]})
    }

    #[test]
    fn good_settings_pass_and_build_the_body() {
        assert!(problems(good()).is_empty(), "{:?}", problems(good()));
        let a = AppSettings::from_settings(&settings(good())).unwrap();
        assert_eq!(a.base_url, DEFAULT_BASE_URL);
        assert_eq!(a.destination(), "wecom_app:ww12ab:1000002");
        let v: serde_json::Value = serde_json::from_str(&app_message_body(&a, "hi")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"touser": "zhangsan|lisi", "msgtype": "markdown",
                               "agentid": 1000002, "markdown": {"content": "hi"}})
        );
        assert!(!format!("{a:?}").contains("s3cr3t"));
    }

    #[test]
    fn missing_and_bad_fields_are_named() {
        let p = problems(serde_json::json!({"type": "wecom_app"}));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "channels.app.corpid",
                "channels.app.corpsecret",
                "channels.app.agentid",
                "channels.app.touser"
            ]
        );
        let mut v = good();
        v["msgtype"] = "markdown_v2".into();
        v["max_per_minute"] = 31.into();
        v["touser"] = serde_json::json!(["a|b"]);
        v["corpsecret_file"] = "/x".into();
        let p = problems(v);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "channels.app.corpsecret_file",
                "channels.app.touser",
                "channels.app.msgtype",
                "channels.app.max_per_minute"
            ]
        );
        for p in &p {
            assert!(!p.message.contains("s3cr3t"));
        }
    }

    #[test]
    fn secret_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "  from-file\n").unwrap();
        let mut v = good();
        v.as_object_mut().unwrap().remove("corpsecret");
        v["corpsecret_file"] = f.to_str().unwrap().into();
        assert!(problems(v.clone()).is_empty());
        let a = AppSettings::from_settings(&settings(v.clone())).unwrap();
        assert_eq!(a.corpsecret.expose(), "from-file");
        v["corpsecret_file"] = dir.path().join("nope").to_str().unwrap().into();
        let e = AppSettings::from_settings(&settings(v)).unwrap_err();
        assert!(e.contains("corpsecret_file") && e.contains("nope"), "{e}");
    }

    #[test]
    fn send_errcodes_are_classified() {
        let ra = Duration::from_secs(61);
        assert_eq!(classify_send(0, ra), Ok(()));
        assert!(paused_for(&classify_send(45009, ra), ra));
        assert!(retryable(&classify_send(-1, ra)));
        for c in [81013, 40056, 40058, 60020, 12345] {
            assert!(permanent(&classify_send(c, ra)), "{c}");
        }
        for c in [40014, 41001, 42001, 42007] {
            assert!(token_invalid(c));
        }
    }
}
