//! Comparing two reads of the same window, counter by counter.

use powa_sentinel::powa::reader::{StatementsWindow, COUNTERS};
use powa_sentinel::powa::{QueryKey, QueryStats};

/// Same queries, same counters (relative 1e-6: summation order differs), same kcache,
/// same wait samples.
pub fn assert_same_windows(a: &StatementsWindow, b: &StatementsWindow, what: &str) {
    assert_same_windows_of(a, b, what, |_| true);
}

/// [`assert_same_windows`] over the queries (and their waits) that `keep` selects by text.
pub fn assert_same_windows_of(
    a: &StatementsWindow,
    b: &StatementsWindow,
    what: &str,
    keep: impl Fn(&str) -> bool,
) {
    let kept = |w: &StatementsWindow| -> std::collections::BTreeSet<i64> {
        w.queries
            .iter()
            .filter(|q| q.query.as_deref().is_some_and(&keep))
            .map(|q| q.key.queryid)
            .collect()
    };
    let (ka, kb) = (kept(a), kept(b));
    let keep_q = |queryid: i64| ka.contains(&queryid) || kb.contains(&queryid);
    let (x, y) = (queries(a, &keep_q), queries(b, &keep_q));
    assert_eq!(
        x.iter().map(|p| p.0).collect::<Vec<_>>(),
        y.iter().map(|p| p.0).collect::<Vec<_>>(),
        "{what}: the same queries"
    );
    for ((k, qa), (_, qb)) in x.iter().zip(&y) {
        for (i, name) in COUNTERS.iter().enumerate() {
            let (va, vb) = (qa.counters[i], qb.counters[i]);
            assert!(
                (va - vb).abs() <= 1e-6 * va.abs().max(vb.abs()).max(1.0),
                "{what}: {k:?} {name}: fast {va} vs naive {vb}"
            );
        }
        let (ka, kb) = (qa.kcache.unwrap_or_default(), qb.kcache.unwrap_or_default());
        for (va, vb) in [
            (ka.user_time_s, kb.user_time_s),
            (ka.system_time_s, kb.system_time_s),
            (ka.reads_bytes, kb.reads_bytes),
            (ka.writes_bytes, kb.writes_bytes),
        ] {
            assert!(
                (va - vb).abs() <= 1e-6 * va.abs().max(vb.abs()).max(1e-3),
                "{what}: {k:?} kcache: fast {va} vs naive {vb}"
            );
        }
    }
    let waits = |w: &StatementsWindow| {
        let mut v: Vec<_> = w
            .waits
            .iter()
            .filter(|w| keep_q(w.queryid))
            .map(|w| {
                (
                    (w.dbid, w.queryid, w.event_type.clone(), w.event.clone()),
                    w.samples,
                )
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (wa, wb) = (waits(a), waits(b));
    assert_eq!(
        wa.iter().map(|w| &w.0).collect::<Vec<_>>(),
        wb.iter().map(|w| &w.0).collect::<Vec<_>>(),
        "{what}: the same wait events"
    );
    for ((k, va), (_, vb)) in wa.iter().zip(&wb) {
        assert!(
            (va - vb).abs() <= 1e-6 * va.abs().max(vb.abs()).max(1.0),
            "{what}: wait {k:?}: {va} vs {vb}"
        );
    }
}

/// The queries of `w` that `keep` selects by queryid, in key order.
fn queries<'w>(
    w: &'w StatementsWindow,
    keep: &dyn Fn(i64) -> bool,
) -> Vec<(QueryKey, &'w QueryStats)> {
    let mut v: Vec<_> = w
        .queries
        .iter()
        .filter(|q| keep(q.key.queryid))
        .map(|q| (q.key, q))
        .collect();
    v.sort_by_key(|p| p.0);
    v
}
