//! A generic JSON webhook: each notification is POSTed as a documented, versioned JSON
//! payload (docs/webhook.md), signed with HMAC-SHA256 so the receiver can check that it
//! comes from us and was not replayed long after.
//!
//! Signed material: `"<timestamp>.<body>"`, where `<timestamp>` is the Unix time in seconds
//! sent in `X-Powa-Sentinel-Timestamp`; the signature is
//! `X-Powa-Sentinel-Signature: sha256=<lowercase hex>`. Including the timestamp lets a
//! receiver refuse old deliveries; it is taken at each attempt, so a retry is signed anew.
//!
//! Answers: 2xx is delivered; 408, 429 (honouring `Retry-After` in seconds) and 5xx are
//! retried, like timeouts and connection errors; any other status is permanent (the
//! receiver refuses the payload or the URL is wrong, and retrying will not change that).
//!
//! The URL and the HMAC key are [`Secret`]s: error texts are redacted.

use std::rc::Rc;
use std::time::Duration;

use awc::http::header::CONTENT_TYPE;
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use sentinel_actors::channel::Channel;
use sentinel_actors::message::{Lifecycle, Mentions};
use sentinel_actors::{ChannelError, Insight, Notification, NotifyReason, Severity};

use super::wecom::DEFAULT_TIMEOUT;
use super::ChannelSettings;
use crate::problem::Problem;
use crate::secret::Secret;

/// The payload version; bumped on any incompatible change (new fields are compatible).
pub const PAYLOAD_VERSION: &str = "1";
pub const SIGNATURE_HEADER: &str = "X-Powa-Sentinel-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Powa-Sentinel-Timestamp";
pub const DELIVERY_HEADER: &str = "X-Powa-Sentinel-Delivery";
/// Longest query text sent, in characters (the rest is cut, `text_truncated` says so).
pub const MAX_TEXT_CHARS: usize = 16 * 1024;
/// A notification whose payload would be larger is split into several POSTs.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Checks the webhook fields (called by [`ChannelSettings::validate`]).
pub(super) fn validate(s: &ChannelSettings, path: &str, problems: &mut Vec<Problem>) {
    let key = |field: &str| format!("{path}.{field}");
    match &s.url {
        None => problems.push(Problem::new(
            key("url"),
            "required when type = \"webhook\": set the receiver's URL (https://…)",
        )),
        Some(u) => {
            if check_url(u.expose()).is_err() {
                problems.push(Problem::new(
                    key("url"),
                    "is not a valid http(s) URL: set the receiver's full URL, e.g. \
                     \"https://example.org/hooks/powa\"",
                ));
            }
        }
    }
    match (&s.hmac_key, &s.hmac_key_file) {
        (None, None) => problems.push(Problem::new(
            key("hmac_key"),
            "required when type = \"webhook\": set hmac_key, hmac_key_file or \
             POWA_SENTINEL__CHANNELS__<NAME>__HMAC_KEY (the key that signs payloads)",
        )),
        (Some(_), Some(_)) => problems.push(Problem::new(
            key("hmac_key_file"),
            "set either hmac_key or hmac_key_file, not both: remove one of them",
        )),
        (Some(k), None) if k.expose().trim().len() < 16 => problems.push(Problem::new(
            key("hmac_key"),
            "is shorter than 16 characters: use a long random key (e.g. `openssl rand -hex 32`)",
        )),
        _ => {}
    }
    super::validate_timeout(s, path, problems);
}

fn check_url(u: &str) -> Result<url::Url, ()> {
    let parsed = url::Url::parse(u.trim()).map_err(|_| ())?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        _ => Err(()),
    }
}

/// Everything the channel needs, resolved.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub url: Secret,
    pub hmac_key: Secret,
    pub timeout: Duration,
}

impl WebhookSettings {
    /// From validated settings; reads `hmac_key_file`. Errors never quote secrets.
    pub fn from_settings(s: &ChannelSettings) -> Result<Self, String> {
        let url = s.url.as_ref().ok_or("url is required")?;
        let parsed = check_url(url.expose()).map_err(|_| "url is not a valid http(s) URL")?;
        let hmac_key = super::resolve_secret(
            "webhook",
            "hmac_key",
            s.hmac_key.as_ref(),
            s.hmac_key_file.as_deref(),
        )?;
        Ok(WebhookSettings {
            url: Secret::new(parsed.as_str()),
            hmac_key,
            timeout: s.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// `sha256=<hex>` of HMAC-SHA256(key, "<timestamp>.<body>").
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header value in constant time (for receivers and tests).
pub fn verify(key: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The payload (version 1). See docs/webhook.md.
#[derive(Serialize)]
pub struct Payload<'a> {
    pub version: &'static str,
    pub id: u64,
    pub channel: &'a str,
    pub reason: NotifyReason,
    pub created_at: DateTime<Utc>,
    /// 1-based; a notification too large for one POST is split by insights.
    pub part: usize,
    pub parts: usize,
    pub mentions: &'a Mentions,
    pub insights: Vec<PayloadInsight<'a>>,
}

#[derive(Serialize)]
pub struct PayloadInsight<'a> {
    pub fingerprint: String,
    pub kind: &'a str,
    pub rule: &'a str,
    pub severity: Severity,
    pub status: Option<Lifecycle>,
    pub title: &'a str,
    pub advice: &'a str,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// Non-finite values are sent as null.
    pub metrics: &'a std::collections::BTreeMap<String, f64>,
    pub text: Option<String>,
    pub text_truncated: bool,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
}

fn payload_insight(i: &Insight) -> PayloadInsight<'_> {
    let (text, text_truncated) = match &i.text {
        None => (None, false),
        Some(t) => match t.char_indices().nth(MAX_TEXT_CHARS) {
            None => (Some(t.clone()), false),
            Some((cut, _)) => (Some(t[..cut].to_string()), true),
        },
    };
    PayloadInsight {
        fingerprint: i.fingerprint.to_string(),
        kind: &i.kind,
        rule: &i.rule,
        severity: i.severity,
        status: i.status,
        title: &i.title,
        advice: &i.advice,
        labels: &i.labels,
        metrics: &i.metrics,
        text,
        text_truncated,
        window_start: i.window.start,
        window_end: i.window.end,
        observed_at: i.observed_at,
    }
}

/// The JSON bodies for `n`: one, or several (split by insights) when one would exceed
/// `max_bytes`. An insight alone is never split. Empty notifications give no body.
pub fn payloads(n: &Notification, max_bytes: usize) -> Result<Vec<String>, serde_json::Error> {
    if n.insights.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<PayloadInsight<'_>> = n.insights.iter().map(payload_insight).collect();
    let sizes: Vec<usize> = items
        .iter()
        .map(|i| serde_json::to_string(i).map(|s| s.len() + 1))
        .collect::<Result<_, _>>()?;
    let envelope = 1024; // everything but the insights, generously (mentions aside)
    let mentions = serde_json::to_string(&n.mentions)?.len();
    let mut groups: Vec<Vec<PayloadInsight<'_>>> = vec![Vec::new()];
    let mut used = envelope + mentions;
    for (item, size) in items.into_iter().zip(sizes) {
        let last = groups.last_mut().expect("never empty");
        if !last.is_empty() && used + size > max_bytes {
            groups.push(Vec::new());
            used = envelope + mentions;
        }
        used += size;
        groups.last_mut().expect("never empty").push(item);
    }
    let parts = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(k, insights)| {
            serde_json::to_string(&Payload {
                version: PAYLOAD_VERSION,
                id: n.id,
                channel: &n.channel,
                reason: n.reason,
                created_at: n.created_at,
                part: k + 1,
                parts,
                mentions: &n.mentions,
                insights,
            })
        })
        .collect()
}

/// What the receiver's answer means.
pub fn classify(status: u16, retry_after: Option<&str>) -> Result<(), ChannelError> {
    match status {
        200..=299 => Ok(()),
        429 => {
            let wait = retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            match wait {
                Some(retry_after) => Err(ChannelError::RateLimited {
                    reason: "the webhook answered HTTP 429".into(),
                    retry_after,
                }),
                None => Err(ChannelError::Retryable {
                    reason: "the webhook answered HTTP 429".into(),
                }),
            }
        }
        408 | 500..=599 => Err(ChannelError::Retryable {
            reason: format!("the webhook answered HTTP {status}"),
        }),
        _ => Err(ChannelError::Permanent {
            reason: format!(
                "the webhook answered HTTP {status}: check url and that the receiver accepts \
                 payload version {PAYLOAD_VERSION}"
            ),
        }),
    }
}

/// One part: the body and its delivery id (stored in the outbox, so a part resent after
/// a restart keeps its delivery id and receivers can deduplicate on it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WebhookPart {
    pub delivery: String,
    pub body: String,
}

/// What a dry run prints for a part.
impl std::fmt::Display for WebhookPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delivery {}\n{}", self.delivery, self.body)
    }
}

struct Inner {
    client: awc::Client,
    hook: WebhookSettings,
}

/// POSTs notifications to one webhook. Holds an awc client (`!Send`).
pub struct WebhookChannel {
    inner: Rc<Inner>,
}

impl WebhookChannel {
    pub fn new(hook: WebhookSettings, _opts: crate::render::RenderOptions) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = awc::Client::builder()
            .timeout(hook.timeout)
            .add_default_header((
                awc::http::header::USER_AGENT,
                concat!("powa-sentinel/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        WebhookChannel {
            inner: Rc::new(Inner { client, hook }),
        }
    }
}

impl Channel for WebhookChannel {
    type Part = WebhookPart;

    fn render(&self, n: &Notification) -> Result<Vec<WebhookPart>, ChannelError> {
        let bodies = payloads(n, MAX_BODY_BYTES).map_err(|e| ChannelError::Permanent {
            reason: format!("cannot encode the payload as JSON: {e}"),
        })?;
        let total = bodies.len();
        Ok(bodies
            .into_iter()
            .enumerate()
            .map(|(k, body)| WebhookPart {
                delivery: format!("{}-{}of{total}", n.id, k + 1),
                body,
            })
            .collect())
    }

    fn send(&self, part: WebhookPart) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let inner = Rc::clone(&self.inner);
        Box::pin(async move {
            let hook = &inner.hook;
            let redact = |t: String| hook.hmac_key.redact_in(&hook.url.redact_in(&t));
            let ts = Utc::now().timestamp();
            let sig = signature(hook.hmac_key.expose().as_bytes(), ts, part.body.as_bytes());
            let exchange = async {
                let resp = inner
                    .client
                    .post(hook.url.expose())
                    .insert_header((CONTENT_TYPE, "application/json"))
                    .insert_header((TIMESTAMP_HEADER, ts.to_string()))
                    .insert_header((SIGNATURE_HEADER, sig))
                    .insert_header((DELIVERY_HEADER, part.delivery.clone()))
                    .send_body(part.body)
                    .await
                    .map_err(|e| {
                        super::post::send_error(
                            &e,
                            redact(format!("request to the webhook failed: {e}")),
                        )
                    })?;
                let retry_after = resp
                    .headers()
                    .get(awc::http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok::<_, ChannelError>((resp.status().as_u16(), retry_after))
            };
            match actix_rt::time::timeout(hook.timeout, exchange).await {
                Err(_) => Err(ChannelError::Unconfirmed {
                    reason: format!(
                        "the webhook did not answer within {}",
                        humantime::format_duration(hook.timeout)
                    ),
                }),
                Ok(Err(e)) => Err(e),
                Ok(Ok((status, ra))) => classify(status, ra.as_deref()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: serde_json::Value) -> ChannelSettings {
        serde_json::from_value(v).expect("parse")
    }

    fn problems(v: serde_json::Value) -> Vec<Problem> {
        let mut p = Vec::new();
        settings(v).validate("channels.hook", &mut p);
        p
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256("key", "1700000000.{}") computed independently (python hmac).
        let sig = signature(b"key", 1_700_000_000, b"{}");
        assert_eq!(sig.len(), "sha256=".len() + 64);
        assert!(verify(b"key", 1_700_000_000, b"{}", &sig));
        assert!(!verify(b"key", 1_700_000_001, b"{}", &sig));
        assert!(!verify(b"kez", 1_700_000_000, b"{}", &sig));
        assert!(!verify(b"key", 1_700_000_000, b"{} ", &sig));
        assert!(!verify(b"key", 1_700_000_000, b"{}", "sha256=zz"));
        assert_eq!(
            sig,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200, None), Ok(()));
        assert_eq!(classify(204, None), Ok(()));
        assert!(matches!(
            classify(429, Some("7")),
            Err(ChannelError::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(7)
        ));
        assert!(matches!(
            classify(429, None),
            Err(ChannelError::Retryable { .. })
        ));
        for s in [408, 500, 502, 503] {
            assert!(
                matches!(classify(s, None), Err(ChannelError::Retryable { .. })),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(
                matches!(classify(s, None), Err(ChannelError::Permanent { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn settings_are_checked_without_quoting_secrets() {
        let good = serde_json::json!({"type": "webhook", "url": "https://h/x?token=T0PS3CRET",
                                      "hmac_key": "0123456789abcdef-S3CRET"});
        assert!(problems(good.clone()).is_empty());
        let w = WebhookSettings::from_settings(&settings(good)).unwrap();
        assert!(!format!("{w:?}").contains("S3CRET"));
        let p = problems(serde_json::json!({"type": "webhook"}));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["channels.hook.url", "channels.hook.hmac_key"]);
        let p = problems(
            serde_json::json!({"type": "webhook", "url": "ftp://T0PS3CRET",
                                            "hmac_key": "short-S3CRET"}),
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["channels.hook.url", "channels.hook.hmac_key"]);
        for p in p {
            assert!(!p.message.contains("S3CRET"), "{p:?}");
        }
    }
}
