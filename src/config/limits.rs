//! What scrapes may hold in one worker (`prometheus_max_renders`,
//! `prometheus_max_pinned`; the directives are in `nginx::limits`).
//!
//! A scrape holds its rendered body from the moment it is admitted until its last byte
//! is sent or its client goes away: a client that asks and never reads would otherwise
//! pin a whole exposition per connection. Each worker counts the scrapes it holds and
//! the bytes they hold, and answers `503` with `Retry-After` beyond either limit. The
//! bytes of a scrape are, until it is rendered, the size of the worker's previous
//! rendering (what it will most likely take), then its body. One scrape is always
//! admitted when the worker holds none, whatever its size.
//!
//! After a large body is freed, glibc's `malloc_trim` hands the free pages of every
//! arena back to the system: renders run on pool threads, whose arenas would otherwise
//! keep the largest scrape's memory resident for the life of the worker.

use std::cell::Cell;

/// Scrapes a worker holds at once unless `prometheus_max_renders` says otherwise.
pub const DEFAULT_MAX_RENDERS: usize = 8;
/// Bytes the scrapes of a worker hold unless `prometheus_max_pinned` says otherwise.
pub const DEFAULT_MAX_PINNED: usize = 64 << 20;
/// Largest `prometheus_max_renders` (nginx's default thread pool has 32 threads; more
/// scrapes than that only queue).
const MAX_RENDERS_LIMIT: usize = 4096;
/// What a scrape is counted for before the worker has rendered anything.
const FIRST_ESTIMATE: usize = 64 * 1024;
/// A scrape whose rendering took this much trims the allocator when it is freed.
const TRIM_AFTER: usize = 1 << 20;

/// The limits of the running configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_renders: usize,
    pub max_pinned: usize,
}

impl Limits {
    /// The limits set, the defaults for those not set.
    pub fn new(max_renders: Option<usize>, max_pinned: Option<usize>) -> Limits {
        Limits {
            max_renders: max_renders.unwrap_or(DEFAULT_MAX_RENDERS),
            max_pinned: max_pinned.unwrap_or(DEFAULT_MAX_PINNED),
        }
    }
}

thread_local! {
    /// Scrapes this worker holds, and their bytes. Only the worker's own thread admits,
    /// settles and releases (pool threads never touch a claim).
    static HELD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// One admitted scrape's share of its worker's limits, given back when dropped.
#[derive(Debug)]
pub struct Claim {
    bytes: usize,
    /// The largest the scrape's memory grew (its text before compression).
    peak: usize,
}

/// Admits a scrape expected to take `estimate` bytes, or `None` when the worker holds
/// as many scrapes, or as many bytes, as `limits` allow.
pub fn admit(limits: Limits, estimate: usize) -> Option<Claim> {
    let bytes = estimate.max(FIRST_ESTIMATE);
    HELD.with(|h| {
        let (renders, pinned) = h.get();
        if renders >= limits.max_renders
            || (renders > 0 && pinned.saturating_add(bytes) > limits.max_pinned)
        {
            return None;
        }
        h.set((renders + 1, pinned + bytes));
        Some(Claim { bytes, peak: 0 })
    })
}

impl Claim {
    /// The scrape is rendered: from now on it holds `body` bytes; its rendering took
    /// `peak`.
    pub fn settle(&mut self, body: usize, peak: usize) {
        HELD.with(|h| {
            let (renders, pinned) = h.get();
            h.set((renders, pinned - self.bytes + body));
        });
        self.bytes = body;
        self.peak = peak.max(body);
    }
}

impl Drop for Claim {
    /// Call after the scrape's memory is freed: a large one is then trimmed away.
    fn drop(&mut self) {
        HELD.with(|h| {
            let (renders, pinned) = h.get();
            h.set((renders - 1, pinned - self.bytes));
        });
        if self.peak >= TRIM_AFTER {
            trim();
        }
    }
}

/// Gives the free pages of every malloc arena back to the system.
fn trim() {
    // SAFETY: malloc_trim takes the arenas' locks itself; it only releases free memory.
    unsafe { libc::malloc_trim(0) };
}

/// `prometheus_max_renders`'s argument.
pub fn parse_max_renders(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_RENDERS_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid number \"{s}\" (1 to {MAX_RENDERS_LIMIT} scrapes per worker)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_renders: 3,
        max_pinned: 10 << 20,
    };

    fn held() -> (usize, usize) {
        HELD.with(Cell::get)
    }

    #[test]
    fn renders_and_bytes_are_bounded_and_given_back() {
        // The first scrape is admitted whatever its size.
        let mut big = admit(LIMITS, 64 << 20).unwrap();
        assert!(admit(LIMITS, 1).is_none(), "over the bytes");
        big.settle(4 << 20, 64 << 20);
        assert_eq!(held(), (1, 4 << 20));
        let a = admit(LIMITS, 3 << 20).unwrap();
        assert!(admit(LIMITS, 4 << 20).is_none(), "4 + 3 + 4 MB > 10 MB");
        let b = admit(LIMITS, 1 << 20).unwrap();
        assert!(admit(LIMITS, 1).is_none(), "over the renders");
        assert_eq!(held(), (3, 8 << 20));
        drop((big, a, b));
        assert_eq!(held(), (0, 0));
        // Below the smallest estimate, a scrape counts for it.
        let small = admit(LIMITS, 10).unwrap();
        assert_eq!(held(), (1, FIRST_ESTIMATE));
        drop(small);
    }

    #[test]
    fn max_renders_is_checked() {
        assert_eq!(parse_max_renders("8"), Ok(8));
        for bad in ["0", "-1", "lots", "", "4097"] {
            let err = parse_max_renders(bad).unwrap_err();
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
    }
}
