//! Giving freed heap back to the system.
//!
//! A collector's cycle builds and drops maps of every series it read (the start-up and
//! baseline reads the most), and glibc's allocator keeps what was freed in its arenas:
//! the daemon's resident memory then stays at the high-water mark of its biggest reads,
//! not at what it holds (measured on the reader bench's repository by
//! `benches/daemon_steady_memory.sh`). After a cycle, the free pages are handed back with
//! `malloc_trim`, at most once per [`MIN_GAP`] over the whole process so that a fleet of
//! a thousand servers does not walk the heap a thousand times a period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The shortest time between two trims, in seconds.
pub const MIN_GAP: u64 = 10;

static LAST: AtomicU64 = AtomicU64::new(0);

/// Whether a trim is due at `now` (seconds) after one at `last`; claims it if so.
fn due(last: &AtomicU64, now: u64) -> bool {
    let prev = last.load(Ordering::Relaxed);
    now.saturating_sub(prev) >= MIN_GAP
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Hands freed heap back to the system, unless that was done less than [`MIN_GAP`] ago.
/// Does nothing where the allocator is not glibc's.
pub fn give_back() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if due(&LAST, now) {
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer
    // and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trim_per_gap() {
        let last = AtomicU64::new(0);
        assert!(due(&last, 1_000));
        assert!(!due(&last, 1_000 + MIN_GAP - 1), "too soon");
        assert!(due(&last, 1_000 + MIN_GAP));
        assert_eq!(last.load(Ordering::Relaxed), 1_000 + MIN_GAP);
    }

    #[test]
    fn giving_back_is_harmless() {
        let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        drop(v);
        give_back();
        give_back();
    }
}
