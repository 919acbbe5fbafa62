//! The one HTTP delivery layer: a [`Robot`] says what one provider needs (the request for a
//! part, what its answers mean, which values are secret, and for WeCom application messages
//! how to get an access token); [`HttpChannel`] does the rest for every provider alike.
//!
//! What the layer owns, so that no provider writes it again: the awc client and its user
//! agent, the time limit of an exchange (no answer in time is `Unconfirmed`: the provider
//! may have the message), the size cap on an answer, `Retry-After`, the redaction of every
//! error text (awc echoes URLs, and URLs carry keys and tokens), and the access-token cache
//! with its "refused: fetch a new one and send once more" rule. Provider rules (budgets,
//! mentions, escaping, signatures, answer codes) stay in the provider's file.
//!
//! Not to be confused with [`crate::http`], the daemon's own HTTP server.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use sentinel_actors::channel::Channel;
use sentinel_actors::{ChannelError, Notification};

use crate::secret::Secret;

/// Largest answer body read; robot answers are a few dozen bytes. A longer one is not a
/// provider's (a proxy's page): it is read as empty, which every provider calls "no code".
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest wait honoured from a `Retry-After` header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// `Content-Type` of a JSON body.
pub const JSON: &str = "application/json";
/// `Content-Type` of a JSON body, charset spelt out (what the chat robots document).
pub const JSON_UTF8: &str = "application/json; charset=utf-8";

/// The parts of a notification, or why it cannot be rendered.
pub type Rendered<P> = Result<Vec<P>, ChannelError>;

/// One provider behind HTTP.
pub trait Robot: 'static {
    /// One message as stored in the outbox and sent (signatures are added per attempt).
    type Part: Clone + Serialize + DeserializeOwned + fmt::Display + 'static;

    /// Who answers, in error texts: "WeCom", "Slack", "the webhook".
    const PROVIDER: &'static str;

    /// The parts of `n` within the provider's limits; a digest of at most `max_parts`
    /// messages when given (providers without a quota ignore it).
    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<Self::Part>;

    /// The request that sends `part` at `now` (providers that sign do it with this time);
    /// `token` is the access token of a robot that has an [`Authorize`] step.
    fn request(&self, part: &Self::Part, now: DateTime<Utc>, token: Option<&Secret>) -> Request;

    /// What the provider's answer means.
    fn classify(&self, answer: &Answer) -> Result<(), ChannelError>;

    /// Every secret of the robot (keys, URLs, signing secrets), masked in every text. The
    /// URL of the request at hand and the current access token are masked too.
    fn secrets(&self) -> Vec<&Secret>;

    /// How to get an access token, for robots that send with one (WeCom application
    /// messages). The default: none needed.
    fn authorize(&self) -> Option<&dyn Authorize> {
        None
    }
}

/// The access-token step of a robot that has one.
pub trait Authorize {
    /// The request that fetches a token.
    fn request(&self) -> Request;
    /// The token in the answer to [`Authorize::request`], and how long to keep it.
    fn token(&self, answer: &Answer) -> Result<Token, ChannelError>;
    /// True when an answer to a send says the token was refused (invalid, expired,
    /// revoked): the layer forgets it, fetches a new one and sends once more.
    fn refused(&self, answer: &Answer) -> bool;
}

/// An access token and how long it may be used before fetching a new one.
pub struct Token {
    pub value: Secret,
    pub keep: Duration,
}

/// An HTTP method the robots use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One HTTP request. Its URL may carry secrets (keys, tokens): it is masked in every text.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// Content type and body.
    pub body: Option<(&'static str, String)>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &Secret::MASK)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A POST of `body` with `content_type` to `url`.
    pub fn post(url: impl Into<String>, content_type: &'static str, body: String) -> Request {
        Request {
            method: Method::Post,
            url: url.into(),
            headers: Vec::new(),
            body: Some((content_type, body)),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }
}

/// A part that is one JSON body, signed (if at all) in the URL or headers at each
/// attempt. Stored in the outbox as `{"body": …}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Body {
    pub body: String,
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.body)
    }
}

/// An HTTP answer: status, `Retry-After` (seconds, capped) if any, and the body (at most
/// [`MAX_ANSWER_BYTES`]).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

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

/// A request that failed: a timeout means the provider may have received it
/// (`Unconfirmed`, retried after a longer wait); anything else is retried as usual.
fn send_error(e: &awc::error::SendRequestError, reason: String) -> ChannelError {
    match e {
        awc::error::SendRequestError::Timeout => ChannelError::Unconfirmed { reason },
        _ => ChannelError::Retryable { reason },
    }
}

/// Renders at `budget` and wraps each content into a request body; if any body exceeds
/// `limit` bytes (JSON escaping can grow a text), renders again at a smaller budget.
/// Every body returned is at most `limit` bytes, or the smallest budget is used.
/// The contents may be anything a body is made of: text, or cards
/// ([`crate::render::card::Card`]).
pub fn fit_bodies<T, R, W>(budget: usize, limit: usize, render: R, wrap: W) -> Vec<String>
where
    R: Fn(usize) -> Vec<T>,
    W: Fn(&T, usize, usize) -> String,
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

/// An awc client with our user agent. `!Send`: build it on the channel actor's thread.
fn client(timeout: Duration) -> awc::Client {
    // rustls panics when building a TLS client if it cannot tell which crypto provider to
    // use (none, or both ring and aws-lc-rs compiled in). Pick ring explicitly; an Err only
    // means a provider was installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    awc::Client::builder()
        .timeout(timeout)
        .add_default_header((
            USER_AGENT,
            concat!("powa-sentinel/", env!("CARGO_PKG_VERSION")),
        ))
        .finish()
}

struct Inner<R> {
    robot: R,
    client: awc::Client,
    timeout: Duration,
    /// The access token of a robot with an [`Authorize`] step, and until when to use it.
    token: RefCell<Option<(Secret, Instant)>>,
}

/// Delivers the parts of a [`Robot`]: the one [`Channel`] of every HTTP provider. Holds an
/// awc client (`!Send`): build it on the thread that runs the channel actor.
pub struct HttpChannel<R> {
    inner: Rc<Inner<R>>,
}

impl<R: Robot> HttpChannel<R> {
    /// `timeout` bounds each exchange (request and answer).
    pub fn with_robot(robot: R, timeout: Duration) -> Self {
        HttpChannel {
            inner: Rc::new(Inner {
                robot,
                client: client(timeout),
                timeout,
                token: RefCell::new(None),
            }),
        }
    }
}

impl<R: Robot> Inner<R> {
    /// `text` with the request's URL, the robot's secrets and the current token masked.
    fn redact(&self, text: &str, url: &str) -> String {
        let mut t = if url.is_empty() {
            text.to_string()
        } else {
            text.replace(url, Secret::MASK)
        };
        for s in self.robot.secrets() {
            t = s.redact_in(&t);
        }
        match &*self.token.borrow() {
            Some((tok, _)) => tok.redact_in(&t),
            None => t,
        }
    }

    /// One request and its answer, within the time limit.
    async fn exchange(&self, req: Request) -> Result<Answer, ChannelError> {
        let provider = R::PROVIDER;
        let url = req.url.clone();
        let fut = async {
            let mut r = match req.method {
                Method::Get => self.client.get(&req.url),
                Method::Post => self.client.post(&req.url),
            };
            for (name, value) in req.headers {
                r = r.insert_header((name, value));
            }
            let sent = match req.body {
                Some((content_type, body)) => r
                    .insert_header((CONTENT_TYPE, content_type))
                    .send_body(body),
                None => r.send(),
            };
            let mut resp = sent.await.map_err(|e| {
                send_error(
                    &e,
                    self.redact(&format!("request to {provider} failed: {e}"), &url),
                )
            })?;
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
        match actix_rt::time::timeout(self.timeout, fut).await {
            Err(_) => Err(ChannelError::Unconfirmed {
                reason: format!(
                    "{provider} did not answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            }),
            Ok(r) => r,
        }
    }

    /// The cached token, or a new one. A token request is harmless to repeat, and waits
    /// the same as a send (WeCom asks not to call it often; the actor sends one part at a
    /// time, so one fetch is in flight at most).
    async fn token(&self, auth: &dyn Authorize) -> Result<Secret, ChannelError> {
        if let Some((tok, until)) = &*self.token.borrow() {
            if Instant::now() < *until {
                return Ok(tok.clone());
            }
        }
        let answer = self.exchange(auth.request()).await?;
        let Token { value, keep } = auth.token(&answer)?;
        *self.token.borrow_mut() = Some((value.clone(), Instant::now() + keep));
        Ok(value)
    }

    async fn deliver(&self, part: R::Part) -> Result<(), ChannelError> {
        let Some(auth) = self.robot.authorize() else {
            let answer = self
                .exchange(self.robot.request(&part, Utc::now(), None))
                .await?;
            return self.robot.classify(&answer);
        };
        // A refused token is forgotten and fetched again, and the part sent once more.
        for _ in 0..2 {
            let token = self.token(auth).await?;
            let answer = self
                .exchange(self.robot.request(&part, Utc::now(), Some(&token)))
                .await?;
            if !auth.refused(&answer) {
                return self.robot.classify(&answer);
            }
            *self.token.borrow_mut() = None;
        }
        Err(ChannelError::Retryable {
            reason: format!("{} refused a freshly fetched access token", R::PROVIDER),
        })
    }
}

impl<R: Robot> Channel for HttpChannel<R> {
    type Part = R::Part;

    fn render(&self, n: &Notification) -> Result<Vec<R::Part>, ChannelError> {
        self.inner.robot.render(n, None)
    }

    fn render_digest(
        &self,
        n: &Notification,
        max_parts: usize,
    ) -> Result<Vec<R::Part>, ChannelError> {
        self.inner.robot.render(n, Some(max_parts))
    }

    fn send(&self, part: R::Part) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let inner = Rc::clone(&self.inner);
        Box::pin(async move { inner.deliver(part).await })
    }
}

/// What the classification tests of every provider ask of a verdict.
#[cfg(test)]
pub(crate) mod verdict {
    use std::time::Duration;

    use sentinel_actors::ChannelError;

    type Verdict = Result<(), ChannelError>;

    pub fn retryable(v: &Verdict) -> bool {
        matches!(v, Err(ChannelError::Retryable { .. }))
    }

    pub fn permanent(v: &Verdict) -> bool {
        matches!(v, Err(ChannelError::Permanent { .. }))
    }

    /// Rate limited: the destination is held for `d`.
    pub fn paused_for(v: &Verdict, d: Duration) -> bool {
        matches!(v, Err(ChannelError::RateLimited { retry_after, .. }) if *retry_after == d)
    }

    /// Permanent, the reason naming `code` and not quoting `hidden` (what the provider
    /// said besides its code: our IP, an echo).
    pub fn permanent_naming(v: Verdict, code: &str, hidden: &str) {
        match v {
            Err(ChannelError::Permanent { reason }) => {
                assert!(reason.contains(code), "{reason}");
                assert!(
                    !reason.contains(hidden),
                    "the answer is not quoted: {reason}"
                );
            }
            other => panic!("{code}: {other:?}"),
        }
    }
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

    /// A robot with a key in its URL and a signing secret.
    struct Dummy {
        key: Secret,
        signing: Secret,
    }

    impl Robot for Dummy {
        type Part = String;
        const PROVIDER: &'static str = "Dummy";
        fn render(&self, _: &Notification, _: Option<usize>) -> Rendered<String> {
            Ok(Vec::new())
        }
        fn request(&self, part: &String, _: DateTime<Utc>, _: Option<&Secret>) -> Request {
            Request::post(
                format!("http://h/send?key={}", self.key.expose()),
                JSON,
                part.clone(),
            )
        }
        fn classify(&self, _: &Answer) -> Result<(), ChannelError> {
            Ok(())
        }
        fn secrets(&self) -> Vec<&Secret> {
            vec![&self.key, &self.signing]
        }
    }

    #[actix_rt::test]
    async fn error_texts_lose_the_url_the_secrets_and_the_token() {
        let ch = HttpChannel::with_robot(
            Dummy {
                key: Secret::new("K3Y"),
                signing: Secret::new("S1GN"),
            },
            Duration::from_secs(1),
        );
        *ch.inner.token.borrow_mut() = Some((Secret::new("T0KEN"), Instant::now()));
        let text = ch.inner.redact(
            "failed: http://h/send?key=K3Y (K3Y, S1GN, T0KEN) and http://h/send?key=K3Y",
            "http://h/send?key=K3Y",
        );
        assert_eq!(
            text,
            "failed: <redacted> (<redacted>, <redacted>, <redacted>) and <redacted>"
        );
    }

    #[test]
    fn requests_do_not_show_their_url() {
        let r = Request::post("https://h/x?key=S3CRET", JSON, "{}".into()).header("X-A", "1");
        let d = format!("{r:?}");
        assert!(!d.contains("S3CRET") && d.contains("X-A"), "{d}");
    }
}
