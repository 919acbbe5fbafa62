//! The gate, which decides what reaches people, across runs: the action links of the
//! messages clicked through the HTTP endpoint (`actions`), two `once` runs on one
//! `[state] dir` (`once`), the heartbeats (`heartbeat`), gate actors restarted on the same state (`persistence`), and the
//! `silence` commands that write to it (`silence_cli`).

#[path = "../support/mod.rs"]
mod support;

mod actions;
mod heartbeat;
mod once;
mod persistence;
mod silence_cli;
