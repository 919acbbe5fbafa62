//! Starting channel actors: what all channels of one run share ([`ChannelEnv`]: the
//! logger, the outbox, one pacer per destination), and the [`Starter`] a kind's
//! [`ChannelType::start`](super::ChannelType::start) is handed, which starts the actor
//! for real or, for `--dry-run` and `backtest`, as a [`DryRun`] that prints what it would
//! send.

use crate::archive::{Archive, ArchiveWriter};
use crate::chart::enrich::TrendSource;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Recipient};
use futures_util::future::LocalBoxFuture;
use slog::{o, warn, Logger};

use sentinel_actors::channel::{Channel, ChannelActor, Deliver, Drain, GetHealth, RetryPolicy};
use sentinel_actors::outbox::{MemoryOutbox, Outbox};
use sentinel_actors::throttle::Pacer;
use sentinel_actors::{ChannelError, Notification};

use super::ChannelSettings;
use crate::actions::Links;
use crate::render::RenderOptions;

/// The window `max_per_minute` counts in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Shared while starting all channels of one run: the logger, where the console writes,
/// and one [`Pacer`] per destination (WeCom counts messages per robot key, so every
/// channel that posts with the same key must draw from the same budget).
pub struct ChannelEnv {
    pub log: Logger,
    pub console_to_stderr: bool,
    /// Pacer per destination, keyed by the robot key (a secret: never printed).
    pacers: HashMap<String, (u32, Arc<Pacer>)>,
    rate_window: Duration,
    retry: RetryPolicy,
    /// Where channel actors journal what they accept (see [`crate::outbox`]).
    outbox: Arc<dyn Outbox>,
    /// Health and drain handles of every channel started, by name.
    controls: BTreeMap<String, ChannelControl>,
    /// powa-web's address per repository name (`powa_web_url`).
    pub(super) powa_web: BTreeMap<String, String>,
    /// Action links in every message (`[http] public_url`).
    actions: Option<Arc<Links>>,
    /// Where channels that draw charts read their trends (none: no charts).
    trends: Option<Arc<TrendSource>>,
    /// Where the report page of every notification is written (`[http] public_url`).
    archive: Option<Arc<Archive>>,
}

/// What the runtime can ask a running channel besides `Deliver`.
#[derive(Clone)]
pub struct ChannelControl {
    pub health: Recipient<GetHealth>,
    pub drain: Recipient<Drain>,
}

impl fmt::Debug for ChannelEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelEnv")
            .field("console_to_stderr", &self.console_to_stderr)
            .field("destinations", &self.pacers.len())
            .field("rate_window", &self.rate_window)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ChannelEnv {
    pub fn new(log: Logger, console_to_stderr: bool) -> Self {
        ChannelEnv {
            log,
            console_to_stderr,
            pacers: HashMap::new(),
            rate_window: RATE_WINDOW,
            retry: RetryPolicy::default(),
            outbox: Arc::new(MemoryOutbox::new()),
            controls: BTreeMap::new(),
            powa_web: BTreeMap::new(),
            actions: None,
            trends: None,
            archive: None,
        }
    }

    /// Writes the report page of every notification a channel is given, before it is
    /// given it (see [`crate::archive`]).
    pub fn with_archive(mut self, archive: Option<Arc<Archive>>) -> Self {
        self.archive = archive;
        self
    }

    /// Where channels that draw trend charts read them (see [`crate::chart::enrich`]).
    pub fn with_trends(mut self, trends: Option<Arc<TrendSource>>) -> Self {
        self.trends = trends;
        self
    }

    /// Action links (acknowledge, snooze, everything firing) in every channel's messages.
    pub fn with_actions(mut self, actions: Option<Arc<Links>>) -> Self {
        self.actions = actions;
        self
    }

    /// The outbox channels journal into (default: in memory).
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = outbox;
        self
    }

    /// powa-web's address per repository, for the links in every channel's messages.
    pub fn with_powa_web(mut self, powa_web: BTreeMap<String, String>) -> Self {
        self.powa_web = powa_web;
        self
    }

    /// Health and drain handles of the channels started so far, by name.
    pub fn controls(&self) -> &BTreeMap<String, ChannelControl> {
        &self.controls
    }

    /// The window that `max_per_minute` counts in. One minute (WeCom's rule); tests against
    /// a fake robot with a scaled-down window shorten it.
    pub fn with_rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window;
        self
    }

    /// How channels retry (default: [`RetryPolicy::default`]).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn rate_window(&self) -> Duration {
        self.rate_window
    }

    /// The pacer of `destination`, created on first use with `max` per `window`.
    fn pacer(&mut self, p: &Pacing, log: &Logger) -> Arc<Pacer> {
        if let Some((first, pacer)) = self.pacers.get(&p.destination) {
            if *first != p.max {
                warn!(log, "Channels sharing one robot key ask for different max_per_minute; the first one applies.";
                    "max_per_minute" => p.max, "applied" => *first);
            }
            return Arc::clone(pacer);
        }
        let pacer = Arc::new(Pacer::new(p.max, p.window));
        self.pacers
            .insert(p.destination.clone(), (p.max, Arc::clone(&pacer)));
        pacer
    }
}

/// How a channel is paced: at most `max` messages to `destination` in any `window`.
/// `destination` identifies the provider's budget (a robot key, a webhook URL): a secret,
/// never printed.
pub struct Pacing {
    pub destination: String,
    pub max: u32,
    pub window: Duration,
}

impl Pacing {
    /// The same budget counted in sixths of the window (at most `max / 6`, at least 1, in
    /// any sixth), for providers with a per-second limit too (Feishu: 5 per second) or a
    /// steady pace (Slack: about one per second). A one-minute quota would allow a burst
    /// of a quarter of it at once; counting in 10 s windows keeps it at a sixth.
    pub fn in_sixths(self) -> Pacing {
        Pacing {
            max: (self.max / 6).max(1),
            window: self.window / 6,
            ..self
        }
    }
}

impl fmt::Debug for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacing")
            .field("max", &self.max)
            .field("window", &self.window)
            .finish()
    }
}

enum Mode<'a> {
    Deliver(&'a mut ChannelEnv),
    DryRun,
}

/// Handed to a kind's `start`: the channel's name, the keys every kind shares, and
/// [`Starter::spawn`], which starts the actor (or its dry run).
pub struct Starter<'a> {
    name: &'a str,
    settings: &'a ChannelSettings,
    powa_web: BTreeMap<String, String>,
    actions: Option<Arc<Links>>,
    log: Logger,
    mode: Mode<'a>,
}

impl<'a> Starter<'a> {
    pub(super) fn deliver(
        name: &'a str,
        settings: &'a ChannelSettings,
        env: &'a mut ChannelEnv,
    ) -> Self {
        Starter {
            name,
            settings,
            powa_web: env.powa_web.clone(),
            actions: env.actions.clone(),
            log: env
                .log
                .new(o!("channel" => name.to_string(), "type" => settings.kind())),
            mode: Mode::Deliver(env),
        }
    }

    pub(super) fn dry_run(name: &'a str, settings: &'a ChannelSettings, log: &Logger) -> Self {
        Starter {
            name,
            settings,
            powa_web: BTreeMap::new(),
            actions: None,
            log: log.new(o!("channel" => name.to_string(), "dry_run" => true)),
            mode: Mode::DryRun,
        }
    }

    /// The channel's logger.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// `channel` behind the writer of report pages when the run keeps them (see
    /// [`crate::archive`]), else itself.
    pub fn archived(&self, channel: Recipient<Deliver>) -> Recipient<Deliver> {
        let Mode::Deliver(env) = &self.mode else {
            return channel;
        };
        let Some(archive) = &env.archive else {
            return channel;
        };
        ArchiveWriter::new(
            self.name,
            channel,
            Arc::clone(archive),
            env.trends.clone(),
            self.render_options(),
            self.log.new(slog::o!("component" => "archive")),
        )
        .start()
        .recipient()
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// The key path of `field` in this channel's table, for error texts.
    pub fn key(&self, field: &str) -> String {
        format!("channels.{}.{field}", self.name)
    }

    /// Where to read the trends of charts; None in a dry run (it sends nothing) or when
    /// the run has no repositories to read them from.
    pub fn trends(&self) -> Option<Arc<TrendSource>> {
        match &self.mode {
            Mode::Deliver(env) => env.trends.clone(),
            Mode::DryRun => None,
        }
    }

    /// What the renderers need: `sql_preview_chars`, `language`, powa-web's addresses.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            sql_preview_chars: self.settings.preview_chars(),
            lang: self.settings.language(),
            powa_web: self.powa_web.clone(),
            actions: self.actions.clone(),
        }
    }

    /// `timeout`: the time limit of one request.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout()
    }

    /// `max_per_minute`, or the provider's default.
    pub fn max_per_minute(&self) -> u32 {
        self.settings.max_per_minute()
    }

    /// At most `max_per_minute` messages to `destination` (a secret: a robot key, a URL)
    /// in any rate window.
    pub fn pacing(&self, destination: &str) -> Pacing {
        Pacing {
            destination: destination.to_string(),
            max: self.max_per_minute(),
            window: self.rate_window(),
        }
    }

    /// The window `max_per_minute` counts in.
    pub fn rate_window(&self) -> Duration {
        match &self.mode {
            Mode::Deliver(env) => env.rate_window,
            Mode::DryRun => RATE_WINDOW,
        }
    }

    /// Whether the console writes to stderr (stdout carries `--output json`). A dry run
    /// prints on stdout.
    pub fn console_to_stderr(&self) -> bool {
        match &self.mode {
            Mode::Deliver(env) => env.console_to_stderr,
            Mode::DryRun => false,
        }
    }

    /// Starts `channel` in its [`ChannelActor`], paced as `pacing` says, with the run's
    /// outbox and retry policy; in a dry run, starts a [`DryRun`] of it instead (no pacing,
    /// nothing sent).
    pub fn spawn<C: Channel>(&mut self, channel: C, pacing: Option<Pacing>) -> Recipient<Deliver>
    where
        C::Part: fmt::Display,
    {
        let name = self.name;
        let log = self.log.clone();
        let env = match &mut self.mode {
            Mode::DryRun => {
                let printing = DryRun {
                    name: name.to_string(),
                    inner: channel,
                };
                return ChannelActor::new(name, printing, None, RetryPolicy::default(), log)
                    .start()
                    .recipient();
            }
            Mode::Deliver(env) => env,
        };
        let pacer = pacing.map(|p| env.pacer(&p, &log));
        let addr = ChannelActor::new(name, channel, pacer, env.retry.clone(), log)
            .with_outbox(Arc::clone(&env.outbox))
            .start();
        env.controls.insert(
            name.to_string(),
            ChannelControl {
                health: addr.clone().recipient(),
                drain: addr.clone().recipient(),
            },
        );
        addr.recipient()
    }
}

/// A channel's renderer with a printing `send`: what `--dry-run` and `backtest` run.
pub struct DryRun<C> {
    name: String,
    inner: C,
}

impl<C: Channel> Channel for DryRun<C>
where
    C::Part: fmt::Display,
{
    type Part = String;

    fn render(&self, n: &Notification) -> Result<Vec<String>, ChannelError> {
        let parts = self.inner.render(n)?;
        let total = parts.len();
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "----- channel {} · message {}/{} -----\n{p}\n",
                    self.name,
                    i + 1,
                    total
                )
            })
            .collect())
    }

    fn send(&self, part: String) -> LocalBoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            out.write_all(part.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| ChannelError::Permanent {
                    reason: format!("stdout: {e}"),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_debug_hides_destinations() {
        let log = Logger::root(slog::Discard, o!());
        let mut env = ChannelEnv::new(log.clone(), false);
        let pacing = |d: &str| Pacing {
            destination: d.to_string(),
            max: 20,
            window: RATE_WINDOW,
        };
        let a = env.pacer(&pacing("http://h/send?key=SECRET1"), &log);
        let b = env.pacer(&pacing("http://h/send?key=SECRET1"), &log);
        assert!(Arc::ptr_eq(&a, &b), "one pacer per destination");
        let c = env.pacer(&pacing("http://h/send?key=SECRET2"), &log);
        assert!(!Arc::ptr_eq(&a, &c));
        let d = format!("{env:?} {:?}", pacing("SECRET3"));
        assert!(!d.contains("SECRET"), "{d}");
    }

    /// Counted in sixths, Feishu's and Slack's quotas keep within their per-second
    /// limits: at most 5 per second for Feishu, a couple for Slack (about one per second).
    #[test]
    fn sixths_keep_within_per_second_limits() {
        use crate::channels::{feishu, slack};
        for (max, per_second) in [
            (feishu::MAX_PER_MINUTE, feishu::MAX_PER_SECOND),
            (slack::MAX_PER_MINUTE, 2),
        ] {
            let pacing = Pacing {
                destination: String::new(),
                max,
                window: RATE_WINDOW,
            }
            .in_sixths();
            let p = Pacer::new(pacing.max, pacing.window);
            assert!(
                p.worst_case_in(Duration::from_secs(1)) <= per_second,
                "{max}"
            );
            assert!(p.worst_case_in(Duration::from_secs(60)) <= max, "{max}");
        }
    }
}
