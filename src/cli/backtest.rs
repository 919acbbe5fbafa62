//! `backtest`: the analyzers replayed over past windows still in PoWA, stepping by
//! `analysis.window`; the channels print what they would have sent, nothing is sent.

use std::process::ExitCode;

use chrono::Utc;
use slog::{error, o, warn, Logger};

use crate::config::Settings;
use crate::topology::{self, RunOptions, Telling};
use sentinel_actors::collector::Collect;
use sentinel_actors::Window;

/// `--from`/`--to`: RFC 3339, a date (UTC midnight) or a duration ago.
pub fn parse_time(s: &str, now: chrono::DateTime<Utc>) -> Result<chrono::DateTime<Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = humantime::parse_duration(s) {
        if let Ok(d) = chrono::Duration::from_std(d) {
            return Ok(now - d);
        }
    }
    Err(format!(
        "`{s}` is not a time: write 2026-11-01T00:00:00Z, 2026-11-01 or a duration ago such as 7d"
    ))
}

/// Replays the analyzers over past windows; channels print instead of sending.
pub async fn backtest(
    settings: Settings,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    log: Logger,
) -> ExitCode {
    let log = log.new(o!("command" => "backtest"));
    let opts = RunOptions {
        json_output: false,
        dry_run: true,
    };
    let topo = match topology::build(&settings, opts, &log).await {
        Ok(t) => t,
        Err(e) => {
            error!(log, "Cannot start."; "error" => format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    if topo.collectors.is_empty() {
        error!(
            log,
            "No server to analyse: every repository failed or none has a server."
        );
        return ExitCode::from(1);
    }
    let step =
        chrono::Duration::from_std(settings.analysis.window).unwrap_or(chrono::Duration::hours(24));
    let mut failed = !topo.failures.is_empty();
    let mut per_channel: std::collections::BTreeMap<String, usize> =
        topo.channels.keys().map(|k| (k.clone(), 0)).collect();
    let mut windows = 0;
    let mut insights = 0;
    let mut start = from;
    while start + step <= to {
        let window = Window {
            start,
            end: start + step,
        };
        windows += 1;
        let results =
            topology::per_session(&topo.collectors, |c| c.addr.send(Collect { window })).await;
        for (c, r) in topo.collectors.iter().zip(results) {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    failed = true;
                    warn!(log, "Window could not be read."; "server" => &c.name, "window_start" => %window.start, "error" => %e)
                }
                Err(e) => {
                    failed = true;
                    error!(log, "Collector unavailable."; "server" => &c.name, "error" => %e)
                }
            }
        }
        if let Some(summary) = topology::report(&topo.gate, window.end, Telling::Quiet, &log).await
        {
            insights += summary.insights;
            for r in &summary.reports {
                *per_channel.entry(r.channel.clone()).or_default() += r.parts_delivered;
            }
        }
        start += step;
    }
    if windows == 0 {
        eprintln!(
            "powa-sentinel: the range is shorter than one analysis window ({}); widen --from/--to",
            humantime::format_duration(settings.analysis.window)
        );
        return ExitCode::from(2);
    }
    println!(
        "backtest: {windows} window(s) of {} from {} to {}, {insights} insight(s)",
        humantime::format_duration(settings.analysis.window),
        from.to_rfc3339(),
        (from + step * windows).to_rfc3339()
    );
    for (ch, n) in &per_channel {
        println!("channel {ch}: {n} message(s) would have been sent");
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_instants_dates_or_durations_ago() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        let at = |s: &str| parse_time(s, now);
        assert_eq!(
            at("2026-11-01T06:30:00+02:00"),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 4, 30, 0).unwrap())
        );
        assert_eq!(
            at("2026-11-01"),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(at("7d"), Ok(now - chrono::Duration::days(7)));
        assert_eq!(at("0s"), Ok(now));
        let e = at("last tuesday").unwrap_err();
        assert!(e.contains("`last tuesday` is not a time"), "{e}");
    }
}
