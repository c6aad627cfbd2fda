//! Active health checks (Kong's `healthchecks.active`) against real nginx: a backend
//! the test controls answers probes with 200 or 500, hangs or refuses; traffic moves
//! away and back; the target-health gauges in both namings; one worker probes, across
//! worker deaths and reloads; health survives unrelated changes; deletes stop probes
//! and series; refusals of bad settings; a declarative file.

mod harness;

use harness::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OK: u8 = 0;
/// Probes get 500; proxied requests still 200 (only the active check can notice).
const PROBES_FAIL: u8 = 1;
/// Connections are accepted and never answered.
const HANG: u8 = 2;
/// Nothing listens: connections are refused.
const REFUSE: u8 = 3;
/// Proxied requests and probes get 500.
const ALL_FAIL: u8 = 4;

/// A target whose answers the test switches. Probes are the requests for `/health`.
struct Backend {
    port: u16,
    mode: Arc<AtomicU8>,
    probes: Arc<AtomicUsize>,
    /// Connections held unanswered now (HANG), and the most at any time.
    hanging: Arc<[AtomicUsize; 2]>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a connection's thread shares with the backend.
#[derive(Clone)]
struct Shared {
    mode: Arc<AtomicU8>,
    probes: Arc<AtomicUsize>,
    hanging: Arc<[AtomicUsize; 2]>,
    stop: Arc<AtomicBool>,
}

fn serve(mut s: TcpStream, sh: Shared) {
    let Shared {
        mode,
        probes,
        hanging,
        stop,
    } = sh;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let head = harness::read_request_head(&mut s);
    if !harness::head_is_whole(&head) {
        return;
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let probe = text.starts_with("GET /health ");
    if probe {
        assert!(
            text.contains("\r\nUser-Agent: ngx-prometheus-gateway-healthcheck\r\n"),
            "{text}"
        );
        probes.fetch_add(1, Ordering::SeqCst);
    }
    let m = mode.load(Ordering::SeqCst);
    if m == HANG {
        let now = hanging[0].fetch_add(1, Ordering::SeqCst) + 1;
        hanging[1].fetch_max(now, Ordering::SeqCst);
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 256];
        while mode.load(Ordering::SeqCst) == HANG && !stop.load(Ordering::SeqCst) {
            match s.read(&mut buf) {
                // The gateway gave up (its probe timed out): the connection is over.
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        hanging[0].fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let fail = m == ALL_FAIL || (probe && m == PROBES_FAIL);
    let answer: &[u8] = if fail {
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfail\n"
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntarget\n"
    };
    let _ = s.write_all(answer);
}

impl Backend {
    fn start() -> Backend {
        let port = free_port();
        let mode = Arc::new(AtomicU8::new(OK));
        let probes = Arc::new(AtomicUsize::new(0));
        let hanging = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let sh = Shared {
                mode: mode.clone(),
                probes: probes.clone(),
                hanging: hanging.clone(),
                stop: stop.clone(),
            };
            let (mode, stop) = (mode.clone(), stop.clone());
            move || {
                let mut listener: Option<TcpListener> = None;
                while !stop.load(Ordering::SeqCst) {
                    if mode.load(Ordering::SeqCst) == REFUSE {
                        listener = None;
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    if listener.is_none() {
                        match TcpListener::bind(("127.0.0.1", port)) {
                            Ok(l) => {
                                l.set_nonblocking(true).unwrap();
                                listener = Some(l);
                            }
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        }
                    }
                    match listener.as_ref().unwrap().accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            let sh = sh.clone();
                            std::thread::spawn(move || serve(s, sh));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        let b = Backend {
            port,
            mode,
            probes,
            hanging,
            stop,
            thread: Some(thread),
        };
        wait_for(
            Duration::from_secs(5),
            || listening(port).then_some(()),
            || format!("backend on {port} never listened"),
        );
        b
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }

    /// The most connections held unanswered at once since the last call.
    fn take_most_hanging(&self) -> usize {
        self.hanging[1].swap(self.hanging[0].load(Ordering::SeqCst), Ordering::SeqCst)
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const DEMO: &str = "hello from the demo upstream\n";

/// Active settings: probes of `/health` every `interval` seconds in either state,
/// `n` outcomes in a row to change state.
fn active(interval: f64, n: u32) -> serde_json::Value {
    json!({
        "http_path": "/health", "timeout": 0.5,
        "healthy": { "interval": interval, "successes": n },
        "unhealthy": { "interval": interval, "http_failures": n, "tcp_failures": n, "timeouts": n },
    })
}

/// Upstream `pool` with `healthchecks`, targets the demo upstream and `b`, a service
/// and route `/` to it, and the prometheus plugin in both namings (global: prometheus;
/// on the service: kong), target health on.
fn pool(g: &Gateway, healthchecks: serde_json::Value, b: &Backend) {
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "pool", "healthchecks": healthchecks })),
    ));
    for t in [format!("127.0.0.1:{}", g.upstream), b.target()] {
        created(admin(
            g.admin,
            "POST",
            "/upstreams/pool/targets",
            Some(json!({ "target": t })),
        ));
    }
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "svc", "host": "pool", "port": 80 })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/svc/routes",
        Some(json!({ "name": "r", "paths": ["/"] })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": { "upstream_health_metrics": true } })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/svc/plugins",
        Some(
            json!({ "name": "prometheus", "config": { "naming": "kong", "upstream_health_metrics": true } }),
        ),
    ));
    settle(g);
}

const STATES: [&str; 4] = ["healthy", "unhealthy", "dns_error", "healthchecks_off"];

/// The target-health gauges of `target` in both namings, one scrape: for each state
/// (in STATES' order), the value in each naming (None: absent). Read from the text
/// (label order as declared), without the reference parser: it is polled.
fn health_all(g: &Gateway, target: &str) -> Vec<[Option<f64>; 2]> {
    let r = get(
        g.metrics,
        "/metrics?format=text&name[]=gateway_upstream_target_health&name[]=kong_upstream_target_health",
    );
    let text = if r.status == 200 {
        r.text()
    } else {
        String::new()
    };
    let find = |family: &str, state: &str| {
        let head = format!(
            "{family}{{upstream=\"pool\",target=\"{target}\",address=\"{target}\",state=\"{state}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(head.as_str()))
            .map(|v| v.trim().parse::<f64>().unwrap())
    };
    STATES
        .iter()
        .map(|s| {
            [
                find("gateway_upstream_target_health", s),
                find("kong_upstream_target_health", s),
            ]
        })
        .collect()
}

/// The target-health gauge of `target` in `state`, in both namings (None: absent).
fn health(g: &Gateway, target: &str, state: &str) -> [Option<f64>; 2] {
    let i = STATES.iter().position(|s| *s == state).unwrap();
    health_all(g, target)[i]
}

/// Waits until both namings show `target` in `state` (1) and in no other (0).
fn wait_state(g: &Gateway, target: &str, state: &str) {
    let want: Vec<[Option<f64>; 2]> = STATES
        .iter()
        .map(|s| {
            let v = if *s == state { 1.0 } else { 0.0 };
            [Some(v), Some(v)]
        })
        .collect();
    wait_for(
        Duration::from_secs(15),
        || (health_all(g, target) == want).then_some(()),
        || {
            format!(
                "{target} never became {state} in both namings: {:?}\n{}",
                health_all(g, target),
                g.nginx.error_log()
            )
        },
    );
}

/// Bodies of `n` proxied requests, each of which must be a 200.
fn bodies(g: &Gateway, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = get(g.proxy, "/");
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        })
        .collect()
}

fn served_by_backend(g: &Gateway, n: usize) -> usize {
    bodies(g, n).iter().filter(|b| *b == "target\n").count()
}

fn only_demo(g: &Gateway, n: usize) {
    let got = bodies(g, n);
    assert!(
        got.iter().all(|b| b == DEMO),
        "traffic reached the unhealthy target: {got:?}"
    );
}

/// Error-log lines at [error] or worse (a failed probe is none), and Lua errors at any
/// level.
fn lua_trouble(g: &Gateway) -> Vec<String> {
    let log = g.nginx.error_log();
    let mut out = g.nginx.errors_but_kills();
    out.extend(
        log.lines()
            .filter(|l| {
                l.contains("stack traceback")
                    || l.contains("runtime error")
                    || l.contains("lua entry thread aborted")
            })
            .map(str::to_string),
    );
    out
}

#[test]
fn active_checks_move_traffic_away_and_back_on_errors_hangs_and_refusals() {
    let g = start_gateway("hc-traffic", &[]);
    let b = Backend::start();
    let bt = b.target();
    // Passive checks off: only the probes can take the target out.
    pool(
        &g,
        json!({ "active": active(0.2, 2), "passive": { "unhealthy": { "failures": 0 } } }),
        &b,
    );
    wait_state(&g, &bt, "healthy");
    assert!(
        served_by_backend(&g, 20) > 0,
        "the healthy target got no traffic"
    );
    let demo = format!("127.0.0.1:{}", g.upstream);
    for (mode, why) in [
        (PROBES_FAIL, "500 to probes"),
        (HANG, "probes time out"),
        (REFUSE, "connections refused"),
    ] {
        b.set(mode);
        wait_state(&g, &bt, "unhealthy");
        // Proxied requests to it would still succeed (or hang): none is sent there.
        only_demo(&g, 20);
        assert_eq!(
            health(&g, &demo, "healthy"),
            [Some(1.0), Some(1.0)],
            "{why}"
        );
        b.set(OK);
        wait_state(&g, &bt, "healthy");
        assert!(
            served_by_backend(&g, 20) > 0,
            "traffic never came back after {why}"
        );
    }
    // A deleted target is probed no more, and its series leave both namings.
    let (status, _) = admin(
        g.admin,
        "DELETE",
        &format!("/upstreams/pool/targets/{bt}"),
        None,
    );
    assert_eq!(status, 204);
    settle(&g);
    wait_for(
        Duration::from_secs(5),
        || (health(&g, &bt, "healthy") == [None, None]).then_some(()),
        || {
            format!(
                "series of the deleted target remain: {:?}",
                health(&g, &bt, "healthy")
            )
        },
    );
    // A probe sent before the delete may still land; none after it.
    std::thread::sleep(Duration::from_millis(700));
    let before = b.probes();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.probes(), before, "the deleted target is still probed");
    assert_eq!(
        health_all(&g, &bt),
        vec![[None, None]; 4],
        "series came back"
    );
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}

/// Probes counted over `secs` seconds at the backend, waiting first for one.
fn probes_in(b: &Backend, secs: f64) -> usize {
    let first = b.probes();
    wait_for(
        Duration::from_secs(10),
        || (b.probes() > first).then_some(()),
        || "no probe arrived".to_string(),
    );
    let start = b.probes();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n = b.probes() - start;
    // Slower than asked is possible on a loaded machine, faster is not.
    let elapsed = t.elapsed().as_secs_f64();
    eprintln!("{n} probes in {elapsed:.2} s");
    n
}

fn wait_workers_exactly(g: &Gateway, n: usize, not: &[u32]) {
    wait_for(
        Duration::from_secs(20),
        || {
            let w = g.nginx.worker_pids();
            (w.len() == n && !w.iter().any(|p| not.contains(p))).then_some(())
        },
        || format!("workers never were {n} new ones"),
    );
}

#[test]
fn one_worker_probes_across_worker_deaths_and_reloads() {
    let g = start_gateway("hc-one", &[("WORKERS", "4".to_string())]);
    g.nginx.wait_workers(4);
    let b = Backend::start();
    let interval = 0.5;
    pool(&g, json!({ "active": active(interval, 2) }), &b);
    // Every worker probing would make 4 probes an interval; one makes at most
    // window / interval + 1 (timers only ever run late).
    let window = 3.0;
    let most = (window / interval) as usize + 1;
    let n = probes_in(&b, window);
    assert!(
        (1..=most).contains(&n),
        "{n} probes in {window} s, at most {most} expected"
    );
    // Every worker killed (worker 0 among them): its replacement probes, alone.
    let before = g.nginx.worker_pids();
    for pid in &before {
        signal(*pid, "KILL");
    }
    wait_workers_exactly(&g, 4, &before);
    let n = probes_in(&b, window);
    assert!(
        (1..=most).contains(&n),
        "after the kills: {n} probes, at most {most}"
    );
    // A reload: the new worker 0 probes; the old one stopped.
    let before = g.nginx.worker_pids();
    g.nginx.reload_to(4);
    wait_workers_exactly(&g, 4, &before);
    let n = probes_in(&b, window);
    assert!(
        (1..=most).contains(&n),
        "after a reload: {n} probes, at most {most}"
    );
    // Probes that hang until their timeout (0.5 s): one prober never has two at once
    // (each worker probing on its own would).
    b.set(HANG);
    std::thread::sleep(Duration::from_millis(700));
    b.take_most_hanging();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(b.take_most_hanging(), 1, "probes of one target overlapped");
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}

#[test]
fn passive_failures_take_a_target_out_and_active_successes_bring_it_back() {
    let g = start_gateway("hc-passive", &[]);
    let b = Backend::start();
    let bt = b.target();
    // Passive: 2 failures take it out; active: no failure counts (the probes alone
    // never take it out), 2 successes in a row of probes every 0.2 s while unhealthy
    // re-admit, and only they (Kong's rule): readmit_after does not apply.
    pool(
        &g,
        json!({
            "passive": { "unhealthy": { "failures": 2 }, "readmit_after": 1 },
            "active": { "http_path": "/health", "healthy": { "successes": 2 },
                        "unhealthy": { "interval": 0.2 } },
        }),
        &b,
    );
    wait_state(&g, &bt, "healthy");
    b.set(ALL_FAIL);
    // The backend's 500s are passed on (no retry on a status): the client sees some.
    wait_for(
        Duration::from_secs(10),
        || {
            let _ = get(g.proxy, "/");
            (health(&g, &bt, "unhealthy") == [Some(1.0), Some(1.0)]).then_some(())
        },
        || "passive failures never took the target out".to_string(),
    );
    // Its probes fail: it stays out well past readmit_after (no traffic is sent, so
    // nothing passive marks it again).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health(&g, &bt, "unhealthy"), [Some(1.0), Some(1.0)]);
    // Probes answered 200 from now: the target comes back after 2 of them.
    b.set(OK);
    wait_state(&g, &bt, "healthy");
    assert!(served_by_backend(&g, 20) > 0);
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}

#[test]
fn health_survives_changes_that_do_not_touch_the_target_and_reloads() {
    let g = start_gateway("hc-survive", &[]);
    let b = Backend::start();
    let bt = b.target();
    pool(&g, json!({ "active": active(0.2, 1) }), &b);
    wait_state(&g, &bt, "healthy");
    b.set(PROBES_FAIL);
    wait_state(&g, &bt, "unhealthy");
    // From now on an unhealthy target is probed once a minute: a reset would show.
    let (status, body) = admin(
        g.admin,
        "PATCH",
        "/upstreams/pool",
        Some(
            json!({ "tags": ["x"], "healthchecks": { "active": { "unhealthy": { "interval": 60 } } } }),
        ),
    );
    assert_eq!(status, 200, "{body}");
    // Every worker runs it, and a probe started before it has had its answer (500).
    settle(&g);
    std::thread::sleep(Duration::from_millis(700));
    b.set(OK);
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "other", "url": format!("http://127.0.0.1:{}", g.upstream) })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/pool/targets",
        Some(json!({ "target": "127.0.0.1:1", "weight": 0 })),
    ));
    settle(&g);
    assert_eq!(health(&g, &bt, "unhealthy"), [Some(1.0), Some(1.0)]);
    only_demo(&g, 10);
    let before = g.nginx.worker_pids();
    g.nginx.reload();
    wait_workers_exactly(&g, 2, &before);
    settle(&g);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(health(&g, &bt, "unhealthy"), [Some(1.0), Some(1.0)]);
    only_demo(&g, 10);
    // Active checks turned off altogether: what they marked expires with the passive
    // checks' readmit_after (here 1 s), as a passive mark does.
    let (status, body) = admin(
        g.admin,
        "PATCH",
        "/upstreams/pool",
        Some(
            json!({ "healthchecks": { "active": { "healthy": { "interval": 0 }, "unhealthy": { "interval": 0 } },
                                       "passive": { "readmit_after": 1 } } }),
        ),
    );
    assert_eq!(status, 200, "{body}");
    settle(&g);
    wait_state(&g, &bt, "healthy");
    assert!(served_by_backend(&g, 20) > 0);
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}

#[test]
fn bad_active_settings_are_refused_naming_the_field_and_nothing_is_stored() {
    let g = start_gateway("hc-refused", &[]);
    let bad: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({ "http_path": "/health\r\nX-Injected: 1" }),
            "http_path",
        ),
        (json!({ "http_path": "/health\n" }), "http_path"),
        (json!({ "http_path": "/a b" }), "http_path"),
        (json!({ "http_path": "/%0d%0a" }), "http_path"),
        (json!({ "http_path": "health" }), "http_path"),
        (json!({ "http_path": "/h?x=1" }), "http_path"),
        (json!({ "timeout": 0 }), "timeout"),
        (json!({ "timeout": 1e300 }), "timeout"),
        (json!({ "concurrency": 0 }), "concurrency"),
        (json!({ "type": "udp" }), "type"),
        (json!({ "https_sni": "a\r\nb" }), "https_sni"),
        (json!({ "https_sni": "a b" }), "https_sni"),
        (
            json!({ "https_verify_certificate": "maybe" }),
            "https_verify_certificate",
        ),
        (
            json!({ "healthy": { "interval": 0.01 } }),
            "healthy.interval",
        ),
        (
            json!({ "unhealthy": { "interval": -1 } }),
            "unhealthy.interval",
        ),
        (
            json!({ "unhealthy": { "timeouts": 256 } }),
            "unhealthy.timeouts",
        ),
        (
            json!({ "healthy": { "http_statuses": (100..133).collect::<Vec<_>>() } }),
            "healthy.http_statuses",
        ),
        (json!({ "headers": { "x": ["y"] } }), "headers"),
    ];
    for (a, field) in &bad {
        let (status, body) = admin(
            g.admin,
            "POST",
            "/upstreams",
            Some(json!({ "name": "u", "healthchecks": { "active": a } })),
        );
        assert_eq!(status, 400, "{a}: {body}");
        let msg = body["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("healthchecks.active.{field}")),
            "{a}: {msg}"
        );
        assert!(!msg.contains('\r') && !msg.contains('\n'), "{msg}");
    }
    // The same from a form, and as a PATCH of a stored upstream (left unchanged).
    let r = request(
        g.admin,
        "POST",
        "/upstreams",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=u&healthchecks.active.http_path=%2Fh%0D%0AX%3A%201",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("healthchecks.active.http_path"));
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "u" })),
    ));
    let (status, _) = admin(
        g.admin,
        "PATCH",
        "/upstreams/u",
        Some(
            json!({ "healthchecks": { "active": { "http_path": "/x\r\n", "healthy": { "interval": 1 } } } }),
        ),
    );
    assert_eq!(status, 400);
    let (_, stored) = admin(g.admin, "GET", "/upstreams/u", None);
    assert_eq!(stored["healthchecks"]["active"]["http_path"], "/");
    assert_eq!(stored["healthchecks"]["active"]["healthy"]["interval"], 0);
    // Accepted: Kong's fields, given back with Kong's defaults for the rest.
    let (status, body) = admin(
        g.admin,
        "PATCH",
        "/upstreams/u",
        Some(
            json!({ "healthchecks": { "active": { "type": "tcp", "http_path": "/st%C3%A4tus",
            "healthy": { "interval": 0.1 }, "unhealthy": { "tcp_failures": 255 } } } }),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let a = &body["healthchecks"]["active"];
    assert_eq!(a["type"], "tcp");
    assert_eq!(a["http_path"], "/st%C3%A4tus");
    assert_eq!(a["timeout"], 1);
    assert_eq!(a["concurrency"], 10);
    assert_eq!(a["healthy"]["http_statuses"], json!([200, 302]));
    assert_eq!(
        a["unhealthy"]["http_statuses"],
        json!([429, 404, 500, 501, 502, 503, 504, 505])
    );
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}

#[test]
fn a_declarative_file_configures_active_checks() {
    let b = Backend::start();
    let dead = free_port();
    let dir = prefix("hc-declarative-file");
    let file = dir.join("kong.json");
    let doc = json!({
        "_format_version": "3.0",
        "upstreams": [{
            "name": "pool",
            // TCP probes: a connection that opens is a success.
            "healthchecks": { "active": { "type": "tcp", "timeout": 0.5,
                "healthy": { "interval": 0.2, "successes": 1 },
                "unhealthy": { "interval": 0.2, "tcp_failures": 1 } } },
            "targets": [{ "target": b.target() }, { "target": format!("127.0.0.1:{dead}") }],
        }],
        "services": [{ "name": "svc", "host": "pool", "port": 80,
                       "routes": [{ "name": "r", "paths": ["/"] }] }],
        "plugins": [{ "name": "prometheus", "config": { "upstream_health_metrics": true } },
                    { "name": "prometheus", "service": "svc",
                      "config": { "naming": "kong", "upstream_health_metrics": true } }],
    });
    std::fs::write(&file, doc.to_string()).unwrap();
    Command::new("chmod")
        .arg("644")
        .arg(&file)
        .status()
        .unwrap();
    let g = start_gateway(
        "hc-declarative",
        &[("DECLARATIVE", file.display().to_string())],
    );
    wait_state(&g, &b.target(), "healthy");
    wait_state(&g, &format!("127.0.0.1:{dead}"), "unhealthy");
    // Every request goes to the healthy target; none to the dead one (no 502).
    assert_eq!(served_by_backend(&g, 10), 10);
    // A TCP probe sends nothing: the backend saw no request for /health.
    assert_eq!(b.probes(), 0);
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}

#[test]
fn https_probes_verify_the_targets_certificate_unless_told_not_to() {
    // Two TLS targets in the gateway's nginx: `good`'s certificate (for localhost and
    // 127.0.0.1) from the CA the probes trust, `rogue`'s from one they do not.
    let p = prefix("hc-https");
    let ca = Ca::new(&p);
    let rogue_ca = Ca::new(&p.join("rogue"));
    let (good, rogue) = (free_port(), free_port());
    let (conf, [proxy, admin_port, metrics, upstream]) = render_gateway(&p, &[]);
    let bundle = "lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;";
    assert!(conf.contains(bundle));
    let conf = conf.replace(
        bundle,
        &format!("lua_ssl_trusted_certificate {};", ca.cert.display()),
    );
    let mut servers = String::new();
    for (port, c) in [(good, &ca), (rogue, &rogue_ca)] {
        servers += &format!(
            "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {}; \
             location = /health {{ return 200; }} }}\n",
            c.server_cert.display(),
            c.server_key.display()
        );
    }
    let conf = conf.replacen(
        "# Metrics, on their own port",
        &(servers + "# Metrics, on their own port"),
        1,
    );
    let g = Gateway {
        nginx: Nginx::start_with(p.clone(), conf),
        proxy,
        admin: admin_port,
        metrics,
        upstream,
    };
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "pool", "healthchecks": { "active": {
            "type": "https", "http_path": "/health", "https_sni": "localhost", "timeout": 0.5,
            "healthy": { "interval": 0.2, "successes": 1 },
            "unhealthy": { "interval": 0.2, "tcp_failures": 1, "http_failures": 1 } } } })),
    ));
    for port in [good, rogue] {
        created(admin(
            g.admin,
            "POST",
            "/upstreams/pool/targets",
            Some(json!({ "target": format!("127.0.0.1:{port}") })),
        ));
    }
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(json!({ "name": "prometheus", "config": { "upstream_health_metrics": true } })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "svc", "host": "pool" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/svc/plugins",
        Some(json!({ "name": "prometheus",
                     "config": { "naming": "kong", "upstream_health_metrics": true } })),
    ));
    settle(&g);
    wait_state(&g, &format!("127.0.0.1:{good}"), "healthy");
    wait_state(&g, &format!("127.0.0.1:{rogue}"), "unhealthy");
    // Without verification the rogue target's probes succeed.
    let (status, body) = admin(
        g.admin,
        "PATCH",
        "/upstreams/pool",
        Some(json!({ "healthchecks": { "active": { "https_verify_certificate": false } } })),
    );
    assert_eq!(status, 200, "{body}");
    wait_state(&g, &format!("127.0.0.1:{rogue}"), "healthy");
    assert_eq!(lua_trouble(&g), Vec::<String>::new());
}
