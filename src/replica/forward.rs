//! The analyzers' side of the findings queue: what the analyzers of a replica send to "the
//! gate" goes into the state database instead, under the server's lease, for whichever
//! replica delivers.
//!
//! The write runs on a blocking thread (the connection's caller waits for its COMMIT), so
//! the actix thread, which runs every collection of this replica, never waits on the
//! state database; the analyzer that sent the report waits, as it waits for a gate.

use std::sync::Arc;

use actix::prelude::*;
use slog::{debug, warn, Logger};

use sentinel_actors::gate::Insights;

use crate::statedb::lease::server_lease;
use crate::statedb::{queue, StateDb};

pub struct Forward {
    db: Arc<StateDb>,
    me: String,
    log: Logger,
}

impl Forward {
    pub fn new(db: Arc<StateDb>, me: &str, log: Logger) -> Forward {
        Forward {
            db,
            me: me.to_string(),
            log,
        }
    }
}

impl Actor for Forward {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
    }
}

impl Handler<Insights> for Forward {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, report: Insights, _ctx: &mut Self::Context) -> Self::Result {
        let db = Arc::clone(&self.db);
        let me = self.me.clone();
        let log = self.log.clone();
        Box::pin(async move {
            let (source, analyzer) = (report.source.clone(), report.analyzer.clone());
            let written = tokio::task::spawn_blocking(move || {
                let lease = server_lease(&report.source);
                db.transact(true, move |c| {
                    Box::pin(async move {
                        let bytes = queue::encode(&report)?;
                        queue::push(c, &me, &lease, &report, &bytes).await
                    })
                })
            })
            .await;
            match written {
                Ok(Ok(true)) => crate::metrics::metrics().queued(1),
                Ok(Ok(false)) => {
                    debug!(log, "Report not queued: this replica no longer holds the server, or it was queued before.";
                        "source" => &source, "analyzer" => &analyzer)
                }
                Ok(Err(e)) => {
                    warn!(log, "Cannot queue a report; the next cycle reads PoWA again.";
                        "source" => &source, "analyzer" => &analyzer, "error" => %e)
                }
                Err(e) => {
                    warn!(log, "Cannot queue a report."; "source" => &source, "error" => %e)
                }
            }
        })
    }
}
