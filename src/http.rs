//! The daemon's HTTP endpoints (actix-web), bound to loopback by default:
//!
//! - `/healthz`: the process is alive and its actor system answers (200);
//! - `/readyz`: every repository is reachable and no channel has failed permanently
//!   (200), else 503 with the reasons as JSON;
//! - `/metrics`: Prometheus text format ([`crate::metrics`]);
//! - `/status`: the last cycle of every server, the repositories, the channels, the next
//!   report, the acknowledgements, as JSON; to a browser (`Accept: text/html`), the page
//!   of [`crate::status_page`] with the open findings and silences too;
//! - `/a/<token>`: the pages behind the action links of the messages (with `public_url`;
//!   see [`crate::actions`]);
//! - `/wecom/<channel>`: WeCom's callback for the buttons of a `wecom_app` channel's
//!   cards ([`crate::channels::wecom_callback`]).
//!
//! Unlike the seed's health server, a database outage does not fail `/healthz`: a liveness
//! probe that restarts the daemon while the repository is down helps nobody.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;
use crate::secret::Secret;

/// `[http]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Serve the endpoints (`run` only). Default true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Address and port. Default 127.0.0.1:9187 (loopback: put a proxy in front, or
    /// write 0.0.0.0:9187 to expose it, e.g. for Kubernetes probes).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The address people reach these endpoints at, as seen from their browser
    /// (`https://sentinel.example.org`, often through a proxy). Set: every message carries
    /// links to acknowledge or snooze each finding and to see everything that fires now.
    /// Needs `[state] dir`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long a link works. Default 7d.
    #[serde(with = "humantime_serde", default = "default_link_ttl")]
    pub link_ttl: std::time::Duration,
    /// A file holding the key that signs links (at least 32 characters). Default: one is
    /// made in the state directory (`link.key`). Set it so that several daemons behind one
    /// address accept each other's links.
    #[serde(default)]
    pub link_key_file: Option<std::path::PathBuf>,
    /// When set, `/status` and `/metrics` answer only requests that carry it
    /// (`Authorization: Bearer <token>`, or `?token=<token>` from a browser); `/healthz`,
    /// `/readyz` and the signed links stay open. Set it when `listen` is reachable beyond
    /// this host.
    #[serde(default)]
    pub token: Option<crate::secret::Secret>,
}

fn default_link_ttl() -> std::time::Duration {
    crate::actions::DEFAULT_TTL
}

fn default_enabled() -> bool {
    true
}

fn default_listen() -> String {
    "127.0.0.1:9187".to_string()
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: default_enabled(),
            listen: default_listen(),
            public_url: None,
            link_ttl: default_link_ttl(),
            link_key_file: None,
            token: None,
        }
    }
}

impl HttpSettings {
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        if self.enabled && self.listen.parse::<SocketAddr>().is_err() {
            problems.push(Problem::new(
                "http.listen",
                format!(
                    "`{}` is not an address:port; write e.g. \"127.0.0.1:9187\" or \"[::1]:9187\"",
                    self.listen
                ),
            ));
        }
        if let Some(u) = &self.public_url {
            if !crate::render::valid_base_url(u) {
                problems.push(Problem::new(
                    "http.public_url",
                    format!(
                        "`{u}` is not an http(s) address: write the address people open in \
                         their browser, e.g. \"https://sentinel.example.org\""
                    ),
                ));
            }
            if !self.enabled {
                problems.push(Problem::new(
                    "http.public_url",
                    "is set but http.enabled = false: the links would lead nowhere; enable \
                     [http] or remove public_url",
                ));
            }
        }
        if let Some(t) = &self.token {
            if t.expose().len() < 16 {
                problems.push(Problem::new(
                    "http.token",
                    "is shorter than 16 characters: make a long random one, e.g. \
                     `openssl rand -hex 24`",
                ));
            }
        }
        if self.link_ttl < std::time::Duration::from_secs(3600) {
            problems.push(Problem::new(
                "http.link_ttl",
                "must be at least 1h: a link in a message should still work when it is read",
            ));
        }
    }
}

/// The last collection cycle of one server.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CycleStatus {
    /// When the cycle started, in the schedule's timezone.
    pub started_at: String,
    pub duration_ms: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub insights: usize,
    pub rows: u64,
    /// Newest PoWA snapshot time the cycle saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_time: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerStatus {
    pub repository: String,
    pub period_seconds: u64,
    pub cycles: u64,
    pub skipped: u64,
    pub consecutive_failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_cycle: Option<CycleStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RepositoryStatus {
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub powa_version: Option<String>,
    pub servers: usize,
    /// Of those, the servers collected (the others are left out by the configuration).
    pub watched: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelStatus {
    pub delivered: u64,
    pub failed: u64,
    /// The last delivery failed in a way retrying cannot fix (bad key, payload refused).
    pub permanently_failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `ok`, `degraded` (retrying) or `failed`, as the channel says (none before it was
    /// first asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Notifications waiting to be delivered (queued, in the outbox, in flight).
    pub pending: usize,
    /// Notifications kept in the outbox after failing for good.
    pub failed_in_outbox: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub started_at: String,
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_report: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_report: Option<String>,
    pub config_reloads: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
    pub repositories: BTreeMap<String, RepositoryStatus>,
    pub servers: BTreeMap<String, ServerStatus>,
    pub channels: BTreeMap<String, ChannelStatus>,
    pub failed_actors: Vec<String>,
    /// With `[state] dsn`: the replicas, who holds what, the findings queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<crate::replica::coordinator::ReplicaStatus>,
    /// Findings someone acknowledged (read from the state at each request).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acknowledged: Vec<crate::gate::ack::Ack>,
}

/// Shared between the daemon (writes) and the HTTP workers (read).
pub type StatusBoard = Arc<Mutex<Status>>;

/// Why the daemon is not ready; empty when it is.
pub fn not_ready(status: &Status) -> Vec<String> {
    let mut reasons = Vec::new();
    if status.repositories.is_empty() {
        reasons.push("no repository has been connected yet".to_string());
    }
    for (name, r) in &status.repositories {
        if !r.reachable {
            reasons.push(format!(
                "repository `{name}` is unreachable: {}",
                r.error.as_deref().unwrap_or("not connected yet")
            ));
        }
    }
    if let Some(e) = status.replicas.as_ref().and_then(|r| r.error.as_ref()) {
        reasons.push(format!(
            "the state database does not answer this replica's beats ({e}); it collects and delivers nothing past its lease"
        ));
    }
    for (name, c) in &status.channels {
        if c.permanently_failed {
            reasons.push(format!(
                "channel `{name}` failed permanently: {}",
                c.last_error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    reasons
}

fn snapshot(board: &StatusBoard) -> Status {
    let mut s = board.lock().map(|s| s.clone()).unwrap_or_default();
    s.failed_actors = crate::metrics::failed_actors();
    s
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(board: web::Data<StatusBoard>) -> HttpResponse {
    let reasons = not_ready(&snapshot(&board));
    if reasons.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"ready": true}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"ready": false, "reasons": reasons}))
    }
}

/// Whether `req` may read `/status` and `/metrics`: always without `[http] token`, else
/// when it carries the token (compared in constant time).
fn authorized(req: &HttpRequest, token: &Option<Secret>) -> bool {
    let Some(want) = token else {
        return true;
    };
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query = web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned());
    let given = bearer.map(str::to_string).or(query);
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), want.expose().as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", "Bearer realm=\"powa-sentinel\""))
        .content_type("text/plain; charset=utf-8")
        .body(
            "this endpoint needs the token of [http] token: send `Authorization: Bearer <token>` \
             or add ?token=<token> to the address\n",
        )
}

/// Whether the request asks for the HTML page: a browser's `Accept` (text/html), or
/// `?format=html`; `?format=json` and everything else get JSON.
fn wants_html(req: &HttpRequest) -> bool {
    let q = web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("format").cloned());
    match q.as_deref() {
        Some("html") => true,
        Some(_) => false,
        None => req
            .headers()
            .get(actix_web::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html")),
    }
}

async fn metrics_endpoint(req: HttpRequest, site: web::Data<Site>) -> HttpResponse {
    if !authorized(&req, &site.token) {
        return unauthorized();
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::metrics().render())
}

async fn status(
    req: HttpRequest,
    board: web::Data<StatusBoard>,
    actions: web::Data<Option<crate::actions::page::Pages>>,
    site: web::Data<Site>,
) -> HttpResponse {
    if !authorized(&req, &site.token) {
        return unauthorized();
    }
    let mut s = snapshot(&board);
    if !wants_html(&req) {
        if let Some(p) = actions.as_ref() {
            s.acknowledged = p.acks();
        }
        return HttpResponse::Ok().json(s);
    }
    // The page reads the acknowledgements with the rest of the gate's state, once.
    let state = site.state.clone();
    let gate = web::block(move || crate::status_page::GateView::read(state.as_ref()))
        .await
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'",
        ))
        .body(crate::status_page::html(&s, &gate, chrono::Utc::now()))
}

/// What the handlers share besides the board: the token, and where the gate's state is.
struct Site {
    token: Option<Secret>,
    state: Option<crate::gate::store::Location>,
}

/// Starts the server on the current actix System; it stops with the System (or with the
/// returned handle).
///
/// `state` is where `[state] dir` or `dsn` keeps the gate's state: the status page reads
/// the gate's findings and silences there. `callbacks`: the WeCom applications whose card buttons report to
/// `/wecom/<channel>`.
pub fn start(
    settings: &HttpSettings,
    board: StatusBoard,
    actions: Option<crate::actions::page::Pages>,
    state: Option<crate::gate::store::Location>,
    callbacks: crate::channels::wecom_callback::Callbacks,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let data = web::Data::new(board);
    let actions = web::Data::new(actions);
    let callbacks = web::Data::new(callbacks);
    let site = web::Data::new(Site {
        token: settings.token.clone(),
        state,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(actions.clone())
            .app_data(site.clone())
            .app_data(callbacks.clone())
            .configure(crate::channels::wecom_callback::routes)
            .configure(crate::actions::page::routes)
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_endpoint))
            .route("/status", web::get().to(status))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(&settings.listen)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_is_wrong() {
        let mut s = Status::default();
        assert_eq!(not_ready(&s).len(), 1);
        s.repositories.insert(
            "main".into(),
            RepositoryStatus {
                reachable: true,
                ..Default::default()
            },
        );
        assert!(not_ready(&s).is_empty());
        s.repositories.insert(
            "b".into(),
            RepositoryStatus {
                reachable: false,
                error: Some("connection refused".into()),
                ..Default::default()
            },
        );
        s.channels.insert(
            "ops".into(),
            ChannelStatus {
                permanently_failed: true,
                last_error: Some("bad key".into()),
                ..Default::default()
            },
        );
        let r = not_ready(&s);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].contains("`b`") && r[0].contains("connection refused"));
        assert!(r[1].contains("`ops`") && r[1].contains("bad key"));
    }

    #[test]
    fn listen_must_be_an_address() {
        let mut p = Vec::new();
        HttpSettings {
            listen: "localhost".into(),
            ..HttpSettings::default()
        }
        .validate(&mut p);
        assert_eq!(p[0].key, "http.listen");
    }
}
