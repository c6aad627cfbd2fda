//! A scrape every second, each format in turn, plain and gzipped: every answer whole
//! and well-formed (JSON parsed; about one scrape in seven, a text or OpenMetrics one,
//! through the reference parsers), and no counted series ever going down.

use crate::harness::{self, gunzip};
use crate::support::{paced, series, Ctx};
use std::collections::BTreeMap;

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
];

pub fn every_second(ctx: &Ctx) -> String {
    let mut last: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
    let (mut bytes, mut parsed, mut refused) = (0usize, 0u32, 0u32);
    let n = paced(ctx, 1.0, |n| {
        let (format, content_type, gzip) = VARIANTS[n as usize % VARIANTS.len()];
        let mut headers = vec![];
        // OpenMetrics as Prometheus asks for it; the others by `?format=`.
        let path = if format == "openmetrics" {
            headers.push(("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
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
         average, {parsed} through a reference parser",
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
                        let (format, gzip) =
                            [("text", true), ("openmetrics", false), ("json", true)][i % 3];
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
