//! The `run` daemon: signals, configuration reload and the wiring of the long-running
//! pieces. The collection tasks live in [`crate::collection`], the pipeline they feed is
//! the one every command starts ([`topology::start_pipeline`]), the reports go through
//! the shared handler ([`topology::report`]).
//!
//! ```text
//!  collection (per repository, per server) ──▶ analyzers ──▶ gate ──▶ channels
//!  report task: next cron/interval time → Flush ──────────────┘
//!  output watch: a gate or channel actor gone is marked failed (restart to recover)
//! ```
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
//! Shutdown (`SIGTERM`/`SIGINT`), in order under `collection.shutdown_deadline`
//! ([`sentinel_actors::shutdown`]): stop collecting (cycles in progress are not waited
//! for: one stuck on a frozen repository would take the channels' time; PoWA keeps what it
//! had read), flush the gate, wait for the channels to report.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slog::{debug, error, info, o, warn, Logger};
use tokio::sync::watch;

use crate::collection::{self, show, update, Shared};
use crate::config::Settings;
use crate::http::{self, ChannelStatus, StatusBoard};
use crate::metrics;
use crate::replica::coordinator;
use crate::schedule::ReportSchedule;
use crate::statedb::lease::Fence;
use crate::topology::{self, Analyzers, Outputs, Pipeline, RunOptions, Telling};
use actix::prelude::*;
use sentinel_actors::gate::{ExpectAnalyzers, Insights};
use sentinel_actors::shutdown::Shutdown;
use sentinel_actors::supervise::SupervisionEvents as _;
use sentinel_actors::task::{self, Cancel, Task};

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
    if !settings.state.is_durable() {
        warn!(log, "No [state] dir or dsn: pending findings and lifecycle are kept in memory only and a restart forgets them.");
    }
    let schedule = match settings.schedule.parse() {
        Ok(s) => s,
        Err(p) => {
            error!(log, "Invalid schedule."; "key" => p.key, "error" => p.message);
            return ExitCode::from(2);
        }
    };
    let board: StatusBoard = Arc::default();
    update(&board, |s| {
        s.version = env!("CARGO_PKG_VERSION");
        s.started_at = show(schedule.tz(), Utc::now());
        s.timezone = schedule.tz().to_string();
        for name in settings.channels.keys() {
            s.channels.insert(name.clone(), ChannelStatus::default());
        }
    });
    // One process delivers what it analyses; with a state database, the replicas on it
    // share the servers and the one holding the delivery lease delivers.
    let start = match settings.state.database() {
        None => start_local(&settings, &log),
        Some(db) => start_replica(&settings, db, &board, schedule.tz(), &log),
    };
    let (wiring, analyzers, replica) = match start {
        Ok(s) => s,
        Err(e) => {
            error!(log, "Cannot start."; "error" => format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    let http = if settings.http.enabled {
        // The pages' own handle on the gate's state: the directory, or one connection to
        // the state database (the gate has its own).
        let state = match crate::gate::store::Location::from_settings(&settings.state) {
            Ok(s) => s,
            Err(e) => {
                error!(log, "Cannot open the state for the HTTP pages."; "error" => %e);
                return ExitCode::from(2);
            }
        };
        let pages = crate::actions::from_settings(&settings.http, settings.state.dir.as_deref())
            .ok()
            .flatten()
            .zip(state.clone())
            .map(|(links, state)| {
                crate::actions::page::Pages::on(links, state, settings.state.local_dir())
            });
        let callbacks = crate::channels::wecom_callback::Callbacks {
            by_channel: settings
                .channels
                .iter()
                .filter_map(|(name, ch)| {
                    let app = ch.typed::<crate::channels::wecom_app::WeComApp>()?;
                    Some((name.clone(), app.callback()?))
                })
                .collect(),
            state: state.clone(),
        };
        for name in callbacks.by_channel.keys() {
            info!(log, "WeCom card buttons report to /wecom/<channel>; set that address (behind [http] public_url) as the application's callback URL."; "channel" => name);
        }
        match http::start(&settings.http, Arc::clone(&board), pages, state, callbacks) {
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

    let settings = Arc::new(settings);
    let mut shared = Rc::new(Shared {
        tz: schedule.tz(),
        settings: Arc::clone(&settings),
        analyzers: Rc::new(analyzers),
        board: Arc::clone(&board),
        log: log.clone(),
        owned: replica.as_ref().map(|r| Rc::clone(&r.owned)),
    });
    let mut repos = collection::start_repositories(&shared);
    let (schedule_tx, schedule_rx) = watch::channel(schedule);
    let delivery = match &replica {
        // Here for good: the reports and the watch on the gate and the channels.
        None => {
            let outputs = wiring.outputs.borrow().clone().expect("started");
            let report = Task::spawn({
                let outputs = Rc::clone(&outputs);
                let board = Arc::clone(&board);
                let log = log.new(o!("component" => "reports"));
                let at_start = settings.schedule.report_at_start;
                let repositories = settings.repositories.len();
                move |cancel| {
                    report_loop(
                        outputs,
                        board,
                        schedule_rx,
                        at_start,
                        repositories,
                        cancel,
                        log,
                    )
                }
            });
            let watch = Task::spawn({
                let board = Arc::clone(&board);
                let log = log.new(o!("component" => "supervisor"));
                move |cancel| watch_outputs(outputs, board, cancel, log)
            });
            vec![report, watch]
        }
        // Wherever the delivery lease is.
        Some(r) => vec![Task::spawn({
            let held = Held {
                settings: Arc::clone(&settings),
                fence: r.delivery.clone(),
                queue: Arc::clone(&r.db),
                wiring: wiring.clone(),
                board: Arc::clone(&board),
                schedule: schedule_rx,
                log: log.new(o!("component" => "delivery")),
            };
            move |cancel| held.deliver(cancel)
        })],
    };

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
                match reload(&config_path, &shared, &wiring, &log) {
                    Err(reason) => {
                        error!(log, "Configuration reload refused; the running configuration is kept.";
                            "file" => %config_path.display(), "error" => &reason);
                        update(&board, |s| s.last_reload_error = Some(crate::logging::redact(&reason)));
                    }
                    Ok((next, schedule)) => {
                        task::stop_all(std::mem::take(&mut repos)).await;
                        shared = next;
                        repos = collection::start_repositories(&shared);
                        let _ = schedule_tx.send(schedule);
                        update(&board, |s| { s.config_reloads += 1; s.last_reload_error = None; });
                        info!(log, "Configuration reloaded.");
                    }
                }
            }
        }
    }
    let deadline = shared.settings.collection.shutdown_deadline;
    let clean = shutdown(
        repos, delivery, &wiring, replica, &board, deadline, &shared, &log,
    )
    .await;
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
async fn watch_outputs(outputs: Rc<Outputs>, board: StatusBoard, mut cancel: Cancel, log: Logger) {
    let events = metrics::MetricEvents { log: log.clone() };
    let mut reported = std::collections::BTreeSet::new();
    while cancel.sleep(Duration::from_secs(5)).await {
        if !outputs.gate.connected() && reported.insert("gate".to_string()) {
            events.failed("gate", "the gate actor stopped; restart powa-sentinel");
        }
        // Each channel's health and what waits in its outbox, for `/status`.
        for (name, c) in &outputs.controls {
            if let Ok(h) = c.health.send(sentinel_actors::channel::GetHealth).await {
                update(&board, |s| {
                    let c = s.channels.entry(name.clone()).or_default();
                    c.state = Some(
                        serde_json::to_value(h.state)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                    );
                    c.pending = h.pending;
                    c.failed_in_outbox = h.failed_in_outbox;
                    if h.last_error.is_some() {
                        c.last_error.clone_from(&h.last_error);
                    }
                });
            }
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

/// Stop collecting, flush, wait for the channels; false if the deadline ran out. A
/// replica flushes only when it is the last one (the others report at their time, from
/// the state it leaves), then gives its leases back.
#[allow(clippy::too_many_arguments)]
async fn shutdown(
    repos: Vec<Task>,
    delivery: Vec<Task>,
    wiring: &Wiring,
    replica: Option<coordinator::Handle>,
    board: &StatusBoard,
    deadline: Duration,
    shared: &Shared,
    log: &Logger,
) -> bool {
    let stop = Shutdown::within(deadline);
    let stop_all = async {
        task::stop_all(delivery).await;
        task::stop_all(repos).await;
    };
    if stop.step(stop_all).await.is_err() {
        error!(log, "Running cycles did not finish before the shutdown deadline; flushing what the gate has.");
    }
    let alone = board
        .lock()
        .ok()
        .and_then(|s| s.replicas.as_ref().map(|r| r.members.len() <= 1))
        .unwrap_or(true);
    let outputs = wiring.outputs.borrow().clone();
    let at = Utc::now();
    // The report, then whatever the channels still hold (immediate alerts in flight,
    // what they resumed from the outbox), all before the deadline.
    let finish = async {
        let Some(outputs) = outputs else {
            return;
        };
        if alone {
            flush(&outputs, board, at, shared.tz, log).await;
        }
        for (name, report) in topology::drain(&outputs.controls, stop.left()).await {
            match report {
                Some(r) if r.pending > 0 => {
                    warn!(log, "A channel still holds notifications at exit (kept in the outbox when [state] dir or dsn is set).";
                        "channel" => name, "pending" => r.pending)
                }
                Some(_) => {}
                None => {
                    warn!(log, "A channel did not answer the drain request."; "channel" => name)
                }
            }
        }
    };
    let clean = match stop.step(finish).await {
        Ok(()) => true,
        Err(_) => {
            error!(log, "The channels did not finish delivering before collection.shutdown_deadline; what was still being sent may be lost (kept in the outbox when [state] dir is set).";
                "deadline" => %humantime::format_duration(deadline));
            false
        }
    };
    if let Some(r) = replica {
        r.leave(log).await;
    }
    clean
}

/// What the collection side hands its reports to, and the delivery side as it is now.
#[derive(Clone)]
struct Wiring {
    /// Where the analyzers send their reports: the gate, or the findings queue.
    insights: Recipient<Insights>,
    /// The gate and the channels, while this process delivers.
    outputs: Rc<RefCell<Option<Rc<Outputs>>>>,
    /// The analyzers the gate waits for (a reload may change them).
    names: Rc<RefCell<Vec<String>>>,
}

type Started = (Wiring, Analyzers, Option<coordinator::Handle>);

/// One process: the gate and the channels start now, the analyzers feed the gate.
fn start_local(settings: &Settings, log: &Logger) -> anyhow::Result<Started> {
    let Pipeline { outputs, analyzers } =
        topology::start_pipeline(settings, RunOptions::default(), log)?;
    let wiring = Wiring {
        insights: outputs.gate.clone().recipient(),
        names: Rc::new(RefCell::new(analyzers.names.clone())),
        outputs: Rc::new(RefCell::new(Some(Rc::new(outputs)))),
    };
    Ok((wiring, analyzers, None))
}

/// A replica: the beat starts, the analyzers feed the findings queue, and the gate and
/// channels start when (and while) this replica holds the delivery lease.
fn start_replica(
    settings: &Settings,
    db: crate::statedb::DbSettings,
    board: &StatusBoard,
    tz: chrono_tz::Tz,
    log: &Logger,
) -> anyhow::Result<Started> {
    // One connection for the beat, the queue's writes and its reads (each call is short;
    // they take turns on it); the gate and the outbox have their own, fenced.
    let shared = crate::statedb::StateDb::open(&db, crate::gate::Access::ReadWrite)
        .map(Arc::new)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let handle = coordinator::start(
        Arc::clone(&shared),
        settings.state.lease,
        Arc::clone(board),
        tz,
        log.new(o!("component" => "replicas")),
    );
    let forward = crate::replica::forward::Forward::new(
        shared,
        &handle.me.id,
        log.new(o!("component" => "queue")),
    )
    .start();
    let insights: Recipient<Insights> = forward.recipient();
    let analyzers = topology::build_analyzers(settings, &insights, log);
    let wiring = Wiring {
        insights,
        names: Rc::new(RefCell::new(analyzers.names.clone())),
        outputs: Rc::new(RefCell::new(None)),
    };
    Ok((wiring, analyzers, Some(handle)))
}

/// The delivery side of a replica: started when the beat hands it the delivery lease,
/// stopped when the lease goes (what it held stays in the state database for the next
/// holder).
struct Held {
    settings: Arc<Settings>,
    fence: watch::Receiver<Option<Arc<Fence>>>,
    /// Where the findings queue is read.
    queue: Arc<crate::statedb::StateDb>,
    wiring: Wiring,
    board: StatusBoard,
    schedule: watch::Receiver<ReportSchedule>,
    log: Logger,
}

impl Held {
    async fn deliver(mut self, mut cancel: Cancel) {
        let mut at_start = self.settings.schedule.report_at_start;
        loop {
            let fence = loop {
                if let Some(f) = self.fence.borrow_and_update().clone() {
                    break f;
                }
                tokio::select! {
                    r = self.fence.changed() => if r.is_err() { return },
                    _ = cancel.cancelled() => return,
                }
            };
            let outputs = match topology::build_fenced_outputs(
                &self.settings,
                RunOptions::default(),
                Some(Arc::clone(&fence)),
                &self.log,
            ) {
                Ok(o) => Rc::new(o),
                Err(e) => {
                    error!(self.log, "Cannot start the delivery; trying again."; "error" => format!("{e:#}"));
                    if !cancel.sleep(Duration::from_secs(5)).await {
                        return;
                    }
                    continue;
                }
            };
            outputs
                .gate
                .do_send(ExpectAnalyzers(self.wiring.names.borrow().clone()));
            *self.wiring.outputs.borrow_mut() = Some(Rc::clone(&outputs));
            let consume = Task::spawn({
                let gate = outputs.gate.clone();
                let db = Arc::clone(&self.queue);
                let log = self.log.new(o!("component" => "queue"));
                move |cancel| crate::replica::consume::run(db, gate, cancel, log)
            });
            let report = Task::spawn({
                let outputs = Rc::clone(&outputs);
                let board = Arc::clone(&self.board);
                let log = self.log.new(o!("component" => "reports"));
                let schedule = self.schedule.clone();
                let repositories = self.settings.repositories.len();
                let first = std::mem::take(&mut at_start);
                move |cancel| {
                    report_loop(outputs, board, schedule, first, repositories, cancel, log)
                }
            });
            let watch = Task::spawn({
                let outputs = Rc::clone(&outputs);
                let board = Arc::clone(&self.board);
                let log = self.log.new(o!("component" => "supervisor"));
                move |cancel| watch_outputs(outputs, board, cancel, log)
            });
            // Until the lease goes (or comes back under another epoch), or a stop.
            let stopping = loop {
                tokio::select! {
                    r = self.fence.changed() => {
                        if r.is_err() {
                            break true;
                        }
                        let same = self.fence.borrow().as_ref().is_some_and(|n| Arc::ptr_eq(n, &fence));
                        if !same {
                            break false;
                        }
                    }
                    _ = cancel.cancelled() => break true,
                }
            };
            task::stop_all([consume, report, watch]).await;
            if stopping {
                // The shutdown drains what the channels hold.
                return;
            }
            self.wiring.outputs.borrow_mut().take();
            info!(self.log, "Delivery handed over: this replica's gate and channels stop; what they held is in the state database for the next holder.");
        }
    }
}

/// Loads and validates the new file; builds the new generation's analyzers.
fn reload(
    path: &std::path::Path,
    current: &Rc<Shared>,
    wiring: &Wiring,
    log: &Logger,
) -> Result<(Rc<Shared>, ReportSchedule), String> {
    let new = Settings::load(path).map_err(|e| e.to_string())?;
    crate::logging::register_secrets(new.secrets());
    let schedule = new
        .schedule
        .parse()
        .map_err(|p| format!("key `{}`: {}", p.key, p.message))?;
    warn_unapplied(&current.settings, &new, log);
    let analyzers = Rc::new(topology::build_analyzers(&new, &wiring.insights, log));
    // A reload may turn an analyzer on or off: the gate waits for the new set (and a
    // replica's gate started later, too).
    wiring.names.replace(analyzers.names.clone());
    if let Some(outputs) = wiring.outputs.borrow().as_ref() {
        outputs
            .gate
            .do_send(ExpectAnalyzers(analyzers.names.clone()));
    }
    recovered(&current.analyzers, &analyzers);
    Ok((
        Rc::new(Shared {
            tz: schedule.tz(),
            settings: Arc::new(new),
            analyzers,
            board: Arc::clone(&current.board),
            log: current.log.clone(),
            owned: current.owned.clone(),
        }),
        schedule,
    ))
}

/// Every analyzer of the old generation is dropped and every one of the new starts
/// afresh, so none is failed any more: the names are those `build_analyzers` started
/// (what each reports its restarts and failures under), never a list kept by hand.
fn recovered(old: &Analyzers, new: &Analyzers) {
    for name in old.names.iter().chain(&new.names) {
        metrics::actor_recovered(name);
    }
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

/// Sends the gate's pending insights now and records the outcome per channel in
/// `/status`.
async fn flush(
    outputs: &Outputs,
    board: &StatusBoard,
    at: DateTime<Utc>,
    tz: chrono_tz::Tz,
    log: &Logger,
) {
    let Some(summary) = topology::report(&outputs.gate, at, Telling::Scheduled(tz), log).await
    else {
        return;
    };
    update(board, |s| {
        for r in &summary.reports {
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
        }
        s.last_report = Some(show(tz, at));
    });
}

/// Longest the start-up report (`report_at_start`) waits for the first cycles.
const START_REPORT_WAIT: Duration = Duration::from_secs(120);

/// Whether every configured repository was reached or found unreachable, and every
/// server collected from those reached has finished (or failed) its first cycle.
fn first_cycles_done(s: &http::Status, repositories: usize) -> bool {
    s.repositories.len() >= repositories
        && s.repositories.iter().all(|(name, r)| {
            !r.reachable
                || s.servers
                    .values()
                    .filter(|v| &v.repository == name)
                    .filter(|v| v.cycles > 0 || v.consecutive_failures > 0 || v.skipped > 0)
                    .count()
                    >= r.watched
        })
}

async fn report_loop(
    outputs: Rc<Outputs>,
    board: StatusBoard,
    mut schedule: watch::Receiver<ReportSchedule>,
    at_start: bool,
    repositories: usize,
    mut cancel: Cancel,
    log: Logger,
) {
    if at_start {
        // The first report says what the first cycles found: it waits until every
        // server of every reachable repository has had its first cycle (bounded, so that
        // a stuck server does not hold the report back), then a moment for the analyzers.
        let tz = schedule.borrow().tz();
        let started = tokio::time::Instant::now();
        loop {
            let done = board
                .lock()
                .map(|s| first_cycles_done(&s, repositories))
                .unwrap_or(true);
            if done || started.elapsed() >= START_REPORT_WAIT {
                if !done {
                    warn!(log, "The start-up report goes before every server's first cycle ended."; "waited_s" => START_REPORT_WAIT.as_secs());
                }
                break;
            }
            if !cancel.sleep(Duration::from_millis(500)).await {
                return;
            }
        }
        if !cancel.sleep(Duration::from_secs(1)).await {
            return;
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
                _ = cancel.cancelled() => return,
                _ = schedule.changed() => continue,
            }
        };
        update(&board, |s| s.next_report = Some(show(tz, next)));
        debug!(log, "Next report."; "at" => show(tz, next));
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => flush(&outputs, &board, next, tz, &log).await,
            _ = cancel.cancelled() => return,
            _ = schedule.changed() => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_up_report_waits_for_every_watched_server() {
        use crate::http::{RepositoryStatus, ServerStatus, Status};
        let mut s = Status::default();
        assert!(!first_cycles_done(&s, 1), "no repository reached yet");
        s.repositories.insert(
            "main".into(),
            RepositoryStatus {
                reachable: true,
                servers: 3,
                watched: 2,
                ..Default::default()
            },
        );
        let server = |cycles, failures| ServerStatus {
            repository: "main".into(),
            cycles,
            consecutive_failures: failures,
            ..Default::default()
        };
        s.servers.insert("main/a".into(), server(1, 0));
        assert!(!first_cycles_done(&s, 1), "one of two watched servers");
        s.servers.insert("main/b".into(), server(0, 1));
        assert!(first_cycles_done(&s, 1), "a failed first cycle counts");
        assert!(
            !first_cycles_done(&s, 2),
            "a second repository not heard of yet"
        );
        s.repositories.insert(
            "down".into(),
            RepositoryStatus {
                reachable: false,
                ..Default::default()
            },
        );
        assert!(
            first_cycles_done(&s, 2),
            "an unreachable one holds nothing back"
        );
    }

    /// A reload clears the failed state of every analyzer `build_analyzers` started (the
    /// seven of them with the defaults), not of a hand-kept few: resource_hogs,
    /// health_score and missing_index stayed failed when the list was written out.
    #[actix_rt::test]
    async fn a_reload_clears_the_failed_state_of_every_analyzer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sentinel.toml");
        std::fs::write(
            &path,
            "[repositories.main]\ndsn = \"host=127.0.0.1 port=1 user=x dbname=powa\"\n\
             [channels.console]\ntype = \"console\"\n",
        )
        .unwrap();
        let settings = Settings::load(&path).unwrap();
        let log = Logger::root(slog::Discard, o!());
        let Pipeline { outputs, analyzers } =
            topology::start_pipeline(&settings, RunOptions::default(), &log).unwrap();
        assert_eq!(
            analyzers.names,
            [
                "slow_queries",
                "regression",
                "powa_health",
                "workload_change",
                "resource_hogs",
                "health_score",
                "settings_change",
                "missing_index",
            ]
        );
        let events = metrics::MetricEvents { log: log.clone() };
        for name in &analyzers.names {
            events.failed(name, "test");
        }
        let current = Rc::new(Shared {
            settings: Arc::new(settings),
            analyzers: Rc::new(analyzers),
            board: StatusBoard::default(),
            tz: chrono_tz::UTC,
            log: log.clone(),
            owned: None,
        });
        let wiring = Wiring {
            insights: outputs.gate.clone().recipient(),
            names: Rc::default(),
            outputs: Rc::new(RefCell::new(Some(Rc::new(outputs)))),
        };
        let (next, _) = reload(&path, &current, &wiring, &log).unwrap();
        let failed = metrics::failed_actors();
        for name in &next.analyzers.names {
            assert!(!failed.contains(name), "{name} is still failed: {failed:?}");
        }
    }
}
