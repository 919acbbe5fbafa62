//! The Feishu, DingTalk and Slack channels against small loopback fakes that behave like
//! the providers as documented (see the reference notes on chat robots):
//!
//! - Feishu: `POST /open-apis/bot/v2/hook/<token>`; unknown token → code 19001; body over
//!   20 KB → a non-zero code (19036 here); with a secret, `timestamp` (s) and `sign` in
//!   the body must match base64(HMAC-SHA256(key = "<ts>\n<secret>", "")) and be within one
//!   hour, else 19021; more than 100 accepted per window → 11232. Success is
//!   `{"code":0,…}` with HTTP 200. An `interactive` message must carry a `card` as the
//!   card JSON (1.0) documents it: a header with a `plain_text` title and a known
//!   `template` colour, `elements` each with a known `tag`, `div` texts `lark_md` or
//!   `plain_text`, `action` elements of `button`s with a label, a known `type` and an
//!   http(s) `url`; a malformed card gets a non-zero code (11246 here, a stand-in: the
//!   real code is not documented for webhooks).
//! - DingTalk: `POST /robot/send?access_token=<token>`; unknown token → errcode 300001;
//!   with a secret, `timestamp` (ms) and `sign` query parameters must match
//!   base64(HMAC-SHA256(key = secret, "<ts>\n<secret>")) within one hour, else 310000;
//!   more than 20 accepted per window → 130101. DingTalk documents no size limit: the fake
//!   refuses bodies over 20 KB with a non-zero errcode, as a stand-in.
//! - Slack: `POST /services/<path>`; unknown path → 404 `no_service`; not JSON or no
//!   `text` → 400 `invalid_payload` / `no_text`; success 200 `ok`; texts over 40 000
//!   characters are truncated (counted here). `blocks`, when present, are checked against
//!   Block Kit's limits: at most 50; `header` text `plain_text` of at most 150
//!   characters; `section` text `mrkdwn` or `plain_text` of at most 3000; `actions` of 1
//!   to 25 `button`s, each a `plain_text` label of at most 75 characters and a `url` of at
//!   most 3000; anything else → 400 `invalid_blocks`.
//! - DingTalk `actionCard`: `title` and `text` required, and either `singleTitle` with
//!   `singleURL` or a non-empty `btns` of `title` + `actionURL`; else errcode 40035 as for
//!   a markdown message without its fields.
//!
//! Faults scripted with [`Fake::script`] answer the next requests of that provider first.
//! The fakes' signature checks are written here from the documented schemes, not with the
//! channel's own signing code.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use base64::Engine as _;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use powa_sentinel::actors::channel::RetryPolicy;
use powa_sentinel::actors::message::{Lifecycle, Mentions};
use powa_sentinel::actors::{ChannelError, Insight, Notification, NotifyReason, Severity};
use powa_sentinel::channels::{self, dingtalk, feishu, slack, ChannelEnv, ChannelSettings};

use crate::channel_kit::{
    self, deliver, discard, paused, permanent, retried, retry_after, Reply, Server, Subject,
};

const FEISHU_TOKEN: &str = "fs-t0ken-5ecret";
const DING_TOKEN: &str = "dt-t0ken-5ecret";
const SLACK_PATH: &str = "/services/T000/B000/sl4ck5ecret";
const FEISHU_SECRET: &str = "feishu-sign-5ecret";
const DING_SECRET: &str = "SECding-sign-5ecret";

const FEISHU_LIMIT: usize = 20 * 1024;
const DING_STANDIN_LIMIT: usize = 20 * 1024;
const SLACK_TEXT_CHARS: usize = 40_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Provider {
    Feishu,
    Ding,
    Slack,
}

/// A scripted answer: HTTP status, body, optional Retry-After.
type Fault = (u16, String, Option<&'static str>);

#[derive(Default)]
struct State {
    /// Accepted bodies per provider.
    accepted: HashMap<Provider, Vec<serde_json::Value>>,
    /// Requests per provider, and refused ones with their code.
    requests: HashMap<Provider, usize>,
    refused: Vec<(Provider, i64)>,
    slack_truncated: usize,
    script: HashMap<Provider, VecDeque<Fault>>,
    times: HashMap<Provider, VecDeque<Instant>>,
}

struct Fake {
    base: String,
    state: Arc<Mutex<State>>,
    server: Server,
}

struct Conf {
    feishu_secret: Option<&'static str>,
    ding_secret: Option<&'static str>,
    window: Duration,
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn json(v: serde_json::Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(v.to_string())
}

/// The next scripted fault of `p`, if any, and counts the request.
fn begin(st: &mut State, p: Provider) -> Option<HttpResponse> {
    *st.requests.entry(p).or_default() += 1;
    let (status, body, ra) = st.script.get_mut(&p)?.pop_front()?;
    let mut r = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    if let Some(ra) = ra {
        r.insert_header(("Retry-After", ra));
    }
    Some(r.body(body))
}

/// Rolling-window admission: true if one more accepted message stays within `max`.
fn admit(st: &mut State, p: Provider, max: usize, window: Duration) -> bool {
    let q = st.times.entry(p).or_default();
    let now = Instant::now();
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
    if q.len() >= max {
        return false;
    }
    q.push_back(now);
    true
}

async fn feishu_hook(
    conf: web::Data<Conf>,
    state: web::Data<Arc<Mutex<State>>>,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mut st = state.lock().unwrap();
    if let Some(r) = begin(&mut st, Provider::Feishu) {
        return r;
    }
    let refuse = |st: &mut State, code: i64, msg: &str| {
        st.refused.push((Provider::Feishu, code));
        json(serde_json::json!({"code": code, "msg": msg, "data": {}}))
    };
    if token.as_str() != FEISHU_TOKEN {
        return refuse(
            &mut st,
            19001,
            "param invalid: incoming webhook access token invalid",
        );
    }
    if body.len() > FEISHU_LIMIT {
        return refuse(&mut st, 19036, "request body too large");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return refuse(&mut st, 9499, "Bad Request");
    };
    if let Some(secret) = conf.feishu_secret {
        let ts = v["timestamp"].as_str().and_then(|t| t.parse::<i64>().ok());
        let ok = ts.is_some_and(|ts| {
            (Utc::now().timestamp() - ts).abs() < 3600
                && v["sign"].as_str()
                    == Some(hmac_b64(format!("{ts}\n{secret}").as_bytes(), b"").as_str())
        });
        if !ok {
            return refuse(
                &mut st,
                19021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
    }
    match v["msg_type"].as_str() {
        Some("text") if v["content"]["text"].as_str().is_some_and(|t| !t.is_empty()) => {}
        Some("interactive") => {
            if let Err(what) = feishu_card(&v["card"]) {
                return refuse(
                    &mut st,
                    11246,
                    &format!("create message content fail: {what}"),
                );
            }
        }
        _ => return refuse(&mut st, 19001, "param invalid: message content is empty"),
    }
    if !admit(&mut st, Provider::Feishu, 100, conf.window) {
        return refuse(&mut st, 11232, "frequency limited");
    }
    st.accepted.entry(Provider::Feishu).or_default().push(v);
    json(
        serde_json::json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
    )
}

/// What Feishu checks of a card (JSON 1.0), or what is wrong with it.
fn feishu_card(card: &serde_json::Value) -> Result<(), String> {
    const TEMPLATES: &[&str] = &[
        "blue",
        "wathet",
        "turquoise",
        "green",
        "yellow",
        "orange",
        "red",
        "carmine",
        "violet",
        "purple",
        "indigo",
        "grey",
        "default",
    ];
    let text = |t: &serde_json::Value, tags: &[&str]| {
        tags.contains(&t["tag"].as_str().unwrap_or_default())
            && t["content"].as_str().is_some_and(|c| !c.is_empty())
    };
    let header = &card["header"];
    if !text(&header["title"], &["plain_text"]) {
        return Err("header.title must be plain_text with content".into());
    }
    if !TEMPLATES.contains(&header["template"].as_str().unwrap_or("default")) {
        return Err(format!("unknown header.template {}", header["template"]));
    }
    let elements = card["elements"].as_array().ok_or("no elements")?;
    if elements.is_empty() {
        return Err("no elements".into());
    }
    for e in elements {
        match e["tag"].as_str() {
            Some("div") if text(&e["text"], &["lark_md", "plain_text"]) => {}
            Some("hr") => {}
            Some("action") => {
                let buttons = e["actions"].as_array().ok_or("action without actions")?;
                if buttons.is_empty() {
                    return Err("action without actions".into());
                }
                for b in buttons {
                    let url = b["url"].as_str().unwrap_or_default();
                    if b["tag"] != "button"
                        || !text(&b["text"], &["plain_text", "lark_md"])
                        || !["default", "primary", "danger"]
                            .contains(&b["type"].as_str().unwrap_or("default"))
                        || !(url.starts_with("https://") || url.starts_with("http://"))
                    {
                        return Err(format!("bad button {b}"));
                    }
                }
            }
            _ => return Err(format!("bad element {e}")),
        }
    }
    Ok(())
}

/// What Slack checks of `blocks`, or what is wrong with them.
fn slack_blocks(blocks: &serde_json::Value) -> Result<(), String> {
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.len() > 50 {
        return Err(format!("{} blocks", blocks.len()));
    }
    let chars = |v: &serde_json::Value| v.as_str().map(|s| s.chars().count());
    for b in blocks {
        let t = &b["text"];
        let ok = match b["type"].as_str() {
            Some("header") => {
                t["type"] == "plain_text"
                    && chars(&t["text"]).is_some_and(|n| (1..=150).contains(&n))
            }
            Some("section") => {
                ["mrkdwn", "plain_text"].contains(&t["type"].as_str().unwrap_or_default())
                    && chars(&t["text"]).is_some_and(|n| (1..=3000).contains(&n))
            }
            Some("actions") => b["elements"].as_array().is_some_and(|es| {
                (1..=25).contains(&es.len())
                    && es.iter().all(|e| {
                        e["type"] == "button"
                            && e["text"]["type"] == "plain_text"
                            && chars(&e["text"]["text"]).is_some_and(|n| (1..=75).contains(&n))
                            && chars(&e["url"]).is_some_and(|n| (1..=3000).contains(&n))
                    })
            }),
            Some("divider") => true,
            _ => false,
        };
        if !ok {
            return Err(format!("bad block {b}"));
        }
    }
    Ok(())
}

async fn ding_send(
    conf: web::Data<Conf>,
    state: web::Data<Arc<Mutex<State>>>,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let mut st = state.lock().unwrap();
    if let Some(r) = begin(&mut st, Provider::Ding) {
        return r;
    }
    let refuse = |st: &mut State, code: i64, msg: &str| {
        st.refused.push((Provider::Ding, code));
        json(serde_json::json!({"errcode": code, "errmsg": msg}))
    };
    if query.get("access_token").map(String::as_str) != Some(DING_TOKEN) {
        return refuse(&mut st, 300001, "token is not exist");
    }
    if let Some(secret) = conf.ding_secret {
        let ts = query.get("timestamp").and_then(|t| t.parse::<i64>().ok());
        let ok = ts.is_some_and(|ts| {
            (Utc::now().timestamp_millis() - ts).abs() < 3_600_000
                && query.get("sign").map(String::as_str)
                    == Some(
                        hmac_b64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes()).as_str(),
                    )
        });
        if !ok {
            return refuse(&mut st, 310000, "sign not match");
        }
    }
    if body.len() > DING_STANDIN_LIMIT {
        return refuse(&mut st, 460101, "message too long");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return refuse(&mut st, 400, "invalid json");
    };
    let filled = |x: &serde_json::Value| x.as_str().is_some_and(|s| !s.is_empty());
    let well_formed = match v["msgtype"].as_str() {
        Some("markdown") => filled(&v["markdown"]["title"]) && filled(&v["markdown"]["text"]),
        Some("actionCard") => {
            let c = &v["actionCard"];
            let single = filled(&c["singleTitle"]) && filled(&c["singleURL"]);
            let btns = c["btns"].as_array().is_some_and(|bs| {
                !bs.is_empty()
                    && bs
                        .iter()
                        .all(|b| filled(&b["title"]) && filled(&b["actionURL"]))
            });
            filled(&c["title"]) && filled(&c["text"]) && (single || btns)
        }
        _ => false,
    };
    if !well_formed {
        return refuse(&mut st, 40035, "missing title, text or buttons");
    }
    if !admit(&mut st, Provider::Ding, 20, conf.window) {
        return refuse(&mut st, 130101, "send too fast, exceed 20 times per minute");
    }
    st.accepted.entry(Provider::Ding).or_default().push(v);
    json(serde_json::json!({"errcode": 0, "errmsg": "ok"}))
}

async fn slack_hook(
    state: web::Data<Arc<Mutex<State>>>,
    req: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let mut st = state.lock().unwrap();
    if let Some(r) = begin(&mut st, Provider::Slack) {
        return r;
    }
    if req.path() != SLACK_PATH {
        st.refused.push((Provider::Slack, 404));
        return HttpResponse::NotFound().body("no_service");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        st.refused.push((Provider::Slack, 400));
        return HttpResponse::BadRequest().body("invalid_payload");
    };
    let Some(text) = v["text"].as_str().filter(|t| !t.is_empty()) else {
        st.refused.push((Provider::Slack, 400));
        return HttpResponse::BadRequest().body("no_text");
    };
    if !v["blocks"].is_null() && slack_blocks(&v["blocks"]).is_err() {
        st.refused.push((Provider::Slack, 400));
        return HttpResponse::BadRequest().body("invalid_blocks");
    }
    if text.chars().count() > SLACK_TEXT_CHARS {
        st.slack_truncated += 1;
    }
    st.accepted.entry(Provider::Slack).or_default().push(v);
    HttpResponse::Ok().body("ok")
}

impl Fake {
    fn start(conf: Conf) -> Fake {
        let state: Arc<Mutex<State>> = Arc::default();
        let data = web::Data::new(Arc::clone(&state));
        let conf = web::Data::new(conf);
        let server = Server::start(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(data.clone())
                .app_data(conf.clone())
                .route(
                    "/open-apis/bot/v2/hook/{token}",
                    web::post().to(feishu_hook),
                )
                .route("/robot/send", web::post().to(ding_send))
                .route("/services/{tail:.*}", web::post().to(slack_hook));
        });
        Fake {
            base: server.base.clone(),
            state,
            server,
        }
    }

    fn script(&self, p: Provider, faults: &[(u16, &str, Option<&'static str>)]) {
        let mut st = self.state.lock().unwrap();
        let q = st.script.entry(p).or_default();
        for (s, b, ra) in faults {
            q.push_back((*s, b.to_string(), *ra));
        }
    }

    fn requests(&self, p: Provider) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .get(&p)
            .copied()
            .unwrap_or(0)
    }

    fn accepted(&self, p: Provider) -> Vec<serde_json::Value> {
        self.state
            .lock()
            .unwrap()
            .accepted
            .get(&p)
            .cloned()
            .unwrap_or_default()
    }

    fn feishu(&self, token: &str, secret: Option<&str>) -> ChannelSettings {
        self.feishu_as(token, secret, "card")
    }

    fn feishu_as(&self, token: &str, secret: Option<&str>, format: &str) -> ChannelSettings {
        let mut v = serde_json::json!({"type": "feishu", "format": format,
            "webhook_url": format!("{}/open-apis/bot/v2/hook/{token}", self.base)});
        if let Some(s) = secret {
            v["secret"] = s.into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn ding(&self, token: &str, secret: Option<&str>) -> ChannelSettings {
        let mut v = serde_json::json!({"type": "dingtalk",
            "webhook_url": format!("{}/robot/send?access_token={token}", self.base)});
        if let Some(s) = secret {
            v["secret"] = s.into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn slack(&self, path: &str) -> ChannelSettings {
        self.slack_as(path, "blocks")
    }

    fn slack_as(&self, path: &str, format: &str) -> ChannelSettings {
        serde_json::from_value(serde_json::json!({"type": "slack", "format": format,
            "webhook_url": format!("{}{path}", self.base)}))
        .unwrap()
    }
}

fn conf(window: Duration) -> Conf {
    Conf {
        feishu_secret: Some(FEISHU_SECRET),
        ding_secret: Some(DING_SECRET),
        window,
    }
}

fn env(window: Duration) -> ChannelEnv {
    channel_kit::env(
        discard(),
        window,
        RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            deadline: Duration::from_secs(60),
        },
    )
}

fn insight(n: usize, text: &str) -> Insight {
    Insight {
        severity: if n.is_multiple_of(3) {
            Severity::Critical
        } else {
            Severity::Warning
        },
        advice: "Check its plan \"now\" and add an index.".into(),
        status: Some(Lifecycle::New),
        ..channel_kit::insight(n, format!("Top query Q{n}X"), text)
    }
}

fn notification(id: u64, n: usize) -> Notification {
    let sql = "SELECT \"数据\", * FROM t WHERE a = 'x' AND b_c = $1 ".repeat(20);
    channel_kit::notification(
        id,
        "chat",
        NotifyReason::Immediate,
        (0..n).map(|k| insight(k, &sql)).collect(),
        Mentions::default(),
    )
}

/// The text of an accepted message, per provider: of a card, its `lark_md` texts; of
/// Block Kit, its sections; of an action card, its markdown.
fn text_of(p: Provider, v: &serde_json::Value) -> String {
    let join = |items: &serde_json::Value, pointer: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.pointer(pointer).and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match p {
        Provider::Feishu if v["msg_type"] == "interactive" => {
            join(&v["card"]["elements"], "/text/content")
        }
        Provider::Feishu => v["content"]["text"].as_str().unwrap().to_string(),
        Provider::Ding if v["msgtype"] == "actionCard" => {
            v["actionCard"]["text"].as_str().unwrap().to_string()
        }
        Provider::Ding => v["markdown"]["text"].as_str().unwrap().to_string(),
        Provider::Slack if !v["blocks"].is_null() => join(&v["blocks"], "/text/text"),
        Provider::Slack => v["text"].as_str().unwrap().to_string(),
    }
}

// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn many_insights_are_delivered_within_each_budget_and_signed() {
    let window = Duration::from_millis(600);
    let fake = Fake::start(conf(window));
    let mut env = env(window);
    let chans = [
        (
            Provider::Feishu,
            fake.feishu(FEISHU_TOKEN, Some(FEISHU_SECRET)),
        ),
        (Provider::Ding, fake.ding(DING_TOKEN, Some(DING_SECRET))),
        (Provider::Slack, fake.slack(SLACK_PATH)),
    ];
    let insights = 60;
    for (p, s) in chans {
        let r = channels::start(&format!("{p:?}"), &s, &mut env).unwrap();
        let rep = deliver(&r, notification(1, insights)).await;
        assert!(rep.outcome.is_ok(), "{p:?}: {rep:?}");
        let got = fake.accepted(p);
        assert!(got.len() > 1, "{p:?}: a notification this big is split");
        assert_eq!(fake.requests(p), got.len(), "{p:?}: every part accepted");
        let mut all = String::new();
        for v in &got {
            let body = v.to_string();
            match p {
                Provider::Feishu => assert!(body.len() <= feishu::BODY_BUDGET, "{}", body.len()),
                Provider::Ding => {
                    assert!(body.len() <= dingtalk::BODY_BUDGET, "{}", body.len());
                    assert!(text_of(p, v).len() <= dingtalk::TEXT_BUDGET);
                }
                Provider::Slack => {
                    assert!(body.len() <= slack::BODY_BUDGET, "{}", body.len());
                    assert!(v["blocks"].as_array().unwrap().len() <= slack::MAX_BLOCKS);
                }
            }
            all.push_str(&text_of(p, v));
        }
        for k in 0..insights {
            assert!(
                all.contains(&format!("Q{k}X")),
                "{p:?}: insight {k} missing"
            );
        }
    }
    {
        let st = fake.state.lock().unwrap();
        assert!(st.refused.is_empty(), "{:?}", st.refused);
        assert_eq!(st.slack_truncated, 0);
    }
    fake.server.stop().await;
}

/// What a query text could try: a Feishu mention of everyone, Slack's channel alert and
/// user mention, and an `&` Slack would read as the start of an entity.
const HOSTILE_SQL: &str =
    r#"SELECT '<at user_id="all"></at>' , '<!channel>' , '<@U123>' , 'a & b' FROM t"#;

#[actix_rt::test]
async fn query_texts_mention_no_one_and_route_mentions_reach_the_first_message() {
    let window = Duration::from_millis(600);
    let fake = Fake::start(conf(window));
    let mut env = env(window);
    let userids = [
        "ou_7d8a6e6df7621556ce0d21922b676706",
        "U024BE7LH",
        "here",
        "bad id!",
        "u<@U9>",
    ];
    let mentions = Mentions {
        userids: userids.iter().map(|s| s.to_string()).collect(),
        mobiles: vec!["13800000000".into()],
    };
    let n = channel_kit::notification(
        7,
        "chat",
        NotifyReason::Immediate,
        (0..80).map(|k| insight(k, HOSTILE_SQL)).collect(),
        mentions,
    );
    let cases = [
        (
            Provider::Feishu,
            fake.feishu_as(FEISHU_TOKEN, Some(FEISHU_SECRET), "text"),
            // Feishu: valid ids as <at> tags; U024BE7LH and here are valid Feishu ids too.
            r#"<at user_id="ou_7d8a6e6df7621556ce0d21922b676706"></at> <at user_id="U024BE7LH"></at> <at user_id="here"></at>"#,
            "<at",
        ),
        (
            Provider::Slack,
            fake.slack_as(SLACK_PATH, "text"),
            "<@U024BE7LH> <!here>",
            "<",
        ),
    ];
    for (p, s, line, tag) in cases {
        let r = channels::start(&format!("{p:?}"), &s, &mut env).unwrap();
        let rep = deliver(&r, n.clone()).await;
        assert!(rep.outcome.is_ok(), "{p:?}: {rep:?}");
        let got = fake.accepted(p);
        assert!(got.len() > 1, "{p:?}: split");
        let first = text_of(p, &got[0]);
        let (report, mentioned) = first
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("{p:?}: {first}"));
        assert_eq!(mentioned, line, "{p:?}: exactly the route's mentions");
        assert!(!report.contains(tag), "{p:?}: {report}");
        for v in &got[1..] {
            let text = text_of(p, v);
            assert!(!text.contains(tag), "{p:?}: {text}");
        }
        let all: String = got.iter().map(|v| text_of(p, v)).collect();
        match p {
            Provider::Feishu => {
                assert!(all.contains(
                    r#"'＜at user_id="all">＜/at>' , '＜!channel>' , '＜@U123>' , 'a & b'"#
                ));
                assert!(got
                    .iter()
                    .all(|v| v.to_string().len() <= feishu::BODY_BUDGET));
            }
            _ => {
                assert!(all.contains("'&lt;!channel&gt;' , '&lt;@U123&gt;' , 'a &amp; b'"));
                assert!(!all.contains(" & "), "every & escaped");
                assert!(got
                    .iter()
                    .all(|v| v.to_string().len() <= slack::BODY_BUDGET));
            }
        }
    }
    assert!(fake.state.lock().unwrap().refused.is_empty());
    fake.server.stop().await;
}

/// Feishu cards, Slack blocks and DingTalk action cards with action links on: every
/// message passes the fakes' checks of its format, each open entry has its buttons, a
/// hostile query text stays text, and the route's mentions are in the first message
/// only, as its own element.
#[actix_rt::test]
async fn cards_blocks_and_action_cards_carry_buttons_and_mention_no_one_else() {
    let window = Duration::from_millis(600);
    let fake = Fake::start(conf(window));
    let links = powa_sentinel::actions::Links::new(
        "https://sentinel.example.org",
        b"k".repeat(32),
        powa_sentinel::actions::DEFAULT_TTL,
    );
    let mut env = env(window).with_actions(Some(Arc::new(links)));
    let mentions = Mentions {
        userids: vec![
            "ou_7d8a6e6df7621556ce0d21922b676706".into(),
            "U024BE7LH".into(),
        ],
        mobiles: vec![],
    };
    let n = channel_kit::notification(
        9,
        "chat",
        NotifyReason::Immediate,
        (0..50).map(|k| insight(k, HOSTILE_SQL)).collect(),
        mentions,
    );
    let cases = [
        (
            Provider::Feishu,
            fake.feishu(FEISHU_TOKEN, Some(FEISHU_SECRET)),
            "<at id=ou_7d8a6e6df7621556ce0d21922b676706></at> <at id=U024BE7LH></at>",
        ),
        (Provider::Slack, fake.slack(SLACK_PATH), "<@U024BE7LH>"),
        (Provider::Ding, fake.ding(DING_TOKEN, Some(DING_SECRET)), ""),
    ];
    for (p, s, line) in cases {
        let r = channels::start(&format!("{p:?}"), &s, &mut env).unwrap();
        let rep = deliver(&r, n.clone()).await;
        assert!(rep.outcome.is_ok(), "{p:?}: {rep:?}");
        let got = fake.accepted(p);
        assert!(got.len() > 1, "{p:?}: split");
        // The buttons: (label, url) of every message.
        let buttons = |v: &serde_json::Value| -> Vec<(String, String)> {
            let (items, label, url) = match p {
                Provider::Feishu => (
                    v["card"]["elements"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|e| e["actions"].as_array().cloned().unwrap_or_default())
                        .collect::<Vec<_>>(),
                    "/text/content",
                    "/url",
                ),
                Provider::Slack => (
                    v["blocks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
                        .collect(),
                    "/text/text",
                    "/url",
                ),
                Provider::Ding => {
                    let c = &v["actionCard"];
                    let mut bs = c["btns"].as_array().cloned().unwrap_or_default();
                    if c["singleURL"].is_string() {
                        bs.push(serde_json::json!({"title": c["singleTitle"], "actionURL": c["singleURL"]}));
                    }
                    (bs, "/title", "/actionURL")
                }
            };
            items
                .iter()
                .map(|b| {
                    let s = |ptr| b.pointer(ptr).and_then(|x| x.as_str()).unwrap().to_string();
                    (s(label), s(url))
                })
                .collect()
        };
        let mut acks = 0;
        for (k, v) in got.iter().enumerate() {
            if p == Provider::Ding && k == 0 {
                // DingTalk reads `at` on markdown only: the message that mentions stays one.
                assert_eq!(v["msgtype"], "markdown");
                assert_eq!(v["at"]["atUserIds"][1], "U024BE7LH");
                continue;
            }
            let bs = buttons(v);
            for (label, url) in &bs {
                assert!(
                    url.starts_with("https://sentinel.example.org/a/"),
                    "{p:?}: {url}"
                );
                acks += usize::from(label == "Acknowledge");
            }
            assert!(bs.iter().any(|(l, _)| l == "Full report"), "{p:?}: {bs:?}");
            let text = text_of(p, v);
            match p {
                Provider::Ding => assert_eq!(v["msgtype"], "actionCard"),
                _ => {
                    let mentioned = text.contains(line);
                    assert_eq!(mentioned, k == 0, "{p:?} message {k}: {text}");
                    let report = text.replace(line, "");
                    for never in ["<at", "<!channel>", "<@U123>", "<@U024BE7LH>"] {
                        assert!(!report.contains(never), "{p:?}: {never} in {report}");
                    }
                }
            }
        }
        match p {
            // DingTalk: several entries per message, so each links to the full report.
            Provider::Ding => assert_eq!(acks, 0),
            _ => assert_eq!(acks, 50, "{p:?}: one Acknowledge button per entry"),
        }
    }
    assert!(
        fake.state.lock().unwrap().refused.is_empty(),
        "{:?}",
        fake.state.lock().unwrap().refused
    );
    fake.server.stop().await;
}

/// The fakes refuse what the providers refuse: a card without a title, a button without
/// a URL, a section over 3000 characters, an action card without buttons; the channels
/// call those answers permanent.
#[actix_rt::test]
async fn the_fakes_refuse_malformed_cards_and_blocks() {
    let fake = Fake::start(conf(Duration::from_secs(60)));
    let client = awc::Client::default();
    let ts = Utc::now().timestamp();
    let feishu = |card: serde_json::Value| {
        serde_json::json!({"msg_type": "interactive", "card": card,
            "timestamp": ts.to_string(), "sign": feishu::sign(FEISHU_SECRET, ts)})
        .to_string()
    };
    let good = serde_json::json!({"header": {"title": {"tag": "plain_text", "content": "t"}, "template": "red"},
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "x"}}]});
    let mut no_title = good.clone();
    no_title["header"]["title"] = serde_json::json!({"tag": "lark_md", "content": ""});
    let mut no_url = good.clone();
    no_url["elements"] = serde_json::json!([{"tag": "action", "actions": [
        {"tag": "button", "text": {"tag": "plain_text", "content": "b"}, "type": "primary"}]}]);
    let url = format!("{}/open-apis/bot/v2/hook/{FEISHU_TOKEN}", fake.base);
    let mut codes = Vec::new();
    for card in [good, no_title, no_url] {
        let mut resp = client.post(&url).send_body(feishu(card)).await.unwrap();
        let answer = channels::robot::Answer {
            status: resp.status().as_u16(),
            retry_after: None,
            body: resp.body().await.unwrap().to_vec(),
        };
        codes.push(feishu::classify(&answer, Duration::from_secs(60)));
    }
    assert_eq!(codes[0], Ok(()));
    for c in &codes[1..] {
        assert!(
            matches!(c, Err(ChannelError::Permanent { reason }) if reason.contains("11246")),
            "{c:?}"
        );
    }

    let slack_url = format!("{}{SLACK_PATH}", fake.base);
    let long = "x".repeat(3001);
    for blocks in [
        serde_json::json!([{"type": "section", "text": {"type": "mrkdwn", "text": long}}]),
        serde_json::json!([{"type": "header", "text": {"type": "mrkdwn", "text": "t"}}]),
        serde_json::json!((0..51)
            .map(|_| serde_json::json!({"type": "divider"}))
            .collect::<Vec<_>>()),
    ] {
        let body = serde_json::json!({"text": "t", "blocks": blocks}).to_string();
        let mut resp = client.post(&slack_url).send_body(body).await.unwrap();
        let answer = channels::robot::Answer {
            status: resp.status().as_u16(),
            retry_after: None,
            body: resp.body().await.unwrap().to_vec(),
        };
        assert!(
            matches!(slack::classify(&answer), Err(ChannelError::Permanent { reason }) if reason.contains("invalid_blocks")),
            "{answer:?}"
        );
    }

    let ding_url = dingtalk::signed_url(
        &format!("{}/robot/send?access_token={DING_TOKEN}", fake.base),
        Some(&powa_sentinel::secret::Secret::new(DING_SECRET)),
        Utc::now().timestamp_millis(),
    );
    let body = serde_json::json!({"msgtype": "actionCard",
        "actionCard": {"title": "t", "text": "x", "btns": []}})
    .to_string();
    let mut resp = client.post(ding_url).send_body(body).await.unwrap();
    let answer = channels::robot::Answer {
        status: resp.status().as_u16(),
        retry_after: None,
        body: resp.body().await.unwrap().to_vec(),
    };
    assert!(matches!(
        dingtalk::classify(&answer, Duration::from_secs(600)),
        Err(ChannelError::Permanent { reason }) if reason.contains("40035")
    ));
    fake.server.stop().await;
}

#[actix_rt::test]
async fn permanent_answers_are_not_retried() {
    let window = Duration::from_millis(600);
    let fake = Fake::start(conf(window));
    let mut env = env(window);
    let cases = [
        (
            Provider::Feishu,
            fake.feishu("wrong-token", Some(FEISHU_SECRET)),
            "19001",
        ),
        (
            Provider::Feishu,
            fake.feishu(FEISHU_TOKEN, Some("wrong-secret")),
            "19021",
        ),
        (Provider::Feishu, fake.feishu(FEISHU_TOKEN, None), "19021"),
        (
            Provider::Ding,
            fake.ding("wrong-token", Some(DING_SECRET)),
            "300001",
        ),
        (
            Provider::Ding,
            fake.ding(DING_TOKEN, Some("SECwrong")),
            "310000",
        ),
        (
            Provider::Slack,
            fake.slack("/services/T000/B000/revoked"),
            "no_service",
        ),
    ];
    for (k, (p, s, want)) in cases.into_iter().enumerate() {
        let r = channels::start(&format!("c{k}"), &s, &mut env).unwrap();
        let before = fake.requests(p);
        let rep = deliver(&r, notification(1, 2)).await;
        match &rep.outcome {
            Err(ChannelError::Permanent { reason }) => {
                assert!(reason.contains(want), "{p:?}: {reason}");
                for secret in [
                    FEISHU_TOKEN,
                    DING_TOKEN,
                    "sl4ck5ecret",
                    FEISHU_SECRET,
                    DING_SECRET,
                ] {
                    assert!(!reason.contains(secret), "{reason}");
                }
            }
            other => panic!("{p:?} {want}: {other:?}"),
        }
        assert_eq!(rep.attempts, 1, "{p:?} {want}");
        assert_eq!(fake.requests(p), before + 1, "{p:?} {want}: not retried");
    }
    // Slack's own refusals of a payload are permanent too.
    fake.script(Provider::Slack, &[(400, "invalid_payload", None)]);
    let r = channels::start("sl", &fake.slack(SLACK_PATH), &mut env).unwrap();
    let rep = deliver(&r, notification(2, 1)).await;
    assert!(
        matches!(&rep.outcome, Err(ChannelError::Permanent { reason }) if reason.contains("invalid_payload")),
        "{rep:?}"
    );
    assert_eq!(rep.attempts, 1);
    fake.server.stop().await;
}

#[actix_rt::test]
async fn rate_limits_and_server_errors_are_retried() {
    // A short window: DingTalk's 130101 holds the robot for ten of them.
    let window = Duration::from_millis(100);
    let fake = Fake::start(conf(window));
    let mut env = env(window);
    let feishu_rl = r#"{"code":11232,"msg":"frequency limited"}"#;
    let ding_rl = r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#;
    let busy = r#"{"errcode":-1,"errmsg":"system busy"}"#;
    fake.script(Provider::Feishu, &[(200, feishu_rl, None), (502, "", None)]);
    fake.script(Provider::Ding, &[(200, ding_rl, None), (200, busy, None)]);
    fake.script(
        Provider::Slack,
        &[
            (429, "rate_limited", Some("1")),
            (500, "rollup_error", None),
        ],
    );
    let chans = [
        (
            Provider::Feishu,
            fake.feishu(FEISHU_TOKEN, Some(FEISHU_SECRET)),
        ),
        (Provider::Ding, fake.ding(DING_TOKEN, Some(DING_SECRET))),
        (Provider::Slack, fake.slack(SLACK_PATH)),
    ];
    for (p, s) in chans {
        let r = channels::start(&format!("{p:?}"), &s, &mut env).unwrap();
        let rep = deliver(&r, notification(1, 1)).await;
        assert!(rep.outcome.is_ok(), "{p:?}: {rep:?}");
        assert_eq!(
            rep.attempts, 3,
            "{p:?}: two transient answers, then accepted"
        );
        assert_eq!(fake.accepted(p).len(), 1, "{p:?}");
    }
    fake.server.stop().await;
}

#[actix_rt::test]
async fn the_fakes_refuse_oversized_bodies_and_the_channel_calls_it_permanent() {
    // The channels never send such bodies (see the budget test); this checks the fakes'
    // answer and its classification, so a provider saying "too large" is not retried.
    let fake = Fake::start(conf(Duration::from_secs(60)));
    let client = awc::Client::default();
    let big = "x".repeat(FEISHU_LIMIT + 1);
    let ts = Utc::now().timestamp();
    let body = serde_json::json!({"msg_type": "text", "content": {"text": big},
        "timestamp": ts.to_string(), "sign": feishu::sign(FEISHU_SECRET, ts)});
    let mut resp = client
        .post(format!(
            "{}/open-apis/bot/v2/hook/{FEISHU_TOKEN}",
            fake.base
        ))
        .send_body(body.to_string())
        .await
        .unwrap();
    let answer = channels::robot::Answer {
        status: resp.status().as_u16(),
        retry_after: None,
        body: resp.body().await.unwrap().to_vec(),
    };
    assert!(matches!(
        feishu::classify(&answer, Duration::from_secs(60)),
        Err(ChannelError::Permanent { reason }) if reason.contains("19036")
    ));

    let ts = Utc::now().timestamp_millis();
    let url = dingtalk::signed_url(
        &format!("{}/robot/send?access_token={DING_TOKEN}", fake.base),
        Some(&powa_sentinel::secret::Secret::new(DING_SECRET)),
        ts,
    );
    let body = dingtalk::message_body(&"y".repeat(DING_STANDIN_LIMIT));
    let mut resp = client.post(url).send_body(body).await.unwrap();
    let answer = channels::robot::Answer {
        status: resp.status().as_u16(),
        retry_after: None,
        body: resp.body().await.unwrap().to_vec(),
    };
    assert!(matches!(
        dingtalk::classify(&answer, Duration::from_secs(600)),
        Err(ChannelError::Permanent { reason }) if reason.contains("460101")
    ));
    let refused = std::mem::take(&mut fake.state.lock().unwrap().refused);
    assert_eq!(
        refused,
        [(Provider::Feishu, 19036), (Provider::Ding, 460101)]
    );
    fake.server.stop().await;
}

#[actix_rt::test]
async fn dry_run_renders_the_chat_robots_and_sends_nothing() {
    let fake = Fake::start(conf(Duration::from_secs(60)));
    let chans: BTreeMap<String, ChannelSettings> = [
        ("lark", fake.feishu(FEISHU_TOKEN, Some(FEISHU_SECRET))),
        ("ding", fake.ding(DING_TOKEN, Some(DING_SECRET))),
        ("slack", fake.slack(SLACK_PATH)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let log = discard();
    let actors = powa_sentinel::dry_run::start_all(&chans, &log).unwrap();
    assert_eq!(actors.len(), 3);
    for (name, r) in &actors {
        let rep = deliver(r, notification(1, 3)).await;
        assert!(rep.outcome.is_ok(), "{name}: {rep:?}");
        assert!(rep.attempts >= 1, "{name}: rendered and printed");
    }
    for p in [Provider::Feishu, Provider::Ding, Provider::Slack] {
        assert_eq!(fake.requests(p), 0, "{p:?}: a dry run sends nothing");
    }
    fake.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// The conformance kit: secrets, limits, answers

fn body_bytes(r: &channel_kit::Recorded) -> usize {
    r.body.len()
}

fn feishu_subject() -> Subject {
    Subject {
        settings: |base| {
            serde_json::json!({"type": "feishu", "secret": FEISHU_SECRET,
                "webhook_url": format!("{base}/open-apis/bot/v2/hook/{FEISHU_TOKEN}")})
        },
        spellings: vec![],
        broken: (
            serde_json::json!({"type": "feishu",
                "webhook_url": format!("https://open.feishu.cn/other/{FEISHU_TOKEN}")}),
            "webhook_url",
        ),
        secrets: vec![FEISHU_TOKEN.into(), FEISHU_SECRET.into()],
        delivered: Reply::new(200, r#"{"code":0,"msg":"success","data":{}}"#),
        fixed: vec![],
        table: vec![
            paused(
                200,
                r#"{"code":11232,"msg":"frequency limited"}"#,
                channel_kit::WINDOW,
            ),
            paused(
                200,
                r#"{"code":9499,"msg":"too many requests"}"#,
                channel_kit::WINDOW,
            ),
            retry_after(429, "1"),
            retried(502, ""),
            retried(200, "<html>proxy</html>"),
            permanent(200, r#"{"code":19021,"msg":"sign match fail"}"#, "19021"),
            permanent(400, r#"{"code":19001,"msg":"param invalid"}"#, "19001"),
            permanent(404, "", "404"),
        ],
        size: body_bytes,
        limit: feishu::BODY_LIMIT,
    }
}

fn ding_subject() -> Subject {
    Subject {
        settings: |base| {
            serde_json::json!({"type": "dingtalk", "secret": DING_SECRET,
                "webhook_url": format!("{base}/robot/send?access_token={DING_TOKEN}")})
        },
        spellings: vec![],
        broken: (
            serde_json::json!({"type": "dingtalk",
                "webhook_url": format!("https://oapi.dingtalk.com/robot/send?token={DING_TOKEN}")}),
            "webhook_url",
        ),
        secrets: vec![DING_TOKEN.into(), DING_SECRET.into()],
        delivered: Reply::new(200, r#"{"errcode":0,"errmsg":"ok"}"#),
        fixed: vec![],
        table: vec![
            paused(
                200,
                r#"{"errcode":130101,"errmsg":"send too fast"}"#,
                channel_kit::WINDOW * dingtalk::THROTTLE_WINDOWS,
            ),
            retried(200, r#"{"errcode":-1,"errmsg":"busy"}"#),
            retried(503, ""),
            retried(200, "<html>proxy</html>"),
            channel_kit::refused("310000", "sign not match"),
            channel_kit::refused("300001", "token is not exist"),
            permanent(404, "", "404"),
        ],
        size: body_bytes,
        limit: dingtalk::BODY_BUDGET,
    }
}

fn slack_subject() -> Subject {
    Subject {
        settings: |base| serde_json::json!({"type": "slack", "webhook_url": format!("{base}{SLACK_PATH}")}),
        spellings: vec![],
        broken: (
            serde_json::json!({"type": "slack", "webhook_url": format!("ftp://h{SLACK_PATH}")}),
            "webhook_url",
        ),
        secrets: vec!["sl4ck5ecret".into()],
        delivered: Reply::new(200, "ok"),
        fixed: vec![],
        table: vec![
            retry_after(429, "1"),
            retried(500, "rollup_error"),
            permanent(400, "invalid_payload", "invalid_payload"),
            permanent(403, "action_prohibited", "action_prohibited"),
            permanent(404, "channel_not_found", "channel_not_found"),
            permanent(410, "channel_is_archived", "channel_is_archived"),
        ],
        size: |r| r.json()["text"].as_str().unwrap().chars().count(),
        limit: slack::TEXT_LIMIT_CHARS,
    }
}

conformance!(feishu_conformance, feishu_subject());
conformance!(dingtalk_conformance, ding_subject());
conformance!(slack_conformance, slack_subject());
