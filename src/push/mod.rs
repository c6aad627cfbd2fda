//! Push mode: sending the registry to a Prometheus Pushgateway.
//!
//! [`client`] is the half that needs neither nginx nor `unsafe`: URL parsing, label
//! templates, the grouping-key path, the HTTP/1.1 exchange and the retry schedule. It is
//! kept apart so the unit tests can drive it against plain sockets.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

pub mod client;
