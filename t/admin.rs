//! Admin API tests (entities, errors, persistence).

mod harness;
mod inject;

use harness::{admin, body_of, request, start_gateway, Gateway, Response};
use inject::{connection_to_worker, patch_on, stall_next_fsync, wait_in_fsync};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn gateway(name: &str) -> Gateway {
    start_gateway(name, &[])
}

/// A JSON request that must answer `status`; returns the body.
fn expect(port: u16, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
    let (s, v) = admin(port, method, path, body);
    assert_eq!(s, status, "{method} {path}: {v}");
    v
}

/// A form request (what `curl -d` sends) that must answer `status`; returns the body.
fn expect_form(port: u16, method: &str, path: &str, form: &str, status: u16) -> Value {
    let r = request(port, method, path, &[FORM], form.as_bytes());
    let v = body_of(&r);
    assert_eq!(r.status, status, "{method} {path} {form}: {v}");
    v
}

/// A raw body with a content type that must answer `status`.
fn expect_raw(port: u16, method: &str, path: &str, ctype: &str, raw: &str, status: u16) -> Value {
    let r = request(
        port,
        method,
        path,
        &[("Content-Type", ctype)],
        raw.as_bytes(),
    );
    let v = body_of(&r);
    assert_eq!(r.status, status, "{method} {path} {raw}: {v}");
    v
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn names(list: &Value, key: &str) -> BTreeSet<String> {
    list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn state_file(gw: &Gateway) -> Value {
    let text = std::fs::read_to_string(gw.nginx.prefix.join("state/gateway.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every collection, fully listed: what must survive restarts unchanged.
fn everything(port: u16) -> Value {
    let mut all = serde_json::Map::new();
    for path in [
        "/services",
        "/routes",
        "/consumers",
        "/plugins",
        "/upstreams",
        "/key-auths",
    ] {
        all.insert(
            path.into(),
            expect(port, "GET", &format!("{path}?size=1000"), None, 200),
        );
    }
    all.insert(
        "targets".into(),
        expect(
            port,
            "GET",
            "/upstreams/backend.internal/targets",
            None,
            200,
        ),
    );
    Value::Object(all)
}

#[test]
fn services_crud_with_put_upsert_and_patch() {
    let gw = gateway("admin-services");
    let p = gw.admin;
    let s = expect(
        p,
        "POST",
        "/services",
        Some(json!({"name": "billing", "url": "https://billing.internal:8443/v1"})),
        201,
    );
    assert!(is_uuid(s["id"].as_str().unwrap()), "{s}");
    assert_eq!(s["protocol"], "https");
    assert_eq!(s["host"], "billing.internal");
    assert_eq!(s["port"], 8443);
    assert_eq!(s["path"], "/v1");
    assert_eq!(s["retries"], 5);
    for t in ["connect_timeout", "write_timeout", "read_timeout"] {
        assert_eq!(s[t], 60000, "{t}");
    }
    assert_eq!(s["tags"], Value::Null);
    assert!(s["created_at"].as_u64().unwrap() > 1_600_000_000);
    let sid = id(&s);

    assert_eq!(expect(p, "GET", &format!("/services/{sid}"), None, 200), s);
    assert_eq!(expect(p, "GET", "/services/billing", None, 200), s);

    // PATCH changes what it names, nothing else.
    let patched = expect(
        p,
        "PATCH",
        "/services/billing",
        Some(json!({"retries": 2, "tags": ["payments"]})),
        200,
    );
    assert_eq!(patched["retries"], 2);
    assert_eq!(patched["tags"], json!(["payments"]));
    assert_eq!(patched["host"], "billing.internal");
    assert_eq!(patched["id"], s["id"]);
    assert_eq!(patched["created_at"], s["created_at"]);
    // A url in a PATCH rewrites protocol, host, port and path (none: unset).
    let moved = expect(
        p,
        "PATCH",
        &format!("/services/{sid}"),
        Some(json!({"url": "http://billing2.internal"})),
        200,
    );
    assert_eq!(
        (
            &moved["protocol"],
            &moved["host"],
            &moved["port"],
            &moved["path"]
        ),
        (
            &json!("http"),
            &json!("billing2.internal"),
            &json!(80),
            &Value::Null
        )
    );

    // PUT replaces the whole entity: what it leaves out returns to the default.
    let put = expect(
        p,
        "PUT",
        &format!("/services/{sid}"),
        Some(json!({"name": "billing", "host": "billing3.internal"})),
        200,
    );
    assert_eq!(put["id"], s["id"]);
    assert_eq!(put["created_at"], s["created_at"]);
    assert_eq!(put["retries"], 5);
    assert_eq!(put["tags"], Value::Null);
    assert_eq!(put["host"], "billing3.internal");

    // PUT on an unknown name or id creates the entity with it.
    let ledger = expect(
        p,
        "PUT",
        "/services/ledger",
        Some(json!({"host": "ledger.internal"})),
        200,
    );
    assert_eq!(ledger["name"], "ledger");
    let new_id = "9a1f0c4e-4a55-4a47-9a8e-0d2f6c1b7e11";
    let by_id = expect(
        p,
        "PUT",
        &format!("/services/{new_id}"),
        Some(json!({"host": "x.internal"})),
        200,
    );
    assert_eq!(by_id["id"], new_id);

    let list = expect(p, "GET", "/services", None, 200);
    assert_eq!(
        names(&list, "id"),
        BTreeSet::from([sid.clone(), id(&ledger), new_id.to_string()])
    );
    assert_eq!(list["next"], Value::Null);

    expect(p, "DELETE", "/services/ledger", None, 204);
    expect(p, "GET", "/services/ledger", None, 404);
    // Deleting what is not there succeeds, as in Kong.
    expect(p, "DELETE", "/services/ledger", None, 204);
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

#[test]
fn routes_nested_and_form_bodies() {
    let gw = gateway("admin-routes");
    let p = gw.admin;
    let web = expect_form(
        p,
        "POST",
        "/services",
        "name=web&host=web.internal&port=8080",
        201,
    );
    assert_eq!(web["port"], 8080);

    // Nested POST sets the service; repeated `paths[]`, repeated plain keys, booleans.
    let api = expect_form(
        p,
        "POST",
        "/services/web/routes",
        "name=api&paths[]=/api&paths[]=/v2&methods=GET&methods=POST&strip_path=false&hosts=example.com",
        201,
    );
    assert_eq!(api["paths"], json!(["/api", "/v2"]));
    assert_eq!(api["methods"], json!(["GET", "POST"]));
    assert_eq!(api["hosts"], json!(["example.com"]));
    assert_eq!(api["strip_path"], false);
    assert_eq!(api["preserve_host"], false);
    assert_eq!(api["protocols"], json!(["http", "https"]));
    assert_eq!(api["service"], json!({"id": web["id"]}));

    // Indexed arrays and a dotted foreign key by name.
    let indexed = expect_form(
        p,
        "POST",
        "/routes",
        "name=indexed&paths[1]=/one&paths[2]=/two&service.name=web",
        201,
    );
    assert_eq!(indexed["paths"], json!(["/one", "/two"]));
    assert_eq!(indexed["service"]["id"], web["id"]);
    // An array given once is a scalar; a route needs no service.
    let single = expect_form(p, "POST", "/routes", "paths=/single", 201);
    assert_eq!(single["paths"], json!(["/single"]));
    assert_eq!(single["service"], Value::Null);
    // service.id in a form.
    let by_id = expect_form(
        p,
        "POST",
        "/routes",
        &format!("hosts=by-id.example&service.id={}", id(&web)),
        201,
    );
    assert_eq!(by_id["service"]["id"], web["id"]);

    let nested = expect(p, "GET", "/services/web/routes", None, 200);
    assert_eq!(
        names(&nested, "id"),
        BTreeSet::from([id(&api), id(&indexed), id(&by_id)])
    );
    expect(p, "GET", "/services/web/routes/api", None, 200);
    // A route of another service (none) is not under this one.
    expect(
        p,
        "GET",
        &format!("/services/web/routes/{}", id(&single)),
        None,
        404,
    );
    expect(p, "GET", "/services/nope/routes", None, 404);

    let patched = expect(
        p,
        "PATCH",
        "/routes/api",
        Some(json!({"paths": ["/api2"]})),
        200,
    );
    assert_eq!(patched["paths"], json!(["/api2"]));
    assert_eq!(patched["methods"], json!(["GET", "POST"]));
    let put = expect(
        p,
        "PUT",
        "/routes/api",
        Some(json!({"paths": ["/api3"], "service": {"name": "web"}})),
        200,
    );
    assert_eq!(put["id"], api["id"]);
    assert_eq!(put["methods"], Value::Null);

    // At least one of methods, hosts, paths.
    let v = expect_form(p, "POST", "/routes", "name=empty", 400);
    assert!(v["fields"]["@entity"][0]
        .as_str()
        .unwrap()
        .contains("'paths'"));

    for r in [&api, &indexed, &by_id] {
        expect(p, "DELETE", &format!("/routes/{}", id(r)), None, 204);
    }
    expect(p, "DELETE", "/services/web", None, 204);
}

#[test]
fn consumers_and_key_auth_credentials() {
    let gw = gateway("admin-consumers");
    let p = gw.admin;
    let alice = expect(
        p,
        "POST",
        "/consumers",
        Some(json!({"username": "alice", "custom_id": "a-1"})),
        201,
    );
    let v = expect_form(p, "POST", "/consumers", "username=alice", 409);
    assert_eq!(v["fields"], json!({"username": "alice"}));
    let v = expect_form(p, "POST", "/consumers", "custom_id=a-1", 409);
    assert_eq!(v["fields"], json!({"custom_id": "a-1"}));
    let v = expect(p, "POST", "/consumers", Some(json!({})), 400);
    assert!(v["fields"]["@entity"].is_array(), "{v}");
    assert_eq!(expect(p, "GET", "/consumers/alice", None, 200), alice);

    // A generated key, and a chosen one.
    let generated = expect(p, "POST", "/consumers/alice/key-auth", None, 201);
    let key = generated["key"].as_str().unwrap();
    assert!(
        key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(generated["consumer"], json!({"id": alice["id"]}));
    let chosen = expect_form(p, "POST", "/consumers/alice/key-auth", "key=secret-1", 201);
    assert_eq!(chosen["key"], "secret-1");
    let v = expect_form(p, "POST", "/consumers/alice/key-auth", "key=secret-1", 409);
    assert_eq!(v["fields"], json!({"key": "secret-1"}));
    let creds = expect(p, "GET", "/consumers/alice/key-auth", None, 200);
    assert_eq!(
        names(&creds, "key"),
        BTreeSet::from([key.to_string(), "secret-1".into()])
    );
    expect(
        p,
        "DELETE",
        &format!("/consumers/alice/key-auth/{}", id(&generated)),
        None,
        204,
    );
    let creds = expect(p, "GET", "/key-auths", None, 200);
    assert_eq!(
        names(&creds, "key"),
        BTreeSet::from(["secret-1".to_string()])
    );
    expect(
        p,
        "DELETE",
        &format!("/consumers/nobody/key-auth/{}", id(&chosen)),
        None,
        404,
    );

    // A consumer takes its credentials and plugins with it.
    expect_form(
        p,
        "POST",
        "/consumers/alice/plugins",
        "name=prometheus&config.per_consumer=true",
        201,
    );
    let patched = expect_form(p, "PATCH", "/consumers/alice", "custom_id=a-2", 200);
    assert_eq!(patched["custom_id"], "a-2");
    expect(p, "DELETE", "/consumers/alice", None, 204);
    assert_eq!(expect(p, "GET", "/key-auths", None, 200)["data"], json!([]));
    assert_eq!(expect(p, "GET", "/plugins", None, 200)["data"], json!([]));
    expect(
        p,
        "PATCH",
        "/consumers/alice",
        Some(json!({"custom_id": "x"})),
        404,
    );
}

#[test]
fn plugins_with_forms_httpie_json_and_scopes() {
    let gw = gateway("admin-plugins");
    let p = gw.admin;
    let global = expect_form(
        p,
        "POST",
        "/plugins",
        "name=prometheus&config.per_consumer=true",
        201,
    );
    assert_eq!(global["config"]["per_consumer"], true);
    for f in [
        "status_code_metrics",
        "latency_metrics",
        "bandwidth_metrics",
        "upstream_health_metrics",
    ] {
        assert_eq!(global["config"][f], false, "{f}");
    }
    assert_eq!(global["enabled"], true);
    assert_eq!(
        (&global["service"], &global["route"], &global["consumer"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    // One plugin of a name per scope.
    let v = expect_form(p, "POST", "/plugins", "name=prometheus", 409);
    assert_eq!(v["code"], 5);
    assert_eq!(v["fields"]["name"], "prometheus");

    // PATCH merges the config record.
    let patched = expect(
        p,
        "PATCH",
        &format!("/plugins/{}", id(&global)),
        Some(json!({"config": {"bandwidth_metrics": true}})),
        200,
    );
    assert_eq!(patched["config"]["per_consumer"], true);
    assert_eq!(patched["config"]["bandwidth_metrics"], true);

    // What `http :8001/services/s1/plugins name=prometheus config.latency_metrics=true`
    // sends: a JSON object, string values, dotted keys.
    expect(
        p,
        "POST",
        "/services",
        Some(json!({"name": "s1", "host": "s1.internal"})),
        201,
    );
    let httpie = expect_raw(
        p,
        "POST",
        "/services/s1/plugins",
        "application/json",
        r#"{"name": "prometheus", "config.latency_metrics": "true"}"#,
        201,
    );
    assert_eq!(httpie["config"]["latency_metrics"], true);
    assert_eq!(httpie["config"]["per_consumer"], false);
    let s1 = expect(p, "GET", "/services/s1", None, 200);
    assert_eq!(httpie["service"], json!({"id": s1["id"]}));

    let route = expect_form(p, "POST", "/services/s1/routes", "name=r1&paths=/r1", 201);
    let v = expect_form(
        p,
        "POST",
        "/routes/r1/plugins",
        "name=prometheus&config.per_consumer=notabool",
        400,
    );
    assert_eq!(v["fields"]["config"]["per_consumer"], "expected a boolean");
    assert_eq!(v["name"], "schema violation");

    let key_auth = expect_form(p, "POST", "/routes/r1/plugins", "name=key-auth", 201);
    assert_eq!(key_auth["config"]["key_names"], json!(["apikey"]));
    assert_eq!(key_auth["config"]["hide_credentials"], false);
    assert_eq!(key_auth["config"]["key_in_header"], true);
    assert_eq!(key_auth["config"]["key_in_query"], true);
    assert_eq!(key_auth["route"], json!({"id": route["id"]}));

    let ip = expect_form(
        p,
        "POST",
        "/services/s1/plugins",
        "name=ip-restriction&config.allow[]=10.0.0.0/8&config.allow[]=127.0.0.1",
        201,
    );
    assert_eq!(ip["config"]["allow"], json!(["10.0.0.0/8", "127.0.0.1"]));
    assert_eq!(ip["config"]["status"], 403);

    let v = expect(
        p,
        "POST",
        "/plugins",
        Some(json!({"name": "key-auth", "config": {"bogus": 1}})),
        400,
    );
    assert_eq!(v["fields"]["config"]["bogus"], "unknown field");

    assert_eq!(
        names(&expect(p, "GET", "/services/s1/plugins", None, 200), "name"),
        BTreeSet::from(["prometheus".to_string(), "ip-restriction".into()])
    );
    assert_eq!(
        names(&expect(p, "GET", "/routes/r1/plugins", None, 200), "name"),
        BTreeSet::from(["key-auth".to_string()])
    );
    let listed = |node: &Value, k: &str| -> BTreeSet<String> {
        node["plugins"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let three = BTreeSet::from([
        "ip-restriction".to_string(),
        "key-auth".into(),
        "prometheus".into(),
    ]);
    // GET / answers from the worker's own snapshot: the other one may be a tick behind.
    let node = harness::eventually(Duration::from_secs(1), || {
        let node = expect(p, "GET", "/", None, 200);
        (listed(&node, "enabled_in_cluster") == three).then_some(node)
    })
    .expect("enabled_in_cluster lists the three plugins");
    assert!(listed(&node, "available_on_server").is_superset(&three));
}

#[test]
fn upstreams_and_targets() {
    let gw = gateway("admin-upstreams");
    let p = gw.admin;
    let up = expect(
        p,
        "POST",
        "/upstreams",
        Some(json!({"name": "backend.internal"})),
        201,
    );
    assert_eq!(up["algorithm"], "round-robin");
    assert_eq!(
        up["healthchecks"],
        json!({"passive": {"unhealthy": {"failures": 3, "http_statuses": [500, 502, 503, 504],
                                         "timeouts": 3}, "readmit_after": 10},
               // Kong's active defaults: no probes until an interval is set.
               "active": {"type": "http", "http_path": "/", "timeout": 1, "concurrency": 10,
                          "https_verify_certificate": true,
                          "healthy": {"interval": 0, "successes": 0, "http_statuses": [200, 302]},
                          "unhealthy": {"interval": 0, "http_failures": 0, "tcp_failures": 0,
                                        "timeouts": 0,
                                        "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505]}}})
    );
    // A record PATCH keeps its siblings.
    let patched = expect_form(
        p,
        "PATCH",
        "/upstreams/backend.internal",
        "healthchecks.passive.unhealthy.failures=0",
        200,
    );
    assert_eq!(
        patched["healthchecks"]["passive"]["unhealthy"]["failures"],
        0
    );
    assert_eq!(
        patched["healthchecks"]["passive"]["unhealthy"]["timeouts"],
        3
    );

    let t1 = expect_form(
        p,
        "POST",
        "/upstreams/backend.internal/targets",
        "target=10.0.0.1",
        201,
    );
    assert_eq!(t1["target"], "10.0.0.1:8000");
    assert_eq!(t1["weight"], 100);
    assert_eq!(t1["upstream"], json!({"id": up["id"]}));
    let t2 = expect(
        p,
        "POST",
        &format!("/upstreams/{}/targets", id(&up)),
        Some(json!({"target": "10.0.0.2:9000", "weight": 5})),
        201,
    );
    expect_form(
        p,
        "POST",
        "/upstreams/backend.internal/targets",
        "target=10.0.0.1:8000",
        409,
    );
    let v = expect_form(
        p,
        "POST",
        "/upstreams/backend.internal/targets",
        "target=10.0.0.3&weight=70000",
        400,
    );
    assert_eq!(v["fields"]["weight"], "value should be between 0 and 65535");
    let list = expect(p, "GET", "/upstreams/backend.internal/targets", None, 200);
    assert_eq!(
        names(&list, "target"),
        BTreeSet::from(["10.0.0.1:8000".to_string(), "10.0.0.2:9000".into()])
    );

    let v = expect(p, "DELETE", "/upstreams/backend.internal", None, 400);
    assert_eq!(v["fields"]["@referenced_by"], "targets");
    expect(
        p,
        "DELETE",
        "/upstreams/backend.internal/targets/10.0.0.1:8000",
        None,
        204,
    );
    expect(
        p,
        "DELETE",
        &format!("/upstreams/backend.internal/targets/{}", id(&t2)),
        None,
        204,
    );
    expect(p, "DELETE", "/upstreams/backend.internal", None, 204);
    expect(p, "GET", &format!("/upstreams/{}", id(&up)), None, 404);
}

#[test]
fn pagination_follows_next_until_null() {
    let gw = gateway("admin-pages");
    let p = gw.admin;
    let mut created = Vec::new();
    for i in 0..7 {
        let s = expect_form(
            p,
            "POST",
            "/services",
            &format!("name=s{i}&host=h{i}.internal"),
            201,
        );
        created.push(id(&s));
    }
    let mut seen = Vec::new();
    let mut next = "/services?size=3".to_string();
    let mut pages = 0;
    loop {
        let page = expect(p, "GET", &next, None, 200);
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 3, "{page}");
        seen.extend(data.iter().map(id));
        match &page["next"] {
            Value::Null => {
                assert!(page.get("offset").is_none(), "{page}");
                break;
            }
            Value::String(n) => {
                assert!(n.starts_with("/services?offset="), "{n}");
                assert_eq!(page["offset"].as_str().map(str::is_empty), Some(false));
                next = n.clone();
            }
            other => panic!("next: {other}"),
        }
    }
    assert_eq!(pages, 3);
    // Every service once, in creation order.
    assert_eq!(seen, created);

    let v = expect(p, "GET", "/services?size=0", None, 400);
    assert_eq!(v["name"], "invalid size");
    expect(p, "GET", "/services?size=1001", None, 400);
    let v = expect(p, "GET", "/services?offset=bm9wZQ", None, 400);
    assert_eq!(v["name"], "invalid offset");
}

#[test]
fn every_error_class_has_its_status_and_names_the_field() {
    let gw = gateway("admin-errors");
    let p = gw.admin;

    // 400: every bad field at once.
    let v = expect(
        p,
        "POST",
        "/services",
        Some(
            json!({"name": "bad name!", "host": "ok.internal", "port": 70000,
                    "protocol": "ftp", "color": "blue"}),
        ),
        400,
    );
    assert_eq!(v["code"], 2);
    assert_eq!(v["name"], "schema violation");
    assert_eq!(v["fields"]["port"], "value should be between 0 and 65535");
    assert_eq!(v["fields"]["protocol"], "expected one of: http, https");
    assert_eq!(v["fields"]["color"], "unknown field");
    assert!(v["fields"]["name"].is_string(), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("4 schema violations ("),
        "{v}"
    );
    let v = expect(p, "POST", "/services", Some(json!({})), 400);
    assert_eq!(v["fields"]["host"], "required field missing");
    // Elements of an array are reported at their index.
    let v = expect(
        p,
        "POST",
        "/routes",
        Some(json!({"paths": ["/ok", "nope"]})),
        400,
    );
    assert_eq!(v["fields"]["paths"], json!([null, "should start with: /"]));

    // 400: unknown plugin.
    let v = expect_form(p, "POST", "/plugins", "name=no-such-plugin", 400);
    assert!(
        v["fields"]["name"]
            .as_str()
            .unwrap()
            .contains("plugin 'no-such-plugin' not enabled"),
        "{v}"
    );

    // 409: unique name.
    expect_form(p, "POST", "/services", "name=dup&host=a.internal", 201);
    let v = expect_form(p, "POST", "/services", "name=dup&host=b.internal", 409);
    assert_eq!(v["code"], 5);
    assert_eq!(v["fields"], json!({"name": "dup"}));

    // 404: unknown id, name or path.
    expect(
        p,
        "GET",
        "/services/4a5a2b1c-0d3e-4f60-8a7b-9c0d1e2f3a4b",
        None,
        404,
    );
    let v = expect(p, "GET", "/services/nope", None, 404);
    assert_eq!(v["message"], "Not found");
    expect(p, "GET", "/nowhere", None, 404);
    expect(p, "GET", "/services/dup/nowhere", None, 404);
    expect(
        p,
        "PATCH",
        "/services/nope",
        Some(json!({"retries": 1})),
        404,
    );

    // 400: malformed JSON; 415: a body type we do not read.
    let v = expect_raw(
        p,
        "POST",
        "/services",
        "application/json",
        "{\"name\": ",
        400,
    );
    assert!(v["message"].as_str().unwrap().contains("JSON"), "{v}");
    expect_raw(p, "POST", "/services", "text/plain", "name=x", 415);

    // 413: over client_max_body_size (1m), answered by nginx itself.
    let big = json!({"name": "big", "host": "a.internal", "tags": ["x".repeat(1 << 20)]});
    let v = expect(p, "POST", "/services", Some(big), 413);
    assert!(v["message"].as_str().unwrap().contains("1m"), "{v}");

    // 400: a reference to nothing.
    let v = expect(
        p,
        "POST",
        "/routes",
        Some(json!({"paths": ["/x"], "service": {"id": "4a5a2b1c-0d3e-4f60-8a7b-9c0d1e2f3a4b"}})),
        400,
    );
    assert_eq!(v["code"], 4);
    assert_eq!(
        v["fields"]["service"]["id"],
        "4a5a2b1c-0d3e-4f60-8a7b-9c0d1e2f3a4b"
    );
    expect_form(
        p,
        "POST",
        "/services/4a5a2b1c-0d3e-4f60-8a7b-9c0d1e2f3a4b/routes",
        "paths=/x",
        404,
    );

    // 400: deleting a service that routes still use.
    expect_form(p, "POST", "/services/dup/routes", "paths=/dup", 201);
    let v = expect(p, "DELETE", "/services/dup", None, 400);
    assert_eq!(v["fields"]["@referenced_by"], "routes");
    assert_eq!(
        v["message"],
        "an existing 'routes' entity references this 'services' entity"
    );

    // 405.
    for (method, path) in [
        ("PUT", "/services"),
        ("DELETE", "/services"),
        ("POST", "/services/dup"),
        ("DELETE", "/"),
        ("POST", "/metrics"),
    ] {
        let (s, v) = admin(p, method, path, None);
        assert_eq!(s, 405, "{method} {path}: {v}");
    }

    // Every answer says which worker gave it and what configuration it had.
    let r = request(p, "GET", "/services/nope", &[], b"");
    assert!(r.header("x-gateway-worker").unwrap().parse::<u32>().is_ok());
    assert!(r
        .header("x-gateway-config-version")
        .unwrap()
        .parse::<u64>()
        .is_ok());
    // nginx logs the 413 itself; nothing else may be there.
    let unexpected: Vec<String> = gw
        .nginx
        .errors()
        .into_iter()
        .filter(|l| !l.contains("client intended to send too large body"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
}

#[test]
fn node_info_status_and_metrics() {
    let gw = gateway("admin-node");
    let p = gw.admin;
    let node = expect(p, "GET", "/", None, 200);
    assert!(is_uuid(node["node_id"].as_str().unwrap()), "{node}");
    assert!(
        node["version"].is_string() && node["hostname"].is_string(),
        "{node}"
    );
    assert_eq!(node["configuration"]["database"], "file");
    assert!(node["plugins"]["available_on_server"].is_array(), "{node}");

    let r = request(p, "GET", "/status", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(body_of(&r).is_object(), "{}", r.text());
    let r = request(p, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.header("x-gateway-worker").is_some());
}

fn populate(p: u16) {
    let svc = expect(
        p,
        "POST",
        "/services",
        Some(json!({"name": "svc", "url": "http://backend.internal/base"})),
        201,
    );
    expect_form(p, "POST", "/services/svc/routes", "name=r&paths[]=/r", 201);
    expect_form(p, "POST", "/consumers", "username=carol", 201);
    expect_form(p, "POST", "/consumers/carol/key-auth", "key=carol-key", 201);
    expect_form(
        p,
        "POST",
        "/plugins",
        &format!(
            "name=prometheus&service.id={}&config.status_code_metrics=true",
            id(&svc)
        ),
        201,
    );
    expect_form(p, "POST", "/upstreams", "name=backend.internal", 201);
    expect_form(
        p,
        "POST",
        "/upstreams/backend.internal/targets",
        "target=127.0.0.1:9",
        201,
    );
}

#[test]
fn entities_survive_reload_and_restart() {
    let gw = gateway("admin-persist");
    let p = gw.admin;
    populate(p);
    let before = everything(p);
    let node = expect(p, "GET", "/", None, 200)["node_id"].clone();
    assert!(is_uuid(node.as_str().unwrap()));

    gw.nginx.reload();
    assert_eq!(everything(p), before);
    assert_eq!(expect(p, "GET", "/", None, 200)["node_id"], node);

    gw.nginx.stop();
    gw.nginx.start_again();
    assert_eq!(everything(p), before);
    assert_eq!(expect(p, "GET", "/", None, 200)["node_id"], node);

    let state = state_file(&gw);
    assert_eq!(state["node_id"], node);
    assert_eq!(state["_format_version"], "1");
    assert_eq!(state["services"].as_array().unwrap().len(), 1);
    assert_eq!(state["targets"].as_array().unwrap().len(), 1);
    // References are stored as {"id": ...}.
    assert_eq!(
        state["routes"][0]["service"],
        json!({"id": state["services"][0]["id"]})
    );

    // The workers (not root) can still write after the master rewrote nothing.
    expect_form(
        p,
        "POST",
        "/services",
        "name=after&host=after.internal",
        201,
    );
    gw.nginx.stop();
    gw.nginx.start_again();
    expect(p, "GET", "/services/after", None, 200);
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

#[test]
fn concurrent_writes_are_all_kept() {
    let gw = gateway("admin-concurrent");
    let p = gw.admin;
    let handles: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                admin(
                    p,
                    "POST",
                    "/services",
                    Some(json!({"name": format!("svc-{i}"), "host": "h.internal"})),
                )
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for h in handles {
        let (status, v) = h.join().unwrap();
        assert_eq!(status, 201, "{v}");
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 50);
    let list = expect(p, "GET", "/services?size=1000", None, 200);
    let expected: BTreeSet<String> = (0..50).map(|i| format!("svc-{i}")).collect();
    assert_eq!(names(&list, "name"), expected);
    let state = state_file(&gw);
    let stored: BTreeSet<String> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, expected);
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

#[test]
fn a_change_reaches_every_worker_within_a_second() {
    let gw = gateway("admin-visibility");
    let p = gw.admin;
    let r = request(
        p,
        "POST",
        "/services",
        &[JSON],
        br#"{"name": "fresh", "host": "fresh.internal"}"#,
    );
    let written = Instant::now();
    assert_eq!(r.status, 201, "{}", r.text());
    let version: u64 = r
        .header("x-gateway-config-version")
        .unwrap()
        .parse()
        .unwrap();

    // GET / answers from the worker's own snapshot (no catching up on the request):
    // poll from several clients so that both workers answer, for two seconds.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while written.elapsed() < Duration::from_secs(2) {
                    let r = request(p, "GET", "/", &[], b"");
                    let pid: u32 = r.header("x-gateway-worker").unwrap().parse().unwrap();
                    let v: u64 = r
                        .header("x-gateway-config-version")
                        .unwrap()
                        .parse()
                        .unwrap();
                    seen.push((written.elapsed(), pid, v));
                    std::thread::sleep(Duration::from_millis(5));
                }
                seen
            })
        })
        .collect();
    let seen: Vec<(Duration, u32, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut first_new: BTreeMap<u32, Duration> = BTreeMap::new();
    for &(t, pid, v) in &seen {
        assert!(
            v >= version || t < Duration::from_secs(1),
            "worker {pid} still had version {v} < {version} {t:?} after the write"
        );
        if v >= version {
            let e = first_new.entry(pid).or_insert(t);
            *e = (*e).min(t);
        }
    }
    assert!(
        first_new.len() >= 2,
        "the new version was seen on {first_new:?} only"
    );
    for (pid, t) in &first_new {
        assert!(
            *t < Duration::from_secs(1),
            "worker {pid} saw it after {t:?}"
        );
    }
}

/// A directory and file the workers (nobody) can read.
fn declarative_file(name: &str, content: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ngxprom-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kong.json");
    std::fs::write(&file, content.to_string()).unwrap();
    Command::new("chmod").arg("755").arg(&dir).status().unwrap();
    Command::new("chmod")
        .arg("644")
        .arg(&file)
        .status()
        .unwrap();
    file
}

#[test]
fn declarative_mode_serves_the_file_and_refuses_writes() {
    // Kong's format: children nested in their parent, references by name.
    let file = declarative_file(
        "admin-declarative",
        &json!({
            "_format_version": "3.0",
            "services": [{
                "name": "demo", "url": "http://127.0.0.1:9/",
                "routes": [{"name": "root", "paths": ["/"]}],
                "plugins": [{"name": "prometheus", "config": {"status_code_metrics": true}}],
            }],
            "consumers": [{"username": "dave", "keyauth_credentials": [{"key": "dave-key"}]}],
        }),
    );
    let gw = start_gateway(
        "admin-declarative",
        &[("DECLARATIVE", file.display().to_string())],
    );
    let p = gw.admin;
    let services = expect(p, "GET", "/services", None, 200);
    assert_eq!(
        names(&services, "name"),
        BTreeSet::from(["demo".to_string()])
    );
    let demo = &services["data"][0];
    let route = expect(p, "GET", "/routes/root", None, 200);
    assert_eq!(route["service"], json!({"id": demo["id"]}));
    let plugins = expect(p, "GET", "/services/demo/plugins", None, 200);
    assert_eq!(plugins["data"][0]["config"]["status_code_metrics"], true);
    expect(p, "GET", "/consumers/dave/key-auth", None, 200);
    assert_eq!(
        expect(p, "GET", "/", None, 200)["configuration"]["database"],
        "off"
    );

    let v = expect_form(p, "POST", "/services", "name=x&host=x.internal", 405);
    assert!(v["message"].as_str().unwrap().contains("DB-less"), "{v}");
    expect(p, "DELETE", "/services/demo", None, 405);
    expect(
        p,
        "PATCH",
        "/routes/root",
        Some(json!({"paths": ["/x"]})),
        405,
    );

    // Ids come from the file's content: the same after a reload.
    gw.nginx.reload();
    assert_eq!(
        expect(p, "GET", "/services/demo", None, 200)["id"],
        demo["id"]
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// Starts nginx on a rendered gateway configuration expecting it to fail; returns
/// what it said.
fn failed_start(name: &str, vars: &[(&str, String)]) -> String {
    let prefix = harness::prefix(name);
    let (conf, _) = harness::render_gateway(&prefix, vars);
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let out = harness::nginx_command()
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default()
    );
    assert!(!out.status.success(), "nginx started:\n{said}");
    assert!(!Path::new(&prefix.join("nginx.pid")).exists());
    let _ = std::fs::remove_dir_all(&prefix);
    said
}

#[test]
fn an_invalid_declarative_file_stops_nginx_naming_the_field() {
    let file = declarative_file(
        "admin-bad-declarative",
        &json!({
            "_format_version": "3.0",
            "services": [
                {"name": "fine", "host": "fine.internal"},
                {"name": "broken", "host": "b.internal", "port": 70000},
            ],
        }),
    );
    let said = failed_start(
        "admin-bad-declarative",
        &[("DECLARATIVE", file.display().to_string())],
    );
    assert!(
        said.contains("services[2] (name 'broken')")
            && said.contains("port: value should be between 0 and 65535"),
        "{said}"
    );

    // Nested entities are named by their path in the file.
    std::fs::write(
        &file,
        json!({"_format_version": "3.0", "services": [
            {"name": "s", "host": "s.internal", "routes": [{"paths": ["no-slash"]}]}]})
        .to_string(),
    )
    .unwrap();
    let said = failed_start(
        "admin-bad-declarative",
        &[("DECLARATIVE", file.display().to_string())],
    );
    assert!(
        said.contains("services[1].routes[1]") && said.contains("paths.1: should start with: /"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn a_seed_file_is_loaded_once_then_the_state_wins() {
    let file = declarative_file(
        "admin-seed",
        &json!({"_format_version": "1", "services": [{"name": "seeded", "host": "seed.internal"}]}),
    );
    let gw = start_gateway("admin-seed", &[("SEED", file.display().to_string())]);
    let p = gw.admin;
    expect(p, "GET", "/services/seeded", None, 200);
    // Persisted at once: the state file holds the seed.
    assert_eq!(state_file(&gw)["services"][0]["name"], "seeded");

    expect(p, "DELETE", "/services/seeded", None, 204);
    gw.nginx.stop();
    gw.nginx.start_again();
    expect(p, "GET", "/services/seeded", None, 404);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn a_stalled_state_write_loses_no_other_change() {
    let gw = gateway("admin-stalled-fsync");
    let p = gw.admin;
    for name in ["alice", "bob"] {
        expect(
            p,
            "POST",
            "/consumers",
            Some(json!({"username": name})),
            201,
        );
    }
    let workers = gw.nginx.worker_pids();
    assert_eq!(workers.len(), 2);
    let (slow, fast) = (workers[0], workers[1]);
    let conn = connection_to_worker(p, slow).expect("no connection reached the worker");

    // A slow disk under one worker: its next fsync takes 7 s, longer than any lease a
    // writer's lock could have had.
    let mut strace = stall_next_fsync(slow, 7);
    let alice_answer = patch_on(conn, "/consumers/alice", br#"{"custom_id": "alice-2"}"#);
    // The slow worker's event loop is stopped in fsync: the next connection is the
    // other worker's.
    wait_in_fsync(slow);
    let bob = request(
        p,
        "PATCH",
        "/consumers/bob",
        &[JSON],
        br#"{"custom_id": "bob-2"}"#,
    );
    let alice = harness::parse_response(&alice_answer.join().unwrap());
    strace.stop();
    assert_eq!(bob.status, 200, "{}", bob.text());
    assert_eq!(alice.status, 200, "{}", alice.text());
    assert_eq!(
        bob.header("x-gateway-worker"),
        Some(fast.to_string().as_str())
    );
    assert_eq!(
        alice.header("x-gateway-worker"),
        Some(slow.to_string().as_str())
    );
    let version = |r: &Response| -> u64 {
        r.header("x-gateway-config-version")
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_ne!(version(&alice), version(&bob), "two changes, one version");

    let custom_ids = |list: &Value| -> BTreeMap<String, String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let id = c["custom_id"].as_str().unwrap_or("").to_string();
                (c["username"].as_str().unwrap().to_string(), id)
            })
            .collect()
    };
    let both: BTreeMap<String, String> = [("alice", "alice-2"), ("bob", "bob-2")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(
        custom_ids(&state_file(&gw)["consumers"]),
        both,
        "the state file"
    );

    // Every worker serves what the file holds (after the sync interval).
    std::thread::sleep(Duration::from_millis(500));
    let mut served: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..200 {
        for name in ["alice", "bob"] {
            let r = request(p, "GET", &format!("/consumers/{name}"), &[], b"");
            let v = body_of(&r);
            assert_eq!(r.status, 200, "{v}");
            let pid: u32 = r.header("x-gateway-worker").unwrap().parse().unwrap();
            assert_eq!(
                v["custom_id"].as_str(),
                Some(both[name].as_str()),
                "worker {pid} serves {name} as {v}"
            );
            *served.entry(pid).or_default() += 1;
        }
        if served.len() == 2 && served.values().all(|&n| n >= 15) {
            break;
        }
    }
    assert_eq!(served.len(), 2, "only {served:?} answered");

    gw.nginx.stop();
    gw.nginx.start_again();
    assert_eq!(
        custom_ids(&expect(p, "GET", "/consumers", None, 200)["data"]),
        both,
        "after a restart"
    );
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

/// The temporary files beside the state file.
fn state_temporaries(gw: &Gateway) -> Vec<String> {
    std::fs::read_dir(gw.nginx.prefix.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// Kills worker `pid` while its Admin write of alice is inside its state file's fsync;
/// returns once the master replaced it.
fn kill_mid_write(gw: &Gateway, pid: u32, custom_id: &str) {
    let conn = connection_to_worker(gw.admin, pid).expect("no connection reached the worker");
    let mut strace = stall_next_fsync(pid, 30);
    let body = json!({ "custom_id": custom_id }).to_string();
    let answer = patch_on(conn, "/consumers/alice", body.as_bytes());
    wait_in_fsync(pid);
    // SIGKILL first; the tracee then finishes dying once its tracer lets go of it.
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    strace.stop();
    let replaced = harness::eventually(Duration::from_secs(10), || {
        let w = gw.nginx.worker_pids();
        (w.len() == 2 && !w.contains(&pid)).then_some(())
    });
    assert!(replaced.is_some(), "worker {pid} was not replaced");
    assert_eq!(answer.join().unwrap(), b"", "a killed worker answered");
}

#[test]
fn a_writer_killed_mid_write_leaves_no_temporary_file_nor_lock() {
    let gw = gateway("admin-killed-writer");
    let p = gw.admin;
    expect(
        p,
        "POST",
        "/consumers",
        Some(json!({"username": "alice"})),
        201,
    );

    let victim = gw.nginx.worker_pids()[0];
    kill_mid_write(&gw, victim, "lost-1");
    assert_eq!(
        state_temporaries(&gw),
        vec![format!(".gateway.json.{victim}.tmp")]
    );
    // A start finds it and removes it (the write it held never happened).
    gw.nginx.stop();
    gw.nginx.start_again();
    assert_eq!(state_temporaries(&gw), Vec::<String>::new());
    assert_eq!(state_file(&gw)["consumers"][0]["custom_id"], Value::Null);

    // The lock of a writer that died holding it is taken over by the next writer at
    // once (its process is gone), and that write removes the dead one's file too.
    let victim = gw.nginx.worker_pids()[0];
    kill_mid_write(&gw, victim, "lost-2");
    let v = expect(
        p,
        "PATCH",
        "/consumers/alice",
        Some(json!({"custom_id": "kept"})),
        200,
    );
    assert_eq!(v["custom_id"], "kept");
    assert_eq!(state_temporaries(&gw), Vec::<String>::new());
    assert_eq!(state_file(&gw)["consumers"][0]["custom_id"], "kept");
    assert!(
        gw.nginx
            .error_log()
            .contains("took over the configuration lock"),
        "{}",
        gw.nginx.error_log()
    );
}

/// A raw JSON body that must be refused with 400 naming `field`; nothing is stored.
fn refused_json(p: u16, path: &str, raw: &str, field: &str) {
    let v = expect_raw(p, "POST", path, "application/json", raw, 400);
    let message = v["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(field), "{raw}: {v}");
}

#[test]
fn minus_zero_is_zero_and_paging_reaches_past_it() {
    let gw = gateway("admin-minus-zero");
    let p = gw.admin;
    // JSON's -0, and a form's.
    expect_raw(
        p,
        "POST",
        "/consumers",
        "application/json",
        r#"{"username": "z0", "created_at": -0}"#,
        201,
    );
    expect_form(p, "POST", "/consumers", "username=z1&created_at=-0", 201);
    expect(
        p,
        "POST",
        "/consumers",
        Some(json!({"username": "later"})),
        201,
    );
    let v = expect_raw(
        p,
        "POST",
        "/services",
        "application/json",
        r#"{"name": "s", "host": "s.internal", "retries": -0, "port": -0.0}"#,
        201,
    );
    assert_eq!(v["retries"].to_string(), "0", "{v}");
    assert_eq!(v["port"].to_string(), "0", "{v}");

    // Paging reaches every consumer, one per page.
    let mut seen = Vec::new();
    let mut next = "/consumers?size=1".to_string();
    for _ in 0..10 {
        let v = expect(p, "GET", &next, None, 200);
        for c in v["data"].as_array().unwrap() {
            assert!(!c["created_at"].to_string().starts_with('-'), "{c}");
            seen.push(c["username"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["z0", "z1", "later"]);
    let text = std::fs::read_to_string(gw.nginx.prefix.join("state/gateway.json")).unwrap();
    assert!(!text.contains(":-0"), "{text}");
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

#[test]
fn input_that_cannot_be_stored_as_sent_is_refused_naming_the_field() {
    let gw = gateway("admin-lenient");
    let p = gw.admin;
    // Integers a double cannot hold exactly, in JSON (top level and nested) and forms.
    refused_json(
        p,
        "/consumers",
        r#"{"username": "big", "created_at": 9007199254740993}"#,
        "created_at",
    );
    let v = expect_form(
        p,
        "POST",
        "/consumers",
        "username=big&created_at=9007199254740993",
        400,
    );
    assert!(v["message"].as_str().unwrap().contains("created_at"), "{v}");
    refused_json(
        p,
        "/plugins",
        r#"{"name": "prometheus", "config": {"expire": 18446744073709551615}}"#,
        "config.expire",
    );
    // 2^53 itself is exact, and kept.
    let v = expect_raw(
        p,
        "POST",
        "/consumers",
        "application/json",
        r#"{"username": "edge", "created_at": 9007199254740992}"#,
        201,
    );
    assert_eq!(v["created_at"].to_string(), "9007199254740992");
    // Numbers in forms are decimal: no hex, no spaces.
    for form in [
        "name=h&host=h.internal&port=0x50",
        "name=h&host=h.internal&retries=%205",
    ] {
        let v = expect_form(p, "POST", "/services", form, 400);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("expected an integer"),
            "{form}: {v}"
        );
    }

    // Query integers too.
    for size in ["0x10", "%205", "1e2", "-0", "5.0"] {
        let v = expect(p, "GET", &format!("/consumers?size={size}"), None, 400);
        assert_eq!(v["name"], "invalid size", "{size}: {v}");
    }

    // A list given both ways, in a form and in JSON.
    for form in [
        "username=mix&tags[]=a&tags=b",
        "username=mix&tags=b&tags[]=a",
        "username=mix&tags[1]=a&tags[]=b",
    ] {
        let v = expect_form(p, "POST", "/consumers", form, 400);
        assert!(
            v["message"].as_str().unwrap().contains("the field tags"),
            "{form}: {v}"
        );
    }
    refused_json(
        p,
        "/consumers",
        r#"{"username": "mix", "tags": ["b"], "tags[]": "a"}"#,
        "the field tags",
    );
    let v = expect_form(p, "POST", "/services", "name=r&host=r.internal", 201);
    let service = id(&v);
    let v = expect_form(
        p,
        "POST",
        &format!("/services/{service}/routes"),
        "paths=/a&paths[]=/b",
        400,
    );
    assert!(
        v["message"].as_str().unwrap().contains("the field paths"),
        "{v}"
    );

    // The media type decides, not a substring of the header.
    let r = request(
        p,
        "POST",
        "/consumers",
        &[("Content-Type", "text/plain; x=application/json")],
        br#"{"username": "typed"}"#,
    );
    assert_eq!(r.status, 415, "{}", r.text());

    // Bidirectional overrides, line separators and other format characters, in every
    // string that may reach a label, a log line or a header.
    for (path, field, body) in [
        (
            "/consumers",
            "username",
            json!({"username": "evil\u{202E}gnp"}),
        ),
        ("/consumers", "username", json!({"username": "a\u{2028}b"})),
        (
            "/consumers",
            "custom_id",
            json!({"username": "c", "custom_id": "x\u{200B}"}),
        ),
        (
            "/consumers",
            "tags",
            json!({"username": "c", "tags": ["t\u{2029}"]}),
        ),
        ("/consumers", "username", json!({"username": "c1\u{85}"})),
        (
            "/plugins",
            "config.message",
            json!({"name": "ip-restriction", "config": {"deny": ["10.0.0.1"], "message": "no\u{2066}"}}),
        ),
    ] {
        refused_json(p, path, &body.to_string(), field);
    }
    // A reference by name is checked too (the answer would show it).
    let v = expect_raw(
        p,
        "POST",
        "/routes",
        "application/json",
        &json!({"paths": ["/x"], "service": {"name": "s\u{202E}"}}).to_string(),
        400,
    );
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("service.name") && !message.contains('\u{202E}'),
        "{v}"
    );
    let v = expect_form(p, "POST", "/consumers", "username=a%E2%80%AEb", 400);
    assert!(v["message"].as_str().unwrap().contains("username"), "{v}");

    // Nothing of it was stored.
    let consumers = expect(p, "GET", "/consumers", None, 200);
    assert_eq!(
        names(&consumers, "username"),
        BTreeSet::from(["edge".to_string()])
    );
    assert_eq!(expect(p, "GET", "/routes", None, 200)["data"], json!([]));
    assert_eq!(expect(p, "GET", "/plugins", None, 200)["data"], json!([]));
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

#[test]
fn a_declarative_file_is_held_to_the_same_refusals() {
    for (content, said_field) in [
        (
            r#"{"_format_version": "3.0", "consumers": [{"username": "a\u2028b"}]}"#,
            "username",
        ),
        (
            r#"{"_format_version": "3.0", "consumers": [{"username": "a", "created_at": 9007199254740993}]}"#,
            "created_at",
        ),
    ] {
        let file = declarative_file("admin-declarative-refusals", &Value::Null);
        std::fs::write(&file, content).unwrap();
        let said = failed_start(
            "admin-declarative-refusals",
            &[("DECLARATIVE", file.display().to_string())],
        );
        assert!(said.contains(said_field), "{content}: {said}");
        assert!(
            !said.contains('\u{2028}'),
            "a line separator in the log: {said}"
        );
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }
}

#[test]
fn a_reload_waits_for_a_stalled_state_write() {
    let gw = gateway("admin-stalled-reload");
    let p = gw.admin;
    expect(
        p,
        "POST",
        "/consumers",
        Some(json!({"username": "alice"})),
        201,
    );
    let slow = gw.nginx.worker_pids()[0];
    let conn = connection_to_worker(p, slow).expect("no connection reached the worker");
    let mut strace = stall_next_fsync(slow, 7);
    let answer = patch_on(conn, "/consumers/alice", br#"{"custom_id": "alice-2"}"#);
    wait_in_fsync(slow);
    // The master loads the state file for the new workers: it must do so after the
    // write it waits for, never from under it.
    gw.nginx.reload();
    let alice = harness::parse_response(&answer.join().unwrap());
    strace.stop();
    assert_eq!(alice.status, 200, "{}", alice.text());
    let written: u64 = alice
        .header("x-gateway-config-version")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(state_file(&gw)["consumers"][0]["custom_id"], "alice-2");
    let mut served: BTreeMap<u32, u64> = BTreeMap::new();
    for _ in 0..200 {
        let r = request(p, "GET", "/consumers/alice", &[], b"");
        let v = body_of(&r);
        let pid: u32 = r.header("x-gateway-worker").unwrap().parse().unwrap();
        let version: u64 = r
            .header("x-gateway-config-version")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(v["custom_id"], "alice-2", "worker {pid} serves {v}");
        assert!(version > written, "worker {pid} runs version {version}");
        served.insert(pid, version);
        if served.len() == 2 {
            break;
        }
    }
    assert_eq!(served.len(), 2, "only {served:?} answered");
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

/// Kong's `GET /plugins/enabled` (the plugin names this node runs) and
/// `GET /schemas/plugins/{name}` (a plugin's schema, from the definitions that
/// validate it: every config field with its type and default).
#[test]
fn enabled_plugins_and_plugin_schemas_answer_as_kong() {
    let gw = gateway("admin-schemas");
    let p = gw.admin;
    let enabled = expect(p, "GET", "/plugins/enabled", None, 200);
    assert_eq!(
        enabled,
        serde_json::json!({ "enabled_plugins": ["ip-restriction", "key-auth", "prometheus"] })
    );
    let s = expect(p, "GET", "/schemas/plugins/prometheus", None, 200);
    let fields = s["fields"].as_array().unwrap();
    let field = |name: &str| {
        fields
            .iter()
            .find_map(|f| f.get(name))
            .unwrap_or_else(|| panic!("no {name}: {s}"))
            .clone()
    };
    assert_eq!(field("service")["type"], "foreign");
    let config = field("config");
    assert_eq!(config["type"], "record");
    let conf_fields = config["fields"].as_array().unwrap();
    let conf = |name: &str| {
        conf_fields
            .iter()
            .find_map(|f| f.get(name))
            .unwrap_or_else(|| panic!("no config.{name}: {config}"))
            .clone()
    };
    assert_eq!(conf("per_consumer")["type"], "boolean");
    assert_eq!(conf("per_consumer")["default"], false);
    assert_eq!(
        conf("naming")["one_of"],
        serde_json::json!(["prometheus", "kong"])
    );
    assert_eq!(conf("request_latency_buckets")["type"], "array");
    // key-auth cannot apply to a consumer: its schema says so.
    let ka = expect(p, "GET", "/schemas/plugins/key-auth", None, 200);
    let consumer = ka["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("consumer"))
        .unwrap()
        .clone();
    assert!(consumer.get("eq").is_some(), "{consumer}");
    let missing = expect(p, "GET", "/schemas/plugins/nope%0a", None, 404);
    assert_eq!(missing["message"], "No plugin named 'nope\\x0A'");
    expect(p, "GET", "/schemas/services", None, 404);
    expect(p, "POST", "/plugins/enabled", None, 405);
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

/// A `kong.yml` the workers (nobody) can read, in a directory of its own.
fn declarative_yaml(name: &str, text: &str) -> PathBuf {
    let file = declarative_file(name, &Value::Null).with_file_name("kong.yml");
    std::fs::write(&file, text).unwrap();
    Command::new("chmod")
        .arg("644")
        .arg(&file)
        .status()
        .unwrap();
    file
}

/// Kong's `kong.yml` as deck writes it, for an upstream on `port`.
fn kong_yml(port: u16) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: web
  url: http://127.0.0.1:{port}
  tags: [team-a, prod]
  routes:
  - name: root
    paths:
    - /
    tags: [team-a]
    plugins:
    - name: key-auth
      config:
        key_names: [apikey]
  plugins:
  - name: prometheus
    config:
      status_code_metrics: true
consumers:
- username: dave
  tags: [prod]
  keyauth_credentials:
  - key: dave-key
    tags: [team-a]
upstreams:
- name: backend
  tags: [prod]
  targets:
  - target: 127.0.0.1:{port}
    weight: 50
    tags: [team-a]
"#
    )
}

#[test]
fn a_kong_yml_is_served_as_kong_serves_it() {
    let file = declarative_yaml("admin-kong-yml", &kong_yml(9));
    let gw = start_gateway(
        "admin-kong-yml",
        &[("DECLARATIVE", file.display().to_string())],
    );
    // The upstream's port is known once the gateway runs: rewrite, reload.
    std::fs::write(&file, kong_yml(gw.upstream)).unwrap();
    gw.nginx.reload();
    let p = gw.admin;
    let web = expect(p, "GET", "/services/web", None, 200);
    assert_eq!(web["tags"], json!(["team-a", "prod"]));
    assert_eq!(web["port"], gw.upstream);
    let route = expect(p, "GET", "/routes/root", None, 200);
    assert_eq!(route["service"], json!({"id": web["id"]}));
    let key_auth = expect(p, "GET", "/routes/root/plugins", None, 200);
    assert_eq!(
        key_auth["data"][0]["config"]["key_names"],
        json!(["apikey"])
    );
    expect(p, "GET", "/consumers/dave/key-auth/dave-key", None, 200);
    let targets = expect(p, "GET", "/upstreams/backend/targets", None, 200);
    assert_eq!(targets["data"][0]["weight"], 50);
    // Traffic: the route's key-auth, the consumer's credential.
    assert_eq!(request(gw.proxy, "GET", "/", &[], b"").status, 401);
    let r = request(gw.proxy, "GET", "/", &[("apikey", "dave-key")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // The file's tags filter the lists, as the Admin API's do.
    let team_a = expect(p, "GET", "/key-auths?tags=team-a", None, 200);
    assert_eq!(names(&team_a, "key"), BTreeSet::from(["dave-key".into()]));
    let prod = expect(p, "GET", "/upstreams?tags=prod", None, 200);
    assert_eq!(names(&prod, "name"), BTreeSet::from(["backend".into()]));
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// Files that must be refused, with what the refusal says: the file, the line, the
/// entity or the bound.
fn bad_kong_ymls() -> Vec<(&'static str, String, &'static str)> {
    let mut laughs =
        String::from("_format_version: \"3.0\"\nx0: &a0 [l, l, l, l, l, l, l, l, l, l]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        laughs += &format!("x{i}: &a{i} [{}]\n", vec![prev; 10].join(", "));
    }
    laughs += "services: *a8\n";
    vec![
        (
            "a wrong type, on a nested entity",
            "_format_version: \"3.0\"\nservices:\n- name: web\n  host: web.internal\n  routes:\n  - name: r\n    paths: [/r]\n    strip_path: maybe\n".into(),
            "kong.yml:8: services[1].routes[1] (name 'r'): schema violation (strip_path: expected a boolean)",
        ),
        (
            "an unknown field",
            "_format_version: \"3.0\"\nconsumers:\n- username: dave\n  keyauth_credentials:\n  - key: k\n    secret: s\n".into(),
            "kong.yml:6: consumers[1].keyauth_credentials[1] (key 'k'): schema violation (secret: unknown field)",
        ),
        (
            "a duplicate key",
            "_format_version: \"3.0\"\nservices:\n- name: a\n  host: a.internal\n  name: b\n".into(),
            "kong.yml:5: duplicate key 'name' (first at line 3)",
        ),
        (
            "a billion laughs",
            laughs,
            "kong.yml:7: more than 1000000 nodes (an alias counts as every node it repeats)",
        ),
        (
            "10,000 levels of nesting",
            format!("services: {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
            "kong.yml:1: nested deeper than 64 levels",
        ),
        (
            "a file larger than lua_shared_dict gateway_config (16m)",
            format!("#{}", "x".repeat(16 << 20)),
            "kong.yml: 16777217 bytes, more than the limit of 16777216",
        ),
        (
            "a syntax error",
            "_format_version: \"3.0\"\nservices:\n- name: [web\n".into(),
            "kong.yml:4: did not find expected ',' or ']'",
        ),
    ]
}

#[test]
fn a_bad_kong_yml_stops_a_start_naming_the_file_line_and_entity() {
    for (what, text, said) in bad_kong_ymls() {
        let file = declarative_yaml("admin-bad-kong-yml", &text);
        let out = failed_start(
            "admin-bad-kong-yml",
            &[("DECLARATIVE", file.display().to_string())],
        );
        let want = format!("{}/{said}", file.parent().unwrap().display());
        assert!(out.contains(&want), "{what}: want {want}, got:\n{out}");
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }
}

#[test]
fn a_bad_kong_yml_fails_a_reload_and_the_running_configuration_stays() {
    let file = declarative_yaml("admin-bad-kong-yml-reload", &kong_yml(9));
    let gw = start_gateway(
        "admin-bad-kong-yml-reload",
        &[("DECLARATIVE", file.display().to_string())],
    );
    std::fs::write(&file, kong_yml(gw.upstream)).unwrap();
    gw.nginx.reload();
    let workers = gw.nginx.worker_pids();
    let version = expect(gw.admin, "GET", "/services/web", None, 200)["id"].clone();
    for (i, (what, text, said)) in bad_kong_ymls().into_iter().enumerate() {
        std::fs::write(&file, &text).unwrap();
        harness::signal(gw.nginx.master_pid(), "HUP");
        let want = format!("{}/{said}", file.parent().unwrap().display());
        harness::wait_for(
            Duration::from_secs(15),
            || (gw.nginx.error_log().matches(&want).count() == 1).then_some(()),
            || {
                format!(
                    "{what} (reload {i}): no '{want}' in\n{}",
                    gw.nginx.error_log()
                )
            },
        );
        // Nothing of the file was loaded: the same workers serve the same entities.
        assert_eq!(gw.nginx.worker_pids(), workers, "{what}");
        assert_eq!(
            expect(gw.admin, "GET", "/services/web", None, 200)["id"],
            version,
            "{what}"
        );
        let r = request(gw.proxy, "GET", "/", &[("apikey", "dave-key")], b"");
        assert_eq!(r.status, 200, "{what}: {}", r.text());
    }
    // Only the reloads' own lines: no worker error, no Lua error elsewhere.
    let others: Vec<String> = gw
        .nginx
        .errors()
        .into_iter()
        .filter(|l| !l.contains("init_by_lua error: gateway: "))
        .collect();
    assert!(others.is_empty(), "{others:?}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// Every list of `p` filtered by `tags`: the names (or keys, targets) it answers,
/// following `next` pages of `size` 1, so the filter holds across pages.
fn tagged(p: u16, list: &str, tags: &str, key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut next = format!("{list}?size=1&tags={}", harness::urlencode(tags));
    loop {
        let page = expect(p, "GET", &next, None, 200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 1, "{next}: {page}");
        out.extend(data.iter().map(|e| e[key].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => return out,
        }
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tags_filter_every_list_with_kongs_and_and_or() {
    let gw = gateway("admin-tags");
    let p = gw.admin;
    for (name, tags) in [
        ("a", json!(["x", "y"])),
        ("b", json!(["x"])),
        ("c", json!(["y"])),
        ("d", json!([])),
    ] {
        expect(
            p,
            "POST",
            "/services",
            Some(json!({"name": name, "host": format!("{name}.internal"), "tags": tags})),
            201,
        );
        expect(
            p,
            "POST",
            &format!("/services/{name}/routes"),
            Some(json!({"name": format!("r{name}"), "paths": [format!("/{name}")], "tags": tags})),
            201,
        );
        expect(
            p,
            "POST",
            "/consumers",
            Some(json!({"username": format!("u{name}"), "tags": tags})),
            201,
        );
        expect(
            p,
            "POST",
            &format!("/consumers/u{name}/key-auth"),
            Some(json!({"key": format!("k{name}"), "tags": tags})),
            201,
        );
        expect(
            p,
            "POST",
            &format!("/services/{name}/plugins"),
            Some(
                json!({"name": "ip-restriction", "config": {"allow": ["127.0.0.1"]}, "tags": tags}),
            ),
            201,
        );
    }
    expect(
        p,
        "POST",
        "/upstreams",
        Some(json!({"name": "up", "tags": ["x"]})),
        201,
    );
    for (t, tags) in [
        ("127.0.0.1:1", json!(["x", "y"])),
        ("127.0.0.1:2", json!(["y"])),
    ] {
        expect(
            p,
            "POST",
            "/upstreams/up/targets",
            Some(json!({"target": t, "tags": tags})),
            201,
        );
    }

    for (tags, want) in [
        ("x", &["a", "b"][..]),
        ("x,y", &["a"][..]),
        ("y,x", &["a"][..]),
        ("x/y", &["a", "b", "c"][..]),
        ("z", &[][..]),
        ("z/y", &["a", "c"][..]),
    ] {
        let with = |prefix: &str| -> BTreeSet<String> {
            want.iter().map(|n| format!("{prefix}{n}")).collect()
        };
        assert_eq!(
            tagged(p, "/services", tags, "name"),
            with(""),
            "services {tags}"
        );
        assert_eq!(
            tagged(p, "/routes", tags, "name"),
            with("r"),
            "routes {tags}"
        );
        assert_eq!(
            tagged(p, "/consumers", tags, "username"),
            with("u"),
            "consumers {tags}"
        );
        assert_eq!(
            tagged(p, "/key-auths", tags, "key"),
            with("k"),
            "key-auths {tags}"
        );
        let plugins = tagged(p, "/plugins", tags, "id");
        assert_eq!(plugins.len(), want.len(), "plugins {tags}");
    }
    // Nested lists too, within their parent.
    assert_eq!(tagged(p, "/services/a/routes", "x", "name"), set(&["ra"]));
    assert_eq!(tagged(p, "/services/b/routes", "y", "name"), set(&[]));
    assert_eq!(
        tagged(p, "/consumers/ua/key-auth", "x,y", "key"),
        set(&["ka"])
    );
    assert_eq!(
        tagged(p, "/services/c/plugins", "y", "name"),
        set(&["ip-restriction"])
    );
    assert_eq!(tagged(p, "/upstreams", "x", "name"), set(&["up"]));
    assert_eq!(
        tagged(p, "/upstreams/up/targets", "y", "target"),
        set(&["127.0.0.1:1", "127.0.0.1:2"])
    );
    assert_eq!(
        tagged(p, "/upstreams/up/targets", "x,y", "target"),
        set(&["127.0.0.1:1"])
    );
    // The next page keeps the filter.
    let page = expect(p, "GET", "/services?size=1&tags=x", None, 200);
    assert!(page["next"].as_str().unwrap().contains("tags=x"), "{page}");

    // A filter Kong refuses is a 400 naming `tags`.
    for (q, why) in [
        ("tags=x,y/z", "cannot mix ',' (and) with '/' (or)"),
        ("tags=", "a tag is empty"),
        ("tags=x,,y", "a tag is empty"),
        ("tags=a,b,c,d,e,f", "cannot query more than 5 tags"),
        ("tags=x&tags=y", "given more than once"),
        ("tags", "expected a value"),
        ("tags=a%20b", "invalid tag 'a b'"),
        ("tags=a%01", "control characters are not allowed"),
    ] {
        for list in ["/services", "/upstreams/up/targets"] {
            let v = expect(p, "GET", &format!("{list}?{q}"), None, 400);
            assert_eq!(v["name"], "invalid options", "{list}?{q}: {v}");
            let said = v["fields"]["tags"].as_str().unwrap_or_default();
            assert!(said.contains(why), "{list}?{q}: {v}");
        }
    }
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

#[test]
fn tags_are_held_to_kongs_rules_and_limits() {
    let gw = gateway("admin-tag-rules");
    let p = gw.admin;
    for (tags, field, why) in [
        (json!(["a,b"]), "1", "invalid tag 'a,b'"),
        (json!(["ok", "a/b"]), "2", "invalid tag 'a/b'"),
        (json!(["a b"]), "1", "invalid tag 'a b'"),
        (json!([""]), "1", "length must be at least 1"),
        (json!(["x".repeat(129)]), "1", "length must be at most 128"),
        (json!([7]), "1", "expected a string"),
    ] {
        let v = expect(
            p,
            "POST",
            "/services",
            Some(json!({"name": "s", "host": "s.internal", "tags": tags})),
            400,
        );
        let i: usize = field.parse().unwrap();
        let said = v["fields"]["tags"][i - 1].as_str().unwrap_or_default();
        assert!(said.contains(why), "{tags}: {v}");
    }
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let v = expect(
        p,
        "POST",
        "/consumers",
        Some(json!({"username": "u", "tags": many})),
        400,
    );
    assert_eq!(v["fields"]["tags"], "length must be at most 64", "{v}");
    // Nothing was stored; UTF-8 beyond ASCII is a tag, as in Kong.
    assert_eq!(expect(p, "GET", "/services", None, 200)["data"], json!([]));
    expect(
        p,
        "POST",
        "/services",
        Some(json!({"name": "s", "host": "s.internal", "tags": ["équipe", "a:b.c-d_e~f"]})),
        201,
    );
    assert_eq!(tagged(p, "/services", "équipe", "name"), set(&["s"]));
}
