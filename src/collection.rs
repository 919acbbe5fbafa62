//! The daemon's collection side: one supervised task per repository, one task per
//! server it holds.
//!
//! ```text
//!  repository task (one per repository)         server task (one per server)
//!  connect (backoff) → discover → reconcile ──▶  wait for its tick (period + jitter)
//!  every rediscover_every: discover again         take a pooled session
//!  session lost: reconnect, restart servers       Collect → analyzers → gate
//!                                                 overran? skip the missed ticks
//! ```
//!
//! Everything runs on the actix System's single thread (so shared state is `Rc`/`RefCell`);
//! the database work is asynchronous, so one slow server never holds another: each
//! server has its own task, and the repository's session pool ([`powa::pool`]) only
//! bounds how many read the same repository at once.
//!
//! Deadlines: connecting is bounded by `connect_timeout`, every query by `statement_timeout`
//! plus a margin ([`powa::session`]); a query that runs out of time drops its session, which
//! the repository task sees (as it sees a session the server closed): the repository is
//! marked down, logged, and reconnected with backoff. An idle discovery session is probed so
//! that a freeze between cycles is noticed too.
//!
//! Supervision: a repository task that panics is restarted under the restart policy
//! ([`sentinel_actors::task::supervise`]); a collector whose mailbox closed (its handler
//! panicked) is rebuilt by its server task, under the same policy.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use slog::{debug, info, o, warn, Logger};

use crate::config::Settings;
use crate::http::{CycleStatus, ServerStatus, Status, StatusBoard};
use crate::metrics::{self, metrics};
use crate::powa::pool::SessionPool;
use crate::powa::{self, discovery, PowaInfo, ServerInfo};
use crate::topology::{self, Analyzers};
use sentinel_actors::collector::{Collect, CollectorActor};
use sentinel_actors::supervise::{Events, RestartPolicy};
use sentinel_actors::task::{supervise, Cancel, Restarts, Task};
use sentinel_actors::ticker::{SystemClock, Ticker, Ticks};
use sentinel_actors::Window;

type Collector = Addr<CollectorActor<powa::source::PowaSource>>;
type Client = Arc<powa::Session>;

/// What every collection task reads: the settings and analyzers of the current
/// generation (a reload makes a new one).
pub struct Shared {
    pub settings: Arc<Settings>,
    pub analyzers: Rc<Analyzers>,
    pub board: StatusBoard,
    pub tz: chrono_tz::Tz,
    pub log: Logger,
    /// With replicas: the servers this one may collect (the others collect the rest).
    pub owned: Option<Rc<crate::replica::Owned>>,
}

impl Shared {
    /// Should this process collect `server` of `repository`: configured, and with
    /// replicas, this replica's share.
    fn collects(&self, repository: &str, server: &str) -> bool {
        topology::wanted(&self.settings, repository, server)
            && self
                .owned
                .as_ref()
                .is_none_or(|o| o.may_collect(&format!("{repository}/{server}")))
    }
}

/// A time as `/status` shows it: RFC 3339 in the report's time zone.
pub fn show(tz: chrono_tz::Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

/// Changes `/status` (a poisoned board is left as it is).
pub fn update(board: &StatusBoard, f: impl FnOnce(&mut Status)) {
    if let Ok(mut s) = board.lock() {
        f(&mut s);
    }
}

fn events(log: &Logger) -> Events {
    Arc::new(metrics::MetricEvents { log: log.clone() })
}

/// Starts one supervised task per configured repository.
pub fn start_repositories(shared: &Rc<Shared>) -> Vec<Task> {
    if let Some(owned) = &shared.owned {
        owned.keep_repositories(&shared.settings.repositories.keys().cloned().collect());
    }
    // Repositories and servers dropped from the configuration leave the status page and
    // the metrics; the others keep theirs across a reload (their cycle counts and the age
    // of their last success go on, so a server stuck before the reload still shows it).
    update(&shared.board, |s| {
        s.repositories
            .retain(|r, _| shared.settings.repositories.contains_key(r));
        let gone: Vec<String> = s
            .servers
            .iter()
            .filter(|(key, v)| {
                let server = key
                    .strip_prefix(&format!("{}/", v.repository))
                    .unwrap_or(key);
                !shared.collects(&v.repository, server)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            s.servers.remove(&key);
            metrics().forget_server(&key);
        }
    });
    shared
        .settings
        .repositories
        .keys()
        .map(|name| {
            let shared = Rc::clone(shared);
            let name = name.clone();
            Task::spawn(move |cancel| supervised_repository(shared, name, cancel))
        })
        .collect()
}

/// Runs a repository's loop and restarts it if it panics (a PoWA answer nobody foresaw,
/// say), under the restart policy: the repository is marked down with the reason in the
/// meantime, and after too many panics it is marked failed while the others run on.
/// Its servers' tasks end with it (their cancel sender is dropped).
async fn supervised_repository(shared: Rc<Shared>, name: String, cancel: Cancel) {
    let log = shared
        .log
        .new(o!("component" => "repository", "repository" => name.clone()));
    let mut restarts = Restarts::new(
        format!("repository {name}"),
        RestartPolicy::default(),
        events(&log),
    );
    supervise(
        &mut restarts,
        cancel,
        |cancel| repository_loop(Rc::clone(&shared), name.clone(), cancel),
        |reason| mark_down(&shared, &name, &format!("internal error: {reason}")),
    )
    .await;
}

/// Connects with backoff until it works or the task is cancelled.
async fn connect_with_backoff(
    shared: &Shared,
    name: &str,
    cancel: &mut Cancel,
    log: &Logger,
) -> Option<powa::Repository> {
    let settings = &shared.settings.repositories[name];
    let mut wait = Duration::from_secs(1);
    loop {
        // Bounded by connect_timeout (connect, startup, authentication, setup) and the
        // query deadline (discovery); a shutdown does not wait for it either way.
        let attempt = tokio::select! {
            r = powa::connect(name, settings) => r,
            _ = cancel.cancelled() => return None,
        };
        match attempt {
            Ok(r) => return Some(r),
            Err(e) => {
                warn!(log, "Repository unavailable; retrying."; "error" => %e,
                    "retry_in" => %humantime::format_duration(wait));
                metrics().repository_up(name, false);
                update(&shared.board, |s| {
                    let r = s.repositories.entry(name.to_string()).or_default();
                    r.reachable = false;
                    r.error = Some(crate::logging::redact(&e.to_string()));
                });
            }
        }
        if !cancel.sleep(wait).await {
            return None;
        }
        wait = (wait * 2).min(shared.settings.collection.repository_retry_max);
    }
}

struct ServerTask {
    srvid: i32,
    task: Task,
}

/// How often the discovery session is asked for a round trip while nothing else runs on
/// it: a repository that freezes between cycles is noticed within this plus the query
/// deadline (`statement_timeout` + 5s), not at the next cycle.
const PROBE_EVERY: Duration = Duration::from_secs(5);

async fn repository_loop(shared: Rc<Shared>, name: String, mut cancel: Cancel) {
    let log = shared
        .log
        .new(o!("component" => "repository", "repository" => name.clone()));
    let coll = shared.settings.collection.clone();
    let mut servers: BTreeMap<String, ServerTask> = BTreeMap::new();
    'connect: loop {
        // A new generation: collectors (and sessions) of the old one cannot be reused; its
        // servers pause until the repository is back.
        for (key, s) in std::mem::take(&mut servers) {
            s.task.stop().await;
            if let Some(owned) = &shared.owned {
                owned.set_running(&key, false);
            }
        }
        let Some(repo) = connect_with_backoff(&shared, &name, &mut cancel, &log).await else {
            break 'connect;
        };
        // Discovery keeps this first session; collections get sessions of their own.
        let client = Arc::clone(&repo.client);
        let opening = SessionPool::open(
            &name,
            &shared.settings.repositories[&name],
            coll.max_concurrent_per_repository,
            &client,
            &log,
        );
        let pool = tokio::select! {
            p = opening => p,
            _ = cancel.cancelled() => break 'connect,
        };
        info!(log, "Repository connected."; "powa" => %repo.info.version, "servers" => repo.info.servers.len(),
            "collection_sessions" => pool.len());
        let mut info = repo.info;
        let mut last_discovery = Instant::now();
        let mut last_probe = Instant::now();
        let mut share = shared.owned.as_ref().map(|o| o.subscribe());
        loop {
            metrics().repository_up(&name, true);
            update(&shared.board, |s| {
                let r = s.repositories.entry(name.clone()).or_default();
                r.reachable = true;
                r.error = None;
                r.powa_version = Some(info.version.to_string());
                r.servers = info.servers.len();
            });
            reconcile(&shared, &name, &pool, &info, &mut servers, &log).await;
            // Wait for the next discovery, checking the sessions meanwhile: any one lost
            // (the repository went down, a backend was terminated, a query ran out of
            // time on a frozen repository) reconnects them all.
            loop {
                if !cancel
                    .sleep(Duration::from_secs(2).min(coll.rediscover_every))
                    .await
                {
                    break 'connect;
                }
                if last_probe.elapsed() >= PROBE_EVERY {
                    last_probe = Instant::now();
                    // An error other than a timeout leaves the session open: the checks
                    // below decide.
                    tokio::select! {
                        _ = client.probe() => {}
                        _ = cancel.cancelled() => break 'connect,
                    }
                }
                if let Some(reason) = client.closed_reason().or_else(|| pool.closed_reason()) {
                    warn!(log, "Repository session lost; reconnecting. Its servers pause until then.";
                        "error" => &reason);
                    mark_down(&shared, &name, &reason);
                    continue 'connect;
                }
                if last_discovery.elapsed() >= coll.rediscover_every {
                    break;
                }
                // This replica's share changed: start and stop collectors now.
                if share
                    .as_mut()
                    .is_some_and(|s| s.has_changed().unwrap_or(false))
                {
                    if let Some(s) = share.as_mut() {
                        s.borrow_and_update();
                    }
                    reconcile(&shared, &name, &pool, &info, &mut servers, &log).await;
                }
            }
            last_discovery = Instant::now();
            let found = tokio::select! {
                r = discovery::discover(&client) => r,
                _ = cancel.cancelled() => break 'connect,
            };
            match found {
                Ok(i) => info = i,
                Err(e) => {
                    warn!(log, "Re-discovery failed; keeping the known servers."; "error" => %e);
                    if e.needs_reconnect() {
                        mark_down(&shared, &name, &e.to_string());
                        continue 'connect;
                    }
                }
            }
        }
    }
    // Stopped (shutdown or reload): its servers keep their status and metrics, which the
    // next generation's tasks continue (`start_repositories` drops those no longer
    // configured).
    for (key, s) in servers {
        s.task.stop().await;
        if let Some(owned) = &shared.owned {
            owned.set_running(&key, false);
        }
    }
}

fn mark_down(shared: &Shared, name: &str, reason: &str) {
    metrics().repository_up(name, false);
    update(&shared.board, |s| {
        let r = s.repositories.entry(name.to_string()).or_default();
        r.reachable = false;
        r.error = Some(reason.to_string());
    });
}

/// Starts collectors for new servers, stops those of servers gone from `powa_servers` (or
/// from the configuration).
async fn reconcile(
    shared: &Rc<Shared>,
    repo: &str,
    pool: &Rc<SessionPool>,
    info: &PowaInfo,
    servers: &mut BTreeMap<String, ServerTask>,
    log: &Logger,
) {
    if let Some(owned) = &shared.owned {
        // Every server this repository would have collected alone: the replicas share
        // them out.
        owned.offer(
            repo,
            info.servers
                .iter()
                .filter(|s| topology::wanted(&shared.settings, repo, &s.name))
                .map(|s| format!("{repo}/{}", s.name))
                .collect(),
        );
    }
    let wanted: BTreeMap<String, &ServerInfo> = info
        .servers
        .iter()
        .filter(|s| shared.collects(repo, &s.name))
        .map(|s| (format!("{repo}/{}", s.name), s))
        .collect();
    update(&shared.board, |s| {
        s.repositories.entry(repo.to_string()).or_default().watched = wanted.len();
    });
    let gone: Vec<String> = servers
        .iter()
        .filter(|(k, t)| wanted.get(*k).is_none_or(|s| s.srvid != t.srvid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some(t) = servers.remove(&k) {
            info!(log, "Server gone from the repository (or from this replica's share); its collector stops."; "server" => &k);
            t.task.stop().await;
            if let Some(owned) = &shared.owned {
                owned.set_running(&k, false);
            }
            metrics().forget_server(&k);
            update(&shared.board, |s| {
                s.servers.remove(&k);
            });
        }
    }
    let info = Arc::new(info.clone());
    for (key, server) in wanted {
        if servers.contains_key(&key) {
            continue;
        }
        info!(log, "Collector started."; "server" => &key, "srvid" => server.srvid);
        let ctx = ServerCtx {
            shared: Rc::clone(shared),
            repo: repo.to_string(),
            key: key.clone(),
            pool: Rc::clone(pool),
            info: Arc::clone(&info),
            server: server.clone(),
            log: shared
                .log
                .new(o!("component" => "collector", "server" => key.clone())),
        };
        if let Some(owned) = &shared.owned {
            owned.set_running(&key, true);
        }
        let task = Task::spawn(move |cancel| server_loop(ctx, cancel));
        servers.insert(
            key,
            ServerTask {
                srvid: server.srvid,
                task,
            },
        );
    }
}

struct ServerCtx {
    shared: Rc<Shared>,
    repo: String,
    key: String,
    pool: Rc<SessionPool>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    log: Logger,
}

impl ServerCtx {
    /// A collector reading through `client`, continuing the live window `live` (which
    /// holds no session): rebuilding it on another session loses nothing, and the
    /// numbering is kept by `seq`.
    fn start(&self, client: &Client, live: &topology::LiveState, seq: u64) -> Collector {
        topology::start_collector(
            &self.repo,
            Arc::clone(client),
            Arc::clone(&self.info),
            self.server.clone(),
            &self.shared.analyzers,
            Arc::clone(live),
            seq,
        )
    }

    fn fresh_live(&self) -> topology::LiveState {
        topology::live_state(&self.repo, &self.info, &self.server)
    }
}

/// What one cycle gave, for the metrics and `/status`.
struct CycleOutcome {
    error: Option<String>,
    insights: usize,
    rows: u64,
    data: Option<DateTime<Utc>>,
}

async fn server_loop(ctx: ServerCtx, mut cancel: Cancel) {
    let coll = &ctx.shared.settings.collection;
    let period = coll.period_for(ctx.server.frequency);
    let jitter = coll.jitter_for(&ctx.key, period);
    let window_len = chrono::Duration::from_std(ctx.shared.settings.analysis.window)
        .unwrap_or(chrono::Duration::hours(24));
    let tz = ctx.shared.tz;
    update(&ctx.shared.board, |s| {
        let e = s
            .servers
            .entry(ctx.key.clone())
            .or_insert_with(ServerStatus::default);
        e.repository = ctx.repo.clone();
        e.period_seconds = period.as_secs();
    });
    let mut restarts = Restarts::new(ctx.key.clone(), RestartPolicy::default(), events(&ctx.log));
    // With replicas a server's snapshots are numbered from the time its collector
    // started, so that the replica that takes it over numbers after the one before (the
    // gate orders a server's cycles by number; the queue keeps one report per number).
    let mut seq = match ctx.shared.owned {
        Some(_) => Utc::now().timestamp_millis().max(0) as u64 * 1000,
        None => 0,
    };
    // Spread the collectors' first sessions; later each takes whichever is free.
    let mut session = ctx
        .pool
        .spread(sentinel_actors::Fingerprint::of([&ctx.key]).0);
    let mut live = ctx.fresh_live();
    let mut addr = ctx.start(&session, &live, seq);
    // The first cycle runs right away (the pool bounds how many read at once), later
    // ones on the jittered grid.
    let mut ticks = Ticks::start(Ticker::new(period, jitter), SystemClock);
    while ticks.wait(&mut cancel).await {
        let lease = tokio::select! {
            l = ctx.pool.checkout(&session) => l,
            _ = cancel.cancelled() => return,
        };
        if !Arc::ptr_eq(lease.client(), &session) {
            // Its own session is busy with another server's read: read on the free one.
            session = Arc::clone(lease.client());
            addr = ctx.start(&session, &live, seq);
        }
        let started = ticks.now();
        let clock = Instant::now();
        let window = Window {
            start: started - window_len,
            end: started,
        };
        metrics().set_queue_depth("collect_waiting", ctx.pool.exhausted() as i64);
        // A stop (shutdown, reload) does not wait for the cycle: a read stuck on a frozen
        // repository would hold it up to the query deadline. PoWA keeps the data; the
        // next collector reads it again.
        let result = tokio::select! {
            r = addr.send(Collect { window }) => r,
            _ = cancel.cancelled() => return,
        };
        drop(lease);
        let secs = clock.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(Ok(summary)) => {
                seq = summary.seq;
                CycleOutcome {
                    error: None,
                    insights: summary.insights,
                    rows: summary.rows,
                    data: summary.taken_at,
                }
            }
            Ok(Err(e)) => {
                // The collector numbered this attempt too; a rebuilt one must not reuse it.
                seq += 1;
                CycleOutcome::failed(e.to_string())
            }
            Err(e) => {
                // The collector is gone (a panic dropped it): restart under the policy.
                let (reason, restart) = restarts.mailbox_closed("collector", &e, &mut cancel).await;
                if !restart {
                    return;
                }
                // A panic may have left the live window half-updated.
                live = ctx.fresh_live();
                addr = ctx.start(&session, &live, seq);
                CycleOutcome::failed(reason)
            }
        };
        let ok = outcome.error.is_none();
        metrics().cycle(&ctx.key, ok, secs, outcome.rows, outcome.data);
        match &outcome.error {
            None => {
                debug!(ctx.log, "Cycle done."; "insights" => outcome.insights, "rows" => outcome.rows, "seconds" => secs)
            }
            Some(e) => {
                warn!(ctx.log, "Cycle failed; the other servers are not affected."; "error" => e)
            }
        }
        // Overran: every tick that passed during the cycle is skipped, not queued.
        let end = ticks.now();
        let skipped = ticks.ran(started, end);
        for _ in 0..skipped {
            metrics().cycle_skipped(&ctx.key);
        }
        if skipped > 0 {
            warn!(ctx.log, "Cycle overran its period; the ticks it covered are skipped.";
                "skipped" => skipped, "seconds" => secs, "period" => %humantime::format_duration(period));
        }
        update(&ctx.shared.board, |s| {
            let e = s
                .servers
                .entry(ctx.key.clone())
                .or_insert_with(ServerStatus::default);
            e.cycles += 1;
            e.skipped += skipped;
            if ok {
                e.consecutive_failures = 0;
                e.last_success = Some(show(tz, end));
            } else {
                e.consecutive_failures += 1;
            }
            e.last_cycle = Some(CycleStatus {
                started_at: show(tz, started),
                duration_ms: (secs * 1000.0) as u64,
                ok,
                error: outcome.error.clone(),
                insights: outcome.insights,
                rows: outcome.rows,
                data_time: outcome.data.map(|d| show(tz, d)),
            });
        });
    }
}

impl CycleOutcome {
    fn failed(reason: String) -> Self {
        CycleOutcome {
            error: Some(reason),
            insights: 0,
            rows: 0,
            data: None,
        }
    }
}
