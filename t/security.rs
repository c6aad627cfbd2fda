//! Hostile input against the real gateway: what a client puts in a URL never reaches
//! the upstream raw, malformed Admin input gets a 400 naming the field (never a 500 or
//! a Lua error in the log), every list an Admin call can grow is bounded, families of
//! two plugins never merge, and the metrics port's other pages follow its rules.

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// An upstream that records the head of every request it reads, on kept-alive
/// connections too, and answers each with its own request line. A request smuggled
/// inside another shows up as a head of its own.
struct Recorder {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve_connection(conn, &seen));
            }
        });
        Recorder { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.heads.lock().unwrap().clear();
    }
}

fn serve_connection(mut conn: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let head = String::from_utf8_lossy(&head[..end]).into_owned();
            let line = head.lines().next().unwrap_or_default().to_string();
            seen.lock().unwrap().push(head);
            let body = format!("{line}\n");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if conn.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Bytes as they are, for what `request` cannot write (bytes that are not UTF-8).
fn raw_request(port: u16, bytes: &[u8]) -> Response {
    parse_response(&exchange(port, bytes))
}

fn form(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let r = request(port, method, path, &[FORM], body.as_bytes());
    (r.status, body_of(&r))
}

/// No Lua error, alert or crash in the error log.
fn assert_clean_log(gw: &Gateway) {
    let errors = gw.nginx.errors();
    assert!(errors.is_empty(), "error log:\n{}", errors.join("\n"));
    assert!(gw.nginx.crashes().is_empty());
}

#[test]
fn the_proxy_forwards_the_path_escaped_and_never_splits_a_request() {
    let gw = start_gateway("security-proxy", &[]);
    let up = Recorder::start();
    created(admin(
        gw.admin,
        "POST",
        "/services",
        Some(json!({"name": "echo", "url": format!("http://127.0.0.1:{}", up.port)})),
    ));
    created(admin(
        gw.admin,
        "POST",
        "/services/echo/routes",
        Some(json!({"name": "echo", "paths": ["/echo"]})),
    ));
    created(admin(
        gw.admin,
        "POST",
        "/services",
        Some(json!({"name": "base", "url": format!("http://127.0.0.1:{}/base%20dir/", up.port)})),
    ));
    created(admin(
        gw.admin,
        "POST",
        "/services/base/routes",
        Some(json!({"name": "based", "paths": ["/b%C3%A4se"], "strip_path": true})),
    ));
    settle(&gw);

    // What the client sent, escaped, is what the upstream gets; the route's prefix
    // (matched decoded) is stripped from the escaped form.
    let cases = [
        ("/echo/b%20c%3Fq=1", "GET /b%20c%3Fq=1 HTTP/1.1"),
        ("/echo/a%2Fb/c?x=1&y=%20", "GET /a%2Fb/c?x=1&y=%20 HTTP/1.1"),
        ("/echo/caf%C3%A9", "GET /caf%C3%A9 HTTP/1.1"),
        // Raw bytes nginx accepts in a path are escaped.
        ("/echo/caf\u{e9}/\"q\"", "GET /caf%C3%A9/%22q%22 HTTP/1.1"),
        // nginx merged the slashes and resolved the dot segments: its normalized
        // path is sent, escaped.
        ("/echo//x/./y/../z%20w", "GET /x/z%20w HTTP/1.1"),
        // The service path and a decoded route prefix ("/bäse").
        (
            "/b%c3%a4se/more%0Ahere",
            "GET /base%20dir/more%0Ahere HTTP/1.1",
        ),
    ];
    for (path, want) in cases {
        up.clear();
        let r = request(gw.proxy, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.text(), format!("{want}\n"), "{path}");
        let heads = up.heads();
        assert_eq!(heads.len(), 1, "{path}: {heads:?}");
    }

    // The request-splitting attempt: CR LF and spaces in the path stay escaped, so
    // the upstream reads one request, and the next client gets its own answer.
    up.clear();
    let attack = "/echo/z%20HTTP/1.1%0d%0aHost:%20a%0d%0a%0d%0aGET%20/smuggled";
    for _ in 0..3 {
        let r = request(gw.proxy, "GET", attack, &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            "GET /z%20HTTP/1.1%0d%0aHost:%20a%0d%0a%0d%0aGET%20/smuggled HTTP/1.1\n"
        );
        let r = request(gw.proxy, "GET", "/echo/next", &[], b"");
        assert_eq!(r.text(), "GET /next HTTP/1.1\n");
    }
    let heads = up.heads();
    assert_eq!(heads.len(), 6, "{heads:?}");
    assert!(
        heads.iter().all(|h| !h.starts_with("GET /smuggled")),
        "{heads:?}"
    );

    // A stored path is what goes upstream: control characters (raw or escaped) and
    // characters outside RFC 3986 are refused, naming the field.
    // (Form bodies: `%0d%0a` arrives as CR LF, `%250d` as the escape `%0d`.)
    for body in [
        "name=evil&url=http://127.0.0.1:8090/a%0d%0aX-Evil:%201",
        "name=evil&url=http://127.0.0.1:8090/a%250d%250aX-Evil",
        "name=evil&url=http://127.0.0.1:8090/a%20b",
        "name=evil&url=http://127.0.0.1:8090/a%25zz",
        "name=evil&host=127.0.0.1&path=/a%0d%0aX-Evil:%201",
    ] {
        let (status, v) = form(gw.admin, "POST", "/services", body);
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["fields"]["path"].is_string(), "{body}: {v}");
    }
    let (status, v) = form(gw.admin, "POST", "/services/echo/routes", "paths[]=/x%250A");
    assert_eq!(status, 400, "{v}");
    assert!(v["fields"]["paths"][0].is_string(), "{v}");
    assert_clean_log(&gw);
}

#[test]
fn malformed_admin_input_gets_400_naming_the_field() {
    let gw = start_gateway("security-input", &[]);
    let p = gw.admin;
    created(form(
        p,
        "POST",
        "/services",
        "name=svc&url=http://127.0.0.1:9",
    ));
    created(form(p, "POST", "/consumers", "username=alice"));
    // (method, path, form body, the field the answer must name)
    let cases = [
        ("POST", "/consumers", "username=bad%FFname", "username"),
        ("POST", "/consumers", "custom_id=bad%FFid", "custom_id"),
        ("POST", "/consumers", "username=bob&tags[]=a%FF", "tags"),
        ("POST", "/consumers", "username=bob&tags[]=a%0Ab", "tags"),
        ("POST", "/consumers", "username=a%00b", "username"),
        ("POST", "/routes", "service.name=svc&paths[]=/x%FF", "paths"),
        ("POST", "/routes", "service.name=svc&paths[nan]=/x", "paths"),
        ("POST", "/routes", "service.name=svc&paths[inf]=/x", "paths"),
        (
            "POST",
            "/routes",
            "service.name=svc&paths[0]=/x",
            "paths[0]",
        ),
        ("POST", "/routes", "service.name=svc&paths[1e9]=/x", "paths"),
        (
            "POST",
            "/routes",
            "service.name=svc&hosts[]=a%FF.test",
            "hosts",
        ),
        ("POST", "/consumers/alice/key-auth", "key=k%FFey", "key"),
        ("PUT", "/consumers/%FF", "", "username"),
        ("PUT", "/consumers/a%0D%0Ab", "", "username"),
        ("POST", "/plugins", "name=pro%FFm", "name"),
        (
            "POST",
            "/plugins",
            "name=ip-restriction&config.allow[]=1.2.3.%FF",
            "allow",
        ),
        (
            "POST",
            "/plugins",
            "name=ip-restriction&config.message=%FF&config.allow[]=::1",
            "message",
        ),
        ("POST", "/services", "name=s%FF&host=x.test", "name"),
        ("POST", "/services", "url=http://x%FF.test/", "host"),
        ("POST", "/consumers", "user%FFname=x", "xFFname"),
        (
            "POST",
            "/upstreams",
            "name=up.test&healthchecks.passive.unhealthy.http_statuses[]=x%FF",
            "http_statuses",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, v) = form(p, method, path, body);
        assert_eq!(status, 400, "{method} {path} {body}: {v}");
        let text = v.to_string();
        assert!(text.contains(field), "{method} {path} {body}: {v}");
        // What is echoed is printable: the offending bytes as \xNN.
        assert!(!text.contains('\u{fffd}'), "{text}");
    }
    // Query arguments and headers that are echoed.
    for path in [
        "/consumers?offset=%FF",
        "/consumers?offset=a&offset=b",
        "/consumers?size=1&size=2",
    ] {
        let r = request(p, "GET", path, &[], b"");
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(!r.text().contains("table: 0x"), "{}", r.text());
        assert!(body_of(&r)["message"].is_string(), "{}", r.text());
    }
    let r = raw_request(
        p,
        b"POST /consumers HTTP/1.0\r\nContent-Type: text/\xFFx\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(
        body_of(&r)["message"],
        "Unsupported Content-Type: text/\\xFFx",
        "{}",
        r.text()
    );
    // Nothing half-written: only what was created above exists.
    let (_, v) = admin(p, "GET", "/consumers", None);
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = admin(p, "GET", "/routes", None);
    assert_eq!(v["data"].as_array().unwrap().len(), 0, "{v}");
    assert_clean_log(&gw);
}

#[test]
fn paging_reaches_every_entity_whatever_its_accepted_creation_time() {
    let gw = start_gateway("security-paging", &[]);
    let p = gw.admin;
    let mut want = Vec::new();
    for (i, created_at) in [
        0u64,
        1_000_000_000_000_000,
        9_007_199_254_740_992,
        5,
        1_700_000_000,
    ]
    .iter()
    .enumerate()
    {
        let name = format!("c{i}");
        created(admin(
            p,
            "POST",
            "/consumers",
            Some(json!({"username": name, "created_at": created_at})),
        ));
        want.push(name);
    }
    let mut seen = Vec::new();
    let mut next = "/consumers?size=1".to_string();
    for _ in 0..20 {
        let (status, v) = admin(p, "GET", &next, None);
        assert_eq!(status, 200, "{next}: {v}");
        for e in v["data"].as_array().unwrap() {
            seen.push(e["username"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, want);
    assert_clean_log(&gw);
}

fn prometheus_plugin(p: u16, scope: &str, config: Value) -> (u16, Value) {
    admin(
        p,
        "POST",
        &format!("{scope}/plugins"),
        Some(json!({"name": "prometheus", "config": config})),
    )
}

#[test]
fn plugins_whose_families_would_collide_are_refused_naming_both() {
    let gw = start_gateway("security-families", &[]);
    let p = gw.admin;
    created(form(
        p,
        "POST",
        "/services",
        "name=a&url=http://127.0.0.1:9",
    ));
    created(form(
        p,
        "POST",
        "/services",
        "name=b&url=http://127.0.0.1:9",
    ));
    created(form(p, "POST", "/services/a/routes", "name=ra&paths[]=/a"));
    created(form(p, "POST", "/services/b/routes", "name=rb&paths[]=/b"));
    let foo = created(prometheus_plugin(
        p,
        "/services/a",
        json!({"namespace": "foo", "latency_metrics": true}),
    ));
    // foo_request's gateway latency is foo_request_latency_seconds, foo's request
    // latency family.
    let (status, v) = prometheus_plugin(
        p,
        "/services/b",
        json!({"namespace": "foo_request", "latency_metrics": true}),
    );
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(foo["id"].as_str().unwrap()), "{message}");
    assert!(message.contains("service "), "{message}");
    assert!(message.contains("foo_request_latency_seconds"), "{message}");
    // The same namespace shares its families: allowed.
    created(prometheus_plugin(
        p,
        "/services/b",
        json!({"namespace": "foo"}),
    ));
    // Kong naming and a prometheus naming under namespace "kong" would merge.
    let kong = created(prometheus_plugin(
        p,
        "/routes/ra",
        json!({"naming": "kong"}),
    ));
    let (status, v) = prometheus_plugin(p, "/routes/rb", json!({"namespace": "kong"}));
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains(kong["id"].as_str().unwrap()),
        "{v}"
    );
    // A PATCH into a colliding namespace is refused just the same.
    let (status, v) = admin(
        p,
        "PATCH",
        &format!("/plugins/{}", foo["id"].as_str().unwrap()),
        Some(json!({"config": {"namespace": "kong"}})),
    );
    assert_eq!(status, 400, "{v}");
    let (_, plugins) = admin(p, "GET", "/plugins", None);
    assert_eq!(plugins["data"].as_array().unwrap().len(), 3, "{plugins}");
    assert_clean_log(&gw);
}

#[test]
fn ip_restriction_sends_only_final_error_statuses() {
    let gw = start_gateway("security-status", &[]);
    let p = gw.admin;
    for status in [100, 101, 199, 200, 204, 302, 399, 600] {
        let (code, v) = admin(
            p,
            "POST",
            "/plugins",
            Some(
                json!({"name": "ip-restriction", "config": {"deny": ["10.0.0.0/8"], "status": status}}),
            ),
        );
        assert_eq!(code, 400, "{status}: {v}");
        assert!(v["fields"]["config"]["status"].is_string(), "{v}");
    }
    created(form(
        p,
        "POST",
        "/services",
        "name=s&url=http://127.0.0.1:9",
    ));
    created(form(p, "POST", "/services/s/routes", "name=r&paths[]=/"));
    created(admin(
        p,
        "POST",
        "/plugins",
        Some(
            json!({"name": "ip-restriction", "config": {"deny": ["127.0.0.0/8"], "status": 451, "message": "nope"}}),
        ),
    ));
    settle(&gw);
    let r = get(gw.proxy, "/");
    assert_eq!(r.status, 451, "{}", r.text());
    assert_eq!(body_of(&r)["message"], "nope");
    assert_clean_log(&gw);
}

#[test]
fn every_list_an_admin_call_can_grow_is_bounded() {
    let gw = start_gateway("security-limits", &[]);
    let p = gw.admin;
    created(form(
        p,
        "POST",
        "/services",
        "name=s&url=http://127.0.0.1:9",
    ));
    let list = |n: usize, f: &dyn Fn(usize) -> Value| Value::Array((0..n).map(f).collect());
    // (path, body with one element too many, the field named); the same list one
    // shorter is accepted.
    type Case = (
        &'static str,
        Box<dyn Fn(usize) -> Value>,
        usize,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "/services",
            Box::new(
                move |n| json!({"host": "t.test", "tags": list(n, &|i| json!(format!("t{i}")))}),
            ),
            64,
            "tags",
        ),
        (
            "/services/s/routes",
            Box::new(move |n| json!({"paths": list(n, &|i| json!(format!("/p{i}")))})),
            64,
            "paths",
        ),
        (
            "/services/s/routes",
            Box::new(move |n| json!({"hosts": list(n, &|i| json!(format!("h{i}.test")))})),
            64,
            "hosts",
        ),
        (
            "/services/s/routes",
            Box::new(
                move |n| json!({"paths": ["/m"], "methods": list(n, &|i| json!(format!("M{}", "X".repeat(i))))}),
            ),
            16,
            "methods",
        ),
        (
            "/plugins",
            Box::new(
                move |n| json!({"name": "prometheus", "service": {"name": "s"}, "config": {"request_latency_buckets": list(n, &|i| json!(i + 1))}}),
            ),
            64,
            "request_latency_buckets",
        ),
        (
            "/plugins",
            Box::new(
                move |n| json!({"name": "ip-restriction", "service": {"name": "s"}, "config": {"deny": list(n, &|i| json!(format!("10.0.{}.{}", i / 256, i % 256)))}}),
            ),
            256,
            "deny",
        ),
        (
            "/plugins",
            Box::new(
                move |n| json!({"name": "key-auth", "service": {"name": "s"}, "config": {"key_names": list(n, &|i| json!(format!("k{i}")))}}),
            ),
            16,
            "key_names",
        ),
        (
            "/upstreams",
            Box::new(
                move |n| json!({"name": "u.test", "healthchecks": {"passive": {"unhealthy": {"http_statuses": list(n, &|i| json!(500 + i))}}}}),
            ),
            32,
            "http_statuses",
        ),
    ];
    for (path, make, limit, field) in &cases {
        let (status, v) = admin(p, "POST", path, Some(make(limit + 1)));
        assert_eq!(status, 400, "{path} {field}: {v}");
        assert!(
            v.to_string()
                .contains(&format!("length must be at most {limit}")),
            "{v}"
        );
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
        let (status, v) = admin(p, "POST", path, Some(make(*limit)));
        assert_eq!(status, 201, "{path} {field}: {v}");
        let id = v["id"].as_str().unwrap();
        let kind = if path.contains("plugins") {
            "plugins"
        } else if path.contains("routes") {
            "routes"
        } else {
            path.trim_start_matches('/')
        };
        assert_eq!(admin(p, "DELETE", &format!("/{kind}/{id}"), None).0, 204);
    }
    assert_clean_log(&gw);
}

#[test]
fn the_whole_configuration_is_bounded_by_its_dict() {
    // A 1m dict: the configuration may take 512 KiB of JSON.
    let prefix = harness::prefix("security-document");
    let (conf, [proxy, admin_port, metrics, upstream]) = harness::render_gateway(&prefix, &[]);
    let conf = conf.replace(
        "lua_shared_dict gateway_config 16m;",
        "lua_shared_dict gateway_config 1m;",
    );
    assert!(conf.contains("gateway_config 1m;"));
    let gw = Gateway {
        nginx: Nginx::start_with(prefix, conf),
        proxy,
        admin: admin_port,
        metrics,
        upstream,
    };
    let tags: Vec<String> = (0..64)
        .map(|i| format!("{i:03}{}", "t".repeat(120)))
        .collect();
    let mut made = 0;
    let refusal = loop {
        let (status, v) = admin(
            gw.admin,
            "POST",
            "/services",
            Some(json!({"host": "x.test", "tags": tags})),
        );
        if status != 201 {
            break (status, v);
        }
        made += 1;
        assert!(made < 100, "never refused");
    };
    assert_eq!(refusal.0, 400, "{}", refusal.1);
    assert!(
        refusal.1["message"]
            .as_str()
            .unwrap()
            .contains("gateway_config"),
        "{}",
        refusal.1
    );
    // About 512 KiB of ~8.4 KB services, and what was accepted is all there.
    assert!((55..=65).contains(&made), "{made}");
    let (_, v) = admin(gw.admin, "GET", "/services?size=1000", None);
    assert_eq!(v["data"].as_array().unwrap().len(), made);
    // Deleting makes room again.
    let id = v["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        admin(gw.admin, "DELETE", &format!("/services/{id}"), None).0,
        204
    );
    let (status, _) = admin(
        gw.admin,
        "POST",
        "/services",
        Some(json!({"host": "x.test", "tags": tags})),
    );
    assert_eq!(status, 201);
    assert_clean_log(&gw);
}

#[test]
fn the_metrics_port_pages_follow_its_access_rules() {
    let gw = start_gateway("security-status-page", &[]);
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    for path in ["/metrics", "/nginx_status"] {
        let r = request_from(None, gw.metrics, "GET", path, b"");
        assert_eq!(r.status, 200, "{path}");
        let r = request_from(Some(other), gw.metrics, "GET", path, b"");
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.text(), "Forbidden\n", "{path}");
    }
    assert_clean_log(&gw);
}

#[test]
fn an_empty_declarative_file_is_an_empty_configuration() {
    let dir = std::env::temp_dir().join(format!("ngxprom-security-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("empty.json");
    std::fs::write(&file, "{}").unwrap();
    std::process::Command::new("chmod")
        .arg("-R")
        .arg("755")
        .arg(&dir)
        .status()
        .unwrap();
    let gw = start_gateway(
        "security-empty",
        &[("DECLARATIVE", file.display().to_string())],
    );
    let (status, v) = admin(gw.admin, "GET", "/services", None);
    assert_eq!(status, 200);
    assert_eq!(v["data"], json!([]));
    assert_eq!(get(gw.proxy, "/").status, 404);
    assert_clean_log(&gw);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hidden_credentials_leave_every_other_argument_as_sent() {
    let gw = start_gateway("security-hide", &[]);
    let p = gw.admin;
    let up = Recorder::start();
    created(admin(
        p,
        "POST",
        "/services",
        Some(json!({"name": "echo", "url": format!("http://127.0.0.1:{}", up.port)})),
    ));
    created(form(p, "POST", "/services/echo/routes", "name=r&paths[]=/"));
    created(form(p, "POST", "/consumers", "username=alice"));
    created(form(
        p,
        "POST",
        "/consumers/alice/key-auth",
        "key=alice-key",
    ));
    created(admin(
        p,
        "POST",
        "/plugins",
        Some(json!({"name": "key-auth", "config": {"hide_credentials": true}})),
    ));
    settle(&gw);
    // 150 arguments (more than ngx.req.get_uri_args returns), escapes of every kind;
    // the key among the first 100.
    let mut args: Vec<String> = (0..150).map(|i| format!("a{i}=v%20{i}+x%2B")).collect();
    args.insert(3, "apikey=alice-key".into());
    args.push("flag".into());
    let r = get(gw.proxy, &format!("/q?{}", args.join("&")));
    assert_eq!(r.status, 200, "{}", r.text());
    args.remove(3);
    assert_eq!(r.text(), format!("GET /q?{} HTTP/1.1\n", args.join("&")));
    assert_clean_log(&gw);
}

#[test]
fn an_upstream_has_a_bounded_number_of_targets() {
    let gw = start_gateway("security-targets", &[]);
    let p = gw.admin;
    created(form(p, "POST", "/upstreams", "name=up.test"));
    created(form(p, "POST", "/upstreams", "name=other.test"));
    for i in 0..256 {
        let target = format!("target=10.0.{}.{}:80", i / 256, i % 256);
        created(form(p, "POST", "/upstreams/up.test/targets", &target));
    }
    let (status, v) = form(
        p,
        "POST",
        "/upstreams/up.test/targets",
        "target=10.1.0.1:80",
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["fields"]["upstream"], "at most 256 targets per upstream",
        "{v}"
    );
    // Per upstream: another one still takes targets; a deleted one makes room.
    created(form(
        p,
        "POST",
        "/upstreams/other.test/targets",
        "target=10.1.0.1:80",
    ));
    let (status, _) = admin(p, "DELETE", "/upstreams/up.test/targets/10.0.0.0:80", None);
    assert_eq!(status, 204);
    created(form(
        p,
        "POST",
        "/upstreams/up.test/targets",
        "target=10.1.0.1:80",
    ));
    assert_clean_log(&gw);
}
