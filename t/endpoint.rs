//! The scrape endpoint: content negotiation (text 0.0.4, OpenMetrics 1.0, JSON), gzip,
//! filters by name and group, quantile summaries and bad input, against real nginx, the
//! reference parsers, promtool and a real Prometheus server.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// What Prometheus 2.42 sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Families of every kind and option; `/record` gives them fixed values.
fn app_http(app: u16, metrics: u16) -> String {
    format!(
        r#"
    prometheus_zone metrics 8m;
    # The process group is tested in t/identity.rs; here it stays empty.
    prometheus_process_metrics off;
    client_body_buffer_size 1m;
    log_format scrapes "$request_uri|$status|$sent_http_content_type|$sent_http_content_encoding|$http_accept";
    init_by_lua_block {{
        local prom = require "ngxprom"
        local z = prom.zone("metrics")
        app = {{
            requests = z:counter("app_requests_total", "Requests by code.", {{ "code" }}),
            sent = z:counter("app_sent_bytes_total", "Bytes sent.", {{}},
                {{ unit = "bytes", group = "http" }}),
            legacy = z:counter("app_legacy_bytes", "A counter named the Kong way.", {{}},
                {{ unit = "bytes", group = "kong" }}),
            temp = z:gauge("app_temperature_celsius", "Temperature.", {{}}, {{ unit = "celsius" }}),
            latency = z:histogram("app_latency_seconds", "Latency.", {{ "route" }}, {{
                unit = "seconds", buckets = {{ 0.005, 0.1, 1 }}, quantiles = "beside", group = "http",
            }}),
            sizes = z:histogram("app_size_bytes", "Sizes.", {{}}, {{
                unit = "bytes", lowest = 1, highest = 1e6, buckets = {{ 100, 1000 }}, quantiles = "instead",
            }}),
        }}
    }}
    server {{
        listen 127.0.0.1:{app};
        location = /record {{
            content_by_lua_block {{
                app.requests:labels("200"):inc(3)
                app.requests:labels("500"):inc()
                app.sent:labels():inc(1500)
                app.legacy:labels():inc(42)
                app.temp:labels():set(21.5)
                local l = app.latency:labels("/a")
                for _, v in ipairs({{ 0.003, 0.05, 0.2, 2 }}) do l:observe(v) end
                local s = app.sizes:labels()
                for _, v in ipairs({{ 10, 200, 5000 }}) do s:observe(v) end
                ngx.say("ok")
            }}
        }}
        location = /observe {{
            content_by_lua_block {{
                ngx.req.read_body()
                local child = app.latency:labels(ngx.var.arg_route)
                local n = 0
                for v in ngx.req.get_body_data():gmatch("%S+") do
                    child:observe(tonumber(v))
                    n = n + 1
                end
                ngx.say(n)
            }}
        }}
        location = /render {{
            content_by_lua_block {{
                ngx.print(require("ngxprom").zone("metrics"):render(ngx.var.arg_format))
            }}
        }}
        location = /misuse {{
            content_by_lua_block {{
                local z = require("ngxprom").zone("metrics")
                local out = {{}}
                for _, f in ipairs({{
                    function() z:histogram("bad_unit_seconds", "", {{}}, {{ unit = "bytes" }}) end,
                    function() z:gauge("plain_gauge", "", {{}}, {{ quantiles = "beside" }}) end,
                    function() z:histogram("odd_seconds", "", {{}}, {{ quantiles = "sometimes" }}) end,
                    function() z:counter("grouped_total", "", {{}}, {{ group = "b@d" }}) end,
                    function() z:gauge("app_requests", "") end,
                    function() z:histogram("q_seconds", "", {{ "quantile" }}, {{ quantiles = "instead" }}) end,
                    function() z:counter("_total", "") end,
                    function() z:render("xml") end,
                }}) do
                    local ok, err = pcall(f)
                    out[#out + 1] = ok and "no error" or err
                end
                ngx.say(table.concat(out, "\n"))
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        access_log logs/scrapes.log scrapes;
        location = /metrics {{ prometheus_metrics metrics; }}
        location = /http {{ prometheus_metrics metrics group=http; }}
        location = /ops {{ prometheus_metrics group=nginx,app metrics; }}
        location = /process {{ prometheus_metrics metrics group=process; }}
    }}
"#
    )
}

/// The app after `/record`, and the Unix seconds just before and after it (the series'
/// creation times).
fn start_app(name: &str) -> (App, (f64, f64)) {
    let a = App::start(name, app_http);
    let before = now();
    assert_eq!(get(a.app, "/record").text(), "ok\n");
    (a, (before, now()))
}

fn fetch(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, "GET", path, headers, b"")
}

/// Family names in `# TYPE` lines, in order.
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

fn sample_lines(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

/// Reference quantiles for the default latency histogram (1 µs .. 60 s, 2 digits).
fn reference_quantiles(values: &[f64], lowest: f64, highest: f64) -> Vec<f64> {
    let scale = 1.0 / lowest;
    let ticks = |v: f64| (v * scale).round() as u64;
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, ticks(highest), 2).unwrap();
    for v in values {
        h.record(ticks(*v)).unwrap();
    }
    [0.5, 0.9, 0.99, 0.999, 1.0]
        .iter()
        .map(|q| h.value_at_quantile(*q) as f64 / scale)
        .collect()
}

fn family<'a>(fams: &'a [OmFamily], name: &str) -> &'a OmFamily {
    fams.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

#[test]
fn text_by_default_openmetrics_when_asked_and_gzip_when_accepted() {
    let (a, recorded) = start_app("negotiate");
    // No Accept: the text format 0.0.4, as before.
    let r = fetch(a.metrics, "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(TEXT));
    assert_eq!(r.header("vary"), Some("Accept, Accept-Encoding"));
    assert_eq!(r.header("content-encoding"), None);
    let text = r.text();
    let s = parse_with_reference(&text);
    assert_eq!(
        value(&s, "app_requests_total", &[("code", "200")]),
        Some(3.0)
    );
    // The Python text parser files counter samples under `<name>_total`; the line
    // itself keeps the declared name.
    assert_eq!(value(&s, "app_legacy_bytes_total", &[]), Some(42.0));
    assert!(text.contains("\napp_legacy_bytes 42\n"));
    assert_eq!(
        value(
            &s,
            "app_latency_seconds_bucket",
            &[("route", "/a"), ("le", "1")]
        ),
        Some(3.0)
    );
    assert!(!text.contains("_created") && !text.contains("# UNIT") && !text.contains("# EOF"));
    // promtool's lint refuses counters without _total (the `kong` group) on purpose.
    let linted = fetch(a.metrics, "/metrics?group=app&group=http&group=nginx", &[]).text();
    promtool_check(&linted).unwrap_or_else(|e| panic!("promtool: {e}\n{linted}"));

    // Prometheus' Accept: OpenMetrics 1.0.0.
    let r = fetch(a.metrics, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OPENMETRICS));
    let om = r.text();
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    let fams = parse_openmetrics_with_reference(&om);
    let requests = family(&fams, "app_requests");
    assert_eq!(requests.typ, "counter");
    assert_eq!(requests.help, "Requests by code.");
    assert_eq!(
        value(&requests.samples, "app_requests_total", &[("code", "200")]),
        Some(3.0)
    );
    let created = value(
        &requests.samples,
        "app_requests_created",
        &[("code", "200")],
    )
    .unwrap();
    assert!(
        created >= recorded.0.floor() && created <= recorded.1 + 0.001,
        "created {created}, recorded {:?}",
        recorded
    );
    let sent = family(&fams, "app_sent_bytes");
    assert_eq!(
        (sent.typ.as_str(), sent.unit.as_str()),
        ("counter", "bytes")
    );
    assert_eq!(
        value(&sent.samples, "app_sent_bytes_total", &[]),
        Some(1500.0)
    );
    // A counter without `_total` keeps its sample name: `unknown` in OpenMetrics.
    let legacy = family(&fams, "app_legacy_bytes");
    assert_eq!(
        (legacy.typ.as_str(), legacy.unit.as_str()),
        ("unknown", "bytes")
    );
    assert_eq!(value(&legacy.samples, "app_legacy_bytes", &[]), Some(42.0));
    let temp = family(&fams, "app_temperature_celsius");
    assert_eq!(
        (temp.typ.as_str(), temp.unit.as_str()),
        ("gauge", "celsius")
    );
    assert_eq!(
        value(&temp.samples, "app_temperature_celsius", &[]),
        Some(21.5)
    );
    let latency = family(&fams, "app_latency_seconds");
    assert_eq!(
        (latency.typ.as_str(), latency.unit.as_str()),
        ("histogram", "seconds")
    );
    for (le, want) in [("0.005", 1.0), ("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)] {
        assert_eq!(
            value(
                &latency.samples,
                "app_latency_seconds_bucket",
                &[("route", "/a"), ("le", le)]
            ),
            Some(want),
            "le={le}"
        );
    }
    assert!(om.contains("app_latency_seconds_bucket{route=\"/a\",le=\"1.0\"} 3\n"));
    assert!(om.contains("# TYPE app_latency_seconds histogram\n# UNIT app_latency_seconds seconds\n# HELP app_latency_seconds Latency.\n"));
    assert_eq!(
        family(&fams, "app_latency_seconds_quantiles").typ,
        "summary"
    );
    let sizes = family(&fams, "app_size_bytes");
    assert_eq!(
        (sizes.typ.as_str(), sizes.unit.as_str()),
        ("summary", "bytes")
    );
    assert_eq!(family(&fams, "nginx_metric_zone_bytes").unit, "bytes");
    assert_eq!(family(&fams, "nginx_requests").typ, "counter");

    // ?format= wins over Accept.
    let r = fetch(a.metrics, "/metrics?format=openmetrics", &[]);
    assert_eq!(r.header("content-type"), Some(OPENMETRICS));
    let r = fetch(
        a.metrics,
        "/metrics?format=text",
        &[("Accept", PROMETHEUS_ACCEPT)],
    );
    assert_eq!(r.header("content-type"), Some(TEXT));

    // gzip: the same bytes, compressed (the `app` group does not change between scrapes).
    for (path, accept) in [
        ("/metrics?group=app", PROMETHEUS_ACCEPT),
        ("/metrics?group=app", "text/plain"),
        ("/metrics?group=app&format=json", "*/*"),
    ] {
        let plain = fetch(a.metrics, path, &[("Accept", accept)]);
        let zipped = fetch(
            a.metrics,
            path,
            &[("Accept", accept), ("Accept-Encoding", "deflate, gzip")],
        );
        assert_eq!(zipped.status, 200);
        assert_eq!(zipped.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(zipped.header("vary"), Some("Accept, Accept-Encoding"));
        assert_eq!(zipped.header("content-type"), plain.header("content-type"));
        assert_eq!(
            zipped
                .header("content-length")
                .map(|l| l.parse::<usize>().unwrap()),
            Some(zipped.body.len())
        );
        assert_eq!(gunzip(&zipped.body), plain.body, "{path}");
        assert!(zipped.body.len() < plain.body.len());
    }
    let refused = fetch(
        a.metrics,
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0, identity")],
    );
    assert_eq!(refused.header("content-encoding"), None);
    let head = request(
        a.metrics,
        "HEAD",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert!(head.body.is_empty());

    // The Lua API renders the same formats.
    let lua_om = get(a.app, "/render?format=openmetrics").text();
    assert!(lua_om.ends_with("# EOF\n"));
    parse_openmetrics_with_reference(&lua_om);
    assert!(get(a.app, "/render")
        .text()
        .contains("\napp_legacy_bytes 42\n"));
    assert!(a.nginx.errors().is_empty(), "{:?}", a.nginx.errors());
}

#[test]
fn json_has_families_series_values_and_hdr_quantiles() {
    let (a, recorded) = start_app("json");
    let r = fetch(a.metrics, "/metrics?format=json", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["zone"], "metrics");
    let fams = v["families"].as_array().unwrap();
    let by_name: BTreeMap<&str, &serde_json::Value> = fams
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f))
        .collect();
    let names: Vec<&str> = fams.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        &names[..6],
        [
            "app_requests_total",
            "app_sent_bytes_total",
            "app_legacy_bytes",
            "app_temperature_celsius",
            "app_latency_seconds",
            "app_size_bytes"
        ]
    );
    let req = by_name["app_requests_total"];
    assert_eq!(req["type"], "counter");
    assert_eq!(req["help"], "Requests by code.");
    assert_eq!(req["group"], "app");
    assert_eq!(req["unit"], "");
    assert_eq!(req["labels"], serde_json::json!(["code"]));
    let series = req["series"].as_array().unwrap();
    assert_eq!(series[0]["labels"], serde_json::json!({"code": "200"}));
    assert_eq!(series[0]["value"], 3);
    assert_eq!(series[1]["labels"], serde_json::json!({"code": "500"}));
    assert_eq!(series[1]["value"], 1);
    let created = series[0]["created"].as_f64().unwrap();
    assert!(created >= recorded.0.floor() && created <= recorded.1 + 0.001);
    let legacy = by_name["app_legacy_bytes"];
    assert_eq!(
        (legacy["unit"].as_str(), legacy["group"].as_str()),
        (Some("bytes"), Some("kong"))
    );
    assert_eq!(
        by_name["app_temperature_celsius"]["series"][0]["value"],
        21.5
    );
    assert!(by_name["app_temperature_celsius"]["series"][0]
        .get("created")
        .is_none());

    let lat = by_name["app_latency_seconds"];
    assert_eq!(lat["type"], "histogram");
    assert_eq!(lat["group"], "http");
    let s = &lat["series"][0];
    assert_eq!(s["labels"], serde_json::json!({"route": "/a"}));
    assert_eq!(s["count"], 4);
    assert_eq!(s["sum"].as_f64().unwrap(), 0.003 + 0.05 + 0.2 + 2.0);
    assert_eq!(
        s["buckets"],
        serde_json::json!([
            {"le": 0.005, "count": 1},
            {"le": 0.1, "count": 2},
            {"le": 1, "count": 3}
        ])
    );
    let want = reference_quantiles(&[0.003, 0.05, 0.2, 2.0], 1e-6, 60.0);
    for (k, w) in ["p50", "p90", "p99", "p999", "max"].iter().zip(&want) {
        assert_eq!(s["quantiles"][k].as_f64(), Some(*w), "{k}");
    }
    // `instead` changes the exposition formats only: JSON keeps buckets and quantiles.
    let sizes = &by_name["app_size_bytes"]["series"][0];
    assert_eq!(sizes["count"], 3);
    assert_eq!(sizes["sum"], 5210);
    assert_eq!(
        sizes["buckets"],
        serde_json::json!([{"le": 100, "count": 1}, {"le": 1000, "count": 2}])
    );
    let want = reference_quantiles(&[10.0, 200.0, 5000.0], 1.0, 1e6);
    for (k, w) in ["p50", "p90", "p99", "p999", "max"].iter().zip(&want) {
        assert_eq!(sizes["quantiles"][k].as_f64(), Some(*w), "{k}");
    }
    let errors = by_name["nginx_metric_errors_total"];
    assert_eq!(errors["group"], "nginx");
    assert_eq!(
        errors["series"][0]["labels"],
        serde_json::json!({"zone": "metrics", "reason": "zone_full"})
    );
    assert_eq!(errors["series"][0]["value"], 0);

    // Filters apply to JSON too.
    let r = fetch(
        a.metrics,
        "/metrics?format=json&name=app_size_bytes,nginx_metric_series",
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = v["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app_size_bytes", "nginx_metric_series"]);
    assert_eq!(
        v["families"][1]["series"][0]["value"], 7,
        "seven series in the zone"
    );
}

#[test]
fn names_and_groups_select_families() {
    let (a, _) = start_app("filters");
    let cases: [(&str, &[&str]); 9] = [
        (
            "/metrics?name[]=app_requests_total&name[]=app_temperature_celsius",
            &["app_requests_total", "app_temperature_celsius"],
        ),
        (
            "/metrics?name%5B%5D=app_temperature_celsius&name=app_requests_total",
            &["app_requests_total", "app_temperature_celsius"],
        ),
        (
            "/metrics?name=app_latency_seconds,nginx_requests_total",
            &[
                "app_latency_seconds",
                "app_latency_seconds_quantiles",
                "nginx_requests_total",
            ],
        ),
        (
            "/metrics?group=http",
            &[
                "app_sent_bytes_total",
                "app_latency_seconds",
                "app_latency_seconds_quantiles",
            ],
        ),
        ("/metrics?group=kong", &["app_legacy_bytes"]),
        (
            "/metrics?group=app&name=app_size_bytes",
            &["app_size_bytes"],
        ),
        (
            "/http",
            &[
                "app_sent_bytes_total",
                "app_latency_seconds",
                "app_latency_seconds_quantiles",
            ],
        ),
        ("/http?name=app_sent_bytes_total", &["app_sent_bytes_total"]),
        (
            "/ops?group=nginx",
            &[
                "nginx_connections_accepted_total",
                "nginx_connections_handled_total",
                "nginx_requests_total",
                "nginx_connections",
                "nginx_metric_errors_total",
                "nginx_metric_zone_bytes",
                "nginx_metric_series",
                "nginx_metric_lock_takeovers_total",
                "nginx_prometheus_build_info",
            ],
        ),
    ];
    for (path, want) in cases {
        let r = fetch(a.metrics, path, &[]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let text = r.text();
        assert_eq!(families(&text), want, "{path}");
        // promtool's lint refuses a counter without `_total` on purpose.
        if !text.contains("app_legacy_bytes") {
            promtool_check(&text).unwrap_or_else(|e| panic!("{path}: promtool: {e}\n{text}"));
        }
        parse_with_reference(&text);
    }
    // A location's groups bound what it shows, in every format.
    let ops = fetch(a.metrics, "/ops", &[]).text();
    let fams = families(&ops);
    assert!(fams.contains(&"app_requests_total".to_string()));
    assert!(fams.contains(&"nginx_metric_series".to_string()));
    assert!(!ops.contains("app_latency") && !ops.contains("app_legacy"));
    let om = fetch(a.metrics, "/http", &[("Accept", PROMETHEUS_ACCEPT)]).text();
    let names: Vec<String> = parse_openmetrics_with_reference(&om)
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        [
            "app_sent_bytes",
            "app_latency_seconds",
            "app_latency_seconds_quantiles"
        ]
    );
    let json: serde_json::Value =
        serde_json::from_slice(&fetch(a.metrics, "/http?format=json", &[]).body).unwrap();
    assert_eq!(json["families"].as_array().unwrap().len(), 2);
    // A served group without families (yet): an empty but valid exposition.
    let empty = fetch(a.metrics, "/process", &[]);
    assert_eq!(empty.status, 200);
    assert_eq!(empty.header("content-type"), Some(TEXT));
    assert_eq!(empty.header("content-length"), Some("0"));
    assert!(empty.body.is_empty());
    let empty = fetch(
        a.metrics,
        "/process?group=process",
        &[("Accept", PROMETHEUS_ACCEPT)],
    );
    assert_eq!(empty.status, 200);
    assert_eq!(empty.text(), "# EOF\n");
    let zipped = fetch(a.metrics, "/process", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gunzip(&zipped.body), b"");
}

#[test]
fn quantile_summaries_equal_hdrhistogram() {
    let (a, _) = start_app("summaries");
    // Values from 10 µs to 30 s.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let values: Vec<f64> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x % 1_000_000) as f64 / 1e6 + 0.000_001;
            (mantissa * 10f64.powi(((x >> 32) % 7) as i32 - 5)).min(30.0)
        })
        .collect();
    let body: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
    let r = post(a.app, "/observe?route=/b", body.join(" ").as_bytes());
    assert_eq!(r.text().trim(), "2000");
    let want = reference_quantiles(&values, 1e-6, 60.0);
    let labels = ["0.5", "0.9", "0.99", "0.999", "1"];
    let om_labels = ["0.5", "0.9", "0.99", "0.999", "1.0"];
    let sum: f64 = values.iter().sum();

    let text = fetch(a.metrics, "/metrics?name=app_latency_seconds", &[]).text();
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let s = parse_with_reference(&text);
    for (q, w) in labels.iter().zip(&want) {
        assert_eq!(
            value(
                &s,
                "app_latency_seconds_quantiles",
                &[("route", "/b"), ("quantile", q)]
            ),
            Some(*w),
            "quantile {q}"
        );
    }
    assert_eq!(
        value(
            &s,
            "app_latency_seconds_quantiles_count",
            &[("route", "/b")]
        ),
        Some(2000.0)
    );
    let got_sum = value(&s, "app_latency_seconds_quantiles_sum", &[("route", "/b")]).unwrap();
    assert!((got_sum - sum).abs() <= 1e-9 * sum);
    // The histogram is still there, beside.
    assert_eq!(
        value(
            &s,
            "app_latency_seconds_bucket",
            &[("route", "/b"), ("le", "+Inf")]
        ),
        Some(2000.0)
    );

    let om = fetch(
        a.metrics,
        "/metrics?name=app_latency_seconds&name=app_size_bytes",
        &[("Accept", PROMETHEUS_ACCEPT)],
    )
    .text();
    let fams = parse_openmetrics_with_reference(&om);
    let summary = family(&fams, "app_latency_seconds_quantiles");
    for (q, w) in om_labels.iter().zip(&want) {
        assert_eq!(
            value(
                &summary.samples,
                "app_latency_seconds_quantiles",
                &[("route", "/b"), ("quantile", q)]
            ),
            Some(*w),
            "quantile {q}"
        );
    }
    assert!(value(
        &summary.samples,
        "app_latency_seconds_quantiles_created",
        &[("route", "/b")]
    )
    .is_some());
    // `instead`: a summary under the histogram's own name, no buckets.
    let sizes = family(&fams, "app_size_bytes");
    assert_eq!(sizes.typ, "summary");
    assert!(sizes.samples.iter().all(|s| !s.name.ends_with("_bucket")));
    let want = reference_quantiles(&[10.0, 200.0, 5000.0], 1.0, 1e6);
    assert_eq!(
        value(&sizes.samples, "app_size_bytes", &[("quantile", "0.5")]),
        Some(want[0])
    );
    assert_eq!(
        value(&sizes.samples, "app_size_bytes", &[("quantile", "1.0")]),
        Some(want[4])
    );
    assert_eq!(
        value(&sizes.samples, "app_size_bytes_count", &[]),
        Some(3.0)
    );
    assert_eq!(
        value(&sizes.samples, "app_size_bytes_sum", &[]),
        Some(5210.0)
    );

    // Observations above `highest` make the top quantiles +Inf: not below the truth.
    post(a.app, "/observe?route=/c", b"0.5 0.5 0.5 1000");
    let om = fetch(
        a.metrics,
        "/metrics?name=app_latency_seconds&format=openmetrics",
        &[],
    )
    .text();
    let fams = parse_openmetrics_with_reference(&om);
    let summary = family(&fams, "app_latency_seconds_quantiles");
    let q = |q: &str| {
        value(
            &summary.samples,
            "app_latency_seconds_quantiles",
            &[("route", "/c"), ("quantile", q)],
        )
        .unwrap()
    };
    assert_eq!(q("0.5"), reference_quantiles(&[0.5], 1e-6, 60.0)[0]);
    assert_eq!(q("0.9"), f64::INFINITY);
    assert_eq!(q("1.0"), f64::INFINITY);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_no_data() {
    let (a, _) = start_app("badinput");
    let long_accept = "a/b;q=0.5,".repeat(600);
    let commas = ",".repeat(3000);
    // (path, request headers, status, whole body)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        // Malformed Accept: skipped; nothing understandable left: the default format.
        ("/metrics", vec![("Accept", "garbage;;;")], 200, None),
        ("/metrics", vec![("Accept", &commas)], 200, None),
        ("/metrics", vec![("Accept", "text/plain;q=nonsense")], 200, None),
        (
            "/metrics",
            vec![("Accept", "application/json")],
            406,
            Some(
                "not acceptable: this endpoint serves text/plain; version=0.0.4, \
                 application/openmetrics-text; version=1.0.0 and application/vnd.google.protobuf; \
                 proto=io.prometheus.client.MetricFamily; encoding=delimited (or ?format=json)\n",
            ),
        ),
        ("/metrics", vec![("Accept", "text/html")], 406, None),
        ("/metrics", vec![("Accept", &long_accept)], 406, None),
        (
            "/metrics?format=xml",
            vec![("Accept-Encoding", "gzip")],
            400,
            Some("unknown format \"xml\": use text, openmetrics, json, protobuf or html\n"),
        ),
        (
            "/metrics?format=",
            vec![],
            400,
            Some("unknown format \"\": use text, openmetrics, json, protobuf or html\n"),
        ),
        (
            "/metrics?name[]=no_such_total",
            vec![("Accept", PROMETHEUS_ACCEPT)],
            404,
            Some("unknown metric family \"no_such_total\"\n"),
        ),
        (
            "/metrics?name=app_requests_total&name=nope&format=json",
            vec![],
            404,
            Some("unknown metric family \"nope\"\n"),
        ),
        (
            "/metrics?name=1bad",
            vec![],
            400,
            Some("invalid metric name \"1bad\": must match [a-zA-Z_:][a-zA-Z0-9_:]*\n"),
        ),
        (
            "/metrics?name=%3Cscript%3Ealert(1)%3C/script%3E",
            vec![],
            400,
            None,
        ),
        ("/metrics?name=%ff", vec![], 400, None),
        (
            "/metrics?group=nope",
            vec![],
            404,
            Some("unknown group \"nope\"\n"),
        ),
        (
            "/metrics?group=b@d",
            vec![],
            400,
            Some("invalid group \"b@d\": 1 to 64 letters, digits, '_' or '-'\n"),
        ),
        (
            "/metrics?group=http&name=app_requests_total",
            vec![],
            404,
            Some(
                "metric family \"app_requests_total\" is in group \"app\", which was not asked for\n",
            ),
        ),
        (
            "/http?group=app",
            vec![],
            404,
            Some("unknown group \"app\": this location serves http\n"),
        ),
        (
            "/http?name=app_requests_total",
            vec![],
            404,
            Some("unknown metric family \"app_requests_total\"\n"),
        ),
    ];
    for (path, headers, status, body) in &cases {
        let r = fetch(a.metrics, path, headers);
        assert_eq!(r.status, *status, "{path} {headers:?}: {}", r.text());
        assert_eq!(r.header("vary"), Some("Accept, Accept-Encoding"));
        if *status == 200 {
            assert_eq!(r.header("content-type"), Some(TEXT), "{path}");
            continue;
        }
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("content-encoding"), None);
        let text = r.text();
        if let Some(want) = body {
            assert_eq!(text, *want, "{path}");
        }
        assert!(
            !text.contains("# TYPE")
                && !text.contains("app_legacy")
                && !text.contains("nginx_metric"),
            "data in an error: {text}"
        );
    }
    // Lua misuse of the new options raises, naming the culprit.
    let out = get(a.app, "/misuse").text();
    let lines: Vec<&str> = out.lines().collect();
    let want = [
        "metric \"bad_unit_seconds\": invalid unit: \"bytes\": the name must end with \"_bytes\" (OpenMetrics)",
        "metric \"plain_gauge\": invalid quantiles: \"beside\" applies to histograms only",
        "metric \"odd_seconds\": quantiles must be \"beside\" or \"instead\", got \"sometimes\"",
        "metric \"grouped_total\": invalid group: \"b@d\" must be 1 to 64 letters, digits, '_' or '-'",
        "metric \"app_requests\" clashes with metric \"app_requests_total\": both would expose app_requests",
        "metric \"q_seconds\": invalid quantiles: the label \"quantile\" is reserved for summaries",
        "metric \"_total\": invalid name: a counter's name needs something before \"_total\"",
        "unknown format \"xml\": use text, openmetrics, json or protobuf",
    ];
    assert_eq!(lines.len(), want.len(), "{out}");
    for (got, want) in lines.iter().zip(want) {
        assert!(got.contains(want), "want {want}\ngot  {got}");
        assert!(got.contains("content_by_lua"), "no caller position: {got}");
    }
    assert!(a.nginx.crashes().is_empty(), "{:?}", a.nginx.crashes());
    assert!(
        a.nginx.errors().iter().all(|l| !l.contains("[alert]")),
        "{:?}",
        a.nginx.errors()
    );
}

#[test]
fn directive_arguments_are_checked() {
    let server = |args: &str| {
        format!(
            "prometheus_zone metrics 1m; server {{ listen 127.0.0.1:1; location / {{ prometheus_metrics {args}; }} }}"
        )
    };
    let cases = [
        (
            "metrics group=b@d",
            "prometheus_metrics: invalid group \"b@d\"",
        ),
        ("metrics group=", "prometheus_metrics: invalid group \"\""),
        (
            "metrics other",
            "prometheus_metrics: more than one zone (\"metrics\", \"other\")",
        ),
        (
            "metrics format=json",
            "prometheus_metrics: unknown parameter \"format=json\"",
        ),
        (
            "group=a group=b",
            "prometheus_metrics: \"group=\" is given twice",
        ),
        ("group=http other", "unknown zone \"other\""),
        (
            "a b c",
            "invalid number of arguments in \"prometheus_metrics\"",
        ),
    ];
    for (args, want) in cases {
        let err = nginx_t("directive", &server(args)).expect_err(args);
        assert!(err.contains(want), "`{args}`:\nwant {want}\ngot {err}");
    }
    for ok in [
        "",
        "metrics",
        "group=http",
        "metrics group=http,nginx,app",
        "group=app metrics",
    ] {
        nginx_t("directive-ok", &server(ok)).unwrap_or_else(|e| panic!("`{ok}`: {e}"));
    }
}

#[test]
fn prometheus_scrapes_both_formats_without_warnings() {
    let (a, recorded) = start_app("prometheus");
    let target = format!("['127.0.0.1:{}']", a.metrics);
    let prom = Prometheus::start(&format!(
        "  - job_name: om\n    static_configs:\n      - targets: {target}\n\
         \x20 - job_name: text\n    params:\n      format: [text]\n    static_configs:\n      - targets: {target}\n"
    ));
    let both = eventually(Duration::from_secs(60), || {
        let om = prom.query("app_requests_total{job=\"om\",code=\"200\"}")?;
        let text = prom.query("app_requests_total{job=\"text\",code=\"200\"}")?;
        Some((om, text))
    });
    assert_eq!(both, Some((3.0, 3.0)), "PromQL never saw both jobs");
    // Samples per scrape equal the sample lines of each format (OpenMetrics adds
    // _created lines). Scrape once more so that both counts come from settled scrapes.
    let om_lines =
        sample_lines(&fetch(a.metrics, "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]).text());
    let text_lines = sample_lines(&fetch(a.metrics, "/metrics?format=text", &[]).text());
    assert!(om_lines > text_lines);
    let scraped = eventually(Duration::from_secs(30), || {
        let om = prom.query("scrape_samples_scraped{job=\"om\"}")?;
        let text = prom.query("scrape_samples_scraped{job=\"text\"}")?;
        (om == om_lines as f64 && text == text_lines as f64).then_some(())
    });
    assert!(
        scraped.is_some(),
        "scrape_samples_scraped: om {:?} (want {om_lines}), text {:?} (want {text_lines})",
        prom.query("scrape_samples_scraped{job=\"om\"}"),
        prom.query("scrape_samples_scraped{job=\"text\"}")
    );
    assert_eq!(prom.query("up{job=\"om\"}"), Some(1.0));
    assert_eq!(prom.query("up{job=\"text\"}"), Some(1.0));
    // Values, and the one difference between the formats: canonical `le`.
    assert_eq!(
        prom.query("app_latency_seconds_bucket{job=\"om\",le=\"1.0\"}"),
        Some(3.0)
    );
    assert_eq!(
        prom.query("app_latency_seconds_bucket{job=\"text\",le=\"1\"}"),
        Some(3.0)
    );
    assert_eq!(prom.query("app_legacy_bytes{job=\"om\"}"), Some(42.0));
    assert_eq!(prom.query("app_legacy_bytes{job=\"text\"}"), Some(42.0));
    let p50 = reference_quantiles(&[0.003, 0.05, 0.2, 2.0], 1e-6, 60.0)[0];
    assert_eq!(
        prom.query("app_latency_seconds_quantiles{job=\"om\",quantile=\"0.5\"}"),
        Some(p50)
    );
    let created = prom
        .query("app_requests_created{job=\"om\",code=\"200\"}")
        .expect("_created ingested");
    assert!(created >= recorded.0.floor() && created <= recorded.1 + 0.001);
    // Metadata from OpenMetrics: the unit reached Prometheus.
    let meta = prom
        .api("/api/v1/metadata?metric=app_latency_seconds")
        .unwrap();
    let entries = meta["data"]["app_latency_seconds"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "histogram" && e["unit"] == "seconds"),
        "{meta}"
    );
    let targets = prom.api("/api/v1/targets").unwrap();
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        assert_eq!(t["health"], "up", "{t}");
        assert_eq!(t["lastError"], "", "{t}");
    }
    assert!(prom.warnings().is_empty(), "{:?}", prom.warnings());
    // What nginx served Prometheus: OpenMetrics by default, text when pinned, gzip both.
    let log = std::fs::read_to_string(a.nginx.prefix.join("logs/scrapes.log")).unwrap();
    let om_line = format!("/metrics|200|{OPENMETRICS}|gzip|{PROMETHEUS_ACCEPT}");
    let text_line = format!("/metrics?format=text|200|{TEXT}|gzip|{PROMETHEUS_ACCEPT}");
    assert!(log.lines().any(|l| l == om_line), "{log}");
    assert!(log.lines().any(|l| l == text_line), "{log}");
    assert!(a.nginx.errors().is_empty(), "{:?}", a.nginx.errors());
}

/// One counter with `/make?n=` series (label values of 20 bytes), `http_conf` beside
/// it, and a metrics server with `metrics_conf` in it.
fn many_series_http(app: u16, metrics: u16, http_conf: &str, metrics_conf: &str) -> String {
    format!(
        r#"
    prometheus_zone metrics 64m;
    prometheus_process_metrics off;
    init_by_lua_block {{
        many = require("ngxprom").zone("metrics"):counter("many_total", "Many series.",
            {{ "k" }}, {{ max_series = 1000000 }})
    }}
    {http_conf}
    server {{
        listen 127.0.0.1:{app};
        location = /make {{
            content_by_lua_block {{
                for i = 1, tonumber(ngx.var.arg_n) do
                    many:inc(i, {{ string.format("series-%013d", i) }})
                end
                ngx.say("ok")
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        {metrics_conf}
        location = /metrics {{ prometheus_metrics metrics; }}
    }}
"#
    )
}

/// Every render of the debug-hooks module waits `ms` first, in every worker.
fn render_delay(ms: u32) -> String {
    format!(
        r#"init_worker_by_lua_block {{
        local ffi = require "ffi"
        ffi.cdef "void ngx_prom_debug_render_delay(uint32_t ms);"
        ffi.C.ngx_prom_debug_render_delay({ms})
    }}"#
    )
}

const OPENMETRICS_SCRAPE: &[u8] =
    b"GET /metrics?format=openmetrics HTTP/1.0\r\nHost: localhost\r\n\r\n";

/// An OpenMetrics scrape on a connection of its own: all the server sent until it
/// closed (nothing, when it closed without answering).
fn openmetrics_scrape(port: u16) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(OPENMETRICS_SCRAPE).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    raw
}

/// `nginx -s reload` while scrapes render in the pool: the old workers finish them
/// (every client gets its whole exposition), then exit, without "open socket ... left".
#[test]
fn reload_finishes_scrapes_in_flight() {
    let (app, metrics) = (free_port(), free_port());
    let nginx = Nginx::start_with_debug_hooks(
        "reload-scrapes",
        &many_series_http(app, metrics, &render_delay(1500), ""),
    );
    let n = 20_000;
    assert_eq!(get(app, &format!("/make?n={n}")).text(), "ok\n");
    let last = format!("many_total{{k=\"series-{n:013}\"}} {n}\n");
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || openmetrics_scrape(metrics)))
        .collect();
    // The requests are in (each render now waits 1.5 s in a pool thread).
    std::thread::sleep(Duration::from_millis(300));
    nginx.reload();
    for c in clients {
        let raw = c.join().unwrap();
        assert!(!raw.is_empty(), "closed without an answer");
        let r = parse_response(&raw);
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.text();
        assert!(body.ends_with("# EOF\n"), "cut short: {} bytes", body.len());
        assert!(body.contains(&last), "no {last}");
    }
    let log = nginx.error_log();
    assert!(!log.contains("left in connection"), "{log}");
    assert!(!log.contains("aborting"), "{log}");
    assert!(nginx.crashes().is_empty());
}

/// Anonymous resident memory of the workers (heap: what rendered bodies take; the
/// zone's shared pages are not in it), summed.
fn workers_anon_rss(nginx: &Nginx) -> u64 {
    nginx
        .worker_pids()
        .iter()
        .map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            kb * 1024
        })
        .sum()
}

/// Connects, sends an OpenMetrics scrape and never reads: returns once the answer has
/// begun to arrive (peeked, not read).
fn held_scrape(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(OPENMETRICS_SCRAPE).unwrap();
    s
}

fn wait_answer_began(s: &std::net::TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut one = [0u8; 1];
    // A signal to the test process (a child's exit, under load) interrupts the wait;
    // std retries read_exact on EINTR but not peek.
    let n = loop {
        match s.peek(&mut one) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.unwrap(),
        }
    };
    assert_eq!(n, 1, "no answer began");
}

/// Reads a held connection's status line and headers (not its body).
fn read_head(s: &mut std::net::TcpStream) -> Response {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "{:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    parse_response(&head)
}

/// Clients that ask for a large exposition and never read: each worker holds at most
/// `prometheus_max_renders` of them and `prometheus_max_pinned` bytes, the others get
/// `503` with `Retry-After`; the workers' memory stays bounded meanwhile and goes back
/// near where it was once the clients are gone.
#[test]
fn held_scrapes_are_bounded_and_their_memory_returns() {
    let (app, metrics) = (free_port(), free_port());
    let limits = "prometheus_max_renders 4; prometheus_max_pinned 16m;";
    let nginx = Nginx::start("held-scrapes", &many_series_http(app, metrics, limits, ""));
    let n = 50_000;
    assert_eq!(get(app, &format!("/make?n={n}")).text(), "ok\n");
    let body_len = {
        let raw = openmetrics_scrape(metrics);
        assert!(raw.ends_with(b"# EOF\n"));
        raw.len() as u64
    };
    for _ in 0..3 {
        assert!(openmetrics_scrape(metrics).ends_with(b"# EOF\n"));
    }
    let baseline = workers_anon_rss(&nginx);
    let clients = 40;
    let mut held: Vec<_> = (0..clients).map(|_| held_scrape(metrics)).collect();
    for s in &held {
        wait_answer_began(s);
    }
    let holding = workers_anon_rss(&nginx);
    let heads: Vec<Response> = held.iter_mut().map(read_head).collect();
    let served = heads.iter().filter(|r| r.status == 200).count();
    for r in heads.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    }
    eprintln!(
        "body {body_len} B, baseline {baseline} B, holding {holding} B, {served} of {clients} served"
    );
    // 4 scrapes or 16 MB per worker, two workers: never all 40.
    assert!((1..=8).contains(&served), "{served} scrapes held");
    let bound = 2 * 16 * 1024 * 1024 + 2 * body_len + 16 * 1024 * 1024;
    assert!(
        holding < baseline + bound,
        "workers went from {baseline} to {holding} B of anonymous memory (bound {bound} more)"
    );
    drop(held);
    let back = eventually(Duration::from_secs(15), || {
        let now = workers_anon_rss(&nginx);
        (now < baseline + 8 * 1024 * 1024).then_some(now)
    });
    assert!(
        back.is_some(),
        "workers kept {} B after the clients left (baseline {baseline} B)",
        workers_anon_rss(&nginx)
    );
    // The limits are given back.
    assert!(openmetrics_scrape(metrics).ends_with(b"# EOF\n"));
    assert!(nginx.errors().is_empty(), "{:?}", nginx.errors());
    assert!(nginx.crashes().is_empty());
}

/// nginx's `send_timeout` applies to a scrape's response: a client that stops reading
/// is let go after it, and what it held is given back to the worker.
#[test]
fn send_timeout_lets_go_of_a_client_that_never_reads() {
    use std::io::Read;
    let (app, metrics) = (free_port(), free_port());
    let http = "prometheus_max_renders 1;";
    let nginx = Nginx::start(
        "send-timeout",
        &many_series_http(app, metrics, http, "send_timeout 1s;"),
    );
    assert_eq!(get(app, "/make?n=50000").text(), "ok\n");
    let full = openmetrics_scrape(metrics).len();
    // More never-read scrapes than both workers may hold: the rest get 503.
    let mut held: Vec<_> = (0..6).map(|_| held_scrape(metrics)).collect();
    for s in &held {
        wait_answer_began(s);
    }
    let statuses: Vec<u16> = held.iter_mut().map(|s| read_head(s).status).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    let served = statuses.iter().filter(|&&s| s == 200).count();
    assert!((1..=2).contains(&served), "{statuses:?}");
    let timed_out = eventually(Duration::from_secs(20), || {
        let n = nginx.error_log().matches("client timed out").count();
        (n >= served).then_some(n)
    });
    assert_eq!(timed_out, Some(served), "{}", nginx.error_log());
    // Those clients got part of the exposition, then the connection was closed.
    for (s, status) in held.iter_mut().zip(&statuses) {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        if *status == 200 {
            assert!(rest.len() < full, "{} of {full} bytes", rest.len());
            assert!(!rest.ends_with(b"# EOF\n"));
        }
    }
    // What they held is given back: both workers serve again.
    for _ in 0..4 {
        assert!(openmetrics_scrape(metrics).ends_with(b"# EOF\n"));
    }
    assert!(nginx.crashes().is_empty());
}

/// `nginx -s reload` while clients hold large scrapes without reading: the new workers
/// serve whole expositions at once, the old ones let go of those clients after
/// `send_timeout` and exit without leaving a connection open.
#[test]
fn reload_while_clients_hold_scrapes_unread() {
    use std::io::Read;
    let (app, metrics) = (free_port(), free_port());
    let nginx = Nginx::start(
        "reload-held",
        &many_series_http(
            app,
            metrics,
            "prometheus_max_renders 2;",
            "send_timeout 2s; add_header X-Worker $pid always;",
        ),
    );
    assert_eq!(get(app, "/make?n=50000").text(), "ok\n");
    let full = openmetrics_scrape(metrics).len();
    let mut held: Vec<_> = (0..6).map(|_| held_scrape(metrics)).collect();
    for s in &held {
        wait_answer_began(s);
    }
    let old = nginx.worker_pids();
    signal(nginx.master_pid(), "HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while nginx
        .worker_pids()
        .iter()
        .filter(|p| !old.contains(p))
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "no new workers");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The new workers serve whole expositions while the old ones still hold their
    // clients. (An old worker that has not yet taken the master's word to quit may
    // answer one more.)
    let mut whole = 0;
    while whole < 4 {
        assert!(std::time::Instant::now() < deadline, "no whole scrapes");
        let r = parse_response(&openmetrics_scrape(metrics));
        let by: u32 = r.header("x-worker").unwrap().parse().unwrap();
        if old.contains(&by) {
            continue;
        }
        assert_eq!(r.status, 200);
        assert!(r.body.ends_with(b"# EOF\n"));
        whole += 1;
    }
    for p in &old {
        wait_gone(*p);
    }
    // Each held client got its answer's head, then part of the body (or a 503), then
    // the connection was closed.
    for s in &mut held {
        let head = read_head(s);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        match head.status {
            200 => assert!(rest.len() < full && !rest.ends_with(b"# EOF\n")),
            status => assert_eq!(status, 503),
        }
    }
    let log = nginx.error_log();
    assert!(log.contains("client timed out"), "{log}");
    assert!(!log.contains("left in connection"), "{log}");
    assert!(!log.contains("aborting"), "{log}");
    assert!(nginx.crashes().is_empty());
}

#[test]
fn limit_directives_are_checked() {
    let http = |directives: &str| {
        format!(
            "prometheus_zone metrics 1m; {directives} \
             server {{ listen 127.0.0.1:1; location / {{ prometheus_metrics; }} }}"
        )
    };
    let cases = [
        (
            "prometheus_max_renders 0;",
            "prometheus_max_renders: invalid number \"0\" (1 to 4096 scrapes per worker)",
        ),
        (
            "prometheus_max_renders many;",
            "prometheus_max_renders: invalid number \"many\"",
        ),
        (
            "prometheus_max_renders 4097;",
            "prometheus_max_renders: invalid number \"4097\"",
        ),
        (
            "prometheus_max_renders 2; prometheus_max_renders 3;",
            "prometheus_max_renders: is duplicate",
        ),
        (
            "prometheus_max_pinned 0;",
            "prometheus_max_pinned: invalid size \"0\"",
        ),
        (
            "prometheus_max_pinned lots;",
            "prometheus_max_pinned: invalid size \"lots\"",
        ),
        (
            "prometheus_max_pinned 1m; prometheus_max_pinned 2m;",
            "prometheus_max_pinned: is duplicate",
        ),
    ];
    for (directives, want) in cases {
        let err = nginx_t("limits", &http(directives)).expect_err(directives);
        assert!(
            err.contains(want),
            "`{directives}`:\nwant {want}\ngot {err}"
        );
    }
    for ok in [
        "prometheus_max_renders 1;",
        "prometheus_max_renders 4096; prometheus_max_pinned 512k;",
        "prometheus_max_pinned 2048m;",
    ] {
        nginx_t("limits-ok", &http(ok)).unwrap_or_else(|e| panic!("`{ok}`: {e}"));
    }
    let in_server = "prometheus_zone metrics 1m; server { listen 127.0.0.1:1; \
                     prometheus_max_renders 2; location / { prometheus_metrics; } }";
    let err = nginx_t("limits-context", in_server).unwrap_err();
    assert!(
        err.contains("\"prometheus_max_renders\" directive is not allowed here"),
        "{err}"
    );
}
