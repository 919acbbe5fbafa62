//! The collector source for one PoWA server: reads the window's statements deltas.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use tokio_postgres::Client;

use super::discovery::{PowaInfo, ServerInfo};
use super::reader::{read_baseline, read_window, StatementsWindow};
use sentinel_actors::collector::{Collected, Source};
use sentinel_actors::{SourceError, Window};

pub struct PowaSource {
    name: String,
    repository: String,
    client: Arc<Client>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
    /// Read the window shifted back by this much too, for the baseline.
    baseline_offset: Option<std::time::Duration>,
    /// Reads pg_qualstats quals for the missing-index advisor, when it is on.
    quals: Option<super::qualstats::QualsCollector>,
}

impl PowaSource {
    pub fn new(
        repository: &str,
        client: Arc<Client>,
        info: Arc<PowaInfo>,
        server: ServerInfo,
        baseline_offset: Option<std::time::Duration>,
    ) -> Self {
        PowaSource {
            name: format!("{repository}/{}", server.name),
            repository: repository.to_string(),
            client,
            info,
            server,
            baseline_offset,
            quals: None,
        }
    }

    /// Also read the server's pg_qualstats quals each cycle.
    pub fn with_quals(mut self, quals: super::qualstats::QualsCollector) -> Self {
        self.quals = Some(quals);
        self
    }
}

impl Source for PowaSource {
    type Output = StatementsWindow;

    fn name(&self) -> &str {
        &self.name
    }

    fn collect(&mut self, window: Window) -> LocalBoxFuture<'static, Collected<StatementsWindow>> {
        let client = Arc::clone(&self.client);
        let info = Arc::clone(&self.info);
        let server = self.server.clone();
        let repository = self.repository.clone();
        let offset = self
            .baseline_offset
            .and_then(|d| chrono::Duration::from_std(d).ok());
        let quals = self.quals.clone();
        Box::pin(async move {
            let mut w = read_window(&client, &repository, &info, &server, window)
                .await
                .map_err(SourceError::new)?;
            if let Some(off) = offset {
                let shifted = Window {
                    start: window.start - off,
                    end: window.end - off,
                };
                let b = read_baseline(&client, &repository, &info, &server, shifted)
                    .await
                    .map_err(SourceError::new)?;
                w.baseline = Some(Box::new(b));
            }
            if let Some(q) = quals {
                w.quals = q
                    .collect(&client, &info, &server, window)
                    .await
                    .map_err(SourceError::new)?;
            }
            let taken_at = w.last_ts.unwrap_or(window.end);
            Ok((Arc::new(w), taken_at))
        })
    }
}
