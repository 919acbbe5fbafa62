//! The conformance kit every HTTP channel runs, through the real `channels::start` →
//! `ChannelActor` path, against a scripted loopback endpoint that answers as the test says:
//!
//! - [`secrets_never_leak`]: whatever goes wrong (invalid settings, a refused or dropped
//!   connection, no answer in time, a permanent refusal), no secret shows in an error text,
//!   a Debug output, a log line, the metrics, or a request body;
//! - [`limits_are_enforced`]: a large and hostile notification arrives as messages that
//!   each fit the provider's limit, all accepted;
//! - [`answers_are_classified`]: the provider's table of answers, each retried, paused for
//!   (rate limits, `Retry-After`) or permanent as documented.
//!
//! A channel describes itself as a [`Subject`]. Also here: what the channel tests share
//! (a log capture, the fixtures, a loopback server). Included with
//! `#[path = "../support/channel_kit.rs"] mod channel_kit;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{TimeZone, Utc};
use slog::{o, Drain, Logger};

use powa_sentinel::actors::channel::{Deliver, DeliveryReport, RetryPolicy};
use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::{
    ChannelError, Fingerprint, Insight, Notification, NotifyReason, Severity, Window,
};
use powa_sentinel::channels::{self, ChannelEnv, ChannelSettings};

// ---------------------------------------------------------------------------------------
// What the channel tests share

/// A log drain into a buffer, to check that logs carry no secret.
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    pub fn logger(&self) -> Logger {
        let deco = slog_term::PlainSyncDecorator::new(self.clone());
        Logger::root(slog_term::FullFormat::new(deco).build().fuse(), o!())
    }
}

/// A logger that drops everything.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// Channels of one test: `window` is the rate window (scaled down from a minute).
pub fn env(log: Logger, window: Duration, retry: RetryPolicy) -> ChannelEnv {
    ChannelEnv::new(log, false)
        .with_rate_window(window)
        .with_retry(retry)
}

/// The kit's retry policy: short backoffs, callers wait `deadline`.
pub fn fast(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(160),
        deadline,
    }
}

pub async fn deliver(r: &Recipient<Deliver>, n: Notification) -> DeliveryReport {
    r.send(Deliver(n)).await.expect("channel actor answers")
}

/// A channel's table, as JSON (the shape the `config` crate hands over).
pub fn settings(v: serde_json::Value) -> ChannelSettings {
    serde_json::from_value(v).expect("settings parse")
}

/// `v` with the keys of `extra` set.
pub fn with(mut v: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    v
}

/// A slow query on `remote1`/`app` over one day: the fields every channel test uses,
/// which each adjusts.
pub fn insight(n: usize, title: String, text: &str) -> Insight {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    Insight {
        fingerprint: Fingerprint::of(["slow_query", &n.to_string()]),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity: Severity::Warning,
        labels: [("server", "remote1"), ("database", "app")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        title,
        advice: "Check its plan.".into(),
        text: Some(text.to_string()),
        metrics: [("calls".to_string(), 52.0)].into_iter().collect(),
        window: Window { start: t0, end: t1 },
        observed_at: t1,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

/// A notification for channel `channel`, created at the end of [`insight`]'s window.
pub fn notification(
    id: u64,
    channel: &str,
    reason: NotifyReason,
    insights: Vec<Insight>,
    mentions: Mentions,
) -> Notification {
    Notification {
        id,
        channel: channel.into(),
        reason,
        insights: Arc::new(insights),
        created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
        mentions,
    }
}

/// A loopback HTTP server on a free port, configured by `configure`; stop it with
/// [`Server::stop`].
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub handle: ServerHandle,
}

impl Server {
    pub fn start<F>(configure: F) -> Server
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .configure(configure.clone())
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Server {
            base: format!("http://{addr}"),
            handle,
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// A loopback port nobody listens on.
pub fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback port that accepts connections and closes them at once, unanswered.
pub fn closing_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    port
}

// ---------------------------------------------------------------------------------------
// The scripted endpoint

/// One answer of the endpoint.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<&'static str>,
    /// Waits this long before answering.
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            retry_after: None,
            delay: None,
        }
    }

    pub fn retry_after(mut self, seconds: &'static str) -> Reply {
        self.retry_after = Some(seconds);
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

/// A request the endpoint received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub body: Vec<u8>,
    /// Answered by one of the subject's fixed replies (e.g. a token request).
    pub fixed: bool,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The bytes of a WeCom message's content, whatever its `msgtype`: what WeCom's
    /// limits count, for robot and application messages alike.
    pub fn wecom_content_len(&self) -> usize {
        let v = self.json();
        let t = v["msgtype"].as_str().unwrap().to_string();
        v[t]["content"].as_str().unwrap().len()
    }
}

#[derive(Default)]
struct Script {
    received: Vec<Recorded>,
    next: VecDeque<Reply>,
    delivered: Option<Reply>,
    fixed: Vec<(&'static str, Reply)>,
}

/// Answers every request with the next scripted reply, or else with the subject's
/// "delivered" answer; requests to a path of the subject's fixed replies get those.
pub struct Endpoint {
    server: Server,
    script: Arc<Mutex<Script>>,
}

async fn answer(
    script: web::Data<Arc<Mutex<Script>>>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let reply = {
        let mut s = script.lock().unwrap();
        let fixed = s
            .fixed
            .iter()
            .find(|(path, _)| req.path() == *path)
            .map(|(_, r)| r.clone());
        s.received.push(Recorded {
            method: req.method().to_string(),
            target: req.uri().to_string(),
            body: body.to_vec(),
            fixed: fixed.is_some(),
        });
        match fixed {
            Some(r) => r,
            None => match s.next.pop_front() {
                Some(r) => r,
                None => s.delivered.clone().expect("a delivered answer"),
            },
        }
    };
    if let Some(d) = reply.delay {
        actix_rt::time::sleep(d).await;
    }
    let mut r = HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    if let Some(ra) = reply.retry_after {
        r.insert_header(("Retry-After", ra));
    }
    r.body(reply.body)
}

impl Endpoint {
    pub fn start(subject: &Subject) -> Endpoint {
        Self::with_delivered(subject, subject.delivered.clone())
    }

    /// An endpoint that answers a message only after `delay`.
    pub fn answering_after(subject: &Subject, delay: Duration) -> Endpoint {
        Self::with_delivered(subject, subject.delivered.clone().after(delay))
    }

    fn with_delivered(subject: &Subject, delivered: Reply) -> Endpoint {
        let script = Arc::new(Mutex::new(Script {
            delivered: Some(delivered),
            fixed: subject.fixed.clone(),
            ..Script::default()
        }));
        let data = web::Data::new(Arc::clone(&script));
        let server = Server::start(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(data.clone()).default_service(web::to(answer));
        });
        Endpoint { server, script }
    }

    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// Answers the next requests with `replies` first.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().next.extend(replies);
    }

    /// The requests received that carried a message (fixed ones aside).
    pub fn sends(&self) -> Vec<Recorded> {
        let s = self.script.lock().unwrap();
        s.received.iter().filter(|r| !r.fixed).cloned().collect()
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().received.clone()
    }

    pub async fn stop(&self) {
        self.server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// The subject and the checks

/// What an answer of the provider means for delivery.
#[derive(Clone, Debug)]
pub enum Class {
    /// Retried: the next attempt is delivered.
    Retried,
    /// Retried, no sooner than this (a rate limit, or `Retry-After`).
    PausedFor(Duration),
    /// Not retried; the reason names this (an answer code, a token).
    Permanent(&'static str),
}

/// `status` and `body`: retried.
pub fn retried(status: u16, body: &str) -> (Reply, Class) {
    (Reply::new(status, body), Class::Retried)
}

/// `status` and `body`: retried after `pause` (the provider's rate limit).
pub fn paused(status: u16, body: &str, pause: Duration) -> (Reply, Class) {
    (Reply::new(status, body), Class::PausedFor(pause))
}

/// `status` with `Retry-After: <seconds>`: retried no sooner.
pub fn retry_after(status: u16, seconds: &'static str) -> (Reply, Class) {
    let pause = Duration::from_secs(seconds.parse().unwrap());
    (
        Reply::new(status, "").retry_after(seconds),
        Class::PausedFor(pause),
    )
}

/// `status` and `body`: not retried, the reason names `word`.
pub fn permanent(status: u16, body: &str, word: &'static str) -> (Reply, Class) {
    (Reply::new(status, body), Class::Permanent(word))
}

/// A 200 answer that refuses with `errcode` (WeCom's and DingTalk's
/// `{"errcode":…,"errmsg":…}`): permanent, and the error names the code.
pub fn refused(errcode: &'static str, errmsg: &str) -> (Reply, Class) {
    permanent(
        200,
        &format!(r#"{{"errcode":{errcode},"errmsg":"{errmsg}"}}"#),
        errcode,
    )
}

/// WeCom's rate limit (errcode 45009, robot and application alike): paused for the rate
/// window and a second.
pub fn wecom_freq_limited() -> (Reply, Class) {
    paused(
        200,
        r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
        WINDOW + Duration::from_secs(1),
    )
}

/// An HTTP channel as the kit sees it.
pub struct Subject {
    /// Its table, posting to the endpoint at `base` (`http://127.0.0.1:<port>`).
    pub settings: fn(base: &str) -> serde_json::Value,
    /// Other spellings of a valid table, checked for leaks in Debug.
    pub spellings: Vec<serde_json::Value>,
    /// An invalid table, and the key its start error names.
    pub broken: (serde_json::Value, &'static str),
    /// Values that must show nowhere.
    pub secrets: Vec<String>,
    /// The answer that means "delivered".
    pub delivered: Reply,
    /// Requests answered apart from the script, by path (a token request).
    pub fixed: Vec<(&'static str, Reply)>,
    /// The provider's answers and what each means.
    pub table: Vec<(Reply, Class)>,
    /// The size of one message as the provider limits it, and the limit.
    pub size: fn(&Recorded) -> usize,
    pub limit: usize,
}

/// The rate window of the kit's channels.
pub const WINDOW: Duration = Duration::from_millis(300);

/// Insights that break naive renderers: long SQL of multi-byte text, markup, mentions.
pub fn hostile(k: usize) -> Insight {
    let mut i = insight(
        k,
        format!("数据库 **慢查询** `x` <font color=\"info\">绿</font> <@all> #{k}").repeat(3),
        &"SELECT `数据库`, '🐘' FROM \"表\" WHERE x <> '**y**' ".repeat(2_000),
    );
    i.advice = "建议：创建索引 🔧 ``` ``` \"quoted\" \\ ".repeat(20);
    i.severity = [Severity::Info, Severity::Warning, Severity::Critical][k % 3];
    i
}

fn plain(id: u64, insights: Vec<Insight>) -> Notification {
    notification(
        id,
        "kit",
        NotifyReason::Immediate,
        insights,
        Mentions::default(),
    )
}

fn assert_no_secret(subject: &Subject, texts: &[String]) {
    for t in texts {
        for s in &subject.secrets {
            assert!(!t.contains(s.as_str()), "secret {s:?} leaked in: {t}");
        }
    }
}

/// No secret in error texts, Debug outputs, logs, metrics or request bodies, whatever
/// goes wrong.
pub async fn secrets_never_leak(subject: &Subject) {
    let logs = LogBuf::default();
    let mut env = env(logs.logger(), WINDOW, fast(Duration::from_secs(1)));
    let ep = Endpoint::start(subject);
    let mut texts = Vec::new();

    // Settings and the environment, every spelling.
    let good = settings((subject.settings)(ep.base()));
    texts.push(format!("{good:?}"));
    for v in &subject.spellings {
        texts.push(format!("{:?}", settings(v.clone())));
    }
    texts.push(format!("{env:?}"));

    // Invalid settings: the start error names the key, not the value.
    let e = channels::start("broken", &settings(subject.broken.0.clone()), &mut env).unwrap_err();
    let key = format!("channels.broken.{}", subject.broken.1);
    assert!(e.to_string().contains(&key), "{e}");
    texts.push(format!("{e} {e:?}"));

    // A refused connection, and one closed unanswered: retried, then reported.
    for (name, port) in [("refused", refused_port()), ("dropped", closing_port())] {
        let base = format!("http://127.0.0.1:{port}");
        let r = channels::start(name, &settings((subject.settings)(&base)), &mut env).unwrap();
        let rep = deliver(&r, plain(1, vec![hostile(1)])).await;
        let err = rep.outcome.as_ref().expect_err(name);
        assert!(!err.is_permanent(), "{name}: {rep:?}");
        texts.push(format!("{rep:?} {err}"));
    }

    // No answer in time (from an endpoint of its own: the channel goes on retrying).
    let slow_ep = Endpoint::answering_after(subject, Duration::from_secs(2));
    let slow = with(
        (subject.settings)(slow_ep.base()),
        serde_json::json!({"timeout": "200ms"}),
    );
    let r = channels::start("slow", &settings(slow), &mut env).unwrap();
    let rep = deliver(&r, plain(2, vec![hostile(2)])).await;
    let err = rep.outcome.as_ref().expect_err("no answer in time");
    texts.push(format!("{rep:?} {err}"));

    // A permanent refusal.
    let refusal = subject
        .table
        .iter()
        .find(|(_, c)| matches!(c, Class::Permanent(_)))
        .map(|(r, _)| r.clone())
        .expect("a permanent answer in the table");
    let r = channels::start("refused_answer", &good, &mut env).unwrap();
    ep.script([refusal]);
    let rep = deliver(&r, plain(3, vec![hostile(3)])).await;
    let err = rep.outcome.as_ref().expect_err("refused");
    assert!(err.is_permanent(), "{rep:?}");
    texts.push(format!("{rep:?} {err}"));

    // What went on the wire carries secrets only where the provider wants them (URLs).
    for req in ep.received() {
        texts.push(String::from_utf8_lossy(&req.body).into_owned());
    }
    texts.push(powa_sentinel::metrics::metrics().render());
    texts.push(logs.text());
    assert_no_secret(subject, &texts);
    assert!(
        logs.text().contains("Delivery attempt failed."),
        "logs were captured"
    );
    ep.stop().await;
    slow_ep.stop().await;
}

/// A large, hostile notification arrives as several messages, each within the provider's
/// limit, all accepted.
pub async fn limits_are_enforced(subject: &Subject) {
    let mut env = env(discard(), WINDOW, fast(Duration::from_secs(60)));
    let ep = Endpoint::start(subject);
    let r = channels::start("limits", &settings((subject.settings)(ep.base())), &mut env).unwrap();
    let rep = deliver(&r, plain(1, (0..60).map(hostile).collect())).await;
    assert_eq!(rep.outcome, Ok(()), "{rep:?}");
    let sends = ep.sends();
    assert!(sends.len() > 1, "a notification this large is split");
    assert_eq!(sends.len(), rep.parts_total, "{rep:?}");
    for s in &sends {
        let size = (subject.size)(s);
        assert!(size <= subject.limit, "{size} > {}", subject.limit);
    }
    ep.stop().await;
}

/// Each answer of the provider's table is retried, paused for, or permanent, as it says.
pub async fn answers_are_classified(subject: &Subject) {
    let mut env = env(discard(), WINDOW, fast(Duration::from_secs(60)));
    let ep = Endpoint::start(subject);
    for (k, (reply, class)) in subject.table.iter().enumerate() {
        let name = format!("c{k}");
        let r = channels::start(&name, &settings((subject.settings)(ep.base())), &mut env).unwrap();
        ep.script([reply.clone()]);
        let before = ep.sends().len();
        let t = Instant::now();
        let rep = deliver(&r, plain(1, vec![insight(k, format!("Q{k}"), "SELECT 1")])).await;
        let sent = ep.sends().len() - before;
        let what = format!("{reply:?} → {class:?}: {rep:?}");
        match class {
            Class::Retried | Class::PausedFor(_) => {
                assert_eq!(rep.outcome, Ok(()), "{what}");
                assert_eq!((rep.attempts, sent), (2, 2), "{what}");
            }
            Class::Permanent(word) => match &rep.outcome {
                Err(ChannelError::Permanent { reason }) => {
                    assert!(reason.contains(word), "{what}");
                    assert_no_secret(subject, std::slice::from_ref(reason));
                    assert_eq!((rep.attempts, sent), (1, 1), "not retried: {what}");
                }
                _ => panic!("{what}"),
            },
        }
        if let Class::PausedFor(d) = class {
            assert!(t.elapsed() >= *d, "held {:?}: {what}", t.elapsed());
        }
    }
    ep.stop().await;
}

/// The kit's three checks as tests of module `$module`, for the [`Subject`] `$subject`
/// (an expression, evaluated in each test).
#[allow(unused_macros)]
macro_rules! conformance {
    ($module:ident, $subject:expr) => {
        mod $module {
            use super::*;

            #[actix_rt::test]
            async fn secrets_never_leak() {
                $crate::channel_kit::secrets_never_leak(&$subject).await;
            }

            #[actix_rt::test]
            async fn limits_are_enforced() {
                $crate::channel_kit::limits_are_enforced(&$subject).await;
            }

            #[actix_rt::test]
            async fn answers_are_classified() {
                $crate::channel_kit::answers_are_classified(&$subject).await;
            }
        }
    };
}
