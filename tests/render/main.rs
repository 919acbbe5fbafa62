//! What people receive: every channel's rendering of a realistic report against golden
//! files (`golden`), and the WeCom payloads under arbitrary input, always within the
//! provider's limits (`prop`).

mod golden;
mod prop;
