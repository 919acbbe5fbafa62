//! `--dry-run` and `backtest`: every configured channel renders exactly as it would, and the
//! rendered messages are printed on stdout instead of being sent. Nothing leaves the host.
//! Each kind says what its dry run is (see [`crate::channels::ChannelType::dry_run`]).

use std::collections::BTreeMap;

use actix::Recipient;
use slog::Logger;

use crate::channels::{self, ChannelSettings};
use sentinel_actors::channel::Deliver;

/// One printing actor per configured channel, rendering as that channel does.
pub fn start_all(
    channels: &BTreeMap<String, ChannelSettings>,
    log: &Logger,
) -> anyhow::Result<BTreeMap<String, Recipient<Deliver>>> {
    channels
        .iter()
        .map(|(name, s)| Ok((name.clone(), channels::start_dry_run(name, s, log)?)))
        .collect()
}
