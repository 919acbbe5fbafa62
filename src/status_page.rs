//! `/status` for a browser: one HTML page that answers "is it watching, and what does it
//! see?" — the servers with their last cycle and health, the open findings by severity
//! with their lifecycle and who acknowledged them, the silences in force, the channels
//! with their health and what waits in their outbox.
//!
//! The JSON of `/status` stays what scripts read (`Accept: application/json`, or anything
//! that does not ask for HTML); this page is made from the same [`Status`], plus the
//! gate's state read from `[state] dir` (or the state database) at each request (read-only: the page never
//! writes). Pure: the state and the time are passed in, every text is escaped, and the
//! page has no script.

use chrono::{DateTime, Utc};

use crate::gate::ack::Ack;
use crate::gate::silence::Silence;
use crate::gate::store::Location;
use crate::http::Status;
use crate::render::escape_html as esc;
use sentinel_actors::message::Lifecycle;
use sentinel_actors::{Insight, Severity};

/// What the gate knows, read from the state directory.
#[derive(Debug, Default)]
pub struct GateView {
    /// Findings that fire now, most severe first, with when they were last seen.
    pub open: Vec<(Insight, DateTime<Utc>)>,
    pub silences: Vec<Silence>,
    pub acks: Vec<Ack>,
    /// Why the state could not be read, when it could not.
    pub error: Option<String>,
}

impl GateView {
    /// The gate's state at `state` (none without `[state] dir` or `dsn`: then the gate
    /// keeps it in memory, and the page says so).
    pub fn read(state: Option<&Location>) -> GateView {
        let Some(state) = state else {
            return GateView {
                error: Some(
                    "no [state] dir or dsn: the gate keeps its findings in memory, where this \
                     page cannot see them"
                        .into(),
                ),
                ..GateView::default()
            };
        };
        let store = state.reader();
        match store.load() {
            Ok(l) => {
                let mut open: Vec<(Insight, DateTime<Utc>)> = l
                    .scopes
                    .into_values()
                    .flat_map(|s| s.findings.into_values())
                    .filter(|f| f.firing)
                    .map(|f| (f.last, f.last_seen))
                    .collect();
                open.sort_by(|(a, _), (b, _)| {
                    b.severity
                        .cmp(&a.severity)
                        .then_with(|| a.title.cmp(&b.title))
                });
                GateView {
                    open,
                    silences: l.silences,
                    acks: l.acks,
                    error: None,
                }
            }
            Err(e) => GateView {
                error: Some(format!(
                    "the state in {} cannot be read: {e}",
                    store.describe()
                )),
                ..GateView::default()
            },
        }
    }
}

const STYLE: &str = "body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,\
sans-serif;font-size:14px;line-height:1.5;margin:0;background:#f6f7f9;color:#111827}\
main{max-width:72em;margin:0 auto;padding:1em}h1{font-size:20px}h2{font-size:16px;margin:1.4em 0 .4em}\
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e5e7eb;vertical-align:top}\
td{overflow-wrap:anywhere}th{background:#f3f4f6;font-weight:600;white-space:nowrap}\
.ok{color:#15803d}.warn{color:#c2410c}.bad{color:#b91c1c;font-weight:600}.dim{color:#6b7280}\
@media (prefers-color-scheme:dark){body{background:#111827;color:#e5e7eb}\
table{background:#1f2937;border-color:#374151}th{background:#374151}td,th{border-color:#374151}}";

fn severity_class(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "bad",
        Severity::Warning => "warn",
        Severity::Info => "dim",
    }
}

fn lifecycle(l: Option<Lifecycle>) -> &'static str {
    match l {
        Some(Lifecycle::New) => "new",
        Some(Lifecycle::Ongoing) | None => "ongoing",
        Some(Lifecycle::Escalated) => "escalated",
        Some(Lifecycle::Resolved) => "resolved",
        Some(Lifecycle::Reopened) => "reopened",
    }
}

/// A table: `head` cells, then `rows` (cells already HTML), or `empty` as one line.
fn table(head: &[&str], rows: &[Vec<String>], empty: &str, out: &mut String) {
    if rows.is_empty() {
        out.push_str(&format!("<p class=\"dim\">{}</p>\n", esc(empty)));
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in head {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{c}</td>"));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// A time of `/status` (RFC 3339, in the schedule's timezone) as a person reads it:
/// to the second, with its offset; as given when it is not a time.
fn when(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.offset().local_minus_utc() == 0 => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        Err(_) => s.to_string(),
    }
}

fn span(class: &str, text: &str) -> String {
    format!("<span class=\"{class}\">{}</span>", esc(text))
}

/// The status page at `now`.
pub fn html(s: &Status, gate: &GateView, now: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <title>powa-sentinel status</title>\n<style>",
    );
    out.push_str(STYLE);
    out.push_str("</style></head>\n<body><main>\n<h1>powa-sentinel status</h1>\n<p>");
    let mut facts = vec![
        format!("version {}", s.version),
        format!("started {}", when(&s.started_at)),
        format!("timezone {}", s.timezone),
    ];
    if let Some(n) = &s.next_report {
        facts.push(format!("next report {}", when(n)));
    }
    if let Some(l) = &s.last_report {
        facts.push(format!("last report {}", when(l)));
    }
    facts.push(format!("page made {}", now.format("%Y-%m-%d %H:%M:%S UTC")));
    out.push_str(&esc(&facts.join(" · ")));
    out.push_str("</p>\n");
    let mut alarms: Vec<String> = Vec::new();
    if let Some(e) = &s.last_reload_error {
        alarms.push(format!(
            "The last reload of the configuration failed (the previous one runs): {e}"
        ));
    }
    for a in &s.failed_actors {
        alarms.push(format!("{a} stopped: restart powa-sentinel"));
    }
    for a in &alarms {
        out.push_str(&format!("<p class=\"bad\">{}</p>\n", esc(a)));
    }

    // Servers.
    out.push_str("<h2>Servers</h2>\n");
    let servers: Vec<Vec<String>> = s
        .servers
        .iter()
        .map(|(name, v)| {
            let health = match &v.last_cycle {
                None => span("dim", "no cycle yet"),
                Some(c) if c.ok && v.consecutive_failures == 0 => span("ok", "ok"),
                Some(c) => span(
                    "bad",
                    &format!(
                        "failing ({} in a row): {}",
                        v.consecutive_failures.max(1),
                        c.error.as_deref().unwrap_or("error")
                    ),
                ),
            };
            let (last, data, found) = match &v.last_cycle {
                Some(c) => (
                    format!("{} ({} ms)", esc(&when(&c.started_at)), c.duration_ms),
                    esc(&c.data_time.as_deref().map(when).unwrap_or("–".into())),
                    c.insights.to_string(),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            vec![
                format!("<b>{}</b>", esc(name)),
                esc(&v.repository),
                health,
                last,
                data,
                found,
                format!("{} s", v.period_seconds),
            ]
        })
        .collect();
    table(
        &[
            "server",
            "repository",
            "health",
            "last cycle",
            "newest PoWA snapshot",
            "insights",
            "every",
        ],
        &servers,
        "No server is watched yet (the first cycle starts shortly after the start).",
        &mut out,
    );
    let repos: Vec<Vec<String>> = s
        .repositories
        .iter()
        .map(|(name, r)| {
            vec![
                format!("<b>{}</b>", esc(name)),
                if r.reachable {
                    span("ok", "reachable")
                } else {
                    span("bad", r.error.as_deref().unwrap_or("unreachable"))
                },
                esc(r.powa_version.as_deref().unwrap_or("–")),
                r.servers.to_string(),
            ]
        })
        .collect();
    out.push_str("<h2>Repositories</h2>\n");
    table(
        &["repository", "state", "PoWA", "servers"],
        &repos,
        "No repository connected yet.",
        &mut out,
    );

    // Findings.
    out.push_str(&format!(
        "<h2>Open findings ({})</h2>\n",
        count_by_severity(&gate.open)
    ));
    if let Some(e) = &gate.error {
        out.push_str(&format!("<p class=\"warn\">{}</p>\n", esc(e)));
    }
    let findings: Vec<Vec<String>> = gate
        .open
        .iter()
        .map(|(i, seen)| {
            let place = [i.label("server"), i.label("database")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" / ");
            let ack = gate
                .acks
                .iter()
                .find(|a| a.fingerprint == i.fingerprint)
                .map(|a| {
                    format!(
                        "acknowledged by {} at {}",
                        a.by,
                        a.at.format("%Y-%m-%d %H:%M UTC")
                    )
                });
            let silenced = gate.silences.iter().find(|x| x.mutes(i, now)).map(|x| {
                format!(
                    "silenced until {} (silence {})",
                    x.ends_at.format("%Y-%m-%d %H:%M UTC"),
                    x.id
                )
            });
            let people = [ack, silenced]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                span(severity_class(i.severity), i.severity.as_str()),
                format!("<b>{}</b>", esc(&i.title)),
                esc(&place),
                esc(lifecycle(i.status)),
                esc(&seen.format("%Y-%m-%d %H:%M UTC").to_string()),
                esc(&people),
            ]
        })
        .collect();
    table(
        &[
            "severity",
            "finding",
            "where",
            "lifecycle",
            "last seen",
            "people",
        ],
        &findings,
        "Nothing fires now.",
        &mut out,
    );

    // Silences.
    let active: Vec<&Silence> = gate.silences.iter().filter(|x| x.ends_at > now).collect();
    out.push_str(&format!("<h2>Silences ({})</h2>\n", active.len()));
    let silences: Vec<Vec<String>> = active
        .iter()
        .map(|x| {
            let what = match (&x.fingerprint, x.matchers.is_empty()) {
                (Some(fp), _) => format!("finding {fp}"),
                (None, false) => x
                    .matchers
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                (None, true) => "nothing".into(),
            };
            let when = if x.starts_at > now {
                format!(
                    "from {} to {}",
                    x.starts_at.format("%Y-%m-%d %H:%M UTC"),
                    x.ends_at.format("%Y-%m-%d %H:%M UTC")
                )
            } else {
                format!("until {}", x.ends_at.format("%Y-%m-%d %H:%M UTC"))
            };
            vec![
                x.id.to_string(),
                format!("<code>{}</code>", esc(&what)),
                esc(&when),
                esc(&x.author),
                esc(&x.reason),
            ]
        })
        .collect();
    table(
        &["id", "matches", "when", "by", "why"],
        &silences,
        "No silence in force.",
        &mut out,
    );

    // Channels.
    out.push_str("<h2>Channels</h2>\n");
    let channels: Vec<Vec<String>> = s
        .channels
        .iter()
        .map(|(name, c)| {
            let health = match (c.permanently_failed, c.state.as_deref()) {
                (true, _) | (_, Some("failed")) => span(
                    "bad",
                    &format!(
                        "failed: {}",
                        c.last_error.as_deref().unwrap_or("fix its settings")
                    ),
                ),
                (_, Some("degraded")) => span(
                    "warn",
                    &format!(
                        "retrying: {}",
                        c.last_error.as_deref().unwrap_or("temporary failures")
                    ),
                ),
                _ => span("ok", "ok"),
            };
            vec![
                format!("<b>{}</b>", esc(name)),
                health,
                c.delivered.to_string(),
                c.failed.to_string(),
                c.pending.to_string(),
                c.failed_in_outbox.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "channel",
            "health",
            "delivered",
            "failed",
            "waiting in outbox",
            "kept after failing",
        ],
        &channels,
        "No channel.",
        &mut out,
    );
    out.push_str(
        "<p class=\"dim\">The same as JSON: <code>curl -H 'Accept: application/json' \
         …/status</code>; metrics for Prometheus at <code>/metrics</code>.</p>\n\
         </main></body></html>\n",
    );
    out
}

/// "2 critical, 1 warning", or "none".
fn count_by_severity(open: &[(Insight, DateTime<Utc>)]) -> String {
    let parts: Vec<String> = [Severity::Critical, Severity::Warning, Severity::Info]
        .into_iter()
        .filter_map(|sev| {
            let n = open.iter().filter(|(i, _)| i.severity == sev).count();
            (n > 0).then(|| format!("{n} {}", sev.as_str()))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ChannelStatus, CycleStatus, ServerStatus};

    #[test]
    fn the_page_shows_health_findings_silences_and_escapes_everything() {
        let now = Utc::now();
        let mut s = Status {
            version: "1.0",
            ..Status::default()
        };
        s.servers.insert(
            "db<1>".into(),
            ServerStatus {
                repository: "main".into(),
                consecutive_failures: 2,
                last_cycle: Some(CycleStatus {
                    ok: false,
                    error: Some("timeout".into()),
                    ..CycleStatus::default()
                }),
                ..ServerStatus::default()
            },
        );
        s.channels.insert(
            "ops".into(),
            ChannelStatus {
                pending: 3,
                state: Some("degraded".into()),
                last_error: Some("HTTP 503".into()),
                ..ChannelStatus::default()
            },
        );
        let mut i = crate::render::fixture::slow_query(1, "SELECT 1");
        i.title = "<script>x</script>".into();
        i.severity = Severity::Critical;
        let gate = GateView {
            open: vec![(i, now)],
            ..GateView::default()
        };
        s.started_at = "2026-12-03T05:57:54.806830433+00:00".into();
        let page = html(&s, &gate, now);
        assert!(page.contains("started 2026-12-03 05:57:54 UTC"), "{page}");
        assert!(
            page.contains("db&lt;1&gt;") && !page.contains("<script>"),
            "{page}"
        );
        assert!(page.contains("failing (2 in a row): timeout"), "{page}");
        assert!(page.contains("Open findings (1 critical)"), "{page}");
        assert!(page.contains("retrying: HTTP 503"), "{page}");
        assert!(page.contains("<td>3</td>"), "{page}");
        assert!(page.contains("No silence in force."), "{page}");
        let empty = html(&Status::default(), &GateView::read(None), now);
        assert!(empty.contains("Nothing fires now.") && empty.contains("no [state] dir"));
    }
}
