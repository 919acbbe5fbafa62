//! The collector source for one PoWA server: reads the window's statements deltas.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use tokio_postgres::Client;

use super::discovery::{PowaInfo, ServerInfo};
use super::reader::{read_window, StatementsWindow};
use sentinel_actors::collector::{Collected, Source};
use sentinel_actors::{SourceError, Window};

pub struct PowaSource {
    name: String,
    repository: String,
    client: Arc<Client>,
    info: Arc<PowaInfo>,
    server: ServerInfo,
}

impl PowaSource {
    pub fn new(
        repository: &str,
        client: Arc<Client>,
        info: Arc<PowaInfo>,
        server: ServerInfo,
    ) -> Self {
        PowaSource {
            name: format!("{repository}/{}", server.name),
            repository: repository.to_string(),
            client,
            info,
            server,
        }
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
        Box::pin(async move {
            let w = read_window(&client, &repository, &info, &server, window)
                .await
                .map_err(SourceError::new)?;
            let taken_at = w.last_ts.unwrap_or(window.end);
            Ok((Arc::new(w), taken_at))
        })
    }
}
