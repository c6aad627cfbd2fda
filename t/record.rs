//! The native request recorder (`prometheus_record`): every request of a location
//! counted in nginx's log phase, no Lua run, checked against nginx's own access log.

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// An application server recording per location, method and code, a backend it
/// proxies to, a location with client-chosen label values, and a metrics server.
/// `lua` goes into `http {}` too.
fn http(prefix: &std::path::Path, app: u16, back: u16, metrics: u16, lua: &str) -> String {
    format!(
        r#"
    prometheus_zone metrics 8m;
    log_format rec '$status $request_length $bytes_sent $request_time "$upstream_response_time" $uri';
    map $arg_v $chosen {{
        default $arg_v;
        nl "line\nbreak";
        q "say \"hi\"";
    }}
    {lua}
    server {{
        listen 127.0.0.1:{app};
        server_name app.test;
        access_log {prefix}/logs/rec.log rec;
        prometheus_record labels=server,location,method,code;
        location / {{ return 200 "hello"; }}
        location /named {{ prometheus_record_location api; return 404; }}
        location /proxy {{ proxy_pass http://127.0.0.1:{back}/; }}
        location /off {{
            prometheus_record off;
            access_log off;
            return 204;
        }}
        location /chosen {{
            access_log off;
            prometheus_record labels=code label=v:$chosen label=x:$http_x_v namespace=rec_chosen;
            return 200;
        }}
        location /hosts {{
            access_log off;
            prometheus_record labels=code label=host:$host max_series=20 namespace=rec_hosts;
            return 200;
        }}
    }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 201 "from the backend, longer"; }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location /metrics {{ prometheus_metrics; }}
        location /http {{ prometheus_metrics group=http; }}
    }}
"#,
        prefix = prefix.display()
    )
}

fn start(name: &str, lua: &str) -> (Nginx, u16, u16) {
    let (app, back, metrics) = (free_port(), free_port(), free_port());
    let p = prefix(name);
    let conf = config(&p, &http(&p, app, back, metrics, lua));
    (Nginx::start_with(p, conf), app, metrics)
}

/// One access log line of the recorded server.
struct Line {
    status: String,
    received: f64,
    sent: f64,
    request_time: f64,
    upstream_time: Option<f64>,
    uri: String,
}

fn access_log(n: &Nginx) -> Vec<Line> {
    let text = std::fs::read_to_string(n.prefix.join("logs/rec.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            let up = w[4].trim_matches('"');
            Line {
                status: w[0].into(),
                received: w[1].parse().unwrap(),
                sent: w[2].parse().unwrap(),
                request_time: w[3].parse().unwrap(),
                upstream_time: (up != "-")
                    .then(|| up.split(", ").map(|t| t.parse::<f64>().unwrap()).sum()),
                uri: w[5].into(),
            }
        })
        .collect()
}

fn location_of(uri: &str) -> &'static str {
    if uri.starts_with("/named") {
        "api"
    } else if uri.starts_with("/proxy") {
        "/proxy"
    } else {
        "/"
    }
}

/// Sends `n` requests to each path, alternating methods, over separate connections (so
/// both workers take some).
fn traffic(app: u16, n: usize) {
    for i in 0..n {
        let method = if i % 3 == 0 { "POST" } else { "GET" };
        for path in ["/", "/a/b?x=1", "/named/x", "/proxy/p", "/off"] {
            request(app, method, path, &[], &b"body"[..i % 5]);
        }
    }
}

/// The requests counted per (location, method, code) once the log has `want` lines
/// and the recorder as many requests (both are written in the log phase, after the
/// answer).
fn settle(n: &Nginx, metrics: u16, want: usize) -> (Vec<Line>, Vec<Sample>) {
    eventually(Duration::from_secs(10), || {
        let lines = access_log(n);
        let (_, s) = scrape(metrics, "/http");
        let total: f64 = s
            .iter()
            .filter(|s| s.name == "nginx_http_requests_total")
            .map(|s| s.value)
            .sum();
        (lines.len() == want && total == want as f64).then_some((lines, s))
    })
    .unwrap_or_else(|| panic!("recorded {} lines: {}", access_log(n).len(), n.error_log()))
}

fn check_against_log(lines: &[Line], s: &[Sample]) {
    let mut requests: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut per_loc: BTreeMap<&str, [f64; 6]> = BTreeMap::new();
    for l in lines {
        let loc = location_of(&l.uri);
        *requests
            .entry((loc.to_string(), l.status.clone()))
            .or_default() += 1.0;
        let e = per_loc.entry(loc).or_default();
        e[0] += 1.0;
        e[1] += l.received;
        e[2] += l.sent;
        e[3] += l.request_time;
        if let Some(u) = l.upstream_time {
            e[4] += 1.0;
            e[5] += u;
        }
    }
    let sum_over = |name: &str, loc: &str| -> f64 {
        s.iter()
            .filter(|x| x.name == name && x.labels.get("location").map(String::as_str) == Some(loc))
            .map(|x| x.value)
            .sum()
    };
    for ((loc, code), n) in &requests {
        let got: f64 = s
            .iter()
            .filter(|x| {
                x.name == "nginx_http_requests_total"
                    && x.labels["location"] == *loc
                    && x.labels["code"] == *code
                    && x.labels["server"] == "app.test"
            })
            .map(|x| x.value)
            .sum();
        assert_eq!(got, *n, "requests of {loc} {code}");
    }
    for (loc, e) in &per_loc {
        assert_eq!(
            sum_over("nginx_http_received_bytes_total", loc),
            e[1],
            "{loc} received"
        );
        assert_eq!(
            sum_over("nginx_http_sent_bytes_total", loc),
            e[2],
            "{loc} sent"
        );
        assert_eq!(
            sum_over("nginx_http_request_duration_seconds_count", loc),
            e[0],
            "{loc}"
        );
        let sum = sum_over("nginx_http_request_duration_seconds_sum", loc);
        assert!(
            (sum - e[3]).abs() < 1e-6 * e[0].max(1.0),
            "{loc} latency {sum} vs {}",
            e[3]
        );
        assert_eq!(
            sum_over("nginx_http_upstream_duration_seconds_count", loc),
            e[4],
            "{loc}"
        );
        let up = sum_over("nginx_http_upstream_duration_seconds_sum", loc);
        assert!(
            (up - e[5]).abs() < 1e-6 * e[4].max(1.0),
            "{loc} upstream {up} vs {}",
            e[5]
        );
    }
}

/// Counts, bytes and times per label set over both workers equal what nginx's access
/// log says; a location with `off` records nothing; methods and the location name given
/// per location are labels; a reload keeps counting.
#[test]
fn counts_match_the_access_log_and_survive_a_reload() {
    let (n, app, metrics) = start("record-log", "");
    traffic(app, 12);
    let (lines, s) = settle(&n, metrics, 48);
    assert!(lines.iter().all(|l| !l.uri.starts_with("/off")));
    check_against_log(&lines, &s);
    let labels = |loc: &str, m: &str, code: &str| {
        value(
            &s,
            "nginx_http_requests_total",
            &[
                ("server", "app.test"),
                ("location", loc),
                ("method", m),
                ("code", code),
            ],
        )
    };
    assert_eq!(labels("api", "GET", "404"), Some(8.0));
    assert_eq!(labels("api", "POST", "404"), Some(4.0));
    assert_eq!(labels("/proxy", "GET", "201"), Some(8.0));
    assert_eq!(labels("/", "GET", "200"), Some(16.0));
    assert!(
        s.iter()
            .all(|x| x.labels.get("location").map(String::as_str) != Some("/off")),
        "off records nothing"
    );
    // Both workers recorded (the counts above are the sum of their updates).
    n.reload();
    traffic(app, 3);
    let (lines, s) = settle(&n, metrics, 60);
    check_against_log(&lines, &s);
    assert!(n.errors().is_empty(), "{:?}", n.errors());
}

/// Label values a client chooses: quotes, newlines and invalid UTF-8 are exposed as
/// valid text; long values are cut at 256 bytes; distinct hosts past `max_series` go
/// to the overflow series, exactly.
#[test]
fn client_label_values_are_bounded() {
    let (n, app, metrics) = start("record-values", "");
    for v in ["nl", "q", "plain"] {
        assert_eq!(
            request(app, "GET", &format!("/chosen?v={v}"), &[], b"").status,
            200
        );
    }
    let long = "y".repeat(1000);
    request(app, "GET", "/chosen?v=long", &[("X-V", &long)], b"");
    let raw = b"GET /chosen?v=raw HTTP/1.0\r\nHost: localhost\r\nX-V: a\xffb\r\n\r\n";
    assert!(exchange(app, raw).starts_with(b"HTTP/1.1 200"));
    // 10,000 distinct Host values, from 4 clients at once.
    const HOSTS: usize = 10_000;
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in (t..HOSTS).step_by(4) {
                    let host = format!("h{i}.example");
                    let r = request(app, "GET", "/hosts", &[("Host", &host)], b"");
                    assert_eq!(r.status, 200, "{host}");
                }
            });
        }
    });
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(metrics, "/metrics");
        let hosts: f64 = s
            .iter()
            .filter(|x| x.name == "rec_hosts_requests_total")
            .map(|x| x.value)
            .sum();
        let chosen: f64 = s
            .iter()
            .filter(|x| x.name == "rec_chosen_requests_total")
            .map(|x| x.value)
            .sum();
        (hosts == HOSTS as f64 && chosen == 5.0).then_some(s)
    })
    .unwrap_or_else(|| panic!("not recorded: {}", n.error_log()));
    let chosen = |v: &str, x: &str| {
        value(
            &s,
            "rec_chosen_requests_total",
            &[("v", v), ("x", x), ("code", "200")],
        )
    };
    assert_eq!(chosen("line\nbreak", ""), Some(1.0));
    assert_eq!(chosen("say \"hi\"", ""), Some(1.0));
    assert_eq!(chosen("plain", ""), Some(1.0));
    assert_eq!(chosen("long", &"y".repeat(256)), Some(1.0));
    assert_eq!(chosen("raw", "a\u{fffd}b"), Some(1.0));
    let host_series: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "rec_hosts_requests_total" && x.labels["host"] != "__overflow__")
        .collect();
    assert_eq!(host_series.len(), 20, "max_series=20");
    assert!(host_series.iter().all(|x| x.value == 1.0));
    assert_eq!(
        value(
            &s,
            "rec_hosts_requests_total",
            &[("host", "__overflow__"), ("code", "__overflow__")]
        ),
        Some((HOSTS - 20) as f64)
    );
    assert!(n.errors().is_empty(), "{:?}", n.errors());
}

/// Inherited from `http {}`, `off` in a server, on again in a location of it.
#[test]
fn inheritance_and_off() {
    let (a, b, metrics) = (free_port(), free_port(), free_port());
    let n = Nginx::start(
        "record-inherit",
        &format!(
            r#"
    prometheus_zone metrics 4m;
    prometheus_record labels=location;
    server {{
        listen 127.0.0.1:{a};
        location /a {{ return 200; }}
    }}
    server {{
        listen 127.0.0.1:{b};
        prometheus_record off;
        location /b {{ return 200; }}
        location /c {{ prometheus_record labels=location; return 200; }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        prometheus_record off;
        location /metrics {{ prometheus_metrics; }}
    }}
"#
        ),
    );
    for _ in 0..3 {
        get(a, "/a");
        get(b, "/b");
        get(b, "/c");
    }
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(metrics, "/metrics");
        let c = value(
            &s,
            "nginx_http_requests_total",
            &[("location", "/c"), ("code", "200")],
        );
        let a = value(
            &s,
            "nginx_http_requests_total",
            &[("location", "/a"), ("code", "200")],
        );
        (c == Some(3.0) && a == Some(3.0)).then_some(s)
    })
    .unwrap_or_else(|| panic!("{}", n.error_log()));
    assert!(s.iter().all(|x| !x.labels.contains_key("location")
        || !["/b", "/metrics"].contains(&x.labels["location"].as_str())));
}

/// Every invalid argument fails `nginx -t`, naming the directive and the value.
#[test]
fn invalid_arguments_fail_nginx_t() {
    for (args, want) in [
        ("on", "unknown parameter \"on\""),
        ("labels=server,path", "unknown label \"path\""),
        ("label=host", "invalid label \"host\""),
        (
            "label=h:$no_such_variable",
            "unknown \"no_such_variable\" variable",
        ),
        ("buckets=1,x", "invalid buckets \"1,x\""),
        ("precision=0", "invalid precision \"0\""),
        ("max_series=many", "invalid max_series \"many\""),
        ("expire=later", "invalid expire \"later\""),
        ("zone=nope", "unknown zone \"nope\""),
        ("namespace=9", "invalid namespace \"9\""),
    ] {
        let conf = format!(
            "prometheus_zone metrics 4m;\n server {{ listen 127.0.0.1:{}; prometheus_record {args}; }}",
            free_port()
        );
        let err = nginx_t("record-t", &conf).expect_err(args);
        assert!(err.contains(want), "{args}: {err}");
        if !want.contains("variable") {
            assert!(err.contains("prometheus_record"), "{args}: {err}");
        }
    }
    let clash = format!(
        "prometheus_zone metrics 4m;\n server {{ listen 127.0.0.1:{}; prometheus_record labels=server;\n \
         location /x {{ prometheus_record labels=method; }} }}",
        free_port()
    );
    let err = nginx_t("record-t", &clash).unwrap_err();
    assert!(
        err.contains("namespace \"nginx_http\" is recorded with other labels"),
        "{err}"
    );
    let loc = format!(
        "prometheus_zone metrics 4m;\n server {{ listen 127.0.0.1:{}; location /x {{ prometheus_record_location \"\"; }} }}",
        free_port()
    );
    let err = nginx_t("record-t", &loc).unwrap_err();
    assert!(
        err.contains("prometheus_record_location: invalid name \"\""),
        "{err}"
    );
}

/// The Lua API and `ngxprom.log` keep working beside the recorder, in the same nginx
/// and the same zone, and every request is counted by each.
#[test]
fn lua_api_and_ngxprom_log_still_work() {
    let lua = r#"
    init_by_lua_block {
        local z = require("ngxprom").zone("metrics")
        hits = z:counter("app_hits_total", "Hits.", { "code" })
        http_log = require("ngxprom.log").new(z, { labels = { "route" }, namespace = "lua_http" })
    }
    log_by_lua_block {
        hits:labels(tostring(ngx.status)):inc()
        http_log:log("r")
    }
"#;
    let (n, app, metrics) = start("record-lua", lua);
    traffic(app, 3);
    let (lines, s) = settle(&n, metrics, 12);
    check_against_log(&lines, &s);
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(metrics, "/metrics");
        // 15 requests to the app (3 to /off, which the recorder skips), plus 1 to the
        // backend, per round, and the scrapes themselves.
        let lua: f64 = s
            .iter()
            .filter(|x| x.name == "lua_http_requests_total")
            .map(|x| x.value)
            .sum();
        (lua >= 15.0 + 3.0).then_some(s)
    })
    .unwrap_or_else(|| panic!("{}", n.error_log()));
    assert!(value(&s, "app_hits_total", &[("code", "204")]) == Some(3.0));
    assert!(n.errors().is_empty(), "{:?}", n.errors());
}

/// `upstreams=on`: every try of every peer, failed ones included, counted per
/// upstream, peer and status as `$upstream_addr` and `$upstream_status` list them; each
/// try's time as `$upstream_response_time`. `cache=on`: responses by
/// `$upstream_cache_status` (MISS, HIT, EXPIRED) as the access log has them.
#[test]
fn upstream_peers_and_cache() {
    let (app, back, dead, metrics) = (free_port(), free_port(), free_port(), free_port());
    let p = prefix("record-peers");
    let body = format!(
        r#"
    prometheus_zone metrics 8m;
    log_format tries '$upstream_addr|$upstream_status|$upstream_response_time|$upstream_cache_status';
    proxy_cache_path {prefix}/tmp/cache keys_zone=c:1m;
    upstream two {{
        server 127.0.0.1:{back};
        server 127.0.0.1:{dead} max_fails=0;
    }}
    server {{
        listen 127.0.0.1:{app};
        access_log {prefix}/logs/tries.log tries;
        prometheus_record labels=location upstreams=on cache=on namespace=px;
        location /two {{ proxy_pass http://two; }}
        location /cached {{
            proxy_cache c;
            proxy_cache_valid 200 1s;
            proxy_pass http://127.0.0.1:{back};
        }}
    }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 200 "backend"; }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location /metrics {{ prometheus_metrics; }}
    }}
"#,
        prefix = p.display()
    );
    let n = Nginx::start_with(p.clone(), config(&p, &body));
    for _ in 0..10 {
        assert_eq!(get(app, "/two").status, 200);
    }
    for wait in [false, false, true, false] {
        if wait {
            // nginx keeps validity in whole seconds: 1s may last up to 2.
            std::thread::sleep(Duration::from_millis(2100));
        }
        assert_eq!(get(app, "/cached").status, 200);
    }
    // The access log's tries and cache statuses.
    let mut tries: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut failures: BTreeMap<String, f64> = BTreeMap::new();
    let mut timed: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut cache: BTreeMap<String, f64> = BTreeMap::new();
    let lines = eventually(Duration::from_secs(10), || {
        let t = std::fs::read_to_string(p.join("logs/tries.log")).unwrap_or_default();
        (t.lines().count() == 14).then_some(t)
    })
    .unwrap();
    for l in lines.lines() {
        let w: Vec<&str> = l.split('|').collect();
        // "-": no upstream was tried (a cache hit).
        let addrs: Vec<&str> = w[0].split(", ").filter(|a| *a != "-").collect();
        let codes: Vec<&str> = w[1].split(", ").collect();
        let times: Vec<&str> = w[2].split(", ").collect();
        for i in 0..addrs.len() {
            let code = if codes[i] == "-" { "0" } else { codes[i] };
            *tries.entry((addrs[i].into(), code.into())).or_default() += 1.0;
            let c: u32 = code.parse().unwrap();
            if c == 0 || c >= 500 {
                *failures.entry(addrs[i].into()).or_default() += 1.0;
            }
            if times[i] != "-" {
                let e = timed.entry(addrs[i].into()).or_default();
                e.0 += 1.0;
                e.1 += times[i].parse::<f64>().unwrap();
            }
        }
        if w[3] != "-" {
            *cache.entry(w[3].into()).or_default() += 1.0;
        }
    }
    let dead_addr = format!("127.0.0.1:{dead}");
    assert!(
        failures.get(&dead_addr).copied().unwrap_or(0.0) >= 1.0,
        "{tries:?}"
    );
    assert_eq!(cache.get("MISS"), Some(&1.0), "{cache:?}");
    assert_eq!(cache.get("HIT"), Some(&2.0), "{cache:?}");
    assert_eq!(cache.get("EXPIRED"), Some(&1.0), "{cache:?}");
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(metrics, "/metrics");
        let recorded: f64 = s
            .iter()
            .filter(|x| x.name == "px_requests_total")
            .map(|x| x.value)
            .sum();
        (recorded == 14.0).then_some(s)
    })
    .unwrap_or_else(|| panic!("{}", n.error_log()));
    let sum = |name: &str, peer: &str| -> f64 {
        s.iter()
            .filter(|x| x.name == name && x.labels.get("peer").map(String::as_str) == Some(peer))
            .map(|x| x.value)
            .sum()
    };
    for ((peer, code), count) in &tries {
        let got: f64 = s
            .iter()
            .filter(|x| {
                x.name == "px_upstream_peer_requests_total"
                    && x.labels["peer"] == *peer
                    && x.labels["code"] == *code
            })
            .map(|x| x.value)
            .sum();
        assert_eq!(got, *count, "tries of {peer} with {code}");
    }
    for (peer, n) in &failures {
        assert_eq!(
            sum("px_upstream_peer_failures_total", peer),
            *n,
            "failures of {peer}"
        );
    }
    for (peer, (count, secs)) in &timed {
        assert_eq!(
            sum("px_upstream_peer_duration_seconds_count", peer),
            *count,
            "{peer}"
        );
        let got = sum("px_upstream_peer_duration_seconds_sum", peer);
        assert!((got - secs).abs() < 1e-6 * count, "{peer}: {got} vs {secs}");
    }
    // The upstream block's name labels its peers; a proxy_pass to an address its host.
    assert!(s.iter().any(|x| x.name == "px_upstream_peer_requests_total"
        && x.labels["upstream"] == "two"
        && x.labels["peer"] == dead_addr));
    for (status, n) in &cache {
        assert_eq!(
            value(
                &s,
                "px_cache_responses_total",
                &[("location", "/cached"), ("cache_status", status)]
            ),
            Some(*n),
            "{status}"
        );
    }
    assert!(
        n.errors().iter().all(|e| e.contains("connect() failed")),
        "{:?}",
        n.errors()
    );
}

/// Each worker keeps the handles of the series a label set went to (a bounded cache):
/// a cached handle whose series expired is renewed (the request after the expiry lands
/// in the series made anew, counted from zero, exactly), and more distinct label sets
/// than the cache holds (`CACHED_LABEL_SETS` = 256 per worker, visited round-robin so
/// each visit finds its entry evicted) still count exactly.
#[test]
fn cached_handles_are_renewed_and_the_cache_is_bounded() {
    let (app, metrics) = (free_port(), free_port());
    let p = prefix("record-cache");
    let http = format!(
        r#"
    prometheus_zone cache 32m;
    server {{
        listen 127.0.0.1:{app};
        access_log off;
        location /exp {{
            prometheus_record labels=code label=host:$host expire=1s namespace=rec_exp;
            return 200;
        }}
        location /many {{
            prometheus_record labels=code label=host:$host max_series=2000 namespace=rec_many;
            return 200;
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location /metrics {{ prometheus_metrics; }}
    }}
"#
    );
    let n = Nginx::start_with(p.clone(), config(&p, &http));
    let count = |s: &[Sample], name: &str, host: &str| -> f64 {
        s.iter()
            .filter(|x| x.name == name && x.labels.get("host").map(String::as_str) == Some(host))
            .map(|x| x.value)
            .sum()
    };
    // Expiry: both workers cache the series' handles, the sweep deletes the series,
    // then the same label set again.
    let send = |k: usize| {
        for _ in 0..k {
            assert_eq!(
                request(app, "GET", "/exp", &[("Host", "a.test")], b"").status,
                200
            );
        }
    };
    // The log phase runs after the answer: a scrape waits for the last request.
    let settled = |name: &str, host: &str, want: f64| {
        eventually(Duration::from_secs(10), || {
            let (_, s) = scrape(metrics, "/metrics");
            (count(&s, name, host) >= want).then_some(s)
        })
        .unwrap_or_else(|| {
            panic!(
                "{name}{{host={host}}} never reached {want}: {}",
                n.error_log()
            )
        })
    };
    send(20);
    let s = settled("rec_exp_requests_total", "a.test", 20.0);
    assert_eq!(count(&s, "rec_exp_requests_total", "a.test"), 20.0);
    eventually(Duration::from_secs(15), || {
        let (_, s) = scrape(metrics, "/metrics");
        (!s.iter().any(|x| x.name.starts_with("rec_exp_"))).then_some(())
    })
    .unwrap_or_else(|| panic!("never expired: {}", n.error_log()));
    send(20);
    let s = settled("rec_exp_request_duration_seconds_count", "a.test", 20.0);
    assert_eq!(
        count(&s, "rec_exp_requests_total", "a.test"),
        20.0,
        "after the expiry"
    );
    assert_eq!(
        count(&s, "rec_exp_request_duration_seconds_count", "a.test"),
        20.0
    );
    // More label sets than both workers' caches hold, three rounds.
    let hosts = 600;
    for _ in 0..3 {
        for i in 0..hosts {
            let host = format!("h{i}.test");
            assert_eq!(
                request(app, "GET", "/many", &[("Host", &host)], b"").status,
                200
            );
        }
    }
    let total = |s: &[Sample], name: &str| -> f64 {
        s.iter().filter(|x| x.name == name).map(|x| x.value).sum()
    };
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = scrape(metrics, "/metrics");
        let want = 3.0 * hosts as f64;
        (total(&s, "rec_many_requests_total") >= want
            && total(&s, "rec_many_request_duration_seconds_count") >= want)
            .then_some(s)
    })
    .unwrap_or_else(|| panic!("not all recorded: {}", n.error_log()));
    for i in 0..hosts {
        let host = format!("h{i}.test");
        assert_eq!(count(&s, "rec_many_requests_total", &host), 3.0, "{host}");
        assert_eq!(
            count(&s, "rec_many_request_duration_seconds_count", &host),
            3.0,
            "{host}"
        );
        assert!(
            count(&s, "rec_many_sent_bytes_total", &host) > 0.0,
            "{host}"
        );
    }
    assert!(n.errors().is_empty(), "{:?}", n.errors());
}
