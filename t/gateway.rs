//! Gateway tests: the Kong-style walkthrough, plugin scoping and precedence, per-consumer
//! series, upstream health, error outcomes, ip-restriction and both metric namings.

mod harness;

use harness::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn ok(r: (u16, serde_json::Value)) -> serde_json::Value {
    assert!(r.0 == 200 || r.0 == 201 || r.0 == 204, "{} {}", r.0, r.1);
    r.1
}

fn service(g: &Gateway, name: &str, url: &str) -> serde_json::Value {
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": name, "url": url })),
    ))
}

fn route(g: &Gateway, service: &str, name: &str, paths: &[&str]) -> serde_json::Value {
    created(admin(
        g.admin,
        "POST",
        &format!("/services/{service}/routes"),
        Some(json!({ "name": name, "paths": paths })),
    ))
}

fn all_switches() -> serde_json::Value {
    json!({ "status_code_metrics": true, "latency_metrics": true, "bandwidth_metrics": true, "upstream_health_metrics": true })
}

/// The prometheus plugin, global, with every metric switch on.
fn prometheus_everywhere(g: &Gateway) {
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": all_switches() })),
    ));
}

fn requests(
    s: &[Sample],
    service: &str,
    route: &str,
    code: &str,
    source: &str,
    consumer: &str,
) -> Option<f64> {
    value(
        s,
        "gateway_http_requests_total",
        &[
            ("service", service),
            ("route", route),
            ("code", code),
            ("source", source),
            ("consumer", consumer),
        ],
    )
}

#[test]
fn kong_style_walkthrough() {
    let g = start_gateway("walkthrough", &[]);
    let upstream = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "example-service", &upstream);
    route(&g, "example-service", "example-route", &["/example"]);
    // `curl -X POST http://localhost:8001/plugins -d name=prometheus -d config.status_code_metrics=true ...`
    let form = "name=prometheus&config.status_code_metrics=true&config.latency_metrics=true&config.bandwidth_metrics=true";
    let r = request(
        g.admin,
        "POST",
        "/plugins",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    settle(&g);
    for _ in 0..5 {
        assert_eq!(get(g.proxy, "/example/").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(g.proxy, "/example/slow").status, 200);
    }
    assert_eq!(get(g.proxy, "/nowhere").status, 404);
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(
        requests(&s, "example-service", "example-route", "200", "service", ""),
        Some(7.0)
    );
    assert_eq!(requests(&s, "", "", "404", "gateway", ""), Some(1.0));
    let count = |fam: &str| {
        value(
            &s,
            &format!("{fam}_count"),
            &[("service", "example-service"), ("route", "example-route")],
        )
    };
    assert_eq!(count("gateway_request_latency_seconds"), Some(7.0));
    assert_eq!(count("gateway_upstream_latency_seconds"), Some(7.0));
    assert_eq!(count("gateway_latency_seconds"), Some(7.0));
    let slow = value(
        &s,
        "gateway_upstream_latency_seconds_bucket",
        &[
            ("service", "example-service"),
            ("route", "example-route"),
            ("le", "0.025"),
        ],
    );
    assert_eq!(slow, Some(5.0), "the two /slow requests take 50 ms");
    let bw = |dir| {
        value(
            &s,
            "gateway_bandwidth_bytes_total",
            &[
                ("service", "example-service"),
                ("route", "example-route"),
                ("direction", dir),
                ("consumer", ""),
            ],
        )
    };
    assert!(bw("ingress").unwrap() > 7.0 * 30.0);
    assert!(bw("egress").unwrap() > 7.0 * 100.0);
    // The Admin API serves the same exposition.
    let from_admin = get(g.admin, "/metrics");
    assert_eq!(from_admin.status, 200);
    let admin_samples = parse_with_reference(&from_admin.text());
    assert_eq!(
        requests(
            &admin_samples,
            "example-service",
            "example-route",
            "200",
            "service",
            ""
        ),
        Some(7.0)
    );
    // Node, memory and timer gauges: each worker sets them from a timer once a second,
    // so a plugin made a moment ago may have none yet.
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(g.metrics, "/metrics");
        s.iter().any(|x| x.name == "gateway_node_info").then_some(s)
    })
    .expect("no gateway_node_info in 10 s");
    assert!(s
        .iter()
        .any(|x| x.name == "gateway_node_info" && x.value == 1.0));
    assert!(s
        .iter()
        .any(|x| x.name == "gateway_memory_workers_lua_vms_bytes" && x.value > 0.0));
    assert!(s
        .iter()
        .any(|x| x.name == "gateway_memory_lua_shared_dict_total_bytes"
            && x.labels["shared_dict"] == "gateway_config"));
    assert_eq!(value(&s, "gateway_datastore_reachable", &[]), Some(1.0));
    let (status, st) = admin(g.admin, "GET", "/status", None);
    assert_eq!(status, 200);
    assert!(
        st["metrics"]["capacity_bytes"].as_f64().unwrap() > 60e6,
        "{st}"
    );
    assert!(st["metrics"]["series"].as_f64().unwrap() >= 5.0, "{st}");
}

#[test]
fn plugin_scope_precedence_disable_delete_and_buckets() {
    let g = start_gateway("scopes", &[]);
    let upstream = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "svc", &upstream);
    let a = route(&g, "svc", "a", &["/a"]);
    route(&g, "svc", "b", &["/b"]);
    // Global: requests counted. Route a: only latency (more specific wins).
    let global = created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": { "status_code_metrics": true } })),
    ));
    let on_a = created(admin(
        g.admin,
        "POST",
        &format!("/routes/{}/plugins", a["id"].as_str().unwrap()),
        Some(json!({ "name": "prometheus", "config": { "latency_metrics": true } })),
    ));
    settle(&g);
    for path in ["/a", "/a", "/b", "/b", "/b"] {
        assert_eq!(get(g.proxy, path).status, 200);
    }
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(requests(&s, "svc", "b", "200", "service", ""), Some(3.0));
    assert_eq!(
        requests(&s, "svc", "a", "200", "service", ""),
        None,
        "route a's plugin has no status metrics"
    );
    let lat_count = |s: &[Sample], r| {
        value(
            s,
            "gateway_request_latency_seconds_count",
            &[("service", "svc"), ("route", r)],
        )
    };
    assert_eq!(lat_count(&s, "a"), Some(2.0));
    assert_eq!(lat_count(&s, "b"), None);

    // Changing buckets keeps every count. Families are shared, and their buckets follow
    // the global plugin.
    ok(admin(
        g.admin,
        "PATCH",
        &format!("/plugins/{}", global["id"].as_str().unwrap()),
        Some(
            json!({ "config": { "status_code_metrics": true, "request_latency_buckets": [1, 10, 100, 1000] } }),
        ),
    ));
    settle(&g);
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(lat_count(&s, "a"), Some(2.0));
    assert_eq!(
        value(
            &s,
            "gateway_request_latency_seconds_bucket",
            &[("service", "svc"), ("route", "a"), ("le", "0.01")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "gateway_request_latency_seconds_bucket",
            &[("service", "svc"), ("route", "a"), ("le", "0.025")]
        ),
        None
    );

    // Disabled: route a falls back to the global plugin; global disabled: nothing.
    ok(admin(
        g.admin,
        "PATCH",
        &format!("/plugins/{}", on_a["id"].as_str().unwrap()),
        Some(json!({ "enabled": false })),
    ));
    settle(&g);
    get(g.proxy, "/a");
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(requests(&s, "svc", "a", "200", "service", ""), Some(1.0));
    ok(admin(
        g.admin,
        "PATCH",
        &format!("/plugins/{}", global["id"].as_str().unwrap()),
        Some(json!({ "enabled": false })),
    ));
    settle(&g);
    get(g.proxy, "/a");
    get(g.proxy, "/b");
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(requests(&s, "svc", "a", "200", "service", ""), Some(1.0));
    assert_eq!(requests(&s, "svc", "b", "200", "service", ""), Some(3.0));
    assert_eq!(lat_count(&s, "a"), Some(2.0));
    // Deleted: nothing either.
    let (status, _) = admin(
        g.admin,
        "DELETE",
        &format!("/plugins/{}", global["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 204);
    settle(&g);
    get(g.proxy, "/b");
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(requests(&s, "svc", "b", "200", "service", ""), Some(3.0));
}

#[test]
fn per_consumer_series_need_the_switch_and_a_key() {
    let g = start_gateway("consumers", &[]);
    service(&g, "svc", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "svc", "open", &["/open"]);
    let locked = route(&g, "svc", "locked", &["/locked"]);
    let rid = locked["id"].as_str().unwrap();
    created(admin(
        g.admin,
        "POST",
        &format!("/routes/{rid}/plugins"),
        Some(json!({ "name": "key-auth" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/consumers",
        Some(json!({ "username": "alice" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/consumers/alice/key-auth",
        Some(json!({ "key": "alice-secret" })),
    ));
    let plugin = created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(
            json!({ "name": "prometheus", "config": { "status_code_metrics": true, "per_consumer": true } }),
        ),
    ));
    settle(&g);
    assert_eq!(get(g.proxy, "/locked").status, 401);
    assert_eq!(get(g.proxy, "/locked?apikey=wrong").status, 401);
    assert_eq!(get(g.proxy, "/locked?apikey=alice-secret").status, 200);
    assert_eq!(
        request(
            g.proxy,
            "GET",
            "/locked",
            &[("apikey", "alice-secret")],
            b""
        )
        .status,
        200
    );
    assert_eq!(get(g.proxy, "/open").status, 200);
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(
        requests(&s, "svc", "locked", "200", "service", "alice"),
        Some(2.0)
    );
    assert_eq!(
        requests(&s, "svc", "locked", "401", "gateway", ""),
        Some(2.0)
    );
    assert_eq!(requests(&s, "svc", "open", "200", "service", ""), Some(1.0));
    // Without per_consumer, the consumer label stays empty.
    ok(admin(
        g.admin,
        "PATCH",
        &format!("/plugins/{}", plugin["id"].as_str().unwrap()),
        Some(json!({ "config": { "status_code_metrics": true, "per_consumer": false } })),
    ));
    settle(&g);
    assert_eq!(get(g.proxy, "/locked?apikey=alice-secret").status, 200);
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(
        requests(&s, "svc", "locked", "200", "service", "alice"),
        Some(2.0)
    );
    assert_eq!(
        requests(&s, "svc", "locked", "200", "service", ""),
        Some(1.0)
    );
}

/// A tiny HTTP server that can be stopped and started again on the same port.
struct Target {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    fn start(port: u16) -> Target {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntarget\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Target {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn upstream_target_health_follows_failures_and_readmission() {
    let g = start_gateway("health", &[]);
    let port = free_port();
    let mut flaky = Target::start(port);
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(
            json!({ "name": "pool", "healthchecks": { "passive": { "unhealthy": { "failures": 2 }, "readmit_after": 2 } } }),
        ),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/pool/targets",
        Some(json!({ "target": format!("127.0.0.1:{}", g.upstream) })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/pool/targets",
        Some(json!({ "target": format!("127.0.0.1:{port}") })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "svc", "host": "pool", "port": 80 })),
    ));
    route(&g, "svc", "r", &["/"]);
    prometheus_everywhere(&g);
    settle(&g);
    let health = |state: &str| {
        let (_, s) = scrape(g.metrics, "/metrics");
        value(
            &s,
            "gateway_upstream_target_health",
            &[
                ("upstream", "pool"),
                ("target", &format!("127.0.0.1:{port}")),
                ("address", &format!("127.0.0.1:{port}")),
                ("state", state),
            ],
        )
    };
    for _ in 0..6 {
        assert_eq!(get(g.proxy, "/").status, 200);
    }
    assert!(
        eventually(Duration::from_secs(3), || (health("healthy") == Some(1.0))
            .then_some(()))
        .is_some()
    );
    flaky.stop();
    // Connection refused: nginx retries on the other target; the client still gets 200.
    for _ in 0..8 {
        assert_eq!(get(g.proxy, "/").status, 200);
    }
    assert!(
        eventually(Duration::from_secs(3), || (health("unhealthy")
            == Some(1.0))
        .then_some(()))
        .is_some(),
        "target never turned unhealthy"
    );
    assert_eq!(health("healthy"), Some(0.0));
    let _flaky = Target::start(port);
    // Re-admitted by its timer (2 s), then healthy again.
    assert!(
        eventually(Duration::from_secs(8), || (health("healthy") == Some(1.0))
            .then_some(()))
        .is_some(),
        "target never re-admitted"
    );
    let served_by_target = (0..10)
        .filter(|_| get(g.proxy, "/").text() == "target\n")
        .count();
    assert!(served_by_target > 0, "re-admitted target got no traffic");
}

#[test]
fn no_route_upstream_errors_and_timeouts_are_answered_and_recorded() {
    let g = start_gateway("outcomes", &[]);
    let dead = free_port();
    service(&g, "up", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "up", "up", &["/up"]);
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "dead", "url": format!("http://127.0.0.1:{dead}"), "retries": 0 })),
    ));
    route(&g, "dead", "dead", &["/dead"]);
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(
            json!({ "name": "slow", "url": format!("http://127.0.0.1:{}/slow", g.upstream), "read_timeout": 10, "retries": 0 }),
        ),
    ));
    route(&g, "slow", "slow", &["/slow"]);
    prometheus_everywhere(&g);
    settle(&g);
    let nowhere = get(g.proxy, "/nowhere");
    assert_eq!(nowhere.status, 404);
    let body: serde_json::Value = serde_json::from_slice(&nowhere.body).unwrap();
    assert_eq!(body["message"], "no Route matched with those values");
    assert_eq!(get(g.proxy, "/dead").status, 502);
    assert_eq!(get(g.proxy, "/slow").status, 504);
    assert_eq!(get(g.proxy, "/up").status, 200);
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(requests(&s, "", "", "404", "gateway", ""), Some(1.0));
    assert_eq!(
        requests(&s, "dead", "dead", "502", "gateway", ""),
        Some(1.0)
    );
    assert_eq!(
        requests(&s, "slow", "slow", "504", "gateway", ""),
        Some(1.0)
    );
    assert_eq!(requests(&s, "up", "up", "200", "service", ""), Some(1.0));
}

#[test]
fn ip_restriction_guards_a_route_that_exposes_metrics() {
    let g = start_gateway("iprestrict", &[]);
    service(
        &g,
        "metrics",
        &format!("http://127.0.0.1:{}/metrics", g.metrics),
    );
    let r = route(&g, "metrics", "metrics", &["/metrics"]);
    let bad = admin(
        g.admin,
        "POST",
        &format!("/routes/{}/plugins", r["id"].as_str().unwrap()),
        Some(json!({ "name": "ip-restriction", "config": { "allow": ["10.0.0.1/8"] } })),
    );
    assert_eq!(bad.0, 400, "{}", bad.1);
    created(admin(
        g.admin,
        "POST",
        &format!("/routes/{}/plugins", r["id"].as_str().unwrap()),
        Some(
            json!({ "name": "ip-restriction", "config": { "allow": ["127.0.0.2", "::1"], "status": 403, "message": "metrics are private" } }),
        ),
    ));
    settle(&g);
    let refused = request_from(
        Some("127.0.0.1".parse::<IpAddr>().unwrap()),
        g.proxy,
        "GET",
        "/metrics",
        b"",
    );
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("metrics are private"));
    assert!(!refused.text().contains("# TYPE"));
    let allowed = request_from(
        Some("127.0.0.2".parse::<IpAddr>().unwrap()),
        g.proxy,
        "GET",
        "/metrics",
        b"",
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert!(allowed
        .text()
        .contains("# TYPE nginx_metric_errors_total counter"));
}

#[test]
fn kong_naming_emits_kong_families() {
    let g = start_gateway("kongnames", &[]);
    service(&g, "svc", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "svc", "r", &["/"]);
    let mut conf = all_switches();
    conf["naming"] = json!("kong");
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": conf })),
    ));
    settle(&g);
    for _ in 0..3 {
        get(g.proxy, "/");
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (text, s) = scrape_unlinted(g.metrics, "/metrics");
    let labels = [
        ("service", "svc"),
        ("route", "r"),
        ("code", "200"),
        ("source", "service"),
        ("workspace", "default"),
        ("consumer", ""),
    ];
    assert_eq!(value(&s, "kong_http_requests_total", &labels), Some(3.0));
    let lat = [("service", "svc"), ("route", "r"), ("workspace", "default")];
    assert_eq!(value(&s, "kong_request_latency_ms_count", &lat), Some(3.0));
    assert_eq!(value(&s, "kong_kong_latency_ms_count", &lat), Some(3.0));
    let le25 = [
        ("service", "svc"),
        ("route", "r"),
        ("workspace", "default"),
        ("le", "25"),
    ];
    assert_eq!(
        value(&s, "kong_upstream_latency_ms_bucket", &le25),
        Some(3.0)
    );
    assert!(
        value(
            &s,
            // The reference parser names counter samples with `_total`; the text has
            // Kong's name (checked below).
            "kong_bandwidth_bytes_total",
            &[
                ("service", "svc"),
                ("route", "r"),
                ("direction", "egress"),
                ("workspace", "default"),
                ("consumer", "")
            ]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        text.contains("\nkong_bandwidth_bytes{service=\"svc\",route=\"r\",direction=\"egress\""),
        "{text}"
    );
    assert!(value(&s, "kong_nginx_connections_total", &[("state", "accepted")]).unwrap() >= 3.0);
    assert!(s.iter().any(|x| x.name == "kong_node_info"));
    assert!(s.iter().any(|x| x.name == "kong_nginx_timers"));
    assert_eq!(value(&s, "kong_datastore_reachable", &[]), Some(1.0));
}

#[test]
fn state_file_is_private_and_key_auth_is_not_for_consumers() {
    use std::os::unix::fs::PermissionsExt;
    let g = start_gateway("private", &[]);
    created(admin(
        g.admin,
        "POST",
        "/consumers",
        Some(json!({ "username": "bob" })),
    ));
    let mode = std::fs::metadata(g.nginx.prefix.join("state/gateway.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state file mode {mode:o}");
    let (status, body) = admin(
        g.admin,
        "POST",
        "/consumers/bob/plugins",
        Some(json!({ "name": "key-auth" })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["consumer"].is_string(), "{body}");
}

/// The README's walkthrough, run as written (ports swapped for the test's).
#[test]
fn readme_walkthrough_runs_verbatim() {
    let g = start_gateway("readme", &[]);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## The gateway, the Kong way")
        .expect("walkthrough section")..];
    let block = section
        .split("```sh")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    // Join continuation lines, keep the commands, drop comments.
    let script = block.replace("\\\n", " ");
    let commands: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl"))
        .collect();
    assert!(commands.len() >= 5, "{commands:?}");
    let mut last = String::new();
    for (i, cmd) in commands.iter().enumerate() {
        let cmd = cmd
            .replace("localhost:8001", &format!("localhost:{}", g.admin))
            .replace("localhost:8000", &format!("localhost:{}", g.proxy))
            .replace("localhost:9542", &format!("localhost:{}", g.metrics))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", g.upstream));
        if i == commands.len() - 2 {
            settle(&g); // the plugin reaches every worker before traffic is sent
        }
        let out = std::process::Command::new("bash")
            .args(["-c", &cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    assert!(
        last.contains(
            "gateway_http_requests_total{service=\"example-service\",route=\"example-route\",code=\"200\",source=\"service\",consumer=\"\"} 1"
        ),
        "{last}"
    );
    assert!(last.contains("gateway_request_latency_seconds_bucket{service=\"example-service\",route=\"example-route\",le=\"0.025\"} 1"), "{last}");
}

/// Longest prefix wins; hosts and methods narrow a route; strip_path and the service
/// path shape the upstream path (the demo upstream's `/slow` answers differently).
#[test]
fn routing_by_prefix_host_method_and_path_handling() {
    let g = start_gateway("routing", &[]);
    let up = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "root", &up);
    service(&g, "slowsvc", &format!("{up}/slow"));
    route(&g, "root", "everything", &["/"]);
    // `/api/slow` -> strip `/api` -> `/slow` on the upstream.
    created(admin(
        g.admin,
        "POST",
        "/services/root/routes",
        Some(json!({ "name": "api", "paths": ["/api"] })),
    ));
    // Any path under /s for host example.test -> service path /slow.
    created(admin(
        g.admin,
        "POST",
        "/services/slowsvc/routes",
        Some(json!({ "name": "by-host", "paths": ["/s"], "hosts": ["example.test"] })),
    ));
    // POST-only route, longer prefix than `/api`.
    created(admin(
        g.admin,
        "POST",
        "/services/slowsvc/routes",
        Some(
            json!({ "name": "posts", "paths": ["/api/p"], "methods": ["POST"], "strip_path": false }),
        ),
    ));
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": { "status_code_metrics": true } })),
    ));
    settle(&g);
    let slow = "slow hello from the demo upstream\n";
    let fast = "hello from the demo upstream\n";
    assert_eq!(
        get(g.proxy, "/api/slow").text(),
        slow,
        "strip_path removes /api"
    );
    assert_eq!(get(g.proxy, "/slow").text(), slow);
    assert_eq!(get(g.proxy, "/s").text(), fast, "no host: the / route");
    assert_eq!(
        request(g.proxy, "GET", "/s", &[("Host", "example.test")], b"").text(),
        slow
    );
    assert_eq!(
        request(g.proxy, "GET", "/s", &[("Host", "EXAMPLE.test:8000")], b"").text(),
        slow
    );
    assert_eq!(
        post(g.proxy, "/api/p", b"x").text(),
        slow,
        "POST takes the longer, method-bound route"
    );
    assert_eq!(
        get(g.proxy, "/api/p").text(),
        fast,
        "GET falls back to /api (upstream path /p)"
    );
    // A client has its answer before nginx runs the log phase that records it, and the
    // scrape may reach the other worker first: wait for the counts to arrive (they
    // must then be exact), rather than read them once.
    let expected = [
        ("root", "api", 2.0),
        ("slowsvc", "by-host", 2.0),
        ("slowsvc", "posts", 1.0),
        ("root", "everything", 2.0),
    ];
    let counts = |s: &[Sample]| {
        expected
            .iter()
            .map(|(svc, route, _)| requests(s, svc, route, "200", "service", ""))
            .collect::<Vec<_>>()
    };
    let want: Vec<_> = expected.iter().map(|e| Some(e.2)).collect();
    eventually(Duration::from_secs(5), || {
        let (_, s) = scrape(g.metrics, "/metrics");
        (counts(&s) == want).then_some(())
    });
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(
        counts(&s),
        want,
        "requests by (service, route): {expected:?}"
    );
}

#[test]
fn wildcard_hosts_exact_hosts_first_and_escaped_route_paths() {
    let g = start_gateway("routing-hosts", &[]);
    let up = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "root", &up);
    service(&g, "slowsvc", &format!("{up}/slow"));
    let hosts_route = |name: &str, svc: &str, hosts: serde_json::Value| {
        created(admin(
            g.admin,
            "POST",
            &format!("/services/{svc}/routes"),
            Some(json!({ "name": name, "paths": ["/h"], "hosts": hosts })),
        ))
    };
    hosts_route("wild", "slowsvc", json!(["*.wild.test", "api.*"]));
    hosts_route("exact", "root", json!(["x.wild.test"]));
    // Stored escaped, matched decoded.
    created(admin(
        g.admin,
        "POST",
        "/services/slowsvc/routes",
        Some(json!({ "name": "umlaut", "paths": ["/b%C3%A4r"] })),
    ));
    settle(&g);
    let slow = "slow hello from the demo upstream\n";
    let fast = "hello from the demo upstream\n";
    let with_host = |host: &str| request(g.proxy, "GET", "/h", &[("Host", host)], b"");
    assert_eq!(with_host("a.wild.test").text(), slow);
    assert_eq!(with_host("a.b.wild.test:8000").text(), slow);
    assert_eq!(with_host("api.example.org").text(), slow);
    assert_eq!(
        with_host("x.wild.test").text(),
        fast,
        "an exact host beats a wildcard"
    );
    assert_eq!(
        with_host("wild.test").status,
        404,
        "*.wild.test needs a label more"
    );
    assert_eq!(with_host("apix.example").status, 404);
    assert_eq!(get(g.proxy, "/b%C3%A4r").text(), slow);
    assert_eq!(get(g.proxy, "/b%c3%a4r").text(), slow);
    assert_eq!(get(g.proxy, "/bar").status, 404);
}

/// The per-request path of the gateway and its prometheus plugin stays compiled by
/// LuaJIT: an FFI call from the interpreter costs several times one from a trace (the
/// plugin added ~8,000 instructions per request while a closure in the exporter's log
/// function kept it in the interpreter; ~1,500 since, bench/e2e.sh). Every trace abort
/// is logged with where it happened; none may be in our code on the request path.
#[test]
fn the_request_path_compiles() {
    let prefix = prefix("gateway-jit");
    let (conf, [proxy, admin_port, metrics, upstream]) = render_gateway(&prefix, &[]);
    let hook = r#"require("gateway").init_worker()
        local funcinfo = require("jit.util").funcinfo
        jit.attach(function(what, _, func, pc, reason, extra)
            if what ~= "abort" then return end
            local at = funcinfo(func, pc)
            ngx.log(ngx.WARN, "trace abort at ", at.loc or at.source, ": ", reason, " ", extra)
        end, "trace")"#;
    assert!(conf.contains(r#"require("gateway").init_worker()"#));
    let conf = conf.replace(r#"require("gateway").init_worker()"#, hook);
    let g = Gateway {
        nginx: Nginx::start_with(prefix, conf),
        proxy,
        admin: admin_port,
        metrics,
        upstream,
    };
    service(&g, "svc", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "svc", "r", &["/"]);
    prometheus_everywhere(&g);
    settle(&g);
    // Enough for LuaJIT to record (and abort, and retry) everything hot, in both workers.
    for _ in 0..1500 {
        assert_eq!(get(g.proxy, "/x").status, 200);
    }
    let log = g.nginx.error_log();
    let aborts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("trace abort at"))
        .collect();
    // The plugin's own code: the exporter, the plugin handler, the Lua API under them,
    // while proxying
    // (Admin API calls and timers are off the request path: not counted).
    let ours: Vec<&&str> = aborts
        .iter()
        .filter(|l| l.contains("request: \"GET /x "))
        .filter(|l| {
            ["plugins/prometheus/", "ngxprom.lua:", "ngxprom/log.lua:"]
                .iter()
                .any(|f| l.contains(f))
        })
        .collect();
    // A path LuaJIT cannot compile aborts each time it gets hot again, until LuaJIT
    // gives up on it; a path taken once per label set (making its series) may abort
    // once or twice. Persistent: the same place three times or more.
    let mut places: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for l in &ours {
        let place = l
            .split("trace abort at ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("");
        *places.entry(place).or_default() += 1;
    }
    let persistent: Vec<_> = places.iter().filter(|(_, n)| **n >= 3).collect();
    assert!(
        persistent.is_empty(),
        "persistent trace aborts in the plugin's code: {persistent:?}\n{ours:#?}"
    );
    // The hook itself works: LuaJIT aborts somewhere on any real request path (resty.core's
    // ngx.var returns to a lower frame).
    assert!(
        !aborts.is_empty(),
        "no trace events logged: the hook is not attached"
    );
    let (_, samples) = scrape(g.metrics, "/metrics");
    assert!(value(
        &samples,
        "gateway_http_requests_total",
        &[
            ("service", "svc"),
            ("route", "r"),
            ("code", "200"),
            ("source", "service"),
            ("consumer", "")
        ]
    )
    .is_some_and(|n| n >= 1500.0));
}

/// An upstream that answers every request with the request head it received, so a
/// test sees exactly what the gateway forwarded (headers, query, Host).
struct Echo {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let head = harness::read_request_head(&mut s);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            head.len()
                        );
                        let _ = s.write_all(reply.as_bytes());
                        let _ = s.write_all(&head);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Echo {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The header lines (lowercased names) of an echoed request head.
fn echoed_headers(head: &str) -> Vec<(String, String)> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

#[test]
fn hosts_match_as_nginx_host_means_them() {
    let echo = Echo::start();
    let g = start_gateway("routing-host-forms", &[]);
    service(&g, "echo", &echo.url());
    // The guarded route: host-bound, behind key-auth; the open one: same path, any host.
    let guarded = created(admin(
        g.admin,
        "POST",
        "/services/echo/routes",
        Some(
            json!({ "name": "guarded", "paths": ["/x"], "hosts": ["api.example.com"], "preserve_host": true }),
        ),
    ));
    created(admin(
        g.admin,
        "POST",
        &format!("/routes/{}/plugins", guarded["id"].as_str().unwrap()),
        Some(json!({ "name": "key-auth" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/echo/routes",
        Some(json!({ "name": "open", "paths": ["/x"] })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/consumers",
        Some(json!({ "username": "alice" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/consumers/alice/key-auth",
        Some(json!({ "key": "alice-key" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": { "status_code_metrics": true } })),
    ));
    settle(&g);
    // Every spelling of the host nginx's $host reduces to api.example.com.
    for host in [
        "api.example.com",
        "API.Example.COM",
        "api.example.com.",
        "api.example.com:",
        "api.example.com:8000",
        "api.example.com.:8000",
    ] {
        let r = request(g.proxy, "GET", "/x", &[("Host", host)], b"");
        assert_eq!(r.status, 401, "Host: {host} must reach the guarded route");
    }
    // An absolute request URI's host wins over the Host header (RFC 9112 3.2.2).
    let raw = exchange(
        g.proxy,
        b"GET http://api.example.com/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_response(&raw).status, 401);
    let raw = exchange(
        g.proxy,
        b"GET http://other.test/x HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        parse_response(&raw).status,
        200,
        "the URI's host is not guarded"
    );
    // Authenticated, preserve_host: the upstream gets the Host that was routed on.
    let raw = exchange(
        g.proxy,
        b"GET http://api.example.com/x HTTP/1.1\r\nHost: other.test\r\napikey: alice-key\r\nConnection: close\r\n\r\n",
    );
    let r = parse_response(&raw);
    assert_eq!(r.status, 200, "{}", r.text());
    let forwarded = echoed_headers(&r.text());
    assert!(
        forwarded.contains(&("host".into(), "api.example.com".into())),
        "{forwarded:?}"
    );
    let r = request(
        g.proxy,
        "GET",
        "/x",
        &[("Host", "API.example.com:8000"), ("apikey", "alice-key")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(
        echoed_headers(&r.text()).contains(&("host".into(), "API.example.com:8000".into())),
        "preserve_host keeps the client's own Host header: {}",
        r.text()
    );
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(
        requests(&s, "echo", "guarded", "401", "gateway", ""),
        Some(7.0)
    );
    assert_eq!(
        requests(&s, "echo", "guarded", "200", "service", ""),
        Some(2.0)
    );
    assert_eq!(
        requests(&s, "echo", "open", "200", "service", ""),
        Some(1.0)
    );
}

#[test]
fn hide_credentials_removes_every_spelling_of_the_key() {
    let echo = Echo::start();
    let g = start_gateway("key-auth-hide", &[]);
    service(&g, "echo", &echo.url());
    let r = route(&g, "echo", "r", &["/"]);
    created(admin(
        g.admin,
        "POST",
        &format!("/routes/{}/plugins", r["id"].as_str().unwrap()),
        Some(
            json!({ "name": "key-auth", "config": { "key_names": ["api_key", "apikey"], "hide_credentials": true } }),
        ),
    ));
    created(admin(
        g.admin,
        "POST",
        "/consumers",
        Some(json!({ "username": "alice" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/consumers/alice/key-auth",
        Some(json!({ "key": "alice-key" })),
    ));
    settle(&g);
    let leaks = |head: &str| -> Vec<String> {
        let lower = head.to_ascii_lowercase();
        ["alice-key", "api-key", "api_key", "apikey", "other-key"]
            .iter()
            .filter(|w| lower.contains(*w))
            .map(|w| w.to_string())
            .collect()
    };
    // `api_key` is read from the header `api-key`; the header goes in every case and
    // repetition, and so does the other key name's.
    let r = request(
        g.proxy,
        "GET",
        "/h?keep=1",
        &[
            ("api-key", "alice-key"),
            ("API-Key", "other-key"),
            ("ApiKey", "other-key"),
            ("X-Kept", "yes"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(leaks(&r.text()).is_empty(), "leaked: {}", r.text());
    assert!(
        r.text().starts_with("GET /h?keep=1 HTTP/1.1\r\n"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("X-Kept: yes"), "{}", r.text());
    // In the query: every occurrence and escaped spelling of every key name goes; the
    // other arguments stay byte for byte.
    let r = request(
        g.proxy,
        "GET",
        "/q?a=%41&apikey=other-key&api_key=alice-key&api%5Fkey=other-key&apikey=x&b=2",
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("GET /q?a=%41&b=2 HTTP/1.1\r\n"),
        "{}",
        r.text()
    );
    assert!(leaks(&r.text()).is_empty(), "leaked: {}", r.text());
    // Nothing left of the query: no dangling "?".
    let r = request(g.proxy, "GET", "/q?apikey=alice-key", &[], b"");
    assert!(r.text().starts_with("GET /q HTTP/1.1\r\n"), "{}", r.text());
    // Found in a header, also given in the query: both go.
    let r = request(
        g.proxy,
        "GET",
        "/q?api_key=alice-key",
        &[("api-key", "alice-key")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(leaks(&r.text()).is_empty(), "leaked: {}", r.text());
    assert_eq!(request(g.proxy, "GET", "/q", &[], b"").status, 401);
}

/// The gateway with two TLS-only upstreams in the same nginx: `good` has a
/// certificate from the CA the gateway trusts (for localhost and 127.0.0.1), `rogue`
/// one from a CA it does not know; each echoes what TLS and the request told it, and
/// `rogue` logs every request it gets.
fn tls_gateway(name: &str) -> (Gateway, u16, u16, std::path::PathBuf) {
    let p = prefix(name);
    let ca = Ca::new(&p);
    let rogue = Ca::new(&p.join("rogue"));
    let (good_port, rogue_port) = (free_port(), free_port());
    let (conf, [proxy, admin_port, metrics, upstream]) = render_gateway(&p, &[]);
    let bundle = "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;";
    assert!(conf.contains(bundle));
    let conf = conf.replace(
        bundle,
        &format!("proxy_ssl_trusted_certificate {};", ca.cert.display()),
    );
    let echo = "tls https=$https sni=$ssl_server_name host=$http_host auth=$http_authorization uri=$request_uri\\n";
    let servers = format!(
        "server {{\n listen 127.0.0.1:{good_port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};\n \
         location / {{ default_type text/plain; return 200 \"{echo}\"; }}\n}}\n\
         server {{\n listen 127.0.0.1:{rogue_port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};\n \
         access_log {}/logs/rogue.log;\n \
         location / {{ default_type text/plain; return 200 \"rogue {echo}\"; }}\n}}\n\
         # Metrics, on their own port",
        ca.server_cert.display(),
        ca.server_key.display(),
        rogue.server_cert.display(),
        rogue.server_key.display(),
        p.display(),
    );
    let conf = conf.replacen("# Metrics, on their own port", &servers, 1);
    let g = Gateway {
        nginx: Nginx::start_with(p.clone(), conf),
        proxy,
        admin: admin_port,
        metrics,
        upstream,
    };
    (g, good_port, rogue_port, p)
}

#[test]
fn https_services_are_proxied_over_verified_tls() {
    let (g, good, rogue, p) = tls_gateway("gateway-tls");
    let svc = |name: &str, url: String, extra: serde_json::Value| {
        let mut body = json!({ "name": name, "url": url });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        created(admin(g.admin, "POST", "/services", Some(body)));
        route(&g, name, name, &[&format!("/{name}")]);
    };
    svc("good", format!("https://localhost:{good}/in"), json!({}));
    svc("rogue", format!("https://localhost:{rogue}"), json!({}));
    svc(
        "rogue-trusted",
        format!("https://localhost:{rogue}"),
        json!({ "tls_verify": false }),
    );
    // nginx verifies DNS names only: an address with verification is refused.
    let r = admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "url": format!("https://127.0.0.1:{good}") })),
    );
    assert_eq!(r.0, 400, "{}", r.1);
    assert!(
        r.1["fields"]["host"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be verified")),
        "{}",
        r.1
    );
    svc(
        "good-ip",
        format!("https://127.0.0.1:{good}"),
        json!({ "tls_verify": false }),
    );
    svc(
        "plain",
        format!("http://127.0.0.1:{}", g.upstream),
        json!({}),
    );
    prometheus_everywhere(&g);
    settle(&g);

    // TLS, SNI and the certificate checked against the service's host.
    let r = request(
        g.proxy,
        "GET",
        "/good/x?q=1",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!(
            "tls https=on sni=localhost host=localhost:{good} auth=Bearer s3cret uri=/in/x?q=1\n"
        )
    );
    let r = post(g.proxy, "/good/body", b"payload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("https=on"), "{}", r.text());
    // An address as the host: TLS without SNI (RFC 6066).
    let r = request(g.proxy, "GET", "/good-ip", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("tls https=on sni= "), "{}", r.text());
    // An untrusted certificate: 502, and the upstream never sees the request.
    let r = request(
        g.proxy,
        "GET",
        "/rogue",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_json_error(
        "rogue",
        &r,
        502,
        "An invalid response was received from the upstream server",
    );
    let rogue_log = std::fs::read_to_string(p.join("logs/rogue.log")).unwrap_or_default();
    assert!(rogue_log.is_empty(), "the rogue upstream got: {rogue_log}");
    assert!(
        g.nginx
            .error_log()
            .contains("upstream SSL certificate verify error"),
        "{}",
        g.nginx.error_log()
    );
    // tls_verify false: still TLS, not verified.
    let r = request(g.proxy, "GET", "/rogue-trusted", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("rogue tls https=on sni=localhost "),
        "{}",
        r.text()
    );
    // Plain http services are unchanged.
    assert_eq!(
        get(g.proxy, "/plain").text(),
        "hello from the demo upstream\n"
    );

    let (_, s) = scrape(g.metrics, "/metrics");
    for (svc, code, source) in [
        ("good-ip", "200", "service"),
        ("rogue", "502", "gateway"),
        ("rogue-trusted", "200", "service"),
        ("plain", "200", "service"),
    ] {
        assert_eq!(
            requests(&s, svc, svc, code, source, ""),
            Some(1.0),
            "{svc} {code} {source}"
        );
    }
    assert_eq!(
        requests(&s, "good", "good", "200", "service", ""),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "gateway_upstream_latency_seconds_count",
            &[("service", "good"), ("route", "good")]
        ),
        Some(2.0)
    );
    assert!(value(
        &s,
        "gateway_bandwidth_bytes_total",
        &[
            ("service", "good"),
            ("route", "good"),
            ("direction", "egress"),
            ("consumer", "")
        ]
    )
    .is_some_and(|b| b > 0.0));
    assert!(
        g.nginx.errors().iter().all(|e| !e.contains("lua")),
        "{:?}",
        g.nginx.errors()
    );
}

#[test]
fn tls_fields_kong_has_and_the_gateway_cannot_honour_are_refused() {
    let g = start_gateway("gateway-tls-fields", &[]);
    let post = |body: serde_json::Value| admin(g.admin, "POST", "/services", Some(body));
    let refused = |r: (u16, serde_json::Value), field: &str, why: &str| {
        assert_eq!(r.0, 400, "{}", r.1);
        let msg = r.1["fields"][field]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(why), "{field}: {}", r.1);
    };
    refused(
        post(json!({ "url": "https://a.test", "tls_verify_depth": 2 })),
        "tls_verify_depth",
        "not supported",
    );
    refused(
        post(
            json!({ "url": "https://a.test", "ca_certificates": ["4e3ad2e4-0bc4-4638-8e34-c84a417ba39b"] }),
        ),
        "ca_certificates",
        "not supported",
    );
    refused(
        post(json!({ "url": "http://a.test", "tls_verify": true })),
        "tls_verify",
        "only for protocol 'https'",
    );
    refused(
        post(json!({ "url": "https://a.test", "tls_verify": "maybe" })),
        "tls_verify",
        "boolean",
    );
    let s = created(post(
        json!({ "name": "s", "url": "https://a.test", "tls_verify": false, "ca_certificates": [] }),
    ));
    assert_eq!(s["protocol"], "https");
    assert_eq!(s["port"], 443);
    assert_eq!(s["tls_verify"], false);
    // Changing the protocol leaves tls_verify meaningless: refused, not ignored.
    refused(
        admin(
            g.admin,
            "PATCH",
            "/services/s",
            Some(json!({ "protocol": "http" })),
        ),
        "tls_verify",
        "only for protocol 'https'",
    );
    ok(admin(
        g.admin,
        "PATCH",
        "/services/s",
        Some(json!({ "protocol": "http", "port": 80, "tls_verify": null })),
    ));
}

#[test]
fn ip_restriction_reads_ipv4_mapped_rules_as_ipv4() {
    // The proxy also on a dual-stack socket: IPv4 clients there are ::ffff:a.b.c.d.
    let p = prefix("iprestrict-mapped");
    let (conf, [proxy, admin_port, metrics, upstream]) = render_gateway(&p, &[]);
    let dual = free_port();
    let listen = format!("listen 127.0.0.1:{proxy};");
    assert!(conf.contains(&listen));
    let conf = conf.replacen(
        &listen,
        &format!("{listen}\n        listen [::ffff:127.0.0.1]:{dual} ipv6only=off;"),
        1,
    );
    let g = Gateway {
        nginx: Nginx::start_with(p, conf),
        proxy,
        admin: admin_port,
        metrics,
        upstream,
    };
    service(&g, "demo", &format!("http://127.0.0.1:{}", g.upstream));
    for (path, config) in [
        ("/deny-mapped", json!({ "deny": ["::ffff:127.0.0.2"] })),
        (
            "/deny-mapped-net",
            json!({ "deny": ["::ffff:127.0.0.0/120"] }),
        ),
        ("/allow-mapped", json!({ "allow": ["::ffff:127.0.0.3"] })),
        ("/deny-all-v6", json!({ "deny": ["::/0"] })),
        ("/deny-doc", json!({ "deny": ["2001:db8::/32"] })),
    ] {
        let r = route(&g, "demo", &path[1..], &[path]);
        created(admin(
            g.admin,
            "POST",
            &format!("/routes/{}/plugins", r["id"].as_str().unwrap()),
            Some(json!({ "name": "ip-restriction", "config": config })),
        ));
    }
    settle(&g);
    let status = |from: &str, port: u16, path: &str| {
        request_from(Some(from.parse().unwrap()), port, "GET", path, b"").status
    };
    for port in [g.proxy, dual] {
        let socket = if port == dual { "dual-stack" } else { "IPv4" };
        for (from, path, want) in [
            ("127.0.0.2", "/deny-mapped", 403),
            ("127.0.0.1", "/deny-mapped", 200),
            ("127.0.0.9", "/deny-mapped-net", 403),
            ("127.0.1.9", "/deny-mapped-net", 200),
            ("127.0.0.3", "/allow-mapped", 200),
            ("127.0.0.1", "/allow-mapped", 403),
            ("127.0.0.1", "/deny-all-v6", 403),
            ("127.0.0.1", "/deny-doc", 200),
        ] {
            assert_eq!(
                status(from, port, path),
                want,
                "{from} on the {socket} socket, {path}"
            );
        }
    }
}

/// The pids of the gateway's per-worker Lua VM series, sorted.
fn lua_vm_pids(g: &Gateway) -> Vec<u32> {
    let (_, s) = scrape(g.metrics, "/metrics");
    let mut pids: Vec<u32> = s
        .iter()
        .filter(|x| x.name == "gateway_memory_workers_lua_vms_bytes")
        .filter_map(|x| x.labels.get("pid").and_then(|p| p.parse().ok()))
        .collect();
    pids.sort();
    pids
}

/// Waits until the Lua VM series are exactly those of the running workers.
fn lua_vm_series_follow_workers(g: &Gateway, what: &str) {
    let mut last = (vec![], vec![]);
    let settled = eventually(Duration::from_secs(10), || {
        let mut workers = g.nginx.worker_pids();
        workers.sort();
        let series = lua_vm_pids(g);
        let same = !workers.is_empty() && series == workers;
        last = (workers, series);
        same.then_some(())
    });
    assert!(
        settled.is_some(),
        "{what}: workers {:?}, series {:?}",
        last.0,
        last.1
    );
}

#[test]
fn retired_workers_lose_their_series() {
    let g = start_gateway("gateway-worker-pids", &[]);
    prometheus_everywhere(&g);
    lua_vm_series_follow_workers(&g, "at start");
    for i in 0..3 {
        g.nginx.reload();
        lua_vm_series_follow_workers(&g, &format!("after reload {}", i + 1));
    }
    let victim = g.nginx.worker_pids()[0];
    g.nginx.kill_worker(victim);
    lua_vm_series_follow_workers(&g, "after a worker crash");
    // Fewer workers: the ids no longer started retire too.
    g.nginx.reload_with_one_worker();
    lua_vm_series_follow_workers(&g, "after a reload to 1 worker");
    assert_eq!(lua_vm_pids(&g).len(), 1);
}

#[test]
fn https_only_routes_are_not_served_over_cleartext() {
    let echo = Echo::start();
    let g = start_gateway("routing-protocols", &[]);
    service(&g, "echo", &echo.url());
    for (name, protocols) in [("secure", json!(["https"])), ("plain", json!(["http"]))] {
        created(admin(
            g.admin,
            "POST",
            "/services/echo/routes",
            Some(json!({ "name": name, "paths": [format!("/{name}")], "protocols": protocols })),
        ));
    }
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": { "status_code_metrics": true } })),
    ));
    settle(&g);
    let r = request(
        g.proxy,
        "GET",
        "/secure",
        &[("Authorization", "Bearer s3cret")],
        b"",
    );
    assert_eq!(r.status, 426, "{}", r.text());
    assert!(r.text().contains("Please use HTTPS protocol"));
    assert_eq!(r.header("upgrade"), Some("TLS/1.2, HTTP/1.1"));
    assert_eq!(request(g.proxy, "GET", "/plain", &[], b"").status, 200);
    let (_, s) = scrape(g.metrics, "/metrics");
    assert_eq!(
        requests(&s, "echo", "secure", "426", "gateway", ""),
        Some(1.0)
    );
    assert_eq!(
        requests(&s, "echo", "plain", "200", "service", ""),
        Some(1.0)
    );
}

/// Switching `naming` (or `namespace`) deletes the series of the naming no instance
/// uses any more, as a deleted route's: none stays frozen in the scrapes.
#[test]
fn switching_naming_deletes_the_old_namings_series() {
    let g = start_gateway("naming-switch", &[]);
    service(&g, "svc", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "svc", "r", &["/"]);
    let plugin = created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": all_switches() })),
    ));
    settle(&g);
    for _ in 0..3 {
        assert_eq!(get(g.proxy, "/").status, 200);
    }
    let (_, s) = scrape_unlinted(g.metrics, "/metrics");
    assert!(s.iter().any(|x| x.name == "gateway_http_requests_total"));
    let id = plugin["id"].as_str().unwrap();
    ok(admin(
        g.admin,
        "PATCH",
        &format!("/plugins/{id}"),
        Some(json!({ "config": { "naming": "kong" } })),
    ));
    settle(&g);
    assert_eq!(get(g.proxy, "/").status, 200);
    let gone = eventually(Duration::from_secs(5), || {
        let (_, s) = scrape_unlinted(g.metrics, "/metrics");
        let old: Vec<String> = s
            .iter()
            .filter(|x| x.name.starts_with("gateway_"))
            .map(|x| x.name.clone())
            .collect();
        let new = s.iter().any(|x| x.name == "kong_http_requests_total");
        (old.is_empty() && new).then_some(())
    });
    let (text, _) = scrape_unlinted(g.metrics, "/metrics");
    assert!(gone.is_some(), "old naming's series left:\n{text}");
    // And back: the kong naming's request series go in turn.
    ok(admin(
        g.admin,
        "PATCH",
        &format!("/plugins/{id}"),
        Some(json!({ "config": { "naming": "prometheus", "namespace": "edge" } })),
    ));
    let gone = eventually(Duration::from_secs(5), || {
        let (_, s) = scrape_unlinted(g.metrics, "/metrics");
        (!s.iter().any(|x| x.name.starts_with("kong_"))).then_some(())
    });
    let (text, _) = scrape_unlinted(g.metrics, "/metrics");
    assert!(gone.is_some(), "kong naming's series left:\n{text}");
    assert!(g.nginx.errors().is_empty(), "{:?}", g.nginx.errors());
}

/// A narrower `prometheus` instance whose switches are off where a wider one's are on
/// (Kong's docs' `per_consumer` example on a service) is stored, with a warning in the
/// response and in the log naming what it turns off; one that turns nothing off gets none.
#[test]
fn a_scoped_plugin_that_turns_off_recording_is_warned_about() {
    let g = start_gateway("shadow", &[]);
    service(&g, "svc", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "svc", "r", &["/"]);
    prometheus_everywhere(&g);
    let post = |path: &str, body: serde_json::Value| {
        request(
            g.admin,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let r = post(
        "/services/svc/plugins",
        json!({ "name": "prometheus", "config": { "per_consumer": true } }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let warning = r.header("warning").unwrap_or_else(|| panic!("no warning"));
    assert!(warning.starts_with("299 gateway \""), "{warning}");
    for f in [
        "status_code_metrics",
        "latency_metrics",
        "bandwidth_metrics",
        "upstream_health_metrics",
    ] {
        assert!(warning.contains(f), "{warning}");
    }
    assert!(!warning.contains("per_consumer"), "{warning}");
    let log = g.nginx.error_log();
    assert!(
        log.lines()
            .any(|l| l.contains("[warn]") && l.contains("turns off status_code_metrics")),
        "{log}"
    );
    // Turning the switches on again: nothing to say.
    let id = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = request(
        g.admin,
        "PATCH",
        &format!("/plugins/{id}"),
        &[("Content-Type", "application/json")],
        json!({ "config": all_switches() }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("warning"), None);
    // A route-scoped one with nothing on, under the service's: warned again.
    let r = post(
        "/routes/r/plugins",
        json!({ "name": "prometheus", "config": {} }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let w = r.header("warning").unwrap_or_default().to_string();
    assert!(w.contains("route "), "{w}");
}

/// The same trap in a configuration loaded without the Admin API (a declarative file,
/// at start and at reload): the log says it, as the Admin API would have.
#[test]
fn a_declarative_scoped_plugin_that_turns_off_recording_is_logged() {
    let dir = std::env::temp_dir().join(format!("ngxprom-shadow-decl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kong.json");
    let doc = json!({
        "_format_version": "3.0",
        "services": [{
            "name": "svc", "url": "http://127.0.0.1:9",
            "routes": [{ "name": "r", "paths": ["/"] }],
            "plugins": [{ "name": "prometheus", "config": { "per_consumer": true } }],
        }],
        "plugins": [{ "name": "prometheus", "config": all_switches() }],
    });
    std::fs::write(&file, doc.to_string()).unwrap();
    for (path, mode) in [(&dir, "755"), (&file, "644")] {
        std::process::Command::new("chmod")
            .arg(mode)
            .arg(path)
            .status()
            .unwrap();
    }
    let g = start_gateway(
        "shadow-declarative",
        &[("DECLARATIVE", file.display().to_string())],
    );
    g.nginx.reload();
    let log = g.nginx.error_log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[warn]") && l.contains("turns off"))
        .collect();
    assert!(
        said.iter().any(|l| l.contains("status_code_metrics")
            && l.contains("latency_metrics")
            && l.contains("(service ")
            && l.contains("(global)")),
        "{log}"
    );
    // Said once per load (the start, the reload), not once per side of the pair.
    assert_eq!(said.len(), 2, "{said:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Admin API's `/metrics` is the metrics port's handler: the same formats
/// (JSON, OpenMetrics by `Accept`), filters (`?name=`, `?group=`) and gzip.
#[test]
fn the_admin_apis_metrics_honours_the_metrics_ports_formats_and_filters() {
    let g = start_gateway("admin-metrics", &[]);
    service(&g, "svc", &format!("http://127.0.0.1:{}", g.upstream));
    route(&g, "svc", "r", &["/"]);
    prometheus_everywhere(&g);
    settle(&g);
    for _ in 0..2 {
        assert_eq!(get(g.proxy, "/").status, 200);
    }
    for port in [g.metrics, g.admin] {
        let json = get(port, "/metrics?format=json");
        assert_eq!(json.status, 200, "{port}: {}", json.text());
        let v: serde_json::Value = serde_json::from_slice(&json.body)
            .unwrap_or_else(|e| panic!("{port}: not JSON ({e}): {}", json.text()));
        assert!(v["families"].is_array(), "{v}");
        let om = request(
            port,
            "GET",
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
            b"",
        );
        assert!(
            om.header("content-type")
                .unwrap()
                .starts_with("application/openmetrics-text"),
            "{port}"
        );
        assert!(om.text().ends_with("# EOF\n"), "{port}");
        let gz = request(port, "GET", "/metrics", &[("Accept-Encoding", "gzip")], b"");
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{port}");
        let (text, samples) = scrape(port, "/metrics?name=gateway_http_requests_total");
        assert!(!samples.is_empty(), "{port}: {text}");
        assert!(
            samples
                .iter()
                .all(|s| s.name == "gateway_http_requests_total"),
            "{port}: {text}"
        );
        assert_eq!(get(port, "/metrics?name=nope_total").status, 404, "{port}");
    }
    assert!(get(g.admin, "/metrics")
        .header("x-gateway-worker")
        .is_some());
}

/// An answer the gateway made itself: `status` with Kong's JSON body,
/// `{"message": message}`, never nginx's HTML page.
fn assert_json_error(what: &str, r: &Response, status: u16, message: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8"),
        "{what}: {}",
        r.text()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", r.text()));
    assert_eq!(v, json!({ "message": message }), "{what}");
}

/// Sends `bytes` and half-closes (nginx refuses these before reading any body), and
/// reads the answer up to its Content-Length: nginx may linger on the connection after
/// it, for a body it was announced.
fn refused(port: u16, bytes: &[u8]) -> Response {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(&raw[..end + 4]);
            let len: usize = head
                .header("content-length")
                .map_or(usize::MAX, |n| n.parse().unwrap());
            if raw.len() >= end + 4 + len {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse_response(&raw)
}

/// Requests nginx refuses before any handler of ours runs, with the status and message
/// the gateway answers each with. They carry bytes that would break JSON or HTML
/// (`"`, `<`, `\`, a control byte): none comes back.
fn refused_by_nginx() -> Vec<(&'static str, Vec<u8>, u16, &'static str)> {
    let big = "\"<x>\\".repeat(3000); // over large_client_header_buffers' 8k
    vec![
        (
            "a control byte in the method",
            b"G\x01T /\"<x> HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            400,
            "Bad request",
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /\"<x> HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "Bad request",
        ),
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
            "Bad request",
        ),
        (
            "a header too large",
            format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").into_bytes(),
            400,
            "Request header or cookie too large",
        ),
        (
            "a URI too long",
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "%22%3C".repeat(2000)).into_bytes(),
            414,
            "URI too long",
        ),
        (
            "a body too large",
            b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n".to_vec(),
            413,
            "Request body too large",
        ),
        (
            "an unknown Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"<x>\r\n\r\n".to_vec(),
            501,
            "Transfer-Encoding not implemented",
        ),
        (
            "HTTP/2.0 in the request line",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(),
            505,
            "HTTP version not supported",
        ),
        (
            "TRACE",
            b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            405,
            "Method not allowed",
        ),
    ]
}

/// Error-log entries (a Lua traceback's lines joined to theirs) that mention Lua or an
/// uninitialized variable, or are alerts, but for those naming one of `expected`.
fn lua_lines(g: &Gateway, expected: &[&str]) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in g.nginx.error_log().lines() {
        match entries.last_mut() {
            Some(last) if !line.starts_with("20") => {
                last.push('\n');
                last.push_str(line);
            }
            _ => entries.push(line.to_string()),
        }
    }
    entries
        .into_iter()
        .filter(|l| {
            (l.contains("lua") || l.contains("uninitialized") || l.contains("[alert]"))
                && !expected.iter().any(|e| l.contains(e))
        })
        .collect()
}

/// Every error nginx answers itself, on the proxy, the Admin API and the metrics port,
/// is Kong's JSON body (no HTML page, nothing the client sent echoed), with the status
/// nginx gives it (a header too large: 400, as nginx answers it).
#[test]
fn what_nginx_refuses_itself_is_json_on_every_port() {
    let g = start_gateway("refused-json", &[]);
    for (port, name) in [
        (g.proxy, "proxy"),
        (g.admin, "admin"),
        (g.metrics, "metrics"),
    ] {
        for (what, bytes, status, message) in refused_by_nginx() {
            // The Admin API has its own 413 and 405 (t/admin.rs).
            if name == "admin" && (status == 413 || status == 405) {
                continue;
            }
            let r = refused(port, &bytes);
            assert_json_error(&format!("{name}: {what}"), &r, status, message);
            let allow = (name == "metrics" && status == 405).then_some("GET, HEAD");
            assert_eq!(r.header("allow"), allow, "{name}: {what}");
        }
    }
    // The metrics port's own pages: an unknown path, a method its handlers refuse.
    assert_json_error("metrics: /nope", &get(g.metrics, "/nope"), 404, "Not found");
    let r = post(g.metrics, "/metrics", b"");
    assert_json_error("metrics: POST /metrics", &r, 405, "Method not allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = request(g.metrics, "HEAD", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty(), "{}", r.text());
    // The error location cannot be asked for: its path is no request's.
    let r = get(g.metrics, "/gateway/./error");
    assert_json_error("metrics: /gateway/./error", &r, 404, "Not found");
    assert!(lua_lines(&g, &[]).is_empty(), "{:?}", lua_lines(&g, &[]));
    assert!(g.nginx.crashes().is_empty());
}

/// What the proxy answers itself when the upstream fails, the balancer refuses or a
/// Lua error ends a request is JSON too, and recorded as the routed request's: an
/// upstream refusing connections (502), timing out (504), a pool whose only target
/// fails (the balancer's retry finds no peer: 503, nginx's 500 before), a target
/// named by a host name the gateway cannot resolve (503), and a Lua error in the
/// access phase (500: no request can raise one in the shipped code, so the test's
/// configuration replaces ip-restriction's access function with one that raises).
#[test]
fn upstream_failures_and_lua_errors_are_json_and_recorded() {
    let prefix = prefix("proxy-errors-json");
    let (conf, [proxy, admin_port, metrics, upstream]) = render_gateway(&prefix, &[]);
    let hook = r#"require("gateway").init_worker()
        require("gateway.plugins.ip-restriction.handler").access = function()
            error("injected fault")
        end"#;
    assert!(conf.contains(r#"require("gateway").init_worker()"#));
    let conf = conf.replace(r#"require("gateway").init_worker()"#, hook);
    let g = Gateway {
        nginx: Nginx::start_with(prefix, conf),
        proxy,
        admin: admin_port,
        metrics,
        upstream,
    };
    let dead = free_port();
    for (name, url, extra) in [
        ("dead", format!("http://127.0.0.1:{dead}"), json!({})),
        (
            "slow",
            format!("http://127.0.0.1:{}/slow", g.upstream),
            json!({ "read_timeout": 10 }),
        ),
        (
            "boom",
            format!("http://127.0.0.1:{}", g.upstream),
            json!({}),
        ),
    ] {
        let mut body = json!({ "name": name, "url": url, "retries": 0 });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        created(admin(g.admin, "POST", "/services", Some(body)));
        route(&g, name, name, &[&format!("/{name}")]);
    }
    created(admin(
        g.admin,
        "POST",
        "/routes/boom/plugins",
        Some(json!({ "name": "ip-restriction", "config": { "allow": ["127.0.0.1"] } })),
    ));
    // A pool whose one target refuses: the first failure makes it unhealthy, and the
    // retry finds no peer.
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(
            json!({ "name": "one", "healthchecks": { "passive": { "unhealthy": { "failures": 1 },
                     "readmit_after": 600 } } }),
        ),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/one/targets",
        Some(json!({ "target": format!("127.0.0.1:{}", free_port()) })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "nopeer", "host": "one", "retries": 1 })),
    ));
    route(&g, "nopeer", "nopeer", &["/nopeer"]);
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "named" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/named/targets",
        Some(json!({ "target": "nowhere.invalid:80" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "named", "host": "named", "retries": 0 })),
    ));
    route(&g, "named", "named", &["/named"]);
    prometheus_everywhere(&g);
    settle(&g);

    let r = get(g.proxy, "/dead");
    assert_json_error(
        "dead",
        &r,
        502,
        "An invalid response was received from the upstream server",
    );
    let r = get(g.proxy, "/slow");
    assert_json_error("slow", &r, 504, "The upstream server is timing out");
    let r = get(g.proxy, "/boom");
    assert_json_error("boom", &r, 500, "An unexpected error occurred");
    let r = get(g.proxy, "/nopeer");
    assert_json_error(
        "nopeer",
        &r,
        503,
        "failure to get a peer from the ring-balancer",
    );
    // A target whose name does not resolve (.invalid never does): Kong's answer.
    let r = get(g.proxy, "/named");
    assert_json_error("named", &r, 503, "name resolution failed");
    // HEAD: the same status, no body.
    let r = request(g.proxy, "HEAD", "/dead", &[], b"");
    assert_eq!(r.status, 502);
    assert!(r.body.is_empty(), "{}", r.text());
    // A request nginx refuses, with the prometheus plugin on: counted, without labels.
    let r = refused(g.proxy, b"GET / HTTP/1.1\r\n\r\n");
    assert_json_error("no Host", &r, 400, "Bad request");

    // refused() stops reading at the answer's end, and nginx runs the log phase after
    // sending it: the 400 is counted a moment later, possibly while another worker
    // answers the scrape.
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(g.metrics, "/metrics");
        requests(&s, "", "", "400", "gateway", "").map(|_| s)
    })
    .expect("the refused request is counted");
    for (name, code) in [
        ("dead", "502"),
        ("slow", "504"),
        ("boom", "500"),
        ("nopeer", "503"),
        ("named", "503"),
    ] {
        let want = if name == "dead" { 2.0 } else { 1.0 };
        assert_eq!(
            requests(&s, name, name, code, "gateway", ""),
            Some(want),
            "{name}"
        );
    }
    assert_eq!(requests(&s, "", "", "400", "gateway", ""), Some(1.0));
    // The only Lua lines: the injected error, and the balancer saying why it refused.
    let unexpected = lua_lines(
        &g,
        &[
            "injected fault",
            "gateway: upstream one: failure to get a peer",
            "gateway: upstream named: name resolution failed",
            "is unhealthy after 1 failures in a row",
        ],
    );
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(g.nginx.crashes().is_empty());
}

/// An upstream's own error responses reach the client as the upstream sent them (status
/// line, headers, HTML body): the error pages are only for what nginx answers itself
/// (proxy_intercept_errors stays off).
#[test]
fn an_upstreams_own_errors_pass_through_as_sent() {
    let g = start_gateway("upstream-errors-pass", &[]);
    let port = free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    // Answers "/<code>" with that status, its own reason phrase, headers and HTML.
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let head = harness::read_request_head(&mut conn);
            let line = String::from_utf8_lossy(&head).to_string();
            let code: String = line
                .split(' ')
                .nth(1)
                .unwrap_or("/500")
                .trim_start_matches('/')
                .to_string();
            let _ = conn.write_all(&upstream_error(&code));
        }
    });
    service(&g, "own", &format!("http://127.0.0.1:{port}"));
    route(&g, "own", "own", &["/"]);
    prometheus_everywhere(&g);
    settle(&g);
    let codes = ["400", "404", "405", "413", "500", "502", "503", "504"];
    for code in codes {
        let raw = exchange(
            g.proxy,
            format!("GET /{code} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&raw);
        let sent = upstream_error(code);
        let sent_text = String::from_utf8_lossy(&sent);
        let (sent_head, sent_body) = sent_text.split_once("\r\n\r\n").unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, sent_body, "{code}");
        assert!(
            head.starts_with(&format!("HTTP/1.1 {code} Upstream Says\r\n")),
            "{code}: {head}"
        );
        for line in sent_head.lines().skip(1) {
            if !line.starts_with("Connection") {
                assert!(head.contains(line), "{code}: {line} missing from {head}");
            }
        }
    }
    let (_, s) = scrape(g.metrics, "/metrics");
    for code in codes {
        assert_eq!(
            requests(&s, "own", "own", code, "service", ""),
            Some(1.0),
            "{code}"
        );
    }
}

/// The error response the test upstream sends for `code`.
fn upstream_error(code: &str) -> Vec<u8> {
    let body = format!("<html><body>the upstream's own {code} \"&lt;\"</body></html>\n");
    format!(
        "HTTP/1.1 {code} Upstream Says\r\nContent-Type: text/html\r\nX-Upstream: own\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The metrics port over https (run.sh's TLS_CERT/TLS_KEY): a plain HTTP request there
/// gets the JSON answer too (nginx's 497, sent as 400), not nginx's HTML page.
#[test]
fn plain_http_to_the_https_metrics_port_is_json() {
    let dir = std::env::temp_dir().join(format!("ngxprom-497-{}", std::process::id()));
    let ca = Ca::new(&dir);
    let g = start_gateway(
        "metrics-497",
        &[
            ("METRICS_SSL", " ssl".into()),
            (
                "METRICS_SERVER",
                format!(
                    "ssl_certificate {}; ssl_certificate_key {};",
                    ca.server_cert.display(),
                    ca.server_key.display()
                ),
            ),
        ],
    );
    let r = refused(g.metrics, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_json_error(
        "plain HTTP to https",
        &r,
        400,
        "A plain HTTP request was sent to an HTTPS port",
    );
    assert!(lua_lines(&g, &[]).is_empty(), "{:?}", lua_lines(&g, &[]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real Prometheus 2.42 with native histograms scrapes the gateway's metrics port
/// over protobuf: its three latency families are read as native histograms, so
/// `histogram_count` and `histogram_quantile` answer on their bare names.
#[test]
fn prometheus_reads_the_latency_families_as_native_histograms() {
    let g = start_gateway("native-latency", &[]);
    let upstream = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "example-service", &upstream);
    route(&g, "example-service", "example-route", &["/example"]);
    prometheus_everywhere(&g);
    settle(&g);
    for path in ["/example/", "/example/", "/example/", "/example/slow"] {
        assert_eq!(get(g.proxy, path).status, 200);
    }
    let metrics = g.metrics;
    let prom = Prometheus::start_with_flags(&["--enable-feature=native-histograms"], |_| {
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             \x20 - job_name: gateway\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        )
    });
    let sel = "{service=\"example-service\",route=\"example-route\"}";
    for family in [
        "gateway_request_latency_seconds",
        "gateway_upstream_latency_seconds",
        "gateway_latency_seconds",
    ] {
        let count = eventually(Duration::from_secs(60), || {
            prom.query(&format!("histogram_count({family}{sel})"))
                .filter(|c| *c == 4.0)
        });
        assert_eq!(count, Some(4.0), "{family}: {:?}", prom.warnings());
        let median = prom
            .query(&format!("histogram_quantile(0.5, {family}{sel})"))
            .unwrap_or_else(|| panic!("{family}: no median"));
        let top = prom
            .query(&format!("histogram_quantile(1, {family}{sel})"))
            .unwrap_or_else(|| panic!("{family}: no maximum"));
        assert!(
            median.is_finite() && median >= 0.0 && median <= top,
            "{family}: {median} {top}"
        );
        // Read as native, 2.42 keeps no classic bucket series of it.
        assert_eq!(prom.query(&format!("count({family}_bucket)")), None);
    }
    // The slow route's 50 ms is in the request latency's top quarter.
    let top = prom
        .query(&format!(
            "histogram_quantile(1, gateway_request_latency_seconds{sel})"
        ))
        .unwrap();
    assert!(top >= 0.045, "{top}");
    assert!(prom.warnings().is_empty(), "{:?}", prom.warnings());
    assert!(g.nginx.errors().is_empty(), "{:?}", g.nginx.errors());
}

/// The trace ids of the exemplars on the OpenMetrics lines of `text` that start with
/// `prefix` (a sample name and the start of its labels), in order.
fn exemplar_ids(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let at = l.find(" # {trace_id=\"")? + " # {trace_id=\"".len();
            let end = at + l[at..].find('"')?;
            Some(l[at..end].to_string())
        })
        .collect()
}

fn openmetrics(port: u16) -> String {
    let r = request(
        port,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn patch_plugin(g: &Gateway, id: &str, config: serde_json::Value) {
    let r = request(
        g.admin,
        "PATCH",
        &format!("/plugins/{id}"),
        &[("Content-Type", "application/json")],
        json!({ "config": config }).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    settle(g);
}

/// A raw HTTP/1.1 request to the proxy with header `traceparent` (any bytes); its status.
fn traced(port: u16, path: &str, traceparent: &[u8]) -> u16 {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n").into_bytes();
    for line in traceparent.split(|&b| b == b'\n') {
        raw.extend_from_slice(b"traceparent: ");
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    // Not `refused`: a half-closed connection is a client gone (499) to the proxy.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&raw).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    parse_response(&answer).status
}

fn is_request_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The plugin's `exemplars` field: off, no exemplar; switched on, the request count and
/// latency buckets carry the trace id of a valid `traceparent`, else `$request_id`, on
/// series made from then on (one made while it was off keeps counting, without); a
/// hostile `traceparent` is never an id and is counted; switched off, exemplars are no
/// longer shown and counts go on; on again, they are, and across a reload.
#[test]
fn the_plugins_exemplars_field_links_requests_to_their_trace_ids() {
    let g = start_gateway("exemplars", &[]);
    let upstream = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "svc", &upstream);
    route(&g, "svc", "old", &["/old"]);
    let plugin = created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": all_switches() })),
    ));
    let id = plugin["id"].as_str().unwrap().to_string();
    assert_eq!(plugin["config"]["exemplars"], json!(false));
    settle(&g);
    assert_eq!(get(g.proxy, "/old/").status, 200);
    let tp = |n: u32| format!("00-{n:032x}-00f067aa0ba902b7-01");
    let trace = |n: u32| format!("{n:032x}");
    assert_eq!(traced(g.proxy, "/old/", tp(1).as_bytes()), 200);
    let om = openmetrics(g.metrics);
    assert!(!om.contains("trace_id"), "{om}");

    let mut on = all_switches();
    on["exemplars"] = json!(true);
    patch_plugin(&g, &id, on.clone());
    route(&g, "svc", "new", &["/new"]);
    settle(&g);
    assert_eq!(traced(g.proxy, "/old/", tp(2).as_bytes()), 200);
    assert_eq!(traced(g.proxy, "/new/", tp(3).as_bytes()), 200);
    let new_total =
        "gateway_http_requests_total{service=\"svc\",route=\"new\",code=\"200\",source=\"service\",consumer=\"\"}";
    let old_total =
        "gateway_http_requests_total{service=\"svc\",route=\"old\",code=\"200\",source=\"service\",consumer=\"\"}";
    let om = openmetrics(g.metrics);
    assert_eq!(exemplar_ids(&om, new_total), vec![trace(3)], "{om}");
    for family in [
        "gateway_request_latency_seconds",
        "gateway_upstream_latency_seconds",
        "gateway_latency_seconds",
    ] {
        let on_buckets = exemplar_ids(
            &om,
            &format!("{family}_bucket{{service=\"svc\",route=\"new\","),
        );
        assert_eq!(on_buckets, vec![trace(3)], "{family}: {om}");
    }
    // The series made while it was off keeps counting, without exemplars.
    assert!(om.contains(&format!("{old_total} 3")), "{om}");
    assert_eq!(exemplar_ids(&om, old_total), Vec::<String>::new());
    assert!(exemplar_ids(
        &om,
        "gateway_request_latency_seconds_bucket{service=\"svc\",route=\"old\","
    )
    .is_empty());
    // Never on the byte counts.
    assert!(
        exemplar_ids(&om, "gateway_bandwidth_bytes_total").is_empty(),
        "{om}"
    );

    // Without traceparent: `$request_id`, not counted.
    let (_, before) = scrape(g.metrics, "/metrics");
    let invalid_before = zone_errors(&before, "invalid_exemplar");
    assert_eq!(get(g.proxy, "/new/").status, 200);
    let last = exemplar_ids(&openmetrics(g.metrics), new_total);
    assert!(
        last.len() == 1 && is_request_id(&last[0]) && last[0] != trace(3),
        "{last:?}"
    );
    // Hostile ones: never an id (`$request_id` instead), each counted.
    let upper = format!(
        "00-{}-00F067AA0BA902B7-01",
        "4BF92F3577B34DA6A3CE929D0E0E4736"
    );
    let long = format!("{}-{}", tp(4), "a".repeat(600));
    let mut hostile: Vec<Vec<u8>> = vec![
        upper.clone().into_bytes(),
        format!(
            "00-{}-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e473g"
        )
        .into_bytes(),
        format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)).into_bytes(),
        format!("01-{}-00f067aa0ba902b7-01x", trace(5)).into_bytes(),
        [tp(6).as_bytes(), b" trailing"].concat(),
        long.clone().into_bytes(),
        format!(
            "00-{}-00f067aa0ba902b7-01",
            "4bf92f3577b34da6\x01\x7f3ce929d0e0e47"
        )
        .into_bytes(),
        b"00-4bf92f3577b34da6\xff\xfe3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
        // Two headers.
        format!("{}\n{}", tp(7), tp(8)).into_bytes(),
    ];
    hostile.push(format!("00-{}-00f067aa0ba902b7-01\"", trace(9)).into_bytes());
    for h in &hostile {
        assert_eq!(
            traced(g.proxy, "/new/", h),
            200,
            "{}",
            String::from_utf8_lossy(h)
        );
        let om = openmetrics(g.metrics);
        let last = exemplar_ids(&om, new_total);
        assert!(
            last.len() == 1 && is_request_id(&last[0]),
            "{}: {last:?}",
            String::from_utf8_lossy(h)
        );
        for n in [4, 5, 6, 7, 8, 9] {
            assert_ne!(last[0], trace(n));
        }
        assert!(!om.contains("4bf92f3577b34da6"), "{om}");
        assert!(!om.contains("4BF92F"), "{om}");
    }
    let (_, after) = scrape(g.metrics, "/metrics");
    assert_eq!(
        zone_errors(&after, "invalid_exemplar") - invalid_before,
        hostile.len() as f64
    );

    // Off: no exemplar shown, counts go on.
    patch_plugin(&g, &id, json!({ "exemplars": false }));
    assert_eq!(traced(g.proxy, "/new/", tp(10).as_bytes()), 200);
    let om = openmetrics(g.metrics);
    assert!(!om.contains("trace_id"), "{om}");
    let total = 2 + hostile.len() + 1;
    assert!(om.contains(&format!("{new_total} {total}")), "{om}");
    // On again: the kept ones are shown, new ones recorded.
    patch_plugin(&g, &id, on);
    assert_eq!(traced(g.proxy, "/new/", tp(11).as_bytes()), 200);
    let om = openmetrics(g.metrics);
    assert_eq!(exemplar_ids(&om, new_total), vec![trace(11)], "{om}");
    assert!(om.contains(&format!("{new_total} {}", total + 1)), "{om}");
    // A reload keeps the zone: counts and exemplars go on in the new workers.
    g.nginx.reload();
    settle(&g);
    assert_eq!(traced(g.proxy, "/new/", tp(12).as_bytes()), 200);
    let om = openmetrics(g.metrics);
    assert_eq!(exemplar_ids(&om, new_total), vec![trace(12)], "{om}");
    assert!(om.contains(&format!("{new_total} {}", total + 2)), "{om}");
    assert!(om.contains(&format!("{old_total} 3")), "{om}");
    assert!(lua_lines(&g, &[]).is_empty(), "{:?}", lua_lines(&g, &[]));
    assert!(g.nginx.errors().is_empty(), "{:?}", g.nginx.errors());
}

/// A real Prometheus 2.42 with native histograms and exemplar storage scrapes the
/// gateway over protobuf: `/api/v1/query_exemplars` returns the trace ids of the
/// requests' `traceparent` headers for the request count and the latency families.
#[test]
fn prometheus_stores_the_gateways_exemplars() {
    let g = start_gateway("exemplars-prometheus", &[]);
    let upstream = format!("http://127.0.0.1:{}", g.upstream);
    service(&g, "svc", &upstream);
    route(&g, "svc", "r", &["/r"]);
    let mut config = all_switches();
    config["exemplars"] = json!(true);
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": config })),
    ));
    settle(&g);
    let first = "0af7651916cd43dd8448eb211c80319c";
    assert_eq!(
        traced(
            g.proxy,
            "/r/",
            format!("00-{first}-b7ad6b7169203331-01").as_bytes()
        ),
        200
    );
    let metrics = g.metrics;
    let prom = Prometheus::start_with_flags(
        &["--enable-feature=native-histograms,exemplar-storage"],
        |_| {
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
                 \x20 - job_name: gateway\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
            )
        },
    );
    let ids = |query: &str| -> Option<Vec<String>> {
        let v = prom.api(&format!(
            "/api/v1/query_exemplars?query={}&start=0&end=4102444800",
            urlencode(query)
        ))?;
        Some(
            v["data"]
                .as_array()?
                .iter()
                .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_string))
                .collect(),
        )
    };
    let has = |query: &str, id: &str| {
        eventually(Duration::from_secs(60), || {
            ids(query).filter(|v| v.iter().any(|i| i == id)).map(|_| ())
        })
        .is_some()
    };
    for family in [
        "gateway_http_requests_total",
        "gateway_request_latency_seconds",
        "gateway_upstream_latency_seconds",
        "gateway_latency_seconds",
    ] {
        assert!(
            has(family, first),
            "{family}: {:?} {:?}",
            ids(family),
            prom.warnings()
        );
    }
    // Read as native histograms, as without exemplars.
    assert_eq!(
        prom.query("histogram_count(gateway_request_latency_seconds{route=\"r\"})"),
        Some(1.0)
    );
    // A later request's trace id reaches it too.
    let second = "4bf92f3577b34da6a3ce929d0e0e4736";
    assert_eq!(
        traced(
            g.proxy,
            "/r/",
            format!("00-{second}-00f067aa0ba902b7-01").as_bytes()
        ),
        200
    );
    assert!(has("gateway_http_requests_total", second));
    assert!(has("gateway_request_latency_seconds", second));
    assert!(prom.warnings().is_empty(), "{:?}", prom.warnings());
    assert!(g.nginx.errors().is_empty(), "{:?}", g.nginx.errors());
}
