//! One thing wrong with the settings: the leaf every component's validation reports into.
//!
//! It lives apart from [`crate::config`] on purpose: `config` gathers every component's
//! settings, so a component that imported `Problem` from there would depend on everything
//! that depends on it. Components import this module; only `config` imports components.

/// One thing wrong with the settings, found after parsing (a value out of range, a
/// reference to something that does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `channels.ops.webhook_url`.
    pub key: String,
    /// What is wrong and what to do, as one sentence.
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}
