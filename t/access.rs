//! Who gets the metrics: credentials files (Basic and bearer), address lists with
//! trusted proxies, TLS on the metrics listener and a client on another host (a network
//! namespace). A refused request gets 400, 401 or 403 and never a byte of metric data,
//! whatever format or filter it asks for.

mod harness;

use base64::Engine;
use harness::*;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A credentials line, made by `scripts/credential.sh` as the README tells operators
/// (so the test also checks that command), not with the module's own code.
fn credential(kind: &str, name: &str, secret: &str) -> String {
    let script = root().join("scripts/credential.sh");
    let out = pipe_through(script.to_str().unwrap(), &[kind, name], secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string();
    assert!(
        !line.contains(secret),
        "the secret itself was printed: {line}"
    );
    line
}

fn write_credentials(dir: &Path) -> String {
    let path = dir.join("metrics.credentials");
    let text = format!(
        "# who may scrape\n{}\n{}\n",
        credential("basic", "prometheus", "s3cret pass"),
        credential("bearer", "ci", "tok-0123456789abcdef"),
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn basic(user: &str, pass: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

/// A zone with one family of our own, recorded once.
fn app(port: u16, server: &str) -> String {
    format!(
        r#"
    prometheus_zone metrics 4m;
    init_by_lua_block {{
        local z = require("ngxprom").zone("metrics")
        secret_family = z:counter("app_secret_total", "Something only scrapers may read.", {{}},
            {{ group = "http" }})
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /record {{
            content_by_lua_block {{
                secret_family:labels():inc(7)
                ngx.say("ok")
            }}
        }}
        {server}
    }}
"#
    )
}

/// Every way of asking for data: formats, gzip, filters, groups.
const ASKS: [(&str, &[(&str, &str)]); 7] = [
    ("/metrics", &[]),
    ("/metrics?format=json", &[]),
    ("/metrics?format=openmetrics", &[]),
    (
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    ),
    ("/metrics", &[("Accept-Encoding", "gzip")]),
    ("/metrics?name[]=app_secret_total", &[]),
    ("/metrics?group=http", &[]),
];

/// Asserts that every ask, with `extra` headers, from `from`, is refused with `status`.
fn assert_refused(port: u16, from: Option<IpAddr>, extra: &[(&str, &str)], status: u16) {
    for (path, headers) in ASKS {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        h.extend_from_slice(extra);
        let r = request_full(from, port, "GET", path, &h, b"");
        assert_eq!(r.status, status, "{path} {h:?}: {}", r.text());
        let body = r.text();
        for leak in ["app_secret", "nginx_metric", "# TYPE", "\"families\""] {
            assert!(!body.contains(leak), "{path} {h:?} leaked {leak}: {body}");
        }
        assert!(r.header("content-encoding").is_none(), "{path}: {r:?}");
    }
}

fn assert_served(port: u16, from: Option<IpAddr>, extra: &[(&str, &str)]) {
    let r = request_full(from, port, "GET", "/metrics", extra, b"");
    assert_eq!(r.status, 200, "{extra:?}: {}", r.text());
    assert!(r.text().contains("app_secret_total 7"), "{}", r.text());
}

#[test]
fn basic_and_bearer_credentials() {
    let (app_port, port) = (free_port(), free_port());
    let p = prefix("auth");
    // A relative path is relative to the configuration's directory.
    write_credentials(&p);
    let server = format!(
        r#"}}
    server {{
        listen 127.0.0.1:{port};
        prometheus_allow 127.0.0.0/8;
        prometheus_auth_file metrics.credentials;
        location = /metrics {{ prometheus_metrics metrics; }}
        location = /open {{
            prometheus_auth_file off;
            prometheus_metrics metrics;
        }}"#
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, &server)));
    assert_eq!(get(app_port, "/record").status, 200);

    // Nothing, wrong, garbage: 401 with a challenge for each scheme the file has.
    let no = request(port, "GET", "/metrics", &[], b"");
    assert_eq!(no.status, 401);
    let challenge = no.header("www-authenticate").unwrap_or("");
    assert!(challenge.contains("realm=\"metrics\""), "{no:?}");
    let wrong_password = basic("prometheus", "s3cret pasS");
    let wrong_user = basic("prometheus2", "s3cret pass");
    let token_as_password = basic("ci", "tok-0123456789abcdef");
    let long = format!("Bearer {}", "a".repeat(2000));
    for bad in [
        wrong_password.as_str(),
        wrong_user.as_str(),
        token_as_password.as_str(),
        "Bearer tok-0123456789abcdeF",
        "Bearer s3cret pass",
        "Basic !!!!",
        "Basic",
        "Negotiate abc",
        "\u{1}\u{2}garbage",
    ] {
        assert_refused(port, None, &[("Authorization", bad)], 401);
    }
    assert_refused(port, None, &[], 401);
    // Oversized, or given twice: a bad request.
    assert_refused(port, None, &[("Authorization", &long)], 400);
    let good = basic("prometheus", "s3cret pass");
    assert_refused(
        port,
        None,
        &[("Authorization", &good), ("Authorization", &good)],
        400,
    );
    // Larger than nginx's header buffers: nginx itself answers 400.
    let huge = format!("Bearer {}", "a".repeat(20_000));
    let r = request(port, "GET", "/metrics", &[("Authorization", &huge)], b"");
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("app_secret"));

    // The right ones, in every format.
    assert_served(port, None, &[("Authorization", &good)]);
    assert_served(
        port,
        None,
        &[("Authorization", "Bearer tok-0123456789abcdef")],
    );
    assert_served(
        port,
        None,
        &[("Authorization", "bearer   tok-0123456789abcdef  ")],
    );
    let r = request(
        port,
        "GET",
        "/metrics?format=json",
        &[("Authorization", &good)],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("app_secret_total"));
    // `off` in a location turns credentials off there (the address list still holds).
    let r = request(port, "GET", "/open", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(nginx.crashes().is_empty(), "{:?}", nginx.crashes());
}

#[test]
fn addresses_and_credentials_both_apply() {
    let (app_port, port) = (free_port(), free_port());
    let p = prefix("auth-cidr");
    let creds = write_credentials(&p);
    let server = format!(
        r#"}}
    server {{
        listen 127.0.0.1:{port};
        prometheus_allow 127.0.0.2;
        prometheus_auth_file {creds};
        location = /metrics {{ prometheus_metrics metrics; }}"#
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, &server)));
    assert_eq!(get(app_port, "/record").status, 200);
    let good = basic("prometheus", "s3cret pass");
    let allowed: IpAddr = "127.0.0.2".parse().unwrap();
    // A refused address is refused even with valid credentials: 403 before 401.
    assert_refused(port, None, &[("Authorization", &good)], 403);
    assert_refused(port, Some(allowed), &[], 401);
    assert_served(port, Some(allowed), &[("Authorization", &good)]);
    assert!(nginx.crashes().is_empty());
}

#[test]
fn credentials_file_errors_fail_the_configuration() {
    let p = prefix("auth-conf");
    let dir = p.display().to_string();
    let zone = "prometheus_zone metrics 1m;";
    let server = |file: &str| {
        format!(
            "{zone}\nserver {{ listen 127.0.0.1:1; prometheus_auth_file {file}; \
             location = /metrics {{ prometheus_metrics; }} }}"
        )
    };
    let missing = format!("{dir}/nope.credentials");
    let err = nginx_t("auth-missing", &server(&missing)).unwrap_err();
    assert!(
        err.contains(&format!("cannot read \"{missing}\"")) && err.contains("No such file"),
        "{err}"
    );
    // A directory cannot be read as a file.
    let err = nginx_t("auth-dir", &server(&dir)).unwrap_err();
    assert!(err.contains(&format!("cannot read \"{dir}\"")), "{err}");
    // Plain-text secrets are refused, with the line.
    let plain = format!("{dir}/plain.credentials");
    std::fs::write(&plain, "# ok\nbasic prometheus hunter2\n").unwrap();
    let err = nginx_t("auth-plain", &server(&plain)).unwrap_err();
    assert!(
        err.contains(&format!("prometheus_auth_file \"{plain}\": line 2")),
        "{err}"
    );
    let empty = format!("{dir}/empty.credentials");
    std::fs::write(&empty, "# nobody yet\n").unwrap();
    let err = nginx_t("auth-empty", &server(&empty)).unwrap_err();
    assert!(err.contains("no credentials"), "{err}");
    let good = write_credentials(&p);
    nginx_t("auth-good", &server(&good)).unwrap();
    let err = nginx_t(
        "auth-twice",
        &format!(
            "{zone}\nserver {{ listen 127.0.0.1:1; prometheus_auth_file {good}; \
             prometheus_auth_file {good}; }}"
        ),
    )
    .unwrap_err();
    assert!(err.contains("prometheus_auth_file: is duplicate"), "{err}");
    let err = nginx_t(
        "proxies-bad",
        &format!("{zone}\nprometheus_trusted_proxies 10.0.0.1/8;"),
    )
    .unwrap_err();
    assert!(
        err.contains("prometheus_trusted_proxies: invalid address"),
        "{err}"
    );
    // Unreadable: a root-only file, and `nginx -t` run as the unprivileged user.
    let q = prefix("auth-unreadable");
    let secret = q.join("root-only.credentials");
    std::fs::write(&secret, credential("basic", "p", "x")).unwrap();
    let conf = config(&q, &server(&secret.display().to_string()));
    std::fs::write(q.join("nginx.conf"), conf).unwrap();
    let chown = |owner: &str, path: &Path| {
        let ok = Command::new("chown").args(["-R", owner]).arg(path).status();
        assert!(ok.unwrap().success());
    };
    chown("nobody:nogroup", &q);
    chown("root:root", &secret);
    Command::new("chmod")
        .arg("600")
        .arg(&secret)
        .status()
        .unwrap();
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&harness::build().nginx)
        .args(["-t", "-p"])
        .arg(&q)
        .arg("-c")
        .arg(q.join("nginx.conf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "cannot read \"{}\": Permission denied",
            secret.display()
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_dir_all(&q);
}

#[test]
fn forwarded_for_only_from_trusted_proxies() {
    let (app_port, port) = (free_port(), free_port());
    let server = format!(
        r#"}}
    server {{
        listen 127.0.0.1:{port};
        prometheus_allow 192.0.2.0/24;
        prometheus_trusted_proxies 127.0.0.1 10.0.0.0/8;
        location = /metrics {{ prometheus_metrics metrics; }}"#
    );
    let nginx = Nginx::start("xff", &app(app_port, &server));
    assert_eq!(get(app_port, "/record").status, 200);
    let untrusted: IpAddr = "127.0.0.2".parse().unwrap();
    // The proxy is not a client of its own.
    assert_refused(port, None, &[], 403);
    // The trusted proxy says the client is allowed.
    assert_served(port, None, &[("X-Forwarded-For", "192.0.2.5")]);
    assert_served(
        port,
        None,
        &[("X-Forwarded-For", "198.51.100.1, 192.0.2.5, 10.1.1.1")],
    );
    // The rightmost untrusted entry decides; what a client prepends does not.
    assert_refused(
        port,
        None,
        &[("X-Forwarded-For", "192.0.2.5, 198.51.100.1")],
        403,
    );
    // The same header from anyone else is ignored.
    assert_refused(
        port,
        Some(untrusted),
        &[("X-Forwarded-For", "192.0.2.5")],
        403,
    );
    // A trusted proxy sending garbage: a bad request, never a pass.
    assert_refused(
        port,
        None,
        &[("X-Forwarded-For", "192.0.2.5, not-an-ip")],
        400,
    );
    assert!(nginx.crashes().is_empty());
}

/// `curl` with `args`; returns the status code (0 when no response) and the body.
fn curl(prefix_cmd: &[&str], args: &[&str]) -> (u16, String, i32) {
    let mut cmd = Command::new(prefix_cmd.first().copied().unwrap_or("curl"));
    cmd.args(prefix_cmd.iter().skip(1));
    if !prefix_cmd.is_empty() {
        cmd.arg("curl");
    }
    let out = cmd
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_string(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn tls_metrics_listener_from_nginx_dir() {
    let p = prefix("tls");
    let certs = Ca::new(&p);
    let cert = certs.cert.display().to_string();
    let creds = write_credentials(&p);
    let port = free_port();
    let node_file = p.join("state/node_id");
    let conf = render_template(
        "conf/metrics-tls.conf",
        &p,
        &[
            ("METRICS_ADDR", "127.0.0.1".into()),
            ("METRICS_TLS_PORT", port.to_string()),
            ("TLS_CERT", certs.server_cert.display().to_string()),
            ("TLS_KEY", certs.server_key.display().to_string()),
            ("CREDENTIALS", creds),
            ("ALLOW", "127.0.0.0/8".into()),
            ("TRUSTED_PROXIES", "192.0.2.1".into()),
            ("NODE_ID_FILE", node_file.display().to_string()),
        ],
    );
    let nginx = Nginx::start_with(p.clone(), conf);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let (code, body, _) = curl(
        &[],
        &["--cacert", &cert, "-u", "prometheus:s3cret pass", &url],
    );
    assert_eq!(code, 200, "{body}");
    let node_id = std::fs::read_to_string(&node_file).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let info = body
        .lines()
        .find(|l| l.starts_with("nginx_prometheus_build_info{"))
        .unwrap_or_else(|| panic!("no build info:\n{body}"));
    assert!(
        info.starts_with(&format!(
            "nginx_prometheus_build_info{{node_id=\"{}\",hostname=\"{}\",version=\"{}\"",
            node_id.trim(),
            host.trim(),
            env!("CARGO_PKG_VERSION")
        )),
        "{info}"
    );
    promtool_check(&body).unwrap();
    // The certificate is what the client checks: without trusting it, no connection.
    let (code, _, exit) = curl(&[], &["-u", "prometheus:s3cret pass", &url]);
    assert_eq!(
        (code, exit),
        (0, 60),
        "curl must refuse an unknown certificate"
    );
    // Over TLS, still no data without credentials.
    let (code, body, _) = curl(&[], &["--cacert", &cert, &url]);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("nginx_"), "{body}");
    // Plain HTTP to the TLS port: nginx's 400, no data.
    let r = request(port, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("nginx_"), "{}", r.text());

    // A real Prometheus over TLS: with Basic auth, with a bearer token, and without.
    let target = format!("['127.0.0.1:{port}']");
    let tls = format!("    scheme: https\n    tls_config:\n      ca_file: {cert}\n");
    let prom = Prometheus::start(&format!(
        "  - job_name: basic\n{tls}    basic_auth:\n      username: prometheus\n      \
         password: 's3cret pass'\n    static_configs:\n      - targets: {target}\n\
         \x20 - job_name: bearer\n{tls}    authorization:\n      credentials: tok-0123456789abcdef\n\
         \x20   static_configs:\n      - targets: {target}\n\
         \x20 - job_name: anonymous\n{tls}    static_configs:\n      - targets: {target}\n"
    ));
    let ups = eventually(Duration::from_secs(60), || {
        let basic = prom.query("nginx_prometheus_build_info{job=\"basic\"}")?;
        let bearer = prom.query("nginx_prometheus_build_info{job=\"bearer\"}")?;
        let anonymous = prom.query("up{job=\"anonymous\"}")?;
        Some((basic, bearer, anonymous))
    });
    assert_eq!(ups, Some((1.0, 1.0, 0.0)), "{}", prom.log());
    assert_eq!(prom.query("up{job=\"basic\"}"), Some(1.0));
    assert!(nginx.crashes().is_empty());
}

/// A network namespace joined to this host by a veth pair: a client on another host,
/// as far as nginx can tell. Removed on drop.
struct OtherHost {
    name: String,
    host_if: String,
    host_ip: String,
    ip: String,
}

impl OtherHost {
    fn create() -> OtherHost {
        let pid = std::process::id();
        let net = format!("10.213.{}", pid % 250);
        let h = OtherHost {
            name: format!("ngxprom{pid}"),
            host_if: format!("vnp{pid}"),
            host_ip: format!("{net}.1"),
            ip: format!("{net}.2"),
        };
        let peer = format!("vnq{pid}");
        let ns = |args: &[&str]| {
            let mut v = vec!["netns", "exec", h.name.as_str()];
            v.extend_from_slice(args);
            v.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), h.name.clone()],
            [
                "link", "add", &h.host_if, "type", "veth", "peer", "name", &peer,
            ]
            .map(String::from)
            .to_vec(),
            ["link", "set", &peer, "netns", &h.name]
                .map(String::from)
                .to_vec(),
            [
                "addr",
                "add",
                &format!("{}/30", h.host_ip),
                "dev",
                &h.host_if,
            ]
            .map(String::from)
            .to_vec(),
            ["link", "set", &h.host_if, "up"].map(String::from).to_vec(),
            ns(&["ip", "addr", "add", &format!("{}/30", h.ip), "dev", &peer]),
            ns(&["ip", "link", "set", &peer, "up"]),
            ns(&["ip", "link", "set", "lo", "up"]),
        ];
        for s in steps {
            let out = Command::new("ip").args(&s).output().unwrap();
            assert!(
                out.status.success(),
                "ip {}: {} (this test needs root and network namespaces)",
                s.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        h
    }

    fn curl(&self, args: &[&str]) -> (u16, String) {
        let (code, body, _) = curl(&["ip", "netns", "exec", &self.name], args);
        (code, body)
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn a_client_on_another_host() {
    let other = OtherHost::create();
    let p = prefix("netns");
    let creds = write_credentials(&p);
    let (app_port, port) = (free_port(), free_port());
    let server = format!(
        r#"}}
    server {{
        listen {host}:{port};
        listen 127.0.0.1:{port};
        location = /metrics {{
            prometheus_allow {client};
            prometheus_metrics metrics;
        }}
        location = /elsewhere {{
            prometheus_allow 10.99.0.0/16;
            prometheus_metrics metrics;
        }}
        location = /default {{
            prometheus_metrics metrics;
        }}
        location = /authenticated {{
            prometheus_allow {client};
            prometheus_auth_file {creds};
            prometheus_metrics metrics;
        }}"#,
        host = other.host_ip,
        client = other.ip,
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, &server)));
    assert_eq!(get(app_port, "/record").status, 200);
    let url = |path: &str| format!("http://{}:{port}{path}", other.host_ip);

    let (code, body) = other.curl(&[&url("/metrics")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("app_secret_total 7"), "{body}");
    // Loopback is not on that list.
    assert_refused(port, None, &[], 403);
    for path in [
        "/elsewhere",
        "/default",
        "/elsewhere?format=json",
        "/default?name[]=app_secret_total",
    ] {
        let (code, body) = other.curl(&[&url(path)]);
        assert_eq!(code, 403, "{path}: {body}");
        assert!(!body.contains("app_secret"), "{path}: {body}");
    }
    // With no rules a location serves loopback only.
    let r = get(port, "/default");
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, body) = other.curl(&[&url("/authenticated")]);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("app_secret"), "{body}");
    let (code, body) = other.curl(&["-u", "prometheus:s3cret pass", &url("/authenticated")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("app_secret_total 7"));
    let (code, body) = other.curl(&[
        "-H",
        "Authorization: Bearer tok-0123456789abcdef",
        &url("/authenticated"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(nginx.crashes().is_empty());
}

#[test]
fn a_refused_request_body_never_passes_for_another_request() {
    let (app_port, port) = (free_port(), free_port());
    let p = prefix("smuggle");
    let creds = write_credentials(&p);
    let server = format!(
        r#"}}
    server {{
        listen 127.0.0.1:{port};
        prometheus_allow 127.0.0.0/8;
        prometheus_auth_file {creds};
        location = /metrics {{ prometheus_metrics metrics; }}"#
    );
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, &server)));
    assert_eq!(get(app_port, "/record").status, 200);
    // The body of a refused POST holds a request with valid credentials; on a kept-alive
    // connection it must be read away as a body, not answered as a request.
    let inner = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        basic("prometheus", "s3cret pass")
    );
    let raw = format!(
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{inner}\
         GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        inner.len()
    );
    let out = exchange(port, raw.as_bytes());
    let out = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 401 Unauthorized"],
        "{out}"
    );
    assert!(!out.contains("app_secret"), "{out}");
    assert!(nginx.crashes().is_empty());
}

#[test]
fn protected_locations_follow_the_metrics_rules() {
    let (app_port, port) = (free_port(), free_port());
    let p = prefix("protect");
    write_credentials(&p);
    let server = format!(
        r#"}}
    server {{
        listen 127.0.0.1:{port};
        prometheus_allow 127.0.0.1;
        prometheus_auth_file metrics.credentials;
        location = /metrics {{ prometheus_metrics metrics; }}
        location = /nginx_status {{ prometheus_protect on; stub_status; }}
        location /files/ {{
            prometheus_protect on;
            alias {files}/;
            location /files/open/ {{ prometheus_protect off; alias {files}/; }}
        }}
        location = /unguarded {{ return 200 "anyone\n"; }}"#,
        files = p.join("html").display()
    );
    std::fs::create_dir_all(p.join("html")).unwrap();
    std::fs::write(p.join("html/report.txt"), "private report\n").unwrap();
    Command::new("chmod")
        .args(["-R", "755"])
        .arg(p.join("html"))
        .status()
        .unwrap();
    let nginx = Nginx::start_with(p.clone(), config(&p, &app(app_port, &server)));
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let good = basic("prometheus", "s3cret pass");
    for path in ["/metrics", "/nginx_status", "/files/report.txt"] {
        // Refused address: 403 before credentials are looked at.
        let r = request_full(
            Some(other),
            port,
            "GET",
            path,
            &[("Authorization", &good)],
            b"",
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (403, "Forbidden\n"),
            "{path}"
        );
        // No credentials: 401 with the challenge.
        let r = request_full(None, port, "GET", path, &[], b"");
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        // (Basic and Bearer: the harness keeps the last of repeated headers.)
        assert!(r.header("www-authenticate").is_some(), "{path}");
        assert!(
            !r.text().contains("private") && !r.text().contains("Active"),
            "{path}"
        );
        // Garbage: 400. A refused POST's body is read away, not taken as a request.
        let r = request_full(
            None,
            port,
            "GET",
            path,
            &[("Authorization", "Basic !!")],
            b"",
        );
        assert_eq!(r.status, 401, "{path}");
        let r = request_full(
            None,
            port,
            "POST",
            path,
            &[],
            b"GET /unguarded HTTP/1.0\r\n\r\n",
        );
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.text().contains("anyone"), "{path}");
        // Allowed and authenticated: the location's own content.
        let r = request_full(None, port, "GET", path, &[("Authorization", &good)], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = request_full(
        None,
        port,
        "GET",
        "/files/report.txt",
        &[("Authorization", &good)],
        b"",
    );
    assert_eq!(r.text(), "private report\n");
    // `off` below, and locations that never asked, serve everyone as before.
    let r = request_full(Some(other), port, "GET", "/files/open/report.txt", &[], b"");
    assert_eq!(r.status, 200);
    let r = request_full(Some(other), port, "GET", "/unguarded", &[], b"");
    assert_eq!(r.text(), "anyone\n");
    assert!(nginx.errors().is_empty(), "{:?}", nginx.errors());

    let err = nginx_t(
        "protect-bad",
        "server { listen 127.0.0.1:1; location / { prometheus_protect maybe; } }",
    )
    .unwrap_err();
    assert!(
        err.contains("prometheus_protect: invalid value \"maybe\" (on or off)"),
        "{err}"
    );
}

/// `::ffff:a.b.c.d` in a rule is the IPv4 address `a.b.c.d` (clients are unmapped the
/// same way), and an IPv6 network holding the whole mapped range holds IPv4 clients:
/// in `prometheus_deny`, `prometheus_allow` and `prometheus_trusted_proxies`.
#[test]
fn ipv4_mapped_rules_match_ipv4_clients() {
    let (app_port, mapped_deny, dual_stack, mapped_allow, mapped_proxy) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let server = format!(
        r#"}}
    server {{
        listen 127.0.0.1:{mapped_deny};
        prometheus_allow all;
        prometheus_deny ::ffff:127.0.0.2;
        location = /metrics {{ prometheus_metrics metrics; }}
    }}
    server {{
        listen [::]:{dual_stack} ipv6only=off;
        prometheus_deny ::/0;
        location = /metrics {{ prometheus_metrics metrics; }}
    }}
    server {{
        listen 127.0.0.1:{mapped_allow};
        prometheus_allow ::ffff:127.0.0.0/120;
        prometheus_deny ::ffff:127.0.0.1;
        location = /metrics {{ prometheus_metrics metrics; }}
    }}
    server {{
        listen 127.0.0.1:{mapped_proxy};
        prometheus_allow 192.0.2.0/24;
        prometheus_trusted_proxies ::ffff:127.0.0.1;
        location = /metrics {{ prometheus_metrics metrics; }}"#
    );
    let nginx = Nginx::start("mapped", &app(app_port, &server));
    assert_eq!(get(app_port, "/record").status, 200);
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    // deny ::ffff:127.0.0.2 refuses 127.0.0.2, and only it.
    assert_refused(mapped_deny, Some(other), &[], 403);
    assert_served(mapped_deny, None, &[]);
    // deny ::/0 on a dual-stack listener: an IPv4 client (::ffff:127.0.0.1 on the
    // socket) is refused.
    assert_refused(dual_stack, None, &[], 403);
    // allow ::ffff:127.0.0.0/120 is 127.0.0.0/24; deny ::ffff:127.0.0.1 is 127.0.0.1.
    assert_served(mapped_allow, Some(other), &[]);
    assert_refused(mapped_allow, None, &[], 403);
    // A trusted proxy written mapped is believed when it connects over IPv4.
    assert_served(mapped_proxy, None, &[("X-Forwarded-For", "192.0.2.5")]);
    assert_refused(
        mapped_proxy,
        None,
        &[("X-Forwarded-For", "198.51.100.1")],
        403,
    );
    assert!(nginx.crashes().is_empty());
    assert!(nginx.errors().is_empty(), "{:?}", nginx.errors());
}
