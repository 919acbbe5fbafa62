//! A chat robot reached by one webhook URL that signs with an optional secret (Feishu,
//! DingTalk): the table both kinds take, its check, and how both start. Each kind checks
//! the URL and signs its own way.

use std::path::PathBuf;
use std::time::Duration;

use actix::Recipient;
use serde::Deserialize;

use sentinel_actors::channel::Deliver;

use super::check::{self, SecretSource};
use super::robot::{HttpChannel, Robot};
use super::{Pacing, Starter};
use crate::problem::Problem;
use crate::render::RenderOptions;
use crate::secret::Secret;

/// The table of a chat robot reached by one webhook URL that signs with an optional
/// secret (Feishu, DingTalk: each kind checks the URL its way).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignedHookSettings {
    /// The robot's webhook URL, copied whole from its settings; required, a secret (its
    /// token is the robot's credential).
    pub webhook_url: Option<Secret>,
    /// The robot's signing secret (Feishu: "signature verification"; DingTalk: "加签",
    /// starting with `SEC`); a secret. Optional: without it messages are not signed. Or
    /// `secret_file`, or `POWA_SENTINEL__CHANNELS__<NAME>__SECRET`.
    pub secret: Option<Secret>,
    /// A file holding the signing secret (surrounding whitespace is ignored), read when
    /// the channel starts.
    pub secret_file: Option<PathBuf>,
}

/// A checked [`SignedHookSettings`]; the signing secret may still be in a file.
#[derive(Debug)]
pub struct SignedHook {
    pub url: Secret,
    pub secret: Option<SecretSource>,
}

impl SignedHook {
    /// `missing` is what to say when `webhook_url` is not set, `parse` checks it, and a
    /// signing secret must start with `prefix` when given.
    pub fn check(
        s: SignedHookSettings,
        missing: &str,
        parse: fn(&str) -> Result<url::Url, String>,
        prefix: Option<&str>,
    ) -> Result<SignedHook, Vec<Problem>> {
        let mut problems = Vec::new();
        let url = check::url_field(
            "webhook_url",
            s.webhook_url.as_ref(),
            missing,
            parse,
            &mut problems,
        );
        let secret = check::signing_secret(s.secret, s.secret_file, prefix, &mut problems);
        match url {
            Some(url) if problems.is_empty() => Ok(SignedHook { url, secret }),
            _ => Err(problems),
        }
    }

    /// The URL, and the signing secret when given inline.
    pub fn secrets(&self) -> Vec<&Secret> {
        std::iter::once(&self.url)
            .chain(self.secret.as_ref().and_then(SecretSource::inline))
            .collect()
    }

    /// Starts the channel of the robot `robot` makes of the [`Signed`] parts (the signing
    /// secret read from its file if it is in one), paced as `pacing` says.
    pub fn start<R: Robot>(
        &self,
        start: &mut Starter<'_>,
        pacing: Pacing,
        robot: fn(Signed) -> R,
    ) -> anyhow::Result<Recipient<Deliver>> {
        let secret = self
            .secret
            .as_ref()
            .map(|s| s.resolve(&start.key("secret")))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let robot = robot(Signed {
            url: self.url.clone(),
            secret,
            opts: start.render_options(),
            rate_window: start.rate_window(),
        });
        let ch = HttpChannel::with_robot(robot, start.timeout());
        Ok(start.spawn(ch, Some(pacing)))
    }
}

/// What a signed robot sends with: its URL and signing secret (secrets both), how it
/// renders, and the window its provider counts messages in.
pub struct Signed {
    pub url: Secret,
    pub secret: Option<Secret>,
    pub opts: RenderOptions,
    pub rate_window: Duration,
}

impl Signed {
    pub fn secrets(&self) -> Vec<&Secret> {
        std::iter::once(&self.url).chain(&self.secret).collect()
    }
}
