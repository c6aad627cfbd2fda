//! The `exposition` target's input and checks: arbitrary families (names, help, units,
//! label names and values, histogram bounds) and values (NaN, infinities, -0, huge)
//! go through the store's real registration and recording, then a zone walk renders
//! them with the real writers (text 0.0.4, OpenMetrics 1.0, JSON).
//!
//! A [`Tee`] between the walk and each writer keeps what the writer was handed. In the
//! process the target checks that every series made is handed over with its label
//! values, that the JSON (parsed by serde_json) holds exactly what was handed over, and
//! that the text outputs are well formed line by line with label values that unescape
//! back to the values handed over. With `FUZZ_DUMP_DIR` set, each input's three outputs
//! and the hand-over are written there as one JSON file for `fuzz/check_exposition.py`,
//! which parses them with the reference parsers (prometheus_client's text and
//! OpenMetrics parsers, Python's json) and compares (`scripts/fuzz.sh` replays the kept
//! corpus and what a run found through it).

use ngx_prometheus::config::identity::{ConstLabels, Identity};
use ngx_prometheus::exposition::collectors::COLLECTORS;
use ngx_prometheus::exposition::json::JsonSink;
use ngx_prometheus::exposition::model::{CounterValue, HistogramValue, SummaryValue};
use ngx_prometheus::exposition::openmetrics::OpenMetricsSink;
use ngx_prometheus::exposition::proto::{self, MetricFamily, MetricType as ProtoType};
use ngx_prometheus::exposition::protobuf::ProtobufSink;
use ngx_prometheus::exposition::text::TextSink;
use ngx_prometheus::exposition::{label_values, walk, ExposedType, Meta, Scrape, Sink};
use ngx_prometheus::metrics::family::QuantileMode;
use ngx_prometheus::metrics::store::{self, Found, Participant, SeriesOptions};
use ngx_prometheus::metrics::{
    counter, exemplar, gauge, FamilySpec, HistogramSpec, MetricType, Store,
};
use ngx_prometheus::shm::region::heap_words;
use ngx_prometheus::shm::Region;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ME: Participant<'static> = Participant {
    me: 1,
    alive: &|_| true,
};

/// One input, read from a small line language so that the kept seeds are readable
/// and can be written by hand (see [`Input::parse`] and `fuzz/corpus/exposition/`).
#[derive(Debug, Default)]
pub struct Input {
    pub zone: String,
    pub families: Vec<FamilyIn>,
    /// `prometheus_const_labels` words; an identity (and the build info family) when
    /// given and they parse.
    pub identity: bool,
    pub const_labels: Vec<String>,
    pub nginx_version: String,
}

#[derive(Debug)]
pub struct FamilyIn {
    pub name: String,
    pub help: String,
    pub kind: KindIn,
    pub labels: Vec<String>,
    pub unit: String,
    pub group: String,
    pub quantiles: u8,
    pub lowest: f64,
    pub highest: f64,
    pub precision: u8,
    pub buckets: Vec<f64>,
    pub exemplars: bool,
    pub native_only: bool,
    pub series: Vec<SeriesIn>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KindIn {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
pub struct SeriesIn {
    pub values: Vec<String>,
    pub created_ms: u64,
    pub ops: Vec<Op>,
}

/// A recording; each kind takes the ones it has (a counter adds, a gauge sets or
/// adds, a histogram observes).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Whole(u64),
    Float(f64),
    Set(f64),
    /// An update of this value carrying this exemplar id (raw bytes: hostile ids too).
    Exemplar(f64, [u8; 80], usize),
}

/// A word of the input language: `\s` is a space, `\t` a tab, `\n` a newline, `\e`
/// nothing (an empty word), `\xHH` a byte, `\\` a backslash; bytes that are not
/// UTF-8 become U+FFFD.
fn word(w: &[u8]) -> String {
    String::from_utf8_lossy(&word_bytes(w)).into_owned()
}

/// [`word`]'s bytes, before any UTF-8 check.
fn word_bytes(w: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(w.len());
    let mut i = 0;
    while i < w.len() {
        if w[i] == b'\\' && i + 1 < w.len() {
            i += 2;
            match w[i - 1] {
                b's' => out.push(b' '),
                b't' => out.push(b'\t'),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'e' => {}
                b'x' if i + 2 <= w.len() => {
                    let hex = std::str::from_utf8(&w[i..i + 2]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => out.push(b),
                        None => out.extend_from_slice(b"\\x"),
                    }
                    i += 2;
                }
                c => out.push(c),
            }
        } else {
            out.push(w[i]);
            i += 1;
        }
    }
    out
}

/// A number: Rust's syntax (`1.5`, `-0`, `1e308`, `NaN`, `inf`, `-inf`) or `0x` and the
/// 16 hex digits of its bits.
fn float(w: &str) -> f64 {
    match w.strip_prefix("0x") {
        Some(h) => f64::from_bits(u64::from_str_radix(h, 16).unwrap_or(0)),
        None => w.parse().unwrap_or(0.0),
    }
}

impl Input {
    /// One directive per line, words separated by single spaces (see [`word`]):
    ///
    /// ```text
    /// zone <name>
    /// identity <nginx version> [<const label word>...]
    /// counter|gauge|histogram <name> [<label name>...]   starts a family
    /// help <text>  unit <unit>  group <group>  quantiles off|beside|instead
    /// range <lowest> <highest> <precision>  buckets <bound>...   (histograms)
    /// series <created ms> [<label value>...]              starts a series
    /// inc <u64>  add <number>  set <number>               (counter, gauge)
    /// observe <number>                                    (histogram)
    /// exemplars  native_only                              (family options)
    /// exemplar <number> <id>                  (counter add, histogram observe, with an id)
    /// ```
    ///
    /// Anything else is skipped: every byte string is an input.
    pub fn parse(data: &[u8]) -> Input {
        let mut input = Input {
            zone: "z".into(),
            ..Input::default()
        };
        for line in data.split(|b| *b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"exemplar ") {
                let mut parts = rest.splitn(2, |b| *b == b' ');
                let v = float(&word(parts.next().unwrap_or_default()));
                let id = word_bytes(parts.next().unwrap_or_default());
                let mut buf = [0u8; 80];
                let n = id.len().min(buf.len());
                buf[..n].copy_from_slice(&id[..n]);
                if let Some(s) = input.families.last_mut().and_then(|f| f.series.last_mut()) {
                    s.ops.push(Op::Exemplar(v, buf, n));
                }
                continue;
            }
            let mut words = line.split(|b| *b == b' ').map(word);
            let Some(keyword) = words.next() else {
                continue;
            };
            let rest: Vec<String> = words.collect();
            let first = rest.first().cloned().unwrap_or_default();
            match keyword.as_str() {
                "zone" => input.zone = first,
                "identity" => {
                    input.identity = true;
                    input.nginx_version = first;
                    input.const_labels = rest.into_iter().skip(1).collect();
                }
                "counter" | "gauge" | "histogram" => input.families.push(FamilyIn {
                    name: first,
                    help: String::new(),
                    kind: match keyword.as_str() {
                        "counter" => KindIn::Counter,
                        "gauge" => KindIn::Gauge,
                        _ => KindIn::Histogram,
                    },
                    labels: rest.into_iter().skip(1).collect(),
                    unit: String::new(),
                    group: String::new(),
                    quantiles: 0,
                    lowest: 0.001,
                    highest: 60.0,
                    precision: 2,
                    buckets: vec![0.005, 0.1, 1.0],
                    exemplars: false,
                    native_only: false,
                    series: Vec::new(),
                }),
                _ => {
                    if let Some(f) = input.families.last_mut() {
                        f.set(&keyword, rest);
                    }
                }
            }
        }
        input
    }
}

impl FamilyIn {
    /// A family's or its last series' line.
    fn set(&mut self, keyword: &str, rest: Vec<String>) {
        let first = rest.first().cloned().unwrap_or_default();
        let op = match keyword {
            "help" => return self.help = rest.join(" "),
            "unit" => return self.unit = first,
            "group" => return self.group = first,
            "exemplars" => return self.exemplars = true,
            "native_only" => return self.native_only = true,
            "quantiles" => {
                self.quantiles = match first.as_str() {
                    "beside" => 1,
                    "instead" => 2,
                    _ => 0,
                };
                return;
            }
            "range" => {
                let n = |i: usize| rest.get(i).map(|w| float(w)).unwrap_or(0.0);
                self.lowest = n(0);
                self.highest = n(1);
                self.precision = rest.get(2).and_then(|w| w.parse().ok()).unwrap_or(0);
                return;
            }
            "buckets" => return self.buckets = rest.iter().map(|w| float(w)).collect(),
            "series" => {
                return self.series.push(SeriesIn {
                    created_ms: first.parse().unwrap_or(0),
                    values: rest.into_iter().skip(1).collect(),
                    ops: Vec::new(),
                })
            }
            "inc" => Op::Whole(first.parse().unwrap_or(0)),
            "add" | "observe" => Op::Float(float(&first)),
            "set" => Op::Set(float(&first)),
            _ => return,
        };
        if let Some(s) = self.series.last_mut() {
            s.ops.push(op);
        }
    }
}

/// One family as a writer was handed it.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyRec {
    pub name: String,
    pub help: String,
    pub kind: ExposedType,
    pub unit: String,
    pub label_names: Vec<String>,
    pub buckets: Vec<f64>,
    pub native_only: bool,
    pub series: Vec<(Vec<String>, PointRec)>,
}

/// A [`Point`], owned.
#[derive(Debug, Clone, PartialEq)]
pub enum PointRec {
    Counter {
        int: u64,
        float: f64,
        created: Option<u64>,
    },
    Gauge(f64),
    Histogram {
        cumulative: Vec<u64>,
        count: u64,
        sum: f64,
        quantiles: Vec<f64>,
        created: Option<u64>,
    },
    Summary {
        quantiles: Vec<f64>,
        count: u64,
        sum: f64,
        created: Option<u64>,
    },
}

/// Keeps what the walk hands to a writer, and hands it on.
pub struct Tee<S> {
    pub inner: S,
    pub families: Vec<FamilyRec>,
}

impl<S> Tee<S> {
    fn record(&mut self, labels: &[u8], p: PointRec) {
        let values = label_values(labels).map(str::to_string).collect();
        if let Some(f) = self.families.last_mut() {
            f.series.push((values, p));
        }
    }
}

impl<S: Sink> Sink for Tee<S> {
    const SUMMARY_FAMILIES: bool = S::SUMMARY_FAMILIES;

    fn family(&mut self, m: &Meta<'_>) {
        self.families.push(FamilyRec {
            name: m.name.to_string(),
            help: m.help.to_string(),
            kind: m.kind,
            unit: m.unit.to_string(),
            label_names: m.label_names.to_vec(),
            buckets: m.buckets.to_vec(),
            native_only: m.native_only,
            series: Vec::new(),
        });
        self.inner.family(m);
    }

    fn counter(&mut self, m: &Meta<'_>, labels: &[u8], c: &CounterValue) {
        self.record(
            labels,
            PointRec::Counter {
                int: c.int,
                float: c.float,
                created: c.created,
            },
        );
        self.inner.counter(m, labels, c);
    }

    fn gauge(&mut self, m: &Meta<'_>, labels: &[u8], v: f64) {
        self.record(labels, PointRec::Gauge(v));
        self.inner.gauge(m, labels, v);
    }

    fn histogram(&mut self, m: &Meta<'_>, labels: &[u8], h: &HistogramValue<'_>) {
        self.record(
            labels,
            PointRec::Histogram {
                cumulative: h.cumulative.to_vec(),
                count: h.count,
                sum: h.sum,
                quantiles: h.quantiles.to_vec(),
                created: h.created,
            },
        );
        self.inner.histogram(m, labels, h);
    }

    fn summary(&mut self, m: &Meta<'_>, labels: &[u8], s: &SummaryValue<'_>) {
        self.record(
            labels,
            PointRec::Summary {
                quantiles: s.quantiles.to_vec(),
                count: s.count,
                sum: s.sum,
                created: s.created,
            },
        );
        self.inner.summary(m, labels, s);
    }

    fn end_family(&mut self, m: &Meta<'_>) {
        self.inner.end_family(m);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}

/// What the input made: each registered family's name and the label values of the
/// series it got (constant labels first).
type Made = Vec<(String, BTreeSet<Vec<String>>)>;

const MAX_FAMILIES: usize = 8;
const MAX_SERIES: usize = 8;
const MAX_OPS: usize = 16;

fn spec_of(f: &FamilyIn) -> FamilySpec {
    let t = match f.kind {
        KindIn::Counter => MetricType::Counter,
        KindIn::Gauge => MetricType::Gauge,
        KindIn::Histogram => MetricType::Histogram,
    };
    let labels: Vec<&str> = f.labels.iter().map(String::as_str).collect();
    let mut spec = FamilySpec::new(&f.name, t, &labels);
    spec.help = f.help.clone();
    spec.unit = f.unit.clone();
    spec.group = f.group.clone();
    spec.exemplars = f.exemplars;
    spec.native_only = f.native_only;
    spec.quantiles = match f.quantiles % 3 {
        1 => QuantileMode::Beside,
        2 => QuantileMode::Instead,
        _ => QuantileMode::Off,
    };
    if t == MetricType::Histogram {
        spec.histogram = Some(HistogramSpec {
            lowest: f.lowest,
            highest: f.highest,
            precision: f.precision,
            buckets: f.buckets.clone(),
        });
    }
    spec
}

/// Counts `v` in histogram series `h` the way the FFI path does, making the chunk it
/// falls in on a first miss.
fn observe(store: &Store<'_>, h: u64, v: f64) -> bool {
    store::observe(&store.region(), h, v, || ME).is_ok()
}

/// Registers and records everything the input holds that the store accepts.
fn fill(store: &Store<'_>, input: &Input, consts: &[String]) -> Made {
    let r = store.region();
    let mut made = Made::new();
    for f in input.families.iter().take(MAX_FAMILIES) {
        let spec = spec_of(f);
        let Ok(family) = store.register(&spec, ME) else {
            continue;
        };
        let mut series = BTreeSet::new();
        for s in f.series.iter().take(MAX_SERIES) {
            let options = SeriesOptions {
                created_ms: Some(s.created_ms),
            };
            let Ok(Found { handle: h, .. }) = store.find_or_make(family, &s.values, ME, options)
            else {
                continue;
            };
            let mut key: Vec<String> = consts.to_vec();
            key.extend(s.values.iter().cloned());
            series.insert(key);
            for op in s.ops.iter().take(MAX_OPS) {
                // Refusals (a negative increment, NaN) are the store's business; the
                // writers get whatever it holds.
                let _ = match (f.kind, *op) {
                    (KindIn::Counter, Op::Whole(n)) => counter::inc(&r, h, n).is_ok(),
                    (KindIn::Counter, Op::Float(v) | Op::Set(v)) => counter::add(&r, h, v).is_ok(),
                    (KindIn::Gauge, Op::Set(v)) => gauge::set(&r, h, v).is_ok(),
                    (KindIn::Gauge, Op::Float(v)) => gauge::add(&r, h, v).is_ok(),
                    (KindIn::Gauge, Op::Whole(n)) => gauge::set(&r, h, n as f64).is_ok(),
                    (KindIn::Histogram, Op::Float(v) | Op::Set(v)) => observe(store, h, v),
                    (KindIn::Histogram, Op::Whole(n)) => observe(store, h, n as f64),
                    (KindIn::Gauge, Op::Exemplar(v, ..)) => gauge::set(&r, h, v).is_ok(),
                    // As the FFI does: the update, then the exemplar if it went in.
                    (kind, Op::Exemplar(v, id, n)) => {
                        let histogram = kind == KindIn::Histogram;
                        let done = if histogram {
                            observe(store, h, v)
                        } else {
                            counter::add(&r, h, v).is_ok()
                        };
                        if done {
                            let kept =
                                exemplar::record_after_update(&r, h, histogram, v, &id[..n], 1);
                            // Refused exactly when the id cannot be shown.
                            let valid = exemplar::check_id(&id[..n]).is_ok();
                            assert!(kept.is_ok() || !valid, "a valid id refused");
                        }
                        done
                    }
                };
            }
        }
        // Declaring a family again (same shape) gets the one registered first.
        match made.iter_mut().find(|(n, _)| *n == spec.name) {
            Some((_, known)) => known.extend(series),
            None => made.push((spec.name.clone(), series)),
        }
    }
    made
}

/// The three renders of one input, and what each writer was handed.
pub struct Rendered {
    pub text: String,
    pub openmetrics: String,
    pub json: String,
    /// Length-delimited `MetricFamily` messages.
    pub protobuf: Vec<u8>,
    /// Handed to the text writers (both get the same).
    pub families: Vec<FamilyRec>,
    /// Handed to the JSON writer (quantiles inside histograms, no summary families).
    pub json_families: Vec<FamilyRec>,
    pub made: Made,
}

pub fn render(input: &Input) -> Rendered {
    let mem = heap_words(1 << 16);
    let store = Store::format(Region::new(&mem), 1_700_000_000).expect("a fresh zone");
    let identity = if input.identity {
        let words: Vec<&str> = input.const_labels.iter().map(String::as_str).collect();
        let vars = [("node_id", "n-1"), ("hostname", "h")];
        ConstLabels::parse(&words, &vars)
            .ok()
            .map(|labels| Identity {
                labels,
                nginx_version: input.nginx_version.clone(),
            })
    } else {
        None
    };
    let consts = identity
        .as_ref()
        .map(|i| i.labels.values.clone())
        .unwrap_or_default();
    let made = fill(&store, input, &consts);
    let scrape = Scrape {
        identity: identity.as_ref(),
        ..Scrape::new(store, &input.zone)
    };
    let collectors = COLLECTORS;
    let mut text = Vec::new();
    let mut t = Tee {
        inner: TextSink::new(&mut text),
        families: Vec::new(),
    };
    walk(&mut t, &scrape, &collectors).expect("nothing is selected by name");
    let families = t.families;
    let mut openmetrics = Vec::new();
    let mut t = Tee {
        inner: OpenMetricsSink::new(&mut openmetrics),
        families: Vec::new(),
    };
    walk(&mut t, &scrape, &collectors).expect("nothing is selected by name");
    // Compared as printed: NaN (a quantile of no observations) equals itself there.
    let (a, b) = (format!("{:?}", t.families), format!("{families:?}"));
    assert_eq!(a, b, "two walks of an idle zone differ");
    let mut json = Vec::new();
    let mut t = Tee {
        inner: JsonSink::new(&mut json, &input.zone),
        families: Vec::new(),
    };
    walk(&mut t, &scrape, &collectors).expect("nothing is selected by name");
    let json_families = t.families;
    let mut protobuf = Vec::new();
    walk(&mut ProtobufSink::new(&mut protobuf), &scrape, &collectors)
        .expect("nothing is selected by name");
    let utf8 = |b: Vec<u8>| String::from_utf8(b).expect("the text formats are UTF-8");
    Rendered {
        text: utf8(text),
        openmetrics: utf8(openmetrics),
        json: utf8(json),
        protobuf,
        families,
        json_families,
        made,
    }
}

/// Every series made reaches the writers with its label values, once.
pub fn check_handed_over(r: &Rendered) {
    for (name, series) in &r.made {
        let f = r
            .families
            .iter()
            .find(|f| &f.name == name)
            .unwrap_or_else(|| panic!("family {name:?} was not written"));
        let got: Vec<Vec<String>> = f.series.iter().map(|(v, _)| v.clone()).collect();
        let set: BTreeSet<Vec<String>> = got.iter().cloned().collect();
        assert_eq!(set.len(), got.len(), "{name}: a series written twice");
        assert_eq!(&set, series, "{name}: series written != series made");
        for (v, _) in &f.series {
            assert_eq!(v.len(), f.label_names.len(), "{name}: label count");
        }
    }
}

fn number(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        json!(v)
    }
}

fn numbers(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|x| number(*x)).collect())
}

pub fn point_json(p: &PointRec) -> Value {
    match p {
        PointRec::Counter {
            int,
            float,
            created,
        } => json!({"type": "counter", "int": int, "float": number(*float), "created": created}),
        PointRec::Gauge(v) => json!({"type": "gauge", "value": number(*v)}),
        PointRec::Histogram {
            cumulative,
            count,
            sum,
            quantiles,
            created,
        } => json!({"type": "histogram", "cumulative": cumulative, "count": count,
                    "sum": number(*sum), "quantiles": numbers(quantiles), "created": created}),
        PointRec::Summary {
            quantiles,
            count,
            sum,
            created,
        } => json!({"type": "summary", "quantiles": numbers(quantiles), "count": count,
                    "sum": number(*sum), "created": created}),
    }
}

pub fn families_json(fams: &[FamilyRec]) -> Value {
    Value::Array(
        fams.iter()
            .map(|f| {
                json!({
                    "name": f.name, "help": f.help, "kind": f.kind.as_str(), "unit": f.unit,
                    "label_names": f.label_names, "buckets": numbers(&f.buckets),
                    "series": f.series.iter().map(|(v, p)| json!({"labels": v, "point": point_json(p)}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// The JSON document, parsed by serde_json, holds what its writer was handed.
pub fn check_json(r: &Rendered) {
    let doc: Value = serde_json::from_str(&r.json)
        .unwrap_or_else(|e| panic!("JSON does not parse: {e}\n{}", r.json));
    let fams = doc["families"].as_array().expect("families");
    assert_eq!(fams.len(), r.json_families.len(), "family count");
    let same = |got: &Value, want: f64, what: &str| {
        if want.is_finite() {
            let g = got
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: {got} for {want}"));
            assert!(g == want, "{what}: {g} != {want}");
        } else {
            assert!(got.is_null(), "{what}: {got} for {want}");
        }
    };
    for (f, want) in fams.iter().zip(&r.json_families) {
        assert_eq!(f["name"], want.name);
        assert_eq!(f["help"], want.help);
        assert_eq!(f["unit"], want.unit);
        assert_eq!(f["labels"], json!(want.label_names));
        let series = f["series"].as_array().expect("series");
        assert_eq!(
            series.len(),
            want.series.len(),
            "{}: series count",
            want.name
        );
        for (s, (values, p)) in series.iter().zip(&want.series) {
            let labels = s["labels"].as_object().expect("labels");
            assert_eq!(labels.len(), values.len(), "{}: label count", want.name);
            for (n, v) in want.label_names.iter().zip(values) {
                assert_eq!(labels.get(n), Some(&json!(v)), "{}: label {n}", want.name);
            }
            match p {
                PointRec::Counter { int, float, .. } => {
                    if *float == 0.0 {
                        assert_eq!(s["value"].as_u64(), Some(*int), "{}", want.name);
                    } else {
                        same(&s["value"], *int as f64 + float, &want.name);
                    }
                }
                PointRec::Gauge(v) => same(&s["value"], *v, &want.name),
                PointRec::Histogram {
                    cumulative,
                    count,
                    sum,
                    ..
                } => {
                    assert_eq!(s["count"].as_u64(), Some(*count));
                    same(&s["sum"], *sum, &want.name);
                    let b = s["buckets"].as_array().expect("buckets");
                    assert_eq!(b.len(), cumulative.len());
                    for ((b, c), le) in b.iter().zip(cumulative).zip(&want.buckets) {
                        assert_eq!(b["count"].as_u64(), Some(*c));
                        same(&b["le"], *le, "le");
                    }
                }
                PointRec::Summary { count, sum, .. } => {
                    assert_eq!(s["count"].as_u64(), Some(*count));
                    same(&s["sum"], *sum, &want.name);
                }
            }
        }
    }
}

/// A sample line's name, labels (unescaped) and value.
type Sample<'l> = (&'l str, Vec<(&'l str, String)>, &'l str);

/// One sample line's name, labels (unescaped) and value, or why it is malformed. A
/// well-formedness check of the writers' own output, not a parser of the format: the
/// reference parsers read the outputs in `check_exposition.py`.
fn sample_line(line: &str) -> Result<Sample<'_>, String> {
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad sample name".into());
    }
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            let eq = rest.find('=').ok_or("label without '='")?;
            let n = &rest[..eq];
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {n:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().ok_or("trailing backslash")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        c => return Err(format!("unknown escape \\{c}")),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((n, value));
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else {
                rest = rest.strip_prefix('}').ok_or("labels not closed")?;
                break;
            }
        }
    }
    let mut value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    // An exemplar after the value (OpenMetrics): `# {trace_id="..."} <value> <time>`.
    if let Some((v, exemplar)) = value.split_once(" # ") {
        value = v;
        let (rest, time) = exemplar.rsplit_once(' ').ok_or("exemplar without a time")?;
        time.parse::<f64>()
            .map_err(|_| format!("bad exemplar time {time:?}"))?;
        let line = format!("exemplar{rest}");
        let (_, labels, _) = sample_line(&line)?;
        if labels.len() != 1 || labels[0].0 != "trace_id" || labels[0].1.is_empty() {
            return Err(format!("bad exemplar {exemplar:?}"));
        }
        if !(name.ends_with("_bucket") || name.ends_with("_total")) {
            return Err(format!("an exemplar on {name}"));
        }
    }
    let ok = matches!(value, "NaN" | "+Inf" | "-Inf")
        || (value.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            && value.parse::<f64>().is_ok());
    if !ok {
        return Err(format!("bad value {value:?}"));
    }
    Ok((name, labels, value))
}

/// The text outputs: every line a comment the format knows or a well-formed sample
/// whose labels (less `le` and `quantile`) are those of a series handed over, and
/// every series handed over on some line.
pub fn check_text(out: &str, om: bool, families: &[FamilyRec]) {
    let body = if om {
        out.strip_suffix("# EOF\n")
            .unwrap_or_else(|| panic!("OpenMetrics without # EOF at the end:\n{out}"))
    } else {
        out
    };
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "last line unterminated"
    );
    let mut want: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
    for f in families {
        for (values, _) in &f.series {
            want.insert(
                f.label_names
                    .iter()
                    .cloned()
                    .zip(values.iter().cloned())
                    .collect(),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for line in body.lines() {
        if let Some(c) = line.strip_prefix("# ") {
            let known = ["HELP ", "TYPE ", "UNIT "].iter().any(|p| c.starts_with(p));
            assert!(known, "unknown comment line {line:?}");
            assert!(!(om && c == "EOF"), "# EOF before the end");
            continue;
        }
        let (_, labels, _) = sample_line(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let own: Vec<(String, String)> = labels
            .into_iter()
            .filter(|(n, _)| *n != "le" && *n != "quantile")
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        assert!(
            want.contains(&own),
            "labels of {line:?} are no series' labels"
        );
        seen.insert(own);
    }
    assert_eq!(seen, want, "series missing from the output");
}

/// Writes one rendered input for `check_exposition.py` when `FUZZ_DUMP_DIR` is set.
pub fn dump(data: &[u8], r: &Rendered) {
    static DIR: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let Some(dir) = DIR.get_or_init(|| std::env::var("FUZZ_DUMP_DIR").ok()) else {
        return;
    };
    // FNV-1a of the input names its file: the same input twice is one file.
    let h = data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    let doc = json!({
        "text": r.text, "openmetrics": r.openmetrics, "json": r.json,
        "families": families_json(&r.families),
        "json_families": families_json(&r.json_families),
    });
    let path = format!("{dir}/{h:016x}.json");
    std::fs::write(&path, doc.to_string()).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// The protobuf output, decoded by prost, holds what the text writers were handed:
/// every family with series (in order, with its type, help and unit), each series'
/// labels and values bit for bit, classic buckets; and a well-formed native histogram
/// in every histogram whose count is its zero count plus its buckets.
pub fn check_protobuf(r: &Rendered) {
    let mut bytes = &r.protobuf[..];
    let mut decoded = Vec::new();
    while !bytes.is_empty() {
        decoded.push(MetricFamily::decode_length_delimited(&mut bytes).expect("a family"));
    }
    let written: Vec<&FamilyRec> = r.families.iter().filter(|f| !f.series.is_empty()).collect();
    let names = |v: Vec<&str>| v.join(" ");
    assert_eq!(
        names(decoded.iter().map(|f| f.name()).collect()),
        names(written.iter().map(|f| f.name.as_str()).collect()),
        "families"
    );
    for (d, f) in decoded.iter().zip(written) {
        let want_type = match f.kind {
            ExposedType::Counter => ProtoType::Counter,
            ExposedType::Gauge => ProtoType::Gauge,
            ExposedType::Histogram => ProtoType::Histogram,
            ExposedType::Summary => ProtoType::Summary,
        };
        assert_eq!(d.r#type(), want_type, "{}", f.name);
        assert_eq!(d.help(), f.help);
        assert_eq!(d.unit(), f.unit);
        assert_eq!(d.metric.len(), f.series.len(), "{}", f.name);
        for (m, (values, p)) in d.metric.iter().zip(&f.series) {
            let labels: Vec<(&str, &str)> = m.label.iter().map(|l| (l.name(), l.value())).collect();
            let want: Vec<(&str, &str)> = f
                .label_names
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(String::as_str))
                .collect();
            assert_eq!(labels, want, "{}", f.name);
            let same = |a: f64, b: f64| assert_eq!(a.to_bits(), b.to_bits(), "{}", f.name);
            match p {
                PointRec::Counter {
                    int,
                    float,
                    created,
                } => {
                    let c = m.counter.as_ref().expect("a counter");
                    same(c.value(), *int as f64 + float);
                    assert_eq!(c.created_timestamp.as_ref().map(ms), *created);
                }
                PointRec::Gauge(v) => same(m.gauge.as_ref().expect("a gauge").value(), *v),
                PointRec::Histogram {
                    cumulative,
                    count,
                    sum,
                    created,
                    ..
                } => {
                    let h = m.histogram.as_ref().expect("a histogram");
                    assert_eq!(h.sample_count(), *count);
                    same(h.sample_sum(), *sum);
                    assert_eq!(h.created_timestamp.as_ref().map(ms), *created);
                    let mut classic: Vec<(u64, u64)> = h
                        .bucket
                        .iter()
                        .map(|b| (b.upper_bound().to_bits(), b.cumulative_count()))
                        .collect();
                    // A `+Inf` bucket is sent only to carry an exemplar: it is the count.
                    if classic.last().map(|b| b.0) == Some(f64::INFINITY.to_bits()) {
                        assert_eq!(classic.pop().map(|b| b.1), Some(*count));
                    }
                    let want: Vec<(u64, u64)> = if f.native_only {
                        Vec::new()
                    } else {
                        f.buckets
                            .iter()
                            .map(|b| b.to_bits())
                            .zip(cumulative.iter().copied())
                            .collect()
                    };
                    assert_eq!(classic, want, "{}", f.name);
                    check_native(h);
                }
                PointRec::Summary {
                    quantiles,
                    count,
                    sum,
                    created,
                } => {
                    let s = m.summary.as_ref().expect("a summary");
                    assert_eq!(s.sample_count(), *count);
                    same(s.sample_sum(), *sum);
                    assert_eq!(s.created_timestamp.as_ref().map(ms), *created);
                    let got: Vec<u64> = s.quantile.iter().map(|q| q.value().to_bits()).collect();
                    let want: Vec<u64> = quantiles.iter().map(|q| q.to_bits()).collect();
                    assert_eq!(got, want);
                }
            }
        }
    }
}

fn ms(t: &prost_types::Timestamp) -> u64 {
    t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000
}

/// Spans and deltas describe buckets of increasing index and counts that are never
/// negative, adding up with the zero bucket to the count.
fn check_native(h: &proto::Histogram) {
    assert!((-4..=8).contains(&h.schema()), "schema {}", h.schema());
    assert!(
        h.zero_threshold() > 0.0,
        "Prometheus 2.42 would read it as classic"
    );
    let lengths: u64 = h.positive_span.iter().map(|s| u64::from(s.length())).sum();
    assert_eq!(lengths, h.positive_delta.len() as u64);
    assert!(h.negative_span.is_empty() && h.negative_delta.is_empty());
    let (mut count, mut total) = (0i64, h.zero_count());
    for (n, s) in h.positive_span.iter().enumerate() {
        assert!(s.length() > 0, "an empty span");
        assert!(n == 0 || s.offset() >= 0, "spans go up");
    }
    for d in &h.positive_delta {
        count += d;
        assert!(count >= 0, "a negative bucket count");
        total += count as u64;
    }
    assert_eq!(total, h.sample_count(), "count = zero count + buckets");
}
