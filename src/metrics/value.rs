//! What every series body starts with, and float arithmetic on atomic words.

use super::family::MetricType;
use crate::shm::{Offset, Region};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A series handle is the offset of its first value word, with the series' generation
/// in bits 36..53 (bits 32..36 are the zone slot's, added by the Lua glue): 53 bits in
/// all, so that a handle is exact as a Lua number. The word
/// [`TAG_DISTANCE`] before the values, the tag, holds a magic number, the generation
/// and the metric type; deleting a series bumps the generation and clears the type, and the next
/// series in that block keeps the bumped generation. So a handle whose series was
/// deleted, even if its block now holds another series, is caught with one load.
const SERIES_MAGIC: u64 = 0x5e71_e5ab << 32;
/// How far before a series' first value word its tag is (the sweep's word and the
/// creation time are between them).
pub const TAG_DISTANCE: u64 = 3;
const GENERATIONS: u64 = 1 << 17;
const GENERATION_SHIFT: u32 = 36;

pub fn tag(t: MetricType, generation: u64) -> u64 {
    SERIES_MAGIC | (generation % GENERATIONS) << 8 | t as u64
}

/// The tag a deleted series leaves: the next generation, no type.
pub fn dead_tag(live: u64) -> u64 {
    SERIES_MAGIC | ((generation_of(live) + 1) % GENERATIONS) << 8
}

/// Whether a tag word is a live series' (not deleted, not a fresh block's zero).
pub fn is_live_tag(tag: u64) -> bool {
    tag >> 32 == SERIES_MAGIC >> 32 && tag & 0xff != 0
}

/// The generation a series made in a block whose tag word holds `previous` gets: the
/// one a delete left there; one more if its series was never deleted properly (a
/// process died making it); 0 in fresh memory.
pub fn next_generation(previous: u64) -> u64 {
    if previous >> 32 != SERIES_MAGIC >> 32 {
        0
    } else if is_live_tag(previous) {
        (generation_of(previous) + 1) % GENERATIONS
    } else {
        generation_of(previous)
    }
}

fn generation_of(tag: u64) -> u64 {
    (tag >> 8) % GENERATIONS
}

/// The handle of the series whose values start at `values` and whose tag is `tag`.
pub fn handle(values: Offset, tag: u64) -> u64 {
    u64::from(values) | generation_of(tag) << GENERATION_SHIFT
}

/// Why a handle was refused.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum HandleError {
    /// Not a series handle of this type at all.
    Bad,
    /// Its series was deleted (its block may hold another series now): resolve the
    /// labels again.
    Stale,
}

/// Checks that `handle` is the first value word of a live `t` series of the handle's
/// generation, needing `words` words.
#[inline(always)]
pub fn check(
    r: &Region<'_>,
    handle: u64,
    t: MetricType,
    words: u64,
) -> Result<Offset, HandleError> {
    let at = handle & 0xffff_ffff;
    if at < TAG_DISTANCE || at + words > r.len() as u64 {
        return Err(HandleError::Bad);
    }
    let have = r.word((at - TAG_DISTANCE) as Offset).load(Relaxed);
    if have == tag(t, handle >> GENERATION_SHIFT) {
        return Ok(at as Offset);
    }
    // The tag of a series of this type (or of none: deleted), another generation.
    let kind = have & 0xff;
    if have >> 32 == SERIES_MAGIC >> 32 && (kind == 0 || kind == t as u64) {
        Err(HandleError::Stale)
    } else {
        Err(HandleError::Bad)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::region::heap_words;

    #[test]
    fn handles_of_deleted_series_are_stale_even_when_the_block_is_reused() {
        let mem = heap_words(8);
        let r = Region::new(&mem);
        let first = tag(MetricType::Counter, next_generation(0));
        r.store(1, first);
        let old = handle(4, first);
        assert_eq!(check(&r, old, MetricType::Counter, 2), Ok(4));
        assert_eq!(check(&r, old, MetricType::Gauge, 1), Err(HandleError::Bad));
        // Deleted: stale.
        let dead = dead_tag(first);
        assert!(!is_live_tag(dead) && is_live_tag(first));
        r.store(1, dead);
        assert_eq!(
            check(&r, old, MetricType::Counter, 2),
            Err(HandleError::Stale)
        );
        // The block reused by another counter: the old handle stays stale, the new works.
        let second = tag(MetricType::Counter, next_generation(dead));
        r.store(1, second);
        let new = handle(4, second);
        assert_ne!(new, old);
        assert_eq!(
            check(&r, old, MetricType::Counter, 2),
            Err(HandleError::Stale)
        );
        assert_eq!(check(&r, new, MetricType::Counter, 2), Ok(4));
        // A block whose series never got deleted properly moves on a generation too.
        assert_eq!(next_generation(second), next_generation(dead) + 1);
        // Generations wrap without ever matching the type-less dead tag.
        let last = tag(MetricType::Gauge, GENERATIONS - 1);
        assert_eq!(next_generation(dead_tag(last)), 0);
        // Not a tag at all, out of range, zero: bad.
        r.store(1, 12345);
        assert_eq!(
            check(&r, old, MetricType::Counter, 2),
            Err(HandleError::Bad)
        );
        assert_eq!(check(&r, 7, MetricType::Counter, 2), Err(HandleError::Bad));
        assert_eq!(check(&r, 0, MetricType::Counter, 1), Err(HandleError::Bad));
        assert_eq!(check(&r, 2, MetricType::Counter, 1), Err(HandleError::Bad));
    }
}
