//! The generic webhook channel against a tiny loopback receiver that checks the
//! HMAC-SHA256 signature the way docs/webhook.md tells receivers to, and answers with
//! statuses the test chooses.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use slog::Logger;

use powa_sentinel::actors::channel::RetryPolicy;
use powa_sentinel::actors::message::{Lifecycle, Mentions};
use powa_sentinel::actors::{ChannelError, Insight, Notification, NotifyReason, Severity};
use powa_sentinel::channels::webhook::{self, verify};
use powa_sentinel::channels::{self, ChannelEnv, ChannelSettings};

use crate::channel_kit::{
    self, deliver, permanent, retried, retry_after, LogBuf, Reply, Server, Subject,
};

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
    server: Server,
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
        let server = Server::start(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(data.clone())
                .app_data(key.clone())
                .route("/hook", web::post().to(receive));
        });
        Receiver {
            url: format!("{}/hook?token=url-t0ken-secret", server.base),
            state,
            server,
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

fn env(log: Logger) -> ChannelEnv {
    channel_kit::env(
        log,
        channels::start::RATE_WINDOW,
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(5),
        },
    )
}

fn settings(url: &str, key: &str) -> ChannelSettings {
    channel_kit::settings(serde_json::json!({"type": "webhook", "url": url, "hmac_key": key}))
}

fn insight(n: usize, text: &str) -> Insight {
    let mut i = channel_kit::insight(n, format!("Top query #{n}"), text);
    i.severity = Severity::Critical;
    i.metrics.insert("ratio".to_string(), f64::NAN);
    i.status = Some(Lifecycle::New);
    i
}

fn notification(id: u64, insights: Vec<Insight>) -> Notification {
    let mentions = Mentions {
        userids: vec!["zhangsan".into()],
        mobiles: vec!["13800000000".into()],
    };
    channel_kit::notification(id, "hook", NotifyReason::Immediate, insights, mentions)
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
    rx.server.stop().await;
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
    rx.server.stop().await;
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
    rx.server.stop().await;
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
    rx.server.stop().await;
}

// ---------------------------------------------------------------------------------------
// The conformance kit: secrets, limits, answers

fn subject() -> Subject {
    Subject {
        settings: |base| {
            serde_json::json!({"type": "webhook", "hmac_key": KEY,
                "url": format!("{base}/hook?token=url-t0ken-secret")})
        },
        spellings: vec![],
        broken: (
            serde_json::json!({"type": "webhook", "url": "ftp://url-t0ken-secret", "hmac_key": "short"}),
            "url",
        ),
        secrets: vec![KEY.into(), "url-t0ken-secret".into(), "short\"".into()],
        delivered: Reply::new(204, ""),
        fixed: vec![],
        table: vec![
            retried(503, ""),
            retried(500, ""),
            retried(408, ""),
            retried(429, ""),
            retry_after(429, "1"),
            permanent(400, "", "400"),
            permanent(401, "bad signature", "401"),
            permanent(404, "", "404"),
            permanent(410, "", "410"),
            permanent(422, "", "422"),
        ],
        size: |r| r.body.len(),
        limit: webhook::MAX_BODY_BYTES,
    }
}

conformance!(conformance, subject());
