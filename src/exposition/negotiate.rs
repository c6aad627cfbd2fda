//! What a scrape request asks for: the format (`?format=`, else `Accept`), gzip
//! (`Accept-Encoding`) and the families (`?name[]=`, `?group=`). Pure, so that every
//! rule is unit-tested; the handler only collects the header values and query string.
//!
//! Rules:
//! - `?format=text|openmetrics|json|protobuf|html` wins over `Accept`; any other value
//!   is a `400`. `html` (the status page) only ever comes from `?format=`.
//! - `Accept` chooses between the text format 0.0.4 (`text/plain`, version absent or
//!   `0.0.4`), OpenMetrics 1.0.0 (`application/openmetrics-text`, version absent or
//!   `1.0.0`) and the protobuf exposition (`application/vnd.google.protobuf` with
//!   `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`, as client_golang
//!   negotiates it); `*/*`, `text/*` and `application/*` match the text formats as
//!   usual, never protobuf (a binary format is served only to a client that names it).
//!   The highest `q` wins; on a tie the more specific range, then the one listed first,
//!   then the text format. No `Accept`, or one made only of malformed elements: the
//!   text format. Malformed elements are skipped. A well-formed `Accept` that allows
//!   none of the formats and names none of their media types (`application/json`,
//!   `text/html`, `q=0`): `406`.
//! - A **fallback**: the element the client prefers names one of our media types with
//!   a parameter we cannot honour: protobuf with another or no `proto` or `encoding`
//!   (client_golang's `text` and `compact-text` encodings), a `version` we do not
//!   speak, an `escaping` other than `allow-utf-8`, `underscores` or `values` (our
//!   names are all valid legacy names, which those three leave as they are; `dots`
//!   would rewrite every `_`). As client_golang's `NegotiateAccept` does, such an
//!   element does not match: the next acceptable format is served, else the text
//!   format, never a `406` (an `escaping` we cannot honour leaves the format as chosen:
//!   its names are served unescaped). The handler counts each fallback by its
//!   [`Fallback`] reason.
//! - gzip when `Accept-Encoding` lists `gzip` (or `x-gzip`, or `*`) with `q > 0`.
//! - `name`/`name[]` and `group`/`group[]` repeat or take comma-separated lists; each
//!   must be a valid metric or group name (`400`). A group the location does not
//!   serve is a `404`.

use super::scrape::Format;
use super::select::Selection;
use crate::metrics::family::{valid_group, valid_metric_name};

/// Why a scrape request cannot be served as it asks (a bad query `400`, a group the
/// location does not serve `404`, an `Accept` allowing neither format `406`), found
/// before any rendering; `message` is the whole response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiationError {
    pub status: u16,
    pub message: String,
}

impl NegotiationError {
    fn new(status: u16, message: String) -> NegotiationError {
        NegotiationError { status, message }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub gzip: bool,
    pub selection: Selection,
    /// Why the format served is not the one the client preferred, if so.
    pub fallback: Option<Fallback>,
}

/// Why the element of `Accept` the client preferred could not be honoured (the
/// `reason` label of `nginx_metric_scrape_fallbacks_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Protobuf with another or no `proto` (message).
    Proto,
    /// Protobuf with another or no `encoding` (framing).
    Encoding,
    /// A `version` of the text format or OpenMetrics we do not speak.
    Version,
    /// An `escaping` scheme we do not apply.
    Escaping,
}

impl Fallback {
    pub const ALL: [Fallback; 4] = [
        Fallback::Proto,
        Fallback::Encoding,
        Fallback::Version,
        Fallback::Escaping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Proto => "proto",
            Fallback::Encoding => "encoding",
            Fallback::Version => "version",
            Fallback::Escaping => "escaping",
        }
    }
}

/// At most this many names and groups per request.
pub const MAX_FILTERS: usize = 256;

/// A value quoted for an error message: escaped, at most 64 characters.
fn quoted(v: &str) -> String {
    let mut s: String = v
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if v.chars().count() > 64 {
        s.push_str("...");
    }
    format!("\"{s}\"")
}

/// Decides what to serve. `accept` and `accept_encoding` are the header values (several
/// headers of a name joined with `,`), `query` the raw query string, `served` the
/// groups the location serves (empty: all).
pub fn negotiate(
    accept: Option<&str>,
    accept_encoding: Option<&str>,
    query: &[u8],
    served: &[String],
) -> Result<Negotiated, NegotiationError> {
    let q = parse_query(query)?;
    for g in &q.groups {
        if !served.is_empty() && !served.contains(g) {
            return Err(NegotiationError::new(
                404,
                format!(
                    "unknown group {}: this location serves {}\n",
                    quoted(g),
                    served.join(", ")
                ),
            ));
        }
    }
    let (format, fallback) = match q.format {
        Some(f) => (f, None),
        None => match choose(accept) {
            (Some(f), fallback) => (f, fallback),
            (None, _) => {
                return Err(NegotiationError::new(
                    406,
                    "not acceptable: this endpoint serves text/plain; version=0.0.4, \
                 application/openmetrics-text; version=1.0.0 and application/vnd.google.protobuf; \
                 proto=io.prometheus.client.MetricFamily; encoding=delimited (or ?format=json)\n"
                        .to_string(),
                ))
            }
        },
    };
    Ok(Negotiated {
        format,
        fallback,
        gzip: accepts_gzip(accept_encoding),
        selection: Selection {
            served: served.to_vec(),
            groups: q.groups,
            names: q.names,
            workers: None,
        },
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    format: Option<Format>,
    names: Vec<String>,
    groups: Vec<String>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding, `+` as space; a `%` not followed by two hex digits stays as is.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn parse_query(query: &[u8]) -> Result<Query, NegotiationError> {
    let bad = |msg: String| NegotiationError::new(400, msg + "\n");
    let mut q = Query::default();
    let mut format_seen: Option<String> = None;
    for pair in query.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = percent_decode(k);
        let which = match key.as_slice() {
            b"format" => "format",
            b"name" | b"name[]" => "name",
            b"group" | b"group[]" => "group",
            // Other parameters (a scraper's own `params`) are none of our business.
            _ => continue,
        };
        let value = String::from_utf8(percent_decode(v))
            .map_err(|_| bad(format!("query parameter \"{which}\" is not valid UTF-8")))?;
        if which == "format" {
            let f = match value.as_str() {
                "html" => Some(Format::Html),
                v => Format::parse(v),
            }
            .ok_or_else(|| {
                bad(format!(
                    "unknown format {}: use text, openmetrics, json, protobuf or html",
                    quoted(&value)
                ))
            })?;
            if let Some(prev) = &format_seen {
                if *prev != value {
                    return Err(bad(format!(
                        "format given twice ({} and {})",
                        quoted(prev),
                        quoted(&value)
                    )));
                }
            }
            format_seen = Some(value);
            q.format = Some(f);
            continue;
        }
        for item in value.split(',') {
            if item.is_empty() {
                return Err(bad(format!("empty value for \"{which}\"")));
            }
            let (list, ok) = if which == "name" {
                (&mut q.names, valid_metric_name(item))
            } else {
                (&mut q.groups, valid_group(item))
            };
            if !ok {
                return Err(bad(if which == "name" {
                    format!(
                        "invalid metric name {}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                        quoted(item)
                    )
                } else {
                    format!(
                        "invalid group {}: 1 to 64 letters, digits, '_' or '-'",
                        quoted(item)
                    )
                }));
            }
            if !list.iter().any(|x| x == item) {
                list.push(item.to_string());
            }
            if q.names.len() + q.groups.len() > MAX_FILTERS {
                return Err(bad(format!(
                    "more than {MAX_FILTERS} names and groups in one request"
                )));
            }
        }
    }
    Ok(q)
}

/// Splits a header value at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A `q` value: `0` to `1`, at most three decimals (RFC 9110 `qvalue`).
fn parse_q(v: &str) -> Option<f64> {
    let ok = match v.split_once('.') {
        None => v == "0" || v == "1",
        Some((i, d)) => {
            d.len() <= 3
                && d.bytes().all(|b| b.is_ascii_digit())
                && (i == "0" || (i == "1" && d.bytes().all(|b| b == b'0')))
        }
    };
    ok.then(|| v.parse().ok()).flatten()
}

/// One element of `Accept`: type, subtype, the parameters we match on and `q`.
#[derive(Debug, PartialEq)]
struct Range {
    t: String,
    sub: String,
    version: Option<String>,
    /// Protobuf's message (`proto`) and framing (`encoding`).
    proto: Option<String>,
    encoding: Option<String>,
    /// Name escaping asked for (client_golang's `escaping`).
    escaping: Option<String>,
    q: f64,
}

/// `None` for a malformed element.
fn parse_range(element: &str) -> Option<Range> {
    let mut parts = split_unquoted(element, ';').into_iter();
    let media = parts.next()?.trim();
    let (t, sub) = media.split_once('/')?;
    let (t, sub) = (t.trim(), sub.trim());
    if !is_token(t) || !is_token(sub) || (t == "*" && sub != "*") {
        return None;
    }
    let mut r = Range {
        t: t.to_ascii_lowercase(),
        sub: sub.to_ascii_lowercase(),
        version: None,
        proto: None,
        encoding: None,
        escaping: None,
        q: 1.0,
    };
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (k, v) = p.split_once('=')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if !is_token(&k) {
            return None;
        }
        let v = if let Some(inner) = v.strip_prefix('"') {
            inner.strip_suffix('"')?.replace("\\\"", "\"")
        } else if is_token(v) {
            v.to_string()
        } else {
            return None;
        };
        match k.as_str() {
            "q" => r.q = parse_q(&v)?,
            "version" => r.version = Some(v),
            "proto" => r.proto = Some(v),
            "encoding" => r.encoding = Some(v),
            "escaping" => r.escaping = Some(v),
            _ => {}
        }
    }
    Some(r)
}

/// The protobuf exposition's media type is `application/` this, with `proto=` the
/// message and `encoding=delimited`.
const PROTOBUF_SUBTYPE: &str = "vnd.google.protobuf";
const PROTOBUF_MESSAGE: &str = "io.prometheus.client.MetricFamily";

/// Escaping schemes that leave our names as they are: every name we serve is a valid
/// legacy name, which `allow-utf-8`, `underscores` and `values` do not change.
const HONOURED_ESCAPING: [&str; 3] = ["allow-utf-8", "underscores", "values"];

/// Why `r`, which names one of our media types exactly, cannot be served as it asks;
/// `None` for a range that is not ours or that we honour.
fn unhonoured(r: &Range) -> Option<Fallback> {
    let version_ok = |want: &str| !matches!(r.version.as_deref(), Some(v) if v != want);
    match (r.t.as_str(), r.sub.as_str()) {
        ("application", PROTOBUF_SUBTYPE) => {
            if r.proto.as_deref() != Some(PROTOBUF_MESSAGE) {
                return Some(Fallback::Proto);
            }
            if r.encoding.as_deref() != Some("delimited") {
                return Some(Fallback::Encoding);
            }
        }
        ("text", "plain") if !version_ok("0.0.4") => return Some(Fallback::Version),
        ("application", "openmetrics-text") if !version_ok("1.0.0") => {
            return Some(Fallback::Version)
        }
        _ => {}
    }
    escaping_unhonoured(r)
}

fn escaping_unhonoured(r: &Range) -> Option<Fallback> {
    r.escaping
        .as_deref()
        .filter(|e| !HONOURED_ESCAPING.contains(e))
        .map(|_| Fallback::Escaping)
}

/// The format `Accept` prefers; `None`: it allows none (`406`).
pub fn choose_format(accept: Option<&str>) -> Option<Format> {
    choose(accept).0
}

/// The format to serve (`None`: `406`) and, when it is not what the client preferred,
/// why (see the module's rules).
pub fn choose(accept: Option<&str>) -> (Option<Format>, Option<Fallback>) {
    let Some(accept) = accept else {
        return (Some(Format::Text), None);
    };
    let elements: Vec<&str> = split_unquoted(accept, ',')
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let ranges: Vec<Range> = elements.iter().filter_map(|e| parse_range(e)).collect();
    if ranges.is_empty() {
        // Nothing understandable: serve the default rather than refuse.
        return (Some(Format::Text), None);
    }
    match (best_offer(&ranges), preferred_refusal(&ranges)) {
        (Some((score, format, i)), refused) => match refused {
            Some((r, why)) if r > score => (Some(format), Some(why)),
            _ => (Some(format), escaping_unhonoured(&ranges[i])),
        },
        // client_golang's last resort: the text format.
        (None, Some((_, why))) => (Some(Format::Text), Some(why)),
        (None, None) => (None, None),
    }
}

/// How a range and a format rank: (q, specificity, order, preference); the highest
/// wins.
type Score = (f64, u8, i64, u8);

/// A format we serve by `Accept`: (format, type, subtype, version, preference on a
/// full tie).
type Offer = (Format, &'static str, &'static str, &'static str, u8);

const OFFERS: [Offer; 3] = [
    (Format::Text, "text", "plain", "0.0.4", 1),
    (
        Format::OpenMetrics,
        "application",
        "openmetrics-text",
        "1.0.0",
        0,
    ),
    (Format::Protobuf, "application", PROTOBUF_SUBTYPE, "", 0),
];

/// The offer the ranges prefer, with its score and the range that chose it.
fn best_offer(ranges: &[Range]) -> Option<(Score, Format, usize)> {
    let mut best: Option<(Score, Format, usize)> = None;
    for offer in OFFERS {
        let (format, .., pref) = offer;
        // The most specific range matching the offer gives its q (RFC 9110 12.5.1).
        let mut found: Option<(u8, f64, i64, usize)> = None;
        for (i, r) in ranges.iter().enumerate() {
            let Some(specificity) = specificity(offer, r) else {
                continue;
            };
            if !matches!(found, Some((s, _, _, _)) if s >= specificity) {
                found = Some((specificity, r.q, -(i as i64), i));
            }
        }
        if let Some((specificity, q, order, i)) = found {
            if q > 0.0 {
                let score = (q, specificity, order, pref);
                if !matches!(&best, Some((b, _, _)) if *b >= score) {
                    best = Some((score, format, i));
                }
            }
        }
    }
    best
}

/// How specifically range `r` names `offer` (3: type, subtype and version, or
/// protobuf's message and encoding; 0: `*/*`); `None` when it does not match it.
fn specificity((format, t, sub, version, _): Offer, r: &Range) -> Option<u8> {
    if format == Format::Protobuf {
        let matches = (r.t.as_str(), r.sub.as_str()) == (t, sub)
            && r.proto.as_deref() == Some(PROTOBUF_MESSAGE)
            && r.encoding.as_deref() == Some("delimited");
        return matches.then_some(3);
    }
    if r.t == "*" {
        Some(0)
    } else if r.t != t {
        None
    } else if r.sub == "*" {
        Some(1)
    } else if r.sub != sub {
        None
    } else {
        match &r.version {
            None => Some(2),
            Some(v) if v == version => Some(3),
            Some(_) => None,
        }
    }
}

/// The preferred range we cannot honour as asked (it names all its parameters, so it
/// is as specific as a range gets), with its score, and why.
fn preferred_refusal(ranges: &[Range]) -> Option<(Score, Fallback)> {
    ranges
        .iter()
        .enumerate()
        .filter(|(_, r)| r.q > 0.0)
        .filter_map(|(i, r)| {
            let why = match unhonoured(r)? {
                // An escaping we do not apply does not change the format.
                Fallback::Escaping => return None,
                why => why,
            };
            Some(((r.q, 3, -(i as i64), 2), why))
        })
        .fold(
            None,
            |acc: Option<(Score, Fallback)>, (score, why)| match acc {
                Some((s, _)) if s >= score => acc,
                _ => Some((score, why)),
            },
        )
}

/// Whether `Accept-Encoding` allows gzip.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(h) = accept_encoding else {
        return false;
    };
    let (mut explicit, mut any) = (None, None);
    for element in h.split(',') {
        let mut parts = element.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = Some(1.0);
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = parse_q(v.trim());
                }
            }
        }
        let Some(q) = q else { continue };
        match coding.as_str() {
            "gzip" | "x-gzip" => explicit = Some(explicit.map_or(q, |e: f64| e.max(q))),
            "*" => any = Some(q),
            _ => {}
        }
    }
    matches!(explicit.or(any), Some(q) if q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// What 2.42 sends with `--enable-feature=native-histograms` (from its binary).
    const PROMETHEUS_2_42_NATIVE: &str =
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,\
        application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,\
        text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn protobuf_is_served_to_clients_that_name_it() {
        let pb = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; \
                  encoding=delimited";
        let cases: Vec<(String, Option<Format>)> =
            vec![
            (PROMETHEUS_2_42_NATIVE.into(), Some(Format::Protobuf)),
            (pb.into(), Some(Format::Protobuf)),
            (
                format!("{pb};q=0.5, application/openmetrics-text;q=0.8"),
                Some(Format::OpenMetrics),
            ),
            (format!("text/plain;q=0.5, {pb};q=0.6"), Some(Format::Protobuf)),
            // Equal q: the more specific range (protobuf's names all its parameters),
            // then the one listed first.
            (format!("text/plain, {pb}"), Some(Format::Protobuf)),
            (
                format!("{pb}, text/plain;version=0.0.4"),
                Some(Format::Protobuf),
            ),
            (
                format!("text/plain;version=0.0.4, {pb}"),
                Some(Format::Text),
            ),
            (
                "Application/Vnd.Google.Protobuf; proto=\"io.prometheus.client.MetricFamily\"; \
                 encoding=\"delimited\""
                    .into(),
                Some(Format::Protobuf),
            ),
            // Another message, another encoding (client_golang's text encodings), or
            // none: not ours; the next acceptable format (checked with its reason in
            // `unhonoured_elements_fall_back_and_say_why`).
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                 encoding=text, application/openmetrics-text;q=0.1"
                    .into(),
                Some(Format::OpenMetrics),
            ),
            // Wildcards never bring protobuf.
            ("application/*".into(), Some(Format::OpenMetrics)),
            (
                "application/openmetrics-text;q=0, text/plain;q=0, */*".into(),
                None,
            ),
            (format!("{pb};q=0, */*;q=0.1"), Some(Format::Text)),
        ];
        for (accept, want) in cases {
            assert_eq!(choose_format(Some(&accept)), want, "Accept: {accept:?}");
        }
        let n = negotiate(None, Some("gzip"), b"format=protobuf", &[]).unwrap();
        assert_eq!((n.format, n.gzip), (Format::Protobuf, true));
        let e = negotiate(Some("application/json"), None, b"", &[]).unwrap_err();
        assert_eq!(e.status, 406);
        assert!(e.message.contains("encoding=delimited"), "{}", e.message);
    }

    #[test]
    fn unhonoured_elements_fall_back_and_say_why() {
        use Fallback::*;
        let pb = "application/vnd.google.protobuf";
        let mf = "proto=io.prometheus.client.MetricFamily";
        let cases: Vec<(String, Option<Format>, Option<Fallback>)> = vec![
            // Alone: the text format, as client_golang serves, never a 406.
            (format!("{pb};{mf};encoding=text"), Some(Format::Text), Some(Encoding)),
            (format!("{pb};{mf};encoding=compact-text"), Some(Format::Text), Some(Encoding)),
            (format!("{pb};{mf}"), Some(Format::Text), Some(Encoding)),
            (format!("{pb};proto=other.Message;encoding=delimited"), Some(Format::Text), Some(Proto)),
            (pb.into(), Some(Format::Text), Some(Proto)),
            (format!("{pb};proto=other;encoding=text"), Some(Format::Text), Some(Proto)),
            // The next acceptable format when there is one.
            (
                format!("{pb};{mf};encoding=text, application/openmetrics-text;q=0.5"),
                Some(Format::OpenMetrics),
                Some(Encoding),
            ),
            (
                format!("{pb};proto=x;encoding=delimited, {pb};{mf};encoding=delimited;q=0.9"),
                Some(Format::Protobuf),
                Some(Proto),
            ),
            // Equal q: the element naming every parameter is the preferred one.
            (format!("text/plain, {pb};{mf};encoding=text"), Some(Format::Text), Some(Encoding)),
            // Not preferred, or not acceptable at all: no fallback.
            (format!("text/plain, {pb};{mf};encoding=text;q=0.5"), Some(Format::Text), None),
            (format!("{pb};{mf};encoding=text;q=0, text/plain"), Some(Format::Text), None),
            (format!("{pb};q=0"), None, None),
            // Versions we do not speak.
            ("text/plain;version=1.0.0".into(), Some(Format::Text), Some(Version)),
            (
                "application/openmetrics-text;version=2.0.0, text/plain;version=0.0.4;q=0.5".into(),
                Some(Format::Text),
                Some(Version),
            ),
            (
                "application/openmetrics-text;version=0.0.1;q=0.9, application/openmetrics-text;version=1.0.0"
                    .into(),
                Some(Format::OpenMetrics),
                None,
            ),
            // Escaping: the three that leave legacy names alone are honoured; `dots`
            // (and anything unknown) is not, and the format stays as chosen.
            (
                format!("{pb};{mf};encoding=delimited;escaping=allow-utf-8"),
                Some(Format::Protobuf),
                None,
            ),
            ("text/plain;escaping=underscores".into(), Some(Format::Text), None),
            ("application/openmetrics-text;escaping=values".into(), Some(Format::OpenMetrics), None),
            ("application/openmetrics-text;escaping=dots".into(), Some(Format::OpenMetrics), Some(Escaping)),
            ("*/*;escaping=bogus".into(), Some(Format::Text), Some(Escaping)),
            (
                "text/plain;escaping=dots;q=0.5, application/openmetrics-text".into(),
                Some(Format::OpenMetrics),
                None,
            ),
            // What Prometheus 2.42 sends, and Prometheus 3's escaping: no fallback.
            (PROMETHEUS_2_42.into(), Some(Format::OpenMetrics), None),
            (PROMETHEUS_2_42_NATIVE.into(), Some(Format::Protobuf), None),
            (
                format!("{pb};{mf};encoding=delimited;escaping=allow-utf-8,\
                 application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1"),
                Some(Format::Protobuf),
                None,
            ),
            // Not one of our media types: refused as before.
            ("application/json".into(), None, None),
        ];
        for (accept, format, fallback) in cases {
            assert_eq!(
                choose(Some(&accept)),
                (format, fallback),
                "Accept: {accept:?}"
            );
        }
        let n = negotiate(Some(pb), Some("gzip"), b"", &[]).unwrap();
        assert_eq!((n.format, n.fallback), (Format::Text, Some(Proto)));
        // `?format=` wins: nothing falls back.
        let n = negotiate(Some(pb), None, b"format=openmetrics", &[]).unwrap();
        assert_eq!((n.format, n.fallback), (Format::OpenMetrics, None));
        let names: Vec<&str> = Fallback::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names, ["proto", "encoding", "version", "escaping"]);
    }

    #[test]
    fn accept_chooses_the_format() {
        let cases: [(Option<&str>, Option<Format>); 22] = [
            (None, Some(Format::Text)),
            (Some(PROMETHEUS_2_42), Some(Format::OpenMetrics)),
            (Some("*/*"), Some(Format::Text)),
            (Some(""), Some(Format::Text)),
            (Some("text/plain"), Some(Format::Text)),
            (Some("text/plain;version=0.0.4"), Some(Format::Text)),
            (
                Some("application/openmetrics-text"),
                Some(Format::OpenMetrics),
            ),
            (
                Some("Application/OpenMetrics-Text; Version=\"1.0.0\""),
                Some(Format::OpenMetrics),
            ),
            (Some("application/*"), Some(Format::OpenMetrics)),
            (
                Some("text/*;q=0.5, application/*;q=0.6"),
                Some(Format::OpenMetrics),
            ),
            // Equal q: the more specific range wins, then the first listed.
            (
                Some("*/*, application/openmetrics-text"),
                Some(Format::OpenMetrics),
            ),
            (
                Some("application/openmetrics-text;version=1.0.0, text/plain;version=0.0.4"),
                Some(Format::OpenMetrics),
            ),
            (
                Some("text/plain;version=0.0.4, application/openmetrics-text;version=1.0.0"),
                Some(Format::Text),
            ),
            // An explicit q=0 beats a wildcard for its own type.
            (Some("text/plain;q=0, */*"), Some(Format::OpenMetrics)),
            // A version we do not speak does not match: the next format, else the
            // text format (a fallback).
            (
                Some("application/openmetrics-text;version=0.0.1"),
                Some(Format::Text),
            ),
            (
                Some("application/openmetrics-text;version=0.0.1, */*;q=0.1"),
                Some(Format::Text),
            ),
            (Some("application/json"), None),
            (Some("text/html, application/xhtml+xml"), None),
            (Some("*/*;q=0"), None),
            // Malformed elements are skipped; nothing understandable: the default.
            (Some("garbage"), Some(Format::Text)),
            (Some(";;;,/,text/plain;q=2"), Some(Format::Text)),
            (
                Some("banana, application/openmetrics-text;q=0.abc, application/*"),
                Some(Format::OpenMetrics),
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(choose_format(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn gzip_when_accepted() {
        for (h, want) in [
            (None, false),
            (Some("gzip"), true),
            (Some("deflate, gzip;q=0.5"), true),
            (Some("gzip;q=0"), false),
            (Some("x-gzip"), true),
            (Some("*"), true),
            (Some("*, gzip;q=0"), false),
            (Some("identity"), false),
            (Some("br, deflate"), false),
            (Some("gzip;q=bad"), false),
            (Some("GZIP"), true),
        ] {
            assert_eq!(accepts_gzip(h), want, "Accept-Encoding: {h:?}");
        }
    }

    #[test]
    fn query_selects_format_and_families() {
        let n = negotiate(
            Some(PROMETHEUS_2_42),
            Some("gzip"),
            b"name%5B%5D=a_total&name[]=b&name=c,a_total&group=app&x=1&format=json",
            &[],
        )
        .unwrap();
        assert_eq!(n.format, Format::Json);
        assert!(n.gzip);
        assert_eq!(n.selection.names, vec!["a_total", "b", "c"]);
        assert_eq!(n.selection.groups, vec!["app"]);
        let n = negotiate(Some("application/json"), None, b"format=text", &[]).unwrap();
        assert_eq!(n.format, Format::Text);
        assert_eq!(
            negotiate(Some("application/json"), None, b"", &[])
                .unwrap_err()
                .status,
            406
        );
        let served = vec!["http".to_string(), "nginx".to_string()];
        let n = negotiate(None, None, b"group=http", &served).unwrap();
        assert_eq!(n.selection.served, served);
        let e = negotiate(None, None, b"group=app", &served).unwrap_err();
        assert_eq!(
            e,
            NegotiationError {
                status: 404,
                message: "unknown group \"app\": this location serves http, nginx\n".into()
            }
        );
    }

    #[test]
    fn bad_queries_are_400_with_a_clear_message() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"format=xml",
                "unknown format \"xml\": use text, openmetrics, json, protobuf or html\n",
            ),
            (
                b"format=json&format=text",
                "format given twice (\"json\" and \"text\")\n",
            ),
            (
                b"name=1bad",
                "invalid metric name \"1bad\": must match [a-zA-Z_:][a-zA-Z0-9_:]*\n",
            ),
            (b"name=", "empty value for \"name\"\n"),
            (b"name=a,,b", "empty value for \"name\"\n"),
            (
                b"group=b%40d",
                "invalid group \"b@d\": 1 to 64 letters, digits, '_' or '-'\n",
            ),
            (b"name=%ff", "query parameter \"name\" is not valid UTF-8\n"),
            (
                b"name=%3Cscript%3E%0A",
                "invalid metric name \"<script>\\n\": must match [a-zA-Z_:][a-zA-Z0-9_:]*\n",
            ),
        ];
        for (q, want) in cases {
            let e = negotiate(None, None, q, &[]).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(q));
            assert_eq!(e.message, want);
        }
        let many: Vec<u8> = (0..300)
            .map(|i| format!("name=m{i}"))
            .collect::<Vec<_>>()
            .join("&")
            .into_bytes();
        assert!(negotiate(None, None, &many, &[])
            .unwrap_err()
            .message
            .contains("more than 256"));
        let long = format!("name={}-", "a".repeat(100));
        let msg = negotiate(None, None, long.as_bytes(), &[])
            .unwrap_err()
            .message;
        assert!(msg.contains(&format!("\"{}...\"", "a".repeat(64))), "{msg}");
    }

    #[test]
    fn the_status_page_is_asked_for_by_name_only() {
        let n = negotiate(None, Some("gzip"), b"format=html&group=http&x=%3Cb%3E", &[]).unwrap();
        assert_eq!(n.format, Format::Html);
        assert!(n.gzip);
        assert_eq!(n.selection.groups, ["http"]);
        // A browser's own Accept gets the text format; `text/html` alone is refused.
        assert_eq!(
            choose_format(Some("text/html,application/xhtml+xml,*/*;q=0.8")),
            Some(Format::Text)
        );
        assert_eq!(choose_format(Some("text/html")), None);
        assert_eq!(Format::parse("html"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%5Bb%5d+c"), b"a[b] c");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%g1%4"), b"%g1%4");
    }
}
