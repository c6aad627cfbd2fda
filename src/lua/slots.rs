//! Process-local table of attached zones. A series handle carries its zone's slot
//! number in bits 32..36 (beside the series offset in bits 0..32 and its generation
//! above), so the hot path finds the zone with one indexed load, no lookup by name.

use crate::metrics::Store;
use crate::shm::Region;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};
use std::sync::Mutex;

pub const MAX_ZONES: usize = 16;

/// A zone this process attached: where its words are mapped here, and how many bytes.
struct AttachedZone {
    base: AtomicPtr<u8>,
    bytes: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AttachedZone = AttachedZone {
    base: AtomicPtr::new(std::ptr::null_mut()),
    bytes: AtomicUsize::new(0),
};
static SLOTS: [AttachedZone; MAX_ZONES] = [EMPTY; MAX_ZONES];
static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The slot of zone `name`, attaching it on first use. `store` is the zone's store
/// in the running cycle.
pub fn attach(name: &str, store: &Store<'static>) -> Option<usize> {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let r = store.region();
    let words = r.word(0) as *const _ as *mut u8;
    if let Some(i) = names.iter().position(|n| n == name) {
        // A worker lives in one cycle, so a zone's address never changes; update anyway
        // in case this runs in a process that outlived a cycle (the master).
        SLOTS[i].bytes.store(r.len() * 8, Relaxed);
        SLOTS[i].base.store(words, Release);
        return Some(i);
    }
    if names.len() >= MAX_ZONES {
        return None;
    }
    let i = names.len();
    SLOTS[i].bytes.store(r.len() * 8, Relaxed);
    SLOTS[i].base.store(words, Release);
    names.push(name.to_string());
    Some(i)
}

/// The zone name attached in slot `i`.
pub fn name(i: usize) -> Option<String> {
    NAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(i)
        .cloned()
}

/// The region of slot `i`.
#[inline(always)]
pub fn region(i: usize) -> Option<Region<'static>> {
    let slot = SLOTS.get(i)?;
    let base = slot.base.load(Acquire);
    if base.is_null() {
        return None;
    }
    // SAFETY:
    // - `base` and `bytes` were taken from a `Region` over zone memory that nginx maps
    //   before the workers fork and unmaps only when the process exits;
    // - that memory is only ever accessed through atomics.
    Some(unsafe { Region::from_raw(base, slot.bytes.load(Relaxed)) })
}

/// The store of slot `i`.
pub fn store(i: usize) -> Option<Store<'static>> {
    Store::attach(region(i)?).ok()
}

#[inline(always)]
/// A Lua handle's zone slot (bits 32..36) and the zone's own handle (the rest: the
/// offset and the series' generation).
pub fn split(handle: u64) -> (usize, u64) {
    (((handle >> 32) & 0xf) as usize, handle & !(0xf << 32))
}

pub fn join(slot: usize, offset: u64) -> u64 {
    (slot as u64) << 32 | offset
}
