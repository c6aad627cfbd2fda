//! Exposition formats. Pure: writes what the store holds into a `String`.
//!
//! [`walk`] reads a zone once (families in declaration order, each series once, then
//! the module's own families) and hands every family and series to a [`Sink`], one per
//! format: [`text`] writes the Prometheus text format 0.0.4 and OpenMetrics 1.0,
//! [`json`] a JSON document for scripts. [`negotiate`] decides, from a request's
//! `Accept`, `Accept-Encoding` and query string, which format and families to serve.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

pub mod json;
pub mod negotiate;
pub mod text;

use crate::identity::{ConstLabels, Identity, REVISION, VERSION};
use crate::metrics::family::{FamilySpec, QuantileMode, BUILTIN_GROUP, QUANTILES_SUFFIX};
use crate::metrics::histogram::{self, Snapshot, SUMMARY_QUANTILES};
use crate::metrics::store::{decode_key, encode_key, Reason};
use crate::metrics::{counter, gauge, MetricType, Store};
use std::fmt;

pub use text::{write_zone, StubStatus, CONTENT_TYPE};

/// Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = CONTENT_TYPE;
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const JSON_CONTENT_TYPE: &str = "application/json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4, the default.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// JSON for scripts (`?format=json`).
    Json,
}

impl Format {
    /// `?format=` values.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "openmetrics" => Some(Format::OpenMetrics),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Json => JSON_CONTENT_TYPE,
        }
    }
}

/// Which families a scrape shows: those of the groups the location serves and the
/// request asks for, and of the names it asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Groups the location serves (`prometheus_metrics ... group=a,b`); empty: all.
    pub served: Vec<String>,
    /// Groups the request asks for (`?group=`); empty: every served group.
    pub groups: Vec<String>,
    /// Families the request asks for (`?name[]=`); empty: all.
    pub names: Vec<String>,
    /// How many worker processes nginx runs now (None: show every worker). The zone
    /// outlives a reload, so after one that lowered `worker_processes` the module's
    /// per-worker series (`nginx_worker_*` in the [`PROCESS_GROUP`]) of a worker that
    /// no longer exists would keep their last values for ever; they are left out.
    pub workers: Option<u32>,
}

impl Selection {
    fn group_served(&self, group: &str) -> bool {
        self.served.is_empty() || self.served.iter().any(|g| g == group)
    }

    fn group_selected(&self, group: &str) -> bool {
        self.group_served(group)
            && (self.groups.is_empty() || self.groups.iter().any(|g| g == group))
    }

    /// For a family whose series [`Selection::workers`] may retire: the position of its
    /// `worker` label and the number of workers running.
    fn worker_label(&self, spec: &FamilySpec) -> Option<(usize, u32)> {
        let workers = self.workers?;
        if spec.group() != PROCESS_GROUP || !spec.name.starts_with(WORKER_FAMILY_PREFIX) {
            return None;
        }
        let label = spec.label_names.iter().position(|l| l == "worker")?;
        Some((label, workers))
    }

    /// Whether the family `name` of `group` is shown.
    pub fn includes(&self, name: &str, group: &str) -> bool {
        self.group_selected(group)
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
    }

    /// Checks that every group and family asked for exists here; `families` holds the
    /// name and group of every family the zone would show, the module's own included.
    /// A family outside the served groups is reported as unknown: a location serving
    /// some groups does not tell what the others hold.
    pub fn check(&self, families: &[(&str, &str)]) -> Result<(), NotFound> {
        for g in &self.groups {
            let known = if self.served.is_empty() {
                g == BUILTIN_GROUP || families.iter().any(|(_, fg)| fg == g)
            } else {
                self.group_served(g)
            };
            if !known {
                return Err(NotFound::Group(g.clone()));
            }
        }
        for n in &self.names {
            match families.iter().find(|(name, _)| name == n) {
                Some((_, g)) if self.group_selected(g) => {}
                Some((_, g)) if self.group_served(g) => {
                    return Err(NotFound::NotInGroups {
                        family: n.clone(),
                        group: g.to_string(),
                    })
                }
                _ => return Err(NotFound::Family(n.clone())),
            }
        }
        Ok(())
    }
}

/// A group or family asked for that is not here (`404`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotFound {
    Group(String),
    Family(String),
    NotInGroups { family: String, group: String },
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotFound::Group(g) => write!(f, "unknown group \"{g}\""),
            NotFound::Family(n) => write!(f, "unknown metric family \"{n}\""),
            NotFound::NotInGroups { family, group } => write!(
                f,
                "metric family \"{family}\" is in group \"{group}\", which was not asked for"
            ),
        }
    }
}

/// How a family is exposed (a histogram may be exposed as a summary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A family as a sink sees it.
pub struct Meta<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: Kind,
    /// The declared type (a summary comes from a histogram).
    pub declared: MetricType,
    /// Empty when the family has none.
    pub unit: &'a str,
    pub group: &'a str,
    pub label_names: &'a [String],
    /// Histogram bucket bounds (`le`), `+Inf` excluded.
    pub buckets: &'a [f64],
}

/// One series' values, read once.
#[derive(Clone, Copy)]
pub enum Point<'a> {
    Counter {
        int: u64,
        float: f64,
        /// Creation time, ms since the epoch.
        created: Option<u64>,
    },
    Gauge(f64),
    Histogram {
        /// Cumulative count at each bucket bound.
        cumulative: &'a [u64],
        count: u64,
        sum: f64,
        /// At [`SUMMARY_QUANTILES`], when the sink wants them inline (JSON).
        quantiles: &'a [f64],
        created: Option<u64>,
    },
    Summary {
        /// At [`SUMMARY_QUANTILES`].
        quantiles: &'a [f64],
        count: u64,
        sum: f64,
        created: Option<u64>,
    },
}

/// A summary point kept for the summary family written after its histogram.
struct SummaryPoint {
    key: Vec<u8>,
    quantiles: Vec<f64>,
    count: u64,
    sum: f64,
    created: Option<u64>,
}

/// A format's writer.
pub trait Sink {
    /// Whether histograms with a quantile option get summary families (the exposition
    /// formats) rather than quantiles inside every histogram series (JSON).
    const SUMMARY_FAMILIES: bool;
    fn family(&mut self, m: &Meta<'_>);
    /// `labels` is a series key: the label values, see [`decode_key`].
    fn series(&mut self, m: &Meta<'_>, labels: &[u8], p: &Point<'_>);
    fn end_family(&mut self, m: &Meta<'_>);
    fn finish(&mut self);
}

/// Label values of a series key, as text (they were checked to be UTF-8 when the
/// series was made).
pub fn label_values(key: &[u8]) -> impl Iterator<Item = &str> {
    decode_key(key).map(|v| std::str::from_utf8(v).unwrap_or(""))
}

/// The module's own families, with the group they are in.
fn builtin_names(stub: bool, identity: bool) -> impl Iterator<Item = &'static str> {
    text::BUILTIN_FAMILIES.into_iter().filter(move |n| {
        (stub || !(n.starts_with("nginx_connections") || *n == "nginx_requests_total"))
            && (identity || *n != BUILD_INFO)
    })
}

/// The info family: always 1, its labels tell the build.
pub const BUILD_INFO: &str = "nginx_prometheus_build_info";

/// Whether a series (its encoded label values) belongs to a worker below `workers`;
/// a `worker` value that is no number is not ours to judge.
fn worker_runs(label: usize, workers: u32, key: &[u8]) -> bool {
    let value = decode_key(key).nth(label).unwrap_or_default();
    match std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(w) => w < workers,
        None => true,
    }
}

/// The group of the per-worker process families (`worker` label).
pub const PROCESS_GROUP: &str = "process";
/// How the module's per-worker families are named.
pub const WORKER_FAMILY_PREFIX: &str = "nginx_worker_";

/// Puts the constant labels in front of every series' own labels, for any sink.
struct WithConstLabels<'c, S> {
    inner: &'c mut S,
    consts: &'c ConstLabels,
    /// The constant values as a key prefix (keys are concatenated values).
    prefix: Vec<u8>,
    names: Vec<String>,
    key: Vec<u8>,
}

impl<S: Sink> Sink for WithConstLabels<'_, S> {
    const SUMMARY_FAMILIES: bool = S::SUMMARY_FAMILIES;

    fn family(&mut self, m: &Meta<'_>) {
        self.names = self.consts.family_names(m.label_names);
        self.inner.family(&Meta {
            label_names: &self.names,
            ..*m
        });
    }

    fn series(&mut self, m: &Meta<'_>, labels: &[u8], p: &Point<'_>) {
        self.key.clear();
        self.key.extend_from_slice(&self.prefix);
        self.key.extend_from_slice(labels);
        let meta = Meta {
            label_names: &self.names,
            ..*m
        };
        self.inner.series(&meta, &self.key, p);
    }

    fn end_family(&mut self, m: &Meta<'_>) {
        self.inner.end_family(&Meta {
            label_names: &self.names,
            ..*m
        });
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}

/// Renders `store` (zone `zone`) into `sink`: the families `sel` selects, then the
/// module's own. Checks `sel` first: nothing is written when it names a group or
/// family that is not here. With an identity, every series gets its constant labels
/// and the build info family is written.
pub fn walk<S: Sink>(
    sink: &mut S,
    store: &Store<'_>,
    zone: &str,
    stub: Option<&StubStatus>,
    sel: &Selection,
    identity: Option<&Identity>,
) -> Result<(), NotFound> {
    let families = store.families();
    let specs: Vec<FamilySpec> = families.iter().map(|(f, _)| store.spec(*f)).collect();
    let mut known: Vec<(&str, &str)> = specs.iter().map(|s| (s.name.as_str(), s.group())).collect();
    known.extend(builtin_names(stub.is_some(), identity.is_some()).map(|n| (n, BUILTIN_GROUP)));
    sel.check(&known)?;
    match identity {
        Some(id) if !id.labels.is_empty() => {
            let mut labelled = WithConstLabels {
                inner: sink,
                consts: &id.labels,
                prefix: encode_key(&id.labels.values),
                names: Vec::new(),
                key: Vec::new(),
            };
            write_families(
                &mut labelled,
                store,
                &families,
                &specs,
                zone,
                stub,
                sel,
                identity,
            );
        }
        _ => write_families(sink, store, &families, &specs, zone, stub, sel, identity),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_families<S: Sink>(
    sink: &mut S,
    store: &Store<'_>,
    families: &[(crate::metrics::Family, Vec<crate::shm::Offset>)],
    specs: &[FamilySpec],
    zone: &str,
    stub: Option<&StubStatus>,
    sel: &Selection,
    identity: Option<&Identity>,
) {
    let r = store.region();
    let mut key = Vec::new();
    let mut snapshot: Option<Snapshot> = None;
    let mut cumulative = Vec::new();
    let mut quantiles = Vec::new();
    let mut running = Vec::new();
    for ((family, series), spec) in families.iter().zip(specs) {
        if !sel.includes(&spec.name, spec.group()) {
            continue;
        }
        let series: &[crate::shm::Offset] = match sel.worker_label(spec) {
            Some((label, workers)) => {
                running.clear();
                running.extend(series.iter().copied().filter(|&rec| {
                    key.clear();
                    store.series_key(rec, &mut key);
                    worker_runs(label, workers, &key)
                }));
                &running
            }
            None => series,
        };
        let mut meta = Meta {
            name: &spec.name,
            help: &spec.help,
            kind: match family.metric_type {
                MetricType::Counter => Kind::Counter,
                MetricType::Gauge => Kind::Gauge,
                MetricType::Histogram => Kind::Histogram,
            },
            declared: family.metric_type,
            unit: &spec.unit,
            group: spec.group(),
            label_names: &spec.label_names,
            buckets: &[],
        };
        let created = |rec| Some(store.series_created_ms(rec));
        match (family.metric_type, &spec.histogram) {
            (MetricType::Histogram, Some(h)) => {
                let Some(layout) = h.layout() else { continue };
                let cuts = histogram::cuts(h.scale(), layout, &h.buckets);
                let mode = if S::SUMMARY_FAMILIES {
                    spec.quantiles
                } else {
                    QuantileMode::Off
                };
                let want_quantiles = !S::SUMMARY_FAMILIES || mode != QuantileMode::Off;
                if mode == QuantileMode::Instead {
                    meta.kind = Kind::Summary;
                }
                meta.buckets = &h.buckets;
                // Summary points of a `beside` family: written after the histogram.
                let mut beside: Vec<SummaryPoint> = Vec::new();
                sink.family(&meta);
                for &rec in series {
                    // A series deleted while it is read is left out (see `still_the_same`).
                    let tag = store.series_tag(rec);
                    key.clear();
                    store.series_key(rec, &mut key);
                    let snap = Snapshot::read(&r, store.series_values(rec), snapshot.take());
                    let (count, sum) = (snap.count(), snap.sum);
                    if want_quantiles {
                        snap.quantiles(&SUMMARY_QUANTILES, h.scale(), &mut quantiles);
                    }
                    let point = match mode {
                        QuantileMode::Instead => Point::Summary {
                            quantiles: &quantiles,
                            count,
                            sum,
                            created: created(rec),
                        },
                        _ => {
                            snap.cumulative(&cuts, &mut cumulative);
                            Point::Histogram {
                                cumulative: &cumulative,
                                count,
                                sum,
                                quantiles: if S::SUMMARY_FAMILIES { &[] } else { &quantiles },
                                created: created(rec),
                            }
                        }
                    };
                    if !store.still_the_same(rec, tag) {
                        snapshot = Some(snap);
                        continue;
                    }
                    sink.series(&meta, &key, &point);
                    if mode == QuantileMode::Beside {
                        beside.push(SummaryPoint {
                            key: key.clone(),
                            quantiles: quantiles.clone(),
                            count,
                            sum,
                            created: created(rec),
                        });
                    }
                    snapshot = Some(snap);
                }
                sink.end_family(&meta);
                if mode == QuantileMode::Beside {
                    let name = format!("{}{QUANTILES_SUFFIX}", spec.name);
                    let summary = Meta {
                        name: &name,
                        kind: Kind::Summary,
                        unit: "",
                        buckets: &[],
                        ..meta
                    };
                    sink.family(&summary);
                    for p in &beside {
                        let point = Point::Summary {
                            quantiles: &p.quantiles,
                            count: p.count,
                            sum: p.sum,
                            created: p.created,
                        };
                        sink.series(&summary, &p.key, &point);
                    }
                    sink.end_family(&summary);
                }
            }
            (MetricType::Histogram, None) => {}
            (t, _) => {
                sink.family(&meta);
                for &rec in series {
                    let tag = store.series_tag(rec);
                    key.clear();
                    store.series_key(rec, &mut key);
                    let h = store.series_values(rec);
                    let point = if t == MetricType::Counter {
                        let (int, float) = counter::read(&r, h);
                        Point::Counter {
                            int,
                            float,
                            created: created(rec),
                        }
                    } else {
                        Point::Gauge(gauge::read(&r, h))
                    };
                    if !store.still_the_same(rec, tag) {
                        continue;
                    }
                    sink.series(&meta, &key, &point);
                }
                sink.end_family(&meta);
            }
        }
    }
    write_builtins(sink, store, zone, stub, sel, identity);
    sink.finish();
}

/// The module's own families, through the same sink.
fn write_builtins<S: Sink>(
    sink: &mut S,
    store: &Store<'_>,
    zone: &str,
    stub: Option<&StubStatus>,
    sel: &Selection,
    identity: Option<&Identity>,
) {
    let a = store.arena();
    let zone_created = Some(a.created_unix() * 1000);
    let mut emit = |name: &str,
                    help: &str,
                    kind: Kind,
                    unit: &str,
                    labels: &[&str],
                    points: &[(&[&str], Point<'_>)]| {
        if !sel.includes(name, BUILTIN_GROUP) {
            return;
        }
        let label_names: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let meta = Meta {
            name,
            help,
            kind,
            declared: if kind == Kind::Counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            },
            unit,
            group: BUILTIN_GROUP,
            label_names: &label_names,
            buckets: &[],
        };
        sink.family(&meta);
        for (values, p) in points {
            sink.series(&meta, &encode_key(values), p);
        }
        sink.end_family(&meta);
    };
    let count = |n: u64, created: Option<u64>| Point::Counter {
        int: n,
        float: 0.0,
        created,
    };
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
            emit(name, help, Kind::Counter, "", &[], &[(&[], count(v, None))]);
        }
        emit(
            "nginx_connections",
            "Client connections by state.",
            Kind::Gauge,
            "",
            &["state"],
            &[
                (&["active"], Point::Gauge(s.active as f64)),
                (&["reading"], Point::Gauge(s.reading as f64)),
                (&["writing"], Point::Gauge(s.writing as f64)),
                (&["waiting"], Point::Gauge(s.waiting as f64)),
            ],
        );
    }
    let errors: Vec<([&str; 2], Point<'_>)> = Reason::ALL
        .iter()
        .map(|r| ([zone, r.as_str()], count(store.errors(*r), zone_created)))
        .collect();
    let errors: Vec<(&[&str], Point<'_>)> = errors.iter().map(|(v, p)| (&v[..], *p)).collect();
    emit(
        "nginx_metric_errors_total",
        "Metric updates and series refused or failed, by reason.",
        Kind::Counter,
        "",
        &["zone", "reason"],
        &errors,
    );
    emit(
        "nginx_metric_zone_bytes",
        "Bytes of the metrics zone, used and in all.",
        Kind::Gauge,
        "bytes",
        &["zone", "state"],
        &[
            (&[zone, "used"], Point::Gauge(a.used_bytes() as f64)),
            (&[zone, "capacity"], Point::Gauge(a.capacity_bytes() as f64)),
        ],
    );
    emit(
        "nginx_metric_series",
        "Series kept in the metrics zone.",
        Kind::Gauge,
        "",
        &["zone"],
        &[(&[zone], Point::Gauge(a.series() as f64))],
    );
    emit(
        "nginx_metric_lock_takeovers_total",
        "Times the zone lock was taken over from a process that died holding it.",
        Kind::Counter,
        "",
        &["zone"],
        &[(&[zone], count(a.lock_takeovers(), zone_created))],
    );
    if let Some(id) = identity {
        emit(
            BUILD_INFO,
            "The ngx-prometheus module serving this scrape: version, commit and nginx version.",
            Kind::Gauge,
            "",
            &["version", "revision", "nginx_version"],
            &[(
                &[VERSION, REVISION, id.nginx_version.as_str()],
                Point::Gauge(1.0),
            )],
        );
    }
}

/// Renders a zone in `format` into `out`; see [`walk`].
pub fn render(
    out: &mut String,
    format: Format,
    store: &Store<'_>,
    zone: &str,
    stub: Option<&StubStatus>,
    sel: &Selection,
    identity: Option<&Identity>,
) -> Result<(), NotFound> {
    let (st, id) = (stub, identity);
    match format {
        Format::Text => walk(
            &mut text::TextSink::new(out, false),
            store,
            zone,
            st,
            sel,
            id,
        ),
        Format::OpenMetrics => walk(
            &mut text::TextSink::new(out, true),
            store,
            zone,
            st,
            sel,
            id,
        ),
        Format::Json => walk(
            &mut json::JsonSink::new(out, zone),
            store,
            zone,
            st,
            sel,
            id,
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::family::HistogramSpec;
    use crate::metrics::{counter, gauge};
    use crate::shm::region::heap_words;
    use crate::shm::Region;
    use std::sync::atomic::AtomicU64;

    const ALIVE: &dyn Fn(u32) -> bool = &|_| true;
    pub(crate) const T0: u64 = 1_700_000_000_123;

    pub(crate) fn spec(name: &str, t: MetricType, labels: &[&str]) -> FamilySpec {
        FamilySpec {
            name: name.into(),
            help: String::new(),
            metric_type: t,
            label_names: labels.iter().map(|s| s.to_string()).collect(),
            histogram: None,
            max_series: 0,
            expire_s: 0,
            overflow_value: String::new(),
            unit: String::new(),
            group: String::new(),
            quantiles: QuantileMode::Off,
        }
    }

    /// A zone with one family of each kind and option, values set, made at T0.
    pub(crate) fn sample_zone() -> Vec<AtomicU64> {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 1234).unwrap();
        let r = s.region();
        let reg = |spec: &FamilySpec| s.register(spec, 1, ALIVE).unwrap();
        let mut c = spec("http_requests_total", MetricType::Counter, &["code"]);
        c.help = "Requests.".into();
        let c = reg(&c);
        let ok = s.series_at(c, &["200"], 1, ALIVE, T0).unwrap();
        counter::inc(&r, ok, 3).unwrap();
        let odd = s.series_at(c, &["a\"b\\\n"], 1, ALIVE, T0 + 500).unwrap();
        counter::add(&r, odd, 0.5).unwrap();
        let mut k = spec("kong_bandwidth_bytes", MetricType::Counter, &[]);
        k.unit = "bytes".into();
        k.group = "http".into();
        let k = reg(&k);
        let kb = s.series_at(k, &[] as &[&str], 1, ALIVE, T0).unwrap();
        counter::inc(&r, kb, 42).unwrap();
        let mut g = spec("temperature_celsius", MetricType::Gauge, &[]);
        g.help = "Say \"hot\"\\ or\ncold.".into();
        g.unit = "celsius".into();
        let g = reg(&g);
        let gs = s.series_at(g, &[] as &[&str], 1, ALIVE, T0).unwrap();
        gauge::set(&r, gs, -1.5).unwrap();
        let mut h = spec("latency_seconds", MetricType::Histogram, &["route"]);
        h.help = "Latency.".into();
        h.unit = "seconds".into();
        h.quantiles = QuantileMode::Beside;
        h.histogram = Some(HistogramSpec {
            buckets: vec![0.005, 0.1, 1.0],
            ..HistogramSpec::default()
        });
        let h = reg(&h);
        let hs = s.series_at(h, &["/"], 1, ALIVE, T0).unwrap();
        for v in [0.05, 0.5, 5.0] {
            s.observe(hs, v, 1, ALIVE).unwrap();
        }
        let mut i = spec("size_bytes", MetricType::Histogram, &[]);
        i.quantiles = QuantileMode::Instead;
        i.group = "http".into();
        i.histogram = Some(HistogramSpec {
            lowest: 1.0,
            highest: 1e6,
            precision: 2,
            buckets: vec![100.0],
        });
        let i = reg(&i);
        s.series_at(i, &[] as &[&str], 1, ALIVE, T0).unwrap();
        mem
    }

    fn render_str(format: Format, sel: &Selection) -> Result<String, NotFound> {
        let mem = sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        let mut out = String::new();
        render(&mut out, format, &s, "z", None, sel, None).map(|()| out)
    }

    fn families_of(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect()
    }

    #[test]
    fn builtin_names_agree_with_the_store() {
        let names: Vec<&str> = crate::metrics::store::BUILTINS
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(names, text::BUILTIN_FAMILIES);
    }

    #[test]
    fn selections_filter_families() {
        let sel = |served: &[&str], groups: &[&str], names: &[&str]| Selection {
            served: served.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            names: names.iter().map(|s| s.to_string()).collect(),
            workers: None,
        };
        let text = render_str(Format::Text, &sel(&[], &["http"], &[])).unwrap();
        assert_eq!(
            families_of(&text),
            vec!["kong_bandwidth_bytes", "size_bytes"]
        );
        let text = render_str(Format::Text, &sel(&[], &["nginx"], &[])).unwrap();
        assert_eq!(
            families_of(&text),
            vec![
                "nginx_metric_errors_total",
                "nginx_metric_zone_bytes",
                "nginx_metric_series",
                "nginx_metric_lock_takeovers_total"
            ]
        );
        // A histogram's name brings its summary family along.
        let om = render_str(
            Format::OpenMetrics,
            &sel(&[], &[], &["latency_seconds", "nginx_metric_series"]),
        )
        .unwrap();
        assert_eq!(
            families_of(&om),
            vec![
                "latency_seconds",
                "latency_seconds_quantiles",
                "nginx_metric_series"
            ]
        );
        assert!(
            om.ends_with("nginx_metric_series{zone=\"z\"} 6\n# EOF\n"),
            "{om}"
        );
        // An empty selection result is still a valid exposition.
        let om = render_str(Format::OpenMetrics, &sel(&["nothing_here"], &[], &[])).unwrap();
        assert_eq!(om, "# EOF\n");
        let text = render_str(Format::Text, &sel(&["app", "http"], &[], &[])).unwrap();
        assert_eq!(
            families_of(&text),
            vec![
                "http_requests_total",
                "kong_bandwidth_bytes",
                "temperature_celsius",
                "latency_seconds",
                "latency_seconds_quantiles",
                "size_bytes"
            ]
        );
        let json = render_str(Format::Json, &sel(&[], &[], &["size_bytes"])).unwrap();
        assert!(json.starts_with("{\"zone\":\"z\",\"families\":[{\"name\":\"size_bytes\","));
    }

    #[test]
    fn missing_groups_and_families_are_named() {
        let sel = |served: &[&str], groups: &[&str], names: &[&str]| Selection {
            served: served.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            names: names.iter().map(|s| s.to_string()).collect(),
            workers: None,
        };
        let cases = [
            (sel(&[], &[], &["nope_total"]), "unknown metric family \"nope_total\""),
            (sel(&[], &["process"], &[]), "unknown group \"process\""),
            // Outside the served groups, a family does not exist.
            (sel(&["http"], &[], &["temperature_celsius"]), "unknown metric family \"temperature_celsius\""),
            (
                sel(&[], &["http"], &["temperature_celsius"]),
                "metric family \"temperature_celsius\" is in group \"app\", which was not asked for",
            ),
            // The summary family of a `beside` histogram is not a declared family.
            (sel(&[], &[], &["latency_seconds_quantiles"]), "unknown metric family \"latency_seconds_quantiles\""),
            // Without stub_status, nginx's connection families are absent.
            (sel(&[], &[], &["nginx_connections"]), "unknown metric family \"nginx_connections\""),
        ];
        for (s, want) in cases {
            for f in [Format::Text, Format::OpenMetrics, Format::Json] {
                assert_eq!(render_str(f, &s).unwrap_err().to_string(), want);
            }
        }
        // A served group without families yet is known; the builtin group always is.
        assert_eq!(
            render_str(Format::Text, &sel(&["process"], &["process"], &[])).unwrap(),
            ""
        );
        render_str(
            Format::Text,
            &sel(&[], &["nginx"], &["nginx_metric_series"]),
        )
        .unwrap();
    }

    #[test]
    fn series_of_workers_a_reload_took_away_are_left_out() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 1234).unwrap();
        let per_worker = FamilySpec {
            group: PROCESS_GROUP.into(),
            ..spec("nginx_worker_open_fds", MetricType::Gauge, &["worker"])
        };
        // Same label, even the same group: an application's own family is never filtered.
        let app = FamilySpec {
            group: PROCESS_GROUP.into(),
            ..spec("jobs_total", MetricType::Counter, &["queue", "worker"])
        };
        let (fw, fa) = (
            s.register(&per_worker, 1, ALIVE).unwrap(),
            s.register(&app, 1, ALIVE).unwrap(),
        );
        for w in ["0", "1", "2", "3", "x"] {
            let h = s.series_at(fw, &[w], 1, ALIVE, T0).unwrap();
            gauge::set(&s.region(), h, 7.0).unwrap();
            s.series_at(fa, &["q", w], 1, ALIVE, T0).unwrap();
        }
        let shown = |workers: Option<u32>, format: Format| {
            let sel = Selection {
                workers,
                ..Selection::default()
            };
            let mut out = String::new();
            render(&mut out, format, &s, "z", None, &sel, None).unwrap();
            out
        };
        let count =
            |text: &str, prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        for format in [Format::Text, Format::OpenMetrics] {
            let all = shown(None, format);
            assert_eq!(count(&all, "nginx_worker_open_fds{"), 5, "{all}");
            let two = shown(Some(2), format);
            assert!(
                two.contains("nginx_worker_open_fds{worker=\"0\"} 7\n"),
                "{two}"
            );
            assert!(
                two.contains("nginx_worker_open_fds{worker=\"1\"} 7\n"),
                "{two}"
            );
            // A value that is no worker number is not ours to judge: it stays.
            assert!(
                two.contains("nginx_worker_open_fds{worker=\"x\"} 7\n"),
                "{two}"
            );
            assert_eq!(count(&two, "nginx_worker_open_fds{"), 3, "{two}");
            assert_eq!(count(&two, "jobs_total{"), 5, "{two}");
        }
        let json = shown(Some(1), Format::Json);
        assert!(
            json.contains("{\"labels\":{\"worker\":\"0\"},\"value\":7}"),
            "{json}"
        );
        assert!(!json.contains("{\"labels\":{\"worker\":\"1\"}"), "{json}");
    }

    #[test]
    fn constant_labels_come_first_in_every_format() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 1234).unwrap();
        let f = s
            .register(
                &spec("hits_total", MetricType::Counter, &["dc", "code"]),
                1,
                ALIVE,
            )
            .unwrap();
        let h = s.series_at(f, &["local", "200"], 1, ALIVE, T0).unwrap();
        counter::inc(&s.region(), h, 2).unwrap();
        let id = Identity {
            labels: ConstLabels::parse(&["node_id=n-1", "dc=eu"], &[]).unwrap(),
            nginx_version: "1.22.1".into(),
        };
        let sel = Selection {
            names: vec!["hits_total".into(), BUILD_INFO.into()],
            ..Selection::default()
        };
        let mut out = String::new();
        render(&mut out, Format::Text, &s, "z", None, &sel, Some(&id)).unwrap();
        let want = format!(
            "# HELP hits_total \n\
             # TYPE hits_total counter\n\
             hits_total{{node_id=\"n-1\",dc=\"eu\",exported_dc=\"local\",code=\"200\"}} 2\n\
             # HELP nginx_prometheus_build_info The ngx-prometheus module serving this scrape: \
             version, commit and nginx version.\n\
             # TYPE nginx_prometheus_build_info gauge\n\
             nginx_prometheus_build_info{{node_id=\"n-1\",dc=\"eu\",version=\"{VERSION}\",\
             revision=\"{REVISION}\",nginx_version=\"1.22.1\"}} 1\n"
        );
        assert_eq!(out, want);
        out.clear();
        render(&mut out, Format::Json, &s, "z", None, &sel, Some(&id)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["families"][0]["series"][0]["labels"],
            serde_json::json!({"node_id": "n-1", "dc": "eu", "exported_dc": "local", "code": "200"})
        );
        // Without an identity: neither the labels nor the build info.
        out.clear();
        render(
            &mut out,
            Format::Text,
            &s,
            "z",
            None,
            &Selection::default(),
            None,
        )
        .unwrap();
        assert!(
            out.contains("hits_total{dc=\"local\",code=\"200\"} 2\n"),
            "{out}"
        );
        assert!(!out.contains(BUILD_INFO));
    }

    /// What constant labels cost a scrape: the same zone (counters with three labels)
    /// rendered as text without an identity, with one but no constant labels, and with
    /// three constant labels, alternating; prints medians and ratios to the first.
    /// A measurement, not a check: `bench/run.sh` runs it (`RENDER_SERIES`, default 100k).
    #[test]
    #[ignore = "a measurement, run by bench/run.sh"]
    fn render_cost_of_constant_labels() {
        let series: usize = std::env::var("RENDER_SERIES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100_000);
        let mem = heap_words(series * 40 + (1 << 16));
        let store = Store::format(Region::new(&mem), 0).expect("zone");
        let alive = |_: u32| true;
        let spec = FamilySpec {
            name: "http_requests_total".into(),
            help: "Requests.".into(),
            metric_type: MetricType::Counter,
            label_names: vec!["service".into(), "route".into(), "code".into()],
            histogram: None,
            max_series: 0,
            expire_s: 0,
            overflow_value: String::new(),
            unit: String::new(),
            group: String::new(),
            quantiles: QuantileMode::Off,
        };
        let f = store.register(&spec, 1, &alive).expect("family");
        for i in 0..series {
            let (svc, route) = (format!("svc-{}", i % 100), format!("/route/{i}"));
            let h = store
                .series(f, &[svc.as_str(), route.as_str(), "200"], 1, &alive)
                .expect("series");
            counter::inc(&store.region(), h, i as u64).expect("inc");
        }
        let plain = Identity {
            labels: ConstLabels::default(),
            nginx_version: "1.22.1".into(),
        };
        let labelled = Identity {
            labels: ConstLabels::parse(
                &[
                    "node_id=3f1c2d9e-6a4b-4f0e-9c1d-2b7a8e5f4c3b",
                    "hostname=web-17.eu-west-1.example.com",
                    "zone=eu-west-1",
                ],
                &[],
            )
            .expect("labels"),
            nginx_version: "1.22.1".into(),
        };
        let cases: [(&str, Option<&Identity>); 3] = [
            ("no identity", None),
            ("identity, no labels", Some(&plain)),
            ("3 constant labels", Some(&labelled)),
        ];
        let reps = 9;
        let mut times = vec![Vec::new(); cases.len()];
        let mut bytes = vec![0; cases.len()];
        let mut out = String::new();
        for _ in 0..reps {
            for (i, (_, id)) in cases.iter().enumerate() {
                out.clear();
                let t = std::time::Instant::now();
                render(
                    &mut out,
                    Format::Text,
                    &store,
                    "z",
                    None,
                    &Selection::default(),
                    *id,
                )
                .expect("render");
                times[i].push(t.elapsed().as_secs_f64() * 1000.0);
                bytes[i] = out.len();
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let base = median(&mut times[0].clone());
        println!("| case | median ms | ratio | bytes |");
        println!("|---|---|---|---|");
        for (i, (name, _)) in cases.iter().enumerate() {
            let m = median(&mut times[i]);
            println!(
                "| {name} ({series} series) | {m:.1} | {:.2} | {} |",
                m / base,
                bytes[i]
            );
        }
    }
}
