//! Where metrics come from: constant labels with a persisted node id and the host
//! name, the build info family, and per-worker process metrics, against real nginx.

mod harness;

use harness::*;
use std::time::Duration;

/// A zone, a family with a label that collides with a constant one, and a metrics
/// location; `top` goes first in `http {}`.
fn http(top: &str, app: u16, metrics: u16) -> String {
    format!(
        r#"
    prometheus_zone metrics 4m;
    {top}
    init_by_lua_block {{
        local z = require("ngxprom").zone("metrics")
        hits = z:counter("app_hits_total", "Hits by datacenter.", {{ "dc", "code" }})
    }}
    init_worker_by_lua_block {{
        -- One timer per worker that the process metrics must count.
        ngx.timer.at(3600, function() end)
    }}
    server {{
        listen 127.0.0.1:{app};
        location = /hit {{
            content_by_lua_block {{
                hits:labels("local", "200"):inc(2)
                ngx.say("ok")
            }}
        }}
        location = /render {{
            content_by_lua_block {{
                ngx.print(require("ngxprom").zone("metrics"):render())
            }}
        }}
        location = /grow {{
            content_by_lua_block {{
                grown = {{}}
                for i = 1, 200000 do grown[i] = "x" .. i end
                ngx.say(#grown)
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location = /metrics {{ prometheus_metrics metrics; }}
        location = /process {{ prometheus_metrics metrics group=process; }}
    }}
"#
    )
}

#[test]
fn constant_labels_and_node_id() {
    let (app, metrics) = (free_port(), free_port());
    let p = prefix("identity");
    let node_file = p.join("state/node_id");
    let top = format!(
        "prometheus_node_id_file {};\n    \
         prometheus_const_labels node_id=$node_id hostname=${{hostname}} dc=eu-west-1;",
        node_file.display()
    );
    // `${` must be quoted for nginx: the test writes it as the README says.
    let top = top.replace("hostname=${hostname}", "\"hostname=${hostname}\"");
    let nginx = Nginx::start_with(p.clone(), config(&p, &http(&top, app, metrics)));
    assert_eq!(get(app, "/hit").status, 200);
    let node_id = std::fs::read_to_string(&node_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(node_id.len(), 36, "{node_id}");
    let host = hostname();
    let (text, samples) = scrape(metrics, "/metrics");
    // Every series has the constant labels, first; the family's own `dc` is kept
    // as `exported_dc`.
    let want = format!(
        "app_hits_total{{node_id=\"{node_id}\",hostname=\"{host}\",dc=\"eu-west-1\",\
         exported_dc=\"local\",code=\"200\"}} 2"
    );
    assert!(text.contains(&want), "{want}\n{text}");
    for s in &samples {
        assert_eq!(s.labels.get("node_id"), Some(&node_id), "{s:?}");
        assert_eq!(s.labels.get("hostname"), Some(&host), "{s:?}");
    }
    let info = samples
        .iter()
        .find(|s| s.name == "nginx_prometheus_build_info")
        .unwrap_or_else(|| panic!("no build info:\n{text}"));
    assert_eq!(info.value, 1.0);
    assert_eq!(info.labels["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info.labels["nginx_version"], harness::build().version);
    assert!(!info.labels["revision"].is_empty());
    // OpenMetrics and JSON carry them too.
    let om = request(
        metrics,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    );
    let om_samples = om_samples(&parse_openmetrics_with_reference(&om.text()));
    assert!(om_samples
        .iter()
        .all(|s| s.labels.get("node_id") == Some(&node_id)));
    let json: serde_json::Value =
        serde_json::from_slice(&get(metrics, "/metrics?format=json").body).unwrap();
    let fam = json["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "app_hits_total")
        .unwrap();
    assert_eq!(fam["series"][0]["labels"]["node_id"], node_id.as_str());
    assert_eq!(fam["series"][0]["labels"]["exported_dc"], "local");

    // The id is kept: a restart and a reload read the same one.
    nginx.stop();
    nginx.start_again();
    nginx.reload();
    let (_, samples) = scrape(metrics, "/metrics?name[]=nginx_prometheus_build_info");
    assert_eq!(samples[0].labels.get("node_id"), Some(&node_id));
    assert!(nginx.crashes().is_empty());
}

/// Relative file arguments resolve as nginx's own directives' do, whatever the
/// directory nginx is started from: the node id file (a file nginx writes) against the
/// prefix, the push password, the push CA and the auth file (files nginx reads) against
/// the configuration directory. The configuration lives in `conf/`, so the two differ.
#[test]
fn relative_paths_do_not_depend_on_the_working_directory() {
    let (app, metrics) = (free_port(), free_port());
    let p = prefix("relative");
    std::fs::create_dir_all(p.join("conf")).unwrap();
    std::fs::write(p.join("conf/push.password"), "secret\n").unwrap();
    let digest = pipe_through("sha256sum", &[], "00pw").stdout;
    let digest = String::from_utf8_lossy(&digest[..64]).into_owned();
    std::fs::write(
        p.join("conf/metrics.auth"),
        format!("basic u sha256:00:{digest}\n"),
    )
    .unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=push-ca", "-keyout"])
        .arg(p.join("push-ca.key"))
        .arg("-out")
        .arg(p.join("conf/push-ca.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let top = "prometheus_node_id_file state/node_id;\n    \
               prometheus_const_labels node_id=$node_id;\n    \
               prometheus_push https://127.0.0.1:9 interval=1h;\n    \
               prometheus_push_basic_auth pusher push.password;\n    \
               prometheus_push_ca push-ca.pem;";
    // Every path the newcomer writes is relative, as in the README's nginx.conf.
    let abs = format!("{}/", p.display());
    let conf = config(&p, &http(top, app, metrics))
        .replace(&abs, "")
        .replace("lua_package_cpath \"lib/", &format!("lua_package_cpath \"{abs}lib/"))
        .replace(
            "location = /process {",
            "location = /auth { prometheus_metrics metrics; prometheus_auth_file metrics.auth; }\n        \
             location = /process {",
        );
    std::fs::write(p.join("conf/nginx.conf"), &conf).unwrap();
    let run = |cwd: &std::path::Path, extra: &[&str]| {
        std::fs::create_dir_all(cwd).unwrap();
        let out = nginx_command()
            .current_dir(cwd)
            .args(["-p", p.to_str().unwrap(), "-c", "conf/nginx.conf"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "from {}: {err}", cwd.display());
    };
    let (here, there) = (p.join("cwd-a"), p.join("cwd-b/deeper"));
    run(&here, &["-t"]);
    run(&there, &["-t"]);
    let node_id = std::fs::read_to_string(p.join("state/node_id")).unwrap();
    let node_id = node_id.trim().to_string();
    for cwd in [&here, &there] {
        assert!(
            !cwd.join("state").exists(),
            "a file under {}",
            cwd.display()
        );
    }
    // Two starts from two directories: one node, one id.
    let mut seen = Vec::new();
    for cwd in [&here, &there] {
        run(cwd, &[]);
        let nginx = Nginx {
            prefix: p.clone(),
            conf: conf.clone(),
        };
        nginx.wait_workers(2);
        let (_, samples) = scrape(metrics, "/metrics?name[]=nginx_prometheus_build_info");
        seen.push(samples[0].labels["node_id"].clone());
        // The auth file was found: the location asks for credentials.
        assert_eq!(get(metrics, "/auth").status, 401);
        let pid = nginx.master_pid();
        std::mem::forget(nginx);
        let _ = std::process::Command::new("kill")
            .args(["-QUIT", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "nginx did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(seen, [node_id.clone(), node_id]);
    let _ = std::fs::remove_dir_all(&p);
}

#[test]
fn identity_configuration_errors() {
    let cases = [
        (
            "prometheus_const_labels node=$node_id;".to_string(),
            "unknown variable \"node_id\"",
        ),
        (
            "prometheus_const_labels 9lives=x;".into(),
            "invalid label name \"9lives\"",
        ),
        (
            "prometheus_const_labels le=1;".into(),
            "invalid label name \"le\"",
        ),
        ("prometheus_const_labels dc=a dc=b;".into(), "given twice"),
        (
            "prometheus_const_labels dc;".into(),
            "\"dc\" is not name=value",
        ),
        (
            "prometheus_node_id_file /nonexistent-dir/node_id;".into(),
            "prometheus_node_id_file: cannot create \"/nonexistent-dir/node_id\"",
        ),
        (
            "prometheus_process_metrics interval=soon;".into(),
            "invalid interval \"soon\"",
        ),
        (
            "prometheus_process_metrics zone=nope;".into(),
            "prometheus_process_metrics: unknown zone \"nope\"",
        ),
    ];
    for (directive, want) in cases {
        let err = nginx_t(
            "identity-bad",
            &format!("prometheus_zone m 1m;\n{directive}"),
        )
        .unwrap_err();
        assert!(err.contains(want), "{directive}: {err}");
    }
}

#[test]
fn worker_process_metrics() {
    let (app, metrics) = (free_port(), free_port());
    let started = now();
    let nginx = Nginx::start(
        "process",
        &http("prometheus_process_metrics interval=200ms;", app, metrics),
    );
    assert_eq!(get(app, "/grow").status, 200);
    std::thread::sleep(Duration::from_millis(600));
    let (text, samples) = scrape(metrics, "/process");
    // Only the process group here.
    assert!(!text.contains("app_hits_total"), "{text}");
    let pids = nginx.worker_pids();
    assert_eq!(pids.len(), 2);
    let v = |name: &str, worker: &str| {
        value(&samples, name, &[("worker", worker)])
            .unwrap_or_else(|| panic!("no {name}{{worker=\"{worker}\"}}:\n{text}"))
    };
    for worker in ["0", "1"] {
        let rss = v("nginx_worker_resident_memory_bytes", worker);
        // The kernel's own figure for one of the workers is close to it.
        let close = pids.iter().any(|pid| {
            let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
            let pages: f64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
            (pages * 4096.0 - rss).abs() < rss * 0.25
        });
        assert!(close, "worker {worker}: rss {rss}");
        assert!(v("nginx_worker_virtual_memory_bytes", worker) >= rss);
        assert!(v("nginx_worker_cpu_seconds_total", worker) > 0.0);
        let fds = v("nginx_worker_open_fds", worker);
        assert!(
            fds >= 5.0 && fds <= v("nginx_worker_max_fds", worker),
            "{fds}"
        );
        let start = v("nginx_worker_start_time_seconds", worker);
        assert!(
            start >= started - 1.0 && start <= now(),
            "{start} vs {started}"
        );
        // The Lua timer each worker armed at least.
        assert!(v("nginx_worker_timers", worker) >= 1.0);
        assert!(v("nginx_worker_lua_memory_bytes", worker) > 100_000.0);
    }
    // One worker ran /grow: its VM holds 200k strings.
    let lua: Vec<f64> = ["0", "1"]
        .iter()
        .map(|w| v("nginx_worker_lua_memory_bytes", w))
        .collect();
    assert!(
        lua.iter().cloned().fold(0.0, f64::max) > 4_000_000.0,
        "{lua:?}"
    );
    // The scraping worker holds at least this connection.
    let conns = v("nginx_worker_connections", "0") + v("nginx_worker_connections", "1");
    assert!(conns >= 1.0, "{conns}");
    promtool_check(&text).unwrap();

    // After a reload, the new workers take the same labels: still two series each.
    nginx.reload();
    let reloaded = now();
    let fresh = eventually(Duration::from_secs(5), || {
        let (_, s) = scrape(metrics, "/process");
        let starts: Vec<f64> = s
            .iter()
            .filter(|x| x.name == "nginx_worker_start_time_seconds")
            .map(|x| x.value)
            .collect();
        (starts.len() == 2 && starts.iter().all(|t| *t >= reloaded - 1.0)).then_some(s)
    });
    assert!(fresh.is_some(), "new workers never reported");

    // Down to one worker: the zone keeps worker 1's last figures, but no scrape and no
    // format shows them any more (a sum over workers would count a process that is gone).
    nginx.reload_with_one_worker();
    assert_eq!(nginx.worker_pids().len(), 1);
    let (text, samples) = scrape(metrics, "/process");
    let workers: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name.starts_with("nginx_worker_"))
        .map(|s| s.labels["worker"].as_str())
        .collect();
    assert_eq!(workers.into_iter().collect::<Vec<_>>(), ["0"], "{text}");
    let om = request(
        metrics,
        "GET",
        "/process",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    );
    assert!(om.text().contains("worker=\"0\""), "{}", om.text());
    assert!(!om.text().contains("worker=\"1\""), "{}", om.text());
    let json = get(metrics, "/process?format=json").text();
    assert!(json.contains("\"worker\":\"0\""), "{json}");
    assert!(!json.contains("\"worker\":\"1\""), "{json}");
    // Lua's zone:render() shows what the metrics port shows.
    let lua = get(app, "/render").text();
    assert!(lua.contains("worker=\"0\""), "{lua}");
    assert!(!lua.contains("worker=\"1\""), "{lua}");
    assert!(nginx.crashes().is_empty());

    // Off: no such families at all.
    let (app2, metrics2) = (free_port(), free_port());
    let _off = Nginx::start(
        "process-off",
        &http("prometheus_process_metrics off;", app2, metrics2),
    );
    let (text, _) = scrape(metrics2, "/metrics");
    assert!(!text.contains("nginx_worker_"), "{text}");
}
