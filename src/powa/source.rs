//! The collector source for one PoWA server: a live window (see [`super::live`]) that
//! reads the whole window at the first collection and only what PoWA added afterwards.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;

use super::discovery::{PowaInfo, ServerInfo};
use super::live::LiveWindow;
use super::reader::StatementsWindow;
use super::session::Session;
use sentinel_actors::collector::{Collected, Source};
use sentinel_actors::{SourceError, Window};

/// The past windows a source reads beside the current one (see [`baseline_windows`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Baselines {
    /// Read the window shifted back by this much too (None: no baseline).
    pub offset: Option<std::time::Duration>,
    /// How many multiples of the offset to read (as far as retention reaches; at least 1).
    pub periods: u32,
}

pub struct PowaSource {
    name: String,
    client: Arc<Session>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    baselines: Baselines,
    /// Shared with the collection future; collections never overlap (the collector
    /// actor runs them one at a time), so the lock is never contended.
    live: Arc<tokio::sync::Mutex<LiveWindow>>,
    /// Reads pg_qualstats quals for the missing-index advisor, when it is on.
    quals: Option<super::qualstats::QualsCollector>,
    /// Reaches the server itself for names PoWA does not keep (tables, columns, roles).
    reach: Option<Arc<super::monitored::Reach>>,
    roles: Arc<tokio::sync::Mutex<super::monitored::RoleCache>>,
    /// The server's change timeline (pg_track_settings), read incrementally.
    changes: Arc<tokio::sync::Mutex<super::changes::ChangeReader>>,
    /// The server's indexes as last seen, and their changes.
    indexes: Arc<tokio::sync::Mutex<super::indexes::IndexTracker>>,
    /// The server's statistics resets.
    resets: Arc<tokio::sync::Mutex<super::resets::ResetReader>>,
}

impl PowaSource {
    /// A source over the live window `live` (a fresh one, or one kept from an earlier
    /// collector of the same server rebuilt on another session of the repository).
    pub fn with_live(
        repository: &str,
        client: Arc<Session>,
        info: Arc<PowaInfo>,
        server: ServerInfo,
        baselines: Baselines,
        live: Arc<tokio::sync::Mutex<LiveWindow>>,
    ) -> Self {
        PowaSource {
            name: format!("{repository}/{}", server.name),
            client,
            info,
            server,
            baselines,
            live,
            quals: None,
            reach: None,
            roles: Arc::default(),
            changes: Arc::default(),
            indexes: Arc::default(),
            resets: Arc::default(),
        }
    }

    /// Reach the server itself (see [`super::monitored::Reach`]) for table, column and
    /// role names, existing indexes and hypopg checks.
    pub fn with_reach(mut self, reach: Arc<super::monitored::Reach>) -> Self {
        self.reach = Some(reach);
        self
    }

    /// Keep the server's last look at its indexes in `file` (see
    /// [`super::indexes::IndexTracker::persisted`]).
    pub fn with_index_state(mut self, file: std::path::PathBuf, read_only: bool) -> Self {
        let mut tracker = super::indexes::IndexTracker::persisted(file);
        if read_only {
            tracker = tracker.read_only();
        }
        self.indexes = Arc::new(tokio::sync::Mutex::new(tracker));
        self
    }

    /// Also read the server's pg_qualstats quals each cycle.
    pub fn with_quals(mut self, quals: super::qualstats::QualsCollector) -> Self {
        self.quals = Some(quals);
        self
    }
}

impl Source for PowaSource {
    type Output = StatementsWindow;

    fn name(&self) -> &str {
        &self.name
    }

    fn collect(&mut self, window: Window) -> LocalBoxFuture<'static, Collected<StatementsWindow>> {
        let client = Arc::clone(&self.client);
        let live = Arc::clone(&self.live);
        let offsets: Vec<chrono::Duration> = baseline_windows(
            window,
            self.baselines
                .offset
                .and_then(|d| chrono::Duration::from_std(d).ok()),
            self.baselines.periods,
            &self.server,
        )
        .iter()
        .map(|b| window.start - b.start)
        .collect();
        let info = Arc::clone(&self.info);
        let server = self.server.clone();
        let quals = self.quals.clone();
        let reach = self.reach.clone();
        let roles = Arc::clone(&self.roles);
        let changes = Arc::clone(&self.changes);
        let indexes = Arc::clone(&self.indexes);
        let resets = Arc::clone(&self.resets);
        // The timeline reaches back to the nearest baseline window's start: what the
        // findings are told with (older changes would be read and never shown).
        let since = window.start - offsets.iter().copied().min().unwrap_or_default();
        Box::pin(async move {
            let mut live = live.lock().await;
            let (mut w, _cost) = live
                .cycle(&client, window, &offsets)
                .await
                .map_err(|e| SourceError::new(e.to_string()))?;
            let route = match &reach {
                Some(r) => Some(r.route(&client, &info, &server).await),
                None => None,
            };
            if let Some(mut q) = quals {
                let mut why_not = None;
                if let Some(route) = &route {
                    q.monitored = route.settings.clone();
                    why_not = route.why_not.clone();
                }
                w.quals = q
                    .collect_routed(&client, &info, &server, window, w.calls_by_query(), why_not)
                    .await
                    .map_err(|e| SourceError::new(e.to_string()))?;
                if let (Some(r), Some(qw)) = (&reach, &w.quals) {
                    r.log_skipped(&server, qw);
                }
                // Rows read this cycle: the live window's and the quals'.
                w.points += w.quals.as_ref().map_or(0, |q| q.rows);
            }
            if let (Some(r), Some(route)) = (&reach, &route) {
                r.name_roles(route, &mut w, &mut *roles.lock().await).await;
            }
            let names: std::collections::HashMap<u32, Arc<str>> = w
                .queries
                .iter()
                .filter_map(|q| Some((q.key.userid, q.user.clone()?)))
                .collect();
            // A history that cannot be read (no SELECT on its tables, say) costs the
            // findings their "what changed", not the cycle; a lost session is the cycle's.
            let timeline = match changes
                .lock()
                .await
                .cycle(&client, &info, &server, since, &names)
                .await
            {
                Ok(t) => t,
                Err(e) if !e.is_session_lost() => {
                    super::changes::Timeline::missing(super::changes::unreadable(&e), since)
                }
                Err(e) => return Err(SourceError::new(e.to_string())),
            };
            // Statistics resets, from PoWA's own totals (always there).
            let timeline = {
                let mut r = resets.lock().await;
                match r.cycle(&client, &info, &server, since).await {
                    Ok(()) => timeline.with(r.events(since)),
                    Err(e) if e.is_session_lost() => return Err(SourceError::new(e.to_string())),
                    Err(_) => timeline,
                }
            };
            // Index changes, where the server itself can be reached.
            let timeline = match route.as_ref().and_then(|r| r.settings.as_ref()) {
                Some(m) => {
                    let mut tracker = indexes.lock().await;
                    let label = format!("{}/{}", w.repository, server.name);
                    let now = w.last_ts.unwrap_or(window.end);
                    // A file that cannot be written costs the next run its comparison only.
                    let _ = tracker.cycle(m, &label, &w, &info.database, now).await;
                    timeline.with_indexes(tracker.events(since))
                }
                // PoWA 5 keeps a catalog of its remote servers: no connection needed.
                None if super::catalog::kept(&info) && server.srvid != 0 => {
                    let mut tracker = indexes.lock().await;
                    match tracker.catalog_cycle(&client, &info, server.srvid).await {
                        Ok(refreshed) if !refreshed.is_empty() => {
                            let now = w.last_ts.unwrap_or(window.end);
                            let mut t = timeline.with_indexes(tracker.events(since));
                            t.catalog_note =
                                super::catalog::catalog_note(&refreshed, server.srvid, now);
                            t
                        }
                        Ok(_) => timeline,
                        Err(e) if e.is_session_lost() => {
                            return Err(SourceError::new(e.to_string()))
                        }
                        Err(_) => timeline,
                    }
                }
                None => timeline,
            };
            // How the tables of those index changes were scanned, then and now.
            let mut timeline = timeline;
            if let Some(off) = offsets.iter().copied().min() {
                let then = (window.start - off, window.end - off);
                match super::catalog::scans_of(
                    &client,
                    &info,
                    server.srvid,
                    &timeline,
                    then,
                    (window.start, window.end),
                )
                .await
                {
                    Ok(scans) => timeline.scans = scans,
                    Err(e) if e.is_session_lost() => return Err(SourceError::new(e.to_string())),
                    Err(_) => {}
                }
            }
            w.changes = Some(Arc::new(timeline));
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
