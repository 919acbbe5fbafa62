//! Trend charts: a query's mean time per call and its calls, snapshot by snapshot over the
//! window, with its baseline windows drawn behind, as a PNG made in memory.
//!
//! A regression is a curve that jumped and a spike is a line that grew; a picture says
//! that faster than numbers in a chat message. The chart is made for a phone: 720 pixels
//! wide, large type, two panels stacked, each labelled with its unit, and a header that
//! names the server, the database and the query, so a forwarded image still says what it
//! shows.
//!
//! Which insights get one ([`charted`]): regressions, workload changes (spikes, temp
//! spills, new heavy queries) and the worst few slow queries of a notification, each
//! only once its [`Trend`] was read from PoWA ([`enrich`]).

pub mod enrich;
mod fonts;

pub use fonts::available as fonts_available;

use chrono::{DateTime, TimeDelta, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::render::Lang;
use sentinel_actors::{Insight, Severity, Trend, TrendSeries};

/// Width and height of a chart, in pixels: legible on a phone without zooming, a few
/// tens of kilobytes as PNG.
pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 820;
/// Height of the header: the title on up to two lines, where, and the query.
const HEADER: u32 = 158;
/// At most this many charts go with one notification (each is a message of the robot's
/// 20 per minute).
pub const MAX_CHARTS: usize = 5;
/// Of which at most this many for slow queries (the worst of the notification).
pub const MAX_SLOW_QUERY_CHARTS: usize = 3;

/// Why a chart could not be drawn. The text of the insight goes anyway.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChartError {
    #[error("no font for charts: none of {} exists; install the Debian package {package}", tried.join(", "))]
    NoFont { tried: Vec<String>, package: String },
    #[error("the font file {path} could not be read as a font")]
    Font { path: String },
    #[error("the insight has no trend to draw")]
    NoData,
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(String),
}

/// Kinds whose insights are about one query's change over time.
const TREND_KINDS: &[&str] = &["regression", "workload_change"];

/// Whether an insight is of a kind that is charted (before the notification's cap).
pub fn chartable(i: &Insight) -> bool {
    i.label("queryid").is_some()
        && i.status != Some(sentinel_actors::message::Lifecycle::Resolved)
        && (TREND_KINDS.contains(&i.kind.as_str()) || i.kind == "slow_query")
}

/// The indexes of the insights of a notification that get a chart: regressions and
/// workload changes, then the worst [`MAX_SLOW_QUERY_CHARTS`] slow queries, most severe
/// first, at most [`MAX_CHARTS`] in all; one per query (its first finding).
pub fn charted(insights: &[Insight]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..insights.len())
        .filter(|&k| chartable(&insights[k]))
        .collect();
    // Stable: within a severity, trend kinds first, then the input order.
    order.sort_by_key(|&k| {
        let i = &insights[k];
        (
            std::cmp::Reverse(i.severity),
            !TREND_KINDS.contains(&i.kind.as_str()),
        )
    });
    let mut out: Vec<usize> = Vec::new();
    let mut slow = 0;
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    for k in order {
        let i = &insights[k];
        let query = (
            i.label("server").unwrap_or_default(),
            i.label("database").unwrap_or_default(),
            i.label("queryid").unwrap_or_default(),
        );
        if seen.contains(&query) {
            continue;
        }
        if i.kind == "slow_query" {
            if slow == MAX_SLOW_QUERY_CHARTS {
                continue;
            }
            slow += 1;
        }
        seen.push(query);
        out.push(k);
        if out.len() == MAX_CHARTS {
            break;
        }
    }
    out
}

/// The fixed words of a chart.
fn words(lang: Lang) -> Words {
    match lang {
        Lang::En => Words {
            mean: "Mean time per call (ms)",
            calls: "Calls per snapshot",
            now: "this window",
            baseline: "baseline",
            before: "before",
            time: "time (UTC)",
            server: "server",
            database: "database",
        },
        Lang::Zh => Words {
            mean: "每次调用平均耗时 (ms)",
            calls: "每个快照的调用次数",
            now: "本窗口",
            baseline: "基线",
            before: "之前",
            time: "时间 (UTC)",
            server: "服务器",
            database: "数据库",
        },
    }
}

struct Words {
    mean: &'static str,
    calls: &'static str,
    now: &'static str,
    baseline: &'static str,
    before: &'static str,
    time: &'static str,
    server: &'static str,
    database: &'static str,
}

/// The colour of the window's own line, and of its baselines (drawn first, lighter).
pub const NOW: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
pub const BASELINE: RGBColor = RGBColor(0xa0, 0xa0, 0xa0);

/// The chart of `i`'s trend as PNG bytes, in `lang`.
pub fn png(i: &Insight, lang: Lang) -> Result<Vec<u8>, ChartError> {
    let trend = i.trend.as_ref().ok_or(ChartError::NoData)?;
    let now = trend
        .series
        .iter()
        .find(|s| s.offset_secs == 0)
        .filter(|s| !s.points.is_empty())
        .ok_or(ChartError::NoData)?;
    let family = fonts::family(lang)?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, i, trend, now, family, lang).map_err(ChartError::Draw)?;
        root.present()
            .map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    encode(&rgb)
}

fn encode(rgb: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    let mut w = enc
        .write_header()
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    w.write_image_data(rgb)
        .map_err(|e| ChartError::Encode(e.to_string()))?;
    w.finish().map_err(|e| ChartError::Encode(e.to_string()))?;
    Ok(out)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// `text` cut with "…" to fit `width` pixels in `font`.
fn fit(area: &Area<'_>, text: &str, font: &TextStyle<'_>, width: u32) -> String {
    let fits = |t: &str| {
        area.estimate_text_size(t, font)
            .map(|(w, _)| w <= width)
            .unwrap_or(true)
    };
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if fits(&one_line) {
        return one_line;
    }
    let chars: Vec<char> = one_line.chars().collect();
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let t: String = chars[..mid].iter().collect::<String>() + "…";
        if fits(&t) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    chars[..lo].iter().collect::<String>() + "…"
}

/// `text` on one line, or on two cut between words (the second cut with "…" to fit).
fn wrap(area: &Area<'_>, text: &str, font: &TextStyle<'_>, width: u32) -> (String, Option<String>) {
    let fits = |t: &str| {
        area.estimate_text_size(t, font)
            .map(|(w, _)| w <= width)
            .unwrap_or(true)
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut n = words.len();
    while n > 1 && !fits(&words[..n].join(" ")) {
        n -= 1;
    }
    let first = words[..n].join(" ");
    if n == words.len() || !fits(&first) {
        return (fit(area, text, font, width), None);
    }
    (first, Some(fit(area, &words[n..].join(" "), font, width)))
}

/// "1 week", "3 days", "2 h", "30 min": how far back a baseline is.
fn ago(secs: i64, lang: Lang) -> String {
    let (n, unit_en, unit_zh) = match secs {
        s if s % (7 * 86400) == 0 => (s / (7 * 86400), "week", "周"),
        s if s % 86400 == 0 => (s / 86400, "day", "天"),
        s if s % 3600 == 0 => (s / 3600, "h", "小时"),
        s if s >= 60 => (s / 60, "min", "分钟"),
        s => (s, "s", "秒"),
    };
    match lang {
        Lang::En if unit_en.len() > 3 && n != 1 => format!("{n} {unit_en}s"),
        Lang::En => format!("{n} {unit_en}"),
        Lang::Zh => format!("{n} {unit_zh}"),
    }
}

fn draw(
    root: &Area<'_>,
    i: &Insight,
    trend: &Trend,
    now: &TrendSeries,
    family: &'static str,
    lang: Lang,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let w = &words(lang);
    root.fill(&WHITE).map_err(e)?;
    let title = FontDesc::new(FontFamily::Name(family), 28.0, FontStyle::Bold);
    let body = FontDesc::new(FontFamily::Name(family), 22.0, FontStyle::Normal);
    let small = FontDesc::new(FontFamily::Name(family), 19.0, FontStyle::Normal);
    let (header, rest) = root.split_vertically(HEADER);
    let inner = WIDTH - 32;
    let severity = match i.severity {
        Severity::Critical => RGBColor(0xc6, 0x28, 0x28),
        Severity::Warning => RGBColor(0xe0, 0x7b, 0x00),
        Severity::Info => RGBColor(0x55, 0x55, 0x55),
    };
    header
        .draw(&Rectangle::new(
            [(0, 0), (8, HEADER as i32)],
            severity.filled(),
        ))
        .map_err(e)?;
    let ts = TextStyle::from(title.clone()).color(&BLACK);
    let (first, second) = wrap(&header, &i.title, &ts, inner);
    header.draw_text(&first, &ts, (20, 8)).map_err(e)?;
    if let Some(second) = second {
        header.draw_text(&second, &ts, (20, 42)).map_err(e)?;
    }
    let where_ = format!(
        "{} {} · {} {} · queryid {}",
        w.server,
        i.label("server").unwrap_or("?"),
        w.database,
        i.label("database").unwrap_or("?"),
        i.label("queryid").unwrap_or("?"),
    );
    let bs = TextStyle::from(body.clone()).color(&RGBColor(0x30, 0x30, 0x30));
    header
        .draw_text(&fit(&header, &where_, &bs, inner), &bs, (20, 84))
        .map_err(e)?;
    if let Some(text) = &i.text {
        let qs = TextStyle::from(small.clone()).color(&RGBColor(0x50, 0x50, 0x50));
        header
            .draw_text(&fit(&header, text, &qs, inner), &qs, (20, 118))
            .map_err(e)?;
    }

    let span = (now.end - now.start).num_milliseconds().max(1000) as f64 / 1000.0;
    // A point's place on the window's time axis: baselines are shifted onto it.
    let x_of =
        |s: &TrendSeries, at: DateTime<Utc>| (at - s.start).num_milliseconds() as f64 / 1000.0;
    let start = now.start;
    // Seconds for a window of minutes, the date for one of days.
    let format = match span {
        s if s < 1200.0 => "%H:%M:%S",
        s if s > 2.0 * 86400.0 => "%m-%d %H:%M",
        _ => "%H:%M",
    };
    let x_label = move |x: &f64| {
        (start + TimeDelta::milliseconds((*x * 1000.0) as i64))
            .format(format)
            .to_string()
    };
    let (top, bottom) = rest.split_vertically((HEIGHT - HEADER) / 2 + 10);
    let mut baselines: Vec<&TrendSeries> =
        trend.series.iter().filter(|s| s.offset_secs != 0).collect();
    baselines.sort_by_key(|s| std::cmp::Reverse(s.offset_secs));
    for (area, caption, pick, with_legend) in [
        (&top, w.mean, 0usize, true),
        (&bottom, w.calls, 1usize, false),
    ] {
        let value = |p: &sentinel_actors::TrendPoint| {
            if pick == 0 {
                (p.calls > 0.0).then_some(p.mean_time_ms)
            } else {
                Some(p.calls)
            }
        };
        let max = trend
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(value))
            .fold(0.0f64, f64::max);
        let ymax = if max > 0.0 { max * 1.4 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .margin_left(12)
            .margin_right(28)
            .margin_top(6)
            .caption(caption, body.clone())
            .x_label_area_size(if pick == 1 { 56 } else { 34 })
            .y_label_area_size(86)
            .build_cartesian_2d(0f64..span, 0f64..ymax)
            .map_err(e)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_labels(if format.len() > 8 { 4 } else { 5 })
            .y_labels(5)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|y: &f64| short_number(*y))
            .label_style(small.clone())
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd));
        if pick == 1 {
            mesh.x_desc(w.time).axis_desc_style(small.clone());
        }
        mesh.draw().map_err(e)?;
        for s in &baselines {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter_map(|p| Some((x_of(s, p.at), value(p)?)))
                .collect();
            let style = ShapeStyle {
                color: BASELINE.to_rgba(),
                filled: false,
                stroke_width: 3,
            };
            let drawn = chart
                .draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(e)?;
            if with_legend {
                let label = format!("{} ({} {})", w.baseline, ago(s.offset_secs, lang), w.before);
                drawn
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 26, y)], style));
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, BASELINE.filled())))
                .map_err(e)?;
        }
        let pts: Vec<(f64, f64)> = now
            .points
            .iter()
            .filter_map(|p| Some((x_of(now, p.at), value(p)?)))
            .collect();
        let style = ShapeStyle {
            color: NOW.to_rgba(),
            filled: false,
            stroke_width: 4,
        };
        let drawn = chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(e)?;
        if with_legend {
            drawn
                .label(w.now)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 26, y)], style));
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, NOW.filled())))
            .map_err(e)?;
        if with_legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                .label_font(small.clone())
                .draw()
                .map_err(e)?;
        }
    }
    Ok(())
}

/// Axis numbers: 0.25, 12, 1.5k, 2M.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sentinel_actors::TrendPoint;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + min * 60, 0).unwrap()
    }

    fn series(offset_min: i64, means: &[f64]) -> TrendSeries {
        let start = t(-offset_min);
        TrendSeries {
            offset_secs: offset_min * 60,
            start,
            end: start + TimeDelta::minutes(60),
            points: means
                .iter()
                .enumerate()
                .map(|(k, &m)| TrendPoint {
                    at: start + TimeDelta::minutes(5 * (k as i64 + 1)),
                    calls: 10.0,
                    mean_time_ms: m,
                })
                .collect(),
        }
    }

    pub(crate) fn insight(kind: &str, severity: Severity, queryid: &str) -> Insight {
        crate::story::fixture::insight(&format!("{kind}.x"), "db1", queryid, severity)
    }

    #[test]
    fn a_chart_is_a_png_of_its_size() {
        let mut i = insight("regression", Severity::Warning, "42");
        i.trend = Some(Trend {
            series: vec![
                series(0, &[1.0, 1.1, 0.9, 1.0, 5.0, 5.2, 4.9, 5.1, 5.0, 5.3, 4.8]),
                series(7 * 24 * 60, &[1.0; 11]),
            ],
        });
        i.title = "Regression: mean time per call ×5.0 (1.0 ms → 5.0 ms)".into();
        i.text = Some(
            "SELECT count(*) FROM orders WHERE created_at BETWEEN $1 AND $2 AND status = $3".into(),
        );
        let png = png(&i, Lang::En).unwrap();
        // To look at it: CHART_DUMP_DIR=/some/dir cargo test --lib chart::
        if let Ok(dir) = std::env::var("CHART_DUMP_DIR") {
            std::fs::write(format!("{dir}/unit-en.png"), &png).unwrap();
            std::fs::write(
                format!("{dir}/unit-zh.png"),
                super::png(&i, Lang::Zh).unwrap(),
            )
            .unwrap();
        }
        let d = png::Decoder::new(std::io::Cursor::new(&png));
        let r = d.read_info().unwrap();
        assert_eq!((r.info().width, r.info().height), (WIDTH, HEIGHT));
        assert!(png.len() < 200_000, "{} bytes", png.len());
        assert_eq!(
            super::png(&insight("regression", Severity::Info, "1"), Lang::En),
            Err(ChartError::NoData)
        );
    }

    #[test]
    fn the_worst_few_get_charts_once_per_query() {
        let mut v = Vec::new();
        for k in 0..6 {
            v.push(insight("slow_query", Severity::Warning, &k.to_string()));
        }
        v.push(insight("regression", Severity::Warning, "0"));
        v.push(insight("regression", Severity::Critical, "9"));
        v.push(insight("missing_index", Severity::Critical, "8"));
        let c = charted(&v);
        // The critical regression, the other regression (its query's slow-query finding
        // is then left out), then slow queries 1, 2, 3.
        assert_eq!(c, vec![7, 6, 1, 2, 3]);
    }

    #[test]
    fn baselines_are_told_in_words() {
        assert_eq!(ago(7 * 86400, Lang::En), "1 week");
        assert_eq!(ago(14 * 86400, Lang::En), "2 weeks");
        assert_eq!(ago(3600, Lang::En), "1 h");
        assert_eq!(ago(86400, Lang::Zh), "1 天");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(0.25), "0.25");
    }
}
