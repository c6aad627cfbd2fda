//! The trace id a request's exemplars carry, from its W3C `traceparent` header
//! (Trace Context, level 1, section 3.2): `version-traceid-parentid-flags`, each field
//! lowercase hex of a fixed width. A header that does not parse gives no trace id: the
//! caller falls back to another id (`$request_id`) and counts it, as the spec says a
//! vendor does with an invalid `traceparent` (it starts a trace of its own).

/// Bytes of a version-00 `traceparent`: 2 + 1 + 32 + 1 + 16 + 1 + 2.
pub const VERSION_00_LEN: usize = 55;
/// The longest header read at all. A later version may append fields after a `-`;
/// past this it is refused unread (no version defines anything this long).
pub const MAX_LEN: usize = 512;
/// Hex digits of a trace id.
pub const TRACE_ID_LEN: usize = 32;

/// What a request's `traceparent` headers come to.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TraceParent<'a> {
    /// No `traceparent` header.
    Absent,
    /// A valid header: its trace id, 32 lowercase hex digits, not all zero.
    Valid(&'a [u8]),
    /// One that does not parse (or more than one header, which combined cannot).
    Invalid,
}

fn lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'0')
}

/// The trace id of one `traceparent` value, or `None` when it is not valid: the
/// version `ff`, a field of the wrong width or not lowercase hex, an all-zero trace or
/// parent id, a version-00 header of another length than 55, a later version's extra
/// fields not after a `-`, more than [`MAX_LEN`] bytes.
pub fn parse(v: &[u8]) -> Option<&[u8]> {
    if v.len() < VERSION_00_LEN || v.len() > MAX_LEN {
        return None;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    if !lower_hex(version) || version == b"ff" {
        return None;
    }
    if version == b"00" && v.len() != VERSION_00_LEN {
        return None;
    }
    if v.len() > VERSION_00_LEN && v[VERSION_00_LEN] != b'-' {
        return None;
    }
    if !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags) {
        return None;
    }
    if all_zero(trace) || all_zero(parent) {
        return None;
    }
    Some(trace)
}

/// What the `traceparent` values of a request (every header of that name, in order)
/// come to.
pub fn of_headers<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> TraceParent<'a> {
    let Some(first) = values.next() else {
        return TraceParent::Absent;
    };
    if values.next().is_some() {
        return TraceParent::Invalid;
    }
    parse(first).map_or(TraceParent::Invalid, TraceParent::Valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_gives_its_trace_id() {
        assert_eq!(parse(GOOD), Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..]));
        // A later version may carry more fields after a `-`.
        let mut later = b"cc".to_vec();
        later.extend_from_slice(&GOOD[2..]);
        assert!(parse(&later).is_some());
        later.extend_from_slice(b"-what-comes-next");
        assert!(parse(&later).is_some());
    }

    #[test]
    fn invalid_headers_give_none() {
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7".to_vec(),
            // Uppercase hex.
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_vec(),
            // Not hex.
            b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01".to_vec(),
            // All-zero trace id, all-zero parent id.
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_vec(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".to_vec(),
            // Version ff, an uppercase version.
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
            b"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
            // Version 00 with anything after it.
            [GOOD, b"-01"].concat(),
            [GOOD, b" "].concat(),
            // A later version whose extra bytes do not start with `-`.
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x".to_vec(),
            // Separators elsewhere, a control byte, a non-UTF-8 byte.
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
            b"00-4bf92f3577b34da6a3ce929d0e0e47\x01-00f067aa0ba902b7-01".to_vec(),
            b"00-4bf92f3577b34da6a3ce929d0e0e47\xff-00f067aa0ba902b7-01".to_vec(),
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n".to_vec(),
        ];
        // Too long, even for a later version.
        let mut long = b"01".to_vec();
        long.extend_from_slice(&GOOD[2..]);
        long.push(b'-');
        long.resize(MAX_LEN + 1, b'a');
        cases.push(long);
        for c in &cases {
            assert_eq!(parse(c), None, "{}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn two_headers_are_invalid_and_none_is_absent() {
        assert_eq!(of_headers(std::iter::empty()), TraceParent::Absent);
        assert_eq!(
            of_headers([GOOD].into_iter()),
            TraceParent::Valid(&GOOD[3..35])
        );
        assert_eq!(of_headers([GOOD, GOOD].into_iter()), TraceParent::Invalid);
        assert_eq!(of_headers([&b"x"[..]].into_iter()), TraceParent::Invalid);
    }
}
