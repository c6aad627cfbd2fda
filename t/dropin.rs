//! The drop-in `require("prometheus")` (lua/prometheus.lua) for nginx-lua-prometheus
//! users: that library's integration suite (its `integration/` directory: test_basic.go
//! and test_reset.go) ported, and what its unit tests (prometheus_test.lua) and the
//! bad inputs its users send show through `collect()`, each case run side by side with the
//! real library (0.20240525, from ../shared/peers beside the repository or `PEER_DIR`) in the same nginx
//! and compared byte for byte.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// nginx-lua-prometheus's own directory (prometheus.lua and the two modules it needs).
fn peer_dir() -> PathBuf {
    let dir = std::env::var_os("PEER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/peers/nginx-lua-prometheus"));
    assert!(
        dir.join("prometheus.lua").exists(),
        "nginx-lua-prometheus not found in {} (set PEER_DIR)",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

/// Starts nginx with `workers` workers and `http`, the peer's directory on the
/// package path after ours (so `require("prometheus")` is the drop-in).
fn start(name: &str, workers: usize, http: &str) -> Nginx {
    let prefix = prefix(name);
    let conf = config(&prefix, http)
        .replace(
            "worker_processes 2;",
            &format!("worker_processes {workers};"),
        )
        .replace(
            &format!("lua_package_path \"{}/lua/?.lua;;\";", root().display()),
            &format!(
                "lua_package_path \"{}/lua/?.lua;{}/?.lua;;\";",
                root().display(),
                peer_dir().display()
            ),
        );
    assert!(conf.contains("/?.lua;;\";"), "{conf}");
    std::fs::write(prefix.join("nginx.conf"), &conf).unwrap();
    let out = nginx_command()
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .output()
        .unwrap();
    let n = Nginx { prefix, conf };
    assert!(
        out.status.success(),
        "nginx failed to start:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        n.error_log()
    );
    n.wait_workers(workers);
    n
}

// ---------------------------------------------------------------------------------
// The integration suite, ported: its nginx.conf with only the lines a user changes
// (`lua_shared_dict prometheus_metrics 10M;` becomes `prometheus_zone
// prometheus_metrics 10M;`, the load_module lines and lua_package_path come from the
// harness) and free ports instead of 18000-18002; its `error_log stderr;` is left out
// (the harness logs to a file it checks). Its Go program's clients and checks follow.

fn integration_http(metrics: u16, basic: u16, reset: u16) -> String {
    format!(
        r#"
    sendfile on;
    tcp_nodelay on;

    prometheus_zone prometheus_metrics 10M;

    init_worker_by_lua_block {{
        prometheus = require("prometheus").init("prometheus_metrics", {{sync_interval=0.1}})

        -- basic_test
        metric_requests = prometheus:counter("requests_total",
          "Number of HTTP requests", {{"host", "path", "status"}})
        metric_latency = prometheus:histogram("request_duration_seconds",
          "HTTP request latency", {{"path"}},
          {{0.08, 0.089991, 0.1, 0.2, 0.75, 1, 1.5, 3.123232001, 5, 15, 120, 350.5, 1500, 75000, 1500000}})
        metric_connections = prometheus:gauge("connections",
          "Number of HTTP connections", {{"state"}})

        -- reset_test
        metric_gauge = prometheus:gauge("reset_test_gauge", "Sample gauge for reset test", {{"label"}})
    }}

    server {{
        listen {metrics};
        server_name metrics;

        location /health {{
            content_by_lua_block {{
                ngx.say("ok")
            }}
        }}
        location /metrics {{
            content_by_lua_block {{
                metric_connections:set(ngx.var.connections_reading, {{"reading"}})
                metric_connections:set(ngx.var.connections_waiting, {{"waiting"}})
                metric_connections:set(ngx.var.connections_writing, {{"writing"}})
                prometheus:collect()
            }}
        }}
    }}

    server {{
        listen {basic};
        server_name basic_test;

        log_by_lua_block {{
            if ngx.var.request_uri ~= "/health" then
                metric_requests:inc(1, {{ngx.var.server_name, ngx.var.request_uri, ngx.var.status}})
                metric_latency:observe(tonumber(ngx.var.request_time), {{ngx.var.request_uri}})
            end
        }}

        location /fast {{
            content_by_lua_block {{
                ngx.say("ok")
            }}
        }}
        location /slow {{
            content_by_lua_block {{
                -- sleep for 10-20ms.
                ngx.sleep(0.01 + (0.01 * math.random()))
                ngx.say("ok")
            }}
        }}
        location /error {{
            return 500;
        }}
        location /health {{
            content_by_lua_block {{
                ngx.say("ok")
            }}
        }}
    }}

    server {{
        listen {reset};
        server_name reset_test;

        location /reset_gauge {{
            content_by_lua_block {{
                metric_gauge:reset()
                ngx.say("ok")
            }}
        }}
        location /set_gauge {{
            content_by_lua_block {{
                metric_gauge:set(tonumber(ngx.var.arg_metricvalue), {{ngx.var.arg_labelvalue}})
                ngx.say("ok")
            }}
        }}
        location /health {{
            content_by_lua_block {{
                ngx.say("ok")
            }}
        }}
    }}
"#
    )
}

/// Its test duration and concurrency (flags `-duration` 10s and `-concurrency` 9).
const DURATION: Duration = Duration::from_secs(10);
const CONCURRENCY: usize = 9;

/// Its HTTP client: one shared by every goroutine, keep-alive, idle connections closed
/// after 400 ms, 2 kept per host (Go's default). Its 500 ms request timeout is 30 s
/// here: this machine's cores are shared, and a slow answer is not what it tests.
fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .max_idle_connections(100)
        .max_idle_connections_per_host(2)
        .max_idle_age(Duration::from_millis(400))
        .build()
        .into()
}

/// `mustGet`: 200 and "ok\n", or the test fails.
fn must_get(agent: &ureq::Agent, url: &str) {
    let mut r = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap();
    assert!(
        status == 200 && body == "ok\n",
        "unexpected response {status} {body:?} from {url}; expected 'ok'"
    );
}

/// The metrics page, fetched by `agent`, as (name, labels, value) samples (the simple
/// text this exposition is: no escapes in these tests' label values).
fn metrics(agent: &ureq::Agent, url: &str) -> (String, Vec<Sample>) {
    let mut r = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "{url}");
    let text = r.body_mut().read_to_string().unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect();
    (text, samples)
}

/// checkValue of test_reset.go: this client's series holds `want`, or (want 0) the
/// metric does not exist at all.
fn check_reset_value(client: usize, text: &str, samples: &[Sample], label: &str, want: u32) {
    let name = "reset_test_gauge";
    let family: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
    let exists = !family.is_empty() || text.contains(&format!("# TYPE {name} "));
    if want == 0 {
        assert!(
            !exists,
            "client {client}: metric {name} exists while it should not:\n{text}"
        );
        return;
    }
    assert!(
        exists,
        "client {client}: metric {name} not found in\n{text}"
    );
    for s in &family {
        assert_eq!(
            s.labels.len(),
            1,
            "client {client}: expected metric {name} to have 1 label, got {s:?}"
        );
    }
    let mine = family
        .iter()
        .find(|s| s.labels.get("label").map(String::as_str) == Some(label))
        .unwrap_or_else(|| {
            panic!("client {client}: metric {name} does not have label {label} while it should:\n{text}")
        });
    assert_eq!(
        mine.value,
        f64::from(want),
        "client {client}: expected metric {name} to have value of {want}"
    );
}

/// A small PRNG per client (Go's math/rand): uniform enough for the request mix.
struct Rand(u64);
impl Rand {
    fn intn(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// test_basic.go and test_reset.go at once, as its main runs them (both tests' 9
/// clients for 10 s each, 4 workers), then its checks: exact request counts per path
/// and status, latency sums, every bucket bound of the histogram, the connection
/// gauges, no library error; and, all along, a gauge set and read back by each client
/// while the others scrape, and reset (alone) and gone from the very next scrape.
#[test]
fn integration_suite_basic_and_reset_pass_with_only_the_zone_line_changed() {
    let (mport, bport, rport) = (free_port(), free_port(), free_port());
    let n = start(
        "dropin-integration",
        4,
        &integration_http(mport, bport, rport),
    );
    let agent = client();
    let metrics_url = format!("http://127.0.0.1:{mport}/metrics");
    for port in [mport, bport, rport] {
        let url = format!("http://127.0.0.1:{port}/health");
        let ok = eventually(Duration::from_secs(5), || {
            agent
                .get(&url)
                .call()
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        });
        assert!(ok.is_some(), "{url} never answered");
    }

    // The basic test: 10% slow, 5% errors, the rest fast; counted by kind.
    let basic = {
        let agent = agent.clone();
        std::thread::spawn(move || {
            let clients: Vec<_> = (0..CONCURRENCY)
                .map(|i| {
                    let agent = agent.clone();
                    std::thread::spawn(move || {
                        let mut rng = Rand(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
                        let mut counts = [0u64; 3]; // fast, slow, error
                        let start = Instant::now();
                        while start.elapsed() < DURATION {
                            let r = rng.intn(100);
                            let kind = if r < 10 {
                                1
                            } else if r < 15 {
                                2
                            } else {
                                0
                            };
                            let path = ["/fast", "/slow", "/error"][kind];
                            let url = format!("http://127.0.0.1:{bport}{path}");
                            if kind == 2 {
                                let mut resp = agent.get(&url).call().unwrap();
                                let _ = resp.body_mut().read_to_vec();
                                assert_eq!(resp.status().as_u16(), 500, "expected response 500");
                            } else {
                                must_get(&agent, &url);
                            }
                            counts[kind] += 1;
                        }
                        counts
                    })
                })
                .collect();
            let mut total = [0u64; 3];
            for c in clients {
                let c = c.join().unwrap();
                for k in 0..3 {
                    total[k] += c[k];
                }
            }
            total
        })
    };

    // The reset test: each client sets its own label and reads it back under a read
    // lock; 5% of the time one resets the gauge under the write lock and must find it
    // gone from the next scrape.
    let resets = Arc::new(Mutex::new(0u32));
    let reset = {
        let agent = agent.clone();
        let metrics_url = metrics_url.clone();
        let resets = resets.clone();
        std::thread::spawn(move || {
            let lock = Arc::new(RwLock::new(()));
            let clients: Vec<_> = (1..=CONCURRENCY)
                .map(|i| {
                    let (agent, lock, metrics_url, resets) = (
                        agent.clone(),
                        lock.clone(),
                        metrics_url.clone(),
                        resets.clone(),
                    );
                    std::thread::spawn(move || {
                        let mut rng = Rand(0xD1B5_4A32_D192_ED03 ^ i as u64);
                        let label = format!("client{i}");
                        let start = Instant::now();
                        while start.elapsed() < DURATION {
                            let value = 1 + rng.intn(9000) as u32;
                            {
                                let _r = lock.read().unwrap();
                                must_get(
                                    &agent,
                                    &format!(
                                        "http://127.0.0.1:{rport}/set_gauge?labelvalue={label}&metricvalue={value}"
                                    ),
                                );
                                let (text, samples) = metrics(&agent, &metrics_url);
                                check_reset_value(i, &text, &samples, &label, value);
                            }
                            if rng.intn(100) < 5 {
                                let _w = lock.write().unwrap();
                                must_get(&agent, &format!("http://127.0.0.1:{rport}/reset_gauge"));
                                let (text, samples) = metrics(&agent, &metrics_url);
                                check_reset_value(i, &text, &samples, &label, 0);
                                *resets.lock().unwrap() += 1;
                                // Slightly longer than sync_interval, as there.
                                std::thread::sleep(Duration::from_millis(105));
                            }
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().unwrap();
            }
        })
    };
    let [fast, slow, errors] = basic.join().unwrap();
    reset.join().unwrap();
    // Every connection closed (the clients' pools dropped), then the 500 ms it waits.
    drop(agent);
    std::thread::sleep(Duration::from_millis(500));

    let total = fast + slow + errors;
    eprintln!(
        "sent {total} requests ({fast} fast, {slow} slow, {errors} errors); {} resets",
        resets.lock().unwrap()
    );
    assert!(fast > 0 && slow > 0 && errors > 0);
    assert!(
        *resets.lock().unwrap() > 0,
        "no client ever reset the gauge"
    );

    let page = get(mport, "/metrics");
    assert_eq!(page.status, 200);
    let text = page.text();
    let samples = parse_with_reference(&text);
    let family =
        |name: &str| -> Vec<&Sample> { samples.iter().filter(|s| s.name == name).collect() };
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let header = |name: &str, help: &str, kind: &str| {
        assert!(
            text.contains(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n")),
            "{name}: HELP {help:?} / TYPE {kind} missing:\n{text}"
        );
    };

    // Latency sums: fast requests take under 1 s in all, slow ones at least 10 ms each.
    let sum =
        |path: &str| value(&samples, "request_duration_seconds_sum", &[("path", path)]).unwrap();
    assert!(
        sum("/fast") <= 1.0,
        "total time of all fast requests: {}",
        sum("/fast")
    );
    let min_slow = slow as f64 * 0.01;
    assert!(
        sum("/slow") > min_slow,
        "total time of all slow requests {} <= {min_slow}",
        sum("/slow")
    );

    // No error reported by the library: one unlabelled counter at 0.
    header(
        "nginx_metric_errors_total",
        "Number of nginx-lua-prometheus errors",
        "counter",
    );
    let errs = family("nginx_metric_errors_total");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].labels.is_empty());
    assert_eq!(errs[0].value, 0.0, "{text}");

    // Exactly the three request series, with exact counts.
    header("requests_total", "Number of HTTP requests", "counter");
    let mut got: Vec<(BTreeMap<String, String>, f64)> = family("requests_total")
        .into_iter()
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (
            labels(&[("host", "basic_test"), ("path", "/fast"), ("status", "200")]),
            fast as f64,
        ),
        (
            labels(&[("host", "basic_test"), ("path", "/slow"), ("status", "200")]),
            slow as f64,
        ),
        (
            labels(&[
                ("host", "basic_test"),
                ("path", "/error"),
                ("status", "500"),
            ]),
            errors as f64,
        ),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want, "{text}");

    // One connection left, writing (the scrape's own).
    header("connections", "Number of HTTP connections", "gauge");
    let mut conns: Vec<(String, f64)> = family("connections")
        .into_iter()
        .map(|s| (s.labels["state"].clone(), s.value))
        .collect();
    conns.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        conns,
        vec![
            ("reading".to_string(), 0.0),
            ("waiting".to_string(), 0.0),
            ("writing".to_string(), 1.0)
        ],
        "{text}"
    );

    // Every series of the histogram has its 16 buckets, at the configured bounds.
    let bounds = [
        0.08,
        0.089991,
        0.1,
        0.2,
        0.75,
        1.0,
        1.5,
        3.123232001,
        5.0,
        15.0,
        120.0,
        350.5,
        1500.0,
        75000.0,
        1500000.0,
        f64::INFINITY,
    ];
    let mut series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in family("request_duration_seconds_bucket") {
        let le = &s.labels["le"];
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        series
            .entry(s.labels["path"].clone())
            .or_default()
            .push(bound);
    }
    assert_eq!(series.len(), 3, "{text}");
    for (path, got) in &series {
        assert_eq!(
            got.len(),
            bounds.len(),
            "{path}: expected {} buckets, got {got:?}",
            bounds.len()
        );
        for (i, (g, w)) in got.iter().zip(bounds).enumerate() {
            assert!(
                g == &w || (g - w).abs() <= 0.00001,
                "{path}: unexpected value for bucket #{i}; want {w} got {g}"
            );
        }
    }
    assert!(n.errors().is_empty(), "{:?}", n.errors());
}

// ---------------------------------------------------------------------------------
// Side by side: each case runs, in one request, on the real library and on the
// drop-in (each its own instance, over `peer_metrics` and `prometheus_metrics`), and
// shows its lines of metric_data(), whether it raised, and the errors it counted.

const CASES: &str = r#"
cases = {}

-- prometheus_test.lua's testErrorInvalidMetricName and testErrorInvalidLabels.
cases.names = function(p)
    p:histogram("names name with a space", "Histogram")
    p:gauge("names_nonprintable\004characters", "Gauge")
    p:counter("0names_startswithadigit", "Counter")
    p:counter("__ngx_prom__names_internal", "Counter no.2")
    p:histogram("names_hist1", "Histogram", {"le"})
    p:gauge("names_count1", "Gauge", {"le"})
    p:counter("names_count1", "Counter", {"foo\002"})
    local ok = p:counter("names_ok", "Valid", {"a"})
    ok:inc(1, {"x"})
    p:gauge("names_numhelp", 42):set(1)
    assert(p:counter("names_bad one", "x") == nil)
end

-- testErrorDuplicateMetrics: a metric registered twice, or clashing with a
-- histogram's sample names.
cases.dup = function(p)
    local c1 = p:counter("dup_metric1", "Metric 1")
    p:counter("dup_metric2", "Metric 2", {"f2", "f1"})
    p:histogram("dup_l1", "Histogram 1")
    p:histogram("dup_l2", "Histogram 2", {"var", "site"})
    p:counter("dup_metric1", "Another metric 1")
    p:counter("dup_l1_count", "Conflicts with Histogram 1")
    p:counter("dup_l2_sum", "Conflicts with Histogram 2")
    p:counter("dup_l2_bucket", "Conflicts with Histogram 2")
    p:gauge("dup_metric1", "Conflicts with Metric 1")
    p:histogram("dup_l1", "Conflicts with Histogram 1")
    p:histogram("dup_metric2", "Conflicts with Metric 2")
    p:counter("dup_metric_A_count", "Metric ending with _count")
    p:histogram("dup_metric_A", "Conflicts with metric_A_count")
    p:counter("dup_metric_B_sum", "Metric ending with _sum")
    p:histogram("dup_metric_B", "Conflicts with metric_B_sum")
    p:counter("dup_metric_C_bucket", "Metric ending with _bucket")
    p:histogram("dup_metric_C", "Conflicts with metric_C_bucket")
    c1:inc(3)
end

-- testLabelEscaping.
cases.esc = function(p)
    local c = p:counter("esc_metric2", "Metric 2", {"f2", "f1"})
    local g = p:gauge("esc_gauge2", "Gauge 2", {"f2", "f1"})
    local h = p:histogram("esc_l2", "Histogram 2", {"var", "site"})
    c:inc(1, {"v2", "\""})
    c:inc(5, {"v2", "\\"})
    g:set(1, {"v2", "\""})
    g:set(5, {"v2", "\\"})
    g:set(7, {"v3", "foo\nbar"})
    h:observe(0.001, {"ok", "site\"1"})
    h:observe(0.15, {"ok", "site\"1"})
end

-- testMultibyteLabelValues: a value is cut at its first byte that is not UTF-8.
cases.utf8 = function(p)
    local c = p:counter("utf8_metric2", "Metric 2", {"f2", "f1"})
    local g = p:gauge("utf8_gauge2", "Gauge 2", {"f2", "f1"})
    local h = p:histogram("utf8_l2", "Histogram 2", {"var", "site"})
    c:inc(1, {"foo", "baz\189\166qux"})
    c:inc(1, {"bad1\195\195bad", "bad2\224\161\209bad"})
    c:inc(1, {"bad3\240\144\129\192bad", "bad4\242\129\210bad"})
    c:inc(1, {"¢€𤭢", "Pay in €. Thanks."})
    g:set(1, {"z\001", "\002"})
    g:set(1, {"\224\143\175", "\237\129\128"})
    h:observe(1, {"\166omg", "fooшbar"})
    h:observe(1, {"\244\143\143\143", "\244"})
end

-- testNumericLabelValues, and other values that are not strings.
cases.numeric = function(p)
    local c = p:counter("numeric_metric2", "Metric 2", {"f2", "f1"})
    local g = p:gauge("numeric_gauge2", "Gauge 2", {"f2", "f1"})
    local h = p:histogram("numeric_l2", "Histogram 2", {"var", "site"})
    c:inc(1, {0, 15.5})
    c:inc(1, {1e20, 1/3})
    c:inc(1, {true, -0.25})
    g:set(1, {0, 15.5})
    h:observe(1, {-3, 90000})
    c:inc(2, {"0", "15.5"})
end

-- Random bytes as label values (a fixed seed): every byte value, runs of UTF-8 lead
-- and continuation bytes, quotes, backslashes, newlines; the library is the oracle.
cases.bytes = function(p)
    local c = p:counter("bytes_c", "Random label values", {"a", "b"})
    local seed = 12345
    local function rand(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
    end
    local valid = { "a", "Z", "0", " ", "\"", "\\", "\n", "\1", "\127", "\195\169",
        "\226\130\172", "\240\164\173\162", "\237\159\191", "\224\160\128", "\244\143\191\191",
        "\194\128", "\239\191\191" }
    local invalid = { "\128", "\192\128", "\237\160\128", "\244\144\128\128", "\255",
        "\226\130", "\240\159", "\224\159\191", "\245\128\128\128", "\193\191" }
    for _ = 1, 400 do
        local v = {}
        for i = 1, 2 do
            local pieces = {}
            for j = 1, rand(10) do
                local list = rand(8) == 0 and invalid or valid
                pieces[j] = list[rand(#list) + 1]
            end
            v[i] = table.concat(pieces)
        end
        c:inc(1, v)
    end
end

-- testErrorIncorrectLabels, testErrorNegativeValue and testNoValues: each refused and
-- counted, nothing recorded.
cases.lb = function(p)
    local c1 = p:counter("lb_metric1", "Metric 1")
    local c2 = p:counter("lb_metric2", "Metric 2", {"f2", "f1"})
    local c3 = p:counter("lb_metric3", "Metric 3", {"f3"})
    local c4 = p:counter("lb_metric4", "Metric 4", {"f1", "f2", "f3"})
    local g1 = p:gauge("lb_gauge1", "Gauge 1")
    local g2 = p:gauge("lb_gauge2", "Gauge 2", {"f2", "f1"})
    local h1 = p:histogram("lb_l1", "Histogram 1")
    local h2 = p:histogram("lb_l2", "Histogram 2", {"var", "site"})
    c1:inc(1, {"should-be-no-labels"})
    c2:inc(1, {"too-few-labels"})
    c2:inc(1, {nil, "v"})
    c2:inc(1, {"v", nil})
    c2:inc(1)
    c3:inc(1, {nil})
    c4:inc(1, {"one", nil, "three"})
    g1:set(1, {"should-be-no-labels"})
    g2:set(1, {"too-few-labels"})
    g2:set(1)
    h2:observe(1, {"too", "many", "labels"})
    h2:observe(1, {nil, "label"})
    h2:observe(1, {"label", nil})
    c1:inc(-5)
    g1:set()
    h1:observe()
end

-- testCounters, testGaugeSet, testGaugeIncDec.
cases.values = function(p)
    local c1 = p:counter("values_metric1", "Metric 1")
    local c2 = p:counter("values_metric2", "Metric 2", {"f2", "f1"})
    local g1 = p:gauge("values_gauge1", "Gauge 1")
    local g2 = p:gauge("values_gauge2", "Gauge 2", {"f2", "f1"})
    local g3 = p:gauge("values_gauge3", "Gauge 3")
    c1:inc()
    c1:inc(4)
    c2:inc(1, {"v2", "v1"})
    c2:inc(3, {"v2", "v1"})
    c2:inc(0.5, {"v2", "half"})
    g1:set(100)
    g1:set(0)
    g1:set(-5)
    g3:inc(-1)
    g3:inc(3)
    g2:inc(1, {"f2value", "f1value"})
    g2:inc(5, {"f2value", "f1value"})
    g2:inc(-2, {"f2value", "f1value"})
    g2:inc(-5, {"f2value", "f1value"})
    g2:set(1e15, {"big", "set"})
    g2:set(123456789012345678, {"bigger", "set"})
    g2:set(0.1 + 0.2, {"sum", "set"})
    g1:inc(1, {"should-be-no-labels"})
    g2:inc(1, {"too-few-labels"})
end

-- testLatencyHistogram, testCustomBucketer1 and 2: bucketing at and between the
-- bounds, zero, the default buckets, values past the last bound.
cases.hist = function(p)
    local h1 = p:histogram("hist_l1", "Histogram 1")
    local h2 = p:histogram("hist_l2", "Histogram 2", {"var", "site"})
    h1:observe(0.35)
    h1:observe(0.4)
    h2:observe(0.001, {"ok", "site1"})
    h2:observe(0.15, {"ok", "site1"})
    h1:observe(0)
    local h3 = p:histogram("hist_l3", "Histogram 3", {"var"}, {1, 2, 3})
    h3:observe(2, {"ok"})
    h3:observe(0.151, {"ok"})
    local h4 = p:histogram("hist_l4", "Histogram 4", {"var"}, {0.000005, 5, 50000})
    h4:observe(0.000001, {"ok"})
    h4:observe(3, {"ok"})
    h4:observe(7, {"ok"})
    h4:observe(70000, {"ok"})
    local bounds = {0.08, 0.089991, 0.1, 0.2, 0.75, 1, 1.5, 3.123232001, 5, 15, 120, 350.5,
                    1500, 75000, 1500000}
    local h5 = p:histogram("hist_l5", "At the bounds", nil, bounds)
    for _, b in ipairs(bounds) do h5:observe(b) end
    h5:observe(-1)
    h5:observe(3e6)
end

-- testCounterDel, testGaugeDel, testReset: series deleted one by one or all at once,
-- then recorded again.
cases.delreset = function(p)
    local c = p:counter("delreset_c", "C", {"a"})
    local g = p:gauge("delreset_g", "G", {"a"})
    local g1 = p:gauge("delreset_g1", "G1")
    local h = p:histogram("delreset_h", "H", {"a"}, {1})
    c:inc(1, {"x"})
    c:inc(2, {"y"})
    g:set(1, {"x"})
    g:set(2, {"y"})
    g1:inc(1)
    h:observe(0.5, {"x"})
    h:observe(0.7, {"y"})
    c:del({"x"})
    g:del({"x"})
    g1:del()
    g:del({"y", "z"})
    h:reset()
    h:observe(2, {"z"})
    c:reset()
    c:inc(5, {"z"})
end

-- testCollect.
cases.collect = function(p)
    local c1 = p:counter("collect_metric1", "Metric 1")
    local c2 = p:counter("collect_metric2", "Metric 2", {"f2", "f1"})
    local g1 = p:gauge("collect_gauge1", "Gauge 1")
    local g2 = p:gauge("collect_gauge2", "Gauge 2", {"f2", "f1"})
    local h1 = p:histogram("collect_l1", "Histogram 1")
    local h2 = p:histogram("collect_l2", "Histogram 2", {"var", "site"})
    local h3 = p:histogram("collect_b1", "Bytes", {"var", "stale"}, {0.1, 100, 2000})
    local h4 = p:histogram("collect_b2", "Labels", {}, {100, 2000})
    local c5 = p:counter("collect_nohelp", nil, {})
    c1:inc(5)
    c2:inc(2, {"v2", "v1"})
    c2:inc(2, {"v2", "v1"})
    g1:set(3)
    g2:set(2, {"v2", "v1"})
    g2:set(5, {"v2", "v1"})
    h1:observe(0.000001)
    h2:observe(0.000001, {"ok", "site2"})
    h2:observe(3, {"ok", "site2"})
    h2:observe(7, {"ok", "site2"})
    h2:observe(70000, {"ok", "site2"})
    h3:observe(0.01, {"ok", "true"})
    h3:observe(50, {"ok", "true"})
    h3:observe(50, {"ok", "true"})
    h3:observe(150, {"ok", "true"})
    h3:observe(5000, {"ok", "true"})
    h4:observe(50, {})
    h4:observe(50, {})
    h4:observe(150, {})
    h4:observe(5000, {})
    c5:inc(0)
end

-- testCollectWithPrefix (run on the instances made with a prefix).
cases.prefix = function(p)
    local counter1 = p:counter("prefix_metric1", "Metric 1")
    local gauge1 = p:gauge("prefix_gauge1", "Gauge 1")
    local hist1 = p:histogram("prefix_b1", "Bytes", {"var"}, {100, 2000})
    counter1:inc(5)
    gauge1:set(3)
    hist1:observe(50, {"ok"})
    hist1:observe(50, {"ok"})
    hist1:observe(150, {"ok"})
    hist1:observe(5000, {"ok"})
end

-- The error metric under error_metric_name (run on the instances made with one).
cases.named = function(p)
    local c = p:counter("named_c", "C", {"a"})
    c:inc(-1, {"x"})
    c:inc(1, {"x", "y"})
    c:inc(2, {"x"})
end

-- Unsorted bounds: taken in any order there; sorted here (see the test).
cases.unsorted = function(p)
    local h = p:histogram("unsorted_h", "Unsorted", nil, {1, 0.5, 2})
    h:observe(0.7)
    h:observe(0.3)
    h:observe(1.5)
end

-- NaN: refused and counted here (see the test).
cases.nan = function(p)
    local c = p:counter("nan_c", "C")
    local g = p:gauge("nan_g", "G")
    local h = p:histogram("nan_h", "H", nil, {1})
    c:inc(0/0)
    g:set(0/0)
    h:observe(0/0)
    c:inc(1)
end

-- Numbers passed as strings (ngx.var values): taken as numbers here (see the test).
cases.strings = function(p)
    local c = p:counter("strings_c", "C")
    local g = p:gauge("strings_g", "G")
    local h = p:histogram("strings_h", "H", nil, {1})
    g:set("7")
    h:observe("0.5")
    c:inc("5")
end

-- Buckets that are not numbers: raised at registration, as there.
cases.badbuckets = function(p)
    p:histogram("badbuckets_h", "H", nil, {1, "two", 3})
end
"#;

const SIDES: &str = r#"
init_worker_by_lua_block {
    local peer = loadfile("PEER_DIR/prometheus.lua")()
    local ours = require("prometheus")
    sides = {
        peer = peer.init("peer_metrics", {sync_interval = 0.1}),
        ours = ours.init("prometheus_metrics", {sync_interval = 0.1}),
    }
    if EXTRA then
        sides.peer_prefix = peer.init("peer_metrics", {prefix = "test_pref_", sync_interval = 0.1})
        sides.ours_prefix = ours.init("prometheus_metrics", {prefix = "test_pref_", sync_interval = 0.1})
        sides.peer_named = peer.init("peer_metrics", {error_metric_name = "named_errors_total", sync_interval = 0.1})
        sides.ours_named = ours.init("prometheus_metrics", {error_metric_name = "named_errors_total", sync_interval = 0.1})
    end
    -- init with a dictionary nobody declared
    local results = {}
    for _, side in ipairs({ {"peer", peer}, {"ours", ours} }) do
        local ok, err = pcall(side[2].init, "nonexistent")
        results[#results + 1] = side[1] .. ": " .. tostring(ok) .. ": " .. tostring(err)
    end
    unknown_dict = table.concat(results, "\n")
CASES
}
"#;

/// The comparison server: one location per case, and each side's collect(); `extra`:
/// also the instances with a prefix and with an error metric name (over the same
/// dictionary and zone).
fn sides_http(port: u16, extra: bool) -> String {
    let init = SIDES
        .replace("PEER_DIR", &peer_dir().display().to_string())
        .replace("EXTRA", if extra { "true" } else { "false" })
        .replace("CASES", CASES);
    format!(
        r#"
    lua_shared_dict peer_metrics 10m;
    # The old dictionary line kept beside the zone that replaces it.
    lua_shared_dict prometheus_metrics 1m;
    prometheus_zone prometheus_metrics 10m;
    {init}
    server {{
        listen {port};
        location ~ ^/case/(?<case>\w+)$ {{
            content_by_lua_block {{
                local name = ngx.var.case
                local which = ""
                if name == "prefix" then which = "_prefix" elseif name == "named" then which = "_named" end
                local function errors(p)
                    local want = "^" .. p.prefix .. p.error_metric_name .. " (%S+)"
                    for _, l in ipairs(p:metric_data()) do
                        local v = l:match(want)
                        if v then return tonumber(v) end
                    end
                    return 0
                end
                local out = {{}}
                for _, side in ipairs({{"peer", "ours"}}) do
                    local p = sides[side .. which]
                    local before = errors(p)
                    local ok, err = pcall(cases[name], p)
                    local mine, errlines = {{}}, {{}}
                    for _, l in ipairs(p:metric_data()) do
                        if l:find(p.error_metric_name, 1, true) then
                            errlines[#errlines + 1] = l
                        elseif l:find(name .. "_", 1, true) then
                            mine[#mine + 1] = l
                        end
                    end
                    out[#out + 1] = string.format("== raised=%s errors=%d zone=%s\n%s--\n%s",
                        ok and "no" or "yes", errors(p) - before, tostring(p.zone ~= nil),
                        table.concat(errlines),
                        table.concat(mine))
                    if not ok then ngx.log(ngx.INFO, side, " raised: ", err) end
                end
                ngx.print(table.concat(out))
            }}
        }}
        location = /unknown_dict {{
            content_by_lua_block {{ ngx.print(unknown_dict) }}
        }}
        location ~ ^/collect/(?<side>\w+)$ {{
            content_by_lua_block {{ sides[ngx.var.side]:collect() }}
        }}
        # The bad inputs, recorded by the drop-in outside any pcall: never a 500.
        location = /bad {{
            content_by_lua_block {{
                local p = sides.ours
                local c = p:counter("bad_c", "C", {{"a", "b"}})
                local h = p:histogram("bad_h", "H", {{"a"}})
                c:inc(1, {{nil, "x"}})
                c:inc(1, {{"x"}})
                c:inc(1, {{"x", "y", "z"}})
                c:inc(-1, {{"x", "y"}})
                c:inc(0/0, {{"x", "y"}})
                c:inc("many", {{"x", "y"}})
                c:inc({{}}, {{"x", "y"}})
                c:inc(1, {{{{}}, "y"}})
                c:inc(1, {{0/0, "y"}})
                c:inc(1, {{1, 2}})
                h:observe(nil, {{"x"}})
                h:observe(0/0, {{"x"}})
                h:observe(1, {{}})
                c:inc(1, 5)
                c:inc(1, "x")
                h:observe(1, true)
                p:gauge("bad_g", "G", {{"a"}}):set(1, 7)
                p:counter("bad_c", "C", {{"a", "b"}})
                p:histogram("bad_u", "U", nil, {{3, 1, 2}}):observe(2)
                ngx.say("recorded")
            }}
        }}
    }}
"#
    )
}

struct Side {
    /// Whether this side is the drop-in (its instances hold their zone).
    on_zone: bool,
    raised: bool,
    errors: i64,
    error_lines: String,
    lines: String,
}

fn parse_side(s: &str) -> Side {
    let (head, rest) = s.split_once('\n').unwrap();
    let (error_lines, lines) = rest.split_once("--\n").unwrap();
    let raised = head.contains("raised=yes");
    let errors = head
        .split_once("errors=")
        .unwrap()
        .1
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Side {
        on_zone: head.contains("zone=true"),
        raised,
        errors,
        error_lines: error_lines.to_string(),
        lines: lines.to_string(),
    }
}

/// Runs case `name` on both sides: (the library's, the drop-in's).
fn case(port: u16, name: &str) -> (Side, Side) {
    let r = get(port, &format!("/case/{name}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let mut parts = text.split("== ").filter(|p| !p.is_empty());
    let peer = parse_side(parts.next().unwrap());
    let ours = parse_side(parts.next().unwrap());
    assert!(
        ours.on_zone && !peer.on_zone,
        "require(\"prometheus\") is not the drop-in"
    );
    (peer, ours)
}

/// Runs `name` on both sides and requires the same lines and the same counted errors,
/// the drop-in never raising; returns the drop-in's lines.
fn same(port: u16, name: &str, errors: i64) -> String {
    let (peer, ours) = case(port, name);
    assert!(!peer.raised && !ours.raised, "{name}: raised");
    assert_eq!(
        ours.lines, peer.lines,
        "{name}: the drop-in's lines (left) differ from nginx-lua-prometheus's (right)"
    );
    assert_eq!(
        (peer.errors, ours.errors),
        (errors, errors),
        "{name}: errors counted"
    );
    assert_eq!(
        ours.error_lines, peer.error_lines,
        "{name}: the error metric"
    );
    ours.lines
}

fn sides(name: &str) -> (Nginx, u16) {
    let port = free_port();
    let n = start(name, 1, &sides_http(port, true));
    (n, port)
}

#[test]
fn invalid_metric_and_label_names_are_refused_logged_and_counted_as_there() {
    let (n, port) = sides("dropin-names");
    let lines = same(port, "names", 8);
    assert_eq!(
        lines,
        "# HELP names_numhelp 42\n# TYPE names_numhelp gauge\nnames_numhelp 1\n\
         # HELP names_ok Valid\n# TYPE names_ok counter\nnames_ok{a=\"x\"} 1\n"
    );
    // Refused registrations are logged (once each), never raised.
    let log = n.error_log();
    assert!(
        log.contains("Metric name 'names name with a space' is invalid"),
        "{log}"
    );
    assert!(
        log.contains("Invalid label name 'le' in names_hist1"),
        "{log}"
    );
}

#[test]
fn a_metric_registered_twice_or_clashing_with_a_histogram_is_refused_and_counted() {
    let (_n, port) = sides("dropin-dup");
    let lines = same(port, "dup", 10);
    assert!(lines.contains("dup_metric1 3\n"), "{lines}");
}

#[test]
fn label_values_are_escaped_cut_at_bad_utf8_and_numbers_printed_as_there() {
    let (_n, port) = sides("dropin-labels");
    let esc = same(port, "esc", 0);
    for want in [
        "esc_metric2{f2=\"v2\",f1=\"\\\"\"} 1\n",
        "esc_metric2{f2=\"v2\",f1=\"\\\\\"} 5\n",
        "esc_gauge2{f2=\"v3\",f1=\"foo\\nbar\"} 7\n",
        "esc_l2_bucket{var=\"ok\",site=\"site\\\"1\",le=\"0.2\"} 2\n",
        "esc_l2_sum{var=\"ok\",site=\"site\\\"1\"} 0.151\n",
    ] {
        assert!(esc.contains(want), "{want} missing:\n{esc}");
    }
    let utf8 = same(port, "utf8", 0);
    for want in [
        "utf8_metric2{f2=\"foo\",f1=\"baz\"} 1\n",
        "utf8_metric2{f2=\"bad1\",f1=\"bad2\"} 1\n",
        "utf8_metric2{f2=\"¢€𤭢\",f1=\"Pay in €. Thanks.\"} 1\n",
        "utf8_gauge2{f2=\"z\u{1}\",f1=\"\u{2}\"} 1\n",
        "utf8_gauge2{f2=\"\",f1=\"\u{d040}\"} 1\n",
        "utf8_l2_sum{var=\"\",site=\"fooшbar\"} 1\n",
    ] {
        assert!(utf8.contains(want), "{want:?} missing:\n{utf8}");
    }
    let bytes = same(port, "bytes", 0);
    assert!(bytes.lines().count() > 300, "{bytes}");
    let numeric = same(port, "numeric", 0);
    for want in [
        // A number and its string are the same series, as there.
        "numeric_metric2{f2=\"0\",f1=\"15.5\"} 3\n",
        "numeric_metric2{f2=\"1e+20\",f1=\"0.33333333333333\"} 1\n",
        "numeric_metric2{f2=\"true\",f1=\"-0.25\"} 1\n",
        "numeric_l2_sum{var=\"-3\",site=\"90000\"} 1\n",
    ] {
        assert!(numeric.contains(want), "{want} missing:\n{numeric}");
    }
}

#[test]
fn wrong_label_counts_nil_labels_negative_increments_and_missing_values_are_counted() {
    let (_n, port) = sides("dropin-bad-labels");
    let lines = same(port, "lb", 16);
    assert_eq!(lines, "", "nothing is recorded");
}

#[test]
fn counters_and_gauges_hold_what_they_hold_there() {
    let (_n, port) = sides("dropin-values");
    let lines = same(port, "values", 2);
    for want in [
        "values_metric1 5\n",
        "values_metric2{f2=\"v2\",f1=\"v1\"} 4\n",
        "values_metric2{f2=\"v2\",f1=\"half\"} 0.5\n",
        "values_gauge1 -5\n",
        "values_gauge3 2\n",
        "values_gauge2{f2=\"f2value\",f1=\"f1value\"} -1\n",
        "values_gauge2{f2=\"big\",f1=\"set\"} 1e+15\n",
        "values_gauge2{f2=\"sum\",f1=\"set\"} 0.3\n",
    ] {
        assert!(lines.contains(want), "{want} missing:\n{lines}");
    }
}

#[test]
fn histograms_bucket_at_the_bounds_and_print_le_as_there() {
    let (_n, port) = sides("dropin-hist");
    let lines = same(port, "hist", 0);
    for want in [
        // Buckets no observation reached are left out, as there.
        "hist_l1_bucket{le=\"0.3\"} 1\n",
        "hist_l1_bucket{le=\"0.4\"} 3\n",
        "hist_l1_sum 0.75\n",
        "hist_l3_bucket{var=\"ok\",le=\"2\"} 2\n",
        "hist_l4_bucket{var=\"ok\",le=\"5e-06\"} 1\n",
        "hist_l4_bucket{var=\"ok\",le=\"+Inf\"} 4\n",
        "hist_l4_sum{var=\"ok\"} 70010.000001\n",
        // Each bound holds its own value: as many as the bounds up to it, and -1.
        "hist_l5_bucket{le=\"0.08\"} 2\n",
        "hist_l5_bucket{le=\"3.123232\"} 9\n",
        "hist_l5_bucket{le=\"1500000\"} 16\n",
        "hist_l5_bucket{le=\"+Inf\"} 17\n",
    ] {
        assert!(lines.contains(want), "{want} missing:\n{lines}");
    }
}

#[test]
fn del_and_reset_remove_series_at_once_and_they_count_again_from_zero() {
    let (_n, port) = sides("dropin-delreset");
    let lines = same(port, "delreset", 1);
    assert_eq!(
        lines,
        "# HELP delreset_c C\n# TYPE delreset_c counter\ndelreset_c{a=\"z\"} 5\n\
         # HELP delreset_g G\n# TYPE delreset_g gauge\ndelreset_g{a=\"y\"} 2\n\
         # HELP delreset_h H\n# TYPE delreset_h histogram\n\
         delreset_h_bucket{a=\"z\",le=\"+Inf\"} 1\ndelreset_h_count{a=\"z\"} 1\ndelreset_h_sum{a=\"z\"} 2\n"
    );
}

#[test]
fn collect_prints_the_same_page_with_the_same_content_type() {
    // The default instances alone: there, every instance's collect() shows every key
    // of the dictionary, other instances' error metrics too.
    let port = free_port();
    let _n = start("dropin-collect", 1, &sides_http(port, false));
    let lines = same(port, "collect", 0);
    assert!(lines.contains("collect_b2_sum{} 5250\n"), "{lines}");
    assert!(
        lines.contains("# TYPE collect_nohelp counter\ncollect_nohelp{} 0\n"),
        "{lines}"
    );
    assert!(!lines.contains("# HELP collect_nohelp"), "{lines}");
    let peer = get(port, "/collect/peer");
    let ours = get(port, "/collect/ours");
    assert_eq!(ours.status, 200);
    assert_eq!(ours.header("content-type"), peer.header("content-type"));
    assert_eq!(ours.header("content-type"), Some("text/plain"));
    assert_eq!(ours.text(), peer.text());
    assert!(
        ours.text().starts_with(
            "# HELP collect_b1 Bytes\n# TYPE collect_b1 histogram\n\
             collect_b1_bucket{var=\"ok\",stale=\"true\",le=\"0.1\"} 1\n"
        ),
        "{}",
        ours.text()
    );
}

#[test]
fn a_prefix_and_an_error_metric_name_apply_as_there() {
    let (_n, port) = sides("dropin-prefix");
    let lines = same(port, "prefix", 0);
    for want in [
        "# HELP test_pref_prefix_metric1 Metric 1\n",
        "test_pref_prefix_metric1 5\n",
        "test_pref_prefix_b1_bucket{var=\"ok\",le=\"100\"} 2\n",
        "test_pref_prefix_b1_sum{var=\"ok\"} 5250\n",
    ] {
        assert!(lines.contains(want), "{want} missing:\n{lines}");
    }
    let (peer, ours) = case(port, "named");
    assert_eq!(ours.lines, peer.lines);
    assert_eq!((peer.errors, ours.errors), (2, 2));
    assert_eq!(ours.error_lines, peer.error_lines);
    assert_eq!(
        ours.error_lines,
        "# HELP named_errors_total Number of nginx-lua-prometheus errors\n\
         # TYPE named_errors_total counter\nnamed_errors_total 2\n"
    );
}

/// Where the drop-in differs on purpose (docs/migrating.md): bounds given out of order
/// are sorted (there, a value between two unsorted bounds misses some buckets), NaN is
/// refused and counted (there it makes the series NaN for good), numbers passed as
/// strings are taken (there a counter raises on them).
#[test]
fn unsorted_buckets_nan_and_numeric_strings_differ_as_documented() {
    let (_n, port) = sides("dropin-differ");
    let (peer, ours) = case(port, "unsorted");
    assert!(!ours.raised);
    assert_eq!(
        ours.lines,
        "# HELP unsorted_h Unsorted\n# TYPE unsorted_h histogram\n\
         unsorted_h_bucket{le=\"0.5\"} 1\nunsorted_h_bucket{le=\"1\"} 2\n\
         unsorted_h_bucket{le=\"2\"} 3\nunsorted_h_bucket{le=\"+Inf\"} 3\n\
         unsorted_h_count 3\nunsorted_h_sum 2.5\n"
    );
    // The same lines in the same order there, with a count too few in le="1".
    assert!(
        peer.lines.contains("unsorted_h_bucket{le=\"1\"} 1\n"),
        "{}",
        peer.lines
    );
    assert_eq!(peer.lines.replace("le=\"1\"} 1", "le=\"1\"} 2"), ours.lines);

    let (peer, ours) = case(port, "nan");
    assert!(!ours.raised);
    assert_eq!(ours.errors, 3);
    assert_eq!(
        ours.lines,
        "# HELP nan_c C\n# TYPE nan_c counter\nnan_c 1\n"
    );
    assert!(peer.lines.contains("nan"), "{}", peer.lines);

    let (peer, ours) = case(port, "strings");
    assert!(!ours.raised && ours.errors == 0);
    assert!(ours.lines.contains("strings_c 5\n"), "{}", ours.lines);
    assert!(ours.lines.contains("strings_g 7\n"), "{}", ours.lines);
    assert!(ours.lines.contains("strings_h_sum 0.5\n"), "{}", ours.lines);
    assert!(peer.raised, "nginx-lua-prometheus took a string increment");
}

#[test]
fn bad_inputs_never_fail_the_request_that_records() {
    let (n, port) = sides("dropin-bad");
    let r = get(port, "/bad");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "recorded\n");
    let page = get(port, "/collect/ours").text();
    // 16 refused updates, one registration twice; numbers as label values taken.
    assert!(page.contains("\nnginx_metric_errors_total 17\n"), "{page}");
    assert!(page.contains("bad_u_bucket{le=\"2\"} 1\n"), "{page}");
    let bad_c: Vec<&str> = page.lines().filter(|l| l.starts_with("bad_c{")).collect();
    assert_eq!(bad_c, ["bad_c{a=\"1\",b=\"2\"} 1"], "{page}");
    // Errors are logged, and no Lua error escaped.
    assert!(
        !n.error_log().contains("runtime error"),
        "{}",
        n.error_log()
    );
}

#[test]
fn bad_buckets_and_an_unknown_dictionary_raise_at_registration_as_there() {
    let (_n, port) = sides("dropin-raise");
    let (peer, ours) = case(port, "badbuckets");
    assert!(peer.raised && ours.raised);
    let text = get(port, "/unknown_dict").text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("peer: false: "), "{text}");
    assert!(lines[1].starts_with("ours: false: "), "{text}");
    assert!(
        lines[1].contains("does not seem to exist")
            && lines[1].contains("prometheus_zone nonexistent"),
        "{text}"
    );
}

/// The APISIX fork's `exptime`: a series not updated for that long goes.
#[test]
fn exptime_expires_series_not_updated() {
    let port = free_port();
    let n = start(
        "dropin-exptime",
        2,
        &format!(
            r#"
    prometheus_zone prometheus_metrics 10m;
    init_worker_by_lua_block {{
        prometheus = require("prometheus").init()
        kept = prometheus:counter("kept_total", "Kept", {{"a"}})
        short = prometheus:counter("short_total", "Expires", {{"a"}}, 1)
        shorth = prometheus:histogram("short_seconds", "Expires", {{"a"}}, {{1}}, 1)
    }}
    server {{
        listen {port};
        location = /inc {{ content_by_lua_block {{
            kept:inc(1, {{"x"}}); short:inc(1, {{"x"}}); shorth:observe(0.5, {{"x"}}); ngx.say("ok")
        }} }}
        location = /metrics {{ content_by_lua_block {{ prometheus:collect() }} }}
    }}
"#
        ),
    );
    assert_eq!(get(port, "/inc").status, 200);
    let page = get(port, "/metrics").text();
    assert!(page.contains("short_total{a=\"x\"} 1\n"), "{page}");
    assert!(page.contains("short_seconds_count{a=\"x\"} 1\n"), "{page}");
    let gone = eventually(Duration::from_secs(15), || {
        let page = get(port, "/metrics").text();
        (!page.contains("short_total") && !page.contains("short_seconds")).then_some(page)
    })
    .expect("the series with exptime never expired");
    assert!(gone.contains("kept_total{a=\"x\"} 1\n"), "{gone}");
    assert!(n.errors().is_empty(), "{:?}", n.errors());
}

/// The old `lua_shared_dict` line may stay, before or after the zone line.
#[test]
fn the_old_dict_line_may_stay_beside_the_zone_in_either_order() {
    for (first, second) in [
        (
            "lua_shared_dict prometheus_metrics 10M;",
            "prometheus_zone prometheus_metrics 10M;",
        ),
        (
            "prometheus_zone prometheus_metrics 10M;",
            "lua_shared_dict prometheus_metrics 10M;",
        ),
    ] {
        let port = free_port();
        let _n = start(
            "dropin-both",
            2,
            &format!(
                r#"
    {first}
    {second}
    init_worker_by_lua_block {{
        prometheus = require("prometheus").init("prometheus_metrics")
        requests = prometheus:counter("requests_total", "Requests", {{"status"}})
    }}
    server {{
        listen {port};
        location = /metrics {{
            content_by_lua_block {{ prometheus:collect() }}
            log_by_lua_block {{ requests:inc(1, {{ngx.var.status}}) }}
        }}
    }}
"#
            ),
        );
        get(port, "/metrics");
        let page = get(port, "/metrics").text();
        assert!(
            page.contains("requests_total{status=\"200\"} 1\n"),
            "{first} {second}:\n{page}"
        );
        assert!(page.contains("nginx_metric_errors_total 0\n"), "{page}");
    }
}
