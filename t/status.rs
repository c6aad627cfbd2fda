//! The status page (`?format=html`) in headless Chromium: it loads with no console
//! error and no CSP violation, shows what the JSON endpoint holds after known traffic
//! (the module's families and the gateway's), keeps working when series are deleted
//! while it is open, answers refused clients exactly as `/metrics` does, and reflects
//! nothing of a hostile query string. The gateway test saves a screenshot
//! (`STATUS_SCREENSHOT=path` writes it there too: `make status-screenshot`).

mod cdp;
mod harness;

use cdp::Browser;
use harness::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the page may take to show a change (it polls every second here).
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// A label value that would be markup, a quote and UTF-8, if anything parsed it.
const HOSTILE: &str = "<img src=x onerror=\"window.__pwned=1\">'é\u{2603}";

/// The Basic credentials `/secured` (on [`module_nginx`]'s metrics port) asks for.
const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret pass";

/// nginx with the module and the log-phase helper (families `nginx_http_*` with a
/// `route` label the client picks with `?r=`); `/fail` answers 503; `/forget?r=`
/// deletes that route's 200 series and histograms through the Lua API. The metrics
/// port serves loopback clients only; `/secured` also wants [`USER`]'s credentials.
fn module_nginx(name: &str) -> (Nginx, u16, u16) {
    let p = prefix(name);
    let line = pipe_through(
        root().join("scripts/credential.sh").to_str().unwrap(),
        &["basic", USER],
        PASSWORD,
    );
    assert!(line.status.success());
    std::fs::write(p.join("metrics.credentials"), &line.stdout).unwrap();
    let (app, metrics) = (free_port(), free_port());
    let log = r#"log_by_lua_block { http_metrics:log(ngx.unescape_uri(ngx.var.arg_r or "none")) }"#;
    let http = format!(
        r#"
    prometheus_zone metrics 8m;
    init_by_lua_block {{
        http_metrics = require("ngxprom.log").new(require("ngxprom").zone("metrics"), {{
            labels = {{ "route" }},
        }})
    }}
    server {{
        listen 127.0.0.1:{app};
        location / {{ return 200 "ok\n"; {log} }}
        location = /fail {{ return 503; {log} }}
        location = /forget {{
            content_by_lua_block {{
                local r = ngx.unescape_uri(ngx.var.arg_r)
                ngx.say(tostring(http_metrics.requests:del(r, "200")), " ",
                        tostring(http_metrics.latency:del(r)), " ",
                        tostring(http_metrics.upstream:del(r)))
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        prometheus_allow 127.0.0.1;
        location = /metrics {{ prometheus_metrics metrics; }}
        location = /secured {{
            prometheus_metrics metrics;
            prometheus_auth_file metrics.credentials;
        }}
    }}
"#
    );
    (
        Nginx::start_with(p.clone(), config(&p, &http)),
        app,
        metrics,
    )
}

fn json_doc(port: u16, query: &str) -> Value {
    let r = get(port, &format!("/metrics?format=json{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn key(parts: &[&str]) -> String {
    serde_json::to_string(&parts).unwrap()
}

/// Prometheus' `histogram_quantile` over the JSON's cumulative buckets.
fn quantile(q: f64, buckets: &[Value], count: f64) -> Option<f64> {
    if count <= 0.0 || buckets.is_empty() {
        return None;
    }
    let rank = q * count;
    let (mut lo, mut below) = (0.0, 0.0);
    for (i, b) in buckets.iter().enumerate() {
        let (le, c) = (b["le"].as_f64().unwrap(), b["count"].as_f64().unwrap());
        if c >= rank {
            if i == 0 && le <= 0.0 {
                return Some(le);
            }
            return Some(lo + (le - lo) * (rank - below) / (c - below));
        }
        lo = le;
        below = c;
    }
    Some(lo)
}

/// What the page must show for `doc`, by its `data-k` keys: the values that do not
/// move while nobody sends traffic (request counts by code and route, the histograms'
/// counts and percentiles, the zone's series and capacity, target health).
fn expected(doc: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let (mut total, mut c5) = (0.0, 0.0);
    let mut codes: BTreeMap<String, f64> = BTreeMap::new();
    let mut routes: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    let mut health: BTreeMap<String, String> = BTreeMap::new();
    for f in doc["families"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let kind = f["type"].as_str().unwrap();
        let labels: Vec<&str> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        for s in f["series"].as_array().unwrap() {
            let label = |l: &str| s["labels"][l].as_str().unwrap().to_string();
            if kind == "counter" && name.ends_with("_requests_total") && labels.contains(&"code") {
                let v = s["value"].as_f64().unwrap();
                let code = label("code");
                let mut parts = vec![name.to_string()];
                parts.extend(
                    labels
                        .iter()
                        .filter(|l| !["code", "source", "consumer", "workspace"].contains(l))
                        .map(|l| label(l)),
                );
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                let r = routes.entry(key(&parts)).or_default();
                r[0] += v;
                total += v;
                *codes.entry(code.clone()).or_default() += v;
                if code.starts_with('4') {
                    r[1] += v;
                }
                if code.starts_with('5') {
                    r[2] += v;
                    c5 += v;
                }
            }
            if kind == "histogram" {
                let mut parts = vec![name.to_string()];
                parts.extend(labels.iter().map(|l| label(l)));
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                let k = key(&parts);
                let count = s["count"].as_f64().unwrap();
                out.insert(format!("lat-count:{k}"), json!(count));
                for (q, p) in [(0.5, 50), (0.9, 90), (0.99, 99)] {
                    let v = quantile(q, s["buckets"].as_array().unwrap(), count);
                    out.insert(format!("lat-p{p}:{k}"), json!(v));
                }
            }
            if kind == "gauge" && name.ends_with("_upstream_target_health") {
                let k = key(&[&label("upstream"), &label("target"), &label("address")]);
                let state = health.entry(k).or_insert_with(|| "unknown".into());
                if s["value"].as_f64() == Some(1.0) {
                    *state = label("state");
                }
            }
            if name == "nginx_metric_series" {
                out.insert(
                    format!("zone-series:{}", key(&[&label("zone")])),
                    s["value"].clone(),
                );
            }
            if name == "nginx_metric_zone_bytes" && label("state") == "capacity" {
                out.insert(
                    format!("zone-capacity:{}", key(&[&label("zone")])),
                    s["value"].clone(),
                );
            }
        }
    }
    out.insert("total".into(), json!(total));
    out.insert(
        "ratio5xx".into(),
        if total > 0.0 {
            json!(c5 / total)
        } else {
            Value::Null
        },
    );
    for (code, v) in codes {
        out.insert(format!("code:{}", key(&[&code])), json!(v));
    }
    for (k, [t, c4, c5]) in routes {
        out.insert(format!("route-total:{k}"), json!(t));
        out.insert(format!("route-4xx:{k}"), json!(c4));
        out.insert(format!("route-5xx:{k}"), json!(c5));
    }
    for (k, state) in health {
        out.insert(format!("health:{k}"), json!(state));
    }
    out
}

/// Whether the page's `shown` values are exactly `want`: every expected key with its
/// value (numbers to 1e-9 relative), and no route, code, histogram or target beyond
/// them (a deleted series must leave the page).
fn mismatches(shown: &BTreeMap<String, String>, want: &BTreeMap<String, Value>) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, w) in want {
        let Some(got) = shown.get(k) else {
            bad.push(format!("{k}: not shown (want {w})"));
            continue;
        };
        let same = match w {
            Value::Null => got.is_empty(),
            Value::Number(n) => got.parse::<f64>().is_ok_and(|g| {
                let n = n.as_f64().unwrap();
                (g - n).abs() <= 1e-9 * n.abs().max(1.0)
            }),
            Value::String(s) => got == s,
            other => panic!("{other}"),
        };
        if !same {
            bad.push(format!("{k}: shows {got:?}, the JSON says {w}"));
        }
    }
    for k in shown.keys() {
        let listed = [
            "code:",
            "route-total:",
            "route-5xx:",
            "lat-count:",
            "health:",
        ]
        .iter()
        .any(|p| k.starts_with(p));
        if listed && !want.contains_key(k) {
            bad.push(format!("{k}: shown, but not in the JSON"));
        }
    }
    bad
}

fn polls(b: &mut Browser) -> u64 {
    b.eval("Number(document.getElementById('main').getAttribute('data-polls'))")
        .as_u64()
        .unwrap()
}

/// Waits until the page has finished `n` more polls than now: at least `n - 1` of
/// them began after this call.
fn wait_polls(b: &mut Browser, n: u64) {
    let target = polls(b) + n;
    let expr =
        format!("Number(document.getElementById('main').getAttribute('data-polls')) >= {target}");
    assert!(
        b.wait_for(&expr, PAGE_WAIT).is_some(),
        "the page stopped polling: {}",
        b.eval("document.getElementById('state').textContent")
    );
}

/// Waits until the page shows what the JSON holds (it polls every second), and fails
/// with the differences if it never does.
fn assert_page_matches(b: &mut Browser, port: u16, query: &str) {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let want = expected(&json_doc(port, query));
        wait_polls(b, 2);
        let bad = mismatches(&b.values(), &want);
        if bad.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page differs from the JSON:\n{}",
            bad.join("\n")
        );
    }
}

/// Nothing of ours crashed or failed while the page was used: no worker died, and the
/// error log has no line at `[error]` or worse but those containing one of `expected`.
fn assert_nginx_clean(n: &Nginx, expected: &[&str]) {
    assert!(n.crashes().is_empty(), "{:?}", n.crashes());
    let errors: Vec<String> = n
        .errors()
        .into_iter()
        .filter(|l| !expected.iter().any(|e| l.contains(e)))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

fn assert_no_problems(b: &mut Browser) {
    let problems = b.problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(b.eval("window.__pwned === undefined"), json!(true));
}

/// Counters that move with every poll (the page's own requests count): the page's
/// value lies between the JSON's before and after it.
fn assert_between(b: &mut Browser, port: u16, k: &str, family: &str) {
    let read = |port| {
        json_doc(port, "")["families"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == family)
            .map(|f| f["series"][0]["value"].as_f64().unwrap())
            .unwrap()
    };
    let before = read(port);
    wait_polls(b, 2);
    let shown: f64 = b.values()[k].parse().unwrap();
    let after = read(port);
    assert!(
        before <= shown && shown <= after,
        "{k}: the page shows {shown}, the JSON {before} before and {after} after"
    );
}

/// Sends requests to `path` on `port` until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16, path: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, path) = (stop.clone(), path.to_string());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                get(port, &path);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
    }
}

fn shown_number(b: &mut Browser, k: &str) -> Option<f64> {
    b.values().get(k).and_then(|v| v.parse().ok())
}

#[test]
fn module_families_rates_and_a_deleted_series() {
    let (n, app, metrics) = module_nginx("status-module");
    for _ in 0..5 {
        assert_eq!(get(app, "/?r=a").status, 200);
    }
    let hostile = urlencode(HOSTILE);
    for _ in 0..3 {
        assert_eq!(get(app, &format!("/?r={hostile}")).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(app, &format!("/fail?r={hostile}")).status, 503);
    }
    let mut b = Browser::start(1280, 1000);
    b.navigate(&format!(
        "http://127.0.0.1:{metrics}/metrics?format=html&refresh=1"
    ));
    assert_page_matches(&mut b, metrics, "");
    let route_a = format!("route-total:{}", key(&["nginx_http_requests_total", "a"]));
    let route_h = format!("route-5xx:{}", key(&["nginx_http_requests_total", HOSTILE]));
    assert_eq!(b.values()[&route_a], "5");
    assert_eq!(b.values()[&route_h], "2");
    // The label shows as text: no element made of it, the text itself on the page.
    assert_eq!(
        b.eval("document.getElementsByTagName('img').length"),
        json!(0)
    );
    assert_eq!(
        b.eval("document.getElementsByTagName('script').length"),
        json!(1)
    );
    let literal = format!(
        "Array.from(document.querySelectorAll('td')).some(function (e) {{ return e.textContent === {}; }})",
        serde_json::to_string(HOSTILE).unwrap()
    );
    assert_eq!(b.eval(&literal), json!(true));
    assert_between(
        &mut b,
        metrics,
        "conn:accepted",
        "nginx_connections_accepted_total",
    );
    assert_between(&mut b, metrics, "conn:requests", "nginx_requests_total");

    // Rates from successive polls: above zero under traffic, zero once it stops.
    let rate_a = format!("route-rate:{}", key(&["nginx_http_requests_total", "a"]));
    let traffic = Traffic::start(app, "/?r=a");
    let deadline = Instant::now() + PAGE_WAIT;
    while !(shown_number(&mut b, "rps").unwrap_or(0.0) > 0.0
        && shown_number(&mut b, &rate_a).unwrap_or(0.0) > 0.0)
    {
        assert!(
            Instant::now() < deadline,
            "no rate under traffic: {:?}",
            b.values()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    traffic.stop();
    let deadline = Instant::now() + PAGE_WAIT;
    while shown_number(&mut b, "rps") != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the rate stays above zero: {:?}",
            b.values()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_page_matches(&mut b, metrics, "");

    // A series deleted while the page is open: it leaves the page, which goes on.
    let r = get(app, "/forget?r=a");
    assert_eq!(r.text(), "true true true\n");
    assert_page_matches(&mut b, metrics, "");
    assert!(!b.values().contains_key(&route_a));
    assert_eq!(shown_number(&mut b, "rps"), Some(0.0));
    assert_eq!(
        b.eval("document.getElementById('state').getAttribute('data-state')"),
        json!("ok")
    );
    assert_no_problems(&mut b);
    assert_nginx_clean(&n, &[]);
    n.stop();
}

#[test]
fn gateway_families_target_health_and_a_deleted_route() {
    let g = start_gateway("status-gateway", &[]);
    let call = |method: &str, path: &str, body: Value| {
        let (status, v) = admin(g.admin, method, path, Some(body));
        assert!(
            status == 200 || status == 201,
            "{method} {path}: {status} {v}"
        );
    };
    let dead = free_port();
    let upstream = format!("http://127.0.0.1:{}", g.upstream);
    call(
        "POST",
        "/services",
        json!({ "name": "demo", "url": upstream }),
    );
    call(
        "POST",
        "/services/demo/routes",
        json!({ "name": "root", "paths": ["/"] }),
    );
    call(
        "POST",
        "/services/demo/routes",
        json!({ "name": "slow", "paths": ["/slow"], "strip_path": false }),
    );
    call(
        "POST",
        "/upstreams",
        json!({ "name": "pool", "healthchecks": { "passive": { "unhealthy": { "failures": 1 } } } }),
    );
    for target in [
        format!("127.0.0.1:{}", g.upstream),
        format!("127.0.0.1:{dead}"),
    ] {
        call(
            "POST",
            "/upstreams/pool/targets",
            json!({ "target": target }),
        );
    }
    call(
        "POST",
        "/services",
        json!({ "name": "pooled", "host": "pool", "port": 80 }),
    );
    call(
        "POST",
        "/services/pooled/routes",
        json!({ "name": "pool", "paths": ["/pool"] }),
    );
    call(
        "POST",
        "/services",
        json!({ "name": "broken", "url": format!("http://127.0.0.1:{dead}") }),
    );
    call(
        "POST",
        "/services/broken/routes",
        json!({ "name": "broken", "paths": ["/broken"] }),
    );
    call(
        "POST",
        "/plugins",
        json!({ "name": "prometheus", "config": { "status_code_metrics": true,
            "latency_metrics": true, "bandwidth_metrics": true, "upstream_health_metrics": true } }),
    );
    settle(&g);
    for (path, times, status) in [
        ("/", 6, 200),
        ("/slow", 3, 200),
        ("/pool", 8, 200),
        ("/broken", 3, 502),
    ] {
        for _ in 0..times {
            assert_eq!(get(g.proxy, path).status, status, "{path}");
        }
    }
    let unhealthy = || {
        let doc = json_doc(g.metrics, "");
        expected(&doc)
            .get(&format!(
                "health:{}",
                key(&[
                    "pool",
                    &format!("127.0.0.1:{dead}"),
                    &format!("127.0.0.1:{dead}")
                ])
            ))
            .filter(|s| *s == "unhealthy")
            .map(|_| ())
    };
    assert!(
        eventually(PAGE_WAIT, unhealthy).is_some(),
        "the dead target is not unhealthy"
    );

    let mut b = Browser::start(1280, 1000);
    b.navigate(&format!(
        "http://127.0.0.1:{}/metrics?format=html&refresh=1",
        g.metrics
    ));
    assert_page_matches(&mut b, g.metrics, "");
    let slow = format!(
        "route-total:{}",
        key(&["gateway_http_requests_total", "demo", "slow"])
    );
    assert_eq!(b.values()[&slow], "3");
    let broken = format!(
        "err-5xx:{}",
        key(&["gateway_http_requests_total", "broken", "broken"])
    );
    assert_eq!(b.values()[&broken], "3");
    // The picture with traffic flowing: rates on the page.
    let traffic = Traffic::start(g.proxy, "/");
    let deadline = Instant::now() + PAGE_WAIT;
    while shown_number(&mut b, "rps").unwrap_or(0.0) <= 0.0 {
        assert!(
            Instant::now() < deadline,
            "no rate under traffic: {:?}",
            b.values()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let shot = b.screenshot();
    traffic.stop();
    assert!(shot.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(root().join("target/status-page.png"), &shot).unwrap();
    if let Ok(path) = std::env::var("STATUS_SCREENSHOT") {
        std::fs::write(&path, &shot).unwrap();
        eprintln!("status: wrote {path}");
    }

    // A route deleted through the Admin API while the page is open: its series go,
    // the page follows and goes on.
    let (status, v) = admin(g.admin, "DELETE", "/routes/slow", None);
    assert_eq!(status, 204, "{v}");
    assert_page_matches(&mut b, g.metrics, "");
    assert!(!b.values().contains_key(&slow), "{:?}", b.values());
    for _ in 0..4 {
        assert_eq!(get(g.proxy, "/").status, 200);
    }
    assert_page_matches(&mut b, g.metrics, "");
    assert_no_problems(&mut b);
    // The dead target's refusals are nginx's own upstream errors, and expected.
    assert_nginx_clean(&g.nginx, &["connect() failed (111: Connection refused)"]);
    g.nginx.stop();
}

#[test]
fn hostile_query_string_injects_nothing_and_the_group_is_kept() {
    let (n, app, metrics) = module_nginx("status-hostile");
    assert_eq!(get(app, "/?r=a").status, 200);
    let plain = get(metrics, "/metrics?format=html");
    let attack = "x=%3Cscript%3Ewindow.__pwned%3D1%3C%2Fscript%3E&y=\"><img/src=x/onerror=window.__pwned=1>&refresh=<b>";
    let hostile = get(
        metrics,
        &format!("/metrics?format=html&group=http&{attack}"),
    );
    // Nothing of the query reaches the document: it is the same bytes.
    assert_eq!(hostile.status, 200);
    assert_eq!(hostile.body, plain.body);
    let mut b = Browser::start(1024, 768);
    b.navigate(&format!(
        "http://127.0.0.1:{metrics}/metrics?format=html&group=http&refresh=1&{attack}"
    ));
    // The group selection is kept: the page polls `?group=http`, so it shows the
    // http families and none of group nginx (the zone's own).
    assert_page_matches(&mut b, metrics, "&group=http");
    let v = b.values();
    assert_eq!(v["total"], "1");
    assert_eq!(v.get("series").map(String::as_str), Some(""), "{v:?}");
    assert!(!v.keys().any(|k| k.starts_with("zone-series:")), "{v:?}");
    assert_eq!(
        b.eval("document.getElementById('selection').textContent"),
        json!("group=http")
    );
    assert_eq!(
        b.eval("document.getElementsByTagName('script').length"),
        json!(1)
    );
    assert_eq!(
        b.eval("document.getElementsByTagName('img').length"),
        json!(0)
    );
    assert_eq!(
        b.eval("document.getElementsByTagName('b').length"),
        json!(0)
    );
    assert_no_problems(&mut b);

    // A hostile selection is refused before any page is made, as the scrape refuses
    // it (400, plain text, nosniff, the value quoted), and a browser shows that as
    // text, running nothing of it.
    let markup = "<img src=x onerror=window.__pwned=1>";
    for sel in ["name", "group"] {
        let q = format!("{sel}={}", urlencode(markup));
        let page = get(metrics, &format!("/metrics?format=html&refresh=1&{q}"));
        let scrape = get(metrics, &format!("/metrics?format=json&{q}"));
        assert_eq!(page.status, 400, "{q}");
        assert_eq!(page.body, scrape.body, "{q}");
        assert_eq!(
            page.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert!(page.text().contains(markup), "{}", page.text());
        let mut b = Browser::start(1024, 768);
        b.navigate(&format!(
            "http://127.0.0.1:{metrics}/metrics?format=html&refresh=1&{q}"
        ));
        assert_eq!(b.eval("document.contentType"), json!("text/plain"));
        assert_eq!(
            b.eval("document.body.textContent"),
            json!(page.text()),
            "{q}"
        );
        assert_eq!(
            b.eval("document.getElementsByTagName('img').length"),
            json!(0)
        );
        assert_eq!(b.eval("window.__pwned === undefined"), json!(true));
        let problems: Vec<String> = b
            .problems()
            .into_iter()
            // A plain-text document: the browser asks for /favicon.ico (a 404).
            .filter(|p| !p.contains("status of 400") && !p.contains("/favicon.ico"))
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
    // A well-formed selection of nothing (a family that may come later): the page is
    // served and shows the JSON's 404 as its state, as text.
    let mut b = Browser::start(1024, 768);
    b.navigate(&format!(
        "http://127.0.0.1:{metrics}/metrics?format=html&refresh=1&name=nope_x"
    ));
    let errored = "document.getElementById('state').getAttribute('data-state') === 'error'";
    assert!(
        b.wait_for(errored, PAGE_WAIT).is_some(),
        "the page shows no error: {}",
        b.eval("document.getElementById('state').textContent")
    );
    assert_eq!(
        b.eval("document.getElementById('state').textContent"),
        json!("404: unknown metric family \"nope_x\"\n")
    );
    let problems: Vec<String> = b
        .problems()
        .into_iter()
        .filter(|p| !p.contains("status of 404"))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The plain-text documents' /favicon.ico: nginx's own 404 of a static file.
    assert_nginx_clean(&n, &["favicon.ico"]);
    n.stop();
}

#[test]
fn refused_clients_get_what_metrics_answers() {
    let (n, app, metrics) = module_nginx("status-refused");
    for _ in 0..3 {
        assert_eq!(get(app, "/?r=a").status, 200);
    }
    let refused: IpAddr = "127.0.0.2".parse().unwrap();
    let page = request_from(Some(refused), metrics, "GET", "/metrics?format=html", b"");
    let scrape = request_from(Some(refused), metrics, "GET", "/metrics", b"");
    assert_eq!(page.status, 403);
    assert_eq!(page.body, scrape.body);
    assert_eq!(page.header("content-type"), scrape.header("content-type"));
    assert!(page.header("content-security-policy").is_none());
    // Nor the JSON the page polls, however the refused client dresses the request
    // (no trusted proxy is configured: a forwarded address counts for nothing).
    for (path, headers) in [
        ("/metrics?format=json", vec![]),
        (
            "/metrics?format=html&refresh=1",
            vec![("X-Forwarded-For", "127.0.0.1"), ("X-Real-IP", "127.0.0.1")],
        ),
        (
            "/metrics?format=json&group=http",
            vec![("X-Forwarded-For", "127.0.0.1")],
        ),
    ] {
        let r = request_full(Some(refused), metrics, "GET", path, &headers, b"");
        assert_eq!(r.status, 403, "{path} {headers:?}");
        assert_eq!(r.body, scrape.body, "{path} {headers:?}");
    }
    // Credentials: the same 401 and challenge without them, the page with them.
    let page = get(metrics, "/secured?format=html");
    let scrape = get(metrics, "/secured");
    assert_eq!(page.status, 401);
    assert_eq!(page.body, scrape.body);
    assert_eq!(
        page.header("www-authenticate"),
        scrape.header("www-authenticate")
    );
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let page = request(
        metrics,
        "GET",
        "/secured?format=html",
        &[("Authorization", &basic)],
        b"",
    );
    assert_eq!(page.status, 200);
    assert!(page.text().starts_with("<!DOCTYPE html>"));
    // Allowed: the page, with its headers.
    let ok = get(metrics, "/metrics?format=html");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let csp = ok.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.contains("connect-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    // Nothing was lost or counted twice: the requests sent before are all there.
    let doc = expected(&json_doc(metrics, ""));
    let route_a = format!("route-total:{}", key(&["nginx_http_requests_total", "a"]));
    assert_eq!(doc[&route_a], json!(3.0));
    assert_nginx_clean(&n, &[]);
    n.stop();
}
