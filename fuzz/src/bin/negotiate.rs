//! Scrape negotiation (`exposition::negotiate`): arbitrary `Accept`,
//! `Accept-Encoding` and query strings never panic, and what comes out is either a
//! selection of valid names or a refusal with a status and a one-line message. An
//! `Accept` element we cannot honour (another protobuf `proto` or `encoding`, a version,
//! an escaping) is a fallback: always something served, never a `406`, and the reason
//! the handler counts is the one `choose` gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ngx_prometheus::exposition::negotiate::{choose, choose_format, negotiate, MAX_FILTERS};
use ngx_prometheus::exposition::Format;
use ngx_prometheus::metrics::family::{valid_group, valid_metric_name};

fuzz_target!(
    |input: (Option<String>, Option<String>, Vec<u8>, Vec<String>)| {
        let (accept, encoding, query, served) = input;
        // Served groups come from a checked directive (`prometheus_metrics ... group=`).
        let served: Vec<String> = served.into_iter().filter(|g| valid_group(g)).collect();
        let (format, fallback) = choose(accept.as_deref());
        assert_eq!(format, choose_format(accept.as_deref()));
        // A fallback serves one of the Accept-negotiated formats.
        assert!(
            fallback.is_none()
                || matches!(
                    format,
                    Some(Format::Text | Format::OpenMetrics | Format::Protobuf)
                ),
            "{accept:?}: {format:?} {fallback:?}"
        );
        match negotiate(accept.as_deref(), encoding.as_deref(), &query, &served) {
            Ok(n) => {
                // Counted only when `Accept` chose, and then as `choose` says.
                assert!(
                    n.fallback.is_none() || (Some(n.format), n.fallback) == (format, fallback),
                    "{accept:?}: {n:?}"
                );
                let s = &n.selection;
                assert!(s.names.iter().all(|n| valid_metric_name(n)));
                assert!(s.groups.iter().all(|g| valid_group(g)));
                assert!(s.names.len() + s.groups.len() <= MAX_FILTERS);
                assert!(served.is_empty() || s.groups.iter().all(|g| served.contains(g)));
                assert_eq!(s.served, served);
            }
            Err(r) => {
                assert!([400, 404, 406].contains(&r.status), "{r:?}");
                assert!(r.status != 406 || fallback.is_none(), "{accept:?}: {r:?}");
                // One line, and quoted client text is escaped (no header or log injection).
                let msg = r.message.strip_suffix('\n').expect("ends with a newline");
                assert!(!msg.contains(['\n', '\r']), "{r:?}");
                // Quoted client values are cut at 64 characters (each escaped in at most
                // 10), at most two in a message.
                assert!(r.status == 404 || msg.len() < 2 * 64 * 10 + 200, "{r:?}");
            }
        }
    }
);
