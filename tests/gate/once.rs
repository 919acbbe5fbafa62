//! `powa-sentinel once` twice on the real lab with a persistent `[state] dir`: the second
//! run must not announce the first run's findings again as "new" (successive `once` runs
//! behave like a slow daemon).

use crate::support::cli::{about, json_lines, run, succeeded, Settings};
use crate::support::workload::slow_query;
use crate::support::{lab, unique};

#[test]
fn a_second_once_with_state_does_not_repeat_the_first_runs_findings() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_gate_{}", unique());
    slow_query(&t);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("delivered.jsonl");
    let config = Settings::log("info")
        .json()
        .window("10m")
        .toml("# Other tests' workloads share the lab: room for ours among the top queries.")
        .toml("[analyzers.slow_queries]\ntop_n = 30")
        .state(&state)
        .repository("lab", &lab.repo_dsn())
        .file("archive", &file)
        .write(dir.path());
    let run_once =
        |config: &std::path::Path| succeeded(&run(&["once", "--output", "json"], config));

    let (stdout, _) = run_once(&config);
    let first = json_lines(&stdout);
    let ours = about(&first, &t);
    assert_eq!(ours.len(), 1, "our slow query, once: {first:#?}");
    assert_eq!(ours[0]["status"], "new");
    let fingerprint = ours[0]["fingerprint"].as_str().unwrap().to_string();
    let delivered = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(about(&delivered, &t).len(), 1, "the file channel got it");
    assert!(state.join("gate.redb").is_file());

    // Same data, second run: the finding is ongoing, so nothing about it is sent.
    let (stdout, stderr) = run_once(&config);
    let second = json_lines(&stdout);
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
    let delivered_after = json_lines(&std::fs::read_to_string(&file).unwrap());
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
    let third = json_lines(&stdout);
    let ours = about(&third, &t);
    assert_eq!(ours.len(), 1, "{third:#?}");
    assert_eq!(ours[0]["status"], "new");
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
