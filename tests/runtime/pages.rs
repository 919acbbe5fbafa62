//! What a person opens from a message: the report page behind "Full report" and the
//! status page, served by `run` on the lab's real PoWA, looked at in a real browser
//! (Debian's headless `chromium`): a screenshot of each, no console message (a blocked
//! resource or a script error shows as one), every link on them answers.
//!
//! The screenshots are kept in the test's target directory (`pages/`) to be looked at.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::robot;
use crate::support::daemon::{fast_daemon, Proc};
use crate::support::workload::slow_query;
use crate::support::{lab, same_servers, unique};

const LIMIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "status-token-0123456789abcdef";

/// `GET path` with extra request headers: the status code, the headers and the body.
fn get(port: u16, path: &str, headers: &[&str]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{extra}\r\n").unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

/// What headless Chromium made of `url`: the DOM after loading, and its console
/// messages. The screenshot goes to `shot`.
fn browse(url: &str, shot: &Path, height: u32) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new("timeout")
            .arg("90")
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size=1100,{height}"))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium (Debian package `chromium`; tests/support/powa-lab install)");
        assert!(
            out.status.success(),
            "chromium failed on {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let shot_arg = format!("--screenshot={}", shot.display());
    let shot_run = run(&[&shot_arg]);
    let dom_run = run(&["--dump-dom"]);
    let console = [shot_run.stderr, dom_run.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .filter(|l| l.contains(":CONSOLE"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    (
        String::from_utf8_lossy(&dom_run.stdout).into_owned(),
        console,
    )
}

/// The `href`s of a DOM, unescaped.
fn hrefs(dom: &str) -> Vec<String> {
    dom.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].replace("&amp;", "&"))
        .collect()
}

/// The width and height of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&png[16..20]), be(&png[20..24]))
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_full_report_and_the_status_page_in_a_real_browser() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    // A slow query on the repository's own server, to be charted from PoWA's history.
    let _servers = same_servers();
    slow_query(&format!("t_page_{}", unique()));
    let fake = robot::start("pages-key", &[]);
    let mut d = Proc::start(
        "run",
        |port, dir| {
            let base = fast_daemon(port, "1h", "20s")
                .toml(&format!(
                    "[analyzers.slow_queries]\ntop_n = 30\n[state]\ndir = \"{}\"\n[channels.robot]\ntype = \"wecom\"\nbase_url = \"{}\"\nkey = \"pages-key\"\n",
                    dir.join("state").display(),
                    fake.url
                ))
                .repository("main", &lab.repo_dsn())
                .into_text();
            base.replace("cron = \"0 0 0 1 1 *\"", "interval = \"3s\"")
                .replace(
                    &format!("listen = \"127.0.0.1:{port}\""),
                    &format!(
                        "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ntoken = \"{TOKEN}\""
                    ),
                )
        },
        &[],
    );
    let port = d.port;

    // Reports reach the robot with their "Full report" link. The first ones hold what
    // needs no second sighting (the gate damps flapping); wait for a page with the
    // lab's slow queries, charted from PoWA's history.
    let prefix = format!("http://127.0.0.1:{port}/a/");
    let link_of = |text: &str| {
        text.split("[Full report](")
            .nth(1)
            .map(|s| s[..s.find(')').unwrap()].to_string())
    };
    let mut found = None;
    d.wait_for("a report page with charts", LIMIT, |_| {
        let links: Vec<String> = std::fs::read_to_string(&fake.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["content"].as_str().and_then(link_of))
            .collect();
        found = links.into_iter().rev().find_map(|link| {
            assert!(link.starts_with(&prefix), "{link}");
            // Served without the token: the link is signed.
            let (code, head, page) = get(port, &link[prefix.len() - 3..], &[]);
            assert_eq!(code, 200, "{page}");
            page.contains("data:image/png;base64,")
                .then_some((link, head, page))
        });
        found.is_some()
    });
    let (link, head, page) = found.unwrap();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(
        page.contains("<section>") && !page.contains("<script"),
        "{page}"
    );
    let pages: Vec<_> = std::fs::read_dir(d.dir().join("state/reports"))
        .unwrap()
        .collect();
    assert!(!pages.is_empty(), "no page in the archive");
    // Real PNGs, at phone width.
    let charts: Vec<Vec<u8>> = page
        .split("data:image/png;base64,")
        .skip(1)
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(&s[..s.find('"').unwrap()])
                .unwrap()
        })
        .collect();
    assert!(!charts.is_empty(), "no chart on the page:\n{page}");
    for c in &charts {
        assert_eq!(png_size(c), (720, 820));
    }

    // The status page: JSON for scripts, HTML for a browser, both behind the token.
    assert_eq!(get(port, "/status", &[]).0, 401);
    assert_eq!(get(port, "/metrics", &[]).0, 401);
    assert_eq!(get(port, "/healthz", &[]).0, 200, "probes stay open");
    // The report's delivery and the channel's health reach /status.
    d.wait_for(
        "the delivery and the channel's health in /status",
        LIMIT,
        |_| {
            let bearer = format!("Authorization: Bearer {TOKEN}");
            let (code, _, j) = get(port, "/status", &[&bearer]);
            assert_eq!(code, 200, "{j}");
            serde_json::from_str::<Value>(&j).is_ok_and(|v| {
                v["channels"]["robot"]["state"] == "ok"
                    && v["channels"]["robot"]["delivered"].as_u64() > Some(0)
            })
        },
    );

    // In a real browser: screenshots, no console message, every link answers.
    let dir = shots_dir();
    let (dom, console) = browse(&link, &dir.join("report.png"), 2400);
    assert!(
        console.is_empty(),
        "console messages on the report page: {console:?}"
    );
    assert!(
        dom.contains("Full report") || dom.contains("<section>"),
        "{dom}"
    );
    let links = hrefs(&dom);
    assert!(
        links.iter().filter(|h| h.starts_with(&prefix)).count() >= 3,
        "acknowledge, snooze and what fires now: {links:?}"
    );
    for h in &links {
        assert!(h.starts_with(&prefix), "a link off the daemon: {h}");
        let (code, _, body) = get(port, &h[prefix.len() - 3..], &[]);
        assert_eq!(code, 200, "{h}: {body}");
    }
    let status_url = format!("http://127.0.0.1:{port}/status?token={TOKEN}");
    let (dom, console) = browse(&status_url, &dir.join("status.png"), 1600);
    assert!(
        console.is_empty(),
        "console messages on the status page: {console:?}"
    );
    for want in [
        "powa-sentinel status",
        "main/local",
        "Open findings",
        "robot",
    ] {
        assert!(dom.contains(want), "missing {want} in\n{dom}");
    }
    // A link there would need the token, which the page does not carry.
    assert_eq!(hrefs(&dom), Vec::<String>::new());
    for shot in ["report.png", "status.png"] {
        let png = std::fs::read(dir.join(shot)).unwrap();
        assert_eq!(png_size(&png).0, 1100, "{shot}");
        assert!(
            png.len() > 20_000,
            "{shot} looks empty ({} bytes)",
            png.len()
        );
    }
}
