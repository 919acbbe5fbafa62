//! Golden files of what people receive: the same realistic report (insights as the
//! analyzers produced them on the PoWA lab, `tests/golden/insights.jsonl`) rendered for
//! every channel, in English and Chinese, through each channel's own body builder, and
//! compared with `tests/golden/<channel>.<lang>.txt`.
//!
//! After a deliberate change of wording or layout, regenerate them and read the diff:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test render golden
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::Value;

use powa_sentinel::actors::message::Mentions;
use powa_sentinel::actors::{Insight, Notification, NotifyReason};
use powa_sentinel::channels::{dingtalk, feishu, slack, wecom};
use powa_sentinel::render::{self, Lang, RenderOptions};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn report() -> Notification {
    let text = std::fs::read_to_string(golden_dir().join("insights.jsonl")).unwrap();
    let insights: Vec<Insight> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    Notification {
        id: 1,
        channel: "ops".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(insights),
        created_at: Utc.with_ymd_and_hms(2026, 12, 1, 23, 30, 0).unwrap(),
        mentions: Mentions::default(),
    }
}

fn opts(lang: Lang) -> RenderOptions {
    RenderOptions {
        lang,
        powa_web: [("lab".to_string(), "https://powa.example.com".to_string())].into(),
        ..RenderOptions::default()
    }
}

/// The parts as a person reads them: each message's text, with its size (of a card or
/// a Block Kit message: its transcript's).
fn transcript(parts: &[String], limit: usize) -> String {
    let mut out = String::new();
    for (k, p) in parts.iter().enumerate() {
        assert!(
            p.len() <= limit,
            "part {} is {} bytes > {limit}",
            k + 1,
            p.len()
        );
        out.push_str(&format!("--- message {} ({} bytes) ---\n", k + 1, p.len()));
        out.push_str(p);
        if !p.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn content(body: &str, pointer: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {body}"))
        .to_string()
}

/// Every channel's rendering of `n`, by golden file name.
fn renderings(n: &Notification, lang: Lang) -> Vec<(String, String)> {
    let o = opts(lang);
    let mut out = vec![(
        "console".to_string(),
        transcript(&[render::plain_report_with(n, &o)], usize::MAX),
    )];
    for m in [
        wecom::MsgType::Markdown,
        wecom::MsgType::MarkdownV2,
        wecom::MsgType::Text,
    ] {
        let parts: Vec<String> = wecom::bodies(n, m, &o, None)
            .iter()
            .map(|b| content(b, &format!("/{}/content", m.as_str())))
            .collect();
        out.push((
            format!("wecom-{}", m.as_str()),
            transcript(&parts, m.limit()),
        ));
    }
    let parts: Vec<String> = feishu::parts(n, &o, None)
        .iter()
        .map(|p| content(&p.body.to_string(), "/content/text"))
        .collect();
    out.push(("feishu".to_string(), transcript(&parts, 30_000)));
    let parts: Vec<String> = dingtalk::parts(n, &o, None)
        .iter()
        .map(|p| content(&p.body, "/markdown/text"))
        .collect();
    out.push(("dingtalk".to_string(), transcript(&parts, 20_000)));
    let parts: Vec<String> = slack::parts(n, &o, None)
        .iter()
        .map(|p| content(&p.body, "/text"))
        .collect();
    out.push(("slack".to_string(), transcript(&parts, 40_000)));
    let cards: Vec<String> = feishu::card_parts(n, &o, None)
        .iter()
        .map(|p| card_transcript(&p.body))
        .collect();
    out.push((
        "feishu-card".to_string(),
        transcript(&cards, feishu::BODY_BUDGET),
    ));
    let blocks: Vec<String> = slack::block_parts(n, &o, None)
        .iter()
        .map(|p| blocks_transcript(&serde_json::from_str(&p.body).unwrap()))
        .collect();
    out.push((
        "slack-blocks".to_string(),
        transcript(&blocks, slack::BODY_BUDGET),
    ));
    out
}

/// A Feishu card as a person reads it: the header and its colour, each element's text,
/// its buttons.
fn card_transcript(body: &Value) -> String {
    let card = &body["card"];
    let mut out = format!(
        "[header {}] {}\n",
        card["header"]["template"].as_str().unwrap(),
        card["header"]["title"]["content"].as_str().unwrap()
    );
    for e in card["elements"].as_array().unwrap() {
        match e["tag"].as_str().unwrap() {
            "div" => out.push_str(&format!(
                "[div]\n{}\n",
                e["text"]["content"].as_str().unwrap()
            )),
            "action" => {
                let labels: Vec<&str> = e["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["text"]["content"].as_str().unwrap())
                    .collect();
                out.push_str(&format!("[buttons] {}\n", labels.join(" | ")));
            }
            other => out.push_str(&format!("[{other}]\n")),
        }
    }
    out
}

/// A Slack Block Kit message as a person reads it: each block's text, the buttons, the
/// fallback text.
fn blocks_transcript(body: &Value) -> String {
    let mut out = String::new();
    for b in body["blocks"].as_array().unwrap() {
        match b["type"].as_str().unwrap() {
            "actions" => {
                let labels: Vec<&str> = b["elements"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["text"]["text"].as_str().unwrap())
                    .collect();
                out.push_str(&format!("[actions] {}\n", labels.join(" | ")));
            }
            t => out.push_str(&format!("[{t}]\n{}\n", b["text"]["text"].as_str().unwrap())),
        }
    }
    out.push_str(&format!(
        "[fallback text]\n{}\n",
        body["text"].as_str().unwrap()
    ));
    out
}

#[test]
fn every_channel_matches_its_golden_file() {
    let n = report();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failed = Vec::new();
    for lang in [Lang::En, Lang::Zh] {
        let tag = match lang {
            Lang::En => "en",
            Lang::Zh => "zh",
        };
        for (name, got) in renderings(&n, lang) {
            let path = golden_dir().join(format!("{name}.{tag}.txt"));
            if update {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                failed.push(format!(
                    "{} differs (UPDATE_GOLDEN=1 to accept):\n{got}",
                    path.display()
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// What the golden report must say, whatever its wording: each problem once, conclusion
/// first, no internal field names.
#[test]
fn the_golden_report_tells_each_problem_once_without_internal_names() {
    let n = report();
    for lang in [Lang::En, Lang::Zh] {
        for (name, got) in renderings(&n, lang) {
            for internal in [
                "magnitude",
                "baselines present",
                "baselines used",
                "baseline mean time spread",
                "Metrics:",
                "rows filtered per execution",
                "filter ratio",
                "shared blks",
                "kcache",
            ] {
                assert!(
                    !got.contains(internal),
                    "{name} {lang:?}: {internal}\n{got}"
                );
            }
            // The missing index behind the regression is told with it, once.
            let ddl = "CREATE INDEX CONCURRENTLY ON public.orders USING btree (created_at)";
            assert_eq!(got.matches(ddl).count(), 1, "{name} {lang:?}\n{got}");
        }
    }
}
