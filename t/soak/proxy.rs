//! Proxy traffic: requests of every outcome the gateway records (upstream 2xx, 4xx and
//! 5xx, chunked answers, a consumer's key, refusals by key-auth and ip-restriction, no
//! route, an upstream that refuses connections or times out) over kept-alive
//! connections and over one connection per request. Every answer is tallied with the
//! labels the global `prometheus` plugin must give it.

use crate::support::{paced, Client, Ctx};
use serde_json::json;

/// One kind of request: the path (and key), the status it must get, and the labels
/// it is counted under (service, route, code, source, consumer).
struct Kind {
    path: &'static str,
    key: Option<&'static str>,
    status: u16,
    labels: [&'static str; 5],
}

const fn kind(path: &'static str, status: u16, labels: [&'static str; 5]) -> Kind {
    Kind {
        path,
        key: None,
        status,
        labels,
    }
}

/// The mix, by weight (an entry per share): mostly upstream answers, now and then
/// every other outcome. The two that log an error line each (`/down`, `/timeout`)
/// are rare, so a long soak's log stays readable.
const MIX: &[(u32, Kind)] = &[
    (
        12,
        kind(
            "/code/200",
            200,
            ["soak-up", "soak-codes", "200", "service", ""],
        ),
    ),
    (
        2,
        kind(
            "/code/201",
            201,
            ["soak-up", "soak-codes", "201", "service", ""],
        ),
    ),
    (
        2,
        kind(
            "/code/204",
            204,
            ["soak-up", "soak-codes", "204", "service", ""],
        ),
    ),
    (
        2,
        kind(
            "/code/404",
            404,
            ["soak-up", "soak-codes", "404", "service", ""],
        ),
    ),
    (
        2,
        kind(
            "/code/500",
            500,
            ["soak-up", "soak-codes", "500", "service", ""],
        ),
    ),
    (
        2,
        kind(
            "/code/503",
            503,
            ["soak-up", "soak-codes", "503", "service", ""],
        ),
    ),
    (
        3,
        kind(
            "/chunked",
            200,
            ["soak-up", "soak-chunked", "200", "service", ""],
        ),
    ),
    (
        3,
        Kind {
            path: "/key/x",
            key: Some("soak-alice-key"),
            status: 200,
            labels: ["soak-up", "soak-key", "200", "service", "soak-alice"],
        },
    ),
    (
        1,
        kind("/key/x", 401, ["soak-up", "soak-key", "401", "gateway", ""]),
    ),
    (
        1,
        kind("/deny", 403, ["soak-up", "soak-deny", "403", "gateway", ""]),
    ),
    (1, kind("/nowhere", 404, ["", "", "404", "gateway", ""])),
];
/// Every `RARE`th request is one of these instead.
const RARE: u64 = 97;
const RARE_KINDS: &[Kind] = &[
    kind(
        "/down",
        502,
        ["soak-down", "soak-down", "502", "gateway", ""],
    ),
    kind(
        "/timeout",
        504,
        ["soak-slow", "soak-timeout", "504", "gateway", ""],
    ),
];

/// The error-log lines the mix causes on purpose.
pub const EXPECTED_LOG: &[(&str, &str)] = &[
    (
        "connect() failed (111: Connection refused) while connecting to upstream",
        "/down: its service's port refuses connections (the 502s)",
    ),
    (
        "upstream timed out (110: Connection timed out) while reading response header from upstream",
        "/timeout: its service answers after its read_timeout (the 504s)",
    ),
];

/// What the soak's server (the upstream here) answers besides `/code/<status>`.
pub const NGINX: &str = r#"
        location = /chunked {
            content_by_lua_block {
                ngx.sleep(0.005)
                ngx.say("a chunked answer")
            }
        }
        location = /slow {
            content_by_lua_block {
                ngx.sleep(0.3)
                ngx.say("too late")
            }
        }
"#;

/// The services, routes, plugins and consumer of the mix (once, for both proxy loads).
pub fn setup(ctx: &Ctx) {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| make_entities(ctx));
}

fn make_entities(ctx: &Ctx) {
    let soak = format!("http://127.0.0.1:{}", ctx.soak);
    let calls = [
        ("/services", json!({"name": "soak-up", "url": soak})),
        (
            "/services/soak-up/routes",
            json!({"name": "soak-codes", "paths": ["/code"], "strip_path": false}),
        ),
        (
            "/services/soak-up/routes",
            json!({"name": "soak-chunked", "paths": ["/chunked"], "strip_path": false}),
        ),
        (
            "/services/soak-up/routes",
            json!({"name": "soak-key", "paths": ["/key"]}),
        ),
        (
            "/services/soak-up/routes",
            json!({"name": "soak-deny", "paths": ["/deny"]}),
        ),
        (
            "/routes/soak-key/plugins",
            json!({"name": "key-auth", "config": {}}),
        ),
        (
            "/routes/soak-deny/plugins",
            json!({"name": "ip-restriction", "config": {"deny": ["127.0.0.1"]}}),
        ),
        ("/consumers", json!({"username": "soak-alice"})),
        (
            "/consumers/soak-alice/key-auth",
            json!({"key": "soak-alice-key"}),
        ),
        (
            "/services",
            json!({"name": "soak-down", "url": format!("http://127.0.0.1:{}", ctx.closed), "retries": 0}),
        ),
        (
            "/services/soak-down/routes",
            json!({"name": "soak-down", "paths": ["/down"]}),
        ),
        (
            "/services",
            json!({"name": "soak-slow", "url": format!("{soak}/slow"), "read_timeout": 50, "retries": 0}),
        ),
        (
            "/services/soak-slow/routes",
            json!({"name": "soak-timeout", "paths": ["/timeout"]}),
        ),
    ];
    for (path, body) in calls {
        assert!(
            ctx.admin("POST", path, Some(body)).is_some(),
            "{:?}",
            ctx.failures()
        );
    }
}

/// Sends the mix at `per_second` over one client until the soak stops.
fn drive(ctx: &Ctx, keep_alive: bool, per_second: f64, offset: u64) -> u64 {
    let total: u32 = MIX.iter().map(|(w, _)| w).sum();
    let mut client = Client::new(ctx.proxy, keep_alive);
    paced(ctx, per_second, |n| {
        let n = n + offset;
        let k = if n % RARE == RARE - 1 {
            &RARE_KINDS[(n / RARE) as usize % RARE_KINDS.len()]
        } else {
            let mut pick = (n % u64::from(total)) as u32;
            let mut chosen = &MIX[0].1;
            for (w, k) in MIX {
                if pick < *w {
                    chosen = k;
                    break;
                }
                pick -= w;
            }
            chosen
        };
        let headers: Vec<(&str, &str)> = k.key.map(|key| ("apikey", key)).into_iter().collect();
        match client.get(k.path, &headers) {
            Ok((a, sent)) => {
                if a.status == k.status {
                    ctx.answered(k.labels, sent, a.wire);
                } else {
                    ctx.fail(format!(
                        "{} got {} (want {}): {}",
                        k.path,
                        a.status,
                        k.status,
                        String::from_utf8_lossy(&a.body)
                    ));
                }
            }
            Err(e) => ctx.fail(format!("unanswered: {e}")),
        }
    })
}

/// Two clients on kept-alive HTTP/1.1 connections, 100 requests a second each.
pub fn keep_alive(ctx: &Ctx) -> String {
    let n = std::thread::scope(|s| {
        let a = s.spawn(|| drive(ctx, true, 100.0, 0));
        let b = s.spawn(|| drive(ctx, true, 100.0, 7));
        a.join().unwrap() + b.join().unwrap()
    });
    format!("{n} requests")
}

/// One client, HTTP/1.0, a connection per request, 50 a second.
pub fn one_per_connection(ctx: &Ctx) -> String {
    format!("{} requests", drive(ctx, false, 50.0, 3))
}
