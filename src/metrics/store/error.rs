//! Why the store refused something: the reasons counted in a zone, and the errors
//! registration and series lookup return.

use super::super::family::SpecError;
use super::super::value::UpdateError;
use std::fmt;

/// Why something was refused or failed; each has a slot in the zone's error counters,
/// exposed as `nginx_metric_errors_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    ZoneFull = 0,
    SeriesLimit = 1,
    LabelCount = 2,
    InvalidLabelValue = 3,
    InvalidValue = 4,
    BadHandle = 5,
    Lua = 6,
    /// An update through the handle of a deleted series: dropped.
    StaleHandle = 7,
    /// An exemplar whose trace id cannot be exposed (see `metrics::exemplar`): dropped,
    /// its update counted.
    InvalidExemplar = 8,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::ZoneFull,
        Reason::SeriesLimit,
        Reason::LabelCount,
        Reason::InvalidLabelValue,
        Reason::InvalidValue,
        Reason::BadHandle,
        Reason::Lua,
        Reason::StaleHandle,
        Reason::InvalidExemplar,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ZoneFull => "zone_full",
            Reason::SeriesLimit => "series_limit",
            Reason::LabelCount => "label_count",
            Reason::InvalidLabelValue => "invalid_label_value",
            Reason::InvalidValue => "invalid_value",
            Reason::BadHandle => "bad_handle",
            Reason::Lua => "lua",
            Reason::StaleHandle => "stale_handle",
            Reason::InvalidExemplar => "invalid_exemplar",
        }
    }

    pub fn from_u32(v: u32) -> Option<Reason> {
        Reason::ALL.get(v as usize).copied()
    }
}

impl From<UpdateError> for Reason {
    #[inline(always)]
    fn from(e: UpdateError) -> Reason {
        match e {
            UpdateError::BadHandle => Reason::BadHandle,
            UpdateError::Stale => Reason::StaleHandle,
            UpdateError::InvalidValue => Reason::InvalidValue,
            UpdateError::ZoneFull => Reason::ZoneFull,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegisterError {
    Spec(SpecError),
    /// The name exists in the zone (perhaps from before a reload) with another shape.
    Conflict {
        family: String,
        what: String,
    },
    ZoneFull {
        family: String,
    },
    /// The family's sample names would clash with another family's in an exposition.
    Clash {
        family: String,
        other: String,
        names: Vec<String>,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Spec(e) => e.fmt(f),
            RegisterError::Clash {
                family,
                other,
                names,
            } => write!(
                f,
                "metric \"{family}\" clashes with metric \"{other}\": both would expose {} \
                 (text format or OpenMetrics); use another name",
                names.join(", ")
            ),
            RegisterError::Conflict { family, what } => write!(
                f,
                "metric \"{family}\" is already registered in this zone with {what}; \
                 use another name or a new zone"
            ),
            RegisterError::ZoneFull { family } => write!(f, "metric \"{family}\": zone is full"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SeriesError {
    LabelCount {
        family: String,
        expected: usize,
        got: usize,
    },
    InvalidLabelValue {
        family: String,
        label: String,
        why: &'static str,
    },
    SeriesLimit {
        family: String,
        limit: u64,
    },
    ZoneFull {
        family: String,
    },
}

impl SeriesError {
    pub fn reason(&self) -> Reason {
        match self {
            SeriesError::LabelCount { .. } => Reason::LabelCount,
            SeriesError::InvalidLabelValue { .. } => Reason::InvalidLabelValue,
            SeriesError::SeriesLimit { .. } => Reason::SeriesLimit,
            SeriesError::ZoneFull { .. } => Reason::ZoneFull,
        }
    }
}

impl fmt::Display for SeriesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesError::LabelCount {
                family,
                expected,
                got,
            } => {
                write!(
                    f,
                    "metric \"{family}\": expected {expected} label values, got {got}"
                )
            }
            SeriesError::InvalidLabelValue { family, label, why } => {
                write!(f, "metric \"{family}\": value of label \"{label}\" {why}")
            }
            SeriesError::SeriesLimit { family, limit } => {
                write!(
                    f,
                    "metric \"{family}\": series limit {limit} reached, new series refused"
                )
            }
            SeriesError::ZoneFull { family } => {
                write!(f, "metric \"{family}\": zone is full, new series refused")
            }
        }
    }
}
