//! What every soak load shares: the gateway's ports, the stop flag, the tally of what
//! the proxy answered (the counts the scrapes must end up with), and an HTTP/1.1
//! client that keeps its connection alive and reads exactly the bytes nginx sends.

use crate::harness::{self, admin};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `gateway_http_requests_total`'s labels: service, route, code, source, consumer.
pub type Labels = [String; 5];

/// What the proxy answered, as the global `prometheus` plugin must count it.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Counts {
    /// Requests by `gateway_http_requests_total` labels.
    pub requests: BTreeMap<Labels, u64>,
    /// Bytes by (service, route, direction, consumer): `ingress` what the client sent
    /// (nginx's `$request_length`), `egress` what it read (`$bytes_sent`).
    pub bandwidth: BTreeMap<[String; 4], u64>,
}

impl Counts {
    /// Requests by (service, route), every code and consumer: each request's latency
    /// is observed once in `gateway_request_latency_seconds`.
    pub fn latency_counts(&self) -> BTreeMap<[String; 2], u64> {
        let mut out = BTreeMap::new();
        for (l, n) in &self.requests {
            *out.entry([l[0].clone(), l[1].clone()]).or_insert(0) += n;
        }
        out
    }
}

pub struct Ctx {
    pub proxy: u16,
    pub admin: u16,
    pub metrics: u16,
    /// The soak's own server in the gateway's nginx (the loads' `nginx` snippets):
    /// upstream answers of every status, and the Lua API's churn.
    pub soak: u16,
    /// A port nothing listens on (an upstream that refuses connections).
    pub closed: u16,
    stop: AtomicBool,
    counts: Mutex<Counts>,
    /// Requests answered by the proxy, all loads together.
    pub answered: AtomicU64,
    /// What went wrong in a load, for the end (a load never panics mid-soak: the
    /// others would carry on blind).
    failures: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn new(proxy: u16, admin: u16, metrics: u16, soak: u16, closed: u16) -> Ctx {
        Ctx {
            proxy,
            admin,
            metrics,
            soak,
            closed,
            stop: AtomicBool::new(false),
            counts: Mutex::new(Counts::default()),
            answered: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed)
    }

    /// Records one answer of the proxy: its labels, the request's and the answer's
    /// bytes on the wire.
    pub fn answered(&self, labels: [&str; 5], sent: usize, read: usize) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let mut c = self.counts.lock().unwrap();
        *c.requests.entry(labels.map(str::to_string)).or_insert(0) += 1;
        let [service, route, _, _, consumer] = labels;
        for (direction, n) in [("ingress", sent), ("egress", read)] {
            *c.bandwidth
                .entry([service, route, direction, consumer].map(str::to_string))
                .or_insert(0) += n as u64;
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    /// Notes a failure (kept to the first 50: the rest says nothing new).
    pub fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 50 {
            f.push(what);
        }
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// An Admin call that must succeed (2xx); a failure is noted, and returns None.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Option<serde_json::Value> {
        let (status, v) = admin(self.admin, method, path, body);
        if (200..300).contains(&status) {
            Some(v)
        } else {
            self.fail(format!("Admin {method} {path}: {status} {v}"));
            None
        }
    }
}

/// Runs `step` about `per_second` times a second until the soak stops (no catching
/// up after a stall: a loaded machine slows the loads, it does not burst them).
pub fn paced(ctx: &Ctx, per_second: f64, mut step: impl FnMut(u64)) -> u64 {
    let every = Duration::from_secs_f64(1.0 / per_second);
    let mut n = 0;
    let mut next = Instant::now();
    while !ctx.stopped() {
        step(n);
        n += 1;
        next += every;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        // In short naps: a slow load (a burst every 10 s) stops with the others.
        while !ctx.stopped() && Instant::now() < next {
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
    }
    n
}

/// One answer: status, the body, and how many bytes the response took on the wire.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub wire: usize,
}

/// An HTTP client over one connection: HTTP/1.1 with keep-alive (reconnecting when
/// nginx ends the connection, `keepalive_requests`), or HTTP/1.0, one connection per
/// request. It reads exactly the response (Content-Length, chunked, or to the close).
pub struct Client {
    port: u16,
    keep_alive: bool,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(port: u16, keep_alive: bool) -> Client {
        Client {
            port,
            keep_alive,
            conn: None,
            buf: Vec::new(),
        }
    }

    /// A GET with extra headers; returns the answer and the request's size. An error
    /// is a request nginx did not answer: the soak's finding.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<(Answer, usize), String> {
        let mut req = format!(
            "GET {path} HTTP/1.{}\r\nHost: localhost\r\n",
            u8::from(self.keep_alive)
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let fresh = self.conn.is_none();
        if fresh {
            let s = TcpStream::connect(("127.0.0.1", self.port))
                .map_err(|e| format!("connect to {}: {e}", self.port))?;
            // Long: a loaded machine is slow, never this slow; no answer is a failure.
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            s.set_nodelay(true).unwrap();
            self.conn = Some(s);
            self.buf.clear();
        }
        let res = self.exchange(req.as_bytes());
        match res {
            Ok((answer, close)) => {
                if close || !self.keep_alive {
                    self.conn = None;
                }
                Ok((answer, req.len()))
            }
            Err(e) => {
                self.conn = None;
                Err(format!("GET {path}: {e}"))
            }
        }
    }

    fn exchange(&mut self, req: &[u8]) -> Result<(Answer, bool), String> {
        let s = self.conn.as_mut().unwrap();
        s.write_all(req).map_err(|e| format!("write: {e}"))?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !fill(s, &mut self.buf)? {
                return Err(format!(
                    "closed before a whole head ({} bytes)",
                    self.buf.len()
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line: {head}"))?;
        let header = |name: &str| {
            head.split("\r\n")
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let close = !self.keep_alive || header("connection") == Some("close");
        let mut at = head_end;
        let mut body = Vec::new();
        if let Some(n) = header("content-length") {
            let n: usize = n.parse().map_err(|_| format!("content-length {n}"))?;
            while self.buf.len() < at + n {
                if !fill(s, &mut self.buf)? {
                    return Err("closed inside the body".into());
                }
            }
            body.extend_from_slice(&self.buf[at..at + n]);
            at += n;
        } else if header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf[at..].windows(2).position(|w| w == b"\r\n") {
                        break at + i;
                    }
                    if !fill(s, &mut self.buf)? {
                        return Err("closed inside a chunk size".into());
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[at..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| format!("chunk size {size_text:?}"))?;
                let data_at = line_end + 2;
                // The data and its CRLF (the last chunk: no data, then the final CRLF).
                while self.buf.len() < data_at + size + 2 {
                    if !fill(s, &mut self.buf)? {
                        return Err("closed inside a chunk".into());
                    }
                }
                body.extend_from_slice(&self.buf[data_at..data_at + size]);
                at = data_at + size + 2;
                if size == 0 {
                    break;
                }
            }
        } else if status == 204 || status == 304 {
        } else {
            // No length: the body ends when nginx closes.
            while fill(s, &mut self.buf)? {}
            body.extend_from_slice(&self.buf[at..]);
            at = self.buf.len();
        }
        if close {
            // Whatever else nginx sends before it closes is part of what it sent.
            while fill(s, &mut self.buf).unwrap_or(false) {}
            at = self.buf.len();
        }
        self.buf.drain(..at);
        Ok((
            Answer {
                status,
                body,
                wire: at,
            },
            close,
        ))
    }
}

/// Reads more into `buf`; false at the end of the stream.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut chunk = [0u8; 16384];
    match s.read(&mut chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(false),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// A scrape of the metrics port as JSON (`?format=json` plus `query`), parsed. A
/// `503` with `Retry-After` (the worker holds `prometheus_max_renders` scrapes: see
/// the bursts) is asked again.
pub fn scrape_json(ctx: &Ctx, query: &str) -> Result<serde_json::Value, String> {
    let path = format!("/metrics?format=json{query}");
    let mut r = harness::get(ctx.metrics, &path);
    for _ in 0..50 {
        if r.status != 503 || r.header("retry-after").is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        r = harness::get(ctx.metrics, &path);
    }
    if r.status != 200 {
        return Err(format!("scrape {query}: {} {}", r.status, r.text()));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("scrape {query}: not JSON: {e}"))
}

/// The series of family `name` in a JSON scrape: (labels, value).
pub fn series(
    scrape: &serde_json::Value,
    name: &str,
) -> Vec<(BTreeMap<String, String>, serde_json::Value)> {
    let Some(families) = scrape["families"].as_array() else {
        return vec![];
    };
    families
        .iter()
        .filter(|f| f["name"] == name)
        .flat_map(|f| f["series"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            let labels = s["labels"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (labels, s)
        })
        .collect()
}
