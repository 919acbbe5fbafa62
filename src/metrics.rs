//! Process metrics in the Prometheus text format (`/metrics`), with `prometheus-client`.
//!
//! One process-wide set ([`metrics()`]), so that any component can count what it does
//! without the topology threading a handle through every constructor: the collectors'
//! scheduler, the analyzers (through an observer), the gate and the channels (through
//! the flush reports today; the helpers below are there for them to call directly).
//!
//! Label values are bounded by configuration (servers, channels, analyzers, kinds), never
//! by data (no query ids), so the series count stays small on a fleet of 1,000 servers.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use sentinel_actors::supervise::SupervisionEvents;
use sentinel_actors::Insight;

type Labels = Vec<(&'static str, String)>;
/// Per server: when its last cycle succeeded, and the data time it saw.
type SuccessTimes = HashMap<String, (Instant, Option<chrono::DateTime<chrono::Utc>>)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn cycle_histogram() -> Histogram {
    // 50 ms … ~14 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// Every metric the daemon exports. Field names say what; the exported names carry the
/// `powa_sentinel_` prefix.
pub struct Metrics {
    registry: Registry,
    /// Collection cycles per server and outcome (`ok`, `error`, `skipped`).
    pub cycles: Family<Labels, Counter>,
    pub cycle_duration: HistogramFamily,
    pub rows_read: Family<Labels, Counter>,
    /// Insights produced, by analyzer, kind and severity.
    pub insights: Family<Labels, Counter>,
    /// What the gate did with insights (`decision` label, e.g. `flushed`, `immediate`,
    /// `suppressed`, `silenced`).
    pub gate_decisions: Family<Labels, Counter>,
    /// Notifications handed to a channel, by outcome (`delivered`, `failed`,
    /// `permanent`).
    pub deliveries: Family<Labels, Counter>,
    /// Work waiting per queue (`collect_in_flight`, `gate_pending`, …).
    pub queue_depth: Family<Labels, Gauge>,
    pub restarts: Family<Labels, Counter>,
    /// 1 while an actor is failed (restart budget spent), else 0.
    pub actor_failed: Family<Labels, Gauge>,
    pub last_success_age: Family<Labels, Gauge<f64, AtomicU64>>,
    pub snapshot_age: Family<Labels, Gauge<f64, AtomicU64>>,
    pub repository_up: Family<Labels, Gauge>,
    /// Replicas: leases this member holds, by kind (`server`, `delivery`).
    pub leases_held: Family<Labels, Gauge>,
    /// Replicas: leases this member took over from another holder, by kind.
    pub handovers: Family<Labels, Counter>,
    /// Replicas: reports this member queued for the delivering replica, and those it
    /// fed to its gate from the queue.
    pub queued: Counter,
    pub consumed: Counter,
    /// Replicas: age of the oldest report waiting in a queue.
    pub queue_age: Family<Labels, Gauge<f64, AtomicU64>>,
    /// When each server last completed a cycle, and the data time it saw.
    times: Mutex<SuccessTimes>,
    failed: Mutex<std::collections::BTreeSet<String>>,
}

/// Registers `metric` under `name` and hands it back, so that each metric is made, named and
/// described in one place.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn server(s: &str) -> Labels {
    vec![("server", s.to_string())]
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("powa_sentinel");
        // Fields are evaluated in the order written, which is the order they are exported in.
        Metrics {
            cycles: registered(
                &mut registry,
                "cycles",
                "Collection cycles per server and outcome (ok, error, skipped = overran its period)",
                Family::default(),
            ),
            cycle_duration: registered(
                &mut registry,
                "cycle_duration_seconds",
                "Duration of a collection cycle per server (read + analyze)",
                Family::new_with_constructor(cycle_histogram),
            ),
            rows_read: registered(
                &mut registry,
                "rows_read",
                "Rows read from PoWA per server",
                Family::default(),
            ),
            insights: registered(
                &mut registry,
                "insights",
                "Insights produced by analyzer, kind and severity",
                Family::default(),
            ),
            gate_decisions: registered(
                &mut registry,
                "gate_decisions",
                "What the gate decided per insight",
                Family::default(),
            ),
            deliveries: registered(
                &mut registry,
                "deliveries",
                "Notifications handed to channels, by channel and outcome",
                Family::default(),
            ),
            queue_depth: registered(
                &mut registry,
                "queue_depth",
                "Work items waiting per queue",
                Family::default(),
            ),
            restarts: registered(
                &mut registry,
                "actor_restarts",
                "Restarts per actor",
                Family::default(),
            ),
            actor_failed: registered(
                &mut registry,
                "actor_failed",
                "1 when an actor spent its restart budget and is left failed",
                Family::default(),
            ),
            last_success_age: registered(
                &mut registry,
                "seconds_since_last_success",
                "Seconds since the last successful collection cycle per server",
                Family::default(),
            ),
            snapshot_age: registered(
                &mut registry,
                "powa_snapshot_age_seconds",
                "Age of the newest PoWA snapshot seen per server at its last successful cycle",
                Family::default(),
            ),
            repository_up: registered(
                &mut registry,
                "repository_up",
                "1 when the repository is connected and its last discovery succeeded",
                Family::default(),
            ),
            leases_held: registered(
                &mut registry,
                "leases_held",
                "Leases this replica holds, by kind (server, delivery)",
                Family::default(),
            ),
            handovers: registered(
                &mut registry,
                "lease_handovers",
                "Leases this replica took over from another holder, by kind",
                Family::default(),
            ),
            queued: registered(
                &mut registry,
                "findings_queued",
                "Reports this replica queued for the delivering replica",
                Counter::default(),
            ),
            consumed: registered(
                &mut registry,
                "findings_consumed",
                "Queued reports this replica fed to its gate",
                Counter::default(),
            ),
            queue_age: registered(
                &mut registry,
                "queue_oldest_age_seconds",
                "Age of the oldest item waiting per queue",
                Family::default(),
            ),
            registry,
            times: Mutex::new(HashMap::new()),
            failed: Mutex::new(Default::default()),
        }
    }

    /// A finished cycle.
    pub fn cycle(
        &self,
        srv: &str,
        ok: bool,
        seconds: f64,
        rows: u64,
        data_time: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let outcome = if ok { "ok" } else { "error" };
        self.cycles
            .get_or_create(&vec![
                ("server", srv.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
        self.cycle_duration
            .get_or_create(&server(srv))
            .observe(seconds);
        if ok {
            self.rows_read.get_or_create(&server(srv)).inc_by(rows);
            if let Ok(mut t) = self.times.lock() {
                t.insert(srv.to_string(), (Instant::now(), data_time));
            }
        }
    }

    /// A cycle that was due while the previous one still ran.
    pub fn cycle_skipped(&self, srv: &str) {
        self.cycles
            .get_or_create(&vec![
                ("server", srv.to_string()),
                ("outcome", "skipped".to_string()),
            ])
            .inc();
    }

    /// A server left the configuration: drop its series.
    pub fn forget_server(&self, srv: &str) {
        for outcome in ["ok", "error", "skipped"] {
            self.cycles.remove(&vec![
                ("server", srv.to_string()),
                ("outcome", outcome.to_string()),
            ]);
        }
        self.cycle_duration.remove(&server(srv));
        self.rows_read.remove(&server(srv));
        self.last_success_age.remove(&server(srv));
        self.snapshot_age.remove(&server(srv));
        if let Ok(mut t) = self.times.lock() {
            t.remove(srv);
        }
    }

    pub fn insights_produced(&self, analyzer: &str, insights: &[Insight]) {
        for i in insights {
            self.insights
                .get_or_create(&vec![
                    ("analyzer", analyzer.to_string()),
                    ("kind", i.kind.clone()),
                    ("severity", i.severity.as_str().to_string()),
                ])
                .inc();
        }
    }

    pub fn gate_decision(&self, decision: &str, n: u64) {
        self.gate_decisions
            .get_or_create(&vec![("decision", decision.to_string())])
            .inc_by(n);
    }

    pub fn delivery(&self, channel: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&vec![
                ("channel", channel.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    pub fn set_queue_depth(&self, queue: &str, depth: i64) {
        self.queue_depth
            .get_or_create(&vec![("queue", queue.to_string())])
            .set(depth);
    }

    pub fn leases_held(&self, kind: &str, n: i64) {
        self.leases_held
            .get_or_create(&vec![("kind", kind.to_string())])
            .set(n);
    }

    pub fn handover(&self, kind: &str) {
        self.handovers
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    pub fn queued(&self, n: u64) {
        self.queued.inc_by(n);
    }

    pub fn consumed(&self, n: u64) {
        self.consumed.inc_by(n);
    }

    pub fn queue_age(&self, queue: &str, seconds: f64) {
        self.queue_age
            .get_or_create(&vec![("queue", queue.to_string())])
            .set(seconds);
    }

    pub fn repository_up(&self, repo: &str, up: bool) {
        self.repository_up
            .get_or_create(&vec![("repository", repo.to_string())])
            .set(i64::from(up));
    }

    /// The text exposition, with the ages computed now.
    pub fn render(&self) -> String {
        let now = Instant::now();
        let wall = chrono::Utc::now();
        if let Ok(t) = self.times.lock() {
            for (srv, (at, data)) in t.iter() {
                self.last_success_age
                    .get_or_create(&server(srv))
                    .set(now.duration_since(*at).as_secs_f64());
                if let Some(d) = data {
                    let age = (wall - *d).num_milliseconds().max(0) as f64 / 1000.0;
                    self.snapshot_age.get_or_create(&server(srv)).set(age);
                }
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Supervision events counted in the metrics (and logged by the caller's logger).
pub struct MetricEvents {
    pub log: slog::Logger,
}

impl SupervisionEvents for MetricEvents {
    fn restarted(&self, actor: &str, reason: &str) {
        metrics()
            .restarts
            .get_or_create(&vec![("actor", actor.to_string())])
            .inc();
        slog::warn!(self.log, "Actor failed and was restarted."; "actor" => actor, "error" => reason);
    }

    fn failed(&self, actor: &str, reason: &str) {
        metrics()
            .actor_failed
            .get_or_create(&vec![("actor", actor.to_string())])
            .set(1);
        if let Ok(mut f) = metrics().failed.lock() {
            f.insert(actor.to_string());
        }
        slog::error!(self.log, "Actor failed too often and is left failed; the rest runs on.";
            "actor" => actor, "error" => reason);
    }
}

/// Actors currently failed (for `/readyz` and `/status`).
pub fn failed_actors() -> Vec<String> {
    metrics()
        .failed
        .lock()
        .map(|f| f.iter().cloned().collect())
        .unwrap_or_default()
}

/// An actor was rebuilt from scratch (configuration reload): it is no longer failed.
pub fn actor_recovered(actor: &str) {
    metrics()
        .actor_failed
        .get_or_create(&vec![("actor", actor.to_string())])
        .set(0);
    if let Ok(mut f) = metrics().failed.lock() {
        f.remove(actor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_servers_and_outcomes() {
        let m = Metrics::new();
        m.cycle("main/local", true, 0.2, 42, Some(chrono::Utc::now()));
        m.cycle_skipped("main/local");
        m.delivery("ops", "delivered");
        let text = m.render();
        assert!(
            text.contains(r#"powa_sentinel_cycles_total{server="main/local",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"powa_sentinel_rows_read_total{server="main/local"} 42"#),
            "{text}"
        );
        assert!(
            text.contains("powa_sentinel_seconds_since_last_success{server=\"main/local\"}"),
            "{text}"
        );
        assert!(
            text.contains(r#"powa_sentinel_deliveries_total{channel="ops",outcome="delivered"} 1"#),
            "{text}"
        );
        m.forget_server("main/local");
        assert!(!m.render().contains("main/local"));
    }
}
