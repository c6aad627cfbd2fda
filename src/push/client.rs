//! The std-only Pushgateway client: where to push, what path to push to, and one
//! blocking `PUT` bounded by a single deadline.
//!
//! Only plain HTTP is spoken. Pulling a TLS stack into an nginx module for a feature that
//! a local proxy (or nginx itself, as a `proxy_pass` to an `https://` upstream) already
//! provides is not worth its weight.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

/// Where pushes go: an HTTP host, port and optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address; IPv6 addresses are kept without brackets.
    pub host: String,
    /// TCP port (80 unless the URL names one).
    pub port: u16,
    /// Path prefix in front of `/metrics/job/...`, without a trailing slash; may be empty.
    pub path: String,
}

/// Parses a Pushgateway URL of the form `http://host[:port][/prefix]`.
pub fn parse_url(s: &str) -> Result<Endpoint, String> {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &s[7..]
    } else if lower.starts_with("https://") {
        return Err(format!(
            "push URL \"{s}\": https is not supported (no TLS in the module); push to a local \
             TLS-terminating proxy over http instead"
        ));
    } else {
        return Err(format!("push URL \"{s}\": must start with http://"));
    };
    if rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "push URL \"{s}\": query strings and fragments are not allowed"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "push URL \"{s}\": user info is not allowed in the URL; put credentials in basic_auth"
        ));
    }
    if authority.is_empty() {
        return Err(format!("push URL \"{s}\": missing host"));
    }

    let (host, port_str) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some(end) = bracketed.find(']') else {
            return Err(format!("push URL \"{s}\": unterminated '[' in host"));
        };
        let addr = &bracketed[..end];
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "push URL \"{s}\": \"{addr}\" is not an IPv6 address"
            ));
        }
        let after = &bracketed[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(format!(
                    "push URL \"{s}\": unexpected \"{after}\" after ']'"
                ))
            }
        };
        (addr, port)
    } else {
        let (host, port) = match authority.rfind(':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        };
        if host.contains(':') {
            return Err(format!(
                "push URL \"{s}\": IPv6 addresses must be written in brackets, as [addr]"
            ));
        }
        if host.is_empty() {
            return Err(format!("push URL \"{s}\": missing host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(format!("push URL \"{s}\": invalid host \"{host}\""));
        }
        // A dotted all-digit host that does not parse as IPv4 (e.g. "1.2.3.999") would be
        // handed to the resolver and fail later with a vaguer message.
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && host.parse::<Ipv4Addr>().is_err()
        {
            return Err(format!(
                "push URL \"{s}\": \"{host}\" is not an IPv4 address"
            ));
        }
        (host, port)
    };

    let port = match port_str {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("push URL \"{s}\": invalid port \"{p}\"")),
        },
    };

    // The prefix is copied verbatim into the request line, so anything that could split
    // or corrupt it is refused here rather than escaped behind the user's back.
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "push URL \"{s}\": path contains {c:?}; percent-encode it"
        ));
    }
    let path = path.trim_end_matches('/').to_string();

    Ok(Endpoint {
        host: host.to_string(),
        port,
        path,
    })
}

/// Appends one `/name/value` segment pair the way the Pushgateway decodes it.
fn push_segment(out: &mut String, name: &str, value: &str) {
    out.push('/');
    // Percent-encoding cannot protect '/': the Pushgateway routes on the decoded path, so
    // "%2F" would split the value. Empty values would collapse the segment, and "." or
    // ".." would be cleaned away by path normalisation. All of those go as base64.
    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
        out.push_str(name);
        out.push_str("@base64/");
        if value.is_empty() {
            out.push('=');
        } else {
            out.push_str(&URL_SAFE_NO_PAD.encode(value));
        }
        return;
    }
    percent_encode_into(out, name);
    out.push('/');
    percent_encode_into(out, value);
}

fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Builds `{prefix}/metrics/job/{job}{/name/value}*`, the Pushgateway grouping-key path.
pub fn grouping_path(prefix: &str, job: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(prefix.len() + 16 + job.len() + labels.len() * 24);
    out.push_str(prefix.trim_end_matches('/'));
    out.push_str("/metrics");
    push_segment(&mut out, "job", job);
    for (name, value) in labels {
        push_segment(&mut out, name, value);
    }
    out
}

/// Headers the client writes itself; letting a user duplicate them would produce a
/// request the Pushgateway (or a proxy in front) may frame differently from us.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
];

/// Validates one extra request header from the configuration.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name is empty".to_string());
    }
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if let Some(c) = name.bytes().find(|&b| !is_tchar(b)) {
        return Err(format!(
            "header name \"{}\": character {:?} is not allowed",
            name.escape_default(),
            c as char
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
    {
        return Err(format!(
            "header \"{name}\" is set by the push client and cannot be overridden"
        ));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(format!(
            "header \"{name}\": value \"{}\" contains CR, LF or NUL",
            value.escape_default()
        ));
    }
    Ok(())
}

/// Renders the request line and headers of the `PUT` that carries `body_len` bytes.
///
/// A `User-Agent` among `headers` replaces the default one rather than adding a second.
pub fn request_head(
    ep: &Endpoint,
    path: &str,
    headers: &[(String, String)],
    basic_auth: Option<(&str, &str)>,
    body_len: usize,
) -> Vec<u8> {
    let path = if path.is_empty() { "/" } else { path };
    let mut h = String::with_capacity(256);
    h.push_str("PUT ");
    h.push_str(path);
    h.push_str(" HTTP/1.1\r\nHost: ");
    if ep.host.contains(':') {
        h.push('[');
        h.push_str(&ep.host);
        h.push(']');
    } else {
        h.push_str(&ep.host);
    }
    if ep.port != 80 {
        h.push(':');
        h.push_str(&ep.port.to_string());
    }
    h.push_str("\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        h.push_str(concat!(
            "User-Agent: ngx-prometheus/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
    }
    h.push_str("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
    h.push_str("Content-Length: ");
    h.push_str(&body_len.to_string());
    h.push_str("\r\nConnection: close\r\n");
    if let Some((user, pass)) = basic_auth {
        h.push_str("Authorization: Basic ");
        h.push_str(&STANDARD.encode(format!("{user}:{pass}")));
        h.push_str("\r\n");
    }
    for (name, value) in headers {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(value);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

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
    /// The peer's answer was not an HTTP response.
    BadResponse(String),
    /// The Pushgateway answered with a non-2xx status; the text is the start of its body.
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
            PushError::BadResponse(m) => write!(f, "bad response from pushgateway: {m}"),
            PushError::Status(code, body) if body.is_empty() => {
                write!(f, "pushgateway answered {code}")
            }
            PushError::Status(code, body) => write!(f, "pushgateway answered {code}: {body}"),
        }
    }
}

impl std::error::Error for PushError {}

/// Responses larger than this are not read further: the head must fit in it.
const MAX_RESPONSE: usize = 64 * 1024;
/// How much of an error body is kept for the log.
const BODY_EXCERPT: usize = 200;

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn io_err(e: io::Error) -> PushError {
    if is_timeout(&e) {
        PushError::Timeout
    } else {
        PushError::Io(e.to_string())
    }
}

/// Time left before `deadline`, or `Timeout` when none is: std refuses a zero timeout.
fn remaining(deadline: Instant) -> Result<Duration, PushError> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(PushError::Timeout),
    }
}

/// Sends `body` with one blocking `PUT` and returns the 2xx status.
///
/// `timeout` bounds the whole exchange (resolution excepted, which std cannot bound),
/// not each step, so a slow-dripping peer cannot hold the caller for longer.
pub fn push(
    ep: &Endpoint,
    path: &str,
    headers: &[(String, String)],
    basic_auth: Option<(&str, &str)>,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, PushError> {
    let addrs: Vec<_> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| PushError::Resolve(format!("{}: {e}", ep.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(PushError::Resolve(format!("{}: no addresses", ep.host)));
    }
    let deadline = Instant::now() + timeout;

    let mut stream = None;
    let mut last_err = None;
    for addr in &addrs {
        let left = remaining(deadline)?;
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some((*addr, e)),
        }
    }
    let mut stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some((_, e))) if is_timeout(&e) => return Err(PushError::Timeout),
        (None, Some((addr, e))) => return Err(PushError::Connect(format!("{addr}: {e}"))),
        (None, None) => return Err(PushError::Connect("no address tried".to_string())),
    };
    // Head and body go out as two writes; without this, Nagle can hold the body's last
    // segment until the peer's delayed ACK for the head.
    let _ = stream.set_nodelay(true);

    let head = request_head(ep, path, headers, basic_auth, body.len());
    let sent = write_all_by(&mut stream, &head, deadline)
        .and_then(|()| write_all_by(&mut stream, body, deadline));
    if let Err(e) = sent {
        // A gateway that rejects the request (401, 413) may answer and close before the
        // body is through; its answer says more than our broken pipe does.
        if let PushError::Io(_) = e {
            if let Ok(resp) = read_response(&mut stream, deadline) {
                resp.into_result()?;
            }
        }
        return Err(e);
    }
    read_response(&mut stream, deadline)?.into_result()
}

fn write_all_by(
    stream: &mut TcpStream,
    mut buf: &[u8],
    deadline: Instant,
) -> Result<(), PushError> {
    while !buf.is_empty() {
        stream
            .set_write_timeout(Some(remaining(deadline)?))
            .map_err(io_err)?;
        match stream.write(buf) {
            Ok(0) => return Err(PushError::Io("connection closed while sending".to_string())),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// One read into `buf`, bounded by the deadline; `Ok(0)` is end of stream.
fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, PushError> {
    let mut chunk = [0u8; 4096];
    let room = (MAX_RESPONSE - buf.len()).min(chunk.len());
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(io_err)?;
        match stream.read(&mut chunk[..room]) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// The parts of a response the caller needs.
struct Response {
    status: u16,
    body: String,
}

impl Response {
    fn into_result(self) -> Result<u16, PushError> {
        if (200..300).contains(&self.status) {
            Ok(self.status)
        } else {
            Err(PushError::Status(self.status, self.body))
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(80)]);
    format!("{:?}", s)
}

fn parse_status_line(head: &[u8]) -> Result<u16, PushError> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let bad = || PushError::BadResponse(format!("status line {}", excerpt(line)));
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().ok_or_else(bad)?;
    if !version.starts_with(b"HTTP/1.") {
        return Err(bad());
    }
    let code = parts.next().ok_or_else(bad)?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(bad());
    }
    Ok(status)
}

/// Looks up a header in a response head (case-insensitively), trimmed.
fn header_value<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        Some(line[colon + 1..].trim_ascii())
    })
}

/// Strips chunked framing from what was read so far, stopping at anything incomplete.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = raw.iter().position(|&b| b == b'\n') {
        let size_field = raw[..nl]
            .split(|&b| b == b';')
            .next()
            .unwrap_or(&[])
            .trim_ascii();
        let Some(size) = std::str::from_utf8(size_field)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
        else {
            break;
        };
        if size == 0 {
            break;
        }
        raw = &raw[nl + 1..];
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        if take < size || out.len() >= BODY_EXCERPT {
            break;
        }
        raw = raw[take..].strip_prefix(b"\r\n").unwrap_or(&raw[take..]);
    }
    out
}

fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<Response, PushError> {
    let mut buf = Vec::with_capacity(1024);
    let mut start = 0;
    loop {
        let (head_end, complete) = loop {
            if let Some(end) = find_head_end(&buf[start..]) {
                break (start + end, true);
            }
            if buf.len() >= MAX_RESPONSE {
                return Err(PushError::BadResponse(format!(
                    "response head exceeds {MAX_RESPONSE} bytes"
                )));
            }
            if read_some(stream, &mut buf, deadline)? == 0 {
                if buf.len() == start {
                    return Err(PushError::BadResponse(
                        "connection closed without a response".to_string(),
                    ));
                }
                // The peer closed mid-head; the status line may still be whole.
                break (buf.len(), false);
            }
        };
        let head = &buf[start..head_end];
        let status = parse_status_line(head)?;
        // Interim 1xx answers precede the real one.
        if status < 200 {
            if !complete {
                return Err(PushError::BadResponse(format!(
                    "connection closed after interim response {status}"
                )));
            }
            start = head_end;
            continue;
        }
        if (200..300).contains(&status) {
            return Ok(Response {
                status,
                body: String::new(),
            });
        }

        // For a failure, keep the start of the body for the log. Errors while reading it
        // are ignored: the status is what matters and is already in hand.
        let chunked = header_value(head, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
        let wanted = header_value(head, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
            .map_or(BODY_EXCERPT, |n| n.min(BODY_EXCERPT));
        while buf.len() - head_end < wanted
            && !(chunked && buf[head_end..].windows(5).any(|w| w == b"0\r\n\r\n"))
            && buf.len() < MAX_RESPONSE
        {
            match read_some(stream, &mut buf, deadline) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let raw = &buf[head_end..];
        let bytes = if chunked { dechunk(raw) } else { raw.to_vec() };
        let bytes = &bytes[..bytes.len().min(wanted)];
        let body = String::from_utf8_lossy(bytes).trim_end().to_string();
        return Ok(Response { status, body });
    }
}

/// Delays between pushes: the configured interval while they succeed, and a doubling
/// delay from one second, capped, while they fail.
#[derive(Debug, Clone)]
pub struct Backoff {
    interval: Duration,
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule for pushes every `interval`.
    ///
    /// The cap is at least a minute so that a short interval does not hammer a gateway
    /// that is down, and at least the interval so that failing never pushes more often
    /// than succeeding would.
    pub fn new(interval: Duration) -> Self {
        Backoff {
            interval,
            base: Duration::from_secs(1),
            max: interval.max(Duration::from_secs(60)),
            failures: 0,
        }
    }

    /// Records a successful push, ending any run of failures.
    pub fn success(&mut self) {
        self.failures = 0;
    }

    /// Records a failed push and returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        self.base
            .saturating_mul(factor)
            .min(self.max)
            .max(Duration::from_secs(1))
    }

    /// The wait after a successful push: the configured interval.
    pub fn next_delay_ok(&self) -> Duration {
        self.interval
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::sync::mpsc;
    use std::thread::{self, JoinHandle};

    fn ep(host: &str, port: u16, path: &str) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            path: path.to_string(),
        }
    }

    #[test]
    fn parse_url_accepts() {
        assert_eq!(parse_url("http://pg:9091").unwrap(), ep("pg", 9091, ""));
        assert_eq!(parse_url("http://pg").unwrap(), ep("pg", 80, ""));
        assert_eq!(parse_url("http://pg/").unwrap(), ep("pg", 80, ""));
        assert_eq!(
            parse_url("http://10.0.0.1").unwrap(),
            ep("10.0.0.1", 80, "")
        );
        assert_eq!(
            parse_url("HTTP://push-gw.example.com:8080/a/b//").unwrap(),
            ep("push-gw.example.com", 8080, "/a/b")
        );
        assert_eq!(
            parse_url("http://[::1]:9091/prefix/").unwrap(),
            ep("::1", 9091, "/prefix")
        );
        assert_eq!(
            parse_url("http://[fe80::1]").unwrap(),
            ep("fe80::1", 80, "")
        );
        assert_eq!(
            parse_url("http://pg/a%20b").unwrap(),
            ep("pg", 80, "/a%20b")
        );
    }

    #[test]
    fn parse_url_rejects() {
        let err = |s: &str| parse_url(s).unwrap_err();
        let e = err("https://pg:9091");
        assert!(e.contains("TLS") && e.contains("proxy"), "{e}");
        assert!(e.contains("\"https://pg:9091\""), "{e}");
        assert!(err("http://user:pw@pg").contains("basic_auth"));
        assert!(err("ftp://pg").contains("http://"));
        assert!(err("pg:9091").contains("http://"));
        assert!(err("http://pg/?x=1").contains("query"));
        assert!(err("http://pg#frag").contains("fragment"));
        assert!(err("http://").contains("missing host"));
        assert!(err("http:///metrics").contains("missing host"));
        assert!(err("http://:9091").contains("missing host"));
        for p in [
            "http://pg:0",
            "http://pg:99999",
            "http://pg:",
            "http://pg:+80",
            "http://pg:x",
        ] {
            assert!(err(p).contains("invalid port"), "{p}");
        }
        assert!(err("http://[::1").contains("unterminated"));
        assert!(err("http://[zz]").contains("not an IPv6"));
        assert!(err("http://[::1]x").contains("after ']'"));
        assert!(err("http://::1").contains("brackets"));
        assert!(err("http://1.2.3.999").contains("not an IPv4"));
        assert!(err("http://p g").contains("invalid host"));
        assert!(err("http://pg/a b").contains("path"));
        assert!(err("http://pg/a\r\nX: y").contains("path"));
    }

    #[test]
    fn grouping_paths() {
        assert_eq!(grouping_path("", "nginx", &[]), "/metrics/job/nginx");
        assert_eq!(
            grouping_path("/pg", "nginx", &[("instance", "web-1:80")]),
            "/pg/metrics/job/nginx/instance/web-1%3A80"
        );
        assert_eq!(
            grouping_path("/pg/", "nginx", &[("a", "x y"), ("b", "-._~")]),
            "/pg/metrics/job/nginx/a/x%20y/b/-._~"
        );
        assert_eq!(
            grouping_path("", "j", &[("path", "a/b")]),
            "/metrics/job/j/path@base64/YS9i"
        );
        assert_eq!(
            grouping_path("", "j", &[("dir", "/var/tmp")]),
            "/metrics/job/j/dir@base64/L3Zhci90bXA"
        );
        assert_eq!(
            grouping_path("", "j", &[("x", "")]),
            "/metrics/job/j/x@base64/="
        );
        assert_eq!(grouping_path("", "a/b", &[]), "/metrics/job@base64/YS9i");
        assert_eq!(grouping_path("", "", &[]), "/metrics/job@base64/=");
        assert_eq!(
            grouping_path("", "j", &[("d", "..")]),
            "/metrics/job/j/d@base64/Li4"
        );
        // URL-safe alphabet: '-' and '_' where standard base64 has '+' and '/'.
        assert_eq!(
            grouping_path("", "j", &[("v", "?/>")]),
            "/metrics/job/j/v@base64/Py8-"
        );
        assert_eq!(
            grouping_path("", "j", &[("v", "a/?")]),
            "/metrics/job/j/v@base64/YS8_"
        );
        assert_eq!(
            grouping_path("", "j", &[("v", "é")]),
            "/metrics/job/j/v/%C3%A9"
        );
    }

    #[test]
    fn request_head_exact() {
        let head = request_head(
            &ep("pg", 9091, "/pg"),
            "/pg/metrics/job/nginx",
            &[("X-Scope-OrgID".to_string(), "team-a".to_string())],
            Some(("pusher", "s3cr:et")),
            12,
        );
        let want = format!(
            "PUT /pg/metrics/job/nginx HTTP/1.1\r\n\
             Host: pg:9091\r\n\
             User-Agent: ngx-prometheus/{}\r\n\
             Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 12\r\n\
             Connection: close\r\n\
             Authorization: Basic cHVzaGVyOnMzY3I6ZXQ=\r\n\
             X-Scope-OrgID: team-a\r\n\
             \r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8(head).unwrap(), want);
    }

    #[test]
    fn request_head_host_and_user_agent() {
        let text = |e: &Endpoint, h: &[(String, String)]| {
            String::from_utf8(request_head(e, "", h, None, 0)).unwrap()
        };
        let t = text(&ep("::1", 80, ""), &[]);
        assert!(t.starts_with("PUT / HTTP/1.1\r\nHost: [::1]\r\n"), "{t}");
        assert!(!t.contains("Authorization"));
        let t = text(&ep("::1", 9091, ""), &[]);
        assert!(t.contains("\r\nHost: [::1]:9091\r\n"), "{t}");
        let t = text(&ep("pg", 80, ""), &[("user-agent".into(), "mine".into())]);
        assert!(t.contains("\r\nuser-agent: mine\r\n"), "{t}");
        assert!(!t.contains("ngx-prometheus/"), "{t}");
    }

    #[test]
    fn header_checks() {
        assert!(check_header("X-Scope-OrgID", "team-a").is_ok());
        assert!(check_header("Authorization", "Bearer abc").is_ok());
        assert!(check_header("x!#$%&'*+-.^_`|~9", "").is_ok());
        assert!(check_header("X", "tab\tok").is_ok());
        assert!(check_header("", "v").unwrap_err().contains("empty"));
        for bad in ["X Y", "X:Y", "X\r\n", "é", "X(1)"] {
            assert!(
                check_header(bad, "v").unwrap_err().contains("not allowed"),
                "{bad}"
            );
        }
        for reserved in [
            "Host",
            "content-length",
            "CONTENT-TYPE",
            "Connection",
            "Transfer-Encoding",
        ] {
            assert!(
                check_header(reserved, "v")
                    .unwrap_err()
                    .contains("cannot be overridden"),
                "{reserved}"
            );
        }
        for bad in ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b"] {
            assert!(
                check_header("X", bad)
                    .unwrap_err()
                    .contains("CR, LF or NUL"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn backoff_sequence() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(15));
        assert_eq!(b.next_delay_ok(), s(15));
        let seq: Vec<_> = (0..8).map(|_| b.fail()).collect();
        assert_eq!(seq, [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60)]);
        assert_eq!(b.failures(), 8);
        b.success();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.fail(), s(1));
        assert_eq!(b.next_delay_ok(), s(15));

        let mut b = Backoff::new(s(300));
        let seq: Vec<_> = (0..10).map(|_| b.fail()).collect();
        assert_eq!(seq[8], s(256));
        assert_eq!(seq[9], s(300));
        for _ in 0..100 {
            assert_eq!(b.fail(), s(300));
        }

        let mut b = Backoff::new(Duration::from_millis(100));
        assert_eq!(b.fail(), s(1));
        assert_eq!(b.next_delay_ok(), Duration::from_millis(100));
    }

    #[test]
    fn error_labels_and_messages() {
        assert_eq!(PushError::Resolve("x".into()).reason(), "resolve");
        assert_eq!(PushError::Connect("x".into()).reason(), "connect");
        assert_eq!(PushError::Timeout.reason(), "timeout");
        assert_eq!(PushError::Io("x".into()).reason(), "io");
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

    /// Reads one request (head plus Content-Length bytes) from `s`.
    fn read_request(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find_head_end(&buf) {
                let len = header_value(&buf[..end], "content-length")
                    .map(|v| std::str::from_utf8(v).unwrap().parse::<usize>().unwrap())
                    .unwrap_or(0);
                if buf.len() >= end + len {
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

    fn local(addr: SocketAddr) -> Endpoint {
        ep("127.0.0.1", addr.port(), "")
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn push_ok_sends_exact_request() {
        let (addr, server) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let e = local(addr);
        let path = grouping_path(&e.path, "nginx", &[("instance", "a/b")]);
        let headers = [("X-Tenant".to_string(), "t1".to_string())];
        let body = b"# TYPE up gauge\nup 1\n";
        let got = push(&e, &path, &headers, Some(("u", "p")), body, T);
        assert_eq!(got, Ok(200));
        let mut want = request_head(&e, &path, &headers, Some(("u", "p")), body.len());
        want.extend_from_slice(body);
        let req = server.join().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&req),
            String::from_utf8_lossy(&want)
        );
        assert!(req.starts_with(b"PUT /metrics/job/nginx/instance@base64/YS9i HTTP/1.1\r\n"));
    }

    #[test]
    fn push_large_body() {
        let (addr, server) = serve(b"HTTP/1.1 202 Accepted\r\n\r\n");
        let body = vec![b'x'; 3 << 20];
        assert_eq!(
            push(&local(addr), "/metrics/job/j", &[], None, &body, T),
            Ok(202)
        );
        let req = server.join().unwrap();
        assert!(req.ends_with(&body));
    }

    #[test]
    fn push_status_500_keeps_body() {
        let (addr, server) =
            serve(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n");
        let got = push(&local(addr), "/metrics/job/j", &[], None, b"x 1\n", T);
        assert_eq!(got, Err(PushError::Status(500, "boom".to_string())));
        server.join().unwrap();
    }

    #[test]
    fn push_error_body_is_capped_and_lossy() {
        static RESP: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\n\xff";
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            read_request(&mut s);
            s.write_all(RESP).unwrap();
            s.write_all(&[b'e'; 1000]).unwrap();
        });
        match push(&local(addr), "/metrics/job/j", &[], None, b"", T) {
            Err(PushError::Status(400, body)) => {
                assert_eq!(body.len(), "\u{fffd}".len() + 199);
                assert!(body.starts_with('\u{fffd}'));
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
        let got = push(&local(addr), "/metrics/job/j", &[], None, b"", T);
        assert_eq!(got, Err(PushError::Status(400, "bad label".to_string())));
        server.join().unwrap();
    }

    #[test]
    fn push_skips_interim_response() {
        let (addr, server) =
            serve(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            push(&local(addr), "/metrics/job/j", &[], None, b"", T),
            Ok(200)
        );
        server.join().unwrap();
    }

    #[test]
    fn push_bad_responses() {
        let (addr, server) = serve(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        match push(&local(addr), "/metrics/job/j", &[], None, b"", T) {
            Err(PushError::BadResponse(m)) => assert!(m.contains("SSH-2.0"), "{m}"),
            other => panic!("{other:?}"),
        }
        server.join().unwrap();

        let (addr, server) = serve(b"");
        match push(&local(addr), "/metrics/job/j", &[], None, b"", T) {
            Err(PushError::BadResponse(m)) => assert!(m.contains("without a response"), "{m}"),
            other => panic!("{other:?}"),
        }
        server.join().unwrap();

        // Closed mid-head: a whole status line is still an answer.
        let (addr, server) = serve(b"HTTP/1.1 204 No Content\r\n");
        assert_eq!(
            push(&local(addr), "/metrics/job/j", &[], None, b"", T),
            Ok(204)
        );
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
        let start = Instant::now();
        let got = push(
            &local(addr),
            "/metrics/job/j",
            &[],
            None,
            b"x 1\n",
            Duration::from_millis(200),
        );
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
        match push(
            &ep("127.0.0.1", port, ""),
            "/metrics/job/j",
            &[],
            None,
            b"",
            T,
        ) {
            Err(e @ PushError::Connect(_)) => {
                assert_eq!(e.reason(), "connect");
                assert!(e.to_string().contains(&port.to_string()), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
