//! The commands besides the daemon (`run`, in [`crate::daemon`]): `once`, `check`,
//! `backtest`, `init`, `silence …` and `outbox …`. `main.rs` only parses the command line
//! and calls them.
//!
//! They sit above the components they act on (the gate's store, the outbox) and take the
//! whole [`crate::config::Settings`], so the components themselves never import the
//! configuration that gathers them.

pub mod backtest;
pub mod check;
pub mod init;
pub mod once;
pub mod outbox;
pub mod silence;
