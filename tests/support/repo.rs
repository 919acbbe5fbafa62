//! Reading the lab's PoWA repositories in process, as the read-only role: a repository,
//! one server's window, its baseline, its quals.

use chrono::{DateTime, Utc};
use powa_sentinel::analyze::MissingIndexSettings;
use powa_sentinel::powa::monitored::MonitoredSettings;
use powa_sentinel::powa::qualstats::QualsCollector;
use powa_sentinel::powa::reader::{read_baseline, read_window, StatementsWindow, CALLS};
use powa_sentinel::powa::{connect, Repository, RepositorySettings, ServerInfo};
use sentinel_actors::Window;

use super::lab;

/// The repository at `dsn`, discovered, under the name `name`.
pub async fn repository(name: &str, dsn: &str) -> Repository {
    connect(name, &RepositorySettings::from_dsn(dsn))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The lab's PoWA 4.1.4 repository, as `lab`.
pub async fn lab4() -> Repository {
    repository("lab", &lab().repo_dsn()).await
}

/// The server `name` of `repo`.
pub fn server<'a>(repo: &'a Repository, name: &str) -> &'a ServerInfo {
    repo.info
        .servers
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("server {name} not discovered: {:?}", repo.info.servers))
}

/// The window of server `name` of `repo`.
pub async fn read(repo: &Repository, name: &str, window: Window) -> StatementsWindow {
    read_window(
        &repo.client,
        &repo.name,
        &repo.info,
        server(repo, name),
        window,
    )
    .await
    .unwrap_or_else(|e| panic!("read_window: {e}"))
}

/// The window of server `name` of `repo` from `start` to now.
pub async fn since(repo: &Repository, name: &str, start: DateTime<Utc>) -> StatementsWindow {
    let end = Utc::now();
    read(repo, name, Window { start, end }).await
}

/// The calls of the queries whose text names `table`.
pub fn calls_of(w: &StatementsWindow, table: &str) -> f64 {
    w.queries
        .iter()
        .filter(|q| q.query.as_deref().is_some_and(|t| t.contains(table)))
        .map(|q| q.get(CALLS))
        .sum()
}

/// The lab's local server (PoWA 4.1.4) from `t1` to `t2`, and its baseline: the window of
/// the same length just before.
pub async fn window_and_baseline(
    t1: DateTime<Utc>,
    t2: DateTime<Utc>,
) -> (StatementsWindow, StatementsWindow) {
    let repo = lab4().await;
    let current = read(&repo, "local", Window { start: t1, end: t2 }).await;
    let start = t1 - (t2 - t1);
    let baseline = read_baseline(
        &repo.client,
        &repo.name,
        &repo.info,
        server(&repo, "local"),
        Window { start, end: t1 },
    )
    .await
    .unwrap_or_else(|e| panic!("read_baseline: {e}"));
    (current, baseline)
}

/// The lab's local server (PoWA 4.1.4) from `start` to `end`, with the quals of that
/// window collected as the daemon does: names, existing indexes and hypopg checks through
/// `monitored` (a DSN on the server) when given.
pub async fn window_with_quals(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    monitored: Option<&str>,
) -> StatementsWindow {
    let repo = lab4().await;
    let window = Window { start, end };
    let mut w = read(&repo, "local", window).await;
    w.quals = QualsCollector {
        repository: repo.name.clone(),
        settings: MissingIndexSettings::default(),
        monitored: monitored.map(MonitoredSettings::from_dsn),
    }
    .collect(
        &repo.client,
        &repo.info,
        server(&repo, "local"),
        window,
        w.calls_by_query(),
    )
    .await
    .unwrap_or_else(|e| panic!("collect quals: {e}"));
    w
}
