//! One thing wrong with the settings: the leaf every component's validation reports into,
//! and the did-you-mean hint its messages give.
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

/// The closest candidate to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Swapped letters count as one edit (`dns` → `dsn`); a word that starts like the
    // candidate may differ more at its end (`wechat` → `wecom`).
    let close = |d: usize, c: &str| {
        let longest = c.chars().count().max(word.chars().count());
        let prefix = word
            .chars()
            .zip(c.chars())
            .take_while(|(a, b)| a == b)
            .count();
        d > 0 && (d <= (longest / 3).clamp(1, 3) || (prefix >= 3 && d <= longest / 2))
    };
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| close(*d, c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
