//! Histograms in an HDR layout: one count word per log-linear slot, a float sum and an
//! overflow count for values above the family's `highest`. Prometheus buckets are
//! cut from the slots at render time, so bucket bounds can change without losing data.
//!
//! Slots come in chunks (see `HdrLayout::chunk_shift`, at most 64 per series), made in
//! the zone on a chunk's first observation: latencies cluster, so a series keeps the
//! few chunks its values fall in rather than thousands of slots, and a render reads only
//! those. The series body holds one word per chunk: its offset in the low 32 bits, 0
//! until it is made, and in the high 32 bits marks of which slots have ever counted
//! (a bit per run of `chunk_slots / 32` slots, at least one). A render reads the
//! marked runs only: with a few values per series it would otherwise read whole
//! 512-byte chunks to find a handful of counts, and at 100k series that memory
//! traffic was a third of the render.

use super::family::{HistogramSpec, MetricType};
use super::hdr::HdrLayout;
use super::value::{add_f64, check, load_f64, UpdateError};
use crate::shm::{Offset, Region};
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use super::layout::{
    HIST_CHUNKS as CHUNKS, HIST_HIGHEST as HIGHEST, HIST_LAYOUT as LAYOUT, HIST_SCALE as SCALE,
};
// The overflow count and the sum follow the chunk words (see `overflow_at`).
/// Mark bits in a chunk word (its high half).
const MARKS: u32 = 32;

/// Chunks a series of `layout` may have.
#[inline(always)]
pub fn chunk_count(layout: HdrLayout) -> u32 {
    // `div_ceil` by a power of two, spelled so that it compiles to a shift.
    (layout.counts_len + chunk_slots(layout) - 1) >> layout.chunk_shift
}

/// Where the overflow count sits; the float sum is the word after it.
///
/// Both are written by every observation, the words before them (parameters, chunk
/// words) are only read: kept a few cache lines apart, two workers observing into one
/// series bounce the line with the sum between them but each keeps its copy of the
/// parameters, instead of losing it to the other's every write.
#[inline(always)]
fn overflow_at(layout: HdrLayout) -> Offset {
    CHUNKS + chunk_count(layout)
}

/// Slots (count words) in one chunk.
pub fn chunk_slots(layout: HdrLayout) -> u32 {
    1 << layout.chunk_shift
}

/// `log2` of the slots one mark bit stands for.
fn mark_shift(layout: HdrLayout) -> u32 {
    u32::from(layout.chunk_shift).saturating_sub(MARKS.trailing_zeros())
}

/// Words of a series body: the parameters, one word per chunk (chunks are apart), the
/// overflow count and the sum.
pub fn value_words(layout: HdrLayout) -> u64 {
    u64::from(overflow_at(layout)) + 2
}

/// The words of series `h` that hold its chunks' offsets, and the slots in a chunk:
/// what deleting the series frees.
pub fn chunk_words(r: &Region<'_>, h: Offset) -> (std::ops::Range<Offset>, u32) {
    let layout = HdrLayout::unpack(r.load(h + LAYOUT));
    (h + CHUNKS..h + overflow_at(layout), chunk_slots(layout))
}

/// The overflow count and the sum of series `h`: every observation but one of exactly
/// 0 changes one of them (what the sweep watches for updates).
pub fn activity_words(r: &Region<'_>, h: Offset) -> (Offset, Offset) {
    let overflow = h + overflow_at(HdrLayout::unpack(r.load(h + LAYOUT)));
    (overflow, overflow + 1)
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

/// Counts `v` in series `handle`. `make_chunk(pointer, slots)` is called the first time
/// a value falls in a chunk: it makes the chunk (zeroed), stores its offset in the word
/// at `pointer` and returns it, or why not (the zone is full, the series was deleted
/// meanwhile). Everything else is lock-free.
#[inline(always)]
pub fn observe(
    r: &Region<'_>,
    handle: u64,
    v: f64,
    make_chunk: impl FnOnce(Offset, u32) -> Result<Offset, UpdateError>,
) -> Result<(), UpdateError> {
    // The smallest histogram body; the words past the parameters are bounds-checked
    // below (the layout word says where they are).
    let h = check(r, handle, MetricType::Histogram, u64::from(CHUNKS) + 1)?;
    if v.is_nan() {
        return Err(UpdateError::InvalidValue);
    }
    let layout = HdrLayout::unpack(r.load(h + LAYOUT));
    let overflow = h + overflow_at(layout);
    let sum = r
        .get(u64::from(overflow) + 1)
        .ok_or(UpdateError::BadHandle)?;
    let t = ticks(v, f64::from_bits(r.load(h + SCALE)));
    if t > r.load(h + HIGHEST) {
        r.word(overflow).fetch_add(1, Relaxed);
    } else {
        // `t <= highest`, so the slot and its chunk are within the layout (as the slot
        // word was before chunks); every word touched is bounds-checked by the region.
        let i = layout.index(t) as u64;
        debug_assert!(i < u64::from(layout.counts_len));
        let pointer = h + CHUNKS + (i >> layout.chunk_shift) as Offset;
        // Acquire pairs with the release that published the chunk (made zeroed, so this
        // orders nothing today; it keeps the pairing honest if chunks are ever reused).
        let word = r.get(u64::from(pointer)).ok_or(UpdateError::BadHandle)?;
        let seen = word.load(Acquire);
        let made = match seen as Offset {
            0 => match make_chunk(pointer, chunk_slots(layout)) {
                Ok(at) => at,
                // No room for the value's bucket chunk: the value is counted where the
                // values above `highest` are (the `+Inf` bucket only), so `_count` and
                // `_sum` stay exact; the caller still counts the zone as full.
                Err(UpdateError::ZoneFull) => {
                    r.word(overflow).fetch_add(1, Relaxed);
                    add_f64(sum, v);
                    return Err(UpdateError::ZoneFull);
                }
                Err(e) => return Err(e),
            },
            at => at,
        };
        let k = i & u64::from(chunk_slots(layout) - 1);
        // Marked before the count, and never unmarked: a render that sees a count's
        // mark reads it, and once seen a mark stays (the word only gains bits).
        let mark = MARKS + (k >> mark_shift(layout)) as u32;
        if seen >> mark & 1 == 0 {
            word.fetch_or(1 << mark, Relaxed);
        }
        let slot = r.get(u64::from(made) + k).ok_or(UpdateError::BadHandle)?;
        slot.fetch_add(1, Relaxed);
    }
    add_f64(sum, v);
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
        let per_chunk = chunk_slots(layout);
        let per_mark = 1 << mark_shift(layout);
        let overflow = h + overflow_at(layout);
        for chunk in 0..chunk_count(layout) {
            let word = r.word(h + CHUNKS + chunk).load(Acquire);
            let made = word as Offset;
            if made == 0 {
                continue;
            }
            let from = chunk * per_chunk;
            let slots = per_chunk.min(layout.counts_len - from);
            // Marks in bit order are runs in slot order.
            let mut marks = (word >> MARKS) as u32;
            while marks != 0 {
                let run = marks.trailing_zeros() * per_mark;
                marks &= marks - 1;
                let len = per_mark.min(slots.saturating_sub(run));
                for (j, c) in (from + run..).zip(r.words(made + run, len)) {
                    let c = c.load(Relaxed);
                    if c != 0 {
                        counts.push((j, c));
                    }
                }
            }
        }
        Snapshot {
            layout,
            counts,
            overflow: r.load(overflow),
            sum: load_f64(r.word(overflow + 1)),
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
    use crate::metrics::layout::{S_TAG, S_VALUES};
    use crate::metrics::value::tag;
    use crate::shm::region::heap_words;

    /// A series in a heap of its own, with room after it for every chunk.
    struct Series {
        mem: Vec<std::sync::atomic::AtomicU64>,
        h: u64,
        next: std::cell::Cell<Offset>,
    }

    impl Series {
        fn new(spec: &HistogramSpec) -> Series {
            let layout = spec.layout().unwrap();
            let h = S_VALUES;
            let body = (h + value_words(layout) as Offset) as usize;
            let every_chunk = chunk_count(layout) * chunk_slots(layout);
            let mem = heap_words(body + every_chunk as usize);
            let r = Region::new(&mem);
            r.store(S_TAG, tag(MetricType::Histogram, 0));
            init(&r, h, spec, layout);
            Series {
                mem,
                h: u64::from(h),
                next: std::cell::Cell::new(body as Offset),
            }
        }

        fn region(&self) -> Region<'_> {
            Region::new(&self.mem)
        }

        fn observe(&self, v: f64) -> Result<(), UpdateError> {
            let r = self.region();
            observe(&r, self.h, v, |pointer, slots| {
                let at = self.next.get();
                self.next.set(at + slots);
                r.store(pointer, u64::from(at));
                Ok(at)
            })
        }
    }

    #[test]
    fn buckets_and_quantiles_agree_with_the_crate() {
        let spec = HistogramSpec::default();
        let series = Series::new(&spec);
        let (r, h) = (series.region(), series.h);
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
            series.observe(v).unwrap();
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
        let series = Series::new(&spec);
        let (r, h) = (series.region(), series.h);
        series.observe(0.25).unwrap();
        series.observe(7.0).unwrap();
        series.observe(-3.0).unwrap();
        assert_eq!(series.observe(f64::NAN), Err(UpdateError::InvalidValue));
        let snap = Snapshot::read(&r, h as Offset, None);
        let mut cum = Vec::new();
        snap.cumulative(&cuts(spec.scale(), snap.layout, &spec.buckets), &mut cum);
        assert_eq!(cum, vec![2]);
        assert_eq!(snap.count(), 3);
        assert_eq!(snap.sum, 4.25);
    }

    #[test]
    fn chunks_are_made_where_values_fall_and_only_once() {
        let spec = HistogramSpec::default();
        let series = Series::new(&spec);
        let layout = spec.layout().unwrap();
        let chunk_words = chunk_slots(layout);
        let first = series.next.get();
        // 2048..4095 µs: one power of two of ticks, 128 slots, two chunks.
        for i in 0..2048 {
            series.observe(0.002048 + f64::from(i) * 1e-6).unwrap();
        }
        assert_eq!(series.next.get() - first, 2 * chunk_words);
        series.observe(0.0025).unwrap();
        assert_eq!(series.next.get() - first, 2 * chunk_words);
        let snap = Snapshot::read(&series.region(), series.h as Offset, None);
        assert_eq!(snap.count(), 2049);
        assert_eq!(snap.counts.len(), 128, "{:?}", snap.counts);
        // A full zone: a value whose chunk cannot be made is still counted and summed
        // (in `+Inf`, as a value above `highest`) and reported as ZoneFull; values in a
        // chunk that exists count as before.
        let sum = snap.sum;
        let r = series.region();
        let refused = observe(&r, series.h, 30.0, |_, _| Err(UpdateError::ZoneFull));
        assert_eq!(refused, Err(UpdateError::ZoneFull));
        observe(&r, series.h, 0.003, |_, _| unreachable!()).unwrap();
        let snap = Snapshot::read(&r, series.h as Offset, None);
        assert_eq!(snap.count(), 2051);
        assert_eq!(snap.sum, sum + 30.0 + 0.003);
        assert_eq!(snap.counts.len(), 128, "no chunk was made for 30 s");
    }

    #[test]
    fn every_slot_is_marked_and_read_at_every_precision() {
        for precision in 1..=3 {
            let spec = HistogramSpec {
                precision,
                ..HistogramSpec::default()
            };
            let series = Series::new(&spec);
            let layout = spec.layout().unwrap();
            // One value per slot, every other slot twice: a render finds each count.
            let (mut want, mut overflow) = (std::collections::BTreeMap::new(), 0);
            for i in 0..layout.counts_len as usize {
                let v = layout.value_at(i) as f64 / spec.scale();
                let times = 1 + i as u64 % 2;
                for _ in 0..times {
                    series.observe(v).unwrap();
                }
                let t = ticks(v, spec.scale());
                if t > spec.highest_ticks() {
                    // The last slot reaches past `highest`: those values overflow.
                    overflow += times;
                } else {
                    *want.entry(layout.index(t) as u32).or_insert(0) += times;
                }
            }
            let r = series.region();
            let snap = Snapshot::read(&r, series.h as Offset, None);
            let got: std::collections::BTreeMap<u32, u64> = snap.counts.iter().copied().collect();
            assert_eq!(got, want, "precision {precision}");
            assert_eq!(snap.overflow, overflow);
            // Every chunk made carries marks, and only for slots that counted.
            let per_mark = 1 << mark_shift(layout);
            for chunk in 0..chunk_count(layout) {
                let word = r.load(series.h as Offset + CHUNKS + chunk);
                let from = chunk * chunk_slots(layout);
                // Chunks of fewer than 32 slots use a bit per slot; the rest stay clear.
                for b in 0..MARKS.min(chunk_slots(layout)) {
                    let run = from + b * per_mark..from + (b + 1) * per_mark;
                    let counted = want.range(run).next().is_some();
                    assert_eq!(
                        word >> (MARKS + b) & 1 == 1,
                        counted,
                        "chunk {chunk} mark {b}"
                    );
                }
                if chunk_slots(layout) < MARKS {
                    assert_eq!((word >> MARKS) as u32 >> chunk_slots(layout), 0);
                }
            }
        }
    }

    #[test]
    fn summary_quantiles_match_the_crate_and_count_overflow() {
        let spec = HistogramSpec::default();
        let series = Series::new(&spec);
        let (r, h) = (series.region(), series.h);
        let mut out = Vec::new();
        let empty = Snapshot::read(&r, h as Offset, None);
        empty.quantiles(&SUMMARY_QUANTILES, spec.scale(), &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            series.observe((x % 3_000_000) as f64 / 1e6).unwrap();
        }
        let snap = Snapshot::read(&r, h as Offset, None);
        let qs = [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0];
        snap.quantiles(&qs, spec.scale(), &mut out);
        for (q, got) in qs.iter().zip(&out) {
            assert_eq!(Some(*got), snap.quantile(*q, spec.scale()), "q={q}");
        }
        // 10 observations above highest out of 5010: the top 0.2% is unknown.
        for _ in 0..10 {
            series.observe(1000.0).unwrap();
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
