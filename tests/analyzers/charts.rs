//! Trend charts from the real PoWA history of the lab: a regression made by dropping an
//! index between two phases of four snapshots each, found by the regression analyzer,
//! its trend read by the chart stage from the repository as the SELECT-only role, drawn,
//! and the PNG decoded: its size, its dimensions, and the window's line above the
//! baseline's in the mean-time panel (the data differs there) but level with it in the
//! calls panel (the same 40 calls per snapshot in both phases).
//!
//! `CHART_DUMP_DIR=/some/dir` keeps the PNG to look at.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use powa_sentinel::analyze::{RegressionAnalyzer, RegressionSettings};
use powa_sentinel::chart::enrich::TrendSource;
use powa_sentinel::chart::{self, BASELINE, HEIGHT, NOW, WIDTH};
use powa_sentinel::powa::RepositorySettings;
use powa_sentinel::render::Lang;
use sentinel_actors::message::Mentions;
use sentinel_actors::{Notification, NotifyReason};

use crate::support::cli::{about, json_lines, run, succeeded, Settings};
use crate::support::repo::window_and_baseline;
use crate::support::{exclusive, lab, unique};

const ROUNDS: usize = 4;
const CALLS_PER_ROUND: usize = 40;

/// Phase A (index there) and phase B (index dropped), each of [`ROUNDS`] snapshots, B at
/// least a second longer than A. Returns (A's start, B's start, B's end).
fn phases(t: &str, query: &str) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    phases_apart(t, query, Duration::ZERO)
}

/// [`phases`], B starting `gap` after A ended.
fn phases_apart(
    t: &str,
    query: &str,
    gap: Duration,
) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let lab = lab();
    let _guard = exclusive();
    lab.psql(
        "repo",
        "app",
        &format!(
            "CREATE TABLE {t} AS SELECT g AS id, timestamptz '2026-01-01' + g * interval '1 second' AS created_at \
             FROM generate_series(1, 600000) g; CREATE INDEX {t}_created_at_idx ON {t} (created_at); ANALYZE {t}"
        ),
    );
    lab.snapshot("repo");
    let t0 = Utc::now();
    for _ in 0..ROUNDS {
        lab.repeat("repo", "app", query, CALLS_PER_ROUND);
        lab.snapshot("repo");
    }
    std::thread::sleep(gap);
    let t1 = Utc::now();
    let started = std::time::Instant::now();
    lab.psql("repo", "app", &format!("DROP INDEX {t}_created_at_idx"));
    for _ in 0..ROUNDS {
        lab.repeat("repo", "app", query, CALLS_PER_ROUND);
        lab.snapshot("repo");
    }
    let phase_a = (t1 - t0).to_std().unwrap().saturating_sub(gap);
    if let Some(rest) = (phase_a + Duration::from_secs(1)).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
        lab.snapshot("repo");
    }
    (t0, t1, Utc::now())
}

/// Mean row of the pixels of `colour` in rows `rows`, right of the legend.
fn mean_row(img: &[u8], colour: (u8, u8, u8), rows: std::ops::Range<u32>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0u64);
    for y in rows {
        for x in WIDTH / 2..WIDTH {
            let p = ((y * WIDTH + x) * 3) as usize;
            if (img[p], img[p + 1], img[p + 2]) == colour {
                sum += f64::from(y);
                n += 1;
            }
        }
    }
    (n > 50).then(|| sum / n as f64)
}

#[actix_rt::test]
async fn a_regression_is_drawn_from_the_real_history() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_chart_{}", unique());
    let query = format!(
        "SELECT count(*) FROM {t} WHERE created_at BETWEEN '2026-01-01 10:00' AND '2026-01-01 10:01'"
    );
    let (t0, t1, t2) = phases(&t, &query);
    assert!(t1 - (t2 - t1) <= t0);

    // The regression as the analyzer finds it: its labels say where the chart reads.
    let (mut current, baseline) = window_and_baseline(t1, t2).await;
    current.baselines = vec![baseline];
    let found = RegressionAnalyzer::new(RegressionSettings::default()).analyze_window(&current);
    let insight = found
        .into_iter()
        .find(|i| i.text.as_deref().is_some_and(|x| x.contains(&t)))
        .expect("the slowed-down query is a regression");
    assert!(
        insight.trend.is_none(),
        "analyzers leave the trend to the chart stage"
    );

    // The chart stage, as a channel runs it: the repository by its settings, the
    // baseline one window back (as the analyzer compared it).
    let offset = (t2 - t1).to_std().unwrap();
    let source = TrendSource::new(
        BTreeMap::from([(
            "lab".to_string(),
            RepositorySettings::from_dsn(&lab.repo_dsn()),
        )]),
        offset,
        1,
        slog::Logger::root(slog::Discard, slog::o!()),
    );
    let n = Notification {
        id: 1,
        channel: "ops".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(vec![insight]),
        created_at: Utc::now(),
        mentions: Mentions::default(),
    };
    let n = source.attach(n).await;
    let i = &n.insights[0];
    let trend = i.trend.as_ref().expect("a trend read from PoWA");
    assert_eq!(trend.series.len(), 2, "{trend:#?}");
    let (now, base) = (&trend.series[0], &trend.series[1]);
    assert_eq!(now.offset_secs, 0);
    // Four snapshots per phase, each with the phase's 40 calls: the steps PoWA recorded.
    for s in [now, base] {
        let with_calls: Vec<f64> = s
            .points
            .iter()
            .map(|p| p.calls)
            .filter(|&c| c > 0.0)
            .collect();
        assert_eq!(with_calls, vec![CALLS_PER_ROUND as f64; ROUNDS], "{s:#?}");
    }
    let mean = |s: &sentinel_actors::TrendSeries| {
        let v: Vec<f64> = s
            .points
            .iter()
            .filter(|p| p.calls > 0.0)
            .map(|p| p.mean_time_ms)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(
        mean(now) > 5.0 * mean(base),
        "without the index: {} ms against {} ms",
        mean(now),
        mean(base)
    );

    let png = chart::png(i, Lang::En).expect("drawn");
    if let Ok(dir) = std::env::var("CHART_DUMP_DIR") {
        std::fs::write(format!("{dir}/lab-regression.png"), &png).unwrap();
    }
    assert!(
        (10_000..300_000).contains(&png.len()),
        "{} bytes",
        png.len()
    );
    let mut d = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .expect("a PNG");
    assert_eq!((d.info().width, d.info().height), (WIDTH, HEIGHT));
    let mut img = vec![0; d.output_buffer_size()];
    d.next_frame(&mut img).unwrap();
    let rgb = |c: plotters::style::RGBColor| (c.0, c.1, c.2);
    // The two panels share the height below the header; the calls panel is the lower.
    let mid = HEIGHT / 2 + 80;
    let (top, bottom) = (160..mid, mid..HEIGHT);
    let now_top = mean_row(&img, rgb(NOW), top.clone()).expect("the window's line is drawn");
    let base_top = mean_row(&img, rgb(BASELINE), top).expect("the baseline is drawn");
    assert!(
        base_top - now_top > 100.0,
        "the window's mean time is drawn well above the baseline's: rows {now_top} and {base_top}"
    );
    let now_calls = mean_row(&img, rgb(NOW), bottom.clone()).expect("calls drawn");
    let base_calls = mean_row(&img, rgb(BASELINE), bottom).unwrap_or(now_calls);
    assert!(
        (now_calls - base_calls).abs() < 15.0,
        "the same calls per snapshot are level: rows {now_calls} and {base_calls}"
    );
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}

/// `powa-sentinel once` end to end, as a user runs it: the same regression over the last
/// minute against the minute before, to a WeCom-compatible robot (the `fake-wecom`
/// process, which checks each image as WeCom does): the regression's text, then its chart
/// as an image message, with nothing refused.
#[test]
fn once_sends_the_chart_of_a_regression_after_its_text() {
    let _turn = crate::support::turn(module_path!());
    let _servers = crate::support::same_servers();
    let lab = lab();
    let t = format!("t_chart_once_{}", unique());
    let query = format!(
        "SELECT count(*) FROM {t} WHERE created_at BETWEEN '2026-01-01 10:00' AND '2026-01-01 10:01'"
    );
    // A in the minute before the window, B inside it.
    let (_, t1, _) = phases_apart(&t, &query, Duration::from_secs(50));
    let elapsed = (Utc::now() - t1).to_std().unwrap();
    if let Some(rest) = Duration::from_secs(12).checked_sub(elapsed) {
        std::thread::sleep(rest);
    }
    let fake = crate::robot::start("chart-key", &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::log("warning")
        .json()
        .toml("[analysis]\nwindow = \"1m\"\nbaseline_offset = \"1m\"\nbaseline_periods = 1")
        .repository("lab", &lab.repo_dsn())
        .wecom("robot", &fake.url, "chart-key")
        .write(dir.path());
    let (stdout, _stderr) = succeeded(&run(&["once", "--output", "json"], &config));
    let insights = json_lines(&stdout);
    let ours = about(&insights, &t);
    assert!(
        ours.iter().any(|i| i["kind"] == "regression"),
        "the regression is found: {insights:#?}"
    );
    // What the robot accepted, in order.
    let record = std::fs::read_to_string(&fake.record).unwrap();
    let msgs = json_lines(&record);
    let texts = |m: &serde_json::Value| m["msgtype"] != "image";
    let ours_at = msgs
        .iter()
        .position(|m| texts(m) && m["content"].as_str().unwrap().contains(&t))
        .unwrap_or_else(|| panic!("our regression told: {msgs:#?}"));
    let images: Vec<&serde_json::Value> = msgs.iter().filter(|m| m["msgtype"] == "image").collect();
    assert!(!images.is_empty(), "a chart was sent: {msgs:#?}");
    assert!(
        msgs.iter()
            .skip(ours_at + 1)
            .any(|m| m["msgtype"] == "image"),
        "a chart after our regression's text: {msgs:#?}"
    );
    for m in &images {
        let c = m["content"].as_str().unwrap();
        assert!(c.starts_with("PNG image, "), "{c}");
    }
    // The fake checked each: 20 per minute at most, md5, size, PNG.
    assert!(msgs.len() <= 20, "{}", msgs.len());
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
