//! Where pushes go: the Pushgateway URL, checked when the configuration is read.

use std::net::{Ipv4Addr, Ipv6Addr};

use ureq::http::Uri;

/// Where pushes go: scheme, host, port and optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://` (TLS) rather than `http://`.
    pub https: bool,
    /// Host name or IP address; IPv6 addresses are kept without brackets.
    pub host: String,
    /// TCP port (80 or 443 unless the URL names one).
    pub port: u16,
    /// Path prefix in front of `/metrics/job/...`, without a trailing slash; may be empty.
    pub path: String,
}

impl Endpoint {
    fn default_port(&self) -> u16 {
        if self.https {
            443
        } else {
            80
        }
    }

    /// The absolute URL of `path` (from [`grouping_path`](super::grouping::grouping_path)) on this endpoint.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let path = if path.is_empty() { "/" } else { path };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}:{}{path}", self.port)
        }
    }
}

/// Parses a Pushgateway URL of the form `http[s]://host[:port][/prefix]`.
///
/// The URL must also be one ureq takes (`http::Uri`); the host and port are checked
/// here, since `Uri` lets a bad port through as none (`http://pg:99999` would go to 80).
pub fn parse_url(s: &str) -> Result<Endpoint, String> {
    let bad = |why: String| format!("push URL \"{}\": {why}", s.escape_default());
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("http://") {
        (false, &s[7..])
    } else if lower.starts_with("https://") {
        (true, &s[8..])
    } else {
        return Err(bad("must start with http:// or https://".into()));
    };
    if s.contains('?') || s.contains('#') {
        return Err(bad("query strings and fragments are not allowed".into()));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(bad(
            "user info is not allowed in the URL; put credentials in prometheus_push_basic_auth"
                .into(),
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((addr, after)) = bracketed.split_once(']') else {
            return Err(bad("unterminated '[' in host".into()));
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(bad(format!("\"{addr}\" is not an IPv6 address")));
        }
        match after.strip_prefix(':') {
            Some(p) => (addr, Some(p)),
            None if after.is_empty() => (addr, None),
            None => return Err(bad(format!("unexpected \"{after}\" after ']'"))),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.contains(':') {
            return Err(bad(
                "IPv6 addresses must be written in brackets, as [addr]".into()
            ));
        }
        if host.is_empty() {
            return Err(bad("missing host".into()));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        {
            return Err(bad(format!("invalid host \"{host}\"")));
        }
        // A dotted all-digit host that does not parse as IPv4 (e.g. "1.2.3.999") would be
        // handed to the resolver and fail later with a vaguer message.
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && host.parse::<Ipv4Addr>().is_err()
        {
            return Err(bad(format!("\"{host}\" is not an IPv4 address")));
        }
        (host, port)
    };
    let port = match port {
        None if https => 443,
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(bad(format!("invalid port \"{p}\""))),
        },
    };
    // Anything that could split or corrupt the request line is refused here rather than
    // escaped behind the user's back.
    if let Err(e) = s.parse::<Uri>() {
        return Err(bad(format!("{e} (percent-encode the path)")));
    }
    Ok(Endpoint {
        https,
        host: host.to_string(),
        port,
        path: path.trim_end_matches('/').to_string(),
    })
}

/// An endpoint in a test: plain HTTP.
#[cfg(test)]
pub(super) fn ep(host: &str, port: u16, path: &str) -> Endpoint {
    Endpoint {
        https: false,
        host: host.to_string(),
        port,
        path: path.to_string(),
    }
}

/// An endpoint in a test: HTTPS.
#[cfg(test)]
pub(super) fn eps(host: &str, port: u16, path: &str) -> Endpoint {
    Endpoint {
        https: true,
        ..ep(host, port, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_url("https://pg").unwrap(), eps("pg", 443, ""));
        assert_eq!(
            parse_url("HTTPS://127.0.0.1:9443/gw/").unwrap(),
            eps("127.0.0.1", 9443, "/gw")
        );
    }

    #[test]
    fn urls_of_endpoints() {
        assert_eq!(
            ep("pg", 80, "").url("/metrics/job/j"),
            "http://pg/metrics/job/j"
        );
        assert_eq!(eps("pg", 443, "").url(""), "https://pg/");
        assert_eq!(eps("pg", 80, "").url("/x"), "https://pg:80/x");
        assert_eq!(ep("::1", 9091, "").url("/x"), "http://[::1]:9091/x");
    }

    #[test]
    fn parse_url_rejects() {
        let err = |s: &str| parse_url(s).unwrap_err();
        assert!(err("http://user:pw@pg").contains("basic_auth"));
        let e = err("ftp://pg");
        assert!(e.contains("http:// or https://"), "{e}");
        assert!(e.contains("\"ftp://pg\""), "{e}");
        assert!(err("pg:9091").contains("http://"));
        assert!(err("http://pg/?x=1").contains("query"));
        assert!(err("http://pg#frag").contains("fragment"));
        for p in ["http://", "https://", "http:///metrics", "http://:9091"] {
            let e = err(p);
            assert!(e.contains("missing host"), "{e}");
            assert!(e.contains(&format!("\"{p}\"")), "{e}");
        }
        for p in [
            "http://pg:0",
            "http://pg:99999",
            "http://pg:",
            "http://pg:+80",
            "http://pg:x",
            "https://[::1]:65536",
        ] {
            assert!(err(p).contains("invalid port"), "{p}");
        }
        assert!(err("http://[::1").contains("unterminated"));
        assert!(err("http://[zz]").contains("not an IPv6"));
        assert!(err("http://[::1]x").contains("after ']'"));
        assert!(err("http://::1").contains("brackets"));
        assert!(err("http://1.2.3.999").contains("not an IPv4"));
        assert!(err("http://p g").contains("invalid host"));
        assert!(err("http://pg/a b").contains("percent-encode"));
        let e = err("http://pg/a\r\nX: y");
        assert!(e.contains("percent-encode"), "{e}");
        // Escaped: the message goes to the terminal and the log.
        assert!(e.contains(r"a\r\nX"), "{e}");
    }
}
