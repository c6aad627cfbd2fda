//! Gauges: one `f64` word, set with a store, moved with a CAS loop.

use super::family::MetricType;
use super::value::{add_f64, check, load_f64, HandleError};
use crate::shm::{Offset, Region};
use std::sync::atomic::Ordering::Relaxed;

pub const VALUE_WORDS: u64 = 1;

#[inline(always)]
pub fn set(r: &Region<'_>, handle: u64, v: f64) -> Result<(), HandleError> {
    let h = check(r, handle, MetricType::Gauge, VALUE_WORDS)?;
    r.word(h).store(v.to_bits(), Relaxed);
    Ok(())
}

#[inline(always)]
pub fn add(r: &Region<'_>, handle: u64, v: f64) -> Result<(), HandleError> {
    let h = check(r, handle, MetricType::Gauge, VALUE_WORDS)?;
    add_f64(r.word(h), v);
    Ok(())
}

pub fn read(r: &Region<'_>, h: Offset) -> f64 {
    load_f64(r.word(h))
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
}
