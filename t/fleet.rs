//! A fleet end to end: three gateway nodes (conf/gateway.conf, each with its node id
//! as a constant label), one real Prometheus finding them through file-based service
//! discovery, running rules/ngx-prometheus.rules.yml and remote-writing into
//! VictoriaMetrics (Debian `victoria-metrics`), the central store every query here goes
//! to. Also: every expression of dashboards/ngx-prometheus.json evaluated there, and
//! the families Kong's own dashboard reads under `naming = "kong"`.

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Not the documented default: the rules must work under any job name.
const JOB: &str = "edge-gateways";
/// Generous: everything here waits for a scrape (1 s), a remote-write batch (1 s) and
/// the store's indexing; a loaded machine may take many times that.
const PATIENCE: Duration = Duration::from_secs(40);

/// VictoriaMetrics, single node, on a loopback port with its storage in `dir`.
struct Victoria {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Victoria {
    fn start(dir: &Path) -> Victoria {
        let mut v = Victoria {
            child: None,
            dir: dir.to_path_buf(),
            port: free_port(),
        };
        v.run();
        v
    }

    /// Starts (again) on the same port and storage.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("victoria.log"))
            .unwrap();
        let child = Command::new("victoria-metrics")
            .arg(format!(
                "-storageDataPath={}",
                self.dir.join("victoria").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            // Answer with the newest samples (the default hides the last 30 s) and
            // never from a cache of an earlier answer.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("victoria-metrics (Debian package; scripts/setup.sh test installs it)");
        self.child = Some(child);
        let port = self.port;
        assert!(
            eventually(PATIENCE, || std::panic::catch_unwind(|| get(
                port, "/health"
            ))
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ()))
            .is_some(),
            "victoria-metrics did not come up:\n{}",
            self.log()
        );
    }

    /// Stops it the way an operator would (SIGTERM: it flushes what it holds).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg(c.id().to_string())
                .status()
                .unwrap();
            c.wait().unwrap();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("victoria.log")).unwrap_or_default()
    }

    /// An instant query (at `at`, else now): the whole answer, or Err with the error.
    fn answer(&self, q: &str, at: Option<f64>) -> Result<Value, String> {
        let mut path = format!("/api/v1/query?nocache=1&query={}", urlencode(q));
        if let Some(t) = at {
            path.push_str(&format!("&time={t:.3}"));
        }
        let port = self.port;
        let r = std::panic::catch_unwind(|| get(port, &path))
            .map_err(|_| "victoria-metrics unreachable".to_string())?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))?;
        if v["status"] != "success" {
            return Err(r.text());
        }
        Ok(v)
    }

    /// The raw samples of the one series `selector` names with timestamps in
    /// (`from`, `to`]: (milliseconds, value), as the store keeps them.
    fn samples(&self, selector: &str, from: f64, to: f64) -> Vec<(i64, f64)> {
        let path = format!(
            "/api/v1/export?match[]={}&start={from:.3}&end={to:.3}",
            urlencode(selector)
        );
        let port = self.port;
        let Ok(r) = std::panic::catch_unwind(|| get(port, &path)) else {
            return Vec::new();
        };
        let lines: Vec<Value> = r
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines.len() <= 1, "{selector}: more than one series");
        let mut out = Vec::new();
        for l in lines {
            let ts = l["timestamps"].as_array().unwrap();
            let vs = l["values"].as_array().unwrap();
            for (t, v) in ts.iter().zip(vs) {
                out.push((t.as_i64().unwrap(), v.as_f64().unwrap()));
            }
        }
        in_window(out, from, to)
    }

    /// The series of an instant query: labels and value.
    fn query_at(&self, q: &str, at: Option<f64>) -> Vec<(BTreeMap<String, String>, f64)> {
        let v = self
            .answer(q, at)
            .unwrap_or_else(|e| panic!("query {q}: {e}"));
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (labels, value)
            })
            .collect()
    }

    fn query(&self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.query_at(q, None)
    }

    /// The single value of a query (None when it has no series).
    fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q);
        assert!(r.len() <= 1, "{q}: more than one series: {r:?}");
        r.first().map(|(_, v)| *v)
    }

    /// Polls until `q` has exactly the value `want` (or no series, for None).
    fn wait_for(&self, q: &str, want: Option<f64>) {
        let got = eventually(PATIENCE, || {
            let v = self.value(q);
            (v == want).then_some(())
        });
        assert!(
            got.is_some(),
            "{q}: wanted {want:?}, the store has {:?}",
            self.value(q)
        );
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- victoria-metrics log (tail) ---");
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Samples with timestamps in (`from`, `to`] (seconds), sorted.
fn in_window(mut samples: Vec<(i64, f64)>, from: f64, to: f64) -> Vec<(i64, f64)> {
    let (from, to) = ((from * 1000.0) as i64, (to * 1000.0) as i64);
    samples.retain(|(t, _)| *t > from && *t <= to);
    samples.sort_by_key(|(t, _)| *t);
    samples
}

/// The raw samples the scraping Prometheus holds for the one series `selector` names,
/// with timestamps in (`from`, `to`].
fn prom_samples(prom: &Prometheus, selector: &str, from: f64, to: f64) -> Vec<(i64, f64)> {
    let window = (to - from).ceil() as u64 + 2;
    let v = prom
        .api(&format!(
            "/api/v1/query?query={}&time={to:.3}",
            urlencode(&format!("{selector}[{window}s]"))
        ))
        .expect("Prometheus answers");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{selector}: {v}");
    let out = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            (t, p[1].as_str().unwrap().parse().unwrap())
        })
        .collect();
    in_window(out, from, to)
}

/// A scrape target that is not ours: answers every request with `status` and `body`.
fn fake_target(status: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            harness::read_request_head(&mut s);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// One gateway node: conf/gateway.conf with its own node id and `node_id` constant
/// label, seeded with the services and routes every node has.
struct Node {
    id: &'static str,
    g: Gateway,
}

impl Node {
    fn start(id: &'static str, series_limit: u32) -> Node {
        let p = prefix(&format!("fleet-{id}"));
        std::fs::write(p.join("node_id"), format!("{id}\n")).unwrap();
        let upstream = free_port();
        let dead = free_port();
        let seed = json!({
            "_format_version": "1",
            "upstreams": [{ "name": "pool", "targets": [{ "target": format!("127.0.0.1:{upstream}") }] }],
            "services": [
                { "name": "web", "host": "pool", "port": 80 },
                { "name": "api", "url": format!("http://127.0.0.1:{upstream}") },
                // Nothing listens there: every request is a 502.
                { "name": "broken", "url": format!("http://127.0.0.1:{dead}") }
            ],
            "routes": [
                { "name": "home", "paths": ["/home"], "service": { "name": "web" } },
                { "name": "users", "paths": ["/users"], "service": { "name": "api" } },
                { "name": "extra", "paths": ["/extra"], "service": { "name": "api" } },
                { "name": "fail", "paths": ["/fail"], "service": { "name": "broken" } }
            ],
            "plugins": [{ "name": "prometheus", "config": {
                "status_code_metrics": true, "latency_metrics": true,
                "bandwidth_metrics": true, "upstream_health_metrics": true,
                "series_limit": series_limit
            } }]
        });
        let seed_file = p.join("seed.json");
        std::fs::write(&seed_file, seed.to_string()).unwrap();
        let (conf, [proxy, admin, metrics, _]) = render_gateway(
            &p,
            &[
                ("UPSTREAM_PORT", upstream.to_string()),
                ("SEED", seed_file.display().to_string()),
            ],
        );
        let zone = "prometheus_zone metrics 64m;";
        assert!(conf.contains(zone));
        let conf = conf.replace(
            zone,
            &format!(
                "{zone}\n    prometheus_node_id_file {}/node_id;\n    \
                 prometheus_const_labels node_id=$node_id;",
                p.display()
            ),
        );
        let nginx = Nginx::start_with(p, conf);
        Node {
            id,
            g: Gateway {
                nginx,
                proxy,
                admin,
                metrics,
                upstream,
            },
        }
    }

    fn instance(&self) -> String {
        format!("127.0.0.1:{}", self.g.metrics)
    }

    /// Sends `n` requests to `path`, each answered `code`.
    fn send(&self, path: &str, n: u32, code: u16) {
        for _ in 0..n {
            assert_eq!(get(self.g.proxy, path).status, code, "{} {path}", self.id);
        }
    }
}

/// What each request path is counted as: (service, route, code).
fn labels_of(path: &str) -> (&'static str, &'static str, &'static str) {
    match path {
        "/home" => ("web", "home", "200"),
        "/users" => ("api", "users", "200"),
        "/extra" => ("api", "extra", "200"),
        "/fail" => ("broken", "fail", "502"),
        _ => ("", "", "404"),
    }
}

/// The file-SD file: written whole and renamed in, as discovery files should be.
fn write_sd(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn sd_of(nodes: &[&Node]) -> String {
    json!([{
        "targets": nodes.iter().map(|n| n.instance()).collect::<Vec<_>>(),
        "labels": { "dc": "test" }
    }])
    .to_string()
}

/// Prometheus' view of the targets of the job: instance -> (health, lastError).
fn targets(prom: &Prometheus) -> BTreeMap<String, (String, String)> {
    let Some(v) = prom.api("/api/v1/targets?state=active") else {
        return BTreeMap::new();
    };
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == JOB)
        .map(|t| {
            (
                t["labels"]["instance"].as_str().unwrap().to_string(),
                (
                    t["health"].as_str().unwrap().to_string(),
                    t["lastError"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

type Counts = BTreeMap<(String, String, String), f64>;

fn by_service_route_code(rows: Vec<(BTreeMap<String, String>, f64)>) -> Counts {
    rows.into_iter()
        .map(|(l, v)| {
            let g = |k: &str| l.get(k).cloned().unwrap_or_default();
            ((g("service"), g("route"), g("code")), v)
        })
        .collect()
}

/// Every PromQL expression of a Grafana dashboard (panels, rows' panels, targets).
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

/// What Grafana sends for `expr` with these variable values: `$name` and `${name}`
/// replaced, longest names first (`$__rate_interval` before `$__interval`).
fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut e = expr.to_string();
    for (k, v) in &vars {
        e = e
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    assert!(!e.contains('$'), "a variable is left in {e}");
    e
}

/// The dashboard against the store: every expression, with the node variable as one
/// node, two nodes and All; one that errors, or is empty for two nodes or All, fails. The node variable's own query must list the nodes.
fn check_dashboard(vm: &Victoria, node_ids: &[&str]) {
    let text = std::fs::read_to_string(root().join("dashboards/ngx-prometheus.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "job", "node"]);
    assert_eq!(vars[0]["type"], "datasource");
    assert_eq!(vars[0]["query"], "prometheus");
    // Every panel and target reads the datasource variable.
    let mut uids = Vec::new();
    fn datasources(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(ds) = m.get("datasource") {
                    out.push(ds["uid"].as_str().unwrap_or("?").to_string());
                }
                m.iter()
                    .filter(|(k, _)| *k != "templating")
                    .for_each(|(_, x)| datasources(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| datasources(x, out)),
            _ => {}
        }
    }
    datasources(&d["panels"], &mut uids);
    assert!(!uids.is_empty());
    assert!(uids.iter().all(|u| u == "${datasource}"), "{uids:?}");
    // The node variable: label_values(selector, label), as Grafana asks for it.
    let def = vars[2]["definition"].as_str().unwrap();
    let inner = def
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap();
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let selector = substitute(selector, &[("job", JOB)]);
    let listed: Vec<String> = vm
        .query(&format!("count by ({}) ({selector})", label.trim()))
        .into_iter()
        .map(|(l, _)| l[label.trim()].clone())
        .collect();
    let mut want: Vec<String> = node_ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want, "the node variable's values");

    let mut exprs = Vec::new();
    dashboard_exprs(&d["panels"], &mut exprs);
    assert!(exprs.len() >= 15, "{exprs:?}");
    // Everything the dashboard is there to show is read by some expression.
    for (what, needle) in [
        (
            "requests by service, route and code",
            "sum by (service, route, code) (rate(gateway_http_requests_total",
        ),
        ("the error ratio", r#"code=~"5..""#),
        (
            "latency percentiles",
            "histogram_quantile(0.99, sum by (service, route, le) (rate(gateway_request_latency_seconds_bucket",
        ),
        ("bandwidth", "gateway_bandwidth_bytes_total"),
        ("connections", "nginx_connections{"),
        ("zone usage", r#"nginx_metric_zone_bytes{node_id=~"$node",state="used"}"#),
        ("the overflow series", r#"route="__overflow__""#),
        ("metric errors", "nginx_metric_errors_total"),
        ("upstream target health", "gateway_upstream_target_health"),
        ("requests per node", "sum by (node_id) (rate(gateway_http_requests_total"),
        ("scrape health", r#"up{job="$job"}"#),
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needle)),
            "the dashboard has no panel for {what} ({needle})"
        );
    }
    // One node (node a, which has no series limit: the overflow panel is rightly
    // empty there, and only that one), two (Grafana's regex for a multi-value) and
    // All must have data everywhere.
    let two = format!("({}|{})", node_ids[0], node_ids[2]);
    for (node, single) in [(node_ids[0], true), (two.as_str(), false), (".*", false)] {
        for e in &exprs {
            let need_data = !(single && e.contains("__overflow__"));
            let q = substitute(
                e,
                &[
                    ("node", node),
                    ("job", JOB),
                    ("__rate_interval", "1m"),
                    ("__interval", "15s"),
                ],
            );
            let v = vm
                .answer(&q, None)
                .unwrap_or_else(|err| panic!("dashboard expression refused: {q}\n{err}"));
            let rows = v["data"]["result"].as_array().unwrap();
            assert!(
                !need_data
                    || rows
                        .iter()
                        .any(|r| r["value"][1].as_str().is_some_and(|s| s != "NaN")),
                "dashboard expression has no data (node={node}): {q}\n{v}\nraw: {:?}",
                vm.query(r#"gateway_http_requests_total"#)
            );
        }
    }
}

/// The shipped rules on the live fleet, as the store has them: every recording rule of
/// rules/ngx-prometheus.rules.yml has data (Prometheus computed it from the nodes' real
/// series and remote-wrote it), and the overflow alert fires for `overflowing`, the
/// node whose series limit is reached, and for no other.
fn check_rules(vm: &Victoria, overflowing: &Node) {
    let text = std::fs::read_to_string(root().join("rules/ngx-prometheus.rules.yml")).unwrap();
    let records: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .collect();
    assert!(records.len() >= 10, "{records:?}");
    for r in &records {
        let has_data = || vm.query(r).iter().any(|(_, v)| !v.is_nan());
        assert!(
            eventually(PATIENCE, || has_data().then_some(())).is_some(),
            "recording rule {r} has no data on the store: {:?}",
            vm.query(r)
        );
    }
    let firing =
        r#"ALERTS{alertname="NginxMetricOverflowSeriesReceivingData",alertstate="firing"}"#;
    let instances = || -> Vec<String> {
        vm.query(firing)
            .into_iter()
            .map(|(l, _)| l.get("instance").cloned().unwrap_or_default())
            .collect()
    };
    assert!(
        eventually(PATIENCE, || (instances() == [overflowing.instance()])
            .then_some(()))
        .is_some(),
        "{firing}: want {}, the store has {:?}",
        overflowing.instance(),
        vm.query(firing)
    );
}

#[test]
fn a_fleet_through_prometheus_into_victoria_metrics() {
    let started = std::time::Instant::now();
    let work = prefix("fleet-central");
    let mut vm = Victoria::start(&work);
    // Node c keeps at most 3 label sets per family: the rest goes to `__overflow__`.
    let nodes = [
        Node::start("node-a", 0),
        Node::start("node-b", 0),
        Node::start("node-c", 3),
    ];
    let [a, b, c] = [&nodes[0], &nodes[1], &nodes[2]];
    let forbidden = fake_target("403 Forbidden", "metrics are private\n");
    let garbage = fake_target("200 OK", "<html>this is not an exposition {{{\n");

    let sd = work.join("sd");
    std::fs::create_dir_all(&sd).unwrap();
    // Node c is not in the file yet: it is added while Prometheus runs.
    write_sd(&sd, "nodes.json", &sd_of(&[a, b]));
    write_sd(
        &sd,
        "bad.json",
        &json!([{ "targets": [format!("127.0.0.1:{forbidden}"), format!("127.0.0.1:{garbage}")] }])
            .to_string(),
    );
    let vm_port = vm.port;
    let sd_dir = sd.clone();
    // What docs/fleet.md ("Running a fleet") shows, with 1 s intervals, this test's paths
    // and another job name.
    let prom = Prometheus::start_with(|_| {
        format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: {JOB}
    file_sd_configs:
      - files: ['{sd}/*.json']
        refresh_interval: 1s
    metric_relabel_configs:
      # One series per worker pid, replaced on every reload: not worth storing.
      - source_labels: [__name__]
        regex: gateway_memory_workers_lua_vms_bytes
        action: drop
remote_write:
  - url: http://127.0.0.1:{vm_port}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#,
            rules = root().join("rules/ngx-prometheus.rules.yml").display(),
            sd = sd_dir.display(),
        )
    });

    // A node added to the discovery file (rewritten, renamed in) is scraped from then
    // on, and its series reach the store.
    let up_of = |n: &Node| format!(r#"up{{instance="{}"}}"#, n.instance());
    for n in [a, b] {
        vm.wait_for(&up_of(n), Some(1.0));
    }
    assert_eq!(vm.value(&format!("count({})", up_of(c))), None);
    write_sd(&sd, "nodes.json", &sd_of(&[a, b, c]));
    vm.wait_for(&up_of(c), Some(1.0));
    vm.wait_for(
        r#"count(nginx_prometheus_build_info{node_id="node-c"})"#,
        Some(1.0),
    );

    // Known traffic. Node c sees home, users and fail first: those are its 3 label
    // sets; extra and the unrouted 404s land in its overflow series.
    let plan: [(&Node, &[(&str, u32)]); 3] = [
        (
            a,
            &[
                ("/home", 5),
                ("/users", 3),
                ("/fail", 2),
                ("/extra", 2),
                ("/none", 1),
            ],
        ),
        (
            b,
            &[
                ("/home", 6),
                ("/users", 4),
                ("/fail", 1),
                ("/extra", 3),
                ("/none", 2),
            ],
        ),
        (
            c,
            &[
                ("/home", 4),
                ("/users", 2),
                ("/fail", 1),
                ("/extra", 3),
                ("/none", 2),
            ],
        ),
    ];
    let mut want = Counts::new();
    for (node, paths) in plan {
        for (path, n) in paths {
            let (s, r, code) = labels_of(path);
            node.send(path, *n, code.parse().unwrap());
            let key = if node.id == "node-c" && (*path == "/extra" || *path == "/none") {
                (
                    "__overflow__".into(),
                    "__overflow__".into(),
                    "__overflow__".into(),
                )
            } else {
                (s.to_string(), r.to_string(), code.to_string())
            };
            *want.entry(key).or_default() += *n as f64;
        }
    }

    // The fleet's sum on the central store equals what was sent, exactly.
    let fleet_sum = "sum by (service, route, code) (gateway_http_requests_total)";
    let got = eventually(PATIENCE, || {
        let got = by_service_route_code(vm.query(fleet_sum));
        (got == want).then_some(got)
    });
    assert!(
        got.is_some(),
        "fleet sum: want {want:?}\ngot {:?}",
        by_service_route_code(vm.query(fleet_sum))
    );
    // So does the recording rule's, computed by Prometheus and remote-written.
    let recorded = "service_route_code:gateway_http_requests:sum";
    assert!(
        eventually(PATIENCE, || (by_service_route_code(vm.query(recorded))
            == want)
            .then_some(()))
        .is_some(),
        "{recorded}: want {want:?}\ngot {:?}",
        by_service_route_code(vm.query(recorded))
    );

    // Every series of ours carries its node's identity, matching where it was scraped.
    let ids = vm.query(r#"count by (node_id, instance, dc) ({__name__=~"gateway_.+|nginx_.+"})"#);
    let mut seen: Vec<(String, String, String)> = ids
        .iter()
        .map(|(l, _)| {
            let g = |k: &str| l.get(k).cloned().unwrap_or_default();
            (g("node_id"), g("instance"), g("dc"))
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| (n.id.to_string(), n.instance(), "test".to_string()))
        .collect();
    assert_eq!(seen, expected);
    assert!(
        vm.query(r#"{__name__=~"gateway_.+|nginx_.+", node_id=""}"#)
            .is_empty(),
        "series without node_id"
    );
    // The relabelling dropped what it should, and nothing else.
    assert!(vm
        .query(r#"{__name__="gateway_memory_workers_lua_vms_bytes"}"#)
        .is_empty());

    // The nodes that are not ours: Prometheus reports them down, with the reason;
    // `up` is 0 on the central store and the alert rule is pending.
    let bad = eventually(PATIENCE, || {
        let t = targets(&prom);
        let f = t.get(&format!("127.0.0.1:{forbidden}"))?.clone();
        let g = t.get(&format!("127.0.0.1:{garbage}"))?.clone();
        (f.0 == "down" && g.0 == "down" && !f.1.is_empty() && !g.1.is_empty()).then_some((f.1, g.1))
    })
    .expect("Prometheus reports the 403 and the garbage target down");
    assert!(bad.0.contains("403"), "{}", bad.0);
    assert!(!bad.1.contains("403") && !bad.1.is_empty(), "{}", bad.1);
    eprintln!(
        "fleet: Prometheus says: 403 target: {}; garbage target: {}",
        bad.0, bad.1
    );
    for port in [forbidden, garbage] {
        vm.wait_for(&format!(r#"up{{instance="127.0.0.1:{port}"}}"#), Some(0.0));
    }
    for n in &nodes {
        vm.wait_for(&format!(r#"up{{instance="{}"}}"#, n.instance()), Some(1.0));
    }
    let pending = eventually(PATIENCE, || {
        let v = prom.api("/api/v1/alerts")?;
        let alerts = v["data"]["alerts"].as_array()?.clone();
        let mut failing: Vec<String> = alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == "NginxScrapeFailing")
            .map(|a| a["labels"]["instance"].as_str().unwrap().to_string())
            .collect();
        failing.sort();
        (failing.len() == 2).then_some(failing)
    })
    .expect("NginxScrapeFailing pending for both bad targets");
    let mut want_failing = vec![
        format!("127.0.0.1:{forbidden}"),
        format!("127.0.0.1:{garbage}"),
    ];
    want_failing.sort();
    assert_eq!(pending, want_failing);

    // The dashboard, every expression, against the store, over a minute in which
    // every node answered every kind of request (rates need two samples apart).
    for n in &nodes {
        for (path, k) in [
            ("/home", 2),
            ("/users", 1),
            ("/fail", 1),
            ("/extra", 1),
            ("/none", 1),
        ] {
            n.send(path, k, labels_of(path).2.parse().unwrap());
        }
    }
    vm.wait_for(
        r#"sum(gateway_http_requests_total{node_id="node-c",route="__overflow__"})"#,
        Some(7.0),
    );
    std::thread::sleep(Duration::from_secs(2));
    check_dashboard(&vm, &["node-a", "node-b", "node-c"]);
    check_rules(&vm, c);

    // A malformed discovery file: Prometheus logs it and keeps the targets it had;
    // counts keep flowing.
    write_sd(&sd, "nodes.json", r#"[{"targets": ["127.0.0.1:1"#);
    assert!(
        eventually(PATIENCE, || prom
            .log()
            .contains("Error reading file")
            .then_some(()))
        .is_some(),
        "no discovery error logged:\n{}",
        prom.log()
    );
    a.send("/home", 1, 200);
    vm.wait_for(
        r#"sum(gateway_http_requests_total{node_id="node-a",route="home"})"#,
        Some(8.0),
    );
    let t = targets(&prom);
    for n in &nodes {
        assert_eq!(t[&n.instance()].0, "up", "{t:?}");
    }
    write_sd(&sd, "nodes.json", &sd_of(&[a, b, c]));

    // The central store down for a while: Prometheus retries, and once the store is
    // back it holds what was scraped meanwhile.
    let home_b = r#"sum(gateway_http_requests_total{node_id="node-b",route="home"})"#;
    vm.stop();
    let stopped = now();
    b.send("/home", 7, 200);
    std::thread::sleep(Duration::from_secs(3));
    let during = now();
    assert!(
        eventually(PATIENCE, || prom
            .log()
            .contains("Failed to send batch, retrying")
            .then_some(()))
        .is_some(),
        "no remote-write retry logged:\n{}",
        prom.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let back = now();
    vm.run();
    let got = eventually(PATIENCE, || {
        let v = vm.query_at(home_b, Some(during));
        (v.first().map(|(_, v)| *v) == Some(15.0)).then_some(())
    });
    assert!(
        got.is_some(),
        "the outage's samples: {:?}",
        vm.query_at(home_b, Some(during))
    );
    vm.wait_for(home_b, Some(15.0));
    // Nothing lost: every sample Prometheus scraped from node b while the store was
    // down is on the store, with its timestamp and value.
    let raw = r#"gateway_http_requests_total{node_id="node-b",route="home"}"#;
    let scraped = prom_samples(&prom, raw, stopped, back);
    assert!(scraped.len() >= 3, "Prometheus scraped {scraped:?}");
    assert!(
        eventually(PATIENCE, || (vm.samples(raw, stopped, back) == scraped)
            .then_some(()))
        .is_some(),
        "the outage's samples: Prometheus has {scraped:?}\nthe store {:?}",
        vm.samples(raw, stopped, back)
    );

    // A node of ours that refuses Prometheus (its allow rule changed, nginx
    // reloaded): it answers 403, Prometheus reports it down with that reason, and
    // nothing of it reaches the store while it refuses. Once it allows Prometheus
    // again, its counts are exact, the requests it served meanwhile included.
    let conf_path = b.g.nginx.prefix.join("nginx.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let allow = "prometheus_allow 127.0.0.1 ::1;";
    assert!(conf.contains(allow));
    std::fs::write(
        &conf_path,
        conf.replace(allow, "prometheus_allow 127.0.0.2;"),
    )
    .unwrap();
    b.g.nginx.reload();
    let why = eventually(PATIENCE, || {
        let (health, err) = targets(&prom).get(&b.instance())?.clone();
        (health == "down").then_some(err)
    })
    .expect("Prometheus reports the refusing node down");
    assert!(why.contains("403"), "{why}");
    eprintln!("fleet: Prometheus says of our refusing node: {why}");
    vm.wait_for(&up_of(b), Some(0.0));
    b.send("/home", 4, 200);
    let of_b = r#"count({__name__=~"gateway_.+|nginx_.+", node_id="node-b"})"#;
    vm.wait_for(of_b, None);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vm.value(of_b), None, "node b's series while it refuses");
    std::fs::write(&conf_path, &conf).unwrap();
    b.g.nginx.reload();
    vm.wait_for(&up_of(b), Some(1.0));
    vm.wait_for(home_b, Some(19.0));

    // A route deleted on one node: its series go from that node (every family), and
    // stay on the others.
    let (status, _) = admin(b.g.admin, "DELETE", "/routes/extra", None);
    assert_eq!(status, 204);
    let extra_on =
        |id: &str| format!(r#"count({{__name__=~"gateway_.+", node_id="{id}", route="extra"}})"#);
    vm.wait_for(&extra_on("node-b"), None);
    assert!(vm.value(&extra_on("node-a")).unwrap() >= 3.0);
    // A request for it now matches no route: it must not bring the series back.
    assert_eq!(get(b.g.proxy, "/extra").status, 404);
    std::thread::sleep(Duration::from_secs(2));
    vm.wait_for(&extra_on("node-b"), None);

    // A node restarted mid-window (its zone starts empty): increase() over the window
    // is what was sent in it.
    let users_a = r#"gateway_http_requests_total{node_id="node-a",route="users",code="200"}"#;
    std::thread::sleep(Duration::from_secs(2));
    let t0 = now();
    std::thread::sleep(Duration::from_secs(2));
    a.send("/users", 4, 200);
    vm.wait_for(users_a, Some(8.0));
    a.g.nginx.stop();
    vm.wait_for(&format!(r#"up{{instance="{}"}}"#, a.instance()), Some(0.0));
    a.g.nginx.start_again();
    a.send("/users", 5, 200);
    vm.wait_for(users_a, Some(5.0));
    std::thread::sleep(Duration::from_secs(2));
    let at = now();
    let window = (at - t0 + 1.0).ceil() as u64;
    let inc = vm.query_at(&format!("increase({users_a}[{window}s])"), Some(at));
    assert_eq!(inc.len(), 1, "{inc:?}");
    assert_eq!(inc[0].1, 9.0, "increase over the restart");

    // A node removed from discovery goes stale on the store.
    write_sd(&sd, "nodes.json", &sd_of(&[a, b]));
    vm.wait_for(
        &format!(r#"count(up{{instance="{}"}})"#, c.instance()),
        None,
    );
    vm.wait_for(
        r#"count({__name__=~"gateway_.+|nginx_.+", node_id="node-c"})"#,
        None,
    );
    assert!(vm
        .value(r#"count({__name__=~"gateway_.+|nginx_.+", node_id="node-b"})"#)
        .is_some());

    for n in &nodes {
        assert!(
            n.g.nginx.crashes().is_empty(),
            "{}: {:?}",
            n.id,
            n.g.nginx.crashes()
        );
    }
    eprintln!("fleet: {:.1} s", started.elapsed().as_secs_f64());
}

/// Kong's official Grafana dashboard (grafana.com 7424) under `naming = "kong"`: the
/// families and labels it reads (t/fixtures/kong-dashboard.txt) are all exposed.
#[test]
fn kongs_dashboard_families_under_kong_naming() {
    let g = start_gateway("fleet-kong", &[]);
    let up = format!("127.0.0.1:{}", g.upstream);
    let created = |(s, v): (u16, Value)| assert_eq!(s, 201, "{v}");
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(json!({ "name": "pool" })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/pool/targets",
        Some(json!({ "target": up })),
    ));
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
        Some(json!({ "name": "prometheus", "config": {
            "naming": "kong", "status_code_metrics": true, "latency_metrics": true,
            "bandwidth_metrics": true, "upstream_health_metrics": true } })),
    ));
    settle(&g);
    for _ in 0..3 {
        assert_eq!(get(g.proxy, "/").status, 200);
    }
    let fixture = std::fs::read_to_string(root().join("t/fixtures/kong-dashboard.txt")).unwrap();
    let facts: Vec<(String, Vec<String>)> = fixture
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            (
                w.next().unwrap().to_string(),
                w.map(str::to_string).collect(),
            )
        })
        .collect();
    assert!(facts.len() >= 10);
    let mut last = Vec::new();
    let ok = eventually(Duration::from_secs(10), || {
        let (text, _) = scrape_unlinted(g.metrics, "/metrics");
        // name{labels} value, as exposed (Kong's names: no `_total` added).
        let series: Vec<(String, BTreeMap<String, String>)> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let end = l.find(['{', ' ']).unwrap();
                let name = l[..end].to_string();
                let mut labels = BTreeMap::new();
                if l[end..].starts_with('{') {
                    let body = &l[end + 1..l.rfind('}').unwrap()];
                    for pair in body.split("\",") {
                        let (k, v) = pair.split_once("=\"").unwrap();
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                }
                (name, labels)
            })
            .collect();
        let missing: Vec<String> = facts
            .iter()
            .flat_map(|(name, needs)| {
                let series = &series;
                let mut out = Vec::new();
                let of: Vec<&BTreeMap<String, String>> = series
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, l)| l)
                    .collect();
                if of.is_empty() {
                    out.push(format!("{name}: no series"));
                }
                for need in needs {
                    match need.split_once('=') {
                        None if !of.iter().all(|l| l.contains_key(need)) => {
                            out.push(format!("{name}: label {need} missing"))
                        }
                        Some((k, vals)) => {
                            for v in vals.split('|') {
                                if !of.iter().any(|l| l.get(k).map(String::as_str) == Some(v)) {
                                    out.push(format!("{name}: no series with {k}=\"{v}\""));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                out
            })
            .collect();
        let done = missing.is_empty();
        last = missing;
        done.then_some(())
    });
    assert!(ok.is_some(), "{last:#?}");
}

/// Prometheus 3 refuses a scrape without a valid Content-Type (2.42 fell back to
/// text): what 3.x asks for (its Accept headers, 3.0 and 3.3 on) gets OpenMetrics with
/// its media type, and a client that asks for nothing gets text 0.0.4 with its own.
#[test]
fn what_prometheus_3_asks_for_gets_a_valid_content_type() {
    let g = start_gateway("fleet-prom3", &[]);
    let om = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    for accept in [
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
         application/openmetrics-text;version=0.0.1;q=0.4,\
         text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
         text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
         application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,\
         text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
         text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2",
    ] {
        let r = request(g.metrics, "GET", "/metrics", &[("Accept", accept)], b"");
        assert_eq!(r.status, 200, "{accept}: {}", r.text());
        assert_eq!(r.header("Content-Type"), Some(om), "{accept}");
        assert!(r.text().ends_with("# EOF\n"));
        parse_openmetrics_with_reference(&r.text());
    }
    let r = get(g.metrics, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
}
