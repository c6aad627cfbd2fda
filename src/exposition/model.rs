//! What a format's writer sees: a family's [`Meta`], a series' [`Point`], and the
//! [`Sink`] trait each format implements.

use super::native::NativeBuckets;
pub use crate::metrics::exemplar::Exemplar;
use crate::metrics::store::decode_key;
use crate::metrics::MetricType;

/// How a family is exposed (a histogram may be exposed as a summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExposedType {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl ExposedType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExposedType::Counter => "counter",
            ExposedType::Gauge => "gauge",
            ExposedType::Histogram => "histogram",
            ExposedType::Summary => "summary",
        }
    }
}

/// A family as a sink sees it.
pub struct Meta<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: ExposedType,
    /// The declared type (a summary comes from a histogram).
    pub declared: MetricType,
    /// Empty when the family has none.
    pub unit: &'a str,
    pub group: &'a str,
    pub label_names: &'a [String],
    /// Histogram bucket bounds (`le`), `+Inf` excluded.
    pub buckets: &'a [f64],
    /// A histogram served in protobuf as a native histogram only (no classic buckets).
    pub native_only: bool,
}

/// One series' values, read once. A new kind (a sparse histogram) is a new variant
/// and a new [`Sink`] method whose default writes it as a kind every sink knows (its
/// classic buckets): only the sinks that carry it as such override that method.
#[derive(Clone, Copy)]
pub enum Point<'a> {
    Counter(CounterValue),
    Gauge(f64),
    Histogram(HistogramValue<'a>),
    /// A histogram with its native buckets too, for the sinks that ask for them
    /// ([`Sink::NATIVE_HISTOGRAMS`]).
    NativeHistogram(NativeHistogramValue<'a>),
    Summary(SummaryValue<'a>),
}

#[derive(Clone, Copy)]
pub struct CounterValue {
    pub int: u64,
    pub float: f64,
    /// Creation time, ms since the epoch.
    pub created: Option<u64>,
    /// The latest exemplar, for the sinks that show them (OpenMetrics, protobuf).
    pub exemplar: Option<Exemplar>,
}

#[derive(Clone, Copy)]
pub struct HistogramValue<'a> {
    /// Cumulative count at each bucket bound.
    pub cumulative: &'a [u64],
    pub count: u64,
    pub sum: f64,
    /// At [`SUMMARY_QUANTILES`](crate::metrics::histogram::SUMMARY_QUANTILES), when the sink wants them inline (JSON).
    pub quantiles: &'a [f64],
    pub created: Option<u64>,
    /// One per bucket, `+Inf` last (see `exemplar::by_bucket`); empty when the series
    /// has none.
    pub exemplars: &'a [Option<Exemplar>],
}

#[derive(Clone, Copy)]
pub struct NativeHistogramValue<'a> {
    /// Its classic buckets, count, sum and creation time.
    pub classic: HistogramValue<'a>,
    /// The same counts in exponential buckets (see [`super::native`]).
    pub native: &'a NativeBuckets,
}

#[derive(Clone, Copy)]
pub struct SummaryValue<'a> {
    /// At [`SUMMARY_QUANTILES`](crate::metrics::histogram::SUMMARY_QUANTILES).
    pub quantiles: &'a [f64],
    pub count: u64,
    pub sum: f64,
    pub created: Option<u64>,
}

/// A format's writer, or a writer in front of one (constant labels).
pub trait Sink {
    /// Whether histograms with a quantile option get summary families (the exposition
    /// formats) rather than quantiles inside every histogram series (JSON).
    const SUMMARY_FAMILIES: bool;
    /// Whether histograms come as [`Point::NativeHistogram`] (what the walk converts
    /// only for the sinks that carry native histograms).
    const NATIVE_HISTOGRAMS: bool = false;
    fn family(&mut self, m: &Meta<'_>);
    /// One series: `labels` is its key, the label values (see [`decode_key`]). Hands
    /// the point to the method of its kind.
    fn series(&mut self, m: &Meta<'_>, labels: &[u8], p: &Point<'_>) {
        match p {
            Point::Counter(c) => self.counter(m, labels, c),
            Point::Gauge(v) => self.gauge(m, labels, *v),
            Point::Histogram(h) => self.histogram(m, labels, h),
            Point::NativeHistogram(h) => self.native_histogram(m, labels, h),
            Point::Summary(s) => self.summary(m, labels, s),
        }
    }
    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue);
    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64);
    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>);
    /// A histogram with native buckets: its classic buckets, unless the sink carries
    /// native histograms.
    fn native_histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &NativeHistogramValue<'_>) {
        self.histogram(m, labels, &h.classic);
    }
    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>);
    fn end_family(&mut self, m: &Meta<'_>);
    fn finish(&mut self);
}

/// Label values of a series key, as text (they were checked to be UTF-8 when the
/// series was made).
pub fn label_values(key: &[u8]) -> impl Iterator<Item = &str> {
    decode_key(key).map(|v| std::str::from_utf8(v).unwrap_or(""))
}

/// A family's series as a collector hands them over: each one's key (its label
/// values, see [`crate::metrics::store::encode_key`]) and point.
pub type Series<'p> = [(Vec<u8>, Point<'p>)];
