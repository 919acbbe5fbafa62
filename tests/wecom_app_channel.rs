//! The WeCom application-message channel against a fake of WeCom's gettoken and
//! message/send endpoints (token lifetime, 40014/42001 on bad tokens, 40001 on a bad
//! secret, the 2048-byte limit), over real HTTP on loopback, through `channels::start`.

#[path = "support/fake_wecom.rs"]
mod fake_wecom;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Recipient;
use chrono::{TimeZone, Utc};
use slog::{o, Drain, Logger};

use powa_sentinel::actors::channel::{Deliver, DeliveryReport, RetryPolicy};
use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::{
    ChannelError, Fingerprint, Insight, Notification, NotifyReason, Severity, Window,
};
use powa_sentinel::channels::{self, ChannelEnv, ChannelSettings};

use fake_wecom::app::{AppConfig, FakeWeComApp, CONTENT_LIMIT};

const CORPID: &str = "ww0123456789abcdef";
const SECRET: &str = "corp-s3cr3t-5f4e3d2c1b";
const AGENT: i64 = 1_000_002;

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
    ChannelEnv::new(log, false)
        .with_rate_window(Duration::from_secs(1))
        .with_retry(RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(3),
        })
}

fn fake(ttl: Duration) -> FakeWeComApp {
    FakeWeComApp::start(
        AppConfig::new(CORPID, SECRET, AGENT, &["zhangsan", "lisi"]).with_token_ttl(ttl),
    )
    .expect("fake starts")
}

fn settings(base: &str, extra: serde_json::Value) -> ChannelSettings {
    let mut v = serde_json::json!({"type": "wecom_app", "base_url": base, "corpid": CORPID,
        "corpsecret": SECRET, "agentid": AGENT, "touser": ["zhangsan", "lisi"],
        "max_per_minute": 30});
    if let serde_json::Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    serde_json::from_value(v).expect("settings parse")
}

fn insight(n: usize, sql: &str) -> Insight {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let t1 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    let labels: BTreeMap<String, String> = [("server", "remote1"), ("database", "app")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Insight {
        fingerprint: Fingerprint::of(["slow_query", &n.to_string()]),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity: Severity::Warning,
        labels,
        title: format!("Top query #{n} by total time"),
        advice: "Check its plan.".into(),
        text: Some(sql.to_string()),
        metrics: [("calls".to_string(), 52.0)].into_iter().collect(),
        window: Window { start: t0, end: t1 },
        observed_at: t1,
        status: None,
    }
}

fn notification(id: u64, insights: Vec<Insight>) -> Notification {
    Notification {
        id,
        channel: "app".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(insights),
        created_at: Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap(),
        mentions: Mentions {
            userids: vec!["ignored".into()],
            mobiles: vec![],
        },
    }
}

async fn deliver(r: &Recipient<Deliver>, n: Notification) -> DeliveryReport {
    r.send(Deliver(n)).await.expect("channel actor answers")
}

#[actix_rt::test]
async fn one_token_serves_many_messages_within_the_byte_limit() {
    let fake = fake(Duration::from_secs(7200));
    let log = LogBuf::default();
    let mut env = env(log.logger());
    let r = channels::start(
        "app",
        &settings(&fake.url(), serde_json::json!({})),
        &mut env,
    )
    .unwrap();
    let sql = "SELECT 数据, emoji 🐘 FROM t WHERE x = $1 ".repeat(200);
    let v: Vec<Insight> = (0..12).map(|k| insight(k, &sql)).collect();
    let rep = deliver(&r, notification(1, v)).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    assert!(rep.parts_total > 1, "{rep:?}");
    let msgs = fake.messages();
    assert_eq!(msgs.len(), rep.parts_total);
    for m in &msgs {
        assert_eq!(m.msgtype, "markdown");
        assert!(m.content.len() <= CONTENT_LIMIT);
        assert!(!m.truncated);
        assert_eq!(m.delivered_to, ["zhangsan", "lisi"]);
    }
    let all: String = msgs.iter().map(|m| m.content.clone()).collect();
    for k in 0..12 {
        assert!(all.contains(&format!("Top query #{k} ")), "lost #{k}");
    }
    assert_eq!(fake.gettoken_calls(), 1, "the token is cached");
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());

    // Text messages stay within 2048 bytes too, so WeCom never truncates them.
    let r = channels::start(
        "app_text",
        &settings(
            &fake.url(),
            serde_json::json!({"msgtype": "text", "language": "zh"}),
        ),
        &mut env,
    )
    .unwrap();
    let v: Vec<Insight> = (0..12).map(|k| insight(k, &sql)).collect();
    let rep = deliver(&r, notification(2, v)).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    let texts: Vec<_> = fake
        .messages()
        .into_iter()
        .filter(|m| m.msgtype == "text")
        .collect();
    assert_eq!(texts.len(), rep.parts_total);
    assert!(texts.iter().all(|m| !m.truncated));
    assert!(texts[0].content.starts_with("PoWA Sentinel 报告"));
    fake.stop().await;
}

#[actix_rt::test]
async fn revoked_token_is_refreshed_and_the_send_retried_once() {
    let fake = fake(Duration::from_secs(7200));
    let mut env = env(LogBuf::default().logger());
    let r = channels::start(
        "app",
        &settings(&fake.url(), serde_json::json!({})),
        &mut env,
    )
    .unwrap();
    assert!(deliver(&r, notification(1, vec![insight(1, "SELECT 1")]))
        .await
        .outcome
        .is_ok());
    fake.revoke_tokens();
    let rep = deliver(&r, notification(2, vec![insight(2, "SELECT 2")])).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    assert_eq!(rep.attempts, 1, "the refresh happens inside one attempt");
    assert_eq!(fake.rejected(), [40014]);
    assert_eq!(fake.gettoken_calls(), 2);
    assert_eq!(fake.messages().len(), 2);

    // Expired early (42001): the same.
    fake.expire_tokens();
    let rep = deliver(&r, notification(3, vec![insight(3, "SELECT 3")])).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    assert_eq!(fake.rejected(), [40014, 42001]);
    assert_eq!(fake.gettoken_calls(), 3);
    fake.stop().await;
}

#[actix_rt::test]
async fn token_is_renewed_before_it_expires() {
    // A 2 s token is kept 1 s (half its life when that is under the 5 min margin).
    let fake = fake(Duration::from_secs(2));
    let mut env = env(LogBuf::default().logger());
    let r = channels::start(
        "app",
        &settings(&fake.url(), serde_json::json!({})),
        &mut env,
    )
    .unwrap();
    assert!(deliver(&r, notification(1, vec![insight(1, "SELECT 1")]))
        .await
        .outcome
        .is_ok());
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    let rep = deliver(&r, notification(2, vec![insight(2, "SELECT 2")])).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    assert_eq!(fake.gettoken_calls(), 2);
    assert!(
        fake.rejected().is_empty(),
        "renewed before use, never refused: {:?}",
        fake.rejected()
    );
    fake.stop().await;
}

#[actix_rt::test]
async fn bad_secret_is_permanent_and_never_shown() {
    let fake = fake(Duration::from_secs(7200));
    let log = LogBuf::default();
    let mut env = env(log.logger());
    let wrong = "wrong-s3cr3t-a1b2c3";
    let s = settings(&fake.url(), serde_json::json!({"corpsecret": wrong}));
    assert!(!format!("{s:?}").contains(wrong));
    let r = channels::start("app", &s, &mut env).unwrap();
    let rep = deliver(&r, notification(1, vec![insight(1, "SELECT 1")])).await;
    match &rep.outcome {
        Err(ChannelError::Permanent { reason }) => {
            assert!(reason.contains("40001"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rep.attempts, 1, "never retried");
    assert_eq!(fake.gettoken_calls(), 1);
    assert_eq!(fake.send_calls(), 0);

    // A refused connection (retryable) does not leak the secret or a token either.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = channels::start(
        "gone",
        &settings(&format!("http://127.0.0.1:{port}"), serde_json::json!({})),
        &mut env,
    )
    .unwrap();
    let rep2 = deliver(&r, notification(2, vec![insight(1, "SELECT 1")])).await;
    assert!(matches!(rep2.outcome, Err(ChannelError::Retryable { .. })));

    // The secret went on the wire (to the fake) but nowhere else.
    assert!(fake.queries().iter().any(|q| q.contains(wrong)));
    let texts = [
        format!("{rep:?}"),
        format!("{rep2:?} {}", rep2.outcome.as_ref().unwrap_err()),
        log.text(),
    ];
    for t in texts {
        assert!(!t.contains(wrong) && !t.contains(SECRET), "leak: {t}");
        assert!(!t.contains("fake-token"), "token leak: {t}");
    }
    fake.stop().await;
}

#[actix_rt::test]
async fn unknown_recipients_only_is_permanent() {
    let fake = fake(Duration::from_secs(7200));
    let mut env = env(LogBuf::default().logger());
    let s = settings(&fake.url(), serde_json::json!({"touser": ["nobody"]}));
    let r = channels::start("app", &s, &mut env).unwrap();
    let rep = deliver(&r, notification(1, vec![insight(1, "SELECT 1")])).await;
    match &rep.outcome {
        Err(ChannelError::Permanent { reason }) => assert!(reason.contains("81013"), "{reason}"),
        other => panic!("{other:?}"),
    }
    fake.stop().await;
}

#[actix_rt::test]
async fn digest_fits_the_asked_number_of_messages() {
    use powa_sentinel::actors::channel::Channel;
    use powa_sentinel::channels::wecom_app::{AppSettings, WeComAppChannel};
    let s = settings("http://127.0.0.1:9", serde_json::json!({}));
    let ch = WeComAppChannel::new(
        AppSettings::from_settings(&s).unwrap(),
        Default::default(),
        Duration::from_secs(60),
    );
    let v: Vec<Insight> = (0..300)
        .map(|k| insight(k, &"SELECT x ".repeat(50)))
        .collect();
    let n = notification(1, v);
    let parts = ch.render_digest(&n, 3).unwrap();
    assert!(!parts.is_empty() && parts.len() <= 3);
    let all = parts.join("");
    assert!(all.contains("more not shown in full"), "{all}");
    for p in parts {
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert!(v["markdown"]["content"].as_str().unwrap().len() <= CONTENT_LIMIT);
    }
}
