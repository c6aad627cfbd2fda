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
///
/// Generations never wrap: the series of a block's last generation leaves an
/// *exhausted* tag when deleted, and its block is retired, never reused (see
/// [`next_generation`]). A block so serves at most 2^17 series; retiring it costs its
/// bytes once per 2^17 deletes of that size (under 0.001% of what churn frees).
const SERIES_MAGIC: u64 = 0x5e71_e5ab << 32;
use super::layout::TAG_DISTANCE;
const GENERATIONS: u64 = 1 << 17;
const LAST_GENERATION: u64 = GENERATIONS - 1;
const GENERATION_SHIFT: u32 = 36;
/// In a dead tag: the block used up its generations (never set in a live tag).
const EXHAUSTED: u64 = 1 << 30;

pub fn tag(t: MetricType, generation: u64) -> u64 {
    SERIES_MAGIC | (generation % GENERATIONS) << 8 | t as u64
}

/// The tag a deleted series leaves: the next generation, no type; exhausted after the
/// last generation.
pub fn dead_tag(live: u64) -> u64 {
    match generation_of(live) {
        LAST_GENERATION => SERIES_MAGIC | EXHAUSTED | LAST_GENERATION << 8,
        g => SERIES_MAGIC | (g + 1) << 8,
    }
}

/// Whether a tag word is a live series' (not deleted, not a fresh block's zero).
pub fn is_live_tag(tag: u64) -> bool {
    tag >> 32 == SERIES_MAGIC >> 32 && tag & 0xff != 0
}

/// The generation a series made in a block whose tag word holds `previous` gets: the
/// one a delete left there; one more if its series was never deleted properly (a
/// process died making it); 0 in fresh memory. `None` once the block has used up its
/// generations: it must not hold another series (a handle of an earlier one could
/// match it).
pub fn next_generation(previous: u64) -> Option<u64> {
    if previous >> 32 != SERIES_MAGIC >> 32 {
        Some(0)
    } else if previous & EXHAUSTED != 0 {
        None
    } else if is_live_tag(previous) {
        Some(generation_of(previous) + 1).filter(|&g| g <= LAST_GENERATION)
    } else {
        Some(generation_of(previous))
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

/// Why an update (counter, gauge or histogram) was refused. Each is counted in the
/// zone under the [`Reason`](super::store::Reason) it converts to.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum UpdateError {
    /// Not a series handle of this type at all.
    BadHandle,
    /// The series was deleted: resolve its labels again.
    Stale,
    /// NaN; for a counter also a negative or infinite increment (counters only go up);
    /// for a gauge also an addition whose result is NaN.
    InvalidValue,
    /// A histogram value's chunk did not exist and the zone had no room for it: the
    /// value is counted in `_count`, `_sum` and the `+Inf` bucket only, as a value
    /// above `highest`.
    ZoneFull,
}

impl From<HandleError> for UpdateError {
    #[inline(always)]
    fn from(e: HandleError) -> UpdateError {
        match e {
            HandleError::Bad => UpdateError::BadHandle,
            HandleError::Stale => UpdateError::Stale,
        }
    }
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
        #[cfg(feature = "debug-hooks")]
        debug_pause(at);
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

/// The value offset whose next update stops between its check and its add, and for
/// how long (debug-hooks builds only: tests stop a worker there, as a descheduled one).
#[cfg(feature = "debug-hooks")]
static PAUSE_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[cfg(feature = "debug-hooks")]
static PAUSE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Makes the next update of this process through a handle to the value at `at` stop
/// for `ms` milliseconds once its handle is checked, before it adds.
#[cfg(feature = "debug-hooks")]
pub fn pause_next_update(at: u64, ms: u64) {
    PAUSE_MS.store(ms, Relaxed);
    PAUSE_AT.store(at, Relaxed);
}

#[cfg(feature = "debug-hooks")]
#[inline(never)]
fn debug_pause(at: u64) {
    if PAUSE_AT.load(Relaxed) == at && PAUSE_AT.compare_exchange(at, 0, Relaxed, Relaxed).is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(PAUSE_MS.load(Relaxed)));
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

    /// Where the values of the series whose tag is word 1 start.
    const AT: Offset = 1 + TAG_DISTANCE as Offset;

    #[test]
    fn handles_of_deleted_series_are_stale_even_when_the_block_is_reused() {
        let mem = heap_words(8);
        let r = Region::new(&mem);
        let first = tag(MetricType::Counter, next_generation(0).unwrap());
        r.store(1, first);
        let old = handle(AT, first);
        assert_eq!(check(&r, old, MetricType::Counter, 2), Ok(AT));
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
        let second = tag(MetricType::Counter, next_generation(dead).unwrap());
        r.store(1, second);
        let new = handle(AT, second);
        assert_ne!(new, old);
        assert_eq!(
            check(&r, old, MetricType::Counter, 2),
            Err(HandleError::Stale)
        );
        assert_eq!(check(&r, new, MetricType::Counter, 2), Ok(AT));
        // A block whose series never got deleted properly moves on a generation too.
        assert_eq!(
            next_generation(second),
            next_generation(dead).map(|g| g + 1)
        );
        // Generations never wrap: after the last one the block is used up, and its
        // exhausted tag refuses handles of every generation as stale.
        let last = tag(MetricType::Gauge, LAST_GENERATION);
        let exhausted = dead_tag(last);
        assert_eq!(next_generation(exhausted), None);
        assert_eq!(next_generation(last), None);
        assert_eq!(
            next_generation(dead_tag(tag(MetricType::Gauge, LAST_GENERATION - 1))),
            Some(LAST_GENERATION)
        );
        r.store(1, exhausted);
        for g in [0, 1, LAST_GENERATION] {
            let h = handle(AT, tag(MetricType::Gauge, g));
            assert_eq!(check(&r, h, MetricType::Gauge, 1), Err(HandleError::Stale));
        }
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
