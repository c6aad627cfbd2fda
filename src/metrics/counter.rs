//! Counters: an integer word for whole increments (exact beyond 2^53, one `fetch_add`)
//! and a float word for fractional ones. The value is their sum.
//!
//! The integer word never wraps: once it holds [`FOLD_AT`] (2^63), or for an
//! increment of 2^53 or more, whole increments go to the float word instead. The
//! value then stays correctly rounded (a float's 53 bits) and keeps growing, where a
//! wrapped word would have dropped it by 2^64 and a saturated one would have stopped
//! counting. Between the check and the `fetch_add` other processes may add too: each
//! adds less than 2^53, so the word could only wrap with 2^10 of them at once.

use super::family::MetricType;
use super::value::{add_f64, check, load_f64, UpdateError};
use crate::shm::{Offset, Region};
use std::sync::atomic::Ordering::Relaxed;

use super::layout::COUNTER_WORDS;
use super::layout::{COUNTER_FLOAT as FLOAT, COUNTER_INT as INT};
/// Where the integer word stops taking increments (see the module's comment).
const FOLD_AT: u64 = 1 << 63;
/// The largest whole increment the integer word takes (2^53: every such increment is
/// an exact float, so the float path loses nothing that the integer path kept).
const WHOLE_BELOW: u64 = 1 << 53;

#[inline(always)]
pub fn inc(r: &Region<'_>, handle: u64, n: u64) -> Result<(), UpdateError> {
    let h = check(r, handle, MetricType::Counter, COUNTER_WORDS)?;
    add_whole(r, h, n);
    Ok(())
}

/// Adds whole `n` to the counter whose values start at `h`, in the integer word while
/// it cannot wrap, else in the float word.
#[inline(always)]
fn add_whole(r: &Region<'_>, h: Offset, n: u64) {
    let int = r.word(h + INT);
    if n < WHOLE_BELOW && int.load(Relaxed) < FOLD_AT {
        int.fetch_add(n, Relaxed);
    } else {
        add_f64(r.word(h + FLOAT), n as f64);
    }
}

#[inline(always)]
pub fn add(r: &Region<'_>, handle: u64, v: f64) -> Result<(), UpdateError> {
    let h = check(r, handle, MetricType::Counter, COUNTER_WORDS)?;
    // Whole, non-negative increments take the exact integer path. Whole: the value
    // survives a round trip through u64 (two conversions; `fract()` is a libm call on
    // x86-64 without SSE4.1 and cost 14 of this function's ~90 instructions).
    let whole = v as u64;
    if (0.0..9.0e15).contains(&v) && whole as f64 == v {
        add_whole(r, h, whole);
    } else if v >= 0.0 && v.is_finite() {
        add_f64(r.word(h + FLOAT), v);
    } else {
        return Err(UpdateError::InvalidValue);
    }
    Ok(())
}

/// Sets a counter that one process alone writes and that only ever grows (a process's
/// CPU time): the value lives in the float word, replaced in one store, so a reader
/// never sees a half-written value.
pub fn set_single_writer(r: &Region<'_>, handle: u64, v: f64) -> Result<(), UpdateError> {
    let h = check(r, handle, MetricType::Counter, COUNTER_WORDS)?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(UpdateError::InvalidValue);
    }
    r.word(h + INT).store(0, Relaxed);
    r.word(h + FLOAT).store(v.to_bits(), Relaxed);
    Ok(())
}

/// `(integer part, fractional part)`; exposition prints the integer exactly when the
/// fractional part is zero.
pub fn read(r: &Region<'_>, h: Offset) -> (u64, f64) {
    (r.load(h + INT), load_f64(r.word(h + FLOAT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::value::tag;
    use crate::shm::region::heap_words;

    #[test]
    fn integer_and_float_increments_add_up() {
        let mem = heap_words(8);
        let r = Region::new(&mem);
        r.store(1, tag(MetricType::Counter, 0));
        inc(&r, 4, 5).unwrap();
        add(&r, 4, 2.0).unwrap();
        add(&r, 4, 0.25).unwrap();
        assert_eq!(read(&r, 4), (7, 0.25));
        assert_eq!(add(&r, 4, -1.0), Err(UpdateError::InvalidValue));
        assert_eq!(add(&r, 4, f64::NAN), Err(UpdateError::InvalidValue));
        assert_eq!(inc(&r, 5, 1), Err(UpdateError::BadHandle));
        assert_eq!(inc(&r, 7, 1), Err(UpdateError::BadHandle));
        assert_eq!(inc(&r, 0, 1), Err(UpdateError::BadHandle));
        assert_eq!(read(&r, 4), (7, 0.25));
    }

    #[test]
    fn the_integer_word_never_wraps_and_the_value_never_decreases() {
        let mem = heap_words(8);
        let r = Region::new(&mem);
        r.store(1, tag(MetricType::Counter, 0));
        let value = |r: &Region<'_>| {
            let (i, f) = read(r, 4);
            i as f64 + f
        };
        // 2100 x 8.99e15 is more than 2^64: the integer word alone would wrap.
        let mut last = 0.0;
        for _ in 0..2100 {
            add(&r, 4, 8.99e15).unwrap();
            let now = value(&r);
            assert!(now > last, "{now} after {last}");
            last = now;
        }
        let (int, _) = read(&r, 4);
        assert!((FOLD_AT..FOLD_AT + WHOLE_BELOW).contains(&int), "{int}");
        let want = 2100.0 * 8.99e15;
        assert!((last - want).abs() / want < 1e-12, "{last} vs {want}");
        // Whole increments through inc() too, and one too large for the integer word.
        inc(&r, 4, 1).unwrap();
        inc(&r, 4, u64::MAX).unwrap();
        assert!(value(&r) > last + 1.8e19);
        assert!(read(&r, 4).0 < FOLD_AT + WHOLE_BELOW);
    }

    #[test]
    fn a_single_writer_sets_the_value() {
        let mem = heap_words(8);
        let r = Region::new(&mem);
        r.store(1, tag(MetricType::Counter, 0));
        set_single_writer(&r, 4, 1.5).unwrap();
        assert_eq!(read(&r, 4), (0, 1.5));
        set_single_writer(&r, 4, 2.25).unwrap();
        assert_eq!(read(&r, 4), (0, 2.25));
        assert_eq!(
            set_single_writer(&r, 4, f64::NAN),
            Err(UpdateError::InvalidValue)
        );
        assert_eq!(
            set_single_writer(&r, 4, -1.0),
            Err(UpdateError::InvalidValue)
        );
        assert_eq!(set_single_writer(&r, 5, 1.0), Err(UpdateError::BadHandle));
        assert_eq!(read(&r, 4), (0, 2.25));
    }
}
