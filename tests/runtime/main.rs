//! The runtime as an operator meets it, on the real binary and the lab's real PoWA: `once`
//! end to end (`once_cli`) and the commands around the daemon (`cli`), `run` with its
//! endpoints, signals, reload and supervision (`daemon`), configuration faults
//! (`fault_config`), connection faults (`fault_connect`), delivery faults and kills with
//! the outbox (`fault_delivery`, `delivery_kill`), the channel actors' delivery
//! guarantees against the fake robot in process (`delivery_outbox`), and what the Debian
//! package ships with `init` for a new user (`packaging`).
//!
//! The tests of this crate share one process: the ones that see every server of the lab's
//! PoWA 4 repository hold [`support::same_servers`], the one that registers a server holds
//! [`support::new_server`].

#[path = "../support/fake_wecom.rs"]
mod fake_wecom;
#[path = "../support/robot.rs"]
mod robot;
#[path = "../support/mod.rs"]
mod support;

mod cli;
mod daemon;
mod delivery_kill;
mod delivery_outbox;
mod fault_config;
mod fault_connect;
mod fault_delivery;
mod once_cli;
mod packaging;
mod pages;
