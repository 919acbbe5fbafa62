//! The checks the analyzers' settings share after parsing: a count an enabled analyzer
//! needs, a share of the server's time, a factor above 1, a number of robust deviations.
//! Written once so that the same rule reads the same in every `[analyzers.<name>]` table,
//! and each analyzer's `check` lists only its rules ([`super::AnalyzerSettings`]).

use std::ops::RangeBounds;

use crate::problem::Problem;

/// The problems of one settings table, each named by its key under the table's path.
pub struct Checks<'a> {
    path: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Checks<'a> {
    pub fn new(path: &'a str, problems: &'a mut Vec<Problem>) -> Self {
        Checks { path, problems }
    }

    /// Reports `message` at `key` when `wrong`.
    pub fn flag(&mut self, wrong: bool, key: &str, message: impl Into<String>) {
        if wrong {
            self.problems
                .push(Problem::new(format!("{}.{key}", self.path), message));
        }
    }

    /// A count the analyzer needs at least one of while it is enabled: 0 would make it
    /// run and say nothing, so the message says how to turn it off instead.
    pub fn at_least_one(&mut self, key: &str, n: usize, enabled: bool) {
        self.flag(
            n == 0 && enabled,
            key,
            "must be at least 1 (set enabled = false to turn the analyzer off)",
        );
    }

    /// A fraction of the server's execution time.
    pub fn share_of_time(&mut self, key: &str, v: f64) {
        self.within(
            &[(key, v)],
            0.0..=1.0,
            "is a fraction of the server's time, between 0 and 1",
        );
    }

    /// Factors "now / then" (NaN is wrong too): 1 or less would call no change a change.
    pub fn above_one(&mut self, values: &[(&str, f64)], message: &str) {
        for (key, v) in values {
            self.flag(v.is_nan() || *v <= 1.0, key, message);
        }
    }

    /// Values that must lie in `range`, as `message` says.
    pub fn within(&mut self, values: &[(&str, f64)], range: impl RangeBounds<f64>, message: &str) {
        for (key, v) in values {
            self.flag(!range.contains(v), key, message);
        }
    }

    /// A number of robust standard deviations (0 turns the spread test off; NaN is
    /// wrong).
    pub fn deviations(&mut self, key: &str, v: f64, message: &str) {
        self.flag(v.is_nan() || v < 0.0, key, message);
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;

    #[test]
    fn each_check_names_its_key_and_only_fails_out_of_range() {
        let mut problems = Vec::new();
        let mut c = Checks::new("analyzers.x", &mut problems);
        c.at_least_one("top_n", 0, true);
        c.at_least_one("top_n", 0, false);
        c.at_least_one("top_n", 1, true);
        c.share_of_time("share", 1.5);
        c.share_of_time("share", f64::NAN);
        c.share_of_time("share", 0.0);
        c.above_one(
            &[("factor", 1.0), ("factor", f64::NAN), ("factor", 1.01)],
            "must be above 1",
        );
        c.deviations("spread", -0.1, "must be 0 or more");
        c.deviations("spread", 0.0, "must be 0 or more");
        let above_zero = (Bound::Excluded(0.0), Bound::Included(1.0));
        c.within(&[("share", 0.0), ("share", 0.5)], above_zero, "above 0");
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "analyzers.x.top_n",
                "analyzers.x.share",
                "analyzers.x.share",
                "analyzers.x.factor",
                "analyzers.x.factor",
                "analyzers.x.spread",
                "analyzers.x.share",
            ]
        );
        assert_eq!(
            problems[1].message,
            "is a fraction of the server's time, between 0 and 1"
        );
    }
}
