//! Directive values (`directives`, `identity::ConstLabels::parse` and `expand`,
//! `limits::parse_max_renders`, `record::parse` and the recorder's `label_value`): arbitrary words never panic, and what is accepted
//! keeps the promises the rest of the module relies on.
//!
//! nginx reads times and sizes itself (`ngx_parse_time`, `ngx_parse_size`, nginx's
//! code and not fuzzed here); [`time`] and [`size`] stand in for them so that the
//! words around a time or a size are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ngx_prometheus::config::directives;
use ngx_prometheus::config::identity::{expand, valid_label_name, ConstLabels, MAX_CONST_LABELS};
use ngx_prometheus::config::limits::parse_max_renders;
use ngx_prometheus::config::record;
use ngx_prometheus::metrics::family::valid_group;

/// Digits, then `ms` or `s`; positive (as the module's reader of nginx times answers).
fn time(s: &str) -> Option<u64> {
    let ms = match s.strip_suffix("ms") {
        Some(n) => n.parse().ok()?,
        None => s
            .strip_suffix('s')?
            .parse::<u64>()
            .ok()?
            .checked_mul(1000)?,
    };
    (ms > 0).then_some(ms)
}

/// Digits, then nothing, `k` or `m`.
fn size(s: &str) -> Option<usize> {
    let (n, shift) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 10),
        Some(b'm') => (&s[..s.len() - 1], 20),
        _ => (s, 0),
    };
    n.parse::<usize>().ok()?.checked_mul(1 << shift)
}

fuzz_target!(|input: (u8, Vec<String>, Vec<(String, String)>)| {
    let (which, words, vars) = input;
    let a: Vec<&str> = words.iter().map(String::as_str).collect();
    let first = a.first().copied().unwrap_or("");
    match which % 10 {
        0 => {
            const MIN: usize = 64 << 10;
            let size_arg = a.get(1).copied().unwrap_or("");
            match directives::zone(first, size_arg, MIN, &size) {
                Ok(bytes) => assert!(bytes >= MIN && size(size_arg) == Some(bytes)),
                Err(e) => assert!(e.starts_with("prometheus_zone"), "{e}"),
            }
        }
        1 => {
            if let Ok(n) = directives::max_pinned(first, &size) {
                assert!(n > 0);
            }
        }
        2 => {
            if let Ok((zone, groups)) = directives::metrics(&a) {
                assert!(!zone.contains('='));
                assert!(zone.is_empty() || a.contains(&zone.as_str()));
                assert!(groups.iter().all(|g| valid_group(g)));
                for (i, g) in groups.iter().enumerate() {
                    assert!(!groups[..i].contains(g), "group {g} twice");
                }
            }
        }
        3 => {
            if let Ok(p) = directives::process(&a, &time) {
                assert!(p.interval_ms > 0);
                assert_eq!(p.enabled, a != ["off"]);
            }
        }
        4 => {
            if let Ok(p) = directives::push(&a, &time) {
                assert!(p.timeout <= p.interval && !p.interval.is_zero());
                assert_eq!(p.url, first);
                assert!(!p.job_template.is_empty());
            }
        }
        5 => {
            let vars: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Ok(c) = ConstLabels::parse(&a, &vars) {
                assert_eq!(c.names.len(), c.values.len());
                assert!(c.names.len() <= MAX_CONST_LABELS);
                assert!(c.names.iter().all(|n| valid_label_name(n)));
                assert!(c.values.iter().all(|v| !v.is_empty()));
                for (i, n) in c.names.iter().enumerate() {
                    assert!(!c.names[..i].contains(n), "label {n} twice");
                }
            }
        }
        6 => {
            let vars: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if let Ok(s) = expand(first, &vars) {
                if !first.contains('$') {
                    assert_eq!(s, first);
                }
            }
        }
        7 => {
            // What the recorder accepts gives families the zone registers: valid, at
            // most MAX_LABELS labels each, no label twice.
            if let Ok(Some(r)) = record::parse(&a, &time) {
                assert!(a != ["off"]);
                for spec in r.families().into_iter().flatten() {
                    assert!(spec.validate().is_ok(), "{spec:?}");
                }
            }
        }
        8 => {
            // Any bytes a client sends become a stored value: UTF-8, bounded.
            let v = record::label_value(first.as_bytes());
            assert!(v.len() <= record::MAX_VALUE_BYTES && std::str::from_utf8(&v).is_ok());
            let raw: Vec<u8> = words
                .iter()
                .flat_map(|w| w.bytes().map(|b| b ^ 0x80))
                .collect();
            let v = record::label_value(&raw);
            assert!(v.len() <= record::MAX_VALUE_BYTES && std::str::from_utf8(&v).is_ok());
        }
        _ => {
            if let Ok(n) = parse_max_renders(first) {
                assert!((1..=4096).contains(&n));
            }
        }
    }
});
