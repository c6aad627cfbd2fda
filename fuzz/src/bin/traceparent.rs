//! A request's `traceparent` (`metrics::trace_id`): arbitrary header bytes never panic,
//! and what is taken as a trace id is what the W3C grammar says, checked against a
//! second reading written from the spec's wording (split on `-`), and is always an id
//! the exemplar store keeps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ngx_prometheus::metrics::exemplar::check_id;
use ngx_prometheus::metrics::trace_id::{of_headers, parse, TraceParent, MAX_LEN};

fn hex(s: &[u8], n: usize) -> bool {
    s.len() == n
        && s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The spec's reading: four `-`-separated fields for version 00, at least four (the
/// rest the later version's) otherwise.
fn reference(v: &[u8]) -> Option<&[u8]> {
    if v.len() > MAX_LEN {
        return None;
    }
    let fields: Vec<&[u8]> = v.split(|&c| c == b'-').collect();
    if fields.len() < 4 {
        return None;
    }
    let (version, trace, parent, flags) = (fields[0], fields[1], fields[2], fields[3]);
    if !hex(version, 2) || version == b"ff" || (version == b"00" && fields.len() != 4) {
        return None;
    }
    if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    if trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return None;
    }
    Some(trace)
}

fuzz_target!(|input: (Vec<u8>, Option<Vec<u8>>)| {
    let (first, second) = input;
    let got = parse(&first);
    assert_eq!(
        got,
        reference(&first),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    if let Some(id) = got {
        assert!(check_id(id).is_ok());
        assert_eq!(id, &first[3..35]);
    }
    let headers: Vec<&[u8]> = std::iter::once(&first[..])
        .chain(second.as_deref())
        .collect();
    match of_headers(headers.iter().copied()) {
        TraceParent::Valid(id) => assert!(second.is_none() && got == Some(id)),
        TraceParent::Invalid => assert!(second.is_some() || got.is_none()),
        TraceParent::Absent => unreachable!("one header at least"),
    }
});
