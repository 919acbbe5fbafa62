//! The gate, which decides what reaches people, across runs: two `once` runs on one
//! `[state] dir` (`once`), gate actors restarted on the same state (`persistence`), and the
//! `silence` commands that write to it (`silence_cli`).

#[path = "../support/mod.rs"]
mod support;

mod once;
mod persistence;
mod silence_cli;
