//! What every series body starts with, and float arithmetic on atomic words.

use super::family::MetricType;
use crate::shm::{Offset, Region};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A series handle is the offset of its first value word; the word before it holds
/// this tag and the metric type, so a stale or foreign handle is caught with one load.
const SERIES_TAG: u64 = 0x5e71_e5ab_cd00_0000;

pub fn tag(t: MetricType) -> u64 {
    SERIES_TAG | t as u64
}

/// Checks that `handle` is the first value word of a `t` series needing `words` words.
#[inline(always)]
pub fn check(r: &Region<'_>, handle: u64, t: MetricType, words: u64) -> Option<Offset> {
    if handle == 0 || handle.checked_add(words)? > r.len() as u64 {
        return None;
    }
    (r.get(handle - 1)?.load(Relaxed) == tag(t)).then_some(handle as Offset)
}

/// `*w += v` on an `f64` kept as bits. A CAS loop: hardware has no float fetch-add.
#[inline(always)]
pub fn add_f64(w: &AtomicU64, v: f64) {
    let mut cur = w.load(Relaxed);
    loop {
        let next = (f64::from_bits(cur) + v).to_bits();
        match w.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(seen) => cur = seen,
        }
    }
}

pub fn load_f64(w: &AtomicU64) -> f64 {
    f64::from_bits(w.load(Relaxed))
}
