//! One push: a `PUT` of a body to the gateway (ureq, rustls for `https://`), bounded by
//! a single deadline, the reasons it fails, and how much of a gateway's answer reaches
//! the log, escaped.

use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ureq::http::{HeaderName, HeaderValue};
use ureq::tls::{RootCerts, TlsConfig};
use ureq::Agent;

use super::{check_header, Endpoint};

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The host name did not resolve to any address.
    Resolve(String),
    /// No resolved address accepted a connection.
    Connect(String),
    /// The deadline passed before the exchange completed.
    Timeout,
    /// Reading or writing the connection failed.
    Io(String),
    /// The TLS handshake failed (an untrusted or mismatched certificate, a peer that
    /// does not speak TLS, ...).
    Tls(String),
    /// The peer's answer was not an HTTP response.
    BadResponse(String),
    /// The Pushgateway answered with a non-2xx status; the text is the start of its
    /// body, escaped (see [`excerpt`]).
    Status(u16, String),
}

impl PushError {
    /// A short, fixed label value for a failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::Resolve(_) => "resolve",
            PushError::Connect(_) => "connect",
            PushError::Timeout => "timeout",
            PushError::Io(_) => "io",
            PushError::Tls(_) => "tls",
            PushError::BadResponse(_) => "bad_response",
            PushError::Status(..) => "http_status",
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Resolve(m) => write!(f, "cannot resolve pushgateway host: {m}"),
            PushError::Connect(m) => write!(f, "cannot connect to pushgateway: {m}"),
            PushError::Timeout => f.write_str("push timed out"),
            PushError::Io(m) => write!(f, "push I/O error: {m}"),
            PushError::Tls(m) => write!(f, "TLS with pushgateway failed: {m}"),
            PushError::BadResponse(m) => write!(f, "bad response from pushgateway: {m}"),
            PushError::Status(code, body) if body.is_empty() => {
                write!(f, "pushgateway answered {code}")
            }
            PushError::Status(code, body) => write!(f, "pushgateway answered {code}: {body}"),
        }
    }
}

impl std::error::Error for PushError {}

/// How much of an error body is kept for the log, in bytes as received.
const BODY_EXCERPT: usize = 200;

/// What the log may show of bytes a gateway sent: at most [`BODY_EXCERPT`] of them,
/// decoded lossily, trailing white space dropped, and every control character (CR, LF,
/// ESC, ...) escaped, so that no answer can forge or garble a log line.
pub fn excerpt(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(BODY_EXCERPT)]);
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

const USER_AGENT: &str = concat!("ngx-prometheus/", env!("CARGO_PKG_VERSION"));

/// Bodies larger than this are sent only after the gateway's `100 Continue` (or after a
/// second without an answer, ureq's default): a gateway that refuses the push (401, 413)
/// may answer and close without reading a large body, and its answer then says more
/// than the connection reset that writing the rest would run into. (Go's HTTP server,
/// the Pushgateway's, reads away at most 256 KiB of a body its handler left.)
const EXPECT_CONTINUE_ABOVE: usize = 64 * 1024;

/// One configured push target: the agent (timeouts, TLS roots) and the request's URL and
/// headers, made once; [`Pusher::push`] then sends a body.
#[derive(Debug)]
pub struct Pusher {
    agent: Agent,
    endpoint: Endpoint,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Pusher {
    /// A pusher sending to `path` on `ep`, each push bounded by `timeout`: resolution,
    /// connection, TLS handshake, request and answer together, so a slow-dripping peer
    /// cannot hold the caller for longer. `roots` are for `https://` (see [`load_roots`](super::tls::load_roots)).
    pub fn new(
        ep: &Endpoint,
        path: &str,
        headers: &[(String, String)],
        basic_auth: Option<(&str, &str)>,
        roots: Option<RootCerts>,
        timeout: Duration,
    ) -> Result<Pusher, String> {
        let mut tls = TlsConfig::builder();
        if let Some(roots) = roots {
            tls = tls.root_certs(roots);
        }
        let config = Agent::config_builder()
            .timeout_global(Some(timeout))
            // A non-2xx answer is a response to read (its body goes to the log).
            .http_status_as_error(false)
            // A redirect is an answer too: a PUT is not silently sent elsewhere.
            .max_redirects(0)
            // The module's pushes go where its configuration says, not through the
            // proxy of whatever environment nginx was started from.
            .proxy(None)
            // One connection per push, as before: nothing idles for an interval.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent(USER_AGENT)
            .tls_config(tls.build())
            .build();
        let mut hs = Vec::with_capacity(headers.len() + 2);
        hs.push((
            HeaderName::from_static("content-type"),
            HeaderValue::from_static(crate::exposition::text::CONTENT_TYPE),
        ));
        if let Some((user, pass)) = basic_auth {
            let v = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
            hs.push((
                HeaderName::from_static("authorization"),
                HeaderValue::from_str(&v).map_err(|e| format!("basic auth: {e}"))?,
            ));
        }
        for (name, value) in headers {
            check_header(name, value)?;
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
            let v =
                HeaderValue::from_bytes(value.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
            hs.push((n, v));
        }
        Ok(Pusher {
            agent: config.into(),
            endpoint: ep.clone(),
            url: ep.url(path),
            headers: hs,
        })
    }

    /// The URL pushes go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `body` with one blocking `PUT` and returns the 2xx status.
    pub fn push(&self, body: &[u8]) -> Result<u16, PushError> {
        let mut req = self.agent.put(&self.url);
        for (n, v) in &self.headers {
            req = req.header(n, v);
        }
        if body.len() > EXPECT_CONTINUE_ABOVE {
            req = req.header("expect", "100-continue");
        }
        let mut resp = req.send(body).map_err(|e| self.classify(e))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(status);
        }
        // For a failure, keep the start of the body for the log. Errors while reading it
        // are ignored: the status is what matters and is already in hand.
        let mut raw = Vec::with_capacity(BODY_EXCERPT);
        let _ = resp
            .body_mut()
            .as_reader()
            .take(BODY_EXCERPT as u64)
            .read_to_end(&mut raw);
        Err(PushError::Status(status, excerpt(&raw)))
    }

    fn classify(&self, e: ureq::Error) -> PushError {
        let ep = &self.endpoint;
        match e {
            ureq::Error::Timeout(_) => PushError::Timeout,
            ureq::Error::HostNotFound => PushError::Resolve(format!("{}: no addresses", ep.host)),
            ureq::Error::ConnectionFailed => {
                PushError::Connect(format!("{}:{}: connection failed", ep.host, ep.port))
            }
            ureq::Error::Io(e) => self.classify_io(e),
            ureq::Error::Rustls(e) => PushError::Tls(e.to_string()),
            ureq::Error::Tls(m) => PushError::Tls(m.to_string()),
            ureq::Error::Pem(e) => PushError::Tls(e.to_string()),
            ureq::Error::Protocol(e) => PushError::BadResponse(excerpt(e.to_string().as_bytes())),
            ureq::Error::LargeResponseHeader(..) => {
                PushError::BadResponse("response head too large".to_string())
            }
            other => PushError::Io(other.to_string()),
        }
    }

    fn classify_io(&self, e: io::Error) -> PushError {
        let ep = &self.endpoint;
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return PushError::Tls(tls.to_string());
        }
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => PushError::Timeout,
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable => {
                PushError::Connect(format!("{}:{}: {e}", ep.host, ep.port))
            }
            io::ErrorKind::UnexpectedEof => {
                PushError::BadResponse("connection closed without a response".to_string())
            }
            // std reports a failed getaddrinfo(3) with this text and no errno.
            _ if e.raw_os_error().is_none()
                && e.to_string().contains("failed to lookup address") =>
            {
                PushError::Resolve(format!("{}: {e}", ep.host))
            }
            _ => PushError::Io(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::url::{ep, eps};
    use crate::push::{grouping_path, load_roots};
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread::{self, JoinHandle};
    use std::time::Instant;

    #[test]
    fn error_labels_and_messages() {
        assert_eq!(PushError::Resolve("x".into()).reason(), "resolve");
        assert_eq!(PushError::Connect("x".into()).reason(), "connect");
        assert_eq!(PushError::Timeout.reason(), "timeout");
        assert_eq!(PushError::Io("x".into()).reason(), "io");
        assert_eq!(PushError::Tls("x".into()).reason(), "tls");
        assert_eq!(PushError::BadResponse("x".into()).reason(), "bad_response");
        assert_eq!(
            PushError::Status(500, String::new()).reason(),
            "http_status"
        );
        assert_eq!(
            PushError::Status(503, String::new()).to_string(),
            "pushgateway answered 503"
        );
        assert_eq!(
            PushError::Status(400, "bad label".into()).to_string(),
            "pushgateway answered 400: bad label"
        );
        assert_eq!(PushError::Timeout.to_string(), "push timed out");
    }

    #[test]
    fn excerpts_are_capped_lossy_and_escaped() {
        assert_eq!(excerpt(b"bad label\n"), "bad label");
        assert_eq!(
            excerpt(b"a\r\n[emerg] forged\x1b[31m\0"),
            "a\\r\\n[emerg] forged\\u{1b}[31m\\u{0}"
        );
        let long = [b'e'; 1000];
        assert_eq!(excerpt(&long).len(), BODY_EXCERPT);
        assert!(excerpt(b"\xff\xfe").starts_with('\u{fffd}'));
    }

    /// Reads one request (head plus Content-Length bytes) from `s`, answering
    /// `Expect: 100-continue` with `100 Continue`.
    fn read_request(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut continued = false;
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !continued && head.contains("\r\nexpect: 100-continue") {
                    s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                    continued = true;
                }
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if buf.len() >= end + 4 + len {
                    return buf;
                }
            }
            let n = s.read(&mut chunk).unwrap();
            if n == 0 {
                return buf;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A one-shot server: reads a request, sends `response`, closes; yields the request.
    fn serve(response: &'static [u8]) -> (SocketAddr, JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let req = read_request(&mut s);
            s.write_all(response).unwrap();
            req
        });
        (addr, h)
    }

    const T: Duration = Duration::from_secs(5);

    fn pusher(
        e: &Endpoint,
        headers: &[(String, String)],
        auth: Option<(&str, &str)>,
        t: Duration,
    ) -> Pusher {
        let path = grouping_path(&e.path, "j", &[]);
        Pusher::new(e, &path, headers, auth, None, t).unwrap()
    }

    fn local(addr: SocketAddr) -> Endpoint {
        ep("127.0.0.1", addr.port(), "")
    }

    #[test]
    fn push_ok_sends_exact_request() {
        let (addr, server) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let e = local(addr);
        let path = grouping_path(&e.path, "nginx", &[("instance", "a/b")]);
        let headers = [("X-Tenant".to_string(), "t1".to_string())];
        let body = b"# TYPE up gauge\nup 1\n";
        let p = Pusher::new(&e, &path, &headers, Some(("u", "p:w")), None, T).unwrap();
        assert_eq!(p.push(body), Ok(200));
        let req = server.join().unwrap();
        let want = format!(
            "PUT /metrics/job/nginx/instance@base64/YS9i HTTP/1.1\r\n\
             content-length: 21\r\n\
             user-agent: ngx-prometheus/{}\r\n\
             accept: */*\r\n\
             host: 127.0.0.1:{}\r\n\
             content-type: text/plain; version=0.0.4; charset=utf-8\r\n\
             authorization: Basic dTpwOnc=\r\n\
             x-tenant: t1\r\n\
             \r\n\
             # TYPE up gauge\nup 1\n",
            env!("CARGO_PKG_VERSION"),
            addr.port(),
        );
        assert_eq!(String::from_utf8_lossy(&req), want);
    }

    #[test]
    fn a_user_agent_header_replaces_ours() {
        let (addr, server) = serve(b"HTTP/1.1 204 No Content\r\n\r\n");
        let h = [("User-Agent".to_string(), "mine".to_string())];
        assert_eq!(pusher(&local(addr), &h, None, T).push(b""), Ok(204));
        let req = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(req.contains("\r\nuser-agent: mine\r\n"), "{req}");
        assert!(!req.contains("ngx-prometheus/"), "{req}");
        assert!(!req.contains("authorization"), "{req}");
    }

    #[test]
    fn push_large_body() {
        let (addr, server) = serve(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
        let body = vec![b'x'; 3 << 20];
        let start = Instant::now();
        assert_eq!(pusher(&local(addr), &[], None, T).push(&body), Ok(202));
        // Sent on the server's 100 Continue, not after ureq's second of waiting for it.
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
        let req = server.join().unwrap();
        assert!(req.ends_with(&body));
        let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&req[..end + 2]).to_string();
        assert!(head.contains("\r\nexpect: 100-continue\r\n"), "{head}");
    }

    #[test]
    fn a_refusal_before_a_large_body_is_read_is_the_answer() {
        // The gateway answers 413 to the head and closes without reading the body.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            s.write_all(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\
                  Connection: close\r\n\r\ntoo big\n",
            )
            .unwrap();
        });
        let body = vec![b'x'; 8 << 20];
        let got = pusher(&local(addr), &[], None, T).push(&body);
        assert_eq!(got, Err(PushError::Status(413, "too big".to_string())));
        server.join().unwrap();
    }

    #[test]
    fn push_status_500_keeps_body() {
        let (addr, server) =
            serve(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n");
        let got = pusher(&local(addr), &[], None, T).push(b"x 1\n");
        assert_eq!(got, Err(PushError::Status(500, "boom".to_string())));
        server.join().unwrap();
    }

    #[test]
    fn push_error_body_is_capped_lossy_and_escaped() {
        static RESP: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\n\xff";
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            read_request(&mut s);
            s.write_all(RESP).unwrap();
            s.write_all(b"\r\n[emerg] forged\x1b[0m").unwrap();
            s.write_all(&[b'e'; 1000]).unwrap();
        });
        match pusher(&local(addr), &[], None, T).push(b"") {
            Err(PushError::Status(400, body)) => {
                assert!(
                    body.starts_with("\u{fffd}\\r\\n[emerg] forged\\u{1b}[0meee"),
                    "{body}"
                );
                assert!(!body.chars().any(char::is_control), "{body:?}");
                // 200 bytes as received: \xff, 20 more, then 179 'e'.
                assert!(body.ends_with(&"e".repeat(179)), "{body}");
                assert!(!body.ends_with(&"e".repeat(180)), "{body}");
            }
            other => panic!("{other:?}"),
        }
        server.join().unwrap();
    }

    #[test]
    fn push_chunked_error_body() {
        let (addr, server) = serve(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nbad \r\n5\r\nlabel\r\n0\r\n\r\n",
        );
        let got = pusher(&local(addr), &[], None, T).push(b"");
        assert_eq!(got, Err(PushError::Status(400, "bad label".to_string())));
        server.join().unwrap();
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let (addr, server) =
            serve(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n");
        let got = pusher(&local(addr), &[], None, T).push(b"");
        assert_eq!(got, Err(PushError::Status(307, String::new())));
        server.join().unwrap();
    }

    #[test]
    fn push_bad_responses() {
        let (addr, server) = serve(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        let got = pusher(&local(addr), &[], None, T).push(b"");
        assert_eq!(
            got.as_ref().map_err(PushError::reason),
            Err("bad_response"),
            "{got:?}"
        );
        server.join().unwrap();

        let (addr, server) = serve(b"");
        let got = pusher(&local(addr), &[], None, T).push(b"");
        assert_eq!(
            got.as_ref().map_err(PushError::reason),
            Err("bad_response"),
            "{got:?}"
        );
        server.join().unwrap();
    }

    #[test]
    fn https_to_a_plain_server_is_a_tls_error() {
        // A plain HTTP server answers the ClientHello as a bad request.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = s.read(&mut hello);
            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let e = eps("127.0.0.1", addr.port(), "");
        let roots = load_roots(None).unwrap();
        let p = Pusher::new(&e, "/metrics/job/j", &[], None, Some(roots), T).unwrap();
        assert!(p.url().starts_with("https://127.0.0.1:"));
        match p.push(b"x 1\n") {
            Err(e @ PushError::Tls(_)) => assert_eq!(e.reason(), "tls"),
            other => panic!("{other:?}"),
        }
        server.join().unwrap();
    }

    #[test]
    fn push_times_out_on_silent_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            read_request(&mut s);
            let _ = done_rx.recv();
        });
        let p = pusher(&local(addr), &[], None, Duration::from_millis(200));
        let start = Instant::now();
        let got = p.push(b"x 1\n");
        let took = start.elapsed();
        done_tx.send(()).unwrap();
        server.join().unwrap();
        assert_eq!(got, Err(PushError::Timeout));
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn push_to_closed_port_is_connect_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        match pusher(&ep("127.0.0.1", port, ""), &[], None, T).push(b"") {
            Err(e @ PushError::Connect(_)) => {
                assert_eq!(e.reason(), "connect");
                assert!(e.to_string().contains(&port.to_string()), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn push_to_unknown_host_is_resolve_error() {
        let got = pusher(&ep("no-such-host.invalid", 9091, ""), &[], None, T).push(b"");
        assert_eq!(
            got.as_ref().map_err(PushError::reason),
            Err("resolve"),
            "{got:?}"
        );
    }
}
