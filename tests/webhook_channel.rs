//! The generic webhook channel against a tiny loopback receiver that checks the
//! HMAC-SHA256 signature the way docs/webhook.md tells receivers to, and answers with
//! statuses the test chooses.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Recipient;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{TimeZone, Utc};
use slog::{o, Drain, Logger};

use powa_sentinel::actors::channel::{Deliver, DeliveryReport, RetryPolicy};
use powa_sentinel::actors::message::{Lifecycle, Mentions};
use powa_sentinel::actors::{
    ChannelError, Fingerprint, Insight, Notification, NotifyReason, Severity, Window,
};
use powa_sentinel::channels::webhook::{self, verify};
use powa_sentinel::channels::{self, ChannelEnv, ChannelSettings};

const KEY: &str = "hmac-k3y-0f1e2d3c4b5a69788796a5b4";

// ---------------------------------------------------------------------------------------
// The receiver

#[derive(Default)]
struct Received {
    /// Bodies whose signature checked out.
    verified: Vec<serde_json::Value>,
    /// Requests in all, and those with a bad or missing signature.
    requests: usize,
    bad_signature: usize,
    deliveries: Vec<String>,
    /// Statuses to answer next (then 200), with an optional Retry-After.
    script: VecDeque<(u16, Option<&'static str>)>,
}

type Shared = Arc<Mutex<Received>>;

struct Receiver {
    url: String,
    state: Shared,
    handle: ServerHandle,
}

async fn receive(
    key: web::Data<String>,
    state: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut st = state.lock().unwrap();
    st.requests += 1;
    let ts: Option<i64> = header(webhook::TIMESTAMP_HEADER).and_then(|t| t.parse().ok());
    let sig = header(webhook::SIGNATURE_HEADER);
    let ok = match (ts, sig) {
        (Some(ts), Some(sig)) => {
            verify(key.as_bytes(), ts, &body, &sig) && (Utc::now().timestamp() - ts).abs() < 300
        }
        _ => false,
    };
    if !ok {
        st.bad_signature += 1;
        return HttpResponse::Unauthorized().body("bad signature");
    }
    if let Some((status, retry_after)) = st.script.pop_front() {
        let mut r = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
        if let Some(ra) = retry_after {
            r.insert_header(("Retry-After", ra));
        }
        return r.finish();
    }
    st.deliveries
        .push(header(webhook::DELIVERY_HEADER).unwrap_or_default());
    st.verified
        .push(serde_json::from_slice(&body).expect("the payload is JSON"));
    HttpResponse::NoContent().finish()
}

impl Receiver {
    fn start(key: &str) -> Receiver {
        let state: Shared = Arc::default();
        let data = web::Data::new(Arc::clone(&state));
        let key = web::Data::new(key.to_string());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(key.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            url: format!("http://{addr}/hook?token=url-t0ken-secret"),
            state,
            handle,
        }
    }

    fn script(&self, steps: &[(u16, Option<&'static str>)]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(steps.iter().copied());
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn logger(&self) -> Logger {
        let deco = slog_term::PlainSyncDecorator::new(self.clone());
        Logger::root(slog_term::FullFormat::new(deco).build().fuse(), o!())
    }
}

fn env(log: Logger) -> ChannelEnv {
    ChannelEnv::new(log, false).with_retry(RetryPolicy {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        deadline: Duration::from_secs(5),
    })
}

fn settings(url: &str, key: &str) -> ChannelSettings {
    serde_json::from_value(serde_json::json!({"type": "webhook", "url": url, "hmac_key": key}))
        .unwrap()
}

fn insight(n: usize, text: &str) -> Insight {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    Insight {
        fingerprint: Fingerprint::of(["slow_query", &n.to_string()]),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity: Severity::Critical,
        labels: [("server", "remote1"), ("database", "app")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        title: format!("Top query #{n}"),
        advice: "Check its plan.".into(),
        text: Some(text.to_string()),
        metrics: [("calls".to_string(), 52.0), ("ratio".to_string(), f64::NAN)]
            .into_iter()
            .collect(),
        window: Window { start: t0, end: t1 },
        observed_at: t1,
        status: Some(Lifecycle::New),
    }
}

fn notification(id: u64, insights: Vec<Insight>) -> Notification {
    Notification {
        id,
        channel: "hook".into(),
        reason: NotifyReason::Immediate,
        insights: Arc::new(insights),
        created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
        mentions: Mentions {
            userids: vec!["zhangsan".into()],
            mobiles: vec!["13800000000".into()],
        },
    }
}

async fn deliver(r: &Recipient<Deliver>, n: Notification) -> DeliveryReport {
    r.send(Deliver(n)).await.expect("channel actor answers")
}

// ---------------------------------------------------------------------------------------
// Tests

#[actix_rt::test]
async fn signed_versioned_payload_is_verified_by_the_receiver() {
    let rx = Receiver::start(KEY);
    let mut env = env(LogBuf::default().logger());
    let r = channels::start("hook", &settings(&rx.url, KEY), &mut env).unwrap();
    let rep = deliver(
        &r,
        notification(42, vec![insight(1, "SELECT 1"), insight(2, "x")]),
    )
    .await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    // Take what was received, so no lock is held across an await.
    let st = std::mem::take(&mut *rx.state.lock().unwrap());
    assert_eq!((st.requests, st.bad_signature), (1, 0));
    let p = &st.verified[0];
    assert_eq!(p["version"], "1");
    assert_eq!(p["id"], 42);
    assert_eq!(p["channel"], "hook");
    assert_eq!(p["reason"], "immediate");
    assert_eq!(p["created_at"], "2026-11-24T10:00:00Z");
    assert_eq!(
        (p["part"].clone(), p["parts"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(p["mentions"]["userids"][0], "zhangsan");
    assert_eq!(p["mentions"]["mobiles"][0], "13800000000");
    let i = &p["insights"][0];
    assert_eq!(i["fingerprint"], insight(1, "").fingerprint.to_string());
    assert_eq!(i["kind"], "slow_query");
    assert_eq!(i["severity"], "critical");
    assert_eq!(i["status"], "new");
    assert_eq!(i["labels"]["server"], "remote1");
    assert_eq!(i["metrics"]["calls"], 52.0);
    assert!(i["metrics"]["ratio"].is_null(), "NaN is sent as null");
    assert_eq!(i["text"], "SELECT 1");
    assert_eq!(i["text_truncated"], false);
    assert_eq!(i["window_start"], "2026-11-23T10:00:00Z");
    assert_eq!(st.deliveries, ["42-1of1"]);
    rx.handle.stop(false).await;
}

#[actix_rt::test]
async fn wrong_key_is_refused_by_the_receiver_and_permanent() {
    let rx = Receiver::start(KEY);
    let mut env = env(LogBuf::default().logger());
    let r = channels::start(
        "hook",
        &settings(&rx.url, "another-key-0123456789"),
        &mut env,
    )
    .unwrap();
    let rep = deliver(&r, notification(1, vec![insight(1, "SELECT 1")])).await;
    assert!(
        matches!(&rep.outcome, Err(ChannelError::Permanent { reason }) if reason.contains("401")),
        "{rep:?}"
    );
    // Take what was received, so no lock is held across an await.
    let st = std::mem::take(&mut *rx.state.lock().unwrap());
    assert_eq!(
        (st.requests, st.bad_signature, st.verified.len()),
        (1, 1, 0)
    );
    rx.handle.stop(false).await;
}

#[actix_rt::test]
async fn transient_statuses_are_retried_others_are_not() {
    let rx = Receiver::start(KEY);
    let mut env = env(LogBuf::default().logger());
    let r = channels::start("hook", &settings(&rx.url, KEY), &mut env).unwrap();

    rx.script(&[(503, None), (500, None), (429, Some("1")), (408, None)]);
    let rep = deliver(&r, notification(1, vec![insight(1, "SELECT 1")])).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    assert_eq!(rep.attempts, 5);
    assert_eq!(rx.state.lock().unwrap().verified.len(), 1);

    for status in [400, 404, 410, 422] {
        rx.script(&[(status, None)]);
        let before = rx.state.lock().unwrap().requests;
        // A notification id is accepted once per channel: one each.
        let rep = deliver(
            &r,
            notification(u64::from(status), vec![insight(1, "SELECT 1")]),
        )
        .await;
        assert!(
            matches!(rep.outcome, Err(ChannelError::Permanent { .. })),
            "{status}: {rep:?}"
        );
        assert_eq!(rep.attempts, 1);
        assert_eq!(rx.state.lock().unwrap().requests, before + 1);
    }
    rx.handle.stop(false).await;
}

#[actix_rt::test]
async fn large_notifications_are_split_and_long_texts_cut() {
    let rx = Receiver::start(KEY);
    let mut env = env(LogBuf::default().logger());
    let r = channels::start("hook", &settings(&rx.url, KEY), &mut env).unwrap();
    let big = "SELECT 数据 🐘 ".repeat(100_000); // ~1.6 MB
    let v: Vec<Insight> = (0..100).map(|k| insight(k, &big)).collect();
    let rep = deliver(&r, notification(7, v)).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    // Take what was received, so no lock is held across an await.
    let st = std::mem::take(&mut *rx.state.lock().unwrap());
    assert!(st.verified.len() > 1, "split into several POSTs");
    let mut seen = 0;
    for (k, p) in st.verified.iter().enumerate() {
        assert!(p.to_string().len() <= webhook::MAX_BODY_BYTES);
        assert_eq!(p["part"], k + 1);
        assert_eq!(p["parts"], st.verified.len());
        for i in p["insights"].as_array().unwrap() {
            assert_eq!(i["text_truncated"], true);
            assert_eq!(
                i["text"].as_str().unwrap().chars().count(),
                webhook::MAX_TEXT_CHARS
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 100);
    rx.handle.stop(false).await;
}

#[actix_rt::test]
async fn secrets_never_leak() {
    let log = LogBuf::default();
    let mut env = env(log.logger()).with_retry(RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        deadline: Duration::from_millis(300),
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook?token=url-t0ken-secret");
    let s = settings(&url, KEY);
    let r = channels::start("hook", &s, &mut env).unwrap();
    let rep = deliver(&r, notification(1, vec![insight(1, "SELECT 1")])).await;
    assert!(matches!(rep.outcome, Err(ChannelError::Retryable { .. })));

    let bad: ChannelSettings = serde_json::from_value(serde_json::json!({
        "type": "webhook", "url": "ftp://url-t0ken-secret", "hmac_key": "short"
    }))
    .unwrap();
    let e = channels::start("bad", &bad, &mut env).unwrap_err();
    assert!(e.to_string().contains("channels.bad.url"), "{e}");

    for t in [
        format!("{s:?}"),
        format!("{rep:?} {}", rep.outcome.as_ref().unwrap_err()),
        format!("{e} {e:?}"),
        format!("{env:?}"),
        log.text(),
    ] {
        assert!(
            !t.contains(KEY) && !t.contains("url-t0ken-secret") && !t.contains("short\""),
            "leak: {t}"
        );
    }
    assert!(log.text().contains("Delivery attempt failed."));
}
