//! The module's own families that a scrape reads rather than stores
//! ([`builtin::SCRAPED`]), as three [`Collector`]s: nginx's connection counters, the
//! zone's accounting and the build.

use super::model::{CounterValue, Series};
use super::model::{ExposedType, Meta, Point};
use super::scrape::{Collector, Scrape};
use crate::config::identity::{REVISION, VERSION};
use crate::metrics::builtin::{self, Builtin, Reading, Source};
use crate::metrics::store::{encode_key, Reason};
use crate::metrics::MetricType;

/// nginx's connection counters: written only where nginx has them (`stub_status`).
pub struct Connections;
/// The zone's accounting: errors by reason, bytes, series, lock takeovers.
pub struct ZoneAccounting;
/// The build: written only where the location has an identity.
pub struct BuildInfo;

/// The scrape-time collectors, in [`builtin::SCRAPED`] order.
pub const COLLECTORS: [&dyn Collector; 3] = [&Connections, &ZoneAccounting, &BuildInfo];

impl Connections {
    fn owns(r: Reading) -> bool {
        r.needs_stub_status()
    }
}

impl ZoneAccounting {
    fn owns(r: Reading) -> bool {
        !r.needs_stub_status() && r != Reading::BuildInfo
    }
}

impl BuildInfo {
    fn owns(r: Reading) -> bool {
        r == Reading::BuildInfo
    }
}

/// The scrape-time families of [`builtin::SCRAPED`] that `owns` their reading.
fn scraped(owns: fn(Reading) -> bool) -> impl Iterator<Item = (&'static Builtin, Reading)> {
    builtin::SCRAPED.iter().filter_map(move |b| match b.source {
        Source::Scrape(r) if owns(r) => Some((b, r)),
        _ => None,
    })
}

fn names(owns: fn(Reading) -> bool, out: &mut Vec<(&'static str, &'static str)>) {
    out.extend(scraped(owns).map(|(b, _)| (b.name, b.group)));
}

/// Hands every family `owns` to `family`, its series from `points`.
fn write(
    owns: fn(Reading) -> bool,
    family: &mut dyn FnMut(&Meta<'_>, &Series<'_>),
    mut points: impl FnMut(Reading) -> Vec<(Vec<u8>, Point<'static>)>,
) {
    let mut label_names = Vec::new();
    for (b, reading) in scraped(owns) {
        let series = points(reading);
        label_names.clear();
        label_names.extend(b.labels.iter().map(|s| s.to_string()));
        let meta = Meta {
            name: b.name,
            help: b.help,
            kind: match b.metric_type {
                MetricType::Counter => ExposedType::Counter,
                _ => ExposedType::Gauge,
            },
            declared: b.metric_type,
            unit: b.unit,
            group: b.group,
            label_names: &label_names,
            buckets: &[],
            native_only: false,
        };
        family(&meta, &series);
    }
}

fn count(n: u64, created: Option<u64>) -> Point<'static> {
    Point::Counter(CounterValue {
        int: n,
        float: 0.0,
        created,
        exemplar: None,
    })
}

fn gauge(v: u64) -> Point<'static> {
    Point::Gauge(v as f64)
}

impl Collector for Connections {
    fn families(&self, s: &Scrape<'_>, out: &mut Vec<(&'static str, &'static str)>) {
        if s.stub.is_some() {
            names(Self::owns, out);
        }
    }

    fn collect(&self, s: &Scrape<'_>, family: &mut dyn FnMut(&Meta<'_>, &Series<'_>)) {
        let Some(stub) = s.stub else { return };
        write(Self::owns, family, |reading| match reading {
            Reading::Accepted => vec![(encode_key(&[""; 0]), count(stub.accepted, None))],
            Reading::Handled => vec![(encode_key(&[""; 0]), count(stub.handled, None))],
            Reading::Requests => vec![(encode_key(&[""; 0]), count(stub.requests, None))],
            Reading::Connections => vec![
                (encode_key(&["active"]), gauge(stub.active)),
                (encode_key(&["reading"]), gauge(stub.reading)),
                (encode_key(&["writing"]), gauge(stub.writing)),
                (encode_key(&["waiting"]), gauge(stub.waiting)),
            ],
            Reading::Errors
            | Reading::ZoneBytes
            | Reading::Series
            | Reading::LockTakeovers
            | Reading::BuildInfo => Vec::new(),
        });
    }
}

impl Collector for ZoneAccounting {
    fn families(&self, _s: &Scrape<'_>, out: &mut Vec<(&'static str, &'static str)>) {
        names(Self::owns, out);
    }

    fn collect(&self, s: &Scrape<'_>, family: &mut dyn FnMut(&Meta<'_>, &Series<'_>)) {
        let (store, zone) = (&s.store, s.zone.as_str());
        let a = store.arena();
        let zone_created = Some(a.created_unix() * 1000);
        write(Self::owns, family, |reading| match reading {
            Reading::Errors => Reason::ALL
                .iter()
                .map(|r| {
                    let n = store.errors(*r);
                    (encode_key(&[zone, r.as_str()]), count(n, zone_created))
                })
                .collect(),
            Reading::ZoneBytes => vec![
                (encode_key(&[zone, "used"]), gauge(a.used_bytes())),
                (encode_key(&[zone, "capacity"]), gauge(a.capacity_bytes())),
                (encode_key(&[zone, "waiting"]), gauge(a.epochs().waiting())),
            ],
            Reading::Series => vec![(encode_key(&[zone]), gauge(a.series()))],
            Reading::LockTakeovers => {
                vec![(encode_key(&[zone]), count(a.lock_takeovers(), zone_created))]
            }
            Reading::Accepted
            | Reading::Handled
            | Reading::Requests
            | Reading::Connections
            | Reading::BuildInfo => Vec::new(),
        });
    }
}

impl Collector for BuildInfo {
    fn families(&self, s: &Scrape<'_>, out: &mut Vec<(&'static str, &'static str)>) {
        if s.identity.is_some() {
            names(Self::owns, out);
        }
    }

    fn collect(&self, s: &Scrape<'_>, family: &mut dyn FnMut(&Meta<'_>, &Series<'_>)) {
        let Some(id) = s.identity else { return };
        write(Self::owns, family, |_| {
            let build = [VERSION, REVISION, id.nginx_version.as_str()];
            vec![(encode_key(&build), Point::Gauge(1.0))]
        });
    }
}
