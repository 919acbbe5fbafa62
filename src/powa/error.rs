//! Why talking to PoWA failed, by phase.
//!
//! The phase is what a caller branches on: after [`PowaError::Connect`] or
//! [`PowaError::Closed`] there is no usable session and the runtime reconnects (with
//! backoff); after [`PowaError::Discover`] or [`PowaError::Read`] the session still
//! works, only this answer is missing. The text is the whole message, written for the
//! operator (what failed, where, and what to do): log lines and `/status` show it as is.

use super::connect::{describe_pg_error, ConnectError};
use super::session::{QueryError, Session};

#[derive(Debug, thiserror::Error)]
pub enum PowaError {
    /// No session: the server could not be reached, authenticated or set up.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Connected, but the repository is not one powa-sentinel can read: PoWA missing or
    /// of an unsupported version, its tables unreadable by the role.
    #[error("{0}")]
    Discover(String),
    /// A read failed; the session is still usable.
    #[error("{0}")]
    Read(String),
    /// The session is gone: a query ran out of time, or the server or the network closed
    /// it. Reconnect; nothing more can be read on it.
    #[error("{0}")]
    Closed(String),
}

impl PowaError {
    /// A query on `session` failed with `e`; `text` says what was being done. Closed when
    /// the session is lost (whatever the query's own error), else `phase`.
    pub fn query(
        session: &Session,
        e: &QueryError,
        phase: fn(String) -> PowaError,
        text: String,
    ) -> PowaError {
        if e.is_session_lost() || session.is_closed() {
            PowaError::Closed(text)
        } else {
            phase(text)
        }
    }

    /// A read on `session` failed with `e`; `say` words the driver's reason.
    pub fn read_failed(
        session: &Session,
        e: QueryError,
        say: impl FnOnce(String) -> String,
    ) -> PowaError {
        let text = say(describe_pg_error(&e));
        PowaError::query(session, &e, PowaError::Read, text)
    }

    /// A read of `what` for server `server` failed: "server `s`: reading what: reason".
    pub fn reading(session: &Session, server: &str, what: &str, e: QueryError) -> PowaError {
        PowaError::read_failed(session, e, |reason| {
            format!("server `{server}`: reading {what}: {reason}")
        })
    }

    /// A discovery query failed with `e`; `text` says so (the driver's reason, with a
    /// hint where there is one).
    pub fn discovering(session: &Session, e: &QueryError, text: String) -> PowaError {
        PowaError::query(session, e, PowaError::Discover, text)
    }

    /// True when the session is gone or was never there: reconnect before reading again.
    pub fn needs_reconnect(&self) -> bool {
        matches!(self, PowaError::Connect(_) | PowaError::Closed(_))
    }

    /// The same error, its text prefixed with `prefix` (e.g. which repository). A
    /// [`PowaError::Connect`] already names where it failed and is kept as it is.
    pub fn prefixed(self, prefix: &str) -> PowaError {
        match self {
            PowaError::Connect(e) => PowaError::Connect(e),
            PowaError::Discover(t) => PowaError::Discover(format!("{prefix}{t}")),
            PowaError::Read(t) => PowaError::Read(format!("{prefix}{t}")),
            PowaError::Closed(t) => PowaError::Closed(format!("{prefix}{t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_or_missing_session_asks_for_a_reconnection() {
        let connect = PowaError::Connect(ConnectError::Password {
            repo: "main".into(),
            reason: "password_env names `X`, which is not set".into(),
        });
        assert!(connect.needs_reconnect());
        assert!(PowaError::Closed("gone".into()).needs_reconnect());
        assert!(!PowaError::Read("no".into()).needs_reconnect());
        assert!(!PowaError::Discover("no".into()).needs_reconnect());
    }

    #[test]
    fn the_text_is_the_message_and_a_prefix_keeps_the_phase() {
        let e = PowaError::Discover("PoWA is not installed in database `x`".into())
            .prefixed("repository `main`: ");
        assert!(matches!(e, PowaError::Discover(_)));
        assert_eq!(
            e.to_string(),
            "repository `main`: PoWA is not installed in database `x`"
        );
        let c = PowaError::Connect(ConnectError::Password {
            repo: "main".into(),
            reason: "r".into(),
        });
        assert_eq!(
            c.prefixed("ignored: ").to_string(),
            "repository `main`: cannot read the password: r"
        );
    }
}
