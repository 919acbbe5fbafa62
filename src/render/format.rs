//! Numbers and units as people read them: durations, bytes, shares, counts. The same in
//! every language and every dialect, so that a figure reads the same in a title, a cause
//! and a metric list.

/// A metric value formatted by the unit in its name: `*_ms` as ms or s, `share_*` as a
/// percentage, `calls`/`rows` as integers with thousands separators.
pub fn format_metric(name: &str, value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    if name.ends_with("_ms") {
        format_ms(value)
    } else if name.ends_with("_bytes") {
        format_bytes(value)
    } else if name.starts_with("share_") || name.ends_with("_share") {
        let pct = value * 100.0;
        if pct.abs() >= 10.0 || pct == 0.0 {
            format!("{pct:.0}%")
        } else {
            format!("{pct:.1}%")
        }
    } else if is_count(name) || (value.fract() == 0.0 && value.abs() < 1e15) {
        thousands(value.round())
    } else {
        let s = if value.abs() >= 100.0 {
            format!("{value:.1}")
        } else {
            format!("{value:.2}")
        };
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// The human name of a metric: its unit suffix dropped, underscores as spaces.
pub fn metric_label(name: &str) -> String {
    let base = name.strip_suffix("_ms").unwrap_or(name);
    base.strip_suffix("_bytes")
        .unwrap_or(base)
        .replace('_', " ")
}

/// Bytes with a binary unit: `512 B`, `12.0 KiB`, `3.4 GiB`.
fn format_bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = value;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn is_count(name: &str) -> bool {
    matches!(name, "calls" | "rows") || name.ends_with("_calls") || name.ends_with("_rows")
}

fn format_ms(ms: f64) -> String {
    let a = ms.abs();
    if a < 1.0 {
        format!("{ms:.3} ms")
    } else if a < 100.0 {
        format!("{ms:.2} ms")
    } else if a < 1000.0 {
        format!("{ms:.1} ms")
    } else if a < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if a < 3_600_000.0 {
        let s = (ms / 1000.0).round() as i64;
        format!("{} min {} s", s / 60, (s % 60).abs())
    } else {
        let m = (ms / 60_000.0).round() as i64;
        format!("{} h {} min", m / 60, (m % 60).abs())
    }
}

fn thousands(v: f64) -> String {
    let neg = v < 0.0;
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

// ---------------------------------------------------------------------------------------
// The units the stories speak in

/// A duration in milliseconds: "0.290 ms", "6.40 s", "2 min 5 s".
pub(crate) fn ms(v: f64) -> String {
    format_metric("x_ms", v)
}

/// A count with thousands separators: "299,900".
pub(crate) fn count(v: f64) -> String {
    format_metric("calls", v)
}

/// An amount of bytes: "20.0 MiB".
pub(crate) fn bytes(v: f64) -> String {
    format_metric("x_bytes", v)
}

/// A share as a percentage: "32%", "1.2%".
pub(crate) fn pct(share: f64) -> String {
    format_metric("share_of", share)
}

/// A share close to 100 % keeps its decimals: 99.97 % is not 100 %.
pub(crate) fn pct_fine(share: f64) -> String {
    let p = share * 100.0;
    if (99.0..100.0).contains(&p) {
        format!("{:.2}%", (p * 100.0).floor() / 100.0)
    } else {
        pct(share)
    }
}

/// A factor: "110", "2.5", "1.3", "∞".
pub(crate) fn factor(f: f64) -> String {
    if !f.is_finite() {
        "∞".to_string()
    } else if f >= 10.0 {
        format!("{f:.0}")
    } else {
        format!("{f:.1}")
    }
}

/// A duration that may be days long: "7 d", "2 d 3 h", else as [`ms`].
pub(crate) fn duration_ms(v: f64) -> String {
    let h = v / 3_600_000.0;
    if h >= 48.0 {
        let hours = h.round() as i64;
        let (d, r) = (hours / 24, hours % 24);
        if r == 0 {
            format!("{d} d")
        } else {
            format!("{d} d {r} h")
        }
    } else if h >= 1.0 && (v / 60_000.0).round() % 60.0 == 0.0 {
        format!("{:.0} h", h.round())
    } else {
        ms(v)
    }
}

/// A window length in seconds: "1 h", "24 h", "30 min", "7 d".
pub(crate) fn human_secs(s: f64) -> String {
    if s >= 172_800.0 && s % 86_400.0 == 0.0 {
        format!("{:.0} d", s / 86_400.0)
    } else if s >= 3600.0 && s % 3600.0 == 0.0 {
        format!("{:.0} h", s / 3600.0)
    } else if s >= 60.0 && s % 60.0 == 0.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        ms(s * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_formatted_by_unit() {
        assert_eq!(format_metric("total_time_ms", 8123.4), "8.12 s");
        assert_eq!(format_metric("mean_time_ms", 156.2), "156.2 ms");
        assert_eq!(format_metric("mean_time_ms", 0.4213), "0.421 ms");
        assert_eq!(format_metric("mean_time_ms", 12.345), "12.35 ms");
        assert_eq!(format_metric("total_time_ms", 125_000.0), "2 min 5 s");
        assert_eq!(format_metric("total_time_ms", 7_500_000.0), "2 h 5 min");
        assert_eq!(format_metric("share_of_total_time", 0.62), "62%");
        assert_eq!(format_metric("share_of_total_time", 0.0123), "1.2%");
        assert_eq!(format_metric("calls", 1_234_567.0), "1,234,567");
        assert_eq!(format_metric("rows", 52.0), "52");
        assert_eq!(format_metric("rows", -1000.0), "-1,000");
        assert_eq!(format_metric("ratio", 1.5), "1.5");
        assert_eq!(format_metric("ratio", 2.0), "2");
        assert_eq!(format_metric("ratio", f64::NAN), "n/a");
        assert_eq!(metric_label("mean_time_ms"), "mean time");
    }

    #[test]
    fn durations_and_windows_read_as_people_say_them() {
        assert_eq!(duration_ms(7.0 * 86_400_000.0 + 3_600_000.0), "7 d 1 h");
        assert_eq!(duration_ms(86_400_000.0), "24 h");
        assert_eq!(duration_ms(90_000.0), "1 min 30 s");
        assert_eq!(human_secs(3600.0), "1 h");
        assert_eq!(human_secs(60.0), "1 min");
        assert_eq!(pct_fine(0.9997), "99.97%");
        assert_eq!(pct_fine(0.5), "50%");
    }
}
