//! `once` (and `backtest`) read the servers of a repository at once, each on a session of
//! its own, at most `collection.max_concurrent_per_repository` of them, and find what
//! reading them one after another on one session finds.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use powa_sentinel::config::Settings as Config;
use powa_sentinel::topology::{self, RunOptions};
use sentinel_actors::collector::Collect;
use sentinel_actors::Window;

use crate::support::cli::Settings;
use crate::support::{exclusive, lab, same_servers};

/// What each server's collection gave: (server, insights, newest data time).
type Analysed = Vec<(String, usize, Option<DateTime<Utc>>)>;

/// `once`'s topology on the PoWA 4 repository with `max` sessions for collections: the
/// backend of each collector's session, and what collecting `window` gave.
async fn analyse(max: usize, window: Window) -> (Vec<i32>, Analysed) {
    let dir = tempfile::tempdir().unwrap();
    let path = Settings::log("warning")
        .toml(&format!(
            "[collection]\nmax_concurrent_per_repository = {max}"
        ))
        .repository("lab", &lab().repo_dsn())
        .file("out", &dir.path().join("out.txt"))
        .write(dir.path());
    let config = Config::load(&path).expect("settings");
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let topo = topology::build(&config, RunOptions::default(), &log)
        .await
        .expect("topology");
    let mut pids = Vec::new();
    for c in &topo.collectors {
        let row = c
            .session
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("the collector's session answers");
        pids.push(row.get(0));
    }
    let results =
        topology::per_session(&topo.collectors, |c| c.addr.send(Collect { window })).await;
    let analysed = topo
        .collectors
        .iter()
        .zip(results)
        .map(|(c, r)| {
            let s = r
                .expect("collector running")
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            (c.name.clone(), s.insights, s.taken_at)
        })
        .collect();
    (pids, analysed)
}

// Each test has its own runtime thread: holding the guard across awaits cannot deadlock.
#[allow(clippy::await_holding_lock)]
#[actix_rt::test]
async fn once_reads_the_servers_of_a_repository_in_parallel_with_the_same_results() {
    let _turn = crate::support::turn(module_path!());
    // The lab's own servers only, while both runs read them, and no other test's
    // snapshots in between.
    let _servers = same_servers();
    let _snapshots = exclusive();
    // A window that is over: both runs read the same points. powa-collector stamps a
    // remote's record with the time its read began and commits it later, so a window is
    // over for the remotes once a snapshot begun after its end is done.
    let end = Utc::now() - chrono::Duration::seconds(1);
    lab().snapshot("remote");
    let window = Window {
        start: end - chrono::Duration::minutes(10),
        end,
    };
    let (one_pids, one) = analyse(1, window).await;
    let (many_pids, many) = analyse(3, window).await;

    let servers: BTreeSet<&str> = many.iter().map(|a| a.0.as_str()).collect();
    for s in ["lab/local", "lab/remote1", "lab/remote2"] {
        assert!(servers.contains(s), "{s} analysed: {servers:?}");
    }
    let distinct = |p: &[i32]| p.iter().collect::<BTreeSet<_>>().len();
    assert_eq!(distinct(&one_pids), 1, "one session: one after another");
    assert_eq!(
        distinct(&many_pids),
        3,
        "three servers, three sessions: read at once"
    );
    assert_eq!(one, many, "the same findings, server by server");
}
