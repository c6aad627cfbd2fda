//! CIDR and address rules (`prometheus_allow`/`deny`/`trusted_proxies`,
//! `access::parse_rule`): arbitrary words never panic; a rule's networks read back as
//! themselves; an IPv4 client and its IPv4-mapped form get the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ngx_prometheus::config::access::{parse_rule, AccessRules};
use std::net::{IpAddr, Ipv4Addr};

fuzz_target!(|input: (Vec<String>, Vec<String>, Vec<u32>, Vec<u128>)| {
    let (allow, deny, v4, v6) = input;
    let mut rules = AccessRules::default();
    for (words, list) in [(&allow, &mut rules.allow), (&deny, &mut rules.deny)] {
        for w in words {
            match parse_rule(w) {
                Ok(cidrs) => {
                    assert!(!cidrs.is_empty());
                    for c in &cidrs {
                        let again = parse_rule(&c.to_string())
                            .unwrap_or_else(|e| panic!("{w:?} gave {c}, which reads as {e}"));
                        assert!(again.contains(c), "{w:?}: {c} reads back as {again:?}");
                    }
                    list.extend(cidrs);
                }
                // The error names the word it refuses.
                Err(e) => assert!(e.contains(&format!("\"{w}\"")), "{e}"),
            }
        }
    }
    for a in v4 {
        let ip = Ipv4Addr::from(a);
        let plain = rules.allows(IpAddr::V4(ip));
        let mapped = rules.allows(IpAddr::V6(ip.to_ipv6_mapped()));
        assert_eq!(plain, mapped, "{ip} and its mapped form under {rules:?}");
    }
    for a in v6 {
        let _ = rules.allows(IpAddr::from(a.to_be_bytes()));
    }
});
