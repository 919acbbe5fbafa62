//! The channels against fakes of their providers, over real HTTP on loopback, through the
//! real `channels::start` → `ChannelActor` path: one module per provider family, and the
//! conformance kit ([`channel_kit`]) that every HTTP channel runs; the email channel
//! against a real SMTP server ([`smtp`]).

#[macro_use]
#[path = "../support/channel_kit.rs"]
mod channel_kit;
#[path = "../support/fake_wecom.rs"]
mod fake_wecom;
#[path = "../support/smtp.rs"]
mod smtp;

mod charts;
mod chat;
mod email;
mod webhook;
mod wecom;
mod wecom_app;
