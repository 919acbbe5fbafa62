//! The WeCom channel against a fake robot endpoint that enforces WeCom's rules (errcodes,
//! byte limits, per-key rate limit), over real HTTP on loopback, through the real
//! `channels::start` → `ChannelActor` path.
//!
//! The rate window is scaled down (3 s instead of 60 s, same 20-message rule) on both
//! sides so that pacing tests take seconds, not minutes.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use slog::Logger;

use actix::Recipient;
use powa_sentinel::actors::channel::Channel;

use powa_sentinel::actors::channel::{Deliver, RetryPolicy};
use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::throttle::Pacer;
use powa_sentinel::actors::{ChannelError, Insight, Notification, NotifyReason, Severity};
use powa_sentinel::channels::{
    self, ChannelEnv, ChannelSettings, MsgType, WeComChannel, WeComTarget,
};
use powa_sentinel::render::{self, RenderOptions, Style};

use crate::channel_kit::{self, deliver, discard, permanent, retried, Reply, Subject};
use crate::fake_wecom::{self, FakeConfig, FakeWeCom, Fault};

const KEY: &str = "3f1c9a2e-7b4d-4e1a-9c7f-robot-key-one";
const WINDOW: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------
// Helpers

fn fast_env(log: Logger) -> ChannelEnv {
    channel_kit::env(
        log,
        WINDOW,
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(20),
        },
    )
}

fn fake() -> FakeWeCom {
    FakeWeCom::start_with(FakeConfig::new(&[KEY]).with_window(20, WINDOW)).expect("fake starts")
}

fn wecom_settings(base_url: &str, key: &str, extra: serde_json::Value) -> ChannelSettings {
    channel_kit::settings(channel_kit::with(
        serde_json::json!({"type": "wecom", "key": key, "base_url": base_url}),
        extra,
    ))
}

/// A fake robot with key [`KEY`], and channel `name` on it (with the keys of `extra`).
fn on_fake(name: &str, extra: serde_json::Value) -> (FakeWeCom, ChannelEnv, Recipient<Deliver>) {
    let fake = fake();
    let mut env = fast_env(discard());
    let r = start(&mut env, name, &fake, KEY, extra);
    (fake, env, r)
}

/// Starts channel `name` on robot `key` of `fake`, with the keys of `extra`.
fn start(
    env: &mut ChannelEnv,
    name: &str,
    fake: &FakeWeCom,
    key: &str,
    extra: serde_json::Value,
) -> Recipient<Deliver> {
    channels::start(name, &wecom_settings(&fake.url(), key, extra), env).unwrap()
}

/// A channel that sends `msgtype` messages (the tests that run every message type).
fn start_msgtype(
    env: &mut ChannelEnv,
    name: &str,
    fake: &FakeWeCom,
    key: &str,
    msgtype: &str,
) -> Recipient<Deliver> {
    start(
        env,
        name,
        fake,
        key,
        serde_json::json!({ "msgtype": msgtype }),
    )
}

fn slow_query(n: usize, sql: &str) -> Insight {
    let mut i = channel_kit::insight(
        n,
        format!("Top query by total time on remote1 (62% of its time) #{n}"),
        sql,
    );
    i.labels.extend(
        [
            ("repository", "main".to_string()),
            ("user", "bob".to_string()),
            ("queryid", format!("-{}", 1_000_000 + n)),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    i.metrics.extend(
        [
            ("total_time_ms", 8123.4),
            ("mean_time_ms", 156.2),
            ("share_of_total_time", 0.62),
            ("rows", 52.0),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    // A kind the renderers tell as it is (own title, never grouped into a story with
    // others): these tests are about delivery and splitting, one entry per insight.
    i.kind = "custom".into();
    i.rule = "custom.total_time".into();
    i.severity = if n.is_multiple_of(7) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    i.advice = "Check its plan with EXPLAIN (ANALYZE, BUFFERS); an index may help.".into();
    i
}

fn notification(id: u64, insights: Vec<Insight>) -> Notification {
    channel_kit::notification(
        id,
        "ops",
        NotifyReason::Report,
        insights,
        Mentions::default(),
    )
}

fn long_sql(n: usize) -> String {
    let cols: Vec<String> = (0..80).map(|c| format!("t{n}.column_{c}")).collect();
    format!(
        "SELECT {}\n  FROM big_table_{n} t{n}\n  JOIN other o ON o.id = t{n}.other_id\n WHERE t{n}.created_at > $1\n ORDER BY 1",
        cols.join(",\n       ")
    )
}

/// How many of the insights `ks` (made by [`slow_query`]) the messages represent: shown
/// in full (their queryid appears) or counted in a digest's "+N more".
fn represented(msgs: &[fake_wecom::Accepted], ks: std::ops::Range<usize>) -> usize {
    let all: Vec<&str> = msgs.iter().map(|m| m.content.as_str()).collect();
    let all = all.join("\n");
    let full = ks
        .filter(|k| all.contains(&format!("-{}", 1_000_000 + k)))
        .count();
    let counted = crate::fake_wecom::counted_in_digests(&all);
    full + counted
}

/// Per line, backticks come in pairs (inline code never spans lines).
fn backticks_balanced(s: &str) -> bool {
    s.lines().all(|l| l.matches('`').count() % 2 == 0)
}

// ---------------------------------------------------------------------------------------
// Delivery

/// 60 slow queries with long SQL make several markdown parts; WeCom accepts every one
/// (none over 4096 bytes, none rate-limited) and every insight is in one of them.
#[actix_rt::test]
async fn sixty_slow_queries_arrive_as_several_accepted_markdown_parts() {
    let (fake, _env, r) = on_fake("ops", serde_json::json!({}));
    let insights: Vec<Insight> = (0..60).map(|n| slow_query(n, &long_sql(n))).collect();
    let report = deliver(&r, notification(1, insights)).await;

    assert_eq!(report.outcome, Ok(()), "{report:?}");
    let msgs = fake.messages(KEY);
    assert!(msgs.len() > 1, "expected several parts, got {}", msgs.len());
    assert_eq!(msgs.len(), report.parts_total);
    assert_eq!(report.attempts as usize, msgs.len(), "no retries needed");
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    let total = msgs.len();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.msgtype, "markdown");
        assert!(
            m.content.len() <= render::WECOM_MARKDOWN_BUDGET,
            "{}",
            m.content.len()
        );
        assert!(m.content.contains(&format!("(part {}/{total})", i + 1)));
        assert!(backticks_balanced(&m.content));
        assert_eq!(
            m.content.matches("<font").count(),
            m.content.matches("</font>").count()
        );
    }
    let all: String = msgs.iter().map(|m| m.content.as_str()).collect();
    for n in 0..60 {
        assert!(
            all.contains(&format!("`-{}`", 1_000_000 + n)),
            "insight {n} is missing"
        );
    }
    fake.stop().await;
}

/// CJK, emoji, backticks, markdown specials and a 1 MB query: every msgtype stays within
/// WeCom's byte limits and is accepted.
#[actix_rt::test]
async fn hostile_text_is_accepted_in_every_msgtype() {
    let fake = fake();
    let mut env = fast_env(discard());
    let mut insights = Vec::new();
    let mut a = slow_query(
        1,
        &"SELECT `数据库`, '🐘' FROM \"表\" WHERE x <> '**y**' ".repeat(30_000),
    );
    assert!(a.text.as_ref().unwrap().len() > 1_000_000);
    a.title = "数据库 **慢查询** `x` <font color=\"info\">绿</font> [链接](http://x) # > | ~ \\"
        .repeat(20);
    a.advice = "建议：创建索引 🔧 ``` ```".repeat(100);
    a.labels.insert("server".into(), "服务器_1 <@all>".into());
    a.labels.insert("database".into(), "库`名`".into());
    insights.push(a);
    for n in 2..40 {
        insights.push(slow_query(n, &"SELECT 数据 🐘 FROM t ".repeat(500)));
    }
    for (name, msgtype, limit) in [
        ("md", "markdown", 4096),
        ("md2", "markdown_v2", 4096),
        ("txt", "text", 2048),
    ] {
        let r = start_msgtype(&mut env, name, &fake, KEY, msgtype);
        let before = fake.messages(KEY).len();
        let report = deliver(&r, notification(2, insights.clone())).await;
        assert_eq!(report.outcome, Ok(()), "{msgtype}: {report:?}");
        let msgs = &fake.messages(KEY)[before..];
        assert_eq!(msgs.len(), report.parts_total);
        for m in msgs {
            assert_eq!(m.msgtype, msgtype);
            assert!(
                m.content.len() <= limit,
                "{msgtype}: {} bytes",
                m.content.len()
            );
            assert!(backticks_balanced(&m.content), "{msgtype}");
            assert!(m.content.contains("数据"), "{msgtype}: {}", m.content);
        }
    }
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    fake.stop().await;
}

/// A key the robot endpoint does not know (93000) is a permanent failure: reported once,
/// not retried.
#[actix_rt::test]
async fn bad_key_is_permanent_and_not_retried() {
    let fake = fake();
    let logs = channel_kit::LogBuf::default();
    let mut env = fast_env(logs.logger());
    let bad = "0000-not-a-robot-key-0000";
    let r = start(&mut env, "ops", &fake, bad, serde_json::json!({}));
    let report = deliver(&r, notification(3, vec![slow_query(1, "SELECT 1")])).await;
    match &report.outcome {
        Err(ChannelError::Permanent { reason }) => {
            assert!(reason.contains("93000"), "{reason}");
            assert!(!reason.contains(bad), "{reason}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(report.attempts, 1);
    assert_eq!(report.parts_delivered, 0);
    // A second notification tries once more, and only once.
    let again = deliver(&r, notification(4, vec![slow_query(2, "SELECT 2")])).await;
    assert!(again
        .outcome
        .as_ref()
        .is_err_and(ChannelError::is_permanent));
    assert_eq!(
        fake.requests(),
        2,
        "one request per notification, no retry storm"
    );
    assert_eq!(fake.rejected().len(), 2);
    assert!(fake.rejected().iter().all(|r| r.errcode == 93000));
    assert!(!logs.text().contains(bad), "{}", logs.text());
    fake.stop().await;
}

/// HTTP 500 twice, then OK: delivered on the third attempt, and the report counts them.
#[actix_rt::test]
async fn http_500_twice_then_delivered() {
    let (fake, _env, r) = on_fake("ops", serde_json::json!({}));
    fake.inject(Fault::Http500, 2);
    let report = deliver(&r, notification(5, vec![slow_query(1, "SELECT 1")])).await;
    assert_eq!(report.outcome, Ok(()), "{report:?}");
    assert_eq!(report.attempts, 3);
    assert_eq!(report.parts_delivered, 1);
    assert_eq!(fake.requests(), 3);
    assert_eq!(fake.messages(KEY).len(), 1);
    fake.stop().await;
}

/// A dropped connection, WeCom's "system busy" (-1) and a request that outlives the
/// timeout are all retried until delivered.
#[actix_rt::test]
async fn transient_faults_are_retried() {
    let (fake, _env, r) = on_fake("ops", serde_json::json!({"timeout": "300ms"}));
    fake.inject(Fault::Drop, 1);
    fake.inject(Fault::Errcode(-1), 1);
    fake.inject(Fault::Delay(Duration::from_secs(1)), 1);
    let report = deliver(&r, notification(6, vec![slow_query(1, "SELECT 1")])).await;
    assert_eq!(report.outcome, Ok(()), "{report:?}");
    assert_eq!(report.attempts, 4, "{report:?}");
    // The delayed request may still be accepted after the client gave up (as with the
    // real service, a timeout can mean a duplicate).
    assert!(!fake.messages(KEY).is_empty());
    fake.stop().await;
}

/// WeCom's 45009 pauses the key for its window, then the message goes through.
#[actix_rt::test]
async fn rate_limited_answer_pauses_then_delivers() {
    let (fake, _env, r) = on_fake("ops", serde_json::json!({}));
    fake.inject(Fault::Errcode(45009), 1);
    let t = Instant::now();
    let report = deliver(&r, notification(7, vec![slow_query(1, "SELECT 1")])).await;
    assert_eq!(report.outcome, Ok(()), "{report:?}");
    assert_eq!(report.attempts, 2);
    assert!(
        t.elapsed() >= WINDOW,
        "held for the window, took {:?}",
        t.elapsed()
    );
    fake.stop().await;
}

/// 25 single-insight notifications queued at once on one key: the pacer keeps every
/// rolling window at 20 or fewer, so WeCom rejects none with 45009.
#[actix_rt::test]
async fn burst_of_25_is_paced_within_the_robot_limit() {
    // The real configuration holds too: at most 20 in any rolling minute.
    assert!(Pacer::new(20, Duration::from_secs(60)).worst_case_in(Duration::from_secs(60)) <= 20);

    let (fake, _env, r) = on_fake("ops", serde_json::json!({}));
    let t = Instant::now();
    let sends: Vec<_> = (0..25)
        .map(|k| {
            r.send(Deliver(notification(
                100 + k,
                vec![slow_query(k as usize, "SELECT 1")],
            )))
        })
        .collect();
    let reports = futures_util::future::join_all(sends).await;
    for rep in &reports {
        let rep = rep.as_ref().expect("actor answers");
        assert_eq!(rep.outcome, Ok(()), "{rep:?}");
        assert_eq!(rep.attempts as usize, rep.parts_total, "no retry: {rep:?}");
    }
    // What the quota cannot carry soon is merged into a digest: fewer messages, every
    // insight still there.
    let msgs = fake.messages(KEY);
    assert!(!msgs.is_empty() && msgs.len() <= 25, "{}", msgs.len());
    assert!(represented(&msgs, 0..25) >= 25);
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert!(fake.max_accepted_in_window(KEY) <= 20);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    fake.stop().await;
}

/// Two channels posting with the same key draw from one budget.
#[actix_rt::test]
async fn channels_sharing_a_key_share_its_budget() {
    let (fake, mut env, a) = on_fake("a", serde_json::json!({}));
    let webhook = serde_json::json!({"type": "wecom", "webhook_url": fake.webhook_url(KEY), "msgtype": "text"});
    let b_settings: ChannelSettings = serde_json::from_value(webhook).unwrap();
    let b = channels::start("b", &b_settings, &mut env).unwrap();
    let mut sends = Vec::new();
    for k in 0..13u64 {
        for r in [&a, &b] {
            sends.push(r.send(Deliver(notification(
                200 + k,
                vec![slow_query(k as usize, "SELECT 1")],
            ))));
        }
    }
    let reports = futures_util::future::join_all(sends).await;
    assert!(reports.iter().all(|r| r.as_ref().unwrap().outcome.is_ok()));
    let msgs = fake.messages(KEY);
    assert!(msgs.len() <= 26, "{}", msgs.len());
    // Each channel got all 13 insights (in full or counted in a digest).
    let (text, md): (Vec<_>, Vec<_>) = msgs.into_iter().partition(|m| m.msgtype == "text");
    assert!(represented(&text, 0..13) >= 13 && represented(&md, 0..13) >= 13);
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert!(fake.max_accepted_in_window(KEY) <= 20);
    fake.stop().await;
}

// ---------------------------------------------------------------------------------------
// The conformance kit: secrets, limits, answers

/// The secret of the kit's channel.
const SECRET: &str = "s3cr3t-9d8c7b6a";

fn subject() -> Subject {
    Subject {
        settings: |base| serde_json::json!({"type": "wecom", "key": SECRET, "base_url": base}),
        spellings: vec![serde_json::json!({
            "type": "wecom",
            "webhook_url": format!("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={SECRET}")
        })],
        broken: (
            serde_json::json!({"type": "wecom", "webhook_url": format!("https://h/?k={SECRET}")}),
            "webhook_url",
        ),
        secrets: vec![SECRET.into()],
        delivered: Reply::new(200, r#"{"errcode":0,"errmsg":"ok"}"#),
        fixed: vec![],
        table: vec![
            retried(200, r#"{"errcode":-1,"errmsg":"system busy"}"#),
            channel_kit::wecom_freq_limited(),
            retried(500, ""),
            retried(429, ""),
            retried(200, "<html>proxy</html>"),
            channel_kit::refused("93000", "invalid webhook url, from ip: 1.2.3.4"),
            channel_kit::refused("40058", "content exceed max length"),
            permanent(404, "", "404"),
        ],
        size: channel_kit::Recorded::wecom_content_len,
        limit: fake_wecom::MARKDOWN_LIMIT,
    }
}

conformance!(conformance, subject());

// ---------------------------------------------------------------------------------------
// Mentions, digests, language

fn with_mentions(mut n: Notification) -> Notification {
    n.mentions = Mentions {
        userids: vec!["zhangsan".into(), "bad id <x>".into(), "@all".into()],
        mobiles: vec!["13800000000".into(), "not-a-phone!".into()],
    };
    n
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("a JSON body")
}

/// Whether the content of the `msgtype` message `body` mentions anyone (`<@…>`).
fn mentions_in(body: &str, msgtype: &str) -> bool {
    json(body)[msgtype]["content"]
        .as_str()
        .unwrap()
        .contains("<@")
}

/// Each msgtype carries the mentions the way WeCom supports them, and the fake accepts
/// every message (the extra mention message included).
#[actix_rt::test]
async fn mentions_follow_what_each_msgtype_supports() {
    // One robot per msgtype: on one key the later channels would share what is left of
    // its quota and get digests, not the parts counted here.
    let keys = [KEY, "robot-md2", "robot-txt"];
    let fake =
        FakeWeCom::start_with(FakeConfig::new(&keys).with_window(20, WINDOW)).expect("fake starts");
    let n = with_mentions(notification(
        3,
        (0..30).map(|k| slow_query(k, &long_sql(k))).collect(),
    ));
    let rate = WINDOW;
    let mk = |msgtype: MsgType| {
        WeComChannel::new(
            WeComTarget::from_key(&fake.url(), KEY).unwrap(),
            msgtype,
            Duration::from_secs(5),
            Default::default(),
            rate,
        )
    };

    // markdown: <@userid> in the first message; mobiles need an extra text message.
    let md = mk(MsgType::Markdown).render(&n).unwrap();
    let first = json(&md[0]);
    let content = first["markdown"]["content"].as_str().unwrap();
    assert!(
        content.ends_with("\n<@zhangsan> <@@all>"),
        "{}",
        &content[content.len() - 80..]
    );
    assert!(content.len() <= render::WECOM_MARKDOWN_BUDGET);
    assert!(md[1..md.len() - 1]
        .iter()
        .all(|b| !mentions_in(b, "markdown")));
    let last = json(md.last().unwrap());
    assert_eq!(last["msgtype"], "text");
    assert_eq!(
        last["text"]["mentioned_mobile_list"],
        serde_json::json!(["13800000000"])
    );
    assert!(last["text"].get("mentioned_list").is_none());

    // markdown_v2: no mentions in the format, so one extra text message carries them all.
    let v2 = mk(MsgType::MarkdownV2).render(&n).unwrap();
    assert!(v2[..v2.len() - 1]
        .iter()
        .all(|b| !mentions_in(b, "markdown_v2")));
    let last = json(v2.last().unwrap());
    assert_eq!(
        last["text"]["mentioned_list"],
        serde_json::json!(["zhangsan", "@all"])
    );
    assert_eq!(
        last["text"]["mentioned_mobile_list"],
        serde_json::json!(["13800000000"])
    );

    // text: the lists on the first message only, no extra message.
    let tx = mk(MsgType::Text).render(&n).unwrap();
    assert_eq!(
        json(&tx[0])["text"]["mentioned_list"],
        serde_json::json!(["zhangsan", "@all"])
    );
    assert!(json(&tx[1])["text"].get("mentioned_list").is_none());
    assert!(tx.iter().all(|b| json(b)["text"]["content"]
        .as_str()
        .unwrap()
        .contains("Top query")));

    // All of them are accepted by the robot.
    let mut env = fast_env(discard());
    for (name, key, msgtype, parts) in [
        ("md", keys[0], "markdown", md.len()),
        ("md2", keys[1], "markdown_v2", v2.len()),
        ("txt", keys[2], "text", tx.len()),
    ] {
        let r = start_msgtype(&mut env, name, &fake, key, msgtype);
        let rep = deliver(&r, n.clone()).await;
        assert_eq!(rep.outcome, Ok(()), "{msgtype}: {rep:?}");
        assert_eq!(rep.parts_total, parts, "{msgtype}");
    }
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    fake.stop().await;
}

/// A burst far beyond the quota, digested into at most N messages: all accepted, the most
/// severe shown first, every insight counted.
#[actix_rt::test]
async fn digest_of_a_burst_fits_the_quota_and_represents_everything() {
    let fake = fake();
    for (msgtype, lang) in [
        (MsgType::Markdown, "en"),
        (MsgType::MarkdownV2, "zh"),
        (MsgType::Text, "zh"),
    ] {
        let opts = RenderOptions {
            lang: serde_json::from_value(serde_json::json!(lang)).unwrap(),
            ..Default::default()
        };
        let ch = WeComChannel::new(
            WeComTarget::from_key(&fake.url(), KEY).unwrap(),
            msgtype,
            Duration::from_secs(5),
            opts,
            WINDOW,
        );
        let mut v: Vec<Insight> = (0..1000).map(|k| slow_query(k, &long_sql(k))).collect();
        for (k, i) in v.iter_mut().enumerate() {
            i.severity = if k == 999 {
                Severity::Critical
            } else {
                Severity::Info
            };
            if k % 3 == 0 {
                i.kind = "regression".into();
            }
        }
        let n = with_mentions(notification(4, v));
        let parts = ch.render_digest(&n, 4).unwrap();
        assert!(
            !parts.is_empty() && parts.len() <= 4,
            "{msgtype:?}: {}",
            parts.len()
        );
        let contents: Vec<String> = parts
            .iter()
            .map(|b| {
                let v = json(b);
                let t = v["msgtype"].as_str().unwrap().to_string();
                v[t]["content"].as_str().unwrap().to_string()
            })
            .collect();
        let all = contents.join("\n");
        assert!(all.contains("#999"), "the critical one is shown in full");
        let more = if lang == "en" {
            "more not shown in full"
        } else {
            "条未完整显示"
        };
        assert!(all.contains(more), "{msgtype:?}:\n{all}");
        assert!(all.contains("regression"), "kinds are counted");
        for p in &parts {
            ch.send(p.clone()).await.expect("accepted by the robot");
        }
    }
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    fake.stop().await;
}

/// `language = "zh"` through the configuration, against the robot.
#[actix_rt::test]
async fn chinese_reports_are_accepted() {
    let (fake, _env, r) = on_fake("zh", serde_json::json!({"language": "zh"}));
    let v: Vec<Insight> = (0..40)
        .map(|k| slow_query(k, &"SELECT 数据 ".repeat(400)))
        .collect();
    let rep = deliver(&r, notification(5, v)).await;
    assert_eq!(rep.outcome, Ok(()), "{rep:?}");
    let msgs = fake.messages(KEY);
    assert!(msgs.len() > 1);
    for (k, m) in msgs.iter().enumerate() {
        assert!(
            m.content.starts_with("## PoWA Sentinel 报告"),
            "{}",
            m.content
        );
        assert!(m
            .content
            .contains(&format!("（第 {}/{} 部分）", k + 1, msgs.len())));
        assert!(m.content.len() <= render::WECOM_MARKDOWN_BUDGET);
    }
    fake.stop().await;
}

// ---------------------------------------------------------------------------------------
// Other channel kinds through `start`

#[actix_rt::test]
async fn file_channel_appends_one_json_line_per_insight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/insights.jsonl");
    let s: ChannelSettings =
        serde_json::from_value(serde_json::json!({"type": "file", "path": path})).unwrap();
    let mut env = fast_env(discard());
    let r = channels::start("archive", &s, &mut env).unwrap();
    let rep = deliver(
        &r,
        notification(11, (0..3).map(|n| slow_query(n, "SELECT 1")).collect()),
    )
    .await;
    assert_eq!(rep.outcome, Ok(()));
    let rep = deliver(&r, notification(12, vec![])).await;
    assert_eq!((rep.outcome, rep.parts_total), (Ok(()), 0));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Insight> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2], slow_query(2, "SELECT 1"));
}

#[actix_rt::test]
async fn console_channel_delivers_one_part() {
    let s: ChannelSettings =
        serde_json::from_value(serde_json::json!({"type": "console"})).unwrap();
    let mut env = ChannelEnv::new(discard(), true);
    let r = channels::start("console", &s, &mut env).unwrap();
    let rep = deliver(&r, notification(13, vec![slow_query(1, "SELECT 1")])).await;
    assert_eq!((rep.outcome, rep.parts_total), (Ok(()), 1));
}

// ---------------------------------------------------------------------------------------
// Properties of the renderers

/// Pieces that break naive renderers: markdown and WeCom markup, mentions, multi-byte and
/// invisible characters, line breaks.
const NASTY: &[&str] = &[
    "`",
    "``",
    "```",
    "**",
    "*",
    "_",
    "<font color=\"info\">",
    "</font>",
    "<@all>",
    "<",
    ">",
    "> ",
    "- ",
    "# ",
    "|",
    "~",
    "[",
    "](",
    ")",
    "\\",
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    "数据库",
    "慢",
    "🐘",
    "🔥",
    "👩‍💻",
    "é",
    "\u{200b}",
    "\u{202e}",
    "\u{0}",
    "a",
    "SELECT x FROM t",
    "0",
];

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(NASTY), 0..200).prop_map(|v| v.concat()),
    ]
}

fn arb_insight() -> impl Strategy<Value = Insight> {
    (
        arb_text(),
        arb_text(),
        arb_text(),
        arb_text(),
        arb_text(),
        prop::option::of(arb_text()),
        0..3u8,
        prop::collection::btree_map("[a-z_]{1,20}", any::<f64>(), 0..6),
    )
        .prop_map(
            |(title, advice, server, database, sql, qid, sev, metrics)| {
                let mut i = slow_query(0, &sql);
                i.title = title;
                i.advice = advice;
                i.labels.insert("server".into(), server);
                i.labels.insert("database".into(), database);
                match qid {
                    Some(q) => i.labels.insert("queryid".into(), q),
                    None => i.labels.remove("queryid"),
                };
                i.severity = [Severity::Info, Severity::Warning, Severity::Critical][sev as usize];
                i.metrics.extend(metrics);
                i
            },
        )
}

/// How many insight title lines a part holds, by style.
fn insight_lines(style: Style, part: &str) -> usize {
    part.lines()
        .filter(|l| match style {
            Style::Markdown => {
                l.starts_with("<font color=\"")
                    && (l.contains(" CRITICAL</font>")
                        || l.contains(" WARNING</font>")
                        || l.contains(" INFO</font>"))
            }
            Style::MarkdownV2 => l.starts_with("### "),
            Style::Html => l.starts_with("<span style=\"color:") && l.contains("</span> <b>"),
            Style::Text | Style::Plain => {
                l.starts_with("[CRITICAL] ")
                    || l.starts_with("[WARNING] ")
                    || l.starts_with("[INFO] ")
            }
            // Not WeCom's: cards and DingTalk are counted in their own tests.
            Style::LarkMd | Style::Mrkdwn | Style::DingTalk => false,
        })
        .count()
}

proptest! {
    /// Whatever the text: every part fits its byte budget, inline code and font tags are
    /// balanced, and every insight appears exactly once.
    #[test]
    fn parts_fit_their_budget(
        insights in prop::collection::vec(arb_insight(), 1..25),
        budget in 512usize..=4096,
    ) {
        let n = notification(1, insights);
        for style in [Style::Markdown, Style::MarkdownV2, Style::Text] {
            let parts = match style {
                Style::Markdown => render::wecom_markdown(&n, budget),
                Style::MarkdownV2 => render::wecom_markdown_v2(&n, budget),
                _ => render::wecom_text(&n, budget),
            };
            prop_assert!(!parts.is_empty());
            let mut seen = 0;
            for p in &parts {
                prop_assert!(p.len() <= budget, "{:?}: {} > {}", style, p.len(), budget);
                prop_assert!(std::str::from_utf8(p.as_bytes()).is_ok());
                prop_assert!(backticks_balanced(p), "{:?}: {}", style, p);
                if style == Style::Markdown {
                    prop_assert_eq!(p.matches("<font").count(), p.matches("</font>").count());
                }
                if style == Style::MarkdownV2 {
                    // No colours in v2, and user text cannot smuggle tags in.
                    prop_assert!(!p.contains("<font"));
                }
                if style == Style::Text {
                    prop_assert!(!p.contains('`'));
                }
                if parts.len() > 1 {
                    let marker = format!("/{})", parts.len());
                    prop_assert!(p.contains(&marker), "no part marker in {}", p);
                }
                seen += insight_lines(style, p);
            }
            prop_assert_eq!(seen, n.insights.len(), "{:?}", style);
        }
    }

    /// SQL previews are one line, at most the asked number of characters, and safe inside
    /// inline code.
    #[test]
    fn sql_previews_are_bounded(sql in arb_text(), max in 0usize..300) {
        let p = render::sql_preview(&sql, max);
        prop_assert!(p.chars().count() <= max);
        prop_assert!(!p.contains('`') && !p.contains('\n'));
    }
}
