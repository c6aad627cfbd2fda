//! The soak: the real gateway (`conf/gateway.conf`, 2 workers) under every load of
//! [`loads`] at once for `SOAK_SECONDS` (default 60, what `make test` runs;
//! `scripts/soak.sh` runs 600). At the end: every count the global `prometheus` plugin
//! kept equals what the loads were answered (requests by service, route, code, source
//! and consumer; latency observations; bytes each way), each load's own check holds,
//! workers' private memory and the zone's usage were flat after the warm-up, no
//! worker died, and the error log holds no line that no load expects.

#[path = "soak/admin.rs"]
mod admin;
#[path = "soak/churn.rs"]
mod churn;
mod harness;
#[path = "soak/proxy.rs"]
mod proxy;
#[path = "soak/scrapes.rs"]
mod scrapes;
#[path = "soak/support.rs"]
mod support;

use harness::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{scrape_json, series, Counts, Ctx};

/// One load: what it adds to the soak's server, the entities it needs, what it does
/// until the soak stops, what must hold afterwards, and the error-log lines it causes
/// on purpose.
struct Load {
    name: &'static str,
    /// `location` blocks for the soak's own server (an upstream, a Lua API user).
    nginx: &'static str,
    /// Admin calls made before any load starts.
    setup: fn(&Ctx),
    /// Runs in its own thread until the soak stops; returns a line for the report.
    /// Failures go to `Ctx::fail` (a load never panics: the others would carry on).
    run: fn(&Ctx) -> String,
    /// After every load stopped and the counts settled: a line, or why it failed.
    check: fn(&Ctx) -> Result<String, String>,
    /// `(part of the line, why it is expected)` for each error-log line it causes.
    expected_log: &'static [(&'static str, &'static str)],
}

fn nothing(_: &Ctx) {}
fn no_check(_: &Ctx) -> Result<String, String> {
    Ok(String::new())
}

/// Every load of the soak, all run at once. To add one (a feature's traffic, its
/// Admin calls, its faults): write it in a file of `t/soak/` and add its row here.
fn loads() -> Vec<Load> {
    vec![
        Load {
            name: "proxy, kept-alive connections",
            nginx: proxy::NGINX,
            setup: proxy::setup,
            run: proxy::keep_alive,
            check: no_check,
            expected_log: proxy::EXPECTED_LOG,
        },
        Load {
            name: "proxy, a connection per request",
            nginx: proxy::NGINX,
            setup: proxy::setup,
            run: proxy::one_per_connection,
            check: no_check,
            expected_log: proxy::EXPECTED_LOG,
        },
        Load {
            name: "Admin writes",
            nginx: "",
            // It changes the counted routes in place.
            setup: proxy::setup,
            run: admin::writes,
            check: no_check,
            // Its changes of the global plugin are warned about too (see churn's).
            expected_log: churn::EXPECTED_LOG,
        },
        Load {
            name: "route churn, the plugin's expire",
            nginx: "",
            setup: churn::routes_setup,
            run: churn::routes,
            check: churn::routes_check,
            expected_log: churn::EXPECTED_LOG,
        },
        Load {
            name: "label churn, the Lua API's expire",
            nginx: churn::LUA_NGINX,
            setup: nothing,
            run: churn::lua,
            check: churn::lua_check,
            expected_log: &[],
        },
        Load {
            name: "scrapes, every format, every second",
            nginx: "",
            setup: nothing,
            run: scrapes::every_second,
            check: no_check,
            expected_log: &[],
        },
        Load {
            name: "scrapes, 12 at once every 10 s",
            nginx: "",
            setup: nothing,
            run: scrapes::bursts,
            check: no_check,
            expected_log: &[],
        },
    ]
}

/// The soak's own server, an upstream of the proxy loads: `/code/<status>` answers
/// that status, anything else 200; the loads add their locations.
fn soak_server(port: u16, loads: &[Load]) -> String {
    let mut s = format!(
        "
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ return 200 \"ok\\n\"; }}
"
    );
    for code in [200, 201, 404, 500, 503] {
        s.push_str(&format!(
            "        location = /code/{code} {{ return {code} \"status {code}\\n\"; }}\n"
        ));
    }
    s.push_str("        location = /code/204 { return 204; }\n");
    let mut added: Vec<&str> = vec![];
    for l in loads {
        // Loads that share an upstream name the same locations: added once.
        if !added.contains(&l.nginx) {
            s.push_str(l.nginx);
            added.push(l.nginx);
        }
    }
    s.push_str("    }\n");
    s
}

/// One sample of the monitor.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: f64,
    /// Private memory of each worker (`RssAnon`), and the shared pages it touched
    /// (`RssShmem`: the zone and dicts as they are written, bounded by their size).
    anon: [u64; 2],
    shmem: [u64; 2],
    /// Each worker's LuaJIT heap (`gateway_memory_workers_lua_vms_bytes`): part of
    /// `anon`, shown apart to tell the Lua heap from the rest.
    lua: [u64; 2],
    zone_used: u64,
    zone_waiting: u64,
    series: u64,
}

fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn monitor(ctx: &Ctx, workers: [u32; 2], start: Instant) -> Vec<Sample> {
    let mut out = vec![];
    support::paced(ctx, 1.0, |_| {
        let mut s = Sample {
            at: start.elapsed().as_secs_f64(),
            ..Sample::default()
        };
        for (i, pid) in workers.iter().enumerate() {
            match (proc_kib(*pid, "RssAnon"), proc_kib(*pid, "RssShmem")) {
                (Some(a), Some(b)) => {
                    s.anon[i] = a * 1024;
                    s.shmem[i] = b * 1024;
                }
                _ => ctx.fail(format!("worker {pid} is gone")),
            }
        }
        match scrape_json(
            ctx,
            "&name=nginx_metric_zone_bytes&name=nginx_metric_series&name=gateway_memory_workers_lua_vms_bytes",
        ) {
            Ok(v) => {
                for (l, x) in series(&v, "gateway_memory_workers_lua_vms_bytes") {
                    let pid = l.get("pid").and_then(|p| p.parse::<u32>().ok());
                    if let Some(i) = workers.iter().position(|w| Some(*w) == pid) {
                        s.lua[i] = x["value"].as_f64().unwrap_or(0.0) as u64;
                    }
                }
                for (l, x) in series(&v, "nginx_metric_zone_bytes") {
                    let n = x["value"].as_f64().unwrap_or(0.0) as u64;
                    match l.get("state").map(String::as_str) {
                        Some("used") => s.zone_used = n,
                        Some("waiting") => s.zone_waiting = n,
                        _ => {}
                    }
                }
                for (_, x) in series(&v, "nginx_metric_series") {
                    s.series = x["value"].as_f64().unwrap_or(0.0) as u64;
                }
            }
            Err(e) => ctx.fail(e),
        }
        out.push(s);
    });
    out
}

/// Whether a quantity was flat after the warm-up: the maximum over the last third of
/// the run is at most `slack` above the maximum over the middle third (the first third
/// is the warm-up: caches, pools, free lists and the LuaJIT heap reach their working
/// size). Maxima, not averages: garbage collection and free lists make sawtooths, and
/// a sawtooth's peaks stay level while a leak lifts them; a leak of `r` bytes a second
/// lifts the last third's peak by about `r` times a third of the run.
fn flat(what: &str, points: &[(f64, u64)], duration: f64, slack: u64) -> Result<String, String> {
    let max_in = |from: f64, to: f64| {
        points
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, v)| *v)
            .max()
    };
    let third = duration / 3.0;
    let (Some(warm), Some(plateau), Some(tail)) = (
        max_in(0.0, third),
        max_in(third, 2.0 * third),
        max_in(2.0 * third, f64::MAX),
    ) else {
        return Err(format!("{what}: too few samples ({})", points.len()));
    };
    let line = format!(
        "{what}: max {} in the warm-up, {} after it, {} in the last third (allowed {})",
        mib(warm),
        mib(plateau),
        mib(tail),
        mib(plateau + slack)
    );
    if tail > plateau + slack {
        Err(line)
    } else {
        Ok(line)
    }
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / 1048576.0)
}

/// The counts the global plugin kept, from a JSON scrape, as the loads tally them.
fn counted(ctx: &Ctx) -> Result<Counts, String> {
    let v = scrape_json(
        ctx,
        "&name=gateway_http_requests_total&name=gateway_bandwidth_bytes_total",
    )?;
    let mut c = Counts::default();
    let get = |l: &BTreeMap<String, String>, k: &str| l.get(k).cloned().unwrap_or_default();
    for (l, s) in series(&v, "gateway_http_requests_total") {
        let labels = ["service", "route", "code", "source", "consumer"].map(|k| get(&l, k));
        c.requests
            .insert(labels, s["value"].as_f64().unwrap_or(-1.0) as u64);
    }
    for (l, s) in series(&v, "gateway_bandwidth_bytes_total") {
        let labels = ["service", "route", "direction", "consumer"].map(|k| get(&l, k));
        c.bandwidth
            .insert(labels, s["value"].as_f64().unwrap_or(-1.0) as u64);
    }
    Ok(c)
}

/// `gateway_request_latency_seconds` observations by (service, route).
fn latency_counted(ctx: &Ctx) -> Result<BTreeMap<[String; 2], u64>, String> {
    let v = scrape_json(ctx, "&name=gateway_request_latency_seconds")?;
    Ok(series(&v, "gateway_request_latency_seconds")
        .into_iter()
        .map(|(l, s)| {
            (
                ["service", "route"].map(|k| l.get(k).cloned().unwrap_or_default()),
                s["count"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect())
}

fn diff<K: Ord + std::fmt::Debug>(want: &BTreeMap<K, u64>, got: &BTreeMap<K, u64>) -> Vec<String> {
    let mut out = vec![];
    for (k, w) in want {
        if got.get(k) != Some(w) {
            out.push(format!("{k:?}: answered {w}, counted {:?}", got.get(k)));
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            out.push(format!("{k:?}: never answered, counted {g}"));
        }
    }
    out
}

#[test]
fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .map(|s| s.parse().expect("SOAK_SECONDS: a number of seconds"))
        .unwrap_or(60);
    assert!(
        seconds >= 30,
        "SOAK_SECONDS: at least 30 (a warm-up and two thirds to compare)"
    );
    // SOAK_LOADS=part,part runs only the loads whose names hold one of the parts.
    let only = std::env::var("SOAK_LOADS").unwrap_or_default();
    let loads: Vec<Load> = loads()
        .into_iter()
        .filter(|l| only.is_empty() || only.split(',').any(|p| l.name.contains(p.trim())))
        .collect();
    assert!(!loads.is_empty(), "SOAK_LOADS={only} names no load");
    let prefix = prefix("soak");
    let (conf, [proxy, admin_port, metrics, _]) = render_gateway(&prefix, &[]);
    let soak_port = free_port();
    // A port bound and never listened on: connections to it are refused, and no other
    // process (a parallel test's nginx) can take it meanwhile.
    let refuser = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    refuser
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let closed = refuser.local_addr().unwrap().as_socket().unwrap().port();
    let http_end = conf.rfind('}').expect("the end of http {}");
    let conf = format!(
        "{}{}{}",
        &conf[..http_end],
        soak_server(soak_port, &loads),
        &conf[http_end..]
    );
    let nginx = Nginx::start_with(prefix, conf);
    let ctx = Ctx::new(proxy, admin_port, metrics, soak_port, closed);
    ctx.admin(
        "POST",
        "/plugins",
        Some(json!({"name": "prometheus", "config": {"per_consumer": true, "status_code_metrics": true, "latency_metrics": true, "bandwidth_metrics": true, "upstream_health_metrics": true}})),
    )
    .expect("the global prometheus plugin");
    for l in &loads {
        (l.setup)(&ctx);
    }
    // Admin changes reach every worker within a second (t/admin.rs).
    std::thread::sleep(Duration::from_millis(1500));
    let workers: [u32; 2] = nginx.worker_pids().try_into().expect("2 workers");
    let cpu_before = cpu_seconds(&nginx);
    let start = Instant::now();
    eprintln!(
        "soak: {seconds} s, {} loads, workers {workers:?}",
        loads.len()
    );
    let (reports, samples) = std::thread::scope(|s| {
        let runs: Vec<_> = loads
            .iter()
            .map(|l| (l.name, s.spawn(|| (l.run)(&ctx))))
            .collect();
        let mon = s.spawn(|| monitor(&ctx, workers, start));
        while start.elapsed() < Duration::from_secs(seconds) && ctx.failures().is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
        ctx.stop();
        let reports: Vec<(&str, String)> = runs
            .into_iter()
            .map(|(n, h)| (n, h.join().unwrap()))
            .collect();
        (reports, mon.join().unwrap())
    });
    let ran = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&nginx) - cpu_before;
    for (name, r) in &reports {
        eprintln!("soak: {name}: {r}");
    }
    // Everything is measured and shown first, then judged at once.
    let mut problems: Vec<String> = ctx.failures();
    if problems.is_empty() {
        // Every count exact: the log phase runs after the answer, so wait for it.
        let want = ctx.counts();
        let mut differ = vec![];
        let exact = eventually(Duration::from_secs(60), || {
            let got = counted(&ctx).ok()?;
            let lat = latency_counted(&ctx).ok()?;
            differ = diff(&want.requests, &got.requests);
            differ.extend(diff(&want.bandwidth, &got.bandwidth));
            differ.extend(diff(&want.latency_counts(), &lat));
            differ.is_empty().then_some(())
        });
        if exact.is_some() {
            eprintln!(
                "soak: {} answers, each counted exactly ({} label sets; latency counts and bytes too)",
                want.requests.values().sum::<u64>(),
                want.requests.len()
            );
        } else {
            problems.push(format!("counts differ:\n{}", differ.join("\n")));
        }
        for l in &loads {
            match (l.check)(&ctx) {
                Ok(line) if line.is_empty() => {}
                Ok(line) => eprintln!("soak: {}: {line}", l.name),
                Err(e) => problems.push(format!("{}: {e}", l.name)),
            }
        }
    }

    // Flat after the warm-up.
    eprintln!(
        "soak: curves (every {}th second: t, RssAnon w0 w1, of which Lua heap w0 w1, \
         RssShmem w0 w1, zone used, waiting, series):",
        curve_step(&samples)
    );
    for s in samples.iter().step_by(curve_step(&samples)) {
        eprintln!(
            "soak:   {:5.0}s {} {} {} {} {} {} {} {} {}",
            s.at,
            mib(s.anon[0]),
            mib(s.anon[1]),
            mib(s.lua[0]),
            mib(s.lua[1]),
            mib(s.shmem[0]),
            mib(s.shmem[1]),
            mib(s.zone_used),
            mib(s.zone_waiting),
            s.series
        );
    }
    let curve = |f: fn(&Sample) -> u64| -> Vec<(f64, u64)> {
        samples.iter().map(|s| (s.at, f(s))).collect()
    };
    for judged in [
        flat(
            "worker 0 RssAnon",
            &curve(|s| s.anon[0]),
            ran,
            rss_slack(ran),
        ),
        flat(
            "worker 1 RssAnon",
            &curve(|s| s.anon[1]),
            ran,
            rss_slack(ran),
        ),
        flat("worker 0 RssShmem", &curve(|s| s.shmem[0]), ran, ZONE_SLACK),
        flat("worker 1 RssShmem", &curve(|s| s.shmem[1]), ran, ZONE_SLACK),
        flat("zone used", &curve(|s| s.zone_used), ran, ZONE_SLACK),
    ] {
        match judged {
            Ok(line) => eprintln!("soak: {line}"),
            Err(line) => problems.push(format!("not flat after the warm-up: {line}")),
        }
    }

    // No worker died; no error-log line beyond those the loads expect.
    if nginx.worker_pids().len() != 2 || !nginx.crashes().is_empty() {
        problems.push(format!("workers died: {:?}", nginx.crashes()));
    }
    let mut expected: Vec<(&str, &str)> = vec![];
    for e in loads.iter().flat_map(|l| l.expected_log.iter()) {
        if !expected.contains(e) {
            expected.push(*e);
        }
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexpected = vec![];
    for line in nginx.error_log().lines().filter(|l| {
        ["[warn]", "[error]", "[crit]", "[alert]", "[emerg]"]
            .iter()
            .any(|lv| l.contains(lv))
    }) {
        match expected.iter().find(|(part, _)| line.contains(part)) {
            Some((part, _)) => *seen.entry(part).or_insert(0) += 1,
            None => unexpected.push(line.to_string()),
        }
    }
    for (part, why) in &expected {
        eprintln!(
            "soak: expected log line x{}: {why}",
            seen.get(part).unwrap_or(&0)
        );
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "unexpected error-log lines ({}):\n{}",
            unexpected.len(),
            unexpected
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let answered = ctx.answered.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "soak: {ran:.0} s, {answered} proxied answers ({:.0}/s), nginx used {cpu:.1} s of CPU",
        answered as f64 / ran
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Allowed growth of a worker's private memory after the warm-up (see [`flat`]).
/// Measured on 10-minute runs: the render threads' malloc arenas grow for about 4
/// minutes before they level off (from 6 to about 25 MiB), and the LuaJIT heap's
/// sawtooth peaks differ by up to 2 MiB between one third and the next. So 6 MiB, 3
/// times that noise, from 5 minutes (it catches leaks of about 30 KiB/s in a
/// 10-minute run), and 8 MiB for shorter runs, still in the arenas' warm-up (about 3
/// MiB seen there; it catches leaks of about 400 KiB/s in 60 s).
fn rss_slack(seconds: f64) -> u64 {
    if seconds < 300.0 {
        8 << 20
    } else {
        6 << 20
    }
}

/// Allowed growth of the zone's high-water mark (`used`) and of the shared pages a
/// worker touched, after the warm-up. The mark rises only when more series are alive
/// at once than ever before, or when freed memory is not reused: the live series
/// wander by a few hundred (tens of KiB), while a zone that stopped reusing would grow
/// by the label churn's 1,000 series a second, about 100 KiB/s, 2 MiB a third of a
/// 60 s run.
const ZONE_SLACK: u64 = 1 << 20;

fn curve_step(samples: &[Sample]) -> usize {
    (samples.len() / 12).max(1)
}

/// CPU time (user + system) of nginx's master and workers so far, in seconds.
fn cpu_seconds(nginx: &Nginx) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut pids = nginx.worker_pids();
    pids.push(nginx.master_pid());
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            let after = &s[s.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
        })
        .sum()
}

/// The judge itself: a sawtooth is flat, a slow leak under it is not.
#[test]
fn flat_tells_a_sawtooth_from_a_leak() {
    let saw: Vec<(f64, u64)> = (0..600)
        .map(|t| (t as f64, (50 << 20) + (t % 17) * (300 << 10)))
        .collect();
    assert!(flat("saw", &saw, 600.0, rss_slack(600.0)).is_ok());
    let leak: Vec<(f64, u64)> = saw
        .iter()
        .map(|(t, v)| (*t, v + (*t as u64) * (40 << 10)))
        .collect();
    assert!(flat("leak", &leak, 600.0, rss_slack(600.0)).is_err());
}
