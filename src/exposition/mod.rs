//! Exposition formats. Pure: writes what the store holds into a `String`.

pub mod text;

pub use text::{write_zone, StubStatus, CONTENT_TYPE};
