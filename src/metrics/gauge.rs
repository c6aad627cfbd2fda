//! Gauges: one `f64` word, set with a store, moved with a CAS loop. A gauge never
//! holds NaN: setting it, adding it, or an addition whose result would be NaN
//! (`+inf` plus `-inf`) is refused and the value kept.

use super::family::MetricType;
use super::value::{check, load_f64, UpdateError};
use crate::shm::{Offset, Region};
use std::sync::atomic::Ordering::Relaxed;

use super::layout::GAUGE_VALUE as VALUE;
use super::layout::GAUGE_WORDS;

#[inline(always)]
pub fn set(r: &Region<'_>, handle: u64, v: f64) -> Result<(), UpdateError> {
    let h = check(r, handle, MetricType::Gauge, GAUGE_WORDS)?;
    if v.is_nan() {
        return Err(UpdateError::InvalidValue);
    }
    r.word(h + VALUE).store(v.to_bits(), Relaxed);
    Ok(())
}

#[inline(always)]
pub fn add(r: &Region<'_>, handle: u64, v: f64) -> Result<(), UpdateError> {
    let h = check(r, handle, MetricType::Gauge, GAUGE_WORDS)?;
    let w = r.word(h + VALUE);
    let mut cur = w.load(Relaxed);
    loop {
        let next = f64::from_bits(cur) + v;
        if next.is_nan() {
            return Err(UpdateError::InvalidValue);
        }
        match w.compare_exchange_weak(cur, next.to_bits(), Relaxed, Relaxed) {
            Ok(_) => return Ok(()),
            Err(seen) => cur = seen,
        }
    }
}

pub fn read(r: &Region<'_>, h: Offset) -> f64 {
    load_f64(r.word(h + VALUE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::value::tag;
    use crate::shm::region::heap_words;

    #[test]
    fn set_and_add() {
        let mem = heap_words(4);
        let r = Region::new(&mem);
        r.store(0, tag(MetricType::Gauge, 0));
        set(&r, 3, 10.5).unwrap();
        add(&r, 3, -0.5).unwrap();
        assert_eq!(read(&r, 3), 10.0);
        assert!(set(&r, 2, 1.0).is_err());
    }

    #[test]
    fn nan_is_refused_and_the_value_kept() {
        let mem = heap_words(4);
        let r = Region::new(&mem);
        r.store(0, tag(MetricType::Gauge, 0));
        set(&r, 3, 2.0).unwrap();
        assert_eq!(set(&r, 3, f64::NAN), Err(UpdateError::InvalidValue));
        assert_eq!(add(&r, 3, f64::NAN), Err(UpdateError::InvalidValue));
        assert_eq!(read(&r, 3), 2.0);
        // Infinities are values; their sum is not.
        set(&r, 3, f64::INFINITY).unwrap();
        assert_eq!(
            add(&r, 3, f64::NEG_INFINITY),
            Err(UpdateError::InvalidValue)
        );
        assert_eq!(read(&r, 3), f64::INFINITY);
        add(&r, 3, 1.0).unwrap();
        set(&r, 3, -0.0).unwrap();
        add(&r, 3, -1.5).unwrap();
        assert_eq!(read(&r, 3), -1.5);
    }
}
