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

use actix::Recipient;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use sentinel_actors::channel::Deliver;
use sentinel_actors::{ChannelError, Notification};

use super::check;
use super::robot::{self, Answer, HttpChannel, Rendered, Request, Robot, JSON_UTF8};
use super::{ChannelType, Starter, Takes};
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
/// What the limit of `max_per_minute` is, in words.
const LIMIT: &str = "Slack accepts at most 60 messages per minute per bot";

/// `[channels.<name>] type = "slack"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackSettings {
    /// The incoming webhook's URL (`https://hooks.slack.com/services/…`); required, a
    /// secret (it is the only credential).
    pub webhook_url: Option<Secret>,
}

/// A checked Slack channel.
#[derive(Debug)]
pub struct Slack {
    url: Secret,
}

impl ChannelType for Slack {
    const TYPE: &'static str = "slack";
    const SECRET_KEYS: &'static [&'static str] = &["webhook_url"];
    /// About one per second (see [`Pacing::in_sixths`]).
    const TAKES: Takes = Takes::robot(MAX_PER_MINUTE, DEFAULT_MAX_PER_MINUTE, LIMIT);
    type Settings = SlackSettings;

    fn check(s: SlackSettings) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let url = check::url_field(
            "webhook_url",
            s.webhook_url.as_ref(),
            "required when type = \"slack\": set the incoming webhook URL \
             (https://hooks.slack.com/services/…)",
            |u| {
                check::http_url(u, true).ok_or_else(|| {
                    "is not a valid http(s) URL: copy the whole incoming webhook URL \
                     (https://hooks.slack.com/services/…)"
                        .to_string()
                })
            },
            &mut problems,
        );
        url.map(|url| Slack { url }).ok_or(problems)
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.url]
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let pacing = start.pacing(self.url.expose()).in_sixths();
        let robot = SlackRobot {
            url: self.url.clone(),
            opts: start.render_options(),
        };
        let ch = SlackChannel::with_robot(robot, start.timeout());
        Ok(start.spawn(ch, Some(pacing)))
    }
}

/// One message: the JSON body.
pub type SlackPart = robot::Body;

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
    robot::fit_bodies(TEXT_BUDGET, BODY_BUDGET, render, |c, _, _| message_body(c))
        .into_iter()
        .map(|body| SlackPart { body })
        .collect()
}

/// What Slack's answer means (status first; the text body only names the error).
pub fn classify(a: &Answer) -> Result<(), ChannelError> {
    if (200..300).contains(&a.status) {
        return Ok(());
    }
    let token = short_token(&a.body).unwrap_or("no error token");
    if let Some(e) = robot::transient_status("Slack", a) {
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

/// The provider's short error token (e.g. `invalid_payload`) if the body is one:
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

/// One incoming webhook: its URL and rules, for [`HttpChannel`].
pub struct SlackRobot {
    url: Secret,
    opts: RenderOptions,
}

/// Posts notifications to one Slack incoming webhook. Holds an awc client (`!Send`).
pub type SlackChannel = HttpChannel<SlackRobot>;

impl Robot for SlackRobot {
    type Part = SlackPart;

    const PROVIDER: &'static str = "Slack";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<SlackPart> {
        Ok(parts(n, &self.opts, max_parts))
    }

    fn request(&self, part: &SlackPart, _now: DateTime<Utc>, _token: Option<&Secret>) -> Request {
        Request::post(self.url.expose(), JSON_UTF8, part.body.clone())
    }

    fn classify(&self, answer: &Answer) -> Result<(), ChannelError> {
        classify(answer)
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.url]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::channels::robot::verdict::*;

    fn answer(status: u16, body: &str, ra: Option<u64>) -> Answer {
        Answer::of(status, body, ra.map(Duration::from_secs))
    }

    #[test]
    fn only_short_tokens_are_quoted() {
        assert_eq!(short_token(b"invalid_payload\n"), Some("invalid_payload"));
        assert_eq!(short_token(b"<html>x</html>"), None);
        assert_eq!(short_token(b""), None);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(&answer(200, "ok", None)), Ok(()));
        let limited = classify(&answer(429, "rate_limited", Some(2)));
        assert!(paused_for(&limited, Duration::from_secs(2)));
        assert!(retryable(&classify(&answer(500, "rollup_error", None))));
        for (s, b) in [
            (400, "invalid_payload"),
            (400, "user_not_found"),
            (403, "action_prohibited"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
        ] {
            permanent_naming(classify(&answer(s, b, None)), b, "<html>");
        }
        let echo = classify(&answer(400, "<html>secret echo</html>", None));
        permanent_naming(echo, "400", "secret");
    }

    #[test]
    fn body_is_plain_text() {
        let v: serde_json::Value = serde_json::from_str(&message_body("a *b* _c_")).unwrap();
        assert_eq!(v, serde_json::json!({"text": "a *b* _c_", "mrkdwn": false}));
    }
}
