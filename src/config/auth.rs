//! Who may read the metrics: credentials (HTTP Basic and bearer tokens) and the
//! client's address behind trusted proxies. Pure: the nginx handler passes header
//! values in and maps the verdicts to status codes.
//!
//! A credentials file holds one credential per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! basic  <user> sha256:<salt>:<hex SHA-256 of salt followed by the password>
//! bearer <name> sha256:<salt>:<hex SHA-256 of salt followed by the token>
//! ```
//!
//! Only digests are kept, in the file and in memory. Every request hashes what it
//! presents once per credential of its kind and compares every digest in full, so the
//! time taken does not tell which user exists or how much of a secret matched.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

use base64::Engine;
use cidr_utils::cidr::IpCidr;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use subtle::{Choice, ConstantTimeEq};

/// Longest `Authorization` header looked at; longer ones are refused outright.
pub const MAX_AUTHORIZATION: usize = 1024;

/// The HTTP authentication scheme a credential answers (a line's first word: its kind).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Credential {
    scheme: Scheme,
    /// The user (Basic) or a name for the token (bearer, only for the operator).
    name: String,
    /// SHA-256 of the name: users are compared by digest, so that the time taken does
    /// not depend on how long the right name is.
    name_digest: [u8; 32],
    salt: Vec<u8>,
    digest: [u8; 32],
}

/// The credentials of one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    entries: Vec<Credential>,
}

/// What a request's `Authorization` header earned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Granted,
    /// No header, an unknown scheme, a wrong user, password or token: 401 with a
    /// challenge.
    Unauthorized,
    /// Longer than [`MAX_AUTHORIZATION`], or given twice: 400.
    Malformed,
}

fn sha256(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

fn hex_digest(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A `sha256:<salt>:<hex>` line for `secret`: what `scripts/credential.sh` prints.
pub fn hash_line(kind: &str, name: &str, salt: &str, secret: &str) -> String {
    let d = sha256(salt.as_bytes(), secret.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind} {name} sha256:{salt}:{hex}")
}

impl Credentials {
    /// Parses a credentials file's text; errors name the line and what is wrong.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = i + 1;
            let words: Vec<&str> = line.split_whitespace().collect();
            let [kind, name, hash] = words[..] else {
                return Err(format!(
                    "line {at}: expected \"basic <user> <hash>\" or \"bearer <name> <hash>\""
                ));
            };
            let scheme = match kind {
                "basic" => Scheme::Basic,
                "bearer" => Scheme::Bearer,
                other => {
                    return Err(format!(
                        "line {at}: unknown kind \"{other}\" (basic or bearer)"
                    ))
                }
            };
            if scheme == Scheme::Basic && name.contains(':') {
                return Err(format!("line {at}: a Basic user name cannot contain ':'"));
            }
            let Some(rest) = hash.strip_prefix("sha256:") else {
                return Err(format!(
                    "line {at}: the hash must read sha256:<salt>:<64 hex digits> \
                     (plain-text secrets are not accepted)"
                ));
            };
            let Some((salt, hex)) = rest.rsplit_once(':') else {
                return Err(format!(
                    "line {at}: the hash has no salt (sha256:<salt>:<hex>)"
                ));
            };
            if salt.is_empty() {
                return Err(format!("line {at}: the salt is empty"));
            }
            let Some(digest) = hex_digest(hex) else {
                return Err(format!(
                    "line {at}: the digest must be 64 hex digits, got \"{hex}\""
                ));
            };
            if entries
                .iter()
                .any(|e: &Credential| e.scheme == scheme && e.name == name)
            {
                return Err(format!("line {at}: \"{name}\" is listed twice"));
            }
            entries.push(Credential {
                scheme,
                name: name.to_string(),
                name_digest: sha256(b"", name.as_bytes()),
                salt: salt.as_bytes().to_vec(),
                digest,
            });
        }
        if entries.is_empty() {
            return Err(
                "no credentials in the file (an empty file would lock everyone out)".into(),
            );
        }
        Ok(Credentials { entries })
    }

    /// Checks every `Authorization` header value of a request.
    pub fn check(&self, authorization: &[&[u8]]) -> Verdict {
        let value = match authorization {
            [] => return Verdict::Unauthorized,
            [v] => *v,
            _ => return Verdict::Malformed,
        };
        if value.len() > MAX_AUTHORIZATION {
            return Verdict::Malformed;
        }
        let value = trim(value);
        let (scheme, param) = match value.iter().position(|b| *b == b' ') {
            Some(i) => (&value[..i], trim(&value[i + 1..])),
            None => (value, &[][..]),
        };
        let granted = if scheme.eq_ignore_ascii_case(b"basic") {
            self.basic(param)
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            self.bearer(param)
        } else {
            false
        };
        if granted {
            Verdict::Granted
        } else {
            Verdict::Unauthorized
        }
    }

    fn basic(&self, param: &[u8]) -> bool {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(param) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let user = sha256(b"", user);
        // subtle's `Choice`: comparisons in constant time, and no branch on their
        // results until every entry was compared.
        let mut ok = Choice::from(0);
        for e in self.entries.iter().filter(|e| e.scheme == Scheme::Basic) {
            let digest = sha256(&e.salt, password);
            // Both comparisons always run: no early exit on the user name.
            ok |= e.name_digest[..].ct_eq(&user[..]) & digest[..].ct_eq(&e.digest[..]);
        }
        ok.into()
    }

    fn bearer(&self, token: &[u8]) -> bool {
        if token.is_empty() {
            return false;
        }
        let mut ok = Choice::from(0);
        for e in self.entries.iter().filter(|e| e.scheme == Scheme::Bearer) {
            ok |= sha256(&e.salt, token)[..].ct_eq(&e.digest[..]);
        }
        ok.into()
    }

    /// Whether Basic credentials exist (the challenge offers only what can succeed).
    pub fn has_basic(&self) -> bool {
        self.entries.iter().any(|e| e.scheme == Scheme::Basic)
    }

    pub fn has_bearer(&self) -> bool {
        self.entries.iter().any(|e| e.scheme == Scheme::Bearer)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Why a trusted proxy's `X-Forwarded-For` could not be used (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadForwardedFor(pub String);

/// The client's address. The TCP peer, unless the peer is a trusted proxy: then the
/// `X-Forwarded-For` list is read from the right (the entry the nearest proxy added),
/// skipping trusted proxies, and the first address that is not one is the client.
/// Headers from anyone else are ignored: they are the client's own claims.
pub fn client_address(
    peer: IpAddr,
    trusted: &[IpCidr],
    forwarded_for: &[&[u8]],
) -> Result<IpAddr, BadForwardedFor> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|c| c.contains(&unmap(*ip)));
    if !is_trusted(&peer) || forwarded_for.is_empty() {
        return Ok(peer);
    }
    let mut client = peer;
    // Several headers are one list, in order.
    for header in forwarded_for.iter().rev() {
        let text = std::str::from_utf8(header)
            .map_err(|_| BadForwardedFor("X-Forwarded-For is not ASCII".into()))?;
        for item in text.rsplit(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let ip = parse_forwarded_item(item).ok_or_else(|| {
                BadForwardedFor(format!(
                    "X-Forwarded-For holds \"{}\", which is not an IP address",
                    item.chars().take(64).collect::<String>()
                ))
            })?;
            client = ip;
            if !is_trusted(&ip) {
                return Ok(ip);
            }
        }
    }
    Ok(client)
}

/// `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]` or either with a port.
fn parse_forwarded_item(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

/// IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::access::parse_rule;

    fn creds() -> Credentials {
        let text = format!(
            "# scrapers\n\n{}\n  {}  \n{}\n",
            hash_line("basic", "prom", "s4lt", "hunter2"),
            hash_line("basic", "grafana", "0ther", "correct horse"),
            hash_line("bearer", "ci", "tok", "t0ken-abc"),
        );
        Credentials::parse(&text).unwrap()
    }

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {b}").into_bytes()
    }

    #[test]
    fn basic_and_bearer() {
        let c = creds();
        assert_eq!(c.len(), 3);
        assert!(c.has_basic() && c.has_bearer());
        assert_eq!(c.check(&[&basic("prom", "hunter2")]), Verdict::Granted);
        assert_eq!(
            c.check(&[&basic("grafana", "correct horse")]),
            Verdict::Granted
        );
        assert_eq!(c.check(&[b"bearer  t0ken-abc "]), Verdict::Granted);
        assert_eq!(c.check(&[b"Bearer t0ken-abc"]), Verdict::Granted);
    }

    #[test]
    fn refusals() {
        let c = creds();
        let u = Verdict::Unauthorized;
        assert_eq!(c.check(&[]), u);
        assert_eq!(c.check(&[&basic("prom", "hunter3")]), u);
        assert_eq!(c.check(&[&basic("prom", "")]), u);
        // A password of another user.
        assert_eq!(c.check(&[&basic("prom", "correct horse")]), u);
        assert_eq!(c.check(&[&basic("nobody", "hunter2")]), u);
        // A token is not a Basic password, nor the other way round.
        assert_eq!(c.check(&[&basic("ci", "t0ken-abc")]), u);
        assert_eq!(c.check(&[b"Bearer hunter2"]), u);
        assert_eq!(c.check(&[b"Bearer"]), u);
        assert_eq!(c.check(&[b"Basic !!!not base64!!!"]), u);
        assert_eq!(c.check(&[b"Basic cHJvbQ=="]), u); // "prom", no colon
        assert_eq!(c.check(&[b"Digest username=\"prom\""]), u);
        assert_eq!(c.check(&[b"\xff\xfe garbage"]), u);
        assert_eq!(c.check(&[b""]), u);
        let long = [b"Bearer ".as_slice(), &[b'a'; MAX_AUTHORIZATION]].concat();
        assert_eq!(c.check(&[&long]), Verdict::Malformed);
        assert_eq!(
            c.check(&[b"Bearer t0ken-abc", b"Bearer t0ken-abc"]),
            Verdict::Malformed
        );
    }

    #[test]
    fn file_errors_name_the_line() {
        let bad = [
            ("basic prom\n", "line 1: expected"),
            (
                "\nplain prom sha256:a:00\n",
                "line 2: unknown kind \"plain\"",
            ),
            ("basic prom hunter2\n", "line 1: the hash must read sha256"),
            ("basic prom sha256:abc\n", "line 1: the hash has no salt"),
            ("basic prom sha256::abc\n", "line 1: the salt is empty"),
            (
                "bearer x sha256:s:1234\n",
                "line 1: the digest must be 64 hex digits",
            ),
            ("basic a:b sha256:s:00\n", "cannot contain ':'"),
            ("# nothing\n", "no credentials"),
        ];
        for (text, want) in bad {
            let err = Credentials::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let line = hash_line("basic", "a", "s", "p");
        let err = Credentials::parse(&format!("{line}\n{line}\n")).unwrap_err();
        assert!(err.contains("line 2: \"a\" is listed twice"), "{err}");
    }

    #[test]
    fn hash_line_matches_sha256sum() {
        // printf 'saltpassword' | sha256sum
        assert_eq!(
            hash_line("basic", "u", "salt", "password"),
            "basic u sha256:salt:13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322"
        );
    }

    fn cidrs(v: &[&str]) -> Vec<IpCidr> {
        v.iter().flat_map(|s| parse_rule(s).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        // An untrusted peer's header is ignored.
        let got = client_address(ip("192.0.2.7"), &trusted, &[b"127.0.0.1"]);
        assert_eq!(got, Ok(ip("192.0.2.7")));
        // No trusted proxies at all: always the peer.
        assert_eq!(
            client_address(ip("127.0.0.1"), &[], &[b"192.0.2.9"]),
            Ok(ip("127.0.0.1"))
        );
        // The rightmost untrusted entry wins; a spoofed left part does not matter.
        let got = client_address(
            ip("127.0.0.1"),
            &trusted,
            &[b"127.0.0.1, 198.51.100.4, 10.1.2.3"],
        );
        assert_eq!(got, Ok(ip("198.51.100.4")));
        // Several headers are one list.
        let got = client_address(ip("127.0.0.1"), &trusted, &[b"203.0.113.5", b"10.0.0.9"]);
        assert_eq!(got, Ok(ip("203.0.113.5")));
        // Ports and brackets.
        let got = client_address(ip("::ffff:10.0.0.1"), &trusted, &[b"[2001:db8::5]:443"]);
        assert_eq!(got, Ok(ip("2001:db8::5")));
        let got = client_address(ip("10.0.0.1"), &trusted, &[b"192.0.2.1:5555"]);
        assert_eq!(got, Ok(ip("192.0.2.1")));
        // All trusted: the leftmost.
        let got = client_address(ip("10.0.0.1"), &trusted, &[b"10.9.9.9, 10.0.0.2"]);
        assert_eq!(got, Ok(ip("10.9.9.9")));
        // A trusted proxy that sends garbage is a bad request, not a pass.
        let err = client_address(ip("10.0.0.1"), &trusted, &[b"127.0.0.1, evil"]).unwrap_err();
        assert!(err.0.contains("\"evil\""), "{err:?}");
        // Garbage left of the client is never read.
        let got = client_address(ip("10.0.0.1"), &trusted, &[b"junk, 192.0.2.8"]);
        assert_eq!(got, Ok(ip("192.0.2.8")));
    }

    #[test]
    fn mapped_trusted_proxies_are_their_ipv4_addresses() {
        let trusted = cidrs(&["::ffff:127.0.0.1", "::ffff:10.0.0.0/104"]);
        for peer in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "10.2.3.4",
            "::ffff:10.2.3.4",
        ] {
            let got = client_address(ip(peer), &trusted, &[b"192.0.2.8"]);
            assert_eq!(got, Ok(ip("192.0.2.8")), "peer {peer}");
        }
        // A mapped proxy written by the client in the header is skipped as trusted.
        let got = client_address(ip("127.0.0.1"), &trusted, &[b"192.0.2.8, ::ffff:10.0.0.7"]);
        assert_eq!(got, Ok(ip("192.0.2.8")));
    }
}
