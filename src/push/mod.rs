//! Push mode: sending the registry to a Prometheus Pushgateway.
//!
//! [`client`] is the half that needs neither nginx nor `unsafe`: URL checks, the
//! grouping-key path, TLS roots, one `PUT` (ureq, rustls for `https://`) with a deadline,
//! failure reasons and the retry schedule. It is kept apart so the unit tests can drive
//! it against plain sockets.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

pub mod client;
