//! Exposition formats. Pure: writes what the store holds as bytes.
//!
//! A [`Scrape`] ([`scrape`]) describes one scrape (store, zone, nginx's counters,
//! selection, identity, format); [`render`] writes it. [`walk()`] reads a zone once (families in
//! declaration order, each series once, then the module's own families, which
//! [`Collector`]s read at scrape time) and hands every family and series to a [`Sink`]
//! ([`model`]), one per format: [`text`] writes the Prometheus text format 0.0.4,
//! [`openmetrics`] OpenMetrics 1.0 (with the text format's line encoders), [`json`] a
//! JSON document for scripts, [`protobuf`] length-delimited `MetricFamily` messages
//! (with [`native`] histograms made from the HDR counts; [`proto`] is prost's code for
//! the upstream `metrics.proto`); [`number`] prints numbers for the text ones. [`select`]
//! decides which families a scrape shows, [`const_labels`] puts constant labels in
//! front of every series, [`collectors`] holds the module's scrape-time collectors.
//! [`negotiate`] decides, from a request's `Accept`, `Accept-Encoding` and query string,
//! which format and families to serve. [`status_page`] is the HTML page
//! (`?format=html`) that shows what the JSON holds, live, in a browser.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

pub mod collectors;
pub mod const_labels;
pub mod json;
pub mod model;
pub mod native;
pub mod negotiate;
pub mod number;
pub mod openmetrics;
pub mod proto;
pub mod protobuf;
pub mod scrape;
pub mod select;
pub mod status_page;
pub mod text;
pub mod walk;

pub use model::{label_values, ExposedType, Meta, Point, Sink};
pub use scrape::{Collector, Format, Scrape, StubStatus};
pub use select::{NotFound, Selection};
pub use walk::walk;

/// Appends `scrape` to `out` in its format; see [`walk()`]. Nothing is written when
/// the selection names a group or family that is not there.
pub fn render(out: &mut Vec<u8>, scrape: &Scrape<'_>) -> Result<(), NotFound> {
    let collectors = collectors::COLLECTORS;
    match scrape.format {
        Format::Text => walk(&mut text::TextSink::new(out), scrape, &collectors),
        Format::OpenMetrics => walk(
            &mut openmetrics::OpenMetricsSink::new(out),
            scrape,
            &collectors,
        ),
        Format::Json => walk(
            &mut json::JsonSink::new(out, &scrape.zone),
            scrape,
            &collectors,
        ),
        Format::Protobuf => walk(&mut protobuf::ProtobufSink::new(out), scrape, &collectors),
        Format::Html => {
            out.extend_from_slice(status_page::PAGE.as_bytes());
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::identity::{ConstLabels, Identity, REVISION, VERSION};
    use crate::metrics::builtin::{BUILD_INFO, PROCESS_GROUP};
    use crate::metrics::family::HistogramSpec;
    use crate::metrics::family::QuantileMode;
    use crate::metrics::store::observe;
    use crate::metrics::store::tests::series_at;
    use crate::metrics::Store;
    use crate::metrics::{counter, gauge};
    use crate::metrics::{FamilySpec, MetricType};
    use crate::shm::region::heap_words;
    use crate::shm::Region;
    use std::sync::atomic::AtomicU64;

    const ALIVE: &dyn Fn(u32) -> bool = &|_| true;
    const ME: crate::metrics::store::Participant<'static> = crate::metrics::store::Participant {
        me: 1,
        alive: ALIVE,
    };
    pub(crate) const T0: u64 = 1_700_000_000_123;

    pub(crate) fn spec(name: &str, t: MetricType, labels: &[&str]) -> FamilySpec {
        FamilySpec::new(name, t, labels)
    }

    /// A zone with one family of each kind and option, values set, made at T0.
    pub(crate) fn sample_zone() -> Vec<AtomicU64> {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 1234).unwrap();
        let r = s.region();
        let reg = |spec: &FamilySpec| s.register(spec, ME).unwrap();
        let mut c = spec("http_requests_total", MetricType::Counter, &["code"]);
        c.help = "Requests.".into();
        let c = reg(&c);
        let ok = series_at(&s, c, &["200"], ME, T0).unwrap();
        counter::inc(&r, ok, 3).unwrap();
        let odd = series_at(&s, c, &["a\"b\\\n"], ME, T0 + 500).unwrap();
        counter::add(&r, odd, 0.5).unwrap();
        let mut k = spec("kong_bandwidth_bytes", MetricType::Counter, &[]);
        k.unit = "bytes".into();
        k.group = "http".into();
        let k = reg(&k);
        let kb = series_at(&s, k, &[] as &[&str], ME, T0).unwrap();
        counter::inc(&r, kb, 42).unwrap();
        let mut g = spec("temperature_celsius", MetricType::Gauge, &[]);
        g.help = "Say \"hot\"\\ or\ncold.".into();
        g.unit = "celsius".into();
        let g = reg(&g);
        let gs = series_at(&s, g, &[] as &[&str], ME, T0).unwrap();
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
        let hs = series_at(&s, h, &["/"], ME, T0).unwrap();
        for v in [0.05, 0.5, 5.0] {
            observe(&s.region(), hs, v, || ME).unwrap();
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
        series_at(&s, i, &[] as &[&str], ME, T0).unwrap();
        mem
    }

    /// A zone whose families keep exemplars (and one that does not), made at T0: a
    /// counter with one; a histogram with one on `le="0.1"` (the later of two) and one
    /// on `+Inf`; a native-only histogram with one.
    pub(crate) fn exemplar_zone() -> Vec<AtomicU64> {
        use crate::metrics::exemplar::record_after_update;
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 1234).unwrap();
        let r = s.region();
        let reg = |spec: &FamilySpec| s.register(spec, ME).unwrap();
        let mut c = spec("jobs_total", MetricType::Counter, &["code"]);
        c.exemplars = true;
        let c = reg(&c);
        let cs = series_at(&s, c, &["200"], ME, T0).unwrap();
        counter::add(&r, cs, 2.0).unwrap();
        record_after_update(&r, cs, false, 2.0, b"abc", T0 + 1000).unwrap();
        let plain = reg(&spec("plain_total", MetricType::Counter, &[]));
        let ps = series_at(&s, plain, &[] as &[&str], ME, T0).unwrap();
        counter::add(&r, ps, 1.0).unwrap();
        // No exemplar area: the exemplar is left out, nothing is written.
        record_after_update(&r, ps, false, 1.0, b"ignored", T0).unwrap();
        let mut h = spec("req_seconds", MetricType::Histogram, &[]);
        h.exemplars = true;
        h.histogram = Some(HistogramSpec {
            buckets: vec![0.1, 1.0],
            ..HistogramSpec::default()
        });
        let h = reg(&h);
        let hs = series_at(&s, h, &[] as &[&str], ME, T0).unwrap();
        for (v, id, ms) in [(0.05, "a", 1), (0.07, "b-q", 2), (5.0, "inf", 3)] {
            observe(&s.region(), hs, v, || ME).unwrap();
            record_after_update(&r, hs, true, v, id.as_bytes(), T0 + ms).unwrap();
        }
        // Refused: a control character; the observation stands.
        observe(&s.region(), hs, 0.5, || ME).unwrap();
        assert!(record_after_update(&r, hs, true, 0.5, b"x\ny", T0 + 4).is_err());
        let mut n = spec("native_seconds", MetricType::Histogram, &[]);
        n.exemplars = true;
        n.native_only = true;
        n.histogram = Some(HistogramSpec {
            buckets: vec![0.1],
            ..HistogramSpec::default()
        });
        let n = reg(&n);
        let ns = series_at(&s, n, &[] as &[&str], ME, T0).unwrap();
        observe(&s.region(), ns, 0.05, || ME).unwrap();
        record_after_update(&r, ns, true, 0.05, b"n", T0 + 5).unwrap();
        mem
    }

    /// Renders `scrape` as text, for tests that read what was written.
    pub(crate) fn render_string(scrape: &Scrape<'_>) -> Result<String, NotFound> {
        let mut out = Vec::new();
        render(&mut out, scrape).map(|()| String::from_utf8(out).unwrap())
    }

    fn render_str(format: Format, sel: &Selection) -> Result<String, NotFound> {
        let mem = sample_zone();
        let s = Store::attach(Region::new(&mem)).unwrap();
        render_string(&Scrape {
            format,
            selection: sel.clone(),
            ..Scrape::new(s, "z")
        })
    }

    fn families_of(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect()
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
            for f in [
                Format::Text,
                Format::OpenMetrics,
                Format::Json,
                Format::Protobuf,
            ] {
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
            s.register(&per_worker, ME).unwrap(),
            s.register(&app, ME).unwrap(),
        );
        for w in ["0", "1", "2", "3", "x"] {
            let h = series_at(&s, fw, &[w], ME, T0).unwrap();
            gauge::set(&s.region(), h, 7.0).unwrap();
            series_at(&s, fa, &["q", w], ME, T0).unwrap();
        }
        let shown = |workers: Option<u32>, format: Format| {
            let sel = Selection {
                workers,
                ..Selection::default()
            };
            render_string(&Scrape {
                format,
                selection: sel,
                ..Scrape::new(s, "z")
            })
            .unwrap()
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
                ME,
            )
            .unwrap();
        let h = series_at(&s, f, &["local", "200"], ME, T0).unwrap();
        counter::inc(&s.region(), h, 2).unwrap();
        let id = Identity {
            labels: ConstLabels::parse(&["node_id=n-1", "dc=eu"], &[]).unwrap(),
            nginx_version: "1.22.1".into(),
        };
        let sel = Selection {
            names: vec!["hits_total".into(), BUILD_INFO.into()],
            ..Selection::default()
        };
        let with_id = |format| Scrape {
            format,
            selection: sel.clone(),
            identity: Some(&id),
            ..Scrape::new(s, "z")
        };
        let out = render_string(&with_id(Format::Text)).unwrap();
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
        let out = render_string(&with_id(Format::Json)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["families"][0]["series"][0]["labels"],
            serde_json::json!({"node_id": "n-1", "dc": "eu", "exported_dc": "local", "code": "200"})
        );
        // Without an identity: neither the labels nor the build info.
        let out = render_string(&Scrape::new(s, "z")).unwrap();
        assert!(
            out.contains("hits_total{dc=\"local\",code=\"200\"} 2\n"),
            "{out}"
        );
        assert!(!out.contains(BUILD_INFO));
    }
}
