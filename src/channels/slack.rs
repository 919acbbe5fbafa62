//! Slack incoming webhook.
//!
//! `POST https://hooks.slack.com/services/T…/B…/…` with `{"text": …, "mrkdwn": false}`.
//! The URL is the only credential (nothing to sign), so it is a [`Secret`]. Plain text
//! with `mrkdwn` off: Slack's mrkdwn would turn the `*` and `_` of SQL into emphasis.
//!
//! Answers are HTTP statuses with a short text body: 200 `ok`; 400 `invalid_payload` /
//! `no_text` / `user_not_found`, 403 `action_prohibited`, 404 `channel_not_found`, 410
//! `channel_is_archived` are permanent; 429 (with `Retry-After`) and 5xx (`rollup_error`)
//! are transient. Slack truncates `text` after 40 000 characters; messages are aimed at
//! [`TEXT_BUDGET`] bytes (at most as many characters). Rate: about one message per second
//! per webhook with short bursts; the pacer counts in sixths of a minute (see
//! [`pacer_quota`]).

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use sentinel_actors::channel::Channel;
use sentinel_actors::{ChannelError, Notification};

use super::post;
use super::wecom::DEFAULT_TIMEOUT;
use super::ChannelSettings;
use crate::problem::Problem;
use crate::render::{self, RenderOptions, Style};
use crate::secret::Secret;

/// Slack truncates `text` after this many characters.
pub const TEXT_LIMIT_CHARS: usize = 40_000;
/// What one message's text is aimed at, in bytes (a byte budget bounds the characters).
pub const TEXT_BUDGET: usize = 12_000;
/// Largest request body sent (JSON escaping included).
pub const BODY_BUDGET: usize = 30_000;
/// About one message per second: 60 per minute.
pub const MAX_PER_MINUTE: u32 = 60;
pub const DEFAULT_MAX_PER_MINUTE: u32 = MAX_PER_MINUTE;

/// Checks the slack fields (called by [`ChannelSettings::validate`]).
pub(super) fn validate(s: &ChannelSettings, path: &str, problems: &mut Vec<Problem>) {
    let key = |field: &str| format!("{path}.{field}");
    match &s.webhook_url {
        None => problems.push(Problem::new(
            key("webhook_url"),
            "required when type = \"slack\": set the incoming webhook URL \
             (https://hooks.slack.com/services/…)",
        )),
        Some(u) => {
            if check_url(u.expose()).is_err() {
                problems.push(Problem::new(
                    key("webhook_url"),
                    "is not a valid http(s) URL: copy the whole incoming webhook URL \
                     (https://hooks.slack.com/services/…)",
                ));
            }
        }
    }
    super::validate_timeout(s, path, problems);
    super::validate_max(s, path, MAX_PER_MINUTE, "Slack", problems);
}

fn check_url(u: &str) -> Result<url::Url, ()> {
    let parsed = url::Url::parse(u.trim()).map_err(|_| ())?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() && parsed.path().len() > 1 => Ok(parsed),
        _ => Err(()),
    }
}

/// The pacer's quota: `max_per_minute / 6` in any rolling sixth of `rate_window`, so a
/// burst stays at a couple of messages and the pace near one per second.
pub fn pacer_quota(max_per_minute: u32, rate_window: Duration) -> (u32, Duration) {
    ((max_per_minute / 6).max(1), rate_window / 6)
}

/// Everything the channel needs, resolved.
#[derive(Clone, Debug)]
pub struct SlackSettings {
    pub url: Secret,
    pub timeout: Duration,
}

impl SlackSettings {
    pub fn from_settings(s: &ChannelSettings) -> Result<Self, String> {
        let url = s.webhook_url.as_ref().ok_or("webhook_url is required")?;
        let parsed = check_url(url.expose()).map_err(|_| "webhook_url is not a valid URL")?;
        Ok(SlackSettings {
            url: Secret::new(parsed.as_str()),
            timeout: s.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// Identity of the webhook for pacing: its URL. A secret.
    pub(crate) fn destination(&self) -> &str {
        self.url.expose()
    }
}

/// One message: the JSON body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlackPart {
    pub body: String,
}

impl std::fmt::Display for SlackPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body)
    }
}

/// The request body of one message.
pub fn message_body(content: &str) -> String {
    serde_json::json!({"text": content, "mrkdwn": false}).to_string()
}

/// The parts for `n`: text messages within [`TEXT_BUDGET`] and [`BODY_BUDGET`]; a digest
/// of at most `max_parts` when given.
pub fn parts(n: &Notification, opts: &RenderOptions, max_parts: Option<usize>) -> Vec<SlackPart> {
    let render = |budget: usize| match max_parts {
        None => render::render(n, Style::Text, budget, opts),
        Some(m) => render::render_digest(n, Style::Text, budget, opts, m),
    };
    post::fit_bodies(TEXT_BUDGET, BODY_BUDGET, render, |c, _, _| message_body(c))
        .into_iter()
        .map(|body| SlackPart { body })
        .collect()
}

/// What Slack's answer means (status first; the text body only names the error).
pub fn classify(a: &post::Answer) -> Result<(), ChannelError> {
    if (200..300).contains(&a.status) {
        return Ok(());
    }
    let token = post::short_token(&a.body).unwrap_or("no error token");
    if let Some(e) = post::transient_status("Slack", a) {
        return Err(match e {
            ChannelError::RateLimited {
                reason,
                retry_after,
            } => ChannelError::RateLimited {
                reason: format!("{reason} ({token})"),
                retry_after,
            },
            ChannelError::Retryable { reason } => ChannelError::Retryable {
                reason: format!("{reason} ({token})"),
            },
            other => other,
        });
    }
    let hint = match token {
        "invalid_payload" | "no_text" => "Slack refused the message",
        "action_prohibited" => "the workspace forbids posting with this webhook",
        "channel_not_found" | "channel_is_archived" | "no_service" | "no_service_id" => {
            "the webhook's channel is gone or the webhook was revoked: check webhook_url"
        }
        _ => "check webhook_url",
    };
    Err(ChannelError::Permanent {
        reason: format!("Slack answered HTTP {} {token}: {hint}", a.status),
    })
}

struct Inner {
    client: awc::Client,
    hook: SlackSettings,
    opts: RenderOptions,
}

/// Posts notifications to one Slack incoming webhook. Holds an awc client (`!Send`).
pub struct SlackChannel {
    inner: Rc<Inner>,
}

impl SlackChannel {
    pub fn new(hook: SlackSettings, opts: RenderOptions) -> Self {
        let client = post::client(hook.timeout);
        SlackChannel {
            inner: Rc::new(Inner { client, hook, opts }),
        }
    }
}

impl Channel for SlackChannel {
    type Part = SlackPart;

    fn render(&self, n: &Notification) -> Result<Vec<SlackPart>, ChannelError> {
        Ok(parts(n, &self.inner.opts, None))
    }

    fn render_digest(
        &self,
        n: &Notification,
        max_parts: usize,
    ) -> Result<Vec<SlackPart>, ChannelError> {
        Ok(parts(n, &self.inner.opts, Some(max_parts)))
    }

    fn send(&self, part: SlackPart) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        let inner = Rc::clone(&self.inner);
        Box::pin(async move {
            let hook = &inner.hook;
            let answer = post::post_json(
                &inner.client,
                "Slack",
                hook.url.expose(),
                part.body,
                hook.timeout,
                &[&hook.url],
            )
            .await?;
            classify(&answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, ra: Option<u64>) -> post::Answer {
        post::Answer::of(status, body, ra.map(Duration::from_secs))
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(&answer(200, "ok", None)), Ok(()));
        assert!(matches!(
            classify(&answer(429, "rate_limited", Some(2))),
            Err(ChannelError::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(&answer(500, "rollup_error", None)),
            Err(ChannelError::Retryable { .. })
        ));
        for (s, b) in [
            (400, "invalid_payload"),
            (400, "user_not_found"),
            (403, "action_prohibited"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
        ] {
            match classify(&answer(s, b, None)) {
                Err(ChannelError::Permanent { reason }) => assert!(reason.contains(b), "{reason}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        match classify(&answer(400, "<html>secret echo</html>", None)) {
            Err(ChannelError::Permanent { reason }) => assert!(!reason.contains("secret")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pacer_quota_is_about_one_per_second() {
        let (max, window) = pacer_quota(MAX_PER_MINUTE, Duration::from_secs(60));
        let p = sentinel_actors::throttle::Pacer::new(max, window);
        assert!(p.worst_case_in(Duration::from_secs(1)) <= 2);
        assert!(p.worst_case_in(Duration::from_secs(60)) <= MAX_PER_MINUTE);
    }

    #[test]
    fn body_is_plain_text() {
        let v: serde_json::Value = serde_json::from_str(&message_body("a *b* _c_")).unwrap();
        assert_eq!(v, serde_json::json!({"text": "a *b* _c_", "mrkdwn": false}));
    }
}
