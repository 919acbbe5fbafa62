//! The operator's commands besides running the pipeline: `init`, `silence …` and `outbox …`.
//!
//! They sit above the components they act on (the gate's store, the outbox) and take the
//! whole [`crate::config::Settings`], so the components themselves never import the
//! configuration that gathers them.

pub mod init;
pub mod outbox;
pub mod silence;
