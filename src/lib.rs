//! powa-sentinel: reads PoWA repositories, finds what matters, tells people.
//!
//! The generic pipeline (actors, gate, pacing) lives in the `sentinel-actors` crate; this
//! crate holds what is specific to PoWA, to the rules and to the channels:
//!
//! - [`config`]: settings, read with the `config` crate, errors that name file and key;
//! - [`powa`]: discovery of PoWA repositories and servers, and the read-only reader;
//! - [`analyze`]: the analyzers that turn snapshots into insights;
//! - [`gate`]: the gate's decisions (lifecycle, routes, silences, quiet hours) and store;
//! - [`channels`] and [`render`]: delivery to the console, WeCom, files;
//! - [`outbox`]: the channels' journal of what is not yet delivered, on disk;
//! - [`topology`]: wires the actors together for one run;
//! - [`daemon`] and [`collection`]: the `run` daemon, its collection tasks;
//! - [`replica`]: several `run` processes on one state database, sharing the work.

pub mod actions;
pub mod analyze;
pub mod archive;
pub mod channels;
pub mod chart;
pub mod cli;
pub mod collection;
pub mod config;
pub mod daemon;
pub mod dry_run;
pub mod gate;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod output;
pub mod powa;
pub mod problem;
pub mod render;
pub mod replica;
pub mod schedule;
pub mod secret;
pub mod seed_compat;
pub mod statedb;
pub mod status_page;
pub mod story;
pub mod topology;

pub use sentinel_actors as actors;
