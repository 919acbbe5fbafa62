//! One story per problem, end to end on a real PoWA 4.1.4 repository: a query that got
//! slower because its index was dropped arrives as **one** entry that names the
//! regression, the missing index's statement and the numbers behind both, in the console
//! and in the WeCom robot's markdown; `--output json` still carries every insight and
//! every metric.

use serde_json::Value;

use crate::robot;
use crate::support::cli::{once_json, Settings};
use crate::support::workload::lookup;
use crate::support::{exclusive, lab, unique};

#[test]
fn a_regression_caused_by_a_dropped_index_is_one_entry() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_story_{}", unique());
    let lookup = lookup(&t);
    {
        let _guard = exclusive();
        lab.psql(
            "repo",
            "app",
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, 1 + (g % 10000) AS customer_id, \
                        CASE WHEN g % 10 = 0 THEN 'open' ELSE 'closed' END AS status, \
                        (g % 500)::numeric AS amount \
                 FROM generate_series(1, 600000) g; \
                 CREATE INDEX {t}_lookup_idx ON {t} (customer_id, status); ANALYZE {t}"
            ),
        );
        // Baseline phase, between two snapshots: the index serves the lookup.
        lab.snapshot("repo");
        let t0 = std::time::Instant::now();
        lab.repeat("repo", "app", &lookup, 60);
        lab.snapshot("repo");
        // The run's window is the last minute, its baseline the minute before: the
        // current phase starts a minute after the baseline phase did, with a snapshot of
        // its own first.
        if let Some(rest) = std::time::Duration::from_secs(62).checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
        lab.snapshot("repo");
        // Current phase: the index is gone, every call reads the whole table.
        lab.psql("repo", "app", &format!("DROP INDEX {t}_lookup_idx"));
        lab.repeat("repo", "app", &lookup, 60);
        lab.snapshot("repo");
    }
    let window = "1m";

    let robot = robot::start("story-key", &[]);
    let dir = tempfile::tempdir().unwrap();
    let config = Settings::log("warning")
        // The gate's defaults: immediate alerts on. A critical regression waits until every
        // analyzer has looked at the same snapshot and goes with its cause, the missing
        // index, in one entry; the report does not tell them again.
        .window(window)
        .toml(&format!(
            "baseline_offset = \"{window}\"\nbaseline_periods = 1"
        ))
        .repository("lab", &lab.repo_dsn())
        .toml("servers = [\"local\"]\npowa_web_url = \"https://powa.example.com/powa\"")
        .monitored("lab", "local", lab.var("POWA_LAB_REPO_ADMIN_DSN"))
        .toml(
            r#"
# Other tests' workloads share the lab: room for ours among the top queries.
[analyzers.slow_queries]
top_n = 50

[analyzers.regression]
min_total_time = "100ms"
"#,
        )
        .console()
        .wecom("wecom", &robot.url, "story-key")
        .write(dir.path());
    // JSON: the analyzers' findings, each whole.
    let (insights, stderr) = once_json(&config);
    let regression = insights
        .iter()
        .find(|i| i["kind"] == "regression" && i["text"].as_str().is_some_and(|x| x.contains(&t)))
        .unwrap_or_else(|| panic!("no regression of our lookup: {insights:#?}"));
    let index = insights
        .iter()
        .find(|i| {
            i["kind"] == "missing_index"
                && i["table"]
                    .as_str()
                    .is_some_and(|x| x.ends_with(&format!(".{t}")))
        })
        .unwrap_or_else(|| panic!("no missing index on our table: {insights:#?}"));
    assert!(
        index["queryids"]
            .as_str()
            .unwrap()
            .contains(regression["queryid"].as_str().unwrap()),
        "{index:#}"
    );
    for key in ["magnitude", "baselines_used", "factor", "extra_time_ms"] {
        assert!(
            regression["metrics"][key].is_number(),
            "{key}: {regression:#}"
        );
    }
    assert!(index["metrics"]["cost_before"].is_number(), "{index:#}");
    eprintln!(
        "regression severity: {}, missing index severity: {}",
        regression["severity"], index["severity"]
    );

    // The console (on stderr while stdout carries JSON): one entry for both.
    let factor = regression["metrics"]["factor"].as_f64().unwrap();
    let ddl = index["text"]
        .as_str()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(ddl.starts_with("CREATE INDEX CONCURRENTLY"), "{ddl}");
    let entries: Vec<&str> = stderr.split("\n\n").filter(|e| e.contains(&t)).collect();
    assert_eq!(entries.len(), 1, "one entry about our table:\n{stderr}");
    let e = entries[0];
    let f = if factor >= 10.0 {
        format!("{factor:.0}")
    } else {
        format!("{factor:.1}")
    };
    for want in [
        format!("local / app: a query got {f}× slower"),
        "— an index is missing".to_string(),
        format!("Fix: {ddl} (hypopg: cost "),
        "of the rows read are thrown away".to_string(),
        "60 calls (was 60)".to_string(),
        format!("Query: {lookup}")
            .replace("4242", "$1")
            .replace("'open'", "$2"),
        format!(
            "powa-web: https://powa.example.com/powa/server/0/database/app/query/{}/overview",
            regression["queryid"].as_str().unwrap()
        ),
    ] {
        assert!(e.contains(&want), "missing {want:?} in\n{e}");
    }
    assert!(!e.contains("magnitude") && !e.contains("Metrics:"), "{e}");

    // The robot got the same single entry, in WeCom markdown, within its byte limit.
    let record = std::fs::read_to_string(&robot.record).unwrap_or_default();
    let bodies: Vec<String> = record
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["content"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let ours: Vec<&String> = bodies.iter().filter(|b| b.contains(&t)).collect();
    assert_eq!(ours.len(), 1, "{bodies:#?}");
    let md = ours[0];
    assert!(md.len() <= 4096);
    let mentions = md.matches(&format!("FROM {t} ")).count();
    assert_eq!(mentions, 1, "the query is told once:\n{md}");
    assert!(md.contains(&format!(">Fix: `{ddl}`")), "{md}");
    assert!(
        md.contains("[powa-web](https://powa.example.com/powa/server/0/database/app/query/"),
        "{md}"
    );
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
