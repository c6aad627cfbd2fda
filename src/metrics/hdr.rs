//! HDR (high dynamic range) log-linear bucket math, the same index scheme as the
//! `hdrhistogram` crate so that its results can serve as the reference.
//!
//! The crate's `Histogram` owns a `Vec`, which cannot live in shared memory; here only
//! the index math is kept, and counts live in zone words. Values are integer ticks
//! (`value / lowest`), `1` being the smallest discernible tick.

/// Packed into one zone word so that an observation needs no family lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HdrLayout {
    pub unit_magnitude: u8,
    pub sub_bucket_count_magnitude: u8,
    pub bucket_count: u8,
    pub counts_len: u32,
    /// Slots per chunk are `1 << chunk_shift`, so that at most 64 chunks cover every
    /// slot: a series body keeps one word per chunk (see `histogram`).
    pub chunk_shift: u8,
}

impl HdrLayout {
    /// Layout for ticks in `1..=highest` with `sigfig` significant decimal digits.
    pub fn new(highest: u64, sigfig: u8) -> Option<HdrLayout> {
        if !(1..=5).contains(&sigfig) || highest < 2 {
            return None;
        }
        let largest = 2 * 10u32.pow(u32::from(sigfig));
        let sub_bucket_count_magnitude = (f64::from(largest)).log2().ceil() as u8;
        let sub_bucket_count = 1u64 << sub_bucket_count_magnitude;
        let mut smallest_untrackable = sub_bucket_count;
        let mut bucket_count: u8 = 1;
        while smallest_untrackable <= highest {
            if smallest_untrackable > u64::MAX / 2 {
                bucket_count += 1;
                break;
            }
            smallest_untrackable <<= 1;
            bucket_count += 1;
        }
        let counts_len = (u32::from(bucket_count) + 1) * (sub_bucket_count as u32 / 2);
        let chunk_shift = (0..32u8)
            .find(|s| counts_len.div_ceil(1 << s) <= 64)
            .unwrap_or(31);
        Some(HdrLayout {
            unit_magnitude: 0,
            sub_bucket_count_magnitude,
            bucket_count,
            counts_len,
            chunk_shift,
        })
    }

    pub fn pack(self) -> u64 {
        u64::from(self.unit_magnitude)
            | u64::from(self.sub_bucket_count_magnitude) << 8
            | u64::from(self.bucket_count) << 16
            | u64::from(self.chunk_shift) << 24
            | u64::from(self.counts_len) << 32
    }

    pub fn unpack(w: u64) -> HdrLayout {
        HdrLayout {
            unit_magnitude: w as u8,
            sub_bucket_count_magnitude: (w >> 8) as u8,
            bucket_count: (w >> 16) as u8,
            chunk_shift: (w >> 24) as u8,
            counts_len: (w >> 32) as u32,
        }
    }

    /// Index of the count slot for `value` ticks; may exceed `counts_len` for values
    /// beyond the layout's range (callers range-check `highest` first).
    #[inline(always)]
    pub fn index(self, value: u64) -> usize {
        let half_mag = u32::from(self.sub_bucket_count_magnitude) - 1;
        let mask = ((1u64 << self.sub_bucket_count_magnitude) - 1) << self.unit_magnitude;
        let lzc_base =
            64 - u32::from(self.unit_magnitude) - u32::from(self.sub_bucket_count_magnitude);
        let bucket = lzc_base - (value | mask).leading_zeros();
        let sub_bucket = value >> (bucket + u32::from(self.unit_magnitude));
        (((bucket as u64 + 1) << half_mag) + sub_bucket - (1u64 << half_mag)) as usize
    }

    /// Lowest tick value counted in slot `index`.
    pub fn value_at(self, index: usize) -> u64 {
        let half_mag = u32::from(self.sub_bucket_count_magnitude) - 1;
        let half = 1u64 << half_mag;
        let mut bucket = (index >> half_mag) as i64 - 1;
        let mut sub_bucket = (index as u64 & (half - 1)) + half;
        if bucket < 0 {
            sub_bucket -= half;
            bucket = 0;
        }
        sub_bucket << (bucket as u32 + u32::from(self.unit_magnitude))
    }

    /// Highest tick value counted in slot `index`.
    pub fn highest_at(self, index: usize) -> u64 {
        let lowest = self.value_at(index);
        let bucket = self.index_bucket(index);
        // The slot's width less one, added last: the top slot of a layout reaching
        // `u64::MAX` ends there (`lowest + width` alone would not fit).
        lowest + ((1u64 << (bucket + u32::from(self.unit_magnitude))) - 1)
    }

    fn index_bucket(self, index: usize) -> u32 {
        let half_mag = u32::from(self.sub_bucket_count_magnitude) - 1;
        ((index >> half_mag) as u32).saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    fn reference(highest: u64, sigfig: u8) -> Histogram<u64> {
        Histogram::new_with_bounds(1, highest, sigfig).unwrap()
    }

    #[test]
    fn layout_matches_the_crate() {
        for &(highest, sigfig) in &[
            (60_000_000u64, 2u8),
            (60_000_000, 3),
            (3_600_000, 1),
            (1000, 5),
            (2, 1),
        ] {
            let ours = HdrLayout::new(highest, sigfig).unwrap();
            let theirs = reference(highest, sigfig);
            assert_eq!(
                ours.counts_len as usize,
                theirs.distinct_values(),
                "{highest} {sigfig}"
            );
            assert_eq!(ours, HdrLayout::unpack(ours.pack()));
        }
    }

    #[test]
    fn index_and_value_match_the_crate() {
        let layout = HdrLayout::new(60_000_000, 2).unwrap();
        let h = reference(60_000_000, 2);
        let mut v = 0u64;
        while v <= 60_000_000 {
            let i = layout.index(v);
            assert!(i < layout.counts_len as usize);
            assert_eq!(layout.value_at(i), h.lowest_equivalent(v), "lowest of {v}");
            assert_eq!(
                layout.highest_at(i),
                h.highest_equivalent(v),
                "highest of {v}"
            );
            v = v * 11 / 10 + 1;
        }
    }

    #[test]
    fn the_top_slot_of_the_widest_layout_ends_at_u64_max() {
        // Found by fuzz/src/bin/hdr.rs: the slot's end overflowed before this.
        let layout = HdrLayout::new(u64::MAX - 20, 1).unwrap();
        let h = reference(u64::MAX - 20, 1);
        for v in [u64::MAX - 20, u64::MAX - 6] {
            let i = layout.index(v);
            assert!(i < layout.counts_len as usize);
            assert_eq!(layout.value_at(i), h.lowest_equivalent(v));
            assert_eq!(layout.highest_at(i), u64::MAX, "{v}");
        }
        for v in [1 << 63, (1 << 63) - 1] {
            let i = layout.index(v);
            assert_eq!(layout.highest_at(i), h.highest_equivalent(v), "{v}");
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(HdrLayout::new(60, 0).is_none());
        assert!(HdrLayout::new(60, 6).is_none());
        assert!(HdrLayout::new(1, 2).is_none());
    }
}
