//! Named points on the delivery path where a test build can make the process die, to
//! prove that a kill at that instant loses nothing.
//!
//! Compiled in only with the `failpoints` feature; otherwise [`hit`] is an empty inline
//! function. With the feature, `POWA_SENTINEL_FAILPOINT=<name>` aborts the process
//! (`std::process::abort`: no destructor, no flush, like a kill -9) the first time the
//! point `<name>` is reached, and `<name>@<n>` the n-th time.
//!
//! The points, in the order a notification meets them:
//!
//! - `gate-commit`: the gate committed its decision (lifecycle, intents), nothing journaled
//!   by a channel yet;
//! - `journal-accept`: a channel journaled the notification, nothing rendered yet;
//! - `render`: the rendered parts are journaled, nothing sent yet;
//! - `part-sent`: the provider confirmed a part, its progress is not journaled yet;
//! - `outbox-done`: the delivered entry is removed, the gate has not heard of it yet.
//!
//! With the feature too, [`AnalyzerPanics`] makes a named analyzer panic, so that the
//! runtime tests can prove a panicking analyzer is restarted (and, past its budget, left
//! failed) in the real binary.

/// The environment variable naming the failpoint.
pub const ENV: &str = "POWA_SENTINEL_FAILPOINT";

/// Aborts the process if `name` is the configured failpoint (and this is its n-th hit).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (want, nth) = match spec.split_once('@') {
        Some((n, k)) => (n, k.parse::<u32>().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    if want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("powa-sentinel: failpoint `{spec}` reached: aborting.");
        std::process::abort();
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// The environment variable naming an analyzer to panic: `<analyzer name>[:<n>]` makes it
/// panic on its first `n` snapshots (default 1).
#[cfg(feature = "failpoints")]
pub const PANIC_ANALYZER_ENV: &str = "POWA_SENTINEL_TEST_PANIC_ANALYZER";

/// The panics still to inject into one analyzer (none without the `failpoints` feature).
#[derive(Debug, Default)]
pub struct AnalyzerPanics(#[cfg_attr(not(feature = "failpoints"), allow(dead_code))] u32);

impl AnalyzerPanics {
    /// What [`PANIC_ANALYZER_ENV`] asks of the analyzer `name`.
    #[cfg(feature = "failpoints")]
    pub fn for_analyzer(name: &str) -> Self {
        let Ok(v) = std::env::var(PANIC_ANALYZER_ENV) else {
            return AnalyzerPanics(0);
        };
        let (target, n) = match v.split_once(':') {
            Some((t, n)) => (t, n.parse().unwrap_or(1)),
            None => (v.as_str(), 1),
        };
        AnalyzerPanics(if target == name { n } else { 0 })
    }

    /// Without the `failpoints` feature: none.
    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    pub fn for_analyzer(_name: &str) -> Self {
        AnalyzerPanics(0)
    }

    /// Called where the analyzer runs: panics while injected panics are left.
    #[cfg(feature = "failpoints")]
    pub fn hit(&mut self) {
        if self.0 > 0 {
            self.0 -= 1;
            panic!("injected test panic ({PANIC_ANALYZER_ENV})");
        }
    }

    /// Without the `failpoints` feature: nothing.
    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    pub fn hit(&mut self) {}
}
