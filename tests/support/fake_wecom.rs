//! A fake WeCom group-robot endpoint that enforces the real one's rules, so that tests and
//! the demo prove something about the channel:
//!
//! - `POST /cgi-bin/webhook/send?key=K` with a JSON body; the answer is always HTTP 200
//!   with `{"errcode":N,"errmsg":"..."}` (like WeCom), except for injected faults;
//! - a key not in the configured set → 93000 (invalid webhook url);
//! - a body that is not JSON → 40058; a `msgtype` other than markdown, markdown_v2, text
//!   → 40008; a missing `<msgtype>.content` → 40058; empty content → 44004;
//! - content over 4096 bytes (markdown, markdown_v2) or 2048 bytes (text) → 40058;
//! - an `image` message: `image.base64` or `image.md5` missing, or base64 that does not
//!   decode → 40058; decoded image over 2 MB → 40009 (invalid image size); md5 (hex) not
//!   that of the decoded bytes → 301019 (media md5 not match); bytes that are neither PNG
//!   nor JPEG → 40005 (invalid media type);
//! - rate limit, decided here as: at most `max_per_window` (20) *accepted* messages per key
//!   in any rolling `window` (60 s); the next one → 45009. Rejected attempts are not
//!   counted (WeCom does not say either way; the channel paces every attempt anyway).
//!
//! Checks run in that order. Accepted messages are kept in memory (and appended as JSON
//! lines to a record file when one is configured); everything else is kept as a
//! [`Rejected`]. Faults injected with [`FakeWeCom::inject`] apply to the next requests, any
//! key, in order: HTTP 500, a delay before the normal answer, a connection closed without
//! an answer, or a given errcode.
//!
//! Used by the integration tests (`#[path = "support/fake_wecom.rs"] mod fake_wecom;`) and
//! by the `fake-wecom` binary (`tests/support/fake_wecom_main.rs`).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// WeCom's content limits, in UTF-8 bytes.
pub const MARKDOWN_LIMIT: usize = 4096;
pub const TEXT_LIMIT: usize = 2048;
/// WeCom's limit on an image message's image, before base64.
pub const IMAGE_LIMIT: usize = 2 * 1024 * 1024;
/// WeCom's rate limit: messages per robot per minute.
pub const MAX_PER_WINDOW: usize = 20;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The robot keys that exist.
    pub keys: Vec<String>,
    /// At most this many accepted messages per key in any rolling `window`.
    pub max_per_window: usize,
    pub window: Duration,
    /// Append every accepted message as a JSON line to this file.
    pub record: Option<PathBuf>,
}

impl FakeConfig {
    /// WeCom's limits, on a free loopback port.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Self {
        FakeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            keys: keys.iter().map(|k| k.as_ref().to_string()).collect(),
            max_per_window: MAX_PER_WINDOW,
            window: WINDOW,
            record: None,
        }
    }

    /// The same rule on a shorter window (tests that must not take a minute).
    pub fn with_window(mut self, max_per_window: usize, window: Duration) -> Self {
        self.max_per_window = max_per_window;
        self.window = window;
        self
    }

    pub fn with_record(mut self, path: PathBuf) -> Self {
        self.record = Some(path);
        self
    }
}

/// One accepted message.
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    pub at: DateTime<Utc>,
    #[serde(skip)]
    pub instant: Instant,
    pub key: String,
    pub msgtype: String,
    /// The text of a text or markdown message; for an image, "PNG image, N bytes".
    pub content: String,
    /// The decoded bytes of an image message.
    #[serde(skip)]
    pub image: Option<Vec<u8>>,
}

/// One request answered with a non-zero errcode (faults excluded).
#[derive(Clone, Debug, Serialize)]
pub struct Rejected {
    pub at: DateTime<Utc>,
    pub key: String,
    pub errcode: i64,
    pub errmsg: String,
}

/// Injected faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer HTTP 500 with an empty body.
    Http500,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without an answer (the response body fails before its first
    /// byte, and actix-web sends the head together with that byte, so the client sees the
    /// connection go away: awc reports `Connect(Disconnected)`).
    Drop,
    /// Answer HTTP 200 with this errcode (e.g. -1 "system busy", 45009).
    Errcode(i64),
}

struct State {
    cfg: FakeConfig,
    keys: HashSet<String>,
    accepted: Vec<Accepted>,
    rejected: Vec<Rejected>,
    /// Every request to the send path: time and key (faults included).
    requests: Vec<(Instant, String)>,
    faults: VecDeque<Fault>,
    record: Option<std::fs::File>,
    /// Slowness and timed outages (see [`FakeWeCom::slow_down`], [`FakeWeCom::outage_for`]).
    extra: Extra,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake. Dropping it does not stop the server; call [`FakeWeCom::stop`].
pub struct FakeWeCom {
    addr: SocketAddr,
    state: Shared,
    handle: ServerHandle,
}

impl FakeWeCom {
    /// Starts a fake with WeCom's limits on a free loopback port. Must be called inside an
    /// actix (or tokio) runtime, e.g. in an `#[actix_rt::test]`.
    pub fn start<S: AsRef<str>>(keys: &[S]) -> std::io::Result<FakeWeCom> {
        Self::start_with(FakeConfig::new(keys))
    }

    pub fn start_with(cfg: FakeConfig) -> std::io::Result<FakeWeCom> {
        let record = match &cfg.record {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        let state: Shared = Arc::new(Mutex::new(State {
            keys: cfg.keys.iter().cloned().collect(),
            cfg: cfg.clone(),
            accepted: Vec::new(),
            rejected: Vec::new(),
            requests: Vec::new(),
            faults: VecDeque::new(),
            record,
            extra: Extra::default(),
        }));
        let data = web::Data::new(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                .route(SEND_PATH, web::post().to(send))
        })
        .workers(1)
        .disable_signals()
        .bind(cfg.listen)?;
        let addr = bound_addr(&server.addrs(), "the fake WeCom")?;
        let handle = spawn(server.run());
        Ok(FakeWeCom {
            addr,
            state,
            handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (use as `base_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full webhook URL of `key`.
    pub fn webhook_url(&self, key: &str) -> String {
        format!("{}{SEND_PATH}?key={key}", self.url())
    }

    /// Accepted messages of `key`, oldest first.
    pub fn messages(&self, key: &str) -> Vec<Accepted> {
        lock(&self.state)
            .accepted
            .iter()
            .filter(|m| m.key == key)
            .cloned()
            .collect()
    }

    /// All accepted messages, oldest first.
    pub fn all_messages(&self) -> Vec<Accepted> {
        lock(&self.state).accepted.clone()
    }

    /// Requests answered with a non-zero errcode (injected faults excluded).
    pub fn rejected(&self) -> Vec<Rejected> {
        lock(&self.state).rejected.clone()
    }

    /// Number of requests received on the send path, faults included.
    pub fn requests(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Number of requests received for `key`, faults included.
    pub fn requests_for(&self, key: &str) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|(_, k)| k == key)
            .count()
    }

    /// The most messages of `key` accepted within any rolling window.
    pub fn max_accepted_in_window(&self, key: &str) -> usize {
        let st = lock(&self.state);
        let times: Vec<Instant> = st
            .accepted
            .iter()
            .filter(|m| m.key == key)
            .map(|m| m.instant)
            .collect();
        let window = st.cfg.window;
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| t.duration_since(times[i]) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// The next `times` requests (any key) get `fault`, after faults already queued.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut st = lock(&self.state);
        st.faults.extend(std::iter::repeat_n(fault, times));
    }

    /// Forgets faults not yet used.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Stops the server (in-flight requests are dropped).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

fn answer(errcode: i64, errmsg: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::json!({ "errcode": errcode, "errmsg": errmsg }).to_string())
}

async fn send(
    state: web::Data<Shared>,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let key = query.get("key").cloned().unwrap_or_default();
    let fault = {
        let mut st = lock(&state);
        st.requests.push((Instant::now(), key.clone()));
        st.faults.pop_front().or_else(|| outage_fault(&st))
    };
    match fault {
        Some(Fault::Http500) => return HttpResponse::InternalServerError().finish(),
        Some(Fault::Drop) => {
            let broken = futures_util::stream::once(async {
                Err::<web::Bytes, _>(std::io::Error::other("connection dropped by the fake"))
            });
            return HttpResponse::Ok()
                .content_type("application/json")
                .streaming(broken);
        }
        Some(Fault::Errcode(code)) => return answer(code, "injected fault"),
        Some(Fault::Delay(d)) => actix_rt::time::sleep(d).await,
        None => {}
    }
    slow_answer(&state).await;
    let (errcode, errmsg) = judge(&mut lock(&state), &key, &body);
    answer(errcode, &errmsg)
}

/// Decides like WeCom, records the outcome.
fn judge(st: &mut State, key: &str, body: &[u8]) -> (i64, String) {
    let now = Instant::now();
    let verdict = check(st, key, body, now);
    match verdict {
        Ok((msgtype, content, image)) => {
            let m = Accepted {
                at: Utc::now(),
                instant: now,
                key: key.to_string(),
                msgtype,
                content,
                image,
            };
            if let Some(f) = st.record.as_mut() {
                let line = serde_json::to_string(&m).unwrap_or_default();
                // One write per message, so a reader of the record never sees half a line.
                let _ = f.write_all(format!("{line}\n").as_bytes());
                let _ = f.flush();
            }
            st.accepted.push(m);
            (0, "ok".to_string())
        }
        Err((errcode, errmsg)) => {
            st.rejected.push(Rejected {
                at: Utc::now(),
                key: key.to_string(),
                errcode,
                errmsg: errmsg.clone(),
            });
            (errcode, errmsg)
        }
    }
}

/// What an accepted message carried: its msgtype, its text (or a word on the image) and
/// the image's bytes.
type Verdict = Result<(String, String, Option<Vec<u8>>), (i64, String)>;

fn check(st: &State, key: &str, body: &[u8], now: Instant) -> Verdict {
    if !st.keys.contains(key) {
        return Err((93000, "invalid webhook url, hint: [fake]".into()));
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        (
            40058,
            "invalid Request Parameter, hint: [fake] not json".to_string(),
        )
    })?;
    let msgtype = v
        .get("msgtype")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    let limit = match msgtype.as_str() {
        "markdown" | "markdown_v2" => MARKDOWN_LIMIT,
        "text" => TEXT_LIMIT,
        "image" => {
            let (content, image) = check_image(&v)?;
            check_rate(st, key, now)?;
            return Ok((msgtype, content, Some(image)));
        }
        _ => return Err((40008, "invalid message type, hint: [fake]".into())),
    };
    let content = v
        .get(&msgtype)
        .and_then(|o| o.get("content"))
        .and_then(|c| c.as_str())
        .ok_or_else(|| {
            (
                40058,
                format!("missing field {msgtype}.content, hint: [fake]"),
            )
        })?;
    if content.is_empty() {
        return Err((44004, "empty content, hint: [fake]".into()));
    }
    if content.len() > limit {
        return Err((
            40058,
            format!("{msgtype}.content exceed max length {limit}, hint: [fake]"),
        ));
    }
    check_rate(st, key, now)?;
    Ok((msgtype, content.to_string(), None))
}

/// 45009 beyond `max_per_window` accepted messages of `key` in the window.
fn check_rate(st: &State, key: &str, now: Instant) -> Result<(), (i64, String)> {
    let recent = st
        .accepted
        .iter()
        .filter(|m| m.key == key && now.duration_since(m.instant) < st.cfg.window)
        .count();
    if recent >= st.cfg.max_per_window {
        return Err((45009, "api freq out of limit, hint: [fake]".into()));
    }
    Ok(())
}

/// An image message as WeCom checks it: `image.base64` decodes, the image is at most
/// 2 MB, `image.md5` is the md5 of the decoded bytes, and they are a PNG or a JPEG.
fn check_image(v: &serde_json::Value) -> Result<(String, Vec<u8>), (i64, String)> {
    use base64::Engine as _;
    use md5::Digest as _;
    let field = |name: &str| {
        v.get("image")
            .and_then(|o| o.get(name))
            .and_then(|c| c.as_str())
            .ok_or_else(|| (40058, format!("missing field image.{name}, hint: [fake]")))
    };
    let b64 = field("base64")?;
    let md5 = field("md5")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| (40058, "invalid base64 of image, hint: [fake]".to_string()))?;
    if bytes.len() > IMAGE_LIMIT {
        return Err((40009, "invalid image size, hint: [fake]".into()));
    }
    if hex::encode(md5::Md5::digest(&bytes)) != md5.to_ascii_lowercase() {
        return Err((301019, "media md5 not match, hint: [fake]".into()));
    }
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "PNG"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "JPEG"
    } else {
        return Err((40005, "invalid media type, hint: [fake]".into()));
    };
    Ok((format!("{kind} image, {} bytes", bytes.len()), bytes))
}

/// Delivery-test controls that last a while rather than a number of requests.
#[derive(Default)]
struct Extra {
    /// Every request waits this long before being judged.
    delay: Option<Duration>,
    /// Until then, every request gets this fault.
    outage: Option<(Fault, Instant)>,
}

impl FakeWeCom {
    /// From now on every request waits `d` before its normal answer (a slow WeCom).
    pub fn slow_down(&self, d: Duration) {
        lock(&self.state).extra.delay = Some(d);
    }

    /// For `d` from now, every request gets `fault` (a WeCom outage); queued faults
    /// from [`FakeWeCom::inject`] still come first.
    pub fn outage_for(&self, fault: Fault, d: Duration) {
        lock(&self.state).extra.outage = Some((fault, Instant::now() + d));
    }
}

fn outage_fault(st: &State) -> Option<Fault> {
    st.extra
        .outage
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(f, _)| f)
}

async fn slow_answer(state: &Shared) {
    let delay = lock(state).extra.delay;
    if let Some(d) = delay {
        actix_rt::time::sleep(d).await;
    }
}

/// Where a fake's server listens (its first address); `what` names the fake in the error.
fn bound_addr(addrs: &[SocketAddr], what: &str) -> std::io::Result<SocketAddr> {
    addrs
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other(format!("{what} bound no address")))
}

/// Runs a fake's server on the current arbiter, for as long as its handle is not stopped.
fn spawn(server: actix_web::dev::Server) -> ServerHandle {
    let handle = server.handle();
    actix_rt::spawn(server);
    handle
}

// ---------------------------------------------------------------------------------------
// WeCom application messages (a separate server; nothing above depends on it).

/// A fake of WeCom's application-message API, behaving like the real one:
///
/// - `GET /cgi-bin/gettoken?corpid=C&corpsecret=S`: unknown corpid → 40013, wrong secret →
///   40001; otherwise `{"errcode":0,"access_token":T,"expires_in":N}`, the same token while
///   it is valid (like WeCom), a new one after it expired or was revoked;
/// - `POST /cgi-bin/message/send?access_token=T`: missing token → 41001, unknown or
///   revoked token → 40014, expired token → 42001; body not JSON → 40058; wrong agentid →
///   40056; msgtype other than markdown/text → 40008; no content → 40058, empty → 44004;
///   markdown content over 2048 bytes → 40058; text content over 2048 bytes is silently
///   **truncated** (recorded as such); no valid recipient → 81013; otherwise errcode 0 with
///   `invaliduser` listing unknown users;
/// - per member at most `per_member_per_window` (30) messages in any rolling `window`
///   (60 s): beyond that, the message is silently dropped for that member (errcode 0 —
///   as WeCom does), recorded in [`AppMessage::dropped_for`].
pub mod app {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use actix_web::dev::ServerHandle;
    use actix_web::{web, App, HttpResponse, HttpServer};

    pub const GETTOKEN_PATH: &str = "/cgi-bin/gettoken";
    pub const SEND_PATH: &str = "/cgi-bin/message/send";
    pub const CONTENT_LIMIT: usize = 2048;

    #[derive(Clone, Debug)]
    pub struct AppConfig {
        pub corpid: String,
        pub corpsecret: String,
        pub agentid: i64,
        /// Users that exist (`@all` means all of them).
        pub users: Vec<String>,
        pub token_ttl: Duration,
        pub per_member_per_window: usize,
        pub window: Duration,
    }

    impl AppConfig {
        pub fn new(corpid: &str, corpsecret: &str, agentid: i64, users: &[&str]) -> Self {
            AppConfig {
                corpid: corpid.into(),
                corpsecret: corpsecret.into(),
                agentid,
                users: users.iter().map(|u| u.to_string()).collect(),
                token_ttl: Duration::from_secs(7200),
                per_member_per_window: 30,
                window: Duration::from_secs(60),
            }
        }

        pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
            self.token_ttl = ttl;
            self
        }
    }

    /// One message accepted by message/send.
    #[derive(Clone, Debug)]
    pub struct AppMessage {
        pub instant: Instant,
        pub msgtype: String,
        pub content: String,
        /// WeCom cut it (text over 2048 bytes).
        pub truncated: bool,
        pub delivered_to: Vec<String>,
        pub dropped_for: Vec<String>,
    }

    struct Token {
        value: String,
        expires: Instant,
        revoked: bool,
    }

    struct State {
        cfg: AppConfig,
        tokens: Vec<Token>,
        gettoken_calls: usize,
        send_calls: usize,
        messages: Vec<AppMessage>,
        /// errcodes answered by message/send and gettoken (0 excluded).
        rejected: Vec<i64>,
        per_member: HashMap<String, Vec<Instant>>,
        /// Every URL query string received (to check what goes on the wire).
        queries: Vec<String>,
        /// The task ids of the cards accepted: WeCom refuses one used before.
        task_ids: Vec<String>,
    }

    /// What WeCom checks of a `button_interaction` card: a task id of 1–128 bytes of
    /// letters, digits and `_-@`, never used before by the application; 1 to 6 buttons,
    /// each with a text and a key; a main title or a sub-title text.
    fn check_card(c: &serde_json::Value, used: &[String]) -> Result<(), (i64, &'static str)> {
        if c["card_type"] != "button_interaction" {
            return Err((40058, "card_type: only button_interaction is faked"));
        }
        let task = c["task_id"].as_str().unwrap_or_default();
        if task.is_empty()
            || task.len() > 128
            || !task
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-@".contains(ch))
        {
            return Err((40058, "invalid task_id"));
        }
        if used.iter().any(|t| t == task) {
            return Err((40058, "task_id already used"));
        }
        let buttons = c["button_list"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if buttons.is_empty() || buttons.len() > 6 {
            return Err((40058, "button_list must hold 1 to 6 buttons"));
        }
        for b in buttons {
            let text = b["text"].as_str().unwrap_or_default();
            let key = b["key"].as_str().unwrap_or_default();
            if text.is_empty() || key.is_empty() || key.len() > 1024 {
                return Err((
                    40058,
                    "a button needs a text and a key (at most 1024 bytes)",
                ));
            }
        }
        let title = c["main_title"]["title"].as_str().unwrap_or_default();
        let sub = c["sub_title_text"].as_str().unwrap_or_default();
        if title.is_empty() && sub.is_empty() {
            return Err((40058, "main_title.title or sub_title_text is required"));
        }
        Ok(())
    }

    type Shared = Arc<Mutex<State>>;

    fn lock(s: &Shared) -> MutexGuard<'_, State> {
        s.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub struct FakeWeComApp {
        addr: SocketAddr,
        state: Shared,
        handle: ServerHandle,
    }

    impl FakeWeComApp {
        /// Starts on a free loopback port; call inside an actix runtime.
        pub fn start(cfg: AppConfig) -> std::io::Result<FakeWeComApp> {
            let state: Shared = Arc::new(Mutex::new(State {
                cfg,
                tokens: Vec::new(),
                gettoken_calls: 0,
                send_calls: 0,
                messages: Vec::new(),
                rejected: Vec::new(),
                per_member: HashMap::new(),
                queries: Vec::new(),
                task_ids: Vec::new(),
            }));
            let data = web::Data::new(Arc::clone(&state));
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                    .route(GETTOKEN_PATH, web::get().to(gettoken))
                    .route(SEND_PATH, web::post().to(send))
            })
            .workers(1)
            .disable_signals()
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let addr = super::bound_addr(&server.addrs(), "the fake WeCom app")?;
            let handle = super::spawn(server.run());
            Ok(FakeWeComApp {
                addr,
                state,
                handle,
            })
        }

        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub fn gettoken_calls(&self) -> usize {
            lock(&self.state).gettoken_calls
        }

        pub fn send_calls(&self) -> usize {
            lock(&self.state).send_calls
        }

        pub fn messages(&self) -> Vec<AppMessage> {
            lock(&self.state).messages.clone()
        }

        pub fn rejected(&self) -> Vec<i64> {
            lock(&self.state).rejected.clone()
        }

        pub fn queries(&self) -> Vec<String> {
            lock(&self.state).queries.clone()
        }

        /// WeCom invalidated every token early: the next send gets 40014.
        pub fn revoke_tokens(&self) {
            for t in lock(&self.state).tokens.iter_mut() {
                t.revoked = true;
            }
        }

        /// Every token expires now: the next send gets 42001.
        pub fn expire_tokens(&self) {
            let now = Instant::now();
            for t in lock(&self.state).tokens.iter_mut() {
                t.expires = now;
            }
        }

        pub async fn stop(&self) {
            self.handle.stop(false).await;
        }
    }

    fn answer(v: serde_json::Value) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(v.to_string())
    }

    fn err(st: &mut State, code: i64, msg: &str) -> HttpResponse {
        st.rejected.push(code);
        answer(serde_json::json!({"errcode": code, "errmsg": format!("{msg}, hint: [fake]")}))
    }

    async fn gettoken(
        state: web::Data<Shared>,
        req: actix_web::HttpRequest,
        query: web::Query<HashMap<String, String>>,
    ) -> HttpResponse {
        let mut st = lock(&state);
        st.queries.push(req.query_string().to_string());
        st.gettoken_calls += 1;
        let corpid = query.get("corpid").cloned().unwrap_or_default();
        let secret = query.get("corpsecret").cloned().unwrap_or_default();
        if corpid != st.cfg.corpid {
            return err(&mut st, 40013, "invalid corpid");
        }
        if secret != st.cfg.corpsecret {
            return err(&mut st, 40001, "invalid credential");
        }
        let now = Instant::now();
        if let Some(t) = st.tokens.iter().find(|t| !t.revoked && t.expires > now) {
            let left = t.expires.duration_since(now).as_secs().max(1);
            return answer(serde_json::json!({"errcode": 0, "errmsg": "ok",
                "access_token": t.value, "expires_in": left}));
        }
        let value = format!(
            "fake-token-{}-{}",
            st.tokens.len() + 1,
            now.elapsed().as_nanos()
        );
        let ttl = st.cfg.token_ttl;
        st.tokens.push(Token {
            value: value.clone(),
            expires: now + ttl,
            revoked: false,
        });
        answer(serde_json::json!({"errcode": 0, "errmsg": "ok",
            "access_token": value, "expires_in": ttl.as_secs().max(1)}))
    }

    async fn send(
        state: web::Data<Shared>,
        req: actix_web::HttpRequest,
        query: web::Query<HashMap<String, String>>,
        body: web::Bytes,
    ) -> HttpResponse {
        let mut st = lock(&state);
        st.queries.push(req.query_string().to_string());
        st.send_calls += 1;
        let now = Instant::now();
        let Some(token) = query.get("access_token").filter(|t| !t.is_empty()) else {
            return err(&mut st, 41001, "access_token missing");
        };
        match st.tokens.iter().find(|t| &t.value == token) {
            None => return err(&mut st, 40014, "invalid access_token"),
            Some(t) if t.revoked => return err(&mut st, 40014, "invalid access_token"),
            Some(t) if t.expires <= now => return err(&mut st, 42001, "access_token expired"),
            Some(_) => {}
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return err(&mut st, 40058, "invalid Request Parameter");
        };
        if v.get("agentid").and_then(|a| a.as_i64()) != Some(st.cfg.agentid) {
            return err(&mut st, 40056, "invalid agentid");
        }
        let msgtype = v
            .get("msgtype")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        if !matches!(msgtype.as_str(), "markdown" | "text" | "template_card") {
            return err(&mut st, 40008, "invalid message type");
        }
        let card;
        let content = if msgtype == "template_card" {
            if let Err((code, why)) = check_card(&v["template_card"], &st.task_ids) {
                return err(&mut st, code, why);
            }
            let task = v["template_card"]["task_id"].as_str().unwrap_or_default();
            st.task_ids.push(task.to_string());
            card = v["template_card"].to_string();
            Some(card.as_str())
        } else {
            v.get(&msgtype)
                .and_then(|o| o.get("content"))
                .and_then(|c| c.as_str())
        };
        let Some(content) = content else {
            return err(&mut st, 40058, "missing content");
        };
        if content.is_empty() {
            return err(&mut st, 44004, "empty content");
        }
        let mut content = content.to_string();
        let mut truncated = false;
        if content.len() > CONTENT_LIMIT {
            if msgtype == "markdown" {
                return err(&mut st, 40058, "markdown.content exceed max length 2048");
            }
            let mut end = CONTENT_LIMIT;
            while !content.is_char_boundary(end) {
                end -= 1;
            }
            content.truncate(end);
            truncated = true;
        }
        let touser: Vec<String> = v
            .get("touser")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .split('|')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let targets: Vec<String> = if touser.iter().any(|u| u == "@all") {
            st.cfg.users.clone()
        } else {
            touser
                .iter()
                .filter(|u| st.cfg.users.contains(u))
                .cloned()
                .collect()
        };
        let invalid: Vec<String> = touser
            .iter()
            .filter(|u| *u != "@all" && !st.cfg.users.contains(u))
            .cloned()
            .collect();
        if targets.is_empty() {
            return err(&mut st, 81013, "user & party & tag all invalid");
        }
        let (window, max) = (st.cfg.window, st.cfg.per_member_per_window);
        let mut delivered_to = Vec::new();
        let mut dropped_for = Vec::new();
        for u in targets {
            let times = st.per_member.entry(u.clone()).or_default();
            times.retain(|t| now.duration_since(*t) < window);
            if times.len() >= max {
                dropped_for.push(u);
            } else {
                times.push(now);
                delivered_to.push(u);
            }
        }
        st.messages.push(AppMessage {
            instant: now,
            msgtype,
            content,
            truncated,
            delivered_to,
            dropped_for,
        });
        let n = st.messages.len();
        answer(serde_json::json!({"errcode": 0, "errmsg": "ok",
            "invaliduser": invalid.join("|"), "msgid": format!("fake-msg-{n}")}))
    }
}

/// How many insights the digests in `text` count rather than show: the sum of every
/// "+N" (a digest's "+N more").
pub fn counted_in_digests(text: &str) -> usize {
    text.split('+')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .sum()
}
