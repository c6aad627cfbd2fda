//! ngx_prometheus: Prometheus metrics for nginx and OpenResty.
//!
//! One `cdylib` with two roles: an nginx module (a shared zone, a metrics handler,
//! nginx's connection counters) and a Lua module (registration through `mlua`, recording
//! through plain `extern "C"` functions that LuaJIT's FFI calls and compiles).
//!
//! Layers, from the bottom: [`shm`] (the zone as atomic words), [`metrics`] (families,
//! series, values), [`exposition`] (a scrape written as text, OpenMetrics or JSON bytes), [`access`] (CIDR rules), [`auth`] (credentials, trusted proxies),
//! [`limits`] (what scrapes may hold in a worker), [`directives`] (directive arguments); then the
//! glue: `nginx` and `lua`, the only modules that talk to C. [`bitfield`] reads and
//! writes nginx structs' bitfields for the glue where the C compiler put them.

// Every `unsafe` block says why it is sound, and an `unsafe fn`'s body marks its own
// unsafe operations: checked, not just promised. The pure layers (metrics, exposition,
// push, access, auth, identity) forbid unsafe code outright.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

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
