//! Metric families: what users declare (name, help, type, label names, histogram
//! shape) and the checks that keep the exposition valid.

use super::hdr::HdrLayout;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MetricType {
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
}

impl MetricType {
    pub fn from_u8(v: u8) -> Option<MetricType> {
        match v {
            1 => Some(MetricType::Counter),
            2 => Some(MetricType::Gauge),
            3 => Some(MetricType::Histogram),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<MetricType> {
        match s {
            "counter" => Some(MetricType::Counter),
            "gauge" => Some(MetricType::Gauge),
            "histogram" => Some(MetricType::Histogram),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// The group of user families that name none (see [`FamilySpec::group`]).
pub const DEFAULT_GROUP: &str = "app";
/// The group of the module's own families (`nginx_connections*`, `nginx_metric_*`...).
pub const BUILTIN_GROUP: &str = "nginx";

/// Whether a histogram family is also, or instead, exposed as a summary of quantiles
/// computed from its HDR counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum QuantileMode {
    /// Buckets only.
    #[default]
    Off = 0,
    /// The histogram, then a summary family named `<name>_quantiles`.
    Beside = 1,
    /// A summary family under the histogram's own name, no buckets.
    Instead = 2,
}

impl QuantileMode {
    pub fn from_u8(v: u8) -> QuantileMode {
        match v {
            1 => QuantileMode::Beside,
            2 => QuantileMode::Instead,
            _ => QuantileMode::Off,
        }
    }

    pub fn parse(s: &str) -> Option<QuantileMode> {
        match s {
            "beside" => Some(QuantileMode::Beside),
            "instead" => Some(QuantileMode::Instead),
            "off" | "" => Some(QuantileMode::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QuantileMode::Off => "off",
            QuantileMode::Beside => "beside",
            QuantileMode::Instead => "instead",
        }
    }
}

/// The label value of a family's overflow series unless it says otherwise.
pub const DEFAULT_OVERFLOW: &str = "__overflow__";

/// Suffix of the summary family a `beside` histogram gets.
pub const QUANTILES_SUFFIX: &str = "_quantiles";

/// At most this many labels per family: label sets are keys, keep them small.
pub const MAX_LABELS: usize = 16;
/// Longest help text kept.
pub const MAX_HELP: usize = 4096;
/// Longest label value accepted.
pub const MAX_LABEL_VALUE: usize = 4096;
/// At most this many bucket bounds per histogram: every bound is a sample line per
/// series in every scrape.
pub const MAX_BUCKETS: usize = 128;

/// The HDR range and precision of a histogram family, plus the Prometheus buckets
/// rendered from it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSpec {
    /// Smallest discernible value, in the family's unit (seconds, bytes...).
    pub lowest: f64,
    /// Largest value kept in buckets; larger ones count only in `+Inf`.
    pub highest: f64,
    /// Significant decimal digits, 1 to 5.
    pub precision: u8,
    /// Upper bounds (`le`) rendered, increasing, each below `highest`.
    pub buckets: Vec<f64>,
}

/// Prometheus client libraries' default buckets, in seconds.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for HistogramSpec {
    /// 1 µs to 60 s at 2 significant digits: request latencies in seconds.
    fn default() -> Self {
        HistogramSpec {
            lowest: 1e-6,
            highest: 60.0,
            precision: 2,
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }
}

impl HistogramSpec {
    /// The `highest` a bucket list implies when none is given: the default (60), or
    /// twice the last bound when that is larger. A user coming from a library with
    /// plain bucket lists (up to 60 s, or byte sizes) then never meets `highest`;
    /// twice leaves the last bucket's HDR slots, and values somewhat above it, exact.
    pub fn highest_for(buckets: &[f64]) -> f64 {
        let default = HistogramSpec::default().highest;
        match buckets.last() {
            Some(&last) if last.is_finite() && 2.0 * last > default => 2.0 * last,
            _ => default,
        }
    }

    /// Ticks per unit: observations are stored as `round(value * scale)`.
    pub fn scale(&self) -> f64 {
        1.0 / self.lowest
    }

    pub fn highest_ticks(&self) -> u64 {
        (self.highest * self.scale()).round() as u64
    }

    pub fn layout(&self) -> Option<HdrLayout> {
        HdrLayout::new(self.highest_ticks(), self.precision)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FamilySpec {
    pub name: String,
    pub help: String,
    pub metric_type: MetricType,
    pub label_names: Vec<String>,
    /// Required for histograms, refused otherwise.
    pub histogram: Option<HistogramSpec>,
    /// Series beyond this many are refused and counted (0: bounded by the zone only).
    pub max_series: u64,
    /// Seconds after its last update a series is deleted by the sweep (0: never).
    pub expire_s: u64,
    /// The label value of the overflow series (every label) that records what
    /// `max_series` or a full zone refused; empty: [`DEFAULT_OVERFLOW`].
    pub overflow_value: String,
    /// OpenMetrics unit (`seconds`, `bytes`...), empty for none. The name must end with
    /// `_<unit>` (counters: before `_total`).
    pub unit: String,
    /// The group the family is served in (`?group=`, `prometheus_metrics ... group=`);
    /// empty means [`DEFAULT_GROUP`].
    pub group: String,
    /// Histograms only: quantile summaries beside or instead of the buckets.
    pub quantiles: QuantileMode,
    /// Counters and histograms: series made from now on keep exemplars (see
    /// `metrics::exemplar`).
    pub exemplars: bool,
    /// Histograms only: the protobuf exposition serves the native histogram without
    /// its classic buckets (the text formats always show them).
    pub native_only: bool,
}

/// A declaration that can never produce valid exposition. Names the culprit.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecError {
    MetricName(String),
    LabelName {
        family: String,
        label: String,
        why: &'static str,
    },
    TooManyLabels {
        family: String,
        count: usize,
    },
    Help {
        family: String,
        why: &'static str,
    },
    Histogram {
        family: String,
        field: &'static str,
        why: String,
    },
    /// An invalid `unit`, `group` or `quantiles` option.
    Option {
        family: String,
        field: &'static str,
        why: String,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::MetricName(n) => write!(
                f,
                "invalid metric name \"{}\": must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                n.escape_debug()
            ),
            SpecError::LabelName { family, label, why } => {
                write!(
                    f,
                    "metric \"{family}\": invalid label name \"{}\": {why}",
                    label.escape_debug()
                )
            }
            SpecError::TooManyLabels { family, count } => {
                write!(
                    f,
                    "metric \"{family}\": {count} labels, at most {MAX_LABELS} allowed"
                )
            }
            SpecError::Help { family, why } => {
                write!(f, "metric \"{family}\": invalid help: {why}")
            }
            SpecError::Histogram { family, field, why } => {
                write!(f, "metric \"{family}\": invalid histogram {field}: {why}")
            }
            SpecError::Option { family, field, why } => {
                write!(f, "metric \"{family}\": invalid {field}: {why}")
            }
        }
    }
}

impl std::error::Error for SpecError {}

pub fn valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// A group name: 1 to 64 letters, digits, `_` and `-`.
pub fn valid_group(group: &str) -> bool {
    (1..=64).contains(&group.len())
        && group
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The name an OpenMetrics counter family takes: the declared name without `_total`.
/// `None` for a counter whose name lacks `_total` (exposed as `unknown` in OpenMetrics
/// so that its samples keep their name in both formats).
pub fn counter_base(name: &str) -> Option<&str> {
    name.strip_suffix("_total").filter(|b| !b.is_empty())
}

/// Every family and sample name a family may use, in the text format or OpenMetrics:
/// two families whose sets intersect cannot be exposed together (OpenMetrics forbids
/// such clashes, and the text format would merge them).
pub fn exposition_names(name: &str, t: MetricType) -> Vec<String> {
    match t {
        MetricType::Gauge => vec![name.to_string()],
        MetricType::Counter => match counter_base(name) {
            Some(base) => vec![
                base.to_string(),
                name.to_string(),
                format!("{base}_created"),
            ],
            None => vec![name.to_string()],
        },
        MetricType::Histogram => {
            let q = format!("{name}{QUANTILES_SUFFIX}");
            let mut v: Vec<String> = ["", "_bucket", "_count", "_sum", "_created"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect();
            v.extend(
                ["", "_count", "_sum", "_created"]
                    .iter()
                    .map(|s| format!("{q}{s}")),
            );
            v
        }
    }
}

/// Names of families whose [`exposition_names`] may contain `n`: `n` itself, `n` as a
/// counter base, and `n` without any suffix families add.
pub fn possible_owners(n: &str) -> Vec<String> {
    let mut out = vec![n.to_string(), format!("{n}_total")];
    for suffix in [
        "_total",
        "_created",
        "_bucket",
        "_count",
        "_sum",
        QUANTILES_SUFFIX,
    ] {
        if let Some(stem) = n.strip_suffix(suffix) {
            out.push(stem.to_string());
            out.push(format!("{stem}_total"));
            if let Some(inner) = stem.strip_suffix(QUANTILES_SUFFIX) {
                out.push(inner.to_string());
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

fn label_name_problem(name: &str, metric_type: MetricType) -> Option<&'static str> {
    let b = name.as_bytes();
    if b.is_empty()
        || !(b[0].is_ascii_alphabetic() || b[0] == b'_')
        || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return Some("must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if name.starts_with("__") {
        return Some("names starting with \"__\" are reserved");
    }
    if metric_type == MetricType::Histogram && name == "le" {
        return Some("\"le\" is reserved for histogram buckets");
    }
    None
}

/// Checks bucket bounds against a histogram's range; shared by registration and by
/// later bucket changes.
pub fn check_buckets(family: &str, h: &HistogramSpec, buckets: &[f64]) -> Result<(), SpecError> {
    let bad = |why: String| SpecError::Histogram {
        family: family.to_string(),
        field: "buckets",
        why,
    };
    if buckets.len() > MAX_BUCKETS {
        return Err(bad(format!(
            "{} bounds, at most {MAX_BUCKETS} are allowed",
            buckets.len()
        )));
    }
    for (i, b) in buckets.iter().enumerate() {
        if !b.is_finite() || *b < 0.0 {
            return Err(bad(format!("bound {b} must be finite and >= 0")));
        }
        if i > 0 && *b <= buckets[i - 1] {
            return Err(bad(format!(
                "bounds must increase ({} then {b})",
                buckets[i - 1]
            )));
        }
        if *b >= h.highest {
            return Err(bad(format!(
                "bound {b} is not below highest {}: values above highest are only known to +Inf",
                h.highest
            )));
        }
    }
    Ok(())
}

impl FamilySpec {
    /// A family with these labels and no help, unit, group or options: callers set the
    /// fields that differ (`FamilySpec { help, ..FamilySpec::new(..) }`).
    pub fn new(name: &str, metric_type: MetricType, label_names: &[&str]) -> FamilySpec {
        FamilySpec {
            name: name.to_string(),
            help: String::new(),
            metric_type,
            label_names: label_names.iter().map(|s| s.to_string()).collect(),
            histogram: None,
            max_series: 0,
            expire_s: 0,
            overflow_value: String::new(),
            unit: String::new(),
            group: String::new(),
            quantiles: QuantileMode::Off,
            exemplars: false,
            native_only: false,
        }
    }

    /// The group the family is served in.
    pub fn group(&self) -> &str {
        if self.group.is_empty() {
            DEFAULT_GROUP
        } else {
            &self.group
        }
    }

    fn validate_options(&self) -> Result<(), SpecError> {
        let bad = |field, why: String| SpecError::Option {
            family: self.name.clone(),
            field,
            why,
        };
        if !self.unit.is_empty() {
            let u = self.unit.as_bytes();
            if !(u[0].is_ascii_alphanumeric()
                && u.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_'))
            {
                return Err(bad(
                    "unit",
                    format!(
                        "\"{}\" must match [a-zA-Z0-9][a-zA-Z0-9_]*",
                        self.unit.escape_debug()
                    ),
                ));
            }
            let (stem, whose) = match self.metric_type {
                MetricType::Counter => match counter_base(&self.name) {
                    Some(base) => (base, "the name before \"_total\""),
                    None => (self.name.as_str(), "the name"),
                },
                _ => (self.name.as_str(), "the name"),
            };
            let suffix = format!("_{}", self.unit);
            if !(stem.ends_with(&suffix) && stem.len() > suffix.len()) {
                return Err(bad(
                    "unit",
                    format!(
                        "\"{}\": {whose} must end with \"{suffix}\" (OpenMetrics)",
                        self.unit
                    ),
                ));
            }
        }
        // Readers name a counter's family by the name before `_total` (OpenMetrics, and
        // prometheus_client's text parser, which fails on an empty one).
        if self.metric_type == MetricType::Counter && self.name == "_total" {
            return Err(bad(
                "name",
                "a counter's name needs something before \"_total\"".to_string(),
            ));
        }
        if !self.group.is_empty() && !valid_group(&self.group) {
            return Err(bad(
                "group",
                format!(
                    "\"{}\" must be 1 to 64 letters, digits, '_' or '-'",
                    self.group.escape_debug()
                ),
            ));
        }
        if self.quantiles != QuantileMode::Off && self.label_names.iter().any(|l| l == "quantile") {
            return Err(bad(
                "quantiles",
                "the label \"quantile\" is reserved for summaries".to_string(),
            ));
        }
        if self.quantiles != QuantileMode::Off && self.metric_type != MetricType::Histogram {
            return Err(bad(
                "quantiles",
                format!("\"{}\" applies to histograms only", self.quantiles.as_str()),
            ));
        }
        if self.exemplars && self.metric_type == MetricType::Gauge {
            return Err(bad(
                "exemplars",
                "counters and histograms keep exemplars, gauges do not".to_string(),
            ));
        }
        if self.native_only && self.metric_type != MetricType::Histogram {
            return Err(bad("native_only", "applies to histograms only".to_string()));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if !valid_metric_name(&self.name) {
            return Err(SpecError::MetricName(self.name.clone()));
        }
        let family = || self.name.clone();
        if self.label_names.len() > MAX_LABELS {
            return Err(SpecError::TooManyLabels {
                family: family(),
                count: self.label_names.len(),
            });
        }
        for (i, label) in self.label_names.iter().enumerate() {
            if let Some(why) = label_name_problem(label, self.metric_type) {
                return Err(SpecError::LabelName {
                    family: family(),
                    label: label.clone(),
                    why,
                });
            }
            if self.label_names[..i].contains(label) {
                return Err(SpecError::LabelName {
                    family: family(),
                    label: label.clone(),
                    why: "duplicate",
                });
            }
        }
        if self.help.len() > MAX_HELP {
            return Err(SpecError::Help {
                family: family(),
                why: "longer than 4096 bytes",
            });
        }
        self.validate_options()?;
        let field_err = |field, why: String| SpecError::Histogram {
            family: family(),
            field,
            why,
        };
        match (&self.histogram, self.metric_type) {
            (None, MetricType::Histogram) => Err(field_err("spec", "missing".into())),
            (Some(_), t) if t != MetricType::Histogram => {
                Err(field_err("spec", format!("given for a {}", t.as_str())))
            }
            (Some(h), _) => {
                if !(h.lowest.is_finite() && h.lowest > 0.0) {
                    return Err(field_err(
                        "lowest",
                        format!("{} must be a positive number", h.lowest),
                    ));
                }
                if !(h.highest.is_finite() && h.highest >= 2.0 * h.lowest) {
                    return Err(field_err(
                        "highest",
                        format!("{} must be at least twice lowest", h.highest),
                    ));
                }
                if h.highest_ticks() > (1u64 << 53) {
                    return Err(field_err(
                        "highest",
                        format!("{} / lowest {} spans too many ticks", h.highest, h.lowest),
                    ));
                }
                if !(1..=5).contains(&h.precision) {
                    return Err(field_err(
                        "precision",
                        format!("{} must be 1 to 5 significant digits", h.precision),
                    ));
                }
                check_buckets(&self.name, h, &h.buckets)
            }
            (None, _) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, t: MetricType, labels: &[&str]) -> FamilySpec {
        FamilySpec {
            help: "h".into(),
            histogram: (t == MetricType::Histogram).then(HistogramSpec::default),
            ..FamilySpec::new(name, t, labels)
        }
    }

    #[test]
    fn a_counter_is_more_than_total() {
        // Found by fuzz/src/bin/exposition.rs: prometheus_client's text parser could
        // not read a counter named `_total` (its family name would be empty).
        let e = spec("_total", MetricType::Counter, &[])
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "metric \"_total\": invalid name: a counter's name needs something before \"_total\""
        );
        spec("_total", MetricType::Gauge, &[]).validate().unwrap();
        spec("a_total", MetricType::Counter, &[])
            .validate()
            .unwrap();
        spec("_total_total", MetricType::Counter, &[])
            .validate()
            .unwrap();
    }

    #[test]
    fn units_groups_and_quantiles_are_checked() {
        let mut c = spec("http_request_seconds_total", MetricType::Counter, &[]);
        c.unit = "seconds".into();
        c.validate().unwrap();
        c.unit = "bytes".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("the name before \"_total\" must end with \"_bytes\""),
            "{e}"
        );
        c.unit = "se conds".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid unit"));
        let mut k = spec("kong_bandwidth_bytes", MetricType::Counter, &[]);
        k.unit = "bytes".into();
        k.validate().unwrap();
        let mut h = spec("latency_seconds", MetricType::Histogram, &[]);
        h.unit = "seconds".into();
        h.quantiles = QuantileMode::Beside;
        h.group = "http".into();
        h.validate().unwrap();
        assert_eq!(h.group(), "http");
        h.unit = "seconds_x".into();
        assert!(h.validate().is_err());
        // The unit alone is not a name.
        let mut u = spec("seconds", MetricType::Gauge, &[]);
        u.unit = "seconds".into();
        assert!(u.validate().is_err());
        let mut g = spec("g", MetricType::Gauge, &[]);
        assert_eq!(g.group(), DEFAULT_GROUP);
        g.group = "b@d".into();
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid group"));
        g.group = String::new();
        g.quantiles = QuantileMode::Instead;
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("histograms only"));
        assert_eq!(QuantileMode::parse("beside"), Some(QuantileMode::Beside));
        assert_eq!(QuantileMode::parse("both"), None);
        for m in [
            QuantileMode::Off,
            QuantileMode::Beside,
            QuantileMode::Instead,
        ] {
            assert_eq!(QuantileMode::from_u8(m as u8), m);
        }
    }

    #[test]
    fn exemplars_and_native_only_apply_where_they_mean_something() {
        let mut g = spec("g", MetricType::Gauge, &[]);
        g.exemplars = true;
        let e = g.validate().unwrap_err().to_string();
        assert!(e.contains("invalid exemplars"), "{e}");
        let mut c = spec("c_total", MetricType::Counter, &[]);
        c.exemplars = true;
        c.validate().unwrap();
        c.native_only = true;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("invalid native_only: applies to histograms only"),
            "{e}"
        );
        let mut h = spec("h", MetricType::Histogram, &[]);
        h.exemplars = true;
        h.native_only = true;
        h.validate().unwrap();
    }

    #[test]
    fn exposition_names_cover_both_formats() {
        assert_eq!(
            exposition_names("req_total", MetricType::Counter),
            vec!["req", "req_total", "req_created"]
        );
        assert_eq!(
            exposition_names("kong_bytes", MetricType::Counter),
            vec!["kong_bytes"]
        );
        let h = exposition_names("lat", MetricType::Histogram);
        assert!(h.contains(&"lat_bucket".to_string()));
        assert!(h.contains(&"lat_quantiles_count".to_string()));
        // Every name is found again from its possible owners.
        for (n, t) in [
            ("req_total", MetricType::Counter),
            ("lat", MetricType::Histogram),
            ("g", MetricType::Gauge),
        ] {
            for x in exposition_names(n, t) {
                assert!(possible_owners(&x).contains(&n.to_string()), "{x} -> {n}");
            }
        }
    }

    #[test]
    fn accepts_good_names() {
        spec(
            "http_requests_total",
            MetricType::Counter,
            &["service", "code"],
        )
        .validate()
        .unwrap();
        spec("ns:rule_1", MetricType::Gauge, &["_x"])
            .validate()
            .unwrap();
        spec("latency_seconds", MetricType::Histogram, &["route"])
            .validate()
            .unwrap();
    }

    #[test]
    fn names_the_culprit() {
        let e = spec("1bad", MetricType::Counter, &[])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("\"1bad\""), "{e}");
        let e = spec("ok", MetricType::Counter, &["a-b"])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("\"a-b\""), "{e}");
        let e = spec("ok", MetricType::Counter, &["__x"])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        let e = spec("ok", MetricType::Histogram, &["le"])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("\"le\""), "{e}");
        let e = spec("ok", MetricType::Counter, &["a", "a"])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
        let e = spec("", MetricType::Counter, &[]).validate().unwrap_err();
        assert!(matches!(e, SpecError::MetricName(_)));
    }

    #[test]
    fn histogram_shapes_are_checked() {
        let mut s = spec("h", MetricType::Histogram, &[]);
        s.histogram.as_mut().unwrap().buckets = vec![0.1, 0.05];
        assert!(s.validate().unwrap_err().to_string().contains("increase"));
        s.histogram.as_mut().unwrap().buckets = vec![0.1, 120.0];
        assert!(s.validate().unwrap_err().to_string().contains("highest"));
        let many: Vec<f64> = (0..=MAX_BUCKETS).map(|i| i as f64 * 0.001).collect();
        s.histogram.as_mut().unwrap().buckets = many[..MAX_BUCKETS].to_vec();
        assert!(s.validate().is_ok());
        s.histogram.as_mut().unwrap().buckets = many;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("129 bounds, at most 128"), "{e}");
        s.histogram = Some(HistogramSpec {
            precision: 7,
            ..HistogramSpec::default()
        });
        assert!(s.validate().unwrap_err().to_string().contains("precision"));
        s.histogram = Some(HistogramSpec {
            lowest: 0.0,
            ..HistogramSpec::default()
        });
        assert!(s.validate().unwrap_err().to_string().contains("lowest"));
        let mut c = spec("c", MetricType::Counter, &[]);
        c.histogram = Some(HistogramSpec::default());
        assert!(c.validate().is_err());
    }

    #[test]
    fn buckets_set_the_range_unless_highest_is_given() {
        assert_eq!(HistogramSpec::highest_for(&[]), 60.0);
        assert_eq!(HistogramSpec::highest_for(&DEFAULT_BUCKETS), 60.0);
        // nginx-lua-prometheus users' latency buckets end at 60 s.
        let to_a_minute = [0.1, 1.0, 10.0, 30.0, 60.0];
        assert_eq!(HistogramSpec::highest_for(&to_a_minute), 120.0);
        assert_eq!(HistogramSpec::highest_for(&[1e3, 1e6, 1e9]), 2e9);
        let mut s = spec("h", MetricType::Histogram, &[]);
        s.histogram = Some(HistogramSpec {
            highest: HistogramSpec::highest_for(&to_a_minute),
            buckets: to_a_minute.to_vec(),
            ..HistogramSpec::default()
        });
        assert_eq!(s.validate(), Ok(()));
        // An explicit highest that the buckets reach still fails, naming both.
        s.histogram.as_mut().unwrap().highest = 60.0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("bound 60 is not below highest 60"), "{err}");
    }

    #[test]
    fn default_histogram_is_microseconds_to_a_minute() {
        let h = HistogramSpec::default();
        assert_eq!(h.highest_ticks(), 60_000_000);
        assert_eq!(h.layout().unwrap().counts_len, 2560);
    }
}
