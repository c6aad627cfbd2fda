//! ngx_prometheus: Prometheus metrics for nginx and OpenResty.
//!
//! One `cdylib` with two roles: an nginx module (a shared zone, a metrics handler,
//! nginx's connection counters) and a Lua module (registration through `mlua`, recording
//! through plain `extern "C"` functions that LuaJIT's FFI calls and compiles).
//!
//! The pure layers, which never see nginx (plain `cargo test` runs them), from the
//! bottom: [`shm`] (the zone as atomic words), [`metrics`] (families, series, values),
//! [`exposition`] (a scrape written as text, OpenMetrics, JSON or protobuf bytes, or the
//! status page; what a request negotiates), [`push`] (the Pushgateway client); beside
//! them [`config`] (directive arguments and the rules they set: addresses,
//! credentials, constant labels, scrape limits; JSON input) and [`host`] (a worker's
//! /proc readings, files replaced whole).
//! Then the glue, the only modules that talk to C: `nginx` (directives, handlers,
//! timers, threads; `nginx::bitfield` reads nginx structs' bitfields where the C
//! compiler put them) and `lua` (the mlua control plane, the FFI hot path).

// Every `unsafe` block says why it is sound, and an `unsafe fn`'s body marks its own
// unsafe operations: checked, not just promised. The pure layers (metrics, exposition,
// push, and config's modules but limits' malloc_trim) forbid unsafe code outright.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// A cdylib has no Rust users: its documentation is for the people working on it, built
// with private items (`make lint`), so links into private items are what it is for.
#![allow(rustdoc::private_intra_doc_links)]

pub mod config;
pub mod exposition;
pub mod host;
pub mod metrics;
pub mod push;
pub mod shm;

// The glue links against nginx and LuaJIT symbols that only exist inside nginx, so the
// unit-test binary (plain `cargo test`) and the benchmarks (`--no-default-features`)
// leave it out.
#[cfg(all(feature = "module", not(test)))]
pub mod lua;
#[cfg(all(feature = "module", not(test)))]
pub mod nginx;
// nginx/bitfield.rs uses nginx's types but none of its symbols: the unit-test binary
// keeps its tests.
#[cfg(test)]
#[path = "nginx/bitfield.rs"]
pub mod bitfield;
