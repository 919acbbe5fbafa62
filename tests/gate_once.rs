//! `powa-sentinel once` twice on the real lab with a persistent `[state] dir`: the second
//! run must not announce the first run's findings again as "new" (successive `once` runs
//! behave like a slow daemon).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{exclusive, lab, unique};

fn run_once(config: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_powa-sentinel"))
        .args(["once", "--output", "json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn about<'a>(insights: &'a [Value], table: &str) -> Vec<&'a Value> {
    insights
        .iter()
        .filter(|i| i["text"].as_str().is_some_and(|x| x.contains(table)))
        .collect()
}

#[test]
fn a_second_once_with_state_does_not_repeat_the_first_runs_findings() {
    let lab = lab();
    let t = format!("t_gate_{}", unique());
    {
        let _guard = exclusive();
        lab.psql(
            "repo",
            "app",
            &format!(
                "CREATE TABLE {t} AS SELECT g AS id, md5(g::text) AS payload \
                 FROM generate_series(1, 300000) g"
            ),
        );
        lab.snapshot("repo");
        lab.repeat(
            "repo",
            "app",
            &format!("SELECT count(*) FROM {t} WHERE md5(payload) LIKE '%abd%'"),
            8,
        );
        lab.snapshot("repo");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("delivered.jsonl");
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[log]
level = "info"
format = "json"

[analysis]
window = "10m"

# Other tests' workloads share the lab: room for ours among the top queries.
[analyzers.slow_queries]
top_n = 30

[state]
dir = "{state}"

[repositories.lab]
dsn = "{dsn}"

[channels.archive]
type = "file"
path = "{file}"
"#,
            state = state.display(),
            dsn = lab.repo_dsn(),
            file = file.display(),
        ),
    )
    .unwrap();

    let (stdout, _) = run_once(&config);
    let first = lines(&stdout);
    let ours = about(&first, &t);
    assert_eq!(ours.len(), 1, "our slow query, once: {first:#?}");
    assert_eq!(ours[0]["status"], "new");
    let fingerprint = ours[0]["fingerprint"].as_str().unwrap().to_string();
    let delivered = lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(about(&delivered, &t).len(), 1, "the file channel got it");
    assert!(state.join("gate.redb").is_file());

    // Same data, second run: the finding is ongoing, so nothing about it is sent.
    let (stdout, stderr) = run_once(&config);
    let second = lines(&stdout);
    assert!(
        second
            .iter()
            .all(|i| i["fingerprint"].as_str() != Some(fingerprint.as_str())),
        "the second run repeated our finding: {second:#?}"
    );
    assert!(
        second.iter().all(|i| i["status"] != "new"),
        "nothing is new on an unchanged lab: {second:#?}"
    );
    let delivered_after = lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(
        about(&delivered_after, &t).len(),
        1,
        "the channel did not get it twice"
    );
    assert!(stderr.contains("Gate state loaded."), "{stderr}");

    // The same config without a state: every run starts afresh and reports it as new.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&format!("[state]\ndir = \"{}\"\n", state.display()), ""),
    )
    .unwrap();
    let (stdout, _) = run_once(&config);
    let third = lines(&stdout);
    let ours = about(&third, &t);
    assert_eq!(ours.len(), 1, "{third:#?}");
    assert_eq!(ours[0]["status"], "new");
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
