//! Client address rules for the metrics endpoint: CIDR allow and deny lists.
//!
//! A client is refused when a deny rule matches it, or when allow rules exist and none
//! matches. With no rules at all, only loopback clients get in: a metrics endpoint
//! exposed by accident must not leak.
//!
//! IPv4 address `a.b.c.d` and its IPv4-mapped form `::ffff:a.b.c.d` are one address:
//! clients of a dual-stack socket are unmapped before matching, and rules are
//! normalised the same way when parsed. A rule inside `::ffff:0:0/96` is the IPv4
//! address or network it maps (`::ffff:10.0.0.0/104` is `10.0.0.0/8`); an IPv6 network
//! that contains the whole mapped range (`::/0`, `::ffff:0:0/96`, `::/64`...) also
//! holds every IPv4 address, so `deny ::/0` refuses IPv4 clients too, on any socket.

// No unsafe code here: the compiler holds this module to the promise in lib.rs.
#![forbid(unsafe_code)]

use cidr_utils::cidr::IpCidr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// `::ffff:0:0/96`: where IPv4 addresses sit in the IPv6 space.
const MAPPED_PREFIX: u8 = 96;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessRules {
    pub allow: Vec<IpCidr>,
    pub deny: Vec<IpCidr>,
}

/// Parses `1.2.3.0/24`, `::1`, `2001:db8::/32` or `all`. A network with host bits set
/// (`10.0.0.1/8`) is refused: it is almost always a typo for a different rule.
pub fn parse_rule(s: &str) -> Result<Vec<IpCidr>, String> {
    if s == "all" {
        return Ok(vec![
            IpCidr::from_str("0.0.0.0/0").unwrap(),
            IpCidr::from_str("::/0").unwrap(),
        ]);
    }
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip = IpAddr::from_str(addr).map_err(|_| format!("\"{s}\" is not an IP address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("\"{s}\" has an invalid prefix length (0 to {max})")),
        },
    };
    let cidr = IpCidr::new(ip, len)
        .map_err(|_| format!("\"{s}\" has host bits set after the /{len} prefix"))?;
    Ok(normalise(cidr))
}

/// The rule as clients are seen: IPv4-mapped IPv6 networks as IPv4 ones, and an IPv6
/// network holding all of `::ffff:0:0/96` together with `0.0.0.0/0`.
fn normalise(cidr: IpCidr) -> Vec<IpCidr> {
    let IpAddr::V6(net) = cidr.first_address() else {
        return vec![cidr];
    };
    let len = cidr.network_length();
    let mapped_net = Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0);
    if len >= MAPPED_PREFIX {
        return match net.to_ipv4_mapped() {
            Some(v4) => vec![IpCidr::new(IpAddr::V4(v4), len - MAPPED_PREFIX)
                .expect("a network's own address has no host bits")],
            None => vec![cidr],
        };
    }
    if cidr.contains(&IpAddr::V6(mapped_net)) {
        let every_v4 =
            IpCidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("0.0.0.0/0 is a network");
        return vec![cidr, every_v4];
    }
    vec![cidr]
}

impl AccessRules {
    pub fn allows(&self, ip: IpAddr) -> bool {
        // IPv4 clients on a dual-stack socket arrive as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.deny.iter().any(|c| c.contains(&ip)) {
            return false;
        }
        if self.allow.is_empty() && self.deny.is_empty() {
            return ip.is_loopback();
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> AccessRules {
        let p = |v: &[&str]| v.iter().flat_map(|s| parse_rule(s).unwrap()).collect();
        AccessRules {
            allow: p(allow),
            deny: p(deny),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert!(parse_rule("10.0.0.0/8").is_ok());
        assert!(parse_rule("2001:db8::/32").is_ok());
        assert!(parse_rule("::1").is_ok());
        assert_eq!(parse_rule("all").unwrap().len(), 2);
        assert!(parse_rule("10.0.0.1/8").unwrap_err().contains("host bits"));
        assert!(parse_rule("10.0.0.0/33")
            .unwrap_err()
            .contains("prefix length"));
        assert!(parse_rule("banana").unwrap_err().contains("\"banana\""));
        assert!(parse_rule("2001:db8::1/32")
            .unwrap_err()
            .contains("host bits"));
    }

    #[test]
    fn default_is_loopback_only() {
        let r = AccessRules::default();
        assert!(r.allows(ip("127.0.0.1")));
        assert!(r.allows(ip("::1")));
        assert!(!r.allows(ip("10.1.2.3")));
        assert!(!r.allows(ip("2001:db8::1")));
    }

    #[test]
    fn deny_wins_then_allow_must_match() {
        let r = rules(&["127.0.0.1", "::1", "10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(r.allows(ip("127.0.0.1")));
        assert!(!r.allows(ip("127.0.0.2")));
        assert!(r.allows(ip("10.1.1.1")));
        assert!(!r.allows(ip("10.9.1.1")));
        assert!(r.allows(ip("::ffff:10.1.1.1")));
        assert!(r.allows(ip("::1")));
        let only_deny = rules(&[], &["192.168.0.0/16"]);
        assert!(only_deny.allows(ip("10.1.1.1")));
        assert!(!only_deny.allows(ip("192.168.3.4")));
    }

    #[test]
    fn mapped_rules_are_their_ipv4_rules() {
        let one = |s: &str| parse_rule(s).unwrap();
        assert_eq!(one("::ffff:127.0.0.2"), one("127.0.0.2"));
        assert_eq!(one("::ffff:10.0.0.0/104"), one("10.0.0.0/8"));
        assert_eq!(one("::ffff:0:0/96"), one("0.0.0.0/0"));
        assert!(parse_rule("::ffff:10.0.0.1/104")
            .unwrap_err()
            .contains("host bits"));
        // Outside the mapped range: unchanged.
        assert_eq!(one("2001:db8::/32").len(), 1);
        assert_eq!(one("::127.0.0.1").len(), 1);
        for (rule, v4) in [
            ("::/0", true),
            ("::/64", true),
            ("::fffe:0:0/95", true),
            ("::/95", false),
            ("2000::/3", false),
        ] {
            let r = rules(&["all"], &[rule]);
            assert_eq!(!r.allows(ip("10.1.2.3")), v4, "{rule} and 10.1.2.3");
            assert_eq!(!r.allows(ip("::ffff:10.1.2.3")), v4, "{rule} and mapped");
        }
    }

    #[test]
    fn mapped_rules_match_both_forms_of_the_client() {
        let r = rules(&["all"], &["::ffff:127.0.0.2"]);
        assert!(!r.allows(ip("127.0.0.2")));
        assert!(!r.allows(ip("::ffff:127.0.0.2")));
        assert!(r.allows(ip("127.0.0.1")));
        let r = rules(&["::ffff:10.0.0.0/104"], &[]);
        assert!(r.allows(ip("10.9.9.9")));
        assert!(r.allows(ip("::ffff:10.9.9.9")));
        assert!(!r.allows(ip("11.0.0.1")));
        let everyone_v6 = rules(&[], &["::/0"]);
        assert!(!everyone_v6.allows(ip("127.0.0.1")));
        assert!(!everyone_v6.allows(ip("::1")));
    }
}
