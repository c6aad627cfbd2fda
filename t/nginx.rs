//! Integration tests: real nginx (2 workers) with the module and the Lua API loaded,
//! real HTTP clients, the reference parser, promtool and a real Prometheus server.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A small application: counters and a histogram driven by HTTP calls.
fn app_http(app: u16, metrics: u16, zone_size: &str, extra: &str) -> String {
    format!(
        r#"
    client_body_buffer_size 4m;
    client_max_body_size 16m;
    prometheus_zone metrics {zone_size};
    # Exact series counts below: no per-worker process series (t/identity.rs has them).
    prometheus_process_metrics off;
    init_by_lua_block {{
        local prom = require "ngxprom"
        local z = prom.zone("metrics")
        app = {{
            z = z,
            requests = z:counter("test_requests_total", "Requests to /hit.", {{}}),
            hits = z:counter("test_hits_total", "Requests to /hit by worker pid.", {{"worker"}}),
            labelled = z:counter("test_labelled_total", "Label round trip.", {{"value"}}),
            values = z:histogram("test_values_seconds", "Observed values.", {{}},
                {{ buckets = {{ 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30 }} }}),
            series = z:counter("test_series_total", "Many series.", {{"i"}}),
        }}
    }}
    server {{
        listen 127.0.0.1:{app} reuseport;
        location = /hit {{
            content_by_lua_block {{
                app.requests:labels():inc()
                app.hits:labels(tostring(ngx.worker.pid())):inc()
                ngx.header["X-Worker"] = ngx.worker.pid()
                ngx.say("ok")
            }}
        }}
        location = /label {{
            content_by_lua_block {{
                app.labelled:labels(ngx.unescape_uri(ngx.var.arg_v)):inc()
                ngx.say("ok")
            }}
        }}
        location = /observe {{
            content_by_lua_block {{
                ngx.req.read_body()
                local child = app.values:labels()
                local n = 0
                for v in ngx.req.get_body_data():gmatch("%S+") do
                    child:observe(tonumber(v))
                    n = n + 1
                end
                ngx.say(n)
            }}
        }}
        location = /quantile {{
            content_by_lua_block {{
                ngx.say(string.format("%.17g", app.values:quantile(tonumber(ngx.var.arg_q))))
            }}
        }}
        location = /make {{
            # Makes series i = from .. to; says how many were made and refused.
            content_by_lua_block {{
                local made, refused = 0, 0
                for i = tonumber(ngx.var.arg_from), tonumber(ngx.var.arg_to) do
                    local child = app.series:labels(tostring(i))
                    if child.handle ~= 0 then
                        child:inc()
                        made = made + 1
                    else
                        refused = refused + 1
                    end
                end
                ngx.say(made, " ", refused)
            }}
        }}
        {extra}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        prometheus_allow 127.0.0.1;
        location = /metrics {{ prometheus_metrics metrics; }}
        location = /nginx_status {{ stub_status; }}
    }}
"#
    )
}

fn start_app(name: &str, zone_size: &str, extra: &str) -> App {
    App::start(name, |app, metrics| {
        app_http(app, metrics, zone_size, extra)
    })
}

/// Sends `n` requests to /hit from `threads` clients; returns responses per worker pid.
fn hit(port: u16, n: usize, threads: usize) -> BTreeMap<String, usize> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut per = BTreeMap::new();
                for _ in (t..n).step_by(threads) {
                    let r = get(port, "/hit");
                    assert_eq!(r.status, 200);
                    *per.entry(r.header("x-worker").unwrap().to_string())
                        .or_insert(0) += 1;
                }
                per
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for h in handles {
        for (k, v) in h.join().unwrap() {
            *all.entry(k).or_insert(0) += v;
        }
    }
    all
}

#[test]
fn requests_on_both_workers_are_all_counted() {
    let a = start_app("workers", "8m", "");
    let per_worker = hit(a.app, 600, 8);
    assert_eq!(
        per_worker.len(),
        2,
        "traffic reached one worker only: {per_worker:?}"
    );
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&samples, "test_requests_total", &[]), Some(600.0));
    for (pid, n) in &per_worker {
        assert_eq!(
            value(&samples, "test_hits_total", &[("worker", pid)]),
            Some(*n as f64),
            "worker {pid}"
        );
    }
    assert!(a.nginx.errors().is_empty(), "{:?}", a.nginx.errors());
}

#[test]
fn values_survive_reload() {
    let a = start_app("reload", "8m", "");
    hit(a.app, 100, 4);
    post(a.app, "/observe", b"0.002 0.2 3");
    let old_workers = a.nginx.worker_pids();
    a.nginx.reload();
    assert!(a
        .nginx
        .worker_pids()
        .iter()
        .all(|p| !old_workers.contains(p)));
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&samples, "test_requests_total", &[]), Some(100.0));
    assert_eq!(value(&samples, "test_values_seconds_count", &[]), Some(3.0));
    hit(a.app, 50, 4);
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&samples, "test_requests_total", &[]), Some(150.0));
    assert_eq!(
        value(&samples, "test_values_seconds_bucket", &[("le", "0.005")]),
        Some(1.0)
    );
}

#[test]
fn reload_with_a_resized_zone_starts_it_afresh_without_crashing() {
    let a = start_app("resize", "8m", "");
    hit(a.app, 30, 3);
    // Lua declarations run again in the master during the reload; they must not attach
    // to the old zone, which nginx unmaps once the new cycle runs.
    let conf = a.nginx.conf.replace(
        "prometheus_zone metrics 8m;",
        "prometheus_zone metrics 16m;",
    );
    std::fs::write(a.nginx.prefix.join("nginx.conf"), conf).unwrap();
    a.nginx.reload();
    hit(a.app, 20, 2);
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&samples, "test_requests_total", &[]), Some(20.0));
    assert_eq!(
        value(
            &samples,
            "nginx_metric_zone_bytes",
            &[("zone", "metrics"), ("state", "capacity")]
        )
        .map(|b| b > 15e6),
        Some(true)
    );
    assert!(a.nginx.crashes().is_empty(), "{:?}", a.nginx.crashes());
}

#[test]
fn label_values_round_trip_through_the_exposition() {
    let a = start_app("labels", "8m", "");
    let values = [
        "say \"hi\"",
        "back\\slash",
        "new\nline",
        "ünïcødé ✓ 日本",
        "all three: \\\"\n\\n",
        "",
        "{braces},=commas",
    ];
    for v in &values {
        let r = get(a.app, &format!("/label?v={}", urlencode(v)));
        assert_eq!(r.status, 200);
    }
    let (text, samples) = scrape(a.metrics, "/metrics");
    for v in &values {
        assert_eq!(
            value(&samples, "test_labelled_total", &[("value", v)]),
            Some(1.0),
            "{v:?} in\n{text}"
        );
    }
    assert!(
        text.contains(r#"test_labelled_total{value="all three: \\\"\n\\n"} 1"#),
        "{text}"
    );
}

/// Deterministic values from 1 µs to 30 s, spread over every order of magnitude.
fn spread(n: usize) -> Vec<f64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x % 1_000_000) as f64 / 1e6 + 0.000_001;
            let exp = ((x >> 32) % 8) as i32 - 6;
            (mantissa * 10f64.powi(exp)).min(30.0)
        })
        .collect()
}

#[test]
fn histogram_buckets_and_quantiles_agree_with_hdrhistogram() {
    let a = start_app("hdr", "8m", "");
    let values = spread(5000);
    for chunk in values.chunks(1000) {
        let body: Vec<String> = chunk.iter().map(|v| format!("{v}")).collect();
        let r = post(a.app, "/observe", body.join(" ").as_bytes());
        assert_eq!(r.text().trim(), "1000");
    }
    let scale = 1.0 / 1e-6_f64;
    let ticks = |v: f64| (v * scale).round() as u64;
    let mut reference = hdrhistogram::Histogram::<u64>::new_with_bounds(1, ticks(60.0), 2).unwrap();
    for v in &values {
        reference.record(ticks(*v)).unwrap();
    }
    let (_, samples) = scrape(a.metrics, "/metrics");
    for le in [
        0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
    ] {
        let label = if le >= 1.0 {
            format!("{le:.0}")
        } else {
            format!("{le}")
        };
        let got = value(&samples, "test_values_seconds_bucket", &[("le", &label)]).unwrap_or(-1.0);
        assert_eq!(
            got,
            reference.count_between(0, ticks(le)) as f64,
            "le={label}"
        );
    }
    assert_eq!(
        value(&samples, "test_values_seconds_bucket", &[("le", "+Inf")]),
        Some(5000.0)
    );
    assert_eq!(
        value(&samples, "test_values_seconds_count", &[]),
        Some(5000.0)
    );
    let sum: f64 = values.iter().sum();
    let got_sum = value(&samples, "test_values_seconds_sum", &[]).unwrap();
    assert!((got_sum - sum).abs() <= 1e-9 * sum, "{got_sum} vs {sum}");
    for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
        let got: f64 = get(a.app, &format!("/quantile?q={q}"))
            .text()
            .trim()
            .parse()
            .unwrap();
        let want = reference.value_at_quantile(q) as f64 / scale;
        assert_eq!(got, want, "q={q}");
    }
}

/// Pipelined on one connection, each request gets its own whole answer: a HEAD's has
/// no body, a refused request's (405, 403) has its body. nginx sets `header_only` for
/// HEAD and `pipeline` when more requests wait in the buffer; a bindgen layout 2 bits
/// off (nginx >= 1.29.3) read one for the other and merged answers.
#[test]
fn pipelined_head_and_refused_requests_get_one_answer_each() {
    let a = start_app("pipeline", "8m", "");
    hit(a.app, 2, 1);
    // Sends the requests in one write; returns the answers' statuses and the answers,
    // checking nothing is left over (an answer read as the body of another).
    let send = |from: &str, requests: &[(&str, &str, &[u8])]| {
        let (got, left) = pipelined(Some(from.parse().unwrap()), a.metrics, requests);
        assert!(left.is_empty(), "bytes after the last answer: {left:?}");
        (got.iter().map(|r| r.status).collect::<Vec<u16>>(), got)
    };
    let (statuses, got) = send(
        "127.0.0.1",
        &[
            ("HEAD", "/metrics", b""),
            ("POST", "/metrics", b"x"),
            ("GET", "/metrics", b""),
            ("HEAD", "/metrics", b""),
            ("GET", "/metrics", b""),
        ],
    );
    assert_eq!(statuses, [200, 405, 200, 200, 200]);
    for i in [0, 3] {
        assert!(got[i].body.is_empty());
        let length: usize = got[i].header("content-length").unwrap().parse().unwrap();
        assert!(length > 0, "HEAD announces the GET's length");
    }
    assert!(!got[1].body.is_empty(), "the 405 has its body");
    for i in [2, 4] {
        assert!(
            got[i].text().contains("test_requests_total"),
            "{}",
            got[i].text()
        );
    }
    // Refused by address (403) three times on one connection, a HEAD in the middle.
    let (statuses, got) = send(
        "127.0.0.2",
        &[
            ("GET", "/metrics", b""),
            ("HEAD", "/metrics", b""),
            ("GET", "/metrics", b""),
        ],
    );
    assert_eq!(statuses, [403, 403, 403]);
    assert!(!got[0].body.is_empty() && got[1].body.is_empty() && !got[2].body.is_empty());
    assert!(!got[2].text().contains("test_"));
}

#[test]
fn refused_address_gets_403_and_no_data() {
    let a = start_app("cidr", "8m", "");
    hit(a.app, 3, 1);
    let refused = request_from(
        Some("127.0.0.2".parse::<IpAddr>().unwrap()),
        a.metrics,
        "GET",
        "/metrics",
        b"",
    );
    assert_eq!(refused.status, 403);
    let body = refused.text();
    assert!(
        !body.contains("test_") && !body.contains("nginx_metric") && !body.contains("# TYPE"),
        "{body}"
    );
    let ok = request_from(
        Some("127.0.0.1".parse::<IpAddr>().unwrap()),
        a.metrics,
        "GET",
        "/metrics",
        b"",
    );
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("test_requests_total 3\n"));
    let head = request_from(None, a.metrics, "HEAD", "/metrics", b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(post(a.metrics, "/metrics", b"x").status, 405);
}

#[test]
fn a_full_zone_refuses_new_series_and_keeps_serving() {
    let a = start_app("tiny", "128k", "");
    // A histogram value before the zone fills: its chunk of counts exists from now on.
    assert_eq!(post(a.app, "/observe", b"0.001").text().trim(), "1");
    // Far more series than 128k can hold: what no longer fits goes to the family's
    // overflow series (every label `__overflow__`), counted, so the sum stays exact.
    assert_eq!(get(a.app, "/make?from=1&to=5000").text().trim(), "5000 0");
    let (_, samples) = scrape(a.metrics, "/metrics");
    let zone_full = |s: &[Sample]| {
        value(
            s,
            "nginx_metric_errors_total",
            &[("zone", "metrics"), ("reason", "zone_full")],
        )
        .unwrap()
    };
    let series: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.name == "test_series_total")
        .collect();
    let overflow = value(&samples, "test_series_total", &[("i", "__overflow__")]).unwrap();
    let made = series.len() as u64 - 1;
    assert!(
        made > 100 && overflow > 0.0,
        "made {made}, overflow {overflow}"
    );
    assert_eq!(made as f64 + overflow, 5000.0);
    assert_eq!(series.iter().map(|x| x.value).sum::<f64>(), 5000.0);
    assert_eq!(zone_full(&samples), overflow);
    // And the histogram's series, and the overflow series.
    assert_eq!(
        value(&samples, "nginx_metric_series", &[("zone", "metrics")]),
        Some(made as f64 + 2.0)
    );
    // Old series keep counting; new label sets still go to the overflow, counted.
    let again = get(a.app, &format!("/make?from=1&to={}", 5010)).text();
    assert_eq!(again.trim(), "5010 0");
    let (_, samples) = scrape(a.metrics, "/metrics");
    // Counted when a worker resolves the label set (once per worker: the other
    // worker's cache may already hold the first 5000).
    let grown = zone_full(&samples) - overflow;
    assert!(
        (10.0..=5010.0 - made as f64).contains(&grown),
        "{grown} more refusals counted"
    );
    assert_eq!(
        value(&samples, "test_series_total", &[("i", "__overflow__")]),
        Some(overflow + 5010.0 - made as f64)
    );
    for i in [1, made / 2, made] {
        assert_eq!(
            value(&samples, "test_series_total", &[("i", &i.to_string())]),
            Some(2.0),
            "series {i}"
        );
    }
    let refused = zone_full(&samples) as u64 - 1;
    // A value in the histogram's existing chunk counts; one that needs a new chunk
    // counts in _count, _sum and +Inf only (sums stay exact), and is counted as refused.
    assert_eq!(post(a.app, "/observe", b"0.00101 20").text().trim(), "2");
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(zone_full(&samples), refused as f64 + 2.0);
    assert_eq!(value(&samples, "test_values_seconds_count", &[]), Some(3.0));
    let sum = value(&samples, "test_values_seconds_sum", &[]).unwrap();
    assert!((sum - 20.00201).abs() < 1e-9, "{sum}");
    assert_eq!(
        value(&samples, "test_values_seconds_bucket", &[("le", "0.005")]),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "test_values_seconds_bucket", &[("le", "30")]),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "test_values_seconds_bucket", &[("le", "+Inf")]),
        Some(3.0)
    );
    // nginx keeps serving, nothing crashed, and the refusal was logged once per worker.
    assert_eq!(hit(a.app, 20, 2).values().sum::<usize>(), 20);
    assert!(a.nginx.crashes().is_empty());
    let logged = a
        .nginx
        .error_log()
        .lines()
        .filter(|l| l.contains("\"test_series_total\": zone is full"))
        .count();
    assert!((1..=2).contains(&logged), "{logged} log lines");
}

#[test]
fn connection_gauges_agree_with_stub_status() {
    let a = start_app("stub", "8m", "");
    hit(a.app, 10, 2);
    let (_, m) = scrape(a.metrics, "/metrics");
    let stub = get(a.metrics, "/nginx_status").text();
    // "Active connections: 1 \nserver accepts handled requests\n 5 5 5 \nReading: 0 Writing: 1 Waiting: 0 \n"
    let nums: Vec<f64> = stub
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let [active, accepted, handled, requests, reading, writing, waiting] = nums[..] else {
        panic!("unexpected stub_status: {stub}")
    };
    // The stub_status request is one connection and one request after the scrape.
    assert_eq!(
        value(&m, "nginx_connections_accepted_total", &[]),
        Some(accepted - 1.0)
    );
    assert_eq!(
        value(&m, "nginx_connections_handled_total", &[]),
        Some(handled - 1.0)
    );
    assert_eq!(value(&m, "nginx_requests_total", &[]), Some(requests - 1.0));
    assert_eq!(
        value(&m, "nginx_connections", &[("state", "active")]),
        Some(active)
    );
    assert_eq!(
        value(&m, "nginx_connections", &[("state", "reading")]),
        Some(reading)
    );
    assert_eq!(
        value(&m, "nginx_connections", &[("state", "writing")]),
        Some(writing)
    );
    assert_eq!(
        value(&m, "nginx_connections", &[("state", "waiting")]),
        Some(waiting)
    );
    assert!(requests >= 12.0);
}

#[test]
fn prometheus_scrapes_and_answers_promql() {
    let a = start_app("prom", "8m", "");
    hit(a.app, 25, 2);
    let prom = Prometheus::start(&format!(
        "  - job_name: ngx\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        a.metrics
    ));
    let got = eventually(Duration::from_secs(60), || {
        prom.query("test_requests_total").filter(|v| *v == 25.0)
    });
    let up = prom.query("up{job=\"ngx\"}");
    let hits = prom.query("sum(test_hits_total)");
    let health = prom.query("scrape_samples_scraped{job=\"ngx\"}");
    assert_eq!(got, Some(25.0), "PromQL never saw the count");
    assert_eq!(up, Some(1.0));
    assert_eq!(hits, Some(25.0));
    assert!(health.unwrap_or(0.0) > 10.0);
}

#[test]
fn invalid_configuration_is_rejected_naming_directive_and_value() {
    let cases: [(&str, &str); 9] = [
        ("prometheus_zone m 1k;", "prometheus_zone \"m\": size \"1k\" is too small, the minimum is 128k"),
        ("prometheus_zone m lots;", "prometheus_zone \"m\": invalid size \"lots\""),
        ("prometheus_zone \"b@d\" 1m;", "prometheus_zone: invalid zone name \"b@d\""),
        ("prometheus_zone m 1m; prometheus_zone m 2m;", "prometheus_zone: duplicate zone \"m\""),
        ("prometheus_zone m 1m 2m;", "invalid number of arguments in \"prometheus_zone\""),
        (
            "prometheus_zone m 1m; server { listen 127.0.0.1:1; location / { prometheus_metrics other; } }",
            "unknown zone \"other\"",
        ),
        (
            "server { listen 127.0.0.1:1; location / { prometheus_metrics; } }",
            "no prometheus_zone is declared",
        ),
        ("prometheus_allow 10.0.0.1/8;", "prometheus_allow: invalid address \"10.0.0.1/8\" has host bits set"),
        ("prometheus_deny banana;", "prometheus_deny: invalid address \"banana\" is not an IP address"),
    ];
    for (conf, want) in cases {
        let err = nginx_t("badconf", conf).expect_err(conf);
        assert!(
            err.contains(want),
            "config `{conf}`:\nwant {want}\ngot {err}"
        );
        assert!(err.contains("nginx.conf:"), "no file:line in {err}");
    }
    nginx_t(
        "goodconf",
        "prometheus_zone m 1m; prometheus_allow 10.0.0.0/8 ::1 2001:db8::/32; \
         server { listen 127.0.0.1:1; location / { prometheus_metrics m; prometheus_deny 10.9.0.0/16; } }",
    )
    .unwrap();
}

#[test]
fn lua_misuse_raises_and_runtime_errors_are_counted() {
    let extra = r#"
        location = /misuse {
            content_by_lua_block {
                local z = require("ngxprom").zone("metrics")
                local out = {}
                for _, f in ipairs({
                    function() z:counter("1bad_name", "") end,
                    function() z:counter("ok_total", "", { "bad-label" }) end,
                    function() z:histogram("h_seconds", "", {}, { buckets = { 1, 0.5 } }) end,
                    function() z:gauge("test_requests_total", "") end,
                    function() z:counter("test_hits_total", "", { "other" }) end,
                    function() z:counter("nginx_requests_total", "") end,
                    function() app.hits:inc("1", { "a" }) end,
                    function() app.hits:set(1, { "a" }) end,
                }) do
                    local ok, err = pcall(f)
                    out[#out + 1] = ok and "no error" or err
                end
                ngx.say(table.concat(out, "\n"))
            }
        }
        location = /wrong_labels {
            content_by_lua_block {
                for i = 1, 5 do app.hits:labels("a", "b"):inc() end
                app.hits:inc(1, { "x", "y", "z" })
                -- The right first value, already cached, with one value too many.
                app.hits:inc(1, { "x" })
                app.hits:inc(1, { "x", "y" })
                app.values:labels():observe(0/0)
                ngx.say("still here")
            }
        }
    "#;
    let a = start_app("misuse", "8m", extra);
    let text = get(a.app, "/misuse").text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        lines[0].contains("invalid metric name \"1bad_name\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("invalid label name \"bad-label\""),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("bounds must increase"), "{}", lines[2]);
    assert!(
        lines[3].contains("\"test_requests_total\" is already declared as a counter"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains("already declared with labels [worker]"),
        "{}",
        lines[4]
    );
    assert!(lines[5].contains("reserved"), "{}", lines[5]);
    // The update forms with label values raise at the caller's line too.
    assert!(
        lines[6].contains("increment must be a number") && lines[6].contains("content_by_lua"),
        "{}",
        lines[6]
    );
    // A counter family has no set().
    assert!(lines[7].contains("set"), "{}", lines[7]);
    // Errors carry the caller's position (error level 2), not the library's.
    assert!(lines[0].contains("content_by_lua"), "{}", lines[0]);
    let r = get(a.app, "/wrong_labels");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "still here");
    get(a.app, "/wrong_labels");
    let (_, samples) = scrape(a.metrics, "/metrics");
    let errors = |reason| {
        value(
            &samples,
            "nginx_metric_errors_total",
            &[("zone", "metrics"), ("reason", reason)],
        )
    };
    assert_eq!(errors("label_count"), Some(14.0));
    assert_eq!(
        value(&samples, "test_hits_total", &[("worker", "x")]),
        Some(2.0)
    );
    assert_eq!(errors("invalid_value"), Some(2.0));
    let log = a.nginx.error_log();
    let logged = log
        .lines()
        .filter(|l| l.contains("expected 1 label values, got 2"))
        .count();
    assert!((1..=2).contains(&logged), "logged {logged} times:\n{log}");
    assert!(a.nginx.crashes().is_empty());
}

/// A bucket list written for nginx-lua-prometheus (up to 60 s) needs no `highest`: the
/// range follows the buckets; an explicit `highest` the buckets reach still fails.
#[test]
fn buckets_up_to_a_minute_set_the_range() {
    let extra = r#"
        location = /minute {
            content_by_lua_block {
                local z = require("ngxprom").zone("metrics")
                local buckets = { 0.005, 0.01, 0.1, 1, 10, 30, 60 }
                local h = z:histogram("minute_seconds", "Up to a minute.", { "route" },
                                      { buckets = buckets })
                h:observe(45, { "r" })
                h:observe(90, { "r" })
                local ok, err = pcall(z.histogram, z, "capped_seconds", "", {},
                                      { buckets = buckets, highest = 60 })
                ngx.say(ok and "no error" or err)
            }
        }
    "#;
    let a = start_app("minute", "8m", extra);
    let said = get(a.app, "/minute").text();
    assert!(said.contains("bound 60 is not below highest 60"), "{said}");
    let (_, samples) = scrape(a.metrics, "/metrics");
    let bucket = |le| {
        value(
            &samples,
            "minute_seconds_bucket",
            &[("route", "r"), ("le", le)],
        )
    };
    assert_eq!(bucket("30"), Some(0.0));
    assert_eq!(bucket("60"), Some(1.0));
    assert_eq!(bucket("+Inf"), Some(2.0));
    assert_eq!(
        value(&samples, "minute_seconds_sum", &[("route", "r")]),
        Some(135.0)
    );
}

#[test]
fn log_helper_records_status_latency_and_bytes() {
    let (proxy, upstream, metrics, dead) = (free_port(), free_port(), free_port(), free_port());
    let prefix = prefix("loghelper");
    let http = format!(
        r#"
    prometheus_zone metrics 8m;
    log_format sizes "$route $status $request_length $bytes_sent";
    init_by_lua_block {{
        local prom = require "ngxprom"
        http_metrics = require("ngxprom.log").new(prom.zone("metrics"), {{ labels = {{ "route" }} }})
    }}
    server {{
        listen 127.0.0.1:{proxy};
        access_log {prefix}/logs/sizes.log sizes;
        location / {{ set $route root; proxy_pass http://127.0.0.1:{upstream}; }}
        location /slow {{ set $route slow; proxy_pass http://127.0.0.1:{upstream}; }}
        location /dead {{ set $route dead; proxy_pass http://127.0.0.1:{dead}; }}
        location /local {{ set $route local; return 204; }}
        log_by_lua_block {{ http_metrics:log(ngx.var.route) }}
    }}
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "hello\n"; }}
        location /missing {{ return 404; }}
        location /slow {{ content_by_lua_block {{ ngx.sleep(0.05) ngx.say("slow") }} }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location = /metrics {{ prometheus_metrics; }}
    }}
"#,
        prefix = prefix.display()
    );
    let conf = config(&prefix, &http);
    let nginx = Nginx::start_with(prefix.clone(), conf);
    for _ in 0..10 {
        assert_eq!(get(proxy, "/").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(proxy, "/missing").status, 404);
    }
    for _ in 0..2 {
        assert_eq!(post(proxy, "/slow", b"some request body").status, 200);
    }
    assert_eq!(get(proxy, "/dead").status, 502);
    assert_eq!(get(proxy, "/local").status, 204);
    let (_, s) = scrape(metrics, "/metrics");
    let req = |route, code| {
        value(
            &s,
            "nginx_http_requests_total",
            &[("route", route), ("code", code)],
        )
    };
    assert_eq!(req("root", "200"), Some(10.0));
    assert_eq!(req("root", "404"), Some(3.0));
    assert_eq!(req("slow", "200"), Some(2.0));
    assert_eq!(req("dead", "502"), Some(1.0));
    assert_eq!(req("local", "204"), Some(1.0));
    let count = |fam, route| value(&s, &format!("{fam}_count"), &[("route", route)]);
    assert_eq!(
        count("nginx_http_request_duration_seconds", "root"),
        Some(13.0)
    );
    assert_eq!(
        count("nginx_http_upstream_duration_seconds", "root"),
        Some(13.0)
    );
    // A request nginx answered itself has no upstream time.
    assert_eq!(
        count("nginx_http_upstream_duration_seconds", "local"),
        Some(0.0)
    );
    assert_eq!(
        count("nginx_http_request_duration_seconds", "local"),
        Some(1.0)
    );
    let bucket = |fam: &str, route, le| {
        value(
            &s,
            &format!("{fam}_bucket"),
            &[("route", route), ("le", le)],
        )
    };
    // The slow upstream sleeps 50 ms: never under 25 ms.
    assert_eq!(
        bucket("nginx_http_upstream_duration_seconds", "slow", "0.025"),
        Some(0.0)
    );
    assert_eq!(
        bucket("nginx_http_request_duration_seconds", "slow", "0.025"),
        Some(0.0)
    );
    assert_eq!(
        bucket("nginx_http_request_duration_seconds", "slow", "+Inf"),
        Some(2.0)
    );
    // Bytes equal what nginx itself logs as $request_length and $bytes_sent.
    let log = eventually(Duration::from_secs(5), || {
        let l = std::fs::read_to_string(prefix.join("logs/sizes.log")).ok()?;
        (l.lines().count() == 17).then_some(l)
    })
    .expect("17 access log lines");
    // Lines come in the order workers finish their log phase, which two workers may
    // swap for back-to-back requests: each line names its route.
    let mut by_route: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for line in log.lines() {
        let (route, rest) = line.split_once(' ').unwrap();
        let f: Vec<f64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
        let e = by_route.entry(route).or_default();
        e.0 += f[1];
        e.1 += f[2];
    }
    assert_eq!(
        by_route.keys().copied().collect::<Vec<_>>(),
        ["dead", "local", "root", "slow"]
    );
    for (route, (received, sent)) in by_route {
        assert_eq!(
            value(&s, "nginx_http_received_bytes_total", &[("route", route)]),
            Some(received),
            "{route}"
        );
        assert_eq!(
            value(&s, "nginx_http_sent_bytes_total", &[("route", route)]),
            Some(sent),
            "{route}"
        );
    }
    assert!(nginx.crashes().is_empty());
}

/// Every struct lua/ngxprom.lua declares for the FFI has the size and field offsets of
/// its Rust `#[repr(C)]` definition, as LuaJIT lays the Lua declaration out.
#[test]
fn lua_declares_the_c_structs_as_rust_lays_them_out() {
    let extra = r#"
        location = /layouts {
            content_by_lua_block {
                local ffi = require "ffi"
                require "ngxprom" -- declares them
                local out = {}
                for name, l in pairs(require("ngx_prometheus").layouts) do
                    out[#out + 1] = name .. " " .. ffi.sizeof(name) .. " " .. l.size
                    for field, at in pairs(l.offsets) do
                        out[#out + 1] = name .. "." .. field .. " "
                            .. tostring(ffi.offsetof(name, field)) .. " " .. at
                    end
                end
                table.sort(out)
                ngx.say(table.concat(out, "\n"))
            }
        }
    "#;
    let a = start_app("layouts", "1m", extra);
    let r = get(a.app, "/layouts");
    assert_eq!(r.status, 200, "{}", r.text());
    let lines: Vec<String> = r.text().lines().map(str::to_string).collect();
    // Two structs: their sizes, six fields of the facts, nine of the handles.
    assert_eq!(lines.len(), 17, "{lines:?}");
    for l in &lines {
        let w: Vec<&str> = l.split(' ').collect();
        assert_eq!(w.len(), 3, "{l}");
        assert_eq!(w[1], w[2], "{}: Lua has {}, Rust {}", w[0], w[1], w[2]);
    }
}

#[test]
fn a_killed_worker_loses_nothing_recorded() {
    let a = start_app("kill", "8m", "");
    hit(a.app, 40, 4);
    let victim = a.nginx.worker_pids()[0];
    a.nginx.kill_worker(victim);
    hit(a.app, 40, 4);
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&samples, "test_requests_total", &[]), Some(80.0));
}

#[test]
fn a_worker_dying_with_the_zone_lock_does_not_wedge_the_others() {
    let extra = r#"
        location = /seize {
            content_by_lua_block {
                local ffi = require "ffi"
                ffi.cdef "int ngx_prom_debug_seize_lock(uint32_t slot);"
                app.requests:labels() -- attaches the zone
                ngx.header["X-Worker"] = ngx.worker.pid()
                ngx.say(ffi.C.ngx_prom_debug_seize_lock(app.z.slot))
            }
        }
    "#;
    // The shipped module has no way to seize the lock: this one has (`debug-hooks`).
    let (app, metrics) = (free_port(), free_port());
    let a = App {
        nginx: Nginx::start_with_debug_hooks("lockdeath", &app_http(app, metrics, "8m", extra)),
        app,
        metrics,
    };
    get(a.app, "/make?from=1&to=3");
    let r = get(a.app, "/seize");
    assert_eq!(r.text().trim(), "0");
    let holder: u32 = r.header("x-worker").unwrap().parse().unwrap();
    a.nginx.kill_worker(holder);
    // New series need the lock: every worker must get it back.
    for round in 0..4 {
        let from = 100 + round * 10;
        let made = get(a.app, &format!("/make?from={from}&to={}", from + 9)).text();
        assert_eq!(made.trim(), "10 0", "round {round}");
    }
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(
        value(
            &samples,
            "nginx_metric_lock_takeovers_total",
            &[("zone", "metrics")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "test_series_total", &[("i", "1")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "test_series_total", &[("i", "139")]),
        Some(1.0)
    );
}

#[test]
fn make_run_serves_metrics_and_ctrl_c_leaves_nothing_behind() {
    let (proxy, upstream, metrics, admin_port) =
        (free_port(), free_port(), free_port(), free_port());
    let dir = prefix("makerun");
    let mut run = Command::new(root().join("scripts/run.sh"))
        .env("PREFIX", &dir)
        .args([
            format!("PROXY_PORT={proxy}"),
            format!("UPSTREAM_PORT={upstream}"),
            format!("METRICS_PORT={metrics}"),
            format!("ADMIN_PORT={admin_port}"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let up = eventually(Duration::from_secs(20), || {
        std::panic::catch_unwind(|| get(proxy, "/"))
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(up.is_some(), "gateway did not come up");
    assert_eq!(get(proxy, "/slow").status, 200);
    // The seeded configuration enables the prometheus plugin globally, every switch on.
    let (_, s) = scrape(metrics, "/metrics");
    let requests = |route| {
        value(
            &s,
            "gateway_http_requests_total",
            &[
                ("service", "demo"),
                ("route", route),
                ("code", "200"),
                ("source", "service"),
                ("consumer", ""),
            ],
        )
    };
    assert_eq!(requests("root"), Some(1.0));
    assert_eq!(requests("slow"), Some(1.0));
    let slow_bucket = |le| {
        value(
            &s,
            "gateway_upstream_latency_seconds_bucket",
            &[("service", "demo"), ("route", "slow"), ("le", le)],
        )
    };
    assert_eq!(slow_bucket("0.025"), Some(0.0));
    assert_eq!(slow_bucket("+Inf"), Some(1.0));
    let (status, services) = admin(admin_port, "GET", "/services", None);
    assert_eq!(status, 200);
    assert_eq!(services["data"][0]["name"], "demo");
    // Ctrl-C: SIGINT to the foreground process (the script execs nginx).
    Command::new("kill")
        .arg("-INT")
        .arg(run.id().to_string())
        .status()
        .unwrap();
    let status = eventually(Duration::from_secs(10), || run.try_wait().unwrap());
    assert!(status.is_some(), "nginx did not stop on SIGINT");
    let left = Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scrapes_render_off_the_event_loop_and_survive_clients_that_leave() {
    let a = start_app("threads", "256m", "");
    // Enough series for a render to take a while.
    let r = get(a.app, "/make?from=1&to=60000").text();
    assert_eq!(r.trim(), "60000 0");
    post(a.app, "/observe", b"0.001 0.01 0.1");
    // The default thread pool runs in every worker (nginx names its threads after it).
    for pid in a.nginx.worker_pids() {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count();
        assert!(threads > 1, "worker {pid} has no thread pool");
    }
    // Clients that send a scrape and go away at once, while their scrape renders.
    for _ in 0..20 {
        send_and_hang_up(a.metrics, b"GET /metrics HTTP/1.0\r\n\r\n");
    }
    // The worker keeps serving while a big scrape renders; every scrape is complete.
    // The abandoned scrapes count against `prometheus_max_renders` until their renders
    // end: a scrape refused with 503 meanwhile asks again, as Prometheus would.
    let scrapes: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                eventually(Duration::from_secs(30), || {
                    let r = get(a.metrics, "/metrics");
                    (r.status != 503).then_some(r)
                })
                .expect("still 503 once the abandoned renders ended")
            })
        })
        .collect();
    assert_eq!(hit(a.app, 20, 2).values().sum::<usize>(), 20);
    for s in scrapes {
        let r = s.join().unwrap();
        assert_eq!(r.status, 200);
        let text = r.text();
        let last = text.lines().last().unwrap_or("");
        assert!(
            text.ends_with("\n") && last.starts_with("nginx_prometheus_build_info{"),
            "truncated scrape: {last}"
        );
        assert_eq!(text.matches("\ntest_series_total{").count(), 60000);
    }
    let (_, samples) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&samples, "test_values_seconds_count", &[]), Some(3.0));
    assert!(a.nginx.crashes().is_empty(), "{:?}", a.nginx.crashes());
    assert!(
        a.nginx.errors().iter().all(|l| !l.contains("[alert]")),
        "{:?}",
        a.nginx.errors()
    );
}

/// A client who chooses a label value cannot grow a worker's memory: the label cache
/// (of `family:labels`, `family:inc(v, {...})` and `ngxprom.log`'s entries) is bounded,
/// and label sets refused by `max_series` share the overflow series' one child. 20,000
/// unique values through each, with a cache of 100 label sets, leave the worker's Lua
/// heap within 2 MB of where it started (kept whole, they take tens of MB), while the
/// zone holds `max_series` series and the overflow series with the exact sum.
#[test]
fn unique_label_values_do_not_grow_worker_memory() {
    let extra = r#"
        location = /churn {
            content_by_lua_block {
                local prom = require "ngxprom"
                local z = prom.zone("metrics")
                if not churn then
                    churn = {
                        labels = z:counter("churn_labels_total", "Churn by labels().", { "path" },
                            { max_series = 10, cache = 100 }),
                        array = z:counter("churn_array_total", "Churn by inc(v, values).", { "path", "method" },
                            { max_series = 10, cache = 100 }),
                        kept = z:gauge("churn_kept", "Churn of gauges.", { "path" }, { cache = 100 }),
                        log = require("ngxprom.log").new(z, { labels = { "path" },
                            namespace = "churn_http", max_series = 10, cache = 100 }),
                    }
                end
                local c = churn
                -- A child kept across evictions goes on working.
                local kept = c.kept:labels("kept")
                collectgarbage()
                local before = collectgarbage("count")
                local from, to = tonumber(ngx.var.arg_from), tonumber(ngx.var.arg_to)
                for i = from, to do
                    local path = "/p/" .. i
                    c.labels:labels(path):inc()
                    c.array:inc(2, { path, "GET" })
                    c.kept:labels(path):set(i)
                    c.log:log(path)
                end
                kept:set(42)
                -- The first label sets, made before the limit, still count.
                c.labels:labels("/p/" .. from):inc()
                collectgarbage()
                ngx.say(string.format("%d %d", before, collectgarbage("count")))
            }
        }
        location = /churn_overflow {
            # The overflow series deleted under a kept child of a refused label set:
            # the shared overflow child takes the overflow series anew.
            content_by_lua_block {
                if not churn then return ngx.exit(409) end
                local ov = churn.labels:labels("/p/99999")
                ngx.say(tostring(ov.overflow), " ", tostring(churn.labels:del("__overflow__")),
                    " ", tostring(ov:inc()), " ", tostring(churn.labels:labels("/p/99998"):inc(2)))
            }
        }
    "#;
    let a = start_app("churn", "64m", extra);
    let t = std::time::Instant::now();
    let said = get(a.app, "/churn?from=1&to=20000").text();
    let kb: Vec<f64> = said
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(kb.len(), 2, "{said}");
    let grown = kb[1] - kb[0];
    eprintln!(
        "Lua heap {} KB -> {} KB ({grown} KB) in {:?}",
        kb[0],
        kb[1],
        t.elapsed()
    );
    assert!(grown < 2048.0, "the worker's Lua heap grew by {grown} KB");
    let (_, s) = scrape(a.metrics, "/metrics");
    let series = |name: &str| s.iter().filter(|x| x.name == name).count();
    let sum = |name: &str| -> f64 { s.iter().filter(|x| x.name == name).map(|x| x.value).sum() };
    let over = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);
    // max_series series and the overflow one; sums exact.
    assert_eq!(series("churn_labels_total"), 11);
    assert_eq!(sum("churn_labels_total"), 20001.0);
    assert_eq!(
        over("churn_labels_total", &[("path", "__overflow__")]),
        Some(19990.0)
    );
    assert_eq!(
        value(&s, "churn_labels_total", &[("path", "/p/1")]),
        Some(2.0)
    );
    assert_eq!(series("churn_array_total"), 11);
    assert_eq!(sum("churn_array_total"), 40000.0);
    assert_eq!(series("churn_http_requests_total"), 11);
    assert_eq!(sum("churn_http_requests_total"), 20000.0);
    assert_eq!(series("churn_http_request_duration_seconds_count"), 11);
    assert_eq!(sum("churn_http_request_duration_seconds_count"), 20000.0);
    assert_eq!(value(&s, "churn_kept", &[("path", "kept")]), Some(42.0));
    assert_eq!(
        value(&s, "churn_kept", &[("path", "/p/20000")]),
        Some(20000.0)
    );
    // In the worker that made the children (the other one answers 409).
    let said = eventually(Duration::from_secs(10), || {
        let r = get(a.app, "/churn_overflow");
        (r.status == 200).then(|| r.text())
    })
    .expect("the worker that served /churn");
    assert_eq!(said.trim(), "true true true true");
    let (_, s) = scrape(a.metrics, "/metrics");
    assert_eq!(
        value(&s, "churn_labels_total", &[("path", "__overflow__")]),
        Some(3.0)
    );
    assert_eq!(
        s.iter().filter(|x| x.name == "churn_labels_total").count(),
        11
    );
    assert!(a.nginx.crashes().is_empty());
}

/// Every Lua API entry point against hostile numbers and label values, as the README
/// says: misuse raises at the caller's line; a runtime failure (NaN, a refused value or
/// label value) returns nil and why, is counted and logged once, and stores nothing.
#[test]
fn hostile_numbers_and_label_values_follow_the_readme() {
    let extra = r##"
        location = /hostile {
            content_by_lua_block {
                local z = require("ngxprom").zone("metrics")
                local g = z:gauge("hostile_level", "Hostile gauge values.", { "k" })
                local c = z:counter("hostile_total", "Hostile counter values.", { "k" })
                local h = app.values
                local out = {}
                local function say(what, ...)
                    local parts, n = { what }, select("#", ...)
                    -- Trailing nils (an update's `true, nil`) left out.
                    while n > 0 and select(n, ...) == nil do n = n - 1 end
                    for i = 1, n do parts[#parts + 1] = tostring((select(i, ...))) end
                    out[#out + 1] = table.concat(parts, " | ")
                end
                local nan, inf = 0/0, math.huge
                local kept = g:labels("nan")
                say("set 5", kept:set(5))
                say("set nan", kept:set(nan))
                say("inc nan", kept:inc(nan))
                say("dec nan", kept:dec(nan))
                say("family set nan", g:set(nan, { "nan" }))
                say("family inc nan", g:inc(nan, { "nan" }))
                say("set inf", g:labels("inf"):set(inf))
                say("inc -inf", g:labels("inf"):inc(-inf))
                say("set -0", g:labels("zero"):set(-0))
                local big = c:labels("big")
                for _ = 1, 2100 do big:inc(8.99e15) end
                for _, v in ipairs({ -1, nan, inf, -inf }) do
                    say("counter inc " .. tostring(v), c:labels("bad"):inc(v))
                end
                say("counter inc 0.5", c:labels("bad"):inc(0.5))
                say("counter inc -0", c:labels("bad"):inc(-0))
                local child, err = c:labels(nan)
                say("labels nan", child.handle, err)
                say("labels nan inc", child:inc())
                say("labels nil", c:labels(nil).handle)
                say("labels table", c:labels({}).handle)
                say("inc with nil", c:inc(1, { nil }))
                say("inc with nan", c:inc(1, { nan }))
                say("labels long", c:labels(string.rep("x", 5000)).handle)
                say("labels 1.5", c:labels(1.5):inc())
                say("labels -0", c:labels(-0):inc())
                say("labels -inf", c:labels(-inf):inc())
                say("labels 2^53", c:labels(2^53):inc())
                say("del nan", c:del(nan))
                for _, q in ipairs({ 2, -1, nan, "0.5" }) do
                    say("quantile " .. tostring(q), pcall(function() local v = h:quantile(q); return v end))
                end
                for _, size in ipairs({ 0, 1.5, nan, "10" }) do
                    say("cache " .. tostring(size), pcall(function()
                        local f = z:counter("hostile_cache_total", "Bad cache.", {}, { cache = size })
                        return f
                    end))
                end
                -- The overflow option names the overflow series' label value.
                local o = z:counter("hostile_other_total", "Overflow option.", { "k" },
                    { max_series = 1, overflow = "other" })
                o:labels("a"):inc()
                o:labels("b"):inc()
                h:labels() -- the series, without observations
                say("quantile empty", h:quantile(0.5))
                say("quantile unknown", z:histogram("hostile_seconds", "Hostile.", { "k" }):quantile(0.5, { "none" }))
                -- The refused addition left +Inf (read here: the reference parser's
                -- JSON cannot carry it), then a finite value for the scrape.
                say("inf value", z:render():match('\nhostile_level{k="inf"} ([^\n]*)'))
                g:labels("inf"):set(1)
                ngx.say(table.concat(out, "\n"))
            }
        }
    "##;
    let a = start_app("hostile", "8m", extra);
    let r = get(a.app, "/hostile");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let said: BTreeMap<&str, &str> = text
        .lines()
        .map(|l| l.split_once(" | ").unwrap_or((l, "")))
        .collect();
    let dropped = |what: &str, why: &str| {
        let got = said[what];
        assert!(
            got.starts_with("nil | ") && got.contains(why),
            "{what}: {got}"
        );
    };
    assert_eq!(said["set 5"], "true");
    for what in [
        "set nan",
        "inc nan",
        "dec nan",
        "family set nan",
        "family inc nan",
    ] {
        dropped(
            what,
            "\"hostile_level\": update dropped: NaN is not a value",
        );
    }
    assert_eq!(said["set inf"], "true");
    dropped("inc -inf", "the result would be NaN");
    assert_eq!(said["set -0"], "true");
    dropped("counter inc -1", "counters only go up");
    dropped("counter inc nan", "NaN is not a value");
    dropped("counter inc inf", "counters only go up");
    dropped("counter inc -inf", "counters only go up");
    assert_eq!(said["counter inc 0.5"], "true");
    assert_eq!(said["counter inc -0"], "true");
    assert_eq!(
        said["labels nan"],
        "0 | metric \"hostile_total\": the value of label \"k\" is NaN"
    );
    assert_eq!(said["labels nan inc"], "nil | series unavailable");
    assert_eq!(said["labels nil"], "0");
    assert_eq!(said["labels table"], "0");
    assert!(said["inc with nil"].starts_with("nil | "), "{text}");
    assert!(said["inc with nan"].starts_with("nil | "), "{text}");
    assert_eq!(said["labels long"], "0");
    assert_eq!(said["labels 1.5"], "true");
    assert!(said["del nan"].starts_with("nil | "), "{text}");
    for q in ["2", "-1", "nan", "0.5"] {
        let got = said[format!("quantile {q}").as_str()];
        assert!(
            got.starts_with("false | ")
                && got.contains("quantile must be a number from 0 to 1")
                && got.contains("content_by_lua"),
            "quantile {q}: {got}"
        );
    }
    assert_eq!(said["quantile empty"], "nil | no observations");
    for size in ["0", "1.5", "nan", "10"] {
        let got = said[format!("cache {size}").as_str()];
        assert!(
            got.starts_with("false | ")
                && got.contains("cache must be a whole number from 1 to 1e9")
                && got.contains("content_by_lua"),
            "cache {size}: {got}"
        );
    }
    assert_eq!(
        said["quantile unknown"],
        "nil | no series with these label values"
    );
    let (_, s) = scrape(a.metrics, "/metrics");
    let v = |k: &str| value(&s, "hostile_level", &[("k", k)]);
    assert_eq!(v("nan"), Some(5.0));
    assert_eq!(said["inf value"], "+Inf");
    assert_eq!(v("zero"), Some(0.0));
    // Past 2^64 the counter goes on growing, correctly rounded.
    let big = value(&s, "hostile_total", &[("k", "big")]).unwrap();
    let want = 2100.0 * 8.99e15;
    assert!((big - want).abs() / want < 1e-12, "{big}, want {want}");
    assert_eq!(value(&s, "hostile_total", &[("k", "bad")]), Some(0.5));
    assert_eq!(value(&s, "hostile_total", &[("k", "1.5")]), Some(1.0));
    assert_eq!(
        value(&s, "hostile_other_total", &[("k", "other")]),
        Some(1.0)
    );
    let keys: Vec<&str> = s
        .iter()
        .filter(|x| x.name == "hostile_total")
        .map(|x| x.labels["k"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["big", "bad", "1.5", "0", "-inf", "9007199254740992"],
        "no series for a refused label value"
    );
    let errors = |reason| {
        value(
            &s,
            "nginx_metric_errors_total",
            &[("zone", "metrics"), ("reason", reason)],
        )
    };
    // Gauges: 5 NaN, 1 inf - inf; counters: -1, NaN, inf, -inf.
    assert_eq!(errors("invalid_value"), Some(10.0));
    // NaN (labels, inc, del), nil, a table, 5000 bytes.
    assert_eq!(errors("invalid_label_value"), Some(6.0));
    // { nil } has no values.
    assert_eq!(errors("label_count"), Some(1.0));
    let log = a.nginx.error_log();
    let once = |needle: &str| {
        let n = log.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(n, 1, "{needle}: logged {n} times:\n{log}");
    };
    once("\"hostile_level\": update dropped: NaN is not a value");
    once("\"hostile_total\": the value of label \"k\" is NaN");
    assert!(a.nginx.crashes().is_empty());
}

/// Declaring a family at run time in a full zone is a runtime failure: the family is
/// returned with the error (counted, logged once), records nothing, and never raises.
#[test]
fn declaring_a_family_in_a_full_zone_is_a_runtime_failure() {
    let extra = r#"
        location = /declare {
            content_by_lua_block {
                local z = require("ngxprom").zone("metrics")
                local f, err = z:counter("late_total", "Declared late.", { "a" })
                local ok, uerr = f:labels("x"):inc()
                ngx.say(tostring(f ~= nil), " | ", tostring(err), " | ", tostring(ok), " | ", tostring(uerr))
            }
        }
    "#;
    let a = start_app("latefull", "128k", extra);
    assert_eq!(get(a.app, "/make?from=1&to=5000").text().trim(), "5000 0");
    let (_, before) = scrape(a.metrics, "/metrics");
    let zone_full = |s: &[Sample]| {
        value(
            s,
            "nginx_metric_errors_total",
            &[("zone", "metrics"), ("reason", "zone_full")],
        )
        .unwrap()
    };
    let r = get(a.app, "/declare");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text().trim(),
        "true | metric \"late_total\": zone is full | nil | series unavailable"
    );
    let (_, after) = scrape(a.metrics, "/metrics");
    // The declaration and the update each counted.
    assert_eq!(zone_full(&after), zone_full(&before) + 2.0);
    assert!(!after.iter().any(|x| x.name == "late_total"));
    assert!(a.nginx.crashes().is_empty());
    assert!(
        !a.nginx.error_log().contains("runtime error"),
        "{}",
        a.nginx.error_log()
    );
}

/// `load_module` of this module before the lua module (or with no lua module at all)
/// works: the file imports no Lua symbol, so `dlopen` does not refuse it, and the Lua
/// API binds when Lua requires it. Where lua is compiled into nginx the order cannot be
/// wrong; the imports are checked on every build.
#[test]
fn module_loads_before_the_lua_module() {
    let out = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(&build().module)
        .output()
        .unwrap();
    let imports = String::from_utf8_lossy(&out.stdout);
    let lua: Vec<&str> = imports
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with("lua"))
        .collect();
    assert!(lua.is_empty(), "the module imports Lua symbols: {lua:?}");

    let (app, metrics) = (free_port(), free_port());
    let p = prefix("load-order");
    let conf = config(&p, &app_http(app, metrics, "4m", ""));
    let ours = format!("load_module {}/lib/ngx_prometheus.so;", p.display());
    let load_lua = &build().load_lua;
    // Ours first, the lua module's lines after it.
    let conf =
        conf.replacen(load_lua.as_str(), "", 1)
            .replacen(&ours, &format!("{ours}\n{load_lua}"), 1);
    if !load_lua.is_empty() {
        assert!(conf.find(&ours) < conf.find(load_lua.as_str()), "{conf}");
    }
    let nginx = Nginx::start_with(p, conf);
    hit(app, 10, 2);
    let (_, samples) = scrape(metrics, "/metrics");
    assert_eq!(value(&samples, "test_requests_total", &[]), Some(10.0));
    assert!(nginx.errors().is_empty(), "{:?}", nginx.errors());

    // Without any lua module, the native endpoint alone.
    if !load_lua.is_empty() {
        let alone = format!(
            "prometheus_zone m 1m;\n    server {{ listen 127.0.0.1:{}; \
             location = /metrics {{ prometheus_metrics m; }} }}",
            free_port()
        );
        let p = prefix("no-lua");
        let conf = config(&p, &alone)
            .replacen(load_lua.as_str(), "", 1)
            .lines()
            .filter(|l| !l.contains("lua_package"))
            .collect::<Vec<_>>()
            .join("\n");
        drop(Nginx::start_with(p, conf));
    }
}

/// `scripts/run.sh` (what `make run` runs) in the foreground on free ports, stopped
/// with Ctrl-C (SIGINT) when dropped.
struct RunSh {
    child: std::process::Child,
    dir: std::path::PathBuf,
    proxy: u16,
    upstream: u16,
    metrics: u16,
    admin: u16,
}

impl RunSh {
    fn start(name: &str) -> RunSh {
        Self::start_with(name, &[], false)
    }

    /// With more `KEY=VALUE` arguments; `PREFIX` as an argument or in the environment.
    /// The banner goes to `banner.txt` in the test's directory (beside the prefix).
    fn start_with(name: &str, extra: &[String], prefix_as_arg: bool) -> RunSh {
        let (proxy, upstream, metrics, admin) =
            (free_port(), free_port(), free_port(), free_port());
        let dir = prefix(name);
        let mut cmd = Command::new(root().join("scripts/run.sh"));
        if prefix_as_arg {
            cmd.arg(format!("PREFIX={}", dir.display()));
        } else {
            cmd.env("PREFIX", &dir);
        }
        let banner = std::fs::File::create(dir.with_extension("banner")).unwrap();
        if extra.iter().any(|a| a.starts_with("NGINX_BIN=")) {
            // An argument wins over the environment: this one must not be used.
            cmd.env("NGINX_BIN", "/nonexistent/nginx");
        }
        let child = cmd
            .args([
                format!("PROXY_PORT={proxy}"),
                format!("UPSTREAM_PORT={upstream}"),
                format!("METRICS_PORT={metrics}"),
                format!("ADMIN_PORT={admin}"),
            ])
            .args(extra)
            .stdout(banner)
            .spawn()
            .unwrap();
        // Up once the Admin API answers: a request to the proxy would be counted.
        let up = eventually(Duration::from_secs(20), || {
            (listening(proxy) && listening(metrics)).then_some(())?;
            std::panic::catch_unwind(|| get(admin, "/status"))
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(up.is_some(), "gateway did not come up");
        RunSh {
            child,
            dir,
            proxy,
            upstream,
            metrics,
            admin,
        }
    }
}

impl Drop for RunSh {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = eventually(Duration::from_secs(10), || self.child.try_wait().unwrap());
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("banner"));
    }
}

/// The shell block of a README section, continuation lines joined.
fn readme_commands(section: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let at = readme
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("README has no {section:?}"));
    let block = readme[at..].split("```sh\n").nth(1).unwrap();
    let block = &block[..block.find("```").unwrap()];
    block
        .replace("\\\n", " ")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A newcomer's first scrape: `make run`'s script started as it comes (the seed, its
/// defaults; only the ports given), then the README's first commands as written (ports
/// swapped): the scrape shows exactly the series the README shows.
#[test]
fn make_runs_first_scrape_shows_what_the_readme_shows() {
    let gw = RunSh::start("first-scrape");
    let swap_ports = |line: &str| {
        line.replace("localhost:8000", &format!("127.0.0.1:{}", gw.proxy))
            .replace("localhost:9542", &format!("127.0.0.1:{}", gw.metrics))
    };
    let block = readme_block_after("metrics flow at once:", "sh");
    let (mut commands, mut expected) = (Vec::new(), Vec::new());
    for line in block.lines() {
        match line.strip_prefix("# ") {
            Some(series) => expected.push(series.to_string()),
            None if !line.trim().is_empty() => commands.push(swap_ports(line)),
            None => {}
        }
    }
    assert!(commands.len() >= 2 && expected.len() >= 2, "{block}");
    let (last, requests) = commands.split_last().unwrap();
    for cmd in requests {
        let out = Command::new("sh").args(["-ec", cmd]).output().unwrap();
        assert!(out.status.success(), "{cmd}");
    }
    // nginx counts a request in its log phase, after the answer: the scrape is retried
    // until the count is there (the README's reader types slower than this).
    let mut output = String::new();
    let seen = eventually(Duration::from_secs(5), || {
        let out = Command::new("sh").args(["-c", last]).output().unwrap();
        output = String::from_utf8_lossy(&out.stdout).into_owned();
        expected
            .iter()
            .all(|e| output.lines().any(|l| l == e))
            .then_some(())
    });
    assert!(seen.is_some(), "README shows {expected:#?}, got:\n{output}");
}

/// `make run KEY=VALUE...`: make hands what its command line sets to run.sh as
/// arguments, as written (a `${hostname}` make would otherwise expand to nothing), and
/// run.sh refuses by name a setting it does not know (a typo make would drop).
#[test]
fn make_run_hands_its_settings_to_run_sh_as_written() {
    let labels = "CONST_LABELS=dc=lab \"host=${hostname}\"";
    let out = Command::new("make")
        .current_dir(root())
        // Not the settings of a make this test may run under.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .args(["-n", "run", "SETUP_DONE=1", labels, "PROXY_PORT=18000"])
        .arg("METRIC_PORT=1")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{out:?}");
    let line = printed.lines().last().unwrap_or_default();
    assert_eq!(
        line,
        format!("./scripts/run.sh '{labels}' 'METRIC_PORT=1' 'PROXY_PORT=18000'"),
        "{printed}"
    );
    let scratch = prefix("make-run-args");
    let refused = Command::new("timeout")
        .arg("20")
        .args(["sh", "-c", line])
        .current_dir(root())
        .env("PREFIX", &scratch)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown setting \"METRIC_PORT=1\""), "{err}");
}

/// The README's "Kong way" example, run as written against `make run`'s seeded gateway:
/// every Admin call succeeds (curl fails on a 4xx here) and the scrape shows the lines
/// the README shows.
#[test]
fn the_readmes_kong_way_example_works_on_the_seeded_gateway() {
    let gw = RunSh::start("kong-way");
    let mut last_output = String::new();
    let mut checked = 0;
    for line in readme_commands("## The gateway, the Kong way") {
        if let Some(expected) = line.strip_prefix("# ") {
            // An output line: a series the previous command printed.
            if !expected.starts_with("gateway_") {
                continue;
            }
            let series = &expected[..expected.rfind(' ').unwrap()];
            // A latency bucket's count depends on the machine's speed; its presence does not.
            let found = if series.contains("_bucket{") {
                last_output.lines().any(|l| l.starts_with(series))
            } else {
                last_output.lines().any(|l| l == expected)
            };
            assert!(found, "README shows {expected}, got:\n{last_output}");
            checked += 1;
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cmd = line
            .replace("localhost:8001", &format!("127.0.0.1:{}", gw.admin))
            .replace("localhost:8000", &format!("127.0.0.1:{}", gw.proxy))
            .replace("localhost:9542", &format!("127.0.0.1:{}", gw.metrics))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", gw.upstream))
            .replace("curl ", "curl --fail-with-body ");
        let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
        last_output = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{line}\n{last_output}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if line.contains("/plugins") {
            // A plugin reaches every worker within a second.
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    assert!(checked >= 2, "no output lines checked");
}

/// A full zone: a histogram's label sets that no longer fit go to its overflow series,
/// whose bucket chunks may not fit either; `_count` and `_sum` over the family stay
/// exact all the same (the values count in `+Inf` only).
#[test]
fn a_full_zone_keeps_a_histograms_count_and_sum_exact() {
    let lat = r#"
        location = /lat {
            content_by_lua_block {
                app.lat = app.lat or app.z:histogram("test_lat_seconds", "Labelled.", { "k" },
                    { buckets = { 0.1, 1 } })
                local n = 0
                for i = tonumber(ngx.var.arg_from), tonumber(ngx.var.arg_to) do
                    app.lat:labels("k" .. i):observe(0.25)
                    n = n + 1
                end
                ngx.say(n)
            }
        }"#;
    let a = start_app("tiny-hist", "128k", lat);
    // Both workers declare the family while there is room (one observation each time).
    for _ in 0..6 {
        assert_eq!(get(a.app, "/lat?from=0&to=0").text().trim(), "1");
    }
    assert_eq!(get(a.app, "/make?from=1&to=5000").text().trim(), "5000 0");
    assert_eq!(get(a.app, "/lat?from=1&to=50").text().trim(), "50");
    let (text, samples) = scrape(a.metrics, "/metrics");
    let total = |name: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    assert!(
        value(&samples, "test_lat_seconds_count", &[("k", "__overflow__")]).is_some(),
        "{text}"
    );
    assert_eq!(total("test_lat_seconds_count"), 56.0, "{text}");
    assert_eq!(total("test_lat_seconds_sum"), 56.0 * 0.25, "{text}");
    assert!(a.nginx.crashes().is_empty());
}

/// `run.sh`'s knobs: the prefix and the nginx as arguments, the metrics port's
/// credentials, constant labels, https and push without editing the generated file, a
/// banner with the ports in use, and an unknown setting refused by name (before
/// anything is written).
#[test]
fn run_sh_takes_every_knob_as_an_argument_and_shows_the_ports_it_uses() {
    // Bounded: a run.sh that took the typo would start a gateway in the foreground.
    let scratch = prefix("runsh-typo");
    let out = Command::new("timeout")
        .arg("20")
        .arg(root().join("scripts/run.sh"))
        .env("PREFIX", &scratch)
        .args(["PROXY_PORT=1", "METRIC_PORT=1"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown setting \"METRIC_PORT=1\""), "{err}");

    let creds = std::env::temp_dir().join(format!("ngxprom-runsh-{}.auth", std::process::id()));
    let digest = pipe_through("sha256sum", &[], "00pw").stdout;
    let digest = String::from_utf8_lossy(&digest[..64]).into_owned();
    std::fs::write(&creds, format!("basic scraper sha256:00:{digest}\n")).unwrap();
    let gw = RunSh::start_with(
        "runsh-knobs",
        &[
            format!("AUTH_FILE={}", creds.display()),
            "CONST_LABELS=dc=lab \"host=${hostname}\"".into(),
            // Any other directive, for http {} and for the metrics server {}.
            "HTTP_DIRECTIVES=prometheus_process_metrics interval=200ms;".into(),
            "METRICS_DIRECTIVES=add_header X-Knob on always;".into(),
        ],
        true,
    );
    assert!(gw.dir.join("nginx.conf").exists());
    let banner = std::fs::read_to_string(gw.dir.with_extension("banner")).unwrap();
    for port in [gw.proxy, gw.admin, gw.metrics] {
        assert!(banner.contains(&format!("127.0.0.1:{port}/")), "{banner}");
    }
    assert!(!banner.contains(":8000/"), "{banner}");
    assert_eq!(get(gw.metrics, "/metrics").status, 401);
    let auth = format!("Basic {}", base64_of("scraper:pw"));
    let r = request(
        gw.metrics,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-knob"), Some("on"));
    let samples = parse_with_reference(&r.text());
    assert!(
        samples
            .iter()
            .all(|s| s.labels.get("dc").map(String::as_str) == Some("lab")),
        "{}",
        r.text()
    );
    let process = eventually(Duration::from_secs(5), || {
        let r = request(
            gw.metrics,
            "GET",
            "/metrics",
            &[("Authorization", &auth)],
            b"",
        );
        r.text()
            .contains("nginx_worker_resident_memory_bytes{")
            .then_some(())
    });
    assert!(process.is_some(), "HTTP_DIRECTIVES did not reach http {{}}");
    drop(gw);

    // https and a push, from arguments too (the push goes nowhere: a closed port).
    let dir = prefix("runsh-tls");
    let (cert, key) = (dir.join("m.pem"), dir.join("m.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let gw = RunSh::start_with(
        "runsh-tls-gw",
        &[
            format!("TLS_CERT={}", cert.display()),
            format!("TLS_KEY={}", key.display()),
            format!("PUSH_URL=http://127.0.0.1:{}", free_port()),
            "PUSH_ARGS=interval=1h".into(),
            format!("NGINX_BIN={}", build().nginx.display()),
        ],
        false,
    );
    let conf = std::fs::read_to_string(gw.dir.join("nginx.conf")).unwrap();
    assert!(conf.contains("prometheus_push http://127.0.0.1:"), "{conf}");
    let banner = std::fs::read_to_string(gw.dir.with_extension("banner")).unwrap();
    assert!(
        banner.contains(&format!("https://127.0.0.1:{}/metrics", gw.metrics)),
        "{banner}"
    );
    // Every port in use, the demo upstream's too, and the nginx given as an argument.
    for port in [gw.proxy, gw.admin, gw.upstream] {
        assert!(banner.contains(&format!("127.0.0.1:{port}/")), "{banner}");
    }
    assert!(
        banner.contains(&build().nginx.display().to_string()),
        "{banner}"
    );
    let out = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{}/metrics", gw.metrics)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("# TYPE nginx_metric_errors_total counter"),
        "{text}"
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&creds);
}

/// The README's `run.sh` example with the metrics port's knobs, run as written from a
/// directory holding the files it names (the push password, a certificate and key; the
/// credentials made by the README's own command): only the ports, the prefix and the
/// Pushgateway's address (a closed port) are swapped or added. Its scrape command then
/// gets the series with the constant labels, over https, with those credentials.
#[test]
fn the_readmes_run_sh_knobs_example_works_as_written() {
    let block = readme_block_after("prints the ports it uses:", "sh").replace("\\\n", " ");
    let scripts = format!("{}/scripts/", root().display());
    let find = |what: &str| {
        block
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in the README's block:\n{block}"))
            .replace("./scripts/", &scripts)
    };
    let (credentials, start, scrape) = (find("credential.sh"), find("AUTH_FILE="), find("curl "));
    let cwd = prefix("runsh-readme-cwd");
    std::fs::write(cwd.join("pw.txt"), "pushpw\n").unwrap();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-keyout", "metrics.key", "-out", "metrics.pem"])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let out = Command::new("sh")
        .args(["-ec", &credentials])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{credentials}: {out:?}");

    let (proxy, upstream, metrics, admin) = (free_port(), free_port(), free_port(), free_port());
    let dir = prefix("runsh-readme");
    let start = format!(
        "exec {} PREFIX={} PROXY_PORT={proxy} UPSTREAM_PORT={upstream} METRICS_PORT={metrics} ADMIN_PORT={admin}",
        swap(&start, "http://127.0.0.1:9091", &format!("http://127.0.0.1:{}", free_port())),
        dir.display()
    );
    let child = Command::new("sh")
        .args(["-c", &start])
        .current_dir(&cwd)
        .stdout(std::fs::File::create(dir.with_extension("banner")).unwrap())
        .spawn()
        .unwrap();
    let gw = RunSh {
        child,
        dir,
        proxy,
        upstream,
        metrics,
        admin,
    };
    let up = eventually(Duration::from_secs(20), || {
        std::panic::catch_unwind(|| get(gw.admin, "/status"))
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(
        up.is_some(),
        "the README's run.sh line did not start:\n{start}"
    );
    let scrape = swap(
        &scrape,
        "127.0.0.1:9542",
        &format!("127.0.0.1:{}", gw.metrics),
    );
    let mut got = String::new();
    let seen = eventually(Duration::from_secs(5), || {
        let out = Command::new("sh").args(["-c", &scrape]).output().unwrap();
        got = String::from_utf8_lossy(&out.stdout).into_owned();
        (got.contains("dc=\"lab\"") && got.contains("hostname=\"")).then_some(())
    });
    assert!(seen.is_some(), "{scrape}: {got}");
    let conf = std::fs::read_to_string(gw.dir.join("nginx.conf")).unwrap();
    for line in [
        format!(
            "prometheus_push_basic_auth pusher {}",
            cwd.join("pw.txt").display()
        ),
        format!(
            "prometheus_auth_file {}",
            cwd.join("metrics.credentials").display()
        ),
    ] {
        assert!(conf.contains(&line), "{line} not in:\n{conf}");
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&cwd);
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The first block of `lang` in a README section.
fn readme_block(section: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let at = readme
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("README has no {section:?}"));
    let block = readme[at..]
        .split(&format!("```{lang}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README's {section:?} has no {lang} block"));
    block[..block.find("```").unwrap()].to_string()
}

/// `from` must be in `text`: the README's example still says what the test rewrites.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the README's block no longer has {from:?}"
    );
    text.replace(from, to)
}

/// The first block of `lang` after `marker` in the README.
fn readme_block_after(marker: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let block = readme[at..]
        .split(&format!("```{lang}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has no {lang} block after {marker:?}"));
    block[..block.find("```").unwrap()].to_string()
}

/// A newcomer's path, from the README's front page, for this build's kind of nginx
/// (Debian's, lua module loaded; or OpenResty's, lua compiled in): its install commands
/// run as written into a scratch root (only the directories and the built file
/// swapped), its complete `nginx.conf` (the same paths and the ports swapped) started
/// from another directory, requests counted, and its `prometheus.yml` (the target and
/// the interval swapped) scraped by a real Prometheus whose PromQL gives the exact count.
#[test]
fn the_readmes_standalone_nginx_conf_and_prometheus_yml_work_as_written() {
    let p = prefix("standalone");
    let (web, metrics) = (free_port(), free_port());
    let lib = p.join("lib").display().to_string();
    let share = p.join("share/ngx-prometheus").display().to_string();
    let (marker, modules) = if build().load_lua.is_empty() {
        ("For **OpenResty**", "/usr/local/openresty/nginx/modules")
    } else {
        ("For **Debian's nginx**", "/usr/lib/nginx/modules")
    };
    let install = readme_block_after(marker, "sh");
    let install: Vec<&str> = install
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("make "))
        .collect();
    let install = swap(
        &install.join("\n"),
        "target/release/libngx_prometheus.so",
        &build().module.display().to_string(),
    );
    let install = swap(&install, modules, &lib);
    let install = swap(&install, "/usr/local/share/ngx-prometheus", &share);
    // What a real system has already: the modules directory and /usr/local/share.
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(p.join("share")).unwrap();
    let out = Command::new("sh")
        .args(["-ec", &install])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README's install commands:\n{install}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conf = readme_block_after(marker, "nginx");
    conf = swap(
        &conf,
        &format!("{modules}/ngx_prometheus.so"),
        &format!("{lib}/ngx_prometheus.so"),
    );
    conf = swap(&conf, &format!("{modules}/?.so"), &format!("{lib}/?.so"));
    conf = swap(&conf, "/usr/local/share/ngx-prometheus", &share);
    conf = swap(&conf, "listen 8080;", &format!("listen 127.0.0.1:{web};"));
    conf = swap(
        &conf,
        "listen 9145;",
        &format!("listen 127.0.0.1:{metrics};"),
    );
    std::fs::create_dir_all(p.join("conf")).unwrap();
    std::fs::write(p.join("conf/nginx.conf"), &conf).unwrap();
    // Started from a directory that is neither the prefix nor the configuration's.
    let elsewhere = prefix("standalone-cwd");
    let start = nginx_command()
        .current_dir(&elsewhere)
        .arg("-p")
        .arg(&p)
        .args([
            "-c",
            "conf/nginx.conf",
            "-g",
            "pid logs/nginx.pid; error_log logs/error.log;",
        ])
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "the README's nginx.conf did not start:\n{}\n{conf}",
        String::from_utf8_lossy(&start.stderr)
    );
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = nginx_command()
                .arg("-p")
                .arg(&self.0)
                .args([
                    "-c",
                    "conf/nginx.conf",
                    "-g",
                    "pid logs/nginx.pid; error_log logs/error.log;",
                    "-s",
                    "quit",
                ])
                .output();
        }
    }
    let _stop = Stop(p.clone());
    assert!(eventually(Duration::from_secs(10), || listening(web).then_some(())).is_some());
    for path in ["/", "/", "/", "/other"] {
        assert_eq!(get(web, path).status, 200);
    }
    let root_count = |samples: &[Sample]| {
        value(
            samples,
            "nginx_http_requests_total",
            &[("route", "root"), ("code", "200")],
        )
    };
    let seen = eventually(Duration::from_secs(10), || {
        let (_, samples) = scrape(metrics, "/metrics");
        (root_count(&samples) == Some(3.0)).then_some(())
    });
    assert!(
        seen.is_some(),
        "the README's configuration does not count 3 requests to /"
    );

    let mut yml = readme_block("## Prometheus", "yaml");
    yml = swap(&yml, "scrape_interval: 15s", "scrape_interval: 1s");
    yml = swap(&yml, "'127.0.0.1:9145'", &format!("'127.0.0.1:{metrics}'"));
    let prometheus = Prometheus::start_with(|_| yml.clone());
    let q = "nginx_http_requests_total{job=\"ngx-prometheus\",route=\"root\",code=\"200\"}";
    let got = eventually(Duration::from_secs(30), || {
        prometheus.query(q).filter(|v| *v == 3.0)
    });
    assert_eq!(
        got,
        Some(3.0),
        "Prometheus with the README's prometheus.yml:\n{}",
        prometheus.log()
    );
    let errors: Vec<String> = std::fs::read_to_string(p.join("logs/error.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("[error]") || l.contains("[crit]") || l.contains("[alert]"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}
