//! Counters: an integer word for whole increments (exact beyond 2^53, one `fetch_add`)
//! and a float word for fractional ones. The value is their sum.

use super::family::MetricType;
use super::value::{add_f64, check, load_f64, HandleError};
use crate::shm::{Offset, Region};
use std::sync::atomic::Ordering::Relaxed;

pub const VALUE_WORDS: u64 = 2;
const INT: Offset = 0;
const FLOAT: Offset = 1;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum CounterError {
    BadHandle,
    /// The series was deleted: resolve its labels again.
    Stale,
    /// Counters only go up; NaN is not a number to count.
    InvalidIncrement,
}

#[inline(always)]
fn handle_error(e: HandleError) -> CounterError {
    match e {
        HandleError::Bad => CounterError::BadHandle,
        HandleError::Stale => CounterError::Stale,
    }
}

#[inline(always)]
pub fn inc(r: &Region<'_>, handle: u64, n: u64) -> Result<(), CounterError> {
    let h = check(r, handle, MetricType::Counter, VALUE_WORDS).map_err(handle_error)?;
    r.word(h + INT).fetch_add(n, Relaxed);
    Ok(())
}

#[inline(always)]
pub fn add(r: &Region<'_>, handle: u64, v: f64) -> Result<(), CounterError> {
    let h = check(r, handle, MetricType::Counter, VALUE_WORDS).map_err(handle_error)?;
    // Whole, non-negative increments take the exact integer path. Whole: the value
    // survives a round trip through u64 (two conversions; `fract()` is a libm call on
    // x86-64 without SSE4.1 and cost 14 of this function's ~90 instructions).
    let whole = v as u64;
    if (0.0..9.0e15).contains(&v) && whole as f64 == v {
        r.word(h + INT).fetch_add(whole, Relaxed);
    } else if v >= 0.0 && v.is_finite() {
        add_f64(r.word(h + FLOAT), v);
    } else {
        return Err(CounterError::InvalidIncrement);
    }
    Ok(())
}

/// Sets a counter that one process alone writes and that only ever grows (a process's
/// CPU time): the value lives in the float word, replaced in one store, so a reader
/// never sees a half-written value.
pub fn set_single_writer(r: &Region<'_>, handle: u64, v: f64) -> Result<(), CounterError> {
    let h = check(r, handle, MetricType::Counter, VALUE_WORDS).map_err(handle_error)?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(CounterError::InvalidIncrement);
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
        assert_eq!(add(&r, 4, -1.0), Err(CounterError::InvalidIncrement));
        assert_eq!(add(&r, 4, f64::NAN), Err(CounterError::InvalidIncrement));
        assert_eq!(inc(&r, 5, 1), Err(CounterError::BadHandle));
        assert_eq!(inc(&r, 7, 1), Err(CounterError::BadHandle));
        assert_eq!(inc(&r, 0, 1), Err(CounterError::BadHandle));
        assert_eq!(read(&r, 4), (7, 0.25));
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
            Err(CounterError::InvalidIncrement)
        );
        assert_eq!(
            set_single_writer(&r, 4, -1.0),
            Err(CounterError::InvalidIncrement)
        );
        assert_eq!(set_single_writer(&r, 5, 1.0), Err(CounterError::BadHandle));
        assert_eq!(read(&r, 4), (0, 2.25));
    }
}
