//! Push mode against a real Prometheus Pushgateway (the Debian package): what is
//! pushed equals what is scraped, one process pushes, failures are counted and retried
//! with backoff while requests go on, pushes go over https (a TLS-terminating nginx
//! with a CA made by `openssl` here) and fail on an untrusted certificate, large pushes
//! wait for 100 Continue, and bad configuration is refused.

mod harness;
mod inject;

use harness::*;
use inject::{Behaviour, Peer};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Pushgateway on `port`, with Basic auth for `pusher` / `push-pass` when `auth`.
struct Pushgateway {
    child: Child,
    port: u16,
}

impl Pushgateway {
    fn start(dir: &Path, port: u16, auth: bool) -> Pushgateway {
        let mut cmd = Command::new("prometheus-pushgateway");
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--persistence.file=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            // bcrypt at the lowest cost, made with the system's crypt(3).
            let out = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt; print(crypt.crypt('push-pass', \
                     crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
                ])
                .output()
                .unwrap();
            let hash = String::from_utf8(out.stdout).unwrap();
            assert!(hash.starts_with("$2b$"), "no bcrypt: {hash}");
            let web = dir.join("pushgateway-web.yml");
            std::fs::write(
                &web,
                format!("basic_auth_users:\n  pusher: '{}'\n", hash.trim()),
            )
            .unwrap();
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        let child = cmd.spawn().expect("prometheus-pushgateway runs");
        let pg = Pushgateway { child, port };
        let up = eventually(Duration::from_secs(10), || listening(port).then_some(()));
        assert!(up.is_some(), "the Pushgateway did not start");
        pg
    }

    /// The Pushgateway's own exposition, parsed.
    fn samples(&self) -> Vec<Sample> {
        let r = request(
            self.port,
            "GET",
            "/metrics",
            &[("Authorization", "Basic cHVzaGVyOnB1c2gtcGFzcw==")],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        parse_with_reference(&r.text())
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx under test as a TLS-terminating proxy in front of `upstream` (plain HTTP),
/// with `ca`'s server certificate; returns it and its https port.
fn tls_front(ca: &Ca, upstream: u16) -> (Nginx, u16) {
    let port = free_port();
    let server = format!(
        r#"
    client_max_body_size 16m;
    server {{
        listen 127.0.0.1:{port} ssl;
        access_log logs/tls-access.log;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ proxy_pass http://127.0.0.1:{upstream}; }}
    }}
"#,
        cert = ca.server_cert.display(),
        key = ca.server_key.display(),
    );
    (Nginx::start("push-tls-front", &server), port)
}

/// The requests a TLS front proxied, from its access log.
fn proxied(front: &Nginx) -> String {
    std::fs::read_to_string(front.prefix.join("logs/tls-access.log")).unwrap_or_default()
}

fn app(app: u16, metrics: u16, push: &str) -> String {
    format!(
        r#"
    prometheus_zone metrics 8m;
    {push}
    init_by_lua_block {{
        local z = require("ngxprom").zone("metrics")
        app = {{
            requests = z:counter("app_requests_total", "Requests.", {{ "code" }}),
            temp = z:gauge("app_temperature_celsius", "Temperature.", {{}}),
            latency = z:histogram("app_latency_seconds", "Latency.", {{ "route" }},
                {{ buckets = {{ 0.01, 0.1, 1 }}, quantiles = "beside" }}),
        }}
    }}
    server {{
        listen 127.0.0.1:{app};
        location = /record {{
            content_by_lua_block {{
                app.requests:labels("200"):inc(5)
                app.requests:labels("503"):inc()
                app.temp:labels():set(-3.25)
                local l = app.latency:labels("/api")
                for _, v in ipairs({{ 0.004, 0.05, 0.2, 3 }}) do l:observe(v) end
                ngx.say("ok")
            }}
        }}
        location = /bulk {{
            content_by_lua_block {{
                local pad = string.rep("x", 100)
                for i = 1, 3000 do app.requests:labels(pad .. i):inc() end
                ngx.say("ok")
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location = /metrics {{ prometheus_metrics metrics; }}
    }}
"#
    )
}

fn push_count(metrics: u16, result: &str) -> f64 {
    let (_, s) = scrape(metrics, "/metrics?name[]=nginx_push_total");
    // Constant labels may come with it: match on `result` alone.
    s.iter()
        .find(|x| {
            x.name == "nginx_push_total"
                && x.labels.get("result").map(String::as_str) == Some(result)
        })
        .map_or(0.0, |x| x.value)
}

/// Lines of the error log containing `needle`.
fn log_lines(nginx: &Nginx, needle: &str) -> Vec<String> {
    nginx
        .error_log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

#[test]
fn pushed_values_equal_scraped_ones() {
    let p = prefix("push");
    let pg = Pushgateway::start(&p, free_port(), true);
    std::fs::write(p.join("push.password"), "push-pass\n").unwrap();
    let (app_port, metrics) = (free_port(), free_port());
    let push = format!(
        "prometheus_node_id_file {dir}/state/node_id;\n    \
         prometheus_const_labels node_id=$node_id;\n    \
         prometheus_push http://127.0.0.1:{port} interval=300ms \"job=nginx-${{hostname}}\";\n    \
         prometheus_push_header X-Scope-OrgID team-a;\n    \
         prometheus_push_basic_auth pusher {dir}/push.password;",
        dir = p.display(),
        port = pg.port,
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, metrics, &push)));
    assert_eq!(get(app_port, "/record").status, 200);
    // Two pushes after the traffic: the gateway holds the final values.
    let before = push_count(metrics, "ok");
    let pushed = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "ok") >= before + 2.0).then_some(())
    });
    assert!(pushed.is_some(), "no pushes: {}", nginx.error_log());

    let job = format!("nginx-{}", hostname());
    let node_id = std::fs::read_to_string(p.join("state/node_id")).unwrap();
    let (_, ours) = scrape(metrics, "/metrics");
    let theirs: Vec<Sample> = pg
        .samples()
        .into_iter()
        .filter(|s| s.labels.get("job") == Some(&job))
        .collect();
    let key = |s: &Sample| {
        let mut l: BTreeMap<String, String> = s.labels.clone();
        l.remove("job");
        l.remove("instance");
        (s.name.clone(), l)
    };
    let theirs: BTreeMap<_, f64> = theirs.iter().map(|s| (key(s), s.value)).collect();
    let mut compared = 0;
    for s in ours.iter().filter(|s| s.name.starts_with("app_")) {
        assert_eq!(s.labels.get("node_id"), Some(&node_id.trim().to_string()));
        let got = theirs.get(&key(s));
        assert_eq!(got, Some(&s.value), "{s:?} pushed as {got:?}");
        compared += 1;
    }
    // 2 counters, 1 gauge, 6 histogram samples (4 buckets, sum, count) + summary.
    assert!(compared >= 15, "compared {compared}");
    // The gateway stamps each successful push.
    assert!(theirs.keys().any(|(n, _)| n == "push_time_seconds"));

    // Exactly one process pushes, and after a reload exactly one new one.
    let starts = log_lines(&nginx, "prometheus_push: process");
    assert_eq!(starts.len(), 1, "{starts:?}");
    nginx.reload();
    let restarted = eventually(Duration::from_secs(10), || {
        (log_lines(&nginx, "prometheus_push: process").len() == 2).then_some(())
    });
    assert!(restarted.is_some(), "{}", nginx.error_log());
    let after = push_count(metrics, "ok");
    let went_on = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "ok") >= after + 2.0).then_some(())
    });
    assert!(went_on.is_some());
    // At 300 ms, one pusher makes at most one push per 300 ms of the window (plus one
    // at its edge); two would make twice that. The window is measured, not assumed:
    // `push_count` parses each scrape (promtool, Python) after taking it, which under
    // load adds a good part of a second to the 1.5 s sleep.
    let t0 = Instant::now();
    let a = push_count(metrics, "ok");
    std::thread::sleep(Duration::from_millis(1500));
    let window = t0.elapsed();
    let pushes = push_count(metrics, "ok") - a;
    let most = (window.as_secs_f64() / 0.3).ceil() + 1.0;
    // (A loaded machine makes fewer, never more.)
    assert!(
        (1.0..=most).contains(&pushes),
        "{pushes} pushes in {window:?} (at most {most})"
    );
    assert!(nginx.crashes().is_empty());
}

#[test]
fn failures_are_counted_retried_and_never_block_requests() {
    let p = prefix("push-fail");
    // A port that accepts connections and never answers: every push times out.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let gw_port = free_port();
    let (app_port, metrics) = (free_port(), free_port());
    let push = format!("prometheus_push http://127.0.0.1:{silent_port} interval=200ms timeout=2s;");
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, metrics, &push)));
    // While the pusher waits on a gateway that never answers, requests are served.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(get(app_port, "/record").status, 200);
        // A push blocked in the event loop would hold this for its 2 s timeout.
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
    }
    let timeouts = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "timeout") >= 1.0).then_some(())
    });
    assert!(timeouts.is_some(), "{}", nginx.error_log());
    drop(silent);
    drop(nginx);

    // Nobody listening: connection errors, logged once, retried after 1 s, 2 s...
    let p2 = prefix("push-retry");
    std::fs::write(p2.join("push.password"), "wrong-pass\n").unwrap();
    let push = format!(
        "prometheus_push http://127.0.0.1:{gw_port} interval=200ms;\n    \
         prometheus_push_basic_auth pusher {}/push.password;",
        p2.display()
    );
    let (app_port, metrics) = (free_port(), free_port());
    let nginx = Nginx::start_with(p2.clone(), config(&p2, &app(app_port, metrics, &push)));
    std::thread::sleep(Duration::from_millis(2500));
    let refused = push_count(metrics, "connect");
    // Without backoff that would be about 12.
    assert!(
        (1.0..=4.0).contains(&refused),
        "{refused} attempts in 2.5 s"
    );
    assert_eq!(log_lines(&nginx, "failed: cannot connect").len(), 1);
    // The gateway comes up, with a password the pusher does not have: 401, counted.
    let pg = Pushgateway::start(&p2, gw_port, true);
    let rejected = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "http_status") >= 1.0).then_some(())
    });
    assert!(rejected.is_some(), "{}", nginx.error_log());
    assert!(nginx.error_log().contains("pushgateway answered 401"));
    drop(pg);
    drop(nginx);

    // Once the gateway takes the pushes, they succeed and the log says so.
    let p3 = prefix("push-recover");
    let (app_port, metrics) = (free_port(), free_port());
    let push = format!("prometheus_push http://127.0.0.1:{gw_port} interval=200ms;");
    let nginx = Nginx::start_with(p3.clone(), config(&p3, &app(app_port, metrics, &push)));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(push_count(metrics, "connect") >= 1.0);
    let _pg = Pushgateway::start(&p3, gw_port, false);
    let ok = eventually(Duration::from_secs(15), || {
        (push_count(metrics, "ok") >= 1.0).then_some(())
    });
    assert!(ok.is_some(), "{}", nginx.error_log());
    let back = eventually(Duration::from_secs(5), || {
        (!log_lines(&nginx, "works again").is_empty()).then_some(())
    });
    assert!(back.is_some(), "{}", nginx.error_log());
    assert!(nginx.crashes().is_empty());
}

#[test]
fn pushes_over_https_with_a_private_ca() {
    let p = prefix("push-https");
    let ca = Ca::new(&p);
    let pg = Pushgateway::start(&p, free_port(), true);
    let (front, tls) = tls_front(&ca, pg.port);
    std::fs::write(p.join("push.password"), "push-pass\n").unwrap();
    let (app_port, metrics) = (free_port(), free_port());
    let push = format!(
        "prometheus_push https://127.0.0.1:{tls}/ interval=300ms job=nginx-tls;\n    \
         prometheus_push_ca {ca};\n    \
         prometheus_push_basic_auth pusher {dir}/push.password;",
        ca = ca.cert.display(),
        dir = p.display(),
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, metrics, &push)));
    assert_eq!(get(app_port, "/record").status, 200);
    let before = push_count(metrics, "ok");
    let pushed = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "ok") >= before + 2.0).then_some(())
    });
    assert!(
        pushed.is_some(),
        "no pushes over https: {}\n{}",
        nginx.error_log(),
        front.error_log()
    );
    // What went through TLS is what the Pushgateway holds.
    let (_, ours) = scrape(metrics, "/metrics?name[]=app_requests_total");
    let theirs = pg.samples();
    let mut compared = 0;
    for s in ours.iter().filter(|s| s.name == "app_requests_total") {
        let got = theirs
            .iter()
            .find(|t| {
                t.name == s.name
                    && t.labels.get("job").map(String::as_str) == Some("nginx-tls")
                    && t.labels.get("code") == s.labels.get("code")
            })
            .map(|t| t.value);
        assert_eq!(got, Some(s.value), "{s:?}");
        compared += 1;
    }
    assert_eq!(compared, 2);
    assert!(
        proxied(&front).contains("\"PUT /metrics/job/nginx-tls HTTP/1.1\" 200"),
        "{}",
        proxied(&front)
    );
    assert_eq!(push_count(metrics, "tls"), 0.0);
    assert!(nginx.errors().is_empty(), "{:?}", nginx.errors());
    assert!(nginx.crashes().is_empty());
}

#[test]
fn an_untrusted_certificate_fails_the_push() {
    let p = prefix("push-https-untrusted");
    let ca = Ca::new(&p);
    let pg = Pushgateway::start(&p, free_port(), false);
    let (front, tls) = tls_front(&ca, pg.port);
    // No prometheus_push_ca: the system's roots, which do not know this CA.
    let (app_port, metrics) = (free_port(), free_port());
    let push =
        format!("prometheus_push https://127.0.0.1:{tls} interval=200ms job=nginx-untrusted;");
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, metrics, &push)));
    assert_eq!(get(app_port, "/record").status, 200);
    let failed = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "tls") >= 2.0).then_some(())
    });
    assert!(failed.is_some(), "{}", nginx.error_log());
    assert_eq!(push_count(metrics, "ok"), 0.0);
    // Logged once, with the reason, while it keeps failing the same way.
    let logged = log_lines(&nginx, "failed: TLS with pushgateway failed");
    assert_eq!(logged.len(), 1, "{}", nginx.error_log());
    assert!(logged[0].contains("UnknownIssuer"), "{}", logged[0]);
    // Nothing reached the gateway: no group of ours, no request through the proxy.
    assert!(
        pg.samples()
            .iter()
            .all(|s| s.labels.get("job").map(String::as_str) != Some("nginx-untrusted")),
        "{:?}",
        pg.samples()
    );
    assert_eq!(proxied(&front), "");
    assert!(nginx.crashes().is_empty());
}

#[test]
fn large_pushes_wait_for_100_continue() {
    // Over 64 KiB the pusher sends `Expect: 100-continue` and the body only on the
    // gateway's go-ahead (so a gateway refusing a large body answers rather than resets;
    // the unit test a_refusal_before_a_large_body_is_read_is_the_answer shows that
    // case). The real Pushgateway takes such pushes, and refuses them with a 401.
    let p = prefix("push-large");
    let pg = Pushgateway::start(&p, free_port(), true);
    std::fs::write(p.join("push.password"), "push-pass\n").unwrap();
    let (app_port, metrics) = (free_port(), free_port());
    let push = format!(
        "prometheus_push http://127.0.0.1:{} interval=300ms job=nginx-large;\n    \
         prometheus_push_basic_auth pusher {}/push.password;",
        pg.port,
        p.display()
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, metrics, &push)));
    assert_eq!(get(app_port, "/bulk").status, 200);
    let size = get(metrics, "/metrics").body.len();
    assert!(size > 300 << 10, "{size} bytes");
    let before = push_count(metrics, "ok");
    let pushed = eventually(Duration::from_secs(15), || {
        (push_count(metrics, "ok") >= before + 2.0).then_some(())
    });
    assert!(pushed.is_some(), "{}", nginx.error_log());
    let held = pg
        .samples()
        .iter()
        .filter(|s| {
            s.name == "app_requests_total"
                && s.labels.get("job").map(String::as_str) == Some("nginx-large")
        })
        .count();
    assert_eq!(held, 3000);

    // A wrong password: every large push is refused, and counted as the refusal.
    std::fs::write(p.join("push.password"), "wrong-pass\n").unwrap();
    nginx.reload();
    let rejected = eventually(Duration::from_secs(15), || {
        (push_count(metrics, "http_status") >= 2.0).then_some(())
    });
    assert!(rejected.is_some(), "{}", nginx.error_log());
    assert_eq!(push_count(metrics, "io"), 0.0, "{}", nginx.error_log());
    assert!(nginx.error_log().contains("pushgateway answered 401"));
    assert!(nginx.crashes().is_empty());
}

#[test]
fn push_configuration_errors() {
    let dir = prefix("push-conf");
    let d = dir.display();
    std::fs::write(dir.join("not-a.pem"), "no certificate here\n").unwrap();
    let cases = [
        (
            "prometheus_push ftp://pg:9091;".to_string(),
            "must start with http:// or https://",
        ),
        ("prometheus_push pg:9091;".into(), "must start with http://"),
        (
            "prometheus_push https://pg:99999;".into(),
            "prometheus_push: push URL \"https://pg:99999\": invalid port \"99999\"",
        ),
        (
            "prometheus_push http://pg:9091; prometheus_push_ca ca.pem;".into(),
            "is not https://",
        ),
        ("prometheus_push_ca ca.pem;".into(), "need prometheus_push"),
        (
            format!("prometheus_push https://pg:9091; prometheus_push_ca {d}/none.pem;"),
            "prometheus_push_ca: cannot read",
        ),
        (
            format!("prometheus_push https://pg:9091; prometheus_push_ca {d}/not-a.pem;"),
            "holds no PEM certificate",
        ),
        (
            "prometheus_push http://pg:9091 interval=often;".into(),
            "invalid interval \"often\"",
        ),
        (
            "prometheus_push http://pg:9091 every=1s;".into(),
            "unknown parameter \"every=1s\"",
        ),
        (
            "prometheus_push http://pg:9091 zone=other;".into(),
            "prometheus_push: unknown zone \"other\"",
        ),
        (
            "prometheus_push http://pg:9091 job=nginx-$node;".into(),
            "unknown variable \"node\"",
        ),
        (
            "prometheus_push_header X-A b;".into(),
            "need prometheus_push",
        ),
        (
            "prometheus_push http://pg:9091; prometheus_push_header Host x;".into(),
            "prometheus_push_header",
        ),
        (
            format!("prometheus_push http://pg:9091; prometheus_push_basic_auth u {d}/none;"),
            "prometheus_push_basic_auth: cannot read",
        ),
    ];
    for (directive, want) in cases {
        let err = nginx_t("push-bad", &format!("prometheus_zone m 1m;\n{directive}")).unwrap_err();
        assert!(err.contains(want), "{directive}: {err}");
    }
    nginx_t(
        "push-good",
        "prometheus_zone m 1m;\nprometheus_push http://pg:9091 interval=10s \"job=a-${hostname}\";",
    )
    .unwrap(); // https with the system's roots, and with a CA file.
    nginx_t(
        "push-good-tls",
        "prometheus_zone m 1m;\nprometheus_push https://pg:9443/gw interval=10s;",
    )
    .unwrap();
    let ca = Ca::new(&dir);
    nginx_t(
        "push-good-ca",
        &format!(
            "prometheus_zone m 1m;\nprometheus_push https://pg:9443;\nprometheus_push_ca {};",
            ca.cert.display()
        ),
    )
    .unwrap();
}

/// Requests answered while the Pushgateway holds a push (`peer.held()` before and after
/// each), out of at most 400 tries; stops at `want`.
fn served_while_held(app_port: u16, peer: &Peer, want: usize) -> usize {
    let mut served = 0;
    for _ in 0..400 {
        let held = peer.held() > 0;
        assert_eq!(get(app_port, "/record").status, 200);
        if held && peer.held() > 0 {
            served += 1;
            if served == want {
                break;
            }
        }
    }
    served
}

/// A Pushgateway that stalls (accepts and never answers; answers its head and stalls
/// mid-body) holds the push thread only until the push's deadline: requests are served
/// all the while, each stalled push is counted, and once the Pushgateway answers again
/// the next pushes succeed and it holds the values scraped from nginx.
#[test]
fn a_stalled_pushgateway_never_holds_requests_and_pushes_resume() {
    let p = prefix("push-stall");
    let pg = Pushgateway::start(&p, free_port(), false);
    // Between nginx and the real Pushgateway: passes bytes through, or stalls on cue.
    let peer = Peer::start(Behaviour::Forward(pg.port));
    let (app_port, metrics) = (free_port(), free_port());
    let push = format!(
        "prometheus_push http://127.0.0.1:{} interval=200ms timeout=3s;",
        peer.port
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, metrics, &push)));
    let ok = eventually(Duration::from_secs(10), || {
        (push_count(metrics, "ok") >= 1.0).then_some(())
    });
    assert!(ok.is_some(), "{}", nginx.error_log());

    let stalls: [(&str, Behaviour, &[&str]); 2] = [
        ("never answers", Behaviour::Hang, &["timeout"]),
        (
            "stalls mid-body",
            Behaviour::SendThenHang(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\nbusy, and"
                    .to_vec(),
            ),
            &["timeout", "http_status"],
        ),
    ];
    for (what, behaviour, reasons) in stalls {
        let failed = |m: u16| -> f64 { reasons.iter().map(|r| push_count(m, r)).sum() };
        let before = failed(metrics);
        peer.set(behaviour);
        let held = eventually(Duration::from_secs(10), || (peer.held() > 0).then_some(()));
        assert!(held.is_some(), "{what}: no push reached the stalling peer");
        assert_eq!(served_while_held(app_port, &peer, 30), 30, "{what}");
        let counted = eventually(Duration::from_secs(15), || {
            (failed(metrics) >= before + 1.0).then_some(())
        });
        assert!(counted.is_some(), "{what}: {}", nginx.error_log());
    }

    // The Pushgateway answers again: pushes succeed, with the latest values.
    peer.set(Behaviour::Forward(pg.port));
    assert_eq!(get(app_port, "/record").status, 200);
    let (_, ours) = scrape(metrics, "/metrics");
    let want = value(&ours, "app_requests_total", &[("code", "200")]).unwrap();
    let resumed = eventually(Duration::from_secs(15), || {
        let theirs = pg.samples();
        let got = theirs
            .iter()
            .find(|s| {
                s.name == "app_requests_total"
                    && s.labels.get("code").map(String::as_str) == Some("200")
            })
            .map(|s| s.value);
        (got == Some(want)).then_some(())
    });
    assert!(
        resumed.is_some(),
        "pushes did not resume: {}",
        nginx.error_log()
    );
    let back = eventually(Duration::from_secs(5), || {
        (!log_lines(&nginx, "works again").is_empty()).then_some(())
    });
    assert!(back.is_some(), "{}", nginx.error_log());
    assert!(nginx.crashes().is_empty());
}
