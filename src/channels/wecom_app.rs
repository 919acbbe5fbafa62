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

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::header::CONTENT_TYPE;
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;

use sentinel_actors::channel::Channel;
use sentinel_actors::{ChannelError, Notification};

use super::wecom::{MsgType, DEFAULT_BASE_URL, DEFAULT_TIMEOUT};
use super::ChannelSettings;
use crate::problem::Problem;
use crate::render::{self, RenderOptions};
use crate::secret::Secret;

pub const GETTOKEN_PATH: &str = "/cgi-bin/gettoken";
pub const SEND_PATH: &str = "/cgi-bin/message/send";
/// WeCom drops (silently) messages beyond 30 a minute to one member.
pub const MAX_PER_MINUTE: u32 = 30;
pub const DEFAULT_MAX_PER_MINUTE: u32 = 20;
/// Content limit of application messages, markdown and text alike, in UTF-8 bytes.
pub const APP_CONTENT_LIMIT: usize = 2048;
/// What the renderers aim for: the limit less a safety margin.
pub const APP_CONTENT_BUDGET: usize = 2000;
/// A token is fetched again this long before WeCom says it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(300);
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most recipients per list (WeCom: 1000 users, 100 departments, 100 tags).
const MAX_USERS: usize = 1000;
const MAX_PARTIES: usize = 100;

/// The errcodes that mean "fetch a new token".
fn token_invalid(errcode: i64) -> bool {
    matches!(errcode, 40014 | 41001 | 42001 | 42007)
}

/// Checks the wecom_app fields (called by [`ChannelSettings::validate`]).
pub(super) fn validate(s: &ChannelSettings, path: &str, problems: &mut Vec<Problem>) {
    let key = |field: &str| format!("{path}.{field}");
    match s.corpid.as_deref().map(str::trim) {
        None | Some("") => problems.push(Problem::new(
            key("corpid"),
            "required when type = \"wecom_app\": set the company id (\"ww…\", My Company → Company Information)",
        )),
        Some(c) if !c.chars().all(|c| c.is_ascii_alphanumeric()) => problems.push(Problem::new(
            key("corpid"),
            "must be letters and digits only, e.g. \"ww0123456789abcdef\"",
        )),
        Some(_) => {}
    }
    match (&s.corpsecret, &s.corpsecret_file) {
        (None, None) => problems.push(Problem::new(
            key("corpsecret"),
            "required when type = \"wecom_app\": set corpsecret, corpsecret_file or \
             POWA_SENTINEL__CHANNELS__<NAME>__CORPSECRET (the application's Secret)",
        )),
        (Some(_), Some(_)) => problems.push(Problem::new(
            key("corpsecret_file"),
            "set either corpsecret or corpsecret_file, not both: remove one of them",
        )),
        (Some(sec), None) if sec.expose().trim().is_empty() => {
            problems.push(Problem::new(key("corpsecret"), "is empty"))
        }
        _ => {}
    }
    match s.agentid {
        None => problems.push(Problem::new(
            key("agentid"),
            "required when type = \"wecom_app\": set the application's AgentId (a number)",
        )),
        Some(a) if a <= 0 => problems.push(Problem::new(
            key("agentid"),
            "must be a positive number (the application's AgentId)",
        )),
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
            problems.push(Problem::new(
                key(field),
                format!("at most {max} entries (WeCom's limit)"),
            ));
        }
        if list
            .iter()
            .any(|x| x.trim().is_empty() || x.contains('|') || x.chars().any(char::is_whitespace))
        {
            problems.push(Problem::new(
                key(field),
                "entries must be non-empty ids without spaces or '|' (give a list: [\"a\", \"b\"])",
            ));
        }
    }
    if !any {
        problems.push(Problem::new(
            key("touser"),
            "set at least one recipient: touser (user ids, or [\"@all\"]), toparty or totag",
        ));
    }
    if s.msgtype == Some(MsgType::MarkdownV2) {
        problems.push(Problem::new(
            key("msgtype"),
            "application messages take \"markdown\" or \"text\", not \"markdown_v2\"",
        ));
    }
    if let Some(b) = &s.base_url {
        if base_url(b).is_err() {
            problems.push(Problem::new(
                key("base_url"),
                format!("is not an http(s) URL: use e.g. \"{DEFAULT_BASE_URL}\" (the default)"),
            ));
        }
    }
    super::validate_timeout(s, path, problems);
    if let Some(n) = s.max_per_minute {
        if n == 0 || n > MAX_PER_MINUTE {
            problems.push(Problem::new(
                key("max_per_minute"),
                format!(
                    "must be between 1 and {MAX_PER_MINUTE}: WeCom silently drops messages \
                     beyond {MAX_PER_MINUTE} a minute to one member"
                ),
            ));
        }
    }
}

fn base_url(s: &str) -> Result<String, ()> {
    let u = url::Url::parse(s.trim()).map_err(|_| ())?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() || u.query().is_some() {
        return Err(());
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
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
    pub timeout: Duration,
}

impl AppSettings {
    /// From validated settings; reads `corpsecret_file`. Errors never quote the secret.
    pub fn from_settings(s: &ChannelSettings) -> Result<Self, String> {
        let corpsecret = super::resolve_secret(
            "wecom_app",
            "corpsecret",
            s.corpsecret.as_ref(),
            s.corpsecret_file.as_deref(),
        )?;
        Ok(AppSettings {
            base_url: base_url(s.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))
                .map_err(|_| "base_url is not an http(s) URL".to_string())?,
            corpid: s
                .corpid
                .clone()
                .ok_or("corpid is required")?
                .trim()
                .to_string(),
            corpsecret,
            agentid: s.agentid.ok_or("agentid is required")?,
            touser: s.touser.clone().unwrap_or_default(),
            toparty: s.toparty.clone().unwrap_or_default(),
            totag: s.totag.clone().unwrap_or_default(),
            msgtype: s.msgtype.unwrap_or_default(),
            timeout: s.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// Identity for pacing: one budget per application. Not secret.
    pub fn destination(&self) -> String {
        format!("wecom_app:{}:{}", self.corpid, self.agentid)
    }
}

/// The request body of one application message (the token goes in the URL).
pub fn app_message_body(a: &AppSettings, content: &str) -> String {
    let msgtype = match a.msgtype {
        MsgType::Text => "text",
        _ => "markdown",
    };
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
    body.insert(msgtype.into(), serde_json::json!({ "content": content }));
    serde_json::Value::Object(body).to_string()
}

#[derive(Deserialize)]
struct Answer {
    errcode: Option<i64>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// What WeCom's answer to message/send means, token errors aside (the caller handles
/// those before calling this).
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
        40058 => permanent("WeCom refused the message as invalid or too long"),
        40008 => permanent("WeCom refused the message type"),
        44004 => permanent("WeCom refused an empty message"),
        60020 => permanent("this server's IP is not trusted by the application"),
        _ => permanent("WeCom refused the message"),
    }
}

/// The cached access token.
#[derive(Default)]
struct TokenCache {
    token: Option<(Secret, Instant)>,
}

struct Inner {
    client: awc::Client,
    app: AppSettings,
    cache: RefCell<TokenCache>,
    rate_retry_after: Duration,
}

impl Inner {
    /// `text` with the secret and the current token masked.
    fn redact(&self, text: &str) -> String {
        let t = self.app.corpsecret.redact_in(text);
        match &self.cache.borrow().token {
            Some((tok, _)) => tok.redact_in(&t),
            None => t,
        }
    }

    async fn get(&self, url: String) -> Result<(u16, Vec<u8>), ChannelError> {
        self.exchange(self.client.get(url).send()).await
    }

    async fn exchange(&self, send: awc::SendClientRequest) -> Result<(u16, Vec<u8>), ChannelError> {
        let fut = async {
            let mut resp = send.await.map_err(|e| {
                super::post::send_error(&e, self.redact(&format!("request to WeCom failed: {e}")))
            })?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Ok((status, Vec::new()));
            }
            let bytes =
                resp.body()
                    .limit(MAX_ANSWER_BYTES)
                    .await
                    .map_err(|e| ChannelError::Retryable {
                        reason: self.redact(&format!("reading WeCom's answer failed: {e}")),
                    })?;
            Ok((status, bytes.to_vec()))
        };
        // No answer in time: a message may have been delivered (a token request is
        // harmless to repeat, and waits the same: WeCom asks not to call it often).
        match actix_rt::time::timeout(self.app.timeout, fut).await {
            Err(_) => Err(ChannelError::Unconfirmed {
                reason: format!(
                    "WeCom did not answer within {}",
                    humantime::format_duration(self.app.timeout)
                ),
            }),
            Ok(r) => r,
        }
    }

    /// The cached token, or a new one.
    async fn token(&self) -> Result<Secret, ChannelError> {
        if let Some((tok, until)) = &self.cache.borrow().token {
            if Instant::now() < *until {
                return Ok(tok.clone());
            }
        }
        let mut url =
            url::Url::parse(&format!("{}{GETTOKEN_PATH}", self.app.base_url)).map_err(|_| {
                ChannelError::Permanent {
                    reason: "base_url does not make a valid URL".into(),
                }
            })?;
        url.query_pairs_mut()
            .append_pair("corpid", &self.app.corpid)
            .append_pair("corpsecret", self.app.corpsecret.expose());
        let (status, body) = self.get(url.to_string()).await?;
        if status == 429 || status >= 500 {
            return Err(ChannelError::Retryable {
                reason: format!("WeCom gettoken answered HTTP {status}"),
            });
        }
        if status != 200 {
            return Err(ChannelError::Permanent {
                reason: format!("WeCom gettoken answered HTTP {status}: check base_url"),
            });
        }
        let a: Answer = serde_json::from_slice(&body).map_err(|_| ChannelError::Retryable {
            reason: "WeCom gettoken answered without an errcode (a proxy in the way?)".into(),
        })?;
        match a.errcode.unwrap_or(-2) {
            0 => {}
            -1 => {
                return Err(ChannelError::Retryable {
                    reason: "gettoken errcode -1: WeCom is busy".into(),
                })
            }
            45009 => {
                return Err(ChannelError::RateLimited {
                    reason: "gettoken errcode 45009: too many token requests".into(),
                    retry_after: self.rate_retry_after,
                })
            }
            c @ (40001 | 40013 | 40091) => {
                return Err(ChannelError::Permanent {
                    reason: format!(
                        "gettoken errcode {c}: WeCom refused corpid/corpsecret; check corpid \
                         and the application's Secret"
                    ),
                })
            }
            c => {
                return Err(ChannelError::Permanent {
                    reason: format!("gettoken errcode {c}: WeCom refused the token request"),
                })
            }
        }
        let token =
            a.access_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ChannelError::Permanent {
                    reason: "gettoken answered errcode 0 without an access_token".into(),
                })?;
        let ttl = Duration::from_secs(a.expires_in.unwrap_or(7200));
        // Refresh TOKEN_MARGIN early, or at half the lifetime for short-lived tokens.
        let keep = ttl.saturating_sub(TOKEN_MARGIN.min(ttl / 2));
        let tok = Secret::new(token);
        self.cache.borrow_mut().token = Some((tok.clone(), Instant::now() + keep));
        Ok(tok)
    }

    /// One send with `token`; `Ok(None)` when WeCom refused the token.
    async fn send_with(&self, token: &Secret, body: &str) -> Result<Option<i64>, ChannelError> {
        let mut url =
            url::Url::parse(&format!("{}{SEND_PATH}", self.app.base_url)).map_err(|_| {
                ChannelError::Permanent {
                    reason: "base_url does not make a valid URL".into(),
                }
            })?;
        url.query_pairs_mut()
            .append_pair("access_token", token.expose());
        let req = self
            .client
            .post(url.to_string())
            .insert_header((CONTENT_TYPE, "application/json"))
            .send_body(body.to_string());
        let (status, bytes) = self.exchange(req).await?;
        if status == 429 || status >= 500 {
            return Err(ChannelError::Retryable {
                reason: format!("WeCom answered HTTP {status}"),
            });
        }
        if status != 200 {
            return Err(ChannelError::Permanent {
                reason: format!("WeCom answered HTTP {status}: check base_url"),
            });
        }
        match serde_json::from_slice::<Answer>(&bytes) {
            Ok(Answer {
                errcode: Some(c), ..
            }) if token_invalid(c) => Ok(None),
            Ok(Answer {
                errcode: Some(c), ..
            }) => Ok(Some(c)),
            _ => Err(ChannelError::Retryable {
                reason: "WeCom answered without an errcode (a proxy in the way?)".into(),
            }),
        }
    }

    async fn send(&self, body: String) -> Result<(), ChannelError> {
        let token = self.token().await?;
        let code = match self.send_with(&token, &body).await? {
            Some(c) => c,
            None => {
                // Token refused: forget it, fetch a new one, try once more.
                self.cache.borrow_mut().token = None;
                let token = self.token().await?;
                match self.send_with(&token, &body).await? {
                    Some(c) => c,
                    None => {
                        self.cache.borrow_mut().token = None;
                        return Err(ChannelError::Retryable {
                            reason: "WeCom refused a freshly fetched access token".into(),
                        });
                    }
                }
            }
        };
        classify_send(code, self.rate_retry_after)
    }
}

/// Sends notifications as application messages. Holds an awc client (`!Send`): build it
/// on the thread that runs the channel actor.
pub struct WeComAppChannel {
    inner: Rc<Inner>,
    opts: RenderOptions,
}

impl WeComAppChannel {
    /// `rate_window` is the window the pacing counts in (one minute); after 45009 the
    /// application is held for that long plus a second.
    pub fn new(app: AppSettings, opts: RenderOptions, rate_window: Duration) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = awc::Client::builder()
            .timeout(app.timeout)
            .add_default_header((
                awc::http::header::USER_AGENT,
                concat!("powa-sentinel/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        WeComAppChannel {
            inner: Rc::new(Inner {
                client,
                app,
                cache: RefCell::new(TokenCache::default()),
                rate_retry_after: rate_window + Duration::from_secs(1),
            }),
            opts,
        }
    }

    fn bodies(&self, n: &Notification, max_parts: usize) -> Vec<String> {
        let app = &self.inner.app;
        let style = app.msgtype.style();
        render::render_digest(n, style, APP_CONTENT_BUDGET, &self.opts, max_parts)
            .iter()
            .map(|c| app_message_body(app, c))
            .collect()
    }
}

impl Channel for WeComAppChannel {
    /// The JSON body of one message (without the token).
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        Ok(self.bodies(n, usize::MAX))
    }

    fn render_digest(
        &self,
        n: &Notification,
        max_parts: usize,
    ) -> Result<Vec<String>, ChannelError> {
        Ok(self.bodies(n, max_parts))
    }

    fn send(&self, body: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let inner = Rc::clone(&self.inner);
        Box::pin(async move { inner.send(body).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: serde_json::Value) -> ChannelSettings {
        serde_json::from_value(v).expect("parse")
    }

    fn problems(v: serde_json::Value) -> Vec<Problem> {
        let mut p = Vec::new();
        settings(v).validate("channels.app", &mut p);
        p
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
        assert!(matches!(
            classify_send(45009, ra),
            Err(ChannelError::RateLimited { .. })
        ));
        assert!(matches!(
            classify_send(-1, ra),
            Err(ChannelError::Retryable { .. })
        ));
        for c in [81013, 40056, 40058, 60020, 12345] {
            assert!(
                matches!(classify_send(c, ra), Err(ChannelError::Permanent { .. })),
                "{c}"
            );
        }
        for c in [40014, 41001, 42001, 42007] {
            assert!(token_invalid(c));
        }
    }
}
