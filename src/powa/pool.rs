//! The sessions the collections of one repository check out, one per permit.
//!
//! A collection holds a session of its own for its whole read, so a slow read never
//! queues another server's read (tokio-postgres would pipeline them on one socket), and
//! discovery keeps a session no collection uses. One pool per connection generation; a
//! reconnection builds a new one.
//!
//! Single-threaded (the actix System's thread): the pool is shared by `Rc`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use slog::{warn, Logger};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{open_session, RepositorySettings, Session};

type Client = Arc<Session>;

pub struct SessionPool {
    permits: Arc<Semaphore>,
    idle: RefCell<Vec<Client>>,
    all: Vec<Client>,
}

impl SessionPool {
    /// A pool of `sessions` (at least one).
    pub fn new(sessions: Vec<Client>) -> Rc<Self> {
        Rc::new(SessionPool {
            permits: Arc::new(Semaphore::new(sessions.len())),
            idle: RefCell::new(sessions.clone()),
            all: sessions,
        })
    }

    /// Opens the collection sessions of a repository just connected: up to `wanted`,
    /// each through [`open_session`], the path `connect` takes too (read-only
    /// transactions, statement, lock and idle timeouts), so pooled sessions are
    /// configured exactly as the first, without discovering PoWA again. If none can be
    /// opened, collections share `first`, the discovery session.
    pub async fn open(
        name: &str,
        settings: &RepositorySettings,
        wanted: usize,
        first: &Client,
        log: &Logger,
    ) -> Rc<Self> {
        let mut sessions = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            match open_session(name, settings).await {
                Ok(c) => sessions.push(Arc::new(c)),
                Err(e) => {
                    warn!(log, "Could not open another collection session; fewer collections run at once until the next reconnection.";
                        "error" => %e, "opened" => sessions.len(), "wanted" => wanted);
                    break;
                }
            }
        }
        if sessions.is_empty() {
            sessions.push(Arc::clone(first));
        }
        SessionPool::new(sessions)
    }

    /// How many sessions the pool holds.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Never: a pool holds at least one session.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The session a collector keyed by `hash` starts on: the first sessions of a
    /// repository's collectors are spread over the pool (later each takes whichever is
    /// free).
    pub fn spread(&self, hash: u64) -> Client {
        Arc::clone(&self.all[(hash % self.all.len() as u64) as usize])
    }

    /// True while every session is checked out (a collection would wait).
    pub fn exhausted(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// Waits for a free session, preferring `last` (the one the caller's collector is
    /// built on) so that a collector is rebuilt only when its session is busy.
    pub async fn checkout(self: &Rc<Self>, last: &Client) -> Lease {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let client = {
            let mut idle = self.idle.borrow_mut();
            let i = idle
                .iter()
                .position(|c| Arc::ptr_eq(c, last))
                .unwrap_or(idle.len() - 1);
            idle.swap_remove(i)
        };
        Lease {
            pool: Rc::clone(self),
            client: Some(client),
            _permit: permit,
        }
    }

    /// Why a session of the pool is unusable (closed by the server, or dropped after a
    /// query ran out of time), if one is.
    pub fn closed_reason(&self) -> Option<String> {
        self.all.iter().find_map(|c| c.closed_reason())
    }
}

/// A checked-out session; it goes back to the pool (before its permit is released) when
/// dropped, also when the collection is cancelled half-way.
pub struct Lease {
    pool: Rc<SessionPool>,
    client: Option<Client>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("set until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.pool.idle.borrow_mut().push(c);
        }
    }
}
