//! Native (exponential) histograms made at render time from a series' HDR counts.
//!
//! A native histogram of schema `s` has buckets `(b^(i-1), b^i]` for integer `i`, with
//! `b = 2^(2^-s)`: `2^s` buckets per power of two, each `b - 1` wider than the last, in
//! relative terms. HDR slots are linear inside each power of two of ticks: `N` slots
//! per power of two (`N = 2^(sub_bucket_count_magnitude - 1)`: 16, 128, 1024, 16384,
//! 131072 for precision 1 to 5), the widest `1/N` of its value. Boundaries of the two
//! never line up, so each slot goes whole to the native bucket holding its midpoint.
//!
//! [`schema_for`] picks the finest schema (at most 8, the finest there is) whose
//! narrowest bucket still spans [`MIN_SLOTS_PER_BUCKET`] slots: finer, and neighbour
//! buckets would get one slot or two (or none) by where the boundaries fall, a
//! saw-tooth that is the conversion's, not the data's. A quantile read from the native
//! buckets (Prometheus interpolates inside the bucket the rank falls in) is then off
//! by at most one bucket and half a slot: [`relative_error`].
//!
//! The zero bucket holds slot 0 (tick 0: values below half of `lowest`, and values
//! below 0, which the HDR layout counts there too), with a threshold of half of
//! `lowest`, never 0 (Prometheus 2.42 reads a histogram as native only with a bucket, a
//! zero count or a zero threshold above 0). Values above `highest` (and those a full
//! zone had no chunk for) are counted in the bucket right above `highest`'s, so that
//! the count is exactly the zero count plus the buckets.

use crate::metrics::hdr::HdrLayout;
use crate::metrics::histogram::Snapshot;

/// The finest schema Prometheus knows.
pub const MAX_SCHEMA: i32 = 8;

/// The HDR slots the narrowest native bucket must span at least.
pub const MIN_SLOTS_PER_BUCKET: f64 = 4.0;

/// HDR slots in each power of two of `layout` (above its first, exact, ticks).
pub fn slots_per_octave(layout: HdrLayout) -> f64 {
    f64::from(1u32 << (layout.sub_bucket_count_magnitude - 1))
}

/// The relative width of a schema's buckets, `2^(2^-schema) - 1`.
pub fn bucket_width(schema: i32) -> f64 {
    (-f64::from(schema)).exp2().exp2() - 1.0
}

/// The schema for a layout: the finest whose buckets span [`MIN_SLOTS_PER_BUCKET`]
/// slots, and at least 0 (one bucket per power of two).
pub fn schema_for(layout: HdrLayout) -> i32 {
    let n = slots_per_octave(layout);
    (0..=MAX_SCHEMA)
        .rev()
        .find(|&s| n * bucket_width(s) >= MIN_SLOTS_PER_BUCKET)
        .unwrap_or(0)
}

/// The most a quantile read from the native buckets of `layout` is off, relative to
/// the value: one bucket, plus the half slot its midpoint rule may move a value.
pub fn relative_error(layout: HdrLayout) -> f64 {
    bucket_width(schema_for(layout)) + 0.5 / slots_per_octave(layout)
}

/// The upper bound of bucket `index` of `schema`.
pub fn upper_bound(schema: i32, index: i32) -> f64 {
    (f64::from(index) / f64::from(1 << schema)).exp2()
}

/// The bucket of `schema` that holds `x > 0`: `b^(i-1) < x <= b^i`.
pub fn bucket_of(schema: i32, x: f64) -> i32 {
    let mut i = (x.log2() * f64::from(1 << schema)).ceil() as i32;
    // log2 rounds: settle on the bounds themselves.
    while x > upper_bound(schema, i) {
        i += 1;
    }
    while x <= upper_bound(schema, i - 1) {
        i -= 1;
    }
    i
}

/// How one family's series become native histograms.
#[derive(Clone, Copy, Debug)]
pub struct Converter {
    pub layout: HdrLayout,
    pub schema: i32,
    /// Ticks per unit (the family's `1 / lowest`).
    scale: f64,
    /// The bucket values above `highest` are counted in.
    overflow_bucket: i32,
}

impl Converter {
    /// `highest_ticks`: the family's `highest`, in ticks.
    pub fn new(layout: HdrLayout, scale: f64, highest_ticks: u64) -> Converter {
        let schema = schema_for(layout);
        Converter {
            layout,
            schema,
            scale,
            overflow_bucket: bucket_of(schema, highest_ticks.max(1) as f64 / scale) + 1,
        }
    }

    /// Half a tick: the values counted in slot 0.
    pub fn zero_threshold(&self) -> f64 {
        0.5 / self.scale
    }

    /// The native buckets of `snap` into `out` (its buffers reused).
    pub fn convert(&self, snap: &Snapshot, out: &mut NativeBuckets) {
        out.schema = self.schema;
        out.zero_threshold = self.zero_threshold();
        out.zero_count = 0;
        out.spans.clear();
        out.deltas.clear();
        let mut b = Builder::new(out);
        // The current bucket and its upper bound: slots come in order, most share it.
        let (mut at, mut upper) = (i32::MIN, f64::NEG_INFINITY);
        for &(slot, count) in &snap.counts {
            if slot == 0 {
                b.out.zero_count += count;
                continue;
            }
            let (lo, hi) = (
                self.layout.value_at(slot as usize),
                self.layout.highest_at(slot as usize),
            );
            let mid = (lo as f64 + hi as f64) / 2.0 / self.scale;
            if mid > upper {
                at = bucket_of(self.schema, mid);
                upper = upper_bound(self.schema, at);
            }
            b.add(at, count);
        }
        if snap.overflow > 0 {
            b.add(self.overflow_bucket.max(at), snap.overflow);
        }
        b.finish();
    }
}

/// A native histogram's buckets, as the protobuf exposition carries them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativeBuckets {
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    /// `(offset, length)`: the first offset is the first bucket's index, later ones
    /// the gap after the span before.
    pub spans: Vec<(i32, u32)>,
    /// Each bucket's count less the one before it (0 before the first).
    pub deltas: Vec<i64>,
}

impl NativeBuckets {
    /// `(index, count)` of every bucket the spans cover, in order (empty ones too).
    pub fn buckets(&self) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        let (mut index, mut count, mut deltas) = (0i32, 0i64, self.deltas.iter());
        for (n, &(offset, len)) in self.spans.iter().enumerate() {
            index += offset + if n == 0 { 0 } else { 1 };
            for k in 0..len {
                if k > 0 {
                    index += 1;
                }
                count += deltas.next().copied().unwrap_or(0);
                out.push((index, count as u64));
            }
        }
        out
    }
}

/// Appends buckets in increasing index order: a gap of one or two empty buckets
/// stays in the span (as client_golang does: cheaper than a new span).
struct Builder<'o> {
    out: &'o mut NativeBuckets,
    /// The last bucket's index and count.
    last: Option<(i32, u64)>,
    /// The count of the last bucket written.
    written: u64,
}

impl<'o> Builder<'o> {
    fn new(out: &'o mut NativeBuckets) -> Builder<'o> {
        Builder {
            out,
            last: None,
            written: 0,
        }
    }

    fn add(&mut self, index: i32, count: u64) {
        match self.last {
            Some((i, c)) if i == index => {
                self.last = Some((i, c + count));
            }
            Some((i, _)) => {
                self.flush();
                let gap = index - i - 1;
                if gap <= 2 {
                    for _ in 0..gap {
                        self.push_count(0);
                    }
                } else {
                    self.out.spans.push((gap, 0));
                }
                self.last = Some((index, count));
            }
            None => {
                self.out.spans.push((index, 0));
                self.last = Some((index, count));
            }
        }
    }

    /// Writes the last bucket's delta.
    fn flush(&mut self) {
        if let Some((_, c)) = self.last {
            self.push_count(c);
        }
    }

    fn push_count(&mut self, c: u64) {
        // Counts of one series are far below 2^63.
        self.out.deltas.push(c as i64 - self.written as i64);
        self.written = c;
        self.out.spans.last_mut().expect("a span is open").1 += 1;
    }

    fn finish(mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::ticks;

    fn layout(precision: u8) -> HdrLayout {
        HdrLayout::new(60_000_000, precision).unwrap()
    }

    #[test]
    fn schema_per_precision() {
        let got: Vec<(i32, u32)> = (1..=5)
            .map(|p| {
                let l = layout(p);
                (schema_for(l), (relative_error(l) * 1e4).round() as u32)
            })
            .collect();
        // (schema, error in basis points): documented in docs/exposition.md.
        assert_eq!(got, vec![(1, 4455), (4, 482), (7, 59), (8, 27), (8, 27)]);
        for p in 1..=5 {
            let l = layout(p);
            let s = schema_for(l);
            assert!(slots_per_octave(l) * bucket_width(s) >= MIN_SLOTS_PER_BUCKET);
            if s < MAX_SCHEMA {
                assert!(slots_per_octave(l) * bucket_width(s + 1) < MIN_SLOTS_PER_BUCKET);
            }
        }
    }

    #[test]
    fn bucket_of_is_upper_inclusive() {
        for s in [0, 1, 4, 8] {
            assert_eq!(bucket_of(s, 1.0), 0);
            assert_eq!(bucket_of(s, 2.0), 1 << s);
            assert_eq!(bucket_of(s, 0.5), -(1 << s));
            assert_eq!(bucket_of(s, 1.000_001), 1);
            for i in [-300, -17, -1, 1, 5, 77, 300] {
                let ub = upper_bound(s, i);
                assert_eq!(bucket_of(s, ub), i, "schema {s} bucket {i}");
                assert_eq!(bucket_of(s, ub * (1.0 + 1e-12)), i + 1);
            }
        }
    }

    /// A snapshot of `values` as `observe` counts them.
    fn snapshot(layout: HdrLayout, scale: f64, highest: u64, values: &[f64]) -> Snapshot {
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        let (mut overflow, mut sum) = (0, 0.0);
        for &v in values {
            let t = ticks(v, scale);
            if t > highest {
                overflow += 1;
            } else {
                *counts.entry(layout.index(t) as u32).or_default() += 1;
            }
            sum += v;
        }
        Snapshot {
            layout,
            counts: counts.into_iter().collect(),
            overflow,
            sum,
        }
    }

    /// Prometheus' `histogram_quantile` on a native histogram (2.42's
    /// `histogramQuantile`: linear inside the bucket the rank falls in).
    fn prometheus_quantile(q: f64, n: &NativeBuckets, count: u64) -> f64 {
        let rank = q * count as f64;
        let mut acc = n.zero_count as f64;
        if acc >= rank && n.zero_count > 0 {
            return n.zero_threshold * (rank / n.zero_count as f64);
        }
        let mut last = 0.0;
        for (i, c) in n.buckets() {
            if c == 0 {
                continue;
            }
            let (lo, hi) = (upper_bound(n.schema, i - 1), upper_bound(n.schema, i));
            if acc + c as f64 >= rank {
                return lo + (hi - lo) * ((rank - acc) / c as f64);
            }
            acc += c as f64;
            last = hi;
        }
        last
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// A standard normal (Box-Muller).
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.next().max(1e-300), self.next());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }

        /// Log-normal around `median`, `sigma` in natural log units.
        fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
            median * (sigma * self.normal()).exp()
        }
    }

    /// Quantiles read from the native buckets are within `relative_error` of exact ones
    /// (the `hdrhistogram` crate at 5 significant digits over the same values), for
    /// every precision, over a skewed and two multi-modal distributions.
    #[test]
    fn native_quantiles_are_within_the_stated_error() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let skewed: Vec<f64> = (0..50_000).map(|_| rng.log_normal(0.02, 1.2)).collect();
        let modes: Vec<f64> = (0..50_000)
            .map(|i| match i % 10 {
                0..=5 => rng.log_normal(0.001, 0.2),
                6..=8 => rng.log_normal(0.05, 0.3),
                _ => rng.log_normal(2.0, 0.5),
            })
            .collect();
        // Narrow spikes: most mass in few slots, where the midpoint rule matters most.
        let spikes: Vec<f64> = (0..50_000)
            .map(|i| match i % 4 {
                0 | 1 => 0.0123 + rng.next() * 1e-5,
                2 => 0.7 + rng.next() * 0.01,
                _ => rng.next() * 30.0,
            })
            .collect();
        let (lowest, highest) = (1e-6, 60.0);
        let scale = 1.0 / lowest;
        let highest_ticks = ticks(highest, scale);
        let mut n = NativeBuckets::default();
        let mut worst = [0.0f64; 5];
        for (name, values) in [
            ("skewed", &skewed),
            ("multi-modal", &modes),
            ("spikes", &spikes),
        ] {
            let mut exact =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, highest_ticks, 5).unwrap();
            for &v in values.iter() {
                exact.record(ticks(v, scale)).unwrap();
            }
            for precision in 1..=5u8 {
                let l = HdrLayout::new(highest_ticks, precision).unwrap();
                let snap = snapshot(l, scale, highest_ticks, values);
                Converter::new(l, scale, highest_ticks).convert(&snap, &mut n);
                let total: u64 = n.zero_count + n.buckets().iter().map(|(_, c)| c).sum::<u64>();
                assert_eq!(total, snap.count(), "{name} p{precision}");
                let bound = relative_error(l);
                for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999] {
                    let want = exact.value_at_quantile(q) as f64 / scale;
                    let got = prometheus_quantile(q, &n, snap.count());
                    let err = (got - want).abs() / want;
                    worst[precision as usize - 1] = worst[precision as usize - 1].max(err);
                    assert!(
                        err <= bound,
                        "{name} p{precision} q{q}: native {got}, exact {want}: error {err} over {bound}"
                    );
                }
            }
        }
        eprintln!("worst relative error per precision: {worst:?}");
    }

    #[test]
    fn spans_deltas_zero_bucket_and_overflow() {
        let l = HdrLayout::new(1000, 2).unwrap();
        let (scale, highest) = (1.0, 1000);
        // Ticks 1 and 2 (schema 4 buckets 0 and 16), 0 (zero bucket), one above highest.
        let snap = snapshot(l, scale, highest, &[0.0, -3.0, 1.0, 1.0, 2.0, 5000.0]);
        let c = Converter::new(l, scale, highest);
        assert_eq!(c.schema, 4);
        let mut n = NativeBuckets::default();
        c.convert(&snap, &mut n);
        assert_eq!(n.zero_count, 2);
        assert_eq!(n.zero_threshold, 0.5);
        let over = bucket_of(4, 1000.0) + 1;
        assert_eq!(n.spans, vec![(0, 1), (15, 1), (over - 16 - 1, 1)]);
        assert_eq!(n.deltas, vec![2, -1, 0]);
        assert_eq!(n.buckets(), vec![(0, 2), (16, 1), (over, 1)]);
        // A gap of one or two buckets stays in the span.
        let snap = snapshot(l, scale, highest, &[300.0, 345.0]);
        c.convert(&snap, &mut n);
        let (a, b) = (bucket_of(4, 300.0), bucket_of(4, 345.0));
        assert_eq!(b - a, 3);
        assert_eq!(n.spans, vec![(a, 4)]);
        assert_eq!(n.deltas, vec![1, -1, 0, 1]);
        // Nothing counted: no span, the threshold still above 0.
        c.convert(&snapshot(l, scale, highest, &[]), &mut n);
        assert_eq!((n.zero_count, n.spans.len(), n.deltas.len()), (0, 0, 0));
        assert!(n.zero_threshold > 0.0);
    }
}
