//! Wires one run: channels, the gate, the analyzers and one collector per discovered
//! server. Repositories are connected concurrently; one that fails is reported and the
//! others carry on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;
use futures_util::future::join_all;
use slog::{info, o, warn, Logger};

use crate::analyze::health_score::HealthInputs;
use crate::analyze::{
    HealthScoreAnalyzer, MissingIndexAnalyzer, PowaHealthAnalyzer, RegressionAnalyzer,
    ResourceHogAnalyzer, SlowQueryAnalyzer, WorkloadChangeAnalyzer,
};
use crate::channels::{self, ChannelControl, ChannelEnv};
use crate::config::Settings;
use crate::output::{JsonLinesOutput, JSON_OUTPUT_CHANNEL};
use crate::powa::source::PowaSource;
use crate::powa::{self, Repository};
use sentinel_actors::analyzer::AnalyzerActor;
use sentinel_actors::channel::{ChannelActor, Drain, DrainReport, RetryPolicy};
use sentinel_actors::collector::CollectorActor;
use sentinel_actors::gate::GateActor;
use sentinel_actors::outbox::{MemoryOutbox, Outbox};

pub type Gate = GateActor<crate::gate::Gate>;

/// Options of one run that do not come from the settings file.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Print insights as JSON lines on stdout (and send the console channel to stderr).
    pub json_output: bool,
}

/// A collector and the server it reads.
pub struct CollectorHandle {
    pub name: String,
    pub addr: Addr<CollectorActor<PowaSource>>,
}

pub struct Topology {
    pub gate: Addr<Gate>,
    pub collectors: Vec<CollectorHandle>,
    pub repositories: Vec<Repository>,
    /// Repositories that could not be used, with the reason.
    pub failures: Vec<String>,
    /// Health and drain handles of the configured channels, by name.
    pub channels: BTreeMap<String, ChannelControl>,
}

impl Topology {
    /// Asks every channel to deliver what it holds (what it recovered from the outbox at
    /// start, and what it accepted since), each within `within`. The requests are sent
    /// now; await the result to wait for the answers.
    pub fn drain(
        &self,
        within: Duration,
    ) -> impl std::future::Future<Output = Vec<(String, Option<DrainReport>)>> {
        let requests: Vec<_> = self
            .channels
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
}

/// How long `once` waits for the channels' backlog at most: the time a `Deliver` waits
/// for its answer.
pub fn drain_deadline() -> Duration {
    RetryPolicy::default().deadline
}

/// Opens the outbox: `<state.dir>/outbox.redb`, or memory when no directory is set.
pub fn open_outbox(settings: &Settings, log: &Logger) -> anyhow::Result<Arc<dyn Outbox>> {
    let Some(dir) = &settings.state.dir else {
        return Ok(Arc::new(MemoryOutbox::new()));
    };
    let outbox = crate::outbox::RedbOutbox::open(dir)?;
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
    Ok(Arc::new(outbox))
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

/// Builds the pipeline. Must run inside an actix System.
pub async fn build(
    settings: &Settings,
    opts: RunOptions,
    log: &Logger,
) -> anyhow::Result<Topology> {
    let outbox = open_outbox(settings, log).context("the outbox could not be opened")?;
    let mut env = ChannelEnv::new(log.new(o!("component" => "channel")), opts.json_output)
        .with_outbox(outbox);
    let mut channel_addrs = BTreeMap::new();
    for (name, ch) in &settings.channels {
        let addr = channels::start(name, ch, &mut env)
            .with_context(|| format!("channel `{name}` could not start"))?;
        channel_addrs.insert(name.clone(), addr);
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
    let channel_controls = env.controls().clone();
    let names: Vec<String> = settings.channels.keys().cloned().collect();
    let always: Vec<String> = opts
        .json_output
        .then(|| JSON_OUTPUT_CHANNEL.to_string())
        .into_iter()
        .collect();
    let decide = crate::gate::Gate::from_settings(
        settings,
        &names,
        &always,
        log.new(o!("component" => "gate")),
    )
    .context("the gate could not start")?;
    let gate = GateActor::new(decide, channel_addrs).start();

    let slow = AnalyzerActor::new(
        SlowQueryAnalyzer::new(settings.analyzers.slow_queries.clone()),
        gate.clone().recipient(),
    )
    .start();

    let regression = AnalyzerActor::new(
        RegressionAnalyzer::new(settings.analyzers.regression.clone()),
        gate.clone().recipient(),
    )
    .start();
    let mut health_settings = settings.analyzers.powa_health.clone();
    let needed_retention = settings
        .analyzers
        .regression
        .any(|s| s.enabled)
        .then_some(settings.analysis.window + settings.analysis.baseline_offset);
    health_settings.update_all(|s| s.needed_retention = needed_retention);
    let health = AnalyzerActor::new(
        PowaHealthAnalyzer::new(health_settings.clone()),
        gate.clone().recipient(),
    )
    .start();
    let hogs = AnalyzerActor::new(
        ResourceHogAnalyzer::new(settings.analyzers.resource_hogs.clone()),
        gate.clone().recipient(),
    )
    .start();
    let score = AnalyzerActor::new(
        HealthScoreAnalyzer::new(
            settings.analyzers.health_score.clone(),
            HealthInputs {
                powa: PowaHealthAnalyzer::new(health_settings),
                regression: RegressionAnalyzer::new(settings.analyzers.regression.clone()),
                workload: WorkloadChangeAnalyzer::new(settings.analyzers.workload_change.clone()),
                hogs: ResourceHogAnalyzer::new(settings.analyzers.resource_hogs.clone()),
            },
        ),
        gate.clone().recipient(),
    )
    .start();
    let workload = AnalyzerActor::new(
        WorkloadChangeAnalyzer::new(settings.analyzers.workload_change.clone()),
        gate.clone().recipient(),
    )
    .start();
    let missing_index = AnalyzerActor::new(
        MissingIndexAnalyzer::new(settings.analyzers.missing_index.clone()),
        gate.clone().recipient(),
    )
    .start();
    let baseline_offset = (settings.analyzers.regression.any(|s| s.enabled)
        || settings.analyzers.workload_change.any(|s| s.enabled))
    .then_some(settings.analysis.baseline_offset);

    let (repositories, failures) = connect_all(settings).await;
    for f in &failures {
        warn!(log, "Repository unavailable; the others are analysed."; "error" => %f);
    }
    let mut collectors = Vec::new();
    for repo in &repositories {
        let wanted = &settings.repositories[&repo.name].servers;
        let info = Arc::new(repo.info.clone());
        for server in &repo.info.servers {
            if !wanted.is_empty() && !wanted.contains(&server.name) {
                continue;
            }
            let source = PowaSource::new(
                &repo.name,
                Arc::clone(&repo.client),
                Arc::clone(&info),
                server.clone(),
                baseline_offset,
                settings.analysis.baseline_periods,
            );
            let source = if settings.analyzers.missing_index.enabled {
                source.with_quals(powa::qualstats::QualsCollector {
                    repository: repo.name.clone(),
                    settings: settings.analyzers.missing_index.clone(),
                    monitored: settings.repositories[&repo.name]
                        .monitored
                        .get(&server.name)
                        .cloned(),
                })
            } else {
                source
            };
            let name = format!("{}/{}", repo.name, server.name);
            info!(log, "Collector ready."; "repository" => &repo.name, "server" => &server.name,
                  "srvid" => server.srvid, "powa" => %repo.info.version);
            let addr = CollectorActor::new(
                source,
                vec![
                    slow.clone().recipient(),
                    regression.clone().recipient(),
                    health.clone().recipient(),
                    workload.clone().recipient(),
                    hogs.clone().recipient(),
                    score.clone().recipient(),
                    missing_index.clone().recipient(),
                ],
            )
            .start();
            collectors.push(CollectorHandle { name, addr });
        }
    }
    Ok(Topology {
        gate,
        collectors,
        repositories,
        failures,
        channels: channel_controls,
    })
}
