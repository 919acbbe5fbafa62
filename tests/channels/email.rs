//! The email channel against a real SMTP server on loopback (aiosmtpd): STARTTLS or TLS
//! with a throwaway CA, AUTH, refusals, temporary failures; the received message is parsed
//! and its headers and parts checked, through the real `channels::start` →
//! `ChannelActor` path.

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};

use powa_sentinel::actors::channel::DeliveryReport;
use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::{ChannelError, NotifyReason, Severity};
use powa_sentinel::channels;

use crate::channel_kit::{
    deliver, discard, env, fast, hostile, insight, notification, refused_port, settings, LogBuf,
};
use crate::smtp::{Certs, Options, Smtp};

const PASSWORD: &str = "smtp-pa55word-5ecret";

fn table(smtp: &Smtp, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "type": "email",
        "smtp_host": "localhost",
        "smtp_port": smtp.port,
        "from": "PoWA Sentinel <powa@example.org>",
        "to": ["DBA team <dba@example.org>"],
        "cc": ["lead@example.org"],
        "timeout": "5s",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A temporary directory with a throwaway CA and a certificate for `localhost`, and an SMTP
/// server on it: TLS from the first byte when `implicit`, else STARTTLS required; with
/// `login`, AUTH required and only `sentinel` / [`PASSWORD`] accepted.
fn tls_server(implicit: bool, login: bool) -> (tempfile::TempDir, Certs, Smtp) {
    let dir = temp();
    let certs = Certs::make(dir.path());
    let tls = Some(certs.clone());
    let (tls, starttls) = if implicit { (tls, None) } else { (None, tls) };
    let o = Options {
        tls,
        starttls,
        auth: login.then(|| ("sentinel".into(), PASSWORD.into())),
        ..Options::default()
    };
    let smtp = Smtp::start(&dir.path().join("mail"), &o);
    (dir, certs, smtp)
}

/// Starts channel `name` with table `t`, delivers one report with one insight, and gives
/// the delivery report; `deadline` bounds the retries.
async fn send_one(
    name: &str,
    t: serde_json::Value,
    log: slog::Logger,
    deadline: Duration,
) -> DeliveryReport {
    let mut env = env(log, Duration::from_millis(300), fast(deadline));
    let r = channels::start(name, &settings(t), &mut env).unwrap();
    let n = notification(
        1,
        name,
        NotifyReason::Report,
        vec![insight(1, "Top query #1".into(), "SELECT 1")],
        Mentions::default(),
    );
    deliver(&r, n).await
}

/// STARTTLS with an internal CA and a login: one message with a subject that says what
/// matters, the routed on-call address among the recipients, an HTML part in which a
/// hostile query text is only text, and the plain-text part.
#[actix_rt::test]
async fn starttls_login_html_and_text_parts() {
    let (dir, certs, smtp) = tls_server(false, true);
    std::fs::write(dir.path().join("pw"), format!("{PASSWORD}\n")).unwrap();
    let s = settings(table(
        &smtp,
        serde_json::json!({
            "ca_file": certs.ca,
            "username": "sentinel",
            "password_file": dir.path().join("pw"),
        }),
    ));
    let logs = LogBuf::default();
    let mut env = env(
        logs.logger(),
        Duration::from_millis(300),
        fast(Duration::from_secs(20)),
    );
    let r = channels::start("mail", &s, &mut env).unwrap();

    let mut i = insight(
        1,
        "Top query #1 by total time on remote1".into(),
        "SELECT 1",
    );
    i.text = Some("SELECT '<script>alert(1)</script>', '<@all>' FROM t WHERE a < $1".into());
    i.severity = Severity::Critical;
    let mentions = Mentions {
        userids: vec!["zhangsan".into(), "oncall@example.org".into()],
        mobiles: vec!["13800000000".into()],
    };
    let n = notification(
        41,
        "mail",
        NotifyReason::Immediate,
        vec![i, hostile(1)],
        mentions,
    );
    let rep = deliver(&r, n).await;
    assert!(rep.outcome.is_ok(), "{:?}", rep.outcome);
    assert_eq!((rep.parts_total, rep.parts_delivered), (1, 1));

    let got = smtp.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "one email per notification");
    let env_ = &got[0].envelope;
    assert_eq!(env_["tls"], true, "{env_}");
    assert_eq!(env_["authenticated"], true, "{env_}");
    assert_eq!(env_["mail_from"], "powa@example.org");
    let rcpt: Vec<&str> = env_["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["dba@example.org", "lead@example.org", "oncall@example.org"] {
        assert!(rcpt.contains(&want), "{want} not among {rcpt:?}");
    }
    assert_eq!(
        rcpt.len(),
        3,
        "zhangsan and the mobile are for chat: {rcpt:?}"
    );

    let m = MessageParser::default().parse(&got[0].raw).unwrap();
    let subject = m.subject().unwrap();
    assert!(
        subject.starts_with("PoWA Sentinel alert: 1 critical, 1 "),
        "{subject}"
    );
    assert!(subject.contains("Top query #1"), "{subject}");
    assert!(subject.ends_with("(+1)"), "{subject}");
    assert_eq!(m.message_id(), Some("powa-sentinel.mail.41@example.org"));
    let from = m.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("PoWA Sentinel"));
    let ct = m.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );

    let text = m.body_text(0).unwrap();
    assert!(text.starts_with("PoWA Sentinel alert"), "{text}");
    assert!(text.contains("[CRITICAL] Top query #1"), "{text}");
    assert!(
        text.contains("<script>alert(1)</script>"),
        "plain text as is: {text}"
    );

    let html = m.body_html(0).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    for want in [
        "<b>Top query #1 by total time on remote1</b>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ] {
        assert!(html.contains(want), "{want} not in {html}");
    }
    // Hostile markup stays text.
    for never in ["<script>", "<@all>", "<font"] {
        assert!(!html.contains(never), "{never} in {html}");
    }

    let all = format!("{} {:?}", logs.text(), s);
    assert!(!all.contains(PASSWORD), "{all}");
}

/// `tls = "tls"`: TLS from the first byte; `format = "text"`: one plain-text part.
#[actix_rt::test]
async fn implicit_tls_and_plain_text_only() {
    let (_dir, certs, smtp) = tls_server(true, false);
    let t = table(
        &smtp,
        serde_json::json!({"tls": "tls", "ca_file": certs.ca, "format": "text"}),
    );
    let rep = send_one("mail", t, discard(), Duration::from_secs(20)).await;
    assert!(rep.outcome.is_ok(), "{:?}", rep.outcome);
    let got = smtp.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].envelope["tls"], true);
    let m = MessageParser::default().parse(&got[0].raw).unwrap();
    let ct = m.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
    assert!(m.body_html(0).is_none_or(|h| !h.contains("<b>")));
    assert!(m
        .subject()
        .unwrap()
        .starts_with("PoWA Sentinel report: 1 warning"));
}

/// A greylisting server (451 twice): retried, then delivered once.
#[actix_rt::test]
async fn temporary_refusals_are_retried() {
    let dir = temp();
    let smtp = Smtp::start(
        &dir.path().join("mail"),
        &Options {
            tempfail: 2,
            ..Options::default()
        },
    );
    let t = table(
        &smtp,
        serde_json::json!({"smtp_host": "127.0.0.1", "tls": "none"}),
    );
    let rep = send_one("mail", t, discard(), Duration::from_secs(20)).await;
    assert!(rep.outcome.is_ok(), "{:?}", rep.outcome);
    assert_eq!(rep.attempts, 3, "{rep:?}");
    assert_eq!(smtp.wait_for(1, Duration::from_secs(5)).len(), 1);
}

/// What a person must fix is permanent, says what to check, and never quotes the
/// password: a refused login, an unknown recipient, a certificate of an unknown CA, a
/// server that does not offer STARTTLS. A server that is down is retried.
#[actix_rt::test]
async fn refusals_are_permanent_and_say_what_to_fix() {
    let dir = temp();
    let certs = Certs::make(dir.path());
    let auth = Smtp::start(
        &dir.path().join("auth"),
        &Options {
            starttls: Some(certs.clone()),
            auth: Some(("sentinel".into(), "the-right-one".into())),
            refuse_rcpt: Some("dba@example.org".into()),
            ..Options::default()
        },
    );
    let plain = Smtp::start(&dir.path().join("plain"), &Options::default());
    let logs = LogBuf::default();
    let deadline = Duration::from_secs(3);
    let cases = [
        (
            table(
                &auth,
                serde_json::json!({"ca_file": certs.ca, "username": "sentinel", "password": PASSWORD}),
            ),
            "535",
        ),
        (
            table(
                &auth,
                serde_json::json!({"ca_file": certs.ca, "username": "sentinel",
                                   "password": "the-right-one"}),
            ),
            "550",
        ),
        (
            table(
                &auth,
                serde_json::json!({"ca_file": certs.other_ca, "username": "sentinel",
                                   "password": PASSWORD}),
            ),
            "ca_file",
        ),
        (table(&plain, serde_json::json!({})), "tls"),
    ];
    for (k, (t, word)) in cases.into_iter().enumerate() {
        let rep = send_one(&format!("m{k}"), t, logs.logger(), deadline).await;
        match &rep.outcome {
            Err(ChannelError::Permanent { reason }) => {
                assert!(reason.contains(word), "case {k}: {word:?} not in {reason}");
                assert!(!reason.contains(PASSWORD), "{reason}");
            }
            other => panic!("case {k}: not permanent: {other:?}"),
        }
        assert_eq!(rep.attempts, 1, "case {k}: not retried");
    }
    assert!(auth.received().is_empty() && plain.received().is_empty());
    assert!(!logs.text().contains(PASSWORD), "{}", logs.text());

    // Nobody listening: retried until the deadline, then reported as temporary.
    let port = refused_port();
    let down = serde_json::json!({"type": "email", "smtp_host": "127.0.0.1", "smtp_port": port,
        "tls": "none", "from": "powa@example.org", "to": ["dba@example.org"]});
    let rep = send_one("down", down, logs.logger(), Duration::from_secs(1)).await;
    assert!(
        matches!(rep.outcome, Err(ChannelError::Retryable { .. })),
        "{:?}",
        rep.outcome
    );
    assert!(rep.attempts > 1, "{rep:?}");
}

/// A channel env whose chart source has no repository: the insights carry their trends
/// (as [`crate::charts`] makes them).
fn env_with_charts() -> powa_sentinel::channels::ChannelEnv {
    let trends = powa_sentinel::chart::enrich::TrendSource::new(
        Default::default(),
        Duration::from_secs(7 * 86400),
        1,
        discard(),
    );
    env(
        discard(),
        Duration::from_millis(300),
        fast(Duration::from_secs(20)),
    )
    .with_trends(Some(std::sync::Arc::new(trends)))
}

/// The charts of the charted insights go inline: the received message is
/// `multipart/alternative` of the text and a `multipart/related` of the HTML and one
/// `image/png` per chart, each image's Content-ID referred to by a `cid:` in the HTML
/// right after the entry of its insight, its bytes a PNG of the chart's size; the text
/// part is the report alone. `charts = false` sends no image.
#[actix_rt::test]
async fn charts_go_inline_after_their_entries() {
    use mail_parser::PartType;
    let dir = temp();
    let smtp = Smtp::start(&dir.path().join("mail"), &Options::default());
    let plain = serde_json::json!({"smtp_host": "127.0.0.1", "tls": "none"});
    let mut env = env_with_charts();
    let r = channels::start("mail", &settings(table(&smtp, plain.clone())), &mut env).unwrap();
    let insights = vec![
        crate::charts::regression(1, Severity::Critical),
        insight(3, "Top query #3".into(), "SELECT 3"),
        crate::charts::regression(2, Severity::Warning),
    ];
    let n = notification(
        5,
        "mail",
        NotifyReason::Report,
        insights.clone(),
        Mentions::default(),
    );
    let rep = deliver(&r, n).await;
    assert!(rep.outcome.is_ok(), "{:?}", rep.outcome);
    let got = smtp.wait_for(1, Duration::from_secs(5));
    let m = MessageParser::default().parse(&got[0].raw).unwrap();
    let ct = m.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );

    let related = m
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "multipart" && c.subtype() == Some("related"))
        })
        .expect("a multipart/related part");
    let PartType::Multipart(children) = &related.body else {
        panic!("related is not a multipart");
    };
    let children: Vec<_> = children.iter().map(|&k| &m.parts[k as usize]).collect();
    let PartType::Html(html) = &children[0].body else {
        panic!("the related part starts with the HTML: {:?}", children[0]);
    };
    let images: Vec<_> = children[1..].iter().collect();
    assert_eq!(images.len(), 2, "one image per charted insight");
    let mut at = Vec::new();
    for img in &images {
        let c = img.content_type().unwrap();
        assert_eq!((c.ctype(), c.subtype()), ("image", Some("png")));
        let cid = img.content_id().expect("a Content-ID");
        let cid = cid.trim_start_matches('<').trim_end_matches('>');
        let reference = format!("src=\"cid:{cid}\"");
        let pos = html
            .find(&reference)
            .unwrap_or_else(|| panic!("{reference} not in {html}"));
        at.push(pos);
        let decoder = png::Decoder::new(std::io::Cursor::new(img.contents()));
        let info = decoder.read_info().expect("the bytes are a PNG");
        assert_eq!(
            (info.info().width, info.info().height),
            (powa_sentinel::chart::WIDTH, powa_sentinel::chart::HEIGHT)
        );
    }
    assert_eq!(html.matches("src=\"cid:").count(), 2, "{html}");
    // Each right after the entry of its insight, before the next entry.
    let title = |q: &str| html.find(q).unwrap_or_else(|| panic!("{q} not in {html}"));
    let (r1, r2, q3) = (
        title("Regression of query #1"),
        title("Regression of query #2"),
        title("Top query #3"),
    );
    let (i1, i2) = (at[0].min(at[1]), at[0].max(at[1]));
    assert!(r1 < i1 && i1 < r2.min(q3), "{html}");
    assert!(r2 < i2 && (q3 < r2 || i2 < q3), "{html}");
    let text = m.body_text(0).unwrap();
    assert!(
        !text.contains("cid:") && text.contains("Regression of query #1"),
        "{text}"
    );

    // charts = false: the alternative of text and HTML alone.
    let mut off = plain.clone();
    off["charts"] = false.into();
    let r = channels::start("mail2", &settings(table(&smtp, off)), &mut env).unwrap();
    let n = notification(
        6,
        "mail2",
        NotifyReason::Report,
        insights,
        Mentions::default(),
    );
    assert!(deliver(&r, n).await.outcome.is_ok());
    let got = smtp.wait_for(2, Duration::from_secs(5));
    let m = MessageParser::default().parse(&got[1].raw).unwrap();
    assert!(m
        .parts
        .iter()
        .all(|p| p.content_type().is_none_or(|c| c.ctype() != "image")));
    assert!(!m.body_html(0).unwrap().contains("cid:"));
}
