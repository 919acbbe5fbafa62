//! Wires one run: channels, the gate, the analyzers and one collector per discovered
//! server. Repositories are connected concurrently; one that fails is reported and the
//! others carry on.
//!
//! Every command starts the same [`Pipeline`] (the delivery side, then the analyzers
//! feeding it); `once` and `backtest` add one collector per server ([`build`]), the
//! daemon supervised collection tasks ([`crate::collection`]). They all hand the gate's
//! flush to one [`report`] handler, which only words its log lines per command.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use slog::{error, info, o, warn, Logger};

use crate::analyze::health_score::HealthInputs;
use crate::analyze::{
    HealthScoreAnalyzer, MissingIndexAnalyzer, PowaHealthAnalyzer, RegressionAnalyzer,
    ResourceHogAnalyzer, SettingsChangeAnalyzer, SlowQueryAnalyzer, WorkloadChangeAnalyzer,
};
use crate::channels::{self, ChannelControl, ChannelEnv};
use crate::config::Settings;
use crate::metrics;
use crate::output::{JsonLinesOutput, JSON_OUTPUT_CHANNEL};
use crate::powa::live::LiveWindow;
use crate::powa::source::{Baselines, PowaSource};
use crate::powa::{self, Repository};
use crate::powa::{PowaInfo, ServerInfo, StatementsWindow};
use crate::statedb::lease::Fence;
use sentinel_actors::analyzer::{Analyze, AnalyzeSnapshot, AnalyzerActor, InsightObserver};
use sentinel_actors::channel::{
    ChannelActor, Deliver, DeliveryReport, Drain, DrainReport, RetryPolicy,
};
use sentinel_actors::collector::CollectorActor;
use sentinel_actors::gate::{ExpectAnalyzers, Flush, FlushSummary, GateActor, Insights};
use sentinel_actors::outbox::{MemoryOutbox, Outbox};
use sentinel_actors::supervise::{Events, RestartPolicy};

pub type Gate = GateActor<crate::gate::Gate>;

/// Options of one run that do not come from the settings file.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Print insights as JSON lines on stdout (and send the console channel to stderr).
    pub json_output: bool,
    /// Render every channel's messages on stdout instead of sending them.
    pub dry_run: bool,
}

/// A collector and the server it reads.
pub struct CollectorHandle {
    pub name: String,
    pub addr: Addr<CollectorActor<PowaSource>>,
    /// Its repository, and the session it reads on (one of the repository's
    /// [`collection_sessions`]): the collectors of one session take turns, see
    /// [`per_session`].
    pub repository: String,
    pub session: Arc<powa::Session>,
}

/// The sessions the collections of `once` and `backtest` read a repository on: the
/// discovery session (discovery is over) and more, up to `max_concurrent_per_repository`
/// and no more than `servers` (a repository of one server opens no other connection).
/// Fewer when the repository refuses more connections; never none.
pub async fn collection_sessions(
    repo: &powa::Repository,
    settings: &Settings,
    servers: usize,
    log: &Logger,
) -> Vec<Arc<powa::Session>> {
    let wanted = settings
        .collection
        .max_concurrent_per_repository
        .min(servers)
        .max(1);
    let mut sessions = vec![Arc::clone(&repo.client)];
    let Some(rs) = settings.repositories.get(&repo.name) else {
        return sessions;
    };
    while sessions.len() < wanted {
        match powa::open_session(&repo.name, rs).await {
            Ok(c) => sessions.push(Arc::new(c)),
            Err(e) => {
                warn!(log, "Could not open another collection session; fewer servers are read at once.";
                    "repository" => &repo.name, "error" => %e, "sessions" => sessions.len(), "wanted" => wanted);
                break;
            }
        }
    }
    sessions
}

/// Runs `f` on every collector: those that share a session one after another (queries
/// on one session would only queue behind each other), the sessions at once, so a
/// repository serves at most `max_concurrent_per_repository` reads at a time and every
/// repository is read in parallel. The results come in the collectors' order.
pub async fn per_session<'a, T, F, Fut>(collectors: &'a [CollectorHandle], f: F) -> Vec<T>
where
    F: Fn(&'a CollectorHandle) -> Fut,
    Fut: std::future::Future<Output = T> + 'a,
{
    in_lanes(collectors, |a, b| Arc::ptr_eq(&a.session, &b.session), f).await
}

/// Runs `f` on every item: the items of one lane (`same_lane`) one after another, in
/// their order, the lanes at once. The results come in the items' order.
async fn in_lanes<'a, I, T, F, Fut>(
    items: &'a [I],
    same_lane: impl Fn(&I, &I) -> bool,
    f: F,
) -> Vec<T>
where
    F: Fn(&'a I) -> Fut,
    Fut: std::future::Future<Output = T> + 'a,
{
    let mut lanes: Vec<Vec<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match lanes.iter_mut().find(|l| same_lane(&items[l[0]], item)) {
            Some(l) => l.push(i),
            None => lanes.push(vec![i]),
        }
    }
    let f = &f;
    let done = join_all(lanes.into_iter().map(|lane| async move {
        let mut out = Vec::with_capacity(lane.len());
        for i in lane {
            out.push((i, f(&items[i]).await));
        }
        out
    }))
    .await;
    let mut results: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
    for (i, t) in done.into_iter().flatten() {
        results[i] = Some(t);
    }
    results
        .into_iter()
        .map(|t| t.expect("every item ran once"))
        .collect()
}

pub struct Topology {
    pub gate: Addr<Gate>,
    pub channels: BTreeMap<String, Recipient<Deliver>>,
    /// Health and drain handles of the configured channels, by name.
    pub controls: BTreeMap<String, ChannelControl>,
    pub collectors: Vec<CollectorHandle>,
    pub repositories: Vec<Repository>,
    /// Repositories that could not be used, with the reason.
    pub failures: Vec<String>,
}

impl Topology {
    /// Asks every channel to deliver what it holds (what it recovered from the outbox at
    /// start, and what it accepted since), each within `within`. The requests are sent
    /// now; await the result to wait for the answers.
    pub fn drain(
        &self,
        within: Duration,
    ) -> impl std::future::Future<Output = Vec<(String, Option<DrainReport>)>> {
        drain(&self.controls, within)
    }
}

/// Asks every channel of `controls` to deliver what it holds, each within `within`.
pub fn drain(
    controls: &BTreeMap<String, ChannelControl>,
    within: Duration,
) -> impl std::future::Future<Output = Vec<(String, Option<DrainReport>)>> {
    let requests: Vec<_> = controls
        .iter()
        .map(|(name, c)| (name.clone(), c.drain.send(Drain { within })))
        .collect();
    async move {
        let mut out = Vec::new();
        for (name, r) in requests {
            out.push((name, r.await.ok()));
        }
        out
    }
}

/// How long `once` waits for the channels' backlog at most: the time a `Deliver` waits
/// for its answer.
pub fn drain_deadline() -> Duration {
    RetryPolicy::default().deadline
}

/// Opens the outbox: the state database of `[state] dsn`, `<state.dir>/outbox.redb`, or
/// memory when neither is set.
/// `fence`: a replica's delivery lease, which every write of the state database checks.
pub fn open_outbox(
    settings: &Settings,
    fence: Option<&Arc<Fence>>,
    log: &Logger,
) -> anyhow::Result<Arc<dyn Outbox>> {
    let database = settings.state.database().map(|mut db| {
        db.fence = fence.cloned();
        db
    });
    let outbox: Arc<dyn Outbox> = match (database, &settings.state.dir) {
        (Some(db), _) => Arc::new(
            crate::statedb::outbox::PgOutbox::open(&db, crate::gate::Access::ReadWrite)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?,
        ),
        (None, Some(dir)) => Arc::new(crate::outbox::RedbOutbox::open(dir)?),
        (None, None) => return Ok(Arc::new(MemoryOutbox::new())),
    };
    match outbox.backlog() {
        Ok(backlog) => {
            for b in backlog {
                if !settings.channels.contains_key(&b.channel) {
                    warn!(log, "The outbox holds notifications for a channel that is no longer configured; they stay there until it is configured again.";
                        "channel" => &b.channel, "pending" => b.pending, "failed" => b.failed);
                }
            }
        }
        Err(e) => warn!(log, "Cannot read the outbox's backlog."; "error" => %e),
    }
    Ok(outbox)
}

/// A preview (`--dry-run`, `backtest`) reads the outbox without writing it, to say what
/// an earlier run left there (it does not send it). A running daemon holds the file: then
/// the preview says so and goes on without it.
fn preview_outbox(settings: &Settings, log: &Logger) {
    let opened: anyhow::Result<Option<Box<dyn Outbox>>> =
        match (settings.state.database(), &settings.state.dir) {
            (Some(db), _) => {
                crate::statedb::outbox::PgOutbox::open(&db, crate::gate::Access::ReadOnly)
                    .map(|o| Some(Box::new(o) as Box<dyn Outbox>))
                    .map_err(|e| anyhow::anyhow!("{}", e.message))
            }
            (None, Some(dir)) => crate::outbox::RedbOutbox::open_read_only(dir)
                .map(|o| o.map(|o| Box::new(o) as Box<dyn Outbox>)),
            (None, None) => return,
        };
    match opened {
        Ok(None) => {}
        Ok(Some(outbox)) => match outbox.backlog() {
            Ok(backlog) => {
                for b in backlog {
                    info!(log, "The outbox holds notifications from an earlier run; a preview does not send them.";
                        "channel" => &b.channel, "pending" => b.pending, "failed" => b.failed);
                }
            }
            Err(e) => warn!(log, "Cannot read the outbox's backlog."; "error" => %e),
        },
        Err(e) => {
            warn!(log, "The preview goes on without the outbox."; "error" => format!("{e:#}"))
        }
    }
}

/// Connects every configured repository concurrently.
pub async fn connect_all(settings: &Settings) -> (Vec<Repository>, Vec<String>) {
    let results = join_all(
        settings
            .repositories
            .iter()
            .map(|(name, s)| async move { powa::connect(name, s).await }),
    )
    .await;
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(repo) => ok.push(repo),
            Err(e) => failures.push(e.to_string()),
        }
    }
    (ok, failures)
}

/// The delivery side: channels and the gate. Built once per process: a configuration
/// reload keeps them (and the gate's state).
pub struct Outputs {
    pub gate: Addr<Gate>,
    pub channels: BTreeMap<String, Recipient<Deliver>>,
    /// Health and drain handles of the configured channels (none in a dry run).
    pub controls: BTreeMap<String, ChannelControl>,
}

/// Starts every channel and the gate. Must run inside an actix System.
pub fn build_outputs(
    settings: &Settings,
    opts: RunOptions,
    log: &Logger,
) -> anyhow::Result<Outputs> {
    build_fenced_outputs(settings, opts, None, log)
}

/// [`build_outputs`] for a replica that delivers under `fence` (its delivery lease):
/// the gate's store and the outbox check it on every write.
pub fn build_fenced_outputs(
    settings: &Settings,
    opts: RunOptions,
    fence: Option<Arc<Fence>>,
    log: &Logger,
) -> anyhow::Result<Outputs> {
    let powa_web = settings
        .repositories
        .iter()
        .filter_map(|(name, r)| Some((name.clone(), r.powa_web_url.clone()?)))
        .collect();
    // A dry run sends nothing, so it needs no links (and must not make the key file).
    let actions = match opts.dry_run {
        true => None,
        false => crate::actions::from_settings(&settings.http, settings.state.dir.as_deref())
            .map_err(|e| anyhow::anyhow!("action links: {e}"))?,
    };
    // Report pages are files of the host that serves them: in `dir`, or with `dsn`
    // alone in a directory of this process (said in the log; a restart starts another).
    let reports_dir = settings.state.local_dir();
    let trends = Arc::new(crate::chart::enrich::TrendSource::new(
        settings.repositories.clone(),
        settings.analysis.baseline_offset,
        settings.analysis.baseline_periods,
        log.new(o!("component" => "chart")),
    ));
    // Pages only where their links go: with action links (which need the state dir).
    let archive = match (&actions, &reports_dir) {
        (Some(_), Some(dir)) => {
            if settings.state.dir.is_none() {
                info!(log, "With [state] dsn and no dir, report pages are kept in a directory of this process only: after a restart, their links show what fires now.";
                    "dir" => %dir.display());
            }
            crate::archive::Archive::new(dir, settings.state.keep_reports).map(Arc::new)
        }
        _ => None,
    };
    let mut env = ChannelEnv::new(log.new(o!("component" => "channel")), opts.json_output)
        .with_powa_web(powa_web)
        .with_actions(actions)
        .with_trends(Some(trends))
        .with_archive(archive);
    if !opts.dry_run {
        let outbox =
            open_outbox(settings, fence.as_ref(), log).context("the outbox could not be opened")?;
        env = env.with_outbox(outbox);
    }
    let mut channel_addrs = BTreeMap::new();
    if opts.dry_run {
        preview_outbox(settings, log);
        channel_addrs = crate::dry_run::start_all(&settings.channels, log)?;
    } else {
        for (name, ch) in &settings.channels {
            let addr = channels::start(name, ch, &mut env)
                .with_context(|| format!("channel `{name}` could not start"))?;
            channel_addrs.insert(name.clone(), addr);
        }
    }
    if opts.json_output {
        let actor = ChannelActor::new(
            JSON_OUTPUT_CHANNEL,
            JsonLinesOutput,
            None,
            RetryPolicy::default(),
            log.new(o!("component" => "channel", "channel" => JSON_OUTPUT_CHANNEL)),
        )
        .start();
        channel_addrs.insert(JSON_OUTPUT_CHANNEL.to_string(), actor.recipient());
    }
    let names: Vec<String> = settings.channels.keys().cloned().collect();
    let always: Vec<String> = opts
        .json_output
        .then(|| JSON_OUTPUT_CHANNEL.to_string())
        .into_iter()
        .collect();
    // A preview reads the real state (what was announced, silences, held items) and
    // leaves it untouched.
    let access = if opts.dry_run {
        crate::gate::Access::ReadOnly
    } else {
        crate::gate::Access::ReadWrite
    };
    let store = crate::gate::store::open_fenced(&settings.state, access, fence)
        .context("the gate's state could not be opened")?;
    let decide = crate::gate::Gate::with_store(
        &settings.gate,
        &settings.routes,
        &names,
        &always,
        store,
        log.new(o!("component" => "gate")),
    )
    .context("the gate could not start")?;
    let gate = GateActor::new(decide, channel_addrs.clone()).start();
    Ok(Outputs {
        gate,
        channels: channel_addrs,
        controls: env.controls().clone(),
    })
}

/// The analyzers every collector feeds, and what the collectors must read for them.
pub struct Analyzers {
    pub recipients: Vec<Recipient<AnalyzeSnapshot<StatementsWindow>>>,
    /// The name of each analyzer started, as its restarts and failures are reported (a
    /// reload, which starts them afresh, clears exactly these).
    pub names: Vec<String>,
    /// The baseline windows to read too (regression and workload change need them;
    /// `analysis.baseline_offset` and `baseline_periods`).
    pub baselines: Baselines,
    /// Read pg_qualstats for the index advisor (None when it is off).
    pub missing_index: Option<crate::analyze::MissingIndexSettings>,
    /// Direct connections to monitored servers, by repository and server (`local`
    /// defaults to the repository's own connection).
    pub monitored: BTreeMap<String, BTreeMap<String, powa::monitored::MonitoredSettings>>,
    /// How each repository's collectors reach their servers for names (`monitored`
    /// first, then `powa_servers`).
    pub reach: BTreeMap<String, Arc<powa::monitored::Reach>>,
    /// `[state] dir`: where each server's last look at its indexes is kept, so that a
    /// restart (or the next `once`) still tells what changed since.
    pub state_dir: Option<std::path::PathBuf>,
    /// A dry run reads what is kept there and writes nothing.
    pub state_read_only: bool,
}

/// One supervised analyzer, started: its name and where to send it snapshots.
type Started = (String, Recipient<AnalyzeSnapshot<StatementsWindow>>);

fn supervised<A>(
    factory: impl Fn() -> A + 'static,
    gate: &Recipient<Insights>,
    events: &Events,
) -> Started
where
    A: Analyze<Input = StatementsWindow>,
{
    let observer: InsightObserver =
        Arc::new(|name: &str, insights: &[sentinel_actors::Insight]| {
            metrics::metrics().insights_produced(name, insights)
        });
    let actor = AnalyzerActor::supervised(
        factory,
        gate.clone(),
        RestartPolicy::default(),
        Arc::clone(events),
    )
    .with_observer(observer);
    let name = actor.name().to_string();
    (name, actor.start().recipient())
}

/// Starts one supervised actor per analyzer. A panicking analyzer is rebuilt from its
/// settings (see `sentinel_actors::analyzer`).
/// `gate`: where their reports go (the gate, or with replicas the findings queue).
pub fn build_analyzers(settings: &Settings, gate: &Recipient<Insights>, log: &Logger) -> Analyzers {
    let events: Events = Arc::new(metrics::MetricEvents {
        log: log.new(o!("component" => "supervisor")),
    });
    let a = &settings.analyzers;
    let slow = a.slow_queries.clone();
    let regression = a.regression.clone();
    let mut health = a.powa_health.clone();
    let needed_retention = a
        .regression
        .any(|s| s.enabled)
        .then_some(settings.analysis.window + settings.analysis.baseline_offset);
    health.update_all(|s| s.needed_retention = needed_retention);
    let workload = a.workload_change.clone();
    let hogs = a.resource_hogs.clone();
    let score = a.health_score.clone();
    let missing = a.missing_index.clone();
    let changed = a.settings_change.clone();
    let inputs = {
        let (health, regression, workload, hogs) = (
            health.clone(),
            regression.clone(),
            workload.clone(),
            hogs.clone(),
        );
        move || HealthInputs {
            powa: PowaHealthAnalyzer::new(health.clone()),
            regression: RegressionAnalyzer::new(regression.clone()),
            workload: WorkloadChangeAnalyzer::new(workload.clone()),
            hogs: ResourceHogAnalyzer::new(hogs.clone()),
        }
    };
    let mut started = vec![
        supervised(move || SlowQueryAnalyzer::new(slow.clone()), gate, &events),
        supervised(
            move || RegressionAnalyzer::new(regression.clone()),
            gate,
            &events,
        ),
        supervised(
            move || PowaHealthAnalyzer::new(health.clone()),
            gate,
            &events,
        ),
        supervised(
            move || WorkloadChangeAnalyzer::new(workload.clone()),
            gate,
            &events,
        ),
        supervised(
            move || ResourceHogAnalyzer::new(hogs.clone()),
            gate,
            &events,
        ),
        supervised(
            move || HealthScoreAnalyzer::new(score.clone(), inputs()),
            gate,
            &events,
        ),
        supervised(
            move || SettingsChangeAnalyzer::new(changed.clone()),
            gate,
            &events,
        ),
    ];
    if missing.enabled {
        let m = missing.clone();
        started.push(supervised(
            move || MissingIndexAnalyzer::new(m.clone()),
            gate,
            &events,
        ));
    }
    let baselines = Baselines {
        offset: (a.regression.any(|s| s.enabled) || a.workload_change.any(|s| s.enabled))
            .then_some(settings.analysis.baseline_offset),
        periods: settings.analysis.baseline_periods,
    };
    let (names, recipients) = started.into_iter().unzip();
    Analyzers {
        recipients,
        names,
        baselines,
        missing_index: missing.enabled.then_some(missing),
        monitored: settings
            .repositories
            .iter()
            .map(|(name, r)| {
                let mut m = r.monitored.clone();
                // The repository's own instance is its `local` server: read its names
                // through the repository's connection unless told otherwise.
                m.entry("local".to_string())
                    .or_insert_with(|| powa::monitored::MonitoredSettings::implicit_from(r));
                (name.clone(), m)
            })
            .collect(),
        reach: settings
            .repositories
            .iter()
            .map(|(name, r)| {
                let reach =
                    powa::monitored::Reach::new(name, r, log.new(o!("component" => "reach")));
                (name.clone(), Arc::new(reach))
            })
            .collect(),
        state_dir: settings.state.dir.clone(),
        state_read_only: false,
    }
}

/// Does the configuration ask for this server of this repository?
pub fn wanted(settings: &Settings, repository: &str, server: &str) -> bool {
    settings
        .repositories
        .get(repository)
        .is_some_and(|r| r.servers.is_empty() || r.servers.iter().any(|s| s == server))
}

/// Rows read, for the metrics.
fn rows_of(w: &StatementsWindow) -> u64 {
    w.points + w.baselines.iter().map(|b| b.points).sum::<u64>()
}

/// The live window a server's collector keeps between cycles. A collector rebuilt on
/// another session of the same repository keeps it (it holds no session), so it does not
/// read the whole window again.
pub type LiveState = Arc<tokio::sync::Mutex<LiveWindow>>;

/// A fresh live window for a server.
pub fn live_state(repository: &str, info: &Arc<PowaInfo>, server: &ServerInfo) -> LiveState {
    Arc::new(tokio::sync::Mutex::new(LiveWindow::new(
        repository,
        Arc::clone(info),
        server.clone(),
    )))
}

/// Starts the collector of one server, numbering its snapshots from `seq`, continuing
/// the live window `live`.
pub fn start_collector(
    repository: &str,
    client: Arc<powa::Session>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    analyzers: &Analyzers,
    live: LiveState,
    seq: u64,
) -> Addr<CollectorActor<PowaSource>> {
    let mut source = PowaSource::with_live(
        repository,
        client,
        info,
        server.clone(),
        analyzers.baselines,
        live,
    );
    if let Some(settings) = &analyzers.missing_index {
        source = source.with_quals(powa::qualstats::QualsCollector {
            repository: repository.to_string(),
            settings: settings.clone(),
            monitored: analyzers
                .monitored
                .get(repository)
                .and_then(|m| m.get(&server.name))
                .cloned(),
        });
    }
    if let Some(reach) = analyzers.reach.get(repository) {
        source = source.with_reach(Arc::clone(reach));
    }
    if let Some(dir) = &analyzers.state_dir {
        source = source.with_index_state(
            powa::indexes::state_file(dir, repository, &server),
            analyzers.state_read_only,
        );
    }
    CollectorActor::new(source, analyzers.recipients.clone())
        .with_measure(rows_of)
        .with_seq(seq)
        .start()
}

/// What every command starts: the delivery side and the analyzers that feed its gate.
pub struct Pipeline {
    pub outputs: Outputs,
    pub analyzers: Analyzers,
}

/// Starts the channels, the gate and the analyzers. Must run inside an actix System.
pub fn start_pipeline(
    settings: &Settings,
    opts: RunOptions,
    log: &Logger,
) -> anyhow::Result<Pipeline> {
    let outputs = build_outputs(settings, opts, log)?;
    let mut analyzers = build_analyzers(settings, &outputs.gate.clone().recipient(), log);
    analyzers.state_read_only = opts.dry_run;
    // Before any snapshot: the gate holds a critical finding until these analyzers have
    // all reported on its snapshot, so it goes with its cause.
    outputs
        .gate
        .do_send(ExpectAnalyzers(analyzers.names.clone()));
    Ok(Pipeline { outputs, analyzers })
}

/// Builds the pipeline for one run (`once`, `backtest`) with a collector per server.
/// Must run inside an actix System.
pub async fn build(
    settings: &Settings,
    opts: RunOptions,
    log: &Logger,
) -> anyhow::Result<Topology> {
    let Pipeline { outputs, analyzers } = start_pipeline(settings, opts, log)?;
    let (repositories, failures) = connect_all(settings).await;
    for f in &failures {
        warn!(log, "Repository unavailable; the others are analysed."; "error" => %f);
    }
    let mut collectors = Vec::new();
    for repo in &repositories {
        let info = Arc::new(repo.info.clone());
        let servers: Vec<&ServerInfo> = repo
            .info
            .servers
            .iter()
            .filter(|s| wanted(settings, &repo.name, &s.name))
            .collect();
        let sessions = collection_sessions(repo, settings, servers.len(), log).await;
        for (k, server) in servers.into_iter().enumerate() {
            let name = format!("{}/{}", repo.name, server.name);
            info!(log, "Collector ready."; "repository" => &repo.name, "server" => &server.name,
                  "srvid" => server.srvid, "powa" => %repo.info.version);
            // Round robin: the servers of a repository spread evenly over its sessions.
            let session = Arc::clone(&sessions[k % sessions.len()]);
            let addr = start_collector(
                &repo.name,
                Arc::clone(&session),
                Arc::clone(&info),
                server.clone(),
                &analyzers,
                live_state(&repo.name, &info, server),
                0,
            );
            collectors.push(CollectorHandle {
                name,
                addr,
                repository: repo.name.clone(),
                session,
            });
        }
    }
    Ok(Topology {
        gate: outputs.gate,
        channels: outputs.channels,
        controls: outputs.controls,
        collectors,
        repositories,
        failures,
    })
}

/// How a command words what a flush delivered; what is recorded does not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Telling {
    /// The daemon's reports: "Report delivered." per channel, then "Report sent." (at
    /// its time in the report's time zone).
    Scheduled(chrono_tz::Tz),
    /// `once`: "Delivered." per channel ("Rendered, not sent (dry run)." in a dry run).
    Once { dry_run: bool },
    /// `backtest`: nothing per channel (it counts what would have been sent).
    Quiet,
}

/// Flushes the gate at `at`: every channel's outcome goes to the metrics and, worded per
/// `telling`, to the log. None when the gate is unavailable (logged too, but by
/// `backtest`, which just counts nothing).
pub async fn report(
    gate: &Addr<Gate>,
    at: DateTime<Utc>,
    telling: Telling,
    log: &Logger,
) -> Option<FlushSummary> {
    let summary = match gate.send(Flush { at }).await {
        Ok(s) => s,
        Err(e) => {
            match telling {
                Telling::Scheduled(_) => error!(log, "Gate unavailable; no report."; "error" => %e),
                Telling::Once { .. } => error!(log, "Gate unavailable."; "error" => %e),
                Telling::Quiet => {}
            }
            return None;
        }
    };
    metrics::metrics().gate_decision("flushed", summary.insights as u64);
    for r in &summary.reports {
        let outcome = match &r.outcome {
            Ok(()) => "delivered",
            Err(e) if e.is_permanent() => "permanent",
            Err(_) => "failed",
        };
        metrics::metrics().delivery(&r.channel, outcome);
        tell(r, telling, log);
    }
    match telling {
        Telling::Scheduled(tz) => {
            info!(log, "Report sent."; "insights" => summary.insights, "at" => at.with_timezone(&tz).to_rfc3339())
        }
        Telling::Once { .. } if summary.insights == 0 => {
            info!(log, "Nothing worth reporting in this window.")
        }
        Telling::Once { .. } | Telling::Quiet => {}
    }
    Some(summary)
}

/// One channel's outcome, in the log.
fn tell(r: &DeliveryReport, telling: Telling, log: &Logger) {
    match (telling, &r.outcome) {
        (Telling::Quiet, _) => {}
        (Telling::Scheduled(_), Ok(())) => {
            info!(log, "Report delivered."; "channel" => &r.channel, "parts" => r.parts_total)
        }
        (Telling::Scheduled(_), Err(e)) => {
            error!(log, "Report delivery failed."; "channel" => &r.channel,
            "parts_delivered" => r.parts_delivered, "parts" => r.parts_total, "error" => %e)
        }
        (Telling::Once { dry_run: true }, Ok(())) => {
            info!(log, "Rendered, not sent (dry run)."; "channel" => &r.channel, "parts" => r.parts_total)
        }
        (Telling::Once { .. }, Ok(())) if r.parts_total == 0 => {
            info!(log, "Already accepted by an earlier run; delivered from the outbox."; "channel" => &r.channel)
        }
        (Telling::Once { .. }, Ok(())) => info!(log, "Delivered."; "channel" => &r.channel,
            "parts" => r.parts_total, "attempts" => r.attempts),
        (Telling::Once { .. }, Err(e)) => error!(log, "Delivery failed."; "channel" => &r.channel,
            "parts_delivered" => r.parts_delivered, "parts" => r.parts_total, "error" => %e),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    #[actix_rt::test]
    async fn lanes_take_turns_and_run_beside_each_other() {
        // (lane, item): two lanes of two, one lane of one.
        let items = [('a', 0), ('b', 1), ('a', 2), ('c', 3), ('b', 4)];
        let running: RefCell<Vec<char>> = RefCell::default();
        let most = RefCell::new(0usize);
        let order: RefCell<Vec<usize>> = RefCell::default();
        let got = super::in_lanes(
            &items,
            |x, y| x.0 == y.0,
            |&(lane, n)| {
                let (running, most, order) = (&running, &most, &order);
                async move {
                    assert!(
                        !running.borrow().contains(&lane),
                        "two items of lane {lane} at once"
                    );
                    running.borrow_mut().push(lane);
                    let now = running.borrow().len();
                    most.replace_with(|m| (*m).max(now));
                    tokio::task::yield_now().await;
                    running.borrow_mut().retain(|l| *l != lane);
                    order.borrow_mut().push(n);
                    n * 10
                }
            },
        )
        .await;
        assert_eq!(got, [0, 10, 20, 30, 40], "results in the items' order");
        assert_eq!(*most.borrow(), 3, "the three lanes at once");
        let order = order.borrow();
        let pos = |n| order.iter().position(|&x| x == n).unwrap();
        assert!(pos(0) < pos(2) && pos(1) < pos(4), "a lane keeps its order");
    }
}
