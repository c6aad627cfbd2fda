//! Metric semantics over the shared-memory store: families, the three metric types and
//! their value layouts. Pure, safe Rust: tested with `cargo test` over heap memory.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

pub mod builtin;
pub mod counter;
pub mod exemplar;
pub mod family;
pub mod gauge;
pub mod hdr;
pub mod histogram;
pub mod layout;
pub mod store;
pub mod trace_id;
pub mod value;

pub use family::{FamilySpec, HistogramSpec, MetricType, SpecError};
pub use store::{
    Family, Found, Participant, Reason, RegisterError, SeriesError, SeriesOptions, Store,
};
