use super::*;
use crate::metrics::family::DEFAULT_BUCKETS;
use crate::metrics::{counter, exemplar};
use crate::shm::region::heap_words;
use std::sync::atomic::AtomicU64;

const ALIVE: &dyn Fn(u32) -> bool = &|_| true;

/// Process `me`, with every lock owner alive.
fn who(me: u32) -> Participant<'static> {
    Participant { me, alive: ALIVE }
}

/// The series of `f` with these label values, made now if missing: the tests'
/// shorthand of [`Store::find_or_make`].
pub(crate) fn series<V: AsRef<[u8]>>(
    s: &Store<'_>,
    f: Family,
    values: &[V],
    p: Participant<'_>,
) -> Result<u64, SeriesError> {
    s.find_or_make(f, values, p, SeriesOptions::default())
        .map(|found| found.handle)
}

/// [`series`], made at `created_ms` if missing.
pub(crate) fn series_at<V: AsRef<[u8]>>(
    s: &Store<'_>,
    f: Family,
    values: &[V],
    p: Participant<'_>,
    created_ms: u64,
) -> Result<u64, SeriesError> {
    let options = SeriesOptions {
        created_ms: Some(created_ms),
    };
    s.find_or_make(f, values, p, options)
        .map(|found| found.handle)
}

fn counter_spec(name: &str, labels: &[&str]) -> FamilySpec {
    FamilySpec {
        help: "help".into(),
        ..FamilySpec::new(name, MetricType::Counter, labels)
    }
}

fn gauge_spec(name: &str, labels: &[&str]) -> FamilySpec {
    FamilySpec {
        help: "help".into(),
        ..FamilySpec::new(name, MetricType::Gauge, labels)
    }
}

#[test]
fn a_counter_series_takes_72_bytes_plus_its_labels() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s
        .register(&counter_spec("c_total", &["k"]), who(1))
        .unwrap();
    let before = s.arena().used_bytes();
    // 4 bytes of length and 4 of value: one word of key.
    let h = series_at(&s, f, &["abcd"], who(1), 1_700_000_000_123).unwrap();
    // Header, chain, hash, owner; tag, sweep word, created time; two values.
    assert_eq!(s.arena().used_bytes() - before, 72 + 8);
    let (_, series) = &s.families()[0];
    assert_eq!(s.series_created_ms(series[0]), 1_700_000_000_123);
    assert_eq!(s.series_values(series[0]) as u64, h);
    // Found again, the creation time stays.
    assert_eq!(series_at(&s, f, &["abcd"], who(1), 5).unwrap(), h);
    assert_eq!(s.series_created_ms(series[0]), 1_700_000_000_123);
}

#[test]
fn exemplars_cost_a_series_96_bytes_a_slot_and_apply_to_series_made_after() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let mut spec = counter_spec("c_total", &["k"]);
    let f = s.register(&spec, who(1)).unwrap();
    let before = s.arena().used_bytes();
    let old = series_at(&s, f, &["abcd"], who(1), 1_700_000_000_123).unwrap();
    assert_eq!(s.arena().used_bytes() - before, 72 + 8);
    // Switched on in place: the next series gets an area (the family word and one
    // 12-word slot), the old one keeps none and ignores exemplars.
    spec.exemplars = true;
    s.register(&spec, who(1)).unwrap();
    assert!(s.spec(f).exemplars);
    let before = s.arena().used_bytes();
    let new = series_at(&s, f, &["efgh"], who(1), 1_700_000_000_123).unwrap();
    assert_eq!(s.arena().used_bytes() - before, 72 + 8 + 8 + 96);
    let (_, series) = &s.families()[0];
    assert_eq!(s.series_created_ms(series[1]), 1_700_000_000_123);
    let r = s.region();
    for h in [old, new] {
        counter::inc(&r, h, 1).unwrap();
        exemplar::record_after_update(&r, h, false, 1.0, b"t", 7).unwrap();
    }
    let mut out = Vec::new();
    exemplar::read(&r, s.series_values(series[0]), COUNTER_WORDS, &mut out);
    assert!(out.is_empty());
    exemplar::read(&r, s.series_values(series[1]), COUNTER_WORDS, &mut out);
    assert_eq!(out, vec![Some(exemplar::Exemplar::new("t", 1.0, 7))]);
    // A histogram: a slot per bucket and +Inf.
    let mut h = FamilySpec {
        name: "lat_seconds".into(),
        metric_type: MetricType::Histogram,
        histogram: Some(HistogramSpec::default()),
        exemplars: true,
        ..counter_spec("x", &[])
    };
    let hf = s.register(&h, who(1)).unwrap();
    let hs = series_at(&s, hf, &[] as &[&str], who(1), 5).unwrap();
    let (_, series) = &s.families()[1];
    let values = histogram::value_words(h.histogram.as_ref().unwrap().layout().unwrap());
    exemplar::read(&r, s.series_values(series[0]), values, &mut out);
    assert_eq!(out.len(), DEFAULT_BUCKETS.len() + 1);
    // Values pick their bucket's slot from the family's current bounds.
    observe(&s.region(), hs, 0.003, || who(1)).unwrap();
    exemplar::record_after_update(&r, hs, true, 0.003, b"low", 1).unwrap();
    observe(&s.region(), hs, 100.0, || who(1)).unwrap();
    exemplar::record_after_update(&r, hs, true, 100.0, b"high", 2).unwrap();
    exemplar::read(&r, s.series_values(series[0]), values, &mut out);
    assert_eq!(out[0].unwrap().id(), "low");
    assert_eq!(out[DEFAULT_BUCKETS.len()].unwrap().id(), "high");
    h.native_only = true;
    s.register(&h, who(1)).unwrap();
    assert!(s.spec(hf).native_only && s.spec(hf).exemplars);
}

#[test]
fn options_are_kept_and_may_change() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let mut spec = counter_spec("sent_bytes_total", &[]);
    spec.unit = "bytes".into();
    spec.group = "http".into();
    let f = s.register(&spec, who(1)).unwrap();
    let back = s.spec(f);
    assert_eq!((back.unit.as_str(), back.group()), ("bytes", "http"));
    spec.group = String::new();
    spec.unit = String::new();
    s.register(&spec, who(1)).unwrap();
    let back = s.spec(f);
    assert_eq!((back.unit.as_str(), back.group()), ("", "app"));
    let mut h = FamilySpec {
        name: "lat_seconds".into(),
        metric_type: MetricType::Histogram,
        histogram: Some(HistogramSpec::default()),
        ..counter_spec("x", &[])
    };
    let hf = s.register(&h, who(1)).unwrap();
    assert_eq!(s.spec(hf).quantiles, QuantileMode::Off);
    h.quantiles = QuantileMode::Beside;
    s.register(&h, who(1)).unwrap();
    assert_eq!(s.spec(hf).quantiles, QuantileMode::Beside);
    assert_eq!(
        s.family(u64::from(hf.id)).unwrap().metric_type,
        MetricType::Histogram
    );
}

#[test]
fn clashing_names_are_refused() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    s.register(&counter_spec("req_total", &[]), who(1)).unwrap();
    let mut g = counter_spec("req", &[]);
    g.metric_type = MetricType::Gauge;
    let e = s.register(&g, who(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("metric \"req\" clashes with metric \"req_total\": both would expose req"),
        "{e}"
    );
    g.name = "req_created".into();
    assert!(s.register(&g, who(1)).is_err());
    let h = FamilySpec {
        name: "lat".into(),
        metric_type: MetricType::Histogram,
        histogram: Some(HistogramSpec::default()),
        ..counter_spec("x", &[])
    };
    s.register(&h, who(1)).unwrap();
    g.name = "lat_quantiles".into();
    assert!(s.register(&g, who(1)).is_err());
    g.name = "lat_count".into();
    assert!(s.register(&g, who(1)).is_err());
    // The module's own families count too.
    g.name = "nginx_requests".into();
    assert!(s
        .register(&g, who(1))
        .unwrap_err()
        .to_string()
        .contains("\"nginx_requests_total\""));
    // Unrelated names are fine, and so is registering the same family again.
    g.name = "req_rate".into();
    s.register(&g, who(1)).unwrap();
    s.register(&counter_spec("req_total", &[]), who(1)).unwrap();
}

#[test]
fn register_is_idempotent_and_checks_shape() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let a = s
        .register(&counter_spec("req_total", &["code"]), who(1))
        .unwrap();
    let b = s
        .register(&counter_spec("req_total", &["code"]), who(2))
        .unwrap();
    assert_eq!(a, b);
    let e = s
        .register(&counter_spec("req_total", &["status"]), who(1))
        .unwrap_err();
    assert!(e.to_string().contains("labels [code]"), "{e}");
    let mut g = counter_spec("req_total", &["code"]);
    g.metric_type = MetricType::Gauge;
    assert!(s
        .register(&g, who(1))
        .unwrap_err()
        .to_string()
        .contains("type counter"));
    let mut changed = counter_spec("req_total", &["code"]);
    changed.help = "new help".into();
    s.register(&changed, who(1)).unwrap();
    assert_eq!(s.spec(a).help, "new help");
    assert_eq!(s.family(u64::from(a.id)), Some(a));
    assert_eq!(s.family(12345), None);
    assert_eq!(s.family(u64::from(a.id) + 1), None);
    assert_eq!(s.family(u64::MAX), None);
    let series = series(&s, a, &["200"], who(1)).unwrap();
    assert_eq!(s.family(series), None);
}

#[test]
fn series_are_shared_and_counted() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s
        .register(&counter_spec("req_total", &["svc", "code"]), who(1))
        .unwrap();
    let h1 = series(&s, f, &["a", "200"], who(1)).unwrap();
    let h2 = series(&s, f, &["a", "200"], who(2)).unwrap();
    let h3 = series(&s, f, &["a", "500"], who(2)).unwrap();
    assert_eq!(h1, h2);
    assert_ne!(h1, h3);
    assert_eq!(s.find_series(f, &["a", "500"]), Some(h3));
    counter::inc(&s.region(), h1, 3).unwrap();
    counter::inc(&s.region(), h2, 4).unwrap();
    assert_eq!(counter::read(&s.region(), h1 as Offset), (7, 0.0));
    let e = series(&s, f, &["a"], who(1)).unwrap_err();
    assert_eq!(e.reason(), Reason::LabelCount);
    assert_eq!(s.errors(Reason::LabelCount), 1);
    let e = series(&s, f, &[&b"\xff"[..], b"200"], who(1)).unwrap_err();
    assert!(
        e.to_string().contains("label \"svc\" is not valid UTF-8"),
        "{e}"
    );
    let fams = s.families();
    assert_eq!(fams.len(), 1);
    assert_eq!(fams[0].1.len(), 2);
    assert_eq!(s.series_count(f), 2);
}

#[test]
fn a_full_zone_refuses_new_series_and_keeps_old_ones() {
    let mem = heap_words(super::super::super::shm::arena::MIN_ZONE_BYTES / 8);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s.register(&counter_spec("c", &["i"]), who(1)).unwrap();
    let mut handles = Vec::new();
    // Once the zone is full, a new label set gets the family's overflow series
    // (made in the zone's reserve), and the refusal is counted.
    let overflow = loop {
        let h = series(&s, f, &[handles.len().to_string()], who(1)).unwrap();
        if s.errors(Reason::ZoneFull) > 0 {
            break h;
        }
        handles.push(h);
    };
    assert_eq!(s.errors(Reason::ZoneFull), 1);
    assert_eq!(series(&s, f, &["another"], who(1)), Ok(overflow));
    assert_eq!(s.errors(Reason::ZoneFull), 2);
    assert_eq!(s.find_series(f, &["__overflow__"]), Some(overflow));
    assert_eq!(s.series_count(f), handles.len() as u64);
    // A family without labels has no overflow series: refused.
    let g = s.register(&counter_spec("d", &[]), who(1));
    if let Ok(g) = g {
        assert!(series(&s, g, &[] as &[&str], who(1)).is_err());
    }
    for h in &handles {
        counter::inc(&s.region(), *h, 1).unwrap();
    }
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(series(&s, f, &[i.to_string()], who(1)), Ok(*h));
        assert_eq!(counter::read(&s.region(), *h as Offset).0, 1);
    }
}

#[test]
fn series_limit_per_family() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let mut spec = counter_spec("c", &["i"]);
    spec.max_series = 2;
    let f = s.register(&spec, who(1)).unwrap();
    let one = series(&s, f, &["1"], who(1)).unwrap();
    series(&s, f, &["2"], who(1)).unwrap();
    // Beyond the limit: the overflow series, every time; counted.
    let over = series(&s, f, &["3"], who(1)).unwrap();
    assert_eq!(series(&s, f, &["4"], who(1)), Ok(over));
    assert_eq!(s.errors(Reason::SeriesLimit), 2);
    assert_eq!(s.find_series(f, &["__overflow__"]), Some(over));
    assert_eq!(series(&s, f, &["1"], who(1)), Ok(one));
    assert_eq!(s.series_count(f), 2, "the overflow series is not counted");
    // A deleted series makes room; deleting the overflow series changes no count.
    assert!(s.delete_series(f, &["__overflow__"], who(1)));
    assert!(s.delete_series(f, &["2"], who(1)));
    assert_eq!(s.series_count(f), 1);
    let three = series(&s, f, &["3"], who(1)).unwrap();
    assert_ne!(three, over);
    // The overflow value is the family's to choose.
    let mut spec = counter_spec("o", &["a", "b"]);
    spec.max_series = 1;
    spec.overflow_value = "other".into();
    let o = s.register(&spec, who(1)).unwrap();
    series(&s, o, &["x", "y"], who(1)).unwrap();
    let other = series(&s, o, &["x", "z"], who(1)).unwrap();
    assert_eq!(s.find_series(o, &["other", "other"]), Some(other));
    assert_eq!(
        s.overflow_series(o, who(1)),
        Some((other, b"other".to_vec()))
    );
    // Asked for by its label values, or by overflow_series, under the limit: the
    // overflow series is still made outside max_series, and nothing is counted.
    let mut spec = counter_spec("p", &["i"]);
    spec.max_series = 1;
    let p = s.register(&spec, who(1)).unwrap();
    let errors = s.errors(Reason::SeriesLimit);
    let made = series(&s, p, &["__overflow__"], who(1)).unwrap();
    assert_eq!(s.series_count(p), 0);
    assert_eq!(
        s.overflow_series(p, who(1)),
        Some((made, b"__overflow__".to_vec()))
    );
    assert!(s.delete_series(p, &["__overflow__"], who(1)));
    assert_eq!(s.series_count(p), 0);
    let again = s.overflow_series(p, who(1)).unwrap().0;
    assert_eq!(s.series_count(p), 0);
    series(&s, p, &["1"], who(1)).unwrap();
    assert_eq!(series(&s, p, &["2"], who(1)), Ok(again));
    assert_eq!(s.errors(Reason::SeriesLimit), errors + 1);
    // A family without labels has none.
    let n = s.register(&counter_spec("n", &[]), who(1)).unwrap();
    assert_eq!(s.overflow_series(n, who(1)), None);
}

#[test]
fn buckets_change_without_losing_counts() {
    let mem = heap_words(1 << 16);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let spec = FamilySpec {
        histogram: Some(HistogramSpec::default()),
        ..FamilySpec::new("lat", MetricType::Histogram, &[])
    };
    let f = s.register(&spec, who(1)).unwrap();
    let h = series(&s, f, &[] as &[&str], who(1)).unwrap();
    for v in [0.001, 0.02, 0.3, 4.0] {
        observe(&s.region(), h, v, || who(1)).unwrap();
    }
    s.set_buckets(f, &[0.01, 1.0], who(1)).unwrap();
    let spec2 = s.spec(f);
    assert_eq!(spec2.histogram.as_ref().unwrap().buckets, vec![0.01, 1.0]);
    let snap = histogram::Snapshot::read(&s.region(), h as Offset, None);
    assert_eq!(snap.count(), 4);
    let mut different = spec.clone();
    different.histogram.as_mut().unwrap().precision = 3;
    assert!(s
        .register(&different, who(1))
        .unwrap_err()
        .to_string()
        .contains("precision 2"));
}

fn histogram_spec(name: &str) -> FamilySpec {
    FamilySpec {
        metric_type: MetricType::Histogram,
        histogram: Some(HistogramSpec::default()),
        ..counter_spec(name, &[])
    }
}

#[test]
fn a_histogram_series_grows_by_chunks_made_once() {
    let mem = heap_words(1 << 16);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s.register(&histogram_spec("lat"), who(1)).unwrap();
    let before = s.arena().used_bytes();
    let h = series(&s, f, &[] as &[&str], who(1)).unwrap();
    // Header word, hash chain, hash, owner, an empty key; the tag, the sweep's word
    // and the created time; 3 parameter words, 40 chunk words (2,560 slots in
    // chunks of 64), the overflow count and the sum.
    let empty = s.arena().used_bytes() - before;
    assert_eq!(empty, (4 + 3 + 3 + 40 + 2) * 8);
    // Four threads, the same values at once: each chunk is made by one of them.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..5000u32 {
                    // 1 ms..~1.3 s: eleven powers of two of microseconds.
                    let v = 0.001 * 1.0015f64.powi(i as i32 % 4800);
                    observe(&s.region(), h, v, || who(1)).unwrap();
                }
            });
        }
    });
    let snap = histogram::Snapshot::read(&s.region(), h as Offset, None);
    assert_eq!(snap.count(), 20_000);
    let chunks: std::collections::BTreeSet<u32> = snap.counts.iter().map(|(i, _)| i / 64).collect();
    let grown = s.arena().used_bytes() - before - empty;
    assert_eq!(grown, chunks.len() as u64 * 64 * 8, "{chunks:?}");
    assert!(chunks.len() <= 24, "{chunks:?}");
}

#[test]
fn a_full_zone_refuses_new_chunks_and_keeps_count_and_sum_exact() {
    let mem = heap_words(super::super::super::shm::arena::MIN_ZONE_BYTES / 8);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s.register(&histogram_spec("lat"), who(1)).unwrap();
    let h = series(&s, f, &[] as &[&str], who(1)).unwrap();
    observe(&s.region(), h, 0.001, || who(1)).unwrap();
    let c = s.register(&counter_spec("c", &["i"]), who(1)).unwrap();
    // Fill the zone: until new label sets go to the overflow series.
    let mut i = 0;
    while s.errors(Reason::ZoneFull) == 0 {
        series(&s, c, &[i.to_string()], who(1)).unwrap();
        i += 1;
    }
    assert_eq!(
        observe(&s.region(), h, 30.0, || who(1)),
        Err(UpdateError::ZoneFull)
    );
    observe(&s.region(), h, 0.001, || who(1)).unwrap();
    let snap = histogram::Snapshot::read(&s.region(), h as Offset, None);
    // The refused value is in _count, _sum and +Inf only: sums stay exact.
    assert_eq!((snap.count(), snap.overflow), (3, 1));
    assert_eq!(snap.sum, 0.001 + 30.0 + 0.001);
}

#[test]
fn key_encoding_round_trips() {
    let values = ["", "a\"b", "\\\n", "ü"];
    let key = encode_key(&values);
    let back: Vec<&[u8]> = decode_key(&key).collect();
    assert_eq!(
        back,
        values.iter().map(|v| v.as_bytes()).collect::<Vec<_>>()
    );
}

#[test]
fn a_deleted_series_block_is_reused_and_its_handles_are_stale() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let r = s.region();
    let f = s
        .register(&counter_spec("c_total", &["k"]), who(1))
        .unwrap();
    // One participant (a worker) that checked "a"'s handle and did not move on yet.
    let worker = s.join_epochs(who(2)).unwrap();
    let before_a = s.arena().used_bytes();
    let a = series_at(&s, f, &["a"], who(1), 1000).unwrap();
    counter::inc(&r, a, 5).unwrap();
    let used = s.arena().used_bytes();
    assert!(s.delete_series(f, &["a"], who(1)));
    assert!(!s.delete_series(f, &["a"], who(1)), "deleted once");
    assert_eq!(counter::inc(&r, a, 1), Err(UpdateError::Stale));
    assert_eq!((s.series_count(f), s.arena().series()), (0, 0));
    assert_eq!(s.find_series(f, &["a"]), None);
    // Before the worker moves on: a new block, and the freed one is counted as
    // waiting. After: the freed one, whatever the key (same size).
    assert_eq!(s.waiting_bytes(who(1)), used - before_a);
    let b = series_at(&s, f, &["b"], who(1), 2000).unwrap();
    assert!(s.arena().used_bytes() > used);
    let used = s.arena().used_bytes();
    s.announce(worker);
    assert_eq!(s.waiting_bytes(who(1)), 0);
    let c = series_at(&s, f, &["c"], who(1), 3000).unwrap();
    assert_eq!(s.arena().used_bytes(), used);
    assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff, "same block");
    assert_ne!(c, a, "another generation");
    // The old handle never reaches the new series; the new one starts at zero.
    assert_eq!(counter::inc(&r, a, 1), Err(UpdateError::Stale));
    counter::inc(&r, c, 2).unwrap();
    counter::inc(&r, b, 3).unwrap();
    let (_, series) = s.families().remove(0);
    let values: Vec<(Vec<u8>, u64)> = series
        .iter()
        .map(|&rec| {
            let mut k = Vec::new();
            s.series_key(rec, &mut k);
            (k, counter::read(&r, s.series_values(rec)).0)
        })
        .collect();
    assert_eq!(
        values,
        vec![(encode_key(&["c"]), 2), (encode_key(&["b"]), 3)]
    );
    assert_eq!(s.series_created_ms(series[0]), 3000);
    assert_eq!((s.series_count(f), s.arena().series()), (2, 2));
    // "a" again: a new series from zero.
    let a2 = series_at(&s, f, &["a"], who(1), 9000).unwrap();
    assert_ne!(a2, a);
    assert_eq!(counter::read(&r, a2 as Offset).0, 0);
}

#[test]
fn a_stalled_participant_holds_reuse_back_then_lets_it_resume() {
    let mem = heap_words(1 << 16);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let r = s.region();
    let f = s
        .register(&counter_spec("c_total", &["k"]), who(1))
        .unwrap();
    let g = s.register(&gauge_spec("g", &["k"]), who(1)).unwrap();
    let busy = s.join_epochs(who(2)).unwrap();
    let stalled = s.join_epochs(who(3)).unwrap();
    // The stalled worker checked "a"'s handle and stopped before its add.
    let a = series(&s, f, &["a"], who(1)).unwrap();
    let a_at = a & 0xffff_ffff;
    assert!(s.delete_series(f, &["a"], who(1)));
    // Churn of counters and gauges of the same block sizes, far past any grace.
    let mut blocks = std::collections::HashSet::new();
    for i in 0..2000 {
        let k = format!("k{i:05}");
        let h = if i % 2 == 0 {
            series(&s, f, &[k.as_str()], who(1)).unwrap()
        } else {
            series(&s, g, &[k.as_str()], who(1)).unwrap()
        };
        blocks.insert(h & 0xffff_ffff);
        assert!(s.delete_series(if i % 2 == 0 { f } else { g }, &[k.as_str()], who(1)));
        s.announce(busy);
    }
    assert!(
        !blocks.contains(&a_at),
        "a's block reused under a stalled worker"
    );
    let waiting = s.waiting_bytes(who(1));
    assert!(waiting >= 2000 * 64, "{waiting} bytes reported waiting");
    // It resumes: its add lands in the freed block, which nothing reads...
    r.word(a_at as Offset).fetch_add(1, Relaxed);
    s.announce(stalled);
    assert_eq!(s.waiting_bytes(who(1)), 0);
    // ...and reuse resumes: a's block is taken again, zeroed.
    let b = series(&s, f, &["b"], who(1)).unwrap();
    assert_eq!(b & 0xffff_ffff, a_at, "the oldest free block first");
    assert_eq!(counter::read(&r, b as Offset), (0, 0.0));
    assert_eq!(counter::inc(&r, a, 1), Err(UpdateError::Stale));
    // A stalled worker that dies lets go too.
    s.join_epochs(who(4)).unwrap();
    assert!(s.delete_series(f, &["b"], who(1)));
    s.announce(busy);
    s.announce(stalled);
    assert!(s.waiting_bytes(who(1)) > 0);
    assert_eq!(
        s.waiting_bytes(Participant {
            me: 1,
            alive: &|pid| pid != 4
        }),
        0
    );
}

#[test]
fn a_block_that_used_up_its_generations_is_retired() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let r = s.region();
    let f = s
        .register(&counter_spec("c_total", &["k"]), who(1))
        .unwrap();
    let first = series(&s, f, &["a"], who(1)).unwrap();
    let mut n = 1u64;
    // Nobody holds reuse back: the same block serves every generation.
    let last = loop {
        assert!(s.delete_series(f, &["a"], who(1)));
        let h = series(&s, f, &["a"], who(1)).unwrap();
        if h & 0xffff_ffff != first & 0xffff_ffff {
            break h;
        }
        n += 1;
        assert!(
            n <= 1 << 17,
            "a generation came round: a stale handle could alias"
        );
    };
    assert_eq!(n, 1 << 17, "one series per generation, then a new block");
    // No handle of the retired block reaches anything, the first generation's least.
    assert_eq!(counter::inc(&r, first, 1), Err(UpdateError::Stale));
    counter::inc(&r, last, 1).unwrap();
    assert_eq!(counter::read(&r, last as Offset), (1, 0.0));
}

#[test]
fn a_histograms_chunks_are_freed_and_reused_zeroed() {
    let mem = heap_words(1 << 15);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s.register(&histogram_spec("lat"), who(1)).unwrap();
    let a = series_at(&s, f, &[] as &[&str], who(1), 0).unwrap();
    for v in [0.001, 0.01, 0.1, 1.0] {
        observe(&s.region(), a, v, || who(1)).unwrap();
    }
    let used = s.arena().used_bytes();
    assert!(s.delete_series(f, &[] as &[&str], who(1)));
    assert_eq!(
        observe(&s.region(), a, 0.1, || who(1)),
        Err(UpdateError::Stale)
    );
    // Reused (no participant holds them back): the block and the same chunks, every
    // count back at zero.
    let b = series_at(&s, f, &[] as &[&str], who(1), 0).unwrap();
    assert_eq!(b & 0xffff_ffff, a & 0xffff_ffff);
    let snap = histogram::Snapshot::read(&s.region(), b as Offset, None);
    assert_eq!((snap.count(), snap.sum), (0, 0.0));
    assert!(snap.counts.is_empty());
    assert_eq!(s.arena().used_bytes(), used - 4 * 64 * 8 + 4 * 64 * 8);
}

#[test]
fn reset_and_delete_where_pick_their_series_only() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s
        .register(&counter_spec("a_total", &["route", "code"]), who(1))
        .unwrap();
    let g = s
        .register(&counter_spec("b_total", &["route"]), who(1))
        .unwrap();
    for (route, code) in [("r1", "200"), ("r1", "500"), ("r2", "200")] {
        series(&s, f, &[route, code], who(1)).unwrap();
    }
    series(&s, g, &["r1"], who(1)).unwrap();
    let r1 = encode_key(&["r1"]);
    let deleted = s.delete_where(f, who(1), |key| {
        decode_key(key).next() == decode_key(&r1).next()
    });
    assert_eq!(deleted, 2);
    assert_eq!((s.series_count(f), s.series_count(g)), (1, 1));
    assert!(s.find_series(f, &["r2", "200"]).is_some());
    assert!(s.find_series(g, &["r1"]).is_some());
    assert_eq!(s.reset(f, who(1)), 1);
    assert_eq!((s.series_count(f), s.arena().series()), (0, 1));
    assert_eq!(s.families()[0].1.len(), 0);
}

#[test]
fn delete_labelled_deletes_the_named_families_series_that_carry_every_label() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let a = s
        .register(&counter_spec("a_total", &["code", "route"]), who(1))
        .unwrap();
    let b = s
        .register(&counter_spec("b_total", &["route"]), who(1))
        .unwrap();
    let c = s
        .register(&counter_spec("c_total", &["other"]), who(1))
        .unwrap();
    for (code, route) in [("200", "r1"), ("500", "r1"), ("200", "r2")] {
        series(&s, a, &[code, route], who(1)).unwrap();
    }
    series(&s, b, &["r1"], who(1)).unwrap();
    series(&s, c, &["r1"], who(1)).unwrap();
    let names = ["a_total", "b_total", "c_total", "not_registered"];
    // c_total has no label "route": none of its series carries it.
    assert_eq!(s.delete_labelled(&names, &[("route", "r1")], who(1)), 3);
    assert_eq!(
        (s.series_count(a), s.series_count(b), s.series_count(c)),
        (1, 0, 1)
    );
    assert!(s.find_series(a, &["200", "r2"]).is_some());
    // Every wanted label must match; a family lacking one is left alone.
    let both = [("route", "r2"), ("code", "500")];
    assert_eq!(s.delete_labelled(&names, &both, who(1)), 0);
    let both = [("route", "r2"), ("code", "200")];
    assert_eq!(s.delete_labelled(&names, &both, who(1)), 1);
    assert_eq!(s.arena().series(), 1);
}

#[test]
fn churn_of_mixed_sizes_stays_within_a_bound() {
    // 200,000 label sets of 1 to 120 bytes made over time, at most 500 alive at
    // once, a worker that announces every 300th series: the zone holds the live
    // series plus what waits for the worker, and stops growing.
    let mem = heap_words(1 << 17);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s
        .register(&counter_spec("churn_total", &["k"]), who(1))
        .unwrap();
    let mut alive: std::collections::VecDeque<String> = Default::default();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let at_start = s.arena().used_bytes();
    let mut peak = 0;
    let mut at_half = 0;
    let worker = s.join_epochs(who(2)).unwrap();
    for i in 0..200_000u64 {
        if i % 300 == 0 {
            s.announce(worker);
        }
        let now = i * 10; // a series every 10 ms
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1 + (x % 120) as usize;
        let value = format!("{i:x}{}", "v".repeat(len));
        series_at(&s, f, &[value.as_str()], who(1), now).unwrap();
        alive.push_back(value);
        if alive.len() > 500 {
            let old = alive.pop_front().unwrap();
            assert!(s.delete_series(f, &[old.as_str()], who(1)));
        }
        peak = peak.max(s.arena().used_bytes());
        if i == 100_000 {
            at_half = s.arena().used_bytes();
        }
    }
    assert_eq!(s.series_count(f), 500);
    // The zone's fixed part, then 500 live + 300 waiting (up to 600 in all), at most
    // 48 + 8 + 128 bytes each, a quarter more in a reused bigger block.
    let fixed = at_start;
    let bound = fixed + 800 * (48 + 8 + 128) * 5 / 4;
    eprintln!("churn: fixed {fixed} B, peak {peak} B, bound {bound} B");
    assert!(peak < bound, "peak {peak} over {bound}");
    // No growth in the second half: the free lists feed every new series.
    let end = s.arena().used_bytes();
    assert!(end <= at_half + 4096, "{at_half} -> {end}");
}

#[test]
fn a_takeover_finishes_a_half_done_delete() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let f = s
        .register(&counter_spec("c_total", &["k"]), who(1))
        .unwrap();
    let a = series_at(&s, f, &["a"], who(1), 0).unwrap();
    series_at(&s, f, &["b"], who(1), 0).unwrap();
    // Process 41 starts deleting "a" (handles dead, marked in progress, unlinked)
    // and dies holding the lock.
    assert!(s.begin_delete_and_keep_lock(a, who(41)));
    assert_eq!(counter::inc(&s.region(), a, 1), Err(UpdateError::Stale));
    // The next process takes the lock over and finishes: "a" is gone, its block
    // free for reuse, the counts right.
    let dead_41: &dyn Fn(u32) -> bool = &|pid| pid != 41;
    let b2 = series_at(
        &s,
        f,
        &["c"],
        Participant {
            me: 7,
            alive: dead_41,
        },
        0,
    )
    .unwrap();
    assert_eq!(s.arena().lock_takeovers(), 1);
    assert_eq!(s.arena().deleting(), 0);
    assert_eq!(
        b2 & 0xffff_ffff,
        a & 0xffff_ffff,
        "the freed block is reused"
    );
    assert_eq!((s.series_count(f), s.arena().series()), (2, 2));
    assert_eq!(s.find_series(f, &["a"]), None);
}

#[test]
fn stale_handles_never_reach_the_series_that_reuses_the_block() {
    // Four threads, each a participant announcing between batches of updates, keep
    // updating series A through their handle while A is deleted and, once every
    // thread has moved on, its block is reused by B; B gets exactly what went to B.
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let r = s.region();
    let f = s
        .register(&counter_spec("c_total", &["k"]), who(1))
        .unwrap();
    let a = series(&s, f, &["a"], who(1)).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (landed, stale) = (AtomicU64::new(0), AtomicU64::new(0));
    let b = std::thread::scope(|scope| {
        for pid in 10..14 {
            let slot = s.join_epochs(who(pid)).unwrap();
            let (stop, landed, stale) = (&stop, &landed, &stale);
            scope.spawn(move || {
                while !stop.load(Relaxed) {
                    for _ in 0..1000 {
                        match counter::inc(&r, a, 1) {
                            Ok(()) => landed.fetch_add(1, Relaxed),
                            Err(_) => stale.fetch_add(1, Relaxed),
                        };
                    }
                    s.announce(slot);
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(s.delete_series(f, &["a"], who(1)));
        while s.waiting_bytes(who(1)) > 0 {
            std::thread::yield_now();
        }
        let b = series(&s, f, &["b"], who(1)).unwrap();
        assert_eq!(b & 0xffff_ffff, a & 0xffff_ffff, "A's block");
        for _ in 0..100_000 {
            counter::inc(&r, b, 1).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.store(true, Relaxed);
        b
    });
    assert_eq!(counter::read(&r, b as Offset), (100_000, 0.0));
    assert!(landed.load(Relaxed) > 0 && stale.load(Relaxed) > 0);
}

#[test]
fn the_sweep_deletes_what_no_update_changed_for_expire_seconds() {
    let mem = heap_words(1 << 14);
    let s = Store::format(Region::new(&mem), 0).unwrap();
    let r = s.region();
    let mut spec = counter_spec("e_total", &["k"]);
    spec.expire_s = 10;
    let f = s.register(&spec, who(1)).unwrap();
    let g = s
        .register(&counter_spec("kept_total", &["k"]), who(1))
        .unwrap();
    let mut hspec = histogram_spec("e_seconds");
    hspec.expire_s = 10;
    let hf = s.register(&hspec, who(1)).unwrap();
    let t = 1_000_000_000;
    let a = series_at(&s, f, &["a"], who(1), t).unwrap();
    series_at(&s, f, &["b"], who(1), t).unwrap();
    series_at(&s, g, &["c"], who(1), t).unwrap();
    let h = series_at(&s, hf, &[] as &[&str], who(1), t).unwrap();
    let sweep = |at: u64| s.sweep(1000, at, who(1));
    assert_eq!(sweep(t + 5_000), (3, 0));
    counter::inc(&r, a, 1).unwrap();
    observe(&s.region(), h, 0.25, || who(1)).unwrap();
    // b: nothing since its creation 12 s ago. a and h: updated since the last look.
    assert_eq!(sweep(t + 12_000), (3, 1));
    assert_eq!(s.find_series(f, &["b"]), None);
    assert!(s.find_series(g, &["c"]).is_some(), "no expire: kept");
    assert_eq!(sweep(t + 21_000), (2, 0));
    assert_eq!(sweep(t + 23_000), (2, 2));
    assert_eq!(counter::inc(&r, a, 1), Err(UpdateError::Stale));
    assert_eq!(
        (s.series_count(f), s.series_count(hf), s.series_count(g)),
        (0, 0, 1)
    );
    // A small budget: each call looks at the next records, the pass wraps around.
    let mut spec = counter_spec("w_total", &["k"]);
    spec.expire_s = 1;
    let w = s.register(&spec, who(1)).unwrap();
    for k in ["1", "2", "3"] {
        series_at(&s, w, &[k], who(1), t).unwrap();
    }
    let mut deleted = 0;
    for _ in 0..40 {
        deleted += s.sweep(2, t + 60_000, who(1)).1;
    }
    assert_eq!(deleted, 3);
    assert_eq!(s.series_count(w), 0);
}
