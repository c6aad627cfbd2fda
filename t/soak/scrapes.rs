//! A scrape every second, each format in turn, plain and gzipped: every answer whole
//! and well-formed (JSON and protobuf decoded, every native histogram's count its zero
//! bucket plus its buckets; some text and OpenMetrics ones through the reference
//! parsers), and no counted series ever going down.

use crate::harness::{self, gunzip};
use crate::support::{paced, series, Ctx};
use prost::Message;
use proto::{Histogram, MetricFamily};
use std::collections::BTreeMap;

/// The module's prost code for `proto/metrics.proto` (the module itself cannot be
/// linked into a test: it calls into nginx).
#[allow(clippy::all, clippy::pedantic, dead_code)]
mod proto {
    include!("../../src/exposition/proto/io.prometheus.client.rs");
}

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
/// What Prometheus 2.42 asks for with `--enable-feature=native-histograms`.
const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;\
proto=io.prometheus.client.MetricFamily;encoding=delimited,\
application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const VARIANTS: &[(&str, &str, bool)] = &[
    ("text", "text/plain; version=0.0.4; charset=utf-8", false),
    (
        "openmetrics",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        true,
    ),
    ("json", "application/json", false),
    ("text", "text/plain; version=0.0.4; charset=utf-8", true),
    (
        "openmetrics",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        false,
    ),
    ("json", "application/json", true),
    ("protobuf", PROTOBUF, true),
    ("protobuf", PROTOBUF, false),
];

/// Decodes a length-delimited stream of families; `Err` says what is wrong with it.
fn decode_protobuf(mut body: &[u8]) -> Result<Vec<MetricFamily>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let f = MetricFamily::decode_length_delimited(&mut body).map_err(|e| e.to_string())?;
        out.push(f);
    }
    Ok(out)
}

/// What Prometheus refuses in a native histogram: a count that is not its zero bucket
/// plus its buckets, a bucket below zero, spans and deltas of different lengths.
fn native_mismatch(h: &Histogram) -> Option<String> {
    h.schema?;
    let mut bucket: i64 = 0;
    let mut total = h.zero_count.unwrap_or(0) as i64;
    for d in &h.positive_delta {
        bucket += d;
        if bucket < 0 {
            return Some(format!("a bucket of {bucket}"));
        }
        total += bucket;
    }
    let spans: u32 = h.positive_span.iter().map(|s| s.length.unwrap_or(0)).sum();
    if spans as usize != h.positive_delta.len() {
        return Some(format!(
            "{spans} buckets in spans, {} deltas",
            h.positive_delta.len()
        ));
    }
    (total as u64 != h.sample_count.unwrap_or(0))
        .then(|| format!("count {:?}, buckets {total}", h.sample_count))
}

pub fn every_second(ctx: &Ctx) -> String {
    let mut last: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
    let mut last_pb: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let (mut bytes, mut parsed, mut refused) = (0usize, 0u32, 0u32);
    let mut natives = 0usize;
    let n = paced(ctx, 1.0, |n| {
        let (format, content_type, gzip) = VARIANTS[n as usize % VARIANTS.len()];
        let mut headers = vec![];
        // OpenMetrics and protobuf as Prometheus asks for them; the others by `?format=`.
        let path = if format == "openmetrics" {
            headers.push(("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
            "/metrics".to_string()
        } else if format == "protobuf" {
            headers.push(("Accept", PROTOBUF_ACCEPT));
            "/metrics".to_string()
        } else {
            format!("/metrics?format={format}")
        };
        if gzip {
            headers.push(("Accept-Encoding", "gzip"));
        }
        let r = harness::request(ctx.metrics, "GET", &path, &headers, b"");
        let fail = |why: String| ctx.fail(format!("scrape {n} ({format}, gzip {gzip}): {why}"));
        // During a burst the worker may hold all the scrapes it may: asked again later.
        if r.status == 503 && r.header("retry-after").is_some() {
            refused += 1;
            return;
        }
        if r.status != 200 || r.header("content-type") != Some(content_type) {
            return fail(format!(
                "{} {:?}: {}",
                r.status,
                r.header("content-type"),
                r.text()
            ));
        }
        let body = if gzip {
            if r.header("content-encoding") != Some("gzip") {
                return fail("not gzipped".into());
            }
            gunzip(&r.body)
        } else {
            r.body.clone()
        };
        bytes += body.len();
        let text = String::from_utf8_lossy(&body).into_owned();
        match format {
            "json" => {
                let v: serde_json::Value = match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => return fail(format!("not JSON: {e}")),
                };
                // The global plugin's request counts: never deleted, never down.
                for (labels, s) in series(&v, "gateway_http_requests_total") {
                    let now = s["value"].as_f64().unwrap_or(f64::NAN);
                    if let Some(before) = last.insert(labels.clone(), now) {
                        if now < before {
                            fail(format!("{labels:?} went from {before} to {now}"));
                        }
                    }
                }
            }
            "protobuf" => {
                let families = match decode_protobuf(&body) {
                    Ok(f) => f,
                    Err(e) => return fail(format!("not protobuf: {e}")),
                };
                for f in &families {
                    let name = f.name.as_deref().unwrap_or_default();
                    for m in &f.metric {
                        if let Some(h) = &m.histogram {
                            if let Some(why) = native_mismatch(h) {
                                fail(format!("{name}: native histogram with {why}"));
                            }
                            natives += usize::from(h.schema.is_some());
                        }
                        if name != "gateway_http_requests_total" {
                            continue;
                        }
                        let labels: Vec<(String, String)> = m
                            .label
                            .iter()
                            .map(|l| (l.name().to_string(), l.value().to_string()))
                            .collect();
                        let now = m.counter.as_ref().map_or(f64::NAN, |c| c.value());
                        if let Some(before) = last_pb.insert(labels.clone(), now) {
                            if now < before || now.is_nan() {
                                fail(format!("{labels:?} went from {before} to {now}"));
                            }
                        }
                    }
                }
            }
            "openmetrics" if !text.ends_with("# EOF\n") => fail("no # EOF at the end".into()),
            _ => {}
        }
        // The reference parsers now and then: they cost a Python start and a parse.
        if n % 10 == 1 || n % 10 == 6 {
            if format != "json" {
                parsed += 1;
            }
            if format == "openmetrics" {
                let r =
                    std::panic::catch_unwind(|| harness::parse_openmetrics_with_reference(&text));
                if r.is_err() {
                    fail("the reference OpenMetrics parser refused it".into());
                }
            } else if format == "text" {
                let r = std::panic::catch_unwind(|| harness::parse_with_reference(&text));
                if r.is_err() {
                    fail("the reference text parser refused it".into());
                }
            }
        }
    });
    format!(
        "{n} scrapes ({refused} answered 503 + Retry-After during a burst), {} KiB on \
         average, {parsed} through a reference parser, {natives} native histograms decoded",
        bytes / n.max(1) as usize / 1024
    )
}

/// Several scrapers at once (Prometheus pairs, federation, a person with curl): every
/// 10 s, 12 scrapes together. Each worker renders up to `prometheus_max_renders` (8)
/// at a time in its thread pool and answers the rest `503` with `Retry-After`.
pub fn bursts(ctx: &Ctx) -> String {
    let (mut whole, mut refused) = (0, 0);
    let n = paced(ctx, 0.1, |_| {
        let answers: Vec<(u16, bool)> = std::thread::scope(|s| {
            let all: Vec<_> = (0..12)
                .map(|i| {
                    s.spawn(move || {
                        let (format, gzip) = [
                            ("text", true),
                            ("openmetrics", false),
                            ("json", true),
                            ("protobuf", true),
                        ][i % 4];
                        let mut headers = vec![];
                        if gzip {
                            headers.push(("Accept-Encoding", "gzip"));
                        }
                        let r = harness::request(
                            ctx.metrics,
                            "GET",
                            &format!("/metrics?format={format}"),
                            &headers,
                            b"",
                        );
                        let ok = match r.status {
                            200 => {
                                let body = if gzip {
                                    gunzip(&r.body)
                                } else {
                                    r.body.clone()
                                };
                                match format {
                                    "openmetrics" => body.ends_with(b"# EOF\n"),
                                    "json" => {
                                        serde_json::from_slice::<serde_json::Value>(&body).is_ok()
                                    }
                                    "protobuf" => decode_protobuf(&body).is_ok(),
                                    _ => body.ends_with(b"\n"),
                                }
                            }
                            503 => r.header("retry-after").is_some(),
                            _ => false,
                        };
                        (r.status, ok)
                    })
                })
                .collect();
            all.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (status, ok) in answers {
            if !ok {
                ctx.fail(format!("a scrape of a burst: {status}, not whole"));
            } else if status == 200 {
                whole += 1;
            } else {
                refused += 1;
            }
        }
    });
    format!("{n} bursts: {whole} whole scrapes, {refused} answered 503 + Retry-After")
}
