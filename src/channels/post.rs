//! What the chat-robot channels (Feishu, DingTalk, Slack) share: one JSON POST with a time
//! limit and redacted errors, `Retry-After` parsing, and fitting rendered text into a
//! provider's byte limit for the whole request body.
//!
//! Kept apart from each provider's file so that a provider stays one file of its own
//! rules (URL, signature, body shape, answer codes) and nothing else.

use std::time::Duration;

use awc::http::header::{CONTENT_TYPE, RETRY_AFTER};
use sentinel_actors::ChannelError;

use crate::secret::Secret;

/// Largest answer body read; robot answers are a few dozen bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest wait honoured from a `Retry-After` header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// An HTTP answer: status, `Retry-After` (seconds) if any, and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

#[cfg(test)]
impl Answer {
    /// A provider's answer, for the classification tests.
    pub fn of(status: u16, body: &str, retry_after: Option<Duration>) -> Answer {
        Answer {
            status,
            retry_after,
            body: body.as_bytes().to_vec(),
        }
    }
}

/// An awc client with our user agent. `!Send`: build it on the channel actor's thread.
pub fn client(timeout: Duration) -> awc::Client {
    // Pick ring explicitly (see wecom.rs); an Err only means a provider is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    awc::Client::builder()
        .timeout(timeout)
        .add_default_header((
            awc::http::header::USER_AGENT,
            concat!("powa-sentinel/", env!("CARGO_PKG_VERSION")),
        ))
        .finish()
}

/// POSTs `body` as JSON to `url` within `timeout`. Transport failures and timeouts are
/// retryable; their texts pass through `secrets` redaction (awc echoes URLs).
pub async fn post_json(
    client: &awc::Client,
    provider: &str,
    url: &str,
    body: String,
    timeout: Duration,
    secrets: &[&Secret],
) -> Result<Answer, ChannelError> {
    let redact = |t: String| {
        secrets
            .iter()
            .fold(redact_url(&t, url), |t, s| s.redact_in(&t))
    };
    let exchange = async {
        let mut resp = client
            .post(url)
            .insert_header((CONTENT_TYPE, "application/json; charset=utf-8"))
            .send_body(body)
            .await
            .map_err(|e| send_error(&e, redact(format!("request to {provider} failed: {e}"))))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    };
    match actix_rt::time::timeout(timeout, exchange).await {
        Err(_) => Err(ChannelError::Unconfirmed {
            reason: format!(
                "{provider} did not answer within {}",
                humantime::format_duration(timeout)
            ),
        }),
        Ok(r) => r,
    }
}

/// A request that failed: a timeout means the provider may have received it
/// (`Unconfirmed`, retried after a longer wait); anything else is retried as usual.
pub fn send_error(e: &awc::error::SendRequestError, reason: String) -> ChannelError {
    match e {
        awc::error::SendRequestError::Timeout => ChannelError::Unconfirmed { reason },
        _ => ChannelError::Retryable { reason },
    }
}

fn redact_url(text: &str, url: &str) -> String {
    if url.is_empty() {
        text.to_string()
    } else {
        text.replace(url, Secret::MASK)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by these providers), capped
/// at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// A status that is worth retrying whatever the body says: 408, 429 and 5xx. 429 with a
/// `Retry-After` pauses the destination for that long.
pub fn transient_status(provider: &str, a: &Answer) -> Option<ChannelError> {
    let reason = format!("{provider} answered HTTP {}", a.status);
    match (a.status, a.retry_after) {
        (429, Some(retry_after)) => Some(ChannelError::RateLimited {
            reason,
            retry_after,
        }),
        (408 | 429 | 500..=599, _) => Some(ChannelError::Retryable { reason }),
        _ => None,
    }
}

/// Renders at `budget` and wraps each content into a request body; if any body exceeds
/// `limit` bytes (JSON escaping can grow a text), renders again at a smaller budget.
/// Every body returned is at most `limit` bytes, or the smallest budget is used.
pub fn fit_bodies<R, W>(budget: usize, limit: usize, render: R, wrap: W) -> Vec<String>
where
    R: Fn(usize) -> Vec<String>,
    W: Fn(&str, usize, usize) -> String,
{
    let mut budget = budget;
    loop {
        let contents = render(budget);
        let total = contents.len();
        let bodies: Vec<String> = contents
            .iter()
            .enumerate()
            .map(|(k, c)| wrap(c, k, total))
            .collect();
        let largest = bodies.iter().map(String::len).max().unwrap_or(0);
        if largest <= limit || budget <= crate::render::MIN_BUDGET {
            return bodies;
        }
        // Shrink by the overshoot ratio, and at least by an eighth.
        let shrunk = budget * limit / largest;
        budget = shrunk
            .min(budget - budget / 8)
            .max(crate::render::MIN_BUDGET);
    }
}

/// The provider's short error token (e.g. Slack's `invalid_payload`) if the body is one:
/// lowercase letters, digits and `_` only, at most 64 bytes. Anything else (HTML from a
/// proxy, echoed input) is not quoted.
pub fn short_token(body: &[u8]) -> Option<&str> {
    let t = std::str::from_utf8(body).ok()?.trim();
    (!t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_parsed_and_capped() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("99999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn transient_statuses() {
        let a = |status, ra| Answer {
            status,
            retry_after: ra,
            body: Vec::new(),
        };
        assert!(matches!(
            transient_status("X", &a(429, Some(Duration::from_secs(3)))),
            Some(ChannelError::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(3)
        ));
        for s in [408, 429, 500, 503] {
            assert!(matches!(
                transient_status("X", &a(s, None)),
                Some(ChannelError::Retryable { .. })
            ));
        }
        for s in [200, 400, 403, 404, 410] {
            assert!(transient_status("X", &a(s, None)).is_none(), "{s}");
        }
    }

    #[test]
    fn fit_bodies_shrinks_until_bodies_fit() {
        // A wrapper that doubles every byte (like JSON escaping of quotes).
        let render = |b: usize| {
            let total: usize = 10_000;
            let n = total.div_ceil(b);
            (0..n)
                .map(|k| "x".repeat(b.min(total - k * b)))
                .collect::<Vec<_>>()
        };
        let bodies = fit_bodies(4000, 5000, render, |c, _, _| c.repeat(2));
        assert!(bodies.iter().all(|b| b.len() <= 5000));
        assert_eq!(bodies.iter().map(String::len).sum::<usize>(), 20_000);
    }

    #[test]
    fn only_short_tokens_are_quoted() {
        assert_eq!(short_token(b"invalid_payload\n"), Some("invalid_payload"));
        assert_eq!(short_token(b"<html>x</html>"), None);
        assert_eq!(short_token(b""), None);
    }
}
