//! Histograms in an HDR layout: one count word per log-linear slot, a float sum and an
//! overflow count for values above the family's `highest`. Prometheus buckets are
//! cut from the slots at render time, so bucket bounds can change without losing data.
//!
//! A bitmap word marks the chunks of slots that hold counts (see
//! `HdrLayout::chunk_shift`): latencies cluster, so a render reads a few chunks of a
//! series rather than its thousands of slots.

use super::family::{HistogramSpec, MetricType};
use super::hdr::HdrLayout;
use super::value::{add_f64, check, load_f64};
use crate::shm::{Offset, Region};
use std::sync::atomic::Ordering::Relaxed;

const LAYOUT: Offset = 0;
const SCALE: Offset = 1;
const HIGHEST: Offset = 2;
const SUM: Offset = 3;
const OVERFLOW: Offset = 4;
const CHUNKS: Offset = 5;
const COUNTS: Offset = 6;

pub fn value_words(layout: HdrLayout) -> u64 {
    u64::from(COUNTS) + u64::from(layout.counts_len)
}

/// Writes the parameters an observation needs into a fresh (zeroed) series body.
pub fn init(r: &Region<'_>, h: Offset, spec: &HistogramSpec, layout: HdrLayout) {
    r.store(h + LAYOUT, layout.pack());
    r.store(h + SCALE, spec.scale().to_bits());
    r.store(h + HIGHEST, spec.highest_ticks());
}

/// Value to ticks; the same rounding for observations and bucket bounds keeps
/// `v <= le` implying "counted in le".
#[inline(always)]
pub fn ticks(v: f64, scale: f64) -> u64 {
    let t = (v * scale).round();
    if t > 0.0 {
        t as u64
    } else {
        0
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ObserveError {
    BadHandle,
    NotANumber,
}

#[inline(always)]
pub fn observe(r: &Region<'_>, handle: u64, v: f64) -> Result<(), ObserveError> {
    // The smallest histogram body; the slot index is range-checked against the layout.
    let h = check(r, handle, MetricType::Histogram, u64::from(COUNTS) + 1)
        .ok_or(ObserveError::BadHandle)?;
    if v.is_nan() {
        return Err(ObserveError::NotANumber);
    }
    let layout = HdrLayout::unpack(r.load(h + LAYOUT));
    let t = ticks(v, f64::from_bits(r.load(h + SCALE)));
    if t > r.load(h + HIGHEST) {
        r.word(h + OVERFLOW).fetch_add(1, Relaxed);
    } else {
        let i = layout.index(t);
        // Mark the chunk before counting in it: a render that sees the count sees the
        // mark too (both only grow). The plain load keeps the cache line shared in the
        // steady state, where the bit is already set.
        let bit = 1u64 << ((i >> layout.chunk_shift) & 63);
        let chunks = r.word(h + CHUNKS);
        if chunks.load(Relaxed) & bit == 0 {
            chunks.fetch_or(bit, Relaxed);
        }
        let slot = r
            .get(u64::from(h + COUNTS) + i as u64)
            .ok_or(ObserveError::BadHandle)?;
        debug_assert!(i < layout.counts_len as usize);
        slot.fetch_add(1, Relaxed);
    }
    add_f64(r.word(h + SUM), v);
    Ok(())
}

/// A consistent-enough copy of one series for rendering: counts are read once, and
/// every bucket, `+Inf` and `_count` derive from that one read.
pub struct Snapshot {
    pub layout: HdrLayout,
    /// `(slot, count)` for every slot with a count, in slot order.
    pub counts: Vec<(u32, u64)>,
    pub overflow: u64,
    pub sum: f64,
}

impl Snapshot {
    pub fn read(r: &Region<'_>, h: Offset, into: Option<Snapshot>) -> Snapshot {
        let layout = HdrLayout::unpack(r.load(h + LAYOUT));
        let mut counts = into.map(|s| s.counts).unwrap_or_default();
        counts.clear();
        let mut chunks = r.load(h + CHUNKS);
        while chunks != 0 {
            let chunk = chunks.trailing_zeros();
            chunks &= chunks - 1;
            let from = chunk << layout.chunk_shift;
            let to = ((chunk + 1) << layout.chunk_shift).min(layout.counts_len);
            for i in from..to {
                let c = r.load(h + COUNTS + i);
                if c != 0 {
                    counts.push((i, c));
                }
            }
        }
        Snapshot {
            layout,
            counts,
            overflow: r.load(h + OVERFLOW),
            sum: load_f64(r.word(h + SUM)),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c).sum::<u64>() + self.overflow
    }

    /// Cumulative counts at each slot cut (see [`cuts`]), in order.
    pub fn cumulative(&self, cuts: &[usize], out: &mut Vec<u64>) {
        out.clear();
        let mut acc = 0u64;
        let mut next = self.counts.iter().peekable();
        for &cut in cuts {
            while let Some((slot, c)) = next.next_if(|(slot, _)| *slot as usize <= cut) {
                debug_assert!(*slot as usize <= cut);
                acc += c;
            }
            out.push(acc);
        }
    }

    /// The reference histogram built from these counts (for quantiles).
    pub fn to_hdr(&self) -> hdrhistogram::Histogram<u64> {
        let highest = self
            .layout
            .highest_at(self.layout.counts_len as usize - 1)
            .max(2);
        let mut h = hdrhistogram::Histogram::new_with_bounds(1, highest, sigfig_of(self.layout))
            .expect("layout parameters were validated at registration");
        for (i, c) in &self.counts {
            // Every slot value is within the histogram's range by construction.
            let _ = h.record_n(self.layout.value_at(*i as usize), *c);
        }
        h
    }

    /// Value at quantile `q` (0..=1) in the family's unit, `None` when empty.
    /// Values above `highest` (overflow) are not included.
    pub fn quantile(&self, q: f64, scale: f64) -> Option<f64> {
        let h = self.to_hdr();
        (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / scale)
    }
}

/// The quantiles a summary shows: p50, p90, p99, p99.9 and the maximum.
pub const SUMMARY_QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

impl Snapshot {
    /// Values at each of `qs` (increasing, within 0..=1) in the family's unit, in one
    /// pass over the slots in use. The same value as [`Snapshot::quantile`] (the
    /// `hdrhistogram` crate's `value_at_quantile`: the highest value of the slot the
    /// rank falls in) when nothing overflowed; here ranks count every observation, so a
    /// rank among those above `highest` gives `+Inf`. `NaN` when there are none.
    pub fn quantiles(&self, qs: &[f64], scale: f64, out: &mut Vec<f64>) {
        out.clear();
        let total = self.count();
        if total == 0 {
            out.extend(qs.iter().map(|_| f64::NAN));
            return;
        }
        let mut slots = self.counts.iter();
        let (mut acc, mut at) = (0u64, None::<u32>);
        for &q in qs {
            let q = q.clamp(0.0, 1.0);
            let target = ((q * total as f64).ceil() as u64).max(1);
            while acc < target {
                match slots.next() {
                    Some((slot, c)) => {
                        acc += c;
                        at = Some(*slot);
                    }
                    None => break,
                }
            }
            out.push(match at {
                Some(slot) if acc >= target => {
                    let ticks = if q == 0.0 {
                        self.layout.value_at(slot as usize)
                    } else {
                        self.layout.highest_at(slot as usize)
                    };
                    ticks as f64 / scale
                }
                _ => f64::INFINITY,
            });
        }
    }
}

/// The significant digits a layout was built for (inverse of `HdrLayout::new`).
fn sigfig_of(layout: HdrLayout) -> u8 {
    (1..=5u8)
        .find(|d| {
            HdrLayout::new(1 << 20, *d).map(|l| l.sub_bucket_count_magnitude)
                == Some(layout.sub_bucket_count_magnitude)
        })
        .unwrap_or(2)
}

/// For each bucket bound, the last slot whose values it counts.
pub fn cuts(spec_scale: f64, layout: HdrLayout, bounds: &[f64]) -> Vec<usize> {
    bounds
        .iter()
        .map(|b| {
            layout
                .index(ticks(*b, spec_scale))
                .min(layout.counts_len as usize - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::value::tag;
    use crate::shm::region::heap_words;

    fn series(spec: &HistogramSpec) -> (Vec<std::sync::atomic::AtomicU64>, u64) {
        let layout = spec.layout().unwrap();
        let mem = heap_words(2 + value_words(layout) as usize);
        let r = Region::new(&mem);
        r.store(1, tag(MetricType::Histogram));
        init(&r, 2, spec, layout);
        (mem, 2)
    }

    #[test]
    fn buckets_and_quantiles_agree_with_the_crate() {
        let spec = HistogramSpec::default();
        let (mem, h) = series(&spec);
        let r = Region::new(&mem);
        let mut reference =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, spec.highest_ticks(), 2).unwrap();
        // A deterministic spread from microseconds to tens of seconds.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut sum = 0.0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 1_000_000) as f64 / 1e6 * 10f64.powi((x >> 40) as i32 % 8 - 6);
            observe(&r, h, v).unwrap();
            reference.record(ticks(v, spec.scale())).unwrap();
            sum += v;
        }
        let snap = Snapshot::read(&r, h as Offset, None);
        assert_eq!(snap.count(), 20_000);
        assert!((snap.sum - sum).abs() < 1e-6 * sum);
        let c = cuts(spec.scale(), snap.layout, &spec.buckets);
        let mut cum = Vec::new();
        snap.cumulative(&c, &mut cum);
        for (b, got) in spec.buckets.iter().zip(&cum) {
            assert_eq!(
                *got,
                reference.count_between(0, ticks(*b, spec.scale())),
                "le={b}"
            );
        }
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = reference.value_at_quantile(q) as f64 / spec.scale();
            assert_eq!(snap.quantile(q, spec.scale()), Some(want), "q={q}");
        }
    }

    #[test]
    fn overflow_counts_only_in_total() {
        let spec = HistogramSpec {
            highest: 1.0,
            buckets: vec![0.5],
            ..HistogramSpec::default()
        };
        let (mem, h) = series(&spec);
        let r = Region::new(&mem);
        observe(&r, h, 0.25).unwrap();
        observe(&r, h, 7.0).unwrap();
        observe(&r, h, -3.0).unwrap();
        assert_eq!(observe(&r, h, f64::NAN), Err(ObserveError::NotANumber));
        let snap = Snapshot::read(&r, h as Offset, None);
        let mut cum = Vec::new();
        snap.cumulative(&cuts(spec.scale(), snap.layout, &spec.buckets), &mut cum);
        assert_eq!(cum, vec![2]);
        assert_eq!(snap.count(), 3);
        assert_eq!(snap.sum, 4.25);
    }

    #[test]
    fn summary_quantiles_match_the_crate_and_count_overflow() {
        let spec = HistogramSpec::default();
        let (mem, h) = series(&spec);
        let r = Region::new(&mem);
        let mut out = Vec::new();
        let empty = Snapshot::read(&r, h as Offset, None);
        empty.quantiles(&SUMMARY_QUANTILES, spec.scale(), &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            observe(&r, h, (x % 3_000_000) as f64 / 1e6).unwrap();
        }
        let snap = Snapshot::read(&r, h as Offset, None);
        let qs = [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0];
        snap.quantiles(&qs, spec.scale(), &mut out);
        for (q, got) in qs.iter().zip(&out) {
            assert_eq!(Some(*got), snap.quantile(*q, spec.scale()), "q={q}");
        }
        // 10 observations above highest out of 5010: the top 0.2% is unknown.
        for _ in 0..10 {
            observe(&r, h, 1000.0).unwrap();
        }
        let snap = Snapshot::read(&r, h as Offset, None);
        snap.quantiles(&SUMMARY_QUANTILES, spec.scale(), &mut out);
        assert!(out[..3].iter().all(|v| v.is_finite()), "{out:?}");
        assert_eq!(&out[3..], &[f64::INFINITY, f64::INFINITY]);
    }

    #[test]
    fn precision_is_recovered_from_the_layout() {
        for d in 1..=5u8 {
            assert_eq!(sigfig_of(HdrLayout::new(60_000_000, d).unwrap()), d);
        }
    }
}
