//! Trying a candidate index without building it: hypopg's hypothetical indexes live only
//! in the backend's memory (no catalog write, nothing other sessions see), so they can be
//! created in the read-only session the sentinel keeps on a monitored database.
//!
//! For each helped query (its normalised text from PoWA), the planner's estimated total
//! cost is read without and with the hypothetical index. Normalised texts carry `$n`
//! placeholders and no values, so the plans must be generic: PostgreSQL 16+ has
//! `EXPLAIN (GENERIC_PLAN)`; before that the text is PREPAREd with
//! `plan_cache_mode = force_generic_plan` and explained through `EXECUTE` with NULL
//! arguments (a generic plan never looks at them). `hypopg_reset()` runs after each
//! candidate, whatever happened.

use tokio_postgres::SimpleQueryMessage;

use super::connect::describe_pg_error;
use super::session::{QueryError, Session};

/// Estimated cost of one helped query without and with the hypothetical index.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryCost {
    pub queryid: i64,
    pub before: f64,
    pub after: f64,
    /// The plan with the hypothetical index uses it.
    pub uses_index: bool,
}

/// The hypopg check of one candidate (dbid, relid, columns as in the candidate).
#[derive(Clone, Debug, PartialEq)]
pub struct Validation {
    pub dbid: u32,
    pub relid: u32,
    pub columns: Vec<i32>,
    pub queries: Vec<QueryCost>,
    /// Why the check could not be made (hypopg missing, no explainable query, …).
    pub error: Option<String>,
}

impl Validation {
    /// Summed cost before and after over the explained queries.
    pub fn total_costs(&self) -> (f64, f64) {
        self.queries
            .iter()
            .fold((0.0, 0.0), |(b, a), q| (b + q.before, a + q.after))
    }

    /// Share of the estimated cost the index removes; None when nothing was explained.
    pub fn gain(&self) -> Option<f64> {
        let (before, after) = self.total_costs();
        (before > 0.0).then(|| (1.0 - after / before).max(0.0))
    }
}

/// Only plain reads are explained: a normalised text is a single statement, but it is
/// still text from elsewhere, and EXPLAIN of anything else has no business here.
pub fn explainable(text: &str) -> Option<&str> {
    let t = text
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let first = t
        .trim_start_matches('(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    (matches!(first.as_str(), "select" | "with") && !t.contains(';')).then_some(t)
}

fn first_value(msgs: &[SimpleQueryMessage]) -> Option<String> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// Total cost of the top plan node of an `EXPLAIN (FORMAT JSON)` output.
pub fn total_cost(plan_json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(plan_json).ok()?;
    v.get(0)?.get("Plan")?.get("Total Cost")?.as_f64()
}

/// A session on the monitored database, prepared for generic plans.
pub struct Explainer<'a> {
    client: &'a Session,
    generic_plan_option: bool,
    seq: u32,
}

impl<'a> Explainer<'a> {
    /// Checks that hypopg is there and sets the session up.
    pub async fn new(client: &'a Session, database: &str) -> Result<Explainer<'a>, String> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                        EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'hypopg')",
                &[],
            )
            .await
            .map_err(|e| describe_pg_error(&e))?;
        let version: i32 = row.get(0);
        if !row.get::<_, bool>(1) {
            return Err(format!(
                "hypopg is not installed in database `{database}` (CREATE EXTENSION hypopg there, or set hypopg = false)"
            ));
        }
        let generic_plan_option = version >= 160000;
        if !generic_plan_option {
            client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await
                .map_err(|e| describe_pg_error(&e))?;
        }
        Ok(Explainer {
            client,
            generic_plan_option,
            seq: 0,
        })
    }

    /// The plan (JSON text) of a normalised query, generic in its `$n` parameters.
    pub async fn explain(&mut self, text: &str) -> Result<String, String> {
        let t = explainable(text).ok_or("not a plain SELECT")?;
        let err = |e: QueryError| describe_pg_error(&e);
        if self.generic_plan_option {
            let m = self
                .client
                .simple_query(&format!("EXPLAIN (GENERIC_PLAN, FORMAT JSON) {t}"))
                .await
                .map_err(err)?;
            return first_value(&m).ok_or_else(|| "EXPLAIN returned nothing".to_string());
        }
        self.seq += 1;
        let name = format!("powa_sentinel_hypo_{}", self.seq);
        self.client
            .simple_query(&format!("PREPARE {name} AS {t}"))
            .await
            .map_err(err)?;
        let result = async {
            let n: i32 = self
                .client
                .query_one(
                    "SELECT coalesce(cardinality(parameter_types), 0) FROM pg_catalog.pg_prepared_statements WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(err)?
                .get(0);
            let args = if n > 0 {
                format!("({})", vec!["NULL"; n as usize].join(", "))
            } else {
                String::new()
            };
            let m = self
                .client
                .simple_query(&format!("EXPLAIN (FORMAT JSON) EXECUTE {name}{args}"))
                .await
                .map_err(err)?;
            first_value(&m).ok_or_else(|| "EXPLAIN returned nothing".to_string())
        }
        .await;
        let _ = self
            .client
            .simple_query(&format!("DEALLOCATE {name}"))
            .await;
        result
    }

    /// Explains `queries` without and with the hypothetical index `create_index` (a
    /// `CREATE INDEX ON …` statement hypopg understands), then forgets the index.
    pub async fn try_index(
        &mut self,
        create_index: &str,
        queries: &[(i64, String)],
    ) -> Result<Vec<QueryCost>, String> {
        let err = |e: QueryError| describe_pg_error(&e);
        self.client
            .batch_execute("SELECT hypopg_reset()")
            .await
            .map_err(err)?;
        let mut before = Vec::new();
        let mut problems = Vec::new();
        for (id, text) in queries {
            match self.explain(text).await {
                Ok(p) => match total_cost(&p) {
                    Some(c) => before.push((*id, text, c)),
                    None => problems.push(format!("queryid {id}: unreadable plan")),
                },
                Err(e) => problems.push(format!("queryid {id}: {e}")),
            }
        }
        if before.is_empty() {
            return Err(format!(
                "no helped query could be explained ({})",
                if problems.is_empty() {
                    "no text".to_string()
                } else {
                    problems.join("; ")
                }
            ));
        }
        let name: String = self
            .client
            .query_one(
                "SELECT indexname::text FROM hypopg_create_index($1)",
                &[&create_index],
            )
            .await
            .map_err(|e| format!("hypopg_create_index: {}", err(e)))?
            .get(0);
        let mut out = Vec::new();
        for (id, text, cost) in before {
            match self.explain(text).await {
                Ok(p) => {
                    if let Some(after) = total_cost(&p) {
                        out.push(QueryCost {
                            queryid: id,
                            before: cost,
                            after,
                            uses_index: p.contains(&name),
                        });
                    }
                }
                Err(e) => problems.push(format!("queryid {id}: {e}")),
            }
        }
        self.client
            .batch_execute("SELECT hypopg_reset()")
            .await
            .map_err(err)?;
        if out.is_empty() {
            return Err(format!(
                "no helped query could be explained with the index ({})",
                problems.join("; ")
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_reads_are_explained() {
        assert_eq!(
            explainable(" SELECT * FROM t WHERE a = $1 ;\n"),
            Some("SELECT * FROM t WHERE a = $1")
        );
        assert!(explainable("with x as (select 1) select * from x").is_some());
        assert!(explainable("DELETE FROM t WHERE a = $1").is_none());
        assert!(explainable("SELECT 1; DROP TABLE t").is_none());
        assert!(explainable("VACUUM t").is_none());
    }

    #[test]
    fn reads_the_top_cost_and_the_gain() {
        let plan = r#"[{"Plan": {"Node Type": "Seq Scan", "Total Cost": 5043.48}}]"#;
        assert_eq!(total_cost(plan), Some(5043.48));
        assert_eq!(total_cost("[]"), None);
        let v = Validation {
            dbid: 1,
            relid: 2,
            columns: vec![1],
            queries: vec![
                QueryCost {
                    queryid: 1,
                    before: 1000.0,
                    after: 100.0,
                    uses_index: true,
                },
                QueryCost {
                    queryid: 2,
                    before: 1000.0,
                    after: 1000.0,
                    uses_index: false,
                },
            ],
            error: None,
        };
        assert_eq!(v.total_costs(), (2000.0, 1100.0));
        assert!((v.gain().unwrap() - 0.45).abs() < 1e-9);
        let none = Validation {
            queries: vec![],
            ..v
        };
        assert_eq!(none.gain(), None);
    }
}
