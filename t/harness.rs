//! Test harness: real nginx processes in temporary prefixes, a minimal HTTP client
//! (with a choice of source address), the reference Python parser and promtool.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The nginx under test and what goes with it, from `scripts/nginx-env.sh` (one rule
/// for the Makefile, scripts and tests): `NGINX_BIN=<binary>` picks it, default Debian's.
pub struct Build {
    /// The binary every test runs.
    pub nginx: PathBuf,
    /// The version `nginx -v` reports.
    pub version: String,
    /// The `load_module` lines the lua module needs first (empty when compiled in).
    pub load_lua: String,
    /// The module built against this nginx's tree.
    pub module: PathBuf,
    /// The same module with the failure-injection hooks (`debug-hooks`) the shipped one
    /// leaves out.
    pub hooks_module: PathBuf,
    pub description: String,
}

pub fn build() -> &'static Build {
    static BUILD: std::sync::OnceLock<Build> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        let out = Command::new(root().join("scripts/nginx-env.sh"))
            .output()
            .expect("scripts/nginx-env.sh runs");
        assert!(
            out.status.success(),
            "scripts/nginx-env.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("scripts/nginx-env.sh printed no {key}"))
                .to_string()
        };
        let b = Build {
            nginx: get("NGINX_BIN").into(),
            version: get("NGINX_VERSION"),
            load_lua: get("LOAD_LUA"),
            module: get("MODULE").into(),
            hooks_module: get("HOOKS_MODULE").into(),
            description: get("DESCRIPTION"),
        };
        assert!(
            b.module.exists(),
            "{} missing: run `make build` (NGINX_BIN={}) first",
            b.module.display(),
            b.nginx.display()
        );
        eprintln!("harness: {}", b.description);
        b
    })
}

/// A command running the nginx under test.
pub fn nginx_command() -> Command {
    Command::new(&build().nginx)
}

/// A port nobody listens on right now, never handed out before in this process.
///
/// Ports come from below the kernel's ephemeral range: `bind(":0")` and outgoing
/// connections only take ports from inside it, so a port chosen here cannot be
/// handed to a parallel test's `bind(":0")` (CI once saw the same port twice, and an
/// app server block answered the metrics port's request) or to a client's socket
/// in the gap before nginx binds it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000u32, ephemeral_start().clamp(10_500, 32_768));
    let span = high - low;
    // Test binaries run one after another; starting each at a different offset
    // keeps a previous binary's lingering listeners out of the way.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + step) % span) as u16;
        let bindable = |ip: &str| TcpListener::bind((ip, port)).is_ok();
        if bindable("0.0.0.0") && bindable("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The first port of `net.ipv4.ip_local_port_range` (32768 if unreadable).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

static PREFIX_SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Nginx {
    pub prefix: PathBuf,
    pub conf: String,
}

/// The common top of every test configuration; `http` is the body of `http {}`.
pub fn config(prefix: &Path, http: &str) -> String {
    let user = if unsafe_is_root() {
        "user nobody nogroup;"
    } else {
        ""
    };
    format!(
        r#"{load_lua}
load_module {prefix}/lib/ngx_prometheus.so;
{user}
worker_processes 2;
error_log {prefix}/logs/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    lua_package_path "{root}/lua/?.lua;;";
    lua_package_cpath "{prefix}/lib/?.so;;";
{http}
}}
"#,
        prefix = prefix.display(),
        root = root().display(),
        load_lua = build().load_lua,
    )
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Makes a fresh prefix (mode 755: workers run as nobody) with the module copied in.
pub fn prefix(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "ngxprom-{name}-{}-{}",
        std::process::id(),
        PREFIX_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&p);
    for d in ["logs", "lib", "tmp"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    std::fs::copy(&build().module, p.join("lib/ngx_prometheus.so")).unwrap();
    std::fs::create_dir_all(p.join("state")).unwrap();
    Command::new("chmod")
        .args(["-R", "755"])
        .arg(&p)
        .status()
        .unwrap();
    // The gateway's workers (nobody, when tests run as root) write their state here.
    if unsafe_is_root() {
        Command::new("chown")
            .arg("nobody:nogroup")
            .arg(p.join("state"))
            .status()
            .unwrap();
    }
    p
}

/// `nginx -t` on a configuration: Ok(stderr) or Err(stderr).
pub fn nginx_t(name: &str, http: &str) -> Result<String, String> {
    let p = prefix(name);
    let conf = config(&p, http);
    std::fs::write(p.join("nginx.conf"), &conf).unwrap();
    let out = nginx_command()
        .arg("-t")
        .arg("-p")
        .arg(&p)
        .arg("-c")
        .arg(p.join("nginx.conf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&p);
    if out.status.success() {
        Ok(err)
    } else {
        Err(err)
    }
}

impl Nginx {
    pub fn start(name: &str, http: &str) -> Nginx {
        let prefix = prefix(name);
        let conf = config(&prefix, http);
        Self::start_with(prefix, conf)
    }

    /// As [`Nginx::start`], with the module built with the `debug-hooks` feature.
    pub fn start_with_debug_hooks(name: &str, http: &str) -> Nginx {
        let module = &build().hooks_module;
        assert!(
            module.exists(),
            "{} missing: run `make build-test` first",
            module.display()
        );
        let prefix = prefix(name);
        std::fs::copy(module, prefix.join("lib/ngx_prometheus.so")).unwrap();
        let conf = config(&prefix, http);
        Self::start_with(prefix, conf)
    }

    pub fn start_with(prefix: PathBuf, conf: String) -> Nginx {
        std::fs::write(prefix.join("nginx.conf"), &conf).unwrap();
        let n = Nginx { prefix, conf };
        let out = n.nginx(&[]);
        assert!(
            out.status.success(),
            "nginx failed to start:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            n.error_log()
        );
        n.wait_workers(2);
        n
    }

    fn nginx(&self, extra: &[&str]) -> std::process::Output {
        nginx_command()
            .arg("-p")
            .arg(&self.prefix)
            .arg("-c")
            .arg(self.prefix.join("nginx.conf"))
            .args(extra)
            .output()
            .unwrap()
    }

    pub fn master_pid(&self) -> u32 {
        wait_for(
            Duration::from_secs(5),
            || {
                std::fs::read_to_string(self.prefix.join("nginx.pid"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            },
            || "no pid file".into(),
        )
    }

    /// Worker pids: children of the master that are not cache processes.
    pub fn worker_pids(&self) -> Vec<u32> {
        let master = self.master_pid();
        let out = Command::new("pgrep")
            .arg("-P")
            .arg(master.to_string())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|pid: &u32| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.contains("worker process") && !c.contains("shutting down"))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Kills worker `pid` with SIGKILL and waits until the master has replaced it
    /// (2 workers again, none of them `pid`).
    pub fn kill_worker(&self, pid: u32) {
        signal(pid, "KILL");
        self.wait_replaced(pid);
    }

    /// Waits until the master has replaced worker `pid` (2 workers again, none of them
    /// `pid`), however it died.
    pub fn wait_replaced(&self, pid: u32) {
        wait_for(
            Duration::from_secs(20),
            || {
                let w = self.worker_pids();
                (w.len() == 2 && !w.contains(&pid)).then_some(())
            },
            || format!("worker {pid} was not replaced"),
        )
    }

    /// Waits until one of the workers `before` has died (a fault killed it) and the
    /// master has replaced it; returns its pid.
    pub fn wait_one_died(&self, before: &[u32]) -> u32 {
        let dead = wait_for(
            Duration::from_secs(20),
            || before.iter().copied().find(|p| !alive(*p)),
            || format!("none of {before:?} died"),
        );
        self.wait_replaced(dead);
        dead
    }

    /// Error-log lines at `[error]` or worse but for the master's notes of workers
    /// killed by a signal the test sent or placed (`exited on signal 9`).
    pub fn errors_but_kills(&self) -> Vec<String> {
        self.errors()
            .into_iter()
            .filter(|l| !l.contains("exited on signal 9"))
            .collect()
    }

    pub fn wait_workers(&self, n: usize) {
        wait_for(
            Duration::from_secs(10),
            || (self.worker_pids().len() >= n).then_some(()),
            || format!("workers did not start:\n{}", self.error_log()),
        )
    }

    /// `nginx -s reload`, returning once the old workers are gone and new ones run.
    pub fn reload(&self) {
        self.reload_to(2);
    }

    /// The configuration in the prefix, its two workers made one, then reloaded.
    pub fn reload_with_one_worker(&self) {
        let path = self.prefix.join("nginx.conf");
        let conf = std::fs::read_to_string(&path).unwrap();
        assert!(conf.contains("worker_processes 2;"), "{conf}");
        std::fs::write(
            &path,
            conf.replace("worker_processes 2;", "worker_processes 1;"),
        )
        .unwrap();
        self.reload_to(1);
    }

    /// `nginx -s reload` of a configuration that runs `workers` worker processes.
    pub fn reload_to(&self, workers: usize) {
        let before = self.worker_pids();
        let out = self.nginx(&["-s", "reload"]);
        assert!(
            out.status.success(),
            "reload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(
            Duration::from_secs(15),
            || {
                let now = self.worker_pids();
                let alive_old = before
                    .iter()
                    .any(|p| Path::new(&format!("/proc/{p}")).exists());
                (now.len() >= workers && now.iter().all(|p| !before.contains(p)) && !alive_old)
                    .then_some(())
            },
            || format!("reload did not finish:\n{}", self.error_log()),
        )
    }

    /// Stops nginx (graceful) and waits for every process to exit; the prefix stays.
    pub fn stop(&self) {
        let pid = self.master_pid();
        let _ = self.nginx(&["-s", "quit"]);
        wait_for(
            Duration::from_secs(10),
            || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
            || "nginx did not stop".into(),
        );
        let _ = std::fs::remove_file(self.prefix.join("nginx.pid"));
    }

    /// Starts nginx again on the same prefix and configuration.
    pub fn start_again(&self) {
        let out = self.nginx(&[]);
        assert!(
            out.status.success(),
            "nginx failed to start again:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_workers(2);
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }

    /// Lines of the error log at `[error]` or worse, and worker crashes.
    pub fn errors(&self) -> Vec<String> {
        self.error_log()
            .lines()
            .filter(|l| {
                l.contains("[error]")
                    || l.contains("[alert]")
                    || l.contains("[crit]")
                    || l.contains("[emerg]")
            })
            .map(str::to_string)
            .collect()
    }

    pub fn crashes(&self) -> Vec<String> {
        self.error_log()
            .lines()
            .filter(|l| l.contains("exited on signal"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(s) = std::fs::read_to_string(self.prefix.join("nginx.pid")) {
            if let Ok(pid) = s.trim().parse::<i32>() {
                let _ = Command::new("kill")
                    .arg("-QUIT")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
                // At most 5 s for a graceful exit; killed after that.
                poll(Duration::from_secs(5), Duration::from_millis(20), || {
                    (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
                });
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- error.log of {} ---\n{}",
                self.prefix.display(),
                self.error_log()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.prefix);
        }
    }
}

/// Sends `SIG<name>` to `pid` (`kill -<name> pid`).
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Waits (20 s at most) until process `pid` is gone.
pub fn wait_gone(pid: u32) {
    wait_for(
        Duration::from_secs(20),
        || (!alive(pid)).then_some(()),
        || format!("process {pid} still runs"),
    )
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One HTTP/1.0 request (the server closes, no chunking), from `from` if given.
pub fn request_from(
    from: Option<IpAddr>,
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> Response {
    request_full(from, port, method, path, &[], body)
}

/// One HTTP/1.0 request with extra headers (`Content-Type`, `Host`, ...).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request_full(None, port, method, path, headers, body)
}

/// A connection to 127.0.0.1:`port`, from `from` when given, with a 30 s read timeout.
fn connect(from: Option<IpAddr>, port: u16) -> TcpStream {
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let stream: TcpStream = match from {
        None => TcpStream::connect(to).unwrap(),
        Some(ip) => {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(ip, 0).into()).unwrap();
            s.connect(&to.into()).unwrap();
            s.into()
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

pub fn request_full(
    from: Option<IpAddr>,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    parse_response(&exchange_from(from, port, &bytes))
}

/// Sends `bytes` as they are, in one write, to 127.0.0.1:`port` (from `from` when
/// given) and returns all the server sends until it closes (30 s read timeout). Every
/// request of the suites goes through here: `request` and `pipelined` build theirs, and
/// a test that needs bytes `request` cannot write (malformed, smuggled or not UTF-8)
/// passes them itself, to `exchange`.
pub fn exchange_from(from: Option<IpAddr>, port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect(from, port);
    stream.write_all(bytes).unwrap();
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A reset after the answer (nginx closing with unread bytes) still leaves the
        // answer; without one the test has nothing to look at.
        assert!(!raw.is_empty(), "no answer from port {port}: {e}");
    }
    raw
}

/// [`exchange_from`] from the default source address.
pub fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    exchange_from(None, port, bytes)
}

/// Sends `bytes` to 127.0.0.1:`port` and hangs up without reading the answer: a client
/// that goes away.
pub fn send_and_hang_up(port: u16, bytes: &[u8]) {
    connect(None, port).write_all(bytes).unwrap();
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Sends `requests` (method, path, body) back to back on one HTTP/1.1 connection, the
/// last with `Connection: close`, from `from`; returns the responses in order, each
/// body cut by its Content-Length (none for HEAD), and the bytes after the last one.
pub fn pipelined(
    from: Option<IpAddr>,
    port: u16,
    requests: &[(&str, &str, &[u8])],
) -> (Vec<Response>, Vec<u8>) {
    let mut out = Vec::new();
    for (i, (method, path, body)) in requests.iter().enumerate() {
        let close = if i + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        out.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{close}Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body);
    }
    // One write: nginx finds the later requests already buffered (r->pipeline).
    let raw = exchange_from(from, port, &out);
    let mut responses = Vec::new();
    let mut rest = &raw[..];
    for (method, _, _) in requests {
        let Some(split) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        if !rest.starts_with(b"HTTP/1.") {
            break; // not an answer: what is left is returned as such
        }
        let head = parse_response(&rest[..split + 4]);
        let len = match head.header("content-length") {
            Some(_) if *method == "HEAD" => 0,
            Some(n) => n.parse().unwrap(),
            None => 0,
        };
        let end = (split + 4 + len).min(rest.len());
        responses.push(Response {
            body: rest[split + 4..end].to_vec(),
            ..head
        });
        rest = &rest[end..];
    }
    (responses, rest.to_vec())
}

/// What a test's own HTTP server reads of a request: bytes up to the end of its head
/// (the blank line), or what came before the client closed or the read failed.
/// [`head_is_whole`] tells the two apart.
pub fn read_request_head(conn: &mut impl Read) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head_is_whole(&head) {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// Whether `head` holds a request head's end (the blank line).
pub fn head_is_whole(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

pub fn get(port: u16, path: &str) -> Response {
    request_from(None, port, "GET", path, b"")
}

pub fn post(port: u16, path: &str, body: &[u8]) -> Response {
    request_from(None, port, "POST", path, body)
}

/// Percent-encodes every byte outside unreserved characters.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A sample as the reference parser (Python prometheus_client) reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs `program args` with `input` on its standard input; returns what it did.
pub fn pipe_through(program: &str, args: &[&str], input: impl AsRef<[u8]>) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_ref())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Parses exposition text with `prometheus_client.parser`; panics if it refuses it.
pub fn parse_with_reference(text: &str) -> Vec<Sample> {
    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value if s.value == s.value else "NaN"])
json.dump(out, sys.stdout)
"#;
    let out = pipe_through("python3", &["-c", script], text);
    assert!(
        out.status.success(),
        "reference parser refused the text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            name: s[0].as_str().unwrap().to_string(),
            labels: s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            value: s[2].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

/// `promtool check metrics`: Ok(()) or the complaints.
pub fn promtool_check(text: &str) -> Result<(), String> {
    // promtool comes with the Debian package prometheus.
    let out = pipe_through("promtool", &["check", "metrics"], text);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The value of one sample: `name` with exactly `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The zone `metrics`' refusals for `reason` (`nginx_metric_errors_total`), 0 when none.
pub fn zone_errors(samples: &[Sample], reason: &str) -> f64 {
    value(
        samples,
        "nginx_metric_errors_total",
        &[("zone", "metrics"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// Scrapes and parses without promtool's lint: for Kong's family names, which break
/// Prometheus naming conventions on purpose (`kong_latency_ms`, counters without `_total`).
pub fn scrape_unlinted(port: u16, path: &str) -> (String, Vec<Sample>) {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let samples = parse_with_reference(&text);
    (text, samples)
}

/// Scrapes `path` on `port`, checks status, content type and promtool, and parses.
pub fn scrape(port: u16, path: &str) -> (String, Vec<Sample>) {
    let r = get(port, path);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}\n{text}"));
    let samples = parse_with_reference(&text);
    (text, samples)
}

/// Polls `f` every `every` until it returns Some, or None once `timeout` has passed.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `f` (every 100 ms) until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll(timeout, Duration::from_millis(100), f)
}

/// Polls `f` (every 20 ms: what the harness waits for is near) until it returns Some;
/// after `timeout`, fails the test saying `what()`.
pub fn wait_for<T>(
    timeout: Duration,
    f: impl FnMut() -> Option<T>,
    what: impl FnOnce() -> String,
) -> T {
    poll(timeout, Duration::from_millis(20), f).unwrap_or_else(|| panic!("{}", what()))
}

/// The gateway of `conf/gateway.conf`, rendered for a test.
pub struct Gateway {
    pub nginx: Nginx,
    pub proxy: u16,
    pub admin: u16,
    pub metrics: u16,
    pub upstream: u16,
}

/// Renders a template of `conf/` with `scripts/render-conf.sh` (what `make run` and
/// the benchmarks use), for the nginx under test, into `prefix`: the common
/// placeholders (module, paths, worker user) plus `vars`, which win. Returns the
/// configuration; every placeholder must be set.
pub fn render_template(template: &str, prefix: &Path, vars: &[(&str, String)]) -> String {
    let out = Command::new(root().join("scripts/render-conf.sh"))
        .arg(template)
        .arg(prefix)
        .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
        .env("NGINX_BIN", &build().nginx)
        .output()
        .expect("scripts/render-conf.sh runs");
    assert!(
        out.status.success(),
        "scripts/render-conf.sh {template}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = std::fs::read_to_string(prefix.join("nginx.conf")).unwrap();
    let left = conf
        .split('@')
        .skip(1)
        .step_by(2)
        .find(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    assert!(
        left.is_none(),
        "{template}: @{}@ is left unset",
        left.unwrap_or("")
    );
    conf
}

/// A loopback UDP port that takes DNS queries and never answers (a socket this
/// process keeps and never reads): a name in a test's configuration is asked there and
/// times out, quietly. (A port where nothing listens would refuse each query, and
/// nginx logs every refusal as an error.)
pub fn silent_resolver() -> String {
    static SINK: std::sync::OnceLock<std::net::UdpSocket> = std::sync::OnceLock::new();
    let sink = SINK.get_or_init(|| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    sink.local_addr().unwrap().to_string()
}

/// Renders `conf/gateway.conf` with free ports; `vars` override placeholders (for
/// example `("DECLARATIVE", "/path/kong.json")`).
pub fn render_gateway(prefix: &Path, vars: &[(&str, String)]) -> (String, [u16; 4]) {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let mut v: Vec<(&str, String)> = vec![
        ("PROXY_PORT", ports[0].to_string()),
        ("ADMIN_PORT", ports[1].to_string()),
        ("METRICS_PORT", ports[2].to_string()),
        ("UPSTREAM_PORT", ports[3].to_string()),
        ("DECLARATIVE", String::new()),
        // Tests start from an empty configuration, not the demo's seed.
        ("SEED", String::new()),
        // No test asks the machine's resolver (t/dns.rs runs one of its own). The names
        // tests give services and targets are never answered there: a short try keeps
        // a worker's exit from waiting out unanswered queries at every stop.
        ("DNS_RESOLVER", silent_resolver()),
        ("DNS_TIMEOUT", "100".to_string()),
        // scripts/run.sh's metrics knobs, off.
        ("METRICS_HTTP", String::new()),
        ("METRICS_SERVER", String::new()),
        ("METRICS_SSL", String::new()),
    ];
    for (k, val) in vars {
        v.retain(|(key, _)| key != k);
        v.push((k, val.clone()));
    }
    (render_template("conf/gateway.conf", prefix, &v), ports)
}

pub fn start_gateway(name: &str, vars: &[(&str, String)]) -> Gateway {
    let prefix = prefix(name);
    let (conf, [proxy, admin, metrics, upstream]) = render_gateway(&prefix, vars);
    let nginx = Nginx::start_with(prefix, conf);
    Gateway {
        nginx,
        proxy,
        admin,
        metrics,
        upstream,
    }
}

/// Waits until every worker of `g` runs the newest configuration: the version the
/// Admin API announces (`X-Gateway-Config-Version`; an entity read installs the newest
/// first) is the one each worker's `GET /` reports from its own snapshot, so traffic
/// sent next meets the change in whichever worker takes it.
pub fn settle(g: &Gateway) {
    let version = |r: &Response| -> u64 {
        r.header("x-gateway-config-version")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Gateway-Config-Version: {} {}", r.status, r.text()))
    };
    let newest = version(&get(g.admin, "/services?size=1"));
    let workers = g.nginx.worker_pids();
    let mut current = std::collections::BTreeSet::new();
    let done = eventually(Duration::from_secs(30), || {
        // Several connections at once, so that every worker answers some.
        let answers: Vec<Response> = (0..4)
            .map(|_| {
                std::thread::spawn({
                    let port = g.admin;
                    move || get(port, "/")
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for r in &answers {
            let pid: u32 = r
                .header("x-gateway-worker")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if version(r) >= newest {
                current.insert(pid);
            }
        }
        workers.iter().all(|w| current.contains(w)).then_some(())
    });
    assert!(
        done.is_some(),
        "workers {workers:?} never all ran configuration version {newest} (only {current:?})"
    );
}

/// An Admin API answer's body: its JSON, the text itself if it is not JSON, Null if empty.
pub fn body_of(r: &Response) -> serde_json::Value {
    if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or_else(|_| serde_json::Value::String(r.text()))
    }
}

/// The body of an Admin answer (from `admin`) that must be `201 Created`.
pub fn created(r: (u16, serde_json::Value)) -> serde_json::Value {
    assert_eq!(r.0, 201, "{}", r.1);
    r.1
}

/// Unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// This machine's host name, as nginx's workers read it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// An nginx serving an application on `app` and its metrics on `metrics` (free ports),
/// with the `http {}` body a suite renders for the two ports.
pub struct App {
    pub nginx: Nginx,
    pub app: u16,
    pub metrics: u16,
}

impl App {
    pub fn start(name: &str, http: impl FnOnce(u16, u16) -> String) -> App {
        App::start_with(name, http, Nginx::start)
    }

    /// The same, started by `start` (for example `Nginx::start_with_debug_hooks`).
    pub fn start_with(
        name: &str,
        http: impl FnOnce(u16, u16) -> String,
        start: fn(&str, &str) -> Nginx,
    ) -> App {
        let (app, metrics) = (free_port(), free_port());
        let nginx = start(name, &http(app, metrics));
        App {
            nginx,
            app,
            metrics,
        }
    }
}

/// A JSON request to the Admin API; returns status and parsed body (Null if empty).
pub fn admin(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let (headers, bytes): (Vec<(&str, &str)>, Vec<u8>) = match &body {
        Some(b) => (
            vec![("Content-Type", "application/json")],
            b.to_string().into_bytes(),
        ),
        None => (vec![], vec![]),
    };
    let r = request(port, method, path, &headers, &bytes);
    (r.status, body_of(&r))
}

/// A family as the reference OpenMetrics parser
/// (`prometheus_client.openmetrics.parser`) reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OmFamily {
    pub name: String,
    pub typ: String,
    pub unit: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// Parses OpenMetrics text with the reference parser, which checks `# EOF`, name
/// clashes, units, canonical `+Inf`, histogram consistency and counter-like values;
/// panics if it refuses the text.
pub fn parse_openmetrics_with_reference(text: &str) -> Vec<OmFamily> {
    let script = r#"
import sys, json, math
from prometheus_client.openmetrics.parser import text_string_to_metric_families
def num(v):
    return v if math.isfinite(v) else str(v)
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    out.append([fam.name, fam.type, fam.unit, fam.documentation,
                [[s.name, s.labels, num(s.value)] for s in fam.samples]])
json.dump(out, sys.stdout)
"#;
    let out = pipe_through("python3", &["-c", script], text);
    assert!(
        out.status.success(),
        "reference OpenMetrics parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sample = |s: &serde_json::Value| Sample {
        name: s[0].as_str().unwrap().to_string(),
        labels: s[1]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        value: s[2].as_f64().unwrap_or_else(|| match s[2].as_str() {
            Some("inf") => f64::INFINITY,
            Some("-inf") => f64::NEG_INFINITY,
            _ => f64::NAN,
        }),
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| OmFamily {
            name: f[0].as_str().unwrap().to_string(),
            typ: f[1].as_str().unwrap().to_string(),
            unit: f[2].as_str().unwrap().to_string(),
            help: f[3].as_str().unwrap().to_string(),
            samples: f[4].as_array().unwrap().iter().map(sample).collect(),
        })
        .collect()
}

/// Every sample of parsed OpenMetrics families, in order.
pub fn om_samples(families: &[OmFamily]) -> Vec<Sample> {
    families.iter().flat_map(|f| f.samples.clone()).collect()
}

/// Decompresses a gzip body; panics if it is not one.
pub fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1, `localhost` and
/// `metrics.test`, made with the `openssl` command line in `dir/tls` (the one way the
/// suites make certificates). rustls, which the module pushes with, takes no
/// self-signed CA certificate as a server's, hence the two.
pub struct Ca {
    /// The CA's certificate (PEM): what a client trusts.
    pub cert: PathBuf,
    /// The server's certificate and key, for `ssl_certificate(_key)`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path) -> Ca {
        let dir = dir.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n\
             [dn]\nCN = ngx-prometheus test CA\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:metrics.test\n\
             basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
             authorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("the openssl command (scripts/setup.sh test installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut ca = vec!["req", "-x509", "-config", "ca.cnf", "-days", "2"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&ca);
        let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(&csr);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Ca {
            cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// A real Prometheus server (Debian package `prometheus`) in its own directory,
/// scraping every second with the `scrape_configs` given; killed on drop.
pub struct Prometheus {
    child: std::process::Child,
    pub dir: PathBuf,
    pub web: u16,
}

impl Prometheus {
    /// `scrape_configs` is the YAML list under `scrape_configs:` (indented two spaces).
    pub fn start(scrape_configs: &str) -> Prometheus {
        Prometheus::start_with(|_| {
            format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape_configs}")
        })
    }

    /// A server with the whole `prometheus.yml` that `config` writes, given the
    /// server's own directory (for files it names: discovery files, rules).
    pub fn start_with(config: impl FnOnce(&Path) -> String) -> Prometheus {
        Prometheus::start_with_flags(&[], config)
    }

    /// [`Prometheus::start_with`], with extra command-line flags
    /// (`--enable-feature=native-histograms`).
    pub fn start_with_flags(flags: &[&str], config: impl FnOnce(&Path) -> String) -> Prometheus {
        let dir = prefix("prometheus-server");
        let web = free_port();
        std::fs::write(dir.join("prometheus.yml"), config(&dir)).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package)");
        Prometheus { child, dir, web }
    }

    /// A GET on the HTTP API, parsed; None while the server is not up.
    pub fn api(&self, path: &str) -> Option<serde_json::Value> {
        let r = std::panic::catch_unwind(|| get(self.web, path)).ok()?;
        serde_json::from_slice(&r.body).ok()
    }

    /// The first value of an instant query.
    pub fn query(&self, q: &str) -> Option<f64> {
        let v = self.api(&format!("/api/v1/query?query={}", urlencode(q)))?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Log lines at warn or error level.
    pub fn warnings(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("level=warn") || l.contains("level=error"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request of a [`Load`]: which client sent it, its sequence number there, its
/// path, and the answer or why there was none (refused, reset, closed, cut short).
#[derive(Debug, Clone)]
pub struct Sent {
    pub client: usize,
    pub seq: usize,
    pub path: String,
    pub outcome: Result<Response, String>,
}

impl Sent {
    /// The worker that answered (its `X-Worker` header), if any did.
    pub fn worker(&self) -> Option<&str> {
        self.outcome.as_ref().ok()?.header("x-worker")
    }
}

/// Real HTTP clients putting load on a server while a test injects a fault: each of
/// `clients` threads sends GETs one after another, each on a new connection
/// (HTTP/1.0, so the kernel spreads them over the workers) 2 ms after the last, and
/// records every request's outcome without ever panicking, until stopped. A request gets 30 s to be
/// answered (a stopped worker's connections wait for it).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The workers (`X-Worker`) that answered so far.
    workers: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    threads: Vec<std::thread::JoinHandle<Vec<Sent>>>,
}

impl Load {
    /// Starts the clients; `path(client, seq)` is each request's path.
    pub fn start(port: u16, clients: usize, path: fn(usize, usize) -> String) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let threads = (0..clients)
            .map(|client| {
                let (stop, answered, workers) = (stop.clone(), answered.clone(), workers.clone());
                std::thread::spawn(move || {
                    let mut sent = Vec::new();
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let path = path(client, seq);
                        let outcome = try_get(port, &path);
                        if let Ok(r) = &outcome {
                            if let Some(w) = r.header("x-worker") {
                                workers.lock().unwrap().insert(w.to_string());
                            }
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        sent.push(Sent {
                            client,
                            seq,
                            path,
                            outcome,
                        });
                        seq += 1;
                        // Paced: load, not a flood (a few thousand requests a second
                        // at most, each a new series in some tests).
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    sent
                })
            })
            .collect();
        Load {
            stop,
            answered,
            workers,
            threads,
        }
    }

    /// The workers that answered so far (their pids, from `X-Worker`).
    pub fn workers(&self) -> std::collections::BTreeSet<u32> {
        let seen = self.workers.lock().unwrap();
        seen.iter().filter_map(|w| w.parse().ok()).collect()
    }

    /// Waits until every worker of `pids` has answered some request (60 s at most).
    pub fn wait_answered_by(&self, pids: &[u32]) {
        wait_for(
            Duration::from_secs(60),
            || {
                let seen = self.workers();
                pids.iter().all(|p| seen.contains(p)).then_some(())
            },
            || {
                let seen = self.workers();
                format!("workers {pids:?} never all answered (only {seen:?})")
            },
        )
    }

    /// Requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests than now have been answered (60 s at most).
    pub fn wait_more(&self, n: usize) {
        let want = self.answered() + n;
        wait_for(
            Duration::from_secs(60),
            || (self.answered() >= want).then_some(()),
            || format!("the load got {} answers of {want}", self.answered()),
        )
    }

    /// Stops the clients (each finishes its request in flight) and returns every
    /// request sent.
    pub fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

/// A GET on a connection of its own that never panics: the response, or why there was
/// none (connection refused or reset, closed without an answer, an answer cut short).
pub fn try_get(port: u16, path: &str) -> Result<Response, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e} after {} bytes", raw.len()))?;
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("closed after {} bytes, no whole head", raw.len()));
    };
    let r = parse_response(&raw);
    if let Some(len) = r.header("content-length") {
        if len.parse::<usize>().ok() != Some(raw.len() - split - 4) {
            return Err(format!(
                "body cut short: {} of {len} bytes",
                raw.len() - split - 4
            ));
        }
    }
    Ok(r)
}
