//! Host names of services and upstream targets, resolved by the gateway (gateway.dns)
//! through a DNS server the test runs itself on a loopback address
//! (t/fixtures/dns_server.py, dnslib), answering the names the test chooses.

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The test's DNS server: answers from a zone the test rewrites, logs every query.
struct Dns {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Dns {
    fn start(name: &str, zone: Value) -> Dns {
        let dir = std::env::temp_dir().join(format!("ngxprom-dns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dns = |port: u16, child: Child| Dns {
            child,
            dir: dir.clone(),
            port,
        };
        std::fs::write(dir.join("zone.json"), zone.to_string()).unwrap();
        let child = Command::new("python3")
            .arg(root().join("t/fixtures/dns_server.py"))
            .arg(dir.join("zone.json"))
            .arg(dir.join("queries.log"))
            .arg(dir.join("port"))
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 t/fixtures/dns_server.py starts (Debian: python3-dnslib)");
        let port = wait_for(
            Duration::from_secs(20),
            || {
                std::fs::read_to_string(dir.join("port"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            },
            || format!("{name}: the DNS server wrote no port"),
        );
        dns(port, child)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn set(&self, zone: Value) {
        let tmp = self.dir.join("zone.json.tmp");
        std::fs::write(&tmp, zone.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.join("zone.json")).unwrap();
    }

    /// Queries for `name` so far (of any type).
    fn queries(&self, name: &str) -> usize {
        std::fs::read_to_string(self.dir.join("queries.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').next() == Some(name))
            .count()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// HTTP servers on one port of several loopback addresses, each answering with its own
/// address (so a response says which peer the gateway chose).
fn peers(addresses: &[&str]) -> u16 {
    for _ in 0..50 {
        let port = free_port();
        let bound: Vec<TcpListener> = addresses
            .iter()
            .filter_map(|a| {
                let ip: IpAddr = a.parse().unwrap();
                TcpListener::bind(SocketAddr::new(ip, port)).ok()
            })
            .collect();
        if bound.len() < addresses.len() {
            continue;
        }
        for listener in bound {
            let me = listener.local_addr().unwrap().ip().to_string();
            std::thread::spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let me = me.clone();
                    std::thread::spawn(move || {
                        if !harness::head_is_whole(&harness::read_request_head(&mut conn)) {
                            return;
                        }
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{me}",
                            me.len()
                        );
                    });
                }
            });
        }
        return port;
    }
    panic!("no port free on all of {addresses:?}");
}

fn gateway(name: &str, dns: &Dns, extra: &[(&str, String)]) -> Gateway {
    let mut vars = vec![("DNS_RESOLVER", dns.address())];
    vars.extend(extra.iter().cloned());
    start_gateway(name, &vars)
}

fn service(g: &Gateway, name: &str, body: Value) {
    let mut body = body;
    body["name"] = json!(name);
    created(admin(g.admin, "POST", "/services", Some(body)));
    created(admin(
        g.admin,
        "POST",
        &format!("/services/{name}/routes"),
        Some(json!({ "name": name, "paths": [format!("/{name}")] })),
    ));
}

fn prometheus(g: &Gateway) {
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": {
            "status_code_metrics": true, "upstream_health_metrics": true } })),
    ));
}

/// Which peer answered `path` (its address), or the status and body when it failed.
fn peer_of(g: &Gateway, path: &str) -> String {
    let r = get(g.proxy, path);
    if r.status == 200 {
        r.text()
    } else {
        format!("{} {}", r.status, r.text())
    }
}

/// Waits until `n` requests in a row to `path` are answered by `want`.
fn until_answered_by(g: &Gateway, path: &str, want: &str) {
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(30), || {
        for _ in 0..6 {
            last = peer_of(g, path);
            if last != want {
                return None;
            }
        }
        Some(())
    });
    assert!(
        ok.is_some(),
        "{path}: never answered by {want} only (last: {last})"
    );
}

fn health(g: &Gateway, upstream: &str, target: &str, address: &str, state: &str) -> Option<f64> {
    let (_, s) = scrape(g.metrics, "/metrics");
    value(
        &s,
        "gateway_upstream_target_health",
        &[
            ("upstream", upstream),
            ("target", target),
            ("address", address),
            ("state", state),
        ],
    )
}

fn assert_name_resolution_failed(r: &Response, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8"),
        "{what}"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).ok(),
        Some(json!({ "message": "name resolution failed" })),
        "{what}: {}",
        r.text()
    );
}

/// No Lua error, no crash: what the gateway logs about names is its own lines.
fn assert_no_lua_errors(g: &Gateway) {
    let log = g.nginx.error_log();
    for bad in [
        "runtime error",
        "stack traceback",
        "attempt to",
        "lua entry thread aborted",
    ] {
        assert!(!log.contains(bad), "{bad} in the error log:\n{log}");
    }
    assert!(g.nginx.crashes().is_empty());
}

/// A service and an upstream's target named by host names reach every address the
/// resolver gives (A records, and AAAA for a name without A), and a changed answer
/// moves the traffic once its TTL is over.
#[test]
fn names_resolve_to_every_address_and_a_changed_answer_moves_traffic() {
    let zone = |svc: &str, pool: &[&str]| {
        json!({ "records": {
            "svc.test": { "A": [svc], "ttl": 1 },
            "pool.test": { "A": pool, "ttl": 1 },
            "six.test": { "AAAA": ["::1"], "ttl": 1 },
            // 127.0.0.5 refuses: a retry takes the name's next address.
            "two.test": { "A": ["127.0.0.2", "127.0.0.5"], "ttl": 3600 },
        } })
    };
    let dns = Dns::start("moves", zone("127.0.0.2", &["127.0.0.2", "127.0.0.3"]));
    let port = peers(&["127.0.0.2", "127.0.0.3", "::1"]);
    let g = gateway("dns-moves", &dns, &[]);
    prometheus(&g);
    service(
        &g,
        "svc",
        json!({ "url": format!("http://svc.test:{port}") }),
    );
    service(
        &g,
        "six",
        json!({ "url": format!("http://six.test:{port}") }),
    );
    service(
        &g,
        "two",
        json!({ "url": format!("http://two.test:{port}") }),
    );
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "pool" })),
    ));
    let target = format!("pool.test:{port}");
    created(admin(
        g.admin,
        "POST",
        "/upstreams/pool/targets",
        Some(json!({ "target": target })),
    ));
    service(&g, "pooled", json!({ "host": "pool", "port": port }));
    settle(&g);

    until_answered_by(&g, "/svc", "127.0.0.2");
    until_answered_by(&g, "/six", "::1");
    for _ in 0..6 {
        assert_eq!(peer_of(&g, "/two"), "127.0.0.2");
    }
    // Every A address of the target's name is a peer.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        seen.insert(peer_of(&g, "/pooled"));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["127.0.0.2", "127.0.0.3"],
        "the pool's peers"
    );
    for addr in ["127.0.0.2", "127.0.0.3"] {
        let address = format!("{addr}:{port}");
        let healthy = eventually(Duration::from_secs(10), || {
            (health(&g, "pool", &target, &address, "healthy")? == 1.0).then_some(())
        });
        assert!(healthy.is_some(), "{address} is not reported healthy");
    }

    dns.set(zone("127.0.0.3", &["127.0.0.3"]));
    until_answered_by(&g, "/svc", "127.0.0.3");
    until_answered_by(&g, "/pooled", "127.0.0.3");
    assert_no_lua_errors(&g);
}

/// A name is asked again only when its TTL is over: a long TTL keeps the first answer
/// (and asks no more) while a short one is asked again and again.
#[test]
fn a_names_ttl_is_honoured() {
    let zone = |long: &str| {
        json!({ "records": {
            "long.test": { "A": [long], "ttl": 3600 },
            "short.test": { "A": ["127.0.0.2"], "ttl": 1 },
        } })
    };
    let dns = Dns::start("ttl", zone("127.0.0.2"));
    let port = peers(&["127.0.0.2", "127.0.0.3"]);
    let g = gateway("dns-ttl", &dns, &[]);
    service(
        &g,
        "long",
        json!({ "url": format!("http://long.test:{port}") }),
    );
    service(
        &g,
        "short",
        json!({ "url": format!("http://short.test:{port}") }),
    );
    settle(&g);
    until_answered_by(&g, "/long", "127.0.0.2");
    until_answered_by(&g, "/short", "127.0.0.2");
    let long_queries = dns.queries("long.test");
    // One A query per worker.
    assert!(
        (1..=2).contains(&long_queries),
        "long.test asked {long_queries} times"
    );
    dns.set(zone("127.0.0.3"));
    // Time passes (short.test is asked at least 3 more times by each of the 2 workers)...
    let short_before = dns.queries("short.test");
    let passed = eventually(Duration::from_secs(30), || {
        (dns.queries("short.test") >= short_before + 6).then_some(())
    });
    assert!(
        passed.is_some(),
        "short.test is not asked again as its TTL ends"
    );
    // ...and long.test's answer still stands, unasked.
    for _ in 0..6 {
        assert_eq!(peer_of(&g, "/long"), "127.0.0.2");
    }
    assert_eq!(dns.queries("long.test"), long_queries);
}

/// The hosts file is read before DNS (Kong's order): a name it lists is never asked,
/// whatever the resolver would say; `localhost` needs no resolver either.
#[test]
fn the_hosts_file_comes_first() {
    let dns = Dns::start(
        "hosts",
        json!({ "records": {
            "hosted.test": { "A": ["127.0.0.2"], "ttl": 1 },
            "localhost": { "A": ["127.0.0.2"], "ttl": 1 },
        } }),
    );
    let port = peers(&["127.0.0.2", "127.0.0.3"]);
    let hosts = dns.dir.join("hosts");
    std::fs::write(
        &hosts,
        "# a comment\n127.0.0.3   hosted.test other.test # trailing\n::1 hosted.test\n",
    )
    .unwrap();
    let g = gateway(
        "dns-hosts",
        &dns,
        &[("DNS_HOSTSFILE", hosts.display().to_string())],
    );
    service(
        &g,
        "hosted",
        json!({ "url": format!("http://hosted.test:{port}") }),
    );
    service(
        &g,
        "local",
        json!({ "url": format!("http://localhost:{}", g.upstream) }),
    );
    settle(&g);
    until_answered_by(&g, "/hosted", "127.0.0.3");
    let r = get(g.proxy, "/local");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from the demo upstream\n");
    assert_eq!(dns.queries("hosted.test"), 0);
    assert_eq!(dns.queries("localhost"), 0);
}

/// A resolver that stops answering: the last good answer is used for DNS_STALE_TTL
/// seconds past its TTL, then requests get Kong's JSON 503 `name resolution failed`,
/// counted as the gateway's 503, and the target reports `dns_error`; an answer again
/// brings the traffic back.
#[test]
fn a_silent_resolver_keeps_the_last_answer_then_fails_with_503_and_dns_error() {
    let zone = json!({ "records": { "down.test": { "A": ["127.0.0.2"], "ttl": 1 } } });
    let dns = Dns::start("down", zone.clone());
    let port = peers(&["127.0.0.2"]);
    let g = gateway(
        "dns-down",
        &dns,
        &[
            ("DNS_STALE_TTL", "8".to_string()),
            ("DNS_TIMEOUT", "300".to_string()),
        ],
    );
    prometheus(&g);
    service(
        &g,
        "down",
        json!({ "url": format!("http://down.test:{port}") }),
    );
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "downpool" })),
    ));
    let target = format!("down.test:{port}");
    created(admin(
        g.admin,
        "POST",
        "/upstreams/downpool/targets",
        Some(json!({ "target": target })),
    ));
    service(&g, "pooled", json!({ "host": "downpool", "port": port }));
    settle(&g);
    until_answered_by(&g, "/down", "127.0.0.2");
    until_answered_by(&g, "/pooled", "127.0.0.2");

    dns.set(json!({ "mode": "drop", "records": zone["records"] }));
    // A refresh has timed out: the last answer is kept.
    wait_for(
        Duration::from_secs(30),
        || {
            let log = g.nginx.error_log();
            log.lines()
                .any(|l| {
                    l.contains("gateway: dns: down.test: ") && l.contains("are kept for up to")
                })
                .then_some(())
        },
        || format!("no failed refresh logged:\n{}", g.nginx.error_log()),
    );
    assert_eq!(peer_of(&g, "/down"), "127.0.0.2");
    assert_eq!(peer_of(&g, "/pooled"), "127.0.0.2");

    // Then, past the stale time, 503 for both.
    let failed = eventually(Duration::from_secs(40), || {
        let a = get(g.proxy, "/down");
        let b = get(g.proxy, "/pooled");
        (a.status == 503 && b.status == 503).then_some((a, b))
    });
    let (a, b) = failed.expect("requests still succeed long after the stale time");
    assert_name_resolution_failed(&a, "service");
    assert_name_resolution_failed(&b, "upstream");
    let dns_error = eventually(Duration::from_secs(10), || {
        (health(&g, "downpool", &target, "", "dns_error")? == 1.0).then_some(())
    });
    assert!(dns_error.is_some(), "the target is not reported dns_error");
    let (_, s) = scrape(g.metrics, "/metrics");
    for name in ["down", "pooled"] {
        let n = value(
            &s,
            "gateway_http_requests_total",
            &[
                ("service", name),
                ("route", name),
                ("code", "503"),
                ("source", "gateway"),
                ("consumer", ""),
            ],
        );
        assert!(n.unwrap_or(0.0) >= 1.0, "{name}: 503s not counted: {n:?}");
    }

    // The resolver answers again: so does the gateway.
    dns.set(zone);
    until_answered_by(&g, "/down", "127.0.0.2");
    until_answered_by(&g, "/pooled", "127.0.0.2");
    assert_no_lua_errors(&g);
}

/// A name no resolver knows is accepted, as Kong accepts it (201), and reported: its
/// requests get the JSON 503, its target `dns_error`.
#[test]
fn an_unresolvable_name_is_accepted_and_reported() {
    let dns = Dns::start("unknown", json!({ "records": {} }));
    let g = gateway("dns-unknown", &dns, &[]);
    prometheus(&g);
    service(&g, "nowhere", json!({ "url": "http://nowhere.test" }));
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "nopool" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/nopool/targets",
        Some(json!({ "target": "nowhere.test:80" })),
    ));
    service(&g, "nopool", json!({ "host": "nopool" }));
    settle(&g);
    assert_name_resolution_failed(&get(g.proxy, "/nowhere"), "service");
    assert_name_resolution_failed(&get(g.proxy, "/nopool"), "upstream");
    let dns_error = eventually(Duration::from_secs(10), || {
        (health(&g, "nopool", "nowhere.test:80", "", "dns_error")? == 1.0).then_some(())
    });
    assert!(dns_error.is_some(), "the target is not reported dns_error");
    assert!(dns.queries("nowhere.test") >= 1);
    assert_no_lua_errors(&g);
}

/// A resolver that never answers does not hold the worker up (another request is
/// served meanwhile, by the same single worker), and one answering garbage of each
/// kind (not DNS, cut short, SERVFAIL, another id, a query, a bad record length, a
/// compression loop, truncated with no TCP) gets the JSON 503, no Lua error.
#[test]
fn silent_or_garbage_resolvers_neither_block_nor_break_the_worker() {
    let dns = Dns::start("garbage", json!({ "mode": "drop", "records": {} }));
    let g = gateway("dns-garbage", &dns, &[("DNS_TIMEOUT", "3000".to_string())]);
    // One worker: the request served meanwhile is served by the worker that waits.
    g.nginx.reload_with_one_worker();
    service(
        &g,
        "local",
        json!({ "url": format!("http://127.0.0.1:{}", g.upstream) }),
    );
    service(&g, "silent", json!({ "url": "http://silent.test" }));
    settle(&g);
    // The first request to the silent name waits for its first answer (two tries of
    // 3 s); the worker serves another request meanwhile.
    let done = Arc::new(AtomicBool::new(false));
    let waiting = std::thread::spawn({
        let done = done.clone();
        let proxy = g.proxy;
        move || {
            let r = get(proxy, "/silent");
            done.store(true, Ordering::SeqCst);
            r
        }
    });
    // (It has reached the worker: the silent name was asked.)
    wait_for(
        Duration::from_secs(10),
        || (dns.queries("silent.test") >= 1).then_some(()),
        || "silent.test never asked".to_string(),
    );
    let r = get(g.proxy, "/local");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !done.load(Ordering::SeqCst),
        "the request waiting for a name ended before another one was served"
    );
    assert_name_resolution_failed(&waiting.join().unwrap(), "silent");

    for mode in [
        "random",
        "short",
        "servfail",
        "wrong-id",
        "query",
        "bad-length",
        "loop",
        "truncated",
    ] {
        let name = format!("g-{mode}");
        dns.set(
            json!({ "mode": mode, "records": { format!("{name}.test"): { "A": ["127.0.0.2"] } } }),
        );
        service(&g, &name, json!({ "url": format!("http://{name}.test") }));
        settle(&g);
        assert_name_resolution_failed(&get(g.proxy, &format!("/{name}")), mode);
        assert!(
            dns.queries(&format!("{name}.test")) >= 1,
            "{mode}: not asked"
        );
    }
    let r = get(g.proxy, "/local");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_lua_errors(&g);
}

/// A resolver setting that is not an address, or a number out of range, stops nginx
/// at start with a message naming it (no gateway that cannot resolve).
#[test]
fn bad_dns_settings_are_refused_at_start() {
    for (key, value, message) in [
        (
            "DNS_RESOLVER",
            "dns.example:53",
            "dns resolver: 'dns.example:53' is not an address[:port]",
        ),
        (
            "DNS_RESOLVER",
            "127.0.0.1:99999",
            "dns resolver: '127.0.0.1:99999' is not an address[:port]",
        ),
        (
            "DNS_STALE_TTL",
            "-1",
            "dns stale_ttl: '-1' is not an integer between 0 and 2147483647",
        ),
        (
            "DNS_TIMEOUT",
            "1.5",
            "dns timeout: '1.5' is not an integer between 1 and 60000",
        ),
    ] {
        let prefix = prefix(&format!("dns-bad-{}", key.to_lowercase()));
        let (_, _) = render_gateway(&prefix, &[(key, value.to_string())]);
        // (Started, not `nginx -t`: the gateway's init runs when nginx starts.)
        let out = nginx_command()
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            // Started after all: stop it before failing.
            let n = Nginx {
                prefix: prefix.clone(),
                conf: String::new(),
            };
            drop(n);
            panic!("{key}={value} accepted: {stderr}");
        }
        assert!(stderr.contains(message), "{key}={value}: {stderr}");
        let _ = std::fs::remove_dir_all(&prefix);
    }
}
