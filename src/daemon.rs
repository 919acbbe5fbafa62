//! The `run` daemon: collection on PoWA's rhythm, reports on the configured schedule,
//! supervision, configuration reload and graceful shutdown.
//!
//! ```text
//!  repository task (one per repository)         server task (one per server)
//!  connect (backoff) → discover → reconcile ──▶  wait for its tick (period + jitter)
//!  every rediscover_every: discover again         take a repository permit
//!  client closed: reconnect, restart servers      Collect → analyzers → gate
//!                                                 overran? skip the missed ticks
//!  report task: next cron/interval time → Flush → channels
//! ```
//!
//! Everything runs on the actix System's single thread (so shared state is `Rc`/`RefCell`);
//! the database work and the deliveries are asynchronous, so one slow server never holds
//! another: each server has its own task, and the per-repository semaphore only bounds
//! how many read the same repository at once.
//!
//! Reload (`SIGHUP`): the new file is loaded and validated first; if it is wrong the old
//! settings stay and the reason is logged. Otherwise the collection side is rebuilt from
//! the new settings (repositories, servers, analyzers, analysis window, schedule): cycles
//! in progress are not waited for, new tasks start; each server keeps its status and
//! metrics. The gate and the channels are kept as they are, so nothing pending and no
//! lifecycle state is lost; changes to `[channels]` (secrets included), `[gate]`,
//! `[routes]`, `[http]`, `[log]` and `[state]` need a restart, and the log names every
//! changed key (never its value).
//!
//! Shutdown (`SIGTERM`/`SIGINT`): stop collecting (cycles in progress are not waited for:
//! one stuck on a frozen repository would take the channels' time; PoWA keeps what it had
//! read), flush the gate, wait for the channels to report, all within
//! `collection.shutdown_deadline`.
//!
//! Deadlines: connecting is bounded by `connect_timeout`, every query by `statement_timeout`
//! plus a margin ([`powa::session`]); a query that runs out of time drops its session, which
//! the repository task sees (as it sees a session the server closed): the repository is
//! marked down, logged, and reconnected with backoff. An idle discovery session is probed so
//! that a freeze between cycles is noticed too.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use slog::{debug, error, info, o, warn, Logger};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::http::{self, ChannelStatus, CycleStatus, ServerStatus, Status, StatusBoard};
use crate::metrics::{self, metrics};
use crate::powa::{self, discovery, PowaInfo, ServerInfo};
use crate::schedule::ReportSchedule;
use crate::topology::{self, Analyzers, Outputs, RunOptions};
use sentinel_actors::collector::{Collect, CollectorActor};
use sentinel_actors::gate::Flush;
use sentinel_actors::supervise::{Decision, RestartPolicy, RestartTracker, SupervisionEvents};
use sentinel_actors::Window;

type Collector = Addr<CollectorActor<crate::powa::source::PowaSource>>;

/// What every task reads: the settings and analyzers of the current generation.
struct Shared {
    settings: Arc<Settings>,
    analyzers: Rc<Analyzers>,
    board: StatusBoard,
    tz: chrono_tz::Tz,
    log: Logger,
}

/// A running task and the way to stop it.
struct Task {
    cancel: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Task {
    fn spawn<F, Fut>(f: F) -> Task
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let (cancel, rx) = watch::channel(false);
        let join = actix_rt::spawn(f(rx));
        Task { cancel, join }
    }

    async fn stop(self) {
        let _ = self.cancel.send(true);
        let _ = self.join.await;
    }
}

/// Resolves when the watch says stop (or its sender is gone).
async fn cancelled(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn show(tz: chrono_tz::Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

fn update(board: &StatusBoard, f: impl FnOnce(&mut Status)) {
    if let Ok(mut s) = board.lock() {
        f(&mut s);
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Must run inside an actix System.
pub async fn run(config_path: PathBuf, settings: Settings, log: Logger) -> ExitCode {
    let log = log.new(o!("command" => "run"));
    if let crate::config::Origin::Seed(t) = &settings.origin {
        info!(log, "This configuration is in the seed system's format; it was translated. `powa-sentinel check --config FILE` prints the native form.";
            "file" => %config_path.display());
        for n in &t.notes {
            info!(log, "Seed configuration note."; "note" => n);
        }
    }
    if settings.state.dir.is_none() {
        warn!(log, "No [state] dir: pending findings and lifecycle are kept in memory only and a restart forgets them.");
    }
    let schedule = match settings.schedule.parse() {
        Ok(s) => s,
        Err(p) => {
            error!(log, "Invalid schedule."; "key" => p.key, "error" => p.message);
            return ExitCode::from(2);
        }
    };
    let outputs = match topology::build_outputs(&settings, RunOptions::default(), &log) {
        Ok(o) => o,
        Err(e) => {
            error!(log, "Cannot start."; "error" => format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    let board: StatusBoard = Arc::default();
    update(&board, |s| {
        s.version = env!("CARGO_PKG_VERSION");
        s.started_at = show(schedule.tz(), Utc::now());
        s.timezone = schedule.tz().to_string();
        for name in outputs.channels.keys() {
            s.channels.insert(name.clone(), ChannelStatus::default());
        }
    });
    let http = if settings.http.enabled {
        match http::start(&settings.http, Arc::clone(&board)) {
            Ok(h) => {
                info!(log, "HTTP endpoints listening."; "listen" => &settings.http.listen);
                Some(h)
            }
            Err(e) => {
                error!(log, "Cannot listen for HTTP; set http.listen to a free address or http.enabled = false.";
                    "listen" => &settings.http.listen, "error" => %e);
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };

    let analyzers = Rc::new(topology::build_analyzers(&settings, &outputs.gate, &log));
    let settings = Arc::new(settings);
    let mut shared = Rc::new(Shared {
        tz: schedule.tz(),
        settings: Arc::clone(&settings),
        analyzers,
        board: Arc::clone(&board),
        log: log.clone(),
    });
    let outputs = Rc::new(outputs);
    let mut repos = start_repositories(&shared);
    let (schedule_tx, schedule_rx) = watch::channel(schedule);
    let reports = Task::spawn({
        let outputs = Rc::clone(&outputs);
        let board = Arc::clone(&board);
        let log = log.new(o!("component" => "reports"));
        let at_start = settings.schedule.report_at_start;
        move |cancel| report_loop(outputs, board, schedule_rx, at_start, cancel, log)
    });

    let watch = Task::spawn({
        let outputs = Rc::clone(&outputs);
        let board = Arc::clone(&board);
        let log = log.new(o!("component" => "supervisor"));
        move |cancel| watch_outputs(outputs, board, cancel, log)
    });

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(log, "Cannot watch SIGTERM."; "error" => %e);
            return ExitCode::from(1);
        }
    };
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            error!(log, "Cannot watch SIGHUP."; "error" => %e);
            return ExitCode::from(1);
        }
    };
    info!(log, "Running."; "repositories" => settings.repositories.len(), "config" => %config_path.display());
    loop {
        tokio::select! {
            _ = term.recv() => { info!(log, "SIGTERM: shutting down."); break; }
            _ = tokio::signal::ctrl_c() => { info!(log, "SIGINT: shutting down."); break; }
            _ = hup.recv() => {
                match reload(&config_path, &shared, &outputs, &log) {
                    Err(reason) => {
                        error!(log, "Configuration reload refused; the running configuration is kept.";
                            "file" => %config_path.display(), "error" => &reason);
                        update(&board, |s| s.last_reload_error = Some(crate::logging::redact(&reason)));
                    }
                    Ok((next, schedule)) => {
                        for r in std::mem::take(&mut repos) {
                            r.stop().await;
                        }
                        shared = next;
                        repos = start_repositories(&shared);
                        let _ = schedule_tx.send(schedule);
                        update(&board, |s| { s.config_reloads += 1; s.last_reload_error = None; });
                        info!(log, "Configuration reloaded.");
                    }
                }
            }
        }
    }
    watch.stop().await;
    let deadline = shared.settings.collection.shutdown_deadline;
    let clean = shutdown(repos, reports, &outputs, &board, deadline, &shared, &log).await;
    if let Some(h) = http {
        h.stop(true).await;
    }
    if clean {
        info!(log, "Stopped cleanly.");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The gate and the channels hold state that a restart would lose (what is pending, the
/// lifecycle), so they are not restarted behind the operator's back: a closed mailbox
/// marks them failed in the metrics, `/status` and `/readyz`, and the log says to restart.
async fn watch_outputs(
    outputs: Rc<Outputs>,
    board: StatusBoard,
    mut cancel: watch::Receiver<bool>,
    log: Logger,
) {
    let events = metrics::MetricEvents { log: log.clone() };
    let mut reported = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = cancelled(&mut cancel) => return,
        }
        if !outputs.gate.connected() && reported.insert("gate".to_string()) {
            events.failed("gate", "the gate actor stopped; restart powa-sentinel");
        }
        for (name, r) in &outputs.channels {
            if !r.connected() && reported.insert(format!("channel {name}")) {
                events.failed(
                    &format!("channel {name}"),
                    "the channel actor stopped; restart powa-sentinel",
                );
                update(&board, |s| {
                    let c = s.channels.entry(name.clone()).or_default();
                    c.permanently_failed = true;
                    c.last_error = Some("the channel actor stopped".into());
                });
            }
        }
    }
}

/// Stop collecting, flush, wait for the channels; false if the deadline ran out.
async fn shutdown(
    repos: Vec<Task>,
    reports: Task,
    outputs: &Outputs,
    board: &StatusBoard,
    deadline: Duration,
    shared: &Shared,
    log: &Logger,
) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    let stop_all = async {
        reports.stop().await;
        for r in repos {
            r.stop().await;
        }
    };
    if tokio::time::timeout_at(until, stop_all).await.is_err() {
        error!(log, "Running cycles did not finish before the shutdown deadline; flushing what the gate has.");
    }
    let at = Utc::now();
    // The report, then whatever the channels still hold (immediate alerts in flight,
    // what they resumed from the outbox), all before the deadline.
    let finish = async {
        flush(outputs, board, at, shared.tz, log).await;
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        for (name, report) in topology::drain(&outputs.controls, left).await {
            match report {
                Some(r) if r.pending > 0 => {
                    warn!(log, "A channel still holds notifications at exit (kept in the outbox when [state] dir is set).";
                        "channel" => name, "pending" => r.pending)
                }
                Some(_) => {}
                None => {
                    warn!(log, "A channel did not answer the drain request."; "channel" => name)
                }
            }
        }
    };
    match tokio::time::timeout_at(until, finish).await {
        Ok(()) => true,
        Err(_) => {
            error!(log, "The channels did not finish delivering before collection.shutdown_deadline; what was still being sent may be lost (kept in the outbox when [state] dir is set).";
                "deadline" => %humantime::format_duration(deadline));
            false
        }
    }
}

/// Loads and validates the new file; builds the new generation's analyzers.
fn reload(
    path: &std::path::Path,
    current: &Rc<Shared>,
    outputs: &Outputs,
    log: &Logger,
) -> Result<(Rc<Shared>, ReportSchedule), String> {
    let new = Settings::load(path).map_err(|e| e.to_string())?;
    crate::logging::register_secrets(new.secrets());
    let schedule = new
        .schedule
        .parse()
        .map_err(|p| format!("key `{}`: {}", p.key, p.message))?;
    warn_unapplied(&current.settings, &new, log);
    let analyzers = Rc::new(topology::build_analyzers(&new, &outputs.gate, log));
    // Every analyzer of the old generation is dropped and every one of the new starts
    // afresh, so none is failed any more.
    for name in current.analyzers.names.iter().chain(&analyzers.names) {
        metrics::actor_recovered(name);
    }
    Ok((
        Rc::new(Shared {
            tz: schedule.tz(),
            settings: Arc::new(new),
            analyzers,
            board: Arc::clone(&current.board),
            log: current.log.clone(),
        }),
        schedule,
    ))
}

/// The top-level sections a reload applies: the collection side, rebuilt from the new
/// settings. Everything else (the channels, the gate and its routes, `[http]`, `[log]`,
/// `[state]`) is built once per process, so that nothing pending and no lifecycle is lost.
const APPLIED_ON_RELOAD: &[&str] = &[
    "repositories",
    "analyzers",
    "analysis",
    "schedule",
    "collection",
];

/// Warns about every key that changed in a section a reload does not apply (see
/// [`APPLIED_ON_RELOAD`]): one line per channel for `[channels]`, naming the channel and
/// its keys, one per other section. Secrets included (a new webhook URL, `hmac_key`, robot
/// key or application secret, also the content of a `*_file`), never their values.
///
/// Warn rather than rebuild the changed channels: a channel actor holds what is in flight,
/// its retry state and the pacer it shares with every channel on the same robot key, and
/// the gate holds its address; swapping it while a delivery runs could send a part twice
/// or drop the pacer's count, which a restart (the outbox resumes what was pending) does
/// not risk.
fn warn_unapplied(old: &Settings, new: &Settings, log: &Logger) {
    for section in old.keys.sections(&new.keys) {
        if APPLIED_ON_RELOAD.contains(&section) {
            continue;
        }
        let changed = old.keys.changed_under(&new.keys, section);
        if changed.is_empty() {
            continue;
        }
        if section == "channels" {
            let mut by_channel: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for key in &changed {
                let rest = key.strip_prefix("channels.").unwrap_or(key);
                let (channel, field) = rest.split_once('.').unwrap_or((rest, ""));
                by_channel.entry(channel).or_default().push(field);
            }
            for (channel, fields) in by_channel {
                let what = match (old.channels.contains_key(channel), new.channels.contains_key(channel)) {
                    (false, true) => "This channel was added; it starts at the next restart.",
                    (true, false) => "This channel was removed; it keeps running until the next restart.",
                    _ => "This channel's settings changed; they are applied at the next restart (secrets included), the running ones are kept.",
                };
                warn!(log, "{}", what; "channel" => channel, "keys" => fields.join(", "));
            }
        } else {
            warn!(log, "These settings changed but are only applied at the next restart; the running ones are kept.";
                "section" => section, "keys" => changed.join(", "));
        }
    }
}

/// Sends the gate's pending insights now and records the outcome per channel.
async fn flush(
    outputs: &Outputs,
    board: &StatusBoard,
    at: DateTime<Utc>,
    tz: chrono_tz::Tz,
    log: &Logger,
) {
    match outputs.gate.send(Flush { at }).await {
        Ok(summary) => {
            metrics().gate_decision("flushed", summary.insights as u64);
            for r in &summary.reports {
                let outcome = match &r.outcome {
                    Ok(()) => "delivered",
                    Err(e) if e.is_permanent() => "permanent",
                    Err(_) => "failed",
                };
                metrics().delivery(&r.channel, outcome);
                update(board, |s| {
                    let c = s.channels.entry(r.channel.clone()).or_default();
                    match &r.outcome {
                        Ok(()) => {
                            c.delivered += 1;
                            c.permanently_failed = false;
                            c.last_error = None;
                        }
                        Err(e) => {
                            c.failed += 1;
                            c.permanently_failed = e.is_permanent();
                            c.last_error = Some(e.to_string());
                        }
                    }
                });
                match &r.outcome {
                    Ok(()) => {
                        info!(log, "Report delivered."; "channel" => &r.channel, "parts" => r.parts_total)
                    }
                    Err(e) => error!(log, "Report delivery failed."; "channel" => &r.channel,
                        "parts_delivered" => r.parts_delivered, "parts" => r.parts_total, "error" => %e),
                }
            }
            update(board, |s| s.last_report = Some(show(tz, at)));
            info!(log, "Report sent."; "insights" => summary.insights, "at" => show(tz, at));
        }
        Err(e) => error!(log, "Gate unavailable; no report."; "error" => %e),
    }
}

async fn report_loop(
    outputs: Rc<Outputs>,
    board: StatusBoard,
    mut schedule: watch::Receiver<ReportSchedule>,
    at_start: bool,
    mut cancel: watch::Receiver<bool>,
    log: Logger,
) {
    if at_start {
        // Give the first cycles a chance to run: the first report says what they found.
        let tz = schedule.borrow().tz();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = cancelled(&mut cancel) => return,
        }
        flush(&outputs, &board, Utc::now(), tz, &log).await;
    }
    loop {
        let (next, tz) = {
            let s = schedule.borrow_and_update();
            (s.next_after(Utc::now()), s.tz())
        };
        let Some(next) = next else {
            warn!(
                log,
                "The schedule has no next report time; no more scheduled reports."
            );
            tokio::select! {
                _ = cancelled(&mut cancel) => return,
                _ = schedule.changed() => continue,
            }
        };
        update(&board, |s| s.next_report = Some(show(tz, next)));
        debug!(log, "Next report."; "at" => show(tz, next));
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => flush(&outputs, &board, next, tz, &log).await,
            _ = cancelled(&mut cancel) => return,
            _ = schedule.changed() => continue,
        }
    }
}

fn start_repositories(shared: &Rc<Shared>) -> Vec<Task> {
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
                !topology::wanted(&shared.settings, &v.repository, server)
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
async fn supervised_repository(shared: Rc<Shared>, name: String, cancel: watch::Receiver<bool>) {
    use futures_util::FutureExt as _;
    let events = metrics::MetricEvents {
        log: shared
            .log
            .new(o!("component" => "repository", "repository" => name.clone())),
    };
    let key = format!("repository {name}");
    let mut tracker = RestartTracker::new(RestartPolicy::default());
    loop {
        let run = repository_loop(Rc::clone(&shared), name.clone(), cancel.clone());
        let Err(panic) = std::panic::AssertUnwindSafe(run).catch_unwind().await else {
            return;
        };
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic")
            .to_string();
        mark_down(&shared, &name, &format!("internal error: {reason}"));
        match tracker.on_failure(Instant::now()) {
            Decision::Restart { after } => {
                events.restarted(&key, &reason);
                let mut c = cancel.clone();
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = cancelled(&mut c) => return,
                }
            }
            Decision::GiveUp => {
                events.failed(&key, &reason);
                return;
            }
        }
    }
}

/// Connects with backoff until it works or the task is cancelled.
async fn connect_with_backoff(
    shared: &Shared,
    name: &str,
    cancel: &mut watch::Receiver<bool>,
    log: &Logger,
) -> Option<powa::Repository> {
    let settings = &shared.settings.repositories[name];
    let mut wait = Duration::from_secs(1);
    loop {
        // Bounded by connect_timeout (connect, startup, authentication, setup) and the
        // query deadline (discovery); a shutdown does not wait for it either way.
        let attempt = tokio::select! {
            r = powa::connect(name, settings) => r,
            _ = cancelled(cancel) => return None,
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
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancelled(cancel) => return None,
        }
        wait = (wait * 2).min(shared.settings.collection.repository_retry_max);
    }
}

struct ServerTask {
    srvid: i32,
    task: Task,
}

type Client = Arc<powa::Session>;

/// The sessions collections of one repository check out, one per permit: a collection
/// holds a session of its own for its whole read, so a slow read never queues another
/// server's read (tokio-postgres would pipeline them on one socket), and discovery keeps
/// a session no collection uses. One pool per connection generation; a reconnection
/// builds a new one.
struct SessionPool {
    permits: Arc<Semaphore>,
    idle: RefCell<Vec<Client>>,
    all: Vec<Client>,
}

impl SessionPool {
    fn new(sessions: Vec<Client>) -> Rc<Self> {
        Rc::new(SessionPool {
            permits: Arc::new(Semaphore::new(sessions.len())),
            idle: RefCell::new(sessions.clone()),
            all: sessions,
        })
    }

    /// Waits for a free session, preferring `last` (the one the caller's collector is
    /// built on) so that a collector is rebuilt only when its session is busy.
    async fn checkout(self: &Rc<Self>, last: &Client) -> Lease {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let client = {
            let mut idle = self.idle.borrow_mut();
            let i = idle
                .iter()
                .position(|c| Arc::ptr_eq(c, last))
                .unwrap_or(idle.len() - 1);
            idle.swap_remove(i)
        };
        Lease {
            pool: Rc::clone(self),
            client: Some(client),
            _permit: permit,
        }
    }

    /// Why a session of the pool is unusable (closed by the server, or dropped after a
    /// query ran out of time), if one is.
    fn closed_reason(&self) -> Option<String> {
        self.all.iter().find_map(|c| c.closed_reason())
    }
}

/// A checked-out session; it goes back to the pool (before its permit is released) when
/// dropped, also when the collection is cancelled half-way.
struct Lease {
    pool: Rc<SessionPool>,
    client: Option<Client>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("set until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.pool.idle.borrow_mut().push(c);
        }
    }
}

/// Opens the collection sessions of a repository just connected. Each goes through
/// `powa::open_session`, the path `powa::connect` takes too (read-only transactions,
/// statement, lock and idle timeouts), so pooled sessions are configured exactly as the
/// first, without discovering PoWA again. If none can be opened, collections share the
/// discovery session.
async fn open_pool(shared: &Shared, name: &str, first: &Client, log: &Logger) -> Rc<SessionPool> {
    let wanted = shared.settings.collection.max_concurrent_per_repository;
    let mut sessions = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        match powa::open_session(name, &shared.settings.repositories[name]).await {
            Ok(c) => sessions.push(Arc::new(c)),
            Err(e) => {
                warn!(log, "Could not open another collection session; fewer collections run at once until the next reconnection.";
                    "error" => %e, "opened" => sessions.len(), "wanted" => wanted);
                break;
            }
        }
    }
    if sessions.is_empty() {
        sessions.push(Arc::clone(first));
    }
    SessionPool::new(sessions)
}

/// How often the discovery session is asked for a round trip while nothing else runs on
/// it: a repository that freezes between cycles is noticed within this plus the query
/// deadline (`statement_timeout` + 5s), not at the next cycle.
const PROBE_EVERY: Duration = Duration::from_secs(5);

async fn repository_loop(shared: Rc<Shared>, name: String, mut cancel: watch::Receiver<bool>) {
    let log = shared
        .log
        .new(o!("component" => "repository", "repository" => name.clone()));
    let coll = shared.settings.collection.clone();
    let mut servers: BTreeMap<String, ServerTask> = BTreeMap::new();
    'connect: loop {
        // A new generation: collectors (and sessions) of the old one cannot be reused; its
        // servers pause until the repository is back.
        for (_, s) in std::mem::take(&mut servers) {
            s.task.stop().await;
        }
        let Some(repo) = connect_with_backoff(&shared, &name, &mut cancel, &log).await else {
            break 'connect;
        };
        // Discovery keeps this first session; collections get sessions of their own.
        let client = Arc::clone(&repo.client);
        let pool = tokio::select! {
            p = open_pool(&shared, &name, &client, &log) => p,
            _ = cancelled(&mut cancel) => break 'connect,
        };
        info!(log, "Repository connected."; "powa" => %repo.info.version, "servers" => repo.info.servers.len(),
            "collection_sessions" => pool.all.len());
        let mut info = repo.info;
        let mut last_discovery = Instant::now();
        let mut last_probe = Instant::now();
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
                let tick = Duration::from_secs(2).min(coll.rediscover_every);
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = cancelled(&mut cancel) => break 'connect,
                }
                if last_probe.elapsed() >= PROBE_EVERY {
                    last_probe = Instant::now();
                    // An error other than a timeout leaves the session open: the checks
                    // below decide.
                    tokio::select! {
                        _ = client.probe() => {}
                        _ = cancelled(&mut cancel) => break 'connect,
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
            }
            last_discovery = Instant::now();
            let found = tokio::select! {
                r = discovery::discover(&client) => r,
                _ = cancelled(&mut cancel) => break 'connect,
            };
            match found {
                Ok(i) => info = i,
                Err(e) => {
                    warn!(log, "Re-discovery failed; keeping the known servers."; "error" => &e);
                    if client.is_closed() {
                        mark_down(&shared, &name, &e);
                        continue 'connect;
                    }
                }
            }
        }
    }
    // Stopped (shutdown or reload): its servers keep their status and metrics, which the
    // next generation's tasks continue (`start_repositories` drops those no longer
    // configured).
    for (_, s) in servers {
        s.task.stop().await;
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
    let wanted: BTreeMap<String, &ServerInfo> = info
        .servers
        .iter()
        .filter(|s| topology::wanted(&shared.settings, repo, &s.name))
        .map(|s| (format!("{repo}/{}", s.name), s))
        .collect();
    let gone: Vec<String> = servers
        .iter()
        .filter(|(k, t)| wanted.get(*k).is_none_or(|s| s.srvid != t.srvid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some(t) = servers.remove(&k) {
            info!(log, "Server gone from the repository; its collector stops."; "server" => &k);
            t.task.stop().await;
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

/// The first tick of a `period` grid shifted by `offset` strictly after `now`.
fn next_tick(now: DateTime<Utc>, period: Duration, offset: Duration) -> DateTime<Utc> {
    let p = period.as_millis().max(1) as i64;
    let o = offset.as_millis() as i64;
    let t = now.timestamp_millis();
    let k = (t - o).div_euclid(p) + 1;
    DateTime::from_timestamp_millis(k * p + o).unwrap_or(now)
}

async fn server_loop(ctx: ServerCtx, mut cancel: watch::Receiver<bool>) {
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
    let mut tracker = RestartTracker::new(RestartPolicy::default());
    let mut seq = 0u64;
    // Spread the collectors' first sessions; later each takes whichever is free.
    let n = ctx.pool.all.len() as u64;
    let mut session =
        Arc::clone(&ctx.pool.all[(sentinel_actors::Fingerprint::of([&ctx.key]).0 % n) as usize]);
    let mut live = ctx.fresh_live();
    let mut addr = ctx.start(&session, &live, seq);
    // The first cycle runs right away (after the jitter), later ones on the grid.
    let mut due = Utc::now() + chrono::Duration::from_std(jitter).unwrap_or_default();
    loop {
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancelled(&mut cancel) => return,
        }
        let lease = tokio::select! {
            l = ctx.pool.checkout(&session) => l,
            _ = cancelled(&mut cancel) => return,
        };
        if !Arc::ptr_eq(lease.client(), &session) {
            // Its own session is busy with another server's read: read on the free one.
            session = Arc::clone(lease.client());
            addr = ctx.start(&session, &live, seq);
        }
        let started = Utc::now();
        let clock = Instant::now();
        let window = Window {
            start: started - window_len,
            end: started,
        };
        metrics().set_queue_depth(
            "collect_waiting",
            (ctx.pool.permits.available_permits() == 0) as i64,
        );
        // A stop (shutdown, reload) does not wait for the cycle: a read stuck on a frozen
        // repository would hold it up to the query deadline. PoWA keeps the data; the
        // next collector reads it again.
        let result = tokio::select! {
            r = addr.send(Collect { window }) => r,
            _ = cancelled(&mut cancel) => return,
        };
        drop(lease);
        let secs = clock.elapsed().as_secs_f64();
        let (ok, error, insights, rows, data) = match result {
            Ok(Ok(summary)) => {
                seq = summary.seq;
                (true, None, summary.insights, summary.rows, summary.taken_at)
            }
            Ok(Err(e)) => {
                // The collector numbered this attempt too; a rebuilt one must not reuse it.
                seq += 1;
                (false, Some(e.to_string()), 0, 0, None)
            }
            Err(e) => {
                // The collector is gone (a panic dropped it): restart under the policy.
                let reason = format!("collector mailbox closed: {e}");
                match tracker.on_failure(Instant::now()) {
                    Decision::Restart { after } => {
                        metrics::MetricEvents {
                            log: ctx.log.clone(),
                        }
                        .restarted(&ctx.key, &reason);
                        tokio::select! {
                            _ = tokio::time::sleep(after) => {}
                            _ = cancelled(&mut cancel) => return,
                        }
                        // A panic may have left the live window half-updated.
                        live = ctx.fresh_live();
                        addr = ctx.start(&session, &live, seq);
                    }
                    Decision::GiveUp => {
                        metrics::MetricEvents {
                            log: ctx.log.clone(),
                        }
                        .failed(&ctx.key, &reason);
                        return;
                    }
                }
                (false, Some(reason), 0, 0, None)
            }
        };
        metrics().cycle(&ctx.key, ok, secs, rows, data);
        match &error {
            None => {
                debug!(ctx.log, "Cycle done."; "insights" => insights, "rows" => rows, "seconds" => secs)
            }
            Some(e) => {
                warn!(ctx.log, "Cycle failed; the other servers are not affected."; "error" => e)
            }
        }
        // Overran: every tick that passed during the cycle is skipped, not queued.
        let end = Utc::now();
        let mut next = next_tick(started, period, jitter);
        let mut skipped = 0u64;
        while next <= end {
            skipped += 1;
            metrics().cycle_skipped(&ctx.key);
            next = next_tick(next, period, jitter);
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
                error: error.clone(),
                insights,
                rows,
                data_time: data.map(|d| show(tz, d)),
            });
        });
        due = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ticks_follow_the_grid_with_the_offset() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 4, 59).unwrap();
        let t = next_tick(now, Duration::from_secs(300), Duration::from_secs(7));
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 7).unwrap());
        let t2 = next_tick(t, Duration::from_secs(300), Duration::from_secs(7));
        assert_eq!(t2, Utc.with_ymd_and_hms(2026, 1, 1, 0, 10, 7).unwrap());
    }
}
