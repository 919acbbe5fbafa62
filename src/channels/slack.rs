//! Slack incoming webhook.
//!
//! `POST https://hooks.slack.com/services/T…/B…/…`. The URL is the only credential
//! (nothing to sign), so it is a [`Secret`].
//!
//! By default (`format = "blocks"`) a message is Block Kit: a `header` block (the
//! report's title), a `section` with the counts, one `section` per entry (`mrkdwn`, see
//! `render::mrkdwn` for its escaping), each open entry followed by an `actions` block
//! whose buttons open its Acknowledge and Snooze links, and a "Full report" button last,
//! when action links are on (`[http] public_url`); `text` carries the title and counts as
//! the notification's fallback. Slack's limits are kept: at most [`MAX_BLOCKS`] blocks
//! per message ([`BLOCK_ENTRIES`] entries), [`SECTION_CHARS`] characters per section
//! text, [`HEADER_CHARS`] per header; more entries make more messages, or a digest when
//! the quota says so. `format = "text"` sends `{"text": …, "mrkdwn": false}` instead:
//! plain text, since Slack's mrkdwn would turn the `*` and `_` of SQL into emphasis.
//!
//! Even with `mrkdwn` off Slack reads `<!channel>`, `<!here>`, `<@U…>`,
//! `<!subteam^S…>` and `<http://x|label>` in `text`. A query text, table name or any
//! other PoWA-sourced string must never mention anyone or make a link, so the rendered
//! text (of either format) is escaped the way Slack documents (`&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`,
//! shown as typed; see [`escape`]); only a route's `mention_userids` become mentions, on
//! the first message ([`mention_line`]). Mobile numbers cannot be mentioned: skipped.
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
use crate::render::card::{self, Card, CardLimits};
use crate::render::{self, Lang, RenderOptions, Style};
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
    /// `"blocks"` (default: Block Kit, one section per entry, buttons for the action
    /// links) or `"text"` (plain text).
    pub format: Option<String>,
}

/// What a Slack message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Blocks,
    Text,
}

/// A checked Slack channel.
#[derive(Debug)]
pub struct Slack {
    url: Secret,
    format: Format,
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
        let format = match s.format.as_deref() {
            None | Some("blocks") => Format::Blocks,
            Some("text") => Format::Text,
            Some(other) => {
                problems.push(Problem::new(
                    "format",
                    format!(
                        "{other:?} is not a Slack format: use \"blocks\" (Block Kit, the \
                         default) or \"text\" (plain text)"
                    ),
                ));
                Format::Blocks
            }
        };
        match url {
            Some(url) if problems.is_empty() => Ok(Slack { url, format }),
            _ => Err(problems),
        }
    }

    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.url]
    }

    fn start(&self, start: &mut Starter<'_>) -> anyhow::Result<Recipient<Deliver>> {
        let pacing = start.pacing(self.url.expose()).in_sixths();
        let robot = SlackRobot {
            url: self.url.clone(),
            format: self.format,
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

/// `text` escaped as Slack documents for message text: `&` → `&amp;`, `<` → `&lt;`,
/// `>` → `&gt;`. Slack shows the characters as typed and reads no mention, channel
/// alert or link in them. Lengths grow (up to 5 bytes for 1): applied before the bodies
/// are measured.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most this many mentions per notification.
pub const MAX_MENTIONS: usize = 50;

/// The mention syntax of one route user id, or `None` when Slack would not read it as
/// one (it is then skipped): `channel` and `all` (also WeCom's `@all`, for a route that
/// serves both) → `<!channel>`, `here` → `<!here>`; a user group id (`S…`) →
/// `<!subteam^S…>`; a user id (`U…`, `W…`) → `<@U…>`. Ids are uppercase ASCII letters
/// and digits, at most 64 bytes.
pub fn mention(id: &str) -> Option<String> {
    match id.trim() {
        "channel" | "all" | "@all" => return Some("<!channel>".into()),
        "here" => return Some("<!here>".into()),
        _ => {}
    }
    let id = id.trim();
    let well_formed = (2..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    match id.as_bytes().first() {
        Some(b'S') if well_formed => Some(format!("<!subteam^{id}>")),
        Some(b'U' | b'W') if well_formed => Some(format!("<@{id}>")),
        _ => None,
    }
}

/// The mentions of a notification, space-separated: its route user ids that Slack reads
/// (see [`mention`]), in order, without duplicates, at most [`MAX_MENTIONS`]. Empty when
/// there is no one to mention.
pub fn mention_line(n: &Notification) -> String {
    let mut out: Vec<String> = Vec::new();
    for m in n.mentions.userids.iter().filter_map(|id| mention(id)) {
        if !out.contains(&m) && out.len() < MAX_MENTIONS {
            out.push(m);
        }
    }
    out.join(" ")
}

/// The parts for `n`: text messages aimed at [`TEXT_BUDGET`] bytes before escaping, each
/// body within [`BODY_BUDGET`] as sent (escaping and mentions included); a digest of at
/// most `max_parts` when given. The first message gets the route's mentions on its last
/// line, for which its text budget keeps room.
pub fn parts(n: &Notification, opts: &RenderOptions, max_parts: Option<usize>) -> Vec<SlackPart> {
    let render = |budget: usize| {
        let contents = match max_parts {
            None => render::render(n, Style::Text, budget, opts),
            Some(m) => render::render_digest(n, Style::Text, budget, opts, m),
        };
        contents.iter().map(|c| escape(c)).collect()
    };
    let line = mention_line(n);
    let budget = if line.is_empty() {
        TEXT_BUDGET
    } else {
        TEXT_BUDGET - line.len() - 1
    };
    robot::fit_bodies(budget, BODY_BUDGET, render, |c, k, _| {
        if k == 0 && !line.is_empty() {
            message_body(&format!("{c}\n{line}"))
        } else {
            message_body(c)
        }
    })
    .into_iter()
    .map(|body| SlackPart { body })
    .collect()
}

/// Most blocks in one message (Slack's limit).
pub const MAX_BLOCKS: usize = 50;
/// Longest text of a `section` block, in characters (Slack's limit).
pub const SECTION_CHARS: usize = 3000;
/// Longest text of a `header` block, in characters (Slack's limit).
pub const HEADER_CHARS: usize = 150;
/// Longest text of a button, in characters (Slack's limit).
pub const BUTTON_CHARS: usize = 75;
/// Entries per message: each takes a section and an actions block; the header, the
/// counts, the "+N more" block, the "Full report" button and the mentions take five.
pub const BLOCK_ENTRIES: usize = (MAX_BLOCKS - 5) / 2;
/// What one entry's section is held to, in bytes as sent (escaping included): a byte
/// budget bounds the characters, with room to spare.
const SECTION_BUDGET: usize = SECTION_CHARS - 100;
/// What one entry costs besides its text: its section and its actions block with two
/// buttons (their URLs are counted apart).
const BLOCK_ENTRY_OVERHEAD: usize = 260;

/// `s` cut to at most `max` characters, "…" included.
fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if s.chars().count() > max => format!("{}…", &s[..cut]),
        _ => s.to_string(),
    }
}

fn section(text: &str) -> serde_json::Value {
    serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn button(label: &str, url: &str, primary: bool) -> serde_json::Value {
    let mut b = serde_json::json!({
        "type": "button",
        "text": {"type": "plain_text", "text": cut_chars(label, BUTTON_CHARS)},
        "url": url,
    });
    if primary {
        b["style"] = "primary".into();
    }
    b
}

/// The body of message `c`: its blocks, and `text` as the notification's fallback (the
/// title and counts). `mentions` (a [`mention_line`]) ends both when not empty.
pub fn blocks_body(c: &Card, lang: Lang, mentions: &str) -> String {
    let b = card::buttons(lang);
    let mut blocks = vec![serde_json::json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut_chars(&c.title, HEADER_CHARS), "emoji": true},
    })];
    if !c.summary.is_empty() {
        blocks.push(section(&c.summary));
    }
    for e in &c.entries {
        blocks.push(section(&e.text));
        if let Some((ack, snooze)) = &e.actions {
            blocks.push(serde_json::json!({"type": "actions", "elements": [
                button(b.acknowledge, ack, true),
                button(b.snooze, snooze, false),
            ]}));
        }
    }
    if let Some(more) = &c.more {
        blocks.push(section(more));
    }
    if let Some(url) = &c.report {
        blocks.push(serde_json::json!({"type": "actions", "elements": [
            button(b.full_report, url, false),
        ]}));
    }
    let mut fallback = format!("{}\n{}", escape(&c.title), c.summary);
    if !mentions.is_empty() {
        blocks.push(section(mentions));
        fallback.push('\n');
        fallback.push_str(mentions);
    }
    serde_json::json!({"text": fallback, "blocks": blocks}).to_string()
}

/// The parts for `n` as Block Kit messages within Slack's limits (see the module's
/// documentation) and [`BODY_BUDGET`]; a digest of at most `max_parts` when given. The
/// first message ends with the route's mentions.
pub fn block_parts(
    n: &Notification,
    opts: &RenderOptions,
    max_parts: Option<usize>,
) -> Vec<SlackPart> {
    let line = mention_line(n);
    let render = |budget: usize| {
        let limits = CardLimits {
            part: budget,
            entry: SECTION_BUDGET,
            entries: BLOCK_ENTRIES,
            overhead: BLOCK_ENTRY_OVERHEAD,
        };
        card::cards(n, Style::Mrkdwn, limits, opts, max_parts)
    };
    robot::fit_bodies(TEXT_BUDGET, BODY_BUDGET, render, |c, k, _| {
        blocks_body(c, opts.lang, if k == 0 { &line } else { "" })
    })
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
        "invalid_payload" | "no_text" | "invalid_blocks" | "invalid_blocks_format" => {
            "Slack refused the message"
        }
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
    format: Format,
    opts: RenderOptions,
}

/// Posts notifications to one Slack incoming webhook. Holds an awc client (`!Send`).
pub type SlackChannel = HttpChannel<SlackRobot>;

impl Robot for SlackRobot {
    type Part = SlackPart;

    const PROVIDER: &'static str = "Slack";

    fn render(&self, n: &Notification, max_parts: Option<usize>) -> Rendered<SlackPart> {
        Ok(match self.format {
            Format::Blocks => block_parts(n, &self.opts, max_parts),
            Format::Text => parts(n, &self.opts, max_parts),
        })
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

    /// What a query text could try.
    const HOSTILE_SQL: &str =
        r#"SELECT '<at user_id="all"></at>' , '<!channel>' , '<@U123>' , 'a & b'"#;

    /// Enough insights carrying [`HOSTILE_SQL`] to be split, with `userids` to mention.
    fn hostile(userids: &[&str]) -> Notification {
        use crate::render::fixture;
        let mut n = fixture::notification(
            (0..80)
                .map(|k| fixture::slow_query(k, HOSTILE_SQL))
                .collect(),
        );
        n.mentions = sentinel_actors::message::Mentions {
            userids: userids.iter().map(|s| s.to_string()).collect(),
            mobiles: vec!["13800000000".into()],
        };
        n
    }

    fn text_of(p: &SlackPart) -> String {
        let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        v["text"].as_str().unwrap().to_string()
    }

    #[test]
    fn query_texts_cannot_mention_anyone() {
        let ps = parts(&hostile(&[]), &RenderOptions::default(), None);
        assert!(ps.len() > 1);
        for p in &ps {
            let text = text_of(p);
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
            assert!(p.body.len() <= BODY_BUDGET, "{}", p.body.len());
        }
        // Shown as typed once Slack unescapes it.
        let first = text_of(&ps[0]);
        assert!(
            first.contains("'&lt;!channel&gt;' , '&lt;@U123&gt;' , 'a &amp; b'"),
            "{first}"
        );
        assert_eq!(escape("a&b <@U1> &amp;"), "a&amp;b &lt;@U1&gt; &amp;amp;");
    }

    #[test]
    fn route_mentions_go_in_the_first_part_only() {
        let ids = [
            "U024BE7LH",
            "u024be7lh",
            "W0123ABC",
            "SAZ94GDB8",
            "here",
            "all",
            "channel",
            "@all",
            "U024BE7LH",
            "U1>|<!everyone",
            "zhangsan",
            "X123",
        ];
        let ps = parts(&hostile(&ids), &RenderOptions::default(), None);
        assert!(ps.len() > 1);
        let first = text_of(&ps[0]);
        let line = "<@U024BE7LH> <@W0123ABC> <!subteam^SAZ94GDB8> <!here> <!channel>";
        assert!(first.ends_with(&format!("\n{line}")), "{first}");
        assert_eq!(first.matches('<').count(), 5, "{first}");
        for p in &ps[1..] {
            assert!(!text_of(p).contains('<'));
        }
        for p in &ps {
            assert!(p.body.len() <= BODY_BUDGET, "{}", p.body.len());
        }
        let ds = parts(&hostile(&ids), &RenderOptions::default(), Some(2));
        assert!(text_of(&ds[0]).ends_with(line));
        assert!(ds[1..].iter().all(|p| !text_of(p).contains('<')));
    }

    #[test]
    fn bodies_are_measured_as_sent() {
        // A query of nothing but '&' grows the most when made safe: the budget must see it.
        let sql = "&".repeat(3000);
        let mut n = hostile(&["all"]);
        n.insights = std::sync::Arc::new(
            (0..40)
                .map(|k| crate::render::fixture::slow_query(k, &sql))
                .collect(),
        );
        let opts = RenderOptions {
            sql_preview_chars: 2000,
            ..RenderOptions::default()
        };
        let ps = parts(&n, &opts, None);
        assert!(ps.len() > 2);
        for p in &ps {
            assert!(p.body.len() <= BODY_BUDGET, "{}", p.body.len());
        }
    }

    #[test]
    fn at_most_fifty_are_mentioned_within_the_budget() {
        let ids: Vec<String> = (0..80).map(|k| format!("S{k:0>63}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ps = parts(&hostile(&ids), &RenderOptions::default(), None);
        assert_eq!(text_of(&ps[0]).matches("<!subteam^").count(), MAX_MENTIONS);
        assert!(ps.iter().all(|p| p.body.len() <= BODY_BUDGET));
        assert_eq!(mention(&format!("U{}", "1".repeat(64))), None);
        assert_eq!(mention("U"), None);
    }

    fn links() -> RenderOptions {
        RenderOptions {
            actions: Some(std::sync::Arc::new(crate::actions::Links::new(
                "https://sentinel.example.org",
                b"k".repeat(32),
                crate::actions::DEFAULT_TTL,
            ))),
            ..RenderOptions::default()
        }
    }

    fn blocks(p: &SlackPart) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        v["blocks"].as_array().unwrap().clone()
    }

    fn sections(p: &SlackPart) -> Vec<String> {
        blocks(p)
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn sections_keep_powa_text_inert_in_mrkdwn() {
        use crate::render::fixture;
        let mut i = fixture::slow_query(1, HOSTILE_SQL);
        i.title = "<!here> *b* _i_ ~s~ `c` <https://e.vil|x> @channel a_b & >q".into();
        let n = fixture::notification(vec![i]);
        let p = &block_parts(&n, &RenderOptions::default(), None)[0];
        for t in sections(p) {
            assert!(!t.contains('<') && !t.contains('>'), "{t}");
            assert!(!t.contains("@channel") && !t.contains("_i_"), "{t}");
            assert!(!t.contains(" & "), "{t}");
        }
        let all = sections(p).join("\n");
        // The title: look-alikes, Slack's entities, a_b as it is.
        assert!(
            all.contains("*‹!here› ∗b∗ ＿i＿ ∼s∼ ʼcʼ ‹https://e.vil│x› ＠channel a_b &amp; ›q*"),
            "{all}"
        );
        // The query, in code: entities only, tag-like brackets as look-alikes.
        assert!(
            all.contains("'‹!channel&gt;' , '‹@U123&gt;' , 'a &amp; b'"),
            "{all}"
        );
        let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        assert!(v["text"]
            .as_str()
            .unwrap()
            .starts_with("PoWA Sentinel report"));
    }

    #[test]
    fn block_messages_keep_slacks_limits_and_carry_buttons_and_mentions() {
        use crate::render::fixture;
        let sql = "SELECT x FROM t WHERE y = $1 AND z < 3 & 4 ".repeat(200);
        let n0 = fixture::notification((0..70).map(|k| fixture::slow_query(k, &sql)).collect());
        let mut n = n0.clone();
        n.mentions.userids = vec!["U024BE7LH".into(), "here".into()];
        let opts = RenderOptions {
            sql_preview_chars: 2000,
            ..links()
        };
        let ps = block_parts(&n, &opts, None);
        assert!(ps.len() >= 70 / BLOCK_ENTRIES, "{}", ps.len());
        let mut acks = 0;
        for (k, p) in ps.iter().enumerate() {
            assert!(p.body.len() <= BODY_BUDGET, "{}", p.body.len());
            let bs = blocks(p);
            assert!(bs.len() <= MAX_BLOCKS, "{}", bs.len());
            assert_eq!(bs[0]["type"], "header");
            assert!(bs[0]["text"]["text"].as_str().unwrap().chars().count() <= HEADER_CHARS);
            for t in sections(p) {
                assert!(t.chars().count() <= SECTION_CHARS, "{}", t.chars().count());
            }
            for b in bs.iter().filter(|b| b["type"] == "actions") {
                for e in b["elements"].as_array().unwrap() {
                    assert_eq!(e["type"], "button");
                    assert!(e["url"]
                        .as_str()
                        .unwrap()
                        .starts_with("https://sentinel.example.org/a/"));
                    acks += usize::from(e["text"]["text"] == "Acknowledge");
                }
            }
            let mentioned = sections(p)
                .iter()
                .filter(|t| t.contains("<@U024BE7LH>"))
                .count();
            assert_eq!(mentioned, usize::from(k == 0));
        }
        assert_eq!(acks, 70);
        let first: serde_json::Value = serde_json::from_str(&ps[0].body).unwrap();
        assert!(first["text"]
            .as_str()
            .unwrap()
            .ends_with("\n<@U024BE7LH> <!here>"));
        // A digest: at most the quota, the rest counted.
        let ds = block_parts(&n0, &opts, Some(2));
        assert_eq!(ds.len(), 2);
        assert!(sections(&ds[1])
            .iter()
            .any(|t| t.contains("more not shown in full")));
    }

    #[test]
    fn the_format_is_blocks_or_text() {
        use crate::channels::settings::testing::problems_at;
        let t = |f: &str| {
            serde_json::json!({"type": "slack", "format": f,
                "webhook_url": "https://hooks.slack.com/services/T/B/x"})
        };
        assert!(problems_at("channels.s", t("blocks")).is_empty());
        assert!(problems_at("channels.s", t("text")).is_empty());
        let p = problems_at("channels.s", t("attachments"));
        assert!(p.iter().any(|p| p.key == "channels.s.format"), "{p:?}");
    }

    #[test]
    fn body_is_plain_text() {
        let v: serde_json::Value = serde_json::from_str(&message_body("a *b* _c_")).unwrap();
        assert_eq!(v, serde_json::json!({"text": "a *b* _c_", "mrkdwn": false}));
    }
}
