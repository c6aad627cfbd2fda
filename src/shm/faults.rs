//! Points in the zone's code where a process of a `debug-hooks` build can be made to die, as
//! one killed (SIGKILL) at that very instruction would: the tests place a worker's
//! death exactly (in a delete, in an expiry sweep, while a freed block is reused) and
//! check that the others take the lock over and repair what it left. Never in the
//! module `make build` ships. Adding a point: a variant here, a [`reached`] call where
//! the process should die, a line in the test that arms it (`t/faults.rs`).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::OnceLock;

/// Where a process can be made to die (not an exposition's `Point`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum KillPoint {
    /// In a delete, under the lock: the series' handles dead, it unlinked and its
    /// block on a free list, the delete not yet marked done nor the series uncounted.
    Delete = 1,
    /// In an expiry sweep's second delete (at `Delete`): one expired series deleted,
    /// one half deleted, the rest of the batch doomed and still there.
    Sweep = 2,
    /// A series made in a freed block that is reused: its new tag written, not yet
    /// published.
    Reuse = 3,
    /// Taking the last block (or chunk) off a free list: the list's head cleared, its
    /// tail not yet.
    PopLast = 4,
}

impl KillPoint {
    pub fn from_u32(v: u32) -> Option<KillPoint> {
        [
            KillPoint::Delete,
            KillPoint::Sweep,
            KillPoint::Reuse,
            KillPoint::PopLast,
        ]
        .into_iter()
        .find(|p| *p as u32 == v)
    }
}

/// The point this process dies at next (0: none).
static ARMED: AtomicU32 = AtomicU32::new(0);
/// How it dies: the glue's SIGKILL to itself (the layers that reach the points have no
/// unsafe code).
static KILL: OnceLock<fn()> = OnceLock::new();

/// Makes this process die (by `kill`) the next time it reaches `point`.
pub fn arm(point: KillPoint, kill: fn()) {
    let _ = KILL.set(kill);
    ARMED.store(point as u32, Relaxed);
}

/// Dies here if armed for `point`.
#[inline(never)]
pub fn reached(point: KillPoint) {
    if ARMED.load(Relaxed) == point as u32 {
        if let Some(kill) = KILL.get() {
            kill();
        }
    }
}

/// A sweep is about to make its second (or later) delete: armed for `Sweep`, that
/// delete dies at `Delete`.
#[inline(never)]
pub fn sweep_deletes_again() {
    if ARMED.load(Relaxed) == KillPoint::Sweep as u32 {
        ARMED.store(KillPoint::Delete as u32, Relaxed);
    }
}
