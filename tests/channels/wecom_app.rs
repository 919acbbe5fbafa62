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

const CB_TOKEN: &str = "callback-t0ken";
const CB_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// `data` through `openssl` (a second implementation of the crypto, so that the test
/// checks the protocol rather than our own round trip).
fn openssl(args: &[&str], data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (Debian package `openssl`)");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// The AES key and IV in hex, decoded as WeCom's Python SDK does (`b64decode(key + "=")`,
/// which ignores the bits past the 32 bytes).
fn key_hex() -> (String, String) {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import base64,sys; print(base64.b64decode(sys.argv[1] + '=').hex())",
            CB_KEY,
        ])
        .output()
        .expect("python3");
    let hex = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(hex.len(), 64, "{hex}");
    (hex.clone(), hex[..32].to_string())
}

/// What WeCom sends: `msg` for `CORPID`, encrypted as its callback protocol says.
fn wecom_encrypt(msg: &str) -> String {
    use base64::Engine as _;
    let mut plain = b"0123456789abcdef".to_vec();
    plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    plain.extend_from_slice(msg.as_bytes());
    plain.extend_from_slice(CORPID.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let (k, iv) = key_hex();
    let enc = openssl(
        &[
            "enc",
            "-aes-256-cbc",
            "-nopad",
            "-nosalt",
            "-K",
            &k,
            "-iv",
            &iv,
        ],
        &plain,
    );
    base64::engine::general_purpose::STANDARD.encode(enc)
}

/// What WeCom reads of a reply: the plain message, after checking its receiver.
fn wecom_decrypt(encrypted: &str) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encrypted)
        .unwrap();
    let (k, iv) = key_hex();
    let plain = openssl(
        &[
            "enc",
            "-d",
            "-aes-256-cbc",
            "-nopad",
            "-nosalt",
            "-K",
            &k,
            "-iv",
            &iv,
        ],
        &raw,
    );
    let pad = *plain.last().unwrap() as usize;
    assert!((1..=32).contains(&pad), "padding to 32-byte blocks");
    let plain = &plain[..plain.len() - pad];
    let len = u32::from_be_bytes(plain[16..20].try_into().unwrap()) as usize;
    assert_eq!(&plain[20 + len..], CORPID.as_bytes(), "for our corpid");
    String::from_utf8(plain[20..20 + len].to_vec()).unwrap()
}

fn wecom_signature(timestamp: &str, nonce: &str, encrypted: &str) -> String {
    let mut parts = [CB_TOKEN, timestamp, nonce, encrypted];
    parts.sort_unstable();
    let out = openssl(&["dgst", "-sha1", "-r"], parts.concat().as_bytes());
    String::from_utf8(out).unwrap()[..40].to_string()
}

fn xml_element(xml: &str, name: &str) -> String {
    let start = xml.find(&format!("<{name}>")).unwrap() + name.len() + 2;
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    xml[start..end]
        .trim_start_matches("<![CDATA[")
        .trim_end_matches("]]>")
        .to_string()
}

/// A card per open finding with its buttons; a tap posted by WeCom through the callback
/// acknowledges the finding and the button says who; the URL check answers; a request
/// with a bad signature changes nothing.
#[actix_rt::test]
async fn cards_carry_buttons_and_a_tap_acknowledges_through_the_callback() {
    use powa_sentinel::actors::message::Lifecycle;
    use powa_sentinel::channels::wecom_app::WeComApp;
    use powa_sentinel::channels::wecom_callback::Callbacks;
    use powa_sentinel::gate::store::Store;

    let fake = fake(Duration::from_secs(7200));
    let mut env = env(LogBuf::default().logger());
    let s = settings(
        &fake.url(),
        serde_json::json!({"callback_token": CB_TOKEN, "callback_aes_key": CB_KEY}),
    );
    let r = channels::start("app", &s, &mut env).unwrap();
    let mut gone = insight(3, "SELECT 3");
    gone.status = Some(Lifecycle::Resolved);
    let n = notification(
        7,
        vec![
            insight(1, "SELECT 1 FROM t WHERE <b>x</b>"),
            insight(2, "SELECT 2"),
            gone,
        ],
    );
    let fp1 = n.insights[0].fingerprint.0;
    let rep = deliver(&r, n).await;
    assert!(rep.outcome.is_ok(), "{rep:?} {:?}", fake.rejected());
    let msgs = fake.messages();
    let cards: Vec<serde_json::Value> = msgs
        .iter()
        .filter(|m| m.msgtype == "template_card")
        .map(|m| serde_json::from_str(&m.content).unwrap())
        .collect();
    assert_eq!(cards.len(), 2, "one card per open finding: {msgs:?}");
    // The resolved one is told in a message after the cards.
    assert_eq!(msgs.last().unwrap().msgtype, "markdown");
    assert!(msgs.last().unwrap().content.contains("Top query #3"));
    let ack_key = cards
        .iter()
        .flat_map(|c| c["button_list"].as_array().unwrap().clone())
        .map(|b| b["key"].as_str().unwrap().to_string())
        .find(|k| k == &format!("ack-{fp1:016x}"))
        .expect("an Acknowledge button for the first finding");
    assert!(
        cards[0]["main_title"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Top query #"),
        "{}",
        cards[0]
    );

    // The daemon's HTTP endpoint with the channel's callback, on a state directory.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = powa_sentinel::http::HttpSettings {
        listen: format!("127.0.0.1:{port}"),
        ..Default::default()
    };
    let callback = s.typed::<WeComApp>().unwrap().callback().unwrap();
    let callbacks = Callbacks {
        by_channel: [("app".to_string(), callback)].into_iter().collect(),
        state: Some(powa_sentinel::gate::store::Location::dir(dir.path())),
    };
    powa_sentinel::http::start(&http, Default::default(), None, None, callbacks).unwrap();
    let base = format!("http://127.0.0.1:{port}/wecom/app");
    let client = awc::Client::default();

    // WeCom checks the URL when the callback is saved.
    let echo = wecom_encrypt("echo-4711");
    let sig = wecom_signature("1700000000", "abc", &echo);
    let url = format!(
        "{base}?msg_signature={sig}&timestamp=1700000000&nonce=abc&echostr={}",
        url::form_urlencoded::byte_serialize(echo.as_bytes()).collect::<String>()
    );
    let mut resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().await.unwrap(), "echo-4711");

    // zhangsan taps Acknowledge.
    let event = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
         <CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[{ack_key}]]></EventKey>\
         <TaskId><![CDATA[{}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>\
         <ResponseCode><![CDATA[rc1]]></ResponseCode><AgentID>{AGENT}</AgentID></xml>",
        cards[0]["task_id"].as_str().unwrap()
    );
    let enc = wecom_encrypt(&event);
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><AgentID><![CDATA[{AGENT}]]></AgentID>\
         <Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    );
    let post = |sig: String| {
        client
            .post(format!(
                "{base}?msg_signature={sig}&timestamp=1700000001&nonce=n1"
            ))
            .send_body(body.clone())
    };

    // A forged request first: refused, nothing recorded.
    let mut resp = post("0".repeat(40)).await.unwrap();
    assert_eq!(resp.status(), 403, "{:?}", resp.body().await);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.acks().unwrap().is_empty());

    let mut resp = post(wecom_signature("1700000001", "n1", &enc))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reply = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    let renc = xml_element(&reply, "Encrypt");
    assert_eq!(
        xml_element(&reply, "MsgSignature"),
        wecom_signature(
            &xml_element(&reply, "TimeStamp"),
            &xml_element(&reply, "Nonce"),
            &renc
        ),
        "the reply is signed"
    );
    let update = wecom_decrypt(&renc);
    assert_eq!(xml_element(&update, "MsgType"), "update_button");
    assert_eq!(
        xml_element(&update, "ReplaceName"),
        "Acknowledged by zhangsan"
    );
    let acks = store.acks().unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].fingerprint.0, fp1);
    assert_eq!(acks[0].by, "zhangsan (WeCom)");
    fake.stop().await;
}
