//! The collector source for one PoWA server: reads the window's statements deltas.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use tokio_postgres::Client;

use super::discovery::{PowaInfo, ServerInfo};
use super::reader::{read_baseline, read_window, StatementsWindow};
use sentinel_actors::collector::{Collected, Source};
use sentinel_actors::{SourceError, Window};

pub struct PowaSource {
    name: String,
    repository: String,
    client: Arc<Client>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    /// Read the window shifted back by this much too, for the baseline.
    baseline_offset: Option<std::time::Duration>,
    /// How many multiples of the offset to read (as far as retention reaches).
    baseline_periods: u32,
}

impl PowaSource {
    pub fn new(
        repository: &str,
        client: Arc<Client>,
        info: Arc<PowaInfo>,
        server: ServerInfo,
        baseline_offset: Option<std::time::Duration>,
        baseline_periods: u32,
    ) -> Self {
        PowaSource {
            name: format!("{repository}/{}", server.name),
            repository: repository.to_string(),
            client,
            info,
            server,
            baseline_offset,
            baseline_periods: baseline_periods.max(1),
        }
    }
}

impl Source for PowaSource {
    type Output = StatementsWindow;

    fn name(&self) -> &str {
        &self.name
    }

    fn collect(&mut self, window: Window) -> LocalBoxFuture<'static, Collected<StatementsWindow>> {
        let client = Arc::clone(&self.client);
        let info = Arc::clone(&self.info);
        let server = self.server.clone();
        let repository = self.repository.clone();
        let offset = self
            .baseline_offset
            .and_then(|d| chrono::Duration::from_std(d).ok());
        let periods = self.baseline_periods;
        Box::pin(async move {
            let mut w = read_window(&client, &repository, &info, &server, window)
                .await
                .map_err(SourceError::new)?;
            for shifted in baseline_windows(window, offset, periods, &server) {
                let b = read_baseline(&client, &repository, &info, &server, shifted)
                    .await
                    .map_err(SourceError::new)?;
                w.baselines.push(b);
            }
            let taken_at = w.last_ts.unwrap_or(window.end);
            Ok((Arc::new(w), taken_at))
        })
    }
}

/// The past windows to compare with: `window` shifted back by 1, 2, … times `offset`. The
/// first is always read (it is what the seed compared with, and an empty one is what the
/// health analyzer reports); further ones only while PoWA's retention still holds them.
pub fn baseline_windows(
    window: Window,
    offset: Option<chrono::Duration>,
    periods: u32,
    server: &ServerInfo,
) -> Vec<Window> {
    let Some(off) = offset else {
        return Vec::new();
    };
    let oldest_kept = server
        .retention
        .and_then(|r| chrono::Duration::from_std(r).ok())
        .map(|r| window.end - r);
    (1..=periods.max(1))
        .map(|k| Window {
            start: window.start - off * k as i32,
            end: window.end - off * k as i32,
        })
        .enumerate()
        .filter(|(i, w)| *i == 0 || oldest_kept.is_none_or(|o| w.start >= o))
        .map(|(_, w)| w)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn baselines_stop_at_retention() {
        let end = Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
        let w = Window {
            start: end - chrono::Duration::hours(24),
            end,
        };
        let mut server = ServerInfo::named(1, "s");
        server.retention = Some(std::time::Duration::from_secs(16 * 86400));
        let week = Some(chrono::Duration::days(7));
        let got = baseline_windows(w, week, 3, &server);
        // 7 and 14 days back fit in 16 days; 21 days back does not.
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].end, end - chrono::Duration::days(14));
        // The first is read even when retention is too short (the health analyzer says so).
        server.retention = Some(std::time::Duration::from_secs(86400));
        assert_eq!(baseline_windows(w, week, 3, &server).len(), 1);
        assert!(baseline_windows(w, None, 3, &server).is_empty());
    }
}
