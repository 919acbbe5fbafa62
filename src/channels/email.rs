//! Email over SMTP: one message per notification, with an HTML part and a plain-text
//! part (or plain text only), sent through the organisation's own mail server.
//!
//! Charts (`charts = true`, the default, as for WeCom): the trend charts of the
//! notification's charted insights ([`crate::chart::charted`]; their trends read by a
//! [`ChartEnricher`](crate::chart::enrich::ChartEnricher) in front of the channel) go in
//! the HTML part, each right after the entry that tells its insight, as
//! `<img src="cid:…">` referring to an `image/png` part: the message is then
//! `multipart/alternative` of the text and a `multipart/related` of the HTML and its
//! images (RFC 2387), so that clients show them without fetching anything. The text part
//! is unchanged.
//!
//! The connection is secured by STARTTLS by default, and refused when the server does not
//! offer it (lettre's opportunistic mode would fall back to plain text on a stripped
//! `STARTTLS`); `tls = "tls"` speaks TLS from the first byte (port 465); `tls = "none"` is
//! for a relay on the same host and never carries a password. Certificates are checked
//! against the public roots, plus `ca_file` for an internal CA.
//!
//! Recipients: `to` and `cc`, plus the addresses a route names in `mention_userids`
//! (`mention_userids = ["oncall@example.org"]` with `mention_severity = "critical"`: the
//! on-call person is written to for critical findings only); user ids that are not
//! addresses are for the chat channels and are ignored here.
//!
//! Answers: a 4xx reply (greylisting, mailbox busy) and a refused or dropped connection
//! are retried; a 5xx reply (unknown recipient, authentication refused, message refused)
//! and a TLS failure are permanent: a person must fix the settings. No answer in time is
//! retried as possibly delivered. Every message carries a stable `Message-ID`, so a
//! retried message that did arrive twice threads as one.

use std::path::PathBuf;
use std::time::Duration;

use actix::{Actor, Recipient};
use futures_util::future::LocalBoxFuture;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use sentinel_actors::channel::{Channel, Deliver};
use sentinel_actors::{ChannelError, Notification};

use super::check::SecretSource;
use super::{ChannelType, Rate, Starter, Takes};
use crate::problem::Problem;
use crate::render::{self, RenderOptions};
use crate::secret::Secret;

/// More than this many emails a minute to the same people is a flood, whatever the
/// server accepts; bursts beyond `max_per_minute` are merged into a digest.
pub const MAX_PER_MINUTE: u32 = 60;
pub const DEFAULT_MAX_PER_MINUTE: u32 = 10;
const LIMIT: &str = "more than 60 emails a minute to the same people is a flood";

/// `[channels.<name>] type = "email"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server's host name (the name on its certificate). Required.
    pub smtp_host: Option<String>,
    /// Its port: default 587 with `tls = "starttls"`, 465 with `"tls"`, 25 with `"none"`.
    pub smtp_port: Option<u16>,
    /// How the connection is secured: `"starttls"` (default; refused if the server does
    /// not offer it), `"tls"` (TLS from the first byte, usually port 465) or `"none"`
    /// (plain text, for a relay on the same host only; never with a password).
    pub tls: Option<String>,
    /// A PEM file of CA certificates to trust besides the public roots (an internal CA),
    /// read when the channel starts.
    pub ca_file: Option<PathBuf>,
    /// The SMTP login; with `password` or `password_file`. Optional: without it, no
    /// authentication.
    pub username: Option<String>,
    /// The SMTP password; a secret. Or `password_file`, or
    /// `POWA_SENTINEL__CHANNELS__<NAME>__PASSWORD`.
    pub password: Option<Secret>,
    /// A file holding the SMTP password (surrounding whitespace is ignored), read when the
    /// channel starts.
    pub password_file: Option<PathBuf>,
    /// The sender, `"PoWA Sentinel <powa-sentinel@example.org>"` or a bare address.
    /// Required.
    pub from: Option<String>,
    /// The recipients, addresses or `"Name <address>"`. Required (at least one).
    pub to: Option<Vec<String>>,
    /// Copies to.
    pub cc: Option<Vec<String>>,
    /// `"html"` (default: an HTML part and a plain-text part, the client picks) or
    /// `"text"` (plain text only).
    pub format: Option<String>,
    /// Trend charts in the HTML part, each right after the regression, workload change
    /// or worst slow query it shows (inline PNG images, read from PoWA when the message
    /// is sent; WeCom's key). Default true; `false` sends the text only. Ignored with
    /// `format = "text"`.
    pub charts: Option<bool>,
}

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    StartTls,
    Tls,
    None,
}

impl Security {
    fn default_port(self) -> u16 {
        match self {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// A checked email channel; its password and CA may still be in files.
#[derive(Debug)]
pub struct Email {
    host: String,
    port: u16,
    security: Security,
    ca_file: Option<PathBuf>,
    login: Option<(String, SecretSource)>,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    html: bool,
    charts: bool,
}

/// `value` as a mailbox, or what is wrong with it.
fn mailbox(value: &str) -> Result<Mailbox, String> {
    value.trim().parse::<Mailbox>().map_err(|e| {
        format!("{value:?} is not an email address ({e}): write it as \"name@example.org\" or \"Name <name@example.org>\"")
    })
}

fn mailboxes(key: &str, values: &[String], problems: &mut Vec<Problem>) -> Vec<Mailbox> {
    let mut out = Vec::new();
    for (k, v) in values.iter().enumerate() {
        match mailbox(v) {
            Ok(m) => out.push(m),
            Err(e) => problems.push(Problem::new(format!("{key}[{k}]"), e)),
        }
    }
    out
}

/// Whether `host` is this machine, where a plain-text relay is acceptable.
fn is_local(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ChannelType for Email {
    const TYPE: &'static str = "email";
    const SECRET_KEYS: &'static [&'static str] = &["password"];
    const TAKES: Takes = Takes {
        timeout: true,
        rate: Some(Rate {
            limit: MAX_PER_MINUTE,
            default: DEFAULT_MAX_PER_MINUTE,
            why: LIMIT,
        }),
        language: true,
    };
    type Settings = EmailSettings;

    fn check(s: EmailSettings) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let host = match s.smtp_host.as_deref().map(str::trim) {
            None | Some("") => {
                problems.push(Problem::new(
                    "smtp_host",
                    "required when type = \"email\": set the SMTP server's host name, e.g. \
                     \"smtp.example.org\"",
                ));
                String::new()
            }
            Some(h) if h.contains(['/', ':', ' ']) && !h.starts_with('[') => {
                problems.push(Problem::new(
                    "smtp_host",
                    format!(
                        "{h:?} is not a host name: set the name alone (\"smtp.example.org\") \
                         and the port in smtp_port"
                    ),
                ));
                String::new()
            }
            Some(h) => h.to_string(),
        };
        let security = match s.tls.as_deref() {
            None | Some("starttls") => Security::StartTls,
            Some("tls") => Security::Tls,
            Some("none") => Security::None,
            Some(other) => {
                problems.push(Problem::new(
                    "tls",
                    format!(
                        "{other:?} is not a way to secure SMTP: use \"starttls\" (port 587), \
                         \"tls\" (port 465) or \"none\" (a relay on this host)"
                    ),
                ));
                Security::StartTls
            }
        };
        if s.smtp_port == Some(0) {
            problems.push(Problem::new(
                "smtp_port",
                "is 0: set the SMTP server's port",
            ));
        }
        let port = s.smtp_port.unwrap_or(security.default_port());
        let both = s.password.is_some() && s.password_file.is_some();
        let password = SecretSource::of("password", s.password, s.password_file, &mut problems);
        let login = match (s.username.map(|u| u.trim().to_string()), password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u, p)),
            (Some(_), Some(_)) => {
                problems.push(Problem::new(
                    "username",
                    "is empty: set the SMTP login, or remove username and password",
                ));
                None
            }
            (Some(_), None) if !both => {
                problems.push(Problem::new(
                    "password",
                    "required with username: set password, password_file or \
                     POWA_SENTINEL__CHANNELS__<NAME>__PASSWORD",
                ));
                None
            }
            (None, Some(_)) => {
                problems.push(Problem::new(
                    "username",
                    "required with a password: set the SMTP login",
                ));
                None
            }
            _ => None,
        };
        if security == Security::None {
            if login.is_some() {
                problems.push(Problem::new(
                    "tls",
                    "is \"none\", which would send the password in clear text: use \
                     \"starttls\" or \"tls\"",
                ));
            } else if !host.is_empty() && !is_local(&host) {
                problems.push(Problem::new(
                    "tls",
                    format!(
                        "is \"none\" for {host}, which is not this host: reports would cross \
                         the network in clear text; use \"starttls\" or \"tls\""
                    ),
                ));
            }
        }
        let from = match s.from.as_deref() {
            None => {
                problems.push(Problem::new(
                    "from",
                    "required when type = \"email\": set the sender, e.g. \
                     \"PoWA Sentinel <powa-sentinel@example.org>\"",
                ));
                None
            }
            Some(f) => mailbox(f)
                .map_err(|e| problems.push(Problem::new("from", e)))
                .ok(),
        };
        let to = mailboxes("to", s.to.as_deref().unwrap_or_default(), &mut problems);
        if s.to.as_ref().is_none_or(Vec::is_empty) {
            problems.push(Problem::new(
                "to",
                "required when type = \"email\": list at least one recipient, e.g. \
                 to = [\"dba@example.org\"]",
            ));
        }
        let cc = mailboxes("cc", s.cc.as_deref().unwrap_or_default(), &mut problems);
        let html = match s.format.as_deref() {
            None | Some("html") => true,
            Some("text") => false,
            Some(other) => {
                problems.push(Problem::new(
                    "format",
                    format!(
                        "{other:?} is not a format: use \"html\" (HTML and plain text) or \
                         \"text\" (plain text only)"
                    ),
                ));
                true
            }
        };
        match from {
            Some(from) if problems.is_empty() => Ok(Email {
                host,
                port,
                security,
                ca_file: s.ca_file,
                login,
                from,
                to,
                cc,
                html,
                charts: s.charts.unwrap_or(true),
            }),
            _ => Err(problems),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        self.login.iter().filter_map(|(_, p)| p.inline()).collect()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let password = self
            .login
            .as_ref()
            .map(|(u, p)| p.resolve(&start.key("password")).map(|p| (u.clone(), p)))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let transport = self.transport(&start.key("ca_file"), password.clone(), start.timeout())?;
        let mut trends = (self.charts && self.html).then(|| start.trends()).flatten();
        if trends.is_some() {
            if let Err(e) = crate::chart::fonts_available(start.render_options().lang) {
                slog::warn!(start.log(), "Trend charts are off for this channel."; "error" => %e);
                trends = None;
            }
        }
        let ch = EmailChannel {
            transport,
            server: format!("{}:{}", self.host, self.port),
            password: password.map(|(_, p)| p),
            from: self.from.clone(),
            to: self.to.clone(),
            cc: self.cc.clone(),
            html: self.html,
            charts: trends.is_some(),
            drawn: Default::default(),
            opts: start.render_options(),
        };
        let destination = format!("smtp://{}:{}", self.host, self.port);
        let pacing = start.pacing(&destination);
        let channel = start.spawn(ch, Some(pacing));
        Ok(match trends {
            Some(t) => crate::chart::enrich::ChartEnricher::new(start.name(), channel, t)
                .start()
                .recipient(),
            None => channel,
        })
    }
}

impl Email {
    fn transport(
        &self,
        ca_key: &str,
        login: Option<(String, Secret)>,
        timeout: Duration,
    ) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        let mut tls = TlsParameters::builder(self.host.clone());
        if let Some(f) = &self.ca_file {
            let pem = std::fs::read(f)
                .map_err(|e| anyhow::anyhow!("{ca_key}: cannot read {}: {e}", f.display()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!("{ca_key}: {} is not a PEM certificate: {e}", f.display())
            })?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| anyhow::anyhow!("TLS settings for {}: {e}", self.host))?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            .timeout(Some(timeout))
            .tls(match self.security {
                Security::StartTls => Tls::Required(tls),
                Security::Tls => Tls::Wrapper(tls),
                Security::None => Tls::None,
            });
        if let Some((user, password)) = login {
            b = b.credentials(Credentials::new(user, password.expose().to_string()));
        }
        Ok(b.build())
    }
}

/// One email as rendered (kept in the outbox across restarts).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mail {
    pub message_id: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Recipients a route added for this notification (`mention_userids` that are
    /// addresses), besides `to`.
    #[serde(default)]
    pub extra_to: Vec<String>,
    /// The charts the HTML part shows (`<img src="cid:…">`), sent as its related parts.
    #[serde(default)]
    pub images: Vec<InlineImage>,
}

/// One image of an email: its `Content-ID` (without angle brackets) and its PNG, in
/// base64 so that the outbox journals it as text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InlineImage {
    pub cid: String,
    pub png_base64: String,
}

impl std::fmt::Display for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Subject: {}", self.subject)?;
        if !self.extra_to.is_empty() {
            writeln!(f, "Also to: {}", self.extra_to.join(", "))?;
        }
        writeln!(f)?;
        f.write_str(&self.text)
    }
}

pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for error texts.
    server: String,
    password: Option<Secret>,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    html: bool,
    /// Whether the charts of the insights (their trends read by a
    /// [`crate::chart::enrich::ChartEnricher`] in front) go in the HTML part.
    charts: bool,
    /// The charts drawn lately: the channel actor may render a notification more than
    /// once (to count its parts, in a digest), and drawing is the costly part.
    drawn: std::cell::RefCell<super::wecom::ChartCache>,
    opts: RenderOptions,
}

/// The `Content-ID` of the chart of insight `k` of notification `id`.
fn chart_cid(id: u64, k: usize) -> String {
    format!("chart{k}.n{id}@powa-sentinel")
}

impl EmailChannel {
    /// The message for `mail`, or why it cannot be built (a permanent failure).
    fn message(&self, mail: &Mail) -> Result<Message, ChannelError> {
        let permanent = |reason: String| ChannelError::Permanent { reason };
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(Some(mail.message_id.clone()));
        let mut seen: Vec<&str> = Vec::new();
        for m in self.to.iter() {
            seen.push(m.email.as_ref());
            b = b.to(m.clone());
        }
        for a in &mail.extra_to {
            let m = mailbox(a).map_err(permanent)?;
            if !seen
                .iter()
                .any(|s| s.eq_ignore_ascii_case(m.email.as_ref()))
            {
                b = b.to(m);
            }
        }
        for m in &self.cc {
            b = b.cc(m.clone());
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone());
        let built = match &mail.html {
            Some(html) => {
                let html = SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html.clone());
                let alternative = MultiPart::alternative().singlepart(text);
                if mail.images.is_empty() {
                    b.multipart(alternative.singlepart(html))
                } else {
                    // The HTML and the images it refers to by Content-ID (RFC 2387).
                    let mut related = MultiPart::related().singlepart(html);
                    for image in &mail.images {
                        use base64::Engine as _;
                        let png = base64::engine::general_purpose::STANDARD
                            .decode(&image.png_base64)
                            .map_err(|e| permanent(format!("a chart of the email: {e}")))?;
                        related = related.singlepart(
                            Attachment::new_inline(image.cid.clone())
                                .body(png, ContentType::parse("image/png").expect("a MIME type")),
                        );
                    }
                    b.multipart(alternative.multipart(related))
                }
            }
            None => b.singlepart(text),
        };
        built.map_err(|e| permanent(format!("cannot build the email: {e}")))
    }
}

/// Whether the TLS handshake failed on the certificate (lettre reports it as a
/// connection error): the rustls error somewhere in the chain of sources.
fn bad_certificate(e: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if matches!(
            tls,
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        source = err.source();
    }
    false
}

/// What a failed SMTP exchange means for the delivery.
fn classify(e: &lettre::transport::smtp::Error, server: &str) -> ChannelError {
    let reason = format!("SMTP server {server}: {e}");
    if e.is_tls() || bad_certificate(e) {
        ChannelError::Permanent {
            reason: format!(
                "{reason} (TLS failed: check tls, smtp_port and, for an internal CA, ca_file)"
            ),
        }
    } else if e.is_client() {
        // What lettre refuses to do: STARTTLS required and not offered, no common AUTH
        // mechanism. The same every time.
        ChannelError::Permanent {
            reason: format!(
                "{reason} (check tls and smtp_port: a server that speaks TLS on connect, \
                 usually port 465, needs tls = \"tls\")"
            ),
        }
    } else if e.is_permanent() {
        ChannelError::Permanent {
            reason: format!("{reason} (the server refuses: check from, to and the login)"),
        }
    } else if e.is_transient() {
        ChannelError::Retryable { reason }
    } else if e.is_timeout() {
        ChannelError::Unconfirmed { reason }
    } else {
        ChannelError::Retryable { reason }
    }
}

/// The addresses among a route's user ids.
fn addresses(userids: &[String]) -> Vec<String> {
    userids
        .iter()
        .filter(|u| u.contains('@') && !u.starts_with('@'))
        .filter(|u| u.parse::<lettre::Address>().is_ok())
        .cloned()
        .collect()
}

impl Channel for EmailChannel {
    type Part = Mail;

    /// One email, however many insights: mail has no size limit worth splitting for.
    fn render(&self, n: &Notification) -> Result<Vec<Mail>, ChannelError> {
        let text = render::plain_report_with(n, &self.opts);
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let host = self.from.email.domain().to_string();
        let mut images = Vec::new();
        let mut charts = Vec::new();
        if self.html && self.charts {
            use base64::Engine as _;
            let mut drawn = self.drawn.borrow_mut();
            for k in crate::chart::charted(&n.insights) {
                if let Some(png) = drawn.png(&n.insights[k], self.opts.lang) {
                    let cid = chart_cid(n.id, k);
                    charts.push(render::InlineChart {
                        insight: k,
                        cid: cid.clone(),
                    });
                    images.push(InlineImage {
                        cid,
                        png_base64: base64::engine::general_purpose::STANDARD.encode(&*png),
                    });
                }
            }
        }
        Ok(vec![Mail {
            message_id: format!("<powa-sentinel.{}.{}@{host}>", n.channel, n.id),
            subject: render::subject(n, &self.opts),
            html: self
                .html
                .then(|| render::html_report_with(n, &self.opts, &charts)),
            text,
            extra_to: addresses(&n.mentions.userids),
            images,
        }])
    }

    fn send(&self, mail: Mail) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let message = self.message(&mail);
        let transport = self.transport.clone();
        let server = self.server.clone();
        let password = self.password.clone();
        Box::pin(async move {
            let message = message?;
            transport.send(message).await.map(drop).map_err(|e| {
                let mut err = classify(&e, &server);
                if let Some(p) = &password {
                    match &mut err {
                        ChannelError::Permanent { reason }
                        | ChannelError::Retryable { reason }
                        | ChannelError::Unconfirmed { reason }
                        | ChannelError::RateLimited { reason, .. } => *reason = p.redact_in(reason),
                    }
                }
                err
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::settings::testing::problems_at;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({"type": "email", "smtp_host": "smtp.example.org",
               "from": "PoWA Sentinel <powa@example.org>", "to": ["dba@example.org"]})
    }

    fn with(extra: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn a_minimal_table_is_valid_and_each_mistake_is_named() {
        assert!(problems_at("channels.mail", base()).is_empty());
        let cases = [
            (json!({"type": "email"}), "channels.mail.smtp_host"),
            (json!({"type": "email"}), "channels.mail.from"),
            (json!({"type": "email"}), "channels.mail.to"),
            (
                with(json!({"to": ["not an address"]})),
                "channels.mail.to[0]",
            ),
            (with(json!({"tls": "ssl"})), "channels.mail.tls"),
            (
                with(json!({"smtp_host": "smtp.example.org:587"})),
                "channels.mail.smtp_host",
            ),
            (with(json!({"username": "u"})), "channels.mail.password"),
            (with(json!({"password": "p"})), "channels.mail.username"),
            (
                with(json!({"tls": "none", "username": "u", "password": "p"})),
                "channels.mail.tls",
            ),
            (with(json!({"tls": "none"})), "channels.mail.tls"),
            (with(json!({"format": "pdf"})), "channels.mail.format"),
            (
                with(json!({"max_per_minute": 1000})),
                "channels.mail.max_per_minute",
            ),
        ];
        for (v, key) in cases {
            let p = problems_at("channels.mail", v.clone());
            assert!(p.iter().any(|p| p.key == key), "{v}: {p:?}");
        }
        let local = with(json!({"tls": "none", "smtp_host": "127.0.0.1"}));
        assert!(problems_at("channels.mail", local).is_empty());
    }

    #[test]
    fn the_password_is_never_quoted() {
        let v = with(json!({"username": "u", "password": "hunter2-secret", "tls": "none"}));
        let p = format!("{:?}", problems_at("channels.mail", v));
        assert!(!p.contains("hunter2"), "{p}");
    }

    #[test]
    fn route_addresses_are_picked_from_user_ids() {
        let ids = ["zhangsan", "@all", "oncall@example.org", "a@b@c"].map(String::from);
        assert_eq!(addresses(&ids), vec!["oncall@example.org".to_string()]);
    }
}
