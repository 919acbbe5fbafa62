//! Trend charts on a WeCom robot: image messages checked by the fake robot as WeCom checks
//! them, each chart right after the message that tells its insight, and a burst with
//! charts that never exceeds the robot's 20 messages per window (the digest drops the
//! charts first and says so).
//!
//! The trends here are made up (the insights carry them already, so nothing is read from
//! PoWA); `tests/analyzers/charts.rs` draws them from the real lab.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};

use powa_sentinel::actors::channel::{Deliver, RetryPolicy};
use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::{
    Insight, Notification, NotifyReason, Severity, Trend, TrendPoint, TrendSeries,
};
use powa_sentinel::channels::{self, ChannelEnv};
use powa_sentinel::chart::enrich::TrendSource;

use crate::channel_kit::{self, discard};
use crate::fake_wecom::{FakeConfig, FakeWeCom, IMAGE_LIMIT};

const KEY: &str = "robot-key-for-charts";
const WINDOW: Duration = Duration::from_secs(3);

/// Posts `body` to the fake robot; its errcode.
async fn post(fake: &FakeWeCom, body: String) -> i64 {
    let mut r = awc::Client::new()
        .post(fake.webhook_url(KEY))
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .expect("the fake answers");
    assert_eq!(r.status(), 200, "WeCom answers errors with HTTP 200");
    let v: serde_json::Value = r.json().await.expect("a JSON answer");
    v["errcode"].as_i64().expect("an errcode")
}

fn image(b64: &str, md5: &str) -> String {
    serde_json::json!({"msgtype": "image", "image": {"base64": b64, "md5": md5}}).to_string()
}

fn png_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, 2, 2);
    e.set_color(png::ColorType::Rgb);
    let mut w = e.write_header().unwrap();
    w.write_image_data(&[255; 12]).unwrap();
    drop(w);
    out
}

/// What the fake robot answers an image message, case by case, as WeCom would.
#[actix_rt::test]
async fn image_messages_are_checked_like_wecom() {
    use base64::Engine as _;
    use md5::Digest as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let md5 = |b: &[u8]| hex::encode(md5::Md5::digest(b));
    let fake = FakeWeCom::start_with(FakeConfig::new(&[KEY]).with_window(100, WINDOW)).unwrap();
    let png = png_bytes();

    // The body the channel builds is accepted, and the fake keeps the decoded bytes.
    assert_eq!(post(&fake, channels::wecom::image_body(&png)).await, 0);
    let m = &fake.messages(KEY)[0];
    assert_eq!(
        (m.msgtype.as_str(), m.image.as_deref()),
        ("image", Some(&png[..]))
    );
    // A JPEG is as good.
    let jpeg = [0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F'];
    assert_eq!(post(&fake, image(&b64(&jpeg), &md5(&jpeg))).await, 0);

    // md5 of something else: 301019 (media md5 not match).
    assert_eq!(post(&fake, image(&b64(&png), &md5(b"other"))).await, 301019);
    // md5 of the base64 text rather than of the bytes: the classic mistake.
    assert_eq!(
        post(&fake, image(&b64(&png), &md5(b64(&png).as_bytes()))).await,
        301019
    );
    // Not base64, or a field missing: 40058.
    assert_eq!(
        post(&fake, image("%%% not base64", &md5(&png))).await,
        40058
    );
    let no_md5 = serde_json::json!({"msgtype": "image", "image": {"base64": b64(&png)}});
    assert_eq!(post(&fake, no_md5.to_string()).await, 40058);
    // Over 2 MB before encoding: 40009, even with a right md5.
    let mut big = png.clone();
    big.resize(IMAGE_LIMIT + 1, 0);
    assert_eq!(post(&fake, image(&b64(&big), &md5(&big))).await, 40009);
    // Exactly 2 MB is fine.
    big.truncate(IMAGE_LIMIT);
    assert_eq!(post(&fake, image(&b64(&big), &md5(&big))).await, 0);
    // A GIF: 40005 (invalid media type).
    let gif = b"GIF89a\x01\x00\x01\x00".to_vec();
    assert_eq!(post(&fake, image(&b64(&gif), &md5(&gif))).await, 40005);

    let codes: Vec<i64> = fake.rejected().iter().map(|r| r.errcode).collect();
    assert_eq!(codes, [301019, 301019, 40058, 40058, 40009, 40005]);
    assert_eq!(fake.messages(KEY).len(), 3);
    fake.stop().await;
}

/// A regression about query `q` on remote1/app with a made-up trend: 12 snapshots, the
/// mean time per call 1 ms in the baseline and 1 then 8 ms in the window.
pub(crate) fn regression(q: usize, severity: Severity) -> Insight {
    let mut i = channel_kit::insight(
        q,
        format!("Regression of query #{q}"),
        &format!("SELECT {q} FROM t"),
    );
    i.kind = "regression".into();
    i.rule = "regression.mean_time".into();
    i.severity = severity;
    i.labels.extend([
        ("repository".to_string(), "main".to_string()),
        ("queryid".to_string(), format!("-{}", 1_000_000 + q)),
    ]);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    let series = |offset_h: i64, mean: &dyn Fn(i64) -> f64| {
        let start = t0 - TimeDelta::hours(offset_h);
        TrendSeries {
            offset_secs: offset_h * 3600,
            start,
            end: start + TimeDelta::hours(1),
            points: (1..=12)
                .map(|k| TrendPoint {
                    at: start + TimeDelta::minutes(5 * k),
                    calls: 60.0,
                    mean_time_ms: mean(k),
                })
                .collect(),
        }
    };
    i.trend = Some(Trend {
        series: vec![
            series(0, &|k| if k > 6 { 8.0 } else { 1.0 }),
            series(24 * 7, &|_| 1.0),
        ],
    });
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

/// A channel env whose chart source has no repository: the insights carry their trends.
fn env() -> ChannelEnv {
    let trends = TrendSource::new(
        Default::default(),
        Duration::from_secs(7 * 86400),
        1,
        discard(),
    );
    channel_kit::env(
        discard(),
        WINDOW,
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(30),
        },
    )
    .with_trends(Some(Arc::new(trends)))
}

fn wecom(fake: &FakeWeCom, extra: serde_json::Value) -> channels::ChannelSettings {
    channel_kit::settings(channel_kit::with(
        serde_json::json!({"type": "wecom", "key": KEY, "base_url": fake.url()}),
        extra,
    ))
}

/// Each chart follows the message telling its insight, decodes as the chart of its size,
/// and `charts = false` sends the text alone.
#[actix_rt::test]
async fn charts_follow_their_insights_and_can_be_turned_off() {
    let fake = FakeWeCom::start_with(FakeConfig::new(&[KEY]).with_window(20, WINDOW)).unwrap();
    let mut env = env();
    let r = channels::start("ops", &wecom(&fake, serde_json::json!({})), &mut env).unwrap();
    let n = notification(
        1,
        vec![
            regression(1, Severity::Warning),
            regression(2, Severity::Info),
        ],
    );
    let rep = r.send(Deliver(n)).await.unwrap();
    assert_eq!(rep.outcome, Ok(()), "{rep:?}");
    let msgs = fake.messages(KEY);
    let kinds: Vec<&str> = msgs.iter().map(|m| m.msgtype.as_str()).collect();
    assert_eq!(kinds, ["markdown", "image", "image"], "{msgs:#?}");
    for m in &msgs[1..] {
        let png = m.image.as_ref().unwrap();
        let info = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        assert_eq!(
            (info.info().width, info.info().height),
            (powa_sentinel::chart::WIDTH, powa_sentinel::chart::HEIGHT)
        );
        assert!(png.len() < 300_000, "{} bytes", png.len());
    }
    // The two charts differ: each names its own query.
    assert_ne!(msgs[1].image, msgs[2].image);

    let fake2 = FakeWeCom::start_with(FakeConfig::new(&[KEY]).with_window(20, WINDOW)).unwrap();
    let off = channels::start(
        "quiet",
        &wecom(&fake2, serde_json::json!({"charts": false})),
        &mut env,
    )
    .unwrap();
    let n = notification(2, vec![regression(1, Severity::Warning)]);
    assert_eq!(off.send(Deliver(n)).await.unwrap().outcome, Ok(()));
    let kinds: Vec<String> = fake2.messages(KEY).into_iter().map(|m| m.msgtype).collect();
    assert_eq!(kinds, ["markdown"]);
    fake.stop().await;
    fake2.stop().await;
}

/// A critical insight's text is never held back by charts: the charts of the messages
/// telling critical insights wait until after the last of those messages.
#[test]
fn charts_wait_for_the_last_critical_text() {
    let long = "SELECT a, b, c FROM some_table WHERE x = $1 ".repeat(60);
    let mut v: Vec<Insight> = (0..40)
        .map(|k| {
            let mut i = regression(k, Severity::Critical);
            i.text = Some(long.clone());
            if k >= 5 {
                // Critical texts without a chart of their own.
                i.kind = "missing_index".into();
            }
            i
        })
        .collect();
    v.push(regression(99, Severity::Warning));
    let n = notification(3, v);
    let opts = Default::default();
    let charts = channels::wecom::charts_of(&n, &opts);
    assert_eq!(charts.len(), 5);
    let kinds = |bodies: &[String]| -> Vec<String> {
        bodies
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["msgtype"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let bodies =
        channels::wecom::bodies_with_charts(&n, channels::MsgType::Markdown, &opts, None, &charts);
    let k = kinds(&bodies);
    let last_critical = bodies.iter().rposition(|b| b.contains("CRITICAL")).unwrap();
    assert!(
        last_critical > 0,
        "several parts tell critical entries: {k:?}"
    );
    let first_image = k.iter().position(|x| x == "image").unwrap();
    assert_eq!(first_image, last_critical + 1, "{k:?}");
    assert_eq!(k.iter().filter(|x| *x == "image").count(), 5);

    // A digest in 3 messages: the text first, charts only in what is left, and it says
    // how many it left out.
    let digest = channels::wecom::bodies_with_charts(
        &n,
        channels::MsgType::Markdown,
        &opts,
        Some(3),
        &charts,
    );
    let k = kinds(&digest);
    assert!(digest.len() <= 3, "{k:?}");
    let images = k.iter().filter(|x| *x == "image").count();
    let texts = digest.len() - images;
    assert!(texts >= 1 && images == 3 - texts, "{k:?}");
    assert!(
        digest[0].contains(&format!(
            "Charts: {} left out to stay within the robot's 20 messages per minute.",
            5 - images
        )),
        "{}",
        digest[0]
    );
    // With room for everything a digest keeps every chart and says nothing of them.
    let roomy = channels::wecom::bodies_with_charts(
        &n,
        channels::MsgType::Markdown,
        &opts,
        Some(19),
        &charts,
    );
    assert_eq!(kinds(&roomy).iter().filter(|x| *x == "image").count(), 5);
    assert!(!roomy[0].contains("left out"));
}

/// More notifications with charts than the robot's quota carries: never more than 20
/// accepted in any window, none refused, every insight represented.
#[actix_rt::test]
async fn a_burst_with_charts_stays_within_the_quota() {
    let fake = FakeWeCom::start_with(FakeConfig::new(&[KEY]).with_window(20, WINDOW)).unwrap();
    let mut env = env();
    let r = channels::start("ops", &wecom(&fake, serde_json::json!({})), &mut env).unwrap();
    // 10 notifications of 2 regressions each: 10 texts and 20 charts asked for.
    let sends: Vec<_> = (0..10)
        .map(|k| {
            r.send(Deliver(notification(
                100 + k as u64,
                vec![
                    regression(2 * k, Severity::Warning),
                    regression(2 * k + 1, Severity::Warning),
                ],
            )))
        })
        .collect();
    for rep in futures_util::future::join_all(sends).await {
        let rep = rep.unwrap();
        assert_eq!(rep.outcome, Ok(()), "{rep:?}");
    }
    assert!(fake.rejected().is_empty(), "{:?}", fake.rejected());
    assert!(fake.max_accepted_in_window(KEY) <= 20);
    let msgs = fake.messages(KEY);
    let images = msgs.iter().filter(|m| m.msgtype == "image").count();
    // Charts went too, fewer than asked for: a digest carries at most five.
    assert!((1..20).contains(&images), "{images} charts");
    let texts: String = msgs
        .iter()
        .filter(|m| m.msgtype != "image")
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let shown = (0..20)
        .filter(|k| texts.contains(&format!("Regression of query #{k}**")))
        .count();
    let counted = crate::fake_wecom::counted_in_digests(&texts);
    assert!(shown + counted >= 20, "{shown} + {counted}:\n{texts}");
    fake.stop().await;
}
