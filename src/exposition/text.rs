//! Prometheus text format 0.0.4, and the line encoders OpenMetrics shares.
//!
//! Writes bytes through a few small functions tested byte for byte; the
//! zone walker ([`super::walk()`]) reads each series once and every line of it derives
//! from that read.

use super::model::{label_values, Meta, Sink};
use super::model::{CounterValue, Exemplar, HistogramValue, SummaryValue};
use super::number::{write_f64, write_ms_as_seconds, write_u64, Out};
use crate::metrics::exemplar;
use crate::metrics::histogram::SUMMARY_QUANTILES;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `# HELP` and `# TYPE` lines. Help escapes `\` and newline.
pub fn write_header(out: &mut impl Out, name: &str, help: &str, t: &str) {
    out.put_str("# HELP ");
    out.put_str(name);
    out.put_char(' ');
    for c in help.chars() {
        match c {
            '\\' => out.put_str("\\\\"),
            '\n' => out.put_str("\\n"),
            c => out.put_char(c),
        }
    }
    out.put_str("\n# TYPE ");
    out.put_str(name);
    out.put_char(' ');
    out.put_str(t);
    out.put_char('\n');
}

/// A label value, escaped: `\` `"` and newline.
pub fn write_label_value(out: &mut impl Out, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.put_str("\\\\"),
            '"' => out.put_str("\\\""),
            '\n' => out.put_str("\\n"),
            c => out.put_char(c),
        }
    }
}

/// `{a="x",b="y"` without the closing brace, or empty when there are no labels: the
/// caller appends `le` or closes it (see [`close_labels`]).
pub fn write_label_prefix<'v>(
    out: &mut impl Out,
    names: &[String],
    values: impl Iterator<Item = &'v str>,
) {
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        out.put_char(if i == 0 { '{' } else { ',' });
        out.put_str(n);
        out.put_str("=\"");
        write_label_value(out, v);
        out.put_char('"');
    }
}

/// Closes a label prefix, adding one more label if given.
pub fn close_labels(out: &mut impl Out, prefix: &str, extra: Option<(&str, &str)>) {
    out.put_str(prefix);
    // Pushed piece by piece: this runs for every bucket line, and `write!` through
    // `fmt` was a tenth of a large render.
    match (prefix.is_empty(), extra) {
        (true, None) => {}
        (false, None) => out.put_char('}'),
        (empty, Some((n, v))) => {
            out.put_char(if empty { '{' } else { ',' });
            out.put_str(n);
            out.put_str("=\"");
            out.put_str(v);
            out.put_str("\"}");
        }
    }
}

/// One sample line: `name{labels} value`.
pub fn write_sample(
    out: &mut impl Out,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
) {
    out.put_str(name);
    out.put_str(suffix);
    close_labels(out, labels, extra);
    out.put_char(' ');
}

/// The sample lines that the text format 0.0.4 and OpenMetrics write alike: a
/// series' label prefix, its values, buckets and quantiles. Each format's sink holds
/// one; `number` writes `le` and `quantile` values as the format wants them.
pub(super) struct Lines<'o> {
    pub(super) out: &'o mut Vec<u8>,
    /// The current series' label prefix (`{a="x"`, no closing brace).
    labels: String,
    /// `le` values of the current family.
    les: Vec<String>,
    /// Quantile label values.
    qs: [String; 5],
    number: fn(&mut String, f64),
    /// Exemplars are written after `_bucket` and `_total` values (OpenMetrics only).
    pub(super) exemplars: bool,
}

impl<'o> Lines<'o> {
    pub(super) fn new(out: &'o mut Vec<u8>, number: fn(&mut String, f64)) -> Lines<'o> {
        let qs = SUMMARY_QUANTILES.map(|q| {
            let mut s = String::new();
            number(&mut s, q);
            s
        });
        Lines {
            out,
            labels: String::new(),
            les: Vec::new(),
            qs,
            number,
            exemplars: false,
        }
    }

    /// ` # {trace_id="..."} value timestamp` after a sample's value, when the format
    /// shows exemplars and there is one.
    fn exemplar(&mut self, e: Option<&Exemplar>) {
        let Some(e) = e.filter(|_| self.exemplars) else {
            return;
        };
        self.out.put_str(" # {");
        self.out.put_str(exemplar::LABEL);
        self.out.put_str("=\"");
        write_label_value(self.out, e.id());
        self.out.put_str("\"} ");
        write_f64(self.out, e.value);
        self.out.put_char(' ');
        write_ms_as_seconds(self.out, e.ms);
    }

    /// A family begins: its `le` values.
    pub(super) fn family(&mut self, m: &Meta<'_>) {
        self.les.clear();
        for b in m.buckets {
            let mut s = String::new();
            (self.number)(&mut s, *b);
            self.les.push(s);
        }
    }

    /// A series begins: its label prefix, kept for each of its lines.
    pub(super) fn series(&mut self, m: &Meta<'_>, key: &[u8]) {
        self.labels.clear();
        write_label_prefix(&mut self.labels, m.label_names, label_values(key));
    }

    pub(super) fn value_line(&mut self, name: &str, suffix: &str, extra: Option<(&str, &str)>) {
        write_sample(self.out, name, suffix, &self.labels, extra);
    }

    /// A counter's sample: whole while it has no fraction.
    pub(super) fn counter(&mut self, name: &str, suffix: &str, c: &CounterValue) {
        self.value_line(name, suffix, None);
        if c.float == 0.0 {
            write_u64(self.out, c.int);
        } else {
            write_f64(self.out, c.int as f64 + c.float);
        }
        // Only a `_total` sample may carry one (OpenMetrics: counters, not `unknown`).
        if suffix == "_total" {
            self.exemplar(c.exemplar.as_ref());
        }
        self.out.push(b'\n');
    }

    /// A gauge series: its one line.
    pub(super) fn gauge(&mut self, m: &Meta<'_>, key: &[u8], v: f64) {
        self.series(m, key);
        self.value_line(m.name, "", None);
        write_f64(self.out, v);
        self.out.push(b'\n');
    }

    /// A histogram series: its buckets, then `_sum` and `_count` if `with_sum`.
    pub(super) fn histogram(
        &mut self,
        m: &Meta<'_>,
        key: &[u8],
        h: &HistogramValue<'_>,
        with_sum: bool,
    ) {
        self.series(m, key);
        self.buckets(m.name, h);
        if with_sum {
            self.sum(m.name, h.sum);
            self.count(m.name, h.count);
        }
    }

    /// A summary series: its quantiles, `_sum` if `with_sum`, then `_count`.
    pub(super) fn summary(
        &mut self,
        m: &Meta<'_>,
        key: &[u8],
        s: &SummaryValue<'_>,
        with_sum: bool,
    ) {
        self.series(m, key);
        self.quantiles(m.name, s.quantiles);
        if with_sum {
            self.sum(m.name, s.sum);
        }
        self.count(m.name, s.count);
    }

    /// `_bucket` lines, `+Inf` last.
    fn buckets(&mut self, name: &str, h: &HistogramValue<'_>) {
        let les = std::mem::take(&mut self.les);
        let at = |i: usize| h.exemplars.get(i).and_then(Option::as_ref);
        for (i, (le, c)) in les.iter().zip(h.cumulative).enumerate() {
            self.value_line(name, "_bucket", Some(("le", le)));
            write_u64(self.out, *c);
            self.exemplar(at(i));
            self.out.push(b'\n');
        }
        self.les = les;
        self.value_line(name, "_bucket", Some(("le", "+Inf")));
        write_u64(self.out, h.count);
        self.exemplar(at(h.cumulative.len()));
        self.out.push(b'\n');
    }

    fn quantiles(&mut self, name: &str, quantiles: &[f64]) {
        let qs = std::mem::take(&mut self.qs);
        for (q, v) in qs.iter().zip(quantiles) {
            self.value_line(name, "", Some(("quantile", q)));
            write_f64(self.out, *v);
            self.out.push(b'\n');
        }
        self.qs = qs;
    }

    fn sum(&mut self, name: &str, sum: f64) {
        self.value_line(name, "_sum", None);
        write_f64(self.out, sum);
        self.out.push(b'\n');
    }

    fn count(&mut self, name: &str, count: u64) {
        self.value_line(name, "_count", None);
        write_u64(self.out, count);
        self.out.push(b'\n');
    }
}

/// The Prometheus text format 0.0.4. Counters keep their name; no units, no
/// `_created`, no end marker.
pub struct TextSink<'o> {
    lines: Lines<'o>,
}

impl<'o> TextSink<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> TextSink<'o> {
        TextSink {
            lines: Lines::new(out, write_f64),
        }
    }
}

impl Sink for TextSink<'_> {
    const SUMMARY_FAMILIES: bool = true;

    fn family(&mut self, m: &Meta<'_>) {
        self.lines.family(m);
        write_header(self.lines.out, m.name, m.help, m.kind.as_str());
    }

    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue) {
        self.lines.series(m, labels);
        self.lines.counter(m.name, "", c);
    }

    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64) {
        self.lines.gauge(m, labels, v);
    }

    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>) {
        self.lines.histogram(m, labels, h, true);
    }

    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>) {
        self.lines.summary(m, labels, s, true);
    }

    fn end_family(&mut self, _m: &Meta<'_>) {}

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::number::write_canonical;
    use crate::exposition::tests::render_string;
    use crate::exposition::{Scrape, Selection, StubStatus};
    use crate::metrics::family::QuantileMode;
    use crate::metrics::store::observe;
    use crate::metrics::store::tests::{series, series_at};
    use crate::metrics::Store;
    use crate::metrics::{counter, FamilySpec, HistogramSpec, MetricType};
    use crate::shm::region::heap_words;
    use crate::shm::Region;

    const ALIVE: &dyn Fn(u32) -> bool = &|_| true;
    const ME: crate::metrics::store::Participant<'static> = crate::metrics::store::Participant {
        me: 1,
        alive: ALIVE,
    };

    /// Writes every family of the zone, then the module's own families, in the text
    /// format 0.0.4.
    fn write_zone(out: &mut String, store: &Store<'_>, zone: &str, stub: Option<&StubStatus>) {
        // Nothing is filtered, so nothing can be missing.
        let scrape = Scrape {
            stub: stub.copied(),
            ..Scrape::new(*store, zone)
        };
        out.push_str(&render_string(&scrape).unwrap());
    }

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
                    help: "Requests.".into(),
                    ..FamilySpec::new("http_requests_total", MetricType::Counter, &["code"])
                },
                ME,
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
                    expire_s: 0,
                    overflow_value: String::new(),
                    unit: String::new(),
                    group: String::new(),
                    quantiles: QuantileMode::Off,
                    exemplars: false,
                    native_only: false,
                },
                ME,
            )
            .unwrap();
        let ok = series(&s, c, &["200"], ME).unwrap();
        let quote = series(&s, c, &["a\"b"], ME).unwrap();
        counter::inc(&s.region(), ok, 3).unwrap();
        counter::add(&s.region(), quote, 0.5).unwrap();
        let lat = series(&s, h, &[] as &[&str], ME).unwrap();
        for v in [0.05, 0.5, 5.0] {
            observe(&s.region(), lat, v, || ME).unwrap();
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

    #[test]
    fn milliseconds_print_as_seconds_do() {
        for ms in [
            0,
            5,
            10,
            100,
            120,
            123,
            1000,
            1001,
            1_700_000_000_000,
            1_700_000_000_123,
            1_700_000_000_620,
            1_700_000_000_007,
        ] {
            let (mut a, mut b) = (String::new(), String::new());
            write_ms_as_seconds(&mut a, ms);
            write_f64(&mut b, ms as f64 / 1000.0);
            assert_eq!(a, b, "{ms}");
        }
    }

    #[test]
    fn canonical_numbers_follow_the_openmetrics_examples() {
        let cases: [(f64, &str); 22] = [
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.002, "0.002"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.9, "0.9"),
            (0.95, "0.95"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e10, "1e+10"),
            (1.1e23, "1.1e+23"),
            (f64::INFINITY, "+Inf"),
            (-2.5, "-2.5"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_canonical(&mut s, v);
            assert_eq!(s, want, "{v}");
        }
    }

    #[test]
    fn openmetrics_renders_byte_for_byte() {
        let mem = crate::exposition::tests::sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let out = render_string(&Scrape {
            format: crate::exposition::Format::OpenMetrics,
            ..Scrape::new(s, "z")
        })
        .unwrap();
        let want = r##"# TYPE http_requests counter
# HELP http_requests Requests.
http_requests_total{code="200"} 3
http_requests_created{code="200"} 1700000000.123
http_requests_total{code="a\"b\\\n"} 0.5
http_requests_created{code="a\"b\\\n"} 1700000000.623
# TYPE kong_bandwidth_bytes unknown
# UNIT kong_bandwidth_bytes bytes
kong_bandwidth_bytes 42
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
# HELP temperature_celsius Say \"hot\"\\ or\ncold.
temperature_celsius -1.5
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
# HELP latency_seconds Latency.
latency_seconds_bucket{route="/",le="0.005"} 0
latency_seconds_bucket{route="/",le="0.1"} 1
latency_seconds_bucket{route="/",le="1.0"} 2
latency_seconds_bucket{route="/",le="+Inf"} 3
latency_seconds_sum{route="/"} 5.55
latency_seconds_count{route="/"} 3
latency_seconds_created{route="/"} 1700000000.123
# TYPE latency_seconds_quantiles summary
# HELP latency_seconds_quantiles Latency.
latency_seconds_quantiles{route="/",quantile="0.5"} 0.501759
latency_seconds_quantiles{route="/",quantile="0.9"} 5.013503
latency_seconds_quantiles{route="/",quantile="0.99"} 5.013503
latency_seconds_quantiles{route="/",quantile="0.999"} 5.013503
latency_seconds_quantiles{route="/",quantile="1.0"} 5.013503
latency_seconds_quantiles_sum{route="/"} 5.55
latency_seconds_quantiles_count{route="/"} 3
latency_seconds_quantiles_created{route="/"} 1700000000.123
# TYPE size_bytes summary
size_bytes{quantile="0.5"} NaN
size_bytes{quantile="0.9"} NaN
size_bytes{quantile="0.99"} NaN
size_bytes{quantile="0.999"} NaN
size_bytes{quantile="1.0"} NaN
size_bytes_sum 0
size_bytes_count 0
size_bytes_created 1700000000.123
# TYPE nginx_metric_errors counter
# HELP nginx_metric_errors Metric updates and series refused or failed, by reason.
nginx_metric_errors_total{zone="z",reason="zone_full"} 0
nginx_metric_errors_created{zone="z",reason="zone_full"} 1234
nginx_metric_errors_total{zone="z",reason="series_limit"} 0
nginx_metric_errors_created{zone="z",reason="series_limit"} 1234
nginx_metric_errors_total{zone="z",reason="label_count"} 0
nginx_metric_errors_created{zone="z",reason="label_count"} 1234
nginx_metric_errors_total{zone="z",reason="invalid_label_value"} 0
nginx_metric_errors_created{zone="z",reason="invalid_label_value"} 1234
nginx_metric_errors_total{zone="z",reason="invalid_value"} 0
nginx_metric_errors_created{zone="z",reason="invalid_value"} 1234
nginx_metric_errors_total{zone="z",reason="bad_handle"} 0
nginx_metric_errors_created{zone="z",reason="bad_handle"} 1234
nginx_metric_errors_total{zone="z",reason="lua"} 0
nginx_metric_errors_created{zone="z",reason="lua"} 1234
nginx_metric_errors_total{zone="z",reason="stale_handle"} 0
nginx_metric_errors_created{zone="z",reason="stale_handle"} 1234
nginx_metric_errors_total{zone="z",reason="invalid_exemplar"} 0
nginx_metric_errors_created{zone="z",reason="invalid_exemplar"} 1234
# TYPE nginx_metric_zone_bytes gauge
# UNIT nginx_metric_zone_bytes bytes
# HELP nginx_metric_zone_bytes Bytes of the metrics zone: used, in all, and freed but not reusable yet.
nginx_metric_zone_bytes{zone="z",state="used"} 19240
nginx_metric_zone_bytes{zone="z",state="capacity"} 524288
nginx_metric_zone_bytes{zone="z",state="waiting"} 0
# TYPE nginx_metric_series gauge
# HELP nginx_metric_series Series kept in the metrics zone.
nginx_metric_series{zone="z"} 6
# TYPE nginx_metric_lock_takeovers counter
# HELP nginx_metric_lock_takeovers Times the zone lock was taken over from a process that died holding it.
nginx_metric_lock_takeovers_total{zone="z"} 0
nginx_metric_lock_takeovers_created{zone="z"} 1234
# EOF
"##;
        assert_eq!(out, want);
    }

    #[test]
    fn text_summaries_and_options_render_byte_for_byte() {
        let mem = crate::exposition::tests::sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let mut out = String::new();
        write_zone(&mut out, &s, "z", None);
        let want = r##"# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{route="/",le="0.005"} 0
latency_seconds_bucket{route="/",le="0.1"} 1
latency_seconds_bucket{route="/",le="1"} 2
latency_seconds_bucket{route="/",le="+Inf"} 3
latency_seconds_sum{route="/"} 5.55
latency_seconds_count{route="/"} 3
# HELP latency_seconds_quantiles Latency.
# TYPE latency_seconds_quantiles summary
latency_seconds_quantiles{route="/",quantile="0.5"} 0.501759
latency_seconds_quantiles{route="/",quantile="0.9"} 5.013503
latency_seconds_quantiles{route="/",quantile="0.99"} 5.013503
latency_seconds_quantiles{route="/",quantile="0.999"} 5.013503
latency_seconds_quantiles{route="/",quantile="1"} 5.013503
latency_seconds_quantiles_sum{route="/"} 5.55
latency_seconds_quantiles_count{route="/"} 3
# HELP size_bytes 
# TYPE size_bytes summary
size_bytes{quantile="0.5"} NaN
size_bytes{quantile="0.9"} NaN
size_bytes{quantile="0.99"} NaN
size_bytes{quantile="0.999"} NaN
size_bytes{quantile="1"} NaN
size_bytes_sum 0
size_bytes_count 0
"##;
        assert!(out.contains(want), "{out}");
        // The text format has no units, no _created and no EOF; counters keep their name.
        assert!(out.contains("\nkong_bandwidth_bytes 42\n"));
        assert!(!out.contains("# UNIT") && !out.contains("_created") && !out.contains("# EOF"));
    }

    #[test]
    fn openmetrics_leaves_out_negative_sums() {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let mut h = crate::exposition::tests::spec("d", MetricType::Histogram, &[]);
        h.histogram = Some(HistogramSpec {
            buckets: vec![1.0],
            ..HistogramSpec::default()
        });
        h.quantiles = QuantileMode::Beside;
        let f = s.register(&h, ME).unwrap();
        let d = series_at(&s, f, &[] as &[&str], ME, 2000).unwrap();
        observe(&s.region(), d, -3.0, || ME).unwrap();
        let out = render_string(&Scrape {
            format: crate::exposition::Format::OpenMetrics,
            selection: Selection {
                names: vec!["d".into()],
                ..Selection::default()
            },
            ..Scrape::new(s, "z")
        })
        .unwrap();
        assert_eq!(
            out,
            "# TYPE d histogram\n\
             d_bucket{le=\"1.0\"} 1\n\
             d_bucket{le=\"+Inf\"} 1\n\
             d_created 2\n\
             # TYPE d_quantiles summary\n\
             d_quantiles{quantile=\"0.5\"} 0\n\
             d_quantiles{quantile=\"0.9\"} 0\n\
             d_quantiles{quantile=\"0.99\"} 0\n\
             d_quantiles{quantile=\"0.999\"} 0\n\
             d_quantiles{quantile=\"1.0\"} 0\n\
             d_quantiles_count 1\n\
             d_quantiles_created 2\n\
             # EOF\n"
        );
    }
}
