//! The WeCom application-message channel against a fake of WeCom's gettoken and
//! message/send endpoints (token lifetime, 40014/42001 on bad tokens, 40001 on a bad
//! secret, the 2048-byte limit), over real HTTP on loopback, through `channels::start`.

use std::time::Duration;

use slog::Logger;

use actix::Recipient;

use powa_sentinel::actors::channel::{Deliver, DeliveryReport, RetryPolicy};
use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::{ChannelError, Insight, Notification, NotifyReason};
use powa_sentinel::channels::{self, ChannelEnv, ChannelSettings};

use crate::channel_kit::{self, deliver, permanent, retried, LogBuf, Reply, Subject};
use crate::fake_wecom::app::{AppConfig, FakeWeComApp, CONTENT_LIMIT};

const CORPID: &str = "ww0123456789abcdef";
const SECRET: &str = "corp-s3cr3t-5f4e3d2c1b";
const AGENT: i64 = 1_000_002;

fn env(log: Logger) -> ChannelEnv {
    channel_kit::env(
        log,
        Duration::from_secs(1),
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(3),
        },
    )
}

fn fake(ttl: Duration) -> FakeWeComApp {
    FakeWeComApp::start(
        AppConfig::new(CORPID, SECRET, AGENT, &["zhangsan", "lisi"]).with_token_ttl(ttl),
    )
    .expect("fake starts")
}

fn settings(base: &str, extra: serde_json::Value) -> ChannelSettings {
    let v = serde_json::json!({"type": "wecom_app", "base_url": base, "corpid": CORPID,
        "corpsecret": SECRET, "agentid": AGENT, "touser": ["zhangsan", "lisi"],
        "max_per_minute": 30});
    channel_kit::settings(channel_kit::with(v, extra))
}

/// Channel `app` on `fake`.
fn app(fake: &FakeWeComApp, env: &mut ChannelEnv) -> Recipient<Deliver> {
    channels::start("app", &settings(&fake.url(), serde_json::json!({})), env).unwrap()
}

/// Delivers notification `k`, of one insight (`SELECT k`).
async fn deliver_one(r: &Recipient<Deliver>, k: u64) -> DeliveryReport {
    let i = insight(k as usize, &format!("SELECT {k}"));
    deliver(r, notification(k, vec![i])).await
}

fn insight(n: usize, sql: &str) -> Insight {
    channel_kit::insight(n, format!("Top query #{n} by total time"), sql)
}

fn notification(id: u64, insights: Vec<Insight>) -> Notification {
    let mentions = Mentions {
        userids: vec!["ignored".into()],
        mobiles: vec![],
    };
    channel_kit::notification(id, "app", NotifyReason::Report, insights, mentions)
}

#[actix_rt::test]
async fn one_token_serves_many_messages_within_the_byte_limit() {
    let fake = fake(Duration::from_secs(7200));
    let log = LogBuf::default();
    let mut env = env(log.logger());
    let r = app(&fake, &mut env);
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
    let r = app(&fake, &mut env);
    assert!(deliver_one(&r, 1).await.outcome.is_ok());
    fake.revoke_tokens();
    let rep = deliver_one(&r, 2).await;
    assert!(rep.outcome.is_ok(), "{rep:?}");
    assert_eq!(rep.attempts, 1, "the refresh happens inside one attempt");
    assert_eq!(fake.rejected(), [40014]);
    assert_eq!(fake.gettoken_calls(), 2);
    assert_eq!(fake.messages().len(), 2);

    // Expired early (42001): the same.
    fake.expire_tokens();
    let rep = deliver_one(&r, 3).await;
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
    let r = app(&fake, &mut env);
    assert!(deliver_one(&r, 1).await.outcome.is_ok());
    actix_rt::time::sleep(Duration::from_millis(2100)).await;
    let rep = deliver_one(&r, 2).await;
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
    let rep = deliver_one(&r, 1).await;
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
    let rep = deliver_one(&r, 1).await;
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

// ---------------------------------------------------------------------------------------
// The conformance kit: secrets, limits, answers

/// The access token the kit's endpoint hands out.
const TOKEN: &str = "kit-t0ken-5ecret";

fn subject() -> Subject {
    Subject {
        settings: |base| {
            serde_json::json!({"type": "wecom_app", "base_url": base, "corpid": CORPID,
                "corpsecret": SECRET, "agentid": AGENT, "touser": ["zhangsan"]})
        },
        spellings: vec![],
        broken: (
            serde_json::json!({"type": "wecom_app", "corpid": CORPID, "corpsecret": SECRET,
                "agentid": 0, "touser": ["zhangsan"]}),
            "agentid",
        ),
        secrets: vec![SECRET.into(), TOKEN.into()],
        delivered: Reply::new(200, r#"{"errcode":0,"errmsg":"ok"}"#),
        fixed: vec![(
            "/cgi-bin/gettoken",
            Reply::new(
                200,
                r#"{"errcode":0,"errmsg":"ok","access_token":"kit-t0ken-5ecret","expires_in":7200}"#,
            ),
        )],
        table: vec![
            retried(200, r#"{"errcode":-1,"errmsg":"busy"}"#),
            channel_kit::wecom_freq_limited(),
            retried(500, ""),
            retried(200, "<html>proxy</html>"),
            channel_kit::refused("81013", "user invalid"),
            channel_kit::refused("60020", "not allow to access from your ip"),
            permanent(403, "", "403"),
        ],
        size: channel_kit::Recorded::wecom_content_len,
        limit: CONTENT_LIMIT,
    }
}

conformance!(conformance, subject());
