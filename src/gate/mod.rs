//! The gate's decisions: what to tell whom, and when.
//!
//! Every (analyzer, source) report goes through, in order:
//!
//! 1. [`lifecycle`]: per fingerprint, new → ongoing → escalated → resolved → reopened, with
//!    flap damping and a repeat interval; only transitions (and repeats) want a notification;
//! 2. [`ack`]: an acknowledged finding is not repeated; its escalation or resolution is
//!    told with who acknowledged it, and ends the acknowledgement;
//! 3. [`silence`]: a silenced finding keeps its lifecycle, its notification is swallowed
//!    (and sent if the silence ends while it still fires);
//! 4. [`routes`]: ordered routes pick the channels and the mentions;
//! 5. immediate or report: critical findings that are new, escalated or reopened go as
//!    soon as their collection cycle is over ([`cycle`]: every analyzer reported on the
//!    snapshot), with the findings of that cycle that explain them; the rest waits for the
//!    next report (`Flush`);
//! 6. [`quiet_hours`]: a channel in its quiet hours gets only the bypass severity; the rest
//!    waits for the window's end;
//! 7. [`heartbeat`]: a channel that got nothing for a day gets an "all quiet" at its time,
//!    and one "I was not running from … to …" after a downtime.
//!
//! The decisions are the pure [`engine::Engine`]; [`Gate`] adds the [`store`] (so that a
//! restart neither re-notifies nor forgets what was held) and logs, and implements the
//! actor crate's [`Decide`] so `GateActor<Gate>` runs it.
//!
//! Each decision commits with the notifications it wants sent (*intents*, numbered here
//! so ids stay unique across runs): a finding is marked announced in the same
//! transaction that records what will announce it. An intent is forgotten when its
//! channel answers (it is then in the channel's outbox); those left by a process that died
//! are offered to the channels again at the next start, with the same ids, and the
//! outboxes do not accept an id twice.
//!
//! ```toml
//! [gate]
//! immediate = true
//! immediate_severity = "critical"
//! default_channels = []          # no route matched: these channels (empty: all)
//! immediate_wait = "60s"         # the longest a critical finding waits for its cycle's causes
//! tick_interval = "30s"          # how often held items are checked (quiet hours, waits)
//! [gate.lifecycle]               # see lifecycle.rs
//! [gate.quiet_hours.<channel>]   # see quiet_hours.rs
//! [gate.heartbeat.<channel>]     # see heartbeat.rs
//! [[routes]]                     # see routes.rs
//! ```

pub mod ack;
pub mod cycle;
pub mod engine;
pub mod heartbeat;
pub mod lifecycle;
pub mod quiet_hours;
pub mod routes;
pub mod silence;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use slog::{error, info, warn, Logger};

use sentinel_actors::channel::DeliveryReport;
use sentinel_actors::gate::{Decide, Insights, Outgoing};
use sentinel_actors::outbox::StoredNotification;
use sentinel_actors::Severity;

use crate::problem::Problem;
use engine::Engine;
use heartbeat::{HeartbeatSettings, Heartbeats, Pulse};
use lifecycle::{LifecycleSettings, Rules};
use quiet_hours::{QuietHours, QuietHoursSettings};
use routes::{RouteSettings, Routes};
use store::{Commit, GateStore, Store};

/// `[gate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    #[serde(default)]
    pub lifecycle: LifecycleSettings,
    /// Send new, escalated and reopened findings of `immediate_severity` and above at once
    /// instead of with the next report.
    #[serde(default = "default_true")]
    pub immediate: bool,
    #[serde(default = "default_immediate_severity")]
    pub immediate_severity: String,
    /// The longest an immediate finding waits for the other analyzers of its collection
    /// cycle, so that it goes with its cause (the missing index, the temp spill) instead of
    /// alone. It usually goes sooner: as soon as every analyzer has reported.
    #[serde(with = "humantime_serde", default = "default_immediate_wait")]
    pub immediate_wait: Duration,
    /// Where insights that match no route go; empty: every channel.
    #[serde(default)]
    pub default_channels: Vec<String>,
    /// Quiet hours, by channel name.
    #[serde(default)]
    pub quiet_hours: BTreeMap<String, QuietHoursSettings>,
    /// How often held items are checked against quiet hours (only with quiet hours).
    #[serde(with = "humantime_serde", default = "default_tick_interval")]
    pub tick_interval: Duration,
    /// Heartbeats, by channel name.
    #[serde(default)]
    pub heartbeat: BTreeMap<String, HeartbeatSettings>,
}

fn default_true() -> bool {
    true
}

fn default_immediate_severity() -> String {
    "critical".to_string()
}

fn default_immediate_wait() -> Duration {
    Duration::from_secs(60)
}

fn default_tick_interval() -> Duration {
    Duration::from_secs(30)
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            lifecycle: LifecycleSettings::default(),
            immediate: true,
            immediate_severity: default_immediate_severity(),
            immediate_wait: default_immediate_wait(),
            default_channels: Vec::new(),
            quiet_hours: BTreeMap::new(),
            tick_interval: default_tick_interval(),
            heartbeat: BTreeMap::new(),
        }
    }
}

/// Compiles the gate's settings into an engine, or every problem found, each with its key.
/// `channels` are the configured channels; `always` internal sinks that see every routed
/// insight (e.g. `--output json`).
pub fn compile(
    gate: &GateSettings,
    routes: &[RouteSettings],
    channels: &[String],
    always: &[String],
) -> Result<Engine, Vec<Problem>> {
    let mut problems = Vec::new();
    gate.lifecycle.validate("gate.lifecycle", &mut problems);
    let immediate = match gate.immediate_severity.parse::<Severity>() {
        Ok(s) => gate.immediate.then_some(s),
        Err(e) => {
            problems.push(Problem::new("gate.immediate_severity", e));
            None
        }
    };
    if gate.tick_interval < Duration::from_secs(1) {
        problems.push(Problem::new(
            "gate.tick_interval",
            "must be at least 1s, e.g. \"30s\"",
        ));
    }
    let mut quiet = BTreeMap::new();
    for (name, q) in &gate.quiet_hours {
        let path = format!("gate.quiet_hours.{name}");
        if !channels.contains(name) {
            problems.push(Problem::new(
                path.clone(),
                format!("no channel is named `{name}`: name a [channels.<name>] table"),
            ));
        }
        if let Some(c) = QuietHours::compile(q, &path, &mut problems) {
            quiet.insert(name.clone(), c);
        }
    }
    let routes = match Routes::compile(routes, &gate.default_channels, channels, always) {
        Ok(r) => Some(r),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    match routes {
        Some(routes) if problems.is_empty() => Ok(Engine::new(
            Rules::new(&gate.lifecycle),
            routes,
            quiet,
            immediate,
        )),
        _ => Err(problems),
    }
}

/// Checks `[gate]` and `[[routes]]` against the configured channels' names.
pub fn validate(
    gate: &GateSettings,
    routes: &[RouteSettings],
    channels: &[String],
    problems: &mut Vec<Problem>,
) {
    if let Err(p) = compile(gate, routes, channels, &[]) {
        problems.extend(p);
    }
    Heartbeats::compile(&gate.heartbeat, channels, problems);
}

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("invalid gate settings: {}", .0.iter().map(|p| format!("key `{}`: {}", p.key, p.message)).collect::<Vec<_>>().join("; "))]
    Settings(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// How the gate uses the state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Load it, and commit every decision to it.
    ReadWrite,
    /// Load it and never write it: `once --dry-run` and `backtest` decide from the real
    /// state, and leave it as they found it.
    ReadOnly,
}

/// The engine with its store: what `GateActor` runs.
pub struct Gate {
    engine: Engine,
    store: Option<Box<dyn GateStore>>,
    tick_every: Option<Duration>,
    tick_interval: Duration,
    immediate_wait: Duration,
    log: Logger,
    /// Notifications decided and not yet answered by their channel, by id (only with a
    /// store that writes).
    intents: BTreeMap<u64, StoredNotification>,
    intents_put: BTreeSet<u64>,
    intents_del: BTreeSet<u64>,
    /// The last notification id used.
    last_id: u64,
    id_moved: bool,
    /// Internal sinks of this run only (`--output json`): no intent is kept for them.
    internal: BTreeSet<String>,
    /// Heartbeats and their state.
    pulse: Pulse,
    /// Findings-queue positions consumed and not yet committed.
    consumed: Vec<u64>,
    /// When silences and acknowledgements were last read (see
    /// [`GateStore::refresh_every`]).
    refreshed: Option<std::time::Instant>,
    /// Several reports are decided together: one commit at the end, not one each.
    batching: bool,
    /// A commit was refused because this replica lost the delivery lease: nothing it
    /// decides goes out any more (another replica decides now).
    fenced: bool,
}

impl Gate {
    /// Builds the gate and, with a state directory, loads what the last run left.
    pub fn new(
        gate: &GateSettings,
        routes: &[RouteSettings],
        channels: &[String],
        always: &[String],
        state_dir: Option<&Path>,
        log: Logger,
    ) -> Result<Gate, GateError> {
        Gate::with_access(
            gate,
            routes,
            channels,
            always,
            state_dir,
            Access::ReadWrite,
            log,
        )
    }

    /// [`Gate::new`], reading the state directory only when `access` says so.
    pub fn with_access(
        gate: &GateSettings,
        routes: &[RouteSettings],
        channels: &[String],
        always: &[String],
        state_dir: Option<&Path>,
        access: Access,
        log: Logger,
    ) -> Result<Gate, GateError> {
        let store: Option<Box<dyn GateStore>> = match state_dir {
            Some(dir) => Some(match access {
                Access::ReadWrite => Box::new(Store::open(dir)?),
                Access::ReadOnly => Box::new(Store::open_read_only(dir)),
            }),
            None => None,
        };
        Gate::with_store(gate, routes, channels, always, store, log)
    }

    /// The gate on an open store (see [`store::open`]; `None`: in memory), loading what
    /// the last run left there.
    pub fn with_store(
        gate: &GateSettings,
        routes: &[RouteSettings],
        channels: &[String],
        always: &[String],
        store: Option<Box<dyn GateStore>>,
        log: Logger,
    ) -> Result<Gate, GateError> {
        let mut engine = compile(gate, routes, channels, always).map_err(GateError::Settings)?;
        let mut problems = Vec::new();
        let heartbeats = Heartbeats::compile(&gate.heartbeat, channels, &mut problems);
        if !problems.is_empty() {
            return Err(GateError::Settings(problems));
        }
        let mut beats = std::collections::HashMap::new();
        // Ids are seeded from the clock, so they stay unique even if the state is lost, and
        // never go below the last one the store recorded, so they stay unique if the clock
        // goes back.
        let mut last_id = (Utc::now().timestamp_micros().max(0) as u64) << 8;
        let mut intents = BTreeMap::new();
        let mut dropped = Vec::new();
        if let Some(store) = &store {
            let loaded = store.load()?;
            info!(log, "Gate state loaded."; "path" => store.describe(),
                "scopes" => loaded.scopes.len(), "held" => loaded.held.len(),
                "silences" => loaded.silences.len(), "unconfirmed" => loaded.intents.len(),
                "read_only" => store.is_read_only());
            engine.restore(loaded.scopes, loaded.held);
            engine.set_silences(loaded.silences);
            engine.set_acks(loaded.acks);
            beats = loaded.beats;
            last_id = last_id.max(loaded.next_notification_id);
            if !store.is_read_only() {
                for n in loaded.intents {
                    if channels.contains(&n.channel) {
                        intents.insert(n.id, n);
                    } else {
                        warn!(log, "A notification decided by an earlier run is for a channel that is no longer configured; it is dropped.";
                            "channel" => &n.channel, "insights" => n.insights.len());
                        dropped.push(n.id);
                    }
                }
            }
        }
        let ticks = !gate.quiet_hours.is_empty() || !heartbeats.is_empty();
        let pulse = Pulse::new(heartbeats, beats, Utc::now());
        Ok(Gate {
            engine,
            store,
            tick_every: ticks.then_some(gate.tick_interval),
            tick_interval: gate.tick_interval,
            immediate_wait: gate.immediate_wait,
            log,
            intents,
            intents_put: BTreeSet::new(),
            intents_del: dropped.into_iter().collect(),
            last_id,
            id_moved: false,
            internal: always.iter().cloned().collect(),
            pulse,
            consumed: Vec::new(),
            refreshed: None,
            batching: false,
            fenced: false,
        })
    }

    /// Does this gate write its decisions (a state directory, not a preview)?
    fn durable(&self) -> bool {
        self.store.as_ref().is_some_and(|s| !s.is_read_only())
    }

    /// Numbers the decided notifications and, with a durable store, records them as
    /// intents of the coming commit.
    fn number(&mut self, out: &mut [Outgoing]) {
        for o in out.iter_mut() {
            self.last_id += 1;
            self.id_moved = true;
            o.id = self.last_id;
        }
        if !self.durable() {
            return;
        }
        for o in out.iter().filter(|o| !self.internal.contains(&o.channel)) {
            self.intents.insert(
                o.id,
                StoredNotification {
                    id: o.id,
                    channel: o.channel.clone(),
                    reason: o.reason,
                    insights: o.insights.clone(),
                    created_at: o.created_at,
                    mentions: o.mentions.clone(),
                },
            );
            self.intents_put.insert(o.id);
        }
    }

    /// The decision core's output, numbered, committed with the decision.
    fn decided(&mut self, mut out: Vec<Outgoing>) -> Vec<Outgoing> {
        self.number(&mut out);
        if self.batching {
            return out;
        }
        self.persist();
        if self.fenced {
            // Another replica holds the delivery: it decides (and sends) from the state
            // as last committed; what this one decided since is not told twice.
            return Vec::new();
        }
        if !out.is_empty() {
            sentinel_actors::failpoint::hit("gate-commit");
        }
        out
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Silences are added by another process (`powa-sentinel silence`), silences and
    /// acknowledgements by the HTTP endpoint's links: read them before each decision.
    fn refresh_silences(&mut self) {
        if let Some(store) = &self.store {
            let now = std::time::Instant::now();
            if self
                .refreshed
                .is_some_and(|t| now.duration_since(t) < store.refresh_every())
            {
                return;
            }
            self.refreshed = Some(now);
            match store.silences() {
                Ok(s) => self.engine.set_silences(s),
                Err(e) => {
                    error!(self.log, "Cannot read silences; using the last known ones."; "error" => %e)
                }
            }
            match store.acks() {
                Ok(a) => self.engine.set_acks(a),
                Err(e) => {
                    error!(self.log, "Cannot read acknowledgements; using the last known ones."; "error" => %e)
                }
            }
        }
    }

    /// Writes what changed, the intents with it. On failure the changes are kept and
    /// retried next time (the notifications still go out: a restart before the retry
    /// could repeat or miss them, which the log says).
    fn persist(&mut self) {
        let Some(store) = self.store.as_ref().filter(|s| !s.is_read_only()) else {
            // Nothing survives this process (or a preview must not write): keep no change
            // log.
            self.engine.take_changes();
            return;
        };
        let changes = self.engine.take_changes();
        if changes.is_empty()
            && self.intents_put.is_empty()
            && self.intents_del.is_empty()
            && !self.pulse.changed()
            && !self.id_moved
            && self.consumed.is_empty()
        {
            return;
        }
        let commit = Commit {
            scopes: self.engine.scopes_for(&changes.scopes),
            held_put: self.engine.held_for(&changes.held_put),
            held_del: changes.held_del.iter().copied().collect(),
            intents_put: self
                .intents_put
                .iter()
                .filter_map(|id| self.intents.get(id))
                .collect(),
            intents_del: self.intents_del.iter().copied().collect(),
            acks_del: changes.acks_del.iter().copied().collect(),
            beats_put: self.pulse.to_commit(),
            next_notification_id: self.id_moved.then_some(self.last_id),
            consumed: self.consumed.clone(),
        };
        match store.write(&commit) {
            Ok(()) => {
                self.consumed.clear();
                self.intents_put.clear();
                self.intents_del.clear();
                self.pulse.committed();
                self.id_moved = false;
            }
            Err(store::StoreError::Database(e @ crate::statedb::StateDbError::Fenced { .. })) => {
                if !self.fenced {
                    warn!(self.log, "The delivery moved to another replica; this one decides nothing more."; "error" => %e);
                }
                self.fenced = true;
                self.engine.return_changes(changes);
            }
            Err(e) => {
                error!(self.log, "Cannot save the gate state; will retry. A restart before then could repeat or miss these notifications."; "error" => %e);
                self.engine.return_changes(changes);
            }
        }
    }
}

impl Decide for Gate {
    /// Every report decided, then one commit with all the decisions, their
    /// notifications and the queue positions they consumed.
    fn observe_queued(&mut self, reports: Vec<(u64, Insights)>) -> Vec<Outgoing> {
        self.batching = true;
        let mut out = Vec::new();
        for (position, report) in reports {
            self.consumed.push(position);
            out.extend(self.observe(report));
        }
        self.batching = false;
        self.decided(out)
    }

    fn observe(&mut self, report: Insights) -> Vec<Outgoing> {
        self.refresh_silences();
        let at = report.at;
        let out = self.engine.observe(report);
        self.pulse.note_sent(&out, at);
        self.decided(out)
    }

    fn flush(&mut self, at: DateTime<Utc>) -> Vec<Outgoing> {
        self.refresh_silences();
        let out = self.engine.flush(at);
        self.pulse.note_sent(&out, at);
        let out = self.decided(out);
        let held = self.engine.counts().held;
        if held > 0 {
            if self.store.is_none() {
                warn!(self.log, "Insights are held by quiet hours but there is no state directory: they are lost if the process ends. Set [state] dir."; "held" => held);
            } else {
                info!(self.log, "Insights held by quiet hours."; "held" => held);
            }
        }
        out
    }

    fn tick(&mut self, now: DateTime<Utc>) -> Vec<Outgoing> {
        let mut out = self.engine.tick(now);
        if self.pulse.on() {
            self.refresh_silences();
            let watch = self.engine.watch();
            let beats = self.pulse.beat(now, &watch);
            if !beats.is_empty() {
                info!(self.log, "Heartbeat."; "channels" => beats.len());
            }
            out.extend(beats);
            self.pulse.note_sent(&out, now);
        }
        if out.is_empty() && !self.pulse.changed() {
            return out;
        }
        self.decided(out)
    }

    fn tick_every(&self) -> Option<Duration> {
        self.tick_every
    }

    /// Holds immediate findings until every one of `analyzers` has reported on their
    /// snapshot, so an alarm goes with its cause; at most `[gate] immediate_wait`.
    fn expect_analyzers(&mut self, analyzers: &[String]) {
        self.engine
            .hold_for_cycles(analyzers.to_vec(), self.immediate_wait);
        if self.engine.wants_ticks() {
            self.tick_every = Some(self.tick_interval);
        }
    }

    fn pending(&mut self) -> Vec<Outgoing> {
        if !self.intents.is_empty() {
            warn!(self.log, "Notifications decided by an earlier run were not confirmed journaled by their channel; offering them again (a channel that already has one does not send it twice).";
                "notifications" => self.intents.len());
        }
        self.intents
            .values()
            .map(|n| Outgoing {
                id: n.id,
                channel: n.channel.clone(),
                reason: n.reason,
                insights: n.insights.clone(),
                mentions: n.mentions.clone(),
                created_at: n.created_at,
            })
            .collect()
    }

    fn settled(&mut self, report: &DeliveryReport) {
        if self.intents.remove(&report.notification_id).is_some() {
            self.intents_put.remove(&report.notification_id);
            self.intents_del.insert(report.notification_id);
            self.persist();
        }
    }
}

#[cfg(test)]
pub(crate) fn test_insight(fp: u64, severity: Severity) -> sentinel_actors::Insight {
    let t = DateTime::<Utc>::from_timestamp(1_772_409_600, 0).unwrap_or_default();
    sentinel_actors::Insight {
        fingerprint: sentinel_actors::Fingerprint(fp),
        kind: "slow_query".into(),
        rule: "slow_query.total_time".into(),
        severity,
        labels: Default::default(),
        title: format!("finding {fp}"),
        advice: "a".into(),
        text: None,
        metrics: Default::default(),
        window: sentinel_actors::Window { start: t, end: t },
        observed_at: t,
        status: None,
        changes: Vec::new(),
        trend: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn unknown_channels_and_bad_values_name_their_keys() {
        let mut gate = GateSettings {
            immediate_severity: "urgent".into(),
            ..Default::default()
        };
        gate.quiet_hours.insert(
            "nope".into(),
            QuietHoursSettings {
                start: "22:00".into(),
                end: "07:00".into(),
                timezone: "UTC".into(),
                bypass_severity: "critical".into(),
            },
        );
        let Err(p) = compile(&gate, &[], &["console".into()], &[]) else {
            panic!("accepted")
        };
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["gate.immediate_severity", "gate.quiet_hours.nope"]);
    }

    fn shipped() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/powa-sentinel.toml"),
        )
        .unwrap()
    }

    #[test]
    fn the_documented_gate_values_are_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, shipped()).unwrap();
        let s = Settings::load_with_env(&p, Some(Default::default())).unwrap();
        let d = GateSettings::default();
        let l = &s.gate.lifecycle;
        let dl = &d.lifecycle;
        assert_eq!(
            (l.fire_after, l.fire_window, l.resolve_after, l.settled_gap),
            (
                dl.fire_after,
                dl.fire_window,
                dl.resolve_after,
                dl.settled_gap
            )
        );
        assert_eq!(
            (
                l.repeat_interval,
                l.send_resolved,
                l.escalate_ratio,
                l.forget_after
            ),
            (
                dl.repeat_interval,
                dl.send_resolved,
                dl.escalate_ratio,
                dl.forget_after
            )
        );
        assert_eq!(
            (
                &s.gate.immediate_severity,
                s.gate.immediate,
                s.gate.immediate_wait,
                s.gate.tick_interval
            ),
            (
                &d.immediate_severity,
                d.immediate,
                d.immediate_wait,
                d.tick_interval
            )
        );
        assert!(s.routes.is_empty() && s.gate.quiet_hours.is_empty());
    }

    #[test]
    fn the_documented_examples_are_valid() {
        // Uncomment the example quiet hours and route: they must load as they are.
        let mut text = String::new();
        let mut on = false;
        for line in shipped().lines() {
            if line.starts_with("# [gate.quiet_hours.") || line.starts_with("# [[routes]]") {
                on = true;
            }
            if on && line.is_empty() {
                on = false;
            }
            match line.strip_prefix("# ").filter(|_| on) {
                Some(l) => text.push_str(l),
                None => text.push_str(line),
            }
            text.push('\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, &text).unwrap();
        let s =
            Settings::load_with_env(&p, Some(Default::default())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.routes.len(), 1);
        assert_eq!(
            s.routes[0].text_regex.as_deref(),
            Some("(?i)\\border_items\\b")
        );
        assert!(s.routes[0].labels_regex.contains_key("server"));
        assert_eq!(s.gate.quiet_hours["console"].timezone, "Asia/Shanghai");
    }

    #[test]
    fn a_bad_route_is_a_config_error_naming_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(
            &p,
            "[repositories.r]\ndsn = \"host=x\"\n[channels.c]\ntype = \"console\"\n\
             [[routes]]\nchannels = [\"ops\"]\nseverity = \"high\"\n",
        )
        .unwrap();
        let e = Settings::load_with_env(&p, Some(Default::default())).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("s.toml: key `routes[0].channels`: no channel is named `ops`"),
            "{text}"
        );
        assert!(
            text.contains("key `routes[0].severity`: unknown severity `high`"),
            "{text}"
        );
    }

    /// The state tests' time, channels and reports.
    fn t0() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_772_409_600, 0).unwrap()
    }

    /// A gate on `dir` with the default settings and one channel, `console`.
    fn open(dir: &Path, access: Access) -> Gate {
        Gate::with_access(
            &GateSettings::default(),
            &[],
            &["console".to_string()],
            &[],
            Some(dir),
            access,
            slog::Logger::root(slog::Discard, slog::o!()),
        )
        .unwrap()
    }

    /// Analyzer `a`'s report on `source` at `at`: one warning, fingerprint `fp`.
    fn report(source: &str, fp: u64, at: DateTime<Utc>) -> Insights {
        Insights {
            analyzer: "a".into(),
            source: source.into(),
            seq: 1,
            at,
            insights: vec![test_insight(fp, Severity::Warning)],
        }
    }

    #[test]
    fn decided_notifications_survive_until_their_channel_answers() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = t0();
        let mut g = open(dir.path(), Access::ReadWrite);
        g.observe(report("s", 1, t0));
        let out = g.flush(t0);
        assert_eq!(out.len(), 1);
        let id = out[0].id;
        assert!(id > 0);
        // The process dies before the channel answered: the next start offers it again.
        drop(g);
        let mut g = open(dir.path(), Access::ReadWrite);
        let again = g.pending();
        assert_eq!(again, out, "same id, same content");
        g.settled(&DeliveryReport::delivered("console", id));
        drop(g);
        let mut g = open(dir.path(), Access::ReadWrite);
        assert!(g.pending().is_empty(), "answered: forgotten");
        // New ids never reuse an earlier run's.
        g.observe(report("s2", 2, t0));
        assert!(g.flush(t0)[0].id > id);
    }

    #[test]
    fn a_read_only_gate_decides_from_the_state_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = t0();
        let report = |fp| report(&format!("s{fp}"), fp, t0);
        let open = |access| open(dir.path(), access);
        let mut preview = open(Access::ReadOnly);
        preview.observe(report(1));
        assert_eq!(preview.flush(t0).len(), 1);
        drop(preview);
        assert!(
            !dir.path().join(store::FILE).exists(),
            "a preview creates no state"
        );
        let mut g = open(Access::ReadWrite);
        g.observe(report(1));
        assert_eq!(g.flush(t0).len(), 1, "the preview announced nothing");
        drop(g);
        let bytes = std::fs::read(dir.path().join(store::FILE)).unwrap();
        let mut preview = open(Access::ReadOnly);
        preview.observe(report(1));
        assert!(preview.flush(t0).is_empty(), "it reads what was announced");
        preview.observe(report(2));
        assert_eq!(preview.flush(t0).len(), 1);
        drop(preview);
        assert_eq!(std::fs::read(dir.path().join(store::FILE)).unwrap(), bytes);
    }

    #[test]
    fn a_restarted_gate_remembers_what_it_notified() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = t0();
        let mut g = open(dir.path(), Access::ReadWrite);
        g.observe(report("s", 1, t0));
        assert_eq!(g.flush(t0).len(), 1);
        drop(g);
        let mut g = open(dir.path(), Access::ReadWrite);
        g.observe(report("s", 1, t0 + chrono::Duration::minutes(5)));
        assert!(g.flush(t0).is_empty());
    }
}
