//! What a suggestion says: the names of what a candidate is on (quoted as SQL wants them,
//! oids where the monitored database's catalog could not be read), the `CREATE INDEX`
//! statement when every name is known, and the queries it would help, each with the start
//! of its text.

use std::collections::BTreeSet;

use super::Candidate;
use crate::powa::discovery::quote_ident;
use crate::powa::qualstats::{QualsWindow, Relation};
use crate::powa::reader::StatementsWindow;

/// Helped queries listed per suggestion; the rest are counted.
const MAX_LISTED: usize = 5;

/// A candidate's database, table and columns in words, and its statement.
pub struct Names<'a> {
    pub database: String,
    /// `schema.table`, or `relation oid <n>`.
    pub table: String,
    /// `col, col`, `#<attnum>` for a column whose name is unknown.
    pub columns: String,
    /// The table, when its catalog was read.
    pub relation: Option<&'a Relation>,
    /// [`ddl`]: None unless every name is known.
    pub statement: Option<String>,
}

impl<'a> Names<'a> {
    pub fn of(q: &'a QualsWindow, c: &Candidate) -> Self {
        let relation = q.relation(c.dbid, c.relid);
        let columns: Vec<String> = c
            .columns
            .iter()
            .map(|a| {
                relation
                    .and_then(|r| column(r, *a))
                    .unwrap_or_else(|| format!("#{a}"))
            })
            .collect();
        Names {
            database: q
                .databases
                .get(&c.dbid)
                .cloned()
                .unwrap_or_else(|| format!("oid {}", c.dbid)),
            table: relation
                .map(qualified)
                .unwrap_or_else(|| format!("relation oid {}", c.relid)),
            columns: columns.join(", "),
            relation,
            statement: ddl(q, c),
        }
    }

    /// The suggestion's rule (`btree`, or `unresolved` without names) and its advice: run
    /// the statement, or what to configure so that the next suggestion has one.
    pub fn advice(
        &self,
        w: &StatementsWindow,
        q: &QualsWindow,
        c: &Candidate,
    ) -> (&'static str, String) {
        let setting = format!(
            "[repositories.{}.monitored.\"{}\"]",
            w.repository, w.server.name
        );
        match (&self.statement, q.unnamed.get(&c.dbid)) {
            (Some(_), _) => ("btree", "Create the index (CONCURRENTLY does not block writes), then check the helped queries' plans.".to_string()),
            // The server was reached, the database was not: say what opens it.
            (None, Some(why)) => ("unresolved", format!(
                "Names and existing indexes in database {} unknown, so no statement: {why}. {}",
                self.database,
                QualsWindow::name_by_hand(c.relid, &self.database)
            )),
            (None, None) => ("unresolved", format!(
                "PoWA keeps only oids for this server{}: set {setting} so the sentinel can read names and existing indexes in `{}` and propose a ready statement.",
                q.why_no_names
                    .as_deref()
                    .map(|why| format!(" and the sentinel cannot reach it ({why})"))
                    .unwrap_or_default(),
                self.database
            )),
        }
    }

    /// The statement (or what the index would be on), then the helped queries, at most
    /// [`MAX_LISTED`] of them, each with the start of its text.
    pub fn text(&self, q: &QualsWindow, c: &Candidate) -> String {
        let mut text = match &self.statement {
            Some(d) => format!("{d};\n"),
            None => format!(
                "-- btree index on {} columns {} (names unknown)\n",
                self.table, self.columns
            ),
        };
        let helped = helped(c).len();
        let mut seen = BTreeSet::new();
        for (queryid, userid) in &c.queries {
            if !seen.insert(*queryid) {
                continue;
            }
            if seen.len() > MAX_LISTED {
                text.push_str(&format!("-- and {} more queries\n", helped - MAX_LISTED));
                break;
            }
            let t = q
                .texts
                .get(&(*queryid, c.dbid, *userid))
                .map(|t| short(t, 160))
                .unwrap_or_else(|| "(text purged by PoWA)".to_string());
            text.push_str(&format!("-- helps queryid {queryid}: {t}\n"));
        }
        text
    }
}

/// `schema.table`, quoted where needed.
fn qualified(rel: &Relation) -> String {
    format!("{}.{}", quote_ident(&rel.schema), quote_ident(&rel.name))
}

/// Column `attnum` of `rel`, quoted where needed.
fn column(rel: &Relation, attnum: i32) -> Option<String> {
    rel.columns.get(&attnum).map(|n| quote_ident(n))
}

/// `CREATE INDEX CONCURRENTLY` for a candidate, when its names are known.
pub fn ddl(w: &QualsWindow, c: &Candidate) -> Option<String> {
    let rel = w.relation(c.dbid, c.relid)?;
    let cols: Option<Vec<String>> = c.columns.iter().map(|a| column(rel, *a)).collect();
    Some(format!(
        "CREATE INDEX CONCURRENTLY ON {} USING btree ({})",
        qualified(rel),
        cols?.join(", ")
    ))
}

/// The distinct queries a candidate would help.
pub fn helped(c: &Candidate) -> BTreeSet<i64> {
    c.queries.iter().map(|(id, _)| *id).collect()
}

/// The `queryids` label: the first [`MAX_LISTED`] helped queries, then how many more.
pub fn listed(ids: &BTreeSet<i64>) -> String {
    let mut shown: Vec<String> = ids
        .iter()
        .take(MAX_LISTED)
        .map(|id| id.to_string())
        .collect();
    if ids.len() > MAX_LISTED {
        shown.push(format!("+{}", ids.len() - MAX_LISTED));
    }
    shown.join(",")
}

/// The first `n` characters of a query text on one line.
fn short(t: &str, n: usize) -> String {
    let one: String = t.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > n {
        format!("{}…", one.chars().take(n).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::fixtures::{advise, orders, qual, quals, INT_EQ};

    #[test]
    fn many_helped_queries_are_counted_not_listed() {
        let qs = (0..8)
            .map(|i| qual(i, 100 + i, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0))
            .collect();
        let out = advise(quals(qs, Some(orders(300_000.0, vec![]))));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].label("queryids"), Some("100,101,102,103,104,+3"));
        let text = out[0].text.as_deref().unwrap();
        assert_eq!(text.matches("-- helps queryid").count(), 5);
        assert!(text.ends_with("-- and 3 more queries\n"), "{text}");
        assert_eq!(out[0].metric("queries"), Some(8.0));
    }

    #[test]
    fn identifiers_are_quoted_where_needed() {
        let q = quals(
            vec![qual(1, 11, &[(5, INT_EQ)], 50.0, 300_000.0, 3.0)],
            Some(orders(300_000.0, vec![])),
        );
        let out = advise(q);
        assert!(out[0].text.as_deref().unwrap().starts_with(
            "CREATE INDEX CONCURRENTLY ON public.orders USING btree (\"Weird Col\");"
        ));
    }

    #[test]
    fn without_catalog_only_filters_are_trusted_and_the_advice_says_why() {
        let mut index_cond = qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0);
        index_cond.predicates[0].eval_type = 'i';
        assert!(advise(quals(vec![index_cond], None)).is_empty());
        let out = advise(quals(
            vec![qual(1, 11, &[(2, INT_EQ)], 50.0, 300_000.0, 3.0)],
            None,
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "missing_index.unresolved");
        assert_eq!(out[0].label("columns"), Some("#2"));
        assert!(out[0]
            .advice
            .contains("[repositories.main.monitored.\"db1\"]"));
    }
}
