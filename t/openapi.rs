//! The Admin API against its own description (`GET /openapi.json`, kept as
//! `docs/admin-openapi.json`, derived by `lua/gateway/openapi.lua` from the entity
//! definitions): `schemathesis` (PyPI) drives the real gateway from the description,
//! seeded and bounded, and fails on a 5xx, a status, content type, header or body the
//! description does not allow, an invalid request accepted, a created entity that
//! cannot be read or a deleted one that can; then every collection is checked for
//! consistency (read, listed, paged to, deleted) and the error log for Lua errors.
//! Each case below it failed once (a mismatch schemathesis found).
//!
//! A deeper run than CI's, against a gateway of `make run` (Admin API on :8001):
//!   schemathesis run http://127.0.0.1:8001/openapi.json --url http://127.0.0.1:8001 \
//!     --checks all --exclude-checks positive_data_acceptance --generation-allow-x00 false \
//!     --max-examples 200 --workers 1
//! (a few minutes; with seeds 7 and 11 at 40 to 50 examples, about 16,000 cases). It may
//! report one case the description cannot say: a blank body (`\n`) sent as JSON is
//! taken as no body (`{}`), as `gateway.body` means it to be.

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Instant;

/// What CI runs (about 50 s), one seed so that a failure reproduces, one worker (with
/// more, schemathesis' Hypothesis now and then fails on its own with "AST constructor
/// recursion depth mismatch"): the `coverage` phase (boundary and wrong-type values of
/// every field, undeclared methods) on the bodies of the top-level collections and
/// entities (POST, PATCH; the nested paths take the same bodies, PUT nearly so); then
/// `examples`, `fuzzing` and `stateful` (links: a created entity is read, changed and
/// deleted) on every operation. The deeper run above has every phase on every operation.
const RUNS: [(&str, &[&str]); 2] = [
    (
        "coverage",
        &[
            "--include-path-regex",
            "^/[a-z-]*(/\\{[a-z_]+\\})?$",
            "--exclude-method",
            "GET",
            "--exclude-method",
            "HEAD",
            "--exclude-method",
            "PUT",
            "--exclude-method",
            "DELETE",
        ],
    ),
    ("examples,fuzzing,stateful", &[]),
];
const MAX_EXAMPLES: &str = "10";
const SEED: &str = "20241";

/// Checks that cannot hold, and why: `positive_data_acceptance` expects every request
/// the schemas allow to be accepted, but whether one is depends on the store
/// (references to entities that exist, unique names, entity checks such as a route's
/// `paths`/`hosts`/`methods`, host name rules, opaque `offset`s): those are the
/// documented 400/409s.
const EXCLUDED_CHECKS: &str = "positive_data_acceptance";

/// Runs schemathesis against the Admin API at `base`; its output is kept in `dir` too.
fn schemathesis(base: &str, dir: &std::path::Path, phases: &str, extra: &[&str]) {
    let started = Instant::now();
    let schema = format!("{base}/openapi.json");
    let mut args = vec![
        "-c",
        "import sys; from schemathesis.cli import schemathesis; \
         sys.argv[0] = 'schemathesis'; schemathesis()",
        "run",
        &schema,
        "--url",
        base,
        "--phases",
        phases,
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--generation-allow-x00",
        "false",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
    ];
    args.extend(extra);
    let out = Command::new("python3")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("python3 with schemathesis (scripts/setup.sh test)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    std::fs::write(dir.join(format!("schemathesis-{phases}.txt")), &text).unwrap();
    eprintln!(
        "schemathesis {phases}: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        text.lines()
            .filter(|l| l.contains(" generated"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        out.status.success(),
        "schemathesis {phases} failed:\n{text}"
    );
    assert!(text.contains(" passed"), "{text}");
}

fn ok_json(r: (u16, Value), status: u16) -> Value {
    assert_eq!(r.0, status, "{}", r.1);
    r.1
}

fn assert_clean_log(gw: &Gateway) {
    let errors = gw.nginx.errors();
    assert!(errors.is_empty(), "error log:\n{}", errors.join("\n"));
    assert!(gw.nginx.crashes().is_empty(), "{:?}", gw.nginx.crashes());
    let log = gw.nginx.error_log();
    for needle in [
        "runtime error",
        "lua entry thread aborted",
        "stack traceback",
    ] {
        assert!(!log.contains(needle), "{needle} in the error log:\n{log}");
    }
}

#[test]
fn the_description_served_is_the_one_in_the_repository() {
    let gw = start_gateway("openapi-served", &[]);
    let r = request(gw.admin, "GET", "/openapi.json", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let kept = std::fs::read(root().join("docs/admin-openapi.json")).unwrap();
    assert!(
        r.body == kept,
        "GET /openapi.json differs from docs/admin-openapi.json: run make admin-openapi"
    );
    let doc: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/services/{service}/routes/{id_or_name}"]["put"].is_object());
    assert_clean_log(&gw);
}

/// The entities the consistency checks make: (collection to POST to, body, the path
/// of the top-level collection it is also listed in, its endpoint key's field).
fn fixtures() -> Vec<(
    &'static str,
    Value,
    Option<&'static str>,
    Option<&'static str>,
)> {
    vec![
        (
            "/services",
            json!({"name": "oa-svc", "url": "http://127.0.0.1:9/x"}),
            None,
            Some("name"),
        ),
        (
            "/services/oa-svc/routes",
            json!({"name": "oa-route", "paths": ["/oa"]}),
            Some("/routes"),
            Some("name"),
        ),
        (
            "/consumers",
            json!({"username": "oa-user"}),
            None,
            Some("username"),
        ),
        (
            "/consumers/oa-user/key-auth",
            json!({"key": "oa-key"}),
            Some("/key-auths"),
            Some("key"),
        ),
        ("/upstreams", json!({"name": "oa-up"}), None, Some("name")),
        (
            "/upstreams/oa-up/targets",
            json!({"target": "127.0.0.1:9"}),
            None,
            Some("target"),
        ),
        (
            "/routes/oa-route/plugins",
            json!({"name": "ip-restriction", "config": {"deny": ["10.0.0.1"]}}),
            Some("/plugins"),
            None,
        ),
    ]
}

/// Every entity of a collection, by following `next` from pages of `size`; each page
/// is checked against the description's shape (data, next, offset only when next).
fn walk(port: u16, collection: &str, size: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("{collection}?size={size}");
    for _ in 0..100_000 {
        let page = ok_json(admin(port, "GET", &path, None), 200);
        let data = page["data"].as_array().expect("data").clone();
        assert!(data.len() <= size, "{path}: {} > {size}", data.len());
        out.extend(data);
        match page["next"].as_str() {
            None => {
                assert!(
                    page["next"].is_null() && page.get("offset").is_none(),
                    "{page}"
                );
                return out;
            }
            Some(next) => {
                assert!(page["offset"].is_string(), "{page}");
                path = next.to_string();
            }
        }
    }
    panic!("{collection}: paging never ends");
}

fn ids(entities: &[Value]) -> Vec<String> {
    entities
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every collection reads the same whatever the page size, each entity listed once
/// and readable by its id as listed.
fn assert_consistent(port: u16, collections: &[String]) {
    for c in collections {
        let all = walk(port, c, 1000);
        let unique: BTreeSet<String> = ids(&all).into_iter().collect();
        assert_eq!(unique.len(), all.len(), "{c}: an entity listed twice");
        assert_eq!(ids(&walk(port, c, 7)), ids(&all), "{c}: pages of 7");
        for e in all.iter().take(50) {
            let id = e["id"].as_str().unwrap();
            assert_eq!(
                ok_json(admin(port, "GET", &format!("{c}/{id}"), None), 200),
                *e,
                "{c}/{id}"
            );
        }
    }
}

#[test]
fn schemathesis_finds_the_admin_api_as_described_and_its_state_consistent() {
    let gw = start_gateway("openapi-schemathesis", &[]);
    let base = format!("http://127.0.0.1:{}", gw.admin);
    for (phases, extra) in RUNS {
        schemathesis(&base, &gw.nginx.prefix, phases, extra);
    }

    // What schemathesis left: every collection consistent.
    let doc: Value =
        serde_json::from_slice(&request(gw.admin, "GET", "/openapi.json", &[], b"").body).unwrap();
    let top: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, ops)| p.matches('/').count() == 1 && ops.get("post").is_some())
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(top.len(), 6, "{top:?}");
    assert_consistent(gw.admin, &top);

    // A created entity can be read (by id and key), listed where it belongs, paged to
    // one at a time, and deleted; then it is gone from all of them.
    let mut made = Vec::new();
    for (collection, body, also, key) in fixtures() {
        let e = ok_json(admin(gw.admin, "POST", collection, Some(body)), 201);
        let id = e["id"].as_str().unwrap().to_string();
        let mut reads = vec![format!("{collection}/{id}")];
        if let Some(k) = key {
            reads.push(format!(
                "{collection}/{}",
                urlencode(e[k].as_str().unwrap())
            ));
        }
        for path in &reads {
            assert_eq!(
                ok_json(admin(gw.admin, "GET", path, None), 200),
                e,
                "{path}"
            );
        }
        let mut lists = vec![collection.to_string()];
        lists.extend(also.map(str::to_string));
        for list in &lists {
            let found = walk(gw.admin, list, 1);
            assert_eq!(
                found.iter().filter(|x| x["id"] == e["id"]).count(),
                1,
                "{list}"
            );
            assert_eq!(found.iter().find(|x| x["id"] == e["id"]).unwrap(), &e);
        }
        made.push((reads, lists, id));
    }
    for (reads, lists, id) in made.into_iter().rev() {
        assert_eq!(admin(gw.admin, "DELETE", &reads[0], None).0, 204);
        for path in &reads {
            assert_eq!(admin(gw.admin, "GET", path, None).0, 404, "{path}");
        }
        for list in &lists {
            assert!(
                !ids(&walk(gw.admin, list, 1)).contains(&id),
                "{list} still lists {id}"
            );
        }
        assert_eq!(admin(gw.admin, "DELETE", &reads[0], None).0, 204);
    }
    assert_consistent(gw.admin, &top);
    assert_clean_log(&gw);
}

/// A null in a list (JSON) was stored as nothing in an array and was a 500 (a Lua
/// error) in a set: it is a 400 naming the element, and nothing is stored.
#[test]
fn null_in_a_list_is_refused_naming_the_element() {
    let gw = start_gateway("openapi-null-elements", &[]);
    let p = gw.admin;
    let (s, b) = admin(
        p,
        "POST",
        "/services",
        Some(json!({"host": "a", "tags": ["x", null]})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["fields"]["tags"][1], "null is not allowed", "{b}");
    let (s, b) = admin(p, "POST", "/routes", Some(json!({"paths": [null, "/a"]})));
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["fields"]["paths"][0], "null is not allowed", "{b}");
    let (s, b) = admin(
        p,
        "POST",
        "/plugins",
        Some(json!({"name": "ip-restriction", "config": {"allow": [null]}})),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["fields"]["config"]["allow"][0], "null is not allowed",
        "{b}"
    );
    for c in ["/services", "/routes", "/plugins"] {
        assert_eq!(admin(p, "GET", c, None).1["data"], json!([]), "{c}");
    }
    assert_clean_log(&gw);
}

/// nginx's form decoder drops a pair without a name (`=false`), so such a body was
/// taken without the field and without a word: it is a 400, and nothing is stored.
#[test]
fn a_form_pair_without_a_name_is_refused() {
    let gw = start_gateway("openapi-empty-form-key", &[]);
    for body in ["=false&username=a", "username=b&=x"] {
        let r = request(
            gw.admin,
            "POST",
            "/consumers",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            b["message"],
            "Invalid key (empty): a form field needs a name"
        );
    }
    assert_eq!(
        admin(gw.admin, "GET", "/consumers", None).1["data"],
        json!([])
    );
    assert_clean_log(&gw);
}

/// nginx refuses TRACE itself, with an HTML page and no `Allow`: the Admin API answers
/// it as any other method a path does not allow.
#[test]
fn trace_is_refused_like_any_other_method_with_allow() {
    let gw = start_gateway("openapi-trace", &[]);
    for (path, allow) in [
        ("/", "GET, HEAD"),
        ("/services", "GET, HEAD, POST"),
        ("/services/x", "GET, HEAD, PATCH, PUT, DELETE"),
    ] {
        for method in ["TRACE", "OPTIONS"] {
            let r = request(gw.admin, method, path, &[], b"");
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
            assert_eq!(
                r.header("content-type"),
                Some("application/json; charset=utf-8"),
                "{method} {path}"
            );
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(b["message"], "Method not allowed");
        }
    }
    assert_clean_log(&gw);
}
