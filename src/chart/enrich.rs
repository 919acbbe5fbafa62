//! Reads the trends a channel's charts need, just before the channel journals the
//! notification.
//!
//! Why here and not in the collectors: a chart needs a query's numbers snapshot by
//! snapshot, and only for the few insights a notification charts ([`super::charted`]);
//! the collectors keep per-query window totals only, which is what keeps a daemon
//! watching 1,000 servers within its memory bounds. So a channel that draws charts sits
//! behind a [`ChartEnricher`]: it reads those few trends from the repository (one session
//! of its own per repository, opened when first needed, read-only like every other), puts
//! them on the insights, and hands the notification on. The outbox then journals the
//! notification with its trends, so a resumed delivery draws the same chart.
//!
//! Reading is bounded by [`READ_BUDGET`] per notification: a repository that is slow or
//! down costs the message its charts, never its text.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::TimeDelta;
use slog::{debug, warn, Logger};

use crate::powa::trend::{self, TrendQuery};
use crate::powa::{self, Repository, RepositorySettings};
use sentinel_actors::channel::{Deliver, DeliveryReport};
use sentinel_actors::{Insight, Notification, Trend, Window};

/// Longest a notification waits for its trends, all of them together.
pub const READ_BUDGET: Duration = Duration::from_secs(3);

/// Where trends are read: the repositories by name, and which baselines to draw.
pub struct TrendSource {
    repositories: BTreeMap<String, RepositorySettings>,
    baseline_offset: Duration,
    baseline_periods: u32,
    budget: Duration,
    /// One session per repository, kept while it works.
    open: tokio::sync::Mutex<HashMap<String, Arc<Repository>>>,
    /// Trends read in the last [`RECENT`], by insight fingerprint and window: the report
    /// page's writer and the channel's own enricher chart the same insights moments
    /// apart, and the repository is read once for both.
    recent: std::sync::Mutex<HashMap<RecentKey, (std::time::Instant, Option<Trend>)>>,
    log: Logger,
}

/// An insight's fingerprint and its window's bounds (microseconds).
type RecentKey = (u64, i64, i64);

fn recent_key(i: &Insight) -> RecentKey {
    (
        i.fingerprint.0,
        i.window.start.timestamp_micros(),
        i.window.end.timestamp_micros(),
    )
}

/// How long a trend read is reused.
const RECENT: Duration = Duration::from_secs(60);

impl TrendSource {
    /// `baseline_offset` and `baseline_periods` are `[analysis]`'s: the windows drawn
    /// behind the insight's own are those its analyzers compared it with.
    pub fn new(
        repositories: BTreeMap<String, RepositorySettings>,
        baseline_offset: Duration,
        baseline_periods: u32,
        log: Logger,
    ) -> Self {
        TrendSource {
            repositories,
            baseline_offset,
            baseline_periods,
            budget: READ_BUDGET,
            open: tokio::sync::Mutex::new(HashMap::new()),
            recent: std::sync::Mutex::new(HashMap::new()),
            log,
        }
    }

    /// The trend of `i` read in the last [`RECENT`], if any (outer None: not read).
    fn recently_read(&self, i: &Insight) -> Option<Option<Trend>> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, (at, _)| at.elapsed() < RECENT);
        recent.get(&recent_key(i)).map(|(_, t)| t.clone())
    }

    fn remember(&self, i: &Insight, t: &Option<Trend>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.insert(recent_key(i), (std::time::Instant::now(), t.clone()));
    }

    /// The windows of a chart about `w`: itself, then each baseline, nearest first.
    pub fn windows(&self, w: Window) -> Vec<(i64, Window)> {
        let step = self.baseline_offset.as_secs() as i64;
        (0..=i64::from(self.baseline_periods))
            .map(|k| {
                let back = TimeDelta::seconds(k * step);
                (
                    k * step,
                    Window {
                        start: w.start - back,
                        end: w.end - back,
                    },
                )
            })
            .collect()
    }

    /// `n` with the trends of its charted insights that could be read in time.
    pub async fn attach(&self, mut n: Notification) -> Notification {
        let wanted = super::charted(&n.insights);
        if wanted.iter().all(|&k| n.insights[k].trend.is_some()) {
            return n;
        }
        let mut insights = n.insights.as_ref().clone();
        let deadline = tokio::time::Instant::now() + self.budget;
        for k in wanted {
            if insights[k].trend.is_some() {
                continue;
            }
            if let Some(t) = self.recently_read(&insights[k]) {
                insights[k].trend = t;
                continue;
            }
            match tokio::time::timeout_at(deadline, self.trend_of(&insights[k])).await {
                Ok(Ok(t)) => {
                    self.remember(&insights[k], &t);
                    insights[k].trend = t;
                }
                Ok(Err(e)) => {
                    warn!(self.log, "Could not read a chart's trend; the insight goes without it."; "error" => e,
                          "fingerprint" => %insights[k].fingerprint);
                }
                Err(_) => {
                    warn!(self.log, "Reading charts' trends took too long; the rest go without charts.";
                          "budget_ms" => self.budget.as_millis() as u64);
                    break;
                }
            }
        }
        n.insights = Arc::new(insights);
        n
    }

    /// The trend of `i`, None when PoWA holds no point of its query in the window.
    async fn trend_of(&self, i: &Insight) -> Result<Option<Trend>, String> {
        let (Some(repo), Some(server), Some(db), Some(queryid)) = (
            i.label("repository"),
            i.label("server"),
            i.label("database"),
            i.label("queryid").and_then(|q| q.parse::<i64>().ok()),
        ) else {
            return Ok(None);
        };
        let r = self.repository(repo).await?;
        let Some(srv) = r.info.servers.iter().find(|s| s.name == server) else {
            return Ok(None);
        };
        let read = async {
            let Some(dbid) = trend::database_oid(&r.client, &r.info, srv, db).await? else {
                return Ok(None);
            };
            let series = trend::read_trend(
                &r.client,
                &r.info,
                srv,
                TrendQuery { dbid, queryid },
                &self.windows(i.window),
            )
            .await?;
            Ok(Some(series))
        };
        match read.await {
            Ok(Some(series)) if series.first().is_some_and(|s| !s.points.is_empty()) => {
                debug!(self.log, "Trend read for a chart."; "points" => series.iter().map(|s| s.points.len()).sum::<usize>());
                Ok(Some(Trend { series }))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                let e: powa::session::QueryError = e;
                if e.is_session_lost() {
                    self.open.lock().await.remove(repo);
                }
                Err(format!("repository `{repo}`: {e}"))
            }
        }
    }

    async fn repository(&self, name: &str) -> Result<Arc<Repository>, String> {
        let mut open = self.open.lock().await;
        if let Some(r) = open.get(name) {
            if !r.client.is_closed() {
                return Ok(Arc::clone(r));
            }
        }
        let settings = self
            .repositories
            .get(name)
            .ok_or_else(|| format!("no repository `{name}` in the configuration"))?;
        let r = Arc::new(
            powa::connect(name, settings)
                .await
                .map_err(|e| e.to_string())?,
        );
        open.insert(name.to_string(), Arc::clone(&r));
        Ok(r)
    }
}

/// Stands in front of a channel: reads the trends of what it is asked to deliver, then
/// hands it on (see the module's documentation).
pub struct ChartEnricher {
    inner: Recipient<Deliver>,
    source: Arc<TrendSource>,
    channel: String,
}

impl ChartEnricher {
    pub fn new(channel: &str, inner: Recipient<Deliver>, source: Arc<TrendSource>) -> Self {
        ChartEnricher {
            inner,
            source,
            channel: channel.to_string(),
        }
    }
}

impl Actor for ChartEnricher {
    type Context = Context<Self>;
}

impl Handler<Deliver> for ChartEnricher {
    type Result = ResponseFuture<DeliveryReport>;

    /// The reading holds this actor (`wait`), so notifications reach the channel in the
    /// order they came; the delivery itself does not, so the channel still sees what
    /// queues up meanwhile (and may merge it into a digest).
    fn handle(&mut self, Deliver(n): Deliver, ctx: &mut Context<Self>) -> Self::Result {
        let id = n.id;
        let source = Arc::clone(&self.source);
        let prepare = async move { source.attach(n).await };
        crate::channels::front::hand_on(ctx, self.inner.clone(), self.channel.clone(), id, prepare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sentinel_actors::{NotifyReason, Severity};

    fn source() -> TrendSource {
        TrendSource::new(
            BTreeMap::new(),
            Duration::from_secs(7 * 86400),
            2,
            Logger::root(slog::Discard, slog::o!()),
        )
    }

    #[test]
    fn the_baselines_are_the_analyzers_windows() {
        let t0 = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let w = Window {
            start: t0,
            end: t0 + TimeDelta::hours(1),
        };
        let ws = source().windows(w);
        assert_eq!(ws.len(), 3);
        assert_eq!(ws[0], (0, w));
        assert_eq!(ws[2].0, 14 * 86400);
        assert_eq!(ws[2].1.start, t0 - TimeDelta::days(14));
    }

    /// A repository the configuration does not know (or that cannot be reached) costs the
    /// insight its chart, nothing else.
    #[actix_rt::test]
    async fn an_unreadable_trend_leaves_the_insight_as_it_was() {
        let i =
            crate::story::fixture::insight("regression.mean_time", "db1", "42", Severity::Warning);
        let n = Notification {
            id: 7,
            channel: "ops".into(),
            reason: NotifyReason::Immediate,
            insights: Arc::new(vec![i.clone()]),
            created_at: i.observed_at,
            mentions: Default::default(),
        };
        let out = source().attach(n).await;
        assert_eq!(out.id, 7);
        assert_eq!(out.insights.as_ref(), &vec![i]);
    }
}
