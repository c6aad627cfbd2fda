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

/// At most this many labels per family: label sets are keys, keep them small.
pub const MAX_LABELS: usize = 16;
/// Longest help text kept.
pub const MAX_HELP: usize = 4096;
/// Longest label value accepted.
pub const MAX_LABEL_VALUE: usize = 4096;

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
            name: name.into(),
            help: "h".into(),
            metric_type: t,
            label_names: labels.iter().map(|s| s.to_string()).collect(),
            histogram: (t == MetricType::Histogram).then(HistogramSpec::default),
            max_series: 0,
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
    fn default_histogram_is_microseconds_to_a_minute() {
        let h = HistogramSpec::default();
        assert_eq!(h.highest_ticks(), 60_000_000);
        assert_eq!(h.layout().unwrap().counts_len, 2560);
    }
}
