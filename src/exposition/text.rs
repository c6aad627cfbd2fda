//! Prometheus text format 0.0.4: the encoder and the writer of a whole zone.
//!
//! Writes into a `String` through a few small functions tested byte for byte; the
//! zone writer reads each series once and derives every line of it from that read.

use crate::metrics::histogram::{self, Snapshot};
use crate::metrics::store::{decode_key, Reason};
use crate::metrics::{counter, gauge, MetricType, Store};
use crate::shm::Offset;
use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// nginx's connection counters, as `stub_status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StubStatus {
    pub accepted: u64,
    pub handled: u64,
    pub requests: u64,
    pub active: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// Families written by the module itself; user families may not take these names.
pub const BUILTIN_FAMILIES: [&str; 8] = [
    "nginx_connections_accepted_total",
    "nginx_connections_handled_total",
    "nginx_connections",
    "nginx_requests_total",
    "nginx_metric_errors_total",
    "nginx_metric_zone_bytes",
    "nginx_metric_series",
    "nginx_metric_lock_takeovers_total",
];

/// `# HELP` and `# TYPE` lines. Help escapes `\` and newline.
pub fn write_header(out: &mut String, name: &str, help: &str, t: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(t);
    out.push('\n');
}

/// A label value, escaped: `\` `"` and newline.
pub fn write_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `{a="x",b="y"` without the closing brace, or empty when there are no labels: the
/// caller appends `le` or closes it (see [`close_labels`]).
pub fn write_label_prefix<'v>(
    out: &mut String,
    names: &[String],
    values: impl Iterator<Item = &'v str>,
) {
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(n);
        out.push_str("=\"");
        write_label_value(out, v);
        out.push('"');
    }
}

/// Closes a label prefix, adding one more label if given.
pub fn close_labels(out: &mut String, prefix: &str, extra: Option<(&str, &str)>) {
    out.push_str(prefix);
    match (prefix.is_empty(), extra) {
        (true, None) => {}
        (true, Some((n, v))) => {
            let _ = write!(out, "{{{n}=\"{v}\"}}");
        }
        (false, None) => out.push('}'),
        (false, Some((n, v))) => {
            let _ = write!(out, ",{n}=\"{v}\"}}");
        }
    }
}

pub fn write_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits are ASCII.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

/// A float as Prometheus parsers read it: `+Inf`, `-Inf`, `NaN`, integers without a
/// fraction, otherwise the shortest representation that round-trips.
pub fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        if v < 0.0 {
            out.push('-');
        }
        write_u64(out, v.abs() as u64);
    } else if v.abs() >= 1e-4 && v.abs() < 1e15 {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

/// One sample line: `name{labels} value`.
pub fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    close_labels(out, labels, extra);
    out.push(' ');
}

/// Writes every family of the zone, then the module's own families.
pub fn write_zone(out: &mut String, store: &Store<'_>, zone: &str, stub: Option<&StubStatus>) {
    let r = store.region();
    let mut key = Vec::new();
    let mut labels = String::new();
    let mut snapshot: Option<Snapshot> = None;
    let mut cumulative = Vec::new();
    for (family, series) in store.families() {
        let spec = store.spec(family);
        write_header(out, &spec.name, &spec.help, family.metric_type.as_str());
        let (cuts, les) = match &spec.histogram {
            Some(h) => {
                let layout = h.layout().expect("validated at registration");
                let les: Vec<String> = h
                    .buckets
                    .iter()
                    .map(|b| {
                        let mut s = String::new();
                        write_f64(&mut s, *b);
                        s
                    })
                    .collect();
                (histogram::cuts(h.scale(), layout, &h.buckets), les)
            }
            None => (Vec::new(), Vec::new()),
        };
        for rec in series {
            key.clear();
            store.series_key(rec, &mut key);
            labels.clear();
            write_label_prefix(
                &mut labels,
                &spec.label_names,
                decode_key(&key).map(|v| std::str::from_utf8(v).unwrap_or("")),
            );
            let h: Offset = store.series_values(rec);
            match family.metric_type {
                MetricType::Counter => {
                    write_sample(out, &spec.name, "", &labels, None);
                    let (n, f) = counter::read(&r, h);
                    if f == 0.0 {
                        write_u64(out, n);
                    } else {
                        write_f64(out, n as f64 + f);
                    }
                    out.push('\n');
                }
                MetricType::Gauge => {
                    write_sample(out, &spec.name, "", &labels, None);
                    write_f64(out, gauge::read(&r, h));
                    out.push('\n');
                }
                MetricType::Histogram => {
                    let snap = Snapshot::read(&r, h, snapshot.take());
                    snap.cumulative(&cuts, &mut cumulative);
                    for (le, c) in les.iter().zip(&cumulative) {
                        write_sample(out, &spec.name, "_bucket", &labels, Some(("le", le)));
                        write_u64(out, *c);
                        out.push('\n');
                    }
                    let count = snap.count();
                    write_sample(out, &spec.name, "_bucket", &labels, Some(("le", "+Inf")));
                    write_u64(out, count);
                    out.push('\n');
                    write_sample(out, &spec.name, "_sum", &labels, None);
                    write_f64(out, snap.sum);
                    out.push('\n');
                    write_sample(out, &spec.name, "_count", &labels, None);
                    write_u64(out, count);
                    out.push('\n');
                    snapshot = Some(snap);
                }
            }
        }
    }
    write_builtins(out, store, zone, stub);
}

fn write_builtins(out: &mut String, store: &Store<'_>, zone: &str, stub: Option<&StubStatus>) {
    if let Some(s) = stub {
        for (name, help, v) in [
            (
                "nginx_connections_accepted_total",
                "Client connections accepted by nginx.",
                s.accepted,
            ),
            (
                "nginx_connections_handled_total",
                "Client connections handled by nginx.",
                s.handled,
            ),
            (
                "nginx_requests_total",
                "Client requests received by nginx.",
                s.requests,
            ),
        ] {
            write_header(out, name, help, "counter");
            out.push_str(name);
            out.push(' ');
            write_u64(out, v);
            out.push('\n');
        }
        write_header(
            out,
            "nginx_connections",
            "Client connections by state.",
            "gauge",
        );
        for (state, v) in [
            ("active", s.active),
            ("reading", s.reading),
            ("writing", s.writing),
            ("waiting", s.waiting),
        ] {
            let _ = writeln!(out, "nginx_connections{{state=\"{state}\"}} {v}");
        }
    }
    let mut zone_label = String::new();
    write_label_value(&mut zone_label, zone);
    write_header(
        out,
        "nginx_metric_errors_total",
        "Metric updates and series refused or failed, by reason.",
        "counter",
    );
    for reason in Reason::ALL {
        let _ = writeln!(
            out,
            "nginx_metric_errors_total{{zone=\"{zone_label}\",reason=\"{}\"}} {}",
            reason.as_str(),
            store.errors(reason)
        );
    }
    let a = store.arena();
    write_header(
        out,
        "nginx_metric_zone_bytes",
        "Bytes of the metrics zone, used and in all.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "nginx_metric_zone_bytes{{zone=\"{zone_label}\",state=\"used\"}} {}",
        a.used_bytes()
    );
    let _ = writeln!(
        out,
        "nginx_metric_zone_bytes{{zone=\"{zone_label}\",state=\"capacity\"}} {}",
        a.capacity_bytes()
    );
    write_header(
        out,
        "nginx_metric_series",
        "Series kept in the metrics zone.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "nginx_metric_series{{zone=\"{zone_label}\"}} {}",
        a.series()
    );
    write_header(
        out,
        "nginx_metric_lock_takeovers_total",
        "Times the zone lock was taken over from a process that died holding it.",
        "counter",
    );
    let _ = writeln!(
        out,
        "nginx_metric_lock_takeovers_total{{zone=\"{zone_label}\"}} {}",
        a.lock_takeovers()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{FamilySpec, HistogramSpec};
    use crate::shm::region::heap_words;
    use crate::shm::Region;

    const ALIVE: &dyn Fn(u32) -> bool = &|_| true;

    #[test]
    fn header_and_labels_are_escaped() {
        let mut out = String::new();
        write_header(&mut out, "m", "a \\ b\nc \"q\"", "counter");
        assert_eq!(out, "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m counter\n");
        let mut l = String::new();
        write_label_prefix(
            &mut l,
            &["a".into(), "b".into()],
            ["x\"y", "p\\q\nr"].into_iter(),
        );
        assert_eq!(l, "{a=\"x\\\"y\",b=\"p\\\\q\\nr\"");
        let mut out = String::new();
        close_labels(&mut out, &l, Some(("le", "0.5")));
        assert_eq!(out, "{a=\"x\\\"y\",b=\"p\\\\q\\nr\",le=\"0.5\"}");
        let mut out = String::new();
        close_labels(&mut out, "", Some(("le", "+Inf")));
        close_labels(&mut out, "", None);
        assert_eq!(out, "{le=\"+Inf\"}");
    }

    #[test]
    fn numbers() {
        let cases: [(f64, &str); 10] = [
            (0.0, "0"),
            (-3.0, "-3"),
            (0.005, "0.005"),
            (2.5, "2.5"),
            (1e-7, "1e-7"),
            (1e20, "1e20"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (123456789.25, "123456789.25"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_f64(&mut s, v);
            assert_eq!(s, want);
        }
        let mut s = String::new();
        write_u64(&mut s, u64::MAX);
        assert_eq!(s, "18446744073709551615");
    }

    #[test]
    fn a_zone_renders_byte_for_byte() {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let c = s
            .register(
                &FamilySpec {
                    name: "http_requests_total".into(),
                    help: "Requests.".into(),
                    metric_type: MetricType::Counter,
                    label_names: vec!["code".into()],
                    histogram: None,
                    max_series: 0,
                },
                1,
                ALIVE,
            )
            .unwrap();
        let h = s
            .register(
                &FamilySpec {
                    name: "latency_seconds".into(),
                    help: "Latency.".into(),
                    metric_type: MetricType::Histogram,
                    label_names: vec![],
                    histogram: Some(HistogramSpec {
                        buckets: vec![0.1, 1.0],
                        ..HistogramSpec::default()
                    }),
                    max_series: 0,
                },
                1,
                ALIVE,
            )
            .unwrap();
        let ok = s.series(c, &["200"], 1, ALIVE).unwrap();
        let quote = s.series(c, &["a\"b"], 1, ALIVE).unwrap();
        counter::inc(&s.region(), ok, 3).unwrap();
        counter::add(&s.region(), quote, 0.5).unwrap();
        let lat = s.series(h, &[] as &[&str], 1, ALIVE).unwrap();
        for v in [0.05, 0.5, 5.0] {
            histogram::observe(&s.region(), lat, v).unwrap();
        }
        let mut out = String::new();
        write_zone(&mut out, &s, "z", None);
        let want = "\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 3
http_requests_total{code=\"a\\\"b\"} 0.5
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le=\"0.1\"} 1
latency_seconds_bucket{le=\"1\"} 2
latency_seconds_bucket{le=\"+Inf\"} 3
latency_seconds_sum 5.55
latency_seconds_count 3
";
        assert!(out.starts_with(want), "{out}");
        assert!(out.contains("nginx_metric_errors_total{zone=\"z\",reason=\"zone_full\"} 0\n"));
        assert!(out.contains("nginx_metric_series{zone=\"z\"} 3\n"));
        assert!(!out.contains("nginx_connections"));
        let mut with_stub = String::new();
        let stub = StubStatus {
            accepted: 5,
            handled: 5,
            requests: 9,
            active: 1,
            reading: 0,
            writing: 1,
            waiting: 0,
        };
        write_zone(&mut with_stub, &s, "z", Some(&stub));
        assert!(with_stub.contains("nginx_connections_accepted_total 5\n"));
        assert!(with_stub.contains("nginx_connections{state=\"writing\"} 1\n"));
        assert!(with_stub.contains("nginx_requests_total 9\n"));
    }
}
