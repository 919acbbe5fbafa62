//! Names without extra configuration: a remote server with no `monitored` table is reached
//! with the connection details PoWA keeps in `powa_servers` (as powa-web does), so its
//! index advice names the table and columns, carries the statement and is checked with
//! hypopg, and its roles are shown by name. `reach_servers = false` turns that off, and
//! `check` says, per server, what is available and why not.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::cli::{about, json_lines, run, succeeded, Settings};
use crate::support::lab;
use crate::support::workload::selective_filter;

/// The index advice about `t` on remote1 in `once --output json` with `config`, and
/// everything that run printed: (advice, insights, stdout, stderr).
fn advice_about(config: &Path, t: &str) -> (Vec<Value>, Vec<Value>, String, String) {
    let (stdout, stderr) = succeeded(&run(&["once", "--output", "json"], config));
    let all = json_lines(&stdout);
    let advice = about(&all, t)
        .into_iter()
        .filter(|i| i["kind"] == "missing_index" && i["server"] == "remote1")
        .cloned()
        .collect();
    (advice, all, stdout, stderr)
}

/// `once` over the last 15 minutes of the lab's PoWA 4 repository, its `server` only.
fn config(dir: &Path, server: &str, extra: &str) -> PathBuf {
    Settings::once("15m")
        .repository("lab", &lab().repo_dsn())
        .toml(&format!("servers = [\"{server}\"]"))
        .toml(extra)
        .toml("# Other tests' workloads share the lab: room for ours among the top queries.")
        .toml("[analyzers.slow_queries]\ntop_n = 200\nmin_total_time = \"1ms\"")
        .console()
        .write(dir)
}

#[test]
fn remote_servers_are_reached_through_powa_servers() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    // A 300k-row table on remote1 queried with a selective filter on unindexed columns,
    // between two snapshots of the remote servers.
    let t = format!("t_nr_{}", crate::support::unique());
    selective_filter("remote1", "remote", &t, 40);
    let dir = tempfile::tempdir().unwrap();
    let collector_password = lab.var("POWA_LAB_COLLECTOR_PASSWORD");

    // No monitored table at all: names, DDL and hypopg through powa_servers.
    let plain = config(dir.path(), "remote1", "");
    let (mine, all, stdout, stderr) = advice_about(&plain, &t);
    assert_eq!(mine.len(), 1, "{all:#?}");
    let i = &mine[0];
    assert_eq!(i["table"], format!("public.{t}"), "{i:#}");
    assert_eq!(i["columns"], "customer_id, status", "{i:#}");
    assert_eq!(i["rule"], "missing_index.btree_validated", "{i:#}");
    let text = i["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "CREATE INDEX CONCURRENTLY ON public.{t} USING btree (customer_id, status);"
        )),
        "{text}"
    );
    let (before, after) = (
        i["metrics"]["cost_before"].as_f64().unwrap(),
        i["metrics"]["cost_after"].as_f64().unwrap(),
    );
    assert!(after < before / 10.0, "hypopg: {before} -> {after}");
    // The same query's other findings carry the role by name, not "oid …".
    let by_query: Vec<&Value> = about(&all, &t)
        .into_iter()
        .filter(|i| i["server"] == "remote1" && i["kind"] == "slow_query")
        .collect();
    assert!(!by_query.is_empty(), "{all:#?}");
    for i in &by_query {
        assert_eq!(i["user"], lab.var("POWA_LAB_ADMIN_USER"), "{i:#}");
    }
    // No hypothetical index became a real one, and the password never shows.
    assert_eq!(
        lab.psql(
            "remote1",
            "app",
            &format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{t}'")
        ),
        "1"
    );
    assert!(!stdout.contains(collector_password) && !stderr.contains(collector_password));

    // `check` says how the server is reached and what works there.
    let (out, _) = succeeded(&run(&["check"], &plain));
    assert!(
        out.contains(&format!(
            "names, existing indexes and hypopg: through powa_servers as {} at 127.0.0.1:{}",
            lab.var("POWA_LAB_COLLECTOR_USER"),
            lab.var("POWA_LAB_REMOTE1_PORT")
        )),
        "{out}"
    );
    assert!(out.contains("roles: by name"), "{out}");
    assert!(
        out.contains("database app: names ok; hypopg checks ok"),
        "{out}"
    );
    assert!(!out.contains(collector_password));

    // Turned off: oids again, and the advice and `check` say why.
    let off = config(dir.path(), "remote1", "reach_servers = false");
    let (unresolved, all, _, _) = advice_about(&off, &t);
    assert_eq!(unresolved.len(), 1, "{all:#?}");
    assert_eq!(unresolved[0]["rule"], "missing_index.unresolved");
    let advice = unresolved[0]["advice"].as_str().unwrap();
    assert!(
        advice.contains("reach_servers = false")
            && advice.contains("[repositories.lab.monitored.\"remote1\"]"),
        "{advice}"
    );
    assert!(all
        .iter()
        .filter(|i| i["server"] == "remote1" && i["kind"] == "slow_query")
        .all(|i| i["user"].as_str().is_some_and(|u| u.starts_with("oid "))));
    let (out, _) = succeeded(&run(&["check"], &off));
    assert!(
        out.contains("names: not available (reach_servers = false in [repositories.lab])"),
        "{out}"
    );
    lab.psql("remote1", "app", &format!("DROP TABLE {t}"));
}

/// The repository's own server is read through the repository's connection, as a
/// standard deployment lets it. Where its role may not enter a database (the lab's
/// `sentinel_ro` has no CONNECT on `app`), what shows the table's oid says why and what
/// opens it — the GRANT, or the setting — and how to name the table meanwhile; and that
/// guess of a route is not reported as a problem of its own.
#[test]
fn a_database_the_repository_role_may_not_enter_says_what_opens_it() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let t = format!("t_nrl_{}", crate::support::unique());
    selective_filter("repo", "repo", &t, 40);
    let oid = lab
        .psql("repo", "app", &format!("SELECT '{t}'::regclass::oid"))
        .trim()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let local = config(dir.path(), "local", "");
    let (stdout, _) = succeeded(&run(&["once", "--output", "json"], &local));
    let all = json_lines(&stdout);
    let mine = about(&all, &t);
    let grant = "sentinel_ro may not connect to database app: GRANT CONNECT ON DATABASE app TO sentinel_ro, or set [repositories.lab.monitored.\"local\"]";
    let by_hand = format!("SELECT {oid}::regclass in app names the table");
    let slow = mine
        .iter()
        .find(|i| i["kind"] == "slow_query")
        .unwrap_or_else(|| panic!("no slow-query finding about {t}: {all:#?}"));
    assert_eq!(slow["class"], "selective_filter", "{slow:#}");
    assert_eq!(slow["filter"], format!("relation oid {oid} (database app)"));
    let advice = slow["advice"].as_str().unwrap();
    assert!(
        advice.contains(grant) && advice.contains(&by_hand),
        "{advice}"
    );
    let index = mine
        .iter()
        .find(|i| i["kind"] == "missing_index")
        .unwrap_or_else(|| panic!("no index finding about {t}: {all:#?}"));
    assert_eq!(index["rule"], "missing_index.unresolved", "{index:#}");
    let advice = index["advice"].as_str().unwrap();
    assert!(
        advice.contains(grant) && advice.contains(&by_hand),
        "{advice}"
    );
    assert!(
        !all.iter().any(|i| i["rule"] == "missing_index.blind"),
        "{all:#?}"
    );
    lab.psql("repo", "app", &format!("DROP TABLE {t}"));
}
