//! The walk over a zone: families in declaration order, each series read once, then
//! the collectors' families, all handed to one [`Sink`].

use super::const_labels::WithConstLabels;
use super::model::{CounterValue, HistogramValue, NativeHistogramValue, SummaryValue};
use super::model::{ExposedType, Meta, Point, Sink};
use super::native::{Converter, NativeBuckets};
use super::scrape::{Collector, Scrape};
use super::select::worker_runs;
use super::select::NotFound;
use crate::metrics::exemplar::{self, Exemplar};
use crate::metrics::family::{FamilySpec, HistogramSpec, QuantileMode, QUANTILES_SUFFIX};
use crate::metrics::histogram::{self, Snapshot, SUMMARY_QUANTILES};
use crate::metrics::layout::COUNTER_WORDS;
use crate::metrics::{counter, gauge, Family, MetricType, Store};
use crate::shm::Offset;

/// Writes `scrape` into `sink`: the zone's families its selection selects, then those
/// of `collectors` it selects. Checks the selection first: nothing is written when it
/// names a group or family that is not here. With an identity, every series gets its
/// constant labels.
pub fn walk<S: Sink>(
    sink: &mut S,
    scrape: &Scrape<'_>,
    collectors: &[&dyn Collector],
) -> Result<(), NotFound> {
    let store = &scrape.store;
    let families = store.families();
    let specs: Vec<FamilySpec> = families.iter().map(|(f, _)| store.spec(*f)).collect();
    let mut collected = Vec::new();
    for c in collectors {
        c.families(scrape, &mut collected);
    }
    let mut known: Vec<(&str, &str)> = specs.iter().map(|s| (s.name.as_str(), s.group())).collect();
    known.extend(collected);
    scrape.selection.check(&known)?;
    let zone = Zone {
        families: &families,
        specs: &specs,
    };
    match scrape.identity {
        Some(id) if !id.labels.is_empty() => write_all(
            &mut WithConstLabels::new(sink, &id.labels),
            scrape,
            &zone,
            collectors,
        ),
        _ => write_all(sink, scrape, &zone, collectors),
    }
    Ok(())
}

/// The zone's families, read once, with their specs.
struct Zone<'z> {
    families: &'z [(Family, Vec<Offset>)],
    specs: &'z [FamilySpec],
}

fn write_all<S: Sink>(
    sink: &mut S,
    scrape: &Scrape<'_>,
    zone: &Zone<'_>,
    collectors: &[&dyn Collector],
) {
    let (store, sel) = (&scrape.store, &scrape.selection);
    let mut w = Walker {
        store,
        key: Vec::new(),
        snapshot: None,
        cumulative: Vec::new(),
        quantiles: Vec::new(),
        native: NativeBuckets::default(),
        exemplars_read: Vec::new(),
        exemplars: Vec::new(),
        show_exemplars: false,
    };
    let mut running = Vec::new();
    for ((family, series), spec) in zone.families.iter().zip(zone.specs) {
        if !sel.includes(&spec.name, spec.group()) {
            continue;
        }
        let series: &[Offset] = match sel.worker_label(spec) {
            Some((label, workers)) => {
                running.clear();
                running.extend(series.iter().copied().filter(|&rec| {
                    w.key.clear();
                    store.series_key(rec, &mut w.key);
                    worker_runs(label, workers, &w.key)
                }));
                &running
            }
            None => series,
        };
        let meta = Meta {
            name: &spec.name,
            help: &spec.help,
            kind: match family.metric_type {
                MetricType::Counter => ExposedType::Counter,
                MetricType::Gauge => ExposedType::Gauge,
                MetricType::Histogram => ExposedType::Histogram,
            },
            declared: family.metric_type,
            unit: &spec.unit,
            group: spec.group(),
            label_names: &spec.label_names,
            buckets: &[],
            native_only: spec.native_only,
        };
        // Exemplars are shown while the family keeps them: switched off, those its
        // series kept stay in the zone, unshown (and shown again if switched back on).
        w.show_exemplars = spec.exemplars;
        match (family.metric_type, &spec.histogram) {
            (MetricType::Histogram, Some(h)) => w.histogram(sink, meta, spec, h, series),
            (MetricType::Histogram, None) => {}
            (_, _) => w.scalars(sink, &meta, series),
        }
    }
    for c in collectors {
        c.collect(scrape, &mut |meta, series| {
            if !sel.includes(meta.name, meta.group) {
                return;
            }
            sink.family(meta);
            for (key, p) in series {
                sink.series(meta, key, p);
            }
            sink.end_family(meta);
        });
    }
    sink.finish();
}

/// What every series of one histogram family is written with.
#[derive(Clone, Copy)]
struct HistogramShape<'a> {
    scale: f64,
    /// Where the family's `le` bounds fall among the HDR slots.
    cuts: &'a [usize],
    /// For a sink that writes native histograms.
    native: Option<&'a Converter>,
    mode: QuantileMode,
}

/// A summary point kept for the summary family written after its histogram.
struct SummaryPoint {
    key: Vec<u8>,
    quantiles: Vec<f64>,
    count: u64,
    sum: f64,
    created: Option<u64>,
}

/// The walk's reusable buffers: a scrape allocates them once, not per series.
struct Walker<'a, 's> {
    store: &'a Store<'s>,
    key: Vec<u8>,
    snapshot: Option<Snapshot>,
    cumulative: Vec<u64>,
    quantiles: Vec<f64>,
    native: NativeBuckets,
    /// A series' exemplar slots as read, and a histogram's placed on its buckets.
    exemplars_read: Vec<Option<Exemplar>>,
    exemplars: Vec<Option<Exemplar>>,
    /// Whether the family being walked keeps exemplars now.
    show_exemplars: bool,
}

impl Walker<'_, '_> {
    fn created(&self, rec: Offset) -> Option<u64> {
        Some(self.store.series_created_ms(rec))
    }

    /// The exemplar slots of the series whose values (`values` words) start at `h`,
    /// into `exemplars_read`; none while the family does not keep exemplars.
    fn read_exemplars(&mut self, h: Offset, values: u64) {
        if self.show_exemplars {
            exemplar::read(&self.store.region(), h, values, &mut self.exemplars_read);
        } else {
            self.exemplars_read.clear();
        }
    }

    /// A counter or gauge family.
    fn scalars<S: Sink>(&mut self, sink: &mut S, meta: &Meta<'_>, series: &[Offset]) {
        let (store, r) = (self.store, self.store.region());
        sink.family(meta);
        for &rec in series {
            // A series deleted while it is read is left out (see `still_the_same`).
            let tag = store.series_tag(rec);
            self.key.clear();
            store.series_key(rec, &mut self.key);
            #[cfg(feature = "debug-hooks")]
            debug_stall();
            let h = store.series_values(rec);
            let point = if meta.declared == MetricType::Counter {
                let (int, float) = counter::read(&r, h);
                self.read_exemplars(h, COUNTER_WORDS);
                Point::Counter(CounterValue {
                    int,
                    float,
                    created: self.created(rec),
                    exemplar: self.exemplars_read.first().copied().flatten(),
                })
            } else {
                Point::Gauge(gauge::read(&r, h))
            };
            if store.still_the_same(rec, tag) {
                sink.series(meta, &self.key, &point);
            }
        }
        sink.end_family(meta);
    }

    /// A histogram family, in one of three shapes: buckets (each series with its
    /// quantiles inside, for a sink without summary families: JSON), a summary instead
    /// of the buckets, or the buckets and a summary family beside them.
    fn histogram<'m, S: Sink>(
        &mut self,
        sink: &mut S,
        mut meta: Meta<'m>,
        spec: &'m FamilySpec,
        h: &'m HistogramSpec,
        series: &[Offset],
    ) {
        let Some(layout) = h.layout() else { return };
        let cuts = histogram::cuts(h.scale(), layout, &h.buckets);
        let native =
            S::NATIVE_HISTOGRAMS.then(|| Converter::new(layout, h.scale(), h.highest_ticks()));
        let mode = if S::SUMMARY_FAMILIES {
            spec.quantiles
        } else {
            QuantileMode::Off
        };
        if mode == QuantileMode::Instead {
            meta.kind = ExposedType::Summary;
        }
        meta.buckets = &h.buckets;
        // Summary points of a `beside` family: written after the histogram.
        let mut beside: Vec<SummaryPoint> = Vec::new();
        sink.family(&meta);
        let shape = HistogramShape {
            scale: h.scale(),
            cuts: &cuts,
            native: native.as_ref(),
            mode,
        };
        for &rec in series {
            if let Some(p) = self.histogram_series(sink, &meta, &shape, rec) {
                beside.push(p);
            }
        }
        sink.end_family(&meta);
        if mode == QuantileMode::Beside {
            write_beside(sink, &meta, &spec.name, &beside);
        }
    }

    /// Series `rec` of a histogram family, written as `shape.mode` says; with `beside`,
    /// the summary point to write after the family.
    fn histogram_series<S: Sink>(
        &mut self,
        sink: &mut S,
        meta: &Meta<'_>,
        shape: &HistogramShape<'_>,
        rec: Offset,
    ) -> Option<SummaryPoint> {
        let HistogramShape {
            scale,
            cuts,
            native,
            mode,
        } = *shape;
        let (store, r) = (self.store, self.store.region());
        let tag = store.series_tag(rec);
        self.key.clear();
        store.series_key(rec, &mut self.key);
        let h = store.series_values(rec);
        let snap = Snapshot::read(&r, h, self.snapshot.take());
        self.read_exemplars(h, histogram::value_words(snap.layout));
        exemplar::by_bucket(&self.exemplars_read, meta.buckets, &mut self.exemplars);
        let (count, sum, created) = (snap.count(), snap.sum, self.created(rec));
        if !S::SUMMARY_FAMILIES || mode != QuantileMode::Off {
            snap.quantiles(&SUMMARY_QUANTILES, scale, &mut self.quantiles);
        }
        let point = match mode {
            QuantileMode::Instead => Point::Summary(SummaryValue {
                quantiles: &self.quantiles,
                count,
                sum,
                created,
            }),
            _ => {
                snap.cumulative(cuts, &mut self.cumulative);
                let classic = HistogramValue {
                    cumulative: &self.cumulative,
                    count,
                    sum,
                    quantiles: if S::SUMMARY_FAMILIES {
                        &[]
                    } else {
                        &self.quantiles
                    },
                    created,
                    exemplars: &self.exemplars,
                };
                match native {
                    // The count, buckets and native buckets come from one read.
                    Some(c) => {
                        c.convert(&snap, &mut self.native);
                        Point::NativeHistogram(NativeHistogramValue {
                            classic,
                            native: &self.native,
                        })
                    }
                    None => Point::Histogram(classic),
                }
            }
        };
        let mut kept = None;
        if store.still_the_same(rec, tag) {
            sink.series(meta, &self.key, &point);
            if mode == QuantileMode::Beside {
                kept = Some(SummaryPoint {
                    key: self.key.clone(),
                    quantiles: self.quantiles.clone(),
                    count,
                    sum,
                    created,
                });
            }
        }
        self.snapshot = Some(snap);
        kept
    }
}

/// The summary family written after a `beside` histogram family (`histogram`, named
/// `family`): the quantiles, count and sum of its series.
fn write_beside<S: Sink>(
    sink: &mut S,
    histogram: &Meta<'_>,
    family: &str,
    points: &[SummaryPoint],
) {
    let name = format!("{family}{QUANTILES_SUFFIX}");
    let summary = Meta {
        name: &name,
        kind: ExposedType::Summary,
        unit: "",
        buckets: &[],
        ..*histogram
    };
    sink.family(&summary);
    for p in points {
        let point = Point::Summary(SummaryValue {
            quantiles: &p.quantiles,
            count: p.count,
            sum: p.sum,
            created: p.created,
        });
        sink.series(&summary, &p.key, &point);
    }
    sink.end_family(&summary);
}

/// Milliseconds the next render of this process stalls in the middle of its first
/// counter or gauge series (its key read, its values not yet), once (debug-hooks builds
/// only: tests delete and reuse the series meanwhile).
#[cfg(feature = "debug-hooks")]
static STALL_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(feature = "debug-hooks")]
pub fn stall_next_render(ms: u64) {
    STALL_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "debug-hooks")]
fn debug_stall() {
    let ms = STALL_MS.swap(0, std::sync::atomic::Ordering::Relaxed);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
