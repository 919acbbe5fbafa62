//! Network faults on loopback, for tests that run `powa-sentinel` as a process: a black
//! hole (accepts connections, never answers) and a TCP proxy that can be frozen (stops
//! forwarding bytes, keeps every socket open, as a stopped PostgreSQL does) and thawed.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A listener that accepts every connection and never reads or writes: what a host
/// that is not PostgreSQL, or a frozen one, looks like to a client.
pub struct BlackHole {
    pub port: u16,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            // Held, never answered, until the test process ends.
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        BlackHole { port }
    }
}

/// A TCP proxy to `upstream`. Frozen, it forwards nothing in either direction (bytes
/// already read are held, not dropped) and accepts new connections without answering
/// them; thawed, it forwards again.
pub struct Proxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts forwarding to `upstream`. With `freeze_on`, the proxy freezes itself just
    /// before forwarding the first client bytes that contain it (a query's text), so a
    /// test can stop the server in the middle of a chosen read.
    pub fn start(upstream: SocketAddr, freeze_on: Option<&'static [u8]>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&frozen);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (fa, fb) = (Arc::clone(&f), Arc::clone(&f));
                std::thread::spawn(move || pump(client, server, fa, freeze_on));
                std::thread::spawn(move || pump(s2, c2, fb, None));
            }
        });
        Proxy { port, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    frozen: Arc<AtomicBool>,
    freeze_on: Option<&'static [u8]>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    let mut triggered = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let (Some(p), false) = (freeze_on, triggered) {
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(p.len()).any(|w| w == p) {
                triggered = true;
                frozen.store(true, Ordering::SeqCst);
            }
            let keep = tail.len().saturating_sub(p.len());
            tail.drain(..keep);
        }
        while frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
