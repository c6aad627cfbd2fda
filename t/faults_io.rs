//! I/O, disk and peer faults, injected for real against the real gateway and module:
//! the state file unwritable, on a full or read-only disk, failing fsync, corrupt or
//! unreadable at start and reload; a disk that stalls under both workers' Admin
//! writes; upstreams that hang, reset or answer garbage; a Pushgateway that stalls;
//! clients that choose label values. The faults themselves live in t/inject.rs.

mod harness;
mod inject;

use harness::*;
use inject::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn state_dir(gw: &Gateway) -> PathBuf {
    gw.nginx.prefix.join("state")
}

fn state_bytes(gw: &Gateway) -> Vec<u8> {
    std::fs::read(state_dir(gw).join("gateway.json")).unwrap()
}

/// Names in the state directory other than the state file (temporaries, fillers).
fn beside_state(gw: &Gateway) -> Vec<String> {
    std::fs::read_dir(state_dir(gw))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".gateway.json"))
        .collect()
}

fn log_count(gw: &Gateway, needle: &str) -> usize {
    gw.nginx
        .error_log()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()))
}

fn version(r: &Response) -> u64 {
    r.header("x-gateway-config-version")
        .expect("a configuration version")
        .parse()
        .unwrap()
}

/// Asks until both workers have answered `GET /consumers/{name}`; each must serve
/// `custom_id`. Returns the version each runs.
fn served_by_both(gw: &Gateway, name: &str, custom_id: &str) -> BTreeMap<u32, u64> {
    let mut seen = BTreeMap::new();
    for _ in 0..400 {
        let r = request(gw.admin, "GET", &format!("/consumers/{name}"), &[], b"");
        let v = body(&r);
        assert_eq!(r.status, 200, "{v}");
        let pid: u32 = r.header("x-gateway-worker").unwrap().parse().unwrap();
        assert_eq!(v["custom_id"], custom_id, "worker {pid} serves {v}");
        seen.insert(pid, version(&r));
        if seen.len() == 2 {
            return seen;
        }
    }
    panic!("only {seen:?} answered");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fault of the state directory, set up and taken away.
struct DiskFault {
    name: &'static str,
    /// What the answer and the log must say caused it.
    cause: &'static str,
}

/// Sets `fault` up on `gw`'s state directory; returns what undoes it.
fn inject_disk_fault(gw: &Gateway, fault: &str) -> Box<dyn FnOnce()> {
    let dir = state_dir(gw);
    match fault {
        // The workers run as nobody, owner of the directory: without its write bit
        // they cannot make the temporary file (root, running the tests, could).
        "unwritable" => {
            run(Command::new("chmod").arg("555").arg(&dir));
            Box::new(move || run(Command::new("chmod").arg("755").arg(&dir)))
        }
        // A read-only mount over the directory (an operator's remount, a failing
        // disk the kernel made read-only).
        "read-only" => {
            run(Command::new("mount").arg("--bind").arg(&dir).arg(&dir));
            run(Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(&dir));
            Box::new(move || run(Command::new("umount").arg(&dir)))
        }
        // The disk is full: a filler takes every block of the small tmpfs the state
        // lives on (see `gateway_on_tmpfs`).
        "full" => {
            let filler = dir.join("filler");
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![b'x'; 4096];
            while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
            drop(f);
            Box::new(move || std::fs::remove_file(&filler).unwrap())
        }
        // fsync of the new contents fails (a disk error): strace on both workers,
        // limited to each one's temporary file.
        "fsync-eio" => {
            let traced: Vec<Strace> = gw
                .nginx
                .worker_pids()
                .into_iter()
                .map(|pid| {
                    let tmp = dir.join(format!(".gateway.json.{pid}.tmp"));
                    Strace::attach(pid, "fsync", "fsync:error=EIO", Some(&tmp))
                })
                .collect();
            Box::new(move || drop(traced))
        }
        // The new contents are on disk and renamed over the state file, but the
        // directory's fsync, which makes the rename durable, fails.
        "dir-fsync-eio" => {
            let traced: Vec<Strace> = gw
                .nginx
                .worker_pids()
                .into_iter()
                .map(|pid| Strace::attach(pid, "fsync", "fsync:error=EIO", Some(&dir)))
                .collect();
            Box::new(move || drop(traced))
        }
        other => panic!("no disk fault {other}"),
    }
}

/// The gateway with its state directory on a 256 KiB tmpfs (a disk that can fill up).
fn gateway_on_tmpfs(name: &str) -> Gateway {
    let gw = start_gateway(name, &[]);
    gw.nginx.stop();
    let dir = state_dir(&gw);
    let saved = std::fs::read(dir.join("gateway.json")).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=755"])
        .arg("tmpfs")
        .arg(&dir));
    std::fs::write(dir.join("gateway.json"), saved).unwrap();
    run(Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&dir));
    gw.nginx.start_again();
    gw
}

fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// An Admin write the disk refuses is a 500 naming the cause, logged once; nothing of
/// it is stored (state file byte for byte, no temporary left) and both workers go on
/// serving the previous configuration; once the fault is gone, writes work again.
fn refused_writes_change_nothing(gw: &Gateway, faults: &[DiskFault]) {
    let p = gw.admin;
    let (s, _) = admin(
        p,
        "POST",
        "/consumers",
        Some(json!({"username": "alice", "custom_id": "before"})),
    );
    assert_eq!(s, 201);
    for fault in faults {
        let served = served_by_both(gw, "alice", "before");
        let file = state_bytes(gw);
        let logged = log_count(gw, "cannot write the state file");
        let undo = inject_disk_fault(gw, fault.name);
        // Each worker writes once under the fault.
        for pid in gw.nginx.worker_pids() {
            let conn = connection_to_worker(p, pid).expect("a connection to the worker");
            let custom_id = format!("lost-{}", fault.name);
            let answer = patch_on(
                conn,
                "/consumers/alice",
                json!({ "custom_id": custom_id }).to_string().as_bytes(),
            );
            let r = parse_response(&answer.join().unwrap());
            let v = body(&r);
            assert_eq!(r.status, 500, "{}: {v}", fault.name);
            let message = v["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("cannot write the state file") && message.contains(fault.cause),
                "{}: {v}",
                fault.name
            );
            assert_eq!(r.header("x-gateway-worker"), Some(pid.to_string().as_str()));
            assert_eq!(
                state_bytes(gw),
                file,
                "{}: the state file changed",
                fault.name
            );
        }
        undo();
        assert_eq!(beside_state(gw), Vec::<String>::new(), "{}", fault.name);
        assert_eq!(
            served_by_both(gw, "alice", "before"),
            served,
            "{}: the configuration changed",
            fault.name
        );
        // Logged once per refused write, with the cause.
        let with_cause = |gw: &Gateway| {
            gw.nginx
                .error_log()
                .lines()
                .filter(|l| l.contains("cannot write the state file") && l.contains(fault.cause))
                .count()
        };
        assert_eq!(
            log_count(gw, "cannot write the state file") - logged,
            2,
            "{}",
            gw.nginx.error_log()
        );
        assert!(with_cause(gw) >= 2, "{}", gw.nginx.error_log());
    }
    // Writable again: the next write is stored and served.
    let r = request(
        p,
        "PATCH",
        "/consumers/alice",
        &[JSON],
        br#"{"custom_id": "after"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let stored: Value = serde_json::from_slice(&state_bytes(gw)).unwrap();
    assert_eq!(stored["consumers"][0]["custom_id"], "after");
    served_by_both(gw, "alice", "after");
    let logged = gw.nginx.error_log();
    assert!(
        !logged.contains("stack traceback") && !logged.contains("runtime error"),
        "{logged}"
    );
    assert!(gw.nginx.crashes().is_empty(), "{:?}", gw.nginx.crashes());
}

#[test]
fn admin_writes_the_disk_refuses_are_500s_and_change_nothing() {
    let gw = start_gateway("fio-refused-writes", &[]);
    refused_writes_change_nothing(
        &gw,
        &[
            DiskFault {
                name: "unwritable",
                cause: "Permission denied",
            },
            DiskFault {
                name: "read-only",
                cause: "Read-only file system",
            },
            DiskFault {
                name: "fsync-eio",
                cause: "Input/output error",
            },
            DiskFault {
                name: "dir-fsync-eio",
                cause: "Input/output error",
            },
        ],
    );
}

#[test]
fn admin_writes_on_a_full_disk_are_500s_and_change_nothing() {
    let gw = gateway_on_tmpfs("fio-full-disk");
    let dir = state_dir(&gw);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        refused_writes_change_nothing(
            &gw,
            &[DiskFault {
                name: "full",
                cause: "No space left on device",
            }],
        );
        // A start on the full disk serves the state file it finds (it has nothing to
        // write); writes are refused until there is room.
        gw.nginx.stop();
        let undo = inject_disk_fault(&gw, "full");
        gw.nginx.start_again();
        served_by_both(&gw, "alice", "after");
        let r = request(
            gw.admin,
            "PATCH",
            "/consumers/alice",
            &[JSON],
            br#"{"custom_id": "x"}"#,
        );
        assert_eq!(r.status, 500, "{}", r.text());
        undo();
        gw.nginx.stop();
    }));
    unmount(&dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Starts nginx on `gw`'s prefix (stopped) through `wrapper` (e.g. strace) if given;
/// returns whether it started and what it said (stderr and the error log).
fn start_through(gw: &Gateway, wrapper: &[&str]) -> (bool, String) {
    let nginx = nginx_command();
    let mut cmd = Command::new(if wrapper.is_empty() {
        nginx.get_program()
    } else {
        wrapper[0].as_ref()
    });
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg(nginx.get_program());
    }
    for (k, v) in nginx.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .args(nginx.get_args())
        .arg("-p")
        .arg(&gw.nginx.prefix)
        .arg("-c")
        .arg(gw.nginx.prefix.join("nginx.conf"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        gw.nginx.error_log()
    );
    (out.status.success(), said)
}

/// The gateway's configuration is its state file: one it cannot read or make sense of
/// stops a start (naming the file and the cause) and fails a reload (the running
/// workers keep serving), and is never replaced by another configuration.
#[test]
fn a_corrupt_or_unreadable_state_file_stops_a_start_and_a_reload() {
    let gw = start_gateway("fio-corrupt-state", &[]);
    let (s, _) = admin(
        gw.admin,
        "POST",
        "/consumers",
        Some(json!({"username": "alice", "custom_id": "kept"})),
    );
    assert_eq!(s, 201);
    let good = state_bytes(&gw);
    let state = state_dir(&gw).join("gateway.json");
    gw.nginx.stop();

    let mut not_utf8 = good.clone();
    not_utf8[good.len() / 2] = 0xff;
    let mut bad_entity: Value = serde_json::from_slice(&good).unwrap();
    bad_entity["consumers"][0]["username"] = json!(7);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "invalid JSON"),
        ("empty", Vec::new(), "invalid JSON"),
        ("not UTF-8", not_utf8, "invalid JSON"),
        (
            "a bad entity",
            bad_entity.to_string().into_bytes(),
            "consumers[1]: schema violation (username: expected a string)",
        ),
    ];
    for (what, bytes, says) in &cases {
        std::fs::write(&state, bytes).unwrap();
        let (started, said) = start_through(&gw, &[]);
        assert!(!started, "{what}: started\n{said}");
        assert!(
            said.contains(&format!("gateway: {}", state.display())) && said.contains(says),
            "{what}: {said}"
        );
        assert_eq!(&std::fs::read(&state).unwrap(), bytes, "{what}: replaced");
    }

    // A state file that cannot be read (EACCES on open, strace injecting it into the
    // starting nginx) is not a missing one: no empty configuration replaces it.
    std::fs::write(&state, &good).unwrap();
    let path = state.display().to_string();
    let (started, said) = start_through(
        &gw,
        &[
            "strace",
            "-qq",
            "-o",
            "/dev/null",
            "--trace=openat",
            "--inject=openat:error=EACCES",
            "-P",
            &path,
        ],
    );
    assert!(!started, "unreadable: started\n{said}");
    assert!(
        said.contains(&format!("gateway: cannot read {path}"))
            && said.contains("Permission denied"),
        "{said}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), good, "unreadable: replaced");

    // Readable again: it starts on it.
    gw.nginx.start_again();
    let before = served_by_both(&gw, "alice", "kept");
    let workers = gw.nginx.worker_pids();

    // A reload on a corrupt file fails; the running workers serve on. The next Admin
    // write replaces the file whole, with what they serve and the change.
    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    let out = nginx_command()
        .arg("-p")
        .arg(&gw.nginx.prefix)
        .arg("-c")
        .arg(gw.nginx.prefix.join("nginx.conf"))
        .args(["-s", "reload"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let refused = eventually(Duration::from_secs(10), || {
        let log = gw.nginx.error_log();
        (log.matches(&format!("gateway: {path}")).count() > cases.len()).then_some(())
    });
    assert!(refused.is_some(), "{}", gw.nginx.error_log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gw.nginx.worker_pids(), workers);
    assert_eq!(served_by_both(&gw, "alice", "kept"), before);
    let r = request(
        gw.admin,
        "PATCH",
        "/consumers/alice",
        &[JSON],
        br#"{"custom_id": "new"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let stored: Value = serde_json::from_slice(&state_bytes(&gw)).unwrap();
    assert_eq!(stored["consumers"][0]["custom_id"], "new");
    gw.nginx.reload();
    served_by_both(&gw, "alice", "new");
}

/// A disk that stalls under both workers: each one's state-file fsync takes 3 s, and
/// each worker takes an Admin write at the same moment. The second waits for the
/// first's lock (its own fsync stalls in turn); both changes are kept, in order, with
/// distinct versions, in the file and in every worker, and after a restart.
#[test]
fn admin_writes_from_both_workers_on_a_stalled_disk_are_all_kept() {
    let gw = start_gateway("fio-both-stalled", &[]);
    let p = gw.admin;
    for name in ["alice", "bob"] {
        let (s, v) = admin(p, "POST", "/consumers", Some(json!({ "username": name })));
        assert_eq!(s, 201, "{v}");
    }
    let workers = gw.nginx.worker_pids();
    assert_eq!(workers.len(), 2);
    let conns: Vec<_> = workers
        .iter()
        .map(|&pid| connection_to_worker(p, pid).expect("a connection to the worker"))
        .collect();
    let mut stalls: Vec<Strace> = workers
        .iter()
        .map(|&pid| stall_next_fsync(pid, 3))
        .collect();
    let mut conns = conns.into_iter();
    let t0 = std::time::Instant::now();
    let first = patch_on(
        conns.next().unwrap(),
        "/consumers/alice",
        br#"{"custom_id": "a-2"}"#,
    );
    wait_in_fsync(workers[0]);
    let second = patch_on(
        conns.next().unwrap(),
        "/consumers/bob",
        br#"{"custom_id": "b-2"}"#,
    );
    let first = parse_response(&first.join().unwrap());
    let second = parse_response(&second.join().unwrap());
    // Both fsyncs stalled, one after the other (a lower bound: never flaky).
    assert!(t0.elapsed() >= Duration::from_secs(6), "{:?}", t0.elapsed());
    for s in &mut stalls {
        s.stop();
    }
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        first.header("x-gateway-worker"),
        Some(workers[0].to_string().as_str())
    );
    assert_eq!(
        second.header("x-gateway-worker"),
        Some(workers[1].to_string().as_str())
    );
    // The second write started from the first's configuration.
    assert!(version(&second) > version(&first));
    let stored: Value = serde_json::from_slice(&state_bytes(&gw)).unwrap();
    let ids: BTreeMap<String, String> = stored["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["username"].as_str().unwrap().to_string(),
                c["custom_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(ids["alice"], "a-2");
    assert_eq!(ids["bob"], "b-2");
    std::thread::sleep(Duration::from_millis(300));
    served_by_both(&gw, "alice", "a-2");
    served_by_both(&gw, "bob", "b-2");
    assert_eq!(beside_state(&gw), Vec::<String>::new());
    gw.nginx.stop();
    gw.nginx.start_again();
    served_by_both(&gw, "alice", "a-2");
    served_by_both(&gw, "bob", "b-2");
    assert!(gw.nginx.errors().is_empty(), "{:?}", gw.nginx.errors());
}

/// The gateway's request count for a service (and its route of the same name).
fn count(s: &[Sample], service: &str, code: &str, source: &str) -> Option<f64> {
    value(
        s,
        "gateway_http_requests_total",
        &[
            ("service", service),
            ("route", service),
            ("code", code),
            ("source", source),
            ("consumer", ""),
        ],
    )
}

/// Every series of a family for one service.
fn of_service<'a>(s: &'a [Sample], name: &str, service: &str) -> Vec<&'a Sample> {
    s.iter()
        .filter(|x| x.name == name && x.labels.get("service").map(String::as_str) == Some(service))
        .collect()
}

/// Upstreams that hang, reset or answer garbage: each request gets the answer nginx
/// gives for that failure (504, 502; a response cut after its head keeps its status),
/// is counted once under that code and source (`gateway` when nginx answered), with
/// its latency, and a pooled target that keeps failing turns unhealthy.
#[test]
fn upstreams_that_hang_reset_or_answer_garbage_are_answered_and_counted_exactly() {
    let g = start_gateway("fio-bad-upstreams", &[]);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b".to_vec();
    let peers: Vec<(&str, Peer)> = vec![
        ("hang", Peer::start(Behaviour::Hang)),
        ("reset", Peer::start(Behaviour::ResetAfterRequest)),
        (
            "reset-mid-request",
            Peer::start(Behaviour::ResetMidRequest(1000)),
        ),
        (
            "reset-mid-response",
            Peer::start(Behaviour::SendThenReset(head.clone())),
        ),
        (
            "cut-mid-response",
            Peer::start(Behaviour::SendThenClose(head)),
        ),
        (
            "not-http",
            Peer::start(Behaviour::SendThenClose(
                b"SSH-2.0-OpenSSH_9.2\r\n".to_vec(),
            )),
        ),
        (
            "not-http-status",
            Peer::start(Behaviour::SendThenClose(
                b"HTTP/1.1 2x0 OK\r\n\r\nbody".to_vec(),
            )),
        ),
        (
            "truncated-head",
            Peer::start(Behaviour::SendThenClose(
                b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec(),
            )),
        ),
        (
            "bad-header",
            Peer::start(Behaviour::SendThenClose(
                b"HTTP/1.1 200 OK\r\nX\x01: y\r\n\r\n".to_vec(),
            )),
        ),
        (
            "stalled-head",
            Peer::start(Behaviour::SendThenHang(b"HTTP/1.1 200 OK\r\n".to_vec())),
        ),
    ];
    for (name, peer) in &peers {
        created(admin(
            g.admin,
            "POST",
            "/services",
            Some(
                json!({ "name": name, "url": format!("http://127.0.0.1:{}", peer.port),
                    "read_timeout": 300, "retries": 0 }),
            ),
        ));
        created(admin(
            g.admin,
            "POST",
            &format!("/services/{name}/routes"),
            Some(json!({ "name": name, "paths": [format!("/{name}")] })),
        ));
    }
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(
            json!({ "name": "prometheus", "config": { "status_code_metrics": true, "latency_metrics": true,
                "bandwidth_metrics": true, "upstream_health_metrics": true } }),
        ),
    ));
    // A pool whose one target resets every connection: two failures in a row make it
    // unhealthy (passive checks), and the pool has no peer left.
    let pooled = Peer::start(Behaviour::ResetAfterRequest);
    created(admin(
        g.admin,
        "POST",
        "/upstreams",
        Some(
            json!({ "name": "pool", "healthchecks": { "passive": { "unhealthy": { "failures": 2 },
                "readmit_after": 600 } } }),
        ),
    ));
    created(admin(
        g.admin,
        "POST",
        "/upstreams/pool/targets",
        Some(json!({ "target": format!("127.0.0.1:{}", pooled.port) })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "pooled", "host": "pool", "port": 80, "retries": 0 })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/pooled/routes",
        Some(json!({ "name": "pooled", "paths": ["/pooled"] })),
    ));
    settle(&g);
    let body = vec![b'x'; 200_000];
    let expected: &[(&str, u16, &str)] = &[
        ("hang", 504, "gateway"),
        ("reset", 502, "gateway"),
        ("reset-mid-request", 502, "gateway"),
        // The head was passed on: the client has its status, then the connection ends
        // short of Content-Length.
        ("reset-mid-response", 200, "service"),
        ("cut-mid-response", 200, "service"),
        // Bytes that are not an HTTP answer: nginx's proxy passes them on as an
        // HTTP/0.9 response (no status line), logged as "upstream sent no valid HTTP/1.0
        // header"; nginx's status is 0.
        ("not-http", 0, "service"),
        ("not-http-status", 0, "service"),
        ("truncated-head", 502, "gateway"),
        ("bad-header", 502, "gateway"),
        ("stalled-head", 504, "gateway"),
    ];
    const N: usize = 3;
    for &(name, status, source) in expected {
        for _ in 0..N {
            if status == 0 {
                let raw = exchange(
                    g.proxy,
                    format!("GET /{name} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes(),
                );
                let sent = match &peers.iter().find(|(n, _)| *n == name).unwrap().0 {
                    &"not-http" => "SSH-2.0-OpenSSH_9.2\r\n",
                    _ => "HTTP/1.1 2x0 OK\r\n\r\nbody",
                };
                assert_eq!(String::from_utf8_lossy(&raw), sent, "{name}");
                continue;
            }
            let r = if name == "reset-mid-request" {
                request(g.proxy, "POST", &format!("/{name}"), &[], &body)
            } else {
                get(g.proxy, &format!("/{name}"))
            };
            assert_eq!(r.status, status, "{name}: {}", r.text());
            // What nginx answers itself is the gateway's JSON, never nginx's page.
            if source == "gateway" {
                assert_eq!(
                    r.header("content-type"),
                    Some("application/json; charset=utf-8"),
                    "{name}: {}",
                    r.text()
                );
                let message = if status == 504 {
                    "The upstream server is timing out"
                } else {
                    "An invalid response was received from the upstream server"
                };
                assert_eq!(
                    serde_json::from_slice::<Value>(&r.body).ok(),
                    Some(json!({ "message": message })),
                    "{name}: {}",
                    r.text()
                );
            }
            if name == "cut-mid-response" {
                assert_eq!(r.text(), "only ten b");
            }
        }
    }
    let pooled_answers: Vec<u16> = (0..4).map(|_| get(g.proxy, "/pooled").status).collect();
    // A service whose host is a name the gateway cannot resolve: 503, named, as Kong.
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "named", "url": "http://upstream.invalid", "retries": 0 })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/named/routes",
        Some(json!({ "name": "named", "paths": ["/named"] })),
    ));
    settle(&g);
    let named = get(g.proxy, "/named");
    assert_eq!(named.status, 503, "{}", named.text());
    let message = serde_json::from_slice::<Value>(&named.body).unwrap()["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .starts_with("name resolution failed"),
        "{message}"
    );
    let (_, s) = scrape(g.metrics, "/metrics");
    for &(name, status, source) in expected {
        let series = of_service(&s, "gateway_http_requests_total", name);
        assert_eq!(series.len(), 1, "{name}: {series:?}");
        assert_eq!(
            count(&s, name, &status.to_string(), source),
            Some(N as f64),
            "{name}: {series:?}"
        );
        for family in [
            "gateway_request_latency_seconds_count",
            "gateway_upstream_latency_seconds_count",
        ] {
            let c = of_service(&s, family, name);
            assert_eq!(
                c.iter().map(|x| x.value).sum::<f64>(),
                N as f64,
                "{name} {family}"
            );
        }
    }
    // Timed-out requests took at least read_timeout each, and their latency says so.
    for name in ["hang", "stalled-head"] {
        for family in [
            "gateway_request_latency_seconds_sum",
            "gateway_upstream_latency_seconds_sum",
        ] {
            let sum: f64 = of_service(&s, family, name).iter().map(|x| x.value).sum();
            assert!(sum >= 0.3 * N as f64 - 0.01, "{name} {family}: {sum}");
        }
    }
    // Two resets: 502s; then the target is unhealthy and the gateway answers itself.
    assert_eq!(pooled_answers, [502, 502, 503, 503]);
    assert_eq!(count(&s, "pooled", "502", "gateway"), Some(2.0));
    assert_eq!(count(&s, "pooled", "503", "gateway"), Some(2.0));
    assert_eq!(count(&s, "named", "503", "gateway"), Some(1.0));
    assert_eq!(
        of_service(&s, "gateway_http_requests_total", "pooled").len(),
        2
    );
    assert_eq!(pooled.accepted(), 2, "an unhealthy target was tried");
    let r = get(g.proxy, "/pooled");
    assert_eq!(r.status, 503);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["message"],
        "failure to get a peer from the ring-balancer"
    );
    let gauges = eventually(Duration::from_secs(5), || {
        let (_, s) = scrape(g.metrics, "/metrics");
        let h = |state: &str| {
            value(
                &s,
                "gateway_upstream_target_health",
                &[
                    ("upstream", "pool"),
                    ("target", &format!("127.0.0.1:{}", pooled.port)),
                    ("address", &format!("127.0.0.1:{}", pooled.port)),
                    ("state", state),
                ],
            )
        };
        (h("unhealthy") == Some(1.0) && h("healthy") == Some(0.0)).then_some(())
    });
    assert!(
        gauges.is_some(),
        "the target's health gauges never said unhealthy"
    );
    // No Lua error, no crash: only nginx's own lines about the upstreams.
    let log = g.nginx.error_log();
    assert!(
        !log.contains("stack traceback") && !log.contains("runtime error"),
        "{log}"
    );
    assert!(g.nginx.crashes().is_empty());
}

/// Sends the requests `make(i)` makes for i in `range`, pipelined 200 to a connection
/// (the last asks to close), from 4 client threads; returns how many answers had
/// each status.
fn blast(
    port: u16,
    range: std::ops::Range<usize>,
    make: fn(usize, bool) -> String,
) -> BTreeMap<u16, usize> {
    use std::io::{Read, Write};
    let ids: Vec<usize> = range.collect();
    let chunks: Vec<Vec<usize>> = ids.chunks(200).map(<[usize]>::to_vec).collect();
    let per_thread = chunks.len().div_ceil(4);
    let threads: Vec<_> = chunks
        .chunks(per_thread.max(1))
        .map(|mine| {
            let mine = mine.to_vec();
            std::thread::spawn(move || {
                let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                for chunk in mine {
                    let mut bytes = String::new();
                    for (k, &i) in chunk.iter().enumerate() {
                        bytes.push_str(&make(i, k + 1 == chunk.len()));
                    }
                    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    c.write_all(bytes.as_bytes()).unwrap();
                    let mut raw = Vec::new();
                    c.read_to_end(&mut raw).unwrap();
                    let text = String::from_utf8_lossy(&raw);
                    let mut answers = 0;
                    for part in text.split("HTTP/1.1 ").skip(1) {
                        if let Some(code) = part.get(..3).and_then(|c| c.parse().ok()) {
                            *statuses.entry(code).or_default() += 1;
                            answers += 1;
                        }
                    }
                    assert_eq!(answers, chunk.len(), "{text}");
                }
                statuses
            })
        })
        .collect();
    let mut all = BTreeMap::new();
    for t in threads {
        for (k, v) in t.join().unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

/// A request whose method, path and Host are all the client's own, distinct for `i`.
fn chosen_by_client(i: usize, last: bool) -> String {
    // Methods are tokens nginx takes as they come: letters, any number of them.
    let mut method = String::from("M");
    let mut n = i;
    loop {
        method.push((b'A' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    let close = if last { "Connection: close\r\n" } else { "" };
    format!("{method} /c/{i} HTTP/1.1\r\nHost: h{i}.example\r\n{close}\r\n")
}

/// Each worker's memory: pid -> (RssAnon kB, Lua heap kB after a full collection),
/// the latter from `/lua_heap` when `lua_port` serves it.
fn worker_memory(n: &Nginx, lua_port: Option<u16>) -> BTreeMap<u32, (u64, u64)> {
    let mut heap: BTreeMap<u32, u64> = BTreeMap::new();
    if let Some(port) = lua_port {
        for _ in 0..400 {
            let said = get(port, "/lua_heap").text();
            let mut it = said.split_whitespace();
            let pid: u32 = it.next().unwrap().parse().unwrap();
            let kb: f64 = it.next().unwrap().parse().unwrap();
            heap.insert(pid, kb as u64);
            if heap.len() == 2 {
                break;
            }
        }
        assert_eq!(heap.len(), 2, "{heap:?}");
    }
    n.worker_pids()
        .into_iter()
        .map(|pid| {
            (
                pid,
                (memory_kb(pid).1, heap.get(&pid).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Growth of every worker between two readings; the same workers must answer both.
fn growth(
    before: &BTreeMap<u32, (u64, u64)>,
    after: &BTreeMap<u32, (u64, u64)>,
) -> Vec<(u32, i64, i64)> {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "a worker was replaced"
    );
    before
        .iter()
        .map(|(pid, (anon, lua))| {
            let (anon2, lua2) = after[pid];
            (*pid, anon2 as i64 - *anon as i64, lua2 as i64 - *lua as i64)
        })
        .collect()
}

/// `ngxprom.log` fed with what the client chooses (Host, path, method: 70,000 distinct
/// values of each): the series stay at `max_series` plus the overflow series, every
/// request is counted, and after a warm-up of 20,000 requests no worker's anonymous
/// memory or Lua heap grows over the next 50,000 (the label cache is bounded).
#[test]
fn label_values_a_client_chooses_leave_worker_memory_flat_and_series_bounded() {
    let (app, metrics) = (free_port(), free_port());
    let http = format!(
        r#"
    prometheus_zone metrics 16m;
    init_by_lua_block {{
        http_metrics = require("ngxprom.log").new(require("ngxprom").zone("metrics"), {{
            labels = {{ "host", "path", "method" }}, max_series = 500, cache = 200,
        }})
    }}
    server {{
        listen 127.0.0.1:{app};
        location / {{
            return 200 "ok\n";
            log_by_lua_block {{
                http_metrics:log(ngx.var.host, ngx.var.uri, ngx.req.get_method())
            }}
        }}
        location = /lua_heap {{
            content_by_lua_block {{
                collectgarbage()
                collectgarbage()
                ngx.say(ngx.worker.pid(), " ", collectgarbage("count"))
            }}
        }}
    }}
    server {{
        listen 127.0.0.1:{metrics};
        location = /metrics {{ prometheus_metrics metrics; }}
    }}
"#
    );
    let n = Nginx::start("fio-client-labels", &http);
    let t = std::time::Instant::now();
    let warm = blast(app, 0..20_000, chosen_by_client);
    assert_eq!(warm.get(&200), Some(&20_000), "{warm:?}");
    let before = worker_memory(&n, Some(app));
    let more = blast(app, 20_000..70_000, chosen_by_client);
    assert_eq!(more.get(&200), Some(&50_000), "{more:?}");
    let after = worker_memory(&n, Some(app));
    let grown = growth(&before, &after);
    eprintln!("{before:?} -> {after:?}: {grown:?} in {:?}", t.elapsed());
    for (pid, anon_kb, lua_kb) in grown {
        assert!(
            anon_kb < 4096,
            "worker {pid}: anonymous memory grew {anon_kb} kB"
        );
        assert!(lua_kb < 2048, "worker {pid}: Lua heap grew {lua_kb} kB");
    }
    let (_, s) = scrape(metrics, "/metrics");
    let series: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "nginx_http_requests_total")
        .collect();
    assert_eq!(series.len(), 501, "max_series and the overflow series");
    assert_eq!(series.iter().map(|x| x.value).sum::<f64>(), 70_000.0);
    let refused = s
        .iter()
        .find(|x| {
            x.name == "nginx_metric_errors_total"
                && x.labels.get("reason").map(String::as_str) == Some("series_limit")
        })
        .map_or(0.0, |x| x.value);
    assert!(refused > 0.0);
    assert!(n.crashes().is_empty());
}

/// [`chosen_by_client`], one request in ten to the gateway's route `/known`.
fn chosen_by_client_of_gateway(i: usize, last: bool) -> String {
    let r = chosen_by_client(i, last);
    if i % 10 == 0 {
        r.replacen(" /c/", " /known/c", 1)
    } else {
        r
    }
}

/// The gateway labels series with what its configuration names (service, route,
/// consumer) and the status, never with what a client sends: 70,000 distinct Hosts,
/// paths and methods make exactly two series, count every request, and leave no
/// worker's anonymous memory larger after the warm-up.
#[test]
fn the_gateway_labels_nothing_a_client_chooses_and_its_memory_stays_flat() {
    let g = start_gateway("fio-gateway-client-labels", &[]);
    created(admin(
        g.admin,
        "POST",
        "/services",
        Some(json!({ "name": "known", "url": format!("http://127.0.0.1:{}", g.upstream) })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/services/known/routes",
        Some(json!({ "name": "known", "paths": ["/known"] })),
    ));
    created(admin(
        g.admin,
        "POST",
        "/plugins",
        Some(
            json!({ "name": "prometheus", "config": { "status_code_metrics": true, "latency_metrics": true,
                "bandwidth_metrics": true } }),
        ),
    ));
    settle(&g);
    let warm = blast(g.proxy, 0..20_000, chosen_by_client_of_gateway);
    assert_eq!(warm.values().sum::<usize>(), 20_000, "{warm:?}");
    let before = worker_memory(&g.nginx, None);
    let more = blast(g.proxy, 20_000..70_000, chosen_by_client_of_gateway);
    let after = worker_memory(&g.nginx, None);
    assert_eq!(more.get(&200), Some(&5_000), "{more:?}");
    assert_eq!(more.get(&404), Some(&45_000), "{more:?}");
    let grown = growth(&before, &after);
    eprintln!("{before:?} -> {after:?}: {grown:?}");
    for (pid, anon_kb, _) in grown {
        assert!(
            anon_kb < 4096,
            "worker {pid}: anonymous memory grew {anon_kb} kB"
        );
    }
    let (_, s) = scrape(g.metrics, "/metrics");
    let series: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "gateway_http_requests_total")
        .collect();
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(count(&s, "known", "200", "service"), Some(7_000.0));
    let unrouted = value(
        &s,
        "gateway_http_requests_total",
        &[
            ("service", ""),
            ("route", ""),
            ("code", "404"),
            ("source", "gateway"),
            ("consumer", ""),
        ],
    );
    assert_eq!(unrouted, Some(63_000.0));
    assert!(g.nginx.crashes().is_empty());
}
