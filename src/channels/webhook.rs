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

use actix::Recipient;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use sentinel_actors::channel::Deliver;
use sentinel_actors::message::{Lifecycle, Mentions};
use sentinel_actors::{ChannelError, Insight, Notification, NotifyReason, Severity};

use super::check::{self, SecretSource};
use super::robot::{self, Answer, HttpChannel, Rendered, Request, Robot, JSON};
use super::{ChannelType, Starter, Takes};
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

/// `[channels.<name>] type = "webhook"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where to POST the JSON payload; a secret (such URLs often carry a token).
    pub url: Option<Secret>,
    /// The HMAC-SHA256 key that signs each payload, at least 16 characters; a secret. Or
    /// `hmac_key_file`, or `POWA_SENTINEL__CHANNELS__<NAME>__HMAC_KEY`.
    pub hmac_key: Option<Secret>,
    /// A file holding the HMAC key (surrounding whitespace is ignored), read when the
    /// channel starts.
    pub hmac_key_file: Option<std::path::PathBuf>,
}

/// A checked webhook channel; its key may still be in a file.
#[derive(Debug)]
pub struct Webhook {
    url: Secret,
    hmac_key: SecretSource,
}

impl ChannelType for Webhook {
    const TYPE: &'static str = "webhook";
    const SECRET_KEYS: &'static [&'static str] = &["url", "hmac_key"];
    const TAKES: Takes = Takes {
        timeout: true,
        ..Takes::NOTHING
    };
    type Settings = WebhookSettings;

    fn check(s: WebhookSettings) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let url = check::url_field(
            "url",
            s.url.as_ref(),
            "required when type = \"webhook\": set the receiver's URL (https://…)",
            |u| {
                check::http_url(u, false).ok_or_else(|| {
                    "is not a valid http(s) URL: set the receiver's full URL, e.g. \
                     \"https://example.org/hooks/powa\""
                        .to_string()
                })
            },
            &mut problems,
        );
        let both = s.hmac_key.is_some() && s.hmac_key_file.is_some();
        let hmac_key = SecretSource::of("hmac_key", s.hmac_key, s.hmac_key_file, &mut problems);
        match &hmac_key {
            None if !both => problems.push(Problem::new(
                "hmac_key",
                "required when type = \"webhook\": set hmac_key, hmac_key_file or \
                 POWA_SENTINEL__CHANNELS__<NAME>__HMAC_KEY (the key that signs payloads)",
            )),
            Some(SecretSource::Inline(k)) if k.expose().len() < 16 => problems.push(Problem::new(
                "hmac_key",
                "is shorter than 16 characters: use a long random key (e.g. `openssl rand -hex 32`)",
            )),
            _ => {}
        }
        match (url, hmac_key) {
            (Some(url), Some(hmac_key)) if problems.is_empty() => Ok(Webhook { url, hmac_key }),
            _ => Err(problems),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        std::iter::once(&self.url)
            .chain(self.hmac_key.inline())
            .collect()
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let hmac_key = self
            .hmac_key
            .resolve(&start.key("hmac_key"))
            .map_err(anyhow::Error::msg)?;
        let robot = WebhookRobot {
            url: self.url.clone(),
            hmac_key,
        };
        let ch = WebhookChannel::with_robot(robot, start.timeout());
        Ok(start.spawn(ch, None))
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
    /// What changed on the server since the baseline (omitted when nothing is known).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub changes: &'a [sentinel_actors::Change],
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
        changes: &i.changes,
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

/// What the receiver's answer means: 2xx is delivered; 408, 429 and 5xx are retried
/// (429 honouring `Retry-After`); any other status is permanent.
pub fn classify(a: &Answer) -> Result<(), ChannelError> {
    if (200..300).contains(&a.status) {
        return Ok(());
    }
    match robot::transient_status("the webhook", a) {
        Some(e) => Err(e),
        None => Err(ChannelError::Permanent {
            reason: format!(
                "the webhook answered HTTP {}: check url and that the receiver accepts \
                 payload version {PAYLOAD_VERSION}",
                a.status
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

/// One receiver: its URL and key, for [`HttpChannel`].
pub struct WebhookRobot {
    url: Secret,
    hmac_key: Secret,
}

/// POSTs notifications to one webhook. Holds an awc client (`!Send`).
pub type WebhookChannel = HttpChannel<WebhookRobot>;

impl Robot for WebhookRobot {
    type Part = WebhookPart;

    const PROVIDER: &'static str = "the webhook";

    /// Every part of a notification, whatever the quota: receivers have none.
    fn render(&self, n: &Notification, _max_parts: Option<usize>) -> Rendered<WebhookPart> {
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

    /// Signed at each attempt, so a retry is signed anew.
    fn request(&self, part: &WebhookPart, now: DateTime<Utc>, _token: Option<&Secret>) -> Request {
        let ts = now.timestamp();
        let sig = signature(self.hmac_key.expose().as_bytes(), ts, part.body.as_bytes());
        Request::post(self.url.expose(), JSON, part.body.clone())
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig)
            .header(DELIVERY_HEADER, part.delivery.clone())
    }

    fn classify(&self, answer: &Answer) -> Result<(), ChannelError> {
        classify(answer)
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.url, &self.hmac_key]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channels::robot::verdict::*;

    use crate::channels::settings::testing::{problems_at, settings};

    fn problems(v: serde_json::Value) -> Vec<Problem> {
        problems_at("channels.hook", v)
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

    /// The receiver's answer: a status and an optional `Retry-After`.
    fn classify(status: u16, retry_after: Option<&str>) -> Result<(), ChannelError> {
        super::classify(&Answer {
            status,
            retry_after: retry_after.and_then(robot::parse_retry_after),
            body: Vec::new(),
        })
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(200, None), Ok(()));
        assert_eq!(classify(204, None), Ok(()));
        assert!(paused_for(
            &classify(429, Some("7")),
            Duration::from_secs(7)
        ));
        assert!(retryable(&classify(429, None)));
        for s in [408, 500, 502, 503] {
            assert!(retryable(&classify(s, None)), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(permanent(&classify(s, None)), "{s}");
        }
    }

    #[test]
    fn settings_are_checked_without_quoting_secrets() {
        let good = serde_json::json!({"type": "webhook", "url": "https://h/x?token=T0PS3CRET",
                                      "hmac_key": "0123456789abcdef-S3CRET"});
        assert!(problems(good.clone()).is_empty());
        let s = settings(good);
        let w = s.typed::<Webhook>().unwrap();
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
