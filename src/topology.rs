//! Wires one run: channels, the gate, the analyzers and one collector per discovered
//! server. Repositories are connected concurrently; one that fails is reported and the
//! others carry on.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;
use futures_util::future::join_all;
use slog::{info, o, warn, Logger};

use crate::analyze::{
    PowaHealthAnalyzer, RegressionAnalyzer, SlowQueryAnalyzer, WorkloadChangeAnalyzer,
};
use crate::channels::{self, ChannelEnv};
use crate::config::Settings;
use crate::metrics;
use crate::output::{JsonLinesOutput, JSON_OUTPUT_CHANNEL};
use crate::powa::source::PowaSource;
use crate::powa::{self, Repository};
use crate::powa::{PowaInfo, ServerInfo, StatementsWindow};
use sentinel_actors::analyzer::{Analyze, AnalyzeSnapshot, AnalyzerActor, InsightObserver};
use sentinel_actors::channel::{ChannelActor, Deliver, RetryPolicy};
use sentinel_actors::collector::CollectorActor;
use sentinel_actors::gate::{Broadcast, GateActor};
use sentinel_actors::supervise::{Events, RestartPolicy};

pub type Gate = GateActor<Broadcast>;

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
}

pub struct Topology {
    pub gate: Addr<Gate>,
    pub channels: BTreeMap<String, Recipient<Deliver>>,
    pub collectors: Vec<CollectorHandle>,
    pub repositories: Vec<Repository>,
    /// Repositories that could not be used, with the reason.
    pub failures: Vec<String>,
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
}

/// Starts every channel and the gate. Must run inside an actix System.
pub fn build_outputs(
    settings: &Settings,
    opts: RunOptions,
    log: &Logger,
) -> anyhow::Result<Outputs> {
    let mut env = ChannelEnv::new(log.new(o!("component" => "channel")), opts.json_output);
    let mut channel_addrs = BTreeMap::new();
    if opts.dry_run {
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
    let names: Vec<String> = channel_addrs.keys().cloned().collect();
    let gate = GateActor::new(Broadcast(names), channel_addrs.clone()).start();
    Ok(Outputs {
        gate,
        channels: channel_addrs,
    })
}

/// The analyzers every collector feeds, and what the collectors must read for them.
pub struct Analyzers {
    pub recipients: Vec<Recipient<AnalyzeSnapshot<StatementsWindow>>>,
    /// Read the baseline window too (regression and workload change need it).
    pub baseline_offset: Option<std::time::Duration>,
}

fn supervised<A>(
    factory: impl Fn() -> A + 'static,
    gate: &Addr<Gate>,
    events: &Events,
) -> Recipient<AnalyzeSnapshot<StatementsWindow>>
where
    A: Analyze<Input = StatementsWindow>,
{
    let observer: InsightObserver =
        Arc::new(|name: &str, insights: &[sentinel_actors::Insight]| {
            metrics::metrics().insights_produced(name, insights)
        });
    AnalyzerActor::supervised(
        factory,
        gate.clone().recipient(),
        RestartPolicy::default(),
        Arc::clone(events),
    )
    .with_observer(observer)
    .start()
    .recipient()
}

/// Starts one supervised actor per analyzer. A panicking analyzer is rebuilt from its
/// settings (see `sentinel_actors::analyzer`).
pub fn build_analyzers(settings: &Settings, gate: &Addr<Gate>, log: &Logger) -> Analyzers {
    let events: Events = Arc::new(metrics::MetricEvents {
        log: log.new(o!("component" => "supervisor")),
    });
    let slow = settings.analyzers.slow_queries.clone();
    let regression = settings.analyzers.regression.clone();
    let mut health = settings.analyzers.powa_health.clone();
    health.needed_retention = settings
        .analyzers
        .regression
        .enabled
        .then_some(settings.analysis.window + settings.analysis.baseline_offset);
    let workload = settings.analyzers.workload_change.clone();
    let recipients = vec![
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
    ];
    let baseline_offset = (settings.analyzers.regression.enabled
        || settings.analyzers.workload_change.enabled)
        .then_some(settings.analysis.baseline_offset);
    Analyzers {
        recipients,
        baseline_offset,
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
    w.points + w.baseline.as_ref().map(|b| b.points).unwrap_or(0)
}

/// Starts the collector of one server, numbering its snapshots from `seq`.
pub fn start_collector(
    repository: &str,
    client: Arc<tokio_postgres::Client>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    analyzers: &Analyzers,
    seq: u64,
) -> Addr<CollectorActor<PowaSource>> {
    let source = PowaSource::new(repository, client, info, server, analyzers.baseline_offset);
    CollectorActor::new(source, analyzers.recipients.clone())
        .with_measure(rows_of)
        .with_seq(seq)
        .start()
}

/// Builds the pipeline for one run (`once`, `backtest`). Must run inside an actix System.
pub async fn build(
    settings: &Settings,
    opts: RunOptions,
    log: &Logger,
) -> anyhow::Result<Topology> {
    let outputs = build_outputs(settings, opts, log)?;
    let analyzers = build_analyzers(settings, &outputs.gate, log);
    let (repositories, failures) = connect_all(settings).await;
    for f in &failures {
        warn!(log, "Repository unavailable; the others are analysed."; "error" => %f);
    }
    let mut collectors = Vec::new();
    for repo in &repositories {
        let info = Arc::new(repo.info.clone());
        for server in &repo.info.servers {
            if !wanted(settings, &repo.name, &server.name) {
                continue;
            }
            let name = format!("{}/{}", repo.name, server.name);
            info!(log, "Collector ready."; "repository" => &repo.name, "server" => &server.name,
                  "srvid" => server.srvid, "powa" => %repo.info.version);
            let addr = start_collector(
                &repo.name,
                Arc::clone(&repo.client),
                Arc::clone(&info),
                server.clone(),
                &analyzers,
                0,
            );
            collectors.push(CollectorHandle { name, addr });
        }
    }
    Ok(Topology {
        gate: outputs.gate,
        channels: outputs.channels,
        collectors,
        repositories,
        failures,
    })
}
