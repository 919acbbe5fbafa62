//! Reading PoWA, against the lab's real repositories (PoWA 3.2.0, 4.1.4 with remote
//! servers, 5 on PostgreSQL 17) as the SELECT-only role: discovery and window deltas
//! (`read`), the fast and the live reads against the naive reference (`fast_read`,
//! `live`), what is particular to PoWA 5 (`powa5`), names of remote servers without
//! configuration (`names_reach`) and TLS (`tls`).

#[path = "../support/mod.rs"]
mod support;

mod fast_read;
mod live;
mod names_reach;
mod powa5;
mod read;
mod tls;
