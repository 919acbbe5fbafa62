//! Robust baselines over several past windows, shared by the regression and
//! workload-change analyzers.
//!
//! A single past window is one sample: a holiday, a batch that ran late or a deploy that was
//! rolled back makes it unrepresentative, and a comparison with it either invents a
//! regression or hides one. With several windows (the same hours 1, 2, … offsets back) we
//! compare with their **median** and require the current value to be outside their usual
//! spread, measured by the **MAD** (median absolute deviation, scaled by 1.4826 so that it
//! estimates a standard deviation on normal data). Both ignore one odd value out of three.
//!
//! A baseline window without any query (nothing left in PoWA's retention, or the server did
//! not exist yet) is *absent*, not a week where nothing ran: counting it as zeros would make
//! every query look new.

use std::collections::HashMap;

use crate::powa::reader::{QueryKey, QueryStats, StatementsWindow};

/// Scale of the MAD that estimates the standard deviation of normally distributed data.
pub const MAD_SCALE: f64 = 1.4826;

/// Baselines are at most `analysis.baseline_periods` (≤ 12) values: sorted on the stack,
/// since this runs several times per query of a 10,000-query window.
const STACK: usize = 16;

/// The median of `values` (NaNs excluded); None when there is none.
pub fn median(values: &[f64]) -> Option<f64> {
    median_of(values.iter().copied())
}

fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut stack = [0.0f64; STACK];
    let mut heap = Vec::new();
    let mut n = 0;
    for x in values.filter(|x| !x.is_nan()) {
        if n < STACK {
            stack[n] = x;
        } else {
            if n == STACK {
                heap.extend_from_slice(&stack);
            }
            heap.push(x);
        }
        n += 1;
    }
    let v = if n <= STACK {
        &mut stack[..n]
    } else {
        &mut heap[..]
    };
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median absolute deviation of `values` around `center` (unscaled).
pub fn mad(values: &[f64], center: f64) -> f64 {
    median_of(values.iter().map(|x| (x - center).abs())).unwrap_or(0.0)
}

/// Summary of one quantity over the baselines that have a sample for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Robust {
    /// Samples used.
    pub n: usize,
    pub median: f64,
    /// `MAD × 1.4826`; 0 with a single sample.
    pub sigma: f64,
}

impl Robust {
    pub fn of(values: &[f64]) -> Option<Robust> {
        let median = median(values)?;
        Some(Robust {
            n: values.len(),
            median,
            sigma: mad(values, median) * MAD_SCALE,
        })
    }

    /// True when `x` is above the usual range: `median + k·σ`. With one sample there is no
    /// spread and only the median counts (the single-baseline behaviour).
    pub fn exceeded_by(&self, x: f64, k: f64) -> bool {
        x > self.median + k * self.sigma
    }

    /// True when `x` is below the usual range: `median − k·σ`.
    pub fn undercut_by(&self, x: f64, k: f64) -> bool {
        x < self.median - k * self.sigma
    }
}

/// The baselines of a window that hold data, with per-query lookup.
pub struct Baselines<'a> {
    maps: Vec<HashMap<QueryKey, &'a QueryStats>>,
}

impl<'a> Baselines<'a> {
    /// Indexes the non-empty baselines of `w`, nearest first.
    pub fn of(w: &'a StatementsWindow) -> Self {
        Baselines {
            maps: w
                .baselines
                .iter()
                .filter(|b| !b.queries.is_empty())
                .map(|b| b.queries.iter().map(|q| (q.key, q)).collect())
                .collect(),
        }
    }

    /// How many baselines hold data.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    /// The query's entry in each present baseline (None where it did not run).
    pub fn entries(&self, key: &QueryKey) -> impl Iterator<Item = Option<&'a QueryStats>> + '_ {
        let key = *key;
        self.maps.iter().map(move |m| m.get(&key).copied())
    }

    /// A per-query value over the present baselines; a baseline where the query did not run
    /// counts as `absent` (0 for volumes such as calls, None to skip it for ratios such as
    /// mean time).
    pub fn robust(
        &self,
        key: &QueryKey,
        value: impl Fn(&QueryStats) -> Option<f64>,
        absent: Option<f64>,
    ) -> Option<Robust> {
        let values: Vec<f64> = self
            .entries(key)
            .filter_map(|e| e.map_or(absent, &value))
            .collect();
        Robust::of(&values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{query, window};

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 100.0], 3.0), 1.0);
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
        let many: Vec<f64> = (0..41).map(f64::from).rev().collect();
        assert_eq!(median(&many), Some(20.0));
        let r = Robust::of(&[10.0, 10.0, 100.0]).unwrap();
        assert_eq!((r.n, r.median, r.sigma), (3, 10.0, 0.0));
        assert!(r.exceeded_by(10.5, 3.0));
        let r = Robust::of(&[10.0, 12.0, 14.0]).unwrap();
        assert!((r.sigma - 2.0 * MAD_SCALE).abs() < 1e-9);
        assert!(!r.exceeded_by(20.0, 3.0));
        assert!(r.exceeded_by(21.0, 3.0));
        assert!(r.undercut_by(3.0, 3.0));
    }

    #[test]
    fn empty_baselines_are_absent_and_missing_queries_count_as_asked() {
        let mut w = window(vec![query(1, 10.0, 10.0)]);
        w.baselines = vec![
            window(vec![query(1, 100.0, 10.0)]),
            window(vec![]),
            window(vec![query(2, 5.0, 5.0)]),
        ];
        let b = Baselines::of(&w);
        assert_eq!(b.len(), 2);
        let key = w.queries[0].key;
        let calls = b
            .robust(&key, |q| Some(q.get(crate::powa::reader::CALLS)), Some(0.0))
            .unwrap();
        assert_eq!((calls.n, calls.median), (2, 50.0));
        let mean = b.robust(&key, |q| Some(q.mean_time_ms()), None).unwrap();
        assert_eq!((mean.n, mean.median), (1, 0.1));
    }
}
