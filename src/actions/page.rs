//! The pages behind the action links: `GET /a/<token>` shows what the link would do and a
//! button; `POST /a/<token>` (the button) does it. The report link shows everything that
//! fires now, with its own links.
//!
//! Every page is small HTML with inline styles, every text escaped. A link that does not
//! verify gets 403, an expired one 410, each with a page that says what happened and that
//! nothing was changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use sentinel_actors::{Fingerprint, Insight, Notification, NotifyReason};

use super::{Action, LinkError, Links, Token};
use crate::gate::ack::Ack;
use crate::gate::silence::Silence;
use crate::gate::store::Location;
use crate::render::{self, escape_html as escape, RenderOptions};

/// What the pages need: the links' key, where the gate's state is, and the directory of
/// the report pages (`None`: none are kept).
#[derive(Clone)]
pub struct Pages {
    links: Arc<Links>,
    state: Location,
    reports_dir: Option<PathBuf>,
}

/// The snoozes a page offers, and the one it preselects.
pub const SNOOZES: [(&str, Duration); 3] = [
    ("1h", Duration::from_secs(3600)),
    ("1d", Duration::from_secs(86_400)),
    ("7d", Duration::from_secs(7 * 86_400)),
];
const DEFAULT_SNOOZE: &str = "1d";

/// Who, when the person did not say.
const SOMEONE: &str = "someone (from a notification link)";
const LONGEST_INPUT: usize = 200;

impl Pages {
    /// Pages on the state of a directory, whose report pages are there too.
    pub fn new(links: Arc<Links>, state_dir: PathBuf) -> Pages {
        Pages {
            links,
            state: Location::Dir(state_dir.clone()),
            reports_dir: Some(state_dir),
        }
    }

    /// Pages on the state at `state`, with the report pages of `reports_dir`.
    pub fn on(links: Arc<Links>, state: Location, reports_dir: Option<PathBuf>) -> Pages {
        Pages {
            links,
            state,
            reports_dir,
        }
    }

    /// The acknowledgements in force (none when the store cannot be read).
    pub fn acks(&self) -> Vec<Ack> {
        self.state.reader().acks().unwrap_or_default()
    }

    /// The latest copy of every finding the gate knows, and whether it fires now.
    fn findings(&self) -> Result<Vec<(Insight, bool)>, String> {
        let loaded = self.state.reader().load().map_err(|e| e.to_string())?;
        Ok(loaded
            .scopes
            .into_values()
            .flat_map(|s| s.findings.into_values())
            .map(|f| (f.last, f.firing))
            .collect())
    }
}

/// The title of the finding `fp` as the gate last saw it, for listings.
pub fn title_of(state: &Location, fp: Fingerprint) -> Option<String> {
    let loaded = state.reader().load().ok()?;
    loaded
        .scopes
        .into_values()
        .flat_map(|s| s.findings.into_values())
        .find(|f| f.last.fingerprint == fp)
        .map(|f| f.last.title)
}

/// The form of an action page.
#[derive(Debug, Default, Deserialize)]
pub struct Form {
    #[serde(default)]
    pub who: String,
    #[serde(default)]
    pub why: String,
    /// A snooze's length: one of [`SNOOZES`].
    #[serde(default, rename = "for")]
    pub duration: String,
}

/// Registers `/a/{token}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/a/{token}", web::get().to(show))
        .route("/a/{token}", web::post().to(act));
}

/// A whole page: `title` (text) and `body` (HTML, already escaped).
fn page(status: actix_web::http::StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t} · powa-sentinel</title></head>\n\
         <body style=\"font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
         max-width:46em;margin:2em auto;padding:0 1em;line-height:1.5\">\n\
         <h2>{t}</h2>\n{body}\n</body></html>\n",
        t = escape(title)
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(html)
}

fn refused(e: &LinkError) -> HttpResponse {
    let status = match e {
        LinkError::Expired(_) => actix_web::http::StatusCode::GONE,
        LinkError::Malformed | LinkError::Tampered => actix_web::http::StatusCode::FORBIDDEN,
    };
    let body = format!(
        "<p>{}.</p><p><b>Nothing was changed.</b> Use the links of a more recent message, \
         or <code>powa-sentinel silence add</code> on the server.</p>",
        escape(&e.to_string())
    );
    page(status, "This link does not work", &body)
}

fn unavailable(why: &str) -> HttpResponse {
    page(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        &format!("<p>{}. Nothing was changed.</p>", escape(why)),
    )
}

/// The pages and the verified token, or the answer: 404 when action links are off, the
/// refusal page when the token does not verify at `now`.
fn verified(
    token: &str,
    data: &web::Data<Option<Pages>>,
    now: DateTime<Utc>,
) -> Result<(Pages, Token), Box<HttpResponse>> {
    let p = data
        .as_ref()
        .as_ref()
        .cloned()
        .ok_or_else(|| Box::new(HttpResponse::NotFound().finish()))?;
    let t = p
        .links
        .verify(token, now)
        .map_err(|e| Box::new(refused(&e)))?;
    Ok((p, t))
}

fn place(i: &Insight) -> String {
    [i.label("server"), i.label("database")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" / ")
}

/// What a page says about the finding of `fp`: its title and place, and whether it fires.
fn about(found: &[(Insight, bool)], fp: Fingerprint) -> String {
    match found.iter().find(|(i, _)| i.fingerprint == fp) {
        Some((i, firing)) => format!(
            "<p><b>{}</b><br>{}<br><span style=\"color:#6b7280\">{} · fingerprint {fp}</span></p>",
            escape(&render::told_title(i, &RenderOptions::default())),
            escape(&place(i)),
            if *firing {
                "firing now"
            } else {
                "not firing now"
            }
        ),
        None => format!(
            "<p>Finding <code>{fp}</code> (no longer in powa-sentinel's state: it may have \
             resolved long ago).</p>"
        ),
    }
}

fn input(name: &str, label: &str, hint: &str) -> String {
    format!(
        "<p><label>{label}<br><input name=\"{name}\" maxlength=\"{LONGEST_INPUT}\" \
         placeholder=\"{hint}\" style=\"width:100%\"></label></p>"
    )
}

async fn show(token: web::Path<String>, data: web::Data<Option<Pages>>) -> HttpResponse {
    let now = Utc::now();
    let (p, t) = match verified(&token, &data, now) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    if t.action == Action::Page {
        return archived(&p, t.fingerprint.0, now).await;
    }
    let found = match web::block({
        let p = p.clone();
        move || p.findings()
    })
    .await
    {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return unavailable(&format!("powa-sentinel's state cannot be read ({e})")),
        Err(e) => return unavailable(&e.to_string()),
    };
    let ok = actix_web::http::StatusCode::OK;
    match t.action {
        Action::Report => report(&p, found, now, None),
        Action::Page => unreachable!("answered above"),
        Action::Ack => {
            let body = format!(
                "{}<p>Acknowledging tells everyone someone is on it: powa-sentinel stops \
                 repeating it, and still tells when it gets worse or resolves.</p>\
                 <form method=\"post\">{}{}<button type=\"submit\">Acknowledge</button></form>",
                about(&found, t.fingerprint),
                input("who", "Your name", "shown in the next message about it"),
                input("why", "Note (optional)", "e.g. index being built"),
            );
            page(ok, "Acknowledge this finding?", &body)
        }
        Action::Snooze => {
            let choices: String = SNOOZES
                .iter()
                .map(|(v, _)| {
                    let checked = if *v == DEFAULT_SNOOZE { " checked" } else { "" };
                    format!(
                        "<label style=\"margin-right:1em\"><input type=\"radio\" name=\"for\" \
                         value=\"{v}\"{checked}> {v}</label>"
                    )
                })
                .collect();
            let body = format!(
                "{}<p>Snoozing silences it: nothing about it is sent until the snooze ends \
                 (then, if it still fires, it is told again).</p>\
                 <form method=\"post\"><p>{choices}</p>{}{}<button type=\"submit\">Snooze</button></form>",
                about(&found, t.fingerprint),
                input("who", "Your name", "shown in `silence list`"),
                input("why", "Why (optional)", "e.g. known, batch job until Friday"),
            );
            page(ok, "Snooze this finding?", &body)
        }
    }
}

/// The page of notification `id` as it was sent, from the archive; when it is no longer
/// kept (or was never written), what fires now, saying so.
async fn archived(p: &Pages, id: u64, now: DateTime<Utc>) -> HttpResponse {
    let read = web::block({
        let dir = p.reports_dir.clone();
        move || match dir {
            Some(dir) => crate::archive::Archive::read(&dir, id),
            None => Ok(None),
        }
    })
    .await;
    match read {
        Ok(Ok(Some(html))) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "private, max-age=3600"))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .insert_header(("Content-Security-Policy", PAGE_POLICY))
            .body(html),
        Ok(Ok(None)) => {
            let p2 = p.clone();
            match web::block(move || p2.findings()).await {
                Ok(Ok(found)) => report(
                    p,
                    found,
                    now,
                    Some("This report is no longer kept (see [state] keep_reports); here is what fires now."),
                ),
                Ok(Err(e)) => unavailable(&format!("powa-sentinel's state cannot be read ({e})")),
                Err(e) => unavailable(&e.to_string()),
            }
        }
        Ok(Err(e)) => unavailable(&format!("the report page cannot be read ({e})")),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// What a report page may load: its own inline style and inline images, nothing else
/// (it has no script, and must not get one from a query text).
pub const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'";

/// Everything that fires now, with links of its own; `note` first when given.
fn report(
    p: &Pages,
    found: Vec<(Insight, bool)>,
    now: DateTime<Utc>,
    note: Option<&str>,
) -> HttpResponse {
    let firing: Vec<Insight> = found
        .into_iter()
        .filter(|(_, f)| *f)
        .map(|(i, _)| i)
        .collect();
    let ok = actix_web::http::StatusCode::OK;
    if firing.is_empty() {
        let note = note
            .map(|n| format!("<p>{}</p>", escape(n)))
            .unwrap_or_default();
        return page(
            ok,
            "Nothing fires now",
            &format!("{note}<p>All quiet: no finding fires now.</p>"),
        );
    }
    let n = Notification {
        id: 0,
        channel: "page".into(),
        reason: NotifyReason::Report,
        insights: Arc::new(firing),
        created_at: now,
        mentions: Default::default(),
    };
    let opts = RenderOptions {
        actions: Some(Arc::clone(&p.links)),
        ..RenderOptions::default()
    };
    let mut html = render::html_page(&n, &opts, &[], None);
    if let Some(note) = note {
        html = html.replacen(
            "<main>\n",
            &format!("<main>\n<p><b>{}</b></p>\n", escape(note)),
            1,
        );
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Content-Security-Policy", PAGE_POLICY))
        .body(html)
}

/// `s` trimmed and cut to [`LONGEST_INPUT`] characters; `None` when empty.
fn given(s: &str) -> Option<String> {
    let s: String = s.trim().chars().take(LONGEST_INPUT).collect();
    (!s.is_empty()).then_some(s)
}

/// What the button does, with the time passed in: the acknowledgement or silence
/// recorded, and what to tell the person.
pub fn perform(
    state: &Location,
    t: &Token,
    form: &Form,
    title: Option<String>,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let store = state.store().map_err(|e| e.to_string())?;
    let who = given(&form.who).unwrap_or_else(|| SOMEONE.to_string());
    match t.action {
        Action::Ack => {
            store
                .add_ack(&Ack {
                    fingerprint: t.fingerprint,
                    by: who.clone(),
                    at: now,
                    note: given(&form.why),
                    title: title.unwrap_or_default(),
                })
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "Acknowledged by {who}. powa-sentinel will not repeat it; it still tells when \
                 it gets worse or resolves, saying you acknowledged it."
            ))
        }
        Action::Snooze => {
            let (label, d) = SNOOZES
                .iter()
                .find(|(v, _)| *v == form.duration)
                .or_else(|| SNOOZES.iter().find(|(v, _)| *v == DEFAULT_SNOOZE))
                .expect("the default snooze is offered");
            let until = now + chrono::Duration::from_std(*d).expect("a short duration");
            let s = store
                .add_silence(Silence {
                    id: 0,
                    fingerprint: Some(t.fingerprint),
                    matchers: Vec::new(),
                    starts_at: now,
                    ends_at: until,
                    reason: given(&form.why)
                        .unwrap_or_else(|| format!("snoozed for {label} from a notification link")),
                    author: who,
                    created_at: now,
                })
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "Snoozed until {} (silence {}). `powa-sentinel silence expire {}` ends it \
                 sooner.",
                until.format("%Y-%m-%d %H:%M UTC"),
                s.id,
                s.id
            ))
        }
        Action::Report | Action::Page => Err("this link only shows a page".to_string()),
    }
}

async fn act(
    token: web::Path<String>,
    form: web::Form<Form>,
    data: web::Data<Option<Pages>>,
) -> HttpResponse {
    let now = Utc::now();
    let (p, t) = match verified(&token, &data, now) {
        Ok(v) => v,
        Err(answer) => return *answer,
    };
    if matches!(t.action, Action::Report | Action::Page) {
        return HttpResponse::MethodNotAllowed().finish();
    }
    let done = web::block(move || {
        let title = title_of(&p.state, t.fingerprint);
        perform(&p.state, &t, &form, title, now)
    })
    .await;
    match done {
        Ok(Ok(said)) => page(
            actix_web::http::StatusCode::OK,
            "Done",
            &format!("<p>{}</p>", escape(&said)),
        ),
        Ok(Err(e)) => unavailable(&format!("it could not be recorded ({e})")),
        Err(e) => unavailable(&e.to_string()),
    }
}
