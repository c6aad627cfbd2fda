//! Credentials files (`prometheus_auth_file`, `auth::Credentials::parse`) and the
//! request side (`Authorization`, `X-Forwarded-For` behind trusted proxies): arbitrary
//! files and headers never panic; a line made by `hash_line` parses and grants exactly
//! its own secret.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use ngx_prometheus::config::access::parse_rule;
use ngx_prometheus::config::auth::{
    client_address, hash_line, unmap, Credentials, Verdict, MAX_AUTHORIZATION,
};
use std::net::IpAddr;

#[derive(Debug, libfuzzer_sys::arbitrary::Arbitrary)]
struct Input {
    file: String,
    authorization: Vec<Vec<u8>>,
    /// A credential to write with `hash_line` and present.
    bearer: bool,
    name: String,
    salt: String,
    secret: String,
    peer: u128,
    trusted: Vec<String>,
    forwarded_for: Vec<Vec<u8>>,
}

fn token(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

fuzz_target!(|i: Input| {
    let headers: Vec<&[u8]> = i.authorization.iter().map(Vec::as_slice).collect();
    if let Ok(c) = Credentials::parse(&i.file) {
        assert!(!c.is_empty());
        let v = c.check(&headers);
        let malformed =
            headers.len() > 1 || headers.first().is_some_and(|h| h.len() > MAX_AUTHORIZATION);
        assert_eq!(v == Verdict::Malformed, malformed, "{headers:?}");
    }

    // A line hash_line writes is one the parser reads, and grants its secret only.
    let basic_name_ok = i.bearer || !i.name.contains(':');
    if token(&i.name) && token(&i.salt) && basic_name_ok {
        let kind = if i.bearer { "bearer" } else { "basic" };
        let line = hash_line(kind, &i.name, &i.salt, &i.secret);
        let c = Credentials::parse(&format!("# made\n{line}\n"))
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let header = |secret: &str| -> Vec<u8> {
            if i.bearer {
                format!("Bearer {secret}").into_bytes()
            } else {
                let b = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{secret}", i.name));
                format!("Basic {b}").into_bytes()
            }
        };
        // Bearer tokens are read trimmed of spaces and tabs, and an empty one is none.
        let presentable = !i.bearer || {
            let t = i.secret.trim_matches([' ', '\t']);
            !t.is_empty() && t == i.secret
        };
        let h = header(&i.secret);
        if presentable && h.len() <= MAX_AUTHORIZATION {
            assert_eq!(c.check(&[&h]), Verdict::Granted, "{line:?}");
        }
        let wrong = format!("{}x", i.secret);
        let h = header(&wrong);
        if h.len() <= MAX_AUTHORIZATION {
            assert_ne!(c.check(&[&h]), Verdict::Granted, "{line:?} with {wrong:?}");
        }
    }

    // X-Forwarded-For: the client is the peer or an address from the headers.
    let trusted: Vec<_> = i
        .trusted
        .iter()
        .filter_map(|s| parse_rule(s).ok())
        .flatten()
        .collect();
    let peer = if i.peer >> 32 == 0 {
        IpAddr::from((i.peer as u32).to_be_bytes())
    } else {
        IpAddr::from(i.peer.to_be_bytes())
    };
    let xff: Vec<&[u8]> = i.forwarded_for.iter().map(Vec::as_slice).collect();
    if let Ok(ip) = client_address(peer, &trusted, &xff) {
        // Only a trusted peer's headers are read.
        let believed = !xff.is_empty() && trusted.iter().any(|c| c.contains(&unmap(peer)));
        assert!(ip == peer || believed, "{ip} from {peer} and {xff:?}");
    }
});
