//! The action links of a message, clicked through the real HTTP endpoint: a link opens a
//! page and changes nothing; its button acknowledges (the gate stops repeating the
//! finding, and the message of its resolution says who acknowledged it) or snoozes (a
//! silence with who and why, that the gate honours); a forged or expired link changes
//! nothing. The gate, the store and the server are the daemon's own, on one state dir.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use powa_sentinel::actions::page::Pages;
use powa_sentinel::actions::{self, Action, Links};
use powa_sentinel::gate::store::Store;
use powa_sentinel::gate::{Gate, GateSettings};
use powa_sentinel::http::{self, HttpSettings, StatusBoard};
use powa_sentinel::render::{self, RenderOptions, Style};
use sentinel_actors::gate::{Decide, Insights, Outgoing};
use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Fingerprint, Insight, Notification, Severity};

use crate::support::sample;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn insight(fp: u64) -> Insight {
    let labels = [
        ("repository", "main"),
        ("server", "db1"),
        ("database", "app"),
    ];
    Insight {
        severity: Severity::Warning,
        title: "Top query #1 by total time on db1 <b>x</b>".into(),
        text: Some("SELECT 1".into()),
        ..sample::slow_query(fp, t("2026-03-02T00:00:00Z"), &labels)
    }
}

fn report(at: DateTime<Utc>, insights: Vec<Insight>) -> Insights {
    let (analyzer, source) = ("slow_queries".into(), "main/db1".into());
    Insights {
        analyzer,
        source,
        seq: 1,
        at,
        insights,
    }
}

fn notification(o: &Outgoing) -> Notification {
    Notification {
        id: o.id,
        channel: o.channel.clone(),
        reason: o.reason,
        insights: Arc::new(o.insights.clone()),
        created_at: o.created_at,
        mentions: o.mentions.clone(),
    }
}

/// The URL of the link labelled `label` in a WeCom markdown message.
fn link(md: &str, label: &str) -> String {
    let start = md
        .find(&format!("[{label}]("))
        .unwrap_or_else(|| panic!("no {label} link in\n{md}"))
        + label.len()
        + 3;
    md[start..start + md[start..].find(')').unwrap()].to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Site {
    base: String,
    links: Arc<Links>,
    client: awc::Client,
}

impl Site {
    async fn get(&self, url: &str) -> (u16, String) {
        let mut r = self.client.get(url).send().await.unwrap();
        let body = r.body().await.unwrap();
        (
            r.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut r = self.client.post(url).send_form(&form).await.unwrap();
        let body = r.body().await.unwrap();
        (
            r.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

fn start_site(dir: &std::path::Path) -> Site {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let settings = HttpSettings {
        listen: format!("127.0.0.1:{port}"),
        public_url: Some(base.clone()),
        ..HttpSettings::default()
    };
    let links = actions::from_settings(&settings, Some(dir))
        .unwrap()
        .unwrap();
    let pages = Pages::new(Arc::clone(&links), dir.to_path_buf());
    http::start(
        &settings,
        StatusBoard::default(),
        Some(pages),
        Some(powa_sentinel::gate::store::Location::dir(dir)),
        Default::default(),
    )
    .unwrap();
    Site {
        base,
        links,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
    }
}

/// A state directory, the daemon's gate on it (one channel, `ops`) and its HTTP endpoint
/// with action links.
fn rig() -> (tempfile::TempDir, Gate, Site) {
    let dir = tempfile::tempdir().unwrap();
    let discard = slog::Logger::root(slog::Discard, slog::o!());
    let chans = vec!["ops".to_string()];
    let settings = GateSettings::default();
    let gate = Gate::new(&settings, &[], &chans, &[], Some(dir.path()), discard).unwrap();
    let site = start_site(dir.path());
    (dir, gate, site)
}

#[actix_rt::test]
async fn a_link_acknowledges_and_the_resolution_says_who() {
    let _turn = crate::support::turn(module_path!());
    let (dir, mut gate, site) = rig();
    let opts = RenderOptions {
        actions: Some(Arc::clone(&site.links)),
        ..RenderOptions::default()
    };

    // Data time near now, as in a running daemon: links expire from the message's time.
    let t0 = Utc::now() - chrono::Duration::hours(1);
    let at = |min: i64| t0 + chrono::Duration::minutes(min);
    gate.observe(report(at(0), vec![insight(7)]));
    let out = gate.flush(at(1));
    assert_eq!(out[0].insights[0].status, Some(Lifecycle::New));
    let md = render::render(&notification(&out[0]), Style::Markdown, 4000, &opts).remove(0);
    let ack = link(&md, "Acknowledge");
    assert!(ack.starts_with(&format!("{}/a/", site.base)), "{ack}");
    assert!(md.contains("[Full report]("), "{md}");

    // Opening the link (as a chat app's preview does) changes nothing.
    let (status, page) = site.get(&ack).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Acknowledge this finding?"), "{page}");
    assert!(
        page.contains("Top query #1 by total time on db1 &lt;b&gt;x&lt;/b&gt;"),
        "{page}"
    );
    assert!(page.contains("<form method=\"post\">"), "{page}");
    let store = Store::open(dir.path()).unwrap();
    assert!(store.acks().unwrap().is_empty(), "a GET acknowledged");

    // A forged link and an expired one are refused, and change nothing.
    let mut forged = ack.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, page) = site.post(&forged, &[("who", "mallory")]).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Nothing was changed"), "{page}");
    let old = site.links.url(
        Action::Ack,
        Fingerprint(7),
        Utc::now() - chrono::Duration::days(8),
    );
    let (status, page) = site.post(&old, &[("who", "mallory")]).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert!(store.acks().unwrap().is_empty());

    // The button acknowledges.
    let (status, page) = site
        .post(&ack, &[("who", "alice"), ("why", "index on the way")])
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Acknowledged by alice"), "{page}");
    let acks = store.acks().unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(
        (acks[0].by.as_str(), acks[0].note.as_deref()),
        ("alice", Some("index on the way"))
    );
    let (_, status_json) = site.get(&format!("{}/status", site.base)).await;
    assert!(
        status_json.contains("\"acknowledged\"") && status_json.contains("alice"),
        "{status_json}"
    );

    // A day later the repeat is due: quiet, it is acknowledged.
    gate.observe(report(t("2026-03-03T00:10:00Z"), vec![insight(7)]));
    assert!(
        gate.flush(t("2026-03-03T00:11:00Z")).is_empty(),
        "repeated although acknowledged"
    );

    // It resolves: the message says who acknowledged it, and the acknowledgement ends.
    gate.observe(report(at(26 * 60), vec![]));
    let out = gate.flush(at(26 * 60 + 1));
    assert_eq!(out[0].insights[0].status, Some(Lifecycle::Resolved));
    let text = render::plain_report_with(&notification(&out[0]), &opts);
    assert!(text.contains("Acknowledged by alice at 20"), "{text}");
    assert!(
        !text.contains("Acknowledge:") && !text.contains("Snooze:"),
        "no action links on a resolved entry: {text}"
    );
    assert!(
        store.acks().unwrap().is_empty(),
        "the acknowledgement ended"
    );
}

#[actix_rt::test]
async fn a_link_snoozes_and_the_gate_honours_it() {
    let _turn = crate::support::turn(module_path!());
    let (dir, mut gate, site) = rig();

    // A snooze link made now (the page works on the clock), for a finding the gate knows.
    let snooze = site.links.url(Action::Snooze, Fingerprint(9), Utc::now());
    let (status, page) = site.get(&snooze).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("value=\"1d\" checked"), "{page}");
    let (status, page) = site.post(&snooze, &[("who", "bob"), ("for", "7d")]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Snoozed until"), "{page}");
    let silences = Store::open(dir.path()).unwrap().silences().unwrap();
    assert_eq!(silences.len(), 1);
    let s = &silences[0];
    assert_eq!(s.fingerprint, Some(Fingerprint(9)));
    assert_eq!(s.author, "bob");
    assert!(s.reason.contains("snoozed for 7d"), "{}", s.reason);
    let days = (s.ends_at - s.starts_at).num_hours();
    assert_eq!(days, 7 * 24);

    // The gate swallows the finding while the snooze lasts; the other one goes.
    let now = Utc::now();
    gate.observe(report(now, vec![insight(9), insight(10)]));
    let out = gate.flush(now + chrono::Duration::minutes(1));
    let told: Vec<u64> = out
        .iter()
        .flat_map(|o| o.insights.iter().map(|i| i.fingerprint.0))
        .collect();
    assert_eq!(told, [10], "{out:?}");

    // The report page lists what fires now, with links of its own.
    let all = site.links.url(Action::Report, Fingerprint(0), Utc::now());
    let (status, page) = site.get(&all).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<!DOCTYPE html>") && page.contains("Top query #1"),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"{}/a/", site.base)), "{page}");
    let (status, _) = site.post(&all, &[]).await;
    assert_eq!(status, 405, "the report page only shows");

    // A message's own page is served from the archive as it was written; one no longer
    // kept shows what fires now, saying so.
    let archive = powa_sentinel::archive::Archive::new(dir.path(), Duration::from_secs(3600))
        .expect("pages on");
    archive
        .write(41, "<!DOCTYPE html><p>the page of 41</p>")
        .unwrap();
    let kept = site.links.url(Action::Page, Fingerprint(41), Utc::now());
    let (status, page) = site.get(&kept).await;
    assert_eq!(
        (status, page.as_str()),
        (200, "<!DOCTYPE html><p>the page of 41</p>")
    );
    let gone = site.links.url(Action::Page, Fingerprint(42), Utc::now());
    let (status, page) = site.get(&gone).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("no longer kept") && page.contains("Top query #1"),
        "{page}"
    );
    assert_eq!(site.post(&kept, &[]).await.0, 405, "a page only shows");
}
