//! The protobuf exposition: length-delimited `io.prometheus.client.MetricFamily`
//! messages ([`super::proto`], client_model's `metrics.proto`), encoded by prost.
//! Histograms carry their classic buckets and their native buckets ([`super::native`])
//! in one message; what the text formats show is all here too (constant labels,
//! creation times as `created_timestamp`, help, unit).

use super::model::{label_values, ExposedType, Meta, Sink};
use super::model::{CounterValue, Exemplar, HistogramValue, NativeHistogramValue, SummaryValue};
use super::proto::{
    self, Bucket, BucketSpan, Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType,
    Quantile, Summary,
};
use prost::Message;

pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Writes each family as one `MetricFamily`, its length in front (a varint), as
/// client_golang's `expfmt` does. A family's metrics are encoded one by one after its
/// name, help and type (field 4 each; the unit, field 5, last), which is what prost
/// makes of the whole message, without holding every series as a message at once. A
/// family without series is left out (client_golang's `Gather` drops them too).
pub struct ProtobufSink<'o> {
    out: &'o mut Vec<u8>,
    /// The current family's message, without its length.
    family: Vec<u8>,
    series: usize,
    /// Label pairs of the last series, kept for their strings' buffers.
    labels: Vec<LabelPair>,
}

impl<'o> ProtobufSink<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> ProtobufSink<'o> {
        ProtobufSink {
            out,
            family: Vec::new(),
            series: 0,
            labels: Vec::new(),
        }
    }

    /// A metric with the series' labels.
    fn metric(&mut self, m: &Meta<'_>, key: &[u8]) -> Metric {
        let mut label = std::mem::take(&mut self.labels);
        label.resize_with(m.label_names.len(), LabelPair::default);
        for ((pair, name), value) in label.iter_mut().zip(m.label_names).zip(label_values(key)) {
            set(&mut pair.name, name);
            set(&mut pair.value, value);
        }
        Metric {
            label,
            ..Metric::default()
        }
    }

    fn emit(&mut self, metric: Metric) {
        prost::encoding::message::encode(4, &metric, &mut self.family);
        self.series += 1;
        self.labels = metric.label;
    }
}

/// Sets an optional string field, reusing its buffer.
fn set(field: &mut Option<String>, v: &str) {
    let s = field.get_or_insert_with(String::new);
    s.clear();
    s.push_str(v);
}

/// Milliseconds since the epoch as a `google.protobuf.Timestamp`.
fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: (ms % 1000) as i32 * 1_000_000,
    }
}

/// An exemplar as client_model carries it: its id as label `trace_id`, timestamped.
fn exemplar(e: &Exemplar) -> proto::Exemplar {
    proto::Exemplar {
        label: vec![LabelPair {
            name: Some(crate::metrics::exemplar::LABEL.to_string()),
            value: Some(e.id().to_string()),
        }],
        value: Some(e.value),
        timestamp: Some(timestamp(e.ms)),
    }
}

fn classic(h: &HistogramValue<'_>, bounds: &[f64]) -> proto::Histogram {
    let at = |i: usize| h.exemplars.get(i).and_then(Option::as_ref).map(exemplar);
    let mut bucket: Vec<Bucket> = bounds
        .iter()
        .zip(h.cumulative)
        .enumerate()
        .map(|(i, (le, c))| Bucket {
            cumulative_count: Some(*c),
            upper_bound: Some(*le),
            exemplar: at(i),
            ..Bucket::default()
        })
        .collect();
    // `+Inf` is left out, as client_golang does (it is the count), unless it carries
    // an exemplar: then it is sent, as client_golang does too.
    if let Some(e) = at(h.cumulative.len()) {
        bucket.push(Bucket {
            cumulative_count: Some(h.count),
            upper_bound: Some(f64::INFINITY),
            exemplar: Some(e),
            ..Bucket::default()
        });
    }
    proto::Histogram {
        sample_count: Some(h.count),
        sample_sum: Some(h.sum),
        bucket,
        created_timestamp: h.created.map(timestamp),
        ..proto::Histogram::default()
    }
}

impl Sink for ProtobufSink<'_> {
    const SUMMARY_FAMILIES: bool = true;
    const NATIVE_HISTOGRAMS: bool = true;

    fn family(&mut self, m: &Meta<'_>) {
        self.family.clear();
        self.series = 0;
        let header = MetricFamily {
            name: Some(m.name.to_string()),
            help: (!m.help.is_empty()).then(|| m.help.to_string()),
            r#type: Some(match m.kind {
                ExposedType::Counter => MetricType::Counter,
                ExposedType::Gauge => MetricType::Gauge,
                ExposedType::Histogram => MetricType::Histogram,
                ExposedType::Summary => MetricType::Summary,
            } as i32),
            ..MetricFamily::default()
        };
        header
            .encode(&mut self.family)
            .expect("a Vec grows as needed");
    }

    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue) {
        let mut metric = self.metric(m, labels);
        metric.counter = Some(Counter {
            value: Some(c.int as f64 + c.float),
            exemplar: c.exemplar.as_ref().map(exemplar),
            created_timestamp: c.created.map(timestamp),
        });
        self.emit(metric);
    }

    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64) {
        let mut metric = self.metric(m, labels);
        metric.gauge = Some(Gauge { value: Some(v) });
        self.emit(metric);
    }

    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>) {
        let mut metric = self.metric(m, labels);
        metric.histogram = Some(classic(h, m.buckets));
        self.emit(metric);
    }

    fn native_histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &NativeHistogramValue<'_>) {
        let mut metric = self.metric(m, labels);
        let n = h.native;
        let mut classic = classic(&h.classic, m.buckets);
        // The native histogram's own exemplars (field 16, read by Prometheus from
        // 2.47 on): the buckets', in bucket order.
        let exemplars = classic
            .bucket
            .iter()
            .filter_map(|b| b.exemplar.clone())
            .collect();
        if m.native_only {
            // Native only: no classic buckets, so no series per bucket in Prometheus
            // (nor the classic buckets' exemplars, which Prometheus 2.42 reads).
            classic.bucket.clear();
        }
        metric.histogram = Some(proto::Histogram {
            schema: Some(n.schema),
            zero_threshold: Some(n.zero_threshold),
            zero_count: Some(n.zero_count),
            positive_span: n
                .spans
                .iter()
                .map(|&(offset, length)| BucketSpan {
                    offset: Some(offset),
                    length: Some(length),
                })
                .collect(),
            positive_delta: n.deltas.clone(),
            exemplars,
            ..classic
        });
        self.emit(metric);
    }

    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>) {
        let mut metric = self.metric(m, labels);
        metric.summary = Some(Summary {
            sample_count: Some(s.count),
            sample_sum: Some(s.sum),
            quantile: crate::metrics::histogram::SUMMARY_QUANTILES
                .iter()
                .zip(s.quantiles)
                .map(|(q, v)| Quantile {
                    quantile: Some(*q),
                    value: Some(*v),
                })
                .collect(),
            created_timestamp: s.created.map(timestamp),
        });
        self.emit(metric);
    }

    fn end_family(&mut self, m: &Meta<'_>) {
        if self.series == 0 {
            return;
        }
        if !m.unit.is_empty() {
            prost::encoding::string::encode(5, &m.unit.to_string(), &mut self.family);
        }
        prost::encoding::encode_varint(self.family.len() as u64, self.out);
        self.out.extend_from_slice(&self.family);
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::tests::{render_string, sample_zone, T0};
    use crate::exposition::{render, Format, Scrape, Selection};
    use crate::metrics::Store;
    use crate::shm::Region;

    /// Decodes a length-delimited stream of families.
    pub(crate) fn decode(mut bytes: &[u8]) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(MetricFamily::decode_length_delimited(&mut bytes).unwrap());
        }
        out
    }

    fn scrape(names: &[&str]) -> (Vec<u8>, Vec<MetricFamily>) {
        let mem = sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let mut out = Vec::new();
        render(
            &mut out,
            &Scrape {
                format: Format::Protobuf,
                selection: Selection {
                    names: names.iter().map(|n| n.to_string()).collect(),
                    ..Selection::default()
                },
                ..Scrape::new(s, "z")
            },
        )
        .unwrap();
        let families = decode(&out);
        (out, families)
    }

    fn label(name: &str, value: &str) -> LabelPair {
        LabelPair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    /// The bytes are what prost makes of the whole message, length-delimited.
    fn delimited(families: &[MetricFamily]) -> Vec<u8> {
        let mut want = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut want).unwrap();
        }
        want
    }

    #[test]
    fn a_counter_family_byte_for_byte() {
        let (out, families) = scrape(&["kong_bandwidth_bytes"]);
        let created = Some(prost_types::Timestamp {
            seconds: (T0 / 1000) as i64,
            nanos: 123_000_000,
        });
        let want = MetricFamily {
            name: Some("kong_bandwidth_bytes".into()),
            help: None,
            r#type: Some(MetricType::Counter as i32),
            metric: vec![Metric {
                counter: Some(Counter {
                    value: Some(42.0),
                    exemplar: None,
                    created_timestamp: created,
                }),
                ..Metric::default()
            }],
            unit: Some("bytes".into()),
        };
        assert_eq!(families, vec![want.clone()]);
        assert_eq!(out, delimited(&[want]));
        // The wire bytes themselves, field by field (proto2: every set field is sent).
        let mut wire = vec![0x39]; // total length, 57
        wire.extend(b"\x0a\x14kong_bandwidth_bytes"); // 1: name
        wire.extend(b"\x18\x00"); // 3: type COUNTER
        wire.extend(b"\x22\x18"); // 4: metric, 24 bytes
        wire.extend(b"\x1a\x16"); //   3: counter, 22 bytes
        wire.extend(b"\x09"); //     1: value, double 42
        wire.extend(42f64.to_le_bytes());
        wire.extend(b"\x1a\x0b\x08"); //     3: created_timestamp, 11 bytes; 1: seconds
        wire.extend(b"\x80\xe2\xcf\xaa\x06"); //       1700000000 as a varint
        wire.extend(b"\x10\xc0\xa9\xd3\x3a"); //       2: nanos 123000000
        wire.extend(b"\x2a\x05bytes"); // 5: unit
        assert_eq!(wire[0] as usize, wire.len() - 1);
        assert_eq!(out, wire);
    }

    #[test]
    fn families_of_every_kind() {
        let (out, families) = scrape(&[]);
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        // The summary of a `beside` histogram follows it; families without series
        // (nginx's counters without stub_status) are left out.
        assert_eq!(
            names,
            vec![
                "http_requests_total",
                "kong_bandwidth_bytes",
                "temperature_celsius",
                "latency_seconds",
                "latency_seconds_quantiles",
                "size_bytes",
                "nginx_metric_errors_total",
                "nginx_metric_zone_bytes",
                "nginx_metric_series",
                "nginx_metric_lock_takeovers_total",
            ]
        );
        assert_eq!(out, delimited(&families));
        let requests = &families[0];
        assert_eq!(requests.help(), "Requests.");
        assert_eq!(requests.metric[1].label, vec![label("code", "a\"b\\\n")]);
        assert_eq!(requests.metric[1].counter.as_ref().unwrap().value(), 0.5);
        let gauge = &families[2];
        assert_eq!(gauge.help(), "Say \"hot\"\\ or\ncold.");
        assert_eq!(gauge.metric[0].gauge.unwrap().value(), -1.5);
        let latency = families[3].metric[0].histogram.as_ref().unwrap();
        assert_eq!(families[3].r#type(), MetricType::Histogram);
        assert_eq!(families[3].metric[0].label, vec![label("route", "/")]);
        assert_eq!((latency.sample_count(), latency.sample_sum()), (3, 5.55));
        let classic: Vec<(f64, u64)> = latency
            .bucket
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        assert_eq!(classic, vec![(0.005, 0), (0.1, 1), (1.0, 2)]);
        // Native: 0.05, 0.5 and 5 in schema 4 buckets (1 us ticks).
        assert_eq!(latency.schema(), 4);
        assert_eq!(latency.zero_threshold(), 0.5e-6);
        assert_eq!(latency.zero_count(), 0);
        let spans: Vec<(i32, u32)> = latency
            .positive_span
            .iter()
            .map(|s| (s.offset(), s.length()))
            .collect();
        // 0.05 and 5 are in buckets -69 and 38; 0.5 is a bound itself (2^-1, the top
        // of bucket -16), but its HDR slot's middle is above it: bucket -15.
        let idx = |v: f64| crate::exposition::native::bucket_of(4, v);
        assert_eq!((idx(0.05), idx(0.5), idx(5.0)), (-69, -16, 38));
        assert_eq!(spans, vec![(-69, 1), (53, 1), (52, 1)]);
        assert_eq!(latency.positive_delta, vec![1, 0, 0]);
        assert_eq!(
            latency.created_timestamp.unwrap().seconds,
            (T0 / 1000) as i64
        );
        let summary = families[4].metric[0].summary.as_ref().unwrap();
        assert_eq!(families[4].r#type(), MetricType::Summary);
        assert_eq!(summary.sample_count(), 3);
        let qs: Vec<f64> = summary.quantile.iter().map(|q| q.quantile()).collect();
        assert_eq!(qs, vec![0.5, 0.9, 0.99, 0.999, 1.0]);
        // `instead`: a summary only, NaN quantiles while empty.
        assert_eq!(families[5].r#type(), MetricType::Summary);
        let empty = families[5].metric[0].summary.as_ref().unwrap();
        assert!(empty.quantile.iter().all(|q| q.value().is_nan()));
        assert_eq!(
            families[8].metric[0].label,
            vec![label("zone", "z")],
            "the module's own families"
        );
    }

    #[test]
    fn an_empty_selection_is_an_empty_body() {
        let mem = sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let out = render_string(&Scrape {
            format: Format::Protobuf,
            selection: Selection {
                served: vec!["nothing_here".into()],
                ..Selection::default()
            },
            ..Scrape::new(s, "z")
        })
        .unwrap();
        assert_eq!(out, "");
    }

    fn exemplar_families() -> (Vec<u8>, Vec<MetricFamily>) {
        let mem = crate::exposition::tests::exemplar_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let mut out = Vec::new();
        render(
            &mut out,
            &Scrape {
                format: Format::Protobuf,
                selection: Selection {
                    groups: vec!["app".into()],
                    ..Selection::default()
                },
                ..Scrape::new(s, "z")
            },
        )
        .unwrap();
        let families = decode(&out);
        (out, families)
    }

    fn ex(id: &str, value: f64, ms: u64) -> Option<proto::Exemplar> {
        Some(proto::Exemplar {
            label: vec![label("trace_id", id)],
            value: Some(value),
            timestamp: Some(timestamp(ms)),
        })
    }

    #[test]
    fn exemplars_on_counters_and_classic_buckets() {
        let (out, families) = exemplar_families();
        assert_eq!(out, delimited(&families));
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            vec!["jobs_total", "plain_total", "req_seconds", "native_seconds"]
        );
        // The counter, byte for byte as prost writes the whole message.
        let want = MetricFamily {
            name: Some("jobs_total".into()),
            help: None,
            r#type: Some(MetricType::Counter as i32),
            metric: vec![Metric {
                label: vec![label("code", "200")],
                counter: Some(Counter {
                    value: Some(2.0),
                    exemplar: ex("abc", 2.0, T0 + 1000),
                    created_timestamp: Some(timestamp(T0)),
                }),
                ..Metric::default()
            }],
            unit: None,
        };
        assert_eq!(families[0], want);
        assert_eq!(
            families[1].metric[0].counter.as_ref().unwrap().exemplar,
            None
        );
        // Classic buckets carry theirs; `+Inf` is sent because it has one.
        let h = families[2].metric[0].histogram.as_ref().unwrap();
        let buckets: Vec<(f64, u64, Option<proto::Exemplar>)> = h
            .bucket
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count(), b.exemplar.clone()))
            .collect();
        assert_eq!(
            buckets,
            vec![
                (0.1, 2, ex("b-q", 0.07, T0 + 2)),
                (1.0, 3, None),
                (f64::INFINITY, 4, ex("inf", 5.0, T0 + 3)),
            ]
        );
        // The native histogram's own field holds them too, timestamped.
        assert_eq!(
            h.exemplars,
            vec![
                ex("b-q", 0.07, T0 + 2).unwrap(),
                ex("inf", 5.0, T0 + 3).unwrap()
            ]
        );
        assert!(!h.positive_span.is_empty());
    }

    #[test]
    fn native_only_leaves_the_classic_buckets_out() {
        let (_, families) = exemplar_families();
        let n = families[3].metric[0].histogram.as_ref().unwrap();
        assert!(n.bucket.is_empty(), "{n:?}");
        assert_eq!((n.sample_count(), n.sample_sum()), (1, 0.05));
        assert_eq!(n.positive_delta, vec![1]);
        assert!(n.zero_threshold() > 0.0);
        assert_eq!(n.exemplars, vec![ex("n", 0.05, T0 + 5).unwrap()]);
        // The other histogram keeps its classic buckets.
        assert_eq!(
            families[2].metric[0]
                .histogram
                .as_ref()
                .unwrap()
                .bucket
                .len(),
            3
        );
    }
}
