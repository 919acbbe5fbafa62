//! A read-only session with a client-side deadline on every query.
//!
//! The server enforces `statement_timeout`, but only while it runs: a repository that is
//! frozen (stopped, swapping, behind a dead link that still holds the TCP session) never
//! answers, and a bare `tokio_postgres::Client` waits for ever. [`Session`] wraps the
//! client and bounds every query it runs, rows included, by `statement_timeout` plus
//! [`MARGIN`]. A query that runs out of time drops the session (its connection driver is
//! stopped): tokio-postgres pipelines queries on one socket, so nothing sent after a
//! stuck query could be answered either. [`Session::is_closed`] then says so, with the
//! reason, and the caller reconnects.
//!
//! Only the methods the read path uses are wrapped, with the driver's names, so a read
//! function takes a `&Session` where it took a `&Client` and cannot bypass the deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tokio_postgres::types::{BorrowToSql, ToSql};
use tokio_postgres::{Client, Row, RowStream, SimpleQueryMessage, ToStatement};

/// Added to `statement_timeout` for the client-side deadline: the server cancels a
/// statement at `statement_timeout`, the error needs a round trip to arrive.
pub const MARGIN: Duration = Duration::from_secs(5);

/// Why a query on a [`Session`] failed. Callers branch on it: after [`QueryError::Timeout`]
/// or [`QueryError::Closed`] the session is gone and must be reopened; after
/// [`QueryError::Db`] it is still usable unless [`Session::is_closed`] says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server refused the query, or the driver failed (decoding, I/O).
    #[error("{}", super::connect::describe_pg_error(.0))]
    Db(#[source] tokio_postgres::Error),
    /// No complete answer within the client-side deadline; the session was dropped.
    #[error("no answer from {session} within {} (statement_timeout + {}): the session was dropped; is the server frozen or overloaded?",
        humantime::format_duration(*.after), humantime::format_duration(MARGIN))]
    Timeout { session: String, after: Duration },
    /// The session was dropped earlier (by a timeout, the server or the network).
    #[error("the session on {session} is closed ({reason})")]
    Closed { session: String, reason: String },
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        QueryError::Db(e)
    }
}

impl QueryError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            QueryError::Db(e) => e.code(),
            _ => None,
        }
    }

    /// True when the session is gone (timed out or closed): reconnect, do not retry on it.
    pub fn is_session_lost(&self) -> bool {
        !matches!(self, QueryError::Db(_))
    }
}

/// The driver's statement methods, each under the session's deadline (same names, same
/// parameters, so a read function written for a `Client` reads the same).
macro_rules! deadline_queries {
    ($($name:ident -> $out:ty;)*) => {$(
        pub async fn $name<T>(
            &self,
            statement: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<$out, QueryError>
        where
            T: ?Sized + ToStatement,
        {
            self.within(self.until(), self.client.$name(statement, params))
                .await
        }
    )*};
}

/// A read-only session (see [`super::connect::open_session`]) whose queries all run
/// under a deadline.
pub struct Session {
    client: Client,
    /// The task driving the connection; stopped when the session is dropped for a timeout.
    driver: AbortHandle,
    deadline: Duration,
    /// What the session is on, for errors: "db1:5432", "db1:5432 database `app`".
    what: String,
    /// Set once, when the session is dropped: why.
    lost: OnceLock<String>,
}

impl Session {
    /// Wraps `client`, driven by the task `driver`; queries get `statement_timeout` plus
    /// [`MARGIN`].
    pub fn new(
        client: Client,
        driver: AbortHandle,
        statement_timeout: Duration,
        what: String,
    ) -> Self {
        Session {
            client,
            driver,
            deadline: statement_timeout + MARGIN,
            what,
            lost: OnceLock::new(),
        }
    }

    /// How long a query may take, rows included.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// What the session is on ("db1:5432").
    pub fn what(&self) -> &str {
        &self.what
    }

    /// True once the session cannot be used: dropped after a timeout, or closed by the
    /// server or the network.
    pub fn is_closed(&self) -> bool {
        self.lost.get().is_some() || self.client.is_closed()
    }

    /// Why the session cannot be used, when [`Session::is_closed`].
    pub fn closed_reason(&self) -> Option<String> {
        if let Some(r) = self.lost.get() {
            return Some(r.clone());
        }
        self.client
            .is_closed()
            .then(|| format!("the session on {} was closed by the server", self.what))
    }

    /// Drops the session: its connection is closed at once, queries waiting on it fail.
    pub fn close(&self, reason: String) {
        let _ = self.lost.set(reason);
        self.driver.abort();
    }

    fn timed_out(&self) -> QueryError {
        let e = QueryError::Timeout {
            session: self.what.clone(),
            after: self.deadline,
        };
        self.close(e.to_string());
        e
    }

    fn check_open(&self) -> Result<(), QueryError> {
        match self.lost.get() {
            Some(reason) => Err(QueryError::Closed {
                session: self.what.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs one driver call under the deadline (from `start`).
    async fn within<T>(
        &self,
        until: Instant,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, QueryError> {
        self.check_open()?;
        match tokio::time::timeout_at(until, call).await {
            Ok(r) => r.map_err(QueryError::Db),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn until(&self) -> Instant {
        Instant::now() + self.deadline
    }

    deadline_queries! {
        query -> Vec<Row>;
        query_one -> Row;
        query_opt -> Option<Row>;
    }

    /// Streams the rows; the deadline covers the whole stream, as the server's
    /// `statement_timeout` does.
    pub async fn query_raw<T, P, I>(&self, statement: &T, params: I) -> Result<Rows<'_>, QueryError>
    where
        T: ?Sized + ToStatement,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let until = self.until();
        let inner = self
            .within(until, self.client.query_raw(statement, params))
            .await?;
        Ok(Rows {
            inner: Box::pin(inner),
            deadline: Box::pin(tokio::time::sleep_until(until)),
            session: self,
        })
    }

    pub async fn batch_execute(&self, query: &str) -> Result<(), QueryError> {
        self.within(self.until(), self.client.batch_execute(query))
            .await
    }

    pub async fn simple_query(&self, query: &str) -> Result<Vec<SimpleQueryMessage>, QueryError> {
        self.within(self.until(), self.client.simple_query(query))
            .await
    }

    /// A round trip without a statement (a protocol Sync): proves the server answers.
    pub async fn probe(&self) -> Result<(), QueryError> {
        self.within(self.until(), self.client.check_connection())
            .await
    }
}

/// The rows of [`Session::query_raw`], under the query's deadline.
pub struct Rows<'a> {
    inner: Pin<Box<RowStream>>,
    deadline: Pin<Box<Sleep>>,
    session: &'a Session,
}

impl Stream for Rows<'_> {
    type Item = Result<Row, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.inner.as_mut().poll_next(cx) {
            return Poll::Ready(item.map(|r| r.map_err(QueryError::Db)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(self.session.timed_out())));
        }
        Poll::Pending
    }
}

/// Where a driver configuration points, for messages: "db1:5432", "/run/postgresql:5432"
/// (every host when there are several).
pub fn address(cfg: &tokio_postgres::Config) -> String {
    let ports = cfg.get_ports();
    cfg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_every_host_and_port() {
        let cfg: tokio_postgres::Config = "host=db1,db2 port=5432,6432 user=u".parse().unwrap();
        assert_eq!(address(&cfg), "db1:5432,db2:6432");
        let cfg: tokio_postgres::Config = "host=/run/postgresql user=u".parse().unwrap();
        assert_eq!(address(&cfg), "/run/postgresql:5432");
        // One port for several hosts applies to all.
        let cfg: tokio_postgres::Config = "host=a,b port=7000".parse().unwrap();
        assert_eq!(address(&cfg), "a:7000,b:7000");
    }

    #[test]
    fn a_timeout_says_where_how_long_and_what_to_check() {
        let e = QueryError::Timeout {
            session: "db1:5432".into(),
            after: Duration::from_secs(35),
        };
        assert!(e.is_session_lost());
        assert_eq!(
            e.to_string(),
            "no answer from db1:5432 within 35s (statement_timeout + 5s): the session was dropped; is the server frozen or overloaded?"
        );
    }
}
