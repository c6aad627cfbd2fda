//! The module's own families that a scrape reads rather than stores
//! ([`builtin::SCRAPED`]): nginx's connection counters, the zone's accounting and the
//! build, written through the same sink as the zone's families.

use super::walk::ZoneToWrite;
use super::{Kind, Meta, Point, Selection, Sink};
use crate::identity::{REVISION, VERSION};
use crate::metrics::builtin::{self, Builtin, Reading, Source};
use crate::metrics::store::{encode_key, Reason};
use crate::metrics::MetricType;

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

/// The scrape-time families a scrape has values for: nginx's counters only where nginx
/// has them, the build only where the location has an identity.
pub(super) fn shown(stub: bool, identity: bool) -> impl Iterator<Item = &'static Builtin> {
    builtin::SCRAPED.iter().filter(move |b| match b.source {
        Source::Scrape(Reading::BuildInfo) => identity,
        Source::Scrape(r) => stub || !r.needs_stub_status(),
        Source::Process | Source::Push => false,
    })
}

/// Writes the scrape-time families `sel` selects, in [`builtin::SCRAPED`] order.
pub(super) fn write<S: Sink>(sink: &mut S, z: &ZoneToWrite<'_, '_>, sel: &Selection) {
    let (store, zone, stub, identity) = (z.store, z.name, z.stub, z.identity);
    let a = store.arena();
    let zone_created = Some(a.created_unix() * 1000);
    let count = |n: u64, created: Option<u64>| Point::Counter {
        int: n,
        float: 0.0,
        created,
    };
    let gauge = |v: u64| Point::Gauge(v as f64);
    let mut label_names = Vec::new();
    for b in shown(stub.is_some(), identity.is_some()) {
        let Source::Scrape(reading) = b.source else {
            continue;
        };
        if !sel.includes(b.name, b.group) {
            continue;
        }
        // `shown` left the connection families out when there are no counters.
        let stub = stub.copied().unwrap_or_default();
        // Each series as its encoded label values and its point.
        let points: Vec<(Vec<u8>, Point<'_>)> = match reading {
            Reading::Accepted => vec![(encode_key(&[""; 0]), count(stub.accepted, None))],
            Reading::Handled => vec![(encode_key(&[""; 0]), count(stub.handled, None))],
            Reading::Requests => vec![(encode_key(&[""; 0]), count(stub.requests, None))],
            Reading::Connections => vec![
                (encode_key(&["active"]), gauge(stub.active)),
                (encode_key(&["reading"]), gauge(stub.reading)),
                (encode_key(&["writing"]), gauge(stub.writing)),
                (encode_key(&["waiting"]), gauge(stub.waiting)),
            ],
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
                let n = a.lock_takeovers();
                vec![(encode_key(&[zone]), count(n, zone_created))]
            }
            Reading::BuildInfo => {
                let Some(id) = identity else { continue };
                let build = [VERSION, REVISION, id.nginx_version.as_str()];
                vec![(encode_key(&build), Point::Gauge(1.0))]
            }
        };
        label_names.clear();
        label_names.extend(b.labels.iter().map(|s| s.to_string()));
        let meta = Meta {
            name: b.name,
            help: b.help,
            kind: match b.metric_type {
                MetricType::Counter => Kind::Counter,
                _ => Kind::Gauge,
            },
            declared: b.metric_type,
            unit: b.unit,
            group: b.group,
            label_names: &label_names,
            buckets: &[],
        };
        sink.family(&meta);
        for (key, p) in &points {
            sink.series(&meta, key, p);
        }
        sink.end_family(&meta);
    }
}
