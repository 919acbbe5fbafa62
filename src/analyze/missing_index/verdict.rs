//! hypopg's verdict on a candidate: when the collector could try it as a hypothetical
//! index on the monitored server, a suggestion whose estimated gain is below `min_gain` is
//! dropped, and a kept one says its costs before and after. A check that could not run
//! keeps the suggestion and says why, so that a missing hypopg gets installed.

use sentinel_actors::Insight;

use super::{Candidate, MissingIndexSettings};
use crate::powa::hypopg::Validation;
use crate::powa::qualstats::QualsWindow;

/// The hypopg result for a candidate, if one was tried.
pub fn validation_of<'a>(w: &'a QualsWindow, c: &Candidate) -> Option<&'a Validation> {
    w.validations
        .iter()
        .find(|v| v.dbid == c.dbid && v.relid == c.relid && v.columns == c.columns)
}

/// False when hypopg is on and its check ran and found too little gain.
pub fn keeps(s: &MissingIndexSettings, v: Option<&Validation>) -> bool {
    !(s.hypopg && v.is_some_and(|v| v.error.is_none() && v.gain().is_none_or(|g| g < s.min_gain)))
}

/// Adds the verdict to a suggestion: the estimated costs (metrics, the start of the
/// advice, rule `missing_index.btree_validated`), or why the check was not possible.
pub fn tell(v: Option<&Validation>, i: &mut Insight) {
    match v {
        Some(v) if v.error.is_none() => {
            let (before, after) = v.total_costs();
            let gain = v.gain().unwrap_or(0.0);
            i.metrics.insert("cost_before".to_string(), before);
            i.metrics.insert("cost_after".to_string(), after);
            i.metrics.insert("estimated_gain".to_string(), gain);
            i.advice = format!(
                "hypopg: estimated cost {before:.0} → {after:.0} ({:.0}% less) over {} helped quer{}. {}",
                gain * 100.0,
                v.queries.len(),
                if v.queries.len() == 1 { "y" } else { "ies" },
                i.advice
            );
            i.rule = "missing_index.btree_validated".to_string();
        }
        Some(v) => {
            i.advice = format!(
                "{} (hypopg check not possible: {})",
                i.advice,
                v.error.as_deref().unwrap_or("")
            );
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fixtures::{advise, advise_with, orders, qual, quals, INT_EQ, ORDERS};
    use crate::powa::hypopg::QueryCost;

    fn validated(before: f64, after: f64, error: Option<&str>) -> QualsWindow {
        let mut q = quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        );
        q.validations.push(Validation {
            dbid: 1,
            relid: ORDERS,
            columns: vec![2],
            queries: vec![QueryCost {
                queryid: 11,
                before,
                after,
                uses_index: after < before,
            }],
            error: error.map(str::to_string),
            details: vec![],
        });
        q
    }

    #[test]
    fn hypopg_results_gate_and_inform() {
        let out = advise(validated(5000.0, 150.0, None));
        assert_eq!(out[0].rule, "missing_index.btree_validated");
        assert_eq!(out[0].metric("cost_before"), Some(5000.0));
        assert_eq!(out[0].metric("cost_after"), Some(150.0));
        assert!(out[0]
            .advice
            .starts_with("hypopg: estimated cost 5000 → 150 (97% less)"));
        // Below the minimum gain: dropped.
        assert!(advise(validated(5000.0, 4000.0, None)).is_empty());
        // Kept when validation is off.
        let off = MissingIndexSettings {
            hypopg: false,
            ..Default::default()
        };
        assert_eq!(advise_with(validated(5000.0, 4000.0, None), off).len(), 1);
        // A check that could not run keeps the suggestion and says why.
        let out = advise(validated(0.0, 0.0, Some("hypopg is not installed")));
        assert_eq!(out[0].rule, "missing_index.btree");
        assert!(out[0].advice.contains("hypopg is not installed"));
    }
}
