//! Process-level faults under load, against real nginx (2 workers both serving): real
//! HTTP clients (`harness::Load`) send requests, each on its own connection and with
//! its own id (a series of its own), while a worker is killed (at random, or at an
//! exact point of a delete, an expiry sweep or a block reuse: `debug-hooks` builds die
//! where `ngx_prom_debug_die_at` says), stopped and continued, nginx reloads or
//! upgrades its binary, or the zone fills up. Every request that got an answer is
//! counted exactly once by every recorder; one that got none (its worker died) at most
//! once; and no lock is left held (the takeover is counted, later writes work).
//!
//! Adding a fault: a test that starts a `Load`, injects it, stops the load and hands
//! what was sent to `check_counts`.

mod harness;

use harness::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Clients of every load: more than the 2 cores, so both workers serve.
const CLIENTS: usize = 4;
/// A wait after which every worker has announced a quiescent point (each does every
/// 100 ms) and freed blocks may be reused.
const REUSE_WAIT: Duration = Duration::from_millis(1500);
/// A zone the loads never fill (a series per request; memory becomes resident as it
/// is used).
const ZONE: &str = "32m";

/// The application under load. /load counts its request (content phase: a counter by
/// worker, a counter by request id, a histogram; log phase: a counter); /kept and /exp
/// make series a fault must leave alone or that expire; /die arms a fault point.
fn app_http(app: u16, metrics: u16, zone_size: &str) -> String {
    format!(
        r#"
    prometheus_zone metrics {zone_size};
    prometheus_process_metrics off;
    init_by_lua_block {{
        local z = require("ngxprom").zone("metrics")
        f = {{
            per_worker = z:counter("load_total", "Load requests by worker.", {{"worker"}}),
            per_request = z:counter("load_requests_total", "Load requests by id.", {{"id"}}),
            seconds = z:histogram("load_seconds", "Load requests' values.", {{}}),
            logged = z:counter("load_logged_total", "Load requests, in the log phase.", {{}}),
            kept = z:counter("kept_total", "Series a fault must leave alone.", {{"k"}}),
            exp = z:counter("exp_total", "Series that expire.", {{"k"}}, {{ expire = 1 }}),
        }}
    }}
    server {{
        listen 127.0.0.1:{app};
        location = /load {{
            content_by_lua_block {{
                local pid = ngx.worker.pid()
                f.per_worker:labels(tostring(pid)):inc()
                f.per_request:labels(ngx.var.arg_id):inc()
                f.seconds:labels():observe(0.001)
                ngx.header["X-Worker"] = pid
                ngx.say("ok")
            }}
            log_by_lua_block {{
                f.logged:labels():inc()
            }}
        }}
        location = /kept {{
            content_by_lua_block {{
                f.kept:labels(ngx.var.arg_k):inc(tonumber(ngx.var.arg_n or 1))
                ngx.header["X-Worker"] = ngx.worker.pid()
                ngx.say("ok")
            }}
        }}
        location = /del {{
            content_by_lua_block {{
                ngx.say(tostring(f.kept:del(ngx.var.arg_k)))
            }}
        }}
        location = /offset {{
            # Where k's values are (made if missing): its block.
            content_by_lua_block {{
                ngx.say(f.kept:labels(ngx.var.arg_k).handle % 4294967296)
            }}
        }}
        location = /exp {{
            content_by_lua_block {{
                for i = 1, tonumber(ngx.var.arg_n) do f.exp:labels("e" .. i):inc() end
                ngx.say("ok")
            }}
        }}
        location = /die {{
            # In worker `only` (any when not given): arms fault point `at` (debug-hooks),
            # then deletes kept series `del` or makes kept series `make`, if given.
            content_by_lua_block {{
                ngx.header["X-Worker"] = ngx.worker.pid()
                ngx.header["X-Worker-Id"] = ngx.worker.id()
                if ngx.var.arg_only and tonumber(ngx.var.arg_only) ~= ngx.worker.id() then
                    ngx.say("not here")
                    return
                end
                local ffi = require "ffi"
                pcall(ffi.cdef, "int ngx_prom_debug_die_at(uint32_t point);")
                local rc = ffi.C.ngx_prom_debug_die_at(tonumber(ngx.var.arg_at))
                if ngx.var.arg_del then f.kept:del(ngx.var.arg_del) end
                if ngx.var.arg_make then f.kept:labels(ngx.var.arg_make):inc() end
                ngx.say(rc)
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location = /metrics {{
            prometheus_metrics metrics;
            add_header X-Worker $pid;
        }}
    }}
"#
    )
}

struct App {
    nginx: Nginx,
    app: u16,
    metrics: u16,
}

fn start_app(name: &str, zone_size: &str, start: fn(&str, &str) -> Nginx) -> App {
    let (app, metrics) = (free_port(), free_port());
    let nginx = start(name, &app_http(app, metrics, zone_size));
    App {
        nginx,
        app,
        metrics,
    }
}

/// A load request's id: 120 bytes, so that its series' block is of a size no other
/// series here has (a freed block serves series of its size or up to a quarter
/// smaller): the load never takes the block a test watches.
fn load_id(client: usize, seq: usize) -> String {
    format!("c{client}-{seq:07}-{}", "x".repeat(110))
}

fn load_path(client: usize, seq: usize) -> String {
    format!("/load?id={}", load_id(client, seq))
}

/// Starts the load on `a` and waits until both workers have answered some of it.
fn load_on_both(a: &App) -> Load {
    let load = Load::start(a.app, CLIENTS, load_path);
    load.wait_answered_by(&a.nginx.worker_pids());
    load.wait_more(100);
    load
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

fn takeovers(samples: &[Sample]) -> f64 {
    value(
        samples,
        "nginx_metric_lock_takeovers_total",
        &[("zone", "metrics")],
    )
    .unwrap_or(0.0)
}

/// The zone's series as the scrape shows them: every counter series of the app's
/// families, and the histogram's one.
fn shown_series(samples: &[Sample]) -> f64 {
    let counters = [
        "load_total",
        "load_requests_total",
        "load_logged_total",
        "kept_total",
        "exp_total",
    ];
    let n = samples
        .iter()
        .filter(|s| counters.contains(&s.name.as_str()))
        .count();
    let histogram = value(samples, "load_seconds_count", &[]).is_some();
    (n + usize::from(histogram)) as f64
}

/// Checks what a load sent against what the zone counted: every answered request is
/// a 200 and counted exactly once by each content-phase recorder (and, with `logged`,
/// by the log phase's); an unanswered one (its worker, one of `killed`, died with it)
/// at most once; the workers that were not killed counted exactly what they answered.
/// At most `max_failed` requests may go unanswered. Returns (answered, unanswered).
fn check_counts(
    samples: &[Sample],
    sent: &[Sent],
    killed: &[u32],
    max_failed: usize,
    logged: bool,
) -> (usize, usize) {
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(
        failed.len() <= max_failed,
        "{} requests unanswered (at most {max_failed}): {:?}",
        failed.len(),
        failed.iter().map(|s| &s.outcome).collect::<Vec<_>>()
    );
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for s in sent {
        let id = s.path.strip_prefix("/load?id=").expect("a load request");
        let counted = value(samples, "load_requests_total", &[("id", id)]);
        match &s.outcome {
            Ok(r) => {
                assert_eq!(r.status, 200, "{}: {}", s.path, r.text());
                assert_eq!(r.text(), "ok\n");
                *by_worker
                    .entry(s.worker().unwrap().to_string())
                    .or_default() += 1;
                assert_eq!(
                    counted,
                    Some(1.0),
                    "answered request {} {}",
                    s.client,
                    s.seq
                );
            }
            Err(e) => assert!(
                matches!(counted, None | Some(1.0)),
                "unanswered request {} {} ({e}) counted {counted:?}",
                s.client,
                s.seq
            ),
        }
    }
    let answered = sent.len() - failed.len();
    let (low, high) = (answered as f64, (answered + failed.len()) as f64);
    for name in ["load_requests_total", "load_total", "load_seconds_count"] {
        let n = sum(samples, name);
        assert!(
            (low..=high).contains(&n),
            "{name}: {n}, answered {answered}, unanswered {}",
            failed.len()
        );
    }
    // The zone holds no request the clients never sent.
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.name == "load_requests_total")
            .count(),
        sum(samples, "load_requests_total") as usize
    );
    for (worker, n) in &by_worker {
        let counted = value(samples, "load_total", &[("worker", worker)]);
        if killed.iter().any(|k| k.to_string() == *worker) {
            let c = counted.unwrap_or(0.0);
            assert!(
                (*n as f64..=(*n + failed.len()) as f64).contains(&c),
                "killed worker {worker}: counted {c}, answered {n}"
            );
        } else {
            assert_eq!(counted, Some(*n as f64), "worker {worker}");
        }
    }
    if logged {
        assert_eq!(sum(samples, "load_logged_total"), low);
    }
    (answered, failed.len())
}

/// Scrapes once the log phase of every answered request has run (`load_logged_total`
/// reached `answered`), for checks that include it.
fn scrape_when_logged(metrics: u16, answered: usize) -> Vec<Sample> {
    let mut last = 0.0;
    eventually(Duration::from_secs(20), || {
        let (_, s) = scrape(metrics, "/metrics");
        last = sum(&s, "load_logged_total");
        (last == answered as f64).then_some(s)
    })
    .unwrap_or_else(|| panic!("log phase counted {last} of {answered}"))
}

/// After a fault: a later update that needs the lock (a new series) and a scrape work.
fn lock_is_free(a: &App, k: &str) {
    let r = try_get(a.app, &format!("/kept?k={k}")).expect("a new series after the fault");
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, s) = scrape(a.metrics, "/metrics");
    assert_eq!(value(&s, "kept_total", &[("k", k)]), Some(1.0));
}

/// The free lists are whole after a fault: 50 series with label values of `width`
/// bytes (blocks of the size the fault freed) made and deleted, and once every worker
/// has moved on, 50 others take their blocks: no new bytes.
fn freed_blocks_are_reused(a: &App, width: usize) {
    let label = |p: char, i: usize| format!("{p}{i:0>w$}", w = width - 1);
    let used = || {
        let (_, s) = scrape(a.metrics, "/metrics");
        value(
            &s,
            "nginx_metric_zone_bytes",
            &[("zone", "metrics"), ("state", "used")],
        )
        .unwrap()
    };
    for i in 0..50 {
        assert_eq!(
            get(a.app, &format!("/kept?k={}", label('r', i))).status,
            200
        );
    }
    let before = used();
    for i in 0..50 {
        let r = get(a.app, &format!("/del?k={}", label('r', i)));
        assert_eq!(r.text(), "true\n");
    }
    std::thread::sleep(REUSE_WAIT);
    for i in 0..50 {
        assert_eq!(
            get(a.app, &format!("/kept?k={}", label('s', i))).status,
            200
        );
    }
    assert_eq!(used(), before, "the freed blocks were not reused");
    let (_, s) = scrape(a.metrics, "/metrics");
    for i in 0..50 {
        assert_eq!(value(&s, "kept_total", &[("k", &label('s', i))]), Some(1.0));
    }
    series_count_is_right(&s);
}

/// Which worker's answer `sent` holds, of those it holds, as pids.
/// After one worker was killed: every answered request counted once (see
/// [`check_counts`]) and the lock it held taken over once.
fn counted_after_one_kill(s: &[Sample], sent: &[Sent], dead: u32) {
    check_counts(s, sent, &[dead], CLIENTS, false);
    assert_eq!(takeovers(s), 1.0);
}

/// The zone's own series count agrees with the series a scrape shows.
fn series_count_is_right(s: &[Sample]) {
    assert_eq!(
        value(s, "nginx_metric_series", &[("zone", "metrics")]),
        Some(shown_series(s))
    );
}

/// The error log holds nothing but the kills the test made.
fn no_error_but_kills(a: &App) {
    let errors = a.nginx.errors_but_kills();
    assert!(errors.is_empty(), "{errors:?}");
}

fn answering(sent: &[Sent]) -> BTreeSet<u32> {
    sent.iter()
        .filter_map(|s| s.worker()?.parse().ok())
        .collect()
}

#[test]
fn a_worker_killed_under_load_loses_no_answered_request() {
    let a = start_app("faults-kill", ZONE, Nginx::start);
    let load = load_on_both(&a);
    let victim = a.nginx.worker_pids()[0];
    // A SIGKILL at a random point: the load makes a series per request, so the victim
    // may die holding the zone lock (then the next taker takes it over).
    a.nginx.kill_worker(victim);
    load.wait_answered_by(&a.nginx.worker_pids());
    load.wait_more(200);
    let sent = load.stop();
    let (_, s) = scrape(a.metrics, "/metrics");
    let (answered, failed) = check_counts(&s, &sent, &[victim], CLIENTS, false);
    eprintln!("kill under load: {answered} answered, {failed} unanswered");
    assert!(takeovers(&s) <= 1.0, "{}", takeovers(&s));
    series_count_is_right(&s);
    lock_is_free(&a, "after");
    no_error_but_kills(&a);
}

#[test]
fn a_worker_killed_in_a_delete_under_load_leaves_no_lock_held() {
    let a = start_app("faults-delete", ZONE, Nginx::start_with_debug_hooks);
    for (k, n) in [("keep", 5), ("doomed", 3)] {
        let r = get(a.app, &format!("/kept?k={k}&n={n}"));
        assert_eq!(r.status, 200);
    }
    let load = load_on_both(&a);
    let before = a.nginx.worker_pids();
    // The worker that takes this dies in the delete, its block freed, the delete not
    // marked done; the other worker meanwhile waits for the lock.
    let r = try_get(a.app, "/die?at=1&del=doomed");
    assert!(r.is_err(), "the worker lived: {:?}", r.map(|r| r.text()));
    let dead = a.nginx.wait_one_died(&before);
    load.wait_answered_by(&a.nginx.worker_pids());
    load.wait_more(200);
    let sent = load.stop();
    let (_, s) = scrape(a.metrics, "/metrics");
    counted_after_one_kill(&s, &sent, dead);
    assert_eq!(value(&s, "kept_total", &[("k", "keep")]), Some(5.0));
    assert_eq!(value(&s, "kept_total", &[("k", "doomed")]), None);
    series_count_is_right(&s);
    lock_is_free(&a, "after");
    // The deleted label set is made anew, from zero, in a block of its own: the one the
    // dead worker freed was listed once.
    assert_eq!(get(a.app, "/kept?k=doomed").status, 200);
    let (_, s) = scrape(a.metrics, "/metrics");
    for (k, n) in [("keep", 5.0), ("after", 1.0), ("doomed", 1.0)] {
        assert_eq!(value(&s, "kept_total", &[("k", k)]), Some(n), "{k}");
    }
    series_count_is_right(&s);
    freed_blocks_are_reused(&a, "doomed".len());
    no_error_but_kills(&a);
}

#[test]
fn a_worker_killed_in_an_expiry_sweep_under_load_leaves_no_lock_held() {
    let a = start_app("faults-sweep", ZONE, Nginx::start_with_debug_hooks);
    assert_eq!(get(a.app, "/kept?k=keep&n=5").status, 200);
    let load = load_on_both(&a);
    // Worker 0 runs the sweep: its next sweep dies in its second delete.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sweeper: u32 = loop {
        assert!(Instant::now() < deadline, "worker 0 never answered");
        let r = get(a.app, "/die?at=2&only=0");
        if r.text() == "0\n" {
            break r.header("x-worker").unwrap().parse().unwrap();
        }
    };
    // 20 series that expire together, one second from now.
    assert_eq!(get(a.app, "/exp?n=20").text(), "ok\n");
    let dead = a.nginx.wait_one_died(&[sweeper]);
    assert_eq!(dead, sweeper);
    // The new worker 0 sweeps again: the rest of the batch expires.
    let gone = eventually(Duration::from_secs(20), || {
        let (_, s) = scrape(a.metrics, "/metrics");
        (sum(&s, "exp_total") == 0.0).then_some(())
    });
    assert!(gone.is_some(), "expired series left after the sweeper died");
    load.wait_answered_by(&a.nginx.worker_pids());
    load.wait_more(200);
    let sent = load.stop();
    let (_, s) = scrape(a.metrics, "/metrics");
    counted_after_one_kill(&s, &sent, dead);
    assert_eq!(value(&s, "kept_total", &[("k", "keep")]), Some(5.0));
    series_count_is_right(&s);
    lock_is_free(&a, "after");
    freed_blocks_are_reused(&a, "e20".len());
    no_error_but_kills(&a);
}

#[test]
fn a_worker_killed_reusing_a_block_under_load_leaves_it_reusable() {
    let a = start_app("faults-reuse", ZONE, Nginx::start_with_debug_hooks);
    // Keys of 60 bytes: blocks of a size only these series have.
    let key = |name: &str| format!("{name:-<60}");
    let (victim, doomed, after) = (key("victim"), key("doomed"), key("after"));
    assert_eq!(get(a.app, &format!("/kept?k={victim}&n=7")).status, 200);
    let block = get(a.app, &format!("/offset?k={victim}")).text();
    let load = load_on_both(&a);
    assert_eq!(get(a.app, &format!("/del?k={victim}")).text(), "true\n");
    std::thread::sleep(REUSE_WAIT);
    // The worker that takes this makes `doomed` in victim's block and dies with its new
    // tag written, before publishing it.
    let before = a.nginx.worker_pids();
    let r = try_get(a.app, &format!("/die?at=3&make={doomed}"));
    assert!(
        r.is_err(),
        "the worker lived (was the block not reusable yet?): {:?}",
        r.map(|r| r.text())
    );
    let dead = a.nginx.wait_one_died(&before);
    load.wait_answered_by(&a.nginx.worker_pids());
    load.wait_more(200);
    // The takeover put the block back: once every worker has moved on, the next series
    // of its size takes it, whole, from zero.
    std::thread::sleep(REUSE_WAIT);
    assert_eq!(get(a.app, &format!("/offset?k={after}")).text(), block);
    assert_eq!(get(a.app, &format!("/kept?k={after}&n=4")).status, 200);
    let sent = load.stop();
    let (_, s) = scrape(a.metrics, "/metrics");
    counted_after_one_kill(&s, &sent, dead);
    assert_eq!(value(&s, "kept_total", &[("k", &after)]), Some(4.0));
    assert_eq!(value(&s, "kept_total", &[("k", &victim)]), None);
    assert_eq!(value(&s, "kept_total", &[("k", &doomed)]), None);
    series_count_is_right(&s);
    lock_is_free(&a, "later");
    freed_blocks_are_reused(&a, 60);
    no_error_but_kills(&a);
}

/// A worker killed while it takes the last block off a free list (the list's head
/// cleared, its tail not yet), under load: the takeover puts the list right, so the
/// blocks freed later are reused (the dead worker's block is lost, never used twice).
#[test]
fn a_worker_killed_taking_a_block_off_a_free_list_leaves_the_list_whole() {
    let a = start_app("faults-pop", ZONE, Nginx::start_with_debug_hooks);
    let key = |name: &str| format!("{name:-<60}");
    let (victim, doomed) = (key("victim"), key("doomed"));
    assert_eq!(get(a.app, &format!("/kept?k={victim}&n=7")).status, 200);
    let load = load_on_both(&a);
    assert_eq!(get(a.app, &format!("/del?k={victim}")).text(), "true\n");
    std::thread::sleep(REUSE_WAIT);
    let before = a.nginx.worker_pids();
    let r = try_get(a.app, &format!("/die?at=4&make={doomed}"));
    assert!(
        r.is_err(),
        "the worker lived (was the block not reusable yet?): {:?}",
        r.map(|r| r.text())
    );
    let dead = a.nginx.wait_one_died(&before);
    load.wait_answered_by(&a.nginx.worker_pids());
    load.wait_more(200);
    let sent = load.stop();
    let (_, s) = scrape(a.metrics, "/metrics");
    counted_after_one_kill(&s, &sent, dead);
    assert_eq!(value(&s, "kept_total", &[("k", &victim)]), None);
    assert_eq!(value(&s, "kept_total", &[("k", &doomed)]), None);
    series_count_is_right(&s);
    lock_is_free(&a, "after");
    freed_blocks_are_reused(&a, 60);
    no_error_but_kills(&a);
}

#[test]
fn reloads_under_load_fail_no_request_and_count_each_once() {
    let a = start_app("faults-reload", ZONE, Nginx::start);
    let load = load_on_both(&a);
    let mut generations = vec![a.nginx.worker_pids()];
    for _ in 0..3 {
        a.nginx.reload();
        let workers = a.nginx.worker_pids();
        load.wait_answered_by(&workers);
        load.wait_more(100);
        generations.push(workers);
    }
    let sent = load.stop();
    let answered = sent.len();
    let s = scrape_when_logged(a.metrics, answered);
    check_counts(&s, &sent, &[], 0, true);
    // Every generation of workers answered some.
    let seen = answering(&sent);
    for g in &generations {
        assert!(g.iter().any(|p| seen.contains(p)), "{g:?} answered none");
    }
    eprintln!("3 reloads under load: {answered} requests, all answered");
    assert!(a.nginx.errors().is_empty(), "{:?}", a.nginx.errors());
    assert!(a.nginx.crashes().is_empty());
}

/// Sends QUIT (then KILL) to a master left running when a test fails midway.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &self.0.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(self.0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// A scrape answered by one of `workers` (the metrics location names its worker).
fn scrape_from(metrics: u16, workers: &[u32]) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(metrics, "/metrics");
        assert_eq!(r.status, 200);
        let by: u32 = r.header("x-worker").unwrap().parse().unwrap();
        if workers.contains(&by) {
            return parse_with_reference(&r.text());
        }
        assert!(
            Instant::now() < deadline,
            "no scrape answered by {workers:?}"
        );
    }
}

/// A binary upgrade as nginx documents it, under load: USR2 to the master (a new
/// master and its workers start beside the old ones), WINCH to the old master (its
/// workers finish and exit), QUIT to it. No request fails; each zone (they live as long
/// as their master: the new one starts empty) counts exactly what its workers answered.
#[test]
fn a_binary_upgrade_under_load_fails_no_request_and_counts_each_once() {
    let a = start_app("faults-upgrade", ZONE, Nginx::start);
    let load = load_on_both(&a);
    let old_master = a.nginx.master_pid();
    let _reap = Reap(old_master);
    let old = a.nginx.worker_pids();
    signal(old_master, "USR2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.nginx.master_pid() == old_master || a.nginx.worker_pids().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no new master:\n{}",
            a.nginx.error_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(a.nginx.prefix.join("nginx.pid.oldbin").exists());
    let new = a.nginx.worker_pids();
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} {new:?}");
    // Both generations serve side by side.
    load.wait_answered_by(&new);
    load.wait_more(100);
    let first = load.stop();
    assert!(first.iter().all(|s| s.outcome.is_ok()), "a request failed");
    // The old zone, from an old worker: exactly what the old workers answered.
    let mine = |sent: &[Sent], workers: &[u32]| -> Vec<Sent> {
        sent.iter()
            .filter(|s| {
                workers
                    .iter()
                    .any(|w| Some(w.to_string().as_str()) == s.worker())
            })
            .cloned()
            .collect()
    };
    let old_zone = scrape_from(a.metrics, &old);
    let by_old = mine(&first, &old);
    assert!(!by_old.is_empty());
    check_counts(&old_zone, &by_old, &[], 0, false);
    assert_eq!(
        sum(&old_zone, "load_requests_total"),
        by_old.len() as f64,
        "the old zone counted requests of the new workers"
    );
    // The old workers finish and exit, then the old master, under load.
    let load = Load::start(a.app, CLIENTS, |c, s| load_path(c + CLIENTS, s));
    load.wait_more(100);
    signal(old_master, "WINCH");
    for p in &old {
        wait_gone(*p);
    }
    load.wait_more(100);
    signal(old_master, "QUIT");
    wait_gone(old_master);
    load.wait_more(100);
    let second = load.stop();
    assert!(
        second.iter().all(|s| s.outcome.is_ok()),
        "a request failed: {:?}",
        second.iter().find(|s| s.outcome.is_err())
    );
    // The new zone: exactly what the new workers answered, before and after.
    let mut by_new = mine(&first, &new);
    by_new.extend(mine(&second, &new));
    let new_zone = scrape_from(a.metrics, &new);
    check_counts(&new_zone, &by_new, &[], 0, false);
    assert_eq!(sum(&new_zone, "load_requests_total"), by_new.len() as f64);
    eprintln!(
        "binary upgrade under load: {} requests, {} answered by the old workers, {} by the new",
        first.len() + second.len(),
        by_old.len(),
        by_new.len()
    );
    lock_is_free(&a, "after");
    assert!(a.nginx.errors().is_empty(), "{:?}", a.nginx.errors());
    assert!(a.nginx.crashes().is_empty());
}

/// Both workers make a new series per request in a 128k zone: what no longer fits goes
/// to the overflow series, counted once per refused label set; every request is
/// served and counted; nothing but the refusal is logged.
#[test]
fn a_zone_filling_up_under_load_from_both_workers_serves_and_counts_all() {
    let a = start_app("faults-full", "128k", Nginx::start);
    let load = load_on_both(&a);
    load.wait_more(2000);
    let sent = load.stop();
    let answered = sent.len();
    let s = scrape_when_logged(a.metrics, answered);
    assert!(sent.iter().all(|x| x.outcome.is_ok()), "a request failed");
    assert!(
        sent.iter()
            .all(|x| x.outcome.as_ref().unwrap().status == 200),
        "a request was not served"
    );
    let overflow =
        value(&s, "load_requests_total", &[("id", "__overflow__")]).expect("the zone filled up");
    let made = s.iter().filter(|x| x.name == "load_requests_total").count() - 1;
    assert!(made > 100, "{made} series made");
    assert_eq!(made as f64 + overflow, answered as f64);
    assert_eq!(sum(&s, "load_requests_total"), answered as f64);
    assert_eq!(zone_errors(&s, "zone_full"), overflow);
    assert_eq!(sum(&s, "load_total"), answered as f64);
    assert_eq!(sum(&s, "load_seconds_count"), answered as f64);
    let per_worker: BTreeMap<String, usize> = sent.iter().fold(BTreeMap::new(), |mut m, x| {
        *m.entry(x.worker().unwrap().to_string()).or_default() += 1;
        m
    });
    assert_eq!(per_worker.len(), 2, "{per_worker:?}");
    for (w, n) in &per_worker {
        assert_eq!(value(&s, "load_total", &[("worker", w)]), Some(*n as f64));
    }
    eprintln!(
        "zone full under load: {answered} requests, {made} series, {overflow} in the overflow"
    );
    let unexpected: Vec<String> = a
        .nginx
        .errors()
        .into_iter()
        .filter(|l| !l.contains("\"load_requests_total\": zone is full"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(a.nginx.crashes().is_empty());
}

/// The gateway's prometheus plugin while a worker is stopped (SIGSTOP) for seconds
/// under load, then continued: the other worker serves meanwhile, every request is
/// answered (those the stopped worker held, once it runs again) and counted once.
#[test]
fn the_plugin_counts_every_request_across_a_stopped_worker() {
    let prefix = prefix("faults-stop");
    let (conf, [proxy, admin_port, metrics, upstream]) = render_gateway(&prefix, &[]);
    // Which worker answered, for the test.
    let conf = conf.replacen(
        "proxy_http_version 1.1;",
        "proxy_http_version 1.1;\n        add_header X-Worker $pid always;",
        1,
    );
    let nginx = Nginx::start_with(prefix, conf);
    let up = format!("http://127.0.0.1:{upstream}/");
    for (path, body) in [
        ("/services", json!({"name": "svc", "url": up})),
        (
            "/services/svc/routes",
            json!({"name": "r", "paths": ["/r"]}),
        ),
        (
            "/plugins",
            json!({"name": "prometheus", "config": {"status_code_metrics": true, "latency_metrics": true}}),
        ),
    ] {
        let (status, v) = admin(admin_port, "POST", path, Some(body));
        assert_eq!(status, 201, "{v}");
    }
    let counts = || {
        let (_, s) = scrape(metrics, "/metrics");
        let sr = [("service", "svc"), ("route", "r")];
        let requests = value(
            &s,
            "gateway_http_requests_total",
            &[
                sr[0],
                sr[1],
                ("code", "200"),
                ("source", "service"),
                ("consumer", ""),
            ],
        );
        let latency = value(&s, "gateway_request_latency_seconds_count", &sr);
        [requests.unwrap_or(0.0), latency.unwrap_or(0.0)]
    };
    // What the plugin counted, once every log phase has run.
    let settled = || loop {
        let before = counts();
        std::thread::sleep(Duration::from_millis(200));
        if counts() == before {
            return before;
        }
    };
    // Both workers route "/r" and count it (they take new configuration every 0.1 s,
    // route and plugin maybe in different rounds).
    std::thread::sleep(Duration::from_millis(1000));
    let warmup = eventually(Duration::from_secs(20), || {
        let before = settled();
        if !(0..20).all(|_| get(proxy, "/r/").status == 200) {
            return None;
        }
        let after = settled();
        (after == [before[0] + 20.0, before[1] + 20.0]).then_some(after)
    })
    .expect("the route is served and counted");
    // Clients enough that some are free while the stopped worker holds others'
    // connections.
    let load = Load::start(proxy, 2 * CLIENTS, |_, _| "/r/".to_string());
    load.wait_answered_by(&nginx.worker_pids());
    load.wait_more(100);
    let stopped = nginx.worker_pids()[0];
    signal(stopped, "STOP");
    let since = Instant::now();
    // The other worker serves meanwhile.
    load.wait_more(200);
    std::thread::sleep(Duration::from_secs(2).saturating_sub(since.elapsed()));
    signal(stopped, "CONT");
    let answered_since = load.answered();
    load.wait_answered_by(&[stopped]);
    load.wait_more(100);
    let sent = load.stop();
    assert!(sent.len() > answered_since);
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(sent
        .iter()
        .all(|s| s.outcome.as_ref().unwrap().status == 200));
    let want = [warmup[0] + sent.len() as f64, warmup[1] + sent.len() as f64];
    let mut last = [0.0; 2];
    let exact = eventually(Duration::from_secs(20), || {
        last = counts();
        (last == want).then_some(())
    });
    assert!(exact.is_some(), "counted {last:?}, want {want:?}: {:?}", {
        let (_, s) = scrape(metrics, "/metrics");
        s.into_iter()
            .filter(|x| {
                x.name == "gateway_http_requests_total" || x.name.starts_with("nginx_metric_errors")
            })
            .collect::<Vec<_>>()
    });
    // The stopped worker holds no lock: an Admin write, seen by both workers.
    let (status, v) = admin(
        admin_port,
        "POST",
        "/services/svc/routes",
        Some(json!({"name": "r2", "paths": ["/r2"]})),
    );
    assert_eq!(status, 201, "{v}");
    let both = eventually(Duration::from_secs(10), || {
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            let r = get(proxy, "/r2/");
            if r.status != 200 {
                return None;
            }
            seen.insert(r.header("x-worker").unwrap_or("").to_string());
        }
        (seen.len() == 2).then_some(())
    });
    assert!(
        both.is_some(),
        "the new route is not served by both workers"
    );
    eprintln!(
        "stopped worker: {} requests, all answered and counted",
        sent.len()
    );
    assert!(nginx.errors().is_empty(), "{:?}", nginx.errors());
    assert!(nginx.crashes().is_empty());
}
