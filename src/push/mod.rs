//! Push mode: sending the registry to a Prometheus Pushgateway.
//!
//! This is the half that needs neither nginx nor `unsafe`, one job per file: the URL
//! ([`url`]), the grouping-key path ([`grouping`]), extra header checks ([`header`]), TLS
//! roots ([`tls`]), one `PUT` with a deadline and its failure reasons ([`client`]), and
//! the retry schedule ([`backoff`]). The protocol is ureq's (HTTP/1.1, TLS by rustls);
//! percent-encoding comes from `percent-encoding`. Kept apart so the unit tests can
//! drive it against plain sockets.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod grouping;
pub mod header;
pub mod tls;
pub mod url;

pub use backoff::Backoff;
pub use client::{excerpt, PushError, Pusher};
pub use grouping::grouping_path;
pub use header::check_header;
pub use tls::load_roots;
pub use url::{parse_url, Endpoint};
