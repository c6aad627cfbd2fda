//! `prometheus_record`: what the native request recorder records, read without nginx.
//! The glue (`nginx::record`) compiles the `label=` values as nginx complex values and
//! records every request of a location whose configuration has one; this file says
//! which families, with which labels and options, and how a label value a client
//! chose is bounded ([`label_value`]).

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

use super::directives::Time;
use super::identity::valid_label_name;
use crate::metrics::family::{valid_group, HistogramSpec, DEFAULT_BUCKETS, MAX_LABELS};
use crate::metrics::{FamilySpec, MetricType};
use std::borrow::Cow;

/// A label value taken from the request is cut to at most this many bytes (at a
/// character boundary).
pub const MAX_VALUE_BYTES: usize = 256;
/// `max_series` of every family when a `label=` value is configured and none is given:
/// those values come from clients.
pub const DEFAULT_MAX_SERIES: u64 = 1000;
pub const DEFAULT_NAMESPACE: &str = "nginx_http";
pub const DEFAULT_GROUP: &str = "http";

/// One label of the recorded families, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// `server`: the server's first `server_name`.
    Server,
    /// `location`: `prometheus_record_location`, else the location as written.
    Location,
    /// `method`: the request method, `OTHER` for one nginx does not know.
    Method,
    /// `label=<name>:<value>`: an nginx complex value (`$host`, `$route`, `api-$x`).
    Value { name: String, value: String },
}

impl Label {
    pub fn name(&self) -> &str {
        match self {
            Label::Server => "server",
            Label::Location => "location",
            Label::Method => "method",
            Label::Value { name, .. } => name,
        }
    }
}

/// The status label of the requests family: the code (`200`) or its class (`2xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Code,
    Class,
}

/// One `prometheus_record` directive.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// `""`: the first declared zone.
    pub zone: String,
    pub namespace: String,
    pub group: String,
    pub labels: Vec<Label>,
    pub status: Status,
    pub histogram: HistogramSpec,
    pub max_series: u64,
    pub overflow: String,
    pub expire_s: u64,
    /// `upstreams=on`: per upstream peer, from every try nginx made.
    pub upstreams: bool,
    /// `cache=on`: responses by `$upstream_cache_status`.
    pub cache: bool,
}

/// The recorded families, in this order (indexes into [`Record::families`]).
pub const REQUESTS: usize = 0;
pub const REQUEST_DURATION: usize = 1;
pub const UPSTREAM_DURATION: usize = 2;
pub const RECEIVED_BYTES: usize = 3;
pub const SENT_BYTES: usize = 4;
/// `upstreams=on`: tries per upstream, peer and the try's status; each try's response
/// time; tries that failed (no response header, or a 5xx).
pub const PEER_REQUESTS: usize = 5;
pub const PEER_DURATION: usize = 6;
pub const PEER_FAILURES: usize = 7;
/// `cache=on`: responses by cache status, for requests that had one.
pub const CACHE_RESPONSES: usize = 8;
pub const FAMILIES: usize = 9;

const HELP: &str = "off | [zone=<name>] [labels=server,location,method,code|class] \
[label=<name>:<value>]... [namespace=<prefix>] [group=<group>] [buckets=<bounds>] \
[precision=<1-5>] [max_series=<n>] [overflow=<value>] [expire=<time>] [upstreams=on|off] \
[cache=on|off]";

/// `prometheus_record`'s words; `None` for `off`. Every refusal names the word.
pub fn parse(a: &[&str], time: Time<'_>) -> Result<Option<Record>, String> {
    if a == ["off"] {
        return Ok(None);
    }
    let mut r = Record {
        zone: String::new(),
        namespace: DEFAULT_NAMESPACE.into(),
        group: DEFAULT_GROUP.into(),
        labels: vec![Label::Server],
        status: Status::Code,
        histogram: HistogramSpec::default(),
        max_series: 0,
        overflow: String::new(),
        expire_s: 0,
        upstreams: false,
        cache: false,
    };
    let mut given = Given::default();
    for arg in a {
        word(&mut r, &mut given, arg, time)?;
    }
    finish(r, given).map(Some)
}

/// What the words gave that is settled only once all are read.
#[derive(Default)]
struct Given {
    /// `labels=` was given (once at most).
    fixed: bool,
    /// The `label=` labels, after the fixed ones.
    values: Vec<Label>,
    max_series: Option<u64>,
    buckets: Option<Vec<f64>>,
}

/// One `key=value` word, into `r` (or `given`).
fn word(r: &mut Record, given: &mut Given, arg: &str, time: Time<'_>) -> Result<(), String> {
    let Some((k, v)) = arg.split_once('=') else {
        return Err(format!("unknown parameter \"{arg}\" ({HELP})"));
    };
    let bad = |what: &str| format!("invalid {k} \"{v}\" ({what})");
    match k {
        "zone" => r.zone = v.to_string(),
        "namespace" => {
            if !crate::metrics::family::valid_metric_name(v) {
                return Err(bad("a metric name prefix: [a-zA-Z_:][a-zA-Z0-9_:]*"));
            }
            r.namespace = v.to_string();
        }
        "group" => {
            if !valid_group(v) {
                return Err(bad("1 to 64 letters, digits, '_' and '-'"));
            }
            r.group = v.to_string();
        }
        "labels" if !given.fixed => {
            given.fixed = true;
            (r.labels, r.status) = fixed_labels(v)?;
        }
        "label" => given.values.push(value_label(v)?),
        "buckets" => {
            let b: Result<Vec<f64>, _> = v.split(',').map(str::parse::<f64>).collect();
            match b {
                Ok(b) if !b.is_empty() => given.buckets = Some(b),
                _ => return Err(bad("increasing numbers of seconds, comma-separated")),
            }
        }
        "precision" => match v.parse::<u8>() {
            Ok(p @ 1..=5) => r.histogram.precision = p,
            _ => return Err(bad("significant digits, 1 to 5")),
        },
        "max_series" => match v.parse::<u64>() {
            Ok(n) => given.max_series = Some(n),
            _ => return Err(bad("a number of series, 0 for no limit")),
        },
        "overflow" => {
            if v.is_empty() || v.len() > MAX_VALUE_BYTES {
                return Err(bad("1 to 256 bytes"));
            }
            r.overflow = v.to_string();
        }
        "expire" => {
            let ms = time(v).ok_or_else(|| bad("a time, for example 300s or 1h"))?;
            r.expire_s = ms.div_ceil(1000);
        }
        "upstreams" | "cache" => {
            let on = match v {
                "on" => true,
                "off" => false,
                _ => return Err(bad("on or off")),
            };
            if k == "cache" {
                r.cache = on;
            } else {
                r.upstreams = on;
            }
        }
        "labels" => return Err("\"labels=\" is given twice".into()),
        _ => return Err(format!("unknown parameter \"{arg}\" ({HELP})")),
    }
    Ok(())
}

/// `labels=server,location,method,code|class`: the fixed labels, and which status
/// label the requests family has.
fn fixed_labels(v: &str) -> Result<(Vec<Label>, Status), String> {
    let mut labels = Vec::new();
    let mut status = None;
    for w in v.split(',').filter(|w| !w.is_empty()) {
        let label = match w {
            "server" => Label::Server,
            "location" => Label::Location,
            "method" => Label::Method,
            "code" | "class" if status.is_none() => {
                status = Some(if w == "code" {
                    Status::Code
                } else {
                    Status::Class
                });
                continue;
            }
            "code" | "class" => {
                return Err(format!(
                    "invalid labels \"{v}\" (code and class are the same label: one of them)"
                ))
            }
            _ => {
                return Err(format!(
                    "invalid labels \"{v}\": unknown label \"{w}\" \
                     (server, location, method, code, class; other values with label=<name>:<value>)"
                ))
            }
        };
        if labels.contains(&label) {
            return Err(format!("invalid labels \"{v}\": \"{w}\" is given twice"));
        }
        labels.push(label);
    }
    Ok((labels, status.unwrap_or(Status::Code)))
}

/// `label=<name>:<value>`.
fn value_label(v: &str) -> Result<Label, String> {
    let Some((name, value)) = v.split_once(':') else {
        return Err(format!(
            "invalid label \"{v}\" (<name>:<value>, for example host:$host)"
        ));
    };
    if !valid_label_name(name) || name == "code" {
        return Err(format!(
            "invalid label \"{v}\": invalid label name \"{name}\" \
             ([a-zA-Z_][a-zA-Z0-9_]*, not code, le, quantile or __*)"
        ));
    }
    if value.is_empty() {
        return Err(format!("invalid label \"{v}\": the value is empty"));
    }
    Ok(Label::Value {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// The checks and defaults that need every word: labels named once and not too many,
/// the buckets, `max_series`, and families the zone would accept.
fn finish(mut r: Record, given: Given) -> Result<Record, String> {
    let with_values = !given.values.is_empty();
    r.labels.extend(given.values);
    for (i, l) in r.labels.iter().enumerate() {
        if r.labels[..i].iter().any(|p| p.name() == l.name()) {
            return Err(format!("the label \"{}\" is given twice", l.name()));
        }
    }
    if r.labels.len() + 1 > MAX_LABELS {
        return Err(format!(
            "{} labels, at most {} allowed",
            r.labels.len(),
            MAX_LABELS - 1
        ));
    }
    let buckets = given.buckets.unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
    r.histogram.highest = HistogramSpec::highest_for(&buckets);
    r.histogram.buckets = buckets;
    r.max_series = given
        .max_series
        .unwrap_or(if with_values { DEFAULT_MAX_SERIES } else { 0 });
    for spec in r.families().iter().flatten() {
        spec.validate().map_err(|e| e.to_string())?;
        if crate::metrics::builtin::find(&spec.name).is_some() {
            return Err(format!(
                "invalid namespace \"{}\": \"{}\" is the module's own metric",
                r.namespace, spec.name
            ));
        }
    }
    Ok(r)
}

impl Record {
    /// The declarations of the recorded families, indexed by [`REQUESTS`] and the rest;
    /// `None` for those not recorded.
    pub fn families(&self) -> Vec<Option<FamilySpec>> {
        let names: Vec<String> = self.labels.iter().map(|l| l.name().to_string()).collect();
        let mut with_code = names.clone();
        with_code.push("code".into());
        let peer: Vec<String> = ["upstream", "peer"].map(String::from).to_vec();
        let mut peer_code = peer.clone();
        peer_code.push("code".into());
        let mut with_cache = names.clone();
        with_cache.push("cache_status".into());
        let ns = &self.namespace;
        let family = |suffix: &str, help: &str, t: MetricType, labels: &[String], unit: &str| {
            Some(FamilySpec {
                name: format!("{ns}_{suffix}"),
                help: help.into(),
                metric_type: t,
                label_names: labels.to_vec(),
                histogram: (t == MetricType::Histogram).then(|| self.histogram.clone()),
                max_series: self.max_series,
                expire_s: self.expire_s,
                overflow_value: self.overflow.clone(),
                unit: unit.into(),
                group: self.group.clone(),
                quantiles: Default::default(),
                // The recorder has no trace id to give, and its histograms are read
                // in every format.
                exemplars: false,
                native_only: false,
            })
        };
        use MetricType::{Counter, Histogram};
        vec![
            family(
                "requests_total",
                "Requests by response status code.",
                Counter,
                &with_code,
                "",
            ),
            family(
                "request_duration_seconds",
                "Time from the first byte read from the client to the log phase.",
                Histogram,
                &names,
                "seconds",
            ),
            family(
                "upstream_duration_seconds",
                "Time spent waiting for upstream responses, over every upstream tried.",
                Histogram,
                &names,
                "seconds",
            ),
            family(
                "received_bytes_total",
                "Bytes received from clients, request line and headers included.",
                Counter,
                &names,
                "bytes",
            ),
            family(
                "sent_bytes_total",
                "Bytes sent to clients.",
                Counter,
                &names,
                "bytes",
            ),
            family(
                "upstream_peer_requests_total",
                "Tries of upstream peers, by the try's status (0: no response header).",
                Counter,
                &peer_code,
                "",
            )
            .filter(|_| self.upstreams),
            family(
                "upstream_peer_duration_seconds",
                "Response time of each try of an upstream peer that got a response.",
                Histogram,
                &peer,
                "seconds",
            )
            .filter(|_| self.upstreams),
            family(
                "upstream_peer_failures_total",
                "Tries of upstream peers that failed: no response header, or a 5xx status.",
                Counter,
                &peer,
                "",
            )
            .filter(|_| self.upstreams),
            family(
                "cache_responses_total",
                "Responses by $upstream_cache_status, for requests that had one.",
                Counter,
                &with_cache,
                "",
            )
            .filter(|_| self.cache),
        ]
    }
}

/// A label value from the request as stored: invalid UTF-8 replaced (U+FFFD), cut to
/// [`MAX_VALUE_BYTES`] at a character boundary. Borrowed when it already is one.
pub fn label_value(raw: &[u8]) -> Cow<'_, [u8]> {
    let cut = &raw[..raw.len().min(MAX_VALUE_BYTES)];
    match String::from_utf8_lossy(cut) {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(mut s) => {
            // A replacement character is three bytes: the text may have grown.
            let mut end = s.len().min(MAX_VALUE_BYTES);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            Cow::Owned(s.into_bytes())
        }
    }
}

/// The label value of a status: `200`, or `2xx` for its class.
pub fn status_value(status: u32, how: Status, buf: &mut [u8; 10]) -> &[u8] {
    match how {
        Status::Class => {
            buf[0] = b'0' + (status / 100).min(9) as u8;
            buf[1] = b'x';
            buf[2] = b'x';
            &buf[..3]
        }
        Status::Code => {
            let mut n = status;
            let mut i = buf.len();
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            &buf[i..]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Option<u64> {
        let n: u64 = s.strip_suffix('s')?.parse().ok()?;
        (n > 0).then_some(n * 1000)
    }

    fn parse_ok(a: &[&str]) -> Record {
        parse(a, &time).unwrap().unwrap()
    }

    #[test]
    fn defaults_and_off() {
        assert_eq!(parse(&["off"], &time), Ok(None));
        let r = parse_ok(&[]);
        assert_eq!(r.labels, vec![Label::Server]);
        assert_eq!(
            r.max_series, 0,
            "configured labels only: bounded by the configuration"
        );
        let f = r.families();
        let f = |i: usize| f[i].clone().unwrap();
        assert_eq!(f(REQUESTS).name, "nginx_http_requests_total");
        assert_eq!(f(REQUESTS).label_names, ["server", "code"]);
        assert_eq!(f(SENT_BYTES).label_names, ["server"]);
        assert_eq!(r.families().len(), FAMILIES);
        assert!(r.families()[PEER_REQUESTS..].iter().all(Option::is_none));
        let r = parse_ok(&["upstreams=on", "cache=on"]);
        let f = r.families();
        assert_eq!(
            f[PEER_REQUESTS].as_ref().unwrap().label_names,
            ["upstream", "peer", "code"]
        );
        assert_eq!(
            f[CACHE_RESPONSES].as_ref().unwrap().label_names,
            ["server", "cache_status"]
        );
    }

    #[test]
    fn labels_and_options() {
        let r = parse_ok(&[
            "labels=location,method,class",
            "label=host:$host",
            "namespace=web",
            "buckets=0.1,1,100",
            "precision=3",
            "expire=300s",
            "overflow=other",
        ]);
        assert_eq!(r.status, Status::Class);
        assert_eq!(r.max_series, DEFAULT_MAX_SERIES);
        assert_eq!(r.histogram.highest, 200.0);
        assert_eq!(r.expire_s, 300);
        let f = r.families();
        let f = |i: usize| f[i].clone().unwrap();
        assert_eq!(
            f(REQUEST_DURATION).label_names,
            ["location", "method", "host"]
        );
        assert_eq!(f(REQUESTS).name, "web_requests_total");
        assert_eq!(parse_ok(&["label=h:$host", "max_series=0"]).max_series, 0);
    }

    #[test]
    fn refusals_name_the_word() {
        for (words, want) in [
            (&["on"][..], "unknown parameter \"on\""),
            (&["off", "zone=z"], "unknown parameter \"off\""),
            (&["labels=server,path"], "unknown label \"path\""),
            (&["labels=code,class"], "invalid labels \"code,class\""),
            (&["labels=server,server"], "\"server\" is given twice"),
            (&["label=host"], "invalid label \"host\""),
            (&["label=1x:$host"], "invalid label name \"1x\""),
            (&["label=code:$status"], "invalid label name \"code\""),
            (&["label=server:$host"], "\"server\" is given twice"),
            (&["label=h:"], "the value is empty"),
            (&["buckets=1,x"], "invalid buckets \"1,x\""),
            (&["buckets=2,1"], "buckets"),
            (&["precision=9"], "invalid precision \"9\""),
            (&["max_series=-1"], "invalid max_series \"-1\""),
            (&["expire=soon"], "invalid expire \"soon\""),
            (&["namespace=1x"], "invalid namespace \"1x\""),
            (&["group=a b"], "invalid group \"a b\""),
            (&["overflow="], "invalid overflow \"\""),
            (&["labels=server", "labels=method"], "given twice"),
            (&["upstreams=yes"], "invalid upstreams \"yes\" (on or off)"),
            (&["cache=1"], "invalid cache \"1\""),
        ] {
            let e = parse(words, &time).unwrap_err();
            assert!(e.contains(want), "{words:?}: {e}");
        }
    }

    #[test]
    fn values_are_bounded_and_valid() {
        assert!(matches!(label_value(b"ok"), Cow::Borrowed(b"ok")));
        let v = label_value(b"a\xffb\"\n");
        assert_eq!(&*v, "a\u{fffd}b\"\n".as_bytes());
        let long = vec![b'x'; 10_000];
        assert_eq!(label_value(&long).len(), MAX_VALUE_BYTES);
        let mut bad = vec![0xffu8; 1000];
        bad[0] = b'a';
        let v = label_value(&bad);
        assert!(v.len() <= MAX_VALUE_BYTES && std::str::from_utf8(&v).is_ok());
        let mut b = [0u8; 10];
        assert_eq!(status_value(404, Status::Code, &mut b), b"404");
        assert_eq!(status_value(0, Status::Code, &mut b), b"0");
        assert_eq!(status_value(503, Status::Class, &mut b), b"5xx");
    }
}
