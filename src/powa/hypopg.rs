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
//!
//! Normalisation also turns typed literals into bare placeholders (`interval '1 day'`
//! becomes `interval $3`, which no parser accepts): [`plannable`] writes them back as casts
//! (`$3::interval`). A text that still cannot be planned, or one cut short, is left out
//! with a reason for the log; the chat only learns that the check could not be made and
//! in words, never the SQL error.

use tokio_postgres::SimpleQueryMessage;

use super::connect::describe_pg_error;
use super::error::PowaError;
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
    /// Why the check could not be made (hypopg missing, no explainable query, …), in
    /// words fit for a chat.
    pub error: Option<String>,
    /// What went wrong per left-out query (SQL errors included): for the log only.
    pub details: Vec<String>,
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

/// Type names that may prefix a string literal (`interval '1 day'`); after
/// normalisation they prefix a placeholder. Longest first.
const TYPED_LITERALS: &[&str] = &[
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
    "double precision",
    "character varying",
    "interval",
    "timestamptz",
    "timestamp",
    "timetz",
    "time",
    "date",
    "numeric",
    "decimal",
    "integer",
    "int",
    "int2",
    "int4",
    "int8",
    "bigint",
    "smallint",
    "real",
    "float",
    "float4",
    "float8",
    "boolean",
    "bool",
    "text",
    "varchar",
    "character",
    "char",
    "uuid",
    "json",
    "jsonb",
    "inet",
    "cidr",
    "macaddr",
    "bytea",
    "money",
    "xml",
    "tsquery",
    "tsvector",
];

/// One lexical piece of a statement: a word, a `$n` placeholder, or anything else
/// (punctuation, strings, quoted identifiers, comments, white space).
#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Param(&'a str),
    Space(&'a str),
    Other(&'a str),
}

fn lex(t: &str) -> Vec<Tok<'_>> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(Tok::Space(&t[start..i]));
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            out.push(Tok::Space(&t[start..i]));
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(b.len());
            out.push(Tok::Space(&t[start..i]));
            continue;
        }
        if c == b'\'' || c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push(Tok::Other(&t[start..i]));
            continue;
        }
        if c == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Param(&t[start..i]));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Tok::Word(&t[start..i]));
            continue;
        }
        // One character (UTF-8 safe: multi-byte characters were taken as words).
        i += 1;
        out.push(Tok::Other(&t[start..i]));
    }
    out
}

/// Why a normalised text is not explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplannable {
    /// Not a single plain read (SELECT or WITH).
    NotARead,
    /// PoWA's text was cut at the sentinel's length limit.
    Cut,
}

impl Unplannable {
    pub fn reason(self) -> &'static str {
        match self {
            Unplannable::NotARead => "not a plain SELECT",
            Unplannable::Cut => "its text is cut at the sentinel's length limit",
        }
    }
}

/// A normalised text made plannable: a single plain read, with typed literals whose
/// value normalisation removed (`interval $3`, `date $1`) written as casts
/// (`$3::interval`). Strings, quoted identifiers and comments are left as they are.
pub fn plannable(text: &str) -> Result<String, Unplannable> {
    if text.chars().count() >= super::reader::TEXT_LIMIT as usize {
        return Err(Unplannable::Cut);
    }
    let t = explainable(text).ok_or(Unplannable::NotARead)?;
    let toks = lex(t);
    let mut out = String::with_capacity(t.len() + 16);
    let mut i = 0;
    'outer: while i < toks.len() {
        if let Tok::Word(_) = toks[i] {
            for ty in TYPED_LITERALS {
                let words: Vec<&str> = ty.split(' ').collect();
                // words separated by single Space tokens, then Space?, then a Param
                let mut j = i;
                let mut ok = true;
                for (k, w) in words.iter().enumerate() {
                    if k > 0 {
                        if !matches!(toks.get(j), Some(Tok::Space(_))) {
                            ok = false;
                            break;
                        }
                        j += 1;
                    }
                    match toks.get(j) {
                        Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w) => j += 1,
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                if matches!(toks.get(j), Some(Tok::Space(_))) {
                    j += 1;
                }
                // A type name right after `::` or `.` is a cast or a qualified name.
                let before = toks[..i].iter().rev().find(|t| !matches!(t, Tok::Space(_)));
                if matches!(before, Some(Tok::Other(":")) | Some(Tok::Other("."))) {
                    continue;
                }
                if let Some(Tok::Param(p)) = toks.get(j) {
                    out.push_str(p);
                    out.push_str("::");
                    out.push_str(ty);
                    i = j + 1;
                    continue 'outer;
                }
            }
        }
        match toks[i] {
            Tok::Word(x) | Tok::Param(x) | Tok::Other(x) | Tok::Space(x) => out.push_str(x),
        }
        i += 1;
    }
    Ok(out)
}

/// A chat-fit summary of why the helped queries could not be explained, from the raw
/// errors (which go to the log).
fn in_words(errors: &[String]) -> &'static str {
    let any = |needle: &str| errors.iter().any(|e| e.contains(needle));
    if any("permission denied") {
        "the role may not read a table of the helped queries (grant SELECT on it, e.g. pg_read_all_data)"
    } else if any("statement timeout") {
        "planning took longer than the statement timeout"
    } else if any("not a plain SELECT") {
        "the helped queries are not plain SELECTs"
    } else if any("cut at the sentinel") {
        "the helped queries' texts are too long to plan"
    } else {
        "the helped queries' normalised texts could not be planned"
    }
}

/// What one hypopg check gave.
#[derive(Debug, Default)]
pub struct Tried {
    pub queries: Vec<QueryCost>,
    /// Chat-fit reason when nothing could be measured.
    pub error: Option<String>,
    /// Raw errors of left-out queries, for the log.
    pub details: Vec<String>,
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
    pub async fn new(client: &'a Session, database: &str) -> Result<Explainer<'a>, PowaError> {
        let err = |e: QueryError| PowaError::read_failed(client, e, |reason| reason);
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                        EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'hypopg')",
                &[],
            )
            .await
            .map_err(err)?;
        let version: i32 = row.get(0);
        if !row.get::<_, bool>(1) {
            return Err(PowaError::Read(format!(
                "hypopg is not installed in database `{database}` (CREATE EXTENSION hypopg there, or set hypopg = false)"
            )));
        }
        let generic_plan_option = version >= 160000;
        if !generic_plan_option {
            client
                .batch_execute("SET plan_cache_mode = force_generic_plan")
                .await
                .map_err(err)?;
        }
        Ok(Explainer {
            client,
            generic_plan_option,
            seq: 0,
        })
    }

    /// The plan (JSON text) of a normalised query, generic in its `$n` parameters.
    pub async fn explain(&mut self, text: &str) -> Result<String, PowaError> {
        let owned = plannable(text).map_err(|u| PowaError::Read(u.reason().to_string()))?;
        let t = owned.as_str();
        let client = self.client;
        let err = |e: QueryError| PowaError::read_failed(client, e, |reason| reason);
        let nothing = || PowaError::Read("EXPLAIN returned nothing".to_string());
        if self.generic_plan_option {
            let m = self
                .client
                .simple_query(&format!("EXPLAIN (GENERIC_PLAN, FORMAT JSON) {t}"))
                .await
                .map_err(err)?;
            return first_value(&m).ok_or_else(nothing);
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
            first_value(&m).ok_or_else(nothing)
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
    pub async fn try_index(&mut self, create_index: &str, queries: &[(i64, String)]) -> Tried {
        let err = |e: QueryError| describe_pg_error(&e);
        let mut tried = Tried::default();
        if let Err(e) = self.client.batch_execute("SELECT hypopg_reset()").await {
            tried.details.push(format!("hypopg_reset: {}", err(e)));
            tried.error = Some("hypopg could not be used in this session".to_string());
            return tried;
        }
        let mut before = Vec::new();
        for (id, text) in queries {
            match self.explain(text).await {
                Ok(p) => match total_cost(&p) {
                    Some(c) => before.push((*id, text, c)),
                    None => tried.details.push(format!("queryid {id}: unreadable plan")),
                },
                Err(e) => tried.details.push(format!("queryid {id}: {e}")),
            }
        }
        if before.is_empty() {
            tried.error = Some(if queries.is_empty() {
                "the helped queries' texts are gone from PoWA".to_string()
            } else {
                in_words(&tried.details).to_string()
            });
            return tried;
        }
        let name: String = match self
            .client
            .query_one(
                "SELECT indexname::text FROM hypopg_create_index($1)",
                &[&create_index],
            )
            .await
        {
            Ok(r) => r.get(0),
            Err(e) => {
                tried
                    .details
                    .push(format!("hypopg_create_index: {}", err(e)));
                tried.error = Some("hypopg could not create the index".to_string());
                return tried;
            }
        };
        for (id, text, cost) in before {
            match self.explain(text).await {
                Ok(p) => {
                    if let Some(after) = total_cost(&p) {
                        tried.queries.push(QueryCost {
                            queryid: id,
                            before: cost,
                            after,
                            uses_index: p.contains(&name),
                        });
                    }
                }
                Err(e) => tried.details.push(format!("queryid {id}: {e}")),
            }
        }
        if let Err(e) = self.client.batch_execute("SELECT hypopg_reset()").await {
            tried.details.push(format!("hypopg_reset: {}", err(e)));
        }
        if tried.queries.is_empty() {
            tried.error = Some(in_words(&tried.details).to_string());
        }
        tried
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
            details: vec![],
        };
        assert_eq!(v.total_costs(), (2000.0, 1100.0));
        assert!((v.gain().unwrap() - 0.45).abs() < 1e-9);
        let none = Validation {
            queries: vec![],
            ..v
        };
        assert_eq!(none.gain(), None);
    }

    #[test]
    fn typed_literals_become_casts() {
        assert_eq!(
            plannable("SELECT * FROM t WHERE at > now() - interval $3 AND d = DATE $1").unwrap(),
            "SELECT * FROM t WHERE at > now() - $3::interval AND d = $1::date"
        );
        assert_eq!(
            plannable("select 1 from t where x = timestamp with time zone $2").unwrap(),
            "select 1 from t where x = $2::timestamp with time zone"
        );
        // Casts, IN lists, strings, quoted names and comments stay as they are.
        let same = "SELECT \"interval\" FROM t WHERE a = $1::int AND b IN ($2, $3) AND c = 'date $4' /* text $5 */ AND t.date = $6";
        assert_eq!(plannable(same).unwrap(), same);
        // pg_stat_statements 18 squashes long IN lists into a comment: still valid.
        let squashed = "SELECT * FROM t WHERE id IN ($1 /*, ... */)";
        assert_eq!(plannable(squashed).unwrap(), squashed);
        // `AT TIME ZONE $1` is not a typed literal.
        let tz = "SELECT x AT TIME ZONE $1 FROM t";
        assert_eq!(plannable(tz).unwrap(), tz);
        assert_eq!(plannable("UPDATE t SET a = $1"), Err(Unplannable::NotARead));
        let long = format!("SELECT * FROM t WHERE a IN ({})", "$1, ".repeat(1000));
        assert_eq!(plannable(&long), Err(Unplannable::Cut));
        // Non-ASCII text survives.
        assert_eq!(
            plannable("SELECT 名前 FROM t WHERE d = date $1").unwrap(),
            "SELECT 名前 FROM t WHERE d = $1::date"
        );
    }

    #[test]
    fn reasons_in_words_never_carry_sql_errors() {
        let raw = vec!["queryid 7: ERROR: syntax error at or near \"$3\"".to_string()];
        let w = in_words(&raw);
        assert!(!w.contains("syntax") && !w.contains("$3"), "{w}");
        assert!(
            in_words(&["queryid 1: ERROR: permission denied for table t".to_string()])
                .contains("SELECT")
        );
    }
}
