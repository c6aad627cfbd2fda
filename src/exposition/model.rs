//! What a format's writer sees: a family's [`Meta`], a series' [`Point`], and the
//! [`Sink`] trait each format implements.

use super::Scrape;
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
}

/// One series' values, read once.
#[derive(Clone, Copy)]
pub enum Point<'a> {
    Counter {
        int: u64,
        float: f64,
        /// Creation time, ms since the epoch.
        created: Option<u64>,
    },
    Gauge(f64),
    Histogram {
        /// Cumulative count at each bucket bound.
        cumulative: &'a [u64],
        count: u64,
        sum: f64,
        /// At [`SUMMARY_QUANTILES`], when the sink wants them inline (JSON).
        quantiles: &'a [f64],
        created: Option<u64>,
    },
    Summary {
        /// At [`SUMMARY_QUANTILES`].
        quantiles: &'a [f64],
        count: u64,
        sum: f64,
        created: Option<u64>,
    },
}

/// A format's writer.
pub trait Sink {
    /// Whether histograms with a quantile option get summary families (the exposition
    /// formats) rather than quantiles inside every histogram series (JSON).
    const SUMMARY_FAMILIES: bool;
    fn family(&mut self, m: &Meta<'_>);
    /// `labels` is a series key: the label values, see [`decode_key`].
    fn series(&mut self, m: &Meta<'_>, labels: &[u8], p: &Point<'_>);
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

/// Families a scrape reads rather than stores (client_rust's `Collector`): handed to
/// the walk, which writes them after the zone's own, through the same sink.
pub trait Collector {
    /// Adds the families this collector writes for `scrape`, as (name, group): what
    /// a selection may name.
    fn families(&self, scrape: &Scrape<'_>, out: &mut Vec<(&'static str, &'static str)>);
    /// Hands each of its families to `family`, in order, with its series.
    fn collect(&self, scrape: &Scrape<'_>, family: &mut dyn FnMut(&Meta<'_>, &Series<'_>));
}
